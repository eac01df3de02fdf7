//! Property: the alert rules encode the runbook's ALERT INTERPRETATION table over metrics the
//! controller really exports (and, where promtool is installed, they are valid Prometheus rules).

use std::process::Command;

use dr_tests::harness::{Cluster, ClusterOptions, http, in_ci};

const RULES: &str = include_str!("../../deploy/prometheus/alerts.yml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_uses_an_exported_metric_and_the_runbook_table_is_covered() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    let exported = http::get(&c.plan.controllers[0].http.to_string(), "/metrics")
        .await
        .unwrap()
        .body;
    let mut checked = 0;
    for line in RULES
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("expr:"))
    {
        let expr = line.trim_start_matches("expr:");
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("erlmcp_") {
                assert!(
                    exported.contains(&format!("# TYPE {word} ")),
                    "alert uses {word}, which the controller does not export"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 9, "only {checked} metric uses found");
    // the runbook's five alerts, with its thresholds
    for (metric, threshold) in [
        ("erlmcp_process_health", "== 0"),
        ("erlmcp_memory_bytes", "> 2 * 1024 * 1024 * 1024"),
        ("erlmcp_queue_depth", "> 1000"),
        ("erlmcp_error_rate", "> 0.05"),
        ("erlmcp_connections", "> 10000"),
    ] {
        assert!(
            RULES.contains(&format!("expr: {metric} {threshold}")),
            "{metric} {threshold} missing"
        );
    }
}

#[test]
fn promtool_accepts_the_rules() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/alerts.yml"
    );
    match Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            assert!(
                !in_ci(),
                "promtool is missing: tests/run.sh installs the prometheus package"
            );
            eprintln!("promtool not installed: rule syntax is only checked by the metrics test");
        }
    }
}

/// The backup and drill alerts fire on the exported series and stay quiet otherwise
/// (`deploy/prometheus/alerts.test.yml`, run by promtool's rule unit tester).
#[test]
fn backup_and_drill_alerts_fire_when_they_should() {
    assert!(RULES.contains(
        "erlmcp_dr_backup_age_seconds > on() group_left() erlmcp_dr_backup_rpo_target_seconds"
    ));
    assert!(RULES.contains("erlmcp_dr_drill_last_ok == 0"));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus");
    match Command::new("promtool")
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(dir)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            assert!(
                !in_ci(),
                "promtool is missing: tests/run.sh installs the prometheus package"
            );
            eprintln!("promtool not installed: the alert unit tests did not run");
        }
    }
}
