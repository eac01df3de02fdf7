//! The decision core: every failover, restart, incident and lease decision, in one place, with
//! no I/O and no clock reads.
//!
//! ```text
//!   events ──▶ Decider::handle(event, now) ──▶ commands
//!   (agent sessions, reports, lease requests,   (persist a state change, talk to an agent,
//!    action results, operator requests, ticks)   repoint the LB, smoke-check, notify, reply)
//! ```
//!
//! The runtime (`crate::service::runtime`) owns the I/O: it feeds events in and executes the
//! commands *in order*; a `Persist` is durable before any later command runs, which is how
//! "the epoch is persisted before any agent is told" holds.
//!
//! Desired state is a [`ControllerState`] (the same pure `apply` the store uses, so the core's
//! copy and the store cannot diverge); observed state ([`MemberObs`]) is memory only.
//!
//! Safety invariants (checked in `debug_assert!`s here, in the seeded simulation and in tests):
//! - a lease is granted only to the recorded primary at the current epoch, and never while a
//!   transition away from it is in progress;
//! - another host is promoted only after the old primary's lease is surely expired
//!   (last grant + ttl + margin, or controller start + ttl + margin if the grant predates us)
//!   or the old primary released it;
//! - epochs only grow (`SetPrimary` requires exactly `epoch + 1`).

mod backups;
mod failover;
mod incidents;
mod member;
mod recovery;
mod session;
pub mod settings;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use dr_proto::domain::{
    Category, ControllerMessage, Epoch, GroupName, HealthReport, Hello, HostName, IncidentId,
    LeaseRelease, LeaseRequest, Mode,
};

pub use member::{Availability, LeaseView, MemberObs, ServiceCondition, service_condition};
pub use settings::Settings;

use crate::classify::Thresholds;
use crate::state::{ApplyOutcome, ControllerState, StateCommand};

pub type MemberKey = (GroupName, HostName);
pub type ActionId = u64;
pub type RequestId = u64;

