//! Backups, drills, retention and restores, as decisions: when a scheduled backup is due and on
//! which host (a healthy replica first), one backup-type action per group at a time, retention
//! after each backup, a daily restore drill on a replica, and restores that leave their incident
//! watching the member for a while before it is resolved.

use std::time::Duration;

use dr_proto::domain::{
    Action, BackupKind, BackupRecord, Category, Command as AgentCommand, ControllerMessage,
    DrillOutcome, EntryKind, GroupName, Health, HostName, IncidentId, Mode, Phase, RestoreOutcome,
    RetentionOutcome, VerifyOutcome,
};

use super::{
    ActionReply, Command, Decider, MemberKey, Now, OperatorRequest, Purpose, ReplyError, RequestId,
};
use crate::state::StateCommand;

/// In-memory bookkeeping per group.
#[derive(Clone, Debug, Default)]
pub struct GroupBackupState {
    /// The catalog was reconciled with the store since this controller started.
    pub listed: bool,
    /// When a backup-type action of the group last failed: the scheduler waits a while before
    /// it tries again, so a broken store is not hammered.
    pub last_failure: Option<Duration>,
    /// Restore incidents being watched, and until when (unix ms).
    pub watching: Vec<(IncidentId, MemberKey, u64)>,
    /// How the last few backup-type actions ended, for `drctl ... --wait` (newest last).
    pub finished: std::collections::VecDeque<(super::ActionId, Result<String, String>)>,
}

const FINISHED_KEPT: usize = 32;

const RETRY_AFTER: Duration = Duration::from_secs(60);
/// After a restore, reports probed while the service was stopped may still arrive: a member
/// red during this long after the restore's result does not reopen its incident (still red
/// after it does; agents report every 500 ms and at once on a change).
const RESTORE_SETTLE_MS: u64 = 1_000;

fn parse<T: serde::de::DeserializeOwned>(what: &str, detail: &str) -> Result<T, String> {
    serde_json::from_str(detail)
        .map_err(|e| format!("the agent's {what} result is not understood: {e}"))
}

impl Decider {
    fn backup_busy(&self, group: &GroupName) -> bool {
        self.pending.values().any(|p| match &p.purpose {
            Purpose::Backup { key, .. }
            | Purpose::Retention { key }
            | Purpose::ListBackups { key }
            | Purpose::Drill { key, .. }
            | Purpose::Restore { key, .. } => &key.0 == group,
            _ => false,
        })
    }

    /// Healthy, connected members that can do `capability`: replicas first, then the primary.
    fn backup_hosts(&self, group: &GroupName, capability: &str, now: Now) -> Vec<HostName> {
        let Some(g) = self.desired.group(group) else {
            return Vec::new();
        };
        let mut v: Vec<(bool, HostName)> = g
            .members
            .keys()
            .filter_map(|h| {
                let o = self.members.get(&(group.clone(), h.clone()))?;
                let healthy = o
                    .verdict
                    .as_ref()
                    .is_some_and(|v| matches!(v.health, Health::Green | Health::Yellow));
                (o.fresh(now.mono, self.settings.suspect_after) && o.can(capability) && healthy)
                    .then(|| (g.primary.as_ref() == Some(h), h.clone()))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, h)| h).collect()
    }

    fn send_action(
        &mut self,
        key: &MemberKey,
        purpose: Purpose,
        action: Action,
        timeout: Duration,
        now: Now,
    ) -> super::ActionId {
        let id = self.new_action(purpose, timeout, now);
        let epoch = self
            .desired
            .group(&key.0)
            .map(|g| g.epoch)
            .unwrap_or_default();
        let session = self.members.get(key).and_then(|o| o.session);
        self.out.push(Command::ToAgent {
            key: key.clone(),
            session,
            message: ControllerMessage::Command(AgentCommand {
                id: id.to_string(),
                epoch,
                action,
            }),
        });
        id
    }

