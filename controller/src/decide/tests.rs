//! Unit tests of the decision core: exact commands for each situation.

use std::collections::HashMap;
use std::time::Duration;

use dr_proto::domain::{
    Action, ChangeKind, ControllerMessage, EntryKind, Epoch, GroupName, HealthReport, Hello,
    HostName, HttpClass, HttpProbe, LeaseRelease, LeaseRequest, Mode, Phase, ProcessProbe,
    ProcessState,
};

use super::*;
use crate::state::{StateCommand, TransitionPhase};

pub(crate) fn g() -> GroupName {
    GroupName::new("g").unwrap()
}
pub(crate) fn h(s: &str) -> HostName {
    HostName::new(s).unwrap()
}

pub(crate) fn healthy_report(seq: u64) -> HealthReport {
    HealthReport {
        seq,
        process: Some(ProcessProbe {
            state: ProcessState::Running,
            pid: Some(1),
            detail: "pid 1".into(),
        }),
        http: Some(HttpProbe {
            class: HttpClass::Ok,
            status_code: Some(200),
            latency_ms: 1,
            p99_ms: Some(2),
            window_failures: 0,
            window_size: 10,
            detail: String::new(),
        }),
        ..Default::default()
    }
}

pub(crate) fn dead_report(seq: u64) -> HealthReport {
    let mut r = healthy_report(seq);
    r.process.as_mut().unwrap().state = ProcessState::NotRunning;
    r.http.as_mut().unwrap().class = HttpClass::Refused;
    r
}

pub(crate) struct World {
    pub d: Decider,
    pub t: Duration,
    pub unix0: u64,
    pub sessions: HashMap<String, u64>,
    next_session: u64,
}

impl World {
    pub fn new(settings: Settings, hosts: &[&str]) -> World {
        let mut state = ControllerState::default();
        state
            .apply(&StateCommand::EnsureGroup {
                group: g(),
                initial_primary: Some(h(hosts[0])),
                at_unix_ms: 0,
            })
            .unwrap();
        let now = Now {
            mono: Duration::ZERO,
            unix_ms: 1_000_000,
        };
        let d = Decider::new(settings, Thresholds::default(), state, HashMap::new(), now);
        let mut w = World {
            d,
            t: Duration::ZERO,
            unix0: 1_000_000,
            sessions: HashMap::new(),
            next_session: 1,
        };
        for host in hosts {
            w.connect(host);
            w.report(host, healthy_report(0));
        }
        w
    }

    pub fn now(&self) -> Now {
        Now {
            mono: self.t,
            unix_ms: self.unix0 + self.t.as_millis() as u64,
        }
    }

    pub fn advance(&mut self, ms: u64) -> Vec<Command> {
        self.t += Duration::from_millis(ms);
        self.ev(Event::Tick)
    }

    pub fn ev(&mut self, e: Event) -> Vec<Command> {
        let now = self.now();
        self.d.handle(e, now)
    }

    pub fn connect(&mut self, host: &str) -> Vec<Command> {
        self.connect_with(host, &["ping", "restart", "promote", "demote"])
    }

    pub fn connect_with(&mut self, host: &str, capabilities: &[&str]) -> Vec<Command> {
        let s = self.next_session;
        self.next_session += 1;
        self.sessions.insert(host.to_string(), s);
        self.ev(Event::SessionOpened {
            key: (g(), h(host)),
            session: s,
            hello: Hello {
                protocol_version: 1,
                host: h(host),
                group: g(),
                agent_version: "t".into(),
                capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
                last_epoch_seen: Epoch(0),
                priority: 0,
                no_failover: false,
            },
        })
    }

    pub fn report(&mut self, host: &str, r: HealthReport) -> Vec<Command> {
        let s = self.sessions[host];
        self.ev(Event::Report {
            key: (g(), h(host)),
            session: s,
            report: r,
        })
    }

