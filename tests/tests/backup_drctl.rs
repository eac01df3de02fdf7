//! Property: an operator runs the runbook's backup quick commands and Procedure 2 through drctl
//! against a real cluster: backups are taken on a replica and listed, verified deep, drilled (the
//! drill shows in the list), restored onto a replica with the incident left watching; restoring
//! the primary needs --allow-primary; a restore whose post-restore hook fails puts the previous
//! data back with the service healthy; retention keeps exactly what the policy says.

use std::process::Output;
use std::time::Duration;

use dr_proto::domain::{Category, Health, Incident, Phase};
use dr_tests::harness::{Cluster, ClusterOptions, wait_until};

const GROUP: &str = "erlmcp";

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn list(c: &Cluster) -> serde_json::Value {
    serde_json::from_str(&ok(&c.drctl(&["backup", "list", "-o", "json"]))).unwrap()
}

fn incidents(c: &Cluster) -> Vec<Incident> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&c.drctl(&["history", "-o", "json", "--limit", "100"]))).unwrap();
    serde_json::from_value(v["incidents"].clone()).unwrap()
}

async fn wait_green(c: &Cluster, host: &str) {
    c.wait_status(&format!("{host} green"), Duration::from_secs(30), |v| {
        v.group(GROUP)
            .and_then(|g| g.member(host))
            .is_some_and(|m| m.health == Health::Green)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_drill_and_restore_through_drctl() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    assert_eq!(c.primary().as_deref(), Some("erlmcp1"));

    // nothing yet, and the list says so
    let empty = list(&c);
    assert_eq!(empty["backups"].as_array().unwrap().len(), 0, "{empty}");

    // a full backup, then an incremental, both on a replica
    let created = c.drctl(&["backup", "create", "--wait"]);
    let out = ok(&created);
    let err = String::from_utf8_lossy(&created.stderr);
    assert!(err.contains("full backup started on erlmcp2"), "{err}");
    assert!(
        out.contains("backup full-") && out.contains("on erlmcp2") && out.contains("files"),
        "{out}"
    );
    let out = ok(&c.drctl(&["backup", "create", "--incremental", "--wait"]));
    assert!(out.contains("backup incremental-"), "{out}");
    let l = list(&c);
    let backups = l["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{l}");
    assert_eq!(backups[0]["kind"], "incremental", "newest first: {l}");
    assert_eq!(backups[1]["kind"], "full");
    assert_eq!(backups[0]["parent"], backups[1]["id"], "{l}");
    for b in backups {
        assert_eq!(b["host"], "erlmcp2");
        assert_eq!(b["verified"], true);
        assert!(b["files"].as_u64().unwrap() > 0);
    }
    let table = ok(&c.drctl(&["backup", "list"]));
    assert!(table.contains("no restore drill yet"), "{table}");

    // deep verify: the full (the incremental may hold no changed file at all)
    let full_id = backups[1]["id"].as_str().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&ok(
        &c.drctl(&["backup", "verify", &full_id, "--deep", "-o", "json"])
    ))
    .unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["backup_id"], full_id.as_str(), "{v}");
    assert!(v["files_checked"].as_u64().unwrap() > 0, "{v}");
    let quick = ok(&c.drctl(&["backup", "verify", "latest"]));
    assert!(quick.contains("valid (quick check"), "{quick}");

    // a restore drill on a replica; the list shows it
    let out = ok(&c.drctl(&["backup", "drill"]));
    assert!(out.contains(": ok ("), "{out}");
    assert!(
        out.contains("integrity ok"),
        "the drill ran the integrity hook: {out}"
    );
    let l = list(&c);
    assert_eq!(l["last_drill"]["ok"], true, "{l}");
    assert!(
        l["last_drill"]["last_good_at_unix_ms"].as_u64().is_some(),
        "{l}"
    );
    let table = ok(&c.drctl(&["backup", "list"]));
    assert!(table.contains("last restore drill: ok"), "{table}");

    // the primary is not restored without an explicit flag
    let refused = c.drctl(&["restore", "--host", "erlmcp1", "--yes"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--allow-primary") && err.contains("switchover"),
        "{err}"
    );
    // ...nor without a confirmation when stdin is not a terminal
    let unconfirmed = c.drctl(&["restore", "--host", "erlmcp2"]);
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));

    // Procedure 2 on the replica: the data comes back to the backup's content
    let data = c.host(1).data_dir();
    std::fs::write(data.join("written-after-the-backup.txt"), b"later").unwrap();
    let out = ok(&c.drctl(&[
        "restore", "--host", "erlmcp2", "--backup", "latest", "--yes", "--wait",
    ]));
    assert!(out.contains("restored incremental-"), "{out}");
    assert!(
        out.contains("hook: ") && out.contains("integrity ok"),
        "{out}"
    );
    assert!(out.contains("previous data is kept at"), "{out}");
    assert!(
        !data.join("written-after-the-backup.txt").exists(),
        "the restored tree is the backup's"
    );
    wait_green(&c, "erlmcp2").await;
    let restore = incidents(&c)
        .into_iter()
        .find(|i| {
            i.category == Category::DataProblem
                && i.host.as_ref().map(|h| h.as_str()) == Some("erlmcp2")
        })
        .expect("a restore incident");
    assert_eq!(restore.phase, Phase::Watching, "{restore:?}");
    assert!(
        restore
            .timeline
            .iter()
            .any(|e| e.text.contains("restored incremental-")),
        "{restore:?}"
    );
    // the primary was never touched
    assert_eq!(c.primary().as_deref(), Some("erlmcp1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_post_restore_hook_fails_leaves_the_previous_data_and_a_healthy_service() {
    let mut c = Cluster::start(ClusterOptions::default()).await.unwrap();
    ok(&c.drctl(&["backup", "create", "--host", "erlmcp2", "--wait"]));

    // erlmcp3's integrity check fails whatever it is given
    let config = c.host(2).agent_config();
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("post_restore = "))
        .expect("the demo layout has a post_restore hook")
        .to_string();
    std::fs::write(
        &config,
        text.replace(
            &line,
            "post_restore = [{ command = [\"false\"], timeout_ms = 5000 }]",
        ),
    )
    .unwrap();
    drop(c.agents[2].take());
    c.start_agent(2).unwrap();
    wait_green(&c, "erlmcp3").await;

    let data = c.host(2).data_dir();
    std::fs::write(data.join("only-on-erlmcp3.txt"), b"keep me").unwrap();
    let before = c.standin_pid(2);
    let out = c.drctl(&[
        "restore",
        "--host",
        "erlmcp3",
        "--from-host",
        "erlmcp2",
        "--yes",
        "--wait",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("restore failed"), "{err}");
    assert!(err.contains("previous data"), "{err}");
    assert_eq!(
        std::fs::read(data.join("only-on-erlmcp3.txt")).unwrap(),
        b"keep me",
        "the previous data is back in place"
    );
    wait_green(&c, "erlmcp3").await;
    assert_ne!(c.standin_pid(2), None);
    assert!(before.is_some());
    let i = incidents(&c)
        .into_iter()
        .find(|i| {
            i.category == Category::DataProblem
                && i.host.as_ref().map(|h| h.as_str()) == Some("erlmcp3")
        })
        .expect("a restore incident");
    assert!(
        i.resolved_at_unix_ms.is_none() && i.phase != Phase::Watching,
        "{i:?}"
    );
    assert!(
        i.timeline.iter().any(|e| e.text.contains("restore failed")),
        "{i:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_after_each_backup_keeps_exactly_the_newest_n() {
    let c = Cluster::start(ClusterOptions {
        backup_schedule: Some(
            "full_every_s = 0\nincremental_every_s = 0\ndrill_every_s = 0\nkeep_last = 2\nkeep_daily = 0\nkeep_weekly = 0"
                .into(),
        ),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = ok(&c.drctl(&["backup", "create", "--host", "erlmcp2", "--wait"]));
        let id = out
            .split_whitespace()
            .find(|w| w.starts_with("full-20"))
            .expect("the new backup's id")
            .trim_end_matches(':')
            .to_string();
        ids.push(id);
    }
    let want = vec![ids[2].clone(), ids[1].clone()];
    let kept = wait_until(
        "retention to leave the two newest",
        Duration::from_secs(30),
        || async {
            let l = list(&c);
            let now: Vec<String> = l["backups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_string())
                .collect();
            (now == want).then_some(now)
        },
    )
    .await
    .unwrap();
    assert_eq!(kept, want);
    // and the store holds no object of the oldest
    let host_dir = c.plan.store_dir().join(GROUP).join("erlmcp2");
    let names: Vec<String> = std::fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with(&ids[0])), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with(&ids[2])), "{names:?}");
}
