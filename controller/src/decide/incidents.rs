//! Incidents: opened on every detected problem, with a timeline that follows the runbook's
//! flowchart (detected → classified → actions → verification → resolved), escalated at the
//! runbook's steps, resolved with the measured time to recovery.

use dr_proto::domain::{
    Category, EntryKind, GroupName, HostName, Incident, IncidentId, Phase, TimelineEntry,
};

use super::settings::escalation_text;
use super::{Command, Decider, Notification, Now};
use crate::state::StateCommand;

impl Decider {
    fn entry(now: Now, kind: EntryKind, text: impl Into<String>) -> TimelineEntry {
        TimelineEntry {
            at_unix_ms: now.unix_ms,
            kind,
            text: text.into(),
        }
    }

    /// The open incident about `host` (or the whole group with `None`), or a new one.
    /// Returns its id and whether it was just opened.
    pub(crate) fn incident_for(
        &mut self,
        group: &GroupName,
        host: Option<&HostName>,
        category: Category,
        title: &str,
        detected: &str,
        now: Now,
    ) -> (IncidentId, bool) {
        if let Some(i) = self.desired.open_incident_for(group, host) {
            return (i.id, false);
        }
        let id = self.desired.next_incident_id.max(1);
        let incident = Incident {
            id,
            group: group.clone(),
            host: host.cloned(),
            category,
            title: title.to_string(),
            opened_at_unix_ms: now.unix_ms,
            resolved_at_unix_ms: None,
            phase: Phase::Open,
            escalation_step: 0,
            timeline: vec![
                Self::entry(now, EntryKind::Detected, detected),
                Self::entry(now, EntryKind::Classified, category_text(category)),
            ],
            time_to_recovery_ms: None,
        };
        self.persist(StateCommand::OpenIncident { incident });
        self.notify(id, escalation_text(0), Some(0), now);
        (id, true)
    }

    pub(crate) fn incident_note(
        &mut self,
        id: IncidentId,
        kind: EntryKind,
        text: impl Into<String>,
        phase: Option<Phase>,
        now: Now,
    ) {
        if !self.desired.incidents.get(&id).is_some_and(|i| i.is_open()) {
            return;
        }
        self.persist(StateCommand::UpdateIncident {
            id,
            entry: Some(Self::entry(now, kind, text)),
            phase,
            escalation_step: None,
        });
    }

    pub(crate) fn resolve_incident(&mut self, id: IncidentId, text: impl Into<String>, now: Now) {
        if !self.desired.incidents.get(&id).is_some_and(|i| i.is_open()) {
            return;
        }
        let text = text.into();
        self.persist(StateCommand::ResolveIncident {
            id,
            at_unix_ms: now.unix_ms,
            entry: Self::entry(now, EntryKind::Resolved, text.clone()),
        });
        let ttr = self
            .desired
            .incidents
            .get(&id)
            .and_then(|i| i.time_to_recovery_ms)
            .unwrap_or(0);
        self.notify(
            id,
            &format!("resolved after {:.1} s: {text}", ttr as f64 / 1000.0),
            None,
            now,
        );
    }

    pub(crate) fn notify(&mut self, id: IncidentId, text: &str, step: Option<u32>, _now: Now) {
        let Some(i) = self.desired.incidents.get(&id) else {
            return;
        };
        let host = i
            .host
            .as_ref()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default();
        self.out.push(Command::Notify(Notification {
            incident_id: Some(id),
            group: i.group.clone(),
            host: i.host.clone(),
            category: Some(i.category),
            escalation_step: step,
            text: format!("[incident {id}, {}] {}{host}: {text}", i.category, i.title),
        }));
    }

    /// Escalate open incidents whose next step is due.
    pub(crate) fn escalate(&mut self, now: Now) {
        let steps = self.settings.escalation_steps.clone();
        let due: Vec<(IncidentId, u32)> = self
            .desired
            .incidents
            .values()
            .filter(|i| i.is_open() && i.phase != Phase::Watching)
            .filter_map(|i| {
                let next = i.escalation_step as usize + 1;
                let at = steps.get(next)?;
                let elapsed = now.unix_ms.saturating_sub(i.opened_at_unix_ms);
                (elapsed >= at.as_millis() as u64).then_some((i.id, next as u32))
            })
            .collect();
        for (id, step) in due {
            let text = escalation_text(step as usize);
            self.persist(StateCommand::UpdateIncident {
                id,
                entry: Some(Self::entry(
                    now,
                    EntryKind::Escalation,
                    format!("step {step}: {text}"),
                )),
                phase: None,
                escalation_step: Some(step),
            });
            self.notify(id, text, Some(step), now);
        }
    }
}

fn category_text(c: Category) -> String {
    let what = match c {
        Category::ProcessCrash => "process crash: restart in place (Procedure 1)",
        Category::NetworkIssue => "network issue: check routes",
        Category::DataProblem => "data problem: check backups",
        Category::NodeFailure => {
            "node failure: promote a replica if it is the primary (Procedure 3)"
        }
        Category::Overload => "overloaded or hung: restart in place, check client load",
        Category::ApplicationError => "application error: check logs",
        Category::MemoryLeak => "memory leak suspected: check logs, restart",
        Category::NoCandidate => "no healthy replica to promote",
        Category::BackupFailure => "backup failure",
        Category::RestoreFailure => "restore failure",
        Category::ReplicaSync => "replica sync issue",
    };
    format!("classified: {what}")
}
