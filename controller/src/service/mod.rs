//! The controller runtime: the shared [`Controller`] (desired state in the store, observed state
//! in memory, live agent sessions) and the gRPC services on top of it.

pub mod admin;
pub mod agent_session;
pub mod auth;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dr_proto::domain::{
    Action, Command, CommandResult, CommandUpdate, ControllerMessage, GroupName, HealthReport,
    Hello, HostName, ReportAck, Role, StatusView, UpdateKind, Welcome,
};
use dr_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::config::ControllerConfig;
use crate::observed::{MemberKey, Observed};
use crate::state::store::{Store, StoreError};
use crate::state::{ControllerState, StateCommand};
use crate::status::{ViewContext, build_status};

/// Messages to one agent; `Err` ends its stream with that status.
pub type Outbox = mpsc::Sender<Result<pb::ControllerMessage, Status>>;

struct SessionHandle {
    id: u64,
    outbox: Outbox,
}

pub struct Controller {
    pub config: ControllerConfig,
    pub insecure_dev: bool,
    /// Cancelled when the controller shuts down; live sessions end on it.
    pub shutdown: CancellationToken,
    store: Mutex<Store>,
    observed: Mutex<Observed>,
    sessions: Mutex<HashMap<MemberKey, SessionHandle>>,
    pending: Mutex<HashMap<String, oneshot::Sender<CommandResult>>>,
    next_id: AtomicU64,
    sessions_opened: AtomicU64,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug; the data itself stays consistent
    // because every mutation is a single call.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn internal(e: StoreError) -> Status {
    tracing::error!(error = %e, "state store failure");
    Status::internal(format!("controller state store: {e}"))
}

