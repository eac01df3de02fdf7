//! The agent's HTTP endpoints (default port 7481): `/primary` and `/replica` for load balancers
//! that poll (200 only for the matching role), `/health` (the agent's view, JSON) and `/metrics`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use dr_proto::domain::Role;

use crate::config::AgentConfig;
use crate::state::AgentState;

#[derive(Clone)]
pub struct HttpState {
    pub config: Arc<AgentConfig>,
    pub state: Arc<AgentState>,
}

pub fn router(s: HttpState) -> Router {
    Router::new()
        .route("/primary", get(primary))
        .route("/replica", get(replica))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(s)
}

/// `/primary`: 200 only for a promoted primary with a valid lease (never before the promote
/// hook finished, never after the lease ran out). `/replica`: 200 for a replica.
fn role_answer(s: &HttpState, wanted: Role) -> (StatusCode, axum::Json<serde_json::Value>) {
    let view = s.state.role_view();
    let ok = match wanted {
        Role::Primary => view.serving_as_primary,
        _ => view.role == Role::Replica,
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(serde_json::json!({
            "host": s.config.host,
            "role": view.role,
            "epoch": view.epoch,
            "lease_remaining_ms": view.lease_remaining_ms,
            "fenced": view.fenced,
        })),
    )
}

async fn primary(State(s): State<HttpState>) -> impl IntoResponse {
    role_answer(&s, Role::Primary)
}

async fn replica(State(s): State<HttpState>) -> impl IntoResponse {
    role_answer(&s, Role::Replica)
}

async fn health(State(s): State<HttpState>) -> impl IntoResponse {
    let view = s.state.role_view();
    axum::Json(serde_json::json!({
        "host": s.config.host,
        "group": s.config.group,
        "role": view.role,
        "epoch": view.epoch,
        "primary": view.primary,
        "serving_as_primary": view.serving_as_primary,
        "lease_remaining_ms": view.lease_remaining_ms,
        "fenced": view.fenced,
        "busy_with": view.busy_with,
        "controller_connected": view.connected,
        "controller_id": view.controller_id,
        "last_report": s.state.last_report(),
    }))
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let view = s.state.role_view();
    let labels = format!("group=\"{}\",host=\"{}\"", s.config.group, s.config.host);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {v}"
        );
    };
    gauge(
        "erlmcp_dr_agent_controller_connected",
        "1 while the agent has a session with a controller.",
        "gauge",
        f64::from(u8::from(view.connected)),
    );
    gauge(
        "erlmcp_dr_agent_is_primary",
        "1 while the controller says this host is primary.",
        "gauge",
        f64::from(u8::from(view.role == Role::Primary)),
    );
    gauge(
        "erlmcp_dr_agent_epoch",
        "Newest epoch this agent has seen.",
        "gauge",
        s.state.last_epoch_seen().0 as f64,
    );
    gauge(
        "erlmcp_dr_agent_reports_sent_total",
        "Health reports sent to controllers.",
        "counter",
        s.state.reports_sent.load(Ordering::Relaxed) as f64,
    );
    gauge(
        "erlmcp_dr_agent_sessions_opened_total",
        "Sessions opened with controllers.",
        "counter",
        s.state.sessions_opened.load(Ordering::Relaxed) as f64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
