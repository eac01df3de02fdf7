//! Builds the status view (`drctl status`, `/api/v1/status`, dashboard, metrics) from desired
//! state, observed state and the current instant. Pure.

use std::time::{Duration, Instant};

use dr_proto::domain::{GroupView, Health, MemberView, Role, StatusView};

use crate::classify::{Thresholds, Verdict, classify_report};
use crate::observed::{MemberObservation, Observed};
use crate::state::ControllerState;

/// What the view needs to know about the answering controller.
#[derive(Clone, Debug)]
pub struct ViewContext<'a> {
    pub controller_id: &'a str,
    pub leader: bool,
    pub now: Instant,
    pub now_unix_ms: u64,
    pub stale_after: Duration,
    pub thresholds: &'a Thresholds,
}

fn ago(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} s", d.as_secs())
    }
}

/// Health of one member from what we observed.
pub fn member_verdict(obs: Option<&MemberObservation>, ctx: &ViewContext<'_>) -> Verdict {
    let Some(obs) = obs.filter(|o| o.last_seen.is_some()) else {
        return Verdict::unknown("agent has not connected to this controller since it started");
    };
    if obs.session_id.is_none() {
        let since = obs
            .disconnected_at
            .map(|t| format!(" {} ago", ago(ctx.now.saturating_duration_since(t))))
            .unwrap_or_default();
        return Verdict::unknown(format!("agent disconnected{since}"));
    }
    let (Some(report), Some(at)) = (&obs.last_report, obs.last_report_at) else {
        return Verdict::unknown("agent connected, no health report yet");
    };
    let age = ctx.now.saturating_duration_since(at);
    if age > ctx.stale_after {
        return Verdict::unknown(format!("no health report for {}", ago(age)));
    }
    classify_report(report, ctx.thresholds)
}

pub fn build_status(
    state: &ControllerState,
    observed: &Observed,
    ctx: &ViewContext<'_>,
) -> StatusView {
    let groups = state
        .groups
        .iter()
        .map(|(name, g)| {
            let members = g
                .members
                .keys()
                .map(|host| {
                    let obs = observed.get(&(name.clone(), host.clone()));
                    let verdict = member_verdict(obs, ctx);
                    let role = if g.primary.as_ref() == Some(host) {
                        Role::Primary
                    } else if obs.is_some() {
                        Role::Replica
                    } else {
                        Role::Unknown
                    };
                    MemberView {
                        host: host.clone(),
                        role,
                        health: verdict.health,
                        reasons: verdict.reasons,
                        last_seen_ms: obs
                            .and_then(|o| o.last_seen)
                            .map(|t| ctx.now.saturating_duration_since(t).as_millis() as u64),
                        lease_remaining_ms: None,
                        connected: obs.is_some_and(|o| o.session_id.is_some()),
                        agent_version: obs.map(|o| o.agent_version.clone()).unwrap_or_default(),
                        last_report: obs.and_then(|o| o.last_report.clone()),
                    }
                })
                .collect();
            GroupView {
                name: name.clone(),
                epoch: g.epoch,
                primary: g.primary.clone(),
                mode: g.mode,
                members,
            }
        })
        .collect();
    StatusView {
        controller_id: ctx.controller_id.to_string(),
        leader: ctx.leader,
        generated_at_unix_ms: ctx.now_unix_ms,
        groups,
    }
}

/// Count of members per health, for metrics and the dashboard.
pub fn count_health(view: &StatusView, health: Health) -> usize {
    view.groups
        .iter()
        .flat_map(|g| &g.members)
        .filter(|m| m.health == health)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateCommand;
    use dr_proto::domain::{Epoch, GroupName, HealthReport, HostName};

    fn ctx(now: Instant, t: &Thresholds) -> ViewContext<'_> {
        ViewContext {
            controller_id: "c1",
            leader: true,
            now,
            now_unix_ms: 0,
            stale_after: Duration::from_secs(2),
            thresholds: t,
        }
    }

    #[test]
    fn roles_and_liveness_come_out_right() {
        let g = GroupName::new("g").unwrap();
        let a = HostName::new("a").unwrap();
        let b = HostName::new("b").unwrap();
        let c = HostName::new("c").unwrap();
        let mut state = ControllerState::default();
        state
            .apply(&StateCommand::EnsureGroup {
                group: g.clone(),
                initial_primary: Some(a.clone()),
                at_unix_ms: 0,
            })
            .unwrap();
        for h in [&b, &c] {
            state
                .apply(&StateCommand::RegisterMember {
                    group: g.clone(),
                    host: h.clone(),
                    at_unix_ms: 0,
                })
                .unwrap();
        }
        let t0 = Instant::now();
        let mut obs = Observed::default();
        obs.session_opened((g.clone(), a.clone()), 1, "0.1".into(), vec![], t0);
        obs.report(&(g.clone(), a.clone()), 1, HealthReport::default(), t0);
        obs.session_opened((g.clone(), b.clone()), 2, "0.1".into(), vec![], t0);
        obs.report(&(g.clone(), b.clone()), 2, HealthReport::default(), t0);
        obs.session_closed(&(g.clone(), b.clone()), 2, t0);

        let t = Thresholds::default();
        let view = build_status(&state, &obs, &ctx(t0 + Duration::from_millis(500), &t));
        let gv = view.group("g").unwrap();
        assert_eq!(gv.epoch, Epoch(1));
        let ma = gv.member("a").unwrap();
        assert_eq!((ma.role, ma.health), (Role::Primary, Health::Green));
        assert_eq!(ma.last_seen_ms, Some(500));
        let mb = gv.member("b").unwrap();
        assert_eq!((mb.role, mb.health), (Role::Replica, Health::Unknown));
        assert!(
            mb.reasons[0].starts_with("agent disconnected"),
            "{:?}",
            mb.reasons
        );
        let mc = gv.member("c").unwrap();
        assert_eq!((mc.role, mc.health), (Role::Unknown, Health::Unknown));

        // a connected agent whose reports stopped is stale
        let view = build_status(&state, &obs, &ctx(t0 + Duration::from_secs(3), &t));
        let ma = view.group("g").unwrap().member("a").unwrap();
        assert_eq!(ma.health, Health::Unknown);
        assert!(
            ma.reasons[0].starts_with("no health report for"),
            "{:?}",
            ma.reasons
        );
    }
}
