//! Property: the agent's backup commands do the runbook's Procedure 2 safely on a host whose
//! service is a real `erlmcp-standin`, called as the controller's commands would call them
//! (library functions, no controller):
//! - backups run the pre/post hooks, stream progress, build incrementals on the newest backup
//!   (a full one when there is none yet), and retention deletes exactly what the policy says;
//! - a restore extracts and checks first, then stops, swaps, runs the post_restore hooks against
//!   the restored tree, starts, waits healthy, and keeps the previous data;
//! - a failing post_restore hook (before or after the start) puts the previous data back and
//!   leaves the service healthy;
//! - not enough disk space is refused before the service or the data is touched;
//! - a drill restores into scratch space, runs its check there and reports a bad backup as a
//!   result.

mod common;

use std::process::Command;

use common::host::{GROUP, HOST, Host};
use dr_agent::backup_ops;
use dr_backup::retention::RetentionPolicy;
use dr_proto::domain::{BackupKind, BackupRecord, DrillOutcome, RestoreOutcome, VerifyOutcome};
use dr_proto::process::{Sig, signal, stop_and_wait};

fn sh(script: &str) -> String {
    format!("{{ command = [\"sh\", \"-c\", {script:?}], timeout_ms = 10000 }}")
}

async fn take(host: &Host, incremental: bool) -> BackupRecord {
    let json = backup_ops::backup(&host.ctx, "b", incremental, &host.out)
        .await
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

/// Freezes the stand-in (its writer too) while `f` runs, so the data directory holds still.
async fn frozen<T>(host: &Host, f: impl AsyncFnOnce() -> T) -> T {
    let pid = host.service_pid().unwrap();
    // every thread stopped before `f` looks (SIGSTOP is asynchronous)
    stop_and_wait(pid, std::time::Duration::from_secs(5)).unwrap();
    let out = f().await;
    signal(pid, Sig::Cont).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_hooks_progress_incrementals_listing_and_retention() {
    let mut host = Host::new(
        None,
        &format!(
            "pre_backup = {}\npost_backup = {}\n",
            sh("echo pre $ERLMCP_DR_DATA_DIR >> @DIR@/hooks.log"),
            sh("echo post $ERLMCP_DR_BACKUP_ID >> @DIR@/hooks.log"),
        ),
    );
    let caps = dr_agent::commands::capabilities(&host.ctx.config);
    for c in ["backup", "restore", "drill"] {
        assert!(caps.iter().any(|x| x == c), "{caps:?}");
    }
    host.start_service().await;

    // an incremental with nothing to build on is a full backup, and says so
    let full1 = take(&host, true).await;
    assert_eq!(full1.kind, BackupKind::Full);
    assert_eq!((full1.group.as_str(), full1.host.as_str()), (GROUP, HOST));
    assert!(full1.files > 0 && full1.size_bytes > 0, "{full1:?}");
    let progress = host.progress();
    assert!(
        progress.iter().any(|m| m.contains("taking a full backup")),
        "{progress:?}"
    );
    assert!(
        progress
            .iter()
            .any(|m| m.starts_with("backup: archiving") || m.starts_with("backup: committing")),
        "{progress:?}"
    );
    let inc1 = take(&host, true).await;
    assert_eq!(inc1.kind, BackupKind::Incremental);
    assert_eq!(inc1.parent.as_deref(), Some(full1.id.as_str()));

    let hooks = std::fs::read_to_string(host.dir.path().join("hooks.log")).unwrap();
    assert!(
        hooks.contains(&format!("pre {}", host.data.display())),
        "{hooks}"
    );
    assert!(hooks.contains(&format!("post {}", inc1.id)), "{hooks}");

    let listed: Vec<BackupRecord> =
        serde_json::from_str(&backup_ops::list(&host.ctx).await.unwrap()).unwrap();
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![inc1.id.as_str(), full1.id.as_str()]);

    let v: VerifyOutcome = serde_json::from_str(
        &backup_ops::verify(&host.ctx, "v", Some(&full1.id), true, None, &host.out)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(v.valid && v.deep, "{v:?}");
    assert_eq!(
        (v.backup_id.as_str(), v.files_checked),
        (full1.id.as_str(), full1.files)
    );
    let v: VerifyOutcome = serde_json::from_str(
        &backup_ops::verify(&host.ctx, "v", Some("latest"), false, None, &host.out)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(v.valid && !v.deep, "{v:?}");
    assert_eq!(v.backup_id, inc1.id);

    let full2 = take(&host, false).await;
    let inc2 = take(&host, true).await;
    assert_eq!(inc2.parent.as_deref(), Some(full2.id.as_str()));
    let nothing = RetentionPolicy::default();
    let e = backup_ops::apply_retention(&host.ctx, nothing)
        .await
        .unwrap_err();
    assert!(e.contains("keeps nothing"), "{e}");
    let keep_last_1 = RetentionPolicy {
        keep_last: 1,
        ..RetentionPolicy::default()
    };
    let outcome: dr_proto::domain::RetentionOutcome = serde_json::from_str(
        &backup_ops::apply_retention(&host.ctx, keep_last_1)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(outcome.kept, vec![inc2.id.clone(), full2.id.clone()]);
    assert_eq!(outcome.deleted, vec![inc1.id.clone(), full1.id.clone()]);
    let listed: Vec<BackupRecord> =
        serde_json::from_str(&backup_ops::list(&host.ctx).await.unwrap()).unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_swaps_in_the_backup_runs_the_hooks_and_keeps_the_previous_data() {
    let mut host = Host::new(
        None,
        &format!(
            "post_restore = [{}, {}]\n",
            // the service is stopped: copy exactly what was restored, and record the env
            sh(
                "mkdir -p @DIR@/seen && cp -a \"$ERLMCP_DR_DATA_DIR\" @DIR@/seen/restored && echo ok"
            ),
            sh(
                "echo \"$ERLMCP_DR_DATA_DIR $ERLMCP_DR_BACKUP_ID\" > @DIR@/seen/env; echo indexes rebuilt"
            ),
        ),
    );
    let seen_dir = host.dir.path().join("seen");
    host.start_service().await;
    let (record, snapshot) = frozen(&host, async || {
        let r = take(&host, false).await;
        (r, common::tree(&host.data))
    })
    .await;
    let marker = host.data.join("client/written-after-the-backup.json");
    std::fs::write(&marker, "{}").unwrap();
    let pid_before = host.service_pid().unwrap();

    let json = backup_ops::restore(&host.ctx, "r", Some(&record.id), None, &host.out)
        .await
        .unwrap();
    let outcome: RestoreOutcome = serde_json::from_str(&json).unwrap();
    assert_eq!(outcome.backup_id, record.id);
    assert_eq!(outcome.files, record.files);
    assert_eq!(outcome.hooks.len(), 2, "{:?}", outcome.hooks);
    assert!(
        outcome.hooks[1].contains("indexes rebuilt"),
        "{:?}",
        outcome.hooks
    );
    assert!(outcome.healthy_after_ms.is_some());

    // the hooks saw exactly the backed-up tree, in place, with the service stopped
    assert_eq!(common::tree(&seen_dir.join("restored")), snapshot);
    let env = std::fs::read_to_string(seen_dir.join("env")).unwrap();
    assert_eq!(env.trim(), format!("{} {}", host.data.display(), record.id));
    // the previous data is kept, with what was written after the backup
    let previous = std::path::PathBuf::from(outcome.previous_kept_at.unwrap());
    assert!(
        previous
            .join("client/written-after-the-backup.json")
            .is_file()
    );
    assert!(!marker.exists(), "the restored data replaced the old");
    assert_eq!(
        host.siblings(),
        vec![previous.file_name().unwrap().to_string_lossy().to_string()],
        "no staging directory left"
    );
    host.healthy().await.unwrap();
    assert_ne!(host.service_pid(), Some(pid_before), "restarted");
    assert!(host.ctx.state.role_snapshot().busy_with.is_empty());
    let progress = host.progress();
    assert!(
        progress.iter().any(|m| m.contains("stopping the service")),
        "{progress:?}"
    );
}

async fn failing_hook_rolls_back(at: &str) {
    let host = Host::new(
        None,
        &format!(
            "post_restore_at = {at:?}\npost_restore = [{}, {}]\n",
            sh("echo integrity ok"),
            sh("echo 'index rebuild failed: receipts index corrupt' >&2; exit 3"),
        ),
    );
    host.start_service().await;
    let record = take(&host, false).await;
    let marker = host.data.join("client/written-after-the-backup.json");
    std::fs::write(&marker, "{}").unwrap();
    let pid_before = host.service_pid().unwrap();

    let e = backup_ops::restore(&host.ctx, "r", Some("latest"), None, &host.out)
        .await
        .unwrap_err();
    eprintln!("restore failed as expected: {e}");
    assert!(e.contains(&record.id), "{e}");
    assert!(e.contains("post_restore hook 2 failed"), "{e}");
    assert!(e.contains("receipts index corrupt"), "{e}");
    assert!(e.contains("the previous data is back in place"), "{e}");
    assert!(e.contains("healthy again"), "{e}");
    assert!(marker.is_file(), "the previous data is back");
    assert!(host.siblings().is_empty(), "{:?}", host.siblings());
    host.healthy().await.unwrap();
    assert_ne!(host.service_pid(), Some(pid_before));
    assert!(host.ctx.state.role_snapshot().busy_with.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_restore_hook_puts_the_previous_data_back_and_the_service_is_healthy() {
    failing_hook_rolls_back("before_start").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_restore_hook_after_the_start_rolls_back_too() {
    failing_hook_rolls_back("after_start").await;
}

/// Lazily unmounts on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_enough_space_is_refused_before_the_service_or_the_data_is_touched() {
    let outer = tempfile::tempdir().unwrap();
    let small = outer.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&small)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                !common::in_ci(),
                "CI: mount -t tmpfs failed (run as root): {why}"
            );
            eprintln!("skipping: mount -t tmpfs failed (not root?): {why}");
            return;
        }
    }
    let _mount = Mount(small.clone());
    let host = Host::new(Some(&small), "");
    // 1.2 MiB of incompressible data on a 2 MiB file system: a second copy cannot fit
    std::fs::create_dir_all(&host.data).unwrap();
    let mut body = vec![0u8; 1200 << 10];
    fastrand::Rng::with_seed(7).fill(&mut body);
    std::fs::write(host.data.join("mnesia.DCD"), &body).unwrap();
    host.start_service().await;
    take(&host, false).await;
    let before = common::tree(&host.data);
    let pid = host.service_pid().unwrap();

    let e = backup_ops::restore(&host.ctx, "r", None, None, &host.out)
        .await
        .unwrap_err();
    eprintln!("restore refused as expected: {e}");
    assert!(e.contains("not enough space"), "{e}");
    assert!(e.contains("the service was not touched"), "{e}");
    assert_eq!(
        host.service_pid(),
        Some(pid),
        "the service was not restarted"
    );
    host.healthy().await.unwrap();
    assert!(host.siblings().is_empty(), "{:?}", host.siblings());
    assert_eq!(
        common::tree(&host.data).get("mnesia.DCD"),
        before.get("mnesia.DCD")
    );
    assert!(host.ctx.state.role_snapshot().busy_with.is_empty());
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_restore_into_scratch_space_and_report_a_bad_backup_as_a_result() {
    let host = Host::new(
        None,
        &format!(
            "drill_check = {}\n",
            sh(
                "test -d \"$ERLMCP_DR_DATA_DIR/receipts\" && echo \"checked $ERLMCP_DR_DATA_DIR for $ERLMCP_DR_BACKUP_ID\""
            )
        ),
    );
    host.start_service().await;
    let record = take(&host, false).await;
    let pid = host.service_pid().unwrap();
    let drill_dir = host.ctx.config.backup.as_ref().unwrap().drill_dir.clone();

    let ok: DrillOutcome = serde_json::from_str(
        &backup_ops::drill(&host.ctx, "d", None, None, &host.out)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.backup_id, record.id);
    assert_eq!(ok.files_checked, record.files);
    assert!(
        ok.detail.contains(&format!(
            "checked {} for {}",
            drill_dir.join("restore").display(),
            record.id
        )),
        "{}",
        ok.detail
    );
    assert_eq!(
        std::fs::read_dir(&drill_dir).unwrap().count(),
        0,
        "copy deleted"
    );
    assert_eq!(host.service_pid(), Some(pid), "the service was not touched");

    common::flip_byte(&common::archive_of(&host.store, GROUP, HOST, &record.id));
    let bad: DrillOutcome = serde_json::from_str(
        &backup_ops::drill(&host.ctx, "d", Some(&record.id), None, &host.out)
            .await
            .unwrap(),
    )
    .unwrap();
    eprintln!("drill of a corrupt backup: {}", bad.detail);
    assert!(!bad.ok, "{bad:?}");
    assert!(!bad.detail.is_empty());
    assert_eq!(std::fs::read_dir(&drill_dir).unwrap().count(), 0);
    host.healthy().await.unwrap();
}
