//! Property: on a quiescent data directory, a full backup and a chain of incrementals restore to
//! exactly the tree that was backed up — contents, types, symlink targets, modes and mtimes —
//! with deletions and type changes applied, and list/verify describe them truthfully.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use dr_backup::restore::swap_in;
use dr_backup::verify::{VerifyMode, verify_backup};
use dr_backup::{BackupKind, BackupLocation, BackupMode, ListFilter, list_backups, load_manifest};

#[test]
fn full_then_incrementals_restore_the_exact_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = store_at(&tmp.path().join("store"));
    make_tree(&data, 300, 1);

    let full = backup(&store, &data, BackupMode::Full);
    assert_eq!(full.header.kind, BackupKind::Full);
    let snap_full = tree_snapshot(&data, true);

    // Change things: modify, add, delete, chmod, replace a file by a directory and a directory
    // by a file, retarget a symlink.
    fs::write(data.join("receipts/00/r-00000.json"), "changed").unwrap();
    fs::write(data.join("new.json"), "new file").unwrap();
    fs::remove_file(data.join("receipts/01/r-00001.json")).unwrap();
    fs::set_permissions(data.join("index.seg"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(data.join("erlmcp.log")).unwrap();
    fs::create_dir(data.join("erlmcp.log")).unwrap();
    fs::write(data.join("erlmcp.log/part1"), "x").unwrap();
    fs::remove_dir_all(data.join("receipts/06")).unwrap();
    fs::write(data.join("receipts/06"), "now a file").unwrap();
    fs::remove_file(data.join("current")).unwrap();
    std::os::unix::fs::symlink("new.json", data.join("current")).unwrap();
    let inc1 = backup(&store, &data, BackupMode::Incremental { parent: None });
    assert_eq!(inc1.header.parent, Some(full.header.id));
    let snap_inc1 = tree_snapshot(&data, true);
    // Only what changed is archived: far fewer entries than the tree.
    let t = &inc1.header.totals;
    assert!(t.archived_entries < t.entries / 3, "{t:?}");
    let m1 = load_manifest(&store, &loc(), inc1.header.id).unwrap();
    assert!(
        m1.deleted.contains(&"receipts/01/r-00001.json".to_owned()),
        "{:?}",
        m1.deleted
    );
    assert!(m1.deleted.contains(&"erlmcp.log".to_owned()));
    assert!(m1.deleted.iter().any(|d| d.starts_with("receipts/06/")));

    fs::write(data.join("receipts/02/r-00002.json"), "changed again").unwrap();
    fs::remove_file(data.join("new.json")).unwrap();
    let inc2 = backup(&store, &data, BackupMode::Incremental { parent: None });
    assert_eq!(inc2.header.parent, Some(inc1.header.id));
    let snap_inc2 = tree_snapshot(&data, true);

    // Every backup in the chain restores to its own point in time.
    for (id, want) in [
        (full.header.id, &snap_full),
        (inc1.header.id, &snap_inc1),
        (inc2.header.id, &snap_inc2),
    ] {
        let staging = tmp.path().join(format!("staging-{id}"));
        let report = restore(&store, Some(id), &staging, &data).unwrap();
        assert_eq!(report.backup, id);
        assert_eq!(
            without_dir_mtimes(tree_snapshot(&staging, true)),
            without_dir_mtimes(want.clone()),
            "{id}"
        );
        // Directory mtimes are restored too (applied after the files).
        assert_eq!(
            tree_snapshot(&staging, true).get("receipts"),
            want.get("receipts"),
            "{id}"
        );
    }

    // Listing: newest first, with kinds and parents; all verify deep.
    let listed = list_backups(&store, &ListFilter::default()).unwrap();
    let ids: Vec<_> = listed.iter().map(|b| b.id).collect();
    assert_eq!(ids, [inc2.header.id, inc1.header.id, full.header.id]);
    assert_eq!(listed[0].parent, Some(inc1.header.id));
    assert_eq!(listed[2].files, 300 + 2);
    for b in &listed {
        for mode in [VerifyMode::Quick, VerifyMode::Deep] {
            let r = verify_backup(&store, &loc(), b.id, mode, None).unwrap();
            assert!(r.valid, "{r:?}");
        }
    }
    let deep = verify_backup(&store, &loc(), full.header.id, VerifyMode::Deep, None).unwrap();
    assert_eq!(deep.files_checked, 302);
}

#[test]
fn swap_in_exchanges_and_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = store_at(&tmp.path().join("store"));
    make_tree(&data, 20, 2);
    let full = backup(&store, &data, BackupMode::Full);
    let original = tree_snapshot(&data, true);
    fs::write(data.join("damage"), "oops").unwrap();
    let damaged = tree_snapshot(&data, true);

    let staging = tmp.path().join("data.restore");
    restore(&store, Some(full.header.id), &staging, &data).unwrap();
    let guard = swap_in(&data, &staging).unwrap();
    assert_eq!(
        without_dir_mtimes(tree_snapshot(&data, true)),
        without_dir_mtimes(original.clone())
    );
    let previous = guard.previous().unwrap().to_path_buf();
    assert!(
        previous
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("data.previous-")
    );
    assert_eq!(tree_snapshot(&previous, true), damaged);

    // Roll back: the damaged tree is back, the restored one at the staging path.
    guard.rollback().unwrap();
    assert_eq!(tree_snapshot(&data, true), damaged);
    assert_eq!(
        without_dir_mtimes(tree_snapshot(&staging, true)),
        without_dir_mtimes(original.clone())
    );
    assert!(!previous.exists());

    // Swap again and commit without keeping the previous tree.
    let guard = swap_in(&data, &staging).unwrap();
    assert_eq!(guard.commit(false).unwrap(), None);
    assert_eq!(names(tmp.path()), ["data", "store"]);

    // A fresh host (no data directory yet) gets the restored tree; rollback removes it again.
    let fresh = tmp.path().join("fresh");
    let staging = tmp.path().join("fresh.restore");
    restore(&store, None, &staging, &fresh).unwrap();
    let guard = swap_in(&fresh, &staging).unwrap();
    assert!(guard.previous().is_none());
    assert!(fresh.join("index.seg").exists());
    guard.rollback().unwrap();
    assert!(!fresh.exists() && staging.exists());
}

#[test]
fn objects_follow_the_documented_names() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store_dir = tmp.path().join("store");
    let store = store_at(&store_dir);
    make_tree(&data, 5, 3);
    let full = backup(&store, &data, BackupMode::Full);
    let id = full.header.id.to_string();
    assert!(
        id.starts_with("full-")
            && id.ends_with('Z')
            && id.len() == "full-2026-01-27T13:45:30Z".len()
    );
    let dir = store_dir.join(GROUP).join(HOST);
    assert_eq!(
        names(&dir),
        [
            format!("{id}.tar.zst"),
            format!("{id}.tar.zst.manifest.json"),
            format!("{id}.tar.zst.sha256")
        ]
    );
    let line = fs::read_to_string(dir.join(format!("{id}.tar.zst.sha256"))).unwrap();
    assert_eq!(
        line,
        format!("{}  {id}.tar.zst\n", full.header.archive.sha256)
    );
    // Two backups in the same second get distinct ids.
    let second = backup(&store, &data, BackupMode::Full);
    assert!(second.header.id > full.header.id);
}

fn loc() -> BackupLocation {
    BackupLocation::new(GROUP, HOST).unwrap()
}
