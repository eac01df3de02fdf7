//! The controller's runtime: one task owns the decision core (while this controller leads the
//! controller cluster), takes events from agent sessions, operators, timers and its own I/O
//! tasks, and executes the core's commands in order — a `Persist` is committed through Raft
//! (a quorum of controllers has it) before anything after it runs. Leadership changes are in
//! [`leadership`].

mod leadership;
mod state_backups;

pub(crate) use leadership::not_leader_status;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dr_proto::domain::{
    Action, Command as AgentCommand, CommandUpdate, ControllerMessage, GroupName, Hello, Incident,
    IncidentId, RoleChange, StatusView, UpdateKind,
};
use dr_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::lb;
use super::notify::Notifier;
use crate::config::ControllerConfig;
use crate::decide::{
    ActionReply, Command, Decider, Event, MemberKey, Now, OperatorRequest, ReplyError,
};
use crate::metrics::{BackupFacts, ControllerFacts, render};
use crate::raft::node::{NodeError, RaftNode};
use crate::state::{CatalogEntry, ControllerState, DrillRecord};
use crate::status::build_status;

/// Messages to one agent; `Err` ends its stream with that status.
pub type Outbox = mpsc::Sender<Result<pb::ControllerMessage, Status>>;

/// A core `Tick` this late (inputs kept coming first) means the controller is behind.
const TICK_LATE: Duration = Duration::from_secs(1);

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) enum Input {
    SessionOpened {
        key: MemberKey,
        session: u64,
        hello: Hello,
        outbox: Outbox,
    },
    Agent(Event),
    CommandUpdate {
        key: MemberKey,
        update: CommandUpdate,
    },
    Operator {
        request: OperatorRequest,
        reply: oneshot::Sender<Result<ActionReply, ReplyError>>,
    },
    Status(oneshot::Sender<StatusView>),
    History {
        group: Option<GroupName>,
        limit: usize,
        reply: oneshot::Sender<(Vec<RoleChange>, Vec<Incident>)>,
    },
    Incident {
        id: IncidentId,
        reply: oneshot::Sender<Option<Incident>>,
    },
    /// Every open incident, newest first (the dashboard).
    OpenIncidents(oneshot::Sender<Vec<Incident>>),
    Metrics(oneshot::Sender<String>),
    Catalog {
        group: GroupName,
        reply: oneshot::Sender<(Vec<CatalogEntry>, Option<DrillRecord>)>,
    },
    Progress {
        group: GroupName,
        action: Option<u64>,
        reply: oneshot::Sender<ProgressReply>,
    },
    /// A command that is not a decision (ping, logs, diagnostics): its updates go to `updates`.
    Direct {
        key: MemberKey,
        action: Action,
        updates: mpsc::Sender<UpdateKind>,
        reply: oneshot::Sender<Result<(), Status>>,
    },
}

/// Running backup-type actions, and how the asked-for action ended if it has.
pub type ProgressReply = (Vec<ActionProgress>, Option<Result<String, String>>);

/// A running backup-type action and what its agent last said about it.
#[derive(Clone, Debug)]
pub struct ActionProgress {
    pub id: u64,
    pub kind: &'static str,
    pub host: String,
    pub message: String,
    pub done: u64,
    pub total: u64,
}

/// What request handlers hold: a way into the runtime.
pub struct Shared {
    pub config: ControllerConfig,
    pub insecure_dev: bool,
    pub shutdown: CancellationToken,
    /// This controller's Raft node (membership, standing, the replicated state).
    pub raft: RaftNode,
    /// When a controller-state backup last succeeded here (0: never).
    pub state_backup_ok_unix_ms: AtomicU64,
    tx: mpsc::Sender<Input>,
    next_session: AtomicU64,
}

fn gone() -> Status {
    Status::unavailable("controller shutting down")
}

impl Shared {
    pub fn id(&self) -> &str {
        self.config.id.as_str()
    }

