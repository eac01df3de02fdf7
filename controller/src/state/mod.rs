//! The controller's desired state and its single entry point, [`ControllerState::apply`].
//!
//! Every change to what the controller has decided (groups, members, epochs, primaries, mode,
//! transitions in progress, incidents, role-change history) is a [`StateCommand`] applied here.
//! This function is pure and deterministic so the same log of commands always yields the same
//! state on every controller: the log is openraft's replicated log (`crate::raft`).
//!
//! Observed state (what agents last reported, leases as granted) is not here: it lives in the
//! decision core's memory (`crate::decide`) and is rebuilt from the agents after a restart.

use std::collections::BTreeMap;

use dr_proto::domain::{
    BackupRecord, ChangeKind, DrillOutcome, Epoch, GroupName, HostName, Incident, IncidentId, Mode,
    Phase, RoleChange, TimelineEntry,
};
use serde::{Deserialize, Serialize};

/// Role changes kept in the history (older ones are dropped).
pub const HISTORY_KEEP: usize = 1000;
/// Resolved incidents kept (open ones are always kept).
pub const RESOLVED_INCIDENTS_KEEP: usize = 1000;

/// Everything the controller has decided.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControllerState {
    pub groups: BTreeMap<GroupName, GroupState>,
    #[serde(default)]
    pub incidents: BTreeMap<IncidentId, Incident>,
    #[serde(default)]
    pub next_incident_id: IncidentId,
    #[serde(default)]
    pub role_changes: Vec<RoleChange>,
    /// Backups known per group (the catalog), newest last.
    #[serde(default)]
    pub backups: BTreeMap<GroupName, Vec<CatalogEntry>>,
    /// The last restore drill per group.
    #[serde(default)]
    pub drills: BTreeMap<GroupName, DrillRecord>,
}

