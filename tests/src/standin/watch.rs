//! `erlmcp-standin watch`: the split-brain monitor's eyes on one host. Each line is one sample,
//! `unix_ms primary_code role epoch`: the agent's `/primary` answer (0: no answer) and the
//! stand-in's own role and epoch (`-` and 0: no answer).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::Method;

use crate::harness::http::request;

const TIMEOUT: Duration = Duration::from_millis(300);

pub fn run(agent: SocketAddr, service: SocketAddr, out: &Path, every: Duration) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("erlmcp-standin watch: {e}");
            return ExitCode::from(1);
        }
    };
    let mut file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("erlmcp-standin watch: cannot open {}: {e}", out.display());
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let (agent, service) = (agent.to_string(), service.to_string());
        loop {
            let started = std::time::Instant::now();
            let code = request(Method::GET, &agent, "/primary", None, TIMEOUT)
                .await
                .map(|r| r.status)
                .unwrap_or(0);
            let (role, epoch) = request(Method::GET, &service, "/control/state", None, TIMEOUT)
                .await
                .ok()
                .and_then(|r| r.json().ok())
                .map(|v| {
                    (
                        v["role"].as_str().unwrap_or("-").to_string(),
                        v["epoch"].as_u64().unwrap_or(0),
                    )
                })
                .unwrap_or_else(|| ("-".into(), 0));
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            if writeln!(file, "{ms} {code} {role} {epoch}").is_err() {
                return ExitCode::from(1);
            }
            tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
        }
    })
}
