//! Property: an incremental's stored manifest holds only what changed since its parent (entries
//! that are new or differ, and deleted paths), yet every backup of a chain restores exactly —
//! contents, types, symlink targets, modes and mtimes, including changes of attributes alone —
//! and `load_manifest`, list and verify describe the whole tree. A human can still replay a chain
//! with tar, and a damaged parent manifest stops an incremental instead of misleading it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;
use dr_backup::verify::{VerifyMode, verify_backup};
use dr_backup::{
    BackupError, BackupId, BackupLocation, BackupMode, BackupRequest, ListFilter, create_backup,
    list_backups, load_manifest,
};

fn loc() -> BackupLocation {
    BackupLocation::new(GROUP, HOST).unwrap()
}

/// The stored manifest object as generic JSON (what `jq` would see).
fn stored(store_dir: &Path, id: BackupId) -> serde_json::Value {
    let path = store_dir.join(GROUP).join(HOST).join(id.manifest_name());
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Paths of the entries an incremental stored.
fn stored_paths(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for group in v["entries"].as_array().unwrap() {
        let dir = group["dir"].as_str().unwrap();
        for e in group["e"].as_array().unwrap() {
            let n = e["n"].as_str().unwrap();
            out.push(if dir.is_empty() {
                n.to_owned()
            } else {
                format!("{dir}/{n}")
            });
        }
    }
    out
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs_ago);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn chains_of_change_only_manifests_restore_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store_dir = tmp.path().join("store");
    let store = store_at(&store_dir);
    make_tree(&data, 400, 21);
    let full = backup(&store, &data, BackupMode::Full);
    let mut points = vec![(full.header.id, tree_snapshot(&data, true))];

    // 1: content, additions, deletions, a mode change alone, an mtime change alone (same
    // bytes), a file replaced by a directory, a directory removed, a symlink retargeted.
    fs::write(data.join("receipts/00/r-00000.json"), "changed").unwrap();
    fs::write(data.join("new.json"), "new file").unwrap();
    fs::remove_file(data.join("receipts/01/r-00001.json")).unwrap();
    fs::set_permissions(
        data.join("receipts/02/r-00002.json"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    set_mtime(&data.join("receipts/03/r-00003.json"), 3600);
    fs::remove_file(data.join("erlmcp.log")).unwrap();
    fs::create_dir(data.join("erlmcp.log")).unwrap();
    fs::write(data.join("erlmcp.log/part1"), "x").unwrap();
    fs::remove_dir_all(data.join("receipts/06")).unwrap();
    fs::remove_file(data.join("current")).unwrap();
    std::os::unix::fs::symlink("new.json", data.join("current")).unwrap();
    let inc1 = backup(&store, &data, BackupMode::Incremental { parent: None });
    points.push((inc1.header.id, tree_snapshot(&data, true)));

    // 2: content back to an older state, a mode back, a new directory, a deletion of a file
    // added by the previous incremental, a directory replaced by a file.
    fs::write(data.join("receipts/00/r-00000.json"), "changed again").unwrap();
    fs::set_permissions(
        data.join("receipts/02/r-00002.json"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::create_dir_all(data.join("sessions/a")).unwrap();
    fs::write(data.join("sessions/a/s1.term"), "state").unwrap();
    fs::remove_file(data.join("new.json")).unwrap();
    fs::remove_dir_all(data.join("erlmcp.log")).unwrap();
    fs::write(data.join("erlmcp.log"), "a file again").unwrap();
    let inc2 = backup(&store, &data, BackupMode::Incremental { parent: None });
    points.push((inc2.header.id, tree_snapshot(&data, true)));

    // 3: nothing changed.
    let inc3 = backup(&store, &data, BackupMode::Incremental { parent: None });
    points.push((inc3.header.id, tree_snapshot(&data, true)));

    // The stored manifests hold only the changes.
    let s1 = stored(&store_dir, inc1.header.id);
    let paths1 = stored_paths(&s1);
    for p in [
        "receipts/00/r-00000.json",
        "new.json",
        "receipts/02/r-00002.json",
        "receipts/03/r-00003.json",
        "erlmcp.log",
        "erlmcp.log/part1",
        "current",
    ] {
        assert!(
            paths1.iter().any(|x| x == p),
            "{p} not stored in {paths1:?}"
        );
    }
    assert!(
        paths1.len() < 20,
        "inc1 stored {} entries: {paths1:?}",
        paths1.len()
    );
    let deleted1: Vec<&str> = s1["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(deleted1.contains(&"receipts/01/r-00001.json"));
    assert!(
        deleted1.contains(&"erlmcp.log"),
        "type change: {deleted1:?}"
    );
    assert!(deleted1.iter().any(|d| d.starts_with("receipts/06/")));
    // The mode-only and mtime-only changes point at the full backup's archive for the data.
    for g in s1["entries"].as_array().unwrap() {
        for e in g["e"].as_array().unwrap() {
            if ["r-00002.json", "r-00003.json"].contains(&e["n"].as_str().unwrap()) {
                assert_eq!(e["o"], full.header.id.to_string(), "{e}");
            }
        }
    }
    let s3 = stored(&store_dir, inc3.header.id);
    assert_eq!(stored_paths(&s3), Vec::<String>::new(), "{s3}");
    assert!(s3.get("deleted").is_none());
    assert_eq!(inc3.header.totals.archived_entries, 0);

    // ...but load_manifest, list and verify see the whole tree, and every point restores.
    let listed = list_backups(&store, &ListFilter::default()).unwrap();
    assert_eq!(listed.len(), 4);
    for (id, snap) in &points {
        let m = load_manifest(&store, &loc(), *id).unwrap();
        assert_eq!(
            without_dir_mtimes(manifest_snapshot(&m, true)),
            without_dir_mtimes(snap.clone()),
            "{id}: manifest"
        );
        let summary = listed.iter().find(|b| b.id == *id).unwrap();
        let files = snap
            .values()
            .filter(|n| n.kind == dr_backup::manifest::EntryKind::File)
            .count();
        assert_eq!(summary.files, files as u64, "{id}");
        for mode in [VerifyMode::Quick, VerifyMode::Deep] {
            let r = verify_backup(&store, &loc(), *id, mode, None).unwrap();
            assert!(r.valid, "{id} {mode:?}: {r:?}");
        }
        let staging = tmp.path().join(format!("restore-{id}"));
        let report = restore(&store, Some(*id), &staging, &data).unwrap();
        assert_eq!(
            report.chain.len(),
            points.iter().position(|p| p.0 == *id).unwrap() + 1
        );
        assert_eq!(tree_snapshot(&staging, true), *snap, "{id}: restored tree");
    }
}

#[test]
fn a_human_replays_a_chain_with_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store_dir = tmp.path().join("store");
    let store = store_at(&store_dir);
    make_tree(&data, 100, 22);
    let mut ids = vec![backup(&store, &data, BackupMode::Full).header.id];
    fs::write(data.join("receipts/00/r-00000.json"), "changed").unwrap();
    fs::remove_dir_all(data.join("receipts/05")).unwrap();
    fs::write(data.join("added.json"), "{}").unwrap();
    ids.push(
        backup(&store, &data, BackupMode::Incremental { parent: None })
            .header
            .id,
    );
    fs::remove_file(data.join("added.json")).unwrap();
    fs::write(data.join("receipts/01/r-00001.json"), "changed too").unwrap();
    ids.push(
        backup(&store, &data, BackupMode::Incremental { parent: None })
            .header
            .id,
    );
    let want = tree_snapshot(&data, false);

    // The README's procedure: extract the full, then per incremental delete its `deleted`
    // paths (deepest first) and extract it over the tree.
    let out = tmp.path().join("by-hand");
    fs::create_dir(&out).unwrap();
    let dir = store_dir.join(GROUP).join(HOST);
    for id in &ids {
        let check = Command::new("sha256sum")
            .arg("-c")
            .arg(id.sha256_name())
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(check.status.success());
        let manifest = stored(&store_dir, *id);
        if let Some(deleted) = manifest["deleted"].as_array() {
            for d in deleted.iter().rev() {
                let p = out.join(d.as_str().unwrap());
                let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir(&p));
            }
        }
        let status = Command::new("sh")
            .arg("-c")
            .arg("zstd -dc \"$1\" | tar -xf - -C \"$2\"")
            .arg("sh")
            .arg(dir.join(id.archive_name()))
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut got = tree_snapshot(&out, false);
    // tar sets modes but this comparison is about content and shape.
    for n in got.values_mut() {
        n.mode = 0;
    }
    let mut want = want;
    for n in want.values_mut() {
        n.mode = 0;
    }
    assert_eq!(got, want);
}

#[test]
fn a_damaged_parent_manifest_stops_an_incremental() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store_dir = tmp.path().join("store");
    let store = store_at(&store_dir);
    make_tree(&data, 50, 23);
    let full = backup(&store, &data, BackupMode::Full);
    // Swap two directory groups (whole lines of the stored manifest): valid JSON, wrong order.
    let path = store_dir
        .join(GROUP)
        .join(HOST)
        .join(full.header.id.manifest_name());
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let groups: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with(",{\"dir\":\"receipts/0"))
        .collect();
    assert!(groups.len() >= 2, "{text}");
    lines.swap(groups[0], groups[1]);
    fs::write(&path, lines.join("\n") + "\n").unwrap();

    let req = BackupRequest {
        data_dir: &data,
        group: GROUP,
        host: HOST,
        mode: BackupMode::Incremental { parent: None },
        options: Default::default(),
        progress: None,
        journal: None,
    };
    let err = create_backup(&store, &req).unwrap_err();
    assert!(matches!(err, BackupError::Parent(_)), "{err}");
    assert!(err.to_string().contains("out of order"), "{err}");
    // Nothing was committed, and restore refuses the damaged full backup too.
    assert_eq!(
        list_backups(&store, &ListFilter::default()).unwrap().len(),
        1
    );
    let staging = tmp.path().join("staging");
    let err = restore(&store, Some(full.header.id), &staging, &data).unwrap_err();
    assert!(err.to_string().contains("manifest of"), "{err}");
}
