//! Domain types: validated, plain Rust, independent of the wire format.

mod backup;
mod health;
mod incident;
mod names;
mod roles;
mod session;
mod status;
mod views;

pub use backup::{
    BackupKind, BackupRecord, DrillOutcome, RestoreOutcome, RetentionOutcome, VerifyOutcome,
    valid_backup_id,
};
pub use health::{
    AgentRoleState, ErlangProbe, HealthReport, HostProbe, HttpClass, HttpProbe, LogFacts, LogProbe,
    MetricsProbe, PortProbe, PortState, ProcessProbe, ProcessState, RpcResult, ServiceMetrics,
};
pub use incident::{
    Category, ChangeKind, EntryKind, Incident, IncidentId, Phase, RoleChange, TimelineEntry,
};
pub use names::{Epoch, GroupName, HostName, NameError};
pub use roles::{Health, Mode, Role};
pub use session::{
    Action, AgentMessage, Command, CommandResult, CommandUpdate, ControllerMessage, Hello,
    LeaseGrant, LeaseRelease, LeaseRequest, ReportAck, UpdateKind, Welcome,
};
pub use status::{GroupView, MemberView, StatusView};
pub use views::{BackupEntryView, BackupListView, DrillView, HistoryView};
