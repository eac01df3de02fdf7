//! Read-only views shared by `drctl -o json` and the controller's `/api/v1/...` JSON API, so
//! the two cannot drift apart: one set of serde types, one conversion from the wire
//! (`crate::convert`), field names stable and snake_case.

use serde::{Deserialize, Serialize};

use super::{Incident, RoleChange};

/// `drctl history -o json` and `GET /api/v1/history`: newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    pub role_changes: Vec<RoleChange>,
    pub incidents: Vec<Incident>,
}

/// `drctl backup list -o json` and `GET /api/v1/backups?group=G`: the catalog of one group,
/// newest first, and its last restore drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupListView {
    pub group: String,
    pub backups: Vec<BackupEntryView>,
    pub last_drill: Option<DrillView>,
}

/// One backup of the catalog as operators see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupEntryView {
    pub id: String,
    /// `full` or `incremental`.
    pub kind: String,
    pub host: String,
    pub created_at_unix_ms: u64,
    pub parent: Option<String>,
    /// Stored (compressed) bytes.
    pub size_bytes: u64,
    pub files: u64,
    /// Content bytes of the files.
    pub bytes: u64,
    pub duration_ms: u64,
    /// `Some(valid)` once verified.
    pub verified: Option<bool>,
    pub last_drill_at_unix_ms: Option<u64>,
    pub last_drill_ok: Option<bool>,
}

/// The most recent restore drill of a group, and the last one that succeeded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillView {
    pub at_unix_ms: u64,
    pub ok: bool,
    pub detail: String,
    pub last_good_at_unix_ms: Option<u64>,
}
