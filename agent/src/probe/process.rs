//! Process probe: is the managed process there and runnable? Reads `/proc` directly (the
//! runbook's `ps aux | grep erlmcp`), so a zombie counts as dead and a SIGSTOPped process as
//! stopped: both will never answer, whatever their pid says.

use std::path::Path;

use dr_proto::domain::{ProcessProbe, ProcessState};

use crate::config::ProcessLocator;

/// Linux process state letter from `/proc/PID/stat` (the field after the command name).
fn proc_state(pid: u32) -> std::io::Result<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // "pid (comm) S ..." where comm may contain spaces and parentheses: take the last ')'.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| std::io::Error::other("unexpected /proc stat format"))?;
    after
        .trim_start()
        .chars()
        .next()
        .ok_or_else(|| std::io::Error::other("unexpected /proc stat format"))
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn judge(pid: u32, origin: &str) -> ProcessProbe {
    match proc_state(pid) {
        Ok('Z' | 'X' | 'x') => ProcessProbe {
            state: ProcessState::NotRunning,
            pid: Some(pid),
            detail: format!("pid {pid} {origin} has exited (zombie)"),
        },
        Ok('T' | 't') => ProcessProbe {
            state: ProcessState::Stopped,
            pid: Some(pid),
            detail: format!("pid {pid} {origin} is stopped (SIGSTOP or traced)"),
        },
        Ok(_) => ProcessProbe {
            state: ProcessState::Running,
            pid: Some(pid),
            detail: format!("pid {pid} {origin}"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProcessProbe {
            state: ProcessState::NotRunning,
            pid: Some(pid),
            detail: format!("pid {pid} {origin}: no such process"),
        },
        Err(e) => ProcessProbe {
            state: ProcessState::Unknown,
            pid: Some(pid),
            detail: format!("pid {pid} {origin}: cannot read /proc: {e}"),
        },
    }
}

fn from_pid_file(path: &Path, matching: Option<&str>) -> ProcessProbe {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ProcessProbe {
                state: ProcessState::NotRunning,
                pid: None,
                detail: format!("pid file {} does not exist", path.display()),
            };
        }
        Err(e) => {
            return ProcessProbe {
                state: ProcessState::Unknown,
                pid: None,
                detail: format!("cannot read pid file {}: {e}", path.display()),
            };
        }
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return ProcessProbe {
            state: ProcessState::Unknown,
            pid: None,
            detail: format!(
                "pid file {} does not hold a pid: {:?}",
                path.display(),
                text.trim()
            ),
        };
    };
    let origin = format!("from {}", path.display());
    let probe = judge(pid, &origin);
    if let (ProcessState::Running | ProcessState::Stopped, Some(m)) = (probe.state, matching)
        && !cmdline(pid).is_some_and(|c| c.contains(m))
    {
        return ProcessProbe {
            state: ProcessState::NotRunning,
            pid: Some(pid),
            detail: format!(
                "pid {pid} {origin} is another program (command line lacks {m:?}): stale pid file"
            ),
        };
    }
    probe
}

fn by_match(pattern: &str) -> ProcessProbe {
    let me = std::process::id();
    let entries = match std::fs::read_dir("/proc") {
        Ok(e) => e,
        Err(e) => {
            return ProcessProbe {
                state: ProcessState::Unknown,
                pid: None,
                detail: format!("cannot list /proc: {e}"),
            };
        }
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| *pid != me)
        .collect();
    pids.sort_unstable();
    for pid in pids {
        if cmdline(pid).is_some_and(|c| c.contains(pattern)) {
            return judge(pid, &format!("matching {pattern:?}"));
        }
    }
    ProcessProbe {
        state: ProcessState::NotRunning,
        pid: None,
        detail: format!("no process matching {pattern:?}"),
    }
}

/// Probe once. Blocking but fast (a few `/proc` reads); callers run it off the async threads.
pub fn probe(locator: &ProcessLocator) -> ProcessProbe {
    match locator {
        ProcessLocator::PidFile { path, matching } => from_pid_file(path, matching.as_deref()),
        ProcessLocator::Match(pattern) => by_match(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_pid_is_running() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.pid");
        std::fs::write(&f, format!("{}\n", std::process::id())).unwrap();
        let p = probe(&ProcessLocator::PidFile {
            path: f,
            matching: None,
        });
        assert_eq!(p.state, ProcessState::Running, "{p:?}");
    }

    #[test]
    fn missing_pid_file_and_dead_pid_are_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.pid");
        let p = probe(&ProcessLocator::PidFile {
            path: f.clone(),
            matching: None,
        });
        assert_eq!(p.state, ProcessState::NotRunning);
        assert!(p.detail.contains("does not exist"));

        // a child that exited and was reaped: its pid is gone
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(&f, pid.to_string()).unwrap();
        let p = probe(&ProcessLocator::PidFile {
            path: f.clone(),
            matching: None,
        });
        assert_eq!(p.state, ProcessState::NotRunning, "{p:?}");
    }

    #[test]
    fn an_unreaped_child_is_a_zombie_and_counts_as_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // wait until the kernel marks it a zombie (not reaped yet)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proc_state(pid).ok() != Some('Z') {
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let p = judge(pid, "test");
        assert_eq!(p.state, ProcessState::NotRunning);
        assert!(p.detail.contains("zombie"));
        child.wait().unwrap();
    }

    #[test]
    fn garbage_pid_file_is_unknown_and_recycled_pid_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.pid");
        std::fs::write(&f, "not-a-pid").unwrap();
        let p = probe(&ProcessLocator::PidFile {
            path: f.clone(),
            matching: None,
        });
        assert_eq!(p.state, ProcessState::Unknown);

        std::fs::write(&f, std::process::id().to_string()).unwrap();
        let p = probe(&ProcessLocator::PidFile {
            path: f,
            matching: Some("definitely-not-in-our-cmdline-xyz".into()),
        });
        assert_eq!(p.state, ProcessState::NotRunning);
        assert!(p.detail.contains("stale pid file"));
    }

    #[test]
    fn match_finds_a_process_by_command_line() {
        // unique per run, so parallel test processes cannot match each other's child
        let arg = format!("30.{}", std::process::id());
        let pattern = format!("sleep {arg}");
        let mut child = std::process::Command::new("sleep")
            .arg(&arg)
            .spawn()
            .unwrap();
        // the child needs a moment to exec (before that its command line is ours)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut p = probe(&ProcessLocator::Match(pattern.clone()));
        while p.state != ProcessState::Running && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            p = probe(&ProcessLocator::Match(pattern.clone()));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(p.state, ProcessState::Running, "{p:?}");
        assert_eq!(p.pid, Some(child.id()));
        let p = probe(&ProcessLocator::Match("no-such-process-name-xyz".into()));
        assert_eq!(p.state, ProcessState::NotRunning);
    }
}
