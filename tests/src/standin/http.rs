//! The stand-in's HTTP API.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use tokio::sync::Notify;

use super::faults::{Faults, Overrides};
use super::logger::Logger;
use super::receipts::ReceiptStore;

/// Memory the stand-in reports besides what a memory fault allocates, like a small BEAM.
const BASE_MEMORY: f64 = 48.0 * 1024.0 * 1024.0;
const MAX_CLIENT_BODY: usize = 64 * 1024;

pub struct Standin {
    pub host: String,
    pub started: Instant,
    pub role: Mutex<(String, u64)>,
    pub faults: Mutex<Faults>,
    pub fault_since: Mutex<Instant>,
    pub overrides: Mutex<Overrides>,
    /// Woken whenever faults change, so hung requests re-check.
    pub changed: Notify,
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    pub outcomes: Mutex<VecDeque<bool>>,
    pub leaked: Mutex<Vec<Vec<u8>>>,
    pub leaked_bytes: AtomicU64,
    pub receipts: ReceiptStore,
    pub seq: AtomicU64,
    pub log: Logger,
    /// Other members' service addresses: client receipts are replicated to them (see
    /// [`super::replication`]); empty: a lone stand-in that takes writes in any role.
    pub peers: Vec<std::net::SocketAddr>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Standin {
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.faults));
        *lock(&self.fault_since) = Instant::now();
        self.changed.notify_waiters();
    }

    /// Wait while hung; then apply the slow fault.
    pub async fn gate(&self) {
        loop {
            let notified = self.changed.notified();
            if !self.faults().hang {
                break;
            }
            notified.await;
        }
        if let Some(d) = self.faults().slow() {
            tokio::time::sleep(d).await;
        }
    }

    fn failing(&self) -> bool {
        let since = *lock(&self.fault_since);
        self.faults().failing(since, Instant::now())
    }

    fn record(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut o = lock(&self.outcomes);
        o.push_back(ok);
        while o.len() > 200 {
            o.pop_front();
        }
    }

    fn error_rate(&self) -> f64 {
        let o = lock(&self.outcomes);
        if o.is_empty() {
            return 0.0;
        }
        o.iter().filter(|ok| !**ok).count() as f64 / o.len() as f64
    }

    fn metrics_values(&self) -> Vec<(&'static str, &'static str, f64)> {
        let ov = lock(&self.overrides).clone();
        let conns = self.in_flight.load(Ordering::Relaxed) as f64;
        vec![
            (
                "erlmcp_memory_bytes",
                "Total memory used by the node (bytes).",
                ov.memory_bytes
                    .unwrap_or(BASE_MEMORY + self.leaked_bytes.load(Ordering::Relaxed) as f64),
            ),
            (
                "erlmcp_connections",
                "Open client connections.",
                ov.connections.unwrap_or(conns),
            ),
            (
                "erlmcp_queue_depth",
                "Message queue length of erlmcp_server.",
                ov.queue_depth.unwrap_or(0.0),
            ),
            (
                "erlmcp_error_rate",
                "Share of failed requests over the last 200.",
                ov.error_rate.unwrap_or_else(|| self.error_rate()),
            ),
            ("erlmcp_process_count", "Erlang processes.", 120.0 + conns),
            (
                "erlmcp_uptime_seconds",
                "Seconds since start.",
                self.started.elapsed().as_secs_f64().floor(),
            ),
        ]
    }
}

type Shared = Arc<Standin>;

struct InFlight<'a>(&'a Standin);

impl<'a> InFlight<'a> {
    fn new(s: &'a Standin) -> Self {
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(s)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn router(s: Shared) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/receipts", post(post_receipt))
        .route("/receipts/{id}", get(get_receipt))
        .route(
            "/replica/receipts/{id}",
            put(put_replica_receipt).get(get_replica_receipt),
        )
        .route("/control/fault/{kind}", post(control_fault))
        .route("/control/clear", post(control_clear))
        .route("/control/set", post(control_set))
        .route("/control/role", post(control_role))
        .route("/control/state", get(control_state))
        .with_state(s)
}

fn json_response(code: StatusCode, v: serde_json::Value) -> Response {
    (code, axum::Json(v)).into_response()
}

async fn root(State(s): State<Shared>) -> Response {
    let _f = InFlight::new(&s);
    s.gate().await;
    let (role, epoch) = lock(&s.role).clone();
    if s.failing() {
        s.record(false);
        s.log.error(
            "erlmcp_server",
            "request failed: internal error (injected fault)",
        );
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "internal error", "host": s.host}),
        );
    }
    s.record(true);
    let n = s.requests.load(Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        json!({"host": s.host, "role": role, "epoch": epoch, "request": n}),
    )
}

