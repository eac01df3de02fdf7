//! Builds the status view (`drctl status`, `/api/v1/status`, dashboard, metrics) from the
//! decision core's desired and observed state at one instant. Pure.

use std::time::Duration;

use dr_proto::domain::{GroupView, Health, MemberView, Role, StatusView};

use crate::classify::Verdict;
use crate::decide::{Decider, MemberObs, Now};
use crate::state::ControllerState;

fn ago(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} s", d.as_secs())
    }
}

/// Health of one member from what we observed.
pub fn member_verdict(obs: Option<&MemberObs>, now: Now, stale_after: Duration) -> Verdict {
    let Some(obs) = obs.filter(|o| o.last_seen.is_some()) else {
        return Verdict::unknown("agent has not connected to this controller since it started");
    };
    if obs.session.is_none() {
        let since = obs
            .disconnected_at
            .map(|t| format!(" {} ago", ago(now.mono.saturating_sub(t))))
            .unwrap_or_default();
        return Verdict::unknown(format!("agent disconnected{since}"));
    }
    let (Some(verdict), Some(at)) = (&obs.verdict, obs.last_report_at) else {
        return Verdict::unknown("agent connected, no health report yet");
    };
    let age = now.mono.saturating_sub(at);
    if age > stale_after {
        return Verdict::unknown(format!("no health report for {}", ago(age)));
    }
    verdict.clone()
}

/// The status of every group as `controller_id` sees it at `now`.
/// `d` is the decision core when this controller leads; a follower knows the desired state
/// (replicated) but observes no member, so its members read `unknown`.
pub fn build_status(
    state: &ControllerState,
    d: Option<&Decider>,
    controller_id: &str,
    leader: bool,
    now: Now,
    stale_after: Duration,
) -> StatusView {
    let groups = state
        .groups
        .iter()
        .map(|(name, g)| {
            let members = g
                .members
                .keys()
                .map(|host| {
                    let key = (name.clone(), host.clone());
                    let obs = d.and_then(|d| d.member(&key));
                    let verdict = member_verdict(obs, now, stale_after);
                    let role = if g.primary.as_ref() == Some(host) {
                        Role::Primary
                    } else if obs.is_some_and(MemberObs::fenced) {
                        Role::Fenced
                    } else if obs.is_some_and(|o| o.last_seen.is_some()) {
                        Role::Replica
                    } else {
                        Role::Unknown
                    };
                    let lease_remaining_ms = (role == Role::Primary)
                        .then(|| d.and_then(|d| d.lease_remaining(&key, now)))
                        .flatten()
                        .map(|r| r.as_millis() as u64);
                    MemberView {
                        host: host.clone(),
                        role,
                        health: verdict.health,
                        reasons: verdict.reasons,
                        last_seen_ms: obs
                            .and_then(|o| o.last_seen)
                            .map(|t| now.mono.saturating_sub(t).as_millis() as u64),
                        lease_remaining_ms,
                        connected: obs.is_some_and(MemberObs::connected),
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
                transition: g.transition.as_ref().map(|t| {
                    format!(
                        "{} {} → {} at epoch {} ({:?})",
                        t.kind,
                        t.from.as_ref().map(|h| h.as_str()).unwrap_or("none"),
                        t.to,
                        t.epoch,
                        t.phase
                    )
                    .to_lowercase()
                }),
                open_incidents: state
                    .incidents
                    .values()
                    .filter(|i| i.is_open() && &i.group == name)
                    .count() as u32,
            }
        })
        .collect();
    StatusView {
        controller_id: controller_id.to_string(),
        leader,
        generated_at_unix_ms: now.unix_ms,
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
    use crate::decide::tests_support::*;

    #[test]
    fn roles_liveness_and_lease_come_out_right() {
        let mut w = World::new(crate::decide::Settings::default(), &["a", "b", "c"]);
        w.report("a", healthy_report(1));
        w.report("b", healthy_report(1));
        w.lease("a", 1);
        w.close("b");
        w.t += Duration::from_millis(500);
        let view = build_status(
            w.d.desired(),
            Some(&w.d),
            "c1",
            true,
            w.now(),
            Duration::from_secs(2),
        );
        let gv = view.group("g").unwrap();
        let ma = gv.member("a").unwrap();
        assert_eq!((ma.role, ma.health), (Role::Primary, Health::Green));
        assert_eq!(ma.last_seen_ms, Some(500));
        assert_eq!(ma.lease_remaining_ms, Some(1500));
        let mb = gv.member("b").unwrap();
        assert_eq!((mb.role, mb.health), (Role::Replica, Health::Unknown));
        assert!(
            mb.reasons[0].starts_with("agent disconnected"),
            "{:?}",
            mb.reasons
        );
        let mc = gv.member("c").unwrap();
        assert_eq!((mc.role, mc.health), (Role::Replica, Health::Green));

        w.t += Duration::from_secs(3);
        let view = build_status(
            w.d.desired(),
            Some(&w.d),
            "c1",
            true,
            w.now(),
            Duration::from_secs(2),
        );
        let ma = view.group("g").unwrap().member("a").unwrap();
        assert_eq!(ma.health, Health::Unknown);
        assert!(
            ma.reasons[0].starts_with("no health report for"),
            "{:?}",
            ma.reasons
        );
        assert_eq!(ma.lease_remaining_ms, None);
    }
}