    pub fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) async fn send(&self, input: Input) -> Result<(), Status> {
        self.tx.send(input).await.map_err(|_| gone())
    }

    pub async fn agent_event(&self, event: Event) -> Result<(), Status> {
        self.send(Input::Agent(event)).await
    }

    pub async fn operator(
        &self,
        request: OperatorRequest,
    ) -> Result<Result<ActionReply, ReplyError>, Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Operator { request, reply }).await?;
        rx.await.map_err(|_| gone())
    }

    pub async fn status(&self) -> Result<StatusView, Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Status(reply)).await?;
        rx.await.map_err(|_| gone())
    }

    /// The status of every group, or of `group` only (empty: every group); NotFound for a group
    /// nobody configured. drctl (over gRPC) and the JSON API both answer with this.
    pub async fn status_of(&self, group: &str) -> Result<StatusView, Status> {
        let mut view = self.status().await?;
        if !group.is_empty() {
            view.groups.retain(|g| g.name.as_str() == group);
            if view.groups.is_empty() {
                return Err(Status::not_found(format!("no group named `{group}`")));
            }
        }
        Ok(view)
    }

    pub async fn history(
        &self,
        group: Option<GroupName>,
        limit: usize,
    ) -> Result<(Vec<RoleChange>, Vec<Incident>), Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::History {
            group,
            limit,
            reply,
        })
        .await?;
        rx.await.map_err(|_| gone())
    }

    pub async fn incident(&self, id: IncidentId) -> Result<Option<Incident>, Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Incident { id, reply }).await?;
        rx.await.map_err(|_| gone())
    }

    /// Every open incident of every group, newest first (however old: an incident stays open
    /// until it is resolved, so a history limit could hide it).
    pub async fn open_incidents(&self) -> Result<Vec<Incident>, Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::OpenIncidents(reply)).await?;
        rx.await.map_err(|_| gone())
    }

    pub async fn catalog(
        &self,
        group: GroupName,
    ) -> Result<(Vec<CatalogEntry>, Option<DrillRecord>), Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Catalog { group, reply }).await?;
        rx.await.map_err(|_| gone())
    }

    /// Running backup-type actions of `group`, and how `action` ended if it has.
    pub async fn progress(
        &self,
        group: GroupName,
        action: Option<u64>,
    ) -> Result<ProgressReply, Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Progress {
            group,
            action,
            reply,
        })
        .await?;
        rx.await.map_err(|_| gone())
    }

    pub async fn metrics(&self) -> Result<String, Status> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Metrics(reply)).await?;
        rx.await.map_err(|_| gone())
    }

    /// Start a non-decision command on an agent; its updates arrive on the returned receiver.
    pub async fn direct(
        &self,
        key: MemberKey,
        action: Action,
    ) -> Result<mpsc::Receiver<UpdateKind>, Status> {
        let (updates, rx_updates) = mpsc::channel(64);
        let (reply, rx) = oneshot::channel();
        self.send(Input::Direct {
            key,
            action,
            updates,
            reply,
        })
        .await?;
        rx.await.map_err(|_| gone())??;
        Ok(rx_updates)
    }
}

struct Runtime {
    shared: Arc<Shared>,
    /// The decision core: only while this controller leads (see [`leadership`]).
    decider: Option<Decider>,
    raft: RaftNode,
    /// Since when the leader has lacked a fresh quorum acknowledgement.
    stale_since: Option<Instant>,
    /// The Raft term the decision core was built in.
    leader_term: u64,
    /// When the last scheduled controller-state backup started, and whether one runs.
    last_state_backup: Option<Instant>,
    state_backup_running: Arc<std::sync::atomic::AtomicBool>,
    origin: Instant,
    sessions: HashMap<MemberKey, (u64, Outbox)>,
    replies: HashMap<u64, oneshot::Sender<Result<ActionReply, ReplyError>>>,
    next_request: u64,
    direct: HashMap<String, (MemberKey, mpsc::Sender<UpdateKind>)>,
    next_direct: u64,
    internal: mpsc::Sender<Event>,
    notifier: Arc<Notifier>,
    restarts_total: HashMap<MemberKey, u64>,
    sessions_opened: u64,
    /// Latest progress of running actions (by command id).
    progress: HashMap<String, (String, u64, u64)>,
}

