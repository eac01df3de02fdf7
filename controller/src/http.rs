//! The controller's HTTP side (default port 7480): read-only dashboard, JSON API matching
//! `drctl -o json`, Prometheus `/metrics`, and `/healthz` for supervisors.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::service::Shared;

const DASHBOARD: &str = include_str!("dashboard.html");

pub fn router(controller: Arc<Shared>) -> Router {
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

fn unavailable(e: tonic::Status) -> axum::response::Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        e.message().to_string(),
    )
        .into_response()
}

async fn api_status(State(ctl): State<Arc<Shared>>) -> axum::response::Response {
    match ctl.status().await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn metrics(State(ctl): State<Arc<Shared>>) -> axum::response::Response {
    match ctl.metrics().await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}
