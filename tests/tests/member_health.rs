//! Property: the controller sees every member's health as the agents measure it, within the
//! reporting interval, and names the cause in words an operator can act on (the runbook's
//! "What's the impact?" table): a dead process, a hung one, an application error.

use std::time::{Duration, Instant};

use dr_proto::domain::{Health, Role};
use dr_proto::process::Sig;
use dr_tests::harness::{Cluster, ClusterOptions, http};

const GROUP: &str = "erlmcp";

fn member_health(v: &dr_proto::domain::StatusView, host: &str) -> Option<Health> {
    Some(v.group(GROUP)?.member(host)?.health)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_reach_all_green_with_exactly_one_primary() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    let v = c.status().unwrap();
    let g = v.group(GROUP).expect("group erlmcp");
    assert_eq!(g.members.len(), 3);
    assert!(g.members.iter().all(|m| m.health == Health::Green), "{g:?}");
    let primaries: Vec<_> = g
        .members
        .iter()
        .filter(|m| m.role == Role::Primary)
        .collect();
    assert_eq!(primaries.len(), 1, "{g:?}");
    assert_eq!(Some(&primaries[0].host), g.primary.as_ref());
    assert!(g.epoch.0 >= 1);
    assert!(
        g.members
            .iter()
            .all(|m| m.connected && m.last_seen_ms.is_some())
    );

    // the raw JSON has exactly the contract's field names
    let out = c.drctl(&["status", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let group = &json["groups"][0];
    for key in ["name", "epoch", "primary", "mode", "members"] {
        assert!(group.get(key).is_some(), "group lacks {key}: {group}");
    }
    for key in [
        "host",
        "role",
        "health",
        "reasons",
        "last_seen_ms",
        "lease_remaining_ms",
    ] {
        assert!(group["members"][0].get(key).is_some(), "member lacks {key}");
    }
    assert_eq!(group["mode"], "automatic");

    // the command path reaches an agent and back
    let out = c.drctl(&["ping", "erlmcp2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pong from erlmcp2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_is_red_within_two_seconds_and_green_again_after_restart() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    // maintenance mode: no automatic restart, so the restart below is ours (recovery.rs covers
    // the automatic one)
    assert!(c.drctl(&["pause"]).status.success());
    let killed_at = Instant::now();
    c.signal_standin(1, Sig::Kill).unwrap();
    let v = c
        .wait_status("erlmcp2 red", Duration::from_secs(5), |v| {
            member_health(v, "erlmcp2") == Some(Health::Red)
        })
        .await
        .unwrap();
    let elapsed = killed_at.elapsed();
    assert!(elapsed < Duration::from_secs(2), "red after {elapsed:?}");
    let reasons = &v.group(GROUP).unwrap().member("erlmcp2").unwrap().reasons;
    assert!(
        reasons[0].starts_with("process not running"),
        "first reason names the dead process: {reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("connection refused")),
        "{reasons:?}"
    );
    // the others are untouched
    assert_eq!(member_health(&v, "erlmcp1"), Some(Health::Green));

    // restarted by hand → green again
    c.start_standin(1).unwrap();
    c.wait_status("erlmcp2 green again", Duration::from_secs(10), |v| {
        member_health(v, "erlmcp2") == Some(Health::Green)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_service_is_a_timeout_and_a_500_is_an_application_error() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    assert!(
        c.drctl(&["pause"]).status.success(),
        "maintenance: observe, do not act"
    );
    let svc2 = c.host(1).service.to_string();
    let svc3 = c.host(2).service.to_string();

    // hang through the control endpoint; 5xx through the signal switch
    let r = http::post(&svc2, "/control/fault/hang", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    c.signal_standin(2, Sig::Usr1).unwrap();

    let v = c
        .wait_status(
            "erlmcp2 timeout and erlmcp3 application error",
            Duration::from_secs(6),
            |v| {
                let g = v.group(GROUP).unwrap();
                let r2 = &g.member("erlmcp2").unwrap().reasons;
                let r3 = &g.member("erlmcp3").unwrap().reasons;
                r2.iter().any(|r| r.contains("timed out"))
                    && r3.iter().any(|r| r.contains("application error"))
            },
        )
        .await
        .unwrap();
    let g = v.group(GROUP).unwrap();
    assert_eq!(g.member("erlmcp2").unwrap().health, Health::Red);
    assert!(g.member("erlmcp2").unwrap().reasons[0].contains("hung or overloaded"));
    assert_eq!(g.member("erlmcp3").unwrap().health, Health::Red);
    assert!(g.member("erlmcp3").unwrap().reasons[0].contains("HTTP 503"));

    // cleared → green again
    http::post(&svc2, "/control/clear", None).await.unwrap();
    http::post(&svc3, "/control/clear", None).await.unwrap();
    c.wait_status("both back to not red", Duration::from_secs(10), |v| {
        member_health(v, "erlmcp2") != Some(Health::Red)
            && member_health(v, "erlmcp3") != Some(Health::Red)
    })
    .await
    .unwrap();

    // a process stopped by SIGSTOP is hung too, and the probe says why
    c.signal_standin(0, Sig::Stop).unwrap();
    let v = c
        .wait_status("erlmcp1 red while stopped", Duration::from_secs(6), |v| {
            member_health(v, "erlmcp1") == Some(Health::Red)
        })
        .await
        .unwrap();
    c.signal_standin(0, Sig::Cont).unwrap();
    let reasons = &v.group(GROUP).unwrap().member("erlmcp1").unwrap().reasons;
    assert!(reasons[0].contains("stopped"), "{reasons:?}");
    c.wait_status("erlmcp1 answers again", Duration::from_secs(10), |v| {
        member_health(v, "erlmcp1") != Some(Health::Red)
    })
    .await
    .unwrap();
}
