//! Prometheus text exposition of the controller's view. Per member (labels `group`, `host`) it
//! exports the runbook's alert metrics under their erlmcp names, so the runbook's ALERT
//! INTERPRETATION table becomes alert rules without renaming.

use std::fmt::Write;

use dr_proto::domain::{ProcessState, Role, StatusView};

/// Escape a label value per the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let parts: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", parts.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Facts about the controller process itself.
#[derive(Clone, Debug, Default)]
pub struct ControllerFacts {
    pub sessions_opened_total: u64,
    pub last_applied: u64,
    /// Restarts sent per member since the controller started.
    pub restarts_total: Vec<(crate::decide::MemberKey, u64)>,
    /// Open incidents per group.
    pub incidents_open: Vec<(dr_proto::domain::GroupName, u64)>,
    pub backups: Vec<BackupFacts>,
    pub rpo_target_s: u64,
    /// When this controller last wrote a scheduled backup of the controller state.
    pub controller_backup_unix_s: Option<f64>,
    /// This controller decides (Raft leader with a quorum), and the Raft term it knows.
    pub leading: bool,
    pub raft_term: u64,
}

/// What the catalog says about a group's backups and drills.
#[derive(Clone, Debug)]
pub struct BackupFacts {
    pub group: dr_proto::domain::GroupName,
    pub last_success_unix_s: Option<f64>,
    pub age_s: Option<f64>,
    pub last_size_bytes: Option<u64>,
    pub last_duration_s: Option<f64>,
    pub count: usize,
    pub drill_last_success_unix_s: Option<f64>,
    pub drill_last_ok: Option<bool>,
}

pub fn render(view: &StatusView, facts: &ControllerFacts) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };

    f.header(
        "erlmcp_dr_group_epoch",
        "gauge",
        "Current epoch of the group (increases at every change of primary).",
    );
    for g in &view.groups {
        f.sample(
            "erlmcp_dr_group_epoch",
            &[("group", g.name.as_str())],
            g.epoch.0 as f64,
        );
    }
    f.header(
        "erlmcp_dr_group_paused",
        "gauge",
        "1 when the group is paused (maintenance: no automatic action).",
    );
    for g in &view.groups {
        let paused = matches!(g.mode, dr_proto::domain::Mode::Paused);
        f.sample(
            "erlmcp_dr_group_paused",
            &[("group", g.name.as_str())],
            f64::from(u8::from(paused)),
        );
    }

    type Getter = fn(&dr_proto::domain::MemberView) -> Option<f64>;
    let per_member: [(&str, &str, &str, Getter); 7] = [
        (
            "erlmcp_dr_member_health",
            "gauge",
            "Member health: 0 green, 1 yellow, 2 red, 3 unknown.",
            |m| Some(f64::from(m.health.as_gauge())),
        ),
        (
            "erlmcp_dr_member_is_primary",
            "gauge",
            "1 for the group's primary.",
            |m| Some(f64::from(u8::from(m.role == Role::Primary))),
        ),
        (
            "erlmcp_dr_member_connected",
            "gauge",
            "1 while the member's agent has a live session.",
            |m| Some(f64::from(u8::from(m.connected))),
        ),
        (
            "erlmcp_dr_member_last_seen_seconds",
            "gauge",
            "Seconds since the agent was last heard.",
            |m| m.last_seen_ms.map(|ms| ms as f64 / 1000.0),
        ),
        (
            "erlmcp_process_health",
            "gauge",
            "1 if the erlmcp process is running, 0 if it crashed (runbook: restart process).",
            |m| {
                let p = m.last_report.as_ref()?.process.as_ref()?;
                Some(f64::from(u8::from(p.state == ProcessState::Running)))
            },
        ),
        (
            "erlmcp_memory_bytes",
            "gauge",
            "erlmcp memory as scraped from the service (runbook: > 2GB memory leak).",
            |m| service_metric(m, |s| s.memory_bytes),
        ),
        (
            "erlmcp_queue_depth",
            "gauge",
            "erlmcp message queue depth (runbook: > 1000 system overloaded).",
            |m| service_metric(m, |s| s.queue_depth),
        ),
    ];
    let more: [(&str, &str, &str, Getter); 2] = [
        (
            "erlmcp_error_rate",
            "gauge",
            "erlmcp error ratio (runbook: > 0.05 investigate).",
            |m| service_metric(m, |s| s.error_rate),
        ),
        (
            "erlmcp_connections",
            "gauge",
            "erlmcp open connections (runbook: > 10000 may need scaling).",
            |m| service_metric(m, |s| s.connections),
        ),
    ];
    for (name, kind, help, get) in per_member.iter().chain(more.iter()) {
        f.header(name, kind, help);
        for g in &view.groups {
            for m in &g.members {
                if let Some(v) = get(m) {
                    f.sample(
                        name,
                        &[("group", g.name.as_str()), ("host", m.host.as_str())],
                        v,
                    );
                }
            }
        }
    }

    f.header(
        "erlmcp_dr_restarts_total",
        "counter",
        "Service restarts the controller ordered, per member, since it started.",
    );
    for ((g, h), n) in &facts.restarts_total {
        f.sample(
            "erlmcp_dr_restarts_total",
            &[("group", g.as_str()), ("host", h.as_str())],
            *n as f64,
        );
    }
    type BackupGetter = fn(&BackupFacts) -> Option<f64>;
    let backup_series: [(&str, &str, BackupGetter); 7] = [
        (
            "erlmcp_dr_backup_last_success_timestamp_seconds",
            "When the newest backup completed (unix seconds).",
            |b| b.last_success_unix_s,
        ),
        (
            "erlmcp_dr_backup_age_seconds",
            "Age of the newest backup: the recovery point objective right now.",
            |b| b.age_s,
        ),
        (
            "erlmcp_dr_backup_last_size_bytes",
            "Stored size of the newest backup.",
            |b| b.last_size_bytes.map(|x| x as f64),
        ),
        (
            "erlmcp_dr_backup_last_duration_seconds",
            "How long the newest backup took.",
            |b| b.last_duration_s,
        ),
        ("erlmcp_dr_backups", "Backups in the catalog.", |b| {
            Some(b.count as f64)
        }),
        (
            "erlmcp_dr_drill_last_success_timestamp_seconds",
            "When the last successful restore drill ran (unix seconds).",
            |b| b.drill_last_success_unix_s,
        ),
        (
            "erlmcp_dr_drill_last_ok",
            "1 if the most recent restore drill succeeded, 0 if it failed.",
            |b| b.drill_last_ok.map(|ok| f64::from(u8::from(ok))),
        ),
    ];
    for (name, help, get) in backup_series {
        f.header(name, "gauge", help);
        for b in &facts.backups {
            if let Some(v) = get(b) {
                f.sample(name, &[("group", b.group.as_str())], v);
            }
        }
    }
    f.header(
        "erlmcp_dr_backup_rpo_target_seconds",
        "gauge",
        "The configured recovery point objective.",
    );
    f.sample(
        "erlmcp_dr_backup_rpo_target_seconds",
        &[],
        facts.rpo_target_s as f64,
    );
    f.header(
        "erlmcp_dr_controller_leading",
        "gauge",
        "1 while this controller decides (Raft leader with a quorum), else 0.",
    );
    f.sample(
        "erlmcp_dr_controller_leading",
        &[],
        if facts.leading { 1.0 } else { 0.0 },
    );
    f.header(
        "erlmcp_dr_controller_raft_term",
        "gauge",
        "The Raft term this controller knows (grows with every leader election).",
    );
    f.sample(
        "erlmcp_dr_controller_raft_term",
        &[],
        facts.raft_term as f64,
    );
    f.header(
        "erlmcp_dr_controller_backup_last_success_timestamp_seconds",
        "gauge",
        "When this controller last wrote a scheduled backup of the controller state.",
    );
    if let Some(t) = facts.controller_backup_unix_s {
        f.sample(
            "erlmcp_dr_controller_backup_last_success_timestamp_seconds",
            &[],
            t,
        );
    }
    f.header(
        "erlmcp_dr_incidents_open",
        "gauge",
        "Open incidents per group.",
    );
    for (g, n) in &facts.incidents_open {
        f.sample(
            "erlmcp_dr_incidents_open",
            &[("group", g.as_str())],
            *n as f64,
        );
    }
    f.header(
        "erlmcp_dr_agent_sessions_opened_total",
        "counter",
        "Agent sessions opened since the controller started.",
    );
    f.sample(
        "erlmcp_dr_agent_sessions_opened_total",
        &[],
        facts.sessions_opened_total as f64,
    );
    f.header(
        "erlmcp_dr_state_last_applied",
        "gauge",
        "Index of the last state change applied.",
    );
    f.sample(
        "erlmcp_dr_state_last_applied",
        &[],
        facts.last_applied as f64,
    );
    out
}

