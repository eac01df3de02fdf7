//! Raft RPCs to peer controllers: openraft's requests as JSON in one gRPC message each, over
//! the peers' controller port with our controller certificate (mTLS).

use std::sync::Arc;
use std::time::Duration;

use dr_proto::MAX_MESSAGE_BYTES;
use dr_proto::pb::RaftPayload;
use dr_proto::pb::raft_client::RaftClient;
use dr_proto::tls::{TlsMaterial, host_of_url};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use super::{ControllerNode, NodeId, TypeConfig};

/// Makes one client per peer; cheap to clone.
#[derive(Clone)]
pub struct Network {
    tls: Option<Arc<TlsMaterial>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Network {
    /// `tls` None only with `--insecure-dev` (plaintext between controllers).
    pub fn new(tls: Option<Arc<TlsMaterial>>) -> Network {
        Network { tls }
    }

    /// A lazily connecting channel to `addr`.
    pub fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut endpoint = Endpoint::from_shared(addr.to_string())
            .map_err(|e| format!("{addr}: {e}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            let domain = host_of_url(addr).unwrap_or("localhost");
            endpoint = endpoint
                .tls_config(tls.client_config(domain))
                .map_err(|e| format!("{addr}: {e}"))?;
        }
        Ok(endpoint.connect_lazy())
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ControllerNode) -> PeerClient {
        let client = self.channel(&node.addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(64 * MAX_MESSAGE_BYTES)
                .max_encoding_message_size(64 * MAX_MESSAGE_BYTES)
        });
        PeerClient {
            target,
            name: node.name.clone(),
            client,
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    name: String,
    client: Result<RaftClient<Channel>, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("controller {name}: {message}")]
struct TransportError {
    name: String,
    message: String,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        which: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ControllerNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let fail = |message: String| TransportError {
            name: self.name.clone(),
            message,
        };
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&fail(e.clone())))),
        };
        let json = serde_json::to_vec(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&fail(e.to_string()))))?;
        let mut request = tonic::Request::new(RaftPayload { json });
        request.set_timeout(option.hard_ttl());
        let reply = match which {
            "append_entries" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|s| {
            let e = fail(format!("{which}: {}", s.message()));
            match s.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                _ => RPCError::Network(NetworkError::new(&e)),
            }
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.into_inner().json).map_err(|e| {
                RPCError::Network(NetworkError::new(&fail(format!(
                    "{which}: unreadable answer: {e}"
                ))))
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>>
    {
        self.call("append_entries", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ControllerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("install_snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
