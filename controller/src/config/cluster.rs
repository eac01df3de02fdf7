//! `[cluster]`: this controller's place in the Raft-replicated controller cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dr_proto::config_file::ConfigError;
use serde::Deserialize;

use crate::raft::node::ClusterSettings;
use crate::raft::{ControllerNode, node_id};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCluster {
    /// The gRPC URL peers, agents and drctl reach this controller at (default: from `listen`).
    advertise: Option<String>,
    /// Wait to be added with `drctl controller add` instead of forming a cluster.
    join: bool,
    heartbeat_ms: u64,
    election_timeout_min_ms: u64,
    election_timeout_max_ms: u64,
    snapshot_every: u64,
    /// The controllers forming the cluster at its first start (this one included).
    #[serde(rename = "member")]
    members: Vec<RawMember>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMember {
    id: String,
    addr: String,
}

impl Default for RawCluster {
    fn default() -> Self {
        let d = ClusterSettings::default();
        RawCluster {
            advertise: None,
            join: d.join,
            heartbeat_ms: d.heartbeat.as_millis() as u64,
            election_timeout_min_ms: d.election_timeout_min.as_millis() as u64,
            election_timeout_max_ms: d.election_timeout_max.as_millis() as u64,
            snapshot_every: d.snapshot_every,
            members: Vec::new(),
        }
    }
}

fn check_url(file: &Path, key: String, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError::key(
            file,
            key,
            format!("{url:?} is not a URL; write it as https://HOST:PORT"),
        ));
    }
    Ok(())
}

/// Validate `[cluster]` for the controller named `id` listening on `listen`.
pub(super) fn validate(
    file: &Path,
    raw: RawCluster,
    id: &str,
    listen: SocketAddr,
    tls: bool,
) -> Result<(ControllerNode, ClusterSettings), ConfigError> {
    let advertise = match raw.advertise {
        Some(a) => {
            check_url(file, "cluster.advertise".into(), &a)?;
            a
        }
        None => {
            // An unspecified listen address is no address to reach: loopback then (a cluster
            // of one; several controllers name their addresses in [[cluster.member]]).
            let mut at = listen;
            if at.ip().is_unspecified() {
                at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("{}://{at}", if tls { "https" } else { "http" })
        }
    };
    if raw.heartbeat_ms == 0 {
        return Err(ConfigError::key(
            file,
            "cluster.heartbeat_ms",
            "must be at least 1",
        ));
    }
    if raw.election_timeout_min_ms < 3 * raw.heartbeat_ms {
        return Err(ConfigError::key(
            file,
            "cluster.election_timeout_min_ms",
            format!(
                "must be at least 3 heartbeats ({} ms), or followers start elections while the leader is fine",
                3 * raw.heartbeat_ms
            ),
        ));
    }
    if raw.election_timeout_max_ms <= raw.election_timeout_min_ms {
        return Err(ConfigError::key(
            file,
            "cluster.election_timeout_max_ms",
            "must be greater than election_timeout_min_ms",
        ));
    }
    if raw.snapshot_every == 0 {
        return Err(ConfigError::key(
            file,
            "cluster.snapshot_every",
            "must be at least 1",
        ));
    }
    let mut members = Vec::new();
    for (i, m) in raw.members.iter().enumerate() {
        check_url(file, format!("cluster.member[{i}].addr"), &m.addr)?;
        if members
            .iter()
            .any(|n: &ControllerNode| node_id(&n.name) == node_id(&m.id))
        {
            return Err(ConfigError::key(
                file,
                format!("cluster.member[{i}].id"),
                format!("`{}` is listed twice", m.id),
            ));
        }
        members.push(ControllerNode {
            name: m.id.clone(),
            addr: m.addr.clone(),
        });
    }
    let me = match members.iter().find(|m| m.name == id) {
        Some(m) => m.clone(),
        None if members.is_empty() => ControllerNode {
            name: id.to_string(),
            addr: advertise,
        },
        None => {
            return Err(ConfigError::key(
                file,
                "cluster.member",
                format!("this controller (`id = \"{id}\"`) is not in the list; add it"),
            ));
        }
    };
    if raw.join && !members.is_empty() {
        return Err(ConfigError::key(
            file,
            "cluster.join",
            "a joining controller has no initial members: remove [[cluster.member]] or join",
        ));
    }
    Ok((
        me,
        ClusterSettings {
            initial_members: members,
            join: raw.join,
            heartbeat: Duration::from_millis(raw.heartbeat_ms),
            election_timeout_min: Duration::from_millis(raw.election_timeout_min_ms),
            election_timeout_max: Duration::from_millis(raw.election_timeout_max_ms),
            snapshot_every: raw.snapshot_every,
        },
    ))
}
