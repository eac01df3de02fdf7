//! Erlang-node probe: asks the erlmcp VM itself, over the Erlang distribution protocol, what
//! the runbook's HEALTH CHECK COMMANDS ask from a remote shell — `net_adm:ping` (is the node
//! reachable with our cookie?), `erlang:memory(total)`, the `message_queue_len` of the server's
//! registered process (queue depth = backpressure), and the application's own health RPCs.
//!
//! Why it exists next to the HTTP probe: a VM can answer HTTP while its main process drowns in
//! messages, and an unreachable node has several very different causes (epmd down = no VM on
//! the host; node not registered = the VM died; handshake closed = wrong cookie; timeout = hung)
//! that lead to different runbook steps. Every failure is therefore classified.
//!
//! Every network step runs under one deadline (`cfg.timeout`): the wire crate has no timeouts
//! of its own. Connections are cached per node (we connect as a hidden node, so reconnecting is
//! invisible to the cluster) and dropped from the cache after any error so the next call
//! reconnects. The cookie is a [`Secret`] and appears in no log, error or report.

mod connection;
mod secret;
mod term;

pub use secret::{Secret, SecretError};
pub use term::{ErlArg, ErlValue, replication_lag_ms};

use std::fmt;
use std::time::Duration;

use erl_dist::epmd::DEFAULT_EPMD_PORT;
use erl_dist::node::NodeName;
use erl_dist::term::{Atom, Term};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use connection::{Connection, call, connection, mfa};

/// The runbook's queue-depth check looks at this process.
pub const DEFAULT_REGISTERED_PROCESS: &str = "erlmcp_server";
/// Long enough for a handshake plus a few RPCs on a loaded VM, short enough to keep rounds tight.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// An arity-0 function whose return value says something about the application's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRpc {
    pub module: String,
    pub function: String,
}

impl HealthRpc {
    pub fn new(module: impl Into<String>, function: impl Into<String>) -> HealthRpc {
        HealthRpc {
            module: module.into(),
            function: function.into(),
        }
    }
}

impl fmt::Display for HealthRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/0", self.module, self.function)
    }
}

/// What to probe and how long to wait. `Debug` is safe to log: the cookie prints as redacted.
#[derive(Clone, Debug)]
pub struct ErlangProbeConfig {
    /// Full node name as the VM calls itself, e.g. `erlmcp@host` (`-sname` uses the short host).
    pub node: String,
    pub cookie: Secret,
    /// Registered name whose message queue is measured (the runbook's queue-depth check).
    pub registered_process: String,
    pub health_rpcs: Vec<HealthRpc>,
    /// Bound on one whole probe (connect, ping and every RPC), and on one [`rpc_call`].
    pub timeout: Duration,
    /// epmd's port on the node's host; 4369 unless the VM runs with `ERL_EPMD_PORT`.
    pub epmd_port: u16,
}

impl ErlangProbeConfig {
    /// A probe with no health RPCs and the default process, timeout and epmd port.
    pub fn new(node: impl Into<String>, cookie: Secret) -> ErlangProbeConfig {
        ErlangProbeConfig {
            node: node.into(),
            cookie,
            registered_process: DEFAULT_REGISTERED_PROCESS.into(),
            health_rpcs: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            epmd_port: DEFAULT_EPMD_PORT,
        }
    }

    /// What the runbook checks on an erlmcp node: liveness, readiness and session replication.
    pub fn erlmcp_preset(node: impl Into<String>, cookie: Secret) -> ErlangProbeConfig {
        ErlangProbeConfig {
            health_rpcs: vec![
                HealthRpc::new("erlmcp_health", "check_live"),
                HealthRpc::new("erlmcp_health", "check_ready"),
                HealthRpc::new("erlmcp_session_replicator", "get_replication_status"),
            ],
            ..ErlangProbeConfig::new(node, cookie)
        }
    }

