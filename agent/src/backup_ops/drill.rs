//! Restore drills: prove a backup can really be restored, without touching the data directory.
//! The chain is restored into `[backup] drill_dir` (the restore checks every file against the
//! manifest), the `drill_check` hook runs against that copy (`ERLMCP_DR_DATA_DIR` points at it),
//! and the copy is deleted. A failed drill is a result (`ok: false` and why), not an error.

use std::path::Path;
use std::time::Instant;

use dr_backup::restore::{RestoreOptions, RestoreRequest};
use dr_backup::{BackupId, latest_backup, restore_chain};
use dr_proto::domain::{DrillOutcome, HostName};
use dr_proto::pb;
use tokio::sync::mpsc;

use super::backup::run_hook;
use super::deadline::DeadlineStore;
use super::progress::{self, CommandProgress};
use super::{blocking, location, open_store, parse_backup_id, records, settings};
use crate::commands::Ctx;

/// The copy's name inside `drill_dir`; a leftover of an interrupted drill is replaced.
const COPY: &str = "restore";

/// Drills backup `backup_id` (default the newest) of `from_host` (default this host). Ok holds
/// a `DrillOutcome` as JSON; Err only when the drill could not run at all (no `[backup]`, busy).
pub async fn drill(
    ctx: &Ctx,
    id: &str,
    backup_id: Option<&str>,
    from_host: Option<&HostName>,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<String, String> {
    let started = Instant::now();
    let settings = settings(ctx)?;
    let _op = ctx.ops.begin("drill")?;
    let loc = location(ctx, from_host)?;
    let host = from_host.unwrap_or(&ctx.config.host).clone();
    let copy = settings.drill_dir.join(COPY);
    let mut outcome = DrillOutcome {
        backup_id: backup_id.unwrap_or("latest").to_string(),
        host,
        ok: false,
        files_checked: 0,
        bytes: 0,
        duration_ms: 0,
        detail: String::new(),
    };
    let result: Result<String, String> = async {
        let wanted = parse_backup_id(backup_id)?;
        let store = open_store(settings).await?;
        let deadline = DeadlineStore::new(store, settings.timeout);
        let (dir, c2) = (settings.drill_dir.clone(), copy.clone());
        blocking(move || prepare(&dir, &c2)).await??;
        let (l2, d2) = (loc.clone(), deadline.clone());
        let bid: BackupId = match wanted {
            Some(b) => b,
            None => {
                blocking(move || latest_backup(&d2, &l2))
                    .await?
                    .map_err(|e| e.to_string())?
                    .id
            }
        };
        outcome.backup_id = bid.to_string();
        progress::send(
            out,
            id,
            format!("drill: restoring {bid} into {}", copy.display()),
            0,
            0,
        );
        let sink = CommandProgress::new(out, id, "drill");
        let c2 = copy.clone();
        let report = blocking(move || {
            let req = RestoreRequest {
                group: loc.group(),
                host: loc.host(),
                backup: Some(bid),
                staging: &c2,
                data_dir: &c2,
                options: RestoreOptions::default(),
                progress: Some(&sink),
            };
            restore_chain(&deadline, &req)
        })
        .await?
        .map_err(|e| e.to_string())?;
        outcome.files_checked = report.files;
        outcome.bytes = report.file_bytes;
        let checked = format!(
            "restored and checked {} files ({} bytes) of {bid}",
            report.files, report.file_bytes
        );
        match &settings.drill_check {
            None => Ok(format!("{checked}; no drill_check hook configured")),
            Some(hook) => {
                progress::send(out, id, "drill: running the drill_check hook".into(), 0, 0);
                let mut env = ctx.env(ctx.state.last_epoch_seen(), None, None);
                env.data_dir = Some(copy.clone());
                env.backup_id = Some(bid.to_string());
                run_hook(hook, &env)
                    .await
                    .map(|o| format!("{checked}; drill_check: {o}"))
                    .map_err(|e| format!("{checked}, but the drill_check hook failed: {e}"))
            }
        }
    }
    .await;
    let c2 = copy.clone();
    let removed = blocking(move || match std::fs::remove_dir_all(&c2) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
        _ => Ok(()),
    })
    .await
    .and_then(|r| r);
    outcome.duration_ms = started.elapsed().as_millis() as u64;
    (outcome.ok, outcome.detail) = match result {
        Ok(d) => (true, d),
        Err(e) => (false, e),
    };
    if let Err(e) = removed {
        outcome.detail = format!(
            "{}; the drill copy {} could not be removed: {e}",
            outcome.detail,
            copy.display()
        );
    }
    if outcome.ok {
        tracing::info!(backup = %outcome.backup_id, ms = outcome.duration_ms, "drill passed");
    } else {
        tracing::warn!(backup = %outcome.backup_id, detail = %outcome.detail, "drill failed");
    }
    records::json(&outcome)
}

/// Creates `drill_dir` and removes a leftover copy of an interrupted drill.
fn prepare(dir: &Path, copy: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "drill directory {} (key `backup.drill_dir`): {e}",
            dir.display()
        )
    })?;
    match std::fs::remove_dir_all(copy) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
            "cannot remove the leftover drill copy {}: {e}",
            copy.display()
        )),
        _ => Ok(()),
    }
}
