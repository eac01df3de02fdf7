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

use dr_backup::store::{S3Options, S3Section, StoreOptions, StoreUrl};

use crate::classify::Thresholds;
use crate::decide::Settings;
use crate::raft::ControllerNode;
use crate::raft::node::ClusterSettings;

mod cluster;

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
    #[serde(default)]
    failover: FailoverSettings,
    #[serde(default)]
    restart: RestartSettings,
    #[serde(default)]
    escalation: EscalationSettings,
    #[serde(default)]
    notify: NotifySettings,
    #[serde(default)]
    backup: BackupSchedule,
    #[serde(default)]
    cluster: cluster::RawCluster,
    #[serde(default, rename = "group")]
    groups: Vec<GroupConfig>,
}

/// `[failover]`: leases and automatic failover.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverSettings {
    pub lease_ttl_ms: u64,
    pub lease_margin_ms: u64,
    pub suspect_after_ms: u64,
    pub cooldown_s: u64,
    pub max_replication_lag_ms: Option<f64>,
    pub promote_timeout_ms: u64,
    pub demote_timeout_ms: u64,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        let d = Settings::default();
        FailoverSettings {
            lease_ttl_ms: d.lease_ttl.as_millis() as u64,
            lease_margin_ms: d.lease_margin.as_millis() as u64,
            suspect_after_ms: d.suspect_after.as_millis() as u64,
            cooldown_s: d.failover_cooldown.as_secs(),
            max_replication_lag_ms: d.max_replication_lag_ms,
            promote_timeout_ms: d.promote_timeout.as_millis() as u64,
            demote_timeout_ms: d.demote_timeout.as_millis() as u64,
        }
    }
}

/// `[restart]`: Procedure 1, automated.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSettings {
    pub budget: u32,
    pub window_s: u64,
    pub backoff_s: u64,
    pub timeout_s: u64,
    pub hung_reports: u32,
}

impl Default for RestartSettings {
    fn default() -> Self {
        let d = Settings::default();
        RestartSettings {
            budget: d.restart_budget,
            window_s: d.restart_window.as_secs(),
            backoff_s: d.restart_backoff.as_secs(),
            timeout_s: d.restart_timeout.as_secs(),
            hung_reports: d.hung_reports,
        }
    }
}

/// `[backup]`: scheduled backups, retention and restore drills (0 turns a schedule off).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSchedule {
    pub full_every_s: u64,
    pub incremental_every_s: u64,
    pub drill_every_s: u64,
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    /// How long a restored member is watched before its incident is resolved.
    pub restore_watch_s: u64,
    pub timeout_s: u64,
    /// The recovery point objective: exported so alerts can compare the backup age with it.
    pub rpo_target_s: u64,
    /// Where the leader writes snapshots of the controller state (with the incremental
    /// cadence, or `full_every_s` if incrementals are off). Absent: only on demand.
    pub controller_store: Option<String>,
    /// `[backup.s3]` for an s3:// controller store (the agent's keys).
    pub s3: Option<S3Section>,
}

impl Default for BackupSchedule {
    fn default() -> Self {
        let d = Settings::default();
        BackupSchedule {
            full_every_s: d.backup_full_every.map(|x| x.as_secs()).unwrap_or(0),
            incremental_every_s: d.backup_incremental_every.map(|x| x.as_secs()).unwrap_or(0),
            drill_every_s: d.drill_every.map(|x| x.as_secs()).unwrap_or(0),
            keep_last: d.retention_keep_last,
            keep_daily: d.retention_keep_daily,
            keep_weekly: d.retention_keep_weekly,
            restore_watch_s: d.restore_watch.as_secs(),
            timeout_s: d.backup_timeout.as_secs(),
            rpo_target_s: 1800,
            controller_store: None,
            s3: None,
        }
    }
}

/// `[escalation]`: when an open incident escalates (runbook ESCALATION PATH).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationSettings {
    /// Seconds after opening for each step; the first is the first alert.
    pub steps_s: Vec<u64>,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        EscalationSettings {
            steps_s: Settings::default()
                .escalation_steps
                .iter()
                .map(|d| d.as_secs())
                .collect(),
        }
    }
}

