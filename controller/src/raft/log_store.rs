//! The Raft log, the vote and the committed index in redb. Every write is one redb transaction,
//! durable when it returns (redb's default `Durability::Immediate`), so a vote or an appended
//! entry that openraft was told about survives a crash: the two facts Raft's safety rests on.

// openraft's API returns its StorageError (large) by value; boxing it is not ours to choose.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{NodeId, TypeConfig};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

type SResult<T> = Result<T, StorageError<NodeId>>;

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_logs(openraft::AnyError::error(e)).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(openraft::AnyError::error(e)).into()
}

/// Log storage; cheap to clone (the reader openraft asks for is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Result<LogStore, redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(LogStore { db })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> SResult<Option<T>> {
        let read = self.db.begin_read().map_err(read_err)?;
        let meta = read.open_table(META).map_err(read_err)?;
        match meta.get(key).map_err(read_err)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(read_err),
            None => Ok(None),
        }
    }

    /// Write one meta key durably, off the async threads.
    async fn put_meta<T: Serialize>(&self, key: &'static str, value: &T) -> SResult<()> {
        let bytes = serde_json::to_vec(value).map_err(write_err)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> SResult<()> {
            let txn = db.begin_write().map_err(write_err)?;
            txn.open_table(META)
                .map_err(write_err)?
                .insert(key, bytes.as_slice())
                .map_err(write_err)?;
            txn.commit().map_err(write_err)
        })
        .await
        .map_err(write_err)?
    }

    fn last_entry(&self) -> SResult<Option<Entry<TypeConfig>>> {
        let read = self.db.begin_read().map_err(read_err)?;
        let log = read.open_table(LOG).map_err(read_err)?;
        match log.last().map_err(read_err)? {
            Some((_, v)) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(read_err),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry<TypeConfig>>> {
        let read = self.db.begin_read().map_err(read_err)?;
        let log = read.open_table(LOG).map_err(read_err)?;
        let mut out = Vec::new();
        for item in log.range(range).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> SResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(KEY_PURGED)?;
        let last = self.last_entry()?.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> SResult<()> {
        self.put_meta(KEY_VOTE, vote).await
    }

    async fn read_vote(&mut self) -> SResult<Option<Vote<NodeId>>> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> SResult<()> {
        self.put_meta(KEY_COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> SResult<Option<LogId<NodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> SResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, serde_json::to_vec(&e).map_err(write_err)?));
        }
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut log = txn.open_table(LOG).map_err(|e| e.to_string())?;
                for (index, bytes) in &rows {
                    log.insert(*index, bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> SResult<()> {
            let txn = db.begin_write().map_err(write_err)?;
            txn.open_table(LOG)
                .map_err(write_err)?
                .retain_in(log_id.index.., |_, _| false)
                .map_err(write_err)?;
            txn.commit().map_err(write_err)
        })
        .await
        .map_err(write_err)?
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        let bytes = serde_json::to_vec(&Some(log_id)).map_err(write_err)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> SResult<()> {
            let txn = db.begin_write().map_err(write_err)?;
            // the purge mark first, in the same transaction: never a gap without its mark
            txn.open_table(META)
                .map_err(write_err)?
                .insert(KEY_PURGED, bytes.as_slice())
                .map_err(write_err)?;
            txn.open_table(LOG)
                .map_err(write_err)?
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(write_err)?;
            txn.commit().map_err(write_err)
        })
        .await
        .map_err(write_err)?
    }
}
