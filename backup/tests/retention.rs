//! Property: applying a retention plan to a real store keeps exactly the backups the policy
//! names (with the chains they need), and deleting goes manifest first, so a backup whose
//! deletion was interrupted is no longer listed.

mod common;

use std::fs;

use common::*;
use dr_backup::retention::{RetentionItem, RetentionPolicy, delete_backup, plan_retention};
use dr_backup::{BackupLocation, BackupMode, ListFilter, list_backups};

#[test]
fn applied_plan_keeps_exactly_the_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = store_at(&tmp.path().join("store"));
    make_tree(&data, 10, 4);
    // full, inc, inc, full, inc (ids are one second apart or more, same day).
    let mut ids = Vec::new();
    for mode in [
        BackupMode::Full,
        BackupMode::Incremental { parent: None },
        BackupMode::Incremental { parent: None },
        BackupMode::Full,
        BackupMode::Incremental { parent: None },
    ] {
        fs::write(data.join("changing"), format!("{}", ids.len())).unwrap();
        ids.push(backup(&store, &data, mode).header.id);
    }
    let listed = list_backups(&store, &ListFilter::default()).unwrap();
    let items: Vec<RetentionItem> = listed.iter().map(RetentionItem::from).collect();
    // keep_last 2: the newest incremental and the newest full (its parent).
    let plan = plan_retention(
        &items,
        &RetentionPolicy {
            keep_last: 2,
            keep_daily: 0,
            keep_weekly: 0,
        },
    );
    let loc = BackupLocation::new(GROUP, HOST).unwrap();
    for d in &plan.delete {
        delete_backup(&store, &loc, d.id).unwrap();
    }
    let left: Vec<_> = list_backups(&store, &ListFilter::default())
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(left, [ids[4], ids[3]]);
    // Only the kept backups' objects remain.
    assert_eq!(
        names(&tmp.path().join("store").join(GROUP).join(HOST)).len(),
        6
    );
    // The survivors still restore.
    restore(&store, None, &tmp.path().join("data.restore"), &data).unwrap();

    // An interrupted deletion (only the manifest went) leaves nothing listed for that backup.
    let id = ids[4];
    store_at(&tmp.path().join("store")).delete_manifest_only(&loc, id);
    let left: Vec<_> = list_backups(&store, &ListFilter::default())
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(left, [ids[3]]);
}

trait DeleteManifest {
    fn delete_manifest_only(&self, loc: &BackupLocation, id: dr_backup::BackupId);
}

impl DeleteManifest for dr_backup::store::FileStore {
    fn delete_manifest_only(&self, loc: &BackupLocation, id: dr_backup::BackupId) {
        use dr_backup::ObjectStore;
        self.delete(&loc.key(&id.manifest_name())).unwrap();
    }
}