    /// For `check-config`: catches what would otherwise only show up as a failing probe.
    pub fn validate(&self) -> Result<(), String> {
        if let Err(e) = self.node.parse::<NodeName>() {
            return Err(format!("node {:?}: {e} (expected name@host)", self.node));
        }
        if self.cookie.expose_secret().is_empty() {
            return Err("cookie is empty".into());
        }
        if self.registered_process.is_empty() {
            return Err("registered_process is empty".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        if let Some(rpc) = self
            .health_rpcs
            .iter()
            .find(|r| r.module.is_empty() || r.function.is_empty())
        {
            return Err(format!("health rpc {rpc} has an empty module or function"));
        }
        Ok(())
    }
}

/// Class of a failure, so the controller can pick the runbook step without parsing sentences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErlangErrorKind {
    /// The probe's own configuration is wrong (bad node name or argument).
    BadConfig,
    /// Nothing answers on the epmd port: no Erlang VM is running on that host.
    EpmdUnreachable,
    /// epmd runs but does not know the node: the VM died (or the name is wrong).
    NodeNotRegistered,
    /// The node hung up during the handshake: our cookie is not its cookie.
    CookieRejected,
    /// No answer in time: hung or overloaded.
    Timeout,
    /// The connection failed or was lost for another reason.
    Connection,
    /// The function does not exist on the node (module not loaded, wrong name).
    Undef,
    /// The function ran and raised (error, exit or throw).
    BadRpc,
    /// The answer had an unexpected shape.
    BadReply,
}

/// Why an Erlang call failed; never contains the cookie. [`ErlangError::may_have_run`] tells a
/// caller with side effects (backup hooks) whether the function may have executed.
#[derive(Debug, thiserror::Error)]
pub enum ErlangError {
    #[error("invalid node name {node:?}: {reason} (expected name@host)")]
    BadNodeName { node: String, reason: String },
    #[error("bad argument for {mfa}: {reason}")]
    BadArg { mfa: String, reason: String },
    #[error(
        "epmd is not running on {host}:{port} ({detail}): no Erlang VM is running on that host, or epmd listens on another port"
    )]
    EpmdUnreachable {
        host: String,
        port: u16,
        detail: String,
    },
    #[error(
        "node {node} is not registered with epmd on {host}:{port}: the node is not running (dead node) or the name is wrong"
    )]
    NodeNotRegistered {
        node: String,
        host: String,
        port: u16,
    },
    #[error("{node} closed the connection during the handshake: cookie rejected (wrong cookie)")]
    CookieRejected { node: String },
    #[error(
        "timed out after {after_ms} ms connecting to {node}: host unreachable, or the node is hung"
    )]
    ConnectTimeout { node: String, after_ms: u64 },
    #[error("timed out after {after_ms} ms waiting for {mfa}: the node is hung or overloaded")]
    CallTimeout { mfa: String, after_ms: u64 },
    #[error("cannot connect to {node}: {detail}")]
    Connect { node: String, detail: String },
    #[error("connection to {node} lost during {mfa}")]
    ConnectionLost { node: String, mfa: String },
    #[error("undef: {mfa} (or a function it calls) is not defined on the node")]
    Undef { mfa: String },
    #[error("badrpc: {mfa} raised {class}: {reason}")]
    BadRpc {
        mfa: String,
        class: String,
        reason: String,
    },
    #[error("unexpected answer from {mfa}: {got}")]
    BadReply { mfa: String, got: String },
}

impl ErlangError {
    pub fn kind(&self) -> ErlangErrorKind {
        use ErlangError::*;
        match self {
            BadNodeName { .. } | BadArg { .. } => ErlangErrorKind::BadConfig,
            EpmdUnreachable { .. } => ErlangErrorKind::EpmdUnreachable,
            NodeNotRegistered { .. } => ErlangErrorKind::NodeNotRegistered,
            CookieRejected { .. } => ErlangErrorKind::CookieRejected,
            ConnectTimeout { .. } | CallTimeout { .. } => ErlangErrorKind::Timeout,
            Connect { .. } | ConnectionLost { .. } => ErlangErrorKind::Connection,
            Undef { .. } => ErlangErrorKind::Undef,
            BadRpc { .. } => ErlangErrorKind::BadRpc,
            BadReply { .. } => ErlangErrorKind::BadReply,
        }
    }

