//! Messages of the agent session stream, as the agent and controller reason about them.

use serde::{Deserialize, Serialize};

use super::{Epoch, GroupName, HealthReport, HostName, Role};

/// First message of every session.
#[derive(Clone, Debug, PartialEq)]
pub struct Hello {
    pub protocol_version: u32,
    pub host: HostName,
    pub group: GroupName,
    pub agent_version: String,
    pub capabilities: Vec<String>,
    pub last_epoch_seen: Epoch,
    pub priority: i32,
    pub no_failover: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    pub controller_id: String,
    pub epoch: Epoch,
    pub role: Role,
    pub primary: Option<HostName>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReportAck {
    pub seq: u64,
    pub epoch: Epoch,
    pub role: Role,
    pub primary: Option<HostName>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeaseRequest {
    pub request_id: u64,
    pub epoch: Epoch,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeaseRelease {
    pub epoch: Epoch,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeaseGrant {
    pub request_id: u64,
    pub epoch: Epoch,
    /// `Ok(ttl_ms)` when granted, `Err(reason)` when refused.
    pub outcome: Result<u32, String>,
}

/// An action the controller asks an agent to run. Agents only run actions named in their own
/// config; anything else is refused with a result that says so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    Ping {
        note: String,
    },
    /// Procedure 1: stop, grace, kill the process tree, start, wait healthy, check the log.
    Restart {
        reason: String,
    },
    /// Become primary at the command's epoch (promote hook, then lease).
    Promote {
        old_primary: Option<HostName>,
    },
    /// Stop being primary (demote hook, lease given back).
    Demote {
        new_primary: Option<HostName>,
        reason: String,
    },
    ReadLogs {
        lines: u32,
        grep: String,
        follow: bool,
    },
    Diagnostics {
        log_mib: u32,
    },
    Backup {
        incremental: bool,
    },
    Restore {
        backup_id: Option<String>,
        from_host: Option<HostName>,
    },
    VerifyBackup {
        backup_id: Option<String>,
        deep: bool,
        from_host: Option<HostName>,
    },
    Drill {
        backup_id: Option<String>,
        from_host: Option<HostName>,
    },
    ListBackups,
    ApplyRetention {
        keep_last: u32,
        keep_daily: u32,
        keep_weekly: u32,
    },
}

impl Action {
    /// The capability name an agent must announce for this action.
    pub fn capability(&self) -> &'static str {
        match self {
            Action::Ping { .. } => "ping",
            Action::Restart { .. } => "restart",
            Action::Promote { .. } => "promote",
            Action::Demote { .. } => "demote",
            Action::ReadLogs { .. } => "logs",
            Action::Diagnostics { .. } => "diagnostics",
            Action::Backup { .. }
            | Action::VerifyBackup { .. }
            | Action::ListBackups
            | Action::ApplyRetention { .. } => "backup",
            Action::Restore { .. } => "restore",
            Action::Drill { .. } => "drill",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub id: String,
    pub epoch: Epoch,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// `Err` holds what failed, in words an operator can act on.
    pub outcome: Result<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UpdateKind {
    Progress {
        message: String,
        done: u64,
        total: u64,
    },
    /// Streamed output (log lines, bundle bytes).
    Chunk(Vec<u8>),
    Result(CommandResult),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CommandUpdate {
    pub command_id: String,
    pub update: UpdateKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AgentMessage {
    Hello(Hello),
    Report(HealthReport),
    LeaseRequest(LeaseRequest),
    CommandUpdate(CommandUpdate),
    LeaseRelease(LeaseRelease),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ControllerMessage {
    Welcome(Welcome),
    Ack(ReportAck),
    LeaseGrant(LeaseGrant),
    Command(Command),
}
