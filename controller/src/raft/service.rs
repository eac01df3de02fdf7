//! The Raft gRPC service: peers' AppendEntries, Vote and InstallSnapshot, for controller
//! certificates only.

use dr_proto::identity::Permission;
use dr_proto::pb::RaftPayload;
use dr_proto::pb::raft_server::Raft as RaftRpc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::ControllerRaft;
use crate::service::auth::authorize;

pub struct RaftService {
    raft: ControllerRaft,
    insecure_dev: bool,
}

impl RaftService {
    pub fn new(raft: ControllerRaft, insecure_dev: bool) -> RaftService {
        RaftService { raft, insecure_dev }
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("not a Raft message: {e}")))
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(result)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        authorize(&request, Permission::Peer, self.insecure_dev)?;
        let result = self.raft.append_entries(decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        authorize(&request, Permission::Peer, self.insecure_dev)?;
        let result = self.raft.vote(decode(request)?).await;
        encode(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        authorize(&request, Permission::Peer, self.insecure_dev)?;
        let result = self.raft.install_snapshot(decode(request)?).await;
        encode(&result)
    }
}