    /// `false` only when the function certainly did not run (nothing was sent, or the node
    /// reported it undefined); after a timeout or a lost connection it may have run.
    pub fn may_have_run(&self) -> bool {
        use ErlangError::*;
        match self {
            BadNodeName { .. }
            | BadArg { .. }
            | EpmdUnreachable { .. }
            | NodeNotRegistered { .. }
            | CookieRejected { .. }
            | ConnectTimeout { .. }
            | Connect { .. }
            | Undef { .. } => false,
            CallTimeout { .. } | ConnectionLost { .. } | BadRpc { .. } | BadReply { .. } => true,
        }
    }
}

/// Why the node did not answer the ping (the runbook's `pang`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unreachable {
    pub kind: ErlangErrorKind,
    /// A sentence for humans: what failed and what it most likely means.
    pub reason: String,
}

/// Depth of the registered process's mailbox, or why it is unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MessageQueue {
    Len {
        len: u64,
    },
    /// `whereis/1` returned `undefined`: the server process is not running under that name.
    NotRegistered,
    Failed {
        kind: ErlangErrorKind,
        error: String,
    },
    /// The node was unreachable, so nothing was asked.
    NotProbed,
}

/// What one health RPC returned, rendered as Erlang text, or why it failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RpcOutcome {
    Returned {
        value: String,
    },
    Failed {
        kind: ErlangErrorKind,
        error: String,
    },
    NotProbed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthRpcResult {
    pub rpc: HealthRpc,
    pub outcome: RpcOutcome,
}

/// One Erlang probe's findings; plain data so it can travel in a health report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErlangReport {
    pub node: String,
    /// `pong`: connected with our cookie and the node answered an RPC.
    pub reachable: bool,
    /// Set exactly when `reachable` is false.
    pub unreachable: Option<Unreachable>,
    /// `erlang:memory(total)`.
    pub memory_total_bytes: Option<u64>,
    /// Why `memory_total_bytes` is missing although the node was reachable.
    pub memory_error: Option<String>,
    pub registered_process: String,
    pub message_queue: MessageQueue,
    pub health_rpcs: Vec<HealthRpcResult>,
    /// From the first health RPC whose answer carries `lag_ms`/`lag` (see [`replication_lag_ms`]).
    pub replication_lag_ms: Option<f64>,
    pub elapsed_ms: u64,
}

impl ErlangReport {
    /// One line for logs and `drctl`: pong with the key numbers, or pang with the reason.
    pub fn summary(&self) -> String {
        if let Some(u) = &self.unreachable {
            return format!("{} unreachable (pang): {}", self.node, u.reason);
        }
        let memory = self
            .memory_total_bytes
            .map_or("memory unknown".into(), |m| format!("memory {m} B"));
        let queue = match &self.message_queue {
            MessageQueue::Len { len } => format!("{} queue {len}", self.registered_process),
            MessageQueue::NotRegistered => format!("{} not registered", self.registered_process),
            MessageQueue::Failed { error, .. } => format!("queue unknown ({error})"),
            MessageQueue::NotProbed => "queue not probed".into(),
        };
        let failed = self
            .health_rpcs
            .iter()
            .filter(|r| !matches!(r.outcome, RpcOutcome::Returned { .. }))
            .count();
        format!(
            "{} pong: {memory}, {queue}, {}/{} health rpcs answered",
            self.node,
            self.health_rpcs.len() - failed,
            self.health_rpcs.len()
        )
    }
}

