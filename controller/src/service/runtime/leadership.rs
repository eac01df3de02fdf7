//! Becoming and ceasing to be the deciding controller.
//!
//! Invariants (DESIGN.md § Safety; tested in tests/tests/controller_ha.rs):
//! - only the Raft leader holds a decision core, and it builds the core from the applied state
//!   *after* committing an entry of its own term — every entry of earlier leaders (and of its
//!   own earlier terms) is then applied, so the core starts from everything ever committed;
//! - a new core waits a full lease ttl plus margin before it may fail a primary over (the
//!   core's rule for leases it did not grant), so a lease granted by the previous leader has
//!   always run out first;
//! - leases are granted and time-driven decisions made only while a quorum acknowledged this
//!   leader within the minimum election timeout (no other leader can exist then); after
//!   [`STALE_STEP_DOWN`] without one, the controller steps down: it drops the core, ends every
//!   agent session and fails pending requests — the primary keeps serving until its lease
//!   ends, and agents move to the controller that leads now (a shorter hiccup, such as a
//!   starved CPU, only pauses grants and timers);
//! - a core serves the term it was built in only: any other term (even one this controller
//!   leads again) means entries it has not seen may exist, so it is rebuilt;
//! - a decision's `Persist`s are committed before anything after them runs; a failed or
//!   refused commit ends the leadership the same way (the core's copy of the state may then
//!   differ from the replicated one, so it must not be used again).

use std::time::{Duration, Instant};

use tonic::Status;

use super::Runtime;
use crate::decide::{Decider, ReplyError};
use crate::raft::RaftRequest;
use crate::state::StateCommand;

/// Longest a commit may take before this controller gives up leading.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Without a fresh quorum for this long, a leader stops deciding altogether.
const STALE_STEP_DOWN: Duration = Duration::from_secs(1);

impl Runtime {
    /// Compare what Raft says with whether this controller holds a decision core, and fix it.
    pub(super) async fn leadership(&mut self) {
        let standing = self.raft.standing();
        let leader = self.raft.is_leader();
        if self.decider.is_some() && self.leader_term != standing.term {
            self.step_down("the Raft term changed");
        }
        match (&self.decider, leader, standing.leading) {
            (None, true, true) => self.become_leader(standing.term).await,
            (Some(_), false, _) => {
                let to = standing
                    .leader
                    .map(|l| l.name)
                    .unwrap_or_else(|| "nobody yet".into());
                self.step_down(&format!("another controller leads now ({to})"));
            }
            (Some(_), true, false) => {
                let since = *self.stale_since.get_or_insert_with(Instant::now);
                if since.elapsed() > STALE_STEP_DOWN {
                    self.step_down("lost the quorum of controllers");
                }
            }
            (Some(_), true, true) => self.stale_since = None,
            _ => {}
        }
    }

    async fn become_leader(&mut self, term: u64) {
        let config = &self.shared.config;
        let commands = config
            .groups
            .iter()
            .map(|g| StateCommand::EnsureGroup {
                group: g.name.clone(),
                initial_primary: g.primary.clone(),
                at_unix_ms: super::unix_ms(),
            })
            .collect();
        // Also the barrier: once this entry is applied, so is everything committed before it.
        let write = self.raft.raft.client_write(RaftRequest {
            replace: None,
            commands,
        });
        match tokio::time::timeout(COMMIT_TIMEOUT, write).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, term, "elected, but the first entry did not commit");
                return;
            }
            Err(_) => {
                tracing::warn!(term, "elected, but the first entry did not commit in time");
                return;
            }
        }
        let state = self
            .raft
            .applied
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .state
            .clone();
        let configured = config
            .groups
            .iter()
            .filter_map(|g| g.primary.clone().map(|p| (g.name.clone(), p)))
            .collect();
        self.decider = Some(Decider::new(
            config.decide.clone(),
            config.thresholds.clone(),
            state,
            configured,
            self.now(),
        ));
        self.stale_since = None;
        self.leader_term = term;
        tracing::info!(
            id = %config.id,
            term,
            "leading the controller cluster: deciding (failovers only after a lease ttl + margin)"
        );
    }

    /// Stop deciding: drop the core, end agent sessions, fail pending requests.
    pub(super) fn step_down(&mut self, why: &str) {
        if self.decider.take().is_none() {
            return;
        }
        self.stale_since = None;
        tracing::warn!(reason = why, "no longer deciding");
        let status = self.raft.not_leader();
        for (_, (_, outbox)) in self.sessions.drain() {
            let _ = outbox.try_send(Err(status.clone()));
        }
        for (_, (_, updates)) in self.direct.drain() {
            drop(updates);
        }
        for (_, reply) in self.replies.drain() {
            let _ = reply.send(Err(ReplyError::Failed(format!(
                "this controller stopped leading before the request finished ({why}); \
                 check `drctl status` and `drctl history`, then retry"
            ))));
        }
        self.progress.clear();
    }

    /// Commit state commands as one Raft entry; false (and no longer leading) if that failed.
    pub(super) async fn commit(&mut self, commands: Vec<StateCommand>) -> bool {
        let n = commands.len();
        let write = self.raft.raft.client_write(RaftRequest {
            replace: None,
            commands,
        });
        let why = match tokio::time::timeout(COMMIT_TIMEOUT, write).await {
            Ok(Ok(response)) => {
                match response.data.outcomes.iter().find_map(|o| o.as_ref().err()) {
                    None => {
                        tracing::debug!(commands = n, log = %response.log_id, "committed");
                        return true;
                    }
                    Some(refused) => format!("the replicated state refused a decision: {refused}"),
                }
            }
            Ok(Err(e)) => format!("cannot commit a decision: {e}"),
            Err(_) => format!("cannot commit a decision within {COMMIT_TIMEOUT:?}"),
        };
        tracing::error!(error = %why, "stepping down");
        self.step_down(&why);
        false
    }
}

/// The status an agent or client gets from a controller that does not lead.
pub(crate) fn not_leader_status(message: String, leader_addr: Option<&str>) -> Status {
    let mut status = Status::unavailable(message);
    if let Some(addr) = leader_addr
        && let Ok(v) = addr.parse()
    {
        status
            .metadata_mut()
            .insert(dr_proto::LEADER_HINT_HEADER, v);
    }
    status
}
