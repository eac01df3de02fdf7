//! erlmcp-dr protocol v1 and the pieces every binary shares at its edges.
//!
//! - [`pb`]: code generated from `proto/erlmcp_dr/v1/*.proto` (wire types; never used as domain types).
//! - [`domain`]: plain Rust types the agent, controller and drctl reason with.
//! - [`convert`]: validating `TryFrom` from wire to domain (and `From` back), so bad input is
//!   refused with a typed [`convert::ProtocolError`] at the edge.
//! - [`identity`]: who a certificate speaks for (`agent:HOST`, `operator:NAME`, ...).
//! - [`tls`]: loading PEM files and building the mTLS configurations.
//! - [`config_file`]: TOML loading with env overrides and errors that name the key.
//! - [`process`]: liveness, signals and pid files for the binaries and the test harness.
//! - [`http_client`]: one-shot HTTP requests that say where they failed (probes, smoke, webhooks).

pub mod config_file;
pub mod convert;
pub mod domain;
pub mod http_client;
pub mod identity;
pub mod process;
pub mod tls;

/// Generated protobuf and gRPC code (package `erlmcp_dr.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("erlmcp_dr.v1");
}

/// The protocol version an agent announces in `Hello`; the controller refuses others.
pub const PROTOCOL_VERSION: u32 = 1;

/// gRPC metadata a controller that does not lead adds to its refusal: the leader's URL (when
/// one is known), so agents and drctl go there next.
pub const LEADER_HINT_HEADER: &str = "x-dr-leader";

/// Upper bound for any single gRPC message on our services. Reports and status answers are a few
/// KiB; anything near this limit is hostile or broken and is refused by tonic before decoding.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Install the process-wide rustls crypto provider (aws-lc-rs). Call once at start of every binary;
/// calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
