//! The runbook's Procedure 2, done safely. First, with the service still running: check free
//! space, fetch the chain, extract it into the staging directory next to the data directory and
//! check every file (the engine does all of this; on failure nothing was touched). Only then:
//! mark the host busy and give the lease back (like a restart), stop the service, swap the
//! directories atomically, run the `post_restore` hooks in order, start, wait healthy. Any
//! failure after the swap stops the service, swaps the previous data back, starts it and waits
//! healthy again, and the error says what failed and that the previous data is back.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dr_backup::restore::{RestoreOptions, RestoreRequest, SwapError, SwapGuard};
use dr_backup::{restore_chain, swap_in};
use dr_proto::domain::{HostName, RestoreOutcome};
use dr_proto::pb;
use tokio::sync::mpsc;

use super::backup::run_hook;
use super::deadline::DeadlineStore;
use super::progress::{self, CommandProgress};
use super::{blocking, location, open_store, parse_backup_id, records, settings};
use crate::commands::Ctx;
use crate::config::{BackupSettings, PostRestoreAt};
use crate::hooks::HookEnv;
use crate::service_ctl;

/// Restores backup `backup_id` (default the newest) of `from_host` (default this host) over this
/// host's data directory. Ok holds a `RestoreOutcome` as JSON.
pub async fn restore(
    ctx: &Ctx,
    id: &str,
    backup_id: Option<&str>,
    from_host: Option<&HostName>,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<String, String> {
    let started = Instant::now();
    let settings = settings(ctx)?;
    let _op = ctx.ops.begin("restore")?;
    let busy = ctx.state.role_snapshot().busy_with;
    if !busy.is_empty() {
        return Err(format!("refused: this host is busy with {busy}"));
    }
    let loc = location(ctx, from_host)?;
    let wanted = parse_backup_id(backup_id)?;
    let data_dir = ctx.config.service.data_dir.clone();
    let staging = settings.staging_dir.clone();
    check_staging_free(&staging)?;
    let store = open_store(settings).await?;

    progress::send(
        out,
        id,
        format!(
            "restore: extracting {} of {}/{} into {} (the service keeps running)",
            backup_id.unwrap_or("latest"),
            loc.group(),
            loc.host(),
            staging.display()
        ),
        0,
        0,
    );
    let deadline = DeadlineStore::new(store, settings.timeout);
    let sink = CommandProgress::new(out, id, "restore");
    let (dd, st) = (data_dir.clone(), staging.clone());
    let watch = deadline.clone();
    let job = blocking(move || {
        let req = RestoreRequest {
            group: loc.group(),
            host: loc.host(),
            backup: wanted,
            staging: &st,
            data_dir: &dd,
            options: RestoreOptions::default(),
            progress: Some(&sink),
        };
        restore_chain(&deadline, &req).map_err(|e| {
            let hint = super::fallback::previous_good_hint(&deadline, &loc, wanted.as_ref());
            format!("{e}{hint}")
        })
    });
    let report = watch
        .within("restore", async { job.await? })
        .await
        .map_err(|e| format!("{e}; the service was not touched"))?;

    let bid = report.backup.to_string();
    let mut env = ctx.env(ctx.state.last_epoch_seen(), None, None);
    env.data_dir = Some(data_dir.clone());
    env.backup_id = Some(bid.clone());
    ctx.state.with_role(|m| {
        m.busy_with = "restore".into();
        ((), m.release(&format!("restoring backup {bid}")))
    });
    let swapped = ServicePhase {
        ctx,
        settings,
        env: &env,
        out,
        id,
        data_dir: &data_dir,
        staging: &staging,
        bid: &bid,
    }
    .run()
    .await;
    let healthy = matches!(&swapped, Ok(_) | Err(Failure { healthy: true, .. }));
    ctx.state.with_role(|m| {
        m.busy_with.clear();
        if healthy {
            m.resume();
        }
        ((), Vec::new())
    });
    ctx.state.probe_now.notify_one();
    match swapped {
        Ok(done) => {
            tracing::info!(backup = %bid, ms = started.elapsed().as_millis() as u64, "restore done");
            records::json(&RestoreOutcome {
                backup_id: bid,
                files: report.files,
                bytes: report.file_bytes,
                duration_ms: started.elapsed().as_millis() as u64,
                previous_kept_at: done.previous.map(|p| p.display().to_string()),
                hooks: done.hooks,
                healthy_after_ms: Some(done.healthy_after_ms),
            })
        }
        Err(f) => Err(f.message),
    }
}

/// A leftover staging directory (an interrupted restore) is not deleted blindly.
fn check_staging_free(staging: &Path) -> Result<(), String> {
    let non_empty = std::fs::read_dir(staging).is_ok_and(|mut rd| rd.next().is_some());
    match non_empty {
        true => Err(format!(
            "refused: the staging directory {} exists and is not empty (left by an interrupted restore?); inspect and remove it (key `backup.staging_dir`); nothing was touched",
            staging.display()
        )),
        false => Ok(()),
    }
}

struct Swapped {
    previous: Option<PathBuf>,
    hooks: Vec<String>,
    healthy_after_ms: u64,
}

struct Failure {
    message: String,
    /// The service runs and is healthy (on the previous data) after the failure.
    healthy: bool,
}

struct ServicePhase<'a> {
    ctx: &'a Ctx,
    settings: &'a BackupSettings,
    env: &'a HookEnv,
    out: &'a mpsc::Sender<pb::AgentMessage>,
    id: &'a str,
    data_dir: &'a Path,
    staging: &'a Path,
    bid: &'a str,
}

