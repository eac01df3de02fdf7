//! Small process helpers shared by the binaries and the test harness: liveness that treats a
//! zombie as dead, signals, pid files, and a polite-then-firm stop.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Signals we send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
    Stop,
    Cont,
    Usr1,
    Usr2,
    Hup,
}

impl Sig {
    fn raw(self) -> Signal {
        match self {
            Sig::Term => Signal::TERM,
            Sig::Kill => Signal::KILL,
            Sig::Stop => Signal::STOP,
            Sig::Cont => Signal::CONT,
            Sig::Usr1 => Signal::USR1,
            Sig::Usr2 => Signal::USR2,
            Sig::Hup => Signal::HUP,
        }
    }
}

/// Send `sig` to `pid`.
pub fn signal(pid: u32, sig: Sig) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad pid"))?;
    kill_process(pid, sig.raw()).map_err(std::io::Error::from)
}

/// Send SIGSTOP to `pid` and wait until every one of its threads has stopped (a signal is
/// delivered asynchronously: right after `kill` the process may still run for a while, and a
/// test that freezes a writer to compare trees must not race it). Fails after `timeout`.
pub fn stop_and_wait(pid: u32, timeout: std::time::Duration) -> std::io::Result<()> {
    signal(pid, Sig::Stop)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
        let mut all_stopped = true;
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].trim_start().chars().next());
            if !matches!(state, Some('T' | 't') | None) {
                all_stopped = false;
                break;
            }
        }
        if all_stopped {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("pid {pid} did not stop within {timeout:?}"),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// True while `pid` exists and has not exited (a zombie has exited).
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z' | 'X' | 'x') | None)
}

/// Read a pid file: `Ok(None)` when it does not exist.
pub fn read_pid_file(path: &Path) -> Result<Option<u32>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{} does not hold a pid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Poll until `pid` is gone or `timeout` passes; true if gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    NotRunning,
    Terminated,
    /// Did not exit within the grace period after SIGTERM.
    Killed,
}

/// SIGTERM, wait up to `grace`, then SIGKILL.
pub fn stop(pid: u32, grace: Duration) -> StopOutcome {
    if !is_alive(pid) {
        return StopOutcome::NotRunning;
    }
    let _ = signal(pid, Sig::Term);
    if wait_gone(pid, grace) {
        return StopOutcome::Terminated;
    }
    let _ = signal(pid, Sig::Kill);
    wait_gone(pid, Duration::from_secs(5));
    StopOutcome::Killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_terminates_and_liveness_sees_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(is_alive(pid));
        // reap in the background so the child does not linger as a zombie we own
        let waiter = std::thread::spawn(move || child.wait());
        assert_eq!(stop(pid, Duration::from_secs(2)), StopOutcome::Terminated);
        waiter.join().unwrap().unwrap();
        assert!(!is_alive(pid));
        assert_eq!(stop(pid, Duration::from_secs(1)), StopOutcome::NotRunning);
    }

    #[test]
    fn pid_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pid");
        assert_eq!(read_pid_file(&p), Ok(None));
        std::fs::write(&p, "123\n").unwrap();
        assert_eq!(read_pid_file(&p), Ok(Some(123)));
        std::fs::write(&p, "abc").unwrap();
        assert!(read_pid_file(&p).is_err());
    }
}