fn service_metric(
    m: &dr_proto::domain::MemberView,
    pick: impl Fn(&dr_proto::domain::ServiceMetrics) -> Option<f64>,
) -> Option<f64> {
    let probe = m.last_report.as_ref()?.metrics.as_ref()?;
    probe.result.as_ref().ok().and_then(pick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_proto::domain::*;

    #[test]
    fn renders_runbook_metric_names_with_labels() {
        let view = StatusView {
            controller_id: "c1".into(),
            leader: true,
            generated_at_unix_ms: 0,
            groups: vec![GroupView {
                name: GroupName::new("g").unwrap(),
                epoch: Epoch(3),
                primary: Some(HostName::new("a").unwrap()),
                mode: Mode::Automatic,
                transition: None,
                open_incidents: 0,
                members: vec![MemberView {
                    host: HostName::new("a").unwrap(),
                    role: Role::Primary,
                    health: Health::Red,
                    reasons: vec![],
                    last_seen_ms: Some(250),
                    lease_remaining_ms: None,
                    connected: true,
                    agent_version: "x".into(),
                    last_report: Some(HealthReport {
                        process: Some(ProcessProbe {
                            state: ProcessState::NotRunning,
                            pid: None,
                            detail: String::new(),
                        }),
                        metrics: Some(MetricsProbe {
                            result: Ok(ServiceMetrics {
                                memory_bytes: Some(1024.0),
                                ..Default::default()
                            }),
                        }),
                        ..Default::default()
                    }),
                }],
            }],
        };
        let text = render(&view, &ControllerFacts::default());
        assert!(
            text.contains("erlmcp_dr_group_epoch{group=\"g\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("erlmcp_dr_member_health{group=\"g\",host=\"a\"} 2\n"));
        assert!(text.contains("erlmcp_process_health{group=\"g\",host=\"a\"} 0\n"));
        assert!(text.contains("erlmcp_memory_bytes{group=\"g\",host=\"a\"} 1024\n"));
        assert!(text.contains("erlmcp_dr_member_last_seen_seconds{group=\"g\",host=\"a\"} 0.25\n"));
        assert!(
            !text.contains("erlmcp_queue_depth{"),
            "absent values are not invented"
        );
    }
}
