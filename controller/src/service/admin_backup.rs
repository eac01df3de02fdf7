//! The backup part of the admin API: create, list (the catalog), verify, drill, restore, and
//! progress of what is running.

use dr_proto::domain::{GroupName, HostName, valid_backup_id};
use dr_proto::pb;
use tonic::Status;

use super::runtime::Shared;
use crate::decide::OperatorRequest;
use crate::state::{CatalogEntry, DrillRecord};

fn group(s: &str) -> Result<GroupName, Status> {
    let s = if s.is_empty() { "erlmcp" } else { s };
    GroupName::new(s).map_err(|e| Status::invalid_argument(format!("group {s:?} {e}")))
}

fn optional_host(s: &str) -> Result<Option<HostName>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    HostName::new(s)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("host {s:?} {e}")))
}

fn backup_id(s: &str) -> Result<Option<String>, Status> {
    match s {
        "" | "latest" => Ok(None),
        id if valid_backup_id(id) => Ok(Some(id.to_string())),
        other => Err(Status::invalid_argument(format!(
            "{other:?} is not a backup id (like full-2026-01-27T13:45:30Z) or `latest`"
        ))),
    }
}

pub fn create(r: pb::BackupCreateRequest) -> Result<OperatorRequest, Status> {
    Ok(OperatorRequest::Backup {
        group: group(&r.group)?,
        host: optional_host(&r.host)?,
        incremental: r.incremental,
    })
}

pub fn verify(r: pb::BackupVerifyRequest) -> Result<OperatorRequest, Status> {
    Ok(OperatorRequest::VerifyBackup {
        group: group(&r.group)?,
        backup_id: backup_id(&r.backup_id)?,
        deep: r.deep,
    })
}

pub fn drill(r: pb::BackupDrillRequest) -> Result<OperatorRequest, Status> {
    Ok(OperatorRequest::Drill {
        group: group(&r.group)?,
    })
}

pub fn restore(r: pb::RestoreRequest) -> Result<OperatorRequest, Status> {
    Ok(OperatorRequest::Restore {
        group: group(&r.group)?,
        host: optional_host(&r.host)?
            .ok_or_else(|| Status::invalid_argument("name the host to restore (--host)"))?,
        backup_id: backup_id(&r.backup_id)?,
        from_host: optional_host(&r.from_host)?,
        allow_primary: r.allow_primary,
    })
}

fn entry(e: &CatalogEntry) -> pb::CatalogEntry {
    let r = &e.record;
    pb::CatalogEntry {
        id: r.id.clone(),
        kind: serde_json::to_value(r.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        group: r.group.to_string(),
        host: r.host.to_string(),
        created_at_unix_ms: r.created_at_unix_ms,
        parent: r.parent.clone().unwrap_or_default(),
        size_bytes: r.size_bytes,
        files: r.files,
        bytes: r.bytes,
        duration_ms: r.duration_ms,
        verified: e.verified,
        last_drill_at_unix_ms: e.last_drill_at_unix_ms,
        last_drill_ok: e.last_drill_ok,
    }
}

pub async fn list(
    shared: &Shared,
    r: pb::BackupListRequest,
) -> Result<pb::BackupListResponse, Status> {
    let (entries, drill): (Vec<CatalogEntry>, Option<DrillRecord>) =
        shared.catalog(group(&r.group)?).await?;
    Ok(pb::BackupListResponse {
        entries: entries.iter().rev().map(entry).collect(),
        last_drill_at_unix_ms: drill.as_ref().map(|d| d.at_unix_ms),
        last_drill_ok: drill.as_ref().map(|d| d.outcome.ok),
        last_drill_detail: drill
            .as_ref()
            .map(|d| d.outcome.detail.clone())
            .unwrap_or_default(),
        last_good_drill_at_unix_ms: drill.as_ref().and_then(|d| d.last_ok_at_unix_ms),
    })
}

pub async fn progress(
    shared: &Shared,
    r: pb::ProgressRequest,
) -> Result<pb::ProgressResponse, Status> {
    let action = (r.action_id != 0).then_some(r.action_id);
    let (running, finished) = shared.progress(group(&r.group)?, action).await?;
    let actions = running
        .into_iter()
        .map(|a| pb::ActionProgress {
            action_id: a.id,
            kind: a.kind.to_string(),
            host: a.host,
            message: a.message,
            done: a.done,
            total: a.total,
        })
        .collect();
    Ok(pb::ProgressResponse {
        actions,
        finished: finished.map(|outcome| {
            let (ok, detail) = match outcome {
                Ok(d) => (true, d),
                Err(e) => (false, e),
            };
            pb::FinishedAction {
                action_id: r.action_id,
                ok,
                detail,
            }
        }),
    })
}
