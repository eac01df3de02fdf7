//! Durable home of [`ControllerState`]: an append-only command log and the applied state in one
//! redb file. Every [`Store::apply`] is one ACID transaction (log entry + new state + index), so
//! a crash leaves either the old or the new state, never a mix.
//!
//! The log is kept (trimmed to the last [`LOG_KEEP`] entries) as the audit trail of decisions and
//! as the shape openraft's log storage will take.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{ApplyError, ApplyOutcome, ControllerState, StateCommand};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_STATE: &str = "state";
const KEY_LAST_APPLIED: &str = "last_applied";

/// How many log entries are kept once applied.
pub const LOG_KEEP: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {message}")]
    Database { path: PathBuf, message: String },
    #[error("state database {path} holds a state this version cannot read: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

pub struct Store {
    path: PathBuf,
    db: Database,
    state: ControllerState,
    last_applied: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("last_applied", &self.last_applied)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the database at `path` and load the applied state.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db_err = |e: &dyn std::fmt::Display| StoreError::Database {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| db_err(&e))?;
        // Make sure the tables exist so that reads never fail on a fresh file.
        let txn = db.begin_write().map_err(|e| db_err(&e))?;
        txn.open_table(LOG).map_err(|e| db_err(&e))?;
        txn.open_table(META).map_err(|e| db_err(&e))?;
        txn.commit().map_err(|e| db_err(&e))?;

        let read = db.begin_read().map_err(|e| db_err(&e))?;
        let meta = read.open_table(META).map_err(|e| db_err(&e))?;
        let state = match meta.get(KEY_STATE).map_err(|e| db_err(&e))? {
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?,
            None => ControllerState::default(),
        };
        let last_applied = match meta.get(KEY_LAST_APPLIED).map_err(|e| db_err(&e))? {
            Some(v) => {
                let bytes: [u8; 8] = v.value().try_into().map_err(|_| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    message: "last_applied is not 8 bytes".into(),
                })?;
                u64::from_be_bytes(bytes)
            }
            None => 0,
        };
        drop(meta);
        drop(read);
        Ok(Store {
            path: path.to_path_buf(),
            db,
            state,
            last_applied,
        })
    }

    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// Apply `command` and make it durable before returning. A refused or unchanged command writes
    /// nothing.
    pub fn apply(&mut self, command: StateCommand) -> Result<ApplyOutcome, StoreError> {
        let mut next = self.state.clone();
        let outcome = next.apply(&command)?;
        if outcome == ApplyOutcome::Unchanged {
            return Ok(outcome);
        }
        let index = self.last_applied + 1;
        self.persist(index, &command, &next)?;
        self.state = next;
        self.last_applied = index;
        Ok(outcome)
    }

    fn persist(
        &self,
        index: u64,
        command: &StateCommand,
        next: &ControllerState,
    ) -> Result<(), StoreError> {
        let db_err = |e: &dyn std::fmt::Display| StoreError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let entry = serde_json::to_vec(command).map_err(|e| db_err(&e))?;
        let state = serde_json::to_vec(next).map_err(|e| db_err(&e))?;
        let txn = self.db.begin_write().map_err(|e| db_err(&e))?;
        {
            let mut log = txn.open_table(LOG).map_err(|e| db_err(&e))?;
            log.insert(index, entry.as_slice())
                .map_err(|e| db_err(&e))?;
            if index > LOG_KEEP {
                let cutoff = index - LOG_KEEP;
                log.retain_in(..cutoff, |_, _| false)
                    .map_err(|e| db_err(&e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| db_err(&e))?;
            meta.insert(KEY_STATE, state.as_slice())
                .map_err(|e| db_err(&e))?;
            meta.insert(KEY_LAST_APPLIED, index.to_be_bytes().as_slice())
                .map_err(|e| db_err(&e))?;
        }
        txn.commit().map_err(|e| db_err(&e))?;
        Ok(())
    }

    /// The logged commands from `from` on (for audit and tests).
    pub fn log_since(&self, from: u64) -> Result<Vec<(u64, StateCommand)>, StoreError> {
        let db_err = |e: &dyn std::fmt::Display| StoreError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let read = self.db.begin_read().map_err(|e| db_err(&e))?;
        let log = read.open_table(LOG).map_err(|e| db_err(&e))?;
        let mut out = Vec::new();
        for item in log.range(from..).map_err(|e| db_err(&e))? {
            let (k, v) = item.map_err(|e| db_err(&e))?;
            let cmd = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            out.push((k.value(), cmd));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_proto::domain::{Epoch, GroupName, HostName};

    #[test]
    fn state_survives_reopen_and_log_replays_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let g = GroupName::new("g").unwrap();
        let a = HostName::new("a").unwrap();
        {
            let mut store = Store::open(&path).unwrap();
            store
                .apply(StateCommand::EnsureGroup {
                    group: g.clone(),
                    initial_primary: None,
                    at_unix_ms: 1,
                })
                .unwrap();
            store
                .apply(StateCommand::RegisterMember {
                    group: g.clone(),
                    host: a.clone(),
                    at_unix_ms: 2,
                })
                .unwrap();
            store
                .apply(StateCommand::SetPrimary {
                    group: g.clone(),
                    host: a.clone(),
                    epoch: Epoch(1),
                })
                .unwrap();
            // refused: writes nothing
            assert!(
                store
                    .apply(StateCommand::SetPrimary {
                        group: g.clone(),
                        host: a.clone(),
                        epoch: Epoch(5),
                    })
                    .is_err()
            );
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_applied(), 3);
        assert_eq!(store.state().groups[&g].primary, Some(a));
        assert_eq!(store.state().groups[&g].epoch, Epoch(1));

        let mut replayed = ControllerState::default();
        for (_, cmd) in store.log_since(0).unwrap() {
            replayed.apply(&cmd).unwrap();
        }
        assert_eq!(&replayed, store.state());
    }
}
