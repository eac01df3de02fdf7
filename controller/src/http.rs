//! The controller's HTTP side (default port 7480): the read-only dashboard, a JSON API whose
//! answers have the shapes of `drctl ... -o json` (same serde types), Prometheus `/metrics`, and
//! `/healthz` for supervisors. Nothing here changes state: every route is a GET.
//!
//! | route | same as |
//! |---|---|
//! | `/api/v1/status[?group=G][&verbose=true]` | `drctl status -o json [--group G] [--verbose]` |
//! | `/api/v1/history[?group=G][&limit=N]` | `drctl history -o json [--group G] [--limit N]` |
//! | `/api/v1/incidents/{id}` | `drctl incident ID -o json` |
//! | `/api/v1/incidents[?open=true][&group=G][&limit=N]` | the `incidents` of history; `open=true`: every open one |
//! | `/api/v1/backups[?group=G]` | `drctl backup list -o json [--group G]` |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dr_proto::domain::{BackupListView, GroupName, HistoryView, Incident, IncidentId};
use dr_proto::pb;
use serde::{Deserialize, Serialize};

use crate::service::{Shared, admin_backup};

const DASHBOARD: &str = include_str!("dashboard.html");

/// Group of `drctl` commands that take `--group` with a default.
const DEFAULT_GROUP: &str = "erlmcp";
/// `drctl history --limit` default; what the gRPC `History` call makes of a limit of 0, and the
/// most one answer holds.
const HISTORY_DEFAULT: usize = 20;
const HISTORY_ZERO: usize = 50;
const HISTORY_MAX: usize = 1000;

/// The page may talk to this controller only: no CDN, no other origin, no framing.
const DASHBOARD_CSP: &str = "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub fn router(controller: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/history", get(api_history))
        .route("/api/v1/incidents", get(api_incidents))
        .route("/api/v1/incidents/{id}", get(api_incident))
        .route("/api/v1/backups", get(api_backups))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(controller)
}

async fn dashboard() -> Response {
    let mut r = axum::response::Html(DASHBOARD).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Why an API call has no answer: sent as `{"error": "..."}` with the HTTP status closest to
/// the gRPC one drctl would have got.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(e: tonic::Status) -> ApiError {
        let status = match e.code() {
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => StatusCode::FORBIDDEN,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, NO_STORE, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Answers describe a moment: never cached.
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];

fn json<T: Serialize>(value: &T) -> ApiResult {
    Ok((NO_STORE, axum::Json(value)).into_response())
}

/// An optional `group=` parameter; empty is the same as absent.
fn group_param(group: Option<&str>) -> Result<Option<GroupName>, ApiError> {
    match group.filter(|g| !g.is_empty()) {
        None => Ok(None),
        Some(g) => GroupName::new(g)
            .map(Some)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("group {g:?} {e}"))),
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    group: Option<String>,
    #[serde(default)]
    verbose: bool,
}

async fn api_status(State(ctl): State<Arc<Shared>>, Query(q): Query<StatusQuery>) -> ApiResult {
    let mut view = ctl
        .status_of(q.group.as_deref().unwrap_or_default())
        .await?;
    // as drctl: the raw probe report only when asked for
    if !q.verbose {
        for m in view.groups.iter_mut().flat_map(|g| g.members.iter_mut()) {
            m.last_report = None;
        }
    }
    json(&view)
}

#[derive(Deserialize)]
struct HistoryQuery {
    group: Option<String>,
    limit: Option<usize>,
    /// `/api/v1/incidents` only: every open incident, however old.
    #[serde(default)]
    open: bool,
}

impl HistoryQuery {
    /// drctl's default when absent; 0 and the maximum as the gRPC `History` call treats them.
    fn limit(&self) -> usize {
        match self.limit {
            None => HISTORY_DEFAULT,
            Some(0) => HISTORY_ZERO,
            Some(n) => n.min(HISTORY_MAX),
        }
    }
}

async fn api_history(State(ctl): State<Arc<Shared>>, Query(q): Query<HistoryQuery>) -> ApiResult {
    let group = group_param(q.group.as_deref())?;
    let (role_changes, incidents) = ctl.history(group, q.limit()).await?;
    json(&HistoryView {
        role_changes,
        incidents,
    })
}

#[derive(Serialize)]
struct IncidentsJson {
    incidents: Vec<Incident>,
}

async fn api_incidents(State(ctl): State<Arc<Shared>>, Query(q): Query<HistoryQuery>) -> ApiResult {
    let group = group_param(q.group.as_deref())?;
    let incidents = if q.open {
        let mut open = ctl.open_incidents().await?;
        open.retain(|i| group.as_ref().is_none_or(|g| g == &i.group));
        open
    } else {
        ctl.history(group, q.limit()).await?.1
    };
    json(&IncidentsJson { incidents })
}

async fn api_incident(State(ctl): State<Arc<Shared>>, Path(id): Path<IncidentId>) -> ApiResult {
    match ctl.incident(id).await? {
        Some(i) => json(&i),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no incident {id}"),
        )),
    }
}

#[derive(Deserialize)]
struct BackupsQuery {
    group: Option<String>,
}

async fn api_backups(State(ctl): State<Arc<Shared>>, Query(q): Query<BackupsQuery>) -> ApiResult {
    let group = q
        .group
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| DEFAULT_GROUP.to_string());
    let request = pb::BackupListRequest {
        group: group.clone(),
    };
    let list = admin_backup::list(&ctl, request).await?;
    json(&BackupListView::from_wire(&group, &list))
}

async fn metrics(State(ctl): State<Arc<Shared>>) -> Response {
    match ctl.metrics().await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
