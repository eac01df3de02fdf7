use super::{MAX_DETAIL, ProtocolError, excerpt, group, host, optional_host, text};
use crate::domain::{
    Action, AgentMessage, Command, CommandResult, CommandUpdate, ControllerMessage, Epoch, Health,
    HealthReport, Hello, LeaseGrant, LeaseRelease, LeaseRequest, Mode, ReportAck, Role, UpdateKind,
    Welcome,
};
use crate::pb;

const MAX_CAPABILITIES: usize = 64;
const MAX_ID: usize = 128;
/// A backup id (`full-2026-01-27T13:45:30Z`); empty means "the newest".
fn backup_id(field: &'static str, s: String) -> Result<Option<String>, ProtocolError> {
    if s.is_empty() {
        return Ok(None);
    }
    if !crate::domain::valid_backup_id(&s) {
        return Err(ProtocolError::OutOfRange {
            field,
            value: excerpt(&s),
        });
    }
    Ok(Some(s))
}

/// Streamed chunks are cut by the agent well below the message limit.
const MAX_CHUNK: usize = 256 * 1024;

pub(crate) fn role_from_wire(field: &'static str, v: i32) -> Result<Role, ProtocolError> {
    match pb::Role::try_from(v) {
        Ok(pb::Role::Primary) => Ok(Role::Primary),
        Ok(pb::Role::Replica) => Ok(Role::Replica),
        Ok(pb::Role::Fenced) => Ok(Role::Fenced),
        Ok(pb::Role::Unknown) => Ok(Role::Unknown),
        Ok(pb::Role::Unspecified) | Err(_) => Err(ProtocolError::UnknownEnum { field, value: v }),
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Primary => pb::Role::Primary,
            Role::Replica => pb::Role::Replica,
            Role::Fenced => pb::Role::Fenced,
            Role::Unknown => pb::Role::Unknown,
        }
    }
}

pub(crate) fn health_from_wire(field: &'static str, v: i32) -> Result<Health, ProtocolError> {
    match pb::Health::try_from(v) {
        Ok(pb::Health::Green) => Ok(Health::Green),
        Ok(pb::Health::Yellow) => Ok(Health::Yellow),
        Ok(pb::Health::Red) => Ok(Health::Red),
        Ok(pb::Health::Unknown) => Ok(Health::Unknown),
        Ok(pb::Health::Unspecified) | Err(_) => Err(ProtocolError::UnknownEnum { field, value: v }),
    }
}

impl From<Health> for pb::Health {
    fn from(h: Health) -> Self {
        match h {
            Health::Green => pb::Health::Green,
            Health::Yellow => pb::Health::Yellow,
            Health::Red => pb::Health::Red,
            Health::Unknown => pb::Health::Unknown,
        }
    }
}

pub(crate) fn mode_from_wire(field: &'static str, v: i32) -> Result<Mode, ProtocolError> {
    match pb::Mode::try_from(v) {
        Ok(pb::Mode::Automatic) => Ok(Mode::Automatic),
        Ok(pb::Mode::Paused) => Ok(Mode::Paused),
        Ok(pb::Mode::Unspecified) | Err(_) => Err(ProtocolError::UnknownEnum { field, value: v }),
    }
}

impl From<Mode> for pb::Mode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Automatic => pb::Mode::Automatic,
            Mode::Paused => pb::Mode::Paused,
        }
    }
}

impl TryFrom<pb::Hello> for Hello {
    type Error = ProtocolError;
    fn try_from(h: pb::Hello) -> Result<Self, ProtocolError> {
        if h.capabilities.len() > MAX_CAPABILITIES {
            return Err(ProtocolError::OutOfRange {
                field: "hello.capabilities",
                value: format!("{} entries", h.capabilities.len()),
            });
        }
        Ok(Hello {
            protocol_version: h.protocol_version,
            host: host("hello.host", h.host)?,
            group: group("hello.group", h.group)?,
            agent_version: text("hello.agent_version", h.agent_version, MAX_ID)?,
            capabilities: h
                .capabilities
                .into_iter()
                .map(|c| text("hello.capabilities", c, MAX_ID))
                .collect::<Result<_, _>>()?,
            last_epoch_seen: Epoch(h.last_epoch_seen),
            priority: h.priority,
            no_failover: h.no_failover,
        })
    }
}

