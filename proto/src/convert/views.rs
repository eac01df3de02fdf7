//! Wire → operator views (`drctl -o json`, the controller's JSON API). Display only: nothing
//! is decided from these, so they copy rather than validate.

use crate::domain::{BackupEntryView, BackupListView, DrillView};
use crate::pb;

impl BackupListView {
    /// The catalog answer of `group` as drctl and the dashboard show it.
    pub fn from_wire(group: &str, r: &pb::BackupListResponse) -> BackupListView {
        BackupListView {
            group: group.to_string(),
            backups: r
                .entries
                .iter()
                .map(|e| BackupEntryView {
                    id: e.id.clone(),
                    kind: e.kind.clone(),
                    host: e.host.clone(),
                    created_at_unix_ms: e.created_at_unix_ms,
                    parent: (!e.parent.is_empty()).then(|| e.parent.clone()),
                    size_bytes: e.size_bytes,
                    files: e.files,
                    bytes: e.bytes,
                    duration_ms: e.duration_ms,
                    verified: e.verified,
                    last_drill_at_unix_ms: e.last_drill_at_unix_ms,
                    last_drill_ok: e.last_drill_ok,
                })
                .collect(),
            last_drill: r.last_drill_at_unix_ms.map(|at| DrillView {
                at_unix_ms: at,
                ok: r.last_drill_ok.unwrap_or(false),
                detail: r.last_drill_detail.clone(),
                last_good_at_unix_ms: r.last_good_drill_at_unix_ms,
            }),
        }
    }
}
