//! Controlling the managed service: the runbook's Procedure 1 done carefully. Stop through the
//! configured stop command first (for erlmcp, `bin/erlmcp stop`: a VM started with `-heart`
//! restarts itself when merely killed), wait a grace period, then SIGKILL the whole process tree
//! (heart included); start with the start command; wait until healthy.

use std::time::{Duration, Instant};

use dr_proto::domain::{HttpClass, PortState, ProcessState};
use dr_proto::process::{Sig, is_alive, signal};

use crate::config::AgentConfig;
use crate::hooks::{self, HookEnv};
use crate::probe::{port, process};

/// `pid` and all its descendants, children first... read from `/proc`.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let ppid = after
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        for (child, parent) in &parent_of {
            if *parent == cur && !tree.contains(child) {
                tree.push(*child);
            }
        }
        i += 1;
    }
    tree
}

fn current_pid(cfg: &AgentConfig) -> Option<u32> {
    let p = process::probe(&cfg.service.process);
    match p.state {
        ProcessState::Running | ProcessState::Stopped => p.pid,
        _ => None,
    }
}

/// Stop the service: stop command, grace, then SIGKILL of the tree. Says how it ended.
pub async fn stop(cfg: &AgentConfig, env: &HookEnv) -> Result<String, String> {
    let r = &cfg.restart;
    let before = current_pid(cfg);
    let tree: Vec<u32> = before.map(process_tree).unwrap_or_default();
    let started = Instant::now();
    // a stopped (SIGSTOP) process cannot act on a stop request
    for p in &tree {
        let _ = signal(*p, Sig::Cont);
    }
    let cmd = hooks::run(
        &cfg.service.stop,
        env,
        Duration::from_millis(r.stop_timeout_ms),
    )
    .await;
    let cmd_note = match &cmd {
        Ok(_) => "stop command ok".to_string(),
        Err(e) => format!("stop command failed ({e})"),
    };
    let deadline = Instant::now() + Duration::from_millis(r.grace_ms);
    while tree.iter().any(|p| is_alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivors: Vec<u32> = tree.iter().copied().filter(|p| is_alive(*p)).collect();
    let killed = !survivors.is_empty();
    for p in &survivors {
        let _ = signal(*p, Sig::Kill);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while survivors.iter().any(|p| is_alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(still) = survivors.iter().find(|p| is_alive(**p)) {
        return Err(format!("pid {still} survived SIGKILL"));
    }
    Ok(format!(
        "{}{} in {} ms",
        if before.is_none() {
            "was not running; "
        } else {
            ""
        },
        if killed {
            format!(
                "{cmd_note}, then SIGKILL of {} process(es)",
                survivors.len()
            )
        } else {
            cmd_note
        },
        started.elapsed().as_millis()
    ))
}

/// Start the service with the start command (which must return once started).
pub async fn start(cfg: &AgentConfig, env: &HookEnv) -> Result<String, String> {
    let started = Instant::now();
    hooks::run(
        &cfg.service.start,
        env,
        Duration::from_millis(cfg.restart.start_timeout_ms),
    )
    .await
    .map_err(|e| format!("start command failed: {e}"))?;
    Ok(format!(
        "start command returned in {} ms",
        started.elapsed().as_millis()
    ))
}

/// Healthy = process running, every port listening, health URL answering 2xx.
pub async fn healthy_now(cfg: &AgentConfig) -> Result<(), String> {
    let p = process::probe(&cfg.service.process);
    if p.state != ProcessState::Running {
        return Err(format!("process: {}", p.detail));
    }
    if let Some(bad) = port::probe(&cfg.service.ports)
        .into_iter()
        .find(|p| p.state != PortState::Listening)
    {
        return Err(bad.detail);
    }
    if let Some(uri) = &cfg.service.health_url {
        match dr_proto::http_client::get(uri, Duration::from_millis(cfg.probes.http_timeout_ms))
            .await
        {
            Ok(a) if a.status.is_success() => {}
            Ok(a) => return Err(format!("health check answered HTTP {}", a.status.as_u16())),
            Err(e) => return Err(format!("health check: {e}")),
        }
    }
    let _ = HttpClass::Ok;
    Ok(())
}

/// Poll until healthy or the configured time runs out.
pub async fn wait_healthy(cfg: &AgentConfig) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(cfg.restart.healthy_timeout_ms);
    loop {
        match healthy_now(cfg).await {
            Ok(()) => return Ok(started.elapsed()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "not healthy within {} ms: {e}",
                    cfg.restart.healthy_timeout_ms
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_includes_grandchildren() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tree = process_tree(pid);
        while tree.len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            tree = process_tree(pid);
        }
        assert_eq!(tree.len(), 3, "{tree:?}");
        for p in &tree {
            let _ = signal(*p, Sig::Kill);
        }
        child.wait().unwrap();
    }
}
