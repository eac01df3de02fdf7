//! The four standalone commands.

use std::time::{Duration, Instant};

use dr_backup::list::ListError;
use dr_backup::restore::{RestoreOptions, RestoreRequest};
use dr_backup::store::ObjectStore;
use dr_backup::verify::{VerifyMode, verify_backup};
use dr_backup::{
    BackupLocation, BackupMode, BackupOptions, BackupRequest, BackupSummary, ListFilter,
    StoreError, create_backup, latest_backup, list_backups, restore_chain, swap_in,
};
use dr_proto::domain::{ProcessState, RestoreOutcome};

use super::output::{TermProgress, emit, failed, table, took};
use super::{
    BackupArgs, CliError, ListArgs, RestoreArgs, Target, VerifyArgs, non_empty_dir,
    system_host_name,
};
use crate::backup_ops::{parse_backup_id, records};
use crate::config::{Hook, default_staging};
use crate::hooks::{self, HookEnv};

/// Group used by `backup` when neither `--group` nor a config names one (the agent's default).
const DEFAULT_GROUP: &str = "erlmcp";

fn open(t: &Target) -> Result<Box<dyn ObjectStore>, CliError> {
    dr_backup::open_store(&t.url, &t.options).map_err(|e| match e {
        StoreError::BadUrl { .. } | StoreError::BadOptions(_) | StoreError::S3NotCompiled(_) => {
            CliError::Usage(e.to_string())
        }
        other => failed("cannot open the store", &other),
    })
}

