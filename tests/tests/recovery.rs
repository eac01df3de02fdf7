//! Property: the runbook's Procedure 1 runs by itself. A dead, hung or unresponsive service is
//! restarted within a budget, verified (health, log) and its incident closed with the measured
//! time to recovery; an application error is reported, not restarted; a spent budget escalates
//! instead of looping.

use std::time::Duration;

use dr_proto::domain::{Category, Health, Incident, Phase};
use dr_proto::process::Sig;
use dr_tests::harness::{Cluster, ClusterOptions, http};

const GROUP: &str = "erlmcp";

fn health(c: &Cluster, host: &str) -> Option<Health> {
    Some(c.status().ok()?.group(GROUP)?.member(host)?.health)
}

fn incidents(c: &Cluster) -> Vec<Incident> {
    let out = c.drctl(&["history", "-o", "json", "--limit", "100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(v["incidents"].clone()).unwrap()
}

async fn metric(c: &Cluster, name_and_labels: &str) -> Option<f64> {
    let text = http::get(&c.plan.controllers[0].http.to_string(), "/metrics")
        .await
        .ok()?
        .body;
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_is_restarted_and_its_incident_closed_with_the_recovery_time() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    let before = c.standin_pid(1).unwrap();
    c.signal_standin(1, Sig::Kill).unwrap();
    let inc = dr_tests::harness::wait_until(
        "the crash incident to be resolved",
        Duration::from_secs(30),
        || async {
            incidents(&c).into_iter().find(|i| {
                i.host.as_ref().is_some_and(|h| h.as_str() == "erlmcp2")
                    && i.category == Category::ProcessCrash
                    && i.phase == Phase::Resolved
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(health(&c, "erlmcp2"), Some(Health::Green));
    let after = c.standin_pid(1).expect("restarted stand-in wrote its pid");
    assert_ne!(before, after, "a new process");
    let ttr = inc.time_to_recovery_ms.expect("measured");
    assert!(ttr > 0 && ttr < 20_000, "time to recovery {ttr} ms");
    let texts: Vec<&str> = inc.timeline.iter().map(|e| e.text.as_str()).collect();
    assert!(
        texts.iter().any(|t| t.contains("automatic restart 1/3")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("restart finished")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("log check")), "{texts:?}");
    assert_eq!(
        metric(
            &c,
            "erlmcp_dr_restarts_total{group=\"erlmcp\",host=\"erlmcp2\"}"
        )
        .await,
        Some(1.0)
    );
    // the primary was never touched
    assert_eq!(c.primary().as_deref(), Some("erlmcp1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_service_reads_as_a_timeout_and_is_restarted() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    let svc = c.host(2).service.to_string();
    assert_eq!(
        http::post(&svc, "/control/fault/hang", None)
            .await
            .unwrap()
            .status,
        200
    );
    c.wait_status("erlmcp3 timing out", Duration::from_secs(30), |v| {
        v.group(GROUP)
            .unwrap()
            .member("erlmcp3")
            .unwrap()
            .reasons
            .iter()
            .any(|r| r.contains("timed out"))
    })
    .await
    .unwrap();
    let inc = dr_tests::harness::wait_until(
        "the hang incident to be resolved by a restart",
        Duration::from_secs(40),
        || async {
            incidents(&c).into_iter().find(|i| {
                i.host.as_ref().is_some_and(|h| h.as_str() == "erlmcp3")
                    && i.phase == Phase::Resolved
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(inc.category, Category::Overload);
    assert!(
        inc.timeline
            .iter()
            .any(|e| e.text.contains("restart finished")),
        "{:?}",
        inc.timeline
    );
    // the new process is not hung
    assert_eq!(http::get(&svc, "/live").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_an_application_error_and_is_not_restarted() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    let pid = c.signal_standin(1, Sig::Usr1).unwrap();
    let v = c
        .wait_status("erlmcp2 application error", Duration::from_secs(30), |v| {
            v.group(GROUP)
                .unwrap()
                .member("erlmcp2")
                .unwrap()
                .reasons
                .iter()
                .any(|r| r.contains("application error"))
        })
        .await
        .unwrap();
    assert_eq!(
        v.group(GROUP).unwrap().member("erlmcp2").unwrap().health,
        Health::Red
    );
    // several report rounds later: still the same process, an open application_error incident
    let c2 = &c;
    dr_tests::harness::wait_until(
        "an application error incident",
        Duration::from_secs(30),
        || async move {
            incidents(c2)
                .into_iter()
                .find(|i| i.category == Category::ApplicationError && i.is_open())
        },
    )
    .await
    .unwrap();
    assert_eq!(c.standin_pid(1), Some(pid), "not restarted");
    assert_eq!(
        metric(
            &c,
            "erlmcp_dr_restarts_total{group=\"erlmcp\",host=\"erlmcp2\"}"
        )
        .await,
        None
    );
    c.signal_standin(1, Sig::Usr1).unwrap();
    dr_tests::harness::wait_until(
        "the incident to close once healthy",
        Duration::from_secs(30),
        || async move {
            incidents(c2)
                .into_iter()
                .find(|i| i.category == Category::ApplicationError && i.phase == Phase::Resolved)
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_restart_budget_escalates_instead_of_looping() {
    let c = Cluster::start(ClusterOptions {
        controller_extra: "[restart]\nbudget = 1\nbackoff_s = 1\n".into(),
        agent_extra: "[restart]\nhealthy_timeout_ms = 5000\n".into(),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let svc = c.host(1).service;
    // kill it while paused, hold its port so every start fails, then let automation act
    assert!(c.drctl(&["pause"]).status.success());
    c.signal_standin(1, Sig::Kill).unwrap();
    let blocker = dr_tests::harness::wait_until(
        "the port to be free to hold",
        Duration::from_secs(10),
        || async move { std::net::TcpListener::bind(svc).ok() },
    )
    .await
    .unwrap();
    assert!(c.drctl(&["resume"]).status.success());
    let c2 = &c;
    let inc = dr_tests::harness::wait_until(
        "escalation after the budget is spent",
        Duration::from_secs(40),
        || async move {
            incidents(c2).into_iter().find(|i| {
                i.host.as_ref().is_some_and(|h| h.as_str() == "erlmcp2")
                    && i.timeline.iter().any(|e| e.text.contains("budget spent"))
            })
        },
    )
    .await
    .unwrap();
    assert!(inc.is_open(), "a human must act: {inc:?}");
    assert!(
        inc.timeline
            .iter()
            .any(|e| e.text.contains("restart failed")),
        "{:?}",
        inc.timeline
    );
    // no loop: the count stays at 1 over several more report rounds
    let restarts = metric(
        &c,
        "erlmcp_dr_restarts_total{group=\"erlmcp\",host=\"erlmcp2\"}",
    )
    .await;
    assert_eq!(restarts, Some(1.0));
    tokio::time::sleep(Duration::from_secs(3)).await; // observation window, not readiness
    let restarts = metric(
        &c,
        "erlmcp_dr_restarts_total{group=\"erlmcp\",host=\"erlmcp2\"}",
    )
    .await;
    assert_eq!(
        restarts,
        Some(1.0),
        "restarted again although the budget was spent"
    );
    drop(blocker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_move_members_to_yellow_and_red_with_readable_reasons() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    let gib = 1024.0 * 1024.0 * 1024.0;
    let set = |i: usize, q: String| {
        let svc = c.host(i).service.to_string();
        async move {
            http::post(&svc, &format!("/control/set?{q}"), None)
                .await
                .unwrap()
        }
    };
    set(1, format!("memory_bytes={}", 1.3 * gib)).await;
    set(2, "queue_depth=150".into()).await;
    set(0, "error_rate=0.06".into()).await;
    let v = c
        .wait_status("three members moved", Duration::from_secs(30), |v| {
            let g = v.group(GROUP).unwrap();
            g.members.iter().all(|m| m.health != Health::Green)
        })
        .await
        .unwrap();
    let g = v.group(GROUP).unwrap();
    let m2 = g.member("erlmcp2").unwrap();
    assert_eq!(m2.health, Health::Red);
    assert!(
        m2.reasons
            .contains(&"memory 1.3 GiB > 1.0 GiB (critical)".to_string()),
        "{:?}",
        m2.reasons
    );
    let m3 = g.member("erlmcp3").unwrap();
    assert_eq!(m3.health, Health::Yellow);
    assert!(
        m3.reasons
            .contains(&"message queue 150 ≥ 100 (warning): backpressure active".to_string()),
        "{:?}",
        m3.reasons
    );
    let m1 = g.member("erlmcp1").unwrap();
    assert_eq!(m1.health, Health::Red);
    assert!(
        m1.reasons
            .contains(&"error rate 6.0% > 5.0% (critical)".to_string()),
        "{:?}",
        m1.reasons
    );
    // the text table shows the same sentences
    let table = String::from_utf8(c.drctl(&["status"]).stdout).unwrap();
    assert!(
        table.contains("memory 1.3 GiB > 1.0 GiB (critical)"),
        "{table}"
    );
    // and the runbook's alert metrics carry the values
    let text = http::get(&c.plan.controllers[0].http.to_string(), "/metrics")
        .await
        .unwrap()
        .body;
    assert!(
        text.contains("erlmcp_queue_depth{group=\"erlmcp\",host=\"erlmcp3\"} 150"),
        "{text}"
    );
    assert!(text.contains("erlmcp_dr_member_health{group=\"erlmcp\",host=\"erlmcp2\"} 2"));
}
