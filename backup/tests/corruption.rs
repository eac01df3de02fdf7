//! Property: damaged backups are detected, never restored and (without a manifest) never listed.
//! One flipped byte or a truncated archive makes verify report invalid and restore refuse,
//! removing its staging directory and leaving the data directory alone.

mod common;

use std::fs;

use common::*;
use dr_backup::verify::{VerifyMode, verify_backup};
use dr_backup::{BackupId, BackupLocation, BackupMode, ListFilter, RestoreError, list_backups};

struct Setup {
    tmp: tempfile::TempDir,
    store: dr_backup::store::FileStore,
    id: BackupId,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_tree(&data, 200, 11);
    let store = store_at(&tmp.path().join("store"));
    let id = backup(&store, &data, BackupMode::Full).header.id;
    Setup { tmp, store, id }
}

impl Setup {
    fn archive(&self) -> std::path::PathBuf {
        self.tmp
            .path()
            .join("store")
            .join(GROUP)
            .join(HOST)
            .join(self.id.archive_name())
    }

    fn loc(&self) -> BackupLocation {
        BackupLocation::new(GROUP, HOST).unwrap()
    }

    /// Verify (both modes) must say invalid; restore must refuse and leave nothing behind.
    fn assert_refused(&self, what: &str) {
        for mode in [VerifyMode::Quick, VerifyMode::Deep] {
            let r = verify_backup(&self.store, &self.loc(), self.id, mode, None).unwrap();
            assert!(
                !r.valid && !r.problems.is_empty(),
                "{what}: {mode:?} verify passed: {r:?}"
            );
        }
        let data = self.tmp.path().join("data");
        let before = tree_snapshot(&data, true);
        let staging = self.tmp.path().join("data.restore");
        let err = restore(&self.store, Some(self.id), &staging, &data).unwrap_err();
        assert!(matches!(err, RestoreError::Archive { .. }), "{what}: {err}");
        assert!(
            err.to_string().contains("staging directory was removed"),
            "{err}"
        );
        assert!(!staging.exists(), "{what}: staging left behind");
        assert_eq!(
            tree_snapshot(&data, true),
            before,
            "{what}: data directory touched"
        );
    }
}

#[test]
fn one_flipped_byte_fails_verify_and_restore() {
    let s = setup();
    let mut bytes = fs::read(s.archive()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(s.archive(), &bytes).unwrap();
    s.assert_refused("flipped byte");
}

#[test]
fn flipped_byte_near_the_end_fails_too() {
    let s = setup();
    let mut bytes = fs::read(s.archive()).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x80;
    fs::write(s.archive(), &bytes).unwrap();
    s.assert_refused("flipped byte in the checksum");
}

#[test]
fn truncated_archive_fails_verify_and_restore() {
    let s = setup();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(s.archive())
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    s.assert_refused("truncated");
}

#[test]
fn missing_manifest_means_not_listed_and_not_restorable() {
    let s = setup();
    assert_eq!(
        list_backups(&s.store, &ListFilter::default())
            .unwrap()
            .len(),
        1
    );
    fs::remove_file(s.archive().with_extension("zst.manifest.json")).unwrap();
    assert!(
        list_backups(&s.store, &ListFilter::default())
            .unwrap()
            .is_empty()
    );
    let staging = s.tmp.path().join("data.restore");
    let err = restore(&s.store, Some(s.id), &staging, &s.tmp.path().join("data")).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    let err = restore(&s.store, None, &staging, &s.tmp.path().join("data")).unwrap_err();
    assert!(err.to_string().contains("no backups"), "{err}");
    assert!(!staging.exists());
    assert!(verify_backup(&s.store, &s.loc(), s.id, VerifyMode::Quick, None).is_err());
}

#[test]
fn a_wrong_sha256_object_is_reported() {
    let s = setup();
    let sha = s.archive().with_extension("zst.sha256");
    fs::write(
        &sha,
        format!("{}  {}\n", "0".repeat(64), s.id.archive_name()),
    )
    .unwrap();
    let r = verify_backup(&s.store, &s.loc(), s.id, VerifyMode::Quick, None).unwrap();
    assert!(!r.valid);
    assert!(r.problems[0].contains("sha256"), "{r:?}");
}

#[test]
fn an_incremental_without_its_parent_is_refused() {
    let s = setup();
    let data = s.tmp.path().join("data");
    fs::write(data.join("more"), "x").unwrap();
    let inc = backup(&s.store, &data, BackupMode::Incremental { parent: None })
        .header
        .id;
    fs::remove_file(s.archive().with_extension("zst.manifest.json")).unwrap();
    let staging = s.tmp.path().join("data.restore");
    let err = restore(&s.store, Some(inc), &staging, &data).unwrap_err();
    assert!(err.to_string().contains("chain is broken"), "{err}");
    let r = verify_backup(&s.store, &s.loc(), inc, VerifyMode::Quick, None).unwrap();
    assert!(
        !r.valid && r.problems.iter().any(|p| p.contains("chain is broken")),
        "{r:?}"
    );
}
