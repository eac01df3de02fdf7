//! Controller high availability: every change of the desired state is a Raft log entry
//! (openraft 0.9), applied in log order by every controller. One controller is simply a
//! cluster of one, so there is one code path.
//!
//! - [`log_store`]: the log, the vote and the committed index in redb;
//! - [`state_machine`]: [`crate::state::ControllerState`] fed by committed entries, snapshots;
//! - [`network`] / [`service`]: Raft RPCs between controllers over the controllers' gRPC port
//!   and mTLS (controller certificates only);
//! - [`node`]: opening the store, starting Raft, forming or joining a cluster.
//!
//! Safety with leases (DESIGN.md § Safety): a leader grants leases and decides only while a
//! quorum acknowledged it within the minimum election timeout (see `node::LeaderCheck`), and a
//! new leader waits a full lease ttl plus margin before it may fail a primary over (the decision
//! core's "leases it did not grant" rule). Together: a lease granted by an old leader has always
//! expired before a new leader can act against it.

pub mod log_store;
pub mod network;
pub mod node;
pub mod service;
pub mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::{ControllerState, StateCommand};

pub type NodeId = u64;

/// A controller as Raft knows it: its name (`controller:NAME` in its certificate) and the gRPC
/// URL its peers, agents and drctl reach it at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerNode {
    pub name: String,
    pub addr: String,
}

impl std::fmt::Display for ControllerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// One log entry's worth of state commands, applied in order (one decision's writes commit
/// together).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RaftRequest {
    /// Replace the whole state first: only `dr-controller restore`, bootstrapping a new
    /// cluster from a controller-state backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Box<ControllerState>>,
    pub commands: Vec<StateCommand>,
}

impl std::fmt::Display for RaftRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.replace.is_some() {
            write!(f, "the whole state, then ")?;
        }
        write!(f, "{} state command(s)", self.commands.len())
    }
}

/// Per command: `Ok(changed)` or why the state refused it (then nothing changed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RaftResponse {
    pub outcomes: Vec<Result<bool, String>>,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = RaftRequest,
        R = RaftResponse,
        NodeId = NodeId,
        Node = ControllerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type ControllerRaft = openraft::Raft<TypeConfig>;

/// The Raft node id of a controller name: FNV-1a, stable across versions and machines (ids are
/// stored in the log, so this function must never change). Two names with the same id are
/// refused when a controller is added.
pub fn node_id(name: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // 0 is openraft's default id: keep clear of it
    h.max(1)
}

#[cfg(test)]
mod tests;