async fn health(State(s): State<Shared>) -> Response {
    s.gate().await;
    let failing = s.failing();
    let metrics: serde_json::Map<String, serde_json::Value> = s
        .metrics_values()
        .into_iter()
        .map(|(k, _, v)| (k.trim_start_matches("erlmcp_").to_string(), json!(v)))
        .collect();
    let body = json!({
        "status": if failing { "unhealthy" } else { "healthy" },
        "checks": {
            "erlmcp_server": if failing { "error" } else { "ok" },
            "persistence": "ok",
        },
        "metrics": metrics,
    });
    let code = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(code, body)
}

async fn live(State(s): State<Shared>) -> Response {
    s.gate().await;
    json_response(StatusCode::OK, json!({"status": "alive"}))
}

async fn ready(State(s): State<Shared>) -> Response {
    s.gate().await;
    if s.failing() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready"}),
        )
    } else {
        json_response(StatusCode::OK, json!({"status": "ready"}))
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    s.gate().await;
    let mut out = String::new();
    for (name, help, v) in s.metrics_values() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn post_receipt(State(s): State<Shared>, body: Bytes) -> Response {
    let _f = InFlight::new(&s);
    s.gate().await;
    if body.len() > MAX_CLIENT_BODY {
        return json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "receipt larger than 64 KiB"}),
        );
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("body is not JSON: {e}")}),
            );
        }
    };
    if s.failing() {
        s.record(false);
        s.log.error(
            "erlmcp_server",
            "receipt rejected: internal error (injected fault)",
        );
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "internal error", "host": s.host}),
        );
    }
    let (role, _) = lock(&s.role).clone();
    if !s.peers.is_empty() && role != "primary" {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": format!("not the primary (role {role})"), "host": s.host}),
        );
    }
    let seq = s.seq.fetch_add(1, Ordering::Relaxed);
    match s.receipts.write_client(&s.host, seq, &payload) {
        Ok(id) => {
            if !s.peers.is_empty() {
                let bytes = s
                    .receipts
                    .read_client(&id)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let acks = super::replication::replicate(&s.peers, &id, &bytes).await;
                let needed = super::replication::peer_acks_needed(s.peers.len());
                if acks < needed {
                    s.log.warning(
                        "erlmcp_session_replicator",
                        &format!("receipt {id} reached {acks} of {needed} peers needed: refused"),
                    );
                    return json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"error": format!("not replicated to a majority ({acks} of {needed} peers)"), "host": s.host}),
                    );
                }
            }
            s.record(true);
            let (role, epoch) = lock(&s.role).clone();
            json_response(
                StatusCode::CREATED,
                json!({"id": id, "host": s.host, "role": role, "epoch": epoch}),
            )
        }
        Err(e) => {
            s.record(false);
            s.log
                .error("tcps_persistence", &format!("cannot store receipt: {e}"));
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": format!("cannot store: {e}")}),
            )
        }
    }
}

async fn get_receipt(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let _f = InFlight::new(&s);
    s.gate().await;
    match s.receipts.read_client(&id) {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Ok(None) => match super::replication::fetch(&s.peers, &id).await {
            Some(bytes) => {
                let _ = s.receipts.store_client(&id, &bytes);
                ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
            }
            None => json_response(StatusCode::NOT_FOUND, json!({"error": "no such receipt"})),
        },
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

/// A peer's copy of a client receipt (any role stores it).
async fn put_replica_receipt(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    s.gate().await;
    if body.len() > 2 * MAX_CLIENT_BODY
        || serde_json::from_slice::<serde_json::Value>(&body).is_err()
    {
        return bad_request("a replica receipt must be JSON".into());
    }
    match s.receipts.store_client(&id, &body) {
        Ok(true) => json_response(StatusCode::CREATED, json!({"id": id})),
        Ok(false) => bad_request(format!("invalid receipt id {id:?}")),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("cannot store: {e}")}),
        ),
    }
}

