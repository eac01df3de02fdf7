//! Unit tests of backup decisions: schedule, one action per group, retention, drills, restores
//! and their watch phase.

use std::time::Duration;

use dr_proto::domain::{
    Action, BackupKind, BackupRecord, Category, DrillOutcome, Phase, RestoreOutcome,
    RetentionOutcome,
};

use super::tests_support::{World, agent_actions, dead_report, g, h, healthy_report};
use super::*;
use crate::state::StateCommand;

const CAPS: [&str; 7] = [
    "ping", "restart", "promote", "demote", "backup", "restore", "drill",
];

struct Bk {
    w: World,
    seq: u64,
    next_request: u64,
}

impl Bk {
    fn new(settings: Settings) -> Bk {
        let mut w = World::new(settings, &["a", "b"]);
        for host in ["a", "b"] {
            w.connect_with(host, &CAPS);
            w.report(host, healthy_report(1));
        }
        Bk {
            w,
            seq: 1,
            next_request: 1,
        }
    }

    /// Time passes with both members healthy and the primary leased; returns every command.
    fn run(&mut self, ms: u64) -> Vec<Command> {
        let mut all = Vec::new();
        let mut left = ms;
        while left > 0 {
            let step = left.min(250);
            left -= step;
            self.seq += 1;
            self.w.lease("a", self.w.epoch().0);
            all.extend(self.w.report("a", healthy_report(self.seq)));
            all.extend(self.w.report("b", healthy_report(self.seq)));
            all.extend(self.w.advance(step));
        }
        all
    }

    fn operator(
        &mut self,
        request: OperatorRequest,
    ) -> (Result<ActionReply, ReplyError>, Vec<Command>) {
        let request_id = self.next_request;
        self.next_request += 1;
        let cmds = self.w.ev(Event::Operator {
            request_id,
            request,
        });
        let reply = cmds
            .iter()
            .find_map(|c| match c {
                Command::Reply {
                    request_id: r,
                    outcome,
                } if *r == request_id => Some(outcome.clone()),
                _ => None,
            })
            .expect("a reply");
        (reply, cmds)
    }

    fn answer(&mut self, id: &str, outcome: Result<String, String>) -> Vec<Command> {
        self.w.ev(Event::ActionResult {
            id: id.parse().unwrap(),
            outcome,
        })
    }

    fn record(&self, id: &str, host: &str, kind: BackupKind) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            kind,
            group: g(),
            host: h(host),
            created_at_unix_ms: self.w.now().unix_ms,
            parent: None,
            size_bytes: 100,
            files: 10,
            bytes: 1000,
            duration_ms: 50,
            skipped_files: 0,
        }
    }

    /// Answer the initial store listing with an empty store.
    fn listed_empty(&mut self) {
        let cmds = self.run(250);
        let actions = agent_actions(&cmds);
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(actions[0].0, "b", "a replica lists first");
        assert!(matches!(actions[0].1, Action::ListBackups));
        self.answer(&actions[0].2.clone(), Ok("[]".into()));
    }

    /// Take the first scheduled full backup (on b) and answer it.
    fn first_full(&mut self) -> Vec<Command> {
        self.listed_empty();
        let cmds = self.run(250);
        let actions = agent_actions(&cmds);
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert_eq!(
            actions[0],
            (
                "b".into(),
                Action::Backup { incremental: false },
                actions[0].2.clone()
            )
        );
        let rec = self.record("full-2026-01-27T13:45:30Z", "b", BackupKind::Full);
        self.answer(
            &actions[0].2.clone(),
            Ok(serde_json::to_string(&rec).unwrap()),
        )
    }
}

fn no_drills() -> Settings {
    Settings {
        drill_every: None,
        ..Settings::default()
    }
}

#[test]
fn without_a_backup_capable_agent_nothing_is_scheduled() {
    let mut w = World::new(Settings::default(), &["a", "b"]);
    for i in 1..20 {
        w.lease("a", 1);
        w.report("a", healthy_report(i));
        w.report("b", healthy_report(i));
        assert!(agent_actions(&w.advance(250)).is_empty());
    }
}

#[test]
fn the_store_is_listed_then_a_full_backup_runs_on_a_replica_then_retention() {
    let mut b = Bk::new(no_drills());
    let cmds = b.first_full();
    assert!(
        cmds.iter().any(|c| matches!(c, Command::Persist(StateCommand::RecordBackup { record, verified: Some(true), .. }) if record.id == "full-2026-01-27T13:45:30Z")),
        "{cmds:?}"
    );
    let actions = agent_actions(&cmds);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        actions[0].1,
        Action::ApplyRetention {
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4
        }
    );
    assert_eq!(b.w.d.desired().backups[&g()].len(), 1);
    // retention deleted something: the catalog forgets it
    let r = RetentionOutcome {
        kept: vec![],
        deleted: vec!["full-2026-01-27T13:45:30Z".into()],
    };
    let cmds = b.answer(
        &actions[0].2.clone(),
        Ok(serde_json::to_string(&r).unwrap()),
    );
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Persist(StateCommand::ForgetBackups { .. })))
    );
    assert!(b.w.d.desired().backups[&g()].is_empty());
}

