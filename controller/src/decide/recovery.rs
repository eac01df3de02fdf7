//! In-place recovery (the runbook's Procedure 1, automated): problems open incidents; a dead,
//! hung or unresponsive service is restarted within a budget with backoff; a recovered member
//! is verified (health, smoke request for a primary, log check) and its incident resolved.

use std::time::Duration;

use dr_proto::domain::{
    Action, Category, Command as AgentCommand, ControllerMessage, EntryKind, Health, IncidentId,
    Mode, Phase,
};

use super::member::{ServiceCondition, service_condition};
use super::{
    ActionId, ActionReply, Command, Decider, MemberKey, Now, Pending, Purpose, ReplyError,
    RequestId,
};

/// What an automatic restart decision came to.
enum RestartDecision {
    Start,
    Wait,
    BudgetSpent,
    NotPossible(String),
}

impl Decider {
    fn category_of(&self, key: &MemberKey, cond: &ServiceCondition) -> (Category, String) {
        match cond {
            ServiceCondition::Dead(r) => (Category::ProcessCrash, r.clone()),
            ServiceCondition::Hung(r) | ServiceCondition::Unresponsive(r) => {
                (Category::Overload, r.clone())
            }
            ServiceCondition::AppError(r) => (Category::ApplicationError, r.clone()),
            ServiceCondition::Ok => {
                let reasons = self
                    .members
                    .get(key)
                    .and_then(|o| o.verdict.as_ref())
                    .map(|v| v.reasons.join("; "))
                    .unwrap_or_default();
                let cat = if reasons.contains("memory") {
                    Category::MemoryLeak
                } else if reasons.contains("error rate") {
                    Category::ApplicationError
                } else {
                    Category::Overload
                };
                (cat, reasons)
            }
        }
    }

    fn automatic(&self, key: &MemberKey) -> bool {
        self.desired
            .group(&key.0)
            .is_some_and(|g| g.mode == Mode::Automatic)
    }

    pub(crate) fn after_report(&mut self, key: &MemberKey, now: Now) {
        let Some(obs) = self.members.get(key) else {
            return;
        };
        let Some(report) = &obs.last_report else {
            return;
        };
        let cond = service_condition(report);
        let health = obs
            .verdict
            .as_ref()
            .map(|v| v.health)
            .unwrap_or(Health::Unknown);
        let hung_like = matches!(
            cond,
            ServiceCondition::Hung(_) | ServiceCondition::Unresponsive(_)
        );
        // A member whose agent is busy (restart, promote, demote) or that is being restored has
        // its service down on purpose: no incident, no restart, no failover from here.
        let busy = report
            .role_state
            .as_ref()
            .is_some_and(|s| !s.busy_with.is_empty())
            || self.restoring(key);
        {
            let obs = self.obs(key);
            obs.bad_streak = if hung_like { obs.bad_streak + 1 } else { 0 };
        }
        // Problems open incidents (red only; yellow is a warning on the dashboard).
        if health == Health::Red && !busy {
            let (category, why) = self.category_of(key, &cond);
            let title = format!("{} {}", key.1, title_for(category));
            self.incident_for(
                &key.0,
                Some(&key.1),
                category,
                &title,
                &format!("detected: {why}"),
                now,
            );
        }
        let needs_restart = match &cond {
            ServiceCondition::Dead(_) => true,
            ServiceCondition::Hung(_) | ServiceCondition::Unresponsive(_) => self
                .members
                .get(key)
                .is_some_and(|o| o.bad_streak >= self.settings.hung_reports),
            _ => false,
        };
        if needs_restart && !busy && self.automatic(key) {
            self.consider_restart(key, &cond, now);
        }
        if health == Health::Green {
            self.consider_resolution(key, now);
        }
    }

