//! HAProxy in front of the demo's stand-ins. It routes to whichever server's agent answers 200
//! on `/primary` (the Patroni way), and exposes its runtime API on a local admin socket so the
//! controller can repoint it directly.

use std::path::{Path, PathBuf};

use super::layout::{DemoPlan, HaproxyPlan};

/// `haproxy` on PATH, if installed.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
}

pub fn config(plan: &DemoPlan, h: &HaproxyPlan) -> String {
    let mut servers = String::new();
    for host in &plan.hosts {
        servers.push_str(&format!(
            "    server {name} {svc} check port {agent} disabled\n",
            name = host.host,
            svc = host.service,
            agent = host.agent_http.port(),
        ));
    }
    format!(
        "# HAProxy for the erlmcp-dr demo (written by drctl demo)\n\
global\n\
    stats socket {sock} mode 600 level admin\n\
    log stdout format raw local0 info\n\
\n\
defaults\n\
    mode http\n\
    log global\n\
    option httplog\n\
    # HAProxy retries a failed connection after min(timeout connect, 1 s): keep it short on a\n\
    # LAN so a request caught by a failover waits 100 ms, not a second\n\
    timeout connect 100ms\n\
    # a request caught by a failover goes to whichever server is in rotation on its retry\n\
    retries 3\n\
    option redispatch 1\n\
    timeout client 30s\n\
    timeout server 30s\n\
    timeout check 1s\n\
\n\
frontend erlmcp\n\
    bind {front}\n\
    default_backend erlmcp\n\
\n\
backend erlmcp\n\
    option httpchk\n\
    http-check send meth GET uri /primary\n\
    http-check expect status 200\n\
    default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n\
{servers}",
        sock = h.socket().display(),
        front = h.frontend,
    )
}

/// Arguments to validate a config.
pub fn check_args(cfg: &Path) -> Vec<String> {
    vec![
        "-c".into(),
        "-q".into(),
        "-f".into(),
        cfg.display().to_string(),
    ]
}

/// Arguments to run in the foreground (we daemonise it ourselves, so we know its pid).
pub fn run_args(cfg: &Path) -> Vec<String> {
    vec!["-db".into(), "-f".into(), cfg.display().to_string()]
}
