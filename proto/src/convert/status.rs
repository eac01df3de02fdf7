use super::session::{health_from_wire, mode_from_wire, role_from_wire};
use super::{MAX_DETAIL, ProtocolError, group, host, optional_host, text};
use crate::domain::{Epoch, GroupView, HealthReport, MemberView, StatusView};
use crate::pb;

const MAX_REASONS: usize = 64;

impl TryFrom<pb::StatusResponse> for StatusView {
    type Error = ProtocolError;
    fn try_from(s: pb::StatusResponse) -> Result<Self, ProtocolError> {
        Ok(StatusView {
            controller_id: text("status.controller_id", s.controller_id, MAX_DETAIL)?,
            leader: s.leader,
            generated_at_unix_ms: s.generated_at_unix_ms,
            groups: s
                .groups
                .into_iter()
                .map(GroupView::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<StatusView> for pb::StatusResponse {
    fn from(s: StatusView) -> Self {
        pb::StatusResponse {
            controller_id: s.controller_id,
            leader: s.leader,
            generated_at_unix_ms: s.generated_at_unix_ms,
            groups: s.groups.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::GroupStatus> for GroupView {
    type Error = ProtocolError;
    fn try_from(g: pb::GroupStatus) -> Result<Self, ProtocolError> {
        Ok(GroupView {
            name: group("group.name", g.name)?,
            epoch: Epoch(g.epoch),
            primary: optional_host("group.primary", g.primary)?,
            mode: mode_from_wire("group.mode", g.mode)?,
            members: g
                .members
                .into_iter()
                .map(MemberView::try_from)
                .collect::<Result<_, _>>()?,
            transition: if g.transition.is_empty() {
                None
            } else {
                Some(text("group.transition", g.transition, MAX_DETAIL)?)
            },
            open_incidents: g.open_incidents,
        })
    }
}

impl From<GroupView> for pb::GroupStatus {
    fn from(g: GroupView) -> Self {
        pb::GroupStatus {
            name: g.name.into(),
            epoch: g.epoch.0,
            primary: g.primary.map(String::from).unwrap_or_default(),
            mode: pb::Mode::from(g.mode) as i32,
            members: g.members.into_iter().map(Into::into).collect(),
            transition: g.transition.unwrap_or_default(),
            open_incidents: g.open_incidents,
        }
    }
}

impl TryFrom<pb::MemberStatus> for MemberView {
    type Error = ProtocolError;
    fn try_from(m: pb::MemberStatus) -> Result<Self, ProtocolError> {
        if m.reasons.len() > MAX_REASONS {
            return Err(ProtocolError::OutOfRange {
                field: "member.reasons",
                value: format!("{} entries", m.reasons.len()),
            });
        }
        Ok(MemberView {
            host: host("member.host", m.host)?,
            role: role_from_wire("member.role", m.role)?,
            health: health_from_wire("member.health", m.health)?,
            reasons: m
                .reasons
                .into_iter()
                .map(|r| text("member.reasons", r, MAX_DETAIL))
                .collect::<Result<_, _>>()?,
            last_seen_ms: m.last_seen_ms,
            lease_remaining_ms: m.lease_remaining_ms,
            connected: m.connected,
            agent_version: text("member.agent_version", m.agent_version, MAX_DETAIL)?,
            last_report: m.last_report.map(HealthReport::try_from).transpose()?,
        })
    }
}

impl From<MemberView> for pb::MemberStatus {
    fn from(m: MemberView) -> Self {
        pb::MemberStatus {
            host: m.host.into(),
            role: pb::Role::from(m.role) as i32,
            health: pb::Health::from(m.health) as i32,
            reasons: m.reasons,
            last_seen_ms: m.last_seen_ms,
            lease_remaining_ms: m.lease_remaining_ms,
            connected: m.connected,
            agent_version: m.agent_version,
            last_report: m.last_report.map(Into::into),
        }
    }
}
