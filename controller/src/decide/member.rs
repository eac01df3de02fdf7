//! What the core knows about one member right now (observed state), and how a report reads as
//! the service's condition.

use std::time::Duration;

use dr_proto::domain::{HealthReport, HttpClass, PortState, ProcessState};

use super::ActionId;
use crate::classify::Verdict;

/// The lease as the controller granted it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseView {
    /// Monotonic time of the last grant.
    pub granted_at: Option<Duration>,
    /// The agent gave the lease back after the last grant.
    pub released: bool,
}

/// Reachability of a member's agent, as one exhaustive transition function decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Up,
    /// Silent for `suspect_after`, or its session dropped.
    Suspect,
    /// Suspect and (for the primary) its lease surely expired.
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AvailabilityChange {
    None,
    BecameSuspect,
    BecameDown,
    Recovered,
}

pub fn availability_change(old: Availability, new: Availability) -> AvailabilityChange {
    match (old, new) {
        (Availability::Up, Availability::Up)
        | (Availability::Suspect, Availability::Suspect)
        | (Availability::Down, Availability::Down) => AvailabilityChange::None,
        (Availability::Up, Availability::Suspect) => AvailabilityChange::BecameSuspect,
        (_, Availability::Down) => AvailabilityChange::BecameDown,
        (Availability::Suspect | Availability::Down, Availability::Up) => {
            AvailabilityChange::Recovered
        }
        (Availability::Down, Availability::Suspect) => AvailabilityChange::None,
    }
}

#[derive(Clone, Debug)]
pub struct MemberObs {
    pub session: Option<u64>,
    pub agent_version: String,
    pub capabilities: Vec<String>,
    pub priority: i32,
    pub no_failover: bool,
    pub last_seen: Option<Duration>,
    pub last_report: Option<HealthReport>,
    pub last_report_at: Option<Duration>,
    pub disconnected_at: Option<Duration>,
    pub verdict: Option<Verdict>,
    /// Reports in a row showing a hung or unresponsive service.
    pub bad_streak: u32,
    /// Reports in a row that classified green.
    pub green_streak: u32,
    pub lease: LeaseView,
    /// Wall-clock times of automatic restart attempts (for the budget).
    pub restart_attempts: Vec<u64>,
    /// Automatic restarts that failed in a row.
    pub restart_failures: u32,
    pub restart_in_flight: Option<ActionId>,
    pub availability: Availability,
}

impl MemberObs {
    pub fn new() -> MemberObs {
        MemberObs {
            session: None,
            agent_version: String::new(),
            capabilities: Vec::new(),
            priority: 0,
            no_failover: false,
            last_seen: None,
            last_report: None,
            last_report_at: None,
            disconnected_at: None,
            verdict: None,
            bad_streak: 0,
            green_streak: 0,
            lease: LeaseView::default(),
            restart_attempts: Vec::new(),
            restart_failures: 0,
            restart_in_flight: None,
            availability: Availability::Suspect,
        }
    }

    pub fn can(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    pub fn connected(&self) -> bool {
        self.session.is_some()
    }

    /// Fresh enough to be believed.
    pub fn fresh(&self, now: Duration, suspect_after: Duration) -> bool {
        self.connected()
            && self
                .last_report_at
                .is_some_and(|t| now.saturating_sub(t) < suspect_after)
    }

    pub fn fenced(&self) -> bool {
        self.last_report
            .as_ref()
            .and_then(|r| r.role_state.as_ref())
            .is_some_and(|s| s.fenced)
    }
}

impl Default for MemberObs {
    fn default() -> Self {
        Self::new()
    }
}

/// How the service itself is doing, from one report: the part that decides automatic action.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceCondition {
    Ok,
    /// The process is gone.
    Dead(String),
    /// Running but not answering (timeout, or stopped).
    Hung(String),
    /// Running but its port refuses connections.
    Unresponsive(String),
    /// Answering with 5xx.
    AppError(String),
}

pub fn service_condition(r: &HealthReport) -> ServiceCondition {
    if let Some(p) = &r.process {
        match p.state {
            ProcessState::NotRunning => {
                return ServiceCondition::Dead(format!("process not running ({})", p.detail));
            }
            ProcessState::Stopped => {
                return ServiceCondition::Hung(format!("process stopped ({})", p.detail));
            }
            ProcessState::Running | ProcessState::Unknown => {}
        }
    }
    if let Some(h) = &r.http {
        match h.class {
            HttpClass::Timeout => {
                return ServiceCondition::Hung(format!(
                    "health check timed out after {} ms",
                    h.latency_ms
                ));
            }
            HttpClass::Refused => {
                return ServiceCondition::Unresponsive("health check connection refused".into());
            }
            HttpClass::ServerError => {
                return ServiceCondition::AppError(format!(
                    "health check returned HTTP {}",
                    h.status_code.unwrap_or(500)
                ));
            }
            _ => {}
        }
    }
    if let Some(port) = r.ports.iter().find(|p| p.state != PortState::Listening) {
        return ServiceCondition::Unresponsive(format!("port {} not listening", port.port));
    }
    ServiceCondition::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_proto::domain::{HttpProbe, ProcessProbe};

    #[test]
    fn availability_transitions_are_exhaustive_and_sensible() {
        use Availability::*;
        assert_eq!(
            availability_change(Up, Suspect),
            AvailabilityChange::BecameSuspect
        );
        assert_eq!(
            availability_change(Suspect, Down),
            AvailabilityChange::BecameDown
        );
        assert_eq!(
            availability_change(Up, Down),
            AvailabilityChange::BecameDown
        );
        assert_eq!(availability_change(Down, Up), AvailabilityChange::Recovered);
        assert_eq!(availability_change(Down, Suspect), AvailabilityChange::None);
    }

    #[test]
    fn conditions_from_reports() {
        let mut r = HealthReport {
            process: Some(ProcessProbe {
                state: ProcessState::NotRunning,
                pid: None,
                detail: "no pid".into(),
            }),
            ..Default::default()
        };
        assert!(matches!(service_condition(&r), ServiceCondition::Dead(_)));
        r.process.as_mut().unwrap().state = ProcessState::Running;
        r.http = Some(HttpProbe {
            class: HttpClass::Timeout,
            status_code: None,
            latency_ms: 1000,
            p99_ms: None,
            window_failures: 1,
            window_size: 1,
            detail: String::new(),
        });
        assert!(matches!(service_condition(&r), ServiceCondition::Hung(_)));
        r.http.as_mut().unwrap().class = HttpClass::ServerError;
        assert!(matches!(
            service_condition(&r),
            ServiceCondition::AppError(_)
        ));
        r.http.as_mut().unwrap().class = HttpClass::Ok;
        assert_eq!(service_condition(&r), ServiceCondition::Ok);
    }
}