    fn start_backup(
        &mut self,
        group: &GroupName,
        host: HostName,
        incremental: bool,
        now: Now,
    ) -> super::ActionId {
        let key = (group.clone(), host);
        let timeout = self.settings.backup_timeout;
        self.send_action(
            &key,
            Purpose::Backup {
                key: key.clone(),
                incremental,
            },
            Action::Backup { incremental },
            timeout,
            now,
        )
    }

    /// Start what is due, one thing at a time per group.
    pub(crate) fn schedule_backups(&mut self, group: &GroupName, now: Now) {
        let Some(g) = self.desired.group(group) else {
            return;
        };
        if g.mode != Mode::Automatic || g.transition.is_some() || self.backup_busy(group) {
            return;
        }
        let hosts = self.backup_hosts(group, "backup", now);
        let Some(first) = hosts.first().cloned() else {
            return;
        };
        let st = self.backup_state.entry(group.clone()).or_default().clone();
        if st.last_failure.is_some_and(|t| now.mono < t + RETRY_AFTER) {
            return;
        }
        if !st.listed {
            // learn what the store already holds before deciding anything
            let key = (group.clone(), first);
            self.backup_state.entry(group.clone()).or_default().listed = true;
            self.send_action(
                &key,
                Purpose::ListBackups { key: key.clone() },
                Action::ListBackups,
                Duration::from_secs(60),
                now,
            );
            return;
        }
        let catalog = self.desired.backups.get(group).cloned().unwrap_or_default();
        let age = |e: &crate::state::CatalogEntry| {
            now.unix_ms.saturating_sub(e.record.created_at_unix_ms)
        };
        let last_full = catalog
            .iter()
            .rev()
            .find(|e| e.record.kind == BackupKind::Full);
        let last_any = catalog.last();
        let due = |every: Option<Duration>, since: Option<u64>| {
            every.is_some_and(|e| since.is_none_or(|a| a >= e.as_millis() as u64))
        };
        if due(self.settings.backup_full_every, last_full.map(age)) {
            self.start_backup(group, first, false, now);
            return;
        }
        if let Some(full) = last_full
            && due(self.settings.backup_incremental_every, last_any.map(age))
        {
            // incrementals chain on the host of the last full; elsewhere it would be a new full
            let host = if hosts.contains(&full.record.host) {
                full.record.host.clone()
            } else {
                first
            };
            self.start_backup(group, host, true, now);
            return;
        }
        let last_drill = self
            .desired
            .drills
            .get(group)
            .map(|d| now.unix_ms.saturating_sub(d.at_unix_ms));
        if let Some(full) = last_full
            && due(self.settings.drill_every, last_drill)
        {
            let drillers = self.backup_hosts(group, "drill", now);
            if let Some(h) = drillers.first().cloned() {
                let from = full.record.host.clone();
                let key = (group.clone(), h);
                let timeout = self.settings.backup_timeout;
                self.send_action(
                    &key,
                    Purpose::Drill { key: key.clone() },
                    Action::Drill {
                        backup_id: None,
                        from_host: Some(from),
                    },
                    timeout,
                    now,
                );
            }
        }
    }

    /// Restore incidents in their watch phase: reopen on trouble, resolve when the time is up.
    pub(crate) fn watch_restores(&mut self, group: &GroupName, now: Now) {
        let watching = self
            .backup_state
            .entry(group.clone())
            .or_default()
            .watching
            .clone();
        let mut keep = Vec::new();
        for (id, key, until) in watching {
            // A report probed while the restore had the service stopped can arrive just after
            // the restore's result: only a member still red after a grace counts as trouble.
            let since = until.saturating_sub(self.settings.restore_watch.as_millis() as u64);
            let settled = now.unix_ms >= since.saturating_add(RESTORE_SETTLE_MS);
            let red = settled
                && self
                    .members
                    .get(&key)
                    .and_then(|o| o.verdict.as_ref())
                    .is_some_and(|v| v.health == Health::Red);
            if red {
                let why = self
                    .members
                    .get(&key)
                    .and_then(|o| o.verdict.as_ref())
                    .map(|v| v.reasons.join("; "))
                    .unwrap_or_default();
                self.incident_note(
                    id,
                    EntryKind::Escalation,
                    format!("trouble while watching after the restore: {why}"),
                    Some(Phase::Open),
                    now,
                );
                self.notify(
                    id,
                    "problems after the restore: incident reopened",
                    None,
                    now,
                );
            } else if now.unix_ms >= until {
                self.resolve_incident(
                    id,
                    format!(
                        "{} ran cleanly for the watch period after the restore",
                        key.1
                    ),
                    now,
                );
            } else {
                keep.push((id, key, until));
            }
        }
        self.backup_state.entry(group.clone()).or_default().watching = keep;
    }

