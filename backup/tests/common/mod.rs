//! Helpers shared by the integration tests: deterministic data trees, tree snapshots that can be
//! compared with each other and with a manifest, and short-hands for backup and restore.
#![allow(dead_code)]

pub mod craft;
#[cfg(feature = "s3")]
pub mod s3_server;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use dr_backup::hashing::Sha256Digest;
use dr_backup::manifest::{EntryKind, Manifest};
use dr_backup::restore::{RestoreOptions, RestoreReport, RestoreRequest, restore_chain};
use dr_backup::store::{FileStore, ObjectStore};
use dr_backup::{BackupId, BackupMode, BackupOptions, BackupReport, BackupRequest, create_backup};

pub const GROUP: &str = "grp1";
pub const HOST: &str = "erlmcp1";

/// One path of a tree, as compared by the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: EntryKind,
    pub sha256: Option<String>,
    pub target: Option<String>,
    pub mode: u32,
    pub mtime_ns: Option<i64>,
}

/// Snapshot of a real directory tree (paths relative, `/`-separated).
pub fn tree_snapshot(root: &Path, with_mtime: bool) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    snap_dir(root, "", with_mtime, &mut out);
    out
}

fn snap_dir(dir: &Path, rel: &str, with_mtime: bool, out: &mut BTreeMap<String, Node>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let md = entry.path().symlink_metadata().unwrap();
        let mtime = with_mtime.then(|| md.mtime() * 1_000_000_000 + md.mtime_nsec());
        let mode = md.permissions().mode() & 0o7777;
        let node = if md.is_dir() {
            snap_dir(&entry.path(), &path, with_mtime, out);
            Node {
                kind: EntryKind::Dir,
                sha256: None,
                target: None,
                mode,
                mtime_ns: mtime,
            }
        } else if md.file_type().is_symlink() {
            let t = fs::read_link(entry.path())
                .unwrap()
                .into_os_string()
                .into_string()
                .unwrap();
            Node {
                kind: EntryKind::Symlink,
                sha256: None,
                target: Some(t),
                mode: 0,
                mtime_ns: mtime,
            }
        } else {
            let data = fs::read(entry.path()).unwrap();
            Node {
                kind: EntryKind::File,
                sha256: Some(Sha256Digest::of(&data).to_hex()),
                target: None,
                mode,
                mtime_ns: mtime,
            }
        };
        out.insert(path, node);
    }
}

/// Snapshot of what a manifest says the tree is.
pub fn manifest_snapshot(m: &Manifest, with_mtime: bool) -> BTreeMap<String, Node> {
    m.entries
        .iter()
        .map(|e| {
            let node = Node {
                kind: e.kind,
                sha256: e.sha256.map(|h| h.to_hex()),
                target: e.target.clone(),
                mode: if e.kind == EntryKind::Symlink {
                    0
                } else {
                    e.mode
                },
                mtime_ns: with_mtime.then_some(e.mtime_ns),
            };
            (e.path.clone(), node)
        })
        .collect()
}

/// Drops symlink mtimes/modes where the comparison should not depend on them.
pub fn without_dir_mtimes(mut t: BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    for n in t.values_mut() {
        if n.kind != EntryKind::File {
            n.mtime_ns = None;
        }
    }
    t
}

/// A deterministic erlmcp-like tree: receipts in sub-directories, a couple of larger files,
/// a symlink and an empty directory.
pub fn make_tree(root: &Path, files: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    fs::create_dir_all(root.join("receipts")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    for i in 0..files {
        let dir = root.join(format!("receipts/{:02}", i % 7));
        fs::create_dir_all(&dir).unwrap();
        let len = rng.usize(10..3000);
        let body: String = (0..len).map(|_| rng.alphanumeric()).collect();
        fs::write(
            dir.join(format!("r-{i:05}.json")),
            format!("{{\"id\":{i},\"body\":\"{body}\"}}"),
        )
        .unwrap();
    }
    let big: Vec<u8> = (0..300_000).map(|_| rng.u8(..)).collect();
    fs::write(root.join("index.seg"), &big).unwrap();
    fs::write(root.join("erlmcp.log"), "started\n".repeat(500)).unwrap();
    fs::set_permissions(root.join("erlmcp.log"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("index.seg", root.join("current")).unwrap();
}

pub fn store_at(dir: &Path) -> FileStore {
    FileStore::new(dir)
}

pub fn backup(store: &dyn ObjectStore, data: &Path, mode: BackupMode) -> BackupReport {
    backup_with(store, data, mode, BackupOptions::default())
}

pub fn backup_with(
    store: &dyn ObjectStore,
    data: &Path,
    mode: BackupMode,
    options: BackupOptions,
) -> BackupReport {
    let req = BackupRequest {
        data_dir: data,
        group: GROUP,
        host: HOST,
        mode,
        options,
        progress: None,
        journal: None,
    };
    create_backup(store, &req).unwrap()
}

pub fn restore(
    store: &dyn ObjectStore,
    id: Option<BackupId>,
    staging: &Path,
    data_dir: &Path,
) -> Result<RestoreReport, dr_backup::RestoreError> {
    restore_with(store, id, staging, data_dir, RestoreOptions::default())
}

pub fn restore_with(
    store: &dyn ObjectStore,
    id: Option<BackupId>,
    staging: &Path,
    data_dir: &Path,
    options: RestoreOptions,
) -> Result<RestoreReport, dr_backup::RestoreError> {
    let req = RestoreRequest {
        group: GROUP,
        host: HOST,
        backup: id,
        staging,
        data_dir,
        options,
        progress: None,
    };
    restore_chain(store, &req)
}

/// Names of the entries directly in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}
