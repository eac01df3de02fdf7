use std::fs;

use super::*;
use crate::naming::{BackupId, BackupKind};

fn id(secs: i64) -> BackupId {
    BackupId {
        unix_secs: 1_800_000_000 + secs,
        kind: BackupKind::Full,
    }
}

/// A journal on a small tree, with backup `id(0)` remembered at a mark taken now.
fn journal() -> (tempfile::TempDir, ChangeJournal) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("a/b")).unwrap();
    fs::write(tmp.path().join("a/b/f"), "1").unwrap();
    fs::write(tmp.path().join("top"), "1").unwrap();
    let j = ChangeJournal::start(tmp.path()).unwrap();
    let m = j.mark().expect("armed");
    j.remember(id(0), m);
    (tmp, j)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn files_written_created_and_deleted_are_named_with_their_directories() {
    let (tmp, j) = journal();
    assert_eq!(j.changes_since(&id(0)).unwrap(), ChangeSet::default());
    fs::write(tmp.path().join("a/b/f"), "2").unwrap();
    fs::write(tmp.path().join("a/new"), "n").unwrap();
    fs::remove_file(tmp.path().join("top")).unwrap();
    let c = j.changes_since(&id(0)).unwrap();
    assert_eq!(c.stat, strs(&["a", "a/b/f", "a/new", "top"]));
    assert!(c.trees.is_empty());
}

#[test]
fn new_and_moved_directories_are_whole_trees_and_watched() {
    let (tmp, j) = journal();
    fs::create_dir_all(tmp.path().join("n/m")).unwrap();
    fs::rename(tmp.path().join("a/b"), tmp.path().join("moved")).unwrap();
    let c = j.changes_since(&id(0)).unwrap();
    assert_eq!(c.trees, strs(&["moved", "n"]));
    assert!(c.stat.contains(&"a/b".to_string()), "{c:?}");
    // Both are watched under their new paths now.
    let m = j.mark().unwrap();
    j.remember(id(1), m);
    fs::write(tmp.path().join("moved/f"), "3").unwrap();
    fs::write(tmp.path().join("n/m/g"), "4").unwrap();
    let c = j.changes_since(&id(1)).unwrap();
    assert_eq!(c.stat, strs(&["moved/f", "n/m", "n/m/g"]));
}

#[test]
fn only_changes_after_the_parents_mark_count() {
    let (tmp, j) = journal();
    fs::write(tmp.path().join("top"), "2").unwrap();
    let m = j.mark().unwrap();
    j.remember(id(1), m);
    fs::write(tmp.path().join("a/b/f"), "2").unwrap();
    assert_eq!(j.changes_since(&id(1)).unwrap().stat, strs(&["a/b/f"]));
    assert_eq!(
        j.changes_since(&id(0)).unwrap().stat,
        strs(&["a/b/f", "top"])
    );
    assert!(matches!(
        j.changes_since(&id(9)),
        Err(Unusable::UnknownParent(_))
    ));
}

#[test]
fn too_many_changes_invalidate_older_marks_but_not_newer_ones() {
    let (tmp, j) = journal();
    j.shared.lock().max_changed = 3;
    for i in 0..5 {
        fs::write(tmp.path().join(format!("f{i}")), "x").unwrap();
    }
    let err = j.changes_since(&id(0)).unwrap_err();
    assert!(
        matches!(&err, Unusable::Invalidated(why) if why.contains("more than 3")),
        "{err}"
    );
    let m = j.mark().unwrap();
    j.remember(id(1), m);
    fs::write(tmp.path().join("f0"), "y").unwrap();
    assert_eq!(j.changes_since(&id(1)).unwrap().stat, strs(&["f0"]));
}

#[test]
fn a_missing_data_directory_turns_the_journal_off_until_it_is_back() {
    let (tmp, j) = journal();
    let aside = tmp.path().with_extension("aside");
    fs::rename(tmp.path(), &aside).unwrap();
    assert!(j.mark().is_none());
    assert!(matches!(j.changes_since(&id(0)), Err(Unusable::Off(_))));
    fs::create_dir(tmp.path()).unwrap();
    let m = j.mark().expect("re-armed on the new directory");
    j.remember(id(1), m);
    fs::write(tmp.path().join("x"), "1").unwrap();
    fs::write(aside.join("top"), "ignored").unwrap();
    assert_eq!(j.changes_since(&id(1)).unwrap().stat, strs(&["x"]));
    fs::remove_dir_all(&aside).unwrap();
}
