//! Running the configured hooks and service commands: argument lists (no shell), a timeout,
//! the context in the environment, output captured for the result (trimmed).

use std::time::{Duration, Instant};

use crate::config::Hook;

/// What a hook gets to know.
#[derive(Clone, Debug, Default)]
pub struct HookEnv {
    pub host: String,
    pub group: String,
    pub epoch: u64,
    pub role: String,
    pub old_primary: String,
    pub new_primary: String,
    /// Backup hooks: the data directory they act on (`ERLMCP_DR_DATA_DIR`; for a drill, the
    /// restored copy).
    pub data_dir: Option<std::path::PathBuf>,
    /// Backup hooks: the backup concerned (`ERLMCP_DR_BACKUP_ID`), when known.
    pub backup_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{program}: cannot start: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program}: exited with {status} after {ms} ms: {output}")]
    Failed {
        program: String,
        status: String,
        ms: u128,
        output: String,
    },
    #[error("{program}: did not finish within {ms} ms (killed; it may have partly run)")]
    Timeout { program: String, ms: u64 },
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let start = s.len().saturating_sub(500);
    let start = (start..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].replace('\n', " | ")
}

/// Run `argv` with `env` within `timeout`; Ok holds the (trimmed) output.
pub async fn run(argv: &[String], env: &HookEnv, timeout: Duration) -> Result<String, HookError> {
    let program = argv.first().cloned().unwrap_or_default();
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&argv[1..])
        .env("ERLMCP_DR_HOST", &env.host)
        .env("ERLMCP_DR_GROUP", &env.group)
        .env("ERLMCP_DR_EPOCH", env.epoch.to_string())
        .env("ERLMCP_DR_ROLE", &env.role)
        .env("ERLMCP_DR_OLD_PRIMARY", &env.old_primary)
        .env("ERLMCP_DR_NEW_PRIMARY", &env.new_primary)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(d) = &env.data_dir {
        cmd.env("ERLMCP_DR_DATA_DIR", d);
    }
    if let Some(id) = &env.backup_id {
        cmd.env("ERLMCP_DR_BACKUP_ID", id);
    }
    let child = cmd.output();
    match tokio::time::timeout(timeout, child).await {
        Ok(Ok(out)) if out.status.success() => Ok(tail(&out.stdout)),
        Ok(Ok(out)) => Err(HookError::Failed {
            program,
            status: out.status.to_string(),
            ms: started.elapsed().as_millis(),
            output: {
                let mut o = tail(&out.stderr);
                if o.is_empty() {
                    o = tail(&out.stdout);
                }
                o
            },
        }),
        Ok(Err(source)) => Err(HookError::Spawn { program, source }),
        Err(_) => Err(HookError::Timeout {
            program,
            ms: timeout.as_millis() as u64,
        }),
    }
}

/// Run an optional hook; `None` is a success with nothing to say.
pub async fn run_hook(hook: Option<&Hook>, env: &HookEnv) -> Result<String, HookError> {
    match hook {
        None => Ok("no hook configured".into()),
        Some(h) => run(&h.command, env, Duration::from_millis(h.timeout_ms)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn env_output_failure_and_timeout() {
        let env = HookEnv {
            epoch: 7,
            role: "primary".into(),
            ..Default::default()
        };
        let out = run(
            &argv(&["sh", "-c", "echo $ERLMCP_DR_EPOCH $ERLMCP_DR_ROLE"]),
            &env,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out, "7 primary");
        let e = run(
            &argv(&["sh", "-c", "echo nope >&2; exit 3"]),
            &env,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = run(&argv(&["sleep", "5"]), &env, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }));
        let e = run(&argv(&["/nonexistent/hook"]), &env, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Spawn { .. }));
    }
}
