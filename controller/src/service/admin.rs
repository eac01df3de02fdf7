//! The admin gRPC API used by drctl.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_proto::domain::{Action, GroupName, HostName};
use dr_proto::identity::Permission;
use dr_proto::pb;
use dr_proto::pb::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::Controller;
use super::auth::authorize;

pub struct AdminService {
    pub controller: Arc<Controller>,
}

fn parse_group(s: &str) -> Result<GroupName, Status> {
    GroupName::new(s).map_err(|e| Status::invalid_argument(format!("group {s:?} {e}")))
}

fn parse_host(s: &str) -> Result<HostName, Status> {
    HostName::new(s).map_err(|e| Status::invalid_argument(format!("host {s:?} {e}")))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        authorize(&request, Permission::Read, self.controller.insecure_dev)?;
        let wanted = request.into_inner().group;
        let mut view = self.controller.status_view();
        if !wanted.is_empty() {
            view.groups.retain(|g| g.name.as_str() == wanted);
            if view.groups.is_empty() {
                return Err(Status::not_found(format!("no group named `{wanted}`")));
            }
        }
        Ok(Response::new(view.into()))
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        let who = authorize(&request, Permission::Operate, self.controller.insecure_dev)?;
        let req = request.into_inner();
        let group = parse_group(&req.group)?;
        let host = parse_host(&req.host)?;
        tracing::info!(operator = ?who.map(|w| w.to_string()), %group, %host, "ping requested");
        let started = Instant::now();
        let result = self
            .controller
            .run_command(
                &group,
                &host,
                Action::Ping { note: req.note },
                Duration::from_secs(5),
            )
            .await?;
        let round_trip_ms = started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        match result.outcome {
            Ok(detail) => Ok(Response::new(pb::PingResponse {
                round_trip_ms,
                detail,
            })),
            Err(e) => Err(Status::aborted(format!("agent refused: {e}"))),
        }
    }
}
