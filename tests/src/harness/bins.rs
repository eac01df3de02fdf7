//! Where the binaries under test are.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Bins {
    pub dir: PathBuf,
}

impl Bins {
    /// Find the bin directory; panics with what to do if a binary is missing.
    pub fn locate() -> Bins {
        let dir = match std::env::var_os("DR_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                // .../target/debug/deps/<test-binary> → .../target/debug
                let exe = std::env::current_exe().expect("current exe");
                let deps = exe.parent().expect("exe dir");
                if deps.file_name().is_some_and(|n| n == "deps") {
                    deps.parent().expect("target profile dir").to_path_buf()
                } else {
                    deps.to_path_buf()
                }
            }
        };
        let bins = Bins { dir };
        for name in ["dr-controller", "dr-agent", "drctl", "erlmcp-standin"] {
            let p = bins.path(name);
            assert!(
                p.is_file(),
                "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does), \
                 or point DR_BIN_DIR at the binaries",
                p.display()
            );
        }
        bins
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn controller(&self) -> PathBuf {
        self.path("dr-controller")
    }
    pub fn agent(&self) -> PathBuf {
        self.path("dr-agent")
    }
    pub fn drctl(&self) -> PathBuf {
        self.path("drctl")
    }
    pub fn standin(&self) -> PathBuf {
        self.path("erlmcp-standin")
    }
}

/// `haproxy` on PATH, or None.
pub fn haproxy() -> Option<PathBuf> {
    on_path("haproxy")
}

/// The program `name` as the shell would find it on PATH, or None.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p: &PathBuf| Path::is_file(p))
}
