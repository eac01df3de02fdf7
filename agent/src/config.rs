//! `dr-agent` configuration: TOML schema → validated [`AgentConfig`].
//! Every key is documented in `deploy/agent.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_proto::config_file::{self, ConfigError};
use dr_proto::domain::{GroupName, HostName};
use dr_proto::tls::TlsPaths;
use hyper::Uri;
use serde::Deserialize;

mod backup;
mod sections;

pub use backup::{BackupSettings, PostRestoreAt, default_staging, normalise_store};
pub use sections::{
    DiagnosticsSettings, Hook, Hooks, LeaseSettings, LogSettings, MemberSettings, RestartSettings,
};

use crate::probe::erlang::ErlangProbeConfig;

/// Environment overrides use this prefix: `DR_AGENT__REPORT_INTERVAL_MS=250`.
pub const ENV_PREFIX: &str = "DR_AGENT";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    host: HostName,
    group: GroupName,
    controllers: Vec<String>,
    #[serde(default = "default_report_interval_ms")]
    report_interval_ms: u64,
    #[serde(default = "default_http_listen")]
    http_listen: SocketAddr,
    state_dir: PathBuf,
    tls: Option<TlsPaths>,
    service: RawService,
    #[serde(default)]
    probes: ProbeSettings,
    #[serde(default)]
    member: MemberSettings,
    #[serde(default)]
    lease: LeaseSettings,
    #[serde(default)]
    hooks: Hooks,
    #[serde(default)]
    restart: RestartSettings,
    #[serde(default)]
    log: LogSettings,
    #[serde(default)]
    erlang: Option<sections::RawErlang>,
    #[serde(default)]
    diagnostics: DiagnosticsSettings,
    #[serde(default)]
    backup: Option<backup::RawBackup>,
}

fn default_report_interval_ms() -> u64 {
    500
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7481))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default = "default_service_name")]
    name: String,
    start: Vec<String>,
    stop: Vec<String>,
    pid_file: Option<PathBuf>,
    process_match: Option<String>,
    #[serde(default)]
    ports: Vec<u16>,
    health_url: Option<String>,
    metrics_url: Option<String>,
    data_dir: PathBuf,
    log_file: Option<PathBuf>,
}

fn default_service_name() -> String {
    "erlmcp".into()
}

/// `[probes]`: timeouts and the sliding window of the HTTP health check.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSettings {
    pub http_timeout_ms: u64,
    pub metrics_timeout_ms: u64,
    /// Number of recent HTTP checks remembered.
    pub window: u32,
    /// Failures within the window (with the latest check fine) that make it "intermittent".
    pub intermittent_failures: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            http_timeout_ms: 1000,
            metrics_timeout_ms: 1000,
            window: 10,
            intermittent_failures: 2,
        }
    }
}

/// How the agent finds the managed process.
#[derive(Clone, Debug, PartialEq)]
pub enum ProcessLocator {
    /// Read the pid from this file; if `matching` is set, the process's command line must
    /// contain it (guards against a recycled pid).
    PidFile {
        path: PathBuf,
        matching: Option<String>,
    },
    /// First process whose command line contains this text.
    Match(String),
}

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub name: String,
    pub start: Vec<String>,
    pub stop: Vec<String>,
    pub process: ProcessLocator,
    pub ports: Vec<u16>,
    pub health_url: Option<Uri>,
    pub metrics_url: Option<Uri>,
    pub data_dir: PathBuf,
    pub log_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub file: PathBuf,
    pub host: HostName,
    pub group: GroupName,
    pub controllers: Vec<String>,
    pub report_interval: Duration,
    pub http_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub tls: Option<TlsPaths>,
    pub service: ServiceConfig,
    pub probes: ProbeSettings,
    pub member: MemberSettings,
    pub lease: LeaseSettings,
    pub hooks: Hooks,
    pub restart: RestartSettings,
    pub log: LogSettings,
    /// The compiled `log.error_pattern`.
    pub error_regex: regex::Regex,
    pub erlang: Option<ErlangProbeConfig>,
    pub diagnostics: DiagnosticsSettings,
    /// `[backup]`; None: no backup, restore or drill on this host.
    pub backup: Option<BackupSettings>,
}

fn http_uri(file: &Path, key: &str, s: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = s
        .parse()
        .map_err(|e| ConfigError::key(file, key, format!("not a URL ({e}): {s:?}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(ConfigError::key(
            file,
            key,
            format!("must be an http://HOST:PORT/PATH URL, got {s:?}"),
        ));
    }
    Ok(uri)
}

