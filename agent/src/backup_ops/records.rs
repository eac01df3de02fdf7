//! Engine reports → the protocol's backup types (sent as JSON in `CommandResult.outcome`, and
//! printed by the standalone CLI's `-o json`).

use dr_backup::manifest::ManifestHeader;
use dr_backup::verify::{VerifyMode, VerifyReport};
use dr_backup::{BackupReport, BackupSummary};
use dr_proto::domain::{BackupKind, BackupRecord, GroupName, HostName, VerifyOutcome};

fn kind(k: dr_backup::BackupKind) -> BackupKind {
    match k {
        dr_backup::BackupKind::Full => BackupKind::Full,
        dr_backup::BackupKind::Incremental => BackupKind::Incremental,
    }
}

fn names(group: &str, host: &str) -> Result<(GroupName, HostName), String> {
    Ok((
        GroupName::new(group).map_err(|e| format!("group {group:?} {e}"))?,
        HostName::new(host).map_err(|e| format!("host {host:?} {e}"))?,
    ))
}

fn unix_ms(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0).saturating_mul(1000)
}

/// A backup just taken.
pub fn from_report(r: &BackupReport) -> Result<BackupRecord, String> {
    let h: &ManifestHeader = &r.header;
    let (group, host) = names(&h.group, &h.host)?;
    Ok(BackupRecord {
        id: h.id.to_string(),
        kind: kind(h.kind),
        group,
        host,
        created_at_unix_ms: unix_ms(h.id.unix_secs),
        parent: h.parent.map(|p| p.to_string()),
        size_bytes: h.archive.size,
        files: h.totals.files,
        bytes: h.totals.file_bytes,
        duration_ms: r.elapsed.as_millis() as u64,
        skipped_files: (r.vanished.len() + r.changed_while_reading.len() + r.skipped.len()) as u64,
    })
}

/// A listed backup.
pub fn from_summary(s: &BackupSummary) -> Result<BackupRecord, String> {
    let (group, host) = names(&s.group, &s.host)?;
    Ok(BackupRecord {
        id: s.id.to_string(),
        kind: kind(s.kind),
        group,
        host,
        created_at_unix_ms: unix_ms(s.id.unix_secs),
        parent: s.parent.map(|p| p.to_string()),
        size_bytes: s.size,
        files: s.files,
        bytes: s.file_bytes,
        duration_ms: 0,
        skipped_files: 0,
    })
}

/// Listed backups; entries whose names the protocol refuses are left out (and logged).
pub fn from_summaries(list: &[BackupSummary]) -> Vec<BackupRecord> {
    list.iter()
        .filter_map(|s| match from_summary(s) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(id = %s.id, error = %e, "backup not reported");
                None
            }
        })
        .collect()
}

pub fn verify_outcome(r: &VerifyReport) -> VerifyOutcome {
    VerifyOutcome {
        backup_id: r.backup.to_string(),
        deep: r.mode == VerifyMode::Deep,
        valid: r.valid,
        files_checked: r.files_checked,
        bytes: r.bytes,
        problems: r.problems.clone(),
    }
}

/// JSON for `CommandResult.outcome`.
pub fn json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("internal error: cannot encode the result: {e}"))
}
