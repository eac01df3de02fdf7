//! `[backup]`: where this host's backups go and how backups, restores and drills run. Absent:
//! the agent offers no backup, restore or drill capability.
//!
//! Secrets (S3 keys) are read once, at load time, from files that only the agent's user may read
//! (mode 0600) or from the standard AWS chain; they are never logged (`Debug` redacts them).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_backup::store::{S3Options, S3Section, StoreOptions, StoreUrl};
use dr_proto::config_file::{self, ConfigError};
use serde::Deserialize;

use super::sections::Hook;
use crate::probe::erlang::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackup {
    store: String,
    #[serde(default)]
    s3: Option<S3Section>,
    #[serde(default = "default_zstd_level")]
    zstd_level: i32,
    #[serde(default = "default_true")]
    keep_previous: bool,
    #[serde(default)]
    staging_dir: Option<PathBuf>,
    #[serde(default)]
    drill_dir: Option<PathBuf>,
    #[serde(default = "default_timeout_s")]
    timeout_s: u64,
    #[serde(default)]
    pre_backup: Option<Hook>,
    #[serde(default)]
    post_backup: Option<Hook>,
    #[serde(default)]
    post_restore: Vec<Hook>,
    #[serde(default)]
    post_restore_at: PostRestoreAt,
    #[serde(default)]
    drill_check: Option<Hook>,
    #[serde(default = "default_true")]
    change_journal: bool,
}

fn default_zstd_level() -> i32 {
    3
}

fn default_true() -> bool {
    true
}

fn default_timeout_s() -> u64 {
    3600
}

/// When the `post_restore` hooks run: against the restored data with the service still stopped
/// (the default), or once the service runs again and is healthy (for checks that need the node,
/// such as an RPC). Either way a failing hook rolls the restore back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostRestoreAt {
    #[default]
    BeforeStart,
    AfterStart,
}

/// The validated `[backup]` section.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    /// Normalised store URL: `file:///abs/dir` or `s3://bucket/prefix`.
    pub store: String,
    /// S3 settings (credentials redacted in `Debug`).
    pub store_options: StoreOptions,
    /// zstd level, 1..=19.
    pub zstd_level: i32,
    /// Keep `<data_dir>.previous-<ts>` after a successful restore (manual rollback).
    pub keep_previous: bool,
    /// Where a restore is extracted before the swap; next to the data directory, same file
    /// system, absent or empty when a restore starts.
    pub staging_dir: PathBuf,
    /// Scratch space for restore drills (never the data directory).
    pub drill_dir: PathBuf,
    /// Longest a backup, restore extraction or drill may take; the store is cut off after it.
    pub timeout: Duration,
    pub pre_backup: Option<Hook>,
    pub post_backup: Option<Hook>,
    /// Run in order after the swap; the first failure rolls the restore back.
    pub post_restore: Vec<Hook>,
    pub post_restore_at: PostRestoreAt,
    /// Integrity check run against a drill's restored copy.
    pub drill_check: Option<Hook>,
    /// Keep an inotify change journal of the data directory, so an incremental looks only at
    /// what changed since its parent (see `dr_backup::journal` for what it cannot see).
    pub change_journal: bool,
}

/// A store given as a bare path (absolute, or relative to the config file) becomes `file://`.
pub fn normalise_store(file: &Path, store: &str) -> Result<String, String> {
    let url = if store.contains("://") {
        store.to_string()
    } else if store.is_empty() {
        return Err("empty: give file:///abs/dir, a directory path or s3://bucket/prefix".into());
    } else {
        let p = config_file::resolve(file, Path::new(store));
        let p = std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        format!("file://{}", p.display())
    };
    StoreUrl::parse(&url).map_err(|e| e.to_string())?;
    Ok(url)
}

