//! Domain types: validated, plain Rust, independent of the wire format.

mod health;
mod names;
mod roles;
mod session;
mod status;

pub use health::{
    HealthReport, HttpClass, HttpProbe, MetricsProbe, PortProbe, PortState, ProcessProbe,
    ProcessState, ServiceMetrics,
};
pub use names::{Epoch, GroupName, HostName, NameError};
pub use roles::{Health, Mode, Role};
pub use session::{
    Action, AgentMessage, Command, CommandResult, CommandUpdate, ControllerMessage, Hello,
    LeaseGrant, LeaseRequest, ReportAck, UpdateKind, Welcome,
};
pub use status::{GroupView, MemberView, StatusView};