    pub fn lease(&mut self, host: &str, epoch: u64) -> Vec<Command> {
        let s = self.sessions[host];
        self.ev(Event::LeaseRequest {
            key: (g(), h(host)),
            session: s,
            request: LeaseRequest {
                request_id: 1,
                epoch: Epoch(epoch),
            },
        })
    }

    pub fn close(&mut self, host: &str) -> Vec<Command> {
        let s = self.sessions[host];
        self.ev(Event::SessionClosed {
            key: (g(), h(host)),
            session: s,
        })
    }

    pub fn primary(&self) -> Option<HostName> {
        self.d.desired().group(&g()).unwrap().primary.clone()
    }

    pub fn epoch(&self) -> Epoch {
        self.d.desired().group(&g()).unwrap().epoch
    }
}

pub(crate) fn agent_actions(cmds: &[Command]) -> Vec<(String, Action, String)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::ToAgent {
                key,
                message: ControllerMessage::Command(cmd),
                ..
            } => Some((key.1.to_string(), cmd.action.clone(), cmd.id.clone())),
            _ => None,
        })
        .collect()
}

fn granted(cmds: &[Command]) -> Option<Result<u32, String>> {
    cmds.iter().find_map(|c| match c {
        Command::ToAgent {
            message: ControllerMessage::LeaseGrant(g),
            ..
        } => Some(g.outcome.clone()),
        _ => None,
    })
}

fn fast_settings() -> Settings {
    Settings {
        restart_budget: 0,
        failover_cooldown: Duration::ZERO,
        ..Settings::default()
    }
}

#[test]
fn leases_go_only_to_the_primary_at_its_epoch() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    assert_eq!(granted(&w.lease("a", 1)), Some(Ok(2000)));
    assert!(
        granted(&w.lease("b", 1))
            .unwrap()
            .unwrap_err()
            .contains("not the primary")
    );
    assert!(
        granted(&w.lease("a", 0))
            .unwrap()
            .unwrap_err()
            .contains("epoch")
    );
}

#[test]
fn a_healthy_cluster_produces_acks_and_nothing_else() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    for i in 0..20 {
        w.lease("a", 1);
        let cmds = w.report("a", healthy_report(i));
        assert!(
            matches!(
                cmds.as_slice(),
                [Command::ToAgent {
                    message: ControllerMessage::Ack(_),
                    ..
                }]
            ),
            "{cmds:?}"
        );
        w.report("b", healthy_report(i));
        let cmds = w.advance(250);
        assert!(cmds.is_empty(), "{cmds:?}");
    }
}

#[test]
fn a_dead_replica_is_restarted_within_its_budget_then_escalated() {
    let settings = Settings {
        restart_budget: 2,
        restart_backoff: Duration::from_secs(1),
        ..Settings::default()
    };
    let mut w = World::new(settings, &["a", "b"]);
    let cmds = w.report("b", dead_report(1));
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Persist(StateCommand::OpenIncident { .. })))
    );
    let actions = agent_actions(&cmds);
    assert_eq!(actions.len(), 1);
    assert!(matches!(actions[0].1, Action::Restart { .. }));
    let id: u64 = actions[0].2.parse().unwrap();
    // failed restart; still dead; next attempt only after the backoff
    w.ev(Event::ActionResult {
        id,
        outcome: Err("did not come up".into()),
    });
    assert!(
        agent_actions(&w.report("b", dead_report(2))).is_empty(),
        "backoff"
    );
    w.t += Duration::from_millis(1100);
    let actions = agent_actions(&w.report("b", dead_report(3)));
    assert_eq!(actions.len(), 1, "second attempt after the backoff");
    let id: u64 = actions[0].2.parse().unwrap();
    w.ev(Event::ActionResult {
        id,
        outcome: Err("no".into()),
    });
    w.t += Duration::from_secs(60);
    let cmds = w.report("b", dead_report(4));
    assert!(
        agent_actions(&cmds).is_empty(),
        "budget spent: no restart loop"
    );
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Notify(n) if n.text.contains("budget spent"))),
        "{cmds:?}"
    );
    // a replica never causes a failover
    assert_eq!(w.primary(), Some(h("a")));
}

