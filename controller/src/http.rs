//! The controller's HTTP side (default port 7480): read-only dashboard, JSON API matching
//! `drctl -o json`, Prometheus `/metrics`, and `/healthz` for supervisors.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::metrics::{ControllerFacts, render};
use crate::service::Controller;

const DASHBOARD: &str = include_str!("dashboard.html");

pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/status", get(api_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(controller)
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn api_status(State(ctl): State<Arc<Controller>>) -> impl IntoResponse {
    axum::Json(ctl.status_view())
}

async fn metrics(State(ctl): State<Arc<Controller>>) -> impl IntoResponse {
    let view = ctl.status_view();
    let facts = ControllerFacts {
        sessions_opened_total: ctl.sessions_opened(),
        last_applied: ctl.last_applied(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&view, &facts),
    )
}
