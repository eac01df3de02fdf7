//! erlmcp-dr controller.
//!
//! - [`state`]: desired state and its single `apply(command)` entry point, persisted in redb.
//! - [`decide`]: the pure decision core (failover, restarts, incidents, leases).
//! - [`classify`]: report → green/yellow/red with the runbook's thresholds (pure).
//! - [`status`]: the status view shown by drctl, the API and the dashboard (pure).
//! - [`service`]: the runtime and gRPC services; [`http`]: dashboard, JSON API, `/metrics`.

pub mod classify;
pub mod config;
pub mod decide;
pub mod http;
pub mod metrics;
pub mod raft;
pub mod server;
pub mod service;
pub mod state;
pub mod state_backup;
pub mod status;