impl AgentConfig {
    pub fn load(file: &Path, insecure_dev: bool) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = config_file::load(file, ENV_PREFIX)?;
        Self::validate(file, raw, insecure_dev)
    }

    pub fn parse(file: &Path, text: &str, insecure_dev: bool) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = config_file::parse(file, text, ENV_PREFIX, Vec::new())?;
        Self::validate(file, raw, insecure_dev)
    }

    fn validate(
        file: &Path,
        raw: RawConfig,
        insecure_dev: bool,
    ) -> Result<AgentConfig, ConfigError> {
        if raw.controllers.is_empty() {
            return Err(ConfigError::key(
                file,
                "controllers",
                "empty: list every controller, e.g. [\"https://ctl1:7400\"]",
            ));
        }
        for (i, url) in raw.controllers.iter().enumerate() {
            let key = format!("controllers[{i}]");
            let uri: Uri = url
                .parse()
                .map_err(|e| ConfigError::key(file, &key, format!("not a URL ({e}): {url:?}")))?;
            match uri.scheme_str() {
                Some("https") => {}
                Some("http") if insecure_dev => {}
                Some("http") => {
                    return Err(ConfigError::key(
                        file,
                        &key,
                        "plaintext http:// needs --insecure-dev; use https:// with [tls]",
                    ));
                }
                _ => {
                    return Err(ConfigError::key(
                        file,
                        &key,
                        format!("must be https://HOST:PORT, got {url:?}"),
                    ));
                }
            }
            if uri.host().is_none() || uri.port_u16().is_none() {
                return Err(ConfigError::key(
                    file,
                    &key,
                    format!("must name host and port, e.g. https://ctl1:7400, got {url:?}"),
                ));
            }
        }
        if !(100..=60_000).contains(&raw.report_interval_ms) {
            return Err(ConfigError::key(
                file,
                "report_interval_ms",
                format!("{} is outside 100..=60000", raw.report_interval_ms),
            ));
        }
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
                    "missing (required: create certificates with `drctl pki init`, or start with --insecure-dev for a plaintext development setup)",
                ));
            }
        };
        let s = raw.service;
        if s.start.is_empty() || s.start[0].is_empty() {
            return Err(ConfigError::key(
                file,
                "service.start",
                "empty: give the command as a list, e.g. [\"bin/erlmcp\", \"daemon\"]",
            ));
        }
        if s.stop.is_empty() || s.stop[0].is_empty() {
            return Err(ConfigError::key(
                file,
                "service.stop",
                "empty: give the command as a list, e.g. [\"bin/erlmcp\", \"stop\"]",
            ));
        }
        let process = match (s.pid_file, s.process_match) {
            (Some(path), matching) => ProcessLocator::PidFile {
                path: config_file::resolve(file, &path),
                matching: matching.filter(|m| !m.is_empty()),
            },
            (None, Some(m)) if !m.is_empty() => ProcessLocator::Match(m),
            _ => {
                return Err(ConfigError::key(
                    file,
                    "service.pid_file",
                    "missing: set service.pid_file or service.process_match so the agent can find the process",
                ));
            }
        };
        if let Some(i) = s.ports.iter().position(|p| *p == 0) {
            return Err(ConfigError::key(
                file,
                format!("service.ports[{i}]"),
                "port 0 is not a port",
            ));
        }
        let health_url = s
            .health_url
            .as_deref()
            .map(|u| http_uri(file, "service.health_url", u))
            .transpose()?;
        let metrics_url = s
            .metrics_url
            .as_deref()
            .map(|u| http_uri(file, "service.metrics_url", u))
            .transpose()?;
        let p = &raw.probes;
        if p.http_timeout_ms == 0 || p.metrics_timeout_ms == 0 {
            return Err(ConfigError::key(
                file,
                "probes",
                "timeouts must be above 0 ms",
            ));
        }
        if p.window == 0 || p.intermittent_failures == 0 || p.intermittent_failures > p.window {
            return Err(ConfigError::key(
                file,
                "probes.intermittent_failures",
                "must be between 1 and probes.window",
            ));
        }
        if !(50..=5_000).contains(&raw.lease.renew_interval_ms) {
            return Err(ConfigError::key(
                file,
                "lease.renew_interval_ms",
                format!("{} is outside 50..=5000", raw.lease.renew_interval_ms),
            ));
        }
        for (name, hook) in [
            ("promote", &raw.hooks.promote),
            ("demote", &raw.hooks.demote),
            ("fence", &raw.hooks.fence),
        ] {
            sections::check_hook(file, name, hook)?;
        }
        let error_regex = regex::Regex::new(&raw.log.error_pattern).map_err(|e| {
            ConfigError::key(
                file,
                "log.error_pattern",
                format!("not a valid regular expression: {e}"),
            )
        })?;
        let erlang = match raw.erlang {
            Some(e) => Some(sections::erlang(file, e)?),
            None => None,
        };
        let data_dir = config_file::resolve(file, &s.data_dir);
        let state_dir = config_file::resolve(file, &raw.state_dir);
        let backup = match raw.backup {
            Some(b) => Some(backup::validate(file, b, &data_dir, &state_dir, |h| {
                resolve_hook(file, h)
            })?),
            None => None,
        };
        Ok(AgentConfig {
            file: file.to_path_buf(),
            host: raw.host,
            group: raw.group,
            controllers: raw.controllers,
            report_interval: Duration::from_millis(raw.report_interval_ms),
            http_listen: raw.http_listen,
            state_dir,
            tls,
            service: ServiceConfig {
                name: s.name,
                start: s.start,
                stop: s.stop,
                process,
                ports: s.ports,
                health_url,
                metrics_url,
                data_dir,
                log_file: s.log_file.map(|p| config_file::resolve(file, &p)),
            },
            probes: raw.probes,
            member: raw.member,
            lease: raw.lease,
            hooks: Hooks {
                promote: raw.hooks.promote.map(|h| resolve_hook(file, h)),
                demote: raw.hooks.demote.map(|h| resolve_hook(file, h)),
                fence: raw.hooks.fence.map(|h| resolve_hook(file, h)),
            },
            restart: raw.restart,
            error_regex,
            log: raw.log,
            erlang,
            diagnostics: DiagnosticsSettings {
                config_files: raw
                    .diagnostics
                    .config_files
                    .iter()
                    .map(|p| config_file::resolve(file, p))
                    .collect(),
                crash_dump: raw
                    .diagnostics
                    .crash_dump
                    .map(|p| config_file::resolve(file, &p)),
            },
            backup,
        })
    }
}