    fn restart_decision(&self, key: &MemberKey, now: Now) -> RestartDecision {
        let Some(obs) = self.members.get(key) else {
            return RestartDecision::NotPossible("agent unknown".into());
        };
        if obs.restart_in_flight.is_some() {
            return RestartDecision::Wait;
        }
        if !obs.connected() {
            return RestartDecision::NotPossible("agent not connected".into());
        }
        if !obs.can("restart") {
            return RestartDecision::NotPossible(
                "the agent does not offer restart (no start/stop commands)".into(),
            );
        }
        let window_start = now
            .unix_ms
            .saturating_sub(self.settings.restart_window.as_millis() as u64);
        let recent: Vec<u64> = obs
            .restart_attempts
            .iter()
            .copied()
            .filter(|t| *t >= window_start)
            .collect();
        if recent.len() as u32 >= self.settings.restart_budget {
            return RestartDecision::BudgetSpent;
        }
        if let Some(last) = recent.last() {
            let n = recent.len() as u32; // attempts already made in the window
            let wait = self.settings.restart_backoff * 2u32.saturating_pow(n.saturating_sub(1));
            if now.unix_ms < last + wait.as_millis() as u64 {
                return RestartDecision::Wait;
            }
        }
        RestartDecision::Start
    }

    fn consider_restart(&mut self, key: &MemberKey, cond: &ServiceCondition, now: Now) {
        let is_primary = self.told_role(key) == dr_proto::domain::Role::Primary;
        let incident = self
            .desired
            .open_incident_for(&key.0, Some(&key.1))
            .map(|i| i.id);
        // A primary gets one automatic restart attempt in a row before failing over.
        let primary_gave_up = is_primary
            && self
                .members
                .get(key)
                .is_some_and(|o| o.restart_failures >= 1 && o.restart_in_flight.is_none());
        let decision = if primary_gave_up {
            RestartDecision::BudgetSpent
        } else {
            self.restart_decision(key, now)
        };
        match decision {
            RestartDecision::Wait => {}
            RestartDecision::Start => {
                let attempt = {
                    let obs = self.obs(key);
                    obs.restart_attempts.push(now.unix_ms);
                    obs.restart_attempts.len()
                };
                let why = match cond {
                    ServiceCondition::Dead(r)
                    | ServiceCondition::Hung(r)
                    | ServiceCondition::Unresponsive(r)
                    | ServiceCondition::AppError(r) => r.clone(),
                    ServiceCondition::Ok => String::new(),
                };
                let id = self.send_restart(key, &why, true, None, now);
                if let Some(i) = incident {
                    self.incident_note(
                        i,
                        EntryKind::Action,
                        format!(
                            "automatic restart {attempt}/{} (action {id}): {why}",
                            self.settings.restart_budget
                        ),
                        Some(Phase::Acting),
                        now,
                    );
                }
            }
            RestartDecision::BudgetSpent | RestartDecision::NotPossible(_) => {
                let why = match decision {
                    RestartDecision::NotPossible(w) => format!("cannot restart: {w}"),
                    _ if primary_gave_up => "restart of the primary failed".to_string(),
                    _ => format!(
                        "restart budget spent ({} in {} min)",
                        self.settings.restart_budget,
                        self.settings.restart_window.as_secs() / 60
                    ),
                };
                let already = incident.is_some_and(|i| {
                    self.desired.incidents.get(&i).is_some_and(|inc| {
                        inc.timeline
                            .iter()
                            .any(|e| e.kind == EntryKind::Escalation && e.text.contains(&why))
                    })
                });
                if let Some(i) = incident
                    && !already
                {
                    self.incident_note(
                        i,
                        EntryKind::Escalation,
                        format!(
                            "{why}: {}",
                            if is_primary {
                                "failing over"
                            } else {
                                "needs a human"
                            }
                        ),
                        None,
                        now,
                    );
                    self.notify(i, &format!("{why}; automatic restart stopped"), None, now);
                }
                if is_primary {
                    self.want_failover(&key.0, &why, now);
                }
            }
        }
    }

    pub(crate) fn send_restart(
        &mut self,
        key: &MemberKey,
        why: &str,
        automatic: bool,
        reply_to: Option<RequestId>,
        now: Now,
    ) -> ActionId {
        let timeout = self.settings.restart_timeout;
        let id = self.new_action(
            Purpose::Restart {
                key: key.clone(),
                automatic,
                reply_to,
            },
            timeout,
            now,
        );
        let epoch = self
            .desired
            .group(&key.0)
            .map(|g| g.epoch)
            .unwrap_or_default();
        let session = self.members.get(key).and_then(|o| o.session);
        self.obs(key).restart_in_flight = Some(id);
        self.out.push(Command::ToAgent {
            key: key.clone(),
            session,
            message: ControllerMessage::Command(AgentCommand {
                id: id.to_string(),
                epoch,
                action: Action::Restart {
                    reason: why.to_string(),
                },
            }),
        });
        id
    }

