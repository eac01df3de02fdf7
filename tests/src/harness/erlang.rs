//! A real Erlang/OTP node running the stub modules of `tests/erlang/` (they stand in for the
//! parts of erlmcp the Erlang probe talks to), for tests and benchmarks. Killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct ErlNode {
    pub node: String,
    pub cookie_file: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

pub fn available() -> bool {
    ["erl", "erlc"].iter().all(|p| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

impl ErlNode {
    pub fn start() -> anyhow::Result<ErlNode> {
        ErlNode::start_with_cookie(&format!("c{}{}", std::process::id(), fastrand_like()))
    }

    /// A node whose cookie is `cookie` (a test that looks for the cookie where it must not be).
    pub fn start_with_cookie(cookie: &str) -> anyhow::Result<ErlNode> {
        let dir = tempfile::tempdir()?;
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("erlang");
        let sources: Vec<PathBuf> = std::fs::read_dir(&src)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "erl"))
            .collect();
        let out = Command::new("erlc")
            .arg("-o")
            .arg(dir.path())
            .args(&sources)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "erlc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cookie_file = dir.path().join("cookie");
        std::fs::write(&cookie_file, cookie)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie_file, std::fs::Permissions::from_mode(0o600))?;
        let sname = format!("drt{}x{}", std::process::id(), fastrand_like());
        let mut child = Command::new("erl")
            .args(["-sname", &sname, "-setcookie", cookie, "-noshell", "-pa"])
            .arg(dir.path())
            .args(["-eval", "erlmcp_stub:start()"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("ready ") {
                    let _ = tx.send(n.trim().to_string());
                }
            }
        });
        let node = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(n) => n,
            Err(_) => {
                let _ = child.kill();
                anyhow::bail!("erl node {sname} did not start within 20 s");
            }
        };
        Ok(ErlNode {
            node,
            cookie_file,
            child,
            _dir: dir,
        })
    }

    /// The agent config section probing this node.
    pub fn agent_toml(&self) -> String {
        format!(
            "[erlang]\nnode = \"{}\"\ncookie_file = \"{}\"\n",
            self.node,
            self.cookie_file.display()
        )
    }
}

fn fastrand_like() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100_000)
        .unwrap_or(0)
}

impl Drop for ErlNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