    pub(crate) fn operator_backup(
        &mut self,
        request_id: RequestId,
        request: OperatorRequest,
        now: Now,
    ) {
        let reply = |outcome| Command::Reply {
            request_id,
            outcome,
        };
        match request {
            OperatorRequest::Backup {
                group,
                host,
                incremental,
            } => {
                if self.backup_busy(&group) {
                    self.out.push(reply(Err(ReplyError::Refused(format!("a backup, restore or drill of group {group} is already running: wait for it (drctl backup list)")))));
                    return;
                }
                let hosts = self.backup_hosts(&group, "backup", now);
                let host = match host {
                    Some(h) if hosts.contains(&h) => h,
                    Some(h) => {
                        self.out.push(reply(Err(ReplyError::Refused(format!("{h} cannot take a backup now (not connected, not healthy, or no [backup] store configured)")))));
                        return;
                    }
                    None => match hosts.first() {
                        Some(h) => h.clone(),
                        None => {
                            self.out.push(reply(Err(ReplyError::Refused(
                                "no healthy member with a [backup] store configured".into(),
                            ))));
                            return;
                        }
                    },
                };
                let id = self.start_backup(&group, host.clone(), incremental, now);
                let epoch = self
                    .desired
                    .group(&group)
                    .map(|g| g.epoch)
                    .unwrap_or_default();
                self.out.push(reply(Ok(ActionReply {
                    action_id: Some(id),
                    detail: format!(
                        "{} backup started on {host} (action {id})",
                        if incremental { "incremental" } else { "full" }
                    ),
                    incident_id: None,
                    epoch,
                })));
            }
            OperatorRequest::Restore {
                group,
                host,
                backup_id,
                from_host,
                allow_primary,
            } => {
                let key = (group.clone(), host.clone());
                // Invariant: the serving primary is restored only on explicit request; otherwise
                // the operator switches over first and restores the (then) replica.
                let primary = self.desired.group(&group).and_then(|g| g.primary.clone());
                if primary.as_ref() == Some(&host) && !allow_primary {
                    let others = self
                        .desired
                        .group(&group)
                        .map(|g| g.members.len())
                        .unwrap_or(1)
                        > 1;
                    let hint = if others {
                        "switch over first (drctl switchover --to HOST) and restore it as a replica, or"
                    } else {
                        ""
                    };
                    self.out.push(reply(Err(ReplyError::Refused(format!(
                        "{host} is the primary of {group}: restoring it stops the service clients use; {hint} pass --allow-primary"
                    )))));
                    return;
                }
                if self.backup_busy(&group) {
                    self.out.push(reply(Err(ReplyError::Refused(format!(
                        "a backup, restore or drill of group {group} is already running"
                    )))));
                    return;
                }
                let capable = self
                    .members
                    .get(&key)
                    .is_some_and(|o| o.connected() && o.can("restore"));
                if !capable {
                    self.out.push(reply(Err(ReplyError::Refused(format!(
                        "the agent of {host} is not connected or has no [backup] store configured"
                    )))));
                    return;
                }
                let what = backup_id
                    .clone()
                    .unwrap_or_else(|| "the newest backup".into());
                let (incident, _) = self.incident_for(
                    &group,
                    Some(&host),
                    Category::DataProblem,
                    &format!("data restore on {host}"),
                    &format!("detected: operator asked to restore {what}"),
                    now,
                );
                self.incident_note(incident, EntryKind::Action, format!("restoring {what} (Procedure 2: stage and verify, stop, swap, post-restore hooks, start)"), Some(Phase::Acting), now);
                let timeout = self.settings.backup_timeout;
                let id = self.send_action(
                    &key,
                    Purpose::Restore {
                        key: key.clone(),
                        incident,
                    },
                    Action::Restore {
                        backup_id,
                        from_host,
                    },
                    timeout,
                    now,
                );
                let epoch = self
                    .desired
                    .group(&group)
                    .map(|g| g.epoch)
                    .unwrap_or_default();
                self.out.push(reply(Ok(ActionReply {
                    action_id: Some(id),
                    detail: format!("restore of {what} started on {host} (action {id})"),
                    incident_id: Some(incident),
                    epoch,
                })));
            }
            OperatorRequest::VerifyBackup {
                group,
                backup_id,
                deep,
            } => {
                let catalog_host = backup_id.as_ref().and_then(|id| {
                    self.desired
                        .backups
                        .get(&group)?
                        .iter()
                        .find(|e| &e.record.id == id)
                        .map(|e| e.record.host.clone())
                });
                let mut hosts = self.backup_hosts(&group, "backup", now);
                if let Some(h) = &catalog_host {
                    hosts.sort_by_key(|x| x != h);
                }
                let Some(host) = hosts.first().cloned() else {
                    self.out.push(reply(Err(ReplyError::Refused(
                        "no healthy member with a [backup] store configured to verify with".into(),
                    ))));
                    return;
                };
                let key = (group.clone(), host);
                let timeout = self.settings.backup_timeout;
                let what = backup_id
                    .clone()
                    .unwrap_or_else(|| "the newest backup".into());
                let id = self.send_action(
                    &key,
                    Purpose::Verify { key: key.clone() },
                    Action::VerifyBackup {
                        backup_id,
                        deep,
                        from_host: catalog_host,
                    },
                    timeout,
                    now,
                );
                let epoch = self
                    .desired
                    .group(&group)
                    .map(|g| g.epoch)
                    .unwrap_or_default();
                self.out.push(reply(Ok(ActionReply {
                    action_id: Some(id),
                    detail: format!(
                        "{} verify of {what} started on {} (action {id})",
                        if deep { "deep" } else { "quick" },
                        key.1
                    ),
                    incident_id: None,
                    epoch,
                })));
            }
            OperatorRequest::Drill { group } => {
                if self.backup_busy(&group) {
                    self.out.push(reply(Err(ReplyError::Refused(format!(
                        "a backup, restore or drill of group {group} is already running"
                    )))));
                    return;
                }
                let from = self
                    .desired
                    .backups
                    .get(&group)
                    .and_then(|l| l.iter().rev().find(|e| e.record.kind == BackupKind::Full))
                    .map(|e| e.record.host.clone());
                let Some(from) = from else {
                    self.out.push(reply(Err(ReplyError::Refused(format!(
                        "group {group} has no full backup to drill"
                    )))));
                    return;
                };
                let Some(host) = self.backup_hosts(&group, "drill", now).first().cloned() else {
                    self.out.push(reply(Err(ReplyError::Refused(
                        "no healthy member that can run a drill".into(),
                    ))));
                    return;
                };
                let key = (group.clone(), host);
                let timeout = self.settings.backup_timeout;
                let id = self.send_action(
                    &key,
                    Purpose::Drill { key: key.clone() },
                    Action::Drill {
                        backup_id: None,
                        from_host: Some(from.clone()),
                    },
                    timeout,
                    now,
                );
                let epoch = self
                    .desired
                    .group(&group)
                    .map(|g| g.epoch)
                    .unwrap_or_default();
                self.out.push(reply(Ok(ActionReply {
                    action_id: Some(id),
                    detail: format!(
                        "restore drill of the newest backup of {from} started on {} (action {id})",
                        key.1
                    ),
                    incident_id: None,
                    epoch,
                })));
            }
            _ => {}
        }
    }

