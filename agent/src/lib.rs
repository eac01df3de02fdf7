//! erlmcp-dr agent: probes one erlmcp host, reports to the controller over one mTLS gRPC stream,
//! serves `/primary`, `/replica`, `/health`, `/metrics`, and executes the actions its own config
//! enables.

pub mod backup_ops;
pub mod commands;
pub mod config;
pub mod diagnostics;
pub mod hooks;
pub mod http_server;
pub mod lease;
pub mod probe;
pub mod role;
pub mod scrub;
pub mod service_ctl;
pub mod session;
pub mod standalone;
pub mod state;
