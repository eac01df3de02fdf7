//! The controller runtime ([`runtime`]) and what it talks to: agents ([`agent_session`]),
//! operators ([`admin`]), load balancers ([`lb`]) and people ([`notify`]).

pub mod admin;
pub mod admin_backup;
pub mod admin_cluster;
pub mod agent_session;
pub mod auth;
pub mod lb;
pub mod notify;
pub mod runtime;

pub use runtime::{Shared, start, unix_ms};
