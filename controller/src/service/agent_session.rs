//! The agent side of the gRPC API: one long-lived bidirectional stream per agent.

use std::sync::Arc;
use std::time::Duration;

use dr_proto::PROTOCOL_VERSION;
use dr_proto::domain::{AgentMessage, ControllerMessage, LeaseGrant};
use dr_proto::identity::{Identity, Permission};
use dr_proto::pb;
use dr_proto::pb::agent_session_server::AgentSession;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::authorize;
use super::{Controller, Outbox};
use crate::observed::MemberKey;

/// How long an agent has to say hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AgentSessionService {
    pub controller: Arc<Controller>,
}

#[tonic::async_trait]
impl AgentSession for AgentSessionService {
    type SessionStream = ReceiverStream<Result<pb::ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let ctl = &self.controller;
        let identity = authorize(&request, Permission::AgentSession, ctl.insecure_dev)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s of opening the session"))??
            .ok_or_else(|| Status::cancelled("stream closed before Hello"))?;
        let AgentMessage::Hello(hello) = AgentMessage::try_from(first)? else {
            return Err(Status::failed_precondition(
                "the first message of a session must be Hello",
            ));
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "agent speaks protocol v{}, this controller speaks v{PROTOCOL_VERSION}: upgrade the older side",
                hello.protocol_version
            )));
        }
        if let Some(id) = &identity
            && *id != Identity::Agent(hello.host.clone())
        {
            tracing::warn!(identity = %id, claimed = %hello.host, "agent refused: speaks for another host");
            return Err(Status::permission_denied(format!(
                "certificate {id} may not speak for host `{}`",
                hello.host
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        let (session_id, welcome) = ctl.open_session(&hello, tx.clone())?;
        tx.send(Ok(ControllerMessage::Welcome(welcome).into()))
            .await
            .map_err(|_| Status::cancelled("agent went away"))?;
        let key = (hello.group, hello.host);
        tokio::spawn(run_session(ctl.clone(), key, session_id, inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn run_session(
    ctl: Arc<Controller>,
    key: MemberKey,
    session_id: u64,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: Outbox,
) {
    loop {
        let next = tokio::select! {
            () = ctl.shutdown.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("controller shutting down"))).await;
                break;
            }
            () = tx.closed() => break,
            next = inbound.message() => next,
        };
        let message = match next {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(host = %key.1, %status, "agent stream error");
                break;
            }
        };
        let message = match AgentMessage::try_from(message) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(host = %key.1, error = %e, "agent sent an invalid message; closing its session");
                let _ = tx.send(Err(e.into())).await;
                break;
            }
        };
        match message {
            AgentMessage::Report(report) => {
                let Some(ack) = ctl.record_report(&key, session_id, report) else {
                    break;
                };
                if tx
                    .send(Ok(ControllerMessage::Ack(ack).into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            AgentMessage::LeaseRequest(req) => {
                let refusal = LeaseGrant {
                    request_id: req.request_id,
                    epoch: req.epoch,
                    outcome: Err("this controller does not grant leases".into()),
                };
                if tx
                    .send(Ok(ControllerMessage::LeaseGrant(refusal).into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            AgentMessage::CommandUpdate(update) => ctl.command_update(&key, update),
            AgentMessage::Hello(_) => {
                let _ = tx
                    .send(Err(Status::failed_precondition(
                        "Hello sent twice in one session",
                    )))
                    .await;
                break;
            }
        }
    }
    ctl.close_session(&key, session_id);
}
