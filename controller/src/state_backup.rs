//! The controller's own disaster: snapshots of the replicated state in a backup store, and the
//! bootstrap of a new single-node controller cluster from one (Procedure 4 for the plane itself).
//!
//! Objects, under `controller/` in the store:
//! - `state-<UTC ISO-8601>.json`: a [`StateSnapshot`] (the applied state and where it came from);
//! - `state-<...>.json.sha256`: a line `sha256sum -c` accepts, written **last**: a snapshot
//!   without it does not exist for list and restore (an interrupted write is never restored).

use std::path::Path;

use dr_backup::store::{ObjectStore, StoreError, StoreOptions, open_store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::ControllerState;

const PREFIX: &str = "controller/";
/// Largest snapshot read back (the state of a large installation is a few MiB).
const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;
const FORMAT: u32 = 1;

/// What a snapshot object holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub format: u32,
    pub taken_by: String,
    pub taken_at_unix_ms: u64,
    /// The Raft log index and term the state is applied up to.
    pub last_applied: u64,
    pub term: u64,
    pub state: ControllerState,
}

#[derive(Debug, thiserror::Error)]
pub enum StateBackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no controller snapshot in {0} (take one with `drctl controller backup --store URL`)")]
    NoneFound(String),
    #[error(
        "controller snapshot {id} in {store} is corrupt: its SHA-256 is {actual}, the .sha256 says {expected}; pick another with --snapshot (list: dr-controller restore --store URL --list)"
    )]
    Corrupt {
        store: String,
        id: String,
        expected: String,
        actual: String,
    },
    #[error("controller snapshot {id} is not readable: {message}")]
    Unreadable { id: String, message: String },
    #[error("{0:?} is not a controller snapshot id (like state-2026-01-27T13:45:30.123Z)")]
    BadId(String),
}

/// A snapshot in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    pub id: String,
    pub bytes: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_id(unix_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "state-{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn valid_id(id: &str) -> bool {
    id.starts_with("state-")
        && id.len() < 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.'))
}

pub fn open(url: &str, options: &StoreOptions) -> Result<Box<dyn ObjectStore>, StateBackupError> {
    Ok(open_store(url, options)?)
}

/// Write `snapshot`; returns its id. Blocking (run it off the async runtime).
pub fn write(
    store: &dyn ObjectStore,
    snapshot: &StateSnapshot,
) -> Result<String, StateBackupError> {
    let id = now_id(snapshot.taken_at_unix_ms);
    let body = serde_json::to_vec_pretty(snapshot).map_err(|e| StateBackupError::Unreadable {
        id: id.clone(),
        message: e.to_string(),
    })?;
    let key = format!("{PREFIX}{id}.json");
    store.put(&key, &body)?;
    let line = format!("{}  {id}.json\n", hex(&Sha256::digest(&body)));
    store.put(&format!("{key}.sha256"), line.as_bytes())?;
    Ok(id)
}

/// Committed snapshots (those with their `.sha256`), oldest first.
pub fn list(store: &dyn ObjectStore) -> Result<Vec<Listed>, StateBackupError> {
    let objects = store.list(PREFIX)?;
    let committed: std::collections::BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix(".json.sha256"))
        .collect();
    Ok(objects
        .iter()
        .filter_map(|o| {
            let stem = o.key.strip_suffix(".json")?;
            committed.contains(stem).then(|| Listed {
                id: stem.trim_start_matches(PREFIX).to_string(),
                bytes: o.size,
            })
        })
        .collect())
}

/// Read and check snapshot `id` (None: the newest).
pub fn read(
    store: &dyn ObjectStore,
    id: Option<&str>,
) -> Result<(String, StateSnapshot), StateBackupError> {
    let id = match id {
        Some(id) if !valid_id(id) => return Err(StateBackupError::BadId(id.to_string())),
        Some(id) => id.to_string(),
        None => list(store)?
            .pop()
            .map(|l| l.id)
            .ok_or_else(|| StateBackupError::NoneFound(store.url()))?,
    };
    let key = format!("{PREFIX}{id}.json");
    let sum = store.get(&format!("{key}.sha256"), 4096)?;
    let expected = String::from_utf8_lossy(&sum)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let body = store.get(&key, MAX_SNAPSHOT_BYTES)?;
    let actual = hex(&Sha256::digest(&body));
    if actual != expected {
        return Err(StateBackupError::Corrupt {
            store: store.url(),
            id,
            expected,
            actual,
        });
    }
    let snapshot: StateSnapshot =
        serde_json::from_slice(&body).map_err(|e| StateBackupError::Unreadable {
            id: id.clone(),
            message: e.to_string(),
        })?;
    if snapshot.format != FORMAT {
        return Err(StateBackupError::Unreadable {
            id,
            message: format!(
                "format {} (this version reads format {FORMAT})",
                snapshot.format
            ),
        });
    }
    Ok((id, snapshot))
}

