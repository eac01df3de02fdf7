//! The admin gRPC API used by drctl. Reads need a viewer or operator certificate; anything that
//! acts (or reads logs, which may hold data) needs an operator.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dr_proto::domain::{Action, GroupName, HostName, Mode, UpdateKind};
use dr_proto::identity::Permission;
use dr_proto::pb;
use dr_proto::pb::admin_server::Admin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::admin_backup;
use super::admin_cluster;
use super::auth::authorize;
use super::runtime::Shared;
use crate::decide::{ActionReply, OperatorRequest, ReplyError};

pub struct AdminService {
    pub shared: Arc<Shared>,
}

fn parse_group(s: &str) -> Result<GroupName, Status> {
    let s = if s.is_empty() { "erlmcp" } else { s };
    GroupName::new(s).map_err(|e| Status::invalid_argument(format!("group {s:?} {e}")))
}

fn parse_host(s: &str) -> Result<HostName, Status> {
    HostName::new(s).map_err(|e| Status::invalid_argument(format!("host {s:?} {e}")))
}

fn answer(r: Result<ActionReply, ReplyError>) -> Result<Response<pb::ActionResponse>, Status> {
    match r {
        Ok(a) => Ok(Response::new(pb::ActionResponse {
            detail: a.detail,
            incident_id: a.incident_id.unwrap_or(0),
            epoch: a.epoch.0,
            action_id: a.action_id.unwrap_or(0),
        })),
        Err(ReplyError::NotFound(m)) => Err(Status::not_found(m)),
        Err(ReplyError::Refused(m)) => Err(Status::failed_precondition(m)),
        Err(ReplyError::Failed(m)) => Err(Status::aborted(m)),
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::DataChunk, Status>> + Send>>;

impl AdminService {
    async fn operator(
        &self,
        request: OperatorRequest,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        answer(self.shared.operator(request).await?)
    }

    /// Relay a streamed agent command (logs, diagnostics) as chunks.
    async fn relay(
        &self,
        group: &str,
        host: &str,
        action: Action,
        idle: Duration,
    ) -> Result<Response<ChunkStream>, Status> {
        let key = (parse_group(group)?, parse_host(host)?);
        let mut updates = self.shared.direct(key, action).await?;
        let stream = async_stream_like(move |tx| async move {
            loop {
                let next = if idle.is_zero() {
                    updates.recv().await
                } else {
                    match tokio::time::timeout(idle, updates.recv()).await {
                        Ok(u) => u,
                        Err(_) => {
                            let _ = tx
                                .send(Err(Status::deadline_exceeded("the agent went quiet")))
                                .await;
                            return;
                        }
                    }
                };
                match next {
                    Some(UpdateKind::Chunk(data)) => {
                        if tx.send(Ok(pb::DataChunk { data })).await.is_err() {
                            return;
                        }
                    }
                    Some(UpdateKind::Progress { .. }) => {}
                    Some(UpdateKind::Result(r)) => {
                        if let Err(e) = r.outcome {
                            let _ = tx.send(Err(Status::aborted(e))).await;
                        }
                        return;
                    }
                    None => {
                        let _ = tx
                            .send(Err(Status::unavailable("the agent session ended")))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a spawned task through a channel.
fn async_stream_like<F, Fut>(f: F) -> ChunkStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::DataChunk, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        authorize(&request, Permission::Read, self.shared.insecure_dev)?;
        let wanted = request.into_inner().group;
        let view = self.shared.status_of(&wanted).await?;
        Ok(Response::new(view.into()))
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let req = request.into_inner();
        let key = (parse_group(&req.group)?, parse_host(&req.host)?);
        let started = std::time::Instant::now();
        let mut updates = self
            .shared
            .direct(key.clone(), Action::Ping { note: req.note })
            .await?;
        let result = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(u) = updates.recv().await {
                if let UpdateKind::Result(r) = u {
                    return Some(r);
                }
            }
            None
        })
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no answer from the agent of `{}` within 5 s",
                key.1
            ))
        })?
        .ok_or_else(|| Status::unavailable("the agent session ended"))?;
        let round_trip_ms = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        match result.outcome {
            Ok(detail) => Ok(Response::new(pb::PingResponse {
                round_trip_ms,
                detail,
            })),
            Err(e) => Err(Status::aborted(format!("agent refused: {e}"))),
        }
    }

    async fn restart(
        &self,
        request: Request<pb::RestartRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let r = request.into_inner();
        self.operator(OperatorRequest::Restart {
            group: parse_group(&r.group)?,
            host: parse_host(&r.host)?,
        })
        .await
    }

    async fn failover(
        &self,
        request: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let r = request.into_inner();
        let to = if r.to.is_empty() {
            None
        } else {
            Some(parse_host(&r.to)?)
        };
        self.operator(OperatorRequest::Failover {
            group: parse_group(&r.group)?,
            to,
            force: r.force,
        })
        .await
    }

    async fn switchover(
        &self,
        request: Request<pb::SwitchoverRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let r = request.into_inner();
        self.operator(OperatorRequest::Switchover {
            group: parse_group(&r.group)?,
            to: parse_host(&r.to)?,
            at_unix_ms: (r.at_unix_ms != 0).then_some(r.at_unix_ms),
            force: r.force,
        })
        .await
    }

    async fn set_mode(
        &self,
        request: Request<pb::SetModeRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let r = request.into_inner();
        let mode = match pb::Mode::try_from(r.mode) {
            Ok(pb::Mode::Automatic) => Mode::Automatic,
            Ok(pb::Mode::Paused) => Mode::Paused,
            _ => return Err(Status::invalid_argument("mode must be automatic or paused")),
        };
        self.operator(OperatorRequest::SetMode {
            group: parse_group(&r.group)?,
            mode,
        })
        .await
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        authorize(&request, Permission::Read, self.shared.insecure_dev)?;
        let r = request.into_inner();
        let group = if r.group.is_empty() {
            None
        } else {
            Some(parse_group(&r.group)?)
        };
        let limit = if r.limit == 0 { 50 } else { r.limit.min(1000) } as usize;
        let (changes, incidents) = self.shared.history(group, limit).await?;
        Ok(Response::new(pb::HistoryResponse {
            role_changes: changes.into_iter().map(Into::into).collect(),
            incidents: incidents.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_incident(
        &self,
        request: Request<pb::IncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        authorize(&request, Permission::Read, self.shared.insecure_dev)?;
        let id = request.into_inner().id;
        match self.shared.incident(id).await? {
            Some(i) => Ok(Response::new(i.into())),
            None => Err(Status::not_found(format!("no incident {id}"))),
        }
    }

    async fn backup_create(
        &self,
        request: Request<pb::BackupCreateRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        self.operator(admin_backup::create(request.into_inner())?)
            .await
    }

    async fn backup_list(
        &self,
        request: Request<pb::BackupListRequest>,
    ) -> Result<Response<pb::BackupListResponse>, Status> {
        authorize(&request, Permission::Read, self.shared.insecure_dev)?;
        Ok(Response::new(
            admin_backup::list(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn backup_verify(
        &self,
        request: Request<pb::BackupVerifyRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        self.operator(admin_backup::verify(request.into_inner())?)
            .await
    }

    async fn backup_drill(
        &self,
        request: Request<pb::BackupDrillRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        self.operator(admin_backup::drill(request.into_inner())?)
            .await
    }

    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        self.operator(admin_backup::restore(request.into_inner())?)
            .await
    }

    async fn progress(
        &self,
        request: Request<pb::ProgressRequest>,
    ) -> Result<Response<pb::ProgressResponse>, Status> {
        authorize(&request, Permission::Read, self.shared.insecure_dev)?;
        Ok(Response::new(
            admin_backup::progress(&self.shared, request.into_inner()).await?,
        ))
    }

    type LogsStream = ChunkStream;

    async fn logs(
        &self,
        request: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let r = request.into_inner();
        let action = Action::ReadLogs {
            lines: r.lines,
            grep: r.grep,
            follow: r.follow,
        };
        let idle = if r.follow {
            Duration::ZERO
        } else {
            Duration::from_secs(30)
        };
        self.relay(&r.group, &r.host, action, idle).await
    }

    type DiagnosticsStream = ChunkStream;

    async fn diagnostics(
        &self,
        request: Request<pb::DiagnosticsRequest>,
    ) -> Result<Response<Self::DiagnosticsStream>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let r = request.into_inner();
        self.relay(
            &r.group,
            &r.host,
            Action::Diagnostics { log_mib: r.log_mib },
            Duration::from_secs(60),
        )
        .await
    }

    async fn controller_status(
        &self,
        request: Request<pb::ControllerStatusRequest>,
    ) -> Result<Response<pb::ControllerStatusResponse>, Status> {
        authorize(&request, Permission::Read, self.shared.insecure_dev)?;
        Ok(Response::new(admin_cluster::status(&self.shared.raft)))
    }

    async fn add_controller(
        &self,
        request: Request<pb::AddControllerRequest>,
    ) -> Result<Response<pb::ControllerStatusResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let r = request.into_inner();
        admin_cluster::add(&self.shared.raft, &r.id, &r.addr).await?;
        Ok(Response::new(admin_cluster::status(&self.shared.raft)))
    }

    async fn remove_controller(
        &self,
        request: Request<pb::RemoveControllerRequest>,
    ) -> Result<Response<pb::ControllerStatusResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        admin_cluster::remove(&self.shared.raft, &request.into_inner().id).await?;
        Ok(Response::new(admin_cluster::status(&self.shared.raft)))
    }

    async fn controller_backup(
        &self,
        request: Request<pb::ControllerBackupRequest>,
    ) -> Result<Response<pb::ControllerBackupResponse>, Status> {
        authorize(&request, Permission::Operate, self.shared.insecure_dev)?;
        let store = request.into_inner().store;
        Ok(Response::new(
            admin_cluster::backup(&self.shared, &store).await?,
        ))
    }
}