pub(crate) fn validate(
    file: &Path,
    raw: RawBackup,
    data_dir: &Path,
    state_dir: &Path,
    resolve_hook: impl Fn(Hook) -> Hook,
) -> Result<BackupSettings, ConfigError> {
    let store =
        normalise_store(file, &raw.store).map_err(|p| ConfigError::key(file, "backup.store", p))?;
    let is_s3 = matches!(StoreUrl::parse(&store), Ok(StoreUrl::S3 { .. }));
    let s3 = match raw.s3 {
        Some(s3) => s3_options(file, s3)?,
        None => S3Options::default(),
    };
    if is_s3 && s3.region.is_none() && std::env::var_os("AWS_REGION").is_none() {
        return Err(ConfigError::key(
            file,
            "backup.s3.region",
            "missing: an s3:// store needs a region (S3-compatible servers accept any, e.g. \"us-east-1\"), or set AWS_REGION",
        ));
    }
    if !(1..=19).contains(&raw.zstd_level) {
        return Err(ConfigError::key(
            file,
            "backup.zstd_level",
            format!("{} is outside 1..=19", raw.zstd_level),
        ));
    }
    if !(1..=7 * 24 * 3600).contains(&raw.timeout_s) {
        return Err(ConfigError::key(
            file,
            "backup.timeout_s",
            format!("{} is outside 1..=604800 (a week)", raw.timeout_s),
        ));
    }
    let staging_dir = match &raw.staging_dir {
        Some(p) => config_file::resolve(file, p),
        None => default_staging(data_dir),
    };
    check_staging(file, &staging_dir, data_dir)?;
    let drill_dir = match &raw.drill_dir {
        Some(p) => config_file::resolve(file, p),
        None => state_dir.join("drill"),
    };
    if drill_dir.starts_with(data_dir) || data_dir.starts_with(&drill_dir) {
        return Err(ConfigError::key(
            file,
            "backup.drill_dir",
            format!(
                "{} overlaps the data directory {}: a drill must never touch the data",
                drill_dir.display(),
                data_dir.display()
            ),
        ));
    }
    for (name, hook) in [
        ("pre_backup", &raw.pre_backup),
        ("post_backup", &raw.post_backup),
        ("drill_check", &raw.drill_check),
    ] {
        check_hook(file, &format!("backup.{name}.command"), hook.as_ref())?;
    }
    for (i, hook) in raw.post_restore.iter().enumerate() {
        check_hook(
            file,
            &format!("backup.post_restore[{i}].command"),
            Some(hook),
        )?;
    }
    Ok(BackupSettings {
        store,
        store_options: StoreOptions { s3 },
        zstd_level: raw.zstd_level,
        keep_previous: raw.keep_previous,
        staging_dir,
        drill_dir,
        timeout: Duration::from_secs(raw.timeout_s),
        pre_backup: raw.pre_backup.map(&resolve_hook),
        post_backup: raw.post_backup.map(&resolve_hook),
        post_restore: raw.post_restore.into_iter().map(&resolve_hook).collect(),
        post_restore_at: raw.post_restore_at,
        drill_check: raw.drill_check.map(&resolve_hook),
        change_journal: raw.change_journal,
    })
}

/// `<data_dir>.restore`, a sibling of the data directory (so the swap is a rename).
pub fn default_staging(data_dir: &Path) -> PathBuf {
    let mut s = data_dir.as_os_str().to_owned();
    s.push(".restore");
    PathBuf::from(s)
}

