//! Controller high availability with real processes over gRPC/mTLS: three controllers form a
//! Raft cluster; killing the leader elects another within 2 s without failing the erlmcp primary
//! over or letting its lease lapse; a switchover cut by a leader kill ends with one primary;
//! every controller restarted keeps the state; controllers are added and removed with drctl.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dr_proto::domain::{Health, StatusView};
use dr_tests::harness::wait::wait_until;
use dr_tests::harness::{Cluster, ClusterOptions, http};
use serde_json::Value;

const GROUP: &str = "erlmcp";

fn options(controllers: usize) -> ClusterOptions {
    ClusterOptions {
        controllers,
        ..ClusterOptions::default()
    }
}

/// Polls the agent `/primary` endpoint of a host (200 only while it holds a valid lease) and
/// counts answers that were not 200, until dropped.
struct LeaseWatch {
    stop: Arc<AtomicBool>,
    lapses: Arc<AtomicU64>,
    polls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseWatch {
    fn start(agent_http: String) -> LeaseWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let lapses = Arc::new(AtomicU64::new(0));
        let polls = Arc::new(AtomicU64::new(0));
        let (s, l, p) = (stop.clone(), lapses.clone(), polls.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                match http::get(&agent_http, "/primary").await {
                    Ok(r) if r.status == 200 => {}
                    other => {
                        eprintln!(
                            "lease watch: /primary answered {:?}",
                            other.map(|r| r.status)
                        );
                        l.fetch_add(1, Ordering::SeqCst);
                    }
                }
                p.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        LeaseWatch {
            stop,
            lapses,
            polls,
            task,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        (
            self.lapses.load(Ordering::SeqCst),
            self.polls.load(Ordering::SeqCst),
        )
    }
}

fn try_json(out: &std::process::Output) -> Option<Value> {
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "drctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn primary_and_epoch(v: &StatusView) -> (String, u64) {
    let g = v.group(GROUP).unwrap();
    (g.primary.as_ref().unwrap().to_string(), g.epoch.0)
}

/// Kill -9 the leader; return (new leader index, time until a controller decides again).
async fn kill_leader(c: &mut Cluster) -> (usize, usize, Duration) {
    let old = c.leader().expect("a leader");
    c.kill_controller(old);
    let t0 = Instant::now();
    let c2 = &*c;
    let new = wait_until(
        "another controller to lead and decide",
        Duration::from_secs(10),
        || async move {
            let s = c2.controller_status().ok()?;
            (s["deciding"] == true && s["leader"] != c2.plan.controllers[old].id.as_str())
                .then(|| c2.leader())
                .flatten()
        },
    )
    .await
    .unwrap();
    (old, new, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_new_leader_within_two_seconds_without_failover_or_lease_lapse() {
    let mut c = Cluster::start(options(3)).await.unwrap();
    let before = c.status().unwrap();
    let (primary, epoch) = primary_and_epoch(&before);
    let cs = c.controller_status().unwrap();
    assert_eq!(cs["nodes"].as_array().unwrap().len(), 3, "{cs}");
    assert!(
        cs["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["membership"] == "voter")
    );

    let p = c.index_of(&primary);
    let watch = LeaseWatch::start(c.host(p).agent_http.to_string());
    let (old, new, took) = kill_leader(&mut c).await;
    eprintln!(
        "leader {} killed; {} decides after {took:?}",
        c.plan.controllers[old].id, c.plan.controllers[new].id
    );
    assert!(
        took < Duration::from_secs(2),
        "new leader after {took:?} (target < 2 s)"
    );
    // The primary's agent reaches the new leader and its lease is renewed there.
    c.wait_status(
        "the primary to hold a lease from the new leader, every member green",
        Duration::from_secs(10),
        |v| {
            v.leader
                && v.group(GROUP).is_some_and(|g| {
                    g.members.iter().all(|m| m.health == Health::Green)
                        && g.member(&primary)
                            .is_some_and(|m| m.lease_remaining_ms.is_some())
                })
        },
    )
    .await
    .unwrap();
    // Observe past the new leader's ttl + margin, when a failover could first happen.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(4) {
        let v = c.status().unwrap();
        assert_eq!(
            primary_and_epoch(&v),
            (primary.clone(), epoch),
            "no failover after a controller leader change"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (lapses, polls) = watch.finish().await;
    assert!(polls > 50, "the lease watch ran ({polls} polls)");
    assert_eq!(
        lapses, 0,
        "the primary's lease never lapsed ({lapses} of {polls} polls not 200)"
    );
    // Any survivor answers drctl status.
    for i in (0..3).filter(|i| *i != old) {
        let out = c.drctl_at(i, &["status", "-o", "json"]);
        let v: StatusView = serde_json::from_value(json(&out)).unwrap();
        assert_eq!(primary_and_epoch(&v), (primary.clone(), epoch));
        let s = json(&c.drctl_at(i, &["controller", "status", "-o", "json"]));
        assert_eq!(s["answered_by"], c.plan.controllers[i].id.as_str());
        assert_eq!(s["leader"], c.plan.controllers[new].id.as_str());
    }
    // The old leader comes back as a follower and catches up.
    c.spawn_controller(old).unwrap();
    let c2 = &c;
    wait_until(
        "the restarted controller to catch up",
        Duration::from_secs(15),
        || async move {
            let s = try_json(&c2.drctl_at(old, &["controller", "status", "-o", "json"]))?;
            let leader = try_json(&c2.drctl_at(new, &["controller", "status", "-o", "json"]))?;
            (s["answered_by_leader"] == false
                && s["leader"] == leader["leader"]
                && s["last_applied"] == leader["last_applied"])
                .then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_a_switchover_leaves_exactly_one_primary() {
    let mut c = Cluster::start(ClusterOptions {
        controllers: 3,
        promote_delay_ms: Some(1500),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let (primary, epoch) = primary_and_epoch(&c.status().unwrap());
    let target = if primary == "erlmcp2" {
        "erlmcp3"
    } else {
        "erlmcp2"
    };
    let out = c.drctl(&["switchover", "--to", target, "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_status(
        "the switchover to be under way",
        Duration::from_secs(10),
        |v| v.group(GROUP).is_some_and(|g| g.transition.is_some()),
    )
    .await
    .unwrap();
    let (_, _, took) = kill_leader(&mut c).await;
    assert!(took < Duration::from_secs(2), "new leader after {took:?}");
    // Settled: no transition, every member green, and exactly one agent serves as primary.
    let v = c
        .wait_status(
            "the group to settle with one primary",
            Duration::from_secs(30),
            |v| {
                v.group(GROUP).is_some_and(|g| {
                    g.transition.is_none()
                        && g.members.iter().all(|m| m.health == Health::Green)
                        && g.member(g.primary.as_ref().unwrap().as_str())
                            .is_some_and(|m| m.lease_remaining_ms.is_some())
                })
            },
        )
        .await
        .unwrap();
    let (now_primary, now_epoch) = primary_and_epoch(&v);
    assert!(now_epoch >= epoch);
    assert!(
        now_primary == primary || now_primary == target,
        "primary {now_primary}"
    );
    let mut serving = Vec::new();
    for i in 0..c.plan.hosts.len() {
        if let Ok(r) = http::get(&c.host(i).agent_http.to_string(), "/primary").await
            && r.status == 200
        {
            serving.push(c.host(i).host.clone());
        }
    }
    assert_eq!(serving, vec![now_primary], "exactly one primary");
}

/// What must survive a restart of every controller (volatile fields left out).
fn durable_view(c: &Cluster) -> Value {
    let v = c.status().unwrap();
    let g = v.group(GROUP).unwrap();
    let history = json(&c.drctl(&["history", "-o", "json"]));
    let backups = json(&c.drctl(&["backup", "list", "-o", "json"]));
    let mut members: Vec<String> = g.members.iter().map(|m| m.host.to_string()).collect();
    members.sort();
    serde_json::json!({
        "primary": g.primary.as_ref().map(|p| p.to_string()),
        "epoch": g.epoch.0,
        "members": members,
        "history": history,
        "backups": backups,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_controller_restarted_keeps_epochs_primaries_backups_and_incidents() {
    let mut c = Cluster::start(options(3)).await.unwrap();
    // Make some history: a backup, a switchover (role change, epoch 2), a restart incident.
    let out = c.drctl(&["backup", "create", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.drctl(&["switchover", "--to", "erlmcp2", "--yes", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.signal_standin(2, dr_proto::process::Sig::Kill).unwrap();
    c.wait_status(
        "the killed service restarted",
        Duration::from_secs(20),
        |v| {
            v.group(GROUP).is_some_and(|g| {
                g.members.iter().all(|m| m.health == Health::Green)
                    && g.primary.as_ref().is_some_and(|p| p.as_str() == "erlmcp2")
            })
        },
    )
    .await
    .unwrap();
    let c2 = &c;
    wait_until(
        "the restart incident to be resolved",
        Duration::from_secs(10),
        || async move {
            let h = json(&c2.drctl(&["history", "-o", "json"]));
            let incidents = h["incidents"].as_array()?;
            (!incidents.is_empty() && incidents.iter().all(|i| i["phase"] == "resolved"))
                .then_some(())
        },
    )
    .await
    .unwrap();
    let before = durable_view(&c);
    assert_eq!(before["epoch"], 2);
    assert_eq!(
        before["backups"]["backups"].as_array().map(Vec::len),
        Some(1)
    );

    for i in 0..3 {
        c.kill_controller(i);
    }
    for i in 0..3 {
        c.spawn_controller(i).unwrap();
    }
    c.wait_controllers().await.unwrap();
    c.wait_status("every member back", Duration::from_secs(20), |v| {
        v.group(GROUP)
            .is_some_and(|g| g.members.iter().all(|m| m.health == Health::Green))
    })
    .await
    .unwrap();
    assert_eq!(
        durable_view(&c),
        before,
        "state intact after restarting all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_are_added_and_removed_with_drctl_while_agents_report() {
    let mut c = Cluster::start(ClusterOptions {
        controllers: 3,
        joiners: 1,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    c.spawn_controller(3).unwrap();
    let ctl4 = c.plan.controllers[3].clone();
    let out = c.drctl(&[
        "controller",
        "add",
        &ctl4.id,
        &format!("https://{}", ctl4.grpc),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = c.controller_status().unwrap();
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{s}");
    assert!(nodes.iter().all(|n| n["membership"] == "voter"), "{s}");
    // The new controller has the replicated state.
    let c2 = &c;
    wait_until(
        "the new controller to have the state",
        Duration::from_secs(10),
        || async move {
            let out = c2.drctl_at(3, &["status", "-o", "json"]);
            let v: StatusView = serde_json::from_slice(&out.stdout).ok()?;
            (v.group(GROUP)?.members.len() == 3).then_some(())
        },
    )
    .await
    .unwrap();

    // Remove a follower (not the leader: that is refused with advice).
    let leader = c.leader().unwrap();
    let out = c.drctl(&[
        "controller",
        "remove",
        &c.plan.controllers[leader].id,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = (0..3).find(|i| *i != leader).unwrap();
    let out = c.drctl(&[
        "controller",
        "remove",
        &c.plan.controllers[gone].id,
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kill_controller(gone);
    let s = c.controller_status().unwrap();
    let ids: Vec<&str> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{s}");
    assert!(!ids.contains(&c.plan.controllers[gone].id.as_str()));
    // Agents kept reporting throughout, and a state change still commits.
    let out = c.drctl(&["pause", "--group", GROUP]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = c
        .wait_status("paused, every member green", Duration::from_secs(10), |v| {
            v.group(GROUP).is_some_and(|g| {
                g.members.iter().all(|m| m.health == Health::Green)
                    && g.mode == dr_proto::domain::Mode::Paused
            })
        })
        .await
        .unwrap();
    assert_eq!(v.group(GROUP).unwrap().members.len(), 3);
}

/// `config` of a controller moved to a fresh data directory, alone (no initial members).
fn fresh_single_node_config(text: &str, data_dir: &std::path::Path) -> String {
    let mut out = Vec::new();
    let mut skip = 0;
    for l in text.lines() {
        if skip > 0 && (l.starts_with("id = ") || l.starts_with("addr = ")) {
            skip -= 1;
            continue;
        }
        skip = 0;
        if l == "[[cluster.member]]" {
            skip = 2;
            continue;
        }
        if l.starts_with("data_dir = ") {
            out.push(format!("data_dir = {:?}", data_dir.display().to_string()));
        } else {
            out.push(l.to_string());
        }
    }
    out.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_backup_restores_into_a_fresh_single_node_with_the_same_state() {
    let mut c = Cluster::start(options(3)).await.unwrap();
    let out = c.drctl(&["switchover", "--to", "erlmcp2", "--yes", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = durable_view(&c);
    assert_eq!(before["epoch"], 2);
    let store_dir = c.dir().join("controller-backups");
    let store = format!("file://{}", store_dir.display());
    let b = json(&c.drctl(&["controller", "backup", "--store", &store, "-o", "json"]));
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["groups"], 1);

    // Every controller is lost.
    for i in 0..3 {
        c.kill_controller(i);
    }
    let cfg = c.plan.controllers[0].config();
    let fresh = c.dir().join("ctl1-rebuilt");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, fresh_single_node_config(&text, &fresh)).unwrap();
    let restore = |extra: &[&str]| {
        std::process::Command::new(c.bins.controller())
            .args(["restore", "--config"])
            .arg(&cfg)
            .args(extra)
            .output()
            .unwrap()
    };

    // A corrupt snapshot is refused and writes nothing.
    let bad_dir = c.dir().join("corrupt-backups");
    std::fs::create_dir_all(bad_dir.join("controller")).unwrap();
    for e in std::fs::read_dir(store_dir.join("controller")).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        if p.extension().is_some_and(|x| x == "json") {
            let n = bytes.len() / 2;
            bytes[n] ^= 0x20;
        }
        std::fs::write(
            bad_dir.join("controller").join(p.file_name().unwrap()),
            bytes,
        )
        .unwrap();
    }
    let out = restore(&["--store", &format!("file://{}", bad_dir.display())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fresh.join("raft.redb").exists(), "nothing written");

    let out = restore(&["--store", &store, "--snapshot", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    // Never over an existing state without --force.
    let out = restore(&["--store", &store]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

    c.spawn_controller(0).unwrap();
    c.wait_controllers().await.unwrap();
    let s = c.controller_status().unwrap();
    assert_eq!(s["nodes"].as_array().unwrap().len(), 1, "{s}");
    c.wait_status(
        "agents back on the restored controller",
        Duration::from_secs(20),
        |v| {
            v.group(GROUP).is_some_and(|g| {
                g.members.len() == 3 && g.members.iter().all(|m| m.health == Health::Green)
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(
        durable_view(&c),
        before,
        "the restored controller has the same state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_backs_up_the_controller_state_on_schedule() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}", store_dir.path().display());
    let c = Cluster::start(ClusterOptions {
        backup_schedule: Some(format!(
            "full_every_s = 0\nincremental_every_s = 1\ndrill_every_s = 0\ncontroller_store = {store:?}"
        )),
        ..options(3)
    })
    .await
    .unwrap();
    let list = || {
        std::process::Command::new(c.bins.controller())
            .args(["restore", "--list", "--store", &store, "--config"])
            .arg(c.plan.controllers[0].config())
            .output()
            .unwrap()
    };
    let list = &list;
    let listed = wait_until(
        "two scheduled controller snapshots",
        Duration::from_secs(20),
        || async move {
            let out = list();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.success() && text.lines().filter(|l| l.starts_with("state-")).count() >= 2)
                .then_some(text)
        },
    )
    .await
    .unwrap();
    eprintln!("{listed}");
    let leader = c.leader().unwrap();
    let metrics = http::get(&c.plan.controllers[leader].http.to_string(), "/metrics")
        .await
        .unwrap();
    assert!(
        metrics
            .body
            .contains("erlmcp_dr_controller_backup_last_success_timestamp_seconds "),
        "metric exported by the leader"
    );
}

/// Leader (per its own answer) and whether it decides, asking controller `i` itself.
fn own_view(c: &Cluster, i: usize) -> Option<Value> {
    try_json(&c.drctl_at(i, &["controller", "status", "-o", "json"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_controller_stops_deciding_and_catches_up_when_healed() {
    if let Err(why) = dr_tests::harness::netns::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "network namespaces unavailable under CI: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let mut c = Cluster::start(ClusterOptions {
        controllers: 3,
        netns_controllers: vec![2],
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    // The interesting minority is a leader: move the leadership into the namespace.
    for _ in 0..12 {
        let leader = c.leader().unwrap();
        if leader == 2 {
            break;
        }
        let (old, _, _) = kill_leader(&mut c).await;
        c.spawn_controller(old).unwrap();
        let c2 = &c;
        wait_until(
            "the restarted controller to follow",
            Duration::from_secs(10),
            || async move {
                own_view(c2, old).filter(|v| v["leader"].as_str().is_some_and(|l| !l.is_empty()))
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(c.leader(), Some(2), "the namespaced controller leads");
    let (primary, epoch) = primary_and_epoch(&c.status().unwrap());

    let ns = c.controller_netns[2].as_ref().unwrap();
    ns.block().unwrap();
    let cut = Instant::now();
    let c2 = &c;
    // The cut-off leader stops deciding (it cannot reach a quorum)...
    let stopped = wait_until(
        "the minority to stop deciding",
        Duration::from_secs(5),
        || async move {
            own_view(c2, 2)
                .filter(|v| v["deciding"] == false)
                .map(|_| cut.elapsed())
        },
    )
    .await
    .unwrap();
    // ...and the majority elects a leader that decides.
    let elected = wait_until(
        "the majority to elect a leader",
        Duration::from_secs(5),
        || async move {
            [0, 1]
                .into_iter()
                .filter_map(|i| own_view(c2, i))
                .any(|v| v["answered_by_leader"] == true && v["deciding"] == true)
                .then(|| cut.elapsed())
        },
    )
    .await
    .unwrap();
    eprintln!("minority stopped deciding after {stopped:?}; majority decides after {elected:?}");
    assert!(
        elected < Duration::from_secs(2),
        "majority leader after {elected:?}"
    );
    // The majority keeps going: agents report to it and a state change commits.
    c.wait_status(
        "agents on the majority leader",
        Duration::from_secs(15),
        |v| {
            v.leader
                && v.group(GROUP).is_some_and(|g| {
                    g.members.iter().all(|m| m.health == Health::Green)
                        && g.member(&primary)
                            .is_some_and(|m| m.lease_remaining_ms.is_some())
                })
        },
    )
    .await
    .unwrap();
    let out = c.drctl(&["pause", "--group", GROUP]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The minority refuses to act while cut off.
    let out = c.drctl_at(2, &["resume", "--group", GROUP]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the cut-off controller does not act"
    );
    assert_eq!(
        primary_and_epoch(&c.status().unwrap()),
        (primary.clone(), epoch)
    );

    // Healed: it follows the new leader and catches up (it sees the pause).
    c.controller_netns[2].as_ref().unwrap().unblock().unwrap();
    let c2 = &c;
    wait_until(
        "the healed controller to catch up",
        Duration::from_secs(15),
        || async move {
            let mine = own_view(c2, 2)?;
            let leader = [0, 1]
                .into_iter()
                .filter_map(|i| own_view(c2, i))
                .find(|v| v["answered_by_leader"] == true)?;
            (mine["answered_by_leader"] == false
                && mine["leader"] == leader["leader"]
                && mine["last_applied"] == leader["last_applied"])
                .then_some(())
        },
    )
    .await
    .unwrap();
    let out = c.drctl_at(2, &["status", "-o", "json"]);
    let v: StatusView = serde_json::from_value(json(&out)).unwrap();
    assert_eq!(v.group(GROUP).unwrap().mode, dr_proto::domain::Mode::Paused);
}
