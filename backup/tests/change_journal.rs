//! Property: an incremental guided by the change journal restores exactly the tree at its time,
//! whatever happened between backups — files written, appended, truncated, created, deleted,
//! renamed, re-permissioned, rewritten with their old size and mtime put back (invisible to a
//! walk); directories created full, deleted whole, renamed; symlinks replaced — and it looks only
//! at the paths that changed. When the journal cannot vouch for a parent (the data directory was
//! swapped by a restore, the parent came from another process) the incremental walks everything
//! and says why, and the journal is usable again from the next backup on.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use dr_backup::store::ObjectStore;
use dr_backup::{
    BackupMode, BackupOptions, BackupReport, BackupRequest, ChangeJournal, TreeScan, create_backup,
};

fn take(
    store: &dyn ObjectStore,
    data: &Path,
    mode: BackupMode,
    journal: &ChangeJournal,
) -> BackupReport {
    let req = BackupRequest {
        data_dir: data,
        group: GROUP,
        host: HOST,
        mode,
        options: BackupOptions::default(),
        progress: None,
        journal: Some(journal),
    };
    create_backup(store, &req).unwrap()
}

const INCREMENTAL: BackupMode = BackupMode::Incremental { parent: None };

/// Every file under `root`, sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// One round of changes of every kind, picked by `rng`.
fn mutate(data: &Path, rng: &mut fastrand::Rng, round: usize) {
    let all = files(data);
    let pick = |rng: &mut fastrand::Rng| all[rng.usize(..all.len())].clone();
    for _ in 0..rng.usize(3..12) {
        let f = pick(rng);
        if !f.exists() {
            continue;
        }
        match rng.u8(..8) {
            0 => fs::write(&f, format!("rewritten {round}")).unwrap(),
            1 => {
                let mut body = fs::read(&f).unwrap();
                body.extend_from_slice(b"+appended");
                fs::write(&f, body).unwrap();
            }
            2 => fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_len(1)
                .unwrap(),
            3 => fs::remove_file(&f).unwrap(),
            4 => {
                let to = f.with_file_name(format!("renamed-{round}-{}", rng.u32(..)));
                fs::rename(&f, to).unwrap();
            }
            5 => fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap(),
            6 => {
                // Same size and mtime afterwards: a walk cannot see this change.
                let md = fs::metadata(&f).unwrap();
                let mut body = fs::read(&f).unwrap();
                if let Some(b) = body.first_mut() {
                    *b = b.wrapping_add(1);
                }
                fs::write(&f, &body).unwrap();
                fs::File::options()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_modified(md.modified().unwrap())
                    .unwrap();
            }
            _ => fs::write(
                f.with_file_name(format!("new-{round}-{}", rng.u32(..))),
                "new",
            )
            .unwrap(),
        }
    }
    // Directories: a new one with content, one deleted whole, one renamed.
    let fresh = data.join(format!("receipts/batch-{round}/deep"));
    fs::create_dir_all(&fresh).unwrap();
    for i in 0..5 {
        fs::write(fresh.join(format!("r{i}")), format!("{round}/{i}")).unwrap();
    }
    if round > 0 {
        let old = data.join(format!("receipts/batch-{}", round - 1));
        if round.is_multiple_of(2) {
            fs::remove_dir_all(&old).unwrap();
        } else {
            fs::rename(&old, data.join(format!("moved-{round}"))).unwrap();
            fs::write(data.join(format!("moved-{round}/deep/after-move")), "x").unwrap();
        }
    }
    // The symlink now points elsewhere.
    let _ = fs::remove_file(data.join("current"));
    std::os::unix::fs::symlink(format!("target-{round}"), data.join("current")).unwrap();
}

#[test]
fn a_journal_guided_chain_restores_every_kind_of_change_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_tree(&data, 400, 7);
    let store = store_at(&tmp.path().join("store"));
    let journal = ChangeJournal::start(&data).unwrap();
    let full = take(&store, &data, BackupMode::Full, &journal);
    assert_eq!(full.scan, TreeScan::Walked);
    let mut rng = fastrand::Rng::with_seed(42);
    for round in 0..6 {
        mutate(&data, &mut rng, round);
        let want = tree_snapshot(&data, true);
        let inc = take(&store, &data, INCREMENTAL, &journal);
        let TreeScan::Journal { changed_paths } = inc.scan else {
            panic!("round {round}: the journal was not used: {:?}", inc.scan);
        };
        assert!(
            changed_paths < 200,
            "round {round}: the journal named {changed_paths} paths for a handful of changes"
        );
        let staging = tmp.path().join(format!("staging-{round}"));
        restore(&store, Some(inc.header.id), &staging, &data).unwrap();
        let got = without_dir_mtimes(tree_snapshot(&staging, true));
        let want = without_dir_mtimes(want);
        let diff: Vec<String> = want
            .keys()
            .chain(got.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|k| want.get(*k) != got.get(*k))
            .map(|k| format!("{k}: want {:?}, restored {:?}", want.get(k), got.get(k)))
            .collect();
        assert!(
            diff.is_empty(),
            "round {round}: the restored chain differs from the data directory ({:?}):\n{}",
            inc.scan,
            diff.join("\n")
        );
        assert_eq!(
            inc.header.totals.files,
            files(&data).len() as u64,
            "round {round}: the totals count the whole tree"
        );
    }
}

#[test]
fn without_a_vouched_parent_the_incremental_walks_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_tree(&data, 50, 3);
    let store = store_at(&tmp.path().join("store"));

    // A parent taken without this journal (another process, or before a restart).
    let full = backup(&store, &data, BackupMode::Full);
    let journal = ChangeJournal::start(&data).unwrap();
    fs::write(data.join("erlmcp.log"), "changed").unwrap();
    let inc = take(&store, &data, INCREMENTAL, &journal);
    match &inc.scan {
        TreeScan::WalkedJournalUnusable(why) => assert!(
            why.contains(&full.header.id.to_string()),
            "the reason names the parent: {why}"
        ),
        other => panic!("expected a walk, got {other:?}"),
    }
    // That incremental was taken with the journal: the next one is guided.
    fs::write(data.join("erlmcp.log"), "changed again").unwrap();
    let guided = take(&store, &data, INCREMENTAL, &journal);
    assert_eq!(guided.scan, TreeScan::Journal { changed_paths: 1 });

    // A restore swaps the data directory: the journal cannot vouch for anything before it.
    let aside = tmp.path().join("aside");
    let copy = tmp.path().join("copy");
    restore(&store, Some(guided.header.id), &copy, &data).unwrap();
    fs::rename(&data, &aside).unwrap();
    fs::rename(&copy, &data).unwrap();
    fs::write(data.join("after-swap"), "new").unwrap();
    let after = take(&store, &data, INCREMENTAL, &journal);
    match &after.scan {
        TreeScan::WalkedJournalUnusable(why) => {
            assert!(why.contains("moved or deleted"), "{why}")
        }
        other => panic!("expected a walk after the swap, got {other:?}"),
    }
    let staging = tmp.path().join("staging");
    restore(&store, Some(after.header.id), &staging, &data).unwrap();
    assert_eq!(
        without_dir_mtimes(tree_snapshot(&staging, true)),
        without_dir_mtimes(tree_snapshot(&data, true))
    );
    // ...and it watches the new directory from then on (not the one moved aside).
    fs::write(aside.join("ignored"), "x").unwrap();
    fs::write(data.join("after-swap"), "changed").unwrap();
    let next = take(&store, &data, INCREMENTAL, &journal);
    assert_eq!(next.scan, TreeScan::Journal { changed_paths: 1 });
}
