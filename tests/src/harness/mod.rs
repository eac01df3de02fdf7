//! The multi-process test harness: real binaries, free loopback ports, temp dirs, readiness by
//! polling (never fixed sleeps), everything killed on drop, logs printed when a test fails.
//!
//! Binaries are found in `$DR_BIN_DIR`, else in the cargo target directory the test runs from
//! (`target/debug`). Build them first: `cargo build --workspace --bins` (tests/run.sh does).

pub mod bins;
pub mod browser;
pub mod client;
pub mod cluster;
pub mod cluster_faults;
pub mod daemon;
pub mod delay_proxy;
pub mod disk;
pub mod erlang;
pub mod http;
pub mod netns;
pub mod s3;
pub mod scenario;
pub mod scenario_steps;
pub mod split_brain;
pub mod testnet;
pub mod testnet_setup;
pub mod wait;

pub use bins::Bins;
pub use cluster::{Cluster, ClusterOptions};
pub use daemon::Daemon;
pub use wait::wait_until;

/// True under CI (`CI=true`): a missing prerequisite must fail the run there, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
