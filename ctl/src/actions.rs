//! drctl commands that act: restart, failover, switchover, pause/resume. Each asks for
//! confirmation when it changes the primary (unless `--yes`), and `--wait` follows the change
//! until it is done.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dr_proto::pb;

use crate::client::{Connected, status_error};
use crate::error::{CliError, CliResult};
use crate::progress::Steps;
use crate::status::fetch;

/// Whether a destructive action can be confirmed at all (`--yes`, or a terminal to ask on):
/// checked before contacting the controller, so a script missing `--yes` gets exit 2 whatever
/// the state of the cluster.
pub fn confirmable(what: &str, yes: bool) -> CliResult {
    if yes || std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "{what} needs confirmation and stdin is not a terminal to ask on: add --yes to go ahead"
    )))
}

/// Ask before a destructive action; `--yes` skips the question. Without a terminal to ask on, a
/// missing `--yes` is a usage error (exit 2): scripts must say what they mean.
pub fn confirm(question: &str, yes: bool) -> CliResult {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "{question} not confirmed: stdin is not a terminal to ask on; add --yes to go ahead"
        )));
    }
    // the question goes to stderr: stdout may be redirected into a file or a pipe
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::failed("cancelled: nothing was changed"))
    }
}

fn print_answer(r: &pb::ActionResponse) {
    let incident = if r.incident_id != 0 {
        format!(" (incident {})", r.incident_id)
    } else {
        String::new()
    };
    println!("{}{incident}", r.detail);
}

pub async fn restart(conn: &mut Connected, group: &str, host: &str) -> CliResult {
    let steps = Steps::start(&format!(
        "restarting the service on {host} (stop, start, wait until healthy)..."
    ));
    let r = conn
        .admin
        .restart(pb::RestartRequest {
            group: group.into(),
            host: host.into(),
        })
        .await
        .map_err(|s| status_error(&conn.url, s));
    steps.finish();
    print_answer(&r?.into_inner());
    Ok(())
}

/// Follow a change of primary until `target` is primary with no transition left.
async fn wait_for_primary(
    conn: &mut Connected,
    group: &str,
    target: Option<&str>,
    from_epoch: u64,
    timeout: Duration,
) -> CliResult {
    let mut steps = Steps::start(&format!("waiting for the change of primary in {group}..."));
    loop {
        let view = match fetch(conn, Some(group)).await {
            Ok(v) => v,
            Err(e) => {
                steps.finish();
                return Err(e);
            }
        };
        let Some(g) = view.group(group) else {
            steps.finish();
            return Err(CliError::failed(format!("group {group} disappeared")));
        };
        let line = match &g.transition {
            Some(t) => t.clone(),
            None => format!(
                "primary {} at epoch {}",
                g.primary.as_ref().map(|p| p.as_str()).unwrap_or("none"),
                g.epoch
            ),
        };
        steps.step(&line);
        let done = g.transition.is_none()
            && g.epoch.0 > from_epoch
            && target.is_none_or(|t| g.primary.as_ref().is_some_and(|p| p.as_str() == t));
        if done {
            let serving = g
                .members
                .iter()
                .find(|m| g.primary.as_ref() == Some(&m.host))
                .is_some_and(|m| m.lease_remaining_ms.is_some());
            let took = steps.elapsed();
            steps.finish();
            println!(
                "done in {:.1} s: {line}{}",
                took.as_secs_f64(),
                if serving {
                    ""
                } else {
                    " (waiting for the new primary's first lease)"
                }
            );
            return Ok(());
        }
        if steps.elapsed() > timeout {
            steps.finish();
            return Err(CliError::failed(format!(
                "not done after {} s: the change goes on without drctl; see drctl status and \
                 drctl history",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn failover(
    conn: &mut Connected,
    group: &str,
    to: Option<&str>,
    force: bool,
    yes: bool,
    wait: bool,
) -> CliResult {
    let view = fetch(conn, Some(group)).await?;
    let epoch = view.group(group).map(|g| g.epoch.0).unwrap_or(0);
    confirm(
        &format!(
            "fail over group {group} to {}{}?",
            to.unwrap_or("the best candidate"),
            if force { " (forced)" } else { "" }
        ),
        yes,
    )?;
    let r = conn
        .admin
        .failover(pb::FailoverRequest {
            group: group.into(),
            to: to.unwrap_or_default().into(),
            force,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    print_answer(&r);
    if wait {
        wait_for_primary(conn, group, to, epoch, Duration::from_secs(60)).await?;
    }
    Ok(())
}

/// `--at`: seconds from now (`+30`, `30s`, `5m`) or unix seconds.
pub fn parse_at(at: &str) -> CliResult<u64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let rel = at.strip_prefix('+').unwrap_or(at);
    if let Ok(d) = humantime_like(rel)
        && (at.starts_with('+') || !rel.chars().all(|c| c.is_ascii_digit()))
    {
        return Ok(now + d.as_millis() as u64);
    }
    match at.parse::<u64>() {
        Ok(secs) if secs > 1_000_000_000 => Ok(secs * 1000),
        Ok(secs) => Ok(now + secs * 1000),
        Err(_) => Err(CliError::usage(format!(
            "--at {at:?}: give +SECONDS, a duration like 5m, or unix seconds"
        ))),
    }
}

fn humantime_like(s: &str) -> Result<Duration, ()> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| ())?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(()),
    }
}

pub async fn switchover(
    conn: &mut Connected,
    group: &str,
    to: &str,
    at: Option<&str>,
    force: bool,
    yes: bool,
    wait: bool,
) -> CliResult {
    let at_ms = at.map(parse_at).transpose()?;
    let view = fetch(conn, Some(group)).await?;
    let epoch = view.group(group).map(|g| g.epoch.0).unwrap_or(0);
    confirm(
        &format!(
            "switch group {group} over to {to}{}?",
            if at.is_some() {
                " at the given time"
            } else {
                " now"
            }
        ),
        yes,
    )?;
    let r = conn
        .admin
        .switchover(pb::SwitchoverRequest {
            group: group.into(),
            to: to.into(),
            at_unix_ms: at_ms.unwrap_or(0),
            force,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    print_answer(&r);
    if wait {
        let extra = at_ms
            .map(|at| {
                Duration::from_millis(
                    at.saturating_sub(
                        SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0),
                    ),
                )
            })
            .unwrap_or_default();
        wait_for_primary(
            conn,
            group,
            Some(to),
            epoch,
            Duration::from_secs(60) + extra,
        )
        .await?;
    }
    Ok(())
}

pub async fn set_mode(conn: &mut Connected, group: &str, paused: bool) -> CliResult {
    let mode = if paused {
        pb::Mode::Paused
    } else {
        pb::Mode::Automatic
    };
    let r = conn
        .admin
        .set_mode(pb::SetModeRequest {
            group: group.into(),
            mode: mode as i32,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    print_answer(&r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_accepts_relative_and_absolute_times() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let t = parse_at("+30").unwrap();
        assert!(t >= now + 29_000 && t <= now + 31_000);
        let t = parse_at("5m").unwrap();
        assert!(t >= now + 299_000);
        assert_eq!(parse_at("1800000000").unwrap(), 1_800_000_000_000);
        assert!(parse_at("tomorrow").is_err());
    }
}