/// A backup in the catalog, with what the control plane learned about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub record: BackupRecord,
    /// `Some(valid)` after a verification.
    pub verified: Option<bool>,
    pub last_drill_at_unix_ms: Option<u64>,
    pub last_drill_ok: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub at_unix_ms: u64,
    pub outcome: DrillOutcome,
    /// The last drill that succeeded (kept when a later one fails).
    pub last_ok_at_unix_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Increases by one at every change of primary; 0 = never had a primary.
    pub epoch: Epoch,
    pub primary: Option<HostName>,
    pub mode: Mode,
    pub members: BTreeMap<HostName, MemberRecord>,
    /// A change of primary in progress (persisted so a restarted or new leader continues it).
    #[serde(default)]
    pub transition: Option<Transition>,
    /// When the last automatic failover started (cooldown against flapping).
    #[serde(default)]
    pub last_failover_unix_ms: Option<u64>,
    #[serde(default)]
    pub scheduled_switchover: Option<ScheduledSwitchover>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub registered_at_unix_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionPhase {
    /// Switchover: waiting for the old primary to demote itself and give its lease back.
    Demoting,
    /// The new primary is recorded at the new epoch; waiting for its promote hook.
    Promoting,
    /// Repointing the load balancer.
    Repointing,
    /// Smoke request through the load balancer.
    Verifying,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub kind: ChangeKind,
    pub from: Option<HostName>,
    pub to: HostName,
    /// The epoch the new primary has (or will have, while demoting).
    pub epoch: Epoch,
    pub phase: TransitionPhase,
    pub started_at_unix_ms: u64,
    /// When the problem was first seen (or the operator asked): the start of the RTO.
    pub detected_at_unix_ms: u64,
    pub incident_id: Option<IncidentId>,
    pub reason: String,
    /// Candidates that failed during this transition (not tried again).
    #[serde(default)]
    pub failed: Vec<HostName>,
    /// The host whose lease must surely be gone before `to` is promoted.
    #[serde(default)]
    pub waiting_on: Option<HostName>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduledSwitchover {
    pub to: HostName,
    pub at_unix_ms: u64,
    pub force: bool,
}

/// A change of desired state. Serialized into the log, so variants are only ever added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum StateCommand {
    /// Create the group if missing. With `initial_primary`, a new group starts at epoch 1 with
    /// that primary (the operator named it in the config), registered as a member.
    EnsureGroup {
        group: GroupName,
        initial_primary: Option<HostName>,
        at_unix_ms: u64,
    },
    /// Record a host as member of a group (first time its agent said hello).
    RegisterMember {
        group: GroupName,
        host: HostName,
        at_unix_ms: u64,
    },
    /// Make `host` the primary at `epoch`. Refused unless `epoch` is exactly the current epoch
    /// plus one: a compare-and-set that keeps epochs strictly increasing even if two decisions
    /// race.
    SetPrimary {
        group: GroupName,
        host: HostName,
        epoch: Epoch,
    },
    SetMode {
        group: GroupName,
        mode: Mode,
    },
    /// Start, replace or (with `None`) end the group's transition.
    SetTransition {
        group: GroupName,
        transition: Option<Transition>,
    },
    /// An automatic failover started now (cooldown).
    MarkFailover {
        group: GroupName,
        at_unix_ms: u64,
    },
    ScheduleSwitchover {
        group: GroupName,
        switchover: Option<ScheduledSwitchover>,
    },
    RecordRoleChange {
        change: RoleChange,
    },
    /// Open an incident; its id must be `next_incident_id`.
    OpenIncident {
        incident: Incident,
    },
    /// Add to an incident's timeline, optionally moving its phase or escalation step.
    UpdateIncident {
        id: IncidentId,
        entry: Option<TimelineEntry>,
        phase: Option<Phase>,
        escalation_step: Option<u32>,
    },
    ResolveIncident {
        id: IncidentId,
        at_unix_ms: u64,
        entry: TimelineEntry,
    },
    /// A backup finished (or was found in the store).
    RecordBackup {
        group: GroupName,
        record: BackupRecord,
        verified: Option<bool>,
    },
    RecordVerify {
        group: GroupName,
        id: String,
        valid: bool,
    },
    RecordDrill {
        group: GroupName,
        at_unix_ms: u64,
        outcome: DrillOutcome,
    },
    /// Retention deleted these backups from the store.
    ForgetBackups {
        group: GroupName,
        ids: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Changed,
    /// The command was valid but the state already said so (idempotent replay).
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("group `{0}` does not exist")]
    UnknownGroup(GroupName),
    #[error("host `{host}` is not a member of group `{group}`")]
    UnknownMember { group: GroupName, host: HostName },
    #[error("epoch {proposed} for group `{group}` is not the next epoch (current {current})")]
    EpochNotNext {
        group: GroupName,
        current: Epoch,
        proposed: Epoch,
    },
    #[error("incident {0} does not exist")]
    UnknownIncident(IncidentId),
    #[error("incident id {proposed} is not the next id ({next})")]
    IncidentIdNotNext {
        next: IncidentId,
        proposed: IncidentId,
    },
}

impl ControllerState {
    pub fn group(&self, name: &GroupName) -> Option<&GroupState> {
        self.groups.get(name)
    }

    fn group_mut(&mut self, name: &GroupName) -> Result<&mut GroupState, ApplyError> {
        self.groups
            .get_mut(name)
            .ok_or_else(|| ApplyError::UnknownGroup(name.clone()))
    }

    /// The open incident about `host` in `group`, if any.
    pub fn open_incident_for(
        &self,
        group: &GroupName,
        host: Option<&HostName>,
    ) -> Option<&Incident> {
        self.incidents
            .values()
            .rev()
            .find(|i| i.is_open() && &i.group == group && i.host.as_ref() == host)
    }

