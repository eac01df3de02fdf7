use super::{MAX_DETAIL, ProtocolError, excerpt, group, host, optional_host, text};
use crate::domain::{Epoch, Incident, RoleChange, TimelineEntry};
use crate::pb;

const MAX_TIMELINE: usize = 10_000;

fn parse<T: std::str::FromStr<Err = String>>(
    field: &'static str,
    s: &str,
) -> Result<T, ProtocolError> {
    s.parse().map_err(|e: String| ProtocolError::OutOfRange {
        field,
        value: excerpt(&e),
    })
}

impl TryFrom<pb::Incident> for Incident {
    type Error = ProtocolError;
    fn try_from(i: pb::Incident) -> Result<Self, ProtocolError> {
        if i.timeline.len() > MAX_TIMELINE {
            return Err(ProtocolError::OutOfRange {
                field: "incident.timeline",
                value: format!("{} entries", i.timeline.len()),
            });
        }
        Ok(Incident {
            id: i.id,
            group: group("incident.group", i.group)?,
            host: optional_host("incident.host", i.host)?,
            category: parse("incident.category", &i.category)?,
            title: text("incident.title", i.title, MAX_DETAIL)?,
            opened_at_unix_ms: i.opened_at_unix_ms,
            resolved_at_unix_ms: i.resolved_at_unix_ms,
            phase: parse("incident.phase", &i.phase)?,
            escalation_step: i.escalation_step,
            timeline: i
                .timeline
                .into_iter()
                .map(|e| {
                    Ok(TimelineEntry {
                        at_unix_ms: e.at_unix_ms,
                        kind: parse("timeline.kind", &e.kind)?,
                        text: text("timeline.text", e.text, MAX_DETAIL)?,
                    })
                })
                .collect::<Result<_, ProtocolError>>()?,
            time_to_recovery_ms: i.time_to_recovery_ms,
        })
    }
}

impl From<Incident> for pb::Incident {
    fn from(i: Incident) -> Self {
        pb::Incident {
            id: i.id,
            group: i.group.into(),
            host: i.host.map(String::from).unwrap_or_default(),
            category: i.category.as_str().into(),
            title: i.title,
            opened_at_unix_ms: i.opened_at_unix_ms,
            resolved_at_unix_ms: i.resolved_at_unix_ms,
            phase: i.phase.as_str().into(),
            escalation_step: i.escalation_step,
            timeline: i
                .timeline
                .into_iter()
                .map(|e| pb::TimelineEntry {
                    at_unix_ms: e.at_unix_ms,
                    kind: e.kind.as_str().into(),
                    text: e.text,
                })
                .collect(),
            time_to_recovery_ms: i.time_to_recovery_ms,
        }
    }
}

impl TryFrom<pb::RoleChange> for RoleChange {
    type Error = ProtocolError;
    fn try_from(c: pb::RoleChange) -> Result<Self, ProtocolError> {
        Ok(RoleChange {
            group: group("role_change.group", c.group)?,
            epoch: Epoch(c.epoch),
            from: optional_host("role_change.from", c.from)?,
            to: host("role_change.to", c.to)?,
            kind: parse("role_change.kind", &c.kind)?,
            at_unix_ms: c.at_unix_ms,
            rto_ms: c.rto_ms,
            incident_id: (c.incident_id != 0).then_some(c.incident_id),
            reason: text("role_change.reason", c.reason, MAX_DETAIL)?,
        })
    }
}

impl From<RoleChange> for pb::RoleChange {
    fn from(c: RoleChange) -> Self {
        pb::RoleChange {
            group: c.group.into(),
            epoch: c.epoch.0,
            from: c.from.map(String::from).unwrap_or_default(),
            to: c.to.into(),
            kind: c.kind.as_str().into(),
            at_unix_ms: c.at_unix_ms,
            rto_ms: c.rto_ms,
            incident_id: c.incident_id.unwrap_or(0),
            reason: c.reason,
        }
    }
}
