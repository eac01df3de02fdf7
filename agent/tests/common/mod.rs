//! Helpers of the agent's backup tests: tree snapshots to compare by content, an in-process S3
//! server, and a host whose service is a real `erlmcp-standin` managed through an agent config
//! (the agent's command functions called as a library, no controller).
#![allow(dead_code)]

pub mod host;
pub mod s3_server;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dr_backup::hashing::Sha256Digest;

/// One path of a tree: kind, content hash or link target, permission bits.
pub type Tree = BTreeMap<String, String>;

/// Every path under `root` (relative) with what it holds; equal trees have equal snapshots.
pub fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    walk(root, "", &mut out);
    out
}

fn walk(dir: &Path, rel: &str, out: &mut Tree) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().unwrap();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let md = e.path().symlink_metadata().unwrap();
        let mode = md.permissions().mode() & 0o7777;
        let what = if md.is_dir() {
            walk(&e.path(), &path, out);
            format!("dir {mode:o}")
        } else if md.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(e.path()).unwrap().display())
        } else {
            let data = std::fs::read(e.path()).unwrap();
            format!("file {mode:o} {}", Sha256Digest::of(&data).to_hex())
        };
        out.insert(path, what);
    }
}

/// A small tree with a subdirectory, a symlink, an empty file and some incompressible data.
pub fn make_tree(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("mnesia/sub")).unwrap();
    std::fs::write(dir.join("mnesia/schema.DAT"), format!("schema {seed}")).unwrap();
    std::fs::write(dir.join("mnesia/sub/empty"), b"").unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut body = vec![0u8; 300 << 10];
    rng.fill(&mut body);
    std::fs::write(dir.join("mnesia/receipts.DCD"), body).unwrap();
    std::os::unix::fs::symlink("schema.DAT", dir.join("mnesia/current")).unwrap();
}

/// The `dr-agent` binary of this build.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dr-agent"))
}

/// `erlmcp-standin` from the same target directory (built by `cargo build --workspace --bins`),
/// or `$DR_BIN_DIR`.
pub fn standin_bin() -> PathBuf {
    let dir = match std::env::var_os("DR_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => agent_bin().parent().unwrap().to_path_buf(),
    };
    let p = dir.join("erlmcp-standin");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does), or point DR_BIN_DIR at the binaries",
        p.display()
    );
    p
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Flips one byte in the middle of a file.
pub fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

/// The archive of the newest backup in a file store's `<group>/<host>` folder.
pub fn archive_of(store: &Path, group: &str, host: &str, id: &str) -> PathBuf {
    store.join(group).join(host).join(format!("{id}.tar.zst"))
}

/// True under CI: a missing prerequisite fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