#[test]
fn an_incremental_follows_on_the_host_of_the_full_when_due_and_not_before() {
    let mut b = Bk::new(no_drills());
    let cmds = b.first_full();
    let retention = agent_actions(&cmds)[0].2.clone();
    b.answer(&retention, Ok(r#"{"kept":[],"deleted":[]}"#.into()));
    // 14 minutes: nothing
    let cmds = b.run(14 * 60 * 1000);
    assert!(
        agent_actions(&cmds).is_empty(),
        "{:?}",
        agent_actions(&cmds)
    );
    let cmds = b.run(61 * 1000 + 500);
    let actions = agent_actions(&cmds);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0].0, "b");
    assert_eq!(actions[0].1, Action::Backup { incremental: true });
}

#[test]
fn one_backup_type_action_per_group_at_a_time() {
    let mut b = Bk::new(no_drills());
    b.listed_empty();
    let cmds = b.run(250);
    assert_eq!(agent_actions(&cmds).len(), 1, "the scheduled full backup");
    for request in [
        OperatorRequest::Backup {
            group: g(),
            host: None,
            incremental: false,
        },
        OperatorRequest::Drill { group: g() },
        OperatorRequest::Restore {
            group: g(),
            host: h("b"),
            backup_id: None,
            from_host: None,
            allow_primary: false,
        },
    ] {
        let (reply, cmds) = b.operator(request);
        assert!(
            matches!(reply, Err(ReplyError::Refused(ref m)) if m.contains("already running")),
            "{reply:?}"
        );
        assert!(agent_actions(&cmds).is_empty());
    }
}

#[test]
fn a_failed_backup_opens_a_backup_failure_incident_and_a_good_one_resolves_it() {
    let mut b = Bk::new(no_drills());
    b.listed_empty();
    let id = agent_actions(&b.run(250))[0].2.clone();
    b.answer(&id, Err("store unreachable: connection refused".into()));
    let open =
        b.w.d
            .desired()
            .open_incident_for(&g(), None)
            .cloned()
            .expect("an incident");
    assert_eq!(open.category, Category::BackupFailure);
    // retried after a pause, not at once
    assert!(agent_actions(&b.run(30_000)).is_empty());
    let cmds = b.run(31_000);
    let actions = agent_actions(&cmds);
    assert_eq!(actions.len(), 1, "{actions:?}");
    let rec = b.record("full-2026-01-27T13:47:30Z", "b", BackupKind::Full);
    b.answer(
        &actions[0].2.clone(),
        Ok(serde_json::to_string(&rec).unwrap()),
    );
    assert!(
        b.w.d.desired().incidents[&open.id]
            .resolved_at_unix_ms
            .is_some()
    );
}

#[test]
fn a_drill_runs_after_the_first_full_and_a_failed_drill_is_recorded_and_raised() {
    let mut b = Bk::new(Settings {
        backup_incremental_every: None,
        ..Settings::default()
    });
    let cmds = b.first_full();
    let retention = agent_actions(&cmds)[0].2.clone();
    b.answer(&retention, Ok(r#"{"kept":[],"deleted":[]}"#.into()));
    let cmds = b.run(61_000);
    let actions = agent_actions(&cmds);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(
        actions[0].1,
        Action::Drill {
            backup_id: None,
            from_host: Some(h("b"))
        }
    );
    let outcome = DrillOutcome {
        backup_id: "full-2026-01-27T13:45:30Z".into(),
        host: h("b"),
        ok: false,
        files_checked: 3,
        bytes: 10,
        duration_ms: 20,
        detail: "integrity hook failed: exit 1".into(),
    };
    let cmds = b.answer(
        &actions[0].2.clone(),
        Ok(serde_json::to_string(&outcome).unwrap()),
    );
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Persist(StateCommand::RecordDrill { .. })))
    );
    let drill = &b.w.d.desired().drills[&g()];
    assert!(!drill.outcome.ok);
    assert_eq!(drill.last_ok_at_unix_ms, None);
    let incident =
        b.w.d
            .desired()
            .open_incident_for(&g(), None)
            .expect("incident");
    assert_eq!(incident.category, Category::BackupFailure);
    // the result is kept for drctl --wait
    let id: u64 = actions[0].2.parse().unwrap();
    assert!(
        matches!(b.w.d.finished_backup_action(&g(), id), Some(Ok(ref d)) if d.contains("integrity hook failed"))
    );
}

#[test]
fn restoring_the_primary_needs_allow_primary() {
    let mut b = Bk::new(no_drills());
    let (reply, cmds) = b.operator(OperatorRequest::Restore {
        group: g(),
        host: h("a"),
        backup_id: None,
        from_host: None,
        allow_primary: false,
    });
    assert!(
        matches!(reply, Err(ReplyError::Refused(ref m)) if m.contains("primary") && m.contains("switchover")),
        "{reply:?}"
    );
    assert!(agent_actions(&cmds).is_empty());
    let (reply, cmds) = b.operator(OperatorRequest::Restore {
        group: g(),
        host: h("a"),
        backup_id: None,
        from_host: None,
        allow_primary: true,
    });
    let reply = reply.unwrap();
    assert!(reply.action_id.is_some() && reply.incident_id.is_some());
    assert!(matches!(agent_actions(&cmds)[0].1, Action::Restore { .. }));
}

