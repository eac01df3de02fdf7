//! The connection side of the Erlang probe: epmd lookup on a configurable port, handshake,
//! a per-node cache of live connections, and one deadline-bounded RPC with every failure mapped
//! to what it means for an operator (wrong cookie, dead node, no epmd, hung node, undef, badrpc).
//!
//! Cached connections are dropped from the cache after any error, so the next call reconnects;
//! calls already holding the connection finish on their own, and the client task ends once the
//! last handle is gone or the socket breaks.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use erl_dist::epmd::{EpmdClient, NodeEntry};
use erl_dist::handshake::HandshakeError;
use erl_dist::node::NodeName;
use erl_dist::term::{Atom, List, Term};
use erl_rpc::{CallError, ConnectError, RpcClient, RpcClientHandle};
use tokio::time::Instant;

use super::{ErlValue, ErlangError, ErlangProbeConfig};

pub(super) fn mfa(module: &str, function: &str, arity: usize) -> String {
    format!("{module}:{function}/{arity}")
}

/// One RPC under the deadline. Any failure drops the connection from the cache (the next call
/// reconnects); calls already using it finish on their own.
pub(super) async fn call(
    conn: &Connection,
    deadline: Instant,
    module: &str,
    function: &str,
    args: Vec<Term>,
) -> Result<Term, ErlangError> {
    let mfa = mfa(module, function, args.len());
    let started = Instant::now();
    let mut handle = conn.handle.clone();
    let request = handle.call(Atom::from(module), Atom::from(function), List::from(args));
    let result = match tokio::time::timeout_at(deadline, request).await {
        Ok(Ok(term)) => return Ok(term),
        Err(_) => Err(ErlangError::CallTimeout {
            mfa,
            after_ms: started.elapsed().as_millis() as u64,
        }),
        Ok(Err(CallError::ErrorResponse { reason })) => Err(classify_exception(mfa, &reason)),
        // Refused before sending: the function certainly did not run.
        Ok(Err(CallError::Full)) => Err(ErlangError::Connect {
            node: conn.node.clone(),
            detail: format!("too many calls in flight; {mfa} was not sent"),
        }),
        Ok(Err(_)) => Err(ErlangError::ConnectionLost {
            node: conn.node.clone(),
            mfa,
        }),
    };
    evict(&conn.key, conn.id);
    result
}

/// erpc reports failures as `{Ref, error, Reason, Stack}`, `{Ref, exit, Reason}` or
/// `{Ref, throw, Value}`; a monitor `DOWN` reason (e.g. `noconnection`) arrives bare.
fn classify_exception(mfa: String, reason: &Term) -> ErlangError {
    let value = ErlValue::from(reason);
    if let ErlValue::Tuple(items) = &value
        && items.len() >= 3
        && let ErlValue::Atom(class) = &items[1]
    {
        if class == "error" && items[2] == ErlValue::Atom("undef".into()) {
            return ErlangError::Undef { mfa };
        }
        return ErlangError::BadRpc {
            mfa,
            class: class.clone(),
            reason: items[2].to_string(),
        };
    }
    ErlangError::BadRpc {
        mfa,
        class: "exit".into(),
        reason: value.to_string(),
    }
}

/// A usable connection: a handle to the client task, and where it sits in the cache.
#[derive(Clone)]
pub(super) struct Connection {
    id: u64,
    key: ConnKey,
    pub(super) node: String,
    handle: RpcClientHandle,
}

impl Connection {
    pub(super) fn bad_reply(&self, mfa: &str, got: &Term) -> ErlangError {
        ErlangError::BadReply {
            mfa: mfa.into(),
            got: ErlValue::from(got).to_string(),
        }
    }
}

/// Node, epmd port and a fingerprint of the cookie (never the cookie): a connection made with
/// one cookie must not answer for a config holding another.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    node: String,
    epmd_port: u16,
    cookie_fingerprint: u64,
}

struct Cached {
    conn: Connection,
    task: tokio::task::JoinHandle<()>,
}

static CONNECTIONS: LazyLock<Mutex<HashMap<ConnKey, Cached>>> = LazyLock::new(Default::default);
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

fn cache() -> std::sync::MutexGuard<'static, HashMap<ConnKey, Cached>> {
    CONNECTIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn evict(key: &ConnKey, id: u64) {
    let mut cache = cache();
    if cache.get(key).is_some_and(|c| c.conn.id == id) {
        cache.remove(key);
        tracing::debug!(node = %key.node, "erlang connection dropped from cache");
    }
}