#[test]
fn restart_success_then_green_resolves_the_incident_with_its_recovery_time() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    let cmds = w.report("b", dead_report(1));
    let id: u64 = agent_actions(&cmds)[0].2.parse().unwrap();
    w.t += Duration::from_millis(700);
    w.ev(Event::ActionResult {
        id,
        outcome: Ok("healthy after 0.6 s".into()),
    });
    w.report("b", healthy_report(2));
    let cmds = w.report("b", healthy_report(3));
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Persist(StateCommand::ResolveIncident { .. }))),
        "{cmds:?}"
    );
    let inc = w.d.desired().incidents.values().next().unwrap();
    assert_eq!(inc.phase, Phase::Resolved);
    assert_eq!(inc.time_to_recovery_ms, Some(700));
    let kinds: Vec<EntryKind> = inc.timeline.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EntryKind::Detected,
            EntryKind::Classified,
            EntryKind::Action,
            EntryKind::Action,
            EntryKind::Verification,
            EntryKind::Resolved
        ]
    );
}

#[test]
fn paused_group_gets_no_automatic_action() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    w.ev(Event::Operator {
        request_id: 1,
        request: OperatorRequest::SetMode {
            group: g(),
            mode: Mode::Paused,
        },
    });
    let cmds = w.report("b", dead_report(1));
    assert!(agent_actions(&cmds).is_empty());
    // the primary dies too: no failover while paused
    w.close("a");
    for _ in 0..20 {
        assert!(agent_actions(&w.advance(500)).is_empty());
    }
    assert_eq!(w.primary(), Some(h("a")));
}

#[test]
fn host_loss_fails_over_only_after_the_lease_surely_expired() {
    let mut w = World::new(fast_settings(), &["a", "b", "c"]);
    w.advance(3000); // past the inherited-lease horizon
    for host in ["a", "b", "c"] {
        w.report(host, healthy_report(1));
    }
    w.lease("a", 1);
    let granted_at = w.t;
    w.close("a");
    w.report("b", healthy_report(2));
    w.report("c", healthy_report(2));
    let mut promoted_at = None;
    for _ in 0..40 {
        let cmds = w.advance(100);
        w.report("b", healthy_report(3));
        w.report("c", healthy_report(3));
        if agent_actions(&cmds)
            .iter()
            .any(|a| matches!(a.1, Action::Promote { .. }))
        {
            promoted_at = Some(w.t);
            break;
        }
    }
    let at = promoted_at.expect("a failover happened");
    let settings = Settings::default();
    assert!(
        at >= granted_at + settings.lease_ttl + settings.lease_margin,
        "promoted at {at:?}, lease granted at {granted_at:?}"
    );
    // The RTO counts from the primary's last sign of life, not from when it was declared lost.
    let t =
        w.d.desired()
            .group(&g())
            .unwrap()
            .transition
            .clone()
            .unwrap();
    let last_seen_unix = w.unix0 + granted_at.as_millis() as u64;
    assert!(
        t.detected_at_unix_ms <= last_seen_unix,
        "detected at {} but last seen at {last_seen_unix}",
        t.detected_at_unix_ms
    );
    assert_eq!(w.epoch(), Epoch(2));
    assert!(w.primary() == Some(h("b")) || w.primary() == Some(h("c")));
}

