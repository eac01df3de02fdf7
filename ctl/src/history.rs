//! drctl read commands about the past: `history` (role changes and incidents) and `incident`
//! (one incident, or its post-incident review in Markdown — the runbook's "Post-IR").

use dr_proto::domain::{HistoryView, Incident, RoleChange};
use dr_proto::pb;

use crate::client::{Connected, status_error};
use crate::error::{CliError, CliResult};
use crate::output::{Colors, Format, table};

pub fn when(ms: u64) -> String {
    humantime_fmt(ms)
}

fn humantime_fmt(ms: u64) -> String {
    let t =
        time::OffsetDateTime::from(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub fn secs(ms: Option<u64>) -> String {
    ms.map(|m| format!("{:.1} s", m as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// Role changes and incidents, newest first.
pub async fn fetch_history(
    conn: &mut Connected,
    group: Option<&str>,
    limit: u32,
) -> CliResult<HistoryView> {
    let r = conn
        .admin
        .history(pb::HistoryRequest {
            group: group.unwrap_or_default().into(),
            limit,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    let bad = |e| {
        CliError::failed(format!(
            "controller {} sent an invalid history: {e}",
            conn.url
        ))
    };
    Ok(HistoryView {
        role_changes: r
            .role_changes
            .into_iter()
            .map(RoleChange::try_from)
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        incidents: r
            .incidents
            .into_iter()
            .map(Incident::try_from)
            .collect::<Result<_, _>>()
            .map_err(bad)?,
    })
}

pub async fn history(
    conn: &mut Connected,
    group: Option<&str>,
    limit: u32,
    format: Format,
) -> CliResult {
    let HistoryView {
        role_changes: changes,
        incidents,
    } = fetch_history(conn, group, limit).await?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&HistoryView {
                role_changes: changes,
                incidents
            })
            .expect("serializes")
        ),
        Format::Table => {
            let c = Colors::detect();
            println!("{}", c.bold("role changes (newest first)"));
            let rows: Vec<Vec<(String, String)>> = changes
                .iter()
                .map(|ch| {
                    let p = |s: String| (s.clone(), s);
                    vec![
                        p(when(ch.at_unix_ms)),
                        p(ch.group.to_string()),
                        p(ch.epoch.0.to_string()),
                        p(ch.kind.to_string()),
                        p(format!(
                            "{} → {}",
                            ch.from.as_ref().map(|h| h.as_str()).unwrap_or("-"),
                            ch.to
                        )),
                        p(secs(ch.rto_ms)),
                        p(ch.reason.clone()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "AT (UTC)", "GROUP", "EPOCH", "KIND", "CHANGE", "RTO", "REASON"
                    ],
                    &rows
                )
            );
            println!();
            println!("{}", c.bold("incidents (newest first)"));
            let rows: Vec<Vec<(String, String)>> = incidents
                .iter()
                .map(|i| {
                    let p = |s: String| (s.clone(), s);
                    vec![
                        p(i.id.to_string()),
                        p(when(i.opened_at_unix_ms)),
                        p(i.phase.to_string()),
                        p(i.category.to_string()),
                        p(i.title.clone()),
                        p(secs(i.time_to_recovery_ms)),
                        p(i.escalation_step.to_string()),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ID",
                        "OPENED (UTC)",
                        "PHASE",
                        "CATEGORY",
                        "TITLE",
                        "RECOVERY",
                        "ESC"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(())
}

pub async fn fetch_incident(conn: &mut Connected, id: u64) -> CliResult<Incident> {
    let r = conn
        .admin
        .get_incident(pb::IncidentRequest { id })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    Incident::try_from(r).map_err(|e| {
        CliError::failed(format!(
            "controller {} sent an invalid incident: {e}",
            conn.url
        ))
    })
}

/// The post-incident review, in Markdown.
pub fn report(i: &Incident) -> String {
    let mut out = format!("# Incident {}: {}\n\n", i.id, i.title);
    out.push_str(&format!("- **Group**: {}\n", i.group));
    if let Some(h) = &i.host {
        out.push_str(&format!("- **Host**: {h}\n"));
    }
    out.push_str(&format!("- **Category**: {}\n", i.category));
    out.push_str(&format!(
        "- **Opened**: {} UTC\n",
        when(i.opened_at_unix_ms)
    ));
    match i.resolved_at_unix_ms {
        Some(r) => out.push_str(&format!("- **Resolved**: {} UTC\n", when(r))),
        None => out.push_str(&format!("- **Status**: {} (not resolved)\n", i.phase)),
    }
    out.push_str(&format!(
        "- **Measured time to recovery**: {}\n",
        secs(i.time_to_recovery_ms)
    ));
    out.push_str(&format!(
        "- **Highest escalation step**: {}\n\n",
        i.escalation_step
    ));
    out.push_str("## Timeline\n\n| time (UTC) | +s | step | what |\n|---|---|---|---|\n");
    for e in &i.timeline {
        out.push_str(&format!(
            "| {} | {:.1} | {} | {} |\n",
            when(e.at_unix_ms),
            e.at_unix_ms.saturating_sub(i.opened_at_unix_ms) as f64 / 1000.0,
            e.kind,
            e.text.replace('|', "\\|")
        ));
    }
    let actions: Vec<_> = i
        .timeline
        .iter()
        .filter(|e| e.kind == dr_proto::domain::EntryKind::Action)
        .collect();
    out.push_str("\n## Actions taken\n\n");
    if actions.is_empty() {
        out.push_str("- none\n");
    }
    for a in actions {
        out.push_str(&format!("- {}\n", a.text));
    }
    let esc: Vec<_> = i
        .timeline
        .iter()
        .filter(|e| e.kind == dr_proto::domain::EntryKind::Escalation)
        .collect();
    out.push_str("\n## Escalations\n\n");
    if esc.is_empty() {
        out.push_str("- none\n");
    }
    for e in esc {
        out.push_str(&format!("- {}\n", e.text));
    }
    out.push_str("\n## Follow-up\n\n- [ ] root cause\n- [ ] runbook or threshold changes\n- [ ] communicate to stakeholders\n");
    out
}

pub fn show(i: &Incident, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(i).expect("serializes") + "\n",
        Format::Table => {
            let mut s = format!(
                "incident {}  {}  [{}]  {}\nopened {} UTC, recovery {}, escalation step {}\n\n",
                i.id,
                i.title,
                i.category,
                i.phase,
                when(i.opened_at_unix_ms),
                secs(i.time_to_recovery_ms),
                i.escalation_step
            );
            for e in &i.timeline {
                s.push_str(&format!(
                    "  +{:>6.1}s  {:<12} {}\n",
                    e.at_unix_ms.saturating_sub(i.opened_at_unix_ms) as f64 / 1000.0,
                    e.kind.as_str(),
                    e.text
                ));
            }
            s
        }
    }
}
