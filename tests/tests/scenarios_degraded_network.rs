//! Scenarios: a bad network that is not a partition, every host and controller in its own
//! network namespace on the test's bridge, HAProxy in front. Property: 5% random packet loss
//! on every member for 60 s, or 300 ms (± 100 ms) of delay on every agent–controller link, fail
//! nothing over: leases keep being renewed and the primary keeps serving. Every scenario also
//! proves no acknowledged receipt is lost and no split brain happens
//! (`dr_tests::harness::scenario`).

use std::time::Duration;

use dr_tests::harness::Cluster;
use dr_tests::harness::scenario::Scenario;
use dr_tests::harness::scenario_steps::{
    hold_steady, options, prerequisites, role_changes, wait_all_green,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_5_percent_everywhere_for_60_s() {
    if !prerequisites() {
        return;
    }
    let c = Cluster::start(options(3, 3)).await.unwrap();
    let mut s = Scenario::begin(&c, "packet_loss_5pct_60s").await.unwrap();
    let everyone: Vec<_> = c
        .netns
        .iter()
        .chain(c.controller_netns.iter())
        .flatten()
        .collect();
    s.fault();
    for ns in &everyone {
        ns.lose_packets(0.05).unwrap();
    }
    let (primary, epoch) = hold_steady(&c, Duration::from_secs(60)).await.unwrap();
    let dropped: u64 = everyone.iter().map(|ns| ns.dropped_packets()).sum();
    for ns in &everyone {
        ns.heal_faults().unwrap();
    }
    assert!(
        dropped > 100,
        "only {dropped} packets dropped: the loss did not happen"
    );
    assert_eq!((primary.as_str(), epoch), ("erlmcp1", 1));
    wait_all_green(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    let report = s
        .finish(&format!("no failover ({dropped} packets dropped)"))
        .await;
    assert!(role_changes(&c).is_empty());
    assert!(report.outage < Duration::from_secs(5), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_300_ms_with_jitter_on_every_agent_controller_link() {
    if !prerequisites() {
        return;
    }
    let mut o = options(3, 1);
    o.net.delay_proxy = true;
    let c = Cluster::start(o).await.unwrap();
    let mut s = Scenario::begin(&c, "delay_300ms_jitter").await.unwrap();
    s.fault();
    for p in &c.proxies {
        p.set_delay(Duration::from_millis(300), Duration::from_millis(100));
    }
    let (primary, epoch) = hold_steady(&c, Duration::from_secs(30)).await.unwrap();
    let delayed: u64 = c.proxies.iter().map(|p| p.delayed_chunks()).sum();
    for p in &c.proxies {
        p.clear();
    }
    assert!(
        delayed > 100,
        "only {delayed} chunks delayed: the delay did not happen"
    );
    assert_eq!((primary.as_str(), epoch), ("erlmcp1", 1));
    wait_all_green(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    let report = s.finish("no failover").await;
    assert!(role_changes(&c).is_empty());
    assert!(report.outage < Duration::from_secs(1), "{report:?}");
}