/// Start this controller's Raft node and the runtime task. The decision core is built when (and
/// each time) this controller becomes the leader.
pub async fn start(
    config: ControllerConfig,
    insecure_dev: bool,
    shutdown: CancellationToken,
    tls: Option<Arc<dr_proto::tls::TlsMaterial>>,
) -> Result<(Arc<Shared>, tokio::task::JoinHandle<()>), StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartError::Raft(NodeError::Store {
            path: config.data_dir.display().to_string(),
            message: format!("cannot create data_dir: {e}"),
        })
    })?;
    let notifier = Arc::new(Notifier::load(&config.notify).map_err(StartError::Notify)?);
    let raft = RaftNode::start(
        &config.data_dir,
        config.node.clone(),
        config.cluster.clone(),
        tls,
    )
    .await
    .map_err(StartError::Raft)?;
    let (tx, rx) = mpsc::channel(8192);
    let (internal, internal_rx) = mpsc::channel(1024);
    let shared = Arc::new(Shared {
        config,
        insecure_dev,
        shutdown,
        raft: raft.clone(),
        state_backup_ok_unix_ms: AtomicU64::new(0),
        tx,
        next_session: AtomicU64::new(1),
    });
    let runtime = Runtime {
        shared: shared.clone(),
        decider: None,
        raft,
        stale_since: None,
        leader_term: 0,
        last_state_backup: None,
        state_backup_running: Arc::default(),
        origin: Instant::now(),
        sessions: HashMap::new(),
        replies: HashMap::new(),
        next_request: 1,
        direct: HashMap::new(),
        next_direct: 1,
        internal,
        notifier,
        restarts_total: HashMap::new(),
        sessions_opened: 0,
        progress: HashMap::new(),
    };
    // The decision loop gets a thread of its own: on the shared workers it waited behind
    // thousands of agent connections' TLS work, and every lease grant waited with it.
    let handle = tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("dr-decide")
            .build()
        {
            Ok(rt) => rt.block_on(runtime.run(rx, internal_rx)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the decision loop's runtime");
                runtime.shared.shutdown.cancel();
            }
        }
    });
    Ok((shared, handle))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Raft(NodeError),
    #[error("notify: {0}")]
    Notify(String),
}

impl Runtime {
    fn now(&self) -> Now {
        Now {
            mono: self.origin.elapsed(),
            unix_ms: unix_ms(),
        }
    }

