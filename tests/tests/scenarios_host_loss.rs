//! Scenarios: losing the primary or a replica, each host in its own network namespace on the
//! test's bridge, HAProxy in front. Property: a dead or cut-off primary (both ways, or one way
//! either way) is replaced by a replica after its lease surely ended, the old one fences itself
//! and rejoins as a replica when it can talk again; a lost replica changes nothing for clients.
//! Every scenario also proves no acknowledged receipt is lost and no split brain happens
//! (`dr_tests::harness::scenario`).

use std::time::Duration;

use dr_tests::harness::Cluster;
use dr_tests::harness::scenario::Scenario;
use dr_tests::harness::scenario_steps::{
    hold_steady, kill_host, options, prerequisites, role_changes, wait_all_green,
    wait_green_replica, wait_new_primary,
};
use dr_tests::harness::testnet::Cut;

const FAILOVER_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed() {
    if !prerequisites() {
        return;
    }
    let mut c = Cluster::start(options(3, 1)).await.unwrap();
    let mut s = Scenario::begin(&c, "primary_killed").await.unwrap();
    s.fault();
    kill_host(&mut c, 0);
    let new = wait_new_primary(&c, "erlmcp1", FAILOVER_WITHIN)
        .await
        .unwrap();
    let report = s.finish(&format!("failover to {new}")).await;
    assert!(report.outage < Duration::from_secs(6), "{report:?}");
    let change = role_changes(&c).pop().expect("a role change");
    assert_eq!(change["kind"], "failover", "{change}");
    // the host comes back and rejoins as a replica
    c.start_standin(0).unwrap();
    c.start_agent(0).unwrap();
    wait_green_replica(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
}

async fn cut_primary(name: &str, how: Cut) {
    let c = Cluster::start(options(3, 1)).await.unwrap();
    let mut s = Scenario::begin(&c, name).await.unwrap();
    let ns = c.netns[0].as_ref().unwrap();
    s.fault();
    ns.cut_off(how).unwrap();
    let new = wait_new_primary(&c, "erlmcp1", FAILOVER_WITHIN)
        .await
        .unwrap();
    assert!(ns.dropped_packets() > 0, "the cut dropped nothing");
    // the old primary fenced itself, seen from inside its namespace
    s.wait_role("erlmcp1", "fenced", Duration::from_secs(5))
        .await
        .unwrap();
    let report = s
        .finish(&format!("failover to {new}; old primary fenced"))
        .await;
    assert!(report.outage < Duration::from_secs(8), "{report:?}");
    ns.heal_faults().unwrap();
    wait_green_replica(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(c.primary().as_deref(), Some(new.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_isolated() {
    if !prerequisites() {
        return;
    }
    cut_primary("primary_isolated", Cut::Both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_can_send_but_not_receive() {
    if !prerequisites() {
        return;
    }
    cut_primary("primary_one_way_cannot_receive", Cut::Inbound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_can_receive_but_not_send() {
    if !prerequisites() {
        return;
    }
    cut_primary("primary_one_way_cannot_send", Cut::Outbound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_isolated() {
    if !prerequisites() {
        return;
    }
    let c = Cluster::start(options(3, 1)).await.unwrap();
    let mut s = Scenario::begin(&c, "replica_isolated").await.unwrap();
    let ns = c.netns[2].as_ref().unwrap();
    s.fault();
    ns.cut_off(Cut::Both).unwrap();
    // the controller notices, and nothing else happens
    c.wait_status("erlmcp3 seen as gone", Duration::from_secs(20), |v| {
        v.group("erlmcp")
            .and_then(|g| g.member("erlmcp3"))
            .is_some_and(|m| !m.connected)
    })
    .await
    .unwrap();
    let (primary, _) = hold_steady(&c, Duration::from_secs(5)).await.unwrap();
    assert_eq!(primary, "erlmcp1");
    ns.heal_faults().unwrap();
    wait_all_green(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    let report = s.finish("no failover; replica back green").await;
    assert!(report.outage < Duration::from_secs(1), "{report:?}");
    assert!(role_changes(&c).is_empty());
}