/// `[notify]`: webhook receivers, routed by incident category (runbook CONTACT MATRIX).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Attempts per notification (with backoff) before giving up.
    pub attempts: Option<u32>,
    #[serde(rename = "receiver")]
    pub receivers: Vec<Receiver>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    /// http:// URL receiving a JSON POST (`text` field is Slack-compatible).
    pub url: String,
    /// Incident categories routed here (empty: all).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Lowest escalation step sent here (0: from the first alert).
    #[serde(default)]
    pub min_step: u32,
    /// File holding a bearer token (mode 0600); never logged.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// `[group.lb]`: how the controller repoints the load balancer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, tag = "driver", rename_all = "snake_case")]
pub enum LbConfig {
    /// HAProxy runtime API over its admin socket.
    Haproxy {
        socket: PathBuf,
        backend: String,
        /// HAProxy server name per host, when they differ from the host names.
        #[serde(default)]
        servers: std::collections::BTreeMap<String, String>,
    },
    /// A command run with ERLMCP_DR_GROUP, ERLMCP_DR_EPOCH, ERLMCP_DR_NEW_PRIMARY and
    /// ERLMCP_DR_OLD_PRIMARY in its environment; exit 0 means done.
    Exec {
        command: Vec<String>,
        #[serde(default = "default_exec_timeout")]
        timeout_ms: u64,
    },
}

fn default_exec_timeout() -> u64 {
    10_000
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
    /// How to repoint the load balancer (none: LBs poll the agents' /primary).
    #[serde(default)]
    pub lb: Option<LbConfig>,
    /// A request through the load balancer that the new primary must answer (http://...).
    #[serde(default)]
    pub smoke_url: Option<String>,
}

