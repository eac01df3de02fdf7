//! `dr-agent backup|list|verify|restore`: the backup commands with no controller at all, for the
//! worst case (the runbook's Procedure 4: everything is lost, a fresh host, a store URL). The
//! store, group, host and data directory come from flags, or from an agent config (`--config`),
//! flags winning. Everything here is synchronous: the engine blocks, and S3 runs its own runtime.
//!
//! Exit codes: 0 done, 1 the operation failed (store unreachable, backup invalid, restore
//! refused by a check), 2 usage or config error.

mod output;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dr_backup::store::{StoreOptions, StoreUrl};

use crate::config::{AgentConfig, normalise_store};

pub use run::{backup, list, restore, verify};

/// Where the backups are, shared by every standalone command.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Agent config (TOML) to take the store, group, host and data dir from; flags win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// file:///abs/dir, a directory path, or s3://bucket/prefix.
    #[arg(long)]
    pub store: Option<String>,
    /// Group (one erlmcp deployment).
    #[arg(long)]
    pub group: Option<String>,
    /// Host whose backups these are.
    #[arg(long)]
    pub host: Option<String>,
    /// S3 region (default: from the config, else AWS_REGION).
    #[arg(long)]
    pub s3_region: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS itself).
    #[arg(long, env = "DR_AGENT_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (default: on when an endpoint is given).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub s3_path_style: Option<bool>,
}

/// Text for people, JSON (stable snake_case fields) for scripts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// `dr-agent backup`.
#[derive(clap::Args, Debug, Clone)]
pub struct BackupArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The data directory to back up.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only what changed since this host's newest backup (a full one if there is none yet).
    #[arg(long)]
    pub incremental: bool,
    /// zstd level 1..=19 (default: the config's, else 3).
    #[arg(long)]
    pub zstd_level: Option<i32>,
    /// Do not run the config's pre_backup/post_backup hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// text for people, json for scripts (stable snake_case fields).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// `dr-agent list`.
#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// text for people, json for scripts (stable snake_case fields).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// `dr-agent verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// A backup id (full-…, incremental-…) or `latest`.
    #[arg(long)]
    pub backup: String,
    /// Decompress and check every file's hash too (default: the stored hash only).
    #[arg(long)]
    pub deep: bool,
    /// text for people, json for scripts (stable snake_case fields).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// `dr-agent restore`.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// A backup id (full-…, incremental-…) or `latest`.
    #[arg(long)]
    pub backup: String,
    /// The data directory to fill (created if missing).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replace a non-empty data directory (the current data is kept next to it).
    #[arg(long)]
    pub yes: bool,
    /// text for people, json for scripts (stable snake_case fields).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: Output,
}

/// A failed standalone command: usage/config (exit 2) or the operation (exit 1).
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Failed(String),
}

impl CliError {
    /// Prints the error and gives the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            CliError::Usage(m) => {
                eprintln!("dr-agent: {m}");
                ExitCode::from(2)
            }
            CliError::Failed(m) => {
                eprintln!("dr-agent: {m}");
                ExitCode::from(1)
            }
        }
    }
}

/// Everything a command needs to reach the store, resolved from flags and config.
#[derive(Debug)]
pub(crate) struct Target {
    pub url: String,
    pub options: StoreOptions,
    pub group: Option<String>,
    /// `--host`, else the config's host.
    pub host: Option<String>,
    /// Whether `host` was given with `--host` (a config's host only names this machine).
    pub host_from_flag: bool,
    pub config: Option<AgentConfig>,
}

impl Target {
    pub(crate) fn resolve(args: &StoreArgs) -> Result<Target, CliError> {
        let config = match &args.config {
            Some(file) => {
                Some(AgentConfig::load(file, true).map_err(|e| CliError::Usage(e.to_string()))?)
            }
            None => None,
        };
        let from_config = config.as_ref().and_then(|c| c.backup.as_ref());
        let url = match (&args.store, from_config) {
            (Some(s), _) => store_from_flag(s)?,
            (None, Some(b)) => b.store.clone(),
            (None, None) => {
                return Err(CliError::Usage(match &args.config {
                    Some(f) => format!(
                        "config {} has no [backup] store: give --store file:///dir or s3://bucket/prefix",
                        f.display()
                    ),
                    None => "give --store file:///dir (or a directory path) or s3://bucket/prefix, or --config agent.toml".into(),
                }));
            }
        };
        let mut options = from_config
            .map(|b| b.store_options.clone())
            .unwrap_or_default();
        if let Some(r) = &args.s3_region {
            options.s3.region = Some(r.clone());
        }
        if let Some(ep) = &args.s3_endpoint {
            options.s3.endpoint = Some(ep.clone());
            options.s3.force_path_style = true;
        }
        if let Some(ps) = args.s3_path_style {
            options.s3.force_path_style = ps;
        }
        let group = args
            .group
            .clone()
            .or_else(|| config.as_ref().map(|c| c.group.to_string()));
        let host = args
            .host
            .clone()
            .or_else(|| config.as_ref().map(|c| c.host.to_string()));
        Ok(Target {
            url,
            options,
            group,
            host,
            host_from_flag: args.host.is_some(),
            config,
        })
    }

    /// `--data-dir`, else the config's `service.data_dir`.
    pub(crate) fn data_dir(&self, flag: &Option<PathBuf>) -> Result<PathBuf, CliError> {
        match (flag, &self.config) {
            (Some(d), _) => std::path::absolute(d)
                .map_err(|e| CliError::Usage(format!("--data-dir {}: {e}", d.display()))),
            (None, Some(c)) => Ok(c.service.data_dir.clone()),
            (None, None) => Err(CliError::Usage(
                "give --data-dir DIR (or --config agent.toml)".into(),
            )),
        }
    }

    /// The file store's directory, if this is one.
    pub(crate) fn file_root(&self) -> Option<PathBuf> {
        match StoreUrl::parse(&self.url) {
            Ok(StoreUrl::File { dir }) => Some(dir),
            _ => None,
        }
    }
}

/// A bare path (relative to the current directory) becomes a `file://` URL; a URL is checked.
fn store_from_flag(s: &str) -> Result<String, CliError> {
    let base = std::env::current_dir()
        .map_err(|e| CliError::Usage(format!("current directory: {e}")))?
        .join("--store");
    normalise_store(&base, s).map_err(|e| CliError::Usage(format!("--store: {e}")))
}

/// This machine's host name, for `backup` without `--host` or a config.
pub(crate) fn system_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether a directory exists and holds anything.
pub(crate) fn non_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut rd| rd.next().is_some())
}