#[test]
fn a_crashed_primary_that_released_its_lease_fails_over_at_once_without_restart_budget() {
    let mut w = World::new(fast_settings(), &["a", "b"]);
    w.advance(3000);
    w.report("b", healthy_report(1));
    w.lease("a", 1);
    let s = w.sessions["a"];
    w.ev(Event::LeaseRelease {
        key: (g(), h("a")),
        session: s,
        release: LeaseRelease {
            epoch: Epoch(1),
            reason: "service died".into(),
        },
    });
    w.report("a", dead_report(1));
    let cmds = w.advance(10);
    let actions = agent_actions(&cmds);
    assert!(
        actions
            .iter()
            .any(|a| a.0 == "b" && matches!(a.1, Action::Promote { .. })),
        "{cmds:?}"
    );
    // persisted before told
    let persist_pos = cmds
        .iter()
        .position(|c| matches!(c, Command::Persist(StateCommand::SetPrimary { .. })))
        .unwrap();
    let promote_pos = cmds
        .iter()
        .position(|c| {
            matches!(
                c,
                Command::ToAgent {
                    message: ControllerMessage::Command(_),
                    ..
                }
            )
        })
        .unwrap();
    assert!(persist_pos < promote_pos);
}

#[test]
fn full_failover_flow_records_rto_and_resolves() {
    let mut w = World::new(fast_settings(), &["a", "b"]);
    w.advance(3000);
    w.report("b", healthy_report(1));
    let s = w.sessions["a"];
    w.ev(Event::LeaseRelease {
        key: (g(), h("a")),
        session: s,
        release: LeaseRelease {
            epoch: Epoch(1),
            reason: "dead".into(),
        },
    });
    w.report("a", dead_report(1));
    let cmds = w.advance(10);
    let promote_id: u64 = agent_actions(&cmds)
        .iter()
        .find(|a| matches!(a.1, Action::Promote { .. }))
        .unwrap()
        .2
        .parse()
        .unwrap();
    w.t += Duration::from_millis(40);
    let cmds = w.ev(Event::ActionResult {
        id: promote_id,
        outcome: Ok("promote hook ok".into()),
    });
    let repoint = cmds
        .iter()
        .find_map(|c| match c {
            Command::RepointLb {
                id, new_primary, ..
            } => Some((*id, new_primary.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(repoint.1, h("b"));
    let cmds = w.ev(Event::ActionResult {
        id: repoint.0,
        outcome: Ok("haproxy".into()),
    });
    let smoke = cmds
        .iter()
        .find_map(|c| match c {
            Command::Smoke { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    w.t += Duration::from_millis(10);
    w.ev(Event::ActionResult {
        id: smoke,
        outcome: Ok("answered by b".into()),
    });
    let gs = w.d.desired().group(&g()).unwrap();
    assert!(gs.transition.is_none());
    let change = w.d.desired().role_changes.last().unwrap();
    assert_eq!(
        (change.kind, change.to.as_str(), change.epoch),
        (ChangeKind::Failover, "b", Epoch(2))
    );
    assert!(change.rto_ms.is_some());
    assert!(
        w.d.desired()
            .incidents
            .values()
            .all(|i| i.phase == Phase::Resolved)
    );
}

#[test]
fn no_healthy_candidate_means_an_incident_and_nothing_unsafe() {
    let mut w = World::new(fast_settings(), &["a", "b"]);
    let mut all = w.report("a", healthy_report(1));
    all.extend(w.advance(3000));
    all.extend(w.report("b", dead_report(1)));
    w.close("a");
    for _ in 0..50 {
        all.extend(w.advance(100));
    }
    assert!(
        agent_actions(&all)
            .iter()
            .all(|a| !matches!(a.1, Action::Promote { .. }))
    );
    assert_eq!(w.primary(), Some(h("a")));
    assert!(
        all.iter()
            .any(|c| matches!(c, Command::Notify(n) if n.text.contains("no healthy candidate")))
    );
}

#[test]
fn operator_failover_to_a_red_host_needs_force() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    w.report("b", dead_report(1));
    let cmds = w.ev(Event::Operator {
        request_id: 7,
        request: OperatorRequest::Failover {
            group: g(),
            to: Some(h("b")),
            force: false,
        },
    });
    assert!(
        matches!(&cmds[0], Command::Reply { request_id: 7, outcome: Err(ReplyError::Refused(why)) } if why.contains("--force")),
        "{cmds:?}"
    );
    let cmds = w.ev(Event::Operator {
        request_id: 8,
        request: OperatorRequest::Failover {
            group: g(),
            to: Some(h("b")),
            force: true,
        },
    });
    assert!(
        cmds.iter().any(|c| matches!(
            c,
            Command::Reply {
                request_id: 8,
                outcome: Ok(_)
            }
        )),
        "{cmds:?}"
    );
}

#[test]
fn switchover_demotes_first_and_promotes_without_waiting_for_the_ttl() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    w.advance(3000);
    w.report("a", healthy_report(1));
    w.report("b", healthy_report(1));
    w.lease("a", 1);
    let cmds = w.ev(Event::Operator {
        request_id: 1,
        request: OperatorRequest::Switchover {
            group: g(),
            to: h("b"),
            at_unix_ms: None,
            force: false,
        },
    });
    let actions = agent_actions(&cmds);
    assert_eq!(actions.len(), 1);
    assert!(matches!(actions[0].1, Action::Demote { .. }) && actions[0].0 == "a");
    // renewals refused while handing over
    assert!(granted(&w.lease("a", 1)).unwrap().is_err());
    let demote_id: u64 = actions[0].2.parse().unwrap();
    w.t += Duration::from_millis(30);
    let cmds = w.ev(Event::ActionResult {
        id: demote_id,
        outcome: Ok("demoted".into()),
    });
    assert!(
        agent_actions(&cmds)
            .iter()
            .any(|a| a.0 == "b" && matches!(a.1, Action::Promote { .. })),
        "promoted right after the demote, {cmds:?}"
    );
    assert_eq!(w.primary(), Some(h("b")));
    assert_eq!(
        w.d.desired()
            .group(&g())
            .unwrap()
            .transition
            .as_ref()
            .unwrap()
            .phase,
        TransitionPhase::Promoting
    );
}

#[test]
fn scheduled_switchover_fires_at_its_time() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    w.report("a", healthy_report(1));
    w.report("b", healthy_report(1));
    let at = w.now().unix_ms + 5000;
    let cmds = w.ev(Event::Operator {
        request_id: 1,
        request: OperatorRequest::Switchover {
            group: g(),
            to: h("b"),
            at_unix_ms: Some(at),
            force: false,
        },
    });
    assert!(
        matches!(&cmds.last().unwrap(), Command::Reply { outcome: Ok(r), .. } if r.detail.contains("scheduled"))
    );
    for _ in 0..4 {
        w.report("a", healthy_report(2));
        w.report("b", healthy_report(2));
        assert!(agent_actions(&w.advance(1000)).is_empty());
    }
    w.report("a", healthy_report(3));
    w.report("b", healthy_report(3));
    let cmds = w.advance(1000);
    assert!(
        agent_actions(&cmds)
            .iter()
            .any(|a| matches!(a.1, Action::Demote { .. })),
        "{cmds:?}"
    );
}

#[test]
fn escalation_follows_the_runbook_steps() {
    let settings = Settings {
        restart_budget: 0,
        ..Settings::default()
    };
    let mut w = World::new(settings, &["a", "b"]);
    let cmds = w.report("b", dead_report(1));
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Notify(n) if n.escalation_step == Some(0)))
    );
    let mut steps = Vec::new();
    for _ in 0..(31 * 60) {
        w.report("a", healthy_report(2));
        for c in w.advance(1000) {
            if let Command::Notify(n) = c
                && let Some(s) = n.escalation_step
            {
                steps.push((s, w.t.as_secs()));
            }
        }
    }
    assert_eq!(steps, vec![(1, 300), (2, 900), (3, 1800)]);
}

#[test]
fn a_new_controller_honours_leases_it_did_not_grant() {
    let mut w = World::new(fast_settings(), &["a", "b"]);
    w.report("b", healthy_report(1));
    w.close("a");
    // the previous controller may have granted a lease just before we started
    for _ in 0..20 {
        let cmds = w.advance(100);
        w.report("b", healthy_report(2));
        assert!(agent_actions(&cmds).is_empty(), "promoted at {:?}", w.t);
    }
}
