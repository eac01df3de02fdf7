//! Scenarios: backups and restores meeting faults, each host and controller in its own network
//! namespace on the test's bridge, HAProxy in front. Property: an S3 store that becomes
//! unreachable in the middle of an upload fails the backup within its deadline and lists no
//! partial backup, and a later retry succeeds; a disk that fills up during a restore leaves the
//! previous data in place and the service healthy; a corrupted backup is detected and the
//! previous good one is offered and restores. Every scenario also proves no acknowledged receipt
//! is lost and no split brain happens (`dr_tests::harness::scenario`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dr_tests::harness::scenario::Scenario;
use dr_tests::harness::scenario_steps::{
    options, prerequisites, role_changes, until, wait_all_green,
};
use dr_tests::harness::{Cluster, http, wait_until};

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

fn list(c: &Cluster) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&c.drctl(&["backup", "list", "-o", "json"]))).unwrap();
    v["backups"].as_array().cloned().unwrap_or_default()
}

/// What the store itself holds, read with the standalone tool and host `i`'s own config.
fn store_list(c: &Cluster, i: usize) -> Vec<serde_json::Value> {
    let out = Command::new(c.bins.agent())
        .args(["list", "--config"])
        .arg(c.host(i).agent_config())
        .args(["-o", "json"])
        .output()
        .unwrap();
    serde_json::from_str(&ok(&out)).unwrap()
}