    /// Apply one command. On error the state is untouched.
    ///
    /// Invariant: an `Err` leaves the state exactly as it was (every check comes before the
    /// first change), so a refused command needs no undo; the Raft state machine relies on it
    /// (test: `a_refused_command_changes_nothing`).
    pub fn apply(&mut self, command: &StateCommand) -> Result<ApplyOutcome, ApplyError> {
        match command {
            StateCommand::EnsureGroup {
                group,
                initial_primary,
                at_unix_ms,
            } => {
                if self.groups.contains_key(group) {
                    return Ok(ApplyOutcome::Unchanged);
                }
                let mut state = GroupState::default();
                if let Some(primary) = initial_primary {
                    state.epoch = Epoch(1);
                    state.primary = Some(primary.clone());
                    state.members.insert(
                        primary.clone(),
                        MemberRecord {
                            registered_at_unix_ms: *at_unix_ms,
                        },
                    );
                }
                self.groups.insert(group.clone(), state);
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::RegisterMember {
                group,
                host,
                at_unix_ms,
            } => {
                let g = self.group_mut(group)?;
                if g.members.contains_key(host) {
                    return Ok(ApplyOutcome::Unchanged);
                }
                g.members.insert(
                    host.clone(),
                    MemberRecord {
                        registered_at_unix_ms: *at_unix_ms,
                    },
                );
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::SetPrimary { group, host, epoch } => {
                let g = self.group_mut(group)?;
                if g.epoch == *epoch && g.primary.as_ref() == Some(host) {
                    return Ok(ApplyOutcome::Unchanged);
                }
                if *epoch != g.epoch.next() {
                    return Err(ApplyError::EpochNotNext {
                        group: group.clone(),
                        current: g.epoch,
                        proposed: *epoch,
                    });
                }
                if !g.members.contains_key(host) {
                    return Err(ApplyError::UnknownMember {
                        group: group.clone(),
                        host: host.clone(),
                    });
                }
                let before = g.epoch;
                g.epoch = *epoch;
                g.primary = Some(host.clone());
                debug_assert!(g.epoch > before, "invariant: epochs only grow");
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::SetMode { group, mode } => {
                let g = self.group_mut(group)?;
                if g.mode == *mode {
                    return Ok(ApplyOutcome::Unchanged);
                }
                g.mode = *mode;
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::SetTransition { group, transition } => {
                let g = self.group_mut(group)?;
                if &g.transition == transition {
                    return Ok(ApplyOutcome::Unchanged);
                }
                g.transition = transition.clone();
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::MarkFailover { group, at_unix_ms } => {
                let g = self.group_mut(group)?;
                g.last_failover_unix_ms = Some(*at_unix_ms);
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::ScheduleSwitchover { group, switchover } => {
                let g = self.group_mut(group)?;
                if &g.scheduled_switchover == switchover {
                    return Ok(ApplyOutcome::Unchanged);
                }
                g.scheduled_switchover = switchover.clone();
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::RecordRoleChange { change } => {
                self.role_changes.push(change.clone());
                if self.role_changes.len() > HISTORY_KEEP {
                    let extra = self.role_changes.len() - HISTORY_KEEP;
                    self.role_changes.drain(..extra);
                }
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::OpenIncident { incident } => {
                if incident.id != self.next_incident_id.max(1) {
                    return Err(ApplyError::IncidentIdNotNext {
                        next: self.next_incident_id.max(1),
                        proposed: incident.id,
                    });
                }
                self.incidents.insert(incident.id, incident.clone());
                self.next_incident_id = incident.id + 1;
                self.trim_incidents();
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::UpdateIncident {
                id,
                entry,
                phase,
                escalation_step,
            } => {
                let i = self
                    .incidents
                    .get_mut(id)
                    .ok_or(ApplyError::UnknownIncident(*id))?;
                if let Some(e) = entry {
                    i.timeline.push(e.clone());
                }
                if let Some(p) = phase {
                    i.phase = *p;
                }
                if let Some(s) = escalation_step {
                    i.escalation_step = *s;
                }
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::RecordBackup {
                group,
                record,
                verified,
            } => {
                let list = self.backups.entry(group.clone()).or_default();
                match list
                    .iter_mut()
                    .find(|e| e.record.id == record.id && e.record.host == record.host)
                {
                    Some(e) => {
                        e.record = record.clone();
                        if verified.is_some() {
                            e.verified = *verified;
                        }
                    }
                    None => list.push(CatalogEntry {
                        record: record.clone(),
                        verified: *verified,
                        last_drill_at_unix_ms: None,
                        last_drill_ok: None,
                    }),
                }
                list.sort_by_key(|e| e.record.created_at_unix_ms);
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::RecordVerify { group, id, valid } => {
                let e = self
                    .backups
                    .get_mut(group)
                    .and_then(|l| l.iter_mut().find(|e| &e.record.id == id));
                match e {
                    Some(e) => {
                        e.verified = Some(*valid);
                        Ok(ApplyOutcome::Changed)
                    }
                    None => Ok(ApplyOutcome::Unchanged),
                }
            }
            StateCommand::RecordDrill {
                group,
                at_unix_ms,
                outcome,
            } => {
                let last_ok = self.drills.get(group).and_then(|d| d.last_ok_at_unix_ms);
                self.drills.insert(
                    group.clone(),
                    DrillRecord {
                        at_unix_ms: *at_unix_ms,
                        outcome: outcome.clone(),
                        last_ok_at_unix_ms: if outcome.ok {
                            Some(*at_unix_ms)
                        } else {
                            last_ok
                        },
                    },
                );
                if let Some(e) = self
                    .backups
                    .get_mut(group)
                    .and_then(|l| l.iter_mut().find(|e| e.record.id == outcome.backup_id))
                {
                    e.last_drill_at_unix_ms = Some(*at_unix_ms);
                    e.last_drill_ok = Some(outcome.ok);
                }
                Ok(ApplyOutcome::Changed)
            }
            StateCommand::ForgetBackups { group, ids } => {
                let Some(list) = self.backups.get_mut(group) else {
                    return Ok(ApplyOutcome::Unchanged);
                };
                let before = list.len();
                list.retain(|e| !ids.contains(&e.record.id));
                Ok(if list.len() == before {
                    ApplyOutcome::Unchanged
                } else {
                    ApplyOutcome::Changed
                })
            }
            StateCommand::ResolveIncident {
                id,
                at_unix_ms,
                entry,
            } => {
                let i = self
                    .incidents
                    .get_mut(id)
                    .ok_or(ApplyError::UnknownIncident(*id))?;
                if i.phase == Phase::Resolved {
                    return Ok(ApplyOutcome::Unchanged);
                }
                i.phase = Phase::Resolved;
                i.resolved_at_unix_ms = Some(*at_unix_ms);
                i.time_to_recovery_ms = Some(at_unix_ms.saturating_sub(i.opened_at_unix_ms));
                i.timeline.push(entry.clone());
                self.trim_incidents();
                Ok(ApplyOutcome::Changed)
            }
        }
    }

    fn trim_incidents(&mut self) {
        let resolved: Vec<IncidentId> = self
            .incidents
            .values()
            .filter(|i| !i.is_open())
            .map(|i| i.id)
            .collect();
        if resolved.len() > RESOLVED_INCIDENTS_KEEP {
            for id in &resolved[..resolved.len() - RESOLVED_INCIDENTS_KEEP] {
                self.incidents.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> GroupName {
        GroupName::new(s).unwrap()
    }
    fn h(s: &str) -> HostName {
        HostName::new(s).unwrap()
    }

    fn with_members() -> ControllerState {
        let mut s = ControllerState::default();
        s.apply(&StateCommand::EnsureGroup {
            group: g("g"),
            initial_primary: None,
            at_unix_ms: 1,
        })
        .unwrap();
        for host in ["a", "b"] {
            s.apply(&StateCommand::RegisterMember {
                group: g("g"),
                host: h(host),
                at_unix_ms: 1,
            })
            .unwrap();
        }
        s
    }

    #[test]
    fn set_primary_requires_the_next_epoch() {
        let mut s = with_members();
        let set = |host: &str, epoch| StateCommand::SetPrimary {
            group: g("g"),
            host: h(host),
            epoch: Epoch(epoch),
        };
        assert_eq!(s.apply(&set("a", 1)), Ok(ApplyOutcome::Changed));
        // replay is harmless
        assert_eq!(s.apply(&set("a", 1)), Ok(ApplyOutcome::Unchanged));
        // a stale decision (same epoch, other host) and a skipped epoch are refused
        let before = s.clone();
        assert!(matches!(
            s.apply(&set("b", 1)),
            Err(ApplyError::EpochNotNext { .. })
        ));
        assert!(matches!(
            s.apply(&set("b", 3)),
            Err(ApplyError::EpochNotNext { .. })
        ));
        assert_eq!(s, before, "a refused command leaves the state untouched");
        assert_eq!(s.apply(&set("b", 2)), Ok(ApplyOutcome::Changed));
        assert_eq!(s.groups[&g("g")].primary, Some(h("b")));
    }

    #[test]
    fn a_refused_command_changes_nothing() {
        let mut s = with_members();
        s.apply(&StateCommand::SetPrimary {
            group: g("g"),
            host: h("a"),
            epoch: Epoch(1),
        })
        .unwrap();
        let before = s.clone();
        let refused = [
            StateCommand::RegisterMember {
                group: g("nope"),
                host: h("c"),
                at_unix_ms: 2,
            },
            StateCommand::SetPrimary {
                group: g("g"),
                host: h("zz"),
                epoch: Epoch(2),
            },
            StateCommand::SetPrimary {
                group: g("g"),
                host: h("b"),
                epoch: Epoch(5),
            },
            StateCommand::SetPrimary {
                group: g("nope"),
                host: h("a"),
                epoch: Epoch(1),
            },
            StateCommand::SetTransition {
                group: g("nope"),
                transition: None,
            },
            StateCommand::MarkFailover {
                group: g("nope"),
                at_unix_ms: 3,
            },
            StateCommand::ScheduleSwitchover {
                group: g("nope"),
                switchover: None,
            },
            StateCommand::UpdateIncident {
                id: 99,
                entry: None,
                phase: Some(Phase::Resolved),
                escalation_step: Some(3),
            },
        ];
        for cmd in &refused {
            assert!(s.apply(cmd).is_err(), "{cmd:?} was accepted");
            assert_eq!(s, before, "{cmd:?} was refused but changed the state");
        }
    }

    #[test]
    fn primary_must_be_a_member() {
        let mut s = with_members();
        let r = s.apply(&StateCommand::SetPrimary {
            group: g("g"),
            host: h("zz"),
            epoch: Epoch(1),
        });
        assert!(matches!(r, Err(ApplyError::UnknownMember { .. })));
    }

    #[test]
    fn configured_primary_starts_at_epoch_one_and_ensure_is_idempotent() {
        let mut s = ControllerState::default();
        let cmd = StateCommand::EnsureGroup {
            group: g("g"),
            initial_primary: Some(h("a")),
            at_unix_ms: 1,
        };
        assert_eq!(s.apply(&cmd), Ok(ApplyOutcome::Changed));
        assert_eq!(s.apply(&cmd), Ok(ApplyOutcome::Unchanged));
        assert_eq!(s.groups[&g("g")].epoch, Epoch(1));
        assert!(s.groups[&g("g")].members.contains_key(&h("a")));
    }

    #[test]
    fn commands_serialize_stably() {
        let cmd = StateCommand::SetPrimary {
            group: g("g"),
            host: h("a"),
            epoch: Epoch(4),
        };
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(
            json,
            r#"{"op":"set_primary","group":"g","host":"a","epoch":4}"#
        );
        assert_eq!(serde_json::from_str::<StateCommand>(&json).unwrap(), cmd);
    }
}
