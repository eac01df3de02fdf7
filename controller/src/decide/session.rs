//! Agent sessions: hello, reports, lease requests and releases.

use dr_proto::domain::{
    ChangeKind, ControllerMessage, Hello, LeaseGrant, LeaseRelease, LeaseRequest, ReportAck, Role,
    RoleChange, Welcome,
};

use super::member::{Availability, AvailabilityChange, availability_change};
use super::{Command, Decider, MemberKey, Now};
use crate::classify::classify_report;
use crate::state::StateCommand;

impl Decider {
    /// The role the controller tells an agent.
    pub(crate) fn told_role(&self, key: &MemberKey) -> Role {
        match self.desired.group(&key.0).and_then(|g| g.primary.as_ref()) {
            Some(p) if p == &key.1 => Role::Primary,
            _ => Role::Replica,
        }
    }

    pub(crate) fn on_session_opened(
        &mut self,
        key: MemberKey,
        session: u64,
        hello: Hello,
        now: Now,
    ) {
        let (group, host) = (key.0.clone(), key.1.clone());
        let Some(g) = self.desired.group(&group) else {
            self.out.push(Command::RefuseSession {
                key,
                session,
                reason: format!(
                    "group `{group}` is not configured on this controller: add [[group]] name = \"{group}\" to its config, or fix `group` in the agent config"
                ),
            });
            return;
        };
        let known = g.members.contains_key(&host);
        let configured = self.configured_primary.get(&group).cloned();
        let needs_primary = g.primary.is_none() && configured.as_ref().is_none_or(|p| *p == host);
        let next_epoch = g.epoch.next();
        if !known {
            self.persist(StateCommand::RegisterMember {
                group: group.clone(),
                host: host.clone(),
                at_unix_ms: now.unix_ms,
            });
        }
        if needs_primary {
            self.persist(StateCommand::SetPrimary {
                group: group.clone(),
                host: host.clone(),
                epoch: next_epoch,
            });
            self.persist(StateCommand::RecordRoleChange {
                change: RoleChange {
                    group: group.clone(),
                    epoch: next_epoch,
                    from: None,
                    to: host.clone(),
                    kind: ChangeKind::Initial,
                    at_unix_ms: now.unix_ms,
                    rto_ms: None,
                    incident_id: None,
                    reason: "first member of the group".into(),
                },
            });
        }
        let obs = self.obs(&key);
        obs.session = Some(session);
        obs.agent_version = hello.agent_version.clone();
        obs.capabilities = hello.capabilities.clone();
        obs.priority = hello.priority;
        obs.no_failover = hello.no_failover;
        obs.last_seen = Some(now.mono);
        obs.disconnected_at = None;
        let g = self.desired.group(&group).expect("checked above");
        let welcome = Welcome {
            controller_id: String::new(),
            epoch: g.epoch,
            role: self.told_role(&key),
            primary: g.primary.clone(),
        };
        self.out.push(Command::ToAgent {
            key,
            session: Some(session),
            message: ControllerMessage::Welcome(welcome),
        });
    }

    pub(crate) fn on_session_closed(&mut self, key: MemberKey, session: u64, now: Now) {
        let Some(obs) = self.members.get_mut(&key) else {
            return;
        };
        if obs.session == Some(session) {
            obs.session = None;
            obs.disconnected_at = Some(now.mono);
        }
    }

    pub(crate) fn on_report(
        &mut self,
        key: MemberKey,
        session: u64,
        report: dr_proto::domain::HealthReport,
        now: Now,
    ) {
        let thresholds = self.thresholds.clone();
        let Some(obs) = self.members.get_mut(&key) else {
            return;
        };
        if obs.session != Some(session) {
            return;
        }
        let verdict = classify_report(&report, &thresholds);
        if verdict.health == dr_proto::domain::Health::Green {
            obs.green_streak += 1;
        } else {
            obs.green_streak = 0;
        }
        obs.verdict = Some(verdict);
        obs.last_seen = Some(now.mono);
        obs.last_report_at = Some(now.mono);
        let seq = report.seq;
        obs.last_report = Some(report);
        let change = availability_change(obs.availability, Availability::Up);
        obs.availability = Availability::Up;
        if change == AvailabilityChange::Recovered {
            self.member_reachable_again(&key, now);
        }
        self.after_report(&key, now);
        let Some(g) = self.desired.group(&key.0) else {
            return;
        };
        let ack = ReportAck {
            seq,
            epoch: g.epoch,
            role: self.told_role(&key),
            primary: g.primary.clone(),
        };
        self.out.push(Command::ToAgent {
            key,
            session: Some(session),
            message: ControllerMessage::Ack(ack),
        });
    }