#[test]
fn a_member_being_restored_is_neither_restarted_nor_failed_over() {
    let mut b = Bk::new(Settings {
        restart_budget: 3,
        ..no_drills()
    });
    let (reply, _) = b.operator(OperatorRequest::Restore {
        group: g(),
        host: h("a"),
        backup_id: Some("full-2026-01-27T13:45:30Z".into()),
        from_host: None,
        allow_primary: true,
    });
    let incident = reply.unwrap().incident_id.unwrap();
    // the primary's service is down on purpose for the swap
    for i in 0..12 {
        b.w.lease("a", 1);
        let cmds = b.w.report("a", dead_report(100 + i));
        b.w.report("b", healthy_report(100 + i));
        let cmds2 = b.w.advance(250);
        for c in cmds.iter().chain(&cmds2) {
            if let Command::ToAgent {
                message: dr_proto::domain::ControllerMessage::Command(cmd),
                ..
            } = c
            {
                panic!("no action while restoring, got {:?}", cmd.action);
            }
        }
    }
    assert_eq!(b.w.primary(), Some(h("a")));
    assert_eq!(
        b.w.d
            .desired()
            .incidents
            .values()
            .filter(|i| i.is_open())
            .count(),
        1
    );
    assert_eq!(
        b.w.d.desired().incidents[&incident].category,
        Category::DataProblem
    );
}

#[test]
fn after_a_restore_the_incident_watches_then_resolves_or_reopens() {
    let settings = Settings {
        restore_watch: Duration::from_secs(10),
        ..no_drills()
    };
    for trouble in [false, true] {
        let mut b = Bk::new(settings.clone());
        let (reply, cmds) = b.operator(OperatorRequest::Restore {
            group: g(),
            host: h("b"),
            backup_id: None,
            from_host: None,
            allow_primary: false,
        });
        let incident = reply.unwrap().incident_id.unwrap();
        let id = agent_actions(&cmds)[0].2.clone();
        let outcome = RestoreOutcome {
            backup_id: "full-2026-01-27T13:45:30Z".into(),
            files: 10,
            bytes: 1000,
            duration_ms: 40,
            previous_kept_at: Some("/data.previous".into()),
            hooks: vec!["integrity ok".into()],
            healthy_after_ms: Some(30),
        };
        b.answer(&id, Ok(serde_json::to_string(&outcome).unwrap()));
        assert_eq!(b.w.d.desired().incidents[&incident].phase, Phase::Watching);
        if trouble {
            // a report probed while the restore had the service stopped, arriving just after
            // the result, is not trouble yet...
            b.w.report("b", dead_report(500));
            b.w.advance(250);
            assert!(
                !b.w.d.desired().incidents[&incident]
                    .timeline
                    .iter()
                    .any(|e| e.text.contains("trouble while watching")),
                "a stale report right after the restore reopened the incident"
            );
            // ...a member still red after the settle time is
            b.w.report("b", dead_report(500));
            b.w.advance(1_000);
            let i = &b.w.d.desired().incidents[&incident];
            assert!(i.resolved_at_unix_ms.is_none());
            assert_ne!(i.phase, Phase::Watching, "reopened");
            assert!(
                i.timeline
                    .iter()
                    .any(|e| e.text.contains("trouble while watching"))
            );
        } else {
            b.run(5_000);
            assert!(
                b.w.d.desired().incidents[&incident]
                    .resolved_at_unix_ms
                    .is_none(),
                "still watching"
            );
            b.run(5_500);
            assert!(
                b.w.d.desired().incidents[&incident]
                    .resolved_at_unix_ms
                    .is_some()
            );
        }
    }
}

#[test]
fn a_failed_restore_reopens_its_incident_and_notifies() {
    let mut b = Bk::new(no_drills());
    let (reply, cmds) = b.operator(OperatorRequest::Restore {
        group: g(),
        host: h("b"),
        backup_id: None,
        from_host: None,
        allow_primary: false,
    });
    let incident = reply.unwrap().incident_id.unwrap();
    let id = agent_actions(&cmds)[0].2.clone();
    let cmds = b.answer(
        &id,
        Err("post-restore hook failed: exit 3; previous data swapped back and healthy".into()),
    );
    assert!(
        cmds.iter().any(|c| matches!(c, Command::Notify { .. })),
        "{cmds:?}"
    );
    let i = &b.w.d.desired().incidents[&incident];
    assert_eq!(i.phase, Phase::Open);
    assert!(
        i.timeline
            .iter()
            .any(|e| e.text.contains("restore failed: post-restore hook failed"))
    );
    assert!(matches!(
        b.w.d.finished_backup_action(&g(), id.parse().unwrap()),
        Some(Err(_))
    ));
}
