//! drctl as a library: the pieces of the command line that the test harness reuses (PKI, the
//! demo layout, the status client). The binary is `src/main.rs`.

pub mod actions;
pub mod backups;
pub mod client;
pub mod config;
pub mod controllers;
pub mod demo;
pub mod docgen;
pub mod error;
pub mod history;
pub mod output;
pub mod pki;
pub mod progress;
pub mod status;
pub mod streams;
pub mod watch;
