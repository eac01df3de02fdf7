//! Property: a restore that would not fit refuses before touching anything, with an error that
//! says how much it needs and how much there is — with an injected probe, and for real on a
//! small tmpfs when this machine lets us mount one (root).

mod common;

use std::io;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use dr_backup::BackupMode;
use dr_backup::restore::{FsSpace, RestoreOptions, SpaceProbe};

struct Tiny(FsSpace);

impl SpaceProbe for Tiny {
    fn probe(&self, _dir: &Path) -> io::Result<FsSpace> {
        Ok(self.0)
    }
}

#[test]
fn injected_small_file_system_is_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_tree(&data, 100, 5);
    let store = store_at(&tmp.path().join("store"));
    backup(&store, &data, BackupMode::Full);
    let staging = tmp.path().join("data.restore");
    let before = tree_snapshot(&data, true);

    let bytes = RestoreOptions {
        space_probe: Arc::new(Tiny(FsSpace {
            avail_bytes: 100 << 10,
            avail_inodes: 1 << 20,
            block_size: 4096,
        })),
        ..RestoreOptions::default()
    };
    let msg = restore_with(&store, None, &staging, &data, bytes)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not enough space") && msg.contains("need") && msg.contains("have 100.0 KiB"),
        "{msg}"
    );
    assert!(msg.contains("nothing was written"), "{msg}");
    assert!(!staging.exists());

    let inodes = RestoreOptions {
        space_probe: Arc::new(Tiny(FsSpace {
            avail_bytes: 1 << 40,
            avail_inodes: 10,
            block_size: 4096,
        })),
        ..RestoreOptions::default()
    };
    let msg = restore_with(&store, None, &staging, &data, inodes)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not enough inodes") && msg.contains("have 10 inodes"),
        "{msg}"
    );
    assert!(!staging.exists());
    assert_eq!(tree_snapshot(&data, true), before);

    // Plenty of space: it goes through.
    restore(&store, None, &staging, &data).unwrap();
}

/// Unmounts on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn real_small_tmpfs_is_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output();
    let Ok(out) = mounted
        .as_ref()
        .map(|o| o.status.success())
        .map(|ok| ok.then_some(()))
    else {
        eprintln!("skipping: cannot run mount");
        return;
    };
    if out.is_none() {
        let why = mounted
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        assert!(
            std::env::var("CI").is_err(),
            "CI: mount -t tmpfs failed (run as root): {why}"
        );
        eprintln!("skipping: mount -t tmpfs failed (not root?): {why}");
        return;
    }
    let _guard = Mount(mnt.clone());
    // 4 MiB of incompressible data cannot fit in 1 MiB.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    for i in 0..4 {
        let mut body = vec![0u8; 1 << 20];
        rng.fill(&mut body);
        std::fs::write(data.join(format!("seg{i}")), body).unwrap();
    }
    let store = store_at(&tmp.path().join("store"));
    backup(&store, &data, BackupMode::Full);
    let target = mnt.join("data");
    let staging = mnt.join("data.restore");
    let msg = restore(&store, None, &staging, &target)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not enough space") && msg.contains(&mnt.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("need 4.0 MiB"), "{msg}");
    assert!(
        names(&mnt).is_empty(),
        "something was written to the small file system"
    );
}
