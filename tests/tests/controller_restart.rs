//! Property: the controller's decisions survive its restart (members and primary come back
//! from its state store, not from whoever reconnects first), and agents reconnect by themselves.

use std::time::Duration;

use dr_proto::domain::{Epoch, Health};
use dr_tests::harness::{Cluster, ClusterOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reconnect_and_state_survives_a_controller_restart() {
    let mut c = Cluster::start(ClusterOptions::default()).await.unwrap();
    let before = c.status().unwrap();
    let g = before.group("erlmcp").unwrap();
    let (primary, epoch) = (g.primary.clone().unwrap(), g.epoch);
    assert_eq!(epoch, Epoch(1));

    let status = c.stop_controller().expect("controller was running");
    assert!(
        status.success(),
        "controller exits cleanly on SIGTERM: {status}"
    );
    // while it is down, drctl says so and exits 1
    let out = c.drctl(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("controller unreachable"));

    // Start it again; kill the first-configured host's agent so it cannot be the one to
    // "re-elect" itself: the primary must come from the persisted state.
    c.agents[0].as_mut().unwrap().kill();
    c.start_controller().await.unwrap();
    let v = c
        .wait_status("replicas reconnected", Duration::from_secs(15), |v| {
            let g = v.group("erlmcp").unwrap();
            ["erlmcp2", "erlmcp3"].iter().all(|h| {
                g.member(h)
                    .is_some_and(|m| m.connected && m.health == Health::Green)
            })
        })
        .await
        .unwrap();
    let g = v.group("erlmcp").unwrap();
    assert_eq!(g.primary.as_ref(), Some(&primary), "primary kept");
    assert_eq!(g.epoch, epoch, "epoch kept");
    assert_eq!(
        g.members.len(),
        3,
        "members kept, including the one not connected"
    );
    let m1 = g.member("erlmcp1").unwrap();
    assert_eq!(m1.health, Health::Unknown, "{m1:?}");

    c.start_agent(0).unwrap();
    c.wait_status("all green again", Duration::from_secs(15), |v| {
        v.group("erlmcp")
            .unwrap()
            .members
            .iter()
            .all(|m| m.health == Health::Green)
    })
    .await
    .unwrap();
}
