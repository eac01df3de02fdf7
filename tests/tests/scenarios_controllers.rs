//! Scenarios: losing controllers, each controller and host in its own network namespace on the
//! test's bridge, HAProxy in front. Property: the controller cluster losing its leader (killed,
//! or cut off as a minority) elects another without failing the erlmcp primary over; with every
//! controller down the primary keeps serving until its lease ends, then fences itself, and the
//! group recovers once the controllers are back. Every scenario also proves no acknowledged
//! receipt is lost and no split brain happens (`dr_tests::harness::scenario`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dr_tests::harness::Cluster;
use dr_tests::harness::scenario::Scenario;
use dr_tests::harness::scenario_steps::{
    hold_steady, options, prerequisites, role_changes, wait_all_green,
};
use dr_tests::harness::split_brain::SplitBrainMonitor;
use dr_tests::harness::testnet::Cut;
use dr_tests::harness::wait_until;

async fn leader(c: &Cluster) -> usize {
    wait_until("a controller leader", Duration::from_secs(20), || async {
        c.leader()
    })
    .await
    .unwrap()
}

/// Until a controller other than `old` leads and decides.
async fn new_leader(c: &Cluster, old: usize) -> usize {
    wait_until(
        "another controller to lead",
        Duration::from_secs(20),
        || async {
            let s = c.controller_status().ok()?;
            (s["deciding"] == true).then_some(())?;
            c.leader().filter(|l| *l != old)
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_leader_killed() {
    if !prerequisites() {
        return;
    }
    let mut c = Cluster::start(options(3, 3)).await.unwrap();
    let old = leader(&c).await;
    let mut s = Scenario::begin(&c, "controller_leader_killed")
        .await
        .unwrap();
    s.fault();
    c.kill_controller(old);
    let new = new_leader(&c, old).await;
    let (primary, epoch) = hold_steady(&c, Duration::from_secs(5)).await.unwrap();
    assert_eq!((primary.as_str(), epoch), ("erlmcp1", 1));
    c.spawn_controller(old).unwrap();
    wait_all_green(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    let report = s
        .finish(&format!("ctl{} leads; no failover", new + 1))
        .await;
    assert!(role_changes(&c).is_empty());
    assert!(report.outage < Duration::from_secs(1), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_minority_isolated() {
    if !prerequisites() {
        return;
    }
    let c = Cluster::start(options(3, 3)).await.unwrap();
    let old = leader(&c).await;
    let mut s = Scenario::begin(&c, "controller_minority_isolated")
        .await
        .unwrap();
    // the leader alone on its side: the minority
    let ns = c.controller_netns[old].as_ref().unwrap();
    s.fault();
    ns.cut_off(Cut::Both).unwrap();
    let new = new_leader(&c, old).await;
    let (primary, epoch) = hold_steady(&c, Duration::from_secs(5)).await.unwrap();
    assert_eq!((primary.as_str(), epoch), ("erlmcp1", 1));
    // the cut-off one does not decide (asked from inside its namespace)
    let own = c.drctl_at(old, &["controller", "status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&own.stdout).unwrap_or_default();
    assert_ne!(
        v["deciding"], true,
        "the isolated controller still decides: {v}"
    );
    ns.heal_faults().unwrap();
    wait_all_green(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    let report = s
        .finish(&format!("ctl{} leads; no failover", new + 1))
        .await;
    assert!(role_changes(&c).is_empty());
    assert!(report.outage < Duration::from_secs(1), "{report:?}");
}

fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_controllers_down_for_10_s() {
    if !prerequisites() {
        return;
    }
    let mut c = Cluster::start(options(3, 3)).await.unwrap();
    let mut s = Scenario::begin(&c, "all_controllers_down_10s")
        .await
        .unwrap();
    let probe = SplitBrainMonitor::start(&c).unwrap();
    s.fault();
    let killed_at = SystemTime::now();
    let killed = Instant::now();
    for i in 0..3 {
        c.kill_controller(i);
    }
    // the primary fences itself when its lease (2 s) ends
    wait_until("the primary to fence", Duration::from_secs(8), || async {
        let samples = probe.samples();
        let (_, h) = samples.iter().find(|(h, _)| h == "erlmcp1")?;
        h.last().filter(|x| x.role == "fenced").map(|_| ())
    })
    .await
    .unwrap();
    let samples = probe.samples();
    let h = &samples.iter().find(|(h, _)| h == "erlmcp1").unwrap().1;
    let last_primary = h
        .iter()
        .filter(|x| x.primary_code == 200)
        .map(|x| x.unix_ms)
        .max()
        .unwrap();
    let served_for = last_primary.saturating_sub(unix_ms(killed_at));
    assert!(
        (1000..=2600).contains(&served_for),
        "the primary answered /primary 200 for {served_for} ms after the controllers died (lease 2 s)"
    );
    // nobody else took over meanwhile
    for (host, samples) in &samples {
        if host != "erlmcp1" {
            assert!(samples.iter().all(|x| x.primary_code != 200), "{host}");
        }
    }
    // down for 10 s in all, then back
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(killed.elapsed())).await;
    for i in 0..3 {
        c.spawn_controller(i).unwrap();
    }
    c.wait_controllers().await.unwrap();
    wait_all_green(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    drop(probe);
    let report = s
        .finish(&format!(
            "served {served_for} ms, fenced, recovered on erlmcp1"
        ))
        .await;
    assert!(report.outage >= Duration::from_secs(6), "{report:?}");
    assert!(report.outage < Duration::from_secs(25), "{report:?}");
}
