//! Changes of primary: automatic failover (the runbook's Procedure 3), operator failover and
//! planned switchover. Each is a persisted [`Transition`] driven phase by phase:
//! `Demoting` (wait until the outgoing holder's lease is surely gone) → `Promoting` (new primary
//! recorded at epoch+1, promote hook) → `Repointing` (load balancer) → `Verifying` (smoke request).

use std::time::Duration;

use dr_proto::domain::{
    Action, Category, ChangeKind, Command as AgentCommand, ControllerMessage, EntryKind, Epoch,
    GroupName, Health, HostName, Mode, RoleChange,
};

use super::{
    ActionReply, Command, Decider, MemberKey, Now, OperatorRequest, Purpose, ReplyError, RequestId,
};
use crate::state::{ScheduledSwitchover, StateCommand, Transition, TransitionPhase};

/// Why the group wants a new primary, and since when (the start of the RTO).
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub reason: String,
    pub detected_unix_ms: u64,
    /// An incident saying "no candidate" was already raised for this episode.
    pub no_candidate_raised: bool,
}

impl Decider {
    /// The RTO starts at the first evidence of the failure: the primary's incident if one is
    /// open, or its last sign of life if that is earlier (a lost host is only declared lost once
    /// its lease has surely expired, but its clients lost it at its last message).
    pub(crate) fn want_failover(&mut self, group: &GroupName, reason: &str, now: Now) {
        let primary = self.desired.group(group).and_then(|g| g.primary.clone());
        let incident = primary
            .as_ref()
            .and_then(|p| self.desired.open_incident_for(group, Some(p)))
            .map(|i| i.opened_at_unix_ms);
        let last_seen = primary
            .and_then(|p| self.members.get(&(group.clone(), p)))
            .and_then(|m| m.last_seen)
            .map(|t| {
                now.unix_ms
                    .saturating_sub(now.mono.saturating_sub(t).as_millis() as u64)
            });
        let detected = [incident, last_seen]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now.unix_ms);
        self.failover_wanted.entry(group.clone()).or_insert(Wanted {
            reason: reason.to_string(),
            detected_unix_ms: detected,
            no_candidate_raised: false,
        });
    }

    /// Healthy replicas in preference order: priority, then replication lag, then freshest.
    pub(crate) fn candidates(
        &self,
        group: &GroupName,
        exclude: &[HostName],
        force: bool,
        now: Now,
    ) -> Vec<HostName> {
        let Some(g) = self.desired.group(group) else {
            return Vec::new();
        };
        let mut list: Vec<(i32, f64, std::cmp::Reverse<Duration>, HostName)> = Vec::new();
        for host in g.members.keys() {
            if g.primary.as_ref() == Some(host) || exclude.contains(host) {
                continue;
            }
            let key = (group.clone(), host.clone());
            let Some(obs) = self.members.get(&key) else {
                continue;
            };
            if !obs.fresh(now.mono, self.settings.suspect_after) || !obs.can("promote") {
                continue;
            }
            let health = obs
                .verdict
                .as_ref()
                .map(|v| v.health)
                .unwrap_or(Health::Unknown);
            if !force && !matches!(health, Health::Green | Health::Yellow) {
                continue;
            }
            if !force && obs.no_failover {
                continue;
            }
            let lag = obs
                .last_report
                .as_ref()
                .and_then(|r| r.erlang.as_ref())
                .and_then(|e| e.replication_lag_ms)
                .unwrap_or(0.0);
            if !force
                && self
                    .settings
                    .max_replication_lag_ms
                    .is_some_and(|max| lag > max)
            {
                continue;
            }
            list.push((
                obs.priority,
                lag,
                std::cmp::Reverse(obs.last_report_at.unwrap_or_default()),
                host.clone(),
            ));
        }
        list.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        list.into_iter().map(|x| x.3).collect()
    }

    /// Why `to` cannot be promoted now (operator requests), if it cannot.
    fn target_problem(
        &self,
        group: &GroupName,
        to: &HostName,
        force: bool,
        now: Now,
    ) -> Option<String> {
        let g = self.desired.group(group)?;
        if !g.members.contains_key(to) {
            return Some(format!("`{to}` is not a member of group `{group}`"));
        }
        if g.primary.as_ref() == Some(to) {
            return Some(format!("`{to}` is already the primary"));
        }
        let key = (group.clone(), to.clone());
        let obs = self.members.get(&key)?;
        if !obs.connected() {
            return Some(format!("the agent of `{to}` is not connected"));
        }
        if !obs.can("promote") {
            return Some(format!("the agent of `{to}` cannot promote"));
        }
        if force {
            return None;
        }
        if !self.candidates(group, &[], false, now).contains(to) {
            let reasons = obs
                .verdict
                .as_ref()
                .map(|v| v.reasons.join("; "))
                .unwrap_or_default();
            let health = obs
                .verdict
                .as_ref()
                .map(|v| v.health)
                .unwrap_or(Health::Unknown);
            return Some(format!(
                "`{to}` is not a healthy candidate ({health}{}{}): use --force to promote it anyway",
                if reasons.is_empty() { "" } else { ": " },
                reasons
            ));
        }
        None
    }

    pub(crate) fn maybe_failover(&mut self, group: &GroupName, now: Now) {
        let Some(g) = self.desired.group(group) else {
            return;
        };
        if g.transition.is_some() {
            return;
        }
        let Some(primary) = g.primary.clone() else {
            return;
        };
        let key = (group.clone(), primary.clone());
        // A primary that answers, is healthy and holds its lease needs nothing.
        let recovered = self.members.get(&key).is_some_and(|o| {
            o.fresh(now.mono, self.settings.suspect_after)
                && !o.lease.released
                && o.restart_in_flight.is_none()
                && o.verdict.as_ref().is_some_and(|v| v.health != Health::Red)
        });
        if recovered {
            self.failover_wanted.remove(group);
            return;
        }
        if g.mode != Mode::Automatic || !self.failover_wanted.contains_key(group) {
            return;
        }
        if let Some(last) = g.last_failover_unix_ms
            && now.unix_ms < last + self.settings.failover_cooldown.as_millis() as u64
        {
            return;
        }
        if !self.lease_clear(&key, now) {
            return;
        }
        let wanted = self.failover_wanted.get(group).cloned().expect("checked");
        let Some(to) = self.candidates(group, &[], false, now).into_iter().next() else {
            if !wanted.no_candidate_raised {
                let (id, _) = self.incident_for(
                    group,
                    Some(&primary),
                    Category::NodeFailure,
                    &format!("{primary} lost"),
                    &format!("detected: {}", wanted.reason),
                    now,
                );
                self.incident_note(id, EntryKind::Escalation, "no healthy replica to promote: nothing unsafe done; a human must act (drctl failover --to HOST --force)", None, now);
                self.notify(id, "failover needed but no healthy candidate", None, now);
                if let Some(w) = self.failover_wanted.get_mut(group) {
                    w.no_candidate_raised = true;
                }
            }
            return;
        };
        self.persist(StateCommand::MarkFailover {
            group: group.clone(),
            at_unix_ms: now.unix_ms,
        });
        let incident = self
            .desired
            .open_incident_for(group, Some(&primary))
            .map(|i| i.id);
        let incident = incident.or_else(|| {
            Some(
                self.incident_for(
                    group,
                    Some(&primary),
                    Category::NodeFailure,
                    &format!("{primary} lost"),
                    &format!("detected: {}", wanted.reason),
                    now,
                )
                .0,
            )
        });
        let transition = Transition {
            kind: ChangeKind::Failover,
            from: Some(primary.clone()),
            to: to.clone(),
            epoch: self
                .desired
                .group(group)
                .map(|g| g.epoch.next())
                .unwrap_or(Epoch(1)),
            phase: TransitionPhase::Demoting,
            started_at_unix_ms: now.unix_ms,
            detected_at_unix_ms: wanted.detected_unix_ms,
            incident_id: incident,
            reason: wanted.reason.clone(),
            failed: Vec::new(),
            waiting_on: Some(primary),
        };
        self.persist(StateCommand::SetTransition {
            group: group.clone(),
            transition: Some(transition),
        });
        self.promote_now(group, now);
    }

    /// The outgoing holder's lease is gone: record the new primary at epoch+1 and promote it.
    fn promote_now(&mut self, group: &GroupName, now: Now) {
        let Some(g) = self.desired.group(group) else {
            return;
        };
        let Some(t) = g.transition.clone() else {
            return;
        };
        let epoch = g.epoch.next();
        debug_assert!(
            t.waiting_on
                .as_ref()
                .is_none_or(|h| self.lease_clear(&(group.clone(), h.clone()), now)),
            "invariant: promote only after the previous holder's lease is gone"
        );
        self.persist(StateCommand::SetPrimary {
            group: group.clone(),
            host: t.to.clone(),
            epoch,
        });
        self.persist(StateCommand::SetTransition {
            group: group.clone(),
            transition: Some(Transition {
                epoch,
                phase: TransitionPhase::Promoting,
                waiting_on: None,
                ..t.clone()
            }),
        });
        if let Some(i) = t.incident_id {
            self.incident_note(
                i,
                EntryKind::Action,
                format!("promoting {} at epoch {epoch} ({})", t.to, t.reason),
                Some(dr_proto::domain::Phase::Acting),
                now,
            );
        }
        self.send_promote(group, &t, epoch, now);
    }

    fn send_promote(&mut self, group: &GroupName, t: &Transition, epoch: Epoch, now: Now) {
        let key = (group.clone(), t.to.clone());
        let id = self.new_action(
            Purpose::Promote {
                key: key.clone(),
                epoch,
            },
            self.settings.promote_timeout,
            now,
        );
        let session = self.members.get(&key).and_then(|o| o.session);
        self.out.push(Command::ToAgent {
            key,
            session,
            message: ControllerMessage::Command(AgentCommand {
                id: id.to_string(),
                epoch,
                action: Action::Promote {
                    old_primary: t.from.clone(),
                },
            }),
        });
    }

    fn send_repoint(&mut self, group: &GroupName, t: &Transition, now: Now) {
        let id = self.new_action(
            Purpose::Repoint {
                group: group.clone(),
                epoch: t.epoch,
            },
            Duration::from_secs(10),
            now,
        );
        self.out.push(Command::RepointLb {
            id,
            group: group.clone(),
            epoch: t.epoch,
            new_primary: t.to.clone(),
            old_primary: t.from.clone(),
            others: self.others(group, &t.to),
        });
    }

    fn send_smoke(&mut self, group: &GroupName, t: &Transition, now: Now) {
        let id = self.new_action(
            Purpose::TransitionSmoke {
                group: group.clone(),
                epoch: t.epoch,
            },
            Duration::from_secs(10),
            now,
        );
        self.out.push(Command::Smoke {
            id,
            group: group.clone(),
            expect_host: t.to.clone(),
        });
    }

    fn send_demote(&mut self, key: &MemberKey, new_primary: &HostName, reason: &str, now: Now) {
        let Some(session) = self.members.get(key).and_then(|o| o.session) else {
            return;
        };
        let epoch = self
            .desired
            .group(&key.0)
            .map(|g| g.epoch)
            .unwrap_or_default();
        let id = self.new_action(
            Purpose::Demote { key: key.clone() },
            self.settings.demote_timeout,
            now,
        );
        self.out.push(Command::ToAgent {
            key: key.clone(),
            session: Some(session),
            message: ControllerMessage::Command(AgentCommand {
                id: id.to_string(),
                epoch,
                action: Action::Demote {
                    new_primary: Some(new_primary.clone()),
                    reason: reason.to_string(),
                },
            }),
        });
    }

    /// Move a transition on as time passes.
    pub(crate) fn drive_transition(&mut self, group: &GroupName, now: Now) {
        let Some(t) = self.desired.group(group).and_then(|g| g.transition.clone()) else {
            return;
        };
        let to_key = (group.clone(), t.to.clone());
        let to_lost = self.members.get(&to_key).is_none_or(|o| {
            !o.connected()
                || o.last_seen
                    .is_none_or(|s| now.mono.saturating_sub(s) >= self.settings.suspect_after)
        });
        match t.phase {
            TransitionPhase::Demoting => {
                if to_lost {
                    self.candidate_failed(
                        group,
                        "the target became unreachable before promotion",
                        now,
                    );
                    return;
                }
                let clear = t
                    .waiting_on
                    .as_ref()
                    .is_none_or(|h| self.lease_clear(&(group.clone(), h.clone()), now));
                if clear {
                    self.promote_now(group, now);
                }
            }
            TransitionPhase::Promoting => {
                if to_lost {
                    self.pending.retain(|_, p| !matches!(&p.purpose, Purpose::Promote { key, .. } if *key == to_key));
                    self.candidate_failed(
                        group,
                        "the new primary became unreachable while promoting",
                        now,
                    );
                    return;
                }
                // the promote took effect though its answer was lost (or this controller restarted
                // in between): the new primary's own report says so
                let done = self
                    .members
                    .get(&to_key)
                    .and_then(|o| o.last_report.as_ref())
                    .and_then(|r| r.role_state.as_ref())
                    .is_some_and(|s| s.promoted && s.lease_valid && s.epoch == t.epoch);
                let pending = self.pending.values().any(|p| matches!(&p.purpose, Purpose::Promote { key, epoch } if *key == to_key && *epoch == t.epoch));
                if done {
                    self.pending.retain(|_, p| !matches!(&p.purpose, Purpose::Promote { key, .. } if *key == to_key));
                    self.transition_result(
                        Purpose::Promote {
                            key: to_key,
                            epoch: t.epoch,
                        },
                        Ok("promoted (seen in its report)".into()),
                        Duration::ZERO,
                        now,
                    );
                } else if !pending {
                    self.send_promote(group, &t, t.epoch, now);
                }
            }
            TransitionPhase::Repointing => {
                let pending = self.pending.values().any(|p| matches!(&p.purpose, Purpose::Repoint { group: g, epoch } if g == group && *epoch == t.epoch));
                if !pending {
                    // resumed after a controller restart or leader change
                    self.send_repoint(group, &t, now);
                }
            }
            TransitionPhase::Verifying => {
                let pending = self.pending.values().any(|p| matches!(&p.purpose, Purpose::TransitionSmoke { group: g, epoch } if g == group && *epoch == t.epoch));
                if !pending {
                    self.send_smoke(group, &t, now);
                }
            }
        }
    }

    /// The target failed: try the next candidate (after its lease, if any, is gone), or give up
    /// with an incident that says why.
    fn candidate_failed(&mut self, group: &GroupName, why: &str, now: Now) {
        let Some(mut t) = self.desired.group(group).and_then(|g| g.transition.clone()) else {
            return;
        };
        let failed = t.to.clone();
        t.failed.push(failed.clone());
        if let Some(i) = t.incident_id {
            self.incident_note(i, EntryKind::Action, format!("{failed}: {why}"), None, now);
        }
        let recorded_primary = self.desired.group(group).and_then(|g| g.primary.clone());
        let mut exclude = t.failed.clone();
        exclude.extend(t.from.clone());
        let next = if t.kind == ChangeKind::Switchover {
            None
        } else {
            self.candidates(group, &exclude, false, now)
                .into_iter()
                .next()
        };
        let Some(next) = next else {
            self.persist(StateCommand::SetTransition {
                group: group.clone(),
                transition: None,
            });
            let (id, _) = match t.incident_id {
                Some(i) => (i, false),
                None => self.incident_for(
                    group,
                    recorded_primary.as_ref(),
                    Category::NoCandidate,
                    "change of primary failed",
                    why,
                    now,
                ),
            };
            let text = format!(
                "{} of primary to {failed} failed ({why}) and no other healthy candidate remains; primary on record: {}",
                t.kind,
                recorded_primary
                    .as_ref()
                    .map(|p| p.as_str())
                    .unwrap_or("none")
            );
            self.incident_note(id, EntryKind::Escalation, text.clone(), None, now);
            self.notify(id, &text, None, now);
            return;
        };
        // The failed target may hold a lease if it was already recorded primary.
        let waiting_on = (recorded_primary.as_ref() == Some(&failed))
            .then_some(failed.clone())
            .or(t.waiting_on.clone());
        let epoch = self
            .desired
            .group(group)
            .map(|g| g.epoch.next())
            .unwrap_or(Epoch(1));
        self.persist(StateCommand::SetTransition {
            group: group.clone(),
            transition: Some(Transition {
                to: next.clone(),
                epoch,
                phase: TransitionPhase::Demoting,
                waiting_on: waiting_on.clone(),
                ..t
            }),
        });
        if let Some(h) = waiting_on {
            let key = (group.clone(), h.clone());
            if self.members.get(&key).is_some_and(|o| o.connected()) {
                self.send_demote(&key, &next, "failover moved on to another candidate", now);
            }
        }
        self.drive_transition(group, now);
    }

    pub(crate) fn transition_result(
        &mut self,
        purpose: Purpose,
        outcome: Result<String, String>,
        took: Duration,
        now: Now,
    ) {
        match purpose {
            Purpose::Promote { key, epoch } => {
                let current = self
                    .desired
                    .group(&key.0)
                    .and_then(|g| g.transition.clone());
                let Some(t) = current.filter(|t| {
                    t.to == key.1 && t.epoch == epoch && t.phase == TransitionPhase::Promoting
                }) else {
                    return;
                };
                match outcome {
                    Ok(d) => {
                        if let Some(i) = t.incident_id {
                            self.incident_note(
                                i,
                                EntryKind::Action,
                                format!("{} promoted in {} ms: {d}", key.1, took.as_millis()),
                                None,
                                now,
                            );
                        }
                        self.persist(StateCommand::SetTransition {
                            group: key.0.clone(),
                            transition: Some(Transition {
                                phase: TransitionPhase::Repointing,
                                ..t.clone()
                            }),
                        });
                        let t = Transition {
                            phase: TransitionPhase::Repointing,
                            ..t.clone()
                        };
                        self.send_repoint(&key.0, &t, now);
                    }
                    Err(e) => self.candidate_failed(&key.0, &format!("promote failed: {e}"), now),
                }
            }
            Purpose::Demote { key } => {
                if outcome.is_ok() {
                    let obs = self.obs(&key);
                    obs.lease.released = true;
                }
                if let Some(t) = self
                    .desired
                    .group(&key.0)
                    .and_then(|g| g.transition.clone())
                    && let Some(i) = t.incident_id
                {
                    let text = match &outcome {
                        Ok(d) => format!("{} demoted: {d}", key.1),
                        Err(e) => format!(
                            "{} did not demote ({e}): waiting for its lease to run out",
                            key.1
                        ),
                    };
                    self.incident_note(i, EntryKind::Action, text, None, now);
                }
                self.drive_transition(&key.0, now);
            }
            Purpose::LbSync { group, epoch } if outcome.is_ok() => {
                self.lb_synced.insert(group, epoch);
            }
            Purpose::Repoint { group, epoch } => {
                if outcome.is_ok() {
                    self.lb_synced.insert(group.clone(), epoch);
                }
                let Some(t) = self
                    .desired
                    .group(&group)
                    .and_then(|g| g.transition.clone())
                    .filter(|t| t.epoch == epoch)
                else {
                    return;
                };
                if let Some(i) = t.incident_id {
                    let text = match &outcome {
                        Ok(d) => format!("load balancer repointed to {}: {d}", t.to),
                        Err(e) => format!(
                            "load balancer repointing failed: {e} (agents' /primary still steers polling LBs)"
                        ),
                    };
                    self.incident_note(i, EntryKind::Action, text, None, now);
                }
                if let Err(e) = &outcome
                    && let Some(i) = t.incident_id
                {
                    self.notify(
                        i,
                        &format!("load balancer repointing failed: {e}"),
                        None,
                        now,
                    );
                }
                if self.settings.smoke_check {
                    self.persist(StateCommand::SetTransition {
                        group: group.clone(),
                        transition: Some(Transition {
                            phase: TransitionPhase::Verifying,
                            ..t.clone()
                        }),
                    });
                    let id = self.new_action(
                        Purpose::TransitionSmoke {
                            group: group.clone(),
                            epoch,
                        },
                        Duration::from_secs(10),
                        now,
                    );
                    self.out.push(Command::Smoke {
                        id,
                        group,
                        expect_host: t.to,
                    });
                } else {
                    self.finish_transition(&group, Ok("no smoke check configured".into()), now);
                }
            }
            Purpose::TransitionSmoke { group, epoch }
                if self
                    .desired
                    .group(&group)
                    .and_then(|g| g.transition.as_ref())
                    .is_some_and(|t| t.epoch == epoch) =>
            {
                self.finish_transition(&group, outcome, now);
            }
            _ => {}
        }
    }

    fn finish_transition(&mut self, group: &GroupName, smoke: Result<String, String>, now: Now) {
        let Some(t) = self.desired.group(group).and_then(|g| g.transition.clone()) else {
            return;
        };
        let rto = now.unix_ms.saturating_sub(t.detected_at_unix_ms);
        self.persist(StateCommand::SetTransition {
            group: group.clone(),
            transition: None,
        });
        self.persist(StateCommand::RecordRoleChange {
            change: RoleChange {
                group: group.clone(),
                epoch: t.epoch,
                from: t.from.clone(),
                to: t.to.clone(),
                kind: t.kind,
                at_unix_ms: now.unix_ms,
                rto_ms: Some(rto),
                incident_id: t.incident_id,
                reason: t.reason.clone(),
            },
        });
        self.failover_wanted.remove(group);
        if let Some(i) = t.incident_id {
            match &smoke {
                Ok(d) => {
                    self.incident_note(
                        i,
                        EntryKind::Verification,
                        format!("smoke request through the load balancer: {d}"),
                        None,
                        now,
                    );
                    self.resolve_incident(
                        i,
                        format!(
                            "{} is primary at epoch {}; measured RTO {:.1} s",
                            t.to,
                            t.epoch,
                            rto as f64 / 1000.0
                        ),
                        now,
                    );
                }
                Err(e) => {
                    self.incident_note(
                        i,
                        EntryKind::Verification,
                        format!("smoke request failed: {e}"),
                        None,
                        now,
                    );
                    self.notify(
                        i,
                        &format!(
                            "{} is primary at epoch {} but the smoke request failed: {e}",
                            t.to, t.epoch
                        ),
                        None,
                        now,
                    );
                }
            }
        }
    }

    /// Point the load balancer at the recorded primary once it serves (after a controller start,
    /// a leader change, or a failed repointing), at most every 5 s.
    pub(crate) fn sync_lb(&mut self, group: &GroupName, now: Now) {
        let Some(g) = self.desired.group(group) else {
            return;
        };
        if g.transition.is_some() {
            return;
        }
        let (Some(primary), epoch) = (g.primary.clone(), g.epoch) else {
            return;
        };
        if self.lb_synced.get(group) == Some(&epoch) {
            return;
        }
        if self
            .lb_sync_tried
            .get(group)
            .is_some_and(|t| now.mono < *t + Duration::from_secs(5))
        {
            return;
        }
        let key = (group.clone(), primary.clone());
        let serving = self.members.get(&key).is_some_and(|o| {
            o.fresh(now.mono, self.settings.suspect_after)
                && o.last_report
                    .as_ref()
                    .and_then(|r| r.role_state.as_ref())
                    .is_some_and(|s| s.promoted && s.lease_valid && s.epoch == epoch)
        });
        if !serving {
            return;
        }
        self.lb_sync_tried.insert(group.clone(), now.mono);
        let id = self.new_action(
            Purpose::LbSync {
                group: group.clone(),
                epoch,
            },
            Duration::from_secs(10),
            now,
        );
        self.out.push(Command::RepointLb {
            id,
            group: group.clone(),
            epoch,
            others: self.others(group, &primary),
            new_primary: primary,
            old_primary: None,
        });
    }

    pub(crate) fn scheduled_switchover(&mut self, group: &GroupName, now: Now) {
        let Some(s) = self
            .desired
            .group(group)
            .and_then(|g| g.scheduled_switchover.clone())
        else {
            return;
        };
        if now.unix_ms < s.at_unix_ms {
            return;
        }
        self.persist(StateCommand::ScheduleSwitchover {
            group: group.clone(),
            switchover: None,
        });
        if let Err(why) = self.start_switchover(group, &s.to, s.force, ChangeKind::Switchover, now)
        {
            self.out.push(Command::Notify(super::Notification {
                incident_id: None,
                group: group.clone(),
                host: Some(s.to.clone()),
                category: None,
                escalation_step: None,
                text: format!(
                    "scheduled switchover of group {group} to {} did not start: {why}",
                    s.to
                ),
            }));
        }
    }

    /// Start a planned change (switchover, or operator failover with a live primary): demote first.
    fn start_switchover(
        &mut self,
        group: &GroupName,
        to: &HostName,
        force: bool,
        kind: ChangeKind,
        now: Now,
    ) -> Result<Epoch, String> {
        let g = self
            .desired
            .group(group)
            .ok_or_else(|| format!("no group `{group}`"))?;
        if let Some(t) = &g.transition {
            return Err(format!(
                "a {} to {} is already in progress: wait for it (drctl status)",
                t.kind, t.to
            ));
        }
        if let Some(p) = self.target_problem(group, to, force, now) {
            return Err(p);
        }
        let from = g.primary.clone();
        let epoch = g.epoch.next();
        if kind == ChangeKind::Switchover {
            let live = from.as_ref().is_some_and(|p| {
                self.members
                    .get(&(group.clone(), p.clone()))
                    .is_some_and(|o| o.fresh(now.mono, self.settings.suspect_after))
            });
            if !live {
                return Err("the primary is not reachable: a switchover needs a live primary to demote; use drctl failover".into());
            }
        }
        self.persist(StateCommand::SetTransition {
            group: group.clone(),
            transition: Some(Transition {
                kind,
                from: from.clone(),
                to: to.clone(),
                epoch,
                phase: TransitionPhase::Demoting,
                started_at_unix_ms: now.unix_ms,
                detected_at_unix_ms: now.unix_ms,
                incident_id: None,
                reason: format!("{kind} requested"),
                failed: Vec::new(),
                waiting_on: from.clone(),
            }),
        });
        if let Some(p) = from {
            let key = (group.clone(), p);
            if self.members.get(&key).is_some_and(|o| o.connected()) {
                self.send_demote(&key, to, &format!("{kind} to {to}"), now);
            }
        }
        self.drive_transition(group, now);
        Ok(epoch)
    }

    pub(crate) fn on_operator(
        &mut self,
        request_id: RequestId,
        request: OperatorRequest,
        now: Now,
    ) {
        let reply = |outcome| Command::Reply {
            request_id,
            outcome,
        };
        let group_of = |r: &OperatorRequest| match r {
            OperatorRequest::Restart { group, .. }
            | OperatorRequest::Failover { group, .. }
            | OperatorRequest::Switchover { group, .. }
            | OperatorRequest::SetMode { group, .. }
            | OperatorRequest::Backup { group, .. }
            | OperatorRequest::Restore { group, .. }
            | OperatorRequest::VerifyBackup { group, .. }
            | OperatorRequest::Drill { group } => group.clone(),
        };
        let group = group_of(&request);
        let Some(g) = self.desired.group(&group) else {
            self.out.push(reply(Err(ReplyError::NotFound(format!(
                "no group named `{group}`"
            )))));
            return;
        };
        let epoch = g.epoch;
        match request {
            OperatorRequest::Restart { group, host } => {
                self.operator_restart(request_id, (group, host), now)
            }
            r @ (OperatorRequest::Backup { .. }
            | OperatorRequest::Restore { .. }
            | OperatorRequest::VerifyBackup { .. }
            | OperatorRequest::Drill { .. }) => self.operator_backup(request_id, r, now),
            OperatorRequest::SetMode { group, mode } => {
                self.persist(StateCommand::SetMode {
                    group: group.clone(),
                    mode,
                });
                self.out.push(reply(Ok(ActionReply {
                    action_id: None,
                    detail: format!("group {group} is now {mode}"),
                    incident_id: None,
                    epoch,
                })));
            }
            OperatorRequest::Failover { group, to, force } => {
                let to = match to {
                    Some(t) => t,
                    None => match self.candidates(&group, &[], force, now).into_iter().next() {
                        Some(t) => t,
                        None => {
                            self.out.push(reply(Err(ReplyError::Refused("no healthy candidate to promote: name one with --to HOST (and --force if it is not healthy)".into()))));
                            return;
                        }
                    },
                };
                match self.start_switchover(&group, &to, force, ChangeKind::Manual, now) {
                    Ok(target) => self.out.push(reply(Ok(ActionReply {
                        action_id: None,
                        detail: format!("failover to {to} started (epoch {target})"),
                        incident_id: None,
                        epoch: target,
                    }))),
                    Err(why) => self.out.push(reply(Err(ReplyError::Refused(why)))),
                }
            }
            OperatorRequest::Switchover {
                group,
                to,
                at_unix_ms,
                force,
            } => {
                if let Some(at) = at_unix_ms.filter(|at| *at > now.unix_ms) {
                    if let Some(p) = self.target_problem(&group, &to, force, now) {
                        self.out.push(reply(Err(ReplyError::Refused(p))));
                        return;
                    }
                    self.persist(StateCommand::ScheduleSwitchover {
                        group: group.clone(),
                        switchover: Some(ScheduledSwitchover {
                            to: to.clone(),
                            at_unix_ms: at,
                            force,
                        }),
                    });
                    self.out.push(reply(Ok(ActionReply {
                        action_id: None,
                        detail: format!(
                            "switchover to {to} scheduled in {:.0} s",
                            (at - now.unix_ms) as f64 / 1000.0
                        ),
                        incident_id: None,
                        epoch,
                    })));
                    return;
                }
                match self.start_switchover(&group, &to, force, ChangeKind::Switchover, now) {
                    Ok(target) => self.out.push(reply(Ok(ActionReply {
                        action_id: None,
                        detail: format!("switchover to {to} started (epoch {target})"),
                        incident_id: None,
                        epoch: target,
                    }))),
                    Err(why) => self.out.push(reply(Err(ReplyError::Refused(why)))),
                }
            }
        }
    }
}