/// Reading from a file store whose directory is missing is almost always a wrong path or an
/// unmounted volume; say so instead of "no backups".
fn require_existing_store(t: &Target) -> Result<(), CliError> {
    match t.file_root() {
        Some(dir) if !dir.is_dir() => Err(CliError::Failed(format!(
            "store directory {} does not exist: check --store (or backup.store) and that the backup volume is mounted",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// `dr-agent backup`: optional pre_backup hook (with `--config`), the backup, the post_backup
/// hook, a quick verification.
pub fn backup(args: &BackupArgs) -> Result<(), CliError> {
    let t = Target::resolve(&args.store)?;
    let data_dir = t.data_dir(&args.data_dir)?;
    if !data_dir.is_dir() {
        return Err(CliError::Failed(format!(
            "data directory {} does not exist or is not a directory",
            data_dir.display()
        )));
    }
    let group = t.group.clone().unwrap_or_else(|| DEFAULT_GROUP.into());
    let host = match t.host.clone().or_else(system_host_name) {
        Some(h) => h,
        None => {
            return Err(CliError::Usage(
                "cannot tell this host's name: give --host".into(),
            ));
        }
    };
    let loc = BackupLocation::new(&group, &host).map_err(|e| CliError::Usage(e.to_string()))?;
    let level = args
        .zstd_level
        .or_else(|| {
            t.config
                .as_ref()
                .and_then(|c| c.backup.as_ref())
                .map(|b| b.zstd_level)
        })
        .unwrap_or(3);
    if !(1..=19).contains(&level) {
        return Err(CliError::Usage(format!(
            "--zstd-level {level} is outside 1..=19"
        )));
    }
    let store = open(&t)?;
    let settings = t.config.as_ref().and_then(|c| c.backup.as_ref());
    let hooks_on = !args.no_hooks;
    let pre = settings
        .and_then(|s| s.pre_backup.as_ref())
        .filter(|_| hooks_on);
    let post = settings
        .and_then(|s| s.post_backup.as_ref())
        .filter(|_| hooks_on);
    let mut env = HookEnv {
        host: host.clone(),
        group: group.clone(),
        role: "standalone".into(),
        data_dir: Some(data_dir.clone()),
        ..HookEnv::default()
    };
    if let Some(h) = pre {
        run_hook("pre_backup", h, &env).map_err(CliError::Failed)?;
    }
    let mode = if args.incremental {
        match latest_backup(store.as_ref(), &loc) {
            Ok(_) => BackupMode::Incremental { parent: None },
            Err(ListError::NoBackups { .. }) => {
                eprintln!(
                    "dr-agent: no backup of {group}/{host} to build on yet: taking a full backup"
                );
                BackupMode::Full
            }
            Err(e) => return Err(failed("cannot read the store", &e)),
        }
    } else {
        BackupMode::Full
    };
    let sink = TermProgress::new("backup");
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
        journal: None,
    };
    let taken = create_backup(store.as_ref(), &req);
    if let Some(h) = post {
        env.backup_id = taken.as_ref().ok().map(|r| r.header.id.to_string());
        if let Err(e) = run_hook("post_backup", h, &env) {
            let what = match &taken {
                Ok(r) => format!("backup {} was committed, but {e}", r.header.id),
                Err(b) => format!("{b}; {e}"),
            };
            return Err(CliError::Failed(what));
        }
    }
    let report = taken.map_err(|e| failed("backup failed", &e))?;
    let id = report.header.id;
    let check = verify_backup(store.as_ref(), &loc, id, VerifyMode::Quick, None).map_err(|e| {
        failed(
            &format!("backup {id} was committed but cannot be verified"),
            &e,
        )
    })?;
    if !check.valid {
        return Err(CliError::Failed(format!(
            "backup {id} was committed but its verification failed: {}",
            check.problems.join("; ")
        )));
    }
    let record = records::from_report(&report).map_err(CliError::Failed)?;
    emit(args.output, &record, || {
        format!(
            "backup {id} of {group}/{host}: {} files, {} -> {} stored in {} (verified){}",
            record.files,
            human(record.bytes),
            human(record.size_bytes),
            took(report.elapsed),
            match &record.parent {
                Some(p) => format!(", on top of {p}"),
                None => String::new(),
            }
        )
    });
    Ok(())
}

fn human(n: u64) -> String {
    dr_backup::restore::human_bytes(n)
}

fn run_hook(name: &str, hook: &Hook, env: &HookEnv) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("{name} hook: cannot start a runtime: {e}"))?;
    rt.block_on(hooks::run(
        &hook.command,
        env,
        Duration::from_millis(hook.timeout_ms),
    ))
    .map_err(|e| format!("the {name} hook failed: {e}"))
}

/// `dr-agent list`: committed backups, newest first.
pub fn list(args: &ListArgs) -> Result<(), CliError> {
    let t = Target::resolve(&args.store)?;
    require_existing_store(&t)?;
    let store = open(&t)?;
    // a config's host does not narrow the listing: every host of the group is shown
    let filter = ListFilter {
        group: t.group.clone(),
        host: t.host.clone().filter(|_| t.host_from_flag),
    };
    let list =
        list_backups(store.as_ref(), &filter).map_err(|e| failed("cannot list the store", &e))?;
    let records = records::from_summaries(&list);
    emit(args.output, &records, || {
        if records.is_empty() {
            format!("no backups in {}", store.url())
        } else {
            table(&records)
        }
    });
    Ok(())
}

/// The backup a `--backup ID|latest` names. Without `--host`, any host of the group; without
/// `--group`, the store's only group.
fn find(store: &dyn ObjectStore, t: &Target, backup: &str) -> Result<BackupSummary, CliError> {
    let wanted =
        parse_backup_id(Some(backup)).map_err(|e| CliError::Usage(format!("--backup: {e}")))?;
    let filter = ListFilter {
        group: t.group.clone(),
        host: t.host.clone(),
    };
    let all = list_backups(store, &filter).map_err(|e| failed("cannot list the store", &e))?;
    let found: Vec<&BackupSummary> = all
        .iter()
        .filter(|s| wanted.is_none_or(|w| s.id == w))
        .collect();
    let distinct = |f: fn(&BackupSummary) -> &str| {
        let mut v: Vec<&str> = found.iter().map(|s| f(s)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let groups = distinct(|s| s.group.as_str());
    if groups.len() > 1 {
        return Err(CliError::Usage(format!(
            "the store holds backups of several groups ({}): give --group",
            groups.join(", ")
        )));
    }
    let hosts = distinct(|s| s.host.as_str());
    if wanted.is_some() && hosts.len() > 1 {
        return Err(CliError::Usage(format!(
            "{backup} exists for several hosts ({}): give --host",
            hosts.join(", ")
        )));
    }
    let scope = match (&t.group, &t.host) {
        (Some(g), Some(h)) => format!(" of {g}/{h}"),
        (Some(g), None) => format!(" of group {g}"),
        (None, Some(h)) => format!(" of host {h}"),
        (None, None) => String::new(),
    };
    if let Some(s) = found.first() {
        return Ok((*s).clone());
    }
    let mut msg = match wanted {
        Some(w) => format!(
            "no backup {w}{scope} in {} (see `dr-agent list`)",
            store.url()
        ),
        None => format!("no backups{scope} in {}", store.url()),
    };
    if t.host.is_some() {
        // a rebuilt host may have another name than the one whose backups are wanted
        let group_only = ListFilter {
            group: t.group.clone(),
            host: None,
        };
        let mut others: Vec<String> = list_backups(store, &group_only)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.host)
            .collect();
        others.sort();
        others.dedup();
        if !others.is_empty() {
            msg.push_str(&format!(
                "; backups of other hosts: {}: give --host",
                others.join(", ")
            ));
        }
    }
    Err(CliError::Failed(msg))
}

/// `dr-agent verify`: exit 1 when the backup is not valid.
pub fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let t = Target::resolve(&args.store)?;
    require_existing_store(&t)?;
    let store = open(&t)?;
    let found = find(store.as_ref(), &t, &args.backup)?;
    let loc = found
        .location()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mode = if args.deep {
        VerifyMode::Deep
    } else {
        VerifyMode::Quick
    };
    let sink = TermProgress::new("verify");
    let report = verify_backup(store.as_ref(), &loc, found.id, mode, Some(&sink))
        .map_err(|e| failed("cannot verify", &e))?;
    let outcome = records::verify_outcome(&report);
    emit(args.output, &outcome, || {
        let how = if args.deep { "deep" } else { "quick" };
        if report.valid {
            format!(
                "backup {} of {}/{}: valid ({how}: {} files checked, {} bytes)",
                report.backup, report.group, report.host, report.files_checked, report.bytes
            )
        } else {
            format!(
                "backup {} of {}/{}: NOT VALID ({how}):\n  {}",
                report.backup,
                report.group,
                report.host,
                report.problems.join("\n  ")
            )
        }
    });
    if report.valid {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "backup {} is not valid",
            report.backup
        )))
    }
}

