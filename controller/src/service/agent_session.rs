//! The agent side of the gRPC API: one long-lived bidirectional stream per agent. Identity and
//! protocol are checked here; everything else goes to the runtime as events.

use std::sync::Arc;
use std::time::Duration;

use dr_proto::PROTOCOL_VERSION;
use dr_proto::domain::AgentMessage;
use dr_proto::identity::{Identity, Permission};
use dr_proto::pb;
use dr_proto::pb::agent_session_server::AgentSession;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::authorize;
use super::runtime::{Input, Outbox, Shared};
use crate::decide::{Event, MemberKey};

/// How long an agent has to say hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AgentSessionService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl AgentSession for AgentSessionService {
    type SessionStream = ReceiverStream<Result<pb::ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let shared = &self.shared;
        let identity = authorize(&request, Permission::AgentSession, shared.insecure_dev)?;
        if !shared.raft.standing().leading {
            return Err(shared.raft.not_leader());
        }
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
        let (tx, rx) = mpsc::channel(256);
        let session = shared.new_session_id();
        let key = (hello.group.clone(), hello.host.clone());
        shared
            .send(Input::SessionOpened {
                key: key.clone(),
                session,
                hello,
                outbox: tx.clone(),
            })
            .await?;
        tokio::spawn(run_session(shared.clone(), key, session, inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn run_session(
    shared: Arc<Shared>,
    key: MemberKey,
    session: u64,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: Outbox,
) {
    loop {
        let next = tokio::select! {
            () = shared.shutdown.cancelled() => {
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
                // Too large, not protobuf, or the connection broke: end the session with the
                // reason, so an agent that sent a bad message is told why (if it still listens).
                tracing::debug!(host = %key.1, %status, "agent stream error");
                let _ = tx.send(Err(status)).await;
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
        let key = key.clone();
        let sent = match message {
            AgentMessage::Report(report) => {
                shared
                    .agent_event(Event::Report {
                        key,
                        session,
                        report,
                    })
                    .await
            }
            AgentMessage::LeaseRequest(request) => {
                shared
                    .agent_event(Event::LeaseRequest {
                        key,
                        session,
                        request,
                    })
                    .await
            }
            AgentMessage::LeaseRelease(release) => {
                shared
                    .agent_event(Event::LeaseRelease {
                        key,
                        session,
                        release,
                    })
                    .await
            }
            AgentMessage::CommandUpdate(update) => {
                shared.send(Input::CommandUpdate { key, update }).await
            }
            AgentMessage::Hello(_) => {
                let _ = tx
                    .send(Err(Status::failed_precondition(
                        "Hello sent twice in one session",
                    )))
                    .await;
                break;
            }
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = shared
        .agent_event(Event::SessionClosed { key, session })
        .await;
}
