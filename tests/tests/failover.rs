//! Property: losing the primary (host gone, isolated, or crashed beyond repair) makes a healthy
//! replica primary quickly and safely: the old lease surely ends first, the load balancer follows,
//! clients never see two primaries in one epoch, and the old primary rejoins as a replica.
//! Operators can switch over (demote first, no lease wait) and fail over by hand; paused groups
//! are left alone; a second failure during a failover still ends with one primary or an
//! incident that says why not.

use std::time::{Duration, Instant};

use dr_proto::domain::{ChangeKind, Health, Role, StatusView};
use dr_proto::process::Sig;
use dr_tests::harness::client::{LbClient, answer_sequence, error_time, hosts_per_epoch, outage};
use dr_tests::harness::{Cluster, ClusterOptions, http, in_ci, netns, wait_until};

const GROUP: &str = "erlmcp";

fn with_lb() -> ClusterOptions {
    ClusterOptions {
        haproxy: true,
        controller_extra: "[failover]\ncooldown_s = 0\n".into(),
        ..ClusterOptions::default()
    }
}

fn primary_of(v: &StatusView) -> Option<String> {
    v.group(GROUP)?.primary.as_ref().map(|p| p.to_string())
}

/// The new primary, verified and serving (no transition, lease held, LB answering from it).
async fn wait_new_primary(c: &Cluster, old: &str, within: Duration) -> String {
    let v = c
        .wait_status("a new primary holding its lease", within, |v| {
            let g = v.group(GROUP).unwrap();
            g.transition.is_none()
                && g.primary.as_ref().is_some_and(|p| p.as_str() != old)
                && g.members
                    .iter()
                    .any(|m| m.role == Role::Primary && m.lease_remaining_ms.is_some())
        })
        .await
        .unwrap();
    primary_of(&v).unwrap()
}

fn kill_host(c: &mut Cluster, i: usize) {
    c.agents[i].as_mut().unwrap().kill();
    c.signal_standin(i, Sig::Kill).unwrap();
}