/// Delete all but the newest `keep` snapshots (the `.sha256` first, so a half-deleted snapshot
/// is never listed). Returns the ids deleted.
pub fn prune(store: &dyn ObjectStore, keep: usize) -> Result<Vec<String>, StateBackupError> {
    let all = list(store)?;
    let n = all.len().saturating_sub(keep.max(1));
    let mut gone = Vec::new();
    for l in &all[..n] {
        let key = format!("{PREFIX}{}.json", l.id);
        store.delete(&format!("{key}.sha256"))?;
        store.delete(&key)?;
        gone.push(l.id.clone());
    }
    Ok(gone)
}

/// A snapshot of `state` as this controller has it applied.
pub fn snapshot_of(
    state: ControllerState,
    taken_by: &str,
    taken_at_unix_ms: u64,
    last_applied: u64,
    term: u64,
) -> StateSnapshot {
    StateSnapshot {
        format: FORMAT,
        taken_by: taken_by.to_string(),
        taken_at_unix_ms,
        last_applied,
        term,
        state,
    }
}

/// Where a restore may write: a data directory without a Raft store (or `force`, which moves
/// an existing one aside, never deletes it). Returns the path moved aside, if any.
pub fn prepare_data_dir(
    data_dir: &Path,
    force: bool,
    unix_ms: u64,
) -> Result<Option<std::path::PathBuf>, String> {
    let raft = data_dir.join("raft.redb");
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    if !raft.exists() {
        return Ok(None);
    }
    if !force {
        return Err(format!(
            "{} already holds a controller state: restore into an empty data_dir, or pass --force to move it aside (kept, not deleted)",
            raft.display()
        ));
    }
    let aside = data_dir.join(format!("raft.redb.before-restore-{unix_ms}"));
    std::fs::rename(&raft, &aside)
        .map_err(|e| format!("cannot move {} aside: {e}", raft.display()))?;
    Ok(Some(aside))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateCommand;

    fn store(dir: &Path) -> Box<dyn ObjectStore> {
        open(
            &format!("file://{}", dir.display()),
            &StoreOptions::default(),
        )
        .unwrap()
    }

    fn sample(at: u64) -> StateSnapshot {
        let mut state = ControllerState::default();
        state
            .apply(&StateCommand::EnsureGroup {
                group: dr_proto::domain::GroupName::new("g").unwrap(),
                initial_primary: Some(dr_proto::domain::HostName::new("a").unwrap()),
                at_unix_ms: at,
            })
            .unwrap();
        snapshot_of(state, "c1", at, 7, 2)
    }

    #[test]
    fn written_snapshots_list_read_back_and_prune_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let a = write(&*s, &sample(1_800_000_000_000)).unwrap();
        let b = write(&*s, &sample(1_800_000_001_000)).unwrap();
        assert_eq!(
            list(&*s)
                .unwrap()
                .iter()
                .map(|l| l.id.clone())
                .collect::<Vec<_>>(),
            vec![a.clone(), b.clone()]
        );
        let (id, got) = read(&*s, None).unwrap();
        assert_eq!((id, got), (b.clone(), sample(1_800_000_001_000)));
        assert_eq!(prune(&*s, 1).unwrap(), vec![a]);
        assert_eq!(list(&*s).unwrap().len(), 1);
    }

    #[test]
    fn uncommitted_corrupt_and_hostile_snapshots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        // no .sha256: not listed, "latest" finds nothing
        s.put("controller/state-2026-01-01T00:00:00.000Z.json", b"{}")
            .unwrap();
        assert!(matches!(
            read(&*s, None),
            Err(StateBackupError::NoneFound(_))
        ));
        let id = write(&*s, &sample(1_800_000_000_000)).unwrap();
        let path = dir.path().join(format!("controller/{id}.json"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            read(&*s, Some(&id)),
            Err(StateBackupError::Corrupt { .. })
        ));
        assert!(matches!(
            read(&*s, Some("../../etc/passwd")),
            Err(StateBackupError::BadId(_))
        ));
    }

    #[test]
    fn a_restore_never_overwrites_a_state_without_force() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(prepare_data_dir(dir.path(), false, 1).unwrap(), None);
        std::fs::write(dir.path().join("raft.redb"), b"x").unwrap();
        assert!(
            prepare_data_dir(dir.path(), false, 1)
                .unwrap_err()
                .contains("--force")
        );
        let aside = prepare_data_dir(dir.path(), true, 1).unwrap().unwrap();
        assert_eq!(std::fs::read(aside).unwrap(), b"x");
        assert!(!dir.path().join("raft.redb").exists());
    }
}
