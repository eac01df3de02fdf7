//! Load-balancer drivers and the smoke request that verifies a new primary.
//!
//! - `haproxy`: the runtime API over HAProxy's admin socket: the new primary `ready` and forced
//!   `health up`, the old primary `maint` with its sessions shut down, then checked with
//!   `show servers state`. Idempotent; retried.
//! - `exec`: a command with the group, epoch and old/new primary in its environment.
//! - none: load balancers poll the agents' `/primary` (200 only with a valid lease).

use std::path::Path;
use std::time::Duration;

use dr_proto::domain::{Epoch, GroupName, HostName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::config::LbConfig;

const ATTEMPTS: u32 = 3;

/// Route `group` to `new` only: `new` ready, every one of `others` out of rotation.
/// `old` (the previous primary) is passed to exec hooks for their information.
pub async fn repoint(
    cfg: Option<&LbConfig>,
    group: &GroupName,
    epoch: Epoch,
    new: &HostName,
    old: Option<&HostName>,
    others: &[HostName],
) -> Result<String, String> {
    let Some(cfg) = cfg else {
        return Ok("no load balancer driver configured (LBs poll /primary)".into());
    };
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let r = match cfg {
            LbConfig::Haproxy {
                socket,
                backend,
                servers,
            } => {
                let name = |h: &HostName| {
                    servers
                        .get(h.as_str())
                        .cloned()
                        .unwrap_or_else(|| h.to_string())
                };
                {
                    let others: Vec<String> = others.iter().map(name).collect();
                    haproxy_repoint(socket, backend, &name(new), &others).await
                }
            }
            LbConfig::Exec {
                command,
                timeout_ms,
            } => exec_repoint(command, *timeout_ms, group, epoch, new, old).await,
        };
        match r {
            Ok(d) => {
                return Ok(if attempt > 1 {
                    format!("{d} (attempt {attempt})")
                } else {
                    d
                });
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
    }
    Err(format!("{last} (after {ATTEMPTS} attempts)"))
}

/// One command on HAProxy's runtime API (one connection per command, as HAProxy expects in
/// non-interactive mode).
pub async fn haproxy_command(socket: &Path, command: &str) -> Result<String, String> {
    let io = async {
        let mut s = UnixStream::connect(socket).await?;
        s.write_all(format!("{command}\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<String, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(3), io).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("HAProxy admin socket {}: {e}", socket.display())),
        Err(_) => Err(format!(
            "HAProxy admin socket {}: no answer within 3 s",
            socket.display()
        )),
    }
}

/// HAProxy answers errors in plain text; anything non-empty after a `set` is a complaint.
fn haproxy_ok(out: &str, what: &str) -> Result<(), String> {
    let t = out.trim();
    if t.is_empty() {
        Ok(())
    } else {
        Err(format!("HAProxy refused `{what}`: {t}"))
    }
}

async fn haproxy_repoint(
    socket: &Path,
    backend: &str,
    new: &str,
    others: &[String],
) -> Result<String, String> {
    // Others out first, then the new primary in: never two servers in rotation at once.
    let mut steps = Vec::new();
    for o in others.iter().filter(|o| o.as_str() != new) {
        steps.push(format!("set server {backend}/{o} state maint"));
        steps.push(format!("shutdown sessions server {backend}/{o}"));
    }
    steps.push(format!("set server {backend}/{new} state ready"));
    steps.push(format!("set server {backend}/{new} health up"));
    for cmd in &steps {
        let out = haproxy_command(socket, cmd).await?;
        haproxy_ok(&out, cmd)?;
    }
    let state = haproxy_command(socket, &format!("show servers state {backend}")).await?;
    let servers = parse_servers_state(&state);
    let new_state = servers
        .iter()
        .find(|s| s.name == new)
        .ok_or_else(|| format!("HAProxy backend {backend} has no server {new}"))?;
    if new_state.admin_maint || new_state.op_state != 2 {
        return Err(format!(
            "HAProxy server {backend}/{new} is not serving after repointing (op_state {}, admin_state {})",
            new_state.op_state, new_state.admin_raw
        ));
    }
    if let Some(o) = servers
        .iter()
        .find(|s| s.name != new && others.contains(&s.name) && !s.admin_maint)
    {
        return Err(format!(
            "HAProxy server {backend}/{} is still not in maintenance",
            o.name
        ));
    }
    Ok(format!(
        "HAProxy {backend}: {new} ready, {} other server(s) in maintenance",
        others.iter().filter(|o| o.as_str() != new).count()
    ))
}

#[derive(Debug, PartialEq)]
pub struct ServerState {
    pub name: String,
    pub op_state: u32,
    pub admin_raw: u32,
    pub admin_maint: bool,
}

/// Parse `show servers state` output (format version 1: be_id be_name srv_id srv_name srv_addr
/// srv_op_state srv_admin_state ...).
pub fn parse_servers_state(out: &str) -> Vec<ServerState> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 7 {
                return None;
            }
            let op_state = f[5].parse().ok()?;
            let admin_raw: u32 = f[6].parse().ok()?;
            Some(ServerState {
                name: f[3].to_string(),
                op_state,
                admin_raw,
                // SRV_ADMF_MAINT = FMAINT 0x01 | IMAINT 0x02 | RMAINT 0x20. CMAINT (0x04, the
                // `disabled` keyword) stays set after `state ready` and does not stop traffic.
                admin_maint: admin_raw & 0x23 != 0,
            })
        })
        .collect()
}

async fn exec_repoint(
    command: &[String],
    timeout_ms: u64,
    group: &GroupName,
    epoch: Epoch,
    new: &HostName,
    old: Option<&HostName>,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("ERLMCP_DR_GROUP", group.as_str())
        .env("ERLMCP_DR_EPOCH", epoch.0.to_string())
        .env("ERLMCP_DR_NEW_PRIMARY", new.as_str())
        .env(
            "ERLMCP_DR_OLD_PRIMARY",
            old.map(|o| o.as_str()).unwrap_or(""),
        )
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_millis(timeout_ms), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(format!("{} exited 0", command[0])),
        Ok(Ok(out)) => Err(format!(
            "{} exited with {}: {}",
            command[0],
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("cannot run {}: {e}", command[0])),
        Err(_) => Err(format!(
            "{} did not finish within {timeout_ms} ms",
            command[0]
        )),
    }
}

/// A request through the load balancer: 2xx, and when the answer names its host, the new
/// primary's. Retried for a short while (the LB may still be switching).
pub async fn smoke(url: Option<&str>, expect_host: &HostName) -> Result<String, String> {
    let Some(url) = url else {
        return Ok("no smoke_url configured".into());
    };
    let uri: hyper::Uri = url.parse().map_err(|e| format!("smoke_url {url:?}: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut last;
    loop {
        match dr_proto::http_client::get(&uri, Duration::from_secs(1)).await {
            Ok(a) if a.status.is_success() => {
                let host = serde_json::from_slice::<serde_json::Value>(&a.body)
                    .ok()
                    .and_then(|v| v.get("host").and_then(|h| h.as_str()).map(String::from));
                match host {
                    Some(h) if h != expect_host.as_str() => {
                        last = format!("{url} answered from {h}, not {expect_host}")
                    }
                    Some(h) => {
                        return Ok(format!(
                            "{url} answered 200 from {h} in {} ms",
                            a.elapsed.as_millis()
                        ));
                    }
                    None => {
                        return Ok(format!(
                            "{url} answered {} in {} ms",
                            a.status.as_u16(),
                            a.elapsed.as_millis()
                        ));
                    }
                }
            }
            Ok(a) => last = format!("{url} answered HTTP {}", a.status.as_u16()),
            Err(e) => last = format!("{url}: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_haproxy_server_state() {
        let out = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 erlmcp 1 erlmcp1 127.0.0.1 0 1 1 1 12 6 3 0 14 0 0 0 - 41001 - 0 41002 - - 0\n3 erlmcp 2 erlmcp2 127.0.0.1 2 4 1 1 3 15 3 4 6 0 0 0 - 41003 - 0 41004 - - 0\n";
        let s = parse_servers_state(out);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "erlmcp1");
        assert!(s[0].admin_maint);
        assert_eq!((s[1].op_state, s[1].admin_maint), (2, false));
    }
}