impl From<Hello> for pb::Hello {
    fn from(h: Hello) -> Self {
        pb::Hello {
            protocol_version: h.protocol_version,
            host: h.host.into(),
            group: h.group.into(),
            agent_version: h.agent_version,
            capabilities: h.capabilities,
            last_epoch_seen: h.last_epoch_seen.0,
            priority: h.priority,
            no_failover: h.no_failover,
        }
    }
}

impl TryFrom<pb::Welcome> for Welcome {
    type Error = ProtocolError;
    fn try_from(w: pb::Welcome) -> Result<Self, ProtocolError> {
        Ok(Welcome {
            controller_id: text("welcome.controller_id", w.controller_id, MAX_ID)?,
            epoch: Epoch(w.epoch),
            role: role_from_wire("welcome.role", w.role)?,
            primary: optional_host("welcome.primary", w.primary)?,
        })
    }
}

impl From<Welcome> for pb::Welcome {
    fn from(w: Welcome) -> Self {
        pb::Welcome {
            controller_id: w.controller_id,
            epoch: w.epoch.0,
            role: pb::Role::from(w.role) as i32,
            primary: w.primary.map(String::from).unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::ReportAck> for ReportAck {
    type Error = ProtocolError;
    fn try_from(a: pb::ReportAck) -> Result<Self, ProtocolError> {
        Ok(ReportAck {
            seq: a.seq,
            epoch: Epoch(a.epoch),
            role: role_from_wire("ack.role", a.role)?,
            primary: optional_host("ack.primary", a.primary)?,
        })
    }
}

impl From<ReportAck> for pb::ReportAck {
    fn from(a: ReportAck) -> Self {
        pb::ReportAck {
            seq: a.seq,
            epoch: a.epoch.0,
            role: pb::Role::from(a.role) as i32,
            primary: a.primary.map(String::from).unwrap_or_default(),
        }
    }
}

impl From<pb::LeaseRequest> for LeaseRequest {
    fn from(r: pb::LeaseRequest) -> Self {
        LeaseRequest {
            request_id: r.request_id,
            epoch: Epoch(r.epoch),
        }
    }
}

impl From<LeaseRequest> for pb::LeaseRequest {
    fn from(r: LeaseRequest) -> Self {
        pb::LeaseRequest {
            request_id: r.request_id,
            epoch: r.epoch.0,
        }
    }
}

impl TryFrom<pb::LeaseRelease> for LeaseRelease {
    type Error = ProtocolError;
    fn try_from(r: pb::LeaseRelease) -> Result<Self, ProtocolError> {
        Ok(LeaseRelease {
            epoch: Epoch(r.epoch),
            reason: text("lease_release.reason", r.reason, MAX_DETAIL)?,
        })
    }
}

impl From<LeaseRelease> for pb::LeaseRelease {
    fn from(r: LeaseRelease) -> Self {
        pb::LeaseRelease {
            epoch: r.epoch.0,
            reason: r.reason,
        }
    }
}

impl TryFrom<pb::LeaseGrant> for LeaseGrant {
    type Error = ProtocolError;
    fn try_from(g: pb::LeaseGrant) -> Result<Self, ProtocolError> {
        let outcome = if g.granted {
            if g.ttl_ms == 0 {
                return Err(ProtocolError::OutOfRange {
                    field: "lease_grant.ttl_ms",
                    value: "0".into(),
                });
            }
            Ok(g.ttl_ms)
        } else {
            Err(text("lease_grant.reason", g.reason, MAX_DETAIL)?)
        };
        Ok(LeaseGrant {
            request_id: g.request_id,
            epoch: Epoch(g.epoch),
            outcome,
        })
    }
}

impl From<LeaseGrant> for pb::LeaseGrant {
    fn from(g: LeaseGrant) -> Self {
        let (granted, ttl_ms, reason) = match g.outcome {
            Ok(ttl) => (true, ttl, String::new()),
            Err(reason) => (false, 0, reason),
        };
        pb::LeaseGrant {
            request_id: g.request_id,
            epoch: g.epoch.0,
            granted,
            ttl_ms,
            reason,
        }
    }
}

impl TryFrom<pb::Command> for Command {
    type Error = ProtocolError;
    fn try_from(c: pb::Command) -> Result<Self, ProtocolError> {
        use pb::command::Action as A;
        let action = match c.action.ok_or(ProtocolError::Missing("command.action"))? {
            A::Ping(p) => Action::Ping {
                note: text("ping.note", p.note, MAX_DETAIL)?,
            },
            A::Restart(r) => Action::Restart {
                reason: text("restart.reason", r.reason, MAX_DETAIL)?,
            },
            A::Promote(p) => Action::Promote {
                old_primary: optional_host("promote.old_primary", p.old_primary)?,
            },
            A::Demote(d) => Action::Demote {
                new_primary: optional_host("demote.new_primary", d.new_primary)?,
                reason: text("demote.reason", d.reason, MAX_DETAIL)?,
            },
            A::ReadLogs(r) => Action::ReadLogs {
                lines: r.lines,
                grep: text("read_logs.grep", r.grep, MAX_DETAIL)?,
                follow: r.follow,
            },
            A::Diagnostics(d) => Action::Diagnostics { log_mib: d.log_mib },
            A::Backup(b) => Action::Backup {
                incremental: b.incremental,
            },
            A::Restore(r) => Action::Restore {
                backup_id: backup_id("restore.backup_id", r.backup_id)?,
                from_host: optional_host("restore.from_host", r.from_host)?,
            },
            A::VerifyBackup(v) => Action::VerifyBackup {
                backup_id: backup_id("verify_backup.backup_id", v.backup_id)?,
                deep: v.deep,
                from_host: optional_host("verify_backup.from_host", v.from_host)?,
            },
            A::Drill(d) => Action::Drill {
                backup_id: backup_id("drill.backup_id", d.backup_id)?,
                from_host: optional_host("drill.from_host", d.from_host)?,
            },
            A::ListBackups(_) => Action::ListBackups,
            A::ApplyRetention(r) => Action::ApplyRetention {
                keep_last: r.keep_last,
                keep_daily: r.keep_daily,
                keep_weekly: r.keep_weekly,
            },
        };
        if c.id.is_empty() {
            return Err(ProtocolError::Missing("command.id"));
        }
        Ok(Command {
            id: text("command.id", c.id, MAX_ID)?,
            epoch: Epoch(c.epoch),
            action,
        })
    }
}

impl From<Command> for pb::Command {
    fn from(c: Command) -> Self {
        use pb::command::Action as A;
        let action = match c.action {
            Action::Ping { note } => A::Ping(pb::Ping { note }),
            Action::Restart { reason } => A::Restart(pb::Restart { reason }),
            Action::Promote { old_primary } => A::Promote(pb::Promote {
                old_primary: old_primary.map(String::from).unwrap_or_default(),
            }),
            Action::Demote {
                new_primary,
                reason,
            } => A::Demote(pb::Demote {
                new_primary: new_primary.map(String::from).unwrap_or_default(),
                reason,
            }),
            Action::ReadLogs {
                lines,
                grep,
                follow,
            } => A::ReadLogs(pb::ReadLogs {
                lines,
                grep,
                follow,
            }),
            Action::Diagnostics { log_mib } => A::Diagnostics(pb::Diagnostics { log_mib }),
            Action::Backup { incremental } => A::Backup(pb::Backup { incremental }),
            Action::Restore {
                backup_id,
                from_host,
            } => A::Restore(pb::Restore {
                backup_id: backup_id.unwrap_or_default(),
                from_host: from_host.map(String::from).unwrap_or_default(),
            }),
            Action::VerifyBackup {
                backup_id,
                deep,
                from_host,
            } => A::VerifyBackup(pb::VerifyBackup {
                backup_id: backup_id.unwrap_or_default(),
                deep,
                from_host: from_host.map(String::from).unwrap_or_default(),
            }),
            Action::Drill {
                backup_id,
                from_host,
            } => A::Drill(pb::Drill {
                backup_id: backup_id.unwrap_or_default(),
                from_host: from_host.map(String::from).unwrap_or_default(),
            }),
            Action::ListBackups => A::ListBackups(pb::ListBackups {}),
            Action::ApplyRetention {
                keep_last,
                keep_daily,
                keep_weekly,
            } => A::ApplyRetention(pb::ApplyRetention {
                keep_last,
                keep_daily,
                keep_weekly,
            }),
        };
        pb::Command {
            id: c.id,
            epoch: c.epoch.0,
            action: Some(action),
        }
    }
}

impl TryFrom<pb::CommandUpdate> for CommandUpdate {
    type Error = ProtocolError;
    fn try_from(u: pb::CommandUpdate) -> Result<Self, ProtocolError> {
        let update = match u
            .update
            .ok_or(ProtocolError::Missing("command_update.update"))?
        {
            pb::command_update::Update::Progress(p) => UpdateKind::Progress {
                message: text("progress.message", p.message, MAX_DETAIL)?,
                done: p.done,
                total: p.total,
            },
            pb::command_update::Update::Chunk(bytes) => {
                if bytes.len() > MAX_CHUNK {
                    return Err(ProtocolError::TooLong {
                        field: "command_update.chunk",
                        len: bytes.len(),
                        max: MAX_CHUNK,
                    });
                }
                UpdateKind::Chunk(bytes)
            }
            pb::command_update::Update::Result(r) => UpdateKind::Result(CommandResult {
                outcome: if r.ok {
                    Ok(text("result.detail", r.detail, MAX_DETAIL)?)
                } else {
                    Err(text("result.error", r.error, MAX_DETAIL)?)
                },
            }),
        };
        Ok(CommandUpdate {
            command_id: text("command_update.command_id", u.command_id, MAX_ID)?,
            update,
        })
    }
}

impl From<CommandUpdate> for pb::CommandUpdate {
    fn from(u: CommandUpdate) -> Self {
        let update = match u.update {
            UpdateKind::Progress {
                message,
                done,
                total,
            } => pb::command_update::Update::Progress(pb::CommandProgress {
                message,
                done,
                total,
            }),
            UpdateKind::Chunk(bytes) => pb::command_update::Update::Chunk(bytes),
            UpdateKind::Result(r) => {
                let (ok, error, detail) = match r.outcome {
                    Ok(detail) => (true, String::new(), detail),
                    Err(error) => (false, error, String::new()),
                };
                pb::command_update::Update::Result(pb::CommandResult { ok, error, detail })
            }
        };
        pb::CommandUpdate {
            command_id: u.command_id,
            update: Some(update),
        }
    }
}

impl TryFrom<pb::AgentMessage> for AgentMessage {
    type Error = ProtocolError;
    fn try_from(m: pb::AgentMessage) -> Result<Self, ProtocolError> {
        use pb::agent_message::Body;
        Ok(
            match m.body.ok_or(ProtocolError::Missing("agent_message.body"))? {
                Body::Hello(h) => AgentMessage::Hello(h.try_into()?),
                Body::Report(r) => AgentMessage::Report(HealthReport::try_from(r)?),
                Body::LeaseRequest(r) => AgentMessage::LeaseRequest(r.into()),
                Body::CommandUpdate(u) => AgentMessage::CommandUpdate(u.try_into()?),
                Body::LeaseRelease(r) => AgentMessage::LeaseRelease(r.try_into()?),
            },
        )
    }
}

impl From<AgentMessage> for pb::AgentMessage {
    fn from(m: AgentMessage) -> Self {
        use pb::agent_message::Body;
        let body = match m {
            AgentMessage::Hello(h) => Body::Hello(h.into()),
            AgentMessage::Report(r) => Body::Report(r.into()),
            AgentMessage::LeaseRequest(r) => Body::LeaseRequest(r.into()),
            AgentMessage::CommandUpdate(u) => Body::CommandUpdate(u.into()),
            AgentMessage::LeaseRelease(r) => Body::LeaseRelease(r.into()),
        };
        pb::AgentMessage { body: Some(body) }
    }
}

impl TryFrom<pb::ControllerMessage> for ControllerMessage {
    type Error = ProtocolError;
    fn try_from(m: pb::ControllerMessage) -> Result<Self, ProtocolError> {
        use pb::controller_message::Body;
        Ok(
            match m
                .body
                .ok_or(ProtocolError::Missing("controller_message.body"))?
            {
                Body::Welcome(w) => ControllerMessage::Welcome(w.try_into()?),
                Body::Ack(a) => ControllerMessage::Ack(a.try_into()?),
                Body::LeaseGrant(g) => ControllerMessage::LeaseGrant(g.try_into()?),
                Body::Command(c) => ControllerMessage::Command(c.try_into()?),
            },
        )
    }
}

impl From<ControllerMessage> for pb::ControllerMessage {
    fn from(m: ControllerMessage) -> Self {
        use pb::controller_message::Body;
        let body = match m {
            ControllerMessage::Welcome(w) => Body::Welcome(w.into()),
            ControllerMessage::Ack(a) => Body::Ack(a.into()),
            ControllerMessage::LeaseGrant(g) => Body::LeaseGrant(g.into()),
            ControllerMessage::Command(c) => Body::Command(c.into()),
        };
        pb::ControllerMessage { body: Some(body) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GroupName, HostName};

    #[test]
    fn hello_with_a_path_like_host_is_refused() {
        let wire = pb::Hello {
            protocol_version: 1,
            host: "../etc".into(),
            group: "g".into(),
            ..Default::default()
        };
        let err = Hello::try_from(wire).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::BadName {
                field: "hello.host",
                ..
            }
        ));
    }

    #[test]
    fn refused_values_are_echoed_only_in_part() {
        // Found by tests/wire_input_never_panics.rs: the whole value went into the error, the
        // log line and the gRPC status message.
        let wire = pb::Hello {
            protocol_version: 1,
            host: "h".into(),
            group: "x".repeat(1 << 20),
            ..Default::default()
        };
        let text = Hello::try_from(wire).unwrap_err().to_string();
        assert!(text.len() < 300, "{} bytes: {text:.100}", text.len());
        assert!(text.contains("(1048576 bytes)"), "{text}");
        let wire = pb::Command {
            id: "c".into(),
            epoch: 1,
            action: Some(pb::command::Action::Drill(pb::Drill {
                backup_id: "é".repeat(1 << 16),
                from_host: String::new(),
            })),
        };
        let text = Command::try_from(wire).unwrap_err().to_string();
        assert!(text.len() < 300, "{} bytes: {text:.100}", text.len());
    }

    #[test]
    fn messages_round_trip() {
        let hello = Hello {
            protocol_version: 1,
            host: HostName::new("a").unwrap(),
            group: GroupName::new("g").unwrap(),
            agent_version: "0.1.0".into(),
            capabilities: vec!["ping".into()],
            last_epoch_seen: Epoch(3),
            priority: 5,
            no_failover: true,
        };
        let m = AgentMessage::Hello(hello);
        let back = AgentMessage::try_from(pb::AgentMessage::from(m.clone())).unwrap();
        assert_eq!(back, m);

        let c = ControllerMessage::Command(Command {
            id: "c-1".into(),
            epoch: Epoch(2),
            action: Action::Ping { note: "hi".into() },
        });
        let back = ControllerMessage::try_from(pb::ControllerMessage::from(c.clone())).unwrap();
        assert_eq!(back, c);

        let g = ControllerMessage::LeaseGrant(LeaseGrant {
            request_id: 9,
            epoch: Epoch(2),
            outcome: Err("not primary".into()),
        });
        let back = ControllerMessage::try_from(pb::ControllerMessage::from(g.clone())).unwrap();
        assert_eq!(back, g);
    }

    #[test]
    fn empty_messages_are_refused() {
        assert_eq!(
            AgentMessage::try_from(pb::AgentMessage { body: None }).unwrap_err(),
            ProtocolError::Missing("agent_message.body")
        );
        let no_action = pb::Command {
            id: "x".into(),
            epoch: 1,
            action: None,
        };
        assert_eq!(
            Command::try_from(no_action).unwrap_err(),
            ProtocolError::Missing("command.action")
        );
    }
}
