//! `dr-controller` configuration: TOML schema → validated [`ControllerConfig`].
//! Every key is documented in `deploy/controller.example.toml`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_proto::config_file::{self, ConfigError};
use dr_proto::domain::{GroupName, HostName};
use dr_proto::tls::TlsPaths;
use serde::Deserialize;

use crate::classify::Thresholds;

/// Environment overrides use this prefix: `DR_CONTROLLER__LISTEN=0.0.0.0:7400`.
pub const ENV_PREFIX: &str = "DR_CONTROLLER";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    id: HostName,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default = "default_http_listen")]
    http_listen: SocketAddr,
    data_dir: PathBuf,
    tls: Option<TlsPaths>,
    #[serde(default)]
    health: HealthSettings,
    #[serde(default)]
    thresholds: Thresholds,
    #[serde(default, rename = "group")]
    groups: Vec<GroupConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7400))
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7480))
}

/// `[health]`: how reports age.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// A member whose last report is older than this is `unknown`.
    pub stale_after_ms: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            stale_after_ms: 2000,
        }
    }
}

/// `[[group]]`: one erlmcp deployment this controller manages.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: GroupName,
    /// The primary at first start. Without it, the first member to connect becomes primary.
    #[serde(default)]
    pub primary: Option<HostName>,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub file: PathBuf,
    pub id: HostName,
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None` only with `--insecure-dev`.
    pub tls: Option<TlsPaths>,
    pub stale_after: Duration,
    pub thresholds: Thresholds,
    pub groups: Vec<GroupConfig>,
}

impl ControllerConfig {
    /// Load and validate. `insecure_dev` allows a config without `[tls]`.
    pub fn load(file: &Path, insecure_dev: bool) -> Result<ControllerConfig, ConfigError> {
        let raw: RawConfig = config_file::load(file, ENV_PREFIX)?;
        Self::validate(file, raw, insecure_dev)
    }

    /// Parse from text (tests).
    pub fn parse(
        file: &Path,
        text: &str,
        insecure_dev: bool,
    ) -> Result<ControllerConfig, ConfigError> {
        let raw: RawConfig = config_file::parse(file, text, ENV_PREFIX, Vec::new())?;
        Self::validate(file, raw, insecure_dev)
    }

    fn validate(
        file: &Path,
        raw: RawConfig,
        insecure_dev: bool,
    ) -> Result<ControllerConfig, ConfigError> {
        let tls = match raw.tls {
            Some(t) => Some(TlsPaths {
                ca: config_file::resolve(file, &t.ca),
                cert: config_file::resolve(file, &t.cert),
                key: config_file::resolve(file, &t.key),
                server_name: t.server_name,
            }),
            None if insecure_dev => None,
            None => {
                return Err(ConfigError::key(
                    file,
                    "tls",
                    "missing (required: mTLS is how agents and operators are identified; \
                     create certificates with `drctl pki init`, or start with --insecure-dev \
                     for a plaintext development setup)",
                ));
            }
        };
        if raw.groups.is_empty() {
            return Err(ConfigError::key(
                file,
                "group",
                "no [[group]] configured: add one, e.g. [[group]] name = \"erlmcp\"",
            ));
        }
        let mut seen = HashSet::new();
        for (i, g) in raw.groups.iter().enumerate() {
            if !seen.insert(g.name.clone()) {
                return Err(ConfigError::key(
                    file,
                    format!("group[{i}].name"),
                    format!("group `{}` is configured twice", g.name),
                ));
            }
        }
        for (key, band) in raw.thresholds.bands() {
            if let Some(problem) = band.problem() {
                return Err(ConfigError::key(file, key, problem));
            }
        }
        if raw.health.stale_after_ms < 100 {
            return Err(ConfigError::key(
                file,
                "health.stale_after_ms",
                "must be at least 100",
            ));
        }
        Ok(ControllerConfig {
            file: file.to_path_buf(),
            id: raw.id,
            listen: raw.listen,
            http_listen: raw.http_listen,
            data_dir: config_file::resolve(file, &raw.data_dir),
            tls,
            stale_after: Duration::from_millis(raw.health.stale_after_ms),
            thresholds: raw.thresholds,
            groups: raw.groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
id = "c1"
data_dir = "state"
[tls]
ca = "pki/ca.pem"
cert = "pki/controller-c1.pem"
key = "pki/controller-c1.key"
[[group]]
name = "erlmcp"
"#;

    #[test]
    fn minimal_config_gets_runbook_defaults_and_resolved_paths() {
        let c =
            ControllerConfig::parse(Path::new("/etc/dr/controller.toml"), MINIMAL, false).unwrap();
        assert_eq!(c.listen.port(), 7400);
        assert_eq!(c.http_listen.port(), 7480);
        assert_eq!(c.data_dir, PathBuf::from("/etc/dr/state"));
        assert_eq!(c.tls.unwrap().ca, PathBuf::from("/etc/dr/pki/ca.pem"));
        assert_eq!(c.thresholds, Thresholds::default());
    }

    #[test]
    fn the_documented_example_parses_to_the_defaults() {
        let text = include_str!("../../deploy/controller.example.toml");
        let c = ControllerConfig::parse(Path::new("deploy/controller.example.toml"), text, false)
            .unwrap();
        assert_eq!(
            c.thresholds,
            Thresholds::default(),
            "the example shows the real defaults"
        );
        assert_eq!(c.groups.len(), 1);
    }

    #[test]
    fn tls_is_required_without_insecure_dev() {
        let text = "id = 'c1'\ndata_dir = 's'\n[[group]]\nname = 'g'\n";
        let e = ControllerConfig::parse(Path::new("c.toml"), text, false).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tls"));
        assert!(ControllerConfig::parse(Path::new("c.toml"), text, true).is_ok());
    }

    #[test]
    fn problems_name_their_key() {
        let cases = [
            (MINIMAL.replace("id = \"c1\"", "id = \"c/1\""), "id"),
            (
                MINIMAL.replace(
                    "name = \"erlmcp\"",
                    "name = \"erlmcp\"\n[[group]]\nname = \"erlmcp\"",
                ),
                "group[1].name",
            ),
            (
                format!("{MINIMAL}\n[thresholds.queue_depth]\nyellow = 2000.0\nred = 1000.0\n"),
                "thresholds.queue_depth",
            ),
            (MINIMAL.replace("data_dir = \"state\"", ""), "data_dir"),
            (
                MINIMAL.replace(
                    "data_dir = \"state\"",
                    "data_dir = \"state\"\nlisten = \"nowhere\"",
                ),
                "listen",
            ),
        ];
        for (text, key) in cases {
            let e = ControllerConfig::parse(Path::new("c.toml"), &text, false).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
        }
    }
}
