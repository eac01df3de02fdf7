//! The controller's desired state and its single entry point, [`ControllerState::apply`].
//!
//! Every change to what the controller has decided (groups, members, epochs, primaries, mode)
//! is a [`StateCommand`] applied here. This function is pure and deterministic so the same log
//! of commands always yields the same state: today the log lives in redb ([`store`]); the
//! controller-HA work puts openraft's replicated log underneath without changing this file.
//!
//! Observed state (what agents last reported) is not here: it lives in memory only
//! (`crate::observed`) and is rebuilt from the agents after a restart.

pub mod store;

use std::collections::BTreeMap;

use dr_proto::domain::{Epoch, GroupName, HostName, Mode};
use serde::{Deserialize, Serialize};

/// Everything the controller has decided, per group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ControllerState {
    pub groups: BTreeMap<GroupName, GroupState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Increases by one at every change of primary; 0 = never had a primary.
    pub epoch: Epoch,
    pub primary: Option<HostName>,
    pub mode: Mode,
    pub members: BTreeMap<HostName, MemberRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub registered_at_unix_ms: u64,
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
}

impl ControllerState {
    pub fn group(&self, name: &GroupName) -> Option<&GroupState> {
        self.groups.get(name)
    }

    /// Apply one command. On error the state is untouched.
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
                let g = self
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| ApplyError::UnknownGroup(group.clone()))?;
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
                let g = self
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| ApplyError::UnknownGroup(group.clone()))?;
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