/// `megabytes` of incompressible data in `dir/blob.bin`.
fn random_file(dir: &Path, megabytes: usize) {
    let mut bytes = vec![0u8; megabytes << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(dir.join("blob.bin"), bytes).unwrap();
}

/// Rewrite one line of host `i`'s agent config and restart its agent.
async fn reconfigure_agent(c: &mut Cluster, i: usize, starts: &str, with: &str) {
    let path = c.host(i).agent_config();
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(starts))
        .unwrap_or_else(|| panic!("no {starts} line"))
        .to_string();
    std::fs::write(&path, text.replace(&line, with)).unwrap();
    c.agents[i].as_mut().unwrap().kill();
    c.start_agent(i).unwrap();
    wait_all_green(c, "erlmcp1", Duration::from_secs(20))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_during_a_backup() {
    if !prerequisites() {
        return;
    }
    let mut o = options(3, 1);
    o.net.s3 = true;
    let mut c = Cluster::start(o).await.unwrap();
    // a deadline an operator would set for a store that may hang (the demo's is 600 s)
    reconfigure_agent(&mut c, 1, "timeout_s = ", "timeout_s = 15").await;
    random_file(&c.host(1).data_dir(), 8);
    let mut s = Scenario::begin(&c, "s3_unreachable_during_backup")
        .await
        .unwrap();
    let s3 = c.s3.as_ref().unwrap().addr;
    let std::net::IpAddr::V4(s3_ip) = s3.ip() else {
        unreachable!()
    };
    let ns = c.netns[1].as_ref().unwrap();
    // slow enough to be caught in the middle of the upload
    ns.throttle_tcp_to(s3_ip, s3.port(), 10).unwrap();
    let (drctl, config) = (c.bins.drctl(), c.drctl_config());
    let backup = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let out = Command::new(drctl)
            .arg("--config")
            .arg(config)
            .args(["backup", "create", "--host", "erlmcp2", "--wait"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (out, started.elapsed())
    });
    let under_way = until(
        "the upload to be under way",
        Duration::from_secs(20),
        || ns.throttled_bytes() > 1 << 20,
    )
    .await;
    if let Err(e) = under_way {
        let rules = Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "iptables", "-L", "OUTPUT", "-v", "-n", "-x",
            ])
            .output()
            .unwrap();
        let (out, _) = backup.await.unwrap();
        panic!(
            "{e}\n{}\nbackup: {}{}",
            String::from_utf8_lossy(&rules.stdout),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    s.fault();
    ns.block_tcp_to(s3_ip, s3.port()).unwrap();
    let (out, took) = backup.await.unwrap();
    assert!(
        !out.status.success(),
        "the backup succeeded with its store cut off: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(took < Duration::from_secs(45), "the backup took {took:?}");
    // nothing partial is listed, by the controller or in the store itself
    assert!(list(&c).is_empty(), "{:?}", list(&c));
    assert!(store_list(&c, 1).is_empty(), "{:?}", store_list(&c, 1));
    // the store is back: a retry succeeds, and it is the one backup listed
    ns.heal_faults().unwrap();
    let retry = ok(&c.drctl(&["backup", "create", "--host", "erlmcp2", "--wait"]));
    assert!(retry.contains("backup full-"), "{retry}");
    let listed = list(&c);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["verified"], true, "{listed:?}");
    assert_eq!(store_list(&c, 1).len(), 1);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&ok(
        &c.drctl(&["backup", "verify", &id, "--deep", "-o", "json"])
    ))
    .unwrap();
    assert_eq!(v["valid"], true, "{v}");
    let why = err
        .lines()
        .find(|l| l.contains("backup.timeout_s"))
        .unwrap_or_else(|| panic!("the error names the deadline it hit: {err}"))
        .to_string();
    let why = why
        .split(": gave up")
        .next()
        .unwrap_or_default()
        .to_string();
    s.finish(&format!(
        "backup failed after {:.0} s ({why}); none listed; retry ok",
        took.as_secs_f64()
    ))
    .await;
    assert!(role_changes(&c).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_during_a_restore() {
    if !prerequisites() {
        return;
    }
    let mut o = options(3, 1);
    o.net.small_disks = vec![(2, 64)];
    let c = Cluster::start(o).await.unwrap();
    random_file(&c.host(1).data_dir(), 16);
    ok(&c.drctl(&["backup", "create", "--host", "erlmcp2", "--wait"]));
    let mut s = Scenario::begin(&c, "disk_full_during_restore")
        .await
        .unwrap();
    let data = c.host(2).data_dir();
    std::fs::write(data.join("only-on-erlmcp3.txt"), b"keep me").unwrap();
    let disk = c.disks[2].as_ref().unwrap();
    let staging = data.with_extension("restore");
    // enough room for the restore's own space check; then something else fills the disk while
    // the restore extracts
    assert!(disk.free_bytes() > 20 << 20);
    let filler = disk.fill_when_exists(staging.clone(), Duration::from_secs(30));
    s.fault();
    let out = c.drctl(&[
        "restore",
        "--host",
        "erlmcp3",
        "--from-host",
        "erlmcp2",
        "--yes",
        "--wait",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        filler.join().unwrap(),
        "the disk was not filled during the restore"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("restore failed"), "{err}");
    assert!(
        err.contains("No space left"),
        "the error names the full disk: {err}"
    );
    // the previous data is in place, nothing half-restored is left, the service still serves
    assert_eq!(
        std::fs::read(data.join("only-on-erlmcp3.txt")).unwrap(),
        b"keep me"
    );
    assert!(!data.join("blob.bin").exists());
    assert!(
        std::fs::read_dir(&staging).map_or(true, |mut d| d.next().is_none()),
        "a half-restored staging directory is left in {}",
        staging.display()
    );
    let svc = c.host(2).service.to_string();
    assert_eq!(http::get(&svc, "/health").await.unwrap().status, 200);
    disk.drain().unwrap();
    wait_all_green(&c, "erlmcp1", Duration::from_secs(30))
        .await
        .unwrap();
    s.finish("restore failed (no space left) mid-extraction; previous data intact; healthy")
        .await;
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_backup() {
    if !prerequisites() {
        return;
    }
    let c = Cluster::start(options(3, 1)).await.unwrap();
    random_file(&c.host(1).data_dir(), 2);
    ok(&c.drctl(&["backup", "create", "--host", "erlmcp2", "--wait"]));
    // backup names carry the second: the next one in a later second
    let first_second = unix_s();
    until("the next second", Duration::from_secs(2), || {
        unix_s() > first_second
    })
    .await
    .unwrap();
    ok(&c.drctl(&["backup", "create", "--host", "erlmcp2", "--wait"]));
    let listed = list(&c);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let (newest, good) = (
        listed[0]["id"].as_str().unwrap().to_string(),
        listed[1]["id"].as_str().unwrap().to_string(),
    );
    let mut s = Scenario::begin(&c, "corrupted_backup").await.unwrap();
    s.fault();
    // flip bytes in the middle of the newest archive
    let archive = c
        .plan
        .store_dir()
        .join("erlmcp")
        .join("erlmcp2")
        .join(format!("{newest}.tar.zst"));
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&archive, bytes).unwrap();
    // detected by verify...
    let v: serde_json::Value =
        serde_json::from_slice(&c.drctl(&["backup", "verify", &newest, "-o", "json"]).stdout)
            .unwrap();
    assert_eq!(v["valid"], false, "{v}");
    // ...and by a restore, which touches nothing and offers the previous good backup
    let data = c.host(2).data_dir();
    std::fs::write(data.join("only-on-erlmcp3.txt"), b"keep me").unwrap();
    let out = c.drctl(&[
        "restore",
        "--host",
        "erlmcp3",
        "--from-host",
        "erlmcp2",
        "--backup",
        "latest",
        "--yes",
        "--wait",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&good),
        "the error offers the previous good backup {good}: {err}"
    );
    assert!(data.join("only-on-erlmcp3.txt").exists());
    // the offered one restores
    let restored = ok(&c.drctl(&[
        "restore",
        "--host",
        "erlmcp3",
        "--from-host",
        "erlmcp2",
        "--backup",
        &good,
        "--yes",
        "--wait",
    ]));
    assert!(restored.contains(&format!("restored {good}")), "{restored}");
    assert!(data.join("blob.bin").exists());
    let c_ref = &c;
    wait_until(
        "erlmcp3 green again",
        Duration::from_secs(30),
        || async move {
            wait_all_green(c_ref, "erlmcp1", Duration::from_secs(1))
                .await
                .ok()
        },
    )
    .await
    .unwrap();
    s.finish(&format!(
        "detected; restore refused; {good} offered and restored"
    ))
    .await;
}
