//! Notices the moment the service process exits (its pidfd becomes readable), so a crash is
//! reported at once instead of at the next probe round — the fast path of failover.

use std::sync::Arc;
use std::time::Duration;

use dr_proto::domain::ProcessState;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::config::AgentConfig;
use crate::probe::process;
use crate::state::AgentState;

/// Watch whatever pid the process probe finds; wake the prober when it exits. Runs on a
/// blocking thread (a pidfd wait is a `poll`).
pub async fn run(
    config: Arc<AgentConfig>,
    state: Arc<AgentState>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let _ = tokio::task::spawn_blocking(move || watch(&config, &state, &shutdown)).await;
}

fn watch(config: &AgentConfig, state: &AgentState, shutdown: &tokio_util::sync::CancellationToken) {
    let slice = Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    while !shutdown.is_cancelled() {
        let found = process::probe(&config.service.process);
        let pid = match (found.state, found.pid) {
            (ProcessState::Running | ProcessState::Stopped, Some(pid)) => Some(pid),
            _ => None,
        };
        let fd = pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw)
            .and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok());
        let Some(fd) = fd else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match poll(&mut fds, Some(&slice)) {
                Ok(n) if n > 0 => {
                    tracing::warn!(pid = ?pid, "service process exited");
                    state.probe_now.notify_one();
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