    /// The event loop. Order matters when several things are ready (`biased`):
    /// - leadership checks come first, on their own timer, so a busy leader still notices a
    ///   lost quorum within `STALE_STEP_DOWN` and stops granting leases;
    /// - agents' inputs (reports, lease requests) come before the core's `Tick`: the core judges
    ///   a host silent only once every report that has arrived is processed, so a controller
    ///   that falls behind (a burst of sessions, a slow disk) does not mistake its own backlog
    ///   for dead hosts — which used to open incidents, whose commits slowed it further. Under a
    ///   sustained overload time-based decisions wait (and a warning says so) rather than being
    ///   taken on stale data.
    async fn run(mut self, mut rx: mpsc::Receiver<Input>, mut internal_rx: mpsc::Receiver<Event>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut lead_tick = tokio::time::interval(Duration::from_millis(100));
        lead_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let shutdown = self.shared.shutdown.clone();
        let mut metrics = self.raft.raft.metrics();
        let mut last_tick = Instant::now();
        let mut warned_behind = false;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = lead_tick.tick() => {
                    self.leadership().await;
                    self.state_backup_due();
                }
                changed = metrics.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.leadership().await;
                }
                Some(ev) = internal_rx.recv() => self.decide(ev).await,
                input = rx.recv() => match input {
                    Some(input) => {
                        self.input(input).await;
                        if last_tick.elapsed() > TICK_LATE && !warned_behind {
                            warned_behind = true;
                            tracing::warn!(behind_ms = last_tick.elapsed().as_millis() as u64, "controller behind on agent messages: time-based decisions wait until it catches up");
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    last_tick = Instant::now();
                    warned_behind = false;
                    self.decide(Event::Tick).await;
                }
            }
        }
        for (_, (_, outbox)) in self.sessions.drain() {
            let _ = outbox.try_send(Err(Status::unavailable("controller shutting down")));
        }
        if let Err(e) = self.raft.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }

    /// Feed one event to the decision core (if this controller leads) and execute what it
    /// decides. Without a fresh quorum the leader neither grants leases nor acts on time.
    async fn decide(&mut self, event: Event) {
        let now = self.now();
        let fresh = self.stale_since.is_none();
        let Some(decider) = self.decider.as_mut() else {
            return;
        };
        if !fresh && matches!(event, Event::Tick | Event::LeaseRequest { .. }) {
            return;
        }
        let commands = decider.handle(event, now);
        self.execute_all(commands).await;
    }

    /// Execute in order; consecutive `Persist`s are committed as one Raft entry before the
    /// next command runs. A commit that fails ends the batch and this controller's leadership
    /// (nothing after it may run, or an agent could hear of a decision that is not durable).
    async fn execute_all(&mut self, commands: Vec<Command>) {
        let mut batch = Vec::new();
        for c in commands {
            match c {
                Command::Persist(cmd) => batch.push(cmd),
                other => {
                    if !batch.is_empty() && !self.commit(std::mem::take(&mut batch)).await {
                        return;
                    }
                    self.execute(other);
                }
            }
        }
        if !batch.is_empty() {
            self.commit(batch).await;
        }
    }

    /// The replicated state: the core's copy while leading, else the applied one.
    fn with_state<R>(&self, f: impl FnOnce(&ControllerState) -> R) -> R {
        match &self.decider {
            Some(d) => f(d.desired()),
            None => {
                let applied = self.raft.applied.read().unwrap_or_else(|e| e.into_inner());
                f(&applied.state)
            }
        }
    }

    async fn input(&mut self, input: Input) {
        match input {
            Input::SessionOpened {
                key,
                session,
                hello,
                outbox,
            } => {
                if self.decider.is_none() {
                    let _ = outbox.try_send(Err(self.raft.not_leader()));
                    return;
                }
                if let Some((_, old)) = self.sessions.insert(key.clone(), (session, outbox)) {
                    let _ = old.try_send(Err(Status::aborted(
                        "replaced by a newer session of the same host",
                    )));
                }
                self.sessions_opened += 1;
                tracing::info!(group = %key.0, host = %key.1, session, version = %hello.agent_version, "agent session opened");
                self.decide(Event::SessionOpened {
                    key,
                    session,
                    hello,
                })
                .await;
            }
            Input::Agent(event) => {
                if let Event::SessionClosed { key, session } = &event {
                    if self.sessions.get(key).is_some_and(|(s, _)| s == session) {
                        self.sessions.remove(key);
                        self.direct.retain(|_, (k, _)| k != key);
                    }
                    tracing::info!(group = %key.0, host = %key.1, session, "agent session closed");
                }
                self.decide(event).await;
            }
            Input::CommandUpdate { key, update } => self.command_update(key, update).await,
            Input::Operator { request, reply } => {
                if self.decider.is_none() {
                    let _ = reply.send(Err(ReplyError::Refused(self.raft.not_leader_message())));
                    return;
                }
                let id = self.next_request;
                self.next_request += 1;
                self.replies.insert(id, reply);
                tracing::info!(?request, "operator request");
                self.decide(Event::Operator {
                    request_id: id,
                    request,
                })
                .await;
            }
            Input::Status(reply) => {
                let _ = reply.send(self.status_view());
            }
            Input::History {
                group,
                limit,
                reply,
            } => {
                let keep = |g: &GroupName| group.as_ref().is_none_or(|w| w == g);
                let (mut changes, mut incidents) = self.with_state(|state| {
                    (
                        state
                            .role_changes
                            .iter()
                            .filter(|c| keep(&c.group))
                            .cloned()
                            .collect::<Vec<RoleChange>>(),
                        state
                            .incidents
                            .values()
                            .filter(|i| keep(&i.group))
                            .cloned()
                            .collect::<Vec<Incident>>(),
                    )
                });
                changes.reverse();
                incidents.reverse();
                changes.truncate(limit);
                incidents.truncate(limit);
                let _ = reply.send((changes, incidents));
            }
            Input::Incident { id, reply } => {
                let _ = reply.send(self.with_state(|s| s.incidents.get(&id).cloned()));
            }
            Input::OpenIncidents(reply) => {
                let open = self.with_state(|s| {
                    s.incidents
                        .values()
                        .rev()
                        .filter(|i| i.is_open())
                        .cloned()
                        .collect()
                });
                let _ = reply.send(open);
            }
            Input::Metrics(reply) => {
                let view = self.status_view();
                let last_applied = self
                    .raft
                    .raft
                    .metrics()
                    .borrow()
                    .last_applied
                    .map(|l| l.index)
                    .unwrap_or(0);
                let metrics =
                    self.with_state(|state| self.metrics_text(&view, state, last_applied));
                let _ = reply.send(metrics);
            }
            Input::Catalog { group, reply } => {
                let _ = reply.send(self.with_state(|state| {
                    (
                        state.backups.get(&group).cloned().unwrap_or_default(),
                        state.drills.get(&group).cloned(),
                    )
                }));
            }
            Input::Progress {
                group,
                action,
                reply,
            } => {
                let Some(decider) = &self.decider else {
                    let _ = reply.send((Vec::new(), None));
                    return;
                };
                let finished = action.and_then(|id| decider.finished_backup_action(&group, id));
                let running = decider
                    .running_backup_actions()
                    .into_iter()
                    .filter(|(_, _, key)| key.0 == group)
                    .map(|(id, kind, key)| {
                        let (message, done, total) = self
                            .progress
                            .get(&id.to_string())
                            .cloned()
                            .unwrap_or_default();
                        ActionProgress {
                            id,
                            kind,
                            host: key.1.to_string(),
                            message,
                            done,
                            total,
                        }
                    })
                    .collect();
                let _ = reply.send((running, finished));
            }
            Input::Direct {
                key,
                action,
                updates,
                reply,
            } => {
                let _ = reply.send(self.direct_command(key, action, updates));
            }
        }
    }

    fn metrics_text(
        &self,
        view: &StatusView,
        state: &ControllerState,
        last_applied: u64,
    ) -> String {
        let facts = ControllerFacts {
            sessions_opened_total: self.sessions_opened,
            last_applied,
            restarts_total: self
                .restarts_total
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            incidents_open: state
                .groups
                .keys()
                .map(|g| {
                    (
                        g.clone(),
                        state
                            .incidents
                            .values()
                            .filter(|i| i.is_open() && &i.group == g)
                            .count() as u64,
                    )
                })
                .collect(),
            backups: Vec::new(),
            rpo_target_s: 0,
            controller_backup_unix_s: None,
            leading: self.decider.is_some() && self.stale_since.is_none(),
            raft_term: self.leader_term.max(self.raft.standing().term),
        };
        let now_ms = unix_ms();
        let facts = ControllerFacts {
            backups: state
                .groups
                .keys()
                .map(|g| {
                    let list = state.backups.get(g);
                    let newest = list.and_then(|l| l.last());
                    let drill = state.drills.get(g);
                    BackupFacts {
                        group: g.clone(),
                        last_success_unix_s: newest
                            .map(|e| e.record.created_at_unix_ms as f64 / 1000.0),
                        age_s: newest.map(|e| {
                            now_ms.saturating_sub(e.record.created_at_unix_ms) as f64 / 1000.0
                        }),
                        last_size_bytes: newest.map(|e| e.record.size_bytes),
                        last_duration_s: newest.map(|e| e.record.duration_ms as f64 / 1000.0),
                        count: list.map(Vec::len).unwrap_or(0),
                        drill_last_success_unix_s: drill
                            .and_then(|d| d.last_ok_at_unix_ms)
                            .map(|t| t as f64 / 1000.0),
                        drill_last_ok: drill.map(|d| d.outcome.ok),
                    }
                })
                .collect(),
            rpo_target_s: self.shared.config.rpo_target_s,
            controller_backup_unix_s: match self
                .shared
                .state_backup_ok_unix_ms
                .load(Ordering::SeqCst)
            {
                0 => None,
                ms => Some(ms as f64 / 1000.0),
            },
            ..facts
        };
        render(view, &facts)
    }

    fn status_view(&self) -> StatusView {
        self.with_state(|state| {
            build_status(
                state,
                self.decider.as_ref(),
                self.shared.id(),
                self.decider.is_some(),
                self.now(),
                self.shared.config.stale_after,
            )
        })
    }

    fn direct_command(
        &mut self,
        key: MemberKey,
        action: Action,
        updates: mpsc::Sender<UpdateKind>,
    ) -> Result<(), Status> {
        let Some(decider) = &self.decider else {
            return Err(self.raft.not_leader());
        };
        let Some((_, outbox)) = self.sessions.get(&key) else {
            return Err(Status::unavailable(format!(
                "no live session from the agent of `{}` in group `{}`",
                key.1, key.0
            )));
        };
        let capable = decider
            .member(&key)
            .is_some_and(|m| m.can(action.capability()));
        if !capable {
            return Err(Status::failed_precondition(format!(
                "the agent of `{}` does not offer `{}`",
                key.1,
                action.capability()
            )));
        }
        let id = format!("d{}", self.next_direct);
        self.next_direct += 1;
        let epoch = decider
            .desired()
            .group(&key.0)
            .map(|g| g.epoch)
            .unwrap_or_default();
        let message = ControllerMessage::Command(AgentCommand {
            id: id.clone(),
            epoch,
            action,
        });
        outbox.try_send(Ok(message.into())).map_err(|_| {
            Status::unavailable(format!("the session of `{}` is congested or closed", key.1))
        })?;
        self.direct.insert(id, (key, updates));
        Ok(())
    }

    async fn command_update(&mut self, key: MemberKey, update: CommandUpdate) {
        if let Some((_, sink)) = self.direct.get(&update.command_id) {
            let done = matches!(update.update, UpdateKind::Result(_));
            if sink.try_send(update.update).is_err() && !done {
                tracing::debug!(command = %update.command_id, "reader of a streamed command is slow or gone");
            }
            if done {
                self.direct.remove(&update.command_id);
            }
            return;
        }
        match (update.command_id.parse::<u64>(), update.update) {
            (Ok(id), UpdateKind::Result(r)) => {
                self.progress.remove(&update.command_id);
                self.decide(Event::ActionResult {
                    id,
                    outcome: r.outcome,
                })
                .await
            }
            (
                Ok(_),
                UpdateKind::Progress {
                    message,
                    done,
                    total,
                },
            ) => {
                tracing::debug!(host = %key.1, command = %update.command_id, %message, done, total, "action progress");
                self.progress
                    .insert(update.command_id.clone(), (message, done, total));
            }
            _ => {
                tracing::debug!(host = %key.1, command = %update.command_id, "update for an unknown command")
            }
        }
    }

    /// Execute one command that is not a `Persist` (those go through [`Self::commit`]).
    fn execute(&mut self, command: Command) {
        match command {
            Command::Persist(cmd) => {
                tracing::error!(command = ?cmd, "a Persist reached execute: dropped (bug)");
            }
            Command::ToAgent {
                key,
                session,
                message,
            } => {
                let message = match message {
                    ControllerMessage::Welcome(mut w) => {
                        w.controller_id = self.shared.id().to_string();
                        ControllerMessage::Welcome(w)
                    }
                    ControllerMessage::Command(c) => {
                        if matches!(c.action, Action::Restart { .. }) {
                            *self.restarts_total.entry(key.clone()).or_default() += 1;
                        }
                        tracing::info!(host = %key.1, id = %c.id, epoch = %c.epoch, action = ?c.action, "command to agent");
                        ControllerMessage::Command(c)
                    }
                    other => other,
                };
                if let Some((current, outbox)) = self.sessions.get(&key)
                    && session.is_none_or(|s| s == *current)
                    && outbox.try_send(Ok(message.into())).is_err()
                {
                    tracing::warn!(host = %key.1, "agent session congested: message dropped");
                }
            }
            Command::RefuseSession {
                key,
                session,
                reason,
            } => {
                tracing::warn!(group = %key.0, host = %key.1, %reason, "session refused");
                if let Some((s, outbox)) = self.sessions.get(&key)
                    && *s == session
                {
                    let _ = outbox.try_send(Err(Status::failed_precondition(reason)));
                    self.sessions.remove(&key);
                }
            }
            Command::Reply {
                request_id,
                outcome,
            } => {
                if let Some(reply) = self.replies.remove(&request_id) {
                    let _ = reply.send(outcome);
                }
            }
            Command::RepointLb {
                id,
                group,
                epoch,
                new_primary,
                old_primary,
                others,
            } => {
                let cfg = self
                    .shared
                    .config
                    .groups
                    .iter()
                    .find(|g| g.name == group)
                    .and_then(|g| g.lb.clone());
                let internal = self.internal.clone();
                tracing::info!(%group, %epoch, new = %new_primary, old = ?old_primary, "repointing the load balancer");
                tokio::spawn(async move {
                    let outcome = lb::repoint(
                        cfg.as_ref(),
                        &group,
                        epoch,
                        &new_primary,
                        old_primary.as_ref(),
                        &others,
                    )
                    .await;
                    if let Err(e) = &outcome {
                        tracing::error!(%group, error = %e, "load balancer repointing failed");
                    }
                    let _ = internal.send(Event::ActionResult { id, outcome }).await;
                });
            }
            Command::Smoke {
                id,
                group,
                expect_host,
            } => {
                let url = self
                    .shared
                    .config
                    .groups
                    .iter()
                    .find(|g| g.name == group)
                    .and_then(|g| g.smoke_url.clone());
                let internal = self.internal.clone();
                tokio::spawn(async move {
                    let outcome = lb::smoke(url.as_deref(), &expect_host).await;
                    let _ = internal.send(Event::ActionResult { id, outcome }).await;
                });
            }
            Command::Notify(n) => {
                tracing::warn!(group = %n.group, host = ?n.host.as_ref().map(|h| h.to_string()), text = %n.text, "notification");
                self.notifier.send(n);
            }
        }
    }
}
