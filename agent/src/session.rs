//! The agent's side of the session: dial a controller, say hello, stream reports, take in role
//! updates and commands; on any failure move on to the next controller with jittered
//! exponential backoff. Probing goes on meanwhile (see `main`), so the first report after a
//! reconnect is fresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_proto::domain::{AgentMessage, ControllerMessage, HealthReport, Hello};
use dr_proto::pb::agent_session_client::AgentSessionClient;
use dr_proto::tls::{TlsMaterial, host_of_url};
use dr_proto::{MAX_MESSAGE_BYTES, PROTOCOL_VERSION, pb};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::commands::{self, Ctx};
use crate::config::AgentConfig;
use crate::state::AgentState;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a session checks that lease renewals are still answered.
const STALL_CHECK: Duration = Duration::from_millis(100);
/// A session that lived this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("controller {url} unreachable: {message}")]
    Connect { url: String, message: String },
    #[error("controller {url} refused the session: {status}")]
    Refused { url: String, status: String },
    #[error("session with {url} ended: {reason}")]
    Ended { url: String, reason: String },
    /// That controller does not lead the controller cluster (now); `leader` is where to go.
    #[error("controller {url} does not decide: {message}")]
    NotLeader {
        url: String,
        message: String,
        leader: Option<String>,
    },
}

/// Wait before trying the leader a controller named (or the next controller): short, since
/// a leader change is the one time every agent must reconnect before its lease runs out.
const NOT_LEADER_RETRY: Duration = Duration::from_millis(100);