fn no_split_brain(samples: &[dr_tests::harness::client::Sample]) {
    for (epoch, hosts) in hosts_per_epoch(samples) {
        assert!(hosts.len() <= 1, "epoch {epoch} answered from {hosts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_loss_fails_over_and_the_old_primary_rejoins_as_a_replica() {
    let mut c = Cluster::start(with_lb()).await.unwrap();
    let client = LbClient::start(c.lb().unwrap(), Duration::from_millis(20));
    wait_until("client answers", Duration::from_secs(5), || async {
        (client
            .samples()
            .iter()
            .filter(|s| s.answer.is_some())
            .count()
            > 5)
        .then_some(())
    })
    .await
    .unwrap();
    kill_host(&mut c, 0);
    let new = wait_new_primary(&c, "erlmcp1", Duration::from_secs(20)).await;
    let client_ref = &client;
    let new_ref = new.clone();
    wait_until(
        "the load balancer to answer from the new primary",
        Duration::from_secs(10),
        || {
            let n = new_ref.clone();
            async move {
                client_ref
                    .samples()
                    .iter()
                    .rev()
                    .take(3)
                    .all(|s| s.answer.as_ref().is_some_and(|(h, _)| *h == n))
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
    let samples = client.stop().await;
    no_split_brain(&samples);
    let gap = outage(&samples, "erlmcp1", &new).expect("answers from both");
    assert!(gap < Duration::from_secs(6), "client-seen outage {gap:?}");
    // the history records the failover and its RTO
    let out = c.drctl(&["history", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let change = &h["role_changes"][0];
    assert_eq!(change["kind"], "failover");
    assert_eq!(change["from"], "erlmcp1");
    assert_eq!(change["to"], new.as_str());
    assert!(change["rto_ms"].as_u64().is_some());

    // the old host comes back: it sees the newer epoch and rejoins as replica
    c.start_standin(0).unwrap();
    c.start_agent(0).unwrap();
    let v = c
        .wait_status(
            "erlmcp1 back as a green replica",
            Duration::from_secs(20),
            |v| {
                v.group(GROUP)
                    .unwrap()
                    .member("erlmcp1")
                    .is_some_and(|m| m.role == Role::Replica && m.health == Health::Green)
            },
        )
        .await
        .unwrap();
    assert_eq!(primary_of(&v).as_deref(), Some(new.as_str()));
    let agent = c.host(0).agent_http.to_string();
    let r = http::get(&agent, "/replica").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(http::get(&agent, "/primary").await.unwrap().status, 503);
    // every answer through the LB still comes from the new primary
    for _ in 0..5 {
        let r = c.lb_get("/").await.unwrap().json().unwrap();
        assert_eq!(r["host"], new.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_primary_fences_itself_and_a_replica_takes_over() {
    if let Err(why) = netns::available() {
        assert!(!in_ci(), "network namespaces needed: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    let mut opts = with_lb();
    opts.netns_hosts = vec![0];
    let c = Cluster::start(opts).await.unwrap();
    let ns = c.netns[0].as_ref().unwrap();
    // watch /primary from inside the namespace (the only place it can be seen once cut off)
    let agent = c.host(0).agent_http;
    let probe_log = c.dir().join("primary-probe.log");
    let script = format!(
        "while true; do echo \"$(date +%s%N) $(curl -s -o /dev/null -m 0.3 -w '%{{http_code}}' http://{agent}/primary)\"; sleep 0.05; done"
    );
    let (prog, args) = ns.wrap("sh", &["-c".into(), script]);
    let mut watcher = dr_tests::harness::Daemon::spawn(
        "primary-probe",
        std::path::Path::new(&prog),
        &args,
        &probe_log,
    )
    .unwrap();
    let client = LbClient::start(c.lb().unwrap(), Duration::from_millis(20));
    wait_until(
        "probe sees 200 from /primary",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(&probe_log)
                .ok()?
                .lines()
                .last()?
                .ends_with(" 200")
                .then_some(())
        },
    )
    .await
    .unwrap();

    let cut_at = std::time::SystemTime::now();
    ns.cut().unwrap();
    let new = wait_new_primary(&c, "erlmcp1", Duration::from_secs(20)).await;
    let samples = client.stop().await;
    watcher.kill();
    no_split_brain(&samples);
    assert_eq!(
        answer_sequence(&samples),
        vec!["erlmcp1".to_string(), new.clone()],
        "clients saw the old primary, then only the new one"
    );

    // inside the namespace, /primary stopped answering 200 within the ttl (2 s) of the cut
    let cut_ns = cut_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let text = std::fs::read_to_string(&probe_log).unwrap();
    let last_200 = text
        .lines()
        .filter_map(|l| {
            let (t, code) = l.split_once(' ')?;
            (code == "200").then(|| t.parse::<u128>().ok()).flatten()
        })
        .max()
        .unwrap();
    let fenced_after = Duration::from_nanos(last_200.saturating_sub(cut_ns) as u64);
    assert!(
        fenced_after <= Duration::from_millis(2300),
        "old primary kept answering /primary {fenced_after:?} after the cut"
    );
    // and the new primary was only promoted after that
    let out = c.drctl(&["history", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["role_changes"][0]["to"], new.as_str());

    // healed: the old primary learns the new epoch and rejoins as replica
    ns.heal().unwrap();
    c.wait_status(
        "erlmcp1 rejoined as replica",
        Duration::from_secs(20),
        |v| {
            v.group(GROUP)
                .unwrap()
                .member("erlmcp1")
                .is_some_and(|m| m.role == Role::Replica && m.connected)
        },
    )
    .await
    .unwrap();
    let log_file = c.host(0).agent_log();
    let log = wait_until(
        "the demote hook to run on the old primary",
        Duration::from_secs(10),
        || async {
            let log = std::fs::read_to_string(&log_file).ok()?;
            log.contains("running the demote hook").then_some(log)
        },
    )
    .await
    .unwrap();
    let fenced_at = log
        .find("fencing this host")
        .expect("the agent fenced itself while cut off");
    assert!(
        fenced_at < log.find("running the demote hook").unwrap(),
        "fenced first, demoted when back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_gap_shorter_than_the_ttl_causes_no_failover() {
    let c = Cluster::start(with_lb()).await.unwrap();
    let agent = c.agents[0].as_ref().unwrap();
    agent.signal(Sig::Stop);
    tokio::time::sleep(Duration::from_millis(1000)).await; // the gap under test
    agent.signal(Sig::Cont);
    // watch for longer than ttl + margin + a failover would take
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let v = c.status().unwrap();
        let g = v.group(GROUP).unwrap();
        assert_eq!(g.epoch.0, 1, "no change of primary");
        assert!(g.transition.is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.primary().as_deref(), Some("erlmcp1"));
    assert_eq!(
        c.lb_get("/").await.unwrap().json().unwrap()["host"],
        "erlmcp1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_switchover_loses_at_most_one_second_and_can_be_scheduled() {
    let c = Cluster::start(with_lb()).await.unwrap();
    let client = LbClient::start(c.lb().unwrap(), Duration::from_millis(10));
    wait_until("client answers", Duration::from_secs(5), || async {
        (client
            .samples()
            .iter()
            .filter(|s| s.answer.is_some())
            .count()
            > 5)
        .then_some(())
    })
    .await
    .unwrap();
    let out = c.drctl(&["switchover", "--to", "erlmcp2", "--yes", "--wait"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let c_ref = &c;
    wait_until(
        "LB answers from erlmcp2",
        Duration::from_secs(10),
        || async move {
            let r = c_ref.lb_get("/").await.ok()?.json().ok()?;
            (r["host"] == "erlmcp2").then_some(())
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // some answers after the change
    let samples = client.stop().await;
    no_split_brain(&samples);
    assert_eq!(
        answer_sequence(&samples),
        vec!["erlmcp1".to_string(), "erlmcp2".to_string()]
    );
    let errors = error_time(&samples);
    assert!(
        errors <= Duration::from_secs(1),
        "client errors for {errors:?} during a planned switchover"
    );
    let out = c.drctl(&["history", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        h["role_changes"][0]["kind"],
        ChangeKind::Switchover.as_str()
    );

    // scheduled: nothing before its time, the change at its time
    let at_unix = (std::time::SystemTime::now() + Duration::from_secs(4))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = std::time::UNIX_EPOCH + Duration::from_secs(at_unix);
    let out = c.drctl(&[
        "switchover",
        "--to",
        "erlmcp3",
        "--at",
        &at_unix.to_string(),
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("scheduled"));
    while std::time::SystemTime::now() + Duration::from_millis(300) < at {
        assert_eq!(c.primary().as_deref(), Some("erlmcp2"), "fired early");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_new_primary(&c, "erlmcp2", Duration::from_secs(15)).await;
    let out = c.drctl(&["history", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["role_changes"][0]["to"], "erlmcp3");
    assert!(h["role_changes"][0]["at_unix_ms"].as_u64().unwrap() >= at_unix * 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_are_refused_unsafe_targets_and_paused_groups_are_left_alone() {
    let mut c = Cluster::start(with_lb()).await.unwrap();
    // a red target is refused without --force
    assert!(c.drctl(&["pause"]).status.success());
    c.signal_standin(2, Sig::Usr1).unwrap();
    c.wait_status("erlmcp3 red", Duration::from_secs(15), |v| {
        v.group(GROUP).unwrap().member("erlmcp3").unwrap().health == Health::Red
    })
    .await
    .unwrap();
    let out = c.drctl(&["failover", "--to", "erlmcp3", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(c.primary().as_deref(), Some("erlmcp1"));
    // no confirmation without a terminal: refused with a usage error
    let out = c.drctl(&["failover", "--to", "erlmcp2"]);
    assert_eq!(out.status.code(), Some(2));

    // paused: the primary dies and nothing happens automatically
    kill_host(&mut c, 0);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(
            c.primary().as_deref(),
            Some("erlmcp1"),
            "automatic failover while paused"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...but an operator can fail over without a healthy primary
    let out = c.drctl(&["failover", "--to", "erlmcp2", "--yes", "--wait"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.primary().as_deref(), Some("erlmcp2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_failure_during_failover_still_ends_with_one_primary() {
    let mut c = Cluster::start(ClusterOptions {
        promote_delay_ms: Some(1500),
        ..with_lb()
    })
    .await
    .unwrap();
    kill_host(&mut c, 0);
    // catch the failover while its first candidate runs its (slow) promote hook
    let v = c
        .wait_status("a failover in progress", Duration::from_secs(20), |v| {
            v.group(GROUP)
                .unwrap()
                .transition
                .as_ref()
                .is_some_and(|t| t.contains("promoting"))
        })
        .await
        .unwrap();
    let candidate = primary_of(&v).unwrap();
    let i = c.index_of(&candidate);
    kill_host(&mut c, i);
    let survivor = ["erlmcp2", "erlmcp3"]
        .into_iter()
        .find(|h| *h != candidate)
        .unwrap();
    let v = c
        .wait_status(
            "the survivor as the one primary",
            Duration::from_secs(30),
            |v| {
                let g = v.group(GROUP).unwrap();
                g.transition.is_none() && primary_of(v).as_deref() == Some(survivor)
            },
        )
        .await
        .unwrap();
    let g = v.group(GROUP).unwrap();
    assert_eq!(
        g.members.iter().filter(|m| m.role == Role::Primary).count(),
        1
    );
    let c_ref = &c;
    wait_until(
        "LB answers from the survivor",
        Duration::from_secs(10),
        || async move {
            let r = c_ref.lb_get("/").await.ok()?.json().ok()?;
            (r["host"] == survivor).then_some(())
        },
    )
    .await
    .unwrap();
    // the incident tells the story
    let out = c.drctl(&["history", "-o", "json"]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let timeline = h["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["host"] == "erlmcp1")
        .unwrap()["timeline"]
        .to_string();
    assert!(
        timeline.contains(&candidate) && timeline.contains(survivor),
        "{timeline}"
    );
}