/// A secret from a file only its owner may read (S3 keys): trimmed, never logged.
fn read_secret(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
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
    pub decide: Settings,
    pub notify: NotifySettings,
    /// Seconds: the backup age alerts compare with.
    pub rpo_target_s: u64,
    /// Where the controller state is backed up (see [`BackupSchedule::controller_store`]).
    pub controller_store: Option<String>,
    /// Options for opening an s3:// store (from `[backup.s3]`).
    pub store_options: StoreOptions,
    /// This controller as the controller cluster knows it (name and advertised URL).
    pub node: ControllerNode,
    pub cluster: ClusterSettings,
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
        let d = &raw.thresholds.disk_free_percent_min;
        if !(0.0..=100.0).contains(&d.red) || !(0.0..=100.0).contains(&d.yellow) || d.red > d.yellow
        {
            return Err(ConfigError::key(
                file,
                "thresholds.disk_free_percent_min",
                "percentages with red at or below yellow, e.g. yellow = 15.0, red = 5.0",
            ));
        }
        for (key, band) in raw.thresholds.bands() {
            if let Some(problem) = band.problem() {
                return Err(ConfigError::key(file, key, problem));
            }
        }
        let f = raw.failover.clone();
        if f.lease_ttl_ms < 200 {
            return Err(ConfigError::key(
                file,
                "failover.lease_ttl_ms",
                "must be at least 200",
            ));
        }
        if f.suspect_after_ms == 0 || f.promote_timeout_ms == 0 || f.demote_timeout_ms == 0 {
            return Err(ConfigError::key(
                file,
                "failover",
                "durations must be above 0",
            ));
        }
        if raw.escalation.steps_s.is_empty()
            || raw.escalation.steps_s.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(ConfigError::key(
                file,
                "escalation.steps_s",
                "must be a non-empty, increasing list of seconds, e.g. [0, 300, 900, 1800]",
            ));
        }
        for (i, r) in raw.notify.receivers.iter().enumerate() {
            if !r.url.starts_with("http://") && !r.url.starts_with("https://") {
                return Err(ConfigError::key(
                    file,
                    format!("notify.receiver[{i}].url"),
                    format!("{:?} is not an http:// URL", r.url),
                ));
            }
            if r.url.starts_with("https://") {
                return Err(ConfigError::key(
                    file,
                    format!("notify.receiver[{i}].url"),
                    "https webhooks are not supported by this build: point it at a local relay over http://",
                ));
            }
            for c in &r.categories {
                if c.parse::<dr_proto::domain::Category>().is_err() {
                    return Err(ConfigError::key(
                        file,
                        format!("notify.receiver[{i}].categories"),
                        format!("unknown category {c:?}"),
                    ));
                }
            }
        }
        for (i, g) in raw.groups.iter().enumerate() {
            if let Some(url) = &g.smoke_url
                && !url.starts_with("http://")
            {
                return Err(ConfigError::key(
                    file,
                    format!("group[{i}].smoke_url"),
                    format!("{url:?} must be an http:// URL"),
                ));
            }
            match &g.lb {
                Some(LbConfig::Exec { command, .. }) if command.is_empty() => {
                    return Err(ConfigError::key(
                        file,
                        format!("group[{i}].lb.command"),
                        "empty",
                    ));
                }
                Some(LbConfig::Haproxy { backend, .. }) if backend.is_empty() => {
                    return Err(ConfigError::key(
                        file,
                        format!("group[{i}].lb.backend"),
                        "empty",
                    ));
                }
                _ => {}
            }
        }
        if raw.backup.keep_last == 0 {
            return Err(ConfigError::key(
                file,
                "backup.keep_last",
                "must keep at least 1 backup",
            ));
        }
        if raw.health.stale_after_ms < 100 {
            return Err(ConfigError::key(
                file,
                "health.stale_after_ms",
                "must be at least 100",
            ));
        }
        let store_options = StoreOptions {
            s3: match raw.backup.s3.clone() {
                Some(s3) => s3
                    .options(|p| read_secret(&config_file::resolve(file, p)))
                    .map_err(|e| {
                        ConfigError::key(file, format!("backup.s3.{}", e.key), e.message)
                    })?,
                None => S3Options::default(),
            },
        };
        if let Some(url) = &raw.backup.controller_store {
            StoreUrl::parse(url)
                .map_err(|e| ConfigError::key(file, "backup.controller_store", e.to_string()))?;
        }
        let (node, cluster) = cluster::validate(
            file,
            raw.cluster,
            raw.id.as_str(),
            raw.listen,
            tls.is_some(),
        )?;
        Ok(ControllerConfig {
            file: file.to_path_buf(),
            node,
            cluster,
            id: raw.id,
            listen: raw.listen,
            http_listen: raw.http_listen,
            data_dir: config_file::resolve(file, &raw.data_dir),
            tls,
            stale_after: Duration::from_millis(raw.health.stale_after_ms),
            decide: Settings {
                lease_ttl: Duration::from_millis(f.lease_ttl_ms),
                lease_margin: Duration::from_millis(f.lease_margin_ms),
                suspect_after: Duration::from_millis(f.suspect_after_ms),
                failover_cooldown: Duration::from_secs(f.cooldown_s),
                max_replication_lag_ms: f.max_replication_lag_ms,
                promote_timeout: Duration::from_millis(f.promote_timeout_ms),
                demote_timeout: Duration::from_millis(f.demote_timeout_ms),
                restart_budget: raw.restart.budget,
                restart_window: Duration::from_secs(raw.restart.window_s),
                restart_backoff: Duration::from_secs(raw.restart.backoff_s),
                restart_timeout: Duration::from_secs(raw.restart.timeout_s.max(1)),
                hung_reports: raw.restart.hung_reports.max(1),
                escalation_steps: raw
                    .escalation
                    .steps_s
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect(),
                backup_full_every: (raw.backup.full_every_s > 0)
                    .then(|| Duration::from_secs(raw.backup.full_every_s)),
                backup_incremental_every: (raw.backup.incremental_every_s > 0)
                    .then(|| Duration::from_secs(raw.backup.incremental_every_s)),
                drill_every: (raw.backup.drill_every_s > 0)
                    .then(|| Duration::from_secs(raw.backup.drill_every_s)),
                retention_keep_last: raw.backup.keep_last,
                retention_keep_daily: raw.backup.keep_daily,
                retention_keep_weekly: raw.backup.keep_weekly,
                restore_watch: Duration::from_secs(raw.backup.restore_watch_s),
                backup_timeout: Duration::from_secs(raw.backup.timeout_s.max(1)),
                ..Settings::default()
            },
            thresholds: raw.thresholds,
            rpo_target_s: raw.backup.rpo_target_s,
            controller_store: raw.backup.controller_store.clone(),
            store_options,
            notify: NotifySettings {
                receivers: raw
                    .notify
                    .receivers
                    .into_iter()
                    .map(|r| Receiver {
                        token_file: r.token_file.map(|p| config_file::resolve(file, &p)),
                        ..r
                    })
                    .collect(),
                ..raw.notify
            },
            groups: raw
                .groups
                .into_iter()
                .map(|g| GroupConfig {
                    lb: g.lb.map(|lb| match lb {
                        LbConfig::Haproxy {
                            socket,
                            backend,
                            servers,
                        } => LbConfig::Haproxy {
                            socket: config_file::resolve(file, &socket),
                            backend,
                            servers,
                        },
                        other => other,
                    }),
                    ..g
                })
                .collect(),
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
        assert_eq!(
            c.decide,
            Settings::default(),
            "the example shows the real defaults"
        );
        assert_eq!(c.rpo_target_s, BackupSchedule::default().rpo_target_s);
        assert_eq!(c.notify.receivers.len(), 2);
        assert_eq!(c.groups.len(), 1);
        assert!(matches!(c.groups[0].lb, Some(LbConfig::Haproxy { .. })));
        assert!(c.groups[0].smoke_url.is_some());
        let d = ClusterSettings::default();
        assert_eq!(
            (c.cluster.heartbeat, c.cluster.election_timeout_min),
            (d.heartbeat, d.election_timeout_min)
        );
        assert_eq!(
            (c.cluster.election_timeout_max, c.cluster.snapshot_every),
            (d.election_timeout_max, d.snapshot_every)
        );
        assert_eq!(c.node.addr, "https://ctl1.example.net:7400");
    }

    #[test]
    fn cluster_mistakes_name_the_key() {
        let base = "id = 'c1'\ndata_dir = 's'\n[[group]]\nname = 'g'\n";
        for (extra, key) in [
            (
                "[cluster]\nelection_timeout_min_ms = 100\n",
                "cluster.election_timeout_min_ms",
            ),
            (
                "[cluster]\nelection_timeout_max_ms = 120\n",
                "cluster.election_timeout_max_ms",
            ),
            ("[cluster]\nadvertise = 'ctl1:7400'\n", "cluster.advertise"),
            (
                "[[cluster.member]]\nid = 'c2'\naddr = 'https://c2:7400'\n",
                "cluster.member",
            ),
            (
                "[[cluster.member]]\nid = 'c1'\naddr = 'https://c1:7400'\n[[cluster.member]]\nid = 'c1'\naddr = 'https://c9:7400'\n",
                "cluster.member[1].id",
            ),
            (
                "[cluster]\njoin = true\n[[cluster.member]]\nid = 'c1'\naddr = 'https://c1:7400'\n",
                "cluster.join",
            ),
        ] {
            let e = ControllerConfig::parse(Path::new("c.toml"), &format!("{base}{extra}"), true)
                .unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{extra}");
        }
        let c = ControllerConfig::parse(
            Path::new("c.toml"),
            &format!("{base}[[cluster.member]]\nid = 'c1'\naddr = 'https://c1:7400'\n[[cluster.member]]\nid = 'c2'\naddr = 'https://c2:7400'\n"),
            true,
        )
        .unwrap();
        assert_eq!(c.node.addr, "https://c1:7400");
        assert_eq!(c.cluster.initial_members.len(), 2);
        let alone = ControllerConfig::parse(Path::new("c.toml"), base, true).unwrap();
        assert_eq!(alone.node.addr, "http://127.0.0.1:7400");
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