    /// A member is healthy again: verify and resolve its incident.
    fn consider_resolution(&mut self, key: &MemberKey, now: Now) {
        let Some(incident) = self
            .desired
            .open_incident_for(&key.0, Some(&key.1))
            .cloned()
        else {
            return;
        };
        // A restore's incident ends with its watch period, never because the member looks
        // healthy: after a failed restore the old data is back and healthy, yet still unrestored.
        if incident.phase == Phase::Watching || incident.category == Category::DataProblem {
            return;
        }
        let Some(obs) = self.members.get(key) else {
            return;
        };
        if obs.restart_in_flight.is_some() || obs.green_streak < self.settings.verify_reports {
            return;
        }
        if self.pending.values().any(|p| matches!(&p.purpose, Purpose::IncidentSmoke { incident: i, .. } if *i == incident.id)) {
            return;
        }
        let log_check = match obs
            .last_report
            .as_ref()
            .and_then(|r| r.log.as_ref())
            .map(|l| &l.result)
        {
            Some(Ok(f)) if f.errors_since_start == 0 => {
                "log check: no errors since start".to_string()
            }
            Some(Ok(f)) => format!(
                "log check: {} error line(s) since start (last: {})",
                f.errors_since_start,
                f.last_errors.last().map(String::as_str).unwrap_or("-")
            ),
            Some(Err(e)) => format!("log check not possible: {e}"),
            None => "log check: no log configured".to_string(),
        };
        self.incident_note(
            incident.id,
            EntryKind::Verification,
            format!(
                "health: green for {} reports in a row; {log_check}",
                obs.green_streak
            ),
            Some(Phase::Verifying),
            now,
        );
        let is_primary = self.told_role(key) == dr_proto::domain::Role::Primary;
        if is_primary && self.settings.smoke_check {
            let id = self.new_action(
                Purpose::IncidentSmoke {
                    key: key.clone(),
                    incident: incident.id,
                },
                Duration::from_secs(10),
                now,
            );
            self.out.push(Command::Smoke {
                id,
                group: key.0.clone(),
                expect_host: key.1.clone(),
            });
        } else {
            self.resolve_incident(incident.id, format!("{} healthy again", key.1), now);
        }
    }

    pub(crate) fn member_unreachable(&mut self, key: &MemberKey, now: Now) {
        let is_primary = self.told_role(key) == dr_proto::domain::Role::Primary;
        let title = format!("{} unreachable", key.1);
        let (id, _) = self.incident_for(
            &key.0,
            Some(&key.1),
            Category::NodeFailure,
            &title,
            "detected: no message from the agent (host down or network partition)",
            now,
        );
        if is_primary {
            self.incident_note(
                id,
                EntryKind::Note,
                "primary unreachable and its lease surely expired",
                None,
                now,
            );
            self.want_failover(&key.0, &format!("primary {} unreachable", key.1), now);
        }
    }

    pub(crate) fn member_reachable_again(&mut self, key: &MemberKey, now: Now) {
        if let Some(i) = self
            .desired
            .open_incident_for(&key.0, Some(&key.1))
            .map(|i| i.id)
        {
            self.incident_note(
                i,
                EntryKind::Note,
                format!("{} reachable again", key.1),
                None,
                now,
            );
        }
    }

    pub(crate) fn note_release(&mut self, key: &MemberKey, reason: &str, now: Now) {
        if let Some(i) = self
            .desired
            .open_incident_for(&key.0, Some(&key.1))
            .map(|i| i.id)
        {
            self.incident_note(
                i,
                EntryKind::Note,
                format!("primary gave its lease back: {reason}"),
                None,
                now,
            );
        }
    }

