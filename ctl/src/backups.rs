//! drctl backup commands (`backup create|list|verify|drill`) and `restore`. The controller
//! answers an action at once with its id; `--wait` (always, for verify and drill) follows it
//! through the Progress call until the agent reports how it ended.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use dr_proto::domain::{BackupListView, BackupRecord, DrillOutcome, RestoreOutcome, VerifyOutcome};
use dr_proto::pb;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::actions::confirm;
use crate::client::{Connected, status_error};
use crate::error::{CliError, CliResult};
use crate::output::{Colors, Format, table};

/// How long `--wait` follows an action at most (a restore of a big data set takes a while).
const WAIT_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// Polls in a row without the action running or finished before giving up on it.
const LOST_AFTER_POLLS: u32 = 20;

pub fn when(ms: u64) -> String {
    let t = time::OffsetDateTime::from(std::time::UNIX_EPOCH + Duration::from_millis(ms));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// What an action turned into, as the agent reported it.
#[derive(Debug)]
pub enum Finished {
    Ok(String),
    Failed(String),
}

/// Follow action `id` of `group` until it ends; a bar on a terminal, changed lines otherwise.
pub async fn follow(conn: &mut Connected, group: &str, id: u64) -> CliResult<Finished> {
    let started = Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let mut last_line = String::new();
    let mut missing = 0;
    loop {
        let r = conn
            .admin
            .progress(pb::ProgressRequest {
                group: group.into(),
                action_id: id,
            })
            .await
            .map_err(|s| status_error(&conn.url, s))?
            .into_inner();
        if let Some(f) = r.finished {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Ok(if f.ok {
                Finished::Ok(f.detail)
            } else {
                Finished::Failed(f.detail)
            });
        }
        match r.actions.iter().find(|a| a.action_id == id) {
            Some(a) => {
                missing = 0;
                let line = format!("{} on {}: {}", a.kind, a.host, a.message);
                match &bar {
                    Some(b) => {
                        if a.total > 0 {
                            if b.length() != Some(a.total) {
                                b.set_length(a.total);
                                b.set_style(
                                    ProgressStyle::with_template(
                                        "{spinner} {msg}\n  [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                                    )
                                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                                    .progress_chars("=> "),
                                );
                            }
                            b.set_position(a.done.min(a.total));
                        } else if a.done > 0 {
                            b.set_position(a.done);
                        }
                        b.set_message(line);
                    }
                    None => {
                        if line != last_line {
                            eprintln!("  {:>6.1}s  {line}", started.elapsed().as_secs_f64());
                            last_line = line;
                        }
                    }
                }
            }
            None => {
                missing += 1;
                if missing >= LOST_AFTER_POLLS {
                    if let Some(b) = &bar {
                        b.finish_and_clear();
                    }
                    return Err(CliError::failed(format!(
                        "action {id} is no longer running and its result is unknown (controller restarted?); \
                         see drctl backup list and drctl history"
                    )));
                }
            }
        }
        if started.elapsed() > WAIT_LIMIT {
            return Err(CliError::failed(format!(
                "action {id} still running after {} h; it goes on without drctl: see drctl backup list",
                WAIT_LIMIT.as_secs() / 3600
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, detail: &str) -> CliResult<T> {
    serde_json::from_str(detail).map_err(|e| {
        CliError::failed(format!(
            "the {what} result is not understood ({e}): {detail}"
        ))
    })
}

/// The controller's answer goes to stderr, like progress, so `-o json` output stays parseable.
fn started(r: &pb::ActionResponse) -> CliResult<u64> {
    eprintln!("{}", r.detail);
    if r.action_id == 0 {
        return Err(CliError::failed(
            "the controller did not say which action it started",
        ));
    }
    Ok(r.action_id)
}

pub async fn create(
    conn: &mut Connected,
    group: &str,
    host: Option<&str>,
    incremental: bool,
    wait: bool,
) -> CliResult {
    let r = conn
        .admin
        .backup_create(pb::BackupCreateRequest {
            group: group.into(),
            host: host.unwrap_or_default().into(),
            incremental,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    let id = started(&r)?;
    if !wait {
        eprintln!("follow it with drctl backup list, or pass --wait");
        return Ok(());
    }
    match follow(conn, group, id).await? {
        Finished::Ok(d) => {
            let b: BackupRecord = parse("backup", &d)?;
            println!(
                "backup {} on {}: {} files, {} of data, {} stored, in {:.1} s{}",
                b.id,
                b.host,
                b.files,
                size(b.bytes),
                size(b.size_bytes),
                b.duration_ms as f64 / 1000.0,
                if b.skipped_files > 0 {
                    format!(
                        " ({} files vanished or kept changing while read: recorded, not archived)",
                        b.skipped_files
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Finished::Failed(e) => Err(CliError::failed(format!("backup failed: {e}"))),
    }
}

pub async fn list(conn: &mut Connected, group: &str, format: Format) -> CliResult {
    let r = conn
        .admin
        .backup_list(pb::BackupListRequest {
            group: group.into(),
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    print!("{}", render_list(group, &r, format));
    Ok(())
}

pub fn render_list(group: &str, r: &pb::BackupListResponse, format: Format) -> String {
    let view = BackupListView::from_wire(group, r);
    if format == Format::Json {
        return serde_json::to_string_pretty(&view).unwrap_or_default() + "\n";
    }
    let last_drill = view.last_drill;
    let colors = Colors::detect();
    let mut out = String::new();
    if r.entries.is_empty() {
        out.push_str(&format!("no backups of group {group} yet\n"));
    } else {
        let rows: Vec<Vec<(String, String)>> = r
            .entries
            .iter()
            .map(|e| {
                let verified = match e.verified {
                    Some(true) => ("yes".to_string(), colors.paint("yes", "32")),
                    Some(false) => ("FAILED".to_string(), colors.paint("FAILED", "31;1")),
                    None => ("-".to_string(), "-".to_string()),
                };
                let drill = match (e.last_drill_at_unix_ms, e.last_drill_ok) {
                    (Some(at), Some(ok)) => {
                        let t = format!("{} {}", if ok { "ok" } else { "FAILED" }, when(at));
                        let painted = colors.paint(&t, if ok { "32" } else { "31;1" });
                        (t, painted)
                    }
                    _ => ("-".to_string(), "-".to_string()),
                };
                let plain = |s: String| (s.clone(), s);
                vec![
                    plain(e.id.clone()),
                    plain(e.kind.clone()),
                    plain(e.host.clone()),
                    plain(when(e.created_at_unix_ms)),
                    plain(size(e.size_bytes)),
                    plain(e.files.to_string()),
                    verified,
                    drill,
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "ID",
                "KIND",
                "HOST",
                "TIME",
                "SIZE",
                "FILES",
                "VERIFIED",
                "LAST DRILL",
            ],
            &rows,
        ));
    }
    match &last_drill {
        Some(d) => {
            let state = if d.ok {
                colors.paint("ok", "32")
            } else {
                colors.paint("FAILED", "31;1")
            };
            out.push_str(&format!(
                "last restore drill: {state} at {}: {}\n",
                when(d.at_unix_ms),
                d.detail
            ));
            if !d.ok {
                match d.last_good_at_unix_ms {
                    Some(t) => out.push_str(&format!("last good drill: {}\n", when(t))),
                    None => out.push_str("no drill has succeeded yet\n"),
                }
            }
        }
        None => out.push_str("no restore drill yet (drctl backup drill)\n"),
    }
    out
}

pub async fn verify(
    conn: &mut Connected,
    group: &str,
    backup: &str,
    deep: bool,
    format: Format,
) -> CliResult {
    let r = conn
        .admin
        .backup_verify(pb::BackupVerifyRequest {
            group: group.into(),
            backup_id: backup.into(),
            deep,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    let id = started(&r)?;
    let v: VerifyOutcome = match follow(conn, group, id).await? {
        Finished::Ok(d) => parse("verify", &d)?,
        Finished::Failed(e) => return Err(CliError::failed(format!("verify could not run: {e}"))),
    };
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "{}: {} ({} check, {} files, {})",
            v.backup_id,
            if v.valid { "valid" } else { "INVALID" },
            if v.deep { "deep" } else { "quick" },
            v.files_checked,
            size(v.bytes)
        );
        for p in &v.problems {
            println!("  problem: {p}");
        }
    }
    if v.valid {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "backup {} is not valid: do not restore it; take a new backup (drctl backup create) and look at the store",
            v.backup_id
        )))
    }
}

pub async fn drill(conn: &mut Connected, group: &str, format: Format) -> CliResult {
    let r = conn
        .admin
        .backup_drill(pb::BackupDrillRequest {
            group: group.into(),
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    let id = started(&r)?;
    let d: DrillOutcome = match follow(conn, group, id).await? {
        Finished::Ok(d) => parse("drill", &d)?,
        Finished::Failed(e) => return Err(CliError::failed(format!("the drill failed: {e}"))),
    };
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
    } else {
        println!(
            "drill of {} on {}: {} ({} files, {}, {:.1} s): {}",
            d.backup_id,
            d.host,
            if d.ok { "ok" } else { "FAILED" },
            d.files_checked,
            size(d.bytes),
            d.duration_ms as f64 / 1000.0,
            d.detail
        );
    }
    if d.ok {
        Ok(())
    } else {
        Err(CliError::failed(
            "the restore drill failed: the newest backup may not be restorable",
        ))
    }
}

pub struct RestoreArgs<'a> {
    pub group: &'a str,
    pub host: &'a str,
    pub backup: &'a str,
    pub from_host: Option<&'a str>,
    pub allow_primary: bool,
    pub yes: bool,
    pub wait: bool,
}

pub async fn restore(conn: &mut Connected, a: RestoreArgs<'_>) -> CliResult {
    let source = match a.from_host {
        Some(h) => format!(" (a backup taken on {h})"),
        None => String::new(),
    };
    confirm(
        &format!(
            "restore {}{source} onto {} in group {}? The service there stops while the data is swapped; \
             the current data is kept aside",
            if a.backup == "latest" {
                "the newest backup".to_string()
            } else {
                a.backup.to_string()
            },
            a.host,
            a.group
        ),
        a.yes,
    )?;
    let r = conn
        .admin
        .restore(pb::RestoreRequest {
            group: a.group.into(),
            host: a.host.into(),
            backup_id: a.backup.into(),
            from_host: a.from_host.unwrap_or_default().into(),
            allow_primary: a.allow_primary,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    let id = started(&r)?;
    if !a.wait {
        if r.incident_id != 0 {
            eprintln!("follow it with drctl incident {}", r.incident_id);
        }
        return Ok(());
    }
    match follow(conn, a.group, id).await? {
        Finished::Ok(d) => {
            let o: RestoreOutcome = parse("restore", &d)?;
            println!(
                "restored {} on {}: {} files, {} in {:.1} s; healthy {}",
                o.backup_id,
                a.host,
                o.files,
                size(o.bytes),
                o.duration_ms as f64 / 1000.0,
                o.healthy_after_ms
                    .map(|ms| format!("{:.1} s after start", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "(not checked)".into())
            );
            for h in &o.hooks {
                println!("  hook: {h}");
            }
            if let Some(p) = &o.previous_kept_at {
                println!("  the previous data is kept at {p} (manual rollback)");
            }
            if r.incident_id != 0 {
                println!(
                    "incident {} watches {} for a while before it is resolved (drctl incident {})",
                    r.incident_id, a.host, r.incident_id
                );
            }
            Ok(())
        }
        Finished::Failed(e) => {
            let next = if e.contains("no backups of") && a.from_host.is_none() {
                "; to restore a backup taken on another host add --from-host HOST \
                 (drctl backup list shows them)"
            } else {
                ""
            };
            Err(CliError::failed(format!(
                "restore failed: {e}{}{next}",
                if r.incident_id != 0 {
                    format!(" (incident {})", r.incident_id)
                } else {
                    String::new()
                }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(256 * 1024 * 1024), "256.0 MiB");
    }

    #[test]
    fn list_json_has_stable_fields() {
        let r = pb::BackupListResponse {
            entries: vec![pb::CatalogEntry {
                id: "full-2026-01-27T13:45:30Z".into(),
                kind: "full".into(),
                group: "erlmcp".into(),
                host: "erlmcp2".into(),
                created_at_unix_ms: 1_769_521_530_000,
                parent: String::new(),
                size_bytes: 10,
                files: 3,
                bytes: 30,
                duration_ms: 5,
                verified: Some(true),
                last_drill_at_unix_ms: Some(1_769_521_600_000),
                last_drill_ok: Some(true),
            }],
            last_drill_at_unix_ms: Some(1_769_521_600_000),
            last_drill_ok: Some(true),
            last_drill_detail: "integrity ok".into(),
            last_good_drill_at_unix_ms: Some(1_769_521_600_000),
        };
        let v: serde_json::Value =
            serde_json::from_str(&render_list("erlmcp", &r, Format::Json)).unwrap();
        assert_eq!(v["backups"][0]["id"], "full-2026-01-27T13:45:30Z");
        assert_eq!(v["backups"][0]["parent"], serde_json::Value::Null);
        assert_eq!(v["backups"][0]["verified"], true);
        assert_eq!(v["last_drill"]["ok"], true);
        let table = render_list("erlmcp", &r, Format::Table);
        assert!(table.contains("erlmcp2"), "{table}");
        assert!(table.contains("last restore drill: ok"), "{table}");
    }
}