/// This member's own copy only (no asking further peers).
async fn get_replica_receipt(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    s.gate().await;
    match s.receipts.read_client(&id) {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Ok(None) => json_response(StatusCode::NOT_FOUND, json!({"error": "no such receipt"})),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

/// A numeric query parameter; `Err` says what is wrong with it.
fn param<T: std::str::FromStr>(q: &HashMap<String, String>, k: &str) -> Result<Option<T>, String> {
    match q.get(k) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{k}={v:?} is not a number")),
    }
}

fn bad_request(message: String) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": message}))
}

async fn control_fault(
    State(s): State<Shared>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match kind.as_str() {
        "crash" => {
            s.log.error("erlmcp_sup", "crash requested: VM going down");
            std::process::exit(134);
        }
        "hang" => s.set_faults(|f| f.hang = true),
        "slow" => match param::<u64>(&q, "ms") {
            Ok(ms) => s.set_faults(|f| f.slow_ms = ms.unwrap_or(800)),
            Err(e) => return bad_request(e),
        },
        "5xx" => s.set_faults(|f| f.error5xx = true),
        "flap" => match param::<u64>(&q, "period_ms") {
            Ok(p) => s.set_faults(|f| f.flap_period_ms = Some(p.unwrap_or(1000).max(1))),
            Err(e) => return bad_request(e),
        },
        "memory" => match param::<u64>(&q, "mib_per_s") {
            Ok(m) => s.set_faults(|f| f.memory_mib_per_s = m.unwrap_or(16)),
            Err(e) => return bad_request(e),
        },
        other => {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": format!("unknown fault {other:?}: crash, hang, slow, 5xx, flap, memory")}),
            );
        }
    }
    s.log
        .warning("erlmcp_dr_fault", &format!("fault injected: {kind}"));
    json_response(StatusCode::OK, json!({"faults": s.faults()}))
}

async fn control_clear(State(s): State<Shared>) -> Response {
    s.set_faults(|f| *f = Faults::default());
    *lock(&s.overrides) = Overrides::default();
    s.log.info("erlmcp_dr_fault", "faults cleared");
    json_response(StatusCode::OK, json!({"faults": s.faults()}))
}

async fn control_set(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parsed = (|| -> Result<Overrides, String> {
        Ok(Overrides {
            memory_bytes: param(&q, "memory_bytes")?,
            connections: param(&q, "connections")?,
            queue_depth: param(&q, "queue_depth")?,
            error_rate: param(&q, "error_rate")?,
        })
    })();
    let o = match parsed {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let mut cur = lock(&s.overrides);
    if o.memory_bytes.is_some() {
        cur.memory_bytes = o.memory_bytes;
    }
    if o.connections.is_some() {
        cur.connections = o.connections;
    }
    if o.queue_depth.is_some() {
        cur.queue_depth = o.queue_depth;
    }
    if o.error_rate.is_some() {
        cur.error_rate = o.error_rate;
    }
    json_response(StatusCode::OK, json!({"overrides": *cur}))
}

async fn control_role(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(role) = q
        .get("role")
        .filter(|r| matches!(r.as_str(), "primary" | "replica" | "fenced"))
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "role must be primary, replica or fenced"}),
        );
    };
    let epoch = match param::<u64>(&q, "epoch") {
        Ok(e) => e.unwrap_or(0),
        Err(e) => return bad_request(e),
    };
    *lock(&s.role) = (role.clone(), epoch);
    s.log.info(
        "erlmcp_session_replicator",
        &format!("role changed to {role} at epoch {epoch}"),
    );
    json_response(StatusCode::OK, json!({"role": role, "epoch": epoch}))
}

async fn control_state(State(s): State<Shared>) -> Response {
    let (role, epoch) = lock(&s.role).clone();
    json_response(
        StatusCode::OK,
        json!({
            "host": s.host,
            "role": role,
            "epoch": epoch,
            "faults": s.faults(),
            "overrides": *lock(&s.overrides),
            "receipts_next_seq": s.seq.load(Ordering::Relaxed),
        }),
    )
}
