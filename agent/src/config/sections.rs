//! The optional sections of the agent config: failover tags, lease, hooks, restart, log probe,
//! Erlang node probe and diagnostics. Defaults are what an operator gets without configuring.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_proto::config_file::{self, ConfigError};
use serde::Deserialize;

use crate::probe::erlang::{ErlangProbeConfig, HealthRpc, Secret};

/// `[member]`: failover preferences announced to the controller.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemberSettings {
    /// Higher is promoted first.
    pub priority: i32,
    /// Never promote this host automatically.
    pub no_failover: bool,
}

/// `[lease]`: how often the primary's agent renews its lease (ttl comes from the controller).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    pub renew_interval_ms: u64,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            renew_interval_ms: 250,
        }
    }
}

/// A hook: a command (no shell) with a timeout. It gets ERLMCP_DR_HOST, ERLMCP_DR_GROUP,
/// ERLMCP_DR_EPOCH, ERLMCP_DR_ROLE, ERLMCP_DR_OLD_PRIMARY and ERLMCP_DR_NEW_PRIMARY; the backup
/// hooks also ERLMCP_DR_DATA_DIR and ERLMCP_DR_BACKUP_ID.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    pub command: Vec<String>,
    #[serde(default = "default_hook_timeout")]
    pub timeout_ms: u64,
}

fn default_hook_timeout() -> u64 {
    10_000
}

/// `[hooks]`: erlmcp-specific steps. All optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hooks {
    /// Make this node the primary (before `/primary` answers 200).
    pub promote: Option<Hook>,
    /// Stop being primary (demote, or a returning old primary rejoining as replica).
    pub demote: Option<Hook>,
    /// The lease ran out while isolated: stop accepting writes.
    pub fence: Option<Hook>,
}

/// `[restart]`: Procedure 1.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSettings {
    /// Time for the stop command itself.
    pub stop_timeout_ms: u64,
    /// After the stop command, time for the process to exit before SIGKILL of its tree.
    pub grace_ms: u64,
    /// Time for the start command to return (it must daemonise, like `bin/erlmcp daemon`).
    pub start_timeout_ms: u64,
    /// Time for the service to become healthy after start.
    pub healthy_timeout_ms: u64,
}

impl Default for RestartSettings {
    fn default() -> Self {
        RestartSettings {
            stop_timeout_ms: 15_000,
            grace_ms: 5_000,
            start_timeout_ms: 30_000,
            healthy_timeout_ms: 60_000,
        }
    }
}

/// `[log]`: the log probe.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Regular expression for error lines.
    pub error_pattern: String,
    /// Error lines kept for reports.
    pub keep_lines: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            error_pattern: r"(?i)(\[(error|critical|alert|emergency)\]|\bERROR\b|CRASH REPORT)"
                .into(),
            keep_lines: 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawErlang {
    node: String,
    #[serde(default)]
    cookie_file: Option<PathBuf>,
    #[serde(default)]
    cookie_env: Option<String>,
    #[serde(default)]
    registered_process: Option<String>,
    /// `module:function/0` names; absent: the erlmcp preset.
    #[serde(default)]
    health_rpcs: Option<Vec<String>>,
    #[serde(default = "default_erlang_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    epmd_port: Option<u16>,
}

fn default_erlang_timeout() -> u64 {
    1000
}

/// `[diagnostics]`: what `drctl diag` collects besides the log, metrics and probe report.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosticsSettings {
    /// Config files (sys.config, vm.args, ...); secrets are redacted in the bundle.
    pub config_files: Vec<PathBuf>,
    /// Where an `erl_crash.dump` would appear.
    pub crash_dump: Option<PathBuf>,
}

pub(crate) fn erlang(file: &Path, raw: RawErlang) -> Result<ErlangProbeConfig, ConfigError> {
    let cookie = match (&raw.cookie_file, &raw.cookie_env) {
        (Some(p), None) => Secret::from_file(config_file::resolve(file, p))
            .map_err(|e| ConfigError::key(file, "erlang.cookie_file", e.to_string()))?,
        (None, Some(var)) => Secret::from_env(var)
            .map_err(|e| ConfigError::key(file, "erlang.cookie_env", e.to_string()))?,
        _ => {
            return Err(ConfigError::key(
                file,
                "erlang.cookie_file",
                "set exactly one of erlang.cookie_file (mode 0600) or erlang.cookie_env",
            ));
        }
    };
    let mut cfg = match raw.health_rpcs {
        None => ErlangProbeConfig::erlmcp_preset(raw.node, cookie),
        Some(list) => {
            let mut rpcs = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let (mf, arity) = s.split_once('/').unwrap_or((s.as_str(), "0"));
                let parsed = mf
                    .split_once(':')
                    .filter(|(m, f)| !m.is_empty() && !f.is_empty() && arity == "0");
                let Some((m, f)) = parsed else {
                    return Err(ConfigError::key(
                        file,
                        format!("erlang.health_rpcs[{i}]"),
                        format!("{s:?} must be module:function/0"),
                    ));
                };
                rpcs.push(HealthRpc::new(m, f));
            }
            ErlangProbeConfig {
                health_rpcs: rpcs,
                ..ErlangProbeConfig::new(raw.node, cookie)
            }
        }
    };
    if let Some(p) = raw.registered_process {
        cfg.registered_process = p;
    }
    if let Some(port) = raw.epmd_port {
        cfg.epmd_port = port;
    }
    cfg.timeout = Duration::from_millis(raw.timeout_ms.max(50));
    cfg.validate()
        .map_err(|e| ConfigError::key(file, "erlang.node", e))?;
    Ok(cfg)
}

pub(crate) fn check_hook(file: &Path, name: &str, hook: &Option<Hook>) -> Result<(), ConfigError> {
    if let Some(h) = hook
        && (h.command.is_empty() || h.command[0].is_empty())
    {
        return Err(ConfigError::key(
            file,
            format!("hooks.{name}.command"),
            "empty: give the command as a list",
        ));
    }
    Ok(())
}