/// A refusal by a controller that does not lead, with the leader's URL if it named one.
fn not_leader(url: &str, status: &tonic::Status) -> Option<SessionError> {
    let hint = status
        .metadata()
        .get(dr_proto::LEADER_HINT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let message = status.message();
    let refused = status.code() == tonic::Code::Unavailable
        && (hint.is_some()
            || message.contains("not the leader")
            || message.contains("not deciding"));
    refused.then(|| SessionError::NotLeader {
        url: url.to_string(),
        message: message.to_string(),
        leader: hint,
    })
}

pub struct Session {
    pub config: Arc<AgentConfig>,
    pub tls: Option<TlsMaterial>,
    pub state: Arc<AgentState>,
    pub reports: watch::Receiver<Option<HealthReport>>,
    pub shutdown: CancellationToken,
    pub ctx: Ctx,
}

impl Session {
    /// Run until shutdown.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut index = 0usize;
        let mut next: Option<String> = None;
        loop {
            let url = next.take().unwrap_or_else(|| {
                self.config.controllers[index % self.config.controllers.len()].clone()
            });
            let started = Instant::now();
            let result = self.once(&url).await;
            self.state.set_connected(None);
            self.state.set_link(None);
            if self.shutdown.is_cancelled() {
                return;
            }
            if let Err(SessionError::NotLeader {
                leader, message, ..
            }) = &result
            {
                tracing::info!(%url, leader = ?leader, %message, "controller does not lead: moving on");
                match leader {
                    Some(l) if *l != url => next = Some(l.clone()),
                    _ => index += 1,
                }
                let wait = NOT_LEADER_RETRY + NOT_LEADER_RETRY.mul_f64(fastrand::f64());
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            match &result {
                Err(SessionError::Refused { .. }) => {
                    tracing::error!(error = %result.as_ref().unwrap_err(), "session refused")
                }
                Err(e) => tracing::warn!(error = %e, "no session with the controller"),
                Ok(()) => {}
            }
            if started.elapsed() > HEALTHY_SESSION {
                backoff = BACKOFF_MIN;
            }
            index += 1;
            let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
            let wait = backoff + jitter;
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            // Back off further only once every controller was tried: the next one may be fine.
            if index.is_multiple_of(self.config.controllers.len()) {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    async fn connect(&self, url: &str) -> Result<Channel, SessionError> {
        let err = |message: String| SessionError::Connect {
            url: url.to_string(),
            message,
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| err(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(4))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            let domain = host_of_url(url).unwrap_or("localhost");
            endpoint = endpoint
                .tls_config(tls.client_config(domain))
                .map_err(|e| err(e.to_string()))?;
        }
        endpoint.connect().await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            err(msg)
        })
    }

    async fn once(&mut self, url: &str) -> Result<(), SessionError> {
        let channel = self.connect(url).await?;
        let mut client = AgentSessionClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(256);
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            host: self.config.host.clone(),
            group: self.config.group.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: commands::capabilities(&self.config),
            last_epoch_seen: self.state.last_epoch_seen(),
            priority: self.config.member.priority,
            no_failover: self.config.member.no_failover,
        };
        let _ = tx.send(AgentMessage::Hello(hello).into()).await;
        let response = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|status| {
                not_leader(url, &status).unwrap_or_else(|| SessionError::Refused {
                    url: url.to_string(),
                    status: format!("{}: {}", status.code(), status.message()),
                })
            })?;
        let mut inbound = response.into_inner();
        self.state
            .sessions_opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state.set_link(Some(tx.clone()));
        // Send the latest report at once, then every new one.
        self.reports.mark_changed();
        self.state.with_role(|m| {
            m.session_started();
            ((), Vec::new())
        });
        let mut stall_check = tokio::time::interval(STALL_CHECK);
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = |reason: String| SessionError::Ended {
            url: url.to_string(),
            reason,
        };
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                // with one controller there is nowhere else to go: keep the session
                _ = stall_check.tick(), if self.config.controllers.len() > 1 => {
                    if self.state.with_role(|m| (m.lease_stalled(Instant::now()), Vec::new())) {
                        return Err(ended("no answer to lease renewals for half the lease ttl: trying another controller".into()));
                    }
                }
                changed = self.reports.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let report = self.reports.borrow_and_update().clone();
                    if let Some(mut report) = report {
                        // the role part is always current, whatever the probe round saw
                        report.role_state = Some(self.state.role_snapshot());
                        if tx.send(AgentMessage::Report(report).into()).await.is_err() {
                            return Err(ended("outbound stream closed".into()));
                        }
                        self.state.reports_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                message = inbound.message() => {
                    let message = match message {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err(ended("controller closed the stream".into())),
                        Err(status) => {
                            return Err(not_leader(url, &status)
                                .unwrap_or_else(|| ended(format!("{}: {}", status.code(), status.message()))));
                        }
                    };
                    match ControllerMessage::try_from(message) {
                        Ok(m) => self.handle(m, &tx),
                        Err(e) => return Err(ended(format!("invalid message from controller: {e}"))),
                    }
                }
            }
        }
    }

    fn handle(&self, message: ControllerMessage, tx: &mpsc::Sender<pb::AgentMessage>) {
        match message {
            ControllerMessage::Welcome(w) => {
                tracing::info!(controller = %w.controller_id, epoch = %w.epoch, role = %w.role, "session established");
                self.state.set_connected(Some(w.controller_id));
                self.state.observe(w.epoch, w.role, w.primary);
                crate::lease::renew_now(&self.state);
            }
            ControllerMessage::Ack(a) => self.state.observe(a.epoch, a.role, a.primary),
            ControllerMessage::LeaseGrant(g) => {
                if let Err(reason) = &g.outcome {
                    tracing::warn!(request = g.request_id, %reason, "lease refused");
                }
                self.state.with_role(|m| {
                    (
                        (),
                        m.lease_answer_at(Instant::now(), g.request_id, g.epoch, g.outcome.clone()),
                    )
                });
            }
            ControllerMessage::Command(command) => {
                tracing::info!(command = %command.id, epoch = %command.epoch, action = ?command.action, "command received");
                tokio::spawn(commands::execute(self.ctx.clone(), command, tx.clone()));
            }
        }
    }
}