    /// Grant only to the recorded primary at the current epoch, never while handing over.
    pub(crate) fn on_lease_request(
        &mut self,
        key: MemberKey,
        session: u64,
        req: LeaseRequest,
        now: Now,
    ) {
        let refusal = match self.desired.group(&key.0) {
            None => Some("unknown group".to_string()),
            Some(g) if g.primary.as_ref() != Some(&key.1) => Some(format!(
                "not the primary (epoch {}, primary {})",
                g.epoch,
                g.primary.as_ref().map(|p| p.as_str()).unwrap_or("none")
            )),
            Some(g) if req.epoch != g.epoch => Some(format!(
                "lease asked for epoch {} but the group is at epoch {}",
                req.epoch, g.epoch
            )),
            Some(g)
                if g.transition.as_ref().is_some_and(|t| {
                    t.from.as_ref() == Some(&key.1)
                        || t.waiting_on.as_ref() == Some(&key.1)
                        || t.failed.contains(&key.1)
                }) =>
            {
                Some("primary is being handed over".to_string())
            }
            Some(_) => None,
        };
        let current = self
            .members
            .get(&key)
            .is_some_and(|o| o.session == Some(session));
        let refusal = refusal.or_else(|| (!current).then(|| "stale session".to_string()));
        let outcome = match refusal {
            Some(reason) => Err(reason),
            None => {
                let ttl = self.settings.lease_ttl;
                let obs = self.obs(&key);
                obs.lease.granted_at = Some(now.mono);
                obs.lease.released = false;
                obs.last_seen = Some(now.mono);
                Ok(ttl.as_millis() as u32)
            }
        };
        self.out.push(Command::ToAgent {
            key,
            session: Some(session),
            message: ControllerMessage::LeaseGrant(LeaseGrant {
                request_id: req.request_id,
                epoch: req.epoch,
                outcome,
            }),
        });
    }

    pub(crate) fn on_lease_release(
        &mut self,
        key: MemberKey,
        session: u64,
        rel: LeaseRelease,
        now: Now,
    ) {
        let is_primary_epoch = self
            .desired
            .group(&key.0)
            .is_some_and(|g| g.primary.as_ref() == Some(&key.1) && g.epoch == rel.epoch);
        let Some(obs) = self.members.get_mut(&key) else {
            return;
        };
        if obs.session != Some(session) {
            return;
        }
        obs.last_seen = Some(now.mono);
        if is_primary_epoch {
            obs.lease.released = true;
            self.note_release(&key, &rel.reason, now);
        }
    }

    /// Move members between Up / Suspect / Down as time passes without news.
    pub(crate) fn update_availability(&mut self, now: Now) {
        let keys: Vec<MemberKey> = self.members.keys().cloned().collect();
        for key in keys {
            let is_primary = self.told_role(&key) == Role::Primary;
            let lease_clear = self.lease_clear(&key, now);
            let suspect_after = self.settings.suspect_after;
            let obs = self.members.get_mut(&key).expect("listed");
            let silent = obs
                .last_seen
                .is_none_or(|t| now.mono.saturating_sub(t) >= suspect_after);
            let new = if !silent && obs.connected() {
                Availability::Up
            } else if !is_primary || lease_clear {
                // a replica needs no lease wait; a primary is down once its lease surely ran out
                if silent || !obs.connected() {
                    Availability::Down
                } else {
                    Availability::Suspect
                }
            } else {
                Availability::Suspect
            };
            let change = availability_change(obs.availability, new);
            obs.availability = new;
            match change {
                AvailabilityChange::BecameDown => self.member_unreachable(&key, now),
                AvailabilityChange::Recovered => self.member_reachable_again(&key, now),
                AvailabilityChange::BecameSuspect | AvailabilityChange::None => {}
            }
        }
    }
}
