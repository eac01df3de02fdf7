//! The controller-cluster part of the admin API: status of every controller, adding and
//! removing controllers, and a consistent snapshot of the replicated state.
//!
//! Membership changes are made by the leader only (openraft's joint consensus). Safety rules:
//! a controller is added as a learner first and becomes a voter only once it has caught up (so
//! a slow new node never makes the quorum wait); the last voter cannot be removed; the leader
//! does not remove itself (stop it first: another controller takes over, then remove it there).

use std::collections::{BTreeMap, BTreeSet};

use dr_proto::pb;
use openraft::ChangeMembers;
use tonic::Status;

use super::runtime::Shared;
use super::runtime::unix_ms;
use crate::raft::node::RaftNode;
use crate::raft::{ControllerNode, node_id};
use crate::state_backup::{self, StateSnapshot};

/// Where every controller stands, as this one sees it.
pub fn status(raft: &RaftNode) -> pb::ControllerStatusResponse {
    let m = raft.raft.metrics().borrow().clone();
    let standing = raft.standing();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last_log = m.last_log_index.unwrap_or(0);
    let matched: BTreeMap<u64, u64> = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, log)| (*id, log.map(|l| l.index).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut nodes: Vec<pb::ControllerNodeStatus> = membership
        .nodes()
        .map(|(id, node)| {
            let is_me = *id == raft.id;
            let known = if is_me {
                Some(m.last_applied.map(|l| l.index).unwrap_or(0))
            } else {
                matched.get(id).copied()
            };
            pb::ControllerNodeStatus {
                id: node.name.clone(),
                addr: node.addr.clone(),
                membership: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                leader: m.current_leader == Some(*id),
                matched: known.unwrap_or(0),
                lag: known.map(|k| last_log.saturating_sub(k)).unwrap_or(0),
                lag_known: known.is_some() && (is_me || m.replication.is_some()),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let leader = standing.leader.clone().unwrap_or_default();
    pb::ControllerStatusResponse {
        answered_by: raft.me.name.clone(),
        answered_by_leader: m.current_leader == Some(raft.id),
        leader: leader.name,
        leader_addr: leader.addr,
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        last_log,
        deciding: standing.leading,
        nodes,
    }
}

fn must_lead(raft: &RaftNode) -> Result<(), Status> {
    if raft.is_leader() {
        Ok(())
    } else {
        Err(raft.not_leader())
    }
}

fn raft_error(what: &str, e: impl std::fmt::Display) -> Status {
    Status::aborted(format!("{what}: {e}"))
}

/// Add `name` at `addr`: as a learner (waiting until it has caught up), then as a voter.
pub async fn add(raft: &RaftNode, name: &str, addr: &str) -> Result<(), Status> {
    must_lead(raft)?;
    dr_proto::domain::HostName::new(name)
        .map_err(|e| Status::invalid_argument(format!("controller id {name:?} {e}")))?;
    if !(addr.starts_with("https://") || addr.starts_with("http://")) {
        return Err(Status::invalid_argument(format!(
            "address {addr:?} is not a URL: write it as https://HOST:PORT"
        )));
    }
    let id = node_id(name);
    let m = raft.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    if let Some(existing) = membership.get_node(&id) {
        if existing.name != name {
            return Err(Status::invalid_argument(format!(
                "controller id {name:?} collides with {:?}; choose another id",
                existing.name
            )));
        }
        if membership.voter_ids().any(|v| v == id) {
            return Err(Status::already_exists(format!(
                "controller {name} is already a voting member"
            )));
        }
    }
    tracing::info!(controller = name, addr, "adding a controller as a learner");
    raft.raft
        .add_learner(
            id,
            ControllerNode {
                name: name.to_string(),
                addr: addr.to_string(),
            },
            true,
        )
        .await
        .map_err(|e| raft_error("adding the learner failed", e))?;
    tracing::info!(controller = name, "caught up: making it a voter");
    raft.raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| raft_error("making it a voter failed", e))?;
    Ok(())
}

/// Remove `name` from the cluster (voter or learner).
pub async fn remove(raft: &RaftNode, name: &str) -> Result<(), Status> {
    must_lead(raft)?;
    let id = node_id(name);
    let m = raft.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    if membership.get_node(&id).is_none() {
        return Err(Status::not_found(format!(
            "no controller {name} in the cluster (see `drctl controller status`)"
        )));
    }
    if id == raft.id {
        return Err(Status::failed_precondition(format!(
            "{name} is the leader: stop it first (another controller takes over), then remove it there"
        )));
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(Status::failed_precondition("cannot remove the last voter"));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    tracing::info!(controller = name, "removing a controller");
    raft.raft
        .change_membership(change, false)
        .await
        .map_err(|e| raft_error("removing it failed", e))?;
    Ok(())
}

/// A consistent snapshot of the applied state (one state under the lock, as of its index).
pub fn current_snapshot(raft: &RaftNode) -> StateSnapshot {
    let applied = raft.applied.read().unwrap_or_else(|e| e.into_inner());
    state_backup::snapshot_of(
        applied.state.clone(),
        &raft.me.name,
        unix_ms(),
        applied.last_applied.map(|l| l.index).unwrap_or(0),
        applied.last_applied.map(|l| l.leader_id.term).unwrap_or(0),
    )
}

/// Write a snapshot to `url` (empty: the configured controller store) and prune old ones.
pub async fn backup(shared: &Shared, url: &str) -> Result<pb::ControllerBackupResponse, Status> {
    let url = match (url, &shared.config.controller_store) {
        ("", Some(configured)) => configured.clone(),
        ("", None) => {
            return Err(Status::invalid_argument(
                "no store: give --store URL (file:///DIR or s3://BUCKET/PREFIX), or set `controller_store` in [backup] of the controller config",
            ));
        }
        (given, _) => given.to_string(),
    };
    let snapshot = current_snapshot(&shared.raft);
    let keep = shared.config.decide.retention_keep_last as usize;
    let options = shared.config.store_options.clone();
    let (last_applied, taken_by, groups) = (
        snapshot.last_applied,
        snapshot.taken_by.clone(),
        snapshot.state.groups.len() as u64,
    );
    let store_url = url.clone();
    let id = tokio::task::spawn_blocking(move || {
        let store = state_backup::open(&store_url, &options)?;
        let id = state_backup::write(&*store, &snapshot)?;
        if let Err(e) = state_backup::prune(&*store, keep) {
            tracing::warn!(error = %e, "old controller snapshots not pruned");
        }
        Ok::<_, state_backup::StateBackupError>(id)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
    .map_err(|e| Status::unavailable(format!("controller backup to {url} failed: {e}")))?;
    tracing::info!(%id, store = %url, last_applied, "controller state backed up");
    Ok(pb::ControllerBackupResponse {
        id,
        store: url,
        last_applied,
        taken_by,
        groups,
    })
}
