//! The decision core's knobs, with the defaults an operator gets without configuring anything.

use std::time::Duration;

use dr_proto::domain::Category;

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Lease length granted to the primary's agent.
    pub lease_ttl: Duration,
    /// Added to the ttl before the controller treats an ungranted lease as surely expired
    /// (clock-rate drift between the hosts, scheduling delays).
    pub lease_margin: Duration,
    /// No message from an agent for this long makes it suspect.
    pub suspect_after: Duration,
    /// Reports in a row that must show a hung or unresponsive service before acting on it.
    pub hung_reports: u32,
    /// Automatic restarts allowed per window, and the window.
    pub restart_budget: u32,
    pub restart_window: Duration,
    /// Wait before the n-th attempt in a window: `restart_backoff * 2^(n-2)` (first attempt at
    /// once).
    pub restart_backoff: Duration,
    /// A restart that has not reported back in this time failed.
    pub restart_timeout: Duration,
    pub promote_timeout: Duration,
    pub demote_timeout: Duration,
    /// No second automatic failover within this time of the previous one.
    pub failover_cooldown: Duration,
    /// Candidates further behind than this are not promoted (unless forced).
    pub max_replication_lag_ms: Option<f64>,
    /// Green reports in a row before an incident is verified healthy again.
    pub verify_reports: u32,
    /// Escalation steps after an incident opens (runbook: T+0, T+5, T+15, T+30 minutes).
    pub escalation_steps: Vec<Duration>,
    /// Whether a smoke request through the load balancer verifies a new primary.
    pub smoke_check: bool,
    /// Scheduled backups (None: off).
    pub backup_full_every: Option<Duration>,
    pub backup_incremental_every: Option<Duration>,
    /// Scheduled restore drills (None: off).
    pub drill_every: Option<Duration>,
    pub retention_keep_last: u32,
    pub retention_keep_daily: u32,
    pub retention_keep_weekly: u32,
    /// After a restore the incident watches the member this long before it is resolved (the
    /// runbook: "monitor for data inconsistencies in the first 10 minutes").
    pub restore_watch: Duration,
    pub backup_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease_ttl: Duration::from_millis(2000),
            lease_margin: Duration::from_millis(300),
            suspect_after: Duration::from_millis(1500),
            hung_reports: 3,
            restart_budget: 3,
            restart_window: Duration::from_secs(600),
            restart_backoff: Duration::from_secs(10),
            restart_timeout: Duration::from_secs(90),
            promote_timeout: Duration::from_secs(15),
            demote_timeout: Duration::from_secs(5),
            failover_cooldown: Duration::from_secs(60),
            max_replication_lag_ms: None,
            verify_reports: 2,
            escalation_steps: vec![
                Duration::ZERO,
                Duration::from_secs(5 * 60),
                Duration::from_secs(15 * 60),
                Duration::from_secs(30 * 60),
            ],
            smoke_check: true,
            backup_full_every: Some(Duration::from_secs(24 * 3600)),
            backup_incremental_every: Some(Duration::from_secs(15 * 60)),
            drill_every: Some(Duration::from_secs(24 * 3600)),
            retention_keep_last: 7,
            retention_keep_daily: 7,
            retention_keep_weekly: 4,
            restore_watch: Duration::from_secs(600),
            backup_timeout: Duration::from_secs(3600),
        }
    }
}

/// Words for each escalation step (runbook ESCALATION PATH).
pub fn escalation_text(step: usize) -> &'static str {
    match step {
        0 => "first alert: on-call engineer investigates (health dashboard, recent logs)",
        1 => {
            "no recovery after 5 minutes: engage secondary on-call, check replica health, consider failover"
        }
        2 => {
            "still down after 15 minutes: declare SEV-1, activate incident commander, begin data restore if needed"
        }
        _ => {
            "escalation after 30 minutes: contact the database team, review backup status, plan recovery"
        }
    }
}

/// Who to contact (runbook CONTACT MATRIX), used as the default route name for a category.
pub fn contact_for(category: Category) -> &'static str {
    match category {
        Category::ProcessCrash => "devops_lead",
        Category::ApplicationError => "duty_engineer",
        Category::MemoryLeak => "erlang_expert",
        Category::Overload => "infrastructure",
        Category::NetworkIssue | Category::NodeFailure => "network_team",
        Category::BackupFailure | Category::RestoreFailure => "database_team",
        Category::DataProblem => "database_team",
        Category::ReplicaSync => "distributed_systems",
        Category::NoCandidate => "devops_lead",
    }
}