/// The time of an event: monotonic (for leases and timeouts) and wall clock (for records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Since an arbitrary origin (the runtime's start).
    pub mono: Duration,
    pub unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OperatorRequest {
    Restart {
        group: GroupName,
        host: HostName,
    },
    Failover {
        group: GroupName,
        to: Option<HostName>,
        force: bool,
    },
    Switchover {
        group: GroupName,
        to: HostName,
        at_unix_ms: Option<u64>,
        force: bool,
    },
    SetMode {
        group: GroupName,
        mode: Mode,
    },
    Backup {
        group: GroupName,
        host: Option<HostName>,
        incremental: bool,
    },
    Restore {
        group: GroupName,
        host: HostName,
        backup_id: Option<String>,
        from_host: Option<HostName>,
        /// Restoring the current primary takes the service down: refused unless set.
        allow_primary: bool,
    },
    VerifyBackup {
        group: GroupName,
        backup_id: Option<String>,
        deep: bool,
    },
    Drill {
        group: GroupName,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    SessionOpened {
        key: MemberKey,
        session: u64,
        hello: Hello,
    },
    SessionClosed {
        key: MemberKey,
        session: u64,
    },
    Report {
        key: MemberKey,
        session: u64,
        report: HealthReport,
    },
    LeaseRequest {
        key: MemberKey,
        session: u64,
        request: LeaseRequest,
    },
    LeaseRelease {
        key: MemberKey,
        session: u64,
        release: LeaseRelease,
    },
    /// An agent action (restart, promote, demote), the LB repointing or the smoke request ended.
    ActionResult {
        id: ActionId,
        outcome: Result<String, String>,
    },
    Operator {
        request_id: RequestId,
        request: OperatorRequest,
    },
    Tick,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionReply {
    pub detail: String,
    /// The agent action this request started, when the reply comes before it finishes.
    pub action_id: Option<ActionId>,
    pub incident_id: Option<IncidentId>,
    pub epoch: Epoch,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReplyError {
    NotFound(String),
    /// The request makes no sense now (say why and what to do).
    Refused(String),
    /// It was tried and failed.
    Failed(String),
}

/// A message for the people on call.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub incident_id: Option<IncidentId>,
    pub group: GroupName,
    pub host: Option<HostName>,
    pub category: Option<Category>,
    pub escalation_step: Option<u32>,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Make this state change durable (before executing anything after it).
    Persist(StateCommand),
    /// Send to the agent of `key` on session `session` (if that session is still current).
    ToAgent {
        key: MemberKey,
        session: Option<u64>,
        message: ControllerMessage,
    },
    /// End this session with an error the agent will log.
    RefuseSession {
        key: MemberKey,
        session: u64,
        reason: String,
    },
    Reply {
        request_id: RequestId,
        outcome: Result<ActionReply, ReplyError>,
    },
    /// Route the group's traffic to `new_primary`; answer with `ActionResult { id }`.
    RepointLb {
        id: ActionId,
        group: GroupName,
        epoch: Epoch,
        new_primary: HostName,
        old_primary: Option<HostName>,
        /// Every other member: out of rotation (so the LB can never route to two primaries,
        /// whatever state it was left in).
        others: Vec<HostName>,
    },
    /// A request through the load balancer must be answered by `expect_host`; answer with
    /// `ActionResult { id }`.
    Smoke {
        id: ActionId,
        group: GroupName,
        expect_host: HostName,
    },
    Notify(Notification),
}

/// Why an action was started (so its result lands in the right place).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Purpose {
    Restart {
        key: MemberKey,
        automatic: bool,
        reply_to: Option<RequestId>,
    },
    Promote {
        key: MemberKey,
        epoch: Epoch,
    },
    Demote {
        key: MemberKey,
    },
    Repoint {
        group: GroupName,
        epoch: Epoch,
    },
    TransitionSmoke {
        group: GroupName,
        epoch: Epoch,
    },
    /// Make the load balancer match the recorded primary (startup, leadership, drift).
    LbSync {
        group: GroupName,
        epoch: Epoch,
    },
    IncidentSmoke {
        key: MemberKey,
        incident: IncidentId,
    },
    Backup {
        key: MemberKey,
        incremental: bool,
    },
    Retention {
        key: MemberKey,
    },
    ListBackups {
        key: MemberKey,
    },
    Verify {
        key: MemberKey,
    },
    Drill {
        key: MemberKey,
    },
    Restore {
        key: MemberKey,
        incident: IncidentId,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub purpose: Purpose,
    pub started: Duration,
    pub timeout: Duration,
}

pub struct Decider {
    pub(crate) settings: Settings,
    pub(crate) thresholds: Thresholds,
    pub(crate) desired: ControllerState,
    pub(crate) members: HashMap<MemberKey, MemberObs>,
    pub(crate) configured_primary: HashMap<GroupName, HostName>,
    pub(crate) pending: BTreeMap<ActionId, Pending>,
    pub(crate) failover_wanted: HashMap<GroupName, failover::Wanted>,
    /// The epoch whose primary the load balancer was last pointed at, and when we last tried.
    pub(crate) lb_synced: HashMap<GroupName, Epoch>,
    pub(crate) lb_sync_tried: HashMap<GroupName, Duration>,
    /// Backup bookkeeping that needs no persistence (rebuilt after a restart).
    pub(crate) backup_state: HashMap<GroupName, backups::GroupBackupState>,
    next_action: ActionId,
    /// Leases granted before this core existed (by a previous controller or leader) are
    /// honoured until this instant.
    pub(crate) inherited_leases_until: Duration,
    pub(crate) out: Vec<Command>,
}

impl Decider {
    /// Start deciding over `desired` (loaded from the store) at `now`.
    pub fn new(
        settings: Settings,
        thresholds: Thresholds,
        desired: ControllerState,
        configured_primary: HashMap<GroupName, HostName>,
        now: Now,
    ) -> Decider {
        let inherited_leases_until = now.mono + settings.lease_ttl + settings.lease_margin;
        Decider {
            settings,
            thresholds,
            desired,
            members: HashMap::new(),
            configured_primary,
            pending: BTreeMap::new(),
            failover_wanted: HashMap::new(),
            lb_synced: HashMap::new(),
            lb_sync_tried: HashMap::new(),
            backup_state: HashMap::new(),
            next_action: 1,
            inherited_leases_until,
            out: Vec::new(),
        }
    }

    pub fn desired(&self) -> &ControllerState {
        &self.desired
    }

    pub fn member(&self, key: &MemberKey) -> Option<&MemberObs> {
        self.members.get(key)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Handle one event; the commands to execute, in order.
    pub fn handle(&mut self, event: Event, now: Now) -> Vec<Command> {
        match event {
            Event::SessionOpened {
                key,
                session,
                hello,
            } => self.on_session_opened(key, session, hello, now),
            Event::SessionClosed { key, session } => self.on_session_closed(key, session, now),
            Event::Report {
                key,
                session,
                report,
            } => self.on_report(key, session, report, now),
            Event::LeaseRequest {
                key,
                session,
                request,
            } => self.on_lease_request(key, session, request, now),
            Event::LeaseRelease {
                key,
                session,
                release,
            } => self.on_lease_release(key, session, release, now),
            Event::ActionResult { id, outcome } => self.on_action_result(id, outcome, now),
            Event::Operator {
                request_id,
                request,
            } => self.on_operator(request_id, request, now),
            Event::Tick => self.on_tick(now),
        }
        self.check_invariants(now);
        std::mem::take(&mut self.out)
    }

    /// Apply to our copy and emit for the store. A refused command is a bug in the core.
    pub(crate) fn persist(&mut self, command: StateCommand) -> bool {
        match self.desired.apply(&command) {
            Ok(ApplyOutcome::Changed) => {
                self.out.push(Command::Persist(command));
                true
            }
            Ok(ApplyOutcome::Unchanged) => true,
            Err(e) => {
                debug_assert!(
                    false,
                    "core proposed an invalid state change {command:?}: {e}"
                );
                false
            }
        }
    }

    pub(crate) fn new_action(&mut self, purpose: Purpose, timeout: Duration, now: Now) -> ActionId {
        let id = self.next_action;
        self.next_action += 1;
        self.pending.insert(
            id,
            Pending {
                purpose,
                started: now.mono,
                timeout,
            },
        );
        id
    }

    /// Members of `group` other than `host`.
    pub(crate) fn others(&self, group: &GroupName, host: &HostName) -> Vec<HostName> {
        self.desired
            .group(group)
            .map(|g| g.members.keys().filter(|h| *h != host).cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn obs(&mut self, key: &MemberKey) -> &mut MemberObs {
        self.members.entry(key.clone()).or_default()
    }

    /// True when no valid lease of `key` can exist any more (released, or expired with margin).
    pub fn lease_clear(&self, key: &MemberKey, now: Now) -> bool {
        let Some(obs) = self.members.get(key) else {
            return now.mono >= self.inherited_leases_until;
        };
        if obs.lease.released {
            return true;
        }
        let horizon = match obs.lease.granted_at {
            Some(at) => at + self.settings.lease_ttl + self.settings.lease_margin,
            None => Duration::ZERO,
        };
        now.mono >= horizon.max(self.inherited_leases_until)
    }

    /// Remaining lease of `key` as the controller granted it.
    pub fn lease_remaining(&self, key: &MemberKey, now: Now) -> Option<Duration> {
        let obs = self.members.get(key)?;
        if obs.lease.released {
            return None;
        }
        let until = obs.lease.granted_at? + self.settings.lease_ttl;
        until.checked_sub(now.mono).filter(|d| !d.is_zero())
    }

    fn on_tick(&mut self, now: Now) {
        self.expire_pending(now);
        self.update_availability(now);
        let groups: Vec<GroupName> = self.desired.groups.keys().cloned().collect();
        for group in groups {
            self.drive_transition(&group, now);
            self.maybe_failover(&group, now);
            self.sync_lb(&group, now);
            self.scheduled_switchover(&group, now);
            self.schedule_backups(&group, now);
            self.watch_restores(&group, now);
        }
        self.escalate(now);
    }

    /// In debug builds, assert the safety properties after every event.
    fn check_invariants(&self, now: Now) {
        if !cfg!(debug_assertions) {
            return;
        }
        for (name, g) in &self.desired.groups {
            // a granted, unexpired lease only for the recorded primary
            for (key, obs) in &self.members {
                if &key.0 != name || obs.lease.released {
                    continue;
                }
                let Some(at) = obs.lease.granted_at else {
                    continue;
                };
                let valid = now.mono < at + self.settings.lease_ttl;
                if valid {
                    debug_assert!(
                        g.primary.as_ref() == Some(&key.1)
                            || g.transition.as_ref().is_some_and(|t| {
                                t.from.as_ref() == Some(&key.1)
                                    || t.waiting_on.as_ref() == Some(&key.1)
                            }),
                        "lease valid for {key:?} which is neither primary nor the outgoing primary"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod backups_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
pub(crate) use tests as tests_support;