    fn backup_failure(
        &mut self,
        group: &GroupName,
        host: &HostName,
        what: &str,
        why: &str,
        now: Now,
    ) {
        self.backup_state
            .entry(group.clone())
            .or_default()
            .last_failure = Some(now.mono);
        let (id, _) = self.incident_for(
            group,
            None,
            Category::BackupFailure,
            &format!("{what} failed"),
            &format!("detected: {what} on {host} failed: {why}"),
            now,
        );
        self.incident_note(
            id,
            EntryKind::Note,
            format!("{what} on {host}: {why}"),
            None,
            now,
        );
    }

    pub(crate) fn backup_result(
        &mut self,
        id: super::ActionId,
        purpose: Purpose,
        outcome: Result<String, String>,
        took: Duration,
        now: Now,
    ) {
        let group = match &purpose {
            Purpose::Backup { key, .. }
            | Purpose::Retention { key }
            | Purpose::ListBackups { key }
            | Purpose::Verify { key, .. }
            | Purpose::Drill { key, .. }
            | Purpose::Restore { key, .. } => Some(key.0.clone()),
            _ => None,
        };
        if let Some(g) = group {
            let finished = &mut self.backup_state.entry(g).or_default().finished;
            finished.push_back((id, outcome.clone()));
            while finished.len() > FINISHED_KEPT {
                finished.pop_front();
            }
        }
        match purpose {
            Purpose::Backup { key, incremental } => {
                match outcome.and_then(|d| parse::<BackupRecord>("backup", &d)) {
                    Ok(record) => {
                        self.persist(StateCommand::RecordBackup {
                            group: key.0.clone(),
                            record: record.clone(),
                            verified: Some(true),
                        });
                        // a successful backup ends an open backup-failure incident
                        if let Some(i) = self
                            .desired
                            .open_incident_for(&key.0, None)
                            .filter(|i| i.category == Category::BackupFailure)
                            .map(|i| i.id)
                        {
                            self.resolve_incident(
                                i,
                                format!("backup {} on {} succeeded", record.id, key.1),
                                now,
                            );
                        }
                        let (l, d, w) = (
                            self.settings.retention_keep_last,
                            self.settings.retention_keep_daily,
                            self.settings.retention_keep_weekly,
                        );
                        self.send_action(
                            &key,
                            Purpose::Retention { key: key.clone() },
                            Action::ApplyRetention {
                                keep_last: l,
                                keep_daily: d,
                                keep_weekly: w,
                            },
                            Duration::from_secs(300),
                            now,
                        );
                    }
                    Err(e) => {
                        let kind = if incremental {
                            "incremental backup"
                        } else {
                            "full backup"
                        };
                        self.backup_failure(&key.0, &key.1, kind, &e, now);
                    }
                }
            }
            Purpose::Retention { key } => {
                match outcome.and_then(|d| parse::<RetentionOutcome>("retention", &d)) {
                    Ok(r) if !r.deleted.is_empty() => {
                        self.persist(StateCommand::ForgetBackups {
                            group: key.0,
                            ids: r.deleted,
                        });
                    }
                    Ok(_) => {}
                    Err(e) => self.backup_failure(&key.0, &key.1, "retention", &e, now),
                }
            }
            Purpose::ListBackups { key } => {
                match outcome.and_then(|d| parse::<Vec<BackupRecord>>("listing", &d)) {
                    Ok(records) => {
                        let known: Vec<String> = self
                            .desired
                            .backups
                            .get(&key.0)
                            .map(|l| l.iter().map(|e| e.record.id.clone()).collect())
                            .unwrap_or_default();
                        let gone: Vec<String> = known
                            .iter()
                            .filter(|id| !records.iter().any(|r| &r.id == *id))
                            .cloned()
                            .collect();
                        for r in records {
                            if !known.contains(&r.id) {
                                self.persist(StateCommand::RecordBackup {
                                    group: key.0.clone(),
                                    record: r,
                                    verified: None,
                                });
                            }
                        }
                        if !gone.is_empty() {
                            self.persist(StateCommand::ForgetBackups {
                                group: key.0.clone(),
                                ids: gone,
                            });
                        }
                    }
                    Err(e) => {
                        // list again after a pause; until then nothing is scheduled for the group
                        let st = self.backup_state.entry(key.0.clone()).or_default();
                        st.listed = false;
                        st.last_failure = Some(now.mono);
                        self.backup_failure(&key.0, &key.1, "listing the backup store", &e, now);
                    }
                }
            }
            Purpose::Verify { key } => {
                if let Ok(v) = outcome.and_then(|d| parse::<VerifyOutcome>("verify", &d)) {
                    self.persist(StateCommand::RecordVerify {
                        group: key.0.clone(),
                        id: v.backup_id.clone(),
                        valid: v.valid,
                    });
                }
            }
            Purpose::Drill { key } => {
                let drill = match outcome.and_then(|d| parse::<DrillOutcome>("drill", &d)) {
                    Ok(d) => d,
                    Err(e) => DrillOutcome {
                        backup_id: String::new(),
                        host: key.1.clone(),
                        ok: false,
                        files_checked: 0,
                        bytes: 0,
                        duration_ms: took.as_millis() as u64,
                        detail: e,
                    },
                };
                self.persist(StateCommand::RecordDrill {
                    group: key.0.clone(),
                    at_unix_ms: now.unix_ms,
                    outcome: drill.clone(),
                });
                if !drill.ok {
                    self.backup_failure(&key.0, &key.1, "restore drill", &drill.detail, now);
                }
            }
            Purpose::Restore { key, incident } => {
                match outcome.and_then(|d| parse::<RestoreOutcome>("restore", &d)) {
                    Ok(r) => {
                        let watch = self.settings.restore_watch;
                        self.incident_note(
                        incident,
                        EntryKind::Verification,
                        format!(
                            "restored {} ({} files, {} bytes) in {:.1} s; healthy after {} ms; hooks: {}; previous data kept at {}",
                            r.backup_id,
                            r.files,
                            r.bytes,
                            r.duration_ms as f64 / 1000.0,
                            r.healthy_after_ms.unwrap_or(0),
                            if r.hooks.is_empty() { "none".into() } else { r.hooks.join("; ") },
                            r.previous_kept_at.as_deref().unwrap_or("(not kept)")
                        ),
                        Some(Phase::Watching),
                        now,
                    );
                        let until = now.unix_ms + watch.as_millis() as u64;
                        self.backup_state
                            .entry(key.0.clone())
                            .or_default()
                            .watching
                            .push((incident, key, until));
                    }
                    Err(e) => {
                        self.incident_note(
                            incident,
                            EntryKind::Escalation,
                            format!("restore failed: {e}"),
                            Some(Phase::Open),
                            now,
                        );
                        self.notify(
                            incident,
                            &format!("restore on {} failed: {e}", key.1),
                            None,
                            now,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// How action `id` of `group` ended, if it ended recently.
    pub fn finished_backup_action(
        &self,
        group: &GroupName,
        id: super::ActionId,
    ) -> Option<Result<String, String>> {
        let st = self.backup_state.get(group)?;
        st.finished
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r.clone())
    }

    /// A restore is running on this member (its service is stopped on purpose).
    pub(crate) fn restoring(&self, key: &MemberKey) -> bool {
        self.pending
            .values()
            .any(|p| matches!(&p.purpose, Purpose::Restore { key: k, .. } if k == key))
    }

    /// Backup-type actions running now, for progress displays.
    pub fn running_backup_actions(&self) -> Vec<(super::ActionId, &'static str, MemberKey)> {
        self.pending
            .iter()
            .filter_map(|(id, p)| {
                let (kind, key) = match &p.purpose {
                    Purpose::Backup {
                        key,
                        incremental: false,
                    } => ("full backup", key),
                    Purpose::Backup {
                        key,
                        incremental: true,
                    } => ("incremental backup", key),
                    Purpose::Restore { key, .. } => ("restore", key),
                    Purpose::Drill { key, .. } => ("restore drill", key),
                    Purpose::Verify { key, .. } => ("verify", key),
                    Purpose::Retention { key } => ("retention", key),
                    _ => return None,
                };
                Some((*id, kind, key.clone()))
            })
            .collect()
    }
}
