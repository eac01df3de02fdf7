//! Property: a human with only coreutils, zstd and tar can check and restore a full backup
//! (runbook Procedure 4 when erlmcp-dr itself is gone): `sha256sum -c` accepts the `.sha256`
//! object and `zstd -dc | tar -x` reproduces the tree.

mod common;

use std::process::Command;

use common::*;
use dr_backup::BackupMode;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn sha256sum_and_zstd_tar_restore_a_full_backup() {
    for tool in ["sha256sum", "zstd", "tar"] {
        assert!(
            have(tool),
            "{tool} is needed for this test (apt-get install zstd coreutils tar)"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store_dir = tmp.path().join("store");
    let store = store_at(&store_dir);
    make_tree(&data, 200, 7);
    // A path longer than the 100 bytes of a plain tar header.
    let deep = data
        .join("receipts")
        .join("x".repeat(60))
        .join("y".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("long-name.json"), "{}").unwrap();
    let snap = tree_snapshot(&data, false);
    let full = backup(&store, &data, BackupMode::Full);
    let dir = store_dir.join(GROUP).join(HOST);
    let id = full.header.id;

    let check = Command::new("sha256sum")
        .arg("-c")
        .arg(id.sha256_name())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "sha256sum -c failed: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        format!("{}: OK", id.archive_name())
    );

    let out = tmp.path().join("by-hand");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$1\" | tar -xf - -C \"$2\"")
        .arg("sh")
        .arg(dir.join(id.archive_name()))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(tree_snapshot(&out, false), snap);
}