/// Hooks keep their command as written; a relative program path is taken from the config's folder.
fn resolve_hook(file: &Path, mut h: Hook) -> Hook {
    if let Some(first) = h.command.first_mut()
        && first.contains('/')
        && !first.starts_with('/')
    {
        *first = config_file::resolve(file, Path::new(first))
            .display()
            .to_string();
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
host = "a"
group = "erlmcp"
controllers = ["https://ctl1:7400"]
state_dir = "state"
[tls]
ca = "pki/ca.pem"
cert = "pki/agent-a.pem"
key = "pki/agent-a.key"
[service]
start = ["bin/erlmcp", "daemon"]
stop = ["bin/erlmcp", "stop"]
pid_file = "run/erlmcp.pid"
ports = [8080]
health_url = "http://127.0.0.1:8080/health"
metrics_url = "http://127.0.0.1:8080/metrics"
data_dir = "/var/lib/erlmcp"
"#;

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../deploy/agent.example.toml");
        let c = AgentConfig::parse(Path::new("deploy/agent.example.toml"), text, false).unwrap();
        assert_eq!(c.service.start, vec!["/opt/erlmcp/bin/erlmcp", "daemon"]);
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let c = AgentConfig::parse(Path::new("/etc/dr/agent.toml"), GOOD, false).unwrap();
        assert_eq!(c.report_interval, Duration::from_millis(500));
        assert_eq!(c.http_listen.port(), 7481);
        assert_eq!(
            c.service.process,
            ProcessLocator::PidFile {
                path: PathBuf::from("/etc/dr/run/erlmcp.pid"),
                matching: None
            }
        );
    }

    #[test]
    fn problems_name_their_key() {
        let cases = [
            (GOOD.replace("host = \"a\"\n", ""), "host"),
            (GOOD.replace("[\"https://ctl1:7400\"]", "[]"), "controllers"),
            (
                GOOD.replace("https://ctl1:7400", "http://ctl1:7400"),
                "controllers[0]",
            ),
            (
                GOOD.replace("https://ctl1:7400", "https://ctl1"),
                "controllers[0]",
            ),
            (
                GOOD.replace("pid_file = \"run/erlmcp.pid\"\n", ""),
                "service.pid_file",
            ),
            (
                GOOD.replace("http://127.0.0.1:8080/health", "localhost:8080"),
                "service.health_url",
            ),
            (
                GOOD.replace("ports = [8080]", "ports = [0]"),
                "service.ports[0]",
            ),
            (
                GOOD.replace("ports = [8080]", "ports = [70000]"),
                "service.ports[0]",
            ),
            (
                GOOD.replace("start = [\"bin/erlmcp\", \"daemon\"]", "start = []"),
                "service.start",
            ),
            (
                format!("{GOOD}\n[probes]\nwindow = 2\nintermittent_failures = 3\n"),
                "probes.intermittent_failures",
            ),
            (GOOD.replace("state_dir", "stat_dir"), "stat_dir"),
        ];
        for (text, key) in cases {
            let e = AgentConfig::parse(Path::new("agent.toml"), &text, false).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
        }
    }

    #[test]
    fn insecure_dev_allows_plaintext_and_no_tls() {
        let text = GOOD
            .replace("https://ctl1:7400", "http://ctl1:7400")
            .split("[tls]")
            .next()
            .unwrap()
            .to_string()
            + &GOOD[GOOD.find("[service]").unwrap()..];
        assert!(AgentConfig::parse(Path::new("a.toml"), &text, true).is_ok());
        assert!(AgentConfig::parse(Path::new("a.toml"), &text, false).is_err());
    }
}
