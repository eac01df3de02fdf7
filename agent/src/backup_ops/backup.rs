//! Taking, verifying, listing and pruning backups of this group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_backup::list::ListError;
use dr_backup::retention::{RetentionItem, RetentionPolicy, delete_backup, plan_retention};
use dr_backup::verify::{VerifyMode, verify_backup};
use dr_backup::{
    BackupLocation, BackupMode, BackupOptions, BackupReport, BackupRequest, ListFilter,
    create_backup, latest_backup, list_backups,
};
use dr_proto::domain::{HostName, RetentionOutcome};
use dr_proto::pb;
use tokio::sync::mpsc;

use super::deadline::DeadlineStore;
use super::progress::{self, CommandProgress};
use super::{blocking, location, open_store, parse_backup_id, records, settings};
use crate::commands::Ctx;
use crate::config::Hook;
use crate::hooks::{self, HookEnv};

/// Unfinished uploads older than this are swept when retention runs.
const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

pub(crate) async fn run_hook(hook: &Hook, env: &HookEnv) -> Result<String, String> {
    hooks::run(&hook.command, env, Duration::from_millis(hook.timeout_ms))
        .await
        .map(|o| if o.is_empty() { "ok".to_string() } else { o })
        .map_err(|e| e.to_string())
}

/// pre_backup hook → backup (full, or incremental on this host's newest) → post_backup hook
/// (always attempted once the pre hook ran) → quick verify. Ok holds a `BackupRecord` as JSON.
pub async fn backup(
    ctx: &Ctx,
    id: &str,
    incremental: bool,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<String, String> {
    let settings = settings(ctx)?;
    let _op = ctx.ops.begin("backup")?;
    let loc = location(ctx, None)?;
    let data_dir = ctx.config.service.data_dir.clone();
    let mut env = ctx.env(ctx.state.last_epoch_seen(), None, None);
    env.data_dir = Some(data_dir.clone());
    let store = open_store(settings).await?;

    let pre = match &settings.pre_backup {
        Some(h) => {
            progress::send(out, id, "backup: running the pre_backup hook".into(), 0, 0);
            Some(run_hook(h, &env).await)
        }
        None => None,
    };
    let taken = match &pre {
        Some(Err(e)) => Err(format!("pre_backup hook failed: {e}; no backup was taken")),
        _ => take(ctx, settings, &store, &loc, incremental, id, out).await,
    };
    let post = match &settings.post_backup {
        Some(h) => {
            env.backup_id = taken.as_ref().ok().map(|r| r.header.id.to_string());
            progress::send(out, id, "backup: running the post_backup hook".into(), 0, 0);
            Some(run_hook(h, &env).await)
        }
        None => None,
    };
    let report = match (taken, post) {
        (Err(e), Some(Err(p))) => return Err(format!("{e}; the post_backup hook failed too: {p}")),
        (Err(e), _) => return Err(e),
        (Ok(r), Some(Err(p))) => {
            return Err(format!(
                "backup {} was committed, but the post_backup hook failed: {p}",
                r.header.id
            ));
        }
        (Ok(r), _) => r,
    };
    let bid = report.header.id;
    let (s2, l2) = (store.clone(), loc.clone());
    let check = blocking(move || verify_backup(s2.as_ref(), &l2, bid, VerifyMode::Quick, None))
        .await?
        .map_err(|e| format!("backup {bid} was committed but cannot be verified: {e}"))?;
    if !check.valid {
        return Err(format!(
            "backup {bid} was committed but its quick verification failed: {}",
            check.problems.join("; ")
        ));
    }
    let scan = match &report.scan {
        dr_backup::TreeScan::Walked => "walked every file".to_string(),
        dr_backup::TreeScan::Journal { changed_paths } => {
            format!("change journal: {changed_paths} changed paths looked at")
        }
        dr_backup::TreeScan::WalkedJournalUnusable(why) => format!("walked every file ({why})"),
    };
    tracing::info!(backup = %bid, files = report.header.totals.files, size = report.header.archive.size, ms = report.elapsed.as_millis() as u64, scan = %scan, "backup taken and verified");
    records::json(&records::from_report(&report)?)
}

async fn take(
    ctx: &Ctx,
    settings: &crate::config::BackupSettings,
    store: &Arc<dyn dr_backup::ObjectStore>,
    loc: &BackupLocation,
    incremental: bool,
    id: &str,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<BackupReport, String> {
    let mode = if incremental {
        let (s2, l2) = (store.clone(), loc.clone());
        match blocking(move || latest_backup(s2.as_ref(), &l2)).await? {
            Ok(_) => BackupMode::Incremental { parent: None },
            Err(ListError::NoBackups { .. }) => {
                tracing::info!(group = %loc.group(), host = %loc.host(), "incremental backup asked, but there is no backup yet: taking a full backup");
                progress::send(
                    out,
                    id,
                    "backup: no backup to build on yet, taking a full backup".into(),
                    0,
                    0,
                );
                BackupMode::Full
            }
            Err(e) => return Err(e.to_string()),
        }
    } else {
        BackupMode::Full
    };
    let deadline = DeadlineStore::new(store.clone(), settings.timeout);
    let sink = CommandProgress::new(out, id, "backup");
    let data_dir = ctx.config.service.data_dir.clone();
    let (group, host) = (loc.group().to_string(), loc.host().to_string());
    let level = settings.zstd_level;
    let journal = ctx.journal.clone();
    let watch = deadline.clone();
    let job = blocking(move || {
        let req = BackupRequest {
            data_dir: &data_dir,
            group: &group,
            host: &host,
            mode,
            options: BackupOptions {
                zstd_level: level,
                ..BackupOptions::default()
            },
            progress: Some(&sink),
            journal: journal.as_deref(),
        };
        create_backup(&deadline, &req).map_err(|e| e.to_string())
    });
    watch.within("backup", async { job.await? }).await
}

/// Verifies one backup of `from_host` (default this host). A backup found bad is a result
/// (`valid: false`), not a failure. Ok holds a `VerifyOutcome` as JSON.
pub async fn verify(
    ctx: &Ctx,
    id: &str,
    backup_id: Option<&str>,
    deep: bool,
    from_host: Option<&HostName>,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<String, String> {
    let settings = settings(ctx)?;
    let loc = location(ctx, from_host)?;
    let wanted = parse_backup_id(backup_id)?;
    let store = open_store(settings).await?;
    let deadline = DeadlineStore::new(store, settings.timeout);
    let sink = CommandProgress::new(out, id, "verify");
    let mode = if deep {
        VerifyMode::Deep
    } else {
        VerifyMode::Quick
    };
    let report = blocking(move || {
        let bid = match wanted {
            Some(b) => b,
            None => {
                latest_backup(&deadline, &loc)
                    .map_err(|e| e.to_string())?
                    .id
            }
        };
        verify_backup(&deadline, &loc, bid, mode, Some(&sink)).map_err(|e| e.to_string())
    })
    .await??;
    records::json(&records::verify_outcome(&report))
}

/// Every committed backup of this group (all hosts), newest first. Ok holds a
/// `Vec<BackupRecord>` as JSON.
pub async fn list(ctx: &Ctx) -> Result<String, String> {
    let settings = settings(ctx)?;
    let store = open_store(settings).await?;
    let filter = ListFilter {
        group: Some(ctx.config.group.to_string()),
        host: None,
    };
    let list = blocking(move || list_backups(store.as_ref(), &filter))
        .await?
        .map_err(|e| e.to_string())?;
    records::json(&records::from_summaries(&list))
}

/// Applies a retention policy to this group's backups (every host): plan with the engine (an
/// incremental keeps its chain, the newest valid backup is always kept), then delete in the
/// planned order (manifest first). Ok holds a `RetentionOutcome` of backup ids (the controller's
/// catalog keys a group's backups by id).
pub async fn apply_retention(ctx: &Ctx, policy: RetentionPolicy) -> Result<String, String> {
    let settings = settings(ctx)?;
    if policy.keep_last == 0 && policy.keep_daily == 0 && policy.keep_weekly == 0 {
        return Err(
            "refused: the policy keeps nothing (keep_last, keep_daily and keep_weekly are all 0)"
                .into(),
        );
    }
    let _op = ctx.ops.begin("retention")?;
    let store = open_store(settings).await?;
    let group = ctx.config.group.to_string();
    let started = Instant::now();
    let outcome = blocking(move || -> Result<RetentionOutcome, String> {
        let filter = ListFilter {
            group: Some(group),
            host: None,
        };
        let list = list_backups(store.as_ref(), &filter).map_err(|e| e.to_string())?;
        let items: Vec<RetentionItem> = list.iter().map(RetentionItem::from).collect();
        let plan = plan_retention(&items, &policy);
        let mut deleted = Vec::new();
        for d in &plan.delete {
            let loc = BackupLocation::new(&d.group, &d.host).map_err(|e| e.to_string())?;
            delete_backup(store.as_ref(), &loc, d.id).map_err(|e| {
                format!(
                    "deleting {}/{}: {e}; deleted before it: [{}]",
                    d.host,
                    d.id,
                    deleted.join(", ")
                )
            })?;
            tracing::info!(host = %d.host, backup = %d.id, "retention: deleted");
            deleted.push(d.id.to_string());
        }
        match store.sweep_stale_uploads(STALE_UPLOAD_AGE) {
            Ok(s) if !s.removed.is_empty() => {
                tracing::info!(removed = ?s.removed, "swept unfinished uploads");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot sweep unfinished uploads"),
        }
        Ok(RetentionOutcome {
            kept: plan.keep.iter().map(|k| k.id.to_string()).collect(),
            deleted,
        })
    })
    .await??;
    tracing::info!(
        kept = outcome.kept.len(),
        deleted = outcome.deleted.len(),
        ms = started.elapsed().as_millis() as u64,
        "retention applied"
    );
    records::json(&outcome)
}
