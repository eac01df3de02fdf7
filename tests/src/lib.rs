//! Test support for erlmcp-dr.
//!
//! - [`standin`]: `erlmcp-standin`, a small HTTP service that behaves like erlmcp where
//!   erlmcp-dr can see it (health, metrics, a data directory it keeps writing, a log in
//!   erlmcp's style) and can be told to fail in each way the runbook knows.
//! - [`harness`]: starts the real binaries on free loopback ports in temp dirs, waits for
//!   conditions by polling, kills everything on drop and prints logs when a test fails.
//! - [`doc_commands`]: the shell commands of the Markdown docs, for the test that runs them.

pub mod doc_commands;
pub mod harness;
pub mod standin;
