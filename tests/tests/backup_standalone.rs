//! Property: with no controller at all, `dr-agent backup|list|verify|restore` protect a live
//! erlmcp data directory and bring it back on a fresh host (the runbook's Procedure 4):
//! - a backup of a data directory that an `erlmcp-standin` keeps writing commits, lists
//!   (`list -o json`) and verifies deeply;
//! - restoring the chain onto an empty directory, with no --group or --host, gives exactly the
//!   backed-up tree (every file's content, type and mode compared);
//! - a non-empty data directory is only replaced with --yes, and its old content is kept;
//! - one flipped byte in the stored archive makes verify fail (exit 1) and restore refuse without
//!   writing anything.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dr_proto::domain::{BackupKind, BackupRecord, VerifyOutcome};
use dr_proto::process::{Sig, read_pid_file, signal, stop_and_wait};
use dr_tests::harness::Bins;

/// Every path under `root`: type, permission bits, and content or link target.
fn tree(root: &Path) -> BTreeMap<String, (String, u32, Vec<u8>)> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, (String, u32, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = e.path().symlink_metadata().unwrap();
            let mode = md.permissions().mode() & 0o7777;
            let node = if md.is_dir() {
                walk(&e.path(), &path, out);
                ("dir".to_string(), mode, Vec::new())
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                (
                    "link".to_string(),
                    0,
                    t.into_os_string().into_encoded_bytes(),
                )
            } else {
                ("file".to_string(), mode, std::fs::read(e.path()).unwrap())
            };
            out.insert(path, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn files_under(dir: &Path) -> usize {
    tree(dir).values().filter(|(k, _, _)| k == "file").count()
}

/// The stand-in, killed on drop.
struct Standin {
    pid_file: PathBuf,
}

impl Standin {
    fn start(bins: &Bins, dir: &Path, data: &Path) -> Standin {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pid_file = dir.join("service.pid");
        let out = Command::new(bins.standin())
            .args(["daemon", "--host", "erlmcp1", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data)
            .arg("--log-file")
            .arg(dir.join("service.log"))
            .arg("--pid-file")
            .arg(&pid_file)
            .args(["--receipt-interval-ms", "10"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Standin { pid_file }
    }

    fn pid(&self) -> u32 {
        read_pid_file(&self.pid_file).unwrap().unwrap()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        if let Ok(Some(pid)) = read_pid_file(&self.pid_file) {
            let _ = signal(pid, Sig::Cont);
            let _ = signal(pid, Sig::Kill);
        }
    }
}

fn agent(bins: &Bins, args: &[&str]) -> Output {
    Command::new(bins.agent())
        .args(args)
        .env_remove("DR_AGENT_CONFIG")
        .output()
        .expect("dr-agent runs")
}

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

#[test]
fn standalone_backup_verify_and_restore_of_a_live_data_directory() {
    let bins = Bins::locate();
    let tmp = tempfile::Builder::new()
        .prefix("drtest-")
        .tempdir()
        .unwrap();
    let data = tmp.path().join("erlmcp1/data");
    std::fs::create_dir_all(&data).unwrap();
    let store = format!("file://{}", tmp.path().join("store").display());
    let standin = Standin::start(&bins, tmp.path(), &data);
    let deadline = Instant::now() + Duration::from_secs(20);
    while files_under(&data) < 30 {
        assert!(Instant::now() < deadline, "the stand-in writes no data");
        std::thread::sleep(Duration::from_millis(50));
    }
    let data_s = data.display().to_string();
    let id_args = ["--group", "erlmcp", "--host", "erlmcp1"];

    // 1. a full backup while the stand-in keeps writing
    let out = agent(
        &bins,
        &[
            &[
                "backup",
                "--store",
                &store,
                "--data-dir",
                &data_s,
                "-o",
                "json",
            ][..],
            &id_args,
        ]
        .concat(),
    );
    let full: BackupRecord = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(full.kind, BackupKind::Full);
    assert!(full.files >= 30, "{full:?}");
    let listed: Vec<BackupRecord> = serde_json::from_str(&ok(&agent(
        &bins,
        &["list", "--store", &store, "-o", "json"],
    )))
    .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, full.id);
    assert_eq!(listed[0].files, full.files);
    let v: VerifyOutcome = serde_json::from_str(&ok(&agent(
        &bins,
        &[
            &[
                "verify", "--store", &store, "--backup", &full.id, "--deep", "-o", "json",
            ][..],
            &id_args,
        ]
        .concat(),
    )))
    .unwrap();
    assert!(v.valid, "{v:?}");
    assert_eq!(v.files_checked, full.files);

    // 2. an incremental of a still tree, restored with its chain on a "fresh host"
    // SIGSTOP is asynchronous: snapshot only once every thread is stopped, or a write in
    // flight lands after the snapshot.
    stop_and_wait(standin.pid(), Duration::from_secs(5)).unwrap();
    let snapshot = tree(&data);
    let out = agent(
        &bins,
        &[
            &[
                "backup",
                "--store",
                &store,
                "--data-dir",
                &data_s,
                "--incremental",
            ][..],
            &id_args,
        ]
        .concat(),
    );
    let text = ok(&out);
    signal(standin.pid(), Sig::Cont).unwrap();
    assert!(
        text.contains("incremental-") && text.contains(&full.id),
        "{text}"
    );
    let fresh = tmp.path().join("fresh/opt/erlmcp/data");
    let fresh_s = fresh.display().to_string();
    ok(&agent(
        &bins,
        &[
            "restore",
            "--store",
            &store,
            "--backup",
            "latest",
            "--data-dir",
            &fresh_s,
        ],
    ));
    let restored = tree(&fresh);
    let differing: Vec<&String> = restored
        .keys()
        .chain(snapshot.keys())
        .filter(|k| restored.get(*k) != snapshot.get(*k))
        .collect();
    assert!(
        differing.is_empty(),
        "restored tree differs from the backed-up one at {differing:?}: restored {:?}, backed up {:?}",
        differing
            .first()
            .and_then(|k| restored.get(*k))
            .map(|n| String::from_utf8_lossy(&n.2).to_string()),
        differing
            .first()
            .and_then(|k| snapshot.get(*k))
            .map(|n| String::from_utf8_lossy(&n.2).to_string()),
    );

    // 3. a non-empty data directory is replaced only with --yes, and kept next to it
    std::fs::write(fresh.join("local-change"), "x").unwrap();
    let restore_fresh = [
        "restore",
        "--store",
        &store,
        "--backup",
        "latest",
        "--data-dir",
        &fresh_s,
    ];
    let out = agent(&bins, &restore_fresh);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(fresh.join("local-change").is_file());
    ok(&agent(&bins, &[&restore_fresh[..], &["--yes"]].concat()));
    assert!(tree(&fresh) == snapshot);
    let kept: Vec<PathBuf> = std::fs::read_dir(fresh.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("data.previous-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].join("local-change").is_file());

    // 4. one flipped byte: verify fails, restore refuses and writes nothing
    let archive = tmp
        .path()
        .join("store/erlmcp/erlmcp1")
        .join(format!("{}.tar.zst", full.id));
    let mut bytes = std::fs::read(&archive).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();
    let out = agent(
        &bins,
        &[
            &["verify", "--store", &store, "--backup", &full.id][..],
            &id_args,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOT VALID"),
        "{out:?}"
    );
    let other = tmp.path().join("other/data");
    let out = agent(
        &bins,
        &[
            "restore",
            "--store",
            &store,
            "--backup",
            "latest",
            "--data-dir",
            &other.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("restore failed"), "{err}");
    assert!(!other.exists(), "nothing written");
    assert!(
        !tmp.path().join("other/data.restore").exists(),
        "no staging left"
    );
}
