//! Property: `drctl demo` gives a working installation in one command — three green members
//! with one primary, the files of the DESIGN.md demo contract, HAProxy routing client traffic
//! to the primary when HAProxy is installed — and `--stop` stops everything it started.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dr_proto::domain::{Health, Role, StatusView};
use dr_proto::process::{is_alive, read_pid_file};
use dr_tests::harness::{Bins, bins::haproxy, http, in_ci, wait_until};

struct StopOnDrop<'a> {
    drctl: &'a Path,
    dir: &'a Path,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.drctl)
            .args(["demo", "--stop", "--dir"])
            .arg(self.dir)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_detach_status_lb_and_stop() {
    let bins = Bins::locate();
    let have_haproxy = haproxy().is_some();
    if !have_haproxy {
        assert!(
            !in_ci(),
            "haproxy is not installed: tests/run.sh installs it; CI needs it"
        );
        eprintln!("haproxy not installed: the load-balancer part of this test is skipped");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let guard = StopOnDrop {
        drctl: &bins.drctl(),
        dir: &dir,
    };
    let out = Command::new(bins.drctl())
        .args(["demo", "--detach", "--hosts", "3", "--dir"])
        .arg(&dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("dashboard      http://"), "{stdout}");
    assert!(stdout.contains("all 3 members green"), "{stdout}");

    // the contract's files
    let demo: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("demo.json")).unwrap()).unwrap();
    assert!(demo["controllers"][0]["grpc"].is_string());
    assert!(demo["controllers"][0]["http"].is_string());
    assert!(demo["dashboard"].as_str().unwrap().starts_with("http://"));
    assert!(demo["store"].as_str().unwrap().starts_with("file://"));
    assert_eq!(demo["hosts"].as_array().unwrap().len(), 3);
    for h in demo["hosts"].as_array().unwrap() {
        for key in ["host", "service_addr", "data_dir", "agent_config"] {
            assert!(h[key].is_string(), "host entry lacks {key}: {h}");
        }
        let host = h["host"].as_str().unwrap();
        for pid in ["agent.pid", "service.pid"] {
            let p = dir.join("hosts").join(host).join(pid);
            let pid = read_pid_file(&p).unwrap().expect("pid file");
            assert!(is_alive(pid), "{} names a live process", p.display());
        }
    }
    let ctl_pid = read_pid_file(&dir.join("controllers/ctl1/controller.pid"))
        .unwrap()
        .unwrap();
    assert!(is_alive(ctl_pid));

    // status through the written drctl.toml
    let out = Command::new(bins.drctl())
        .args(["--config"])
        .arg(dir.join("drctl.toml"))
        .args(["status", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: StatusView = serde_json::from_slice(&out.stdout).unwrap();
    let g = v.group("erlmcp").unwrap();
    assert_eq!(g.members.len(), 3);
    assert!(g.members.iter().all(|m| m.health == Health::Green));
    assert_eq!(
        g.members.iter().filter(|m| m.role == Role::Primary).count(),
        1
    );
    let primary = g.primary.clone().unwrap();

    // the dashboard and its JSON API answer
    let http_addr = demo["controllers"][0]["http"].as_str().unwrap().to_string();
    let page = http::get(&http_addr, "/").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("erlmcp-dr"));
    let api = http::get(&http_addr, "/api/v1/status")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["groups"][0]["primary"], primary.as_str());
    let metrics = http::get(&http_addr, "/metrics").await.unwrap();
    assert!(
        metrics
            .body
            .contains("erlmcp_dr_member_health{group=\"erlmcp\",host=\"erlmcp1\"} 0")
    );

    // HAProxy sends client traffic to the primary only
    if have_haproxy {
        let lb = demo["lb"]
            .as_str()
            .expect("lb address with haproxy installed")
            .to_string();
        let lb_ref = &lb;
        let served = wait_until(
            "HAProxy routing to the primary",
            Duration::from_secs(15),
            || async move {
                let r = http::get(lb_ref, "/").await.ok()?;
                (r.status == 200).then(|| r.json().ok()).flatten()
            },
        )
        .await
        .unwrap();
        assert_eq!(served["host"], primary.as_str());
        for _ in 0..10 {
            let r = http::get(&lb, "/").await.unwrap().json().unwrap();
            assert_eq!(
                r["host"],
                primary.as_str(),
                "every request goes to the primary"
            );
        }
    } else {
        assert!(demo["lb"].is_null());
    }

    // a second demo in the same directory is refused while this one runs
    let again = Command::new(bins.drctl())
        .args(["demo", "--detach", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    // --stop stops everything
    let out = Command::new(bins.drctl())
        .args(["demo", "--stop", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!is_alive(ctl_pid), "controller stopped");
    for h in demo["hosts"].as_array().unwrap() {
        let host = h["host"].as_str().unwrap();
        assert!(!dir.join("hosts").join(host).join("agent.pid").exists());
    }
    drop(guard);
}