    pub(crate) fn expire_pending(&mut self, now: Now) {
        let expired: Vec<ActionId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.mono >= p.started + p.timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let timeout = self.pending.get(&id).map(|p| p.timeout).unwrap_or_default();
            self.on_action_result(
                id,
                Err(format!("no result within {} s", timeout.as_secs())),
                now,
            );
        }
    }

    pub(crate) fn on_action_result(
        &mut self,
        id: ActionId,
        outcome: Result<String, String>,
        now: Now,
    ) {
        let Some(Pending {
            purpose, started, ..
        }) = self.pending.remove(&id)
        else {
            return;
        };
        let took = now.mono.saturating_sub(started);
        match purpose {
            Purpose::Restart {
                key,
                automatic,
                reply_to,
            } => {
                let incident = self
                    .desired
                    .open_incident_for(&key.0, Some(&key.1))
                    .map(|i| i.id);
                {
                    let obs = self.obs(&key);
                    obs.restart_in_flight = None;
                    obs.green_streak = 0;
                    obs.bad_streak = 0;
                    match &outcome {
                        Ok(_) => obs.restart_failures = 0,
                        Err(_) if automatic => obs.restart_failures += 1,
                        Err(_) => {}
                    }
                }
                let text = match &outcome {
                    Ok(d) => format!("restart finished in {:.1} s: {d}", took.as_secs_f64()),
                    Err(e) => format!("restart failed after {:.1} s: {e}", took.as_secs_f64()),
                };
                if let Some(i) = incident {
                    self.incident_note(i, EntryKind::Action, text.clone(), None, now);
                }
                if let Some(request_id) = reply_to {
                    let epoch = self
                        .desired
                        .group(&key.0)
                        .map(|g| g.epoch)
                        .unwrap_or_default();
                    self.out.push(Command::Reply {
                        request_id,
                        outcome: match outcome {
                            Ok(_) => Ok(ActionReply {
                                action_id: None,
                                detail: text,
                                incident_id: incident,
                                epoch,
                            }),
                            Err(_) => Err(ReplyError::Failed(text)),
                        },
                    });
                }
            }
            Purpose::IncidentSmoke { key, incident } => {
                self.incident_smoke_done(&key, incident, outcome, now)
            }
            p @ (Purpose::Backup { .. }
            | Purpose::Retention { .. }
            | Purpose::ListBackups { .. }
            | Purpose::Verify { .. }
            | Purpose::Drill { .. }
            | Purpose::Restore { .. }) => self.backup_result(id, p, outcome, took, now),
            other => self.transition_result(other, outcome, took, now),
        }
    }

    fn incident_smoke_done(
        &mut self,
        key: &MemberKey,
        incident: IncidentId,
        outcome: Result<String, String>,
        now: Now,
    ) {
        match outcome {
            Ok(d) => {
                self.incident_note(
                    incident,
                    EntryKind::Verification,
                    format!("smoke request: {d}"),
                    None,
                    now,
                );
                self.resolve_incident(
                    incident,
                    format!("{} healthy again and serving", key.1),
                    now,
                );
            }
            Err(e) => {
                self.incident_note(
                    incident,
                    EntryKind::Verification,
                    format!("smoke request failed: {e}"),
                    Some(Phase::Open),
                    now,
                );
            }
        }
    }

    pub(crate) fn operator_restart(&mut self, request_id: RequestId, key: MemberKey, now: Now) {
        let refuse = |why: String| Command::Reply {
            request_id,
            outcome: Err(ReplyError::Refused(why)),
        };
        let Some(obs) = self.members.get(&key) else {
            self.out.push(Command::Reply {
                request_id,
                outcome: Err(ReplyError::NotFound(format!(
                    "no member `{}` in group `{}`",
                    key.1, key.0
                ))),
            });
            return;
        };
        if !obs.connected() {
            self.out
                .push(refuse(format!("the agent of `{}` is not connected", key.1)));
            return;
        }
        if !obs.can("restart") {
            self.out.push(refuse(format!(
                "the agent of `{}` has no start/stop commands configured",
                key.1
            )));
            return;
        }
        if obs.restart_in_flight.is_some() {
            self.out.push(refuse(format!(
                "a restart of `{}` is already running",
                key.1
            )));
            return;
        }
        self.send_restart(&key, "operator request", false, Some(request_id), now);
    }
}

fn title_for(c: Category) -> &'static str {
    match c {
        Category::ProcessCrash => "process crashed",
        Category::Overload => "hung or overloaded",
        Category::ApplicationError => "application errors",
        Category::MemoryLeak => "memory too high",
        Category::NodeFailure => "unreachable",
        Category::NetworkIssue => "network issue",
        Category::DataProblem => "data problem",
        Category::NoCandidate => "no failover candidate",
        Category::BackupFailure => "backup failed",
        Category::RestoreFailure => "restore failed",
        Category::ReplicaSync => "replica out of sync",
    }
}
