//! `drctl status`: the cluster at a glance.

use dr_proto::domain::StatusView;
use dr_proto::pb;

use crate::client::{Connected, status_error};
use crate::error::{CliError, CliResult};
use crate::output::{Colors, Format, table};

pub async fn fetch(conn: &mut Connected, group: Option<&str>) -> CliResult<StatusView> {
    let response = conn
        .admin
        .status(pb::StatusRequest {
            group: group.unwrap_or_default().to_string(),
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?;
    StatusView::try_from(response.into_inner()).map_err(|e| {
        CliError::failed(format!(
            "controller {} sent an invalid status: {e}",
            conn.url
        ))
    })
}

fn seconds(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
        None => "-".into(),
    }
}

pub fn render_table(view: &StatusView, colors: Colors) -> String {
    let mut out = String::new();
    for g in &view.groups {
        out.push_str(&format!(
            "{}  epoch {}  primary {}  mode {}\n",
            colors.bold(&format!("group {}", g.name)),
            g.epoch.0,
            g.primary.as_ref().map(|p| p.as_str()).unwrap_or("none"),
            g.mode
        ));
        let rows: Vec<Vec<(String, String)>> = g
            .members
            .iter()
            .map(|m| {
                let plain = |s: String| (s.clone(), s);
                vec![
                    plain(m.host.to_string()),
                    plain(m.role.to_string()),
                    (m.health.to_string(), colors.health(m.health.as_str())),
                    plain(seconds(m.last_seen_ms)),
                    plain(seconds(m.lease_remaining_ms)),
                    plain(if m.reasons.is_empty() {
                        "-".into()
                    } else {
                        m.reasons.join("; ")
                    }),
                ]
            })
            .collect();
        out.push_str(&table(
            &["HOST", "ROLE", "HEALTH", "SEEN", "LEASE", "REASONS"],
            &rows,
        ));
        out.push('\n');
    }
    out.push_str(&format!(
        "answered by controller {}{}\n",
        view.controller_id,
        if view.leader {
            " (leader)"
        } else {
            " (follower)"
        }
    ));
    out
}

pub fn render(view: &StatusView, format: Format, verbose: bool) -> String {
    match format {
        Format::Table => render_table(view, Colors::detect()),
        Format::Json => {
            let mut view = view.clone();
            if !verbose {
                for g in &mut view.groups {
                    for m in &mut g.members {
                        m.last_report = None;
                    }
                }
            }
            let mut s = serde_json::to_string_pretty(&view).expect("status serializes");
            s.push('\n');
            s
        }
    }
}
