//! Property: a full and two incremental backups of a live `erlmcp-standin` data directory, taken
//! with `dr-agent backup` into a real S3-protocol server, restore as a chain onto a fresh
//! directory to exactly the tree of the last backup: new receipts present, deleted files gone.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::s3_server::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use dr_proto::domain::BackupRecord;
use dr_proto::process::{Sig, read_pid_file, signal, stop_and_wait};

const BUCKET: &str = "erlmcp-backups";

fn agent(args: &[&str], endpoint: &str) -> Output {
    Command::new(common::agent_bin())
        .args(args)
        .args([
            "--store",
            &format!("s3://{BUCKET}/live"),
            "--s3-endpoint",
            endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", REGION)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn receipts(data: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    if let Ok(days) = std::fs::read_dir(data.join("receipts")) {
        for d in days.flatten() {
            if let Ok(files) = std::fs::read_dir(d.path()) {
                v.extend(
                    files
                        .flatten()
                        .map(|f| f.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "json")),
                );
            }
        }
    }
    v.sort();
    v
}

/// Waits until the stand-in has written `more` receipts beyond `seen`.
fn wait_for_receipts(data: &Path, seen: usize, more: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = receipts(data).len();
        if n >= seen + more {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the stand-in wrote only {n} receipts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn backup(endpoint: &str, data: &Path, incremental: bool) -> BackupRecord {
    let data_s = data.display().to_string();
    let mut args = vec![
        "backup",
        "--data-dir",
        &data_s,
        "--group",
        "erlmcp",
        "--host",
        "erlmcp1",
        "-o",
        "json",
    ];
    if incremental {
        args.push("--incremental");
    }
    serde_json::from_str(&ok(&agent(&args, endpoint))).unwrap()
}

#[test]
fn full_and_two_incrementals_of_a_live_standin_restore_exactly_from_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s3");
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let server = S3Server::start(&root);
    let ep = server.endpoint();
    let data = tmp.path().join("data");
    let pid_file = tmp.path().join("service.pid");
    let port = common::free_port();
    ok(&Command::new(common::standin_bin())
        .args([
            "daemon",
            "--host",
            "erlmcp1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--log-file")
        .arg(tmp.path().join("erlmcp.log"))
        .arg("--pid-file")
        .arg(&pid_file)
        .args(["--receipt-interval-ms", "10"])
        .output()
        .unwrap());
    let pid = read_pid_file(&pid_file)
        .unwrap()
        .expect("the stand-in's pid");
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = signal(self.0, Sig::Cont);
            let _ = signal(self.0, Sig::Kill);
        }
    }
    let _stop = Stop(pid);

    // full, while the service writes
    let seen = wait_for_receipts(&data, 0, 10);
    let full = backup(&ep, &data, false);
    assert!(full.files >= 10, "{full:?}");

    // first incremental: new receipts, one deleted, service still writing
    let seen = wait_for_receipts(&data, seen, 10);
    let gone1 = receipts(&data)[0].clone();
    std::fs::remove_file(&gone1).unwrap();
    let inc1 = backup(&ep, &data, true);
    assert_eq!(inc1.parent.as_deref(), Some(full.id.as_str()), "{inc1:?}");

    // second incremental of a frozen service, so the tree it records can be compared
    wait_for_receipts(&data, seen - 1, 10);
    // every thread stopped before the snapshot (SIGSTOP is asynchronous)
    stop_and_wait(pid, Duration::from_secs(5)).unwrap();
    let gone2 = receipts(&data)[1].clone();
    std::fs::remove_file(&gone2).unwrap();
    let snapshot = common::tree(&data);
    let inc2 = backup(&ep, &data, true);
    assert_eq!(inc2.parent.as_deref(), Some(inc1.id.as_str()), "{inc2:?}");

    // the whole chain onto a fresh host
    let fresh = tmp.path().join("fresh/opt/erlmcp/data");
    let fresh_s = fresh.display().to_string();
    ok(&agent(
        &[
            "restore",
            "--backup",
            &inc2.id,
            "--data-dir",
            &fresh_s,
            "--group",
            "erlmcp",
            "--host",
            "erlmcp1",
        ],
        &ep,
    ));
    let restored = common::tree(&fresh);
    assert_eq!(
        restored, snapshot,
        "the chain restores to the tree of the last incremental"
    );
    let rel = |p: &Path| p.strip_prefix(&data).unwrap().display().to_string();
    assert!(!restored.contains_key(&rel(&gone1)) && !restored.contains_key(&rel(&gone2)));
    assert!(restored.len() > full.files as usize);
    drop(server);
}
