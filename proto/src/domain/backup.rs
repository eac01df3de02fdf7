//! Backups as the control plane talks about them: what an agent reports after a backup, a
//! restore, a verification or a drill (sent as JSON in the command result), and the catalog the
//! controller keeps.

use serde::{Deserialize, Serialize};

use super::{GroupName, HostName};

/// `full-2026-01-27T13:45:30Z` or `incremental-…`: the kind, then a UTC ISO-8601 second.
pub fn valid_backup_id(s: &str) -> bool {
    let Some(ts) = s
        .strip_prefix("full-")
        .or_else(|| s.strip_prefix("incremental-"))
    else {
        return false;
    };
    ts.len() == 20
        && ts.ends_with('Z')
        && ts
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | 'T' | 'Z'))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    Full,
    Incremental,
}

/// One backup in a store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: String,
    pub kind: BackupKind,
    pub group: GroupName,
    pub host: HostName,
    pub created_at_unix_ms: u64,
    pub parent: Option<String>,
    /// Stored (compressed) bytes of the archive.
    pub size_bytes: u64,
    pub files: u64,
    /// Content bytes of the files.
    pub bytes: u64,
    /// How long the backup took (0 when only listed).
    #[serde(default)]
    pub duration_ms: u64,
    /// Files that vanished or kept changing while read (recorded, not archived corruptly).
    #[serde(default)]
    pub skipped_files: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    pub backup_id: String,
    pub deep: bool,
    pub valid: bool,
    pub files_checked: u64,
    pub bytes: u64,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub backup_id: String,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// Where the data directory as it was before is kept (manual rollback), if kept.
    pub previous_kept_at: Option<String>,
    /// What the post-restore hooks said.
    pub hooks: Vec<String>,
    pub healthy_after_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillOutcome {
    pub backup_id: String,
    pub host: HostName,
    pub ok: bool,
    pub files_checked: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// What the integrity hook said, or why the drill failed.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetentionOutcome {
    pub kept: Vec<String>,
    pub deleted: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids() {
        assert!(valid_backup_id("full-2026-01-27T13:45:30Z"));
        assert!(valid_backup_id("incremental-2026-01-27T14:00:00Z"));
        assert!(!valid_backup_id("full-2026-01-27T13:45:30"));
        assert!(!valid_backup_id("../full-2026-01-27T13:45:30Z"));
        assert!(!valid_backup_id("partial-2026-01-27T13:45:30Z"));
        assert!(!valid_backup_id("full-2026-01-27T13:45:3/Z"));
    }
}
