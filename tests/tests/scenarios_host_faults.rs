//! Scenarios: faults on one host that are not a network partition, each host and controller in
//! its own network namespace on the test's bridge, HAProxy in front. Property: restarting the
//! primary's agent fails nothing over; a second host failing (hung: SIGSTOP) during a failover
//! still ends with exactly one primary; jumping the primary's wall clock by +1 h or -1 h changes
//! nothing (leases run on the monotonic clock). Every scenario also proves no acknowledged
//! receipt is lost and no split brain happens (`dr_tests::harness::scenario`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dr_proto::domain::Role;
use dr_tests::harness::scenario::Scenario;
use dr_tests::harness::scenario_steps::{
    GROUP, hold_steady, kill_host, options, prerequisites, primary_of, role_changes,
    wait_all_green, wait_green_replica,
};
use dr_tests::harness::{Cluster, in_ci, testnet_setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restarted_on_the_primary() {
    if !prerequisites() {
        return;
    }
    let mut c = Cluster::start(options(3, 1)).await.unwrap();
    let mut s = Scenario::begin(&c, "agent_restarted_on_primary")
        .await
        .unwrap();
    let before = c.agents[0].as_ref().unwrap().pid();
    s.fault();
    c.restart_agent(0).unwrap();
    assert_ne!(c.agents[0].as_ref().unwrap().pid(), before);
    wait_all_green(&c, "erlmcp1", Duration::from_secs(20))
        .await
        .unwrap();
    let (primary, epoch) = hold_steady(&c, Duration::from_secs(5)).await.unwrap();
    assert_eq!((primary.as_str(), epoch), ("erlmcp1", 1));
    let report = s.finish("no failover").await;
    assert!(role_changes(&c).is_empty());
    assert!(report.outage < Duration::from_secs(3), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_failure_during_failover() {
    if !prerequisites() {
        return;
    }
    // four hosts: every receipt is on three, so two failed hosts cannot take the last copy
    let mut o = options(4, 1);
    o.promote_delay_ms = Some(1500);
    let mut c = Cluster::start(o).await.unwrap();
    let mut s = Scenario::begin(&c, "double_failure_during_failover")
        .await
        .unwrap();
    s.fault();
    kill_host(&mut c, 0);
    // catch the failover while its first candidate runs its (slow) promote hook
    let v = c
        .wait_status("a failover in progress", Duration::from_secs(20), |v| {
            v.group(GROUP)
                .and_then(|g| g.transition.as_ref())
                .is_some_and(|t| t.contains("promoting"))
        })
        .await
        .unwrap();
    let candidate = primary_of(&v).unwrap();
    let i = c.index_of(&candidate);
    // the candidate hangs (agent and stand-in stopped)
    c.pause_agent(i, true).unwrap();
    c.pause_standin(i, true).unwrap();
    let v = c
        .wait_status(
            "one settled primary among the survivors",
            Duration::from_secs(40),
            |v| {
                let g = v.group(GROUP).unwrap();
                g.transition.is_none()
                    && primary_of(v).is_some_and(|p| p != "erlmcp1" && p != candidate)
                    && g.members
                        .iter()
                        .any(|m| m.role == Role::Primary && m.lease_remaining_ms.is_some())
            },
        )
        .await
        .unwrap();
    let survivor = primary_of(&v).unwrap();
    // the hung candidate comes back and rejoins as a replica
    c.pause_standin(i, false).unwrap();
    c.pause_agent(i, false).unwrap();
    wait_green_replica(&c, &candidate, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(c.primary().as_deref(), Some(survivor.as_str()));
    let report = s
        .finish(&format!("{candidate} hung mid-promote; {survivor} primary"))
        .await;
    assert!(report.outage < Duration::from_secs(20), "{report:?}");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// How far ahead of the real clock erlmcp1's agent stamps its reports, once it shifted by
/// about `expect_ms`.
async fn clock_shift(c: &Cluster, expect_ms: i64) -> i64 {
    let c_ref = c;
    dr_tests::harness::wait_until(
        "erlmcp1's reports to carry the shifted clock",
        Duration::from_secs(10),
        || async move {
            let v = c_ref.status().ok()?;
            let m = v.group(GROUP)?.member("erlmcp1")?.clone();
            let probed = m.last_report?.probed_at_unix_ms as i64;
            let shift = probed - now_ms();
            ((shift - expect_ms).abs() < 15_000).then_some(shift)
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jump_on_the_primary() {
    if !prerequisites() {
        return;
    }
    if testnet_setup::libfaketime().is_none() {
        assert!(
            !in_ci(),
            "libfaketime is missing (tests/run.sh installs it)"
        );
        eprintln!("skipping: libfaketime is not installed");
        return;
    }
    let mut o = options(3, 1);
    o.net.faketime_hosts = vec![0];
    let c = Cluster::start(o).await.unwrap();
    let mut s = Scenario::begin(&c, "wall_clock_jump_pm_1h").await.unwrap();
    assert!(clock_shift(&c, 0).await.abs() < 15_000);
    s.fault();
    c.set_clock_offset(0, "+1h").unwrap();
    let ahead = clock_shift(&c, 3_600_000).await;
    let (primary, epoch) = hold_steady(&c, Duration::from_secs(10)).await.unwrap();
    assert_eq!((primary.as_str(), epoch), ("erlmcp1", 1));
    c.set_clock_offset(0, "-1h").unwrap();
    let behind = clock_shift(&c, -3_600_000).await;
    let (primary, epoch) = hold_steady(&c, Duration::from_secs(10)).await.unwrap();
    assert_eq!((primary.as_str(), epoch), ("erlmcp1", 1));
    c.set_clock_offset(0, "+0").unwrap();
    clock_shift(&c, 0).await;
    wait_all_green(&c, "erlmcp1", Duration::from_secs(20))
        .await
        .unwrap();
    let report = s
        .finish(&format!(
            "no failover (agent clock shifted {:+.1} h, then {:+.1} h)",
            ahead as f64 / 3.6e6,
            behind as f64 / 3.6e6
        ))
        .await;
    assert!(role_changes(&c).is_empty());
    assert!(report.outage < Duration::from_secs(1), "{report:?}");
}