/// A cached live connection, or a new one; `true` when new.
pub(super) async fn connection(
    cfg: &ErlangProbeConfig,
    deadline: Instant,
) -> Result<(Connection, bool), ErlangError> {
    let mut hasher = DefaultHasher::new();
    cfg.cookie.expose_secret().hash(&mut hasher);
    let key = ConnKey {
        node: cfg.node.clone(),
        epmd_port: cfg.epmd_port,
        cookie_fingerprint: hasher.finish(),
    };
    {
        let mut cache = cache();
        match cache.get(&key) {
            Some(c) if !c.task.is_finished() => return Ok((c.conn.clone(), false)),
            Some(_) => {
                cache.remove(&key);
            }
            None => {}
        }
    }
    let started = Instant::now();
    let client = match tokio::time::timeout_at(deadline, connect(cfg)).await {
        Ok(client) => client?,
        Err(_) => {
            return Err(ErlangError::ConnectTimeout {
                node: cfg.node.clone(),
                after_ms: started.elapsed().as_millis() as u64,
            });
        }
    };
    let conn = Connection {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        key: key.clone(),
        node: cfg.node.clone(),
        handle: client.handle(),
    };
    let node = cfg.node.clone();
    // The client loop ends by itself when every handle is dropped or the connection breaks.
    let task = tokio::spawn(async move {
        if let Err(e) = client.run().await {
            tracing::debug!(node = %node, error = %e, "erlang connection closed");
        }
    });
    tracing::debug!(node = %cfg.node, "erlang connection established");
    cache().insert(
        key,
        Cached {
            conn: conn.clone(),
            task,
        },
    );
    Ok((conn, true))
}

/// epmd lookup (on the configured port: erl_rpc only knows 4369) then handshake, with each
/// failure mapped to what it means for the operator.
async fn connect(cfg: &ErlangProbeConfig) -> Result<RpcClient, ErlangError> {
    let name: NodeName = cfg.node.parse().map_err(|e| ErlangError::BadNodeName {
        node: cfg.node.clone(),
        reason: format!("{e}"),
    })?;
    let entry = epmd_lookup(&cfg.node, &name, cfg.epmd_port).await?;
    if entry.highest_version < 6 {
        return Err(ErlangError::Connect {
            node: cfg.node.clone(),
            detail: "the node only speaks distribution protocol 5 (OTP < 23)".into(),
        });
    }
    RpcClient::connect_with_port(&cfg.node, entry.port, cfg.cookie.expose_secret())
        .await
        .map_err(|e| classify_connect_error(&cfg.node, entry.port, e))
}

async fn epmd_lookup(node: &str, name: &NodeName, port: u16) -> Result<NodeEntry, ErlangError> {
    let host = name.host();
    let stream = async_net::TcpStream::connect((host, port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ErlangError::EpmdUnreachable {
                host: host.into(),
                port,
                detail: "connection refused".into(),
            },
            _ => ErlangError::Connect {
                node: node.into(),
                detail: format!("cannot reach epmd on {host}:{port}: {e}"),
            },
        })?;
    match EpmdClient::new(stream).get_node(name.name()).await {
        Ok(Some(entry)) => Ok(entry),
        Ok(None) => Err(ErlangError::NodeNotRegistered {
            node: node.into(),
            host: host.into(),
            port,
        }),
        Err(e) => Err(ErlangError::Connect {
            node: node.into(),
            detail: format!("epmd on {host}:{port} answered badly: {e}"),
        }),
    }
}

/// The node closes the socket without a word when the challenge digest (our cookie) is wrong,
/// so an EOF during the handshake means "cookie rejected".
fn classify_connect_error(node: &str, port: u16, e: ConnectError) -> ErlangError {
    let detail = match e {
        ConnectError::HandshakeError(HandshakeError::CookieMismatch) => {
            return ErlangError::CookieRejected { node: node.into() };
        }
        ConnectError::HandshakeError(HandshakeError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            return ErlangError::CookieRejected { node: node.into() };
        }
        ConnectError::IoError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!(
                "epmd lists it on port {port} but the port refuses connections: the node is stopping"
            )
        }
        ConnectError::HandshakeError(HandshakeError::NotAllowed) => {
            "the node does not allow our connection (net_kernel allow list?)".into()
        }
        other => format!("{other}"),
    };
    ErlangError::Connect {
        node: node.into(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::erlang::ErlangErrorKind;

    #[test]
    fn erpc_failures_are_classified() {
        let r = |class: &str, reason: Term| -> Term {
            erl_dist::term::Tuple::from(vec![
                Atom::from("ref").into(),
                Atom::from(class).into(),
                reason,
            ])
            .into()
        };
        let undef = classify_exception("m:f/0".into(), &r("error", Atom::from("undef").into()));
        assert!(matches!(undef, ErlangError::Undef { .. }));
        assert!(!undef.may_have_run());
        let thrown = classify_exception("m:f/0".into(), &r("throw", Atom::from("nope").into()));
        assert_eq!(thrown.to_string(), "badrpc: m:f/0 raised throw: nope");
        assert_eq!(thrown.kind(), ErlangErrorKind::BadRpc);
        let down = classify_exception("m:f/0".into(), &Atom::from("noconnection").into());
        assert_eq!(down.to_string(), "badrpc: m:f/0 raised exit: noconnection");
    }

    #[test]
    fn an_eof_during_the_handshake_means_wrong_cookie() {
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let e = classify_connect_error("n@h", 1, ConnectError::HandshakeError(eof.into()));
        assert_eq!(e.kind(), ErlangErrorKind::CookieRejected);
        assert!(e.to_string().contains("cookie"));
    }
}
