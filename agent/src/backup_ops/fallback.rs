//! When a restore fails because the backup itself is corrupt, say which older backup still
//! verifies, so the operator is offered the previous good one instead of being left to try
//! them one by one. Only a backup whose stored hash no longer matches counts as corrupt: a
//! restore that failed for another reason (a full disk, a store outage) offers nothing.

use dr_backup::{
    BackupId, BackupLocation, ListFilter, ObjectStore, VerifyMode, latest_backup, list_backups,
    verify_backup,
};

/// `"; <why corrupt>; the newest backup that verifies is X: restore it with --backup X"`, or
/// empty when `failed` (None: the newest) is not corrupt or no older backup verifies.
pub fn previous_good_hint(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    failed: Option<&BackupId>,
) -> String {
    let failed = match failed {
        Some(id) => *id,
        None => match latest_backup(store, loc) {
            Ok(s) => s.id,
            Err(_) => return String::new(),
        },
    };
    let why = match verify_backup(store, loc, failed, VerifyMode::Quick, None) {
        Ok(r) if !r.valid => r.problems.join("; "),
        _ => return String::new(),
    };
    let filter = ListFilter {
        group: Some(loc.group().to_owned()),
        host: Some(loc.host().to_owned()),
    };
    let Ok(all) = list_backups(store, &filter) else {
        return format!("; {failed} is corrupt: {why}");
    };
    // newest first: the candidates are the ones after the failed backup
    let older = all.iter().skip_while(|s| s.id != failed).skip(1);
    for candidate in older {
        if chain_verifies(store, loc, &all, &candidate.id) {
            return format!(
                "; {failed} is corrupt: {why}; the newest backup that verifies is {id}: restore it with --backup {id}",
                id = candidate.id
            );
        }
    }
    format!(
        "; {failed} is corrupt: {why}; no older backup of {}/{} verifies",
        loc.group(),
        loc.host()
    )
}

/// The backup and every parent it needs pass a quick verify (stored hashes).
fn chain_verifies(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    all: &[dr_backup::BackupSummary],
    id: &BackupId,
) -> bool {
    let mut next = Some(*id);
    // a chain is never longer than the list (a loop is not a good backup)
    for _ in 0..=all.len() {
        let Some(id) = next else {
            return true;
        };
        let valid = verify_backup(store, loc, id, VerifyMode::Quick, None).is_ok_and(|r| r.valid);
        if !valid {
            return false;
        }
        next = all.iter().find(|s| s.id == id).and_then(|s| s.parent);
    }
    false
}