impl ServicePhase<'_> {
    fn say(&self, message: String) {
        progress::send(self.out, self.id, format!("restore: {message}"), 0, 0);
    }

    async fn run(&self) -> Result<Swapped, Failure> {
        let cfg = &self.ctx.config;
        self.say("stopping the service".into());
        if let Err(e) = service_ctl::stop(cfg, self.env).await {
            remove_tree(self.staging.to_path_buf()).await;
            let (healthy, note) = self.start_again().await;
            return Err(Failure {
                message: format!(
                    "restore of {}: cannot stop the service: {e}; nothing was swapped and the restored copy was removed; {note}",
                    self.bid
                ),
                healthy,
            });
        }
        let _ = self.ctx.log_mark.send(());
        self.say(format!(
            "service stopped; swapping {} into place",
            self.staging.display()
        ));
        let (d, s) = (self.data_dir.to_path_buf(), self.staging.to_path_buf());
        let guard = match blocking(move || swap_in(&d, &s)).await {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => return Err(self.swap_failed(e).await),
            Err(e) => return Err(self.swap_failed_internal(e).await),
        };
        let mut hooks = Vec::new();
        let at = self.settings.post_restore_at;
        if at == PostRestoreAt::BeforeStart
            && let Err(e) = self.run_hooks(&mut hooks).await
        {
            return Err(self.roll_back(guard, e).await);
        }
        self.say("starting the service on the restored data".into());
        if let Err(e) = service_ctl::start(cfg, self.env).await {
            return Err(self.roll_back(guard, e).await);
        }
        let healthy = match service_ctl::wait_healthy(cfg).await {
            Ok(t) => t,
            Err(e) => {
                return Err(self
                    .roll_back(guard, format!("the restored service {e}"))
                    .await);
            }
        };
        if at == PostRestoreAt::AfterStart
            && let Err(e) = self.run_hooks(&mut hooks).await
        {
            return Err(self.roll_back(guard, e).await);
        }
        let keep = self.settings.keep_previous;
        let previous = match blocking(move || guard.commit(keep)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "restore done, but the previous data could not be deleted");
                hooks.push(format!("note: {e}"));
                None
            }
            Err(e) => {
                hooks.push(format!("note: {e}"));
                None
            }
        };
        Ok(Swapped {
            previous,
            hooks,
            healthy_after_ms: healthy.as_millis() as u64,
        })
    }

    async fn run_hooks(&self, done: &mut Vec<String>) -> Result<(), String> {
        for (i, hook) in self.settings.post_restore.iter().enumerate() {
            let name = hook.command.first().map(String::as_str).unwrap_or("");
            self.say(format!("post_restore hook {}: {name}", i + 1));
            match run_hook(hook, self.env).await {
                Ok(o) => done.push(format!("post_restore[{i}] {name}: {o}")),
                Err(e) => return Err(format!("post_restore hook {} failed: {e}", i + 1)),
            }
        }
        Ok(())
    }

    /// After the swap: stop, swap the previous data back, start it, wait healthy.
    async fn roll_back(&self, guard: SwapGuard, failed: String) -> Failure {
        tracing::error!(backup = %self.bid, error = %failed, "restore failed after the swap: rolling back");
        self.say(format!("{failed}; rolling back to the previous data"));
        let cfg = &self.ctx.config;
        let stop_note = match service_ctl::stop(cfg, self.env).await {
            Ok(_) => String::new(),
            Err(e) => format!(" (stopping the restored service: {e})"),
        };
        match blocking(move || guard.rollback()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Failure {
                    message: format!(
                        "restore of {}: {failed}; ROLLBACK FAILED: {e}{stop_note}; the service is stopped: act by hand",
                        self.bid
                    ),
                    healthy: false,
                };
            }
            Err(e) => {
                return Failure {
                    message: format!(
                        "restore of {}: {failed}; rollback did not run: {e}; the service is stopped: act by hand",
                        self.bid
                    ),
                    healthy: false,
                };
            }
        }
        // the restored tree is back at the staging path
        remove_tree(self.staging.to_path_buf()).await;
        let (healthy, note) = self.start_again().await;
        Failure {
            message: format!(
                "restore of {} failed: {failed}{stop_note}; rolled back: the previous data is back in place; {note}",
                self.bid
            ),
            healthy,
        }
    }

    async fn swap_failed(&self, e: SwapError) -> Failure {
        // Refused: nothing moved. Rename: the error says where each tree is; then leave both.
        if matches!(e, SwapError::Refused { .. }) {
            remove_tree(self.staging.to_path_buf()).await;
        }
        let (healthy, note) = self.start_again().await;
        Failure {
            message: format!("restore of {}: {e}; {note}", self.bid),
            healthy,
        }
    }

    async fn swap_failed_internal(&self, e: String) -> Failure {
        Failure {
            message: format!(
                "restore of {}: {e}; the service is stopped and the swap may be incomplete: check {} and {} by hand",
                self.bid,
                self.data_dir.display(),
                self.staging.display()
            ),
            healthy: false,
        }
    }

    /// Starts the service on whatever data is in place and waits healthy; says how it went.
    async fn start_again(&self) -> (bool, String) {
        let cfg = &self.ctx.config;
        self.say("starting the service on the previous data".into());
        if let Err(e) = service_ctl::start(cfg, self.env).await {
            return (false, format!("the service did not start again: {e}"));
        }
        match service_ctl::wait_healthy(cfg).await {
            Ok(t) => (
                true,
                format!("the service is healthy again ({} ms)", t.as_millis()),
            ),
            Err(e) => (false, format!("the service is not healthy again: {e}")),
        }
    }
}

async fn remove_tree(path: PathBuf) {
    let shown = path.display().to_string();
    let r = blocking(move || match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
        _ => Ok(()),
    })
    .await;
    if let Err(e) | Ok(Err(e)) = r {
        tracing::warn!(path = %shown, error = %e, "cannot remove the restored copy");
    }
}
