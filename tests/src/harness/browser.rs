//! Headless Chromium for tests that need a real browser (the dashboard). The live page is driven
//! over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended by NUL,
//! read from fd 3 and written to fd 4), so no WebSocket client is needed: a shell maps our stdin
//! and stdout onto those descriptors. Chromium and its helpers run in their own process group,
//! killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Flags every run gets: headless, no sandbox (tests run as root in CI), nothing in the
/// background that talks to the internet.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
];

/// Longest one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// `chromium` on PATH (Debian's package; tests/run.sh installs it), or None.
pub fn chromium() -> Option<PathBuf> {
    super::bins::on_path("chromium")
}

/// Where tests leave files for humans (screenshots): `target/test-artifacts/`, or
/// `$DR_ARTIFACT_DIR`. Created if missing.
pub fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("DR_ARTIFACT_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // .../target/debug/deps/<test-binary> → .../target/test-artifacts
            let exe = std::env::current_exe()?;
            let target = exe
                .ancestors()
                .nth(3)
                .context("the test binary is not inside a cargo target directory")?;
            target.join("test-artifacts")
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A browser with one page open, attached over the DevTools protocol.
pub struct Browser {
    child: Child,
    pgid: Option<u32>,
    to_browser: ChildStdin,
    from_browser: BufReader<ChildStdout>,
    next_id: u64,
    session: String,
    log: PathBuf,
    _profile: tempfile::TempDir,
}

fn spawn(bin: &Path, extra: &[String], log: &Path) -> anyhow::Result<Child> {
    // fd 3 ← our stdin, fd 4 → our stdout (the DevTools pipe); chromium's own output → log
    let script = r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >>"$DR_BROWSER_LOG" 2>&1"#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin)
        .args(FLAGS)
        .args(extra)
        .env("DR_BROWSER_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok(child)
}

fn kill_group(pgid: Option<u32>) {
    let Some(pid) = pgid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

impl Browser {
    /// Start Chromium and open `url` in a new page. Its output goes to `log`.
    pub async fn open(url: &str, log: &Path) -> anyhow::Result<Browser> {
        let bin = chromium().context("chromium is not installed (tests/run.sh installs it)")?;
        let profile = tempfile::Builder::new()
            .prefix("drtest-chromium-")
            .tempdir()?;
        let extra = vec![
            format!("--user-data-dir={}", profile.path().display()),
            "--remote-debugging-pipe".to_string(),
            "--window-size=1280,1000".to_string(),
            "about:blank".to_string(),
        ];
        let mut child = spawn(&bin, &extra, log)?;
        let pgid = child.id();
        let to_browser = child.stdin.take().context("no pipe to chromium")?;
        let from_browser = BufReader::new(child.stdout.take().context("no pipe from chromium")?);
        let mut b = Browser {
            child,
            pgid,
            to_browser,
            from_browser,
            next_id: 1,
            session: String::new(),
            log: log.to_path_buf(),
            _profile: profile,
        };
        let target = b
            .call("Target.createTarget", json!({ "url": url }))
            .await
            .context("opening the page")?;
        let target_id = target["targetId"]
            .as_str()
            .context("createTarget answered no targetId")?
            .to_string();
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        b.session = attached["sessionId"]
            .as_str()
            .context("attachToTarget answered no sessionId")?
            .to_string();
        Ok(b)
    }

    /// One DevTools call (on the page once attached); its `result`, or the protocol's error.
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = Value::String(self.session.clone());
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            self.to_browser.write_all(&bytes).await?;
            self.to_browser.flush().await?;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = self.from_browser.read_until(0, &mut buf).await?;
                if n == 0 {
                    bail!("chromium closed the DevTools pipe");
                }
                buf.pop_if(|b| *b == 0);
                let v: Value = serde_json::from_slice(&buf)?;
                // events (no id) and answers to other calls are not ours
                if v["id"].as_u64() == Some(id) {
                    return Ok(v);
                }
            }
        })
        .await
        .with_context(|| format!("{method}: no answer from chromium in {CALL_TIMEOUT:?}"))??;
        if let Some(e) = answer.get("error") {
            bail!("{method}: {e}");
        }
        Ok(answer["result"].clone())
    }

    /// Evaluate a JavaScript expression in the page (awaiting a promise) and return its value.
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("the page threw: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Poll `expression` (every 100 ms) until `done` accepts its value, or fail after `timeout`
    /// naming `what` and showing the last value seen: the page is read, never waited on blindly.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.eval(expression).await?;
            if done(&last) {
                return Ok(last);
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for the page to show {what}; it shows {last:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save what the page shows now as a PNG.
    pub async fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await?;
        let data = shot["data"]
            .as_str()
            .context("captureScreenshot answered no data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("captureScreenshot answered invalid base64")?;
        anyhow::ensure!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "captureScreenshot answered something that is not a PNG"
        );
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Close the browser and wait for it (killed after a few seconds if it lingers).
    pub async fn close(mut self) {
        self.session.clear();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.call("Browser.close", json!({})),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        // helpers that outlived the browser; then nothing is left for drop to kill
        kill_group(self.pgid.take());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(chromium's output is in {})", self.log.display());
        }
        kill_group(self.pgid.take());
    }
}
