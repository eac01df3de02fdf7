//! The replicated state machine: [`ControllerState`] and the single `apply(command)` entry point,
//! fed by committed Raft entries in log order on every controller, so every controller holds
//! the same desired state.
//!
//! The state lives in memory; what makes it durable is the Raft log (replayed from the last
//! snapshot on start, up to the committed index the log store kept) and the snapshots, which
//! are written to redb whole when openraft builds or installs one.

// openraft's API returns its StorageError (large) by value; boxing it is not ours to choose.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{ControllerNode, NodeId, RaftRequest, RaftResponse, TypeConfig};
use crate::state::ControllerState;

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const KEY_META: &str = "meta";
const KEY_DATA: &str = "data";

type SResult<T> = Result<T, StorageError<NodeId>>;

fn sm_read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(openraft::AnyError::error(e)).into()
}

fn snap_write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, openraft::AnyError::error(e)).into()
}

fn snap_read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, openraft::AnyError::error(e)).into()
}

/// A snapshot's metadata and its bytes.
type StoredSnapshot = (SnapshotMeta<NodeId, ControllerNode>, Vec<u8>);

/// What every controller agrees on, and up to which log entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, ControllerNode>,
    pub state: ControllerState,
}

/// A read handle on the applied state, for the runtime and the read-only endpoints.
pub type AppliedView = Arc<RwLock<Applied>>;

pub struct StateMachine {
    db: Arc<Database>,
    applied: AppliedView,
    snapshots_built: u64,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Open on `db`, starting from the last snapshot there (if any).
    pub fn open(db: Arc<Database>) -> Result<StateMachine, String> {
        {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())?;
        }
        let sm = StateMachine {
            db,
            applied: Arc::default(),
            snapshots_built: 0,
        };
        if let Some((_, data)) = sm.stored_snapshot().map_err(|e| e.to_string())? {
            let body: Applied = serde_json::from_slice(&data)
                .map_err(|e| format!("the stored snapshot is not readable: {e}"))?;
            *sm.applied.write().unwrap_or_else(|e| e.into_inner()) = body;
        }
        Ok(sm)
    }

    pub fn view(&self) -> AppliedView {
        self.applied.clone()
    }

    fn stored_snapshot(&self) -> SResult<Option<StoredSnapshot>> {
        let read = self.db.begin_read().map_err(snap_read_err)?;
        let table = read.open_table(SNAPSHOT).map_err(snap_read_err)?;
        let meta = table.get(KEY_META).map_err(snap_read_err)?;
        let data = table.get(KEY_DATA).map_err(snap_read_err)?;
        match (meta, data) {
            (Some(m), Some(d)) => Ok(Some((
                serde_json::from_slice(m.value()).map_err(snap_read_err)?,
                d.value().to_vec(),
            ))),
            _ => Ok(None),
        }
    }

    async fn store_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, ControllerNode>,
        data: Vec<u8>,
    ) -> SResult<()> {
        let meta = serde_json::to_vec(meta).map_err(snap_write_err)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> SResult<()> {
            let txn = db.begin_write().map_err(snap_write_err)?;
            {
                let mut t = txn.open_table(SNAPSHOT).map_err(snap_write_err)?;
                t.insert(KEY_META, meta.as_slice())
                    .map_err(snap_write_err)?;
                t.insert(KEY_DATA, data.as_slice())
                    .map_err(snap_write_err)?;
            }
            txn.commit().map_err(snap_write_err)
        })
        .await
        .map_err(snap_write_err)?
    }
}

/// Apply one request: every command in order; a refused command changes nothing and says why
/// (`ControllerState::apply` checks everything before its first change, so no copy of the
/// state is needed to undo one: a copy per command made every commit cost the whole state).
pub fn apply_request(state: &mut ControllerState, request: &RaftRequest) -> RaftResponse {
    if let Some(replacement) = &request.replace {
        *state = (**replacement).clone();
    }
    let outcomes = request
        .commands
        .iter()
        .map(|cmd| match state.apply(cmd) {
            Ok(outcome) => Ok(outcome == crate::state::ApplyOutcome::Changed),
            Err(e) => Err(e.to_string()),
        })
        .collect();
    RaftResponse { outcomes }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> SResult<Snapshot<TypeConfig>> {
        let body = self
            .applied
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let data = serde_json::to_vec(&body).map_err(snap_write_err)?;
        self.snapshots_built += 1;
        let snapshot_id = match &body.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshots_built),
            None => format!("empty-{}", self.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: body.last_applied,
            last_membership: body.membership.clone(),
            snapshot_id,
        };
        self.store_snapshot(&meta, data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> SResult<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, ControllerNode>,
    )> {
        let a = self.applied.read().map_err(sm_read_err)?;
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> SResult<Vec<RaftResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut a = self.applied.write().unwrap_or_else(|e| e.into_inner());
        let mut responses = Vec::new();
        for entry in entries {
            a.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => RaftResponse::default(),
                EntryPayload::Normal(request) => apply_request(&mut a.state, &request),
                EntryPayload::Membership(m) => {
                    a.membership = StoredMembership::new(Some(entry.log_id), m);
                    RaftResponse::default()
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachine {
            db: self.db.clone(),
            applied: self.applied.clone(),
            snapshots_built: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> SResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ControllerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SResult<()> {
        let data = snapshot.into_inner();
        let mut body: Applied = serde_json::from_slice(&data).map_err(snap_read_err)?;
        body.last_applied = meta.last_log_id;
        body.membership = meta.last_membership.clone();
        self.store_snapshot(meta, data).await?;
        *self.applied.write().unwrap_or_else(|e| e.into_inner()) = body;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.stored_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