/// `dr-agent restore`: the chain into a staging directory next to the data directory (checked
/// file by file), then an atomic swap; the previous data is kept next to it. The service is
/// neither stopped nor started: with `--config`, a running service is refused.
pub fn restore(args: &RestoreArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let t = Target::resolve(&args.store)?;
    let data_dir = t.data_dir(&args.data_dir)?;
    if non_empty_dir(&data_dir) && !args.yes {
        return Err(CliError::Usage(format!(
            "refusing to replace the non-empty data directory {}: add --yes (its current content is kept next to it as {}.previous-<time>)",
            data_dir.display(),
            data_dir.display()
        )));
    }
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(CliError::Failed(format!(
            "{} exists and is not a directory",
            data_dir.display()
        )));
    }
    if let Some(c) = &t.config {
        let p = crate::probe::process::probe(&c.service.process);
        if matches!(p.state, ProcessState::Running | ProcessState::Stopped) {
            return Err(CliError::Failed(format!(
                "the service is running ({}): stop it first (the agent's restore command stops and restarts it itself)",
                p.detail
            )));
        }
    }
    require_existing_store(&t)?;
    let store = open(&t)?;
    let found = find(store.as_ref(), &t, &args.backup)?;
    let staging = match t.config.as_ref().and_then(|c| c.backup.as_ref()) {
        Some(b)
            if t.config
                .as_ref()
                .is_some_and(|c| c.service.data_dir == data_dir) =>
        {
            b.staging_dir.clone()
        }
        _ => default_staging(&data_dir),
    };
    if non_empty_dir(&staging) {
        return Err(CliError::Failed(format!(
            "the staging directory {} exists and is not empty (left by an interrupted restore?): inspect and remove it",
            staging.display()
        )));
    }
    if let Some(parent) = data_dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    eprintln!(
        "dr-agent: restoring {} of {}/{} into {}",
        found.id,
        found.group,
        found.host,
        data_dir.display()
    );
    let sink = TermProgress::new("restore");
    let req = RestoreRequest {
        group: &found.group,
        host: &found.host,
        backup: Some(found.id),
        staging: &staging,
        data_dir: &data_dir,
        options: RestoreOptions::default(),
        progress: Some(&sink),
    };
    let report = restore_chain(store.as_ref(), &req).map_err(|e| failed("restore failed", &e))?;
    let previous_was_empty = !non_empty_dir(&data_dir);
    let guard = swap_in(&data_dir, &staging).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staging);
        failed("restore failed", &e)
    })?;
    let kept = guard
        .commit(!previous_was_empty)
        .map_err(|e| failed("restored, but", &e))?;
    let outcome = RestoreOutcome {
        backup_id: report.backup.to_string(),
        files: report.files,
        bytes: report.file_bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        previous_kept_at: kept.as_ref().map(|p| p.display().to_string()),
        hooks: Vec::new(),
        healthy_after_ms: None,
    };
    emit(args.output, &outcome, || {
        format!(
            "restored {} of {}/{} into {}: {} files, {} in {}{}",
            report.backup,
            found.group,
            found.host,
            data_dir.display(),
            report.files,
            human(report.file_bytes),
            took(started.elapsed()),
            match &kept {
                Some(p) => format!("; previous data kept at {}", p.display()),
                None => String::new(),
            }
        )
    });
    Ok(())
}