fn parent_of(p: &Path) -> &Path {
    p.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The staging directory must not be (or be inside) the data directory, and must share its file
/// system (checked when both parents exist; the restore checks again before it writes).
fn check_staging(file: &Path, staging: &Path, data_dir: &Path) -> Result<(), ConfigError> {
    let bad = |p: String| ConfigError::key(file, "backup.staging_dir", p);
    if staging.starts_with(data_dir) || data_dir.starts_with(staging) {
        return Err(bad(format!(
            "{} overlaps the data directory {}; use a sibling such as {}",
            staging.display(),
            data_dir.display(),
            default_staging(data_dir).display()
        )));
    }
    let (sp, dp) = (parent_of(staging), parent_of(data_dir));
    if let (Ok(s), Ok(d)) = (std::fs::metadata(sp), std::fs::metadata(dp))
        && s.dev() != d.dev()
    {
        return Err(bad(format!(
            "{} is on another file system than the data directory {}: the swap must be an atomic rename; put it next to the data directory",
            staging.display(),
            data_dir.display()
        )));
    }
    Ok(())
}

fn check_hook(file: &Path, key: &str, hook: Option<&Hook>) -> Result<(), ConfigError> {
    if let Some(h) = hook
        && (h.command.is_empty() || h.command[0].is_empty())
    {
        return Err(ConfigError::key(
            file,
            key,
            "empty: give the command as a list",
        ));
    }
    Ok(())
}

fn s3_options(file: &Path, raw: S3Section) -> Result<S3Options, ConfigError> {
    raw.options(|p| {
        Secret::from_file(config_file::resolve(file, p))
            .map(|s| s.expose_secret().to_string())
            .map_err(|e| e.to_string())
    })
    .map_err(|e| ConfigError::key(file, format!("backup.s3.{}", e.key), e.message))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::AgentConfig;

    const BASE: &str = r#"
host = "a"
group = "erlmcp"
controllers = ["http://ctl1:7400"]
state_dir = "state"
[service]
start = ["bin/erlmcp", "daemon"]
stop = ["bin/erlmcp", "stop"]
pid_file = "run/erlmcp.pid"
data_dir = "/var/lib/erlmcp/data"
"#;

    fn parse(extra: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(
            Path::new("/etc/dr/agent.toml"),
            &format!("{BASE}\n{extra}"),
            true,
        )
    }

    #[test]
    fn defaults_and_relative_store() {
        let c = parse("[backup]\nstore = \"backups\"\n").unwrap();
        let b = c.backup.unwrap();
        assert_eq!(b.store, "file:///etc/dr/backups");
        assert_eq!(b.zstd_level, 3);
        assert!(b.keep_previous);
        assert_eq!(b.staging_dir, PathBuf::from("/var/lib/erlmcp/data.restore"));
        assert_eq!(b.drill_dir, PathBuf::from("/etc/dr/state/drill"));
        assert_eq!(b.timeout, Duration::from_secs(3600));
        assert_eq!(b.post_restore_at, PostRestoreAt::BeforeStart);
        assert!(parse("").unwrap().backup.is_none());
    }

    #[test]
    fn hooks_in_order_and_s3_options() {
        let c = parse(
            r#"[backup]
store = "s3://erlmcp-backups/prod"
post_restore = [
  { command = ["check"], timeout_ms = 1000 },
  { command = ["scripts/rebuild"] },
]
drill_check = { command = ["check"] }
[backup.s3]
region = "eu-west-1"
endpoint = "http://127.0.0.1:9000"
"#,
        )
        .unwrap();
        let b = c.backup.unwrap();
        assert_eq!(b.post_restore.len(), 2);
        assert_eq!(b.post_restore[1].command[0], "/etc/dr/scripts/rebuild");
        assert!(
            b.store_options.s3.force_path_style,
            "endpoint implies path style"
        );
        assert!(b.store_options.s3.credentials.is_none());
    }

    #[test]
    fn key_files_must_be_private_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, "AKIDTEST\n").unwrap();
        std::fs::write(&secret, "VERYSECRETVALUE\n").unwrap();
        std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[backup]\nstore = \"s3://erlmcp-backups\"\n[backup.s3]\nregion = \"us-east-1\"\naccess_key_id_file = {:?}\nsecret_access_key_file = {:?}\n",
            id.display().to_string(),
            secret.display().to_string()
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("backup.s3.secret_access_key_file"),
            "{e}"
        );
        assert!(e.problem.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(&text).unwrap();
        let creds = c
            .backup
            .as_ref()
            .unwrap()
            .store_options
            .s3
            .credentials
            .clone();
        assert_eq!(creds.unwrap().secret_access_key, "VERYSECRETVALUE");
        assert!(!format!("{c:?}").contains("VERYSECRETVALUE"));
    }

    #[test]
    fn problems_name_their_key() {
        let cases = [
            ("[backup]\nstore = \"ftp://x/y\"\n", "backup.store"),
            ("[backup]\nstore = \"\"\n", "backup.store"),
            ("[backup]\nzstd_level = 3\n", "backup.store"),
            (
                "[backup]\nstore = \"/b\"\nzstd_level = 30\n",
                "backup.zstd_level",
            ),
            (
                "[backup]\nstore = \"/b\"\ntimeout_s = 0\n",
                "backup.timeout_s",
            ),
            (
                "[backup]\nstore = \"/b\"\nstaging_dir = \"/var/lib/erlmcp/data/x\"\n",
                "backup.staging_dir",
            ),
            (
                "[backup]\nstore = \"/b\"\ndrill_dir = \"/var/lib/erlmcp/data/drill\"\n",
                "backup.drill_dir",
            ),
            (
                "[backup]\nstore = \"/b\"\npost_restore = [{ command = [] }]\n",
                "backup.post_restore[0].command",
            ),
            (
                "[backup]\nstore = \"/b\"\npre_backup = { command = [\"\"] }\n",
                "backup.pre_backup.command",
            ),
            ("[backup]\nstore = \"/b\"\nbogus = 1\n", "backup.bogus"),
            (
                "[backup]\nstore = \"/b\"\n[backup.s3]\nendpoint = \"localhost:9000\"\n",
                "backup.s3.endpoint",
            ),
            (
                "[backup]\nstore = \"/b\"\n[backup.s3]\naccess_key_id_file = \"k\"\n",
                "backup.s3.secret_access_key_file",
            ),
            (
                "[backup]\nstore = \"/b\"\npost_restore_at = \"never\"\n",
                "backup.post_restore_at",
            ),
        ];
        for (extra, key) in cases {
            let e = parse(extra).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{extra}: {e}");
        }
    }

    #[test]
    fn staging_on_another_file_system_is_refused() {
        // /proc is always another file system than /tmp.
        let dir = tempfile::tempdir().unwrap();
        let text = BASE.replace(
            "/var/lib/erlmcp/data",
            &dir.path().join("data").display().to_string(),
        ) + "[backup]\nstore = \"/b\"\nstaging_dir = \"/proc/erlmcp-restore\"\n";
        let e = AgentConfig::parse(Path::new("/etc/dr/agent.toml"), &text, true).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("backup.staging_dir"), "{e}");
        assert!(e.problem.contains("another file system"), "{e}");
    }
}