/// Runs the whole probe within `cfg.timeout`. Never fails: every problem is in the report.
pub async fn probe(cfg: &ErlangProbeConfig) -> ErlangReport {
    let started = Instant::now();
    let deadline = started + cfg.timeout;
    let mut report = ErlangReport {
        node: cfg.node.clone(),
        reachable: false,
        unreachable: None,
        memory_total_bytes: None,
        memory_error: None,
        registered_process: cfg.registered_process.clone(),
        message_queue: MessageQueue::NotProbed,
        health_rpcs: cfg
            .health_rpcs
            .iter()
            .map(|rpc| HealthRpcResult {
                rpc: rpc.clone(),
                outcome: RpcOutcome::NotProbed,
            })
            .collect(),
        replication_lag_ms: None,
        elapsed_ms: 0,
    };
    let conn = match ping(cfg, deadline).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(node = %cfg.node, kind = ?e.kind(), error = %e, "erlang node unreachable");
            report.unreachable = Some(Unreachable {
                kind: e.kind(),
                reason: e.to_string(),
            });
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return report;
        }
    };
    report.reachable = true;

    let (memory, queue, rpcs) = tokio::join!(
        memory_total(&conn, deadline),
        message_queue(&conn, deadline, &cfg.registered_process),
        health_rpcs(&conn, deadline, &cfg.health_rpcs),
    );
    match memory {
        Ok(bytes) => report.memory_total_bytes = Some(bytes),
        Err(e) => report.memory_error = Some(e.to_string()),
    }
    report.message_queue = queue;
    for (slot, result) in report.health_rpcs.iter_mut().zip(rpcs) {
        slot.outcome = match result {
            Ok(value) => {
                if report.replication_lag_ms.is_none() {
                    report.replication_lag_ms = replication_lag_ms(&value);
                }
                RpcOutcome::Returned {
                    value: value.to_string(),
                }
            }
            Err(e) => RpcOutcome::Failed {
                kind: e.kind(),
                error: e.to_string(),
            },
        };
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}

/// Calls `module:function(args...)` on the node within `cfg.timeout` and renders the answer as
/// Erlang text. Not retried: the caller decides, using [`ErlangError::may_have_run`].
pub async fn rpc_call(
    cfg: &ErlangProbeConfig,
    module: &str,
    function: &str,
    args: Vec<ErlArg>,
) -> Result<String, ErlangError> {
    rpc_call_value(cfg, module, function, args)
        .await
        .map(|v| v.to_string())
}

/// As [`rpc_call`], keeping the structure (e.g. for [`replication_lag_ms`]).
pub async fn rpc_call_value(
    cfg: &ErlangProbeConfig,
    module: &str,
    function: &str,
    args: Vec<ErlArg>,
) -> Result<ErlValue, ErlangError> {
    let deadline = Instant::now() + cfg.timeout;
    let args = args
        .iter()
        .map(ErlArg::to_term)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| ErlangError::BadArg {
            mfa: mfa(module, function, args.len()),
            reason,
        })?;
    let (conn, _) = connection(cfg, deadline).await?;
    call(&conn, deadline, module, function, args)
        .await
        .map(|t| ErlValue::from(&t))
}

/// The runbook's `net_adm:ping`: a connection plus one trivial RPC. A cached connection that
/// fails is replaced once, so a restarted node does not show as one spurious `pang`.
async fn ping(cfg: &ErlangProbeConfig, deadline: Instant) -> Result<Connection, ErlangError> {
    let (conn, fresh) = connection(cfg, deadline).await?;
    match call(&conn, deadline, "erlang", "node", Vec::new()).await {
        Ok(_) => return Ok(conn),
        Err(e) if fresh || Instant::now() >= deadline => return Err(e),
        Err(e) => {
            tracing::debug!(node = %cfg.node, error = %e, "cached erlang connection failed, reconnecting")
        }
    }
    let (conn, _) = connection(cfg, deadline).await?;
    call(&conn, deadline, "erlang", "node", Vec::new()).await?;
    Ok(conn)
}