impl Controller {
    /// Open the state store in `config.data_dir` and make sure every configured group exists.
    pub fn open(
        config: ControllerConfig,
        insecure_dev: bool,
        shutdown: CancellationToken,
    ) -> Result<Controller, StoreError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StoreError::Database {
            path: config.data_dir.clone(),
            message: format!("cannot create data_dir: {e}"),
        })?;
        let mut store = Store::open(&config.data_dir.join("controller.redb"))?;
        for g in &config.groups {
            store.apply(StateCommand::EnsureGroup {
                group: g.name.clone(),
                initial_primary: g.primary.clone(),
                at_unix_ms: unix_ms(),
            })?;
        }
        Ok(Controller {
            config,
            insecure_dev,
            shutdown,
            store: Mutex::new(store),
            observed: Mutex::new(Observed::default()),
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            sessions_opened: AtomicU64::new(0),
        })
    }

    pub fn id(&self) -> &str {
        self.config.id.as_str()
    }

    /// A copy of the desired state.
    pub fn state(&self) -> ControllerState {
        lock(&self.store).state().clone()
    }

    pub fn last_applied(&self) -> u64 {
        lock(&self.store).last_applied()
    }

    pub fn sessions_opened(&self) -> u64 {
        self.sessions_opened.load(Ordering::Relaxed)
    }

    pub fn status_view(&self) -> StatusView {
        let state = self.state();
        let observed = lock(&self.observed);
        let ctx = ViewContext {
            controller_id: self.id(),
            leader: true,
            now: Instant::now(),
            now_unix_ms: unix_ms(),
            stale_after: self.config.stale_after,
            thresholds: &self.config.thresholds,
        };
        build_status(&state, &observed, &ctx)
    }

    fn role_of(state: &ControllerState, group: &GroupName, host: &HostName) -> Role {
        match state.group(group).and_then(|g| g.primary.as_ref()) {
            Some(p) if p == host => Role::Primary,
            _ => Role::Replica,
        }
    }

    /// Register the member if new, give the group a primary if it has none, and record the
    /// session (replacing an older one of the same host).
    pub fn open_session(&self, hello: &Hello, outbox: Outbox) -> Result<(u64, Welcome), Status> {
        let group = hello.group.clone();
        let host = hello.host.clone();
        let configured_primary = self
            .config
            .groups
            .iter()
            .find(|g| g.name == group)
            .and_then(|g| g.primary.clone());
        let state = {
            let mut store = lock(&self.store);
            let Some(g) = store.state().group(&group) else {
                return Err(Status::failed_precondition(format!(
                    "group `{group}` is not configured on controller {}: add [[group]] name = \"{group}\" to its config, or fix `group` in the agent config",
                    self.id()
                )));
            };
            let known = g.members.contains_key(&host);
            let needs_primary =
                g.primary.is_none() && configured_primary.as_ref().is_none_or(|p| *p == host);
            let next_epoch = g.epoch.next();
            if !known {
                store
                    .apply(StateCommand::RegisterMember {
                        group: group.clone(),
                        host: host.clone(),
                        at_unix_ms: unix_ms(),
                    })
                    .map_err(internal)?;
                tracing::info!(%group, %host, "member registered");
            }
            if needs_primary {
                store
                    .apply(StateCommand::SetPrimary {
                        group: group.clone(),
                        host: host.clone(),
                        epoch: next_epoch,
                    })
                    .map_err(internal)?;
                tracing::info!(%group, %host, epoch = %next_epoch, "first primary of the group");
            }
            store.state().clone()
        };
        let g = state.group(&group).expect("group checked above");
        let session_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = (group.clone(), host.clone());
        lock(&self.observed).session_opened(
            key.clone(),
            session_id,
            hello.agent_version.clone(),
            hello.capabilities.clone(),
            Instant::now(),
        );
        let previous = lock(&self.sessions).insert(
            key,
            SessionHandle {
                id: session_id,
                outbox,
            },
        );
        if let Some(prev) = previous {
            // The old stream is dead or about to be: tell it so it stops competing.
            let _ = prev.outbox.try_send(Err(Status::aborted(
                "replaced by a newer session of the same host",
            )));
        }
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%group, %host, session_id, version = %hello.agent_version, "agent session opened");
        Ok((
            session_id,
            Welcome {
                controller_id: self.id().to_string(),
                epoch: g.epoch,
                role: Self::role_of(&state, &group, &host),
                primary: g.primary.clone(),
            },
        ))
    }

    /// Record a report; `None` when the session was superseded and must end.
    pub fn record_report(
        &self,
        key: &MemberKey,
        session_id: u64,
        report: HealthReport,
    ) -> Option<ReportAck> {
        let seq = report.seq;
        if !lock(&self.observed).report(key, session_id, report, Instant::now()) {
            return None;
        }
        let store = lock(&self.store);
        let state = store.state();
        let g = state.group(&key.0)?;
        Some(ReportAck {
            seq,
            epoch: g.epoch,
            role: Self::role_of(state, &key.0, &key.1),
            primary: g.primary.clone(),
        })
    }

    pub fn close_session(&self, key: &MemberKey, session_id: u64) {
        lock(&self.observed).session_closed(key, session_id, Instant::now());
        let mut sessions = lock(&self.sessions);
        if sessions.get(key).is_some_and(|s| s.id == session_id) {
            sessions.remove(key);
        }
        tracing::info!(group = %key.0, host = %key.1, session_id, "agent session closed");
    }

    pub fn command_update(&self, key: &MemberKey, update: CommandUpdate) {
        match update.update {
            UpdateKind::Progress {
                message,
                done,
                total,
            } => {
                tracing::debug!(host = %key.1, command = %update.command_id, %message, done, total, "command progress");
            }
            UpdateKind::Result(result) => {
                let waiter = lock(&self.pending).remove(&update.command_id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(result);
                    }
                    None => {
                        tracing::warn!(host = %key.1, command = %update.command_id, "result for an unknown or expired command")
                    }
                }
            }
        }
    }

    /// Send `action` to the agent of `host` and wait for its result.
    pub async fn run_command(
        &self,
        group: &GroupName,
        host: &HostName,
        action: Action,
        timeout: Duration,
    ) -> Result<CommandResult, Status> {
        let key = (group.clone(), host.clone());
        let (outbox, capable) = {
            let sessions = lock(&self.sessions);
            let Some(s) = sessions.get(&key) else {
                return Err(Status::unavailable(format!(
                    "no live session from the agent of `{host}` in group `{group}`"
                )));
            };
            let observed = lock(&self.observed);
            let capable = observed
                .get(&key)
                .is_some_and(|o| o.capabilities.iter().any(|c| c == action.capability()));
            (s.outbox.clone(), capable)
        };
        if !capable {
            return Err(Status::failed_precondition(format!(
                "the agent of `{host}` does not offer `{}`",
                action.capability()
            )));
        }
        let epoch = self
            .state()
            .group(group)
            .map(|g| g.epoch)
            .unwrap_or_default();
        let id = format!(
            "{}-{}",
            self.id(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), tx);
        let command = Command {
            id: id.clone(),
            epoch,
            action,
        };
        if outbox
            .send(Ok(ControllerMessage::Command(command).into()))
            .await
            .is_err()
        {
            lock(&self.pending).remove(&id);
            return Err(Status::unavailable(format!(
                "the session of `{host}` just ended"
            )));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) | Err(_) => {
                lock(&self.pending).remove(&id);
                Err(Status::deadline_exceeded(format!(
                    "no result from the agent of `{host}` within {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }
}
