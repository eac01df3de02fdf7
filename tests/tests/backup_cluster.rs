//! Property: agents with a `[backup]` section take part in the cluster's backups. With no backup
//! in the store yet, the controller has one taken on a healthy member, and that agent process
//! commits it to the store (listed and deep-verified by the standalone tool, run with the host's
//! own agent config, TLS section and all, while the agent runs); the members stay green.

use std::process::Command;
use std::time::Duration;

use dr_proto::domain::{BackupKind, BackupRecord, Health, VerifyOutcome};
use dr_tests::harness::{Cluster, ClusterOptions, wait_until};

fn records(c: &Cluster, store: &str) -> Option<Vec<BackupRecord>> {
    let out = Command::new(c.bins.agent())
        .args(["list", "--store", store, "-o", "json"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_has_a_member_take_the_first_backup_and_the_tools_read_it() {
    // every agent of the cluster has the demo's file:// store; the controller's default schedule
    let c = Cluster::start(ClusterOptions {
        backup_schedule: Some(String::new()),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let store = format!("file://{}", c.plan.store_dir().display());

    let first = wait_until(
        "a full backup in the store",
        Duration::from_secs(60),
        || async { records(&c, &store).filter(|r| !r.is_empty()) },
    )
    .await
    .unwrap();
    let full = first.last().unwrap().clone();
    assert_eq!(full.kind, BackupKind::Full);
    assert_eq!(full.group.as_str(), "erlmcp");
    assert!(full.files > 0, "{full:?}");

    // the backed-up host's own agent config is enough for the standalone tools
    let i = c.index_of(full.host.as_str());
    let config = c.host(i).agent_config().display().to_string();
    let out = Command::new(c.bins.agent())
        .args([
            "verify", "--config", &config, "--backup", &full.id, "--deep",
        ])
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: VerifyOutcome = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.valid && v.files_checked == full.files, "{v:?}");

    // the member stayed healthy throughout (a backup never stops the service)
    let status = c.status().unwrap();
    let g = status.group("erlmcp").unwrap();
    assert!(g.members.iter().all(|m| m.health == Health::Green), "{g:?}");
}