async fn memory_total(conn: &Connection, deadline: Instant) -> Result<u64, ErlangError> {
    let args = vec![Atom::from("total").into()];
    let answer = call(conn, deadline, "erlang", "memory", args).await?;
    match ErlValue::from(&answer).as_f64() {
        Some(bytes) if bytes >= 0.0 => Ok(bytes as u64),
        _ => Err(conn.bad_reply("erlang:memory/1", &answer)),
    }
}

async fn message_queue(conn: &Connection, deadline: Instant, process: &str) -> MessageQueue {
    let failed = |e: ErlangError| MessageQueue::Failed {
        kind: e.kind(),
        error: e.to_string(),
    };
    let pid = match call(
        conn,
        deadline,
        "erlang",
        "whereis",
        vec![Atom::from(process).into()],
    )
    .await
    {
        Ok(Term::Atom(a)) if a.name == "undefined" => return MessageQueue::NotRegistered,
        Ok(pid @ Term::Pid(_)) => pid,
        Ok(other) => return failed(conn.bad_reply("erlang:whereis/1", &other)),
        Err(e) => return failed(e),
    };
    let args = vec![pid, Atom::from("message_queue_len").into()];
    match call(conn, deadline, "erlang", "process_info", args).await {
        // The process exited between the two calls.
        Ok(Term::Atom(a)) if a.name == "undefined" => MessageQueue::NotRegistered,
        Ok(answer) => match ErlValue::from(&answer) {
            ErlValue::Tuple(kv) if kv.len() == 2 && kv[1].as_f64().is_some_and(|n| n >= 0.0) => {
                MessageQueue::Len {
                    len: kv[1].as_f64().unwrap_or_default() as u64,
                }
            }
            _ => failed(conn.bad_reply("erlang:process_info/2", &answer)),
        },
        Err(e) => failed(e),
    }
}

/// Runs the health RPCs concurrently so one hung function cannot starve the others.
async fn health_rpcs(
    conn: &Connection,
    deadline: Instant,
    rpcs: &[HealthRpc],
) -> Vec<Result<ErlValue, ErlangError>> {
    let mut set = JoinSet::new();
    for (index, rpc) in rpcs.iter().enumerate() {
        let (conn, rpc) = (conn.clone(), rpc.clone());
        set.spawn(async move {
            let answer = call(&conn, deadline, &rpc.module, &rpc.function, Vec::new()).await;
            (index, answer.map(|t| ErlValue::from(&t)))
        });
    }
    let mut results: Vec<Option<Result<ErlValue, ErlangError>>> =
        rpcs.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((index, result)) = joined {
            results[index] = Some(result);
        }
    }
    results
        .into_iter()
        .zip(rpcs)
        .map(|(r, rpc)| {
            r.unwrap_or_else(|| {
                Err(ErlangError::ConnectionLost {
                    node: conn.node.clone(),
                    mfa: rpc.to_string(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_never_shows_the_cookie() {
        let cfg = ErlangProbeConfig::erlmcp_preset("erlmcp@host", Secret::new("TOPSECRETCOOKIE"));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("TOPSECRETCOOKIE"), "{shown}");
        assert!(shown.contains("erlmcp_server"));
        assert_eq!(cfg.health_rpcs.len(), 3);
        assert_eq!(cfg.health_rpcs[0].to_string(), "erlmcp_health:check_live/0");
        assert_eq!(cfg.validate(), Ok(()));
        let bad = ErlangProbeConfig::new("no-at-sign", Secret::new("TOPSECRETCOOKIE"));
        let err = bad.validate().unwrap_err();
        assert!(
            err.contains("name@host") && !err.contains("TOPSECRETCOOKIE"),
            "{err}"
        );
    }
}
