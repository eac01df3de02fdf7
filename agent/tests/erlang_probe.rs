//! Property: the Erlang-node probe reports what a real OTP node says (ping, memory, queue depth,
//! health RPCs rendered as Erlang text), and each way of being unreachable gets its own reason:
//! wrong cookie, dead node (epmd up, node gone), no epmd, and a hang (bounded by the timeout).
//! A cached connection never outlives an error: a restarted or resumed node is reachable on the
//! next probe. The cookie never shows up in a report, an error or a `Debug` dump.
//!
//! The node is a real `erl` (Debian `erlang-nox`) running the stub modules in `tests/erlang/`,
//! compiled with `erlc` into a temp dir. Without `erl` the node tests skip with a message, except
//! with `CI=true`, where they fail. The tests that need no node (no epmd, hung epmd) always run.
//! Nodes on the default epmd port leave that epmd running (other nodes may share it); nodes on a
//! private epmd port kill their epmd when dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dr_agent::probe::erlang::{
    ErlArg, ErlangErrorKind, ErlangProbeConfig, ErlangReport, HealthRpc, MessageQueue, RpcOutcome,
    Secret, probe, replication_lag_ms, rpc_call, rpc_call_value,
};
use tokio::time::Instant;

/// How long a node may take to boot (a loaded 2-core CI machine can be slow).
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `true` when `erl` and `erlc` exist; otherwise skip (print why) or, under CI, fail.
fn erlang_installed(test: &str) -> bool {
    if on_path("erl") && on_path("erlc") {
        return true;
    }
    let msg = "`erl`/`erlc` not found: install Erlang/OTP (apt-get install -y erlang-nox)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {msg} (CI=true, so this is a failure, not a skip)");
    }
    eprintln!("skipping {test}: {msg}");
    false
}

fn random_token(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn stub_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/erlang")
}

/// A real Erlang node running the erlmcp stub; killed on drop (with its epmd if private).
struct ErlNode {
    child: Child,
    /// Full node name as the node reported it (`name@shorthost`).
    name: String,
    cookie: String,
    epmd_port: Option<u16>,
    logs: Arc<Mutex<Vec<String>>>,
    _beams: tempfile::TempDir,
}

impl ErlNode {
    /// Starts a node with a unique name and a random cookie; with `epmd_port`, the node (and the
    /// epmd it starts) use that port instead of 4369.
    fn start(epmd_port: Option<u16>) -> ErlNode {
        let sname = format!("drprobe_{}_{}", std::process::id(), random_token(6));
        ErlNode::start_as(&sname, &random_token(24), epmd_port)
    }

    /// Starts a node with a given short name and cookie (to restart "the same" node).
    fn start_as(sname: &str, cookie: &str, epmd_port: Option<u16>) -> ErlNode {
        let beams = tempfile::tempdir().expect("temp dir");
        let sources: Vec<PathBuf> = std::fs::read_dir(stub_sources())
            .expect("tests/erlang exists")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "erl"))
            .collect();
        let out = Command::new("erlc")
            .arg("-o")
            .arg(beams.path())
            .args(&sources)
            .output()
            .expect("run erlc");
        assert!(
            out.status.success(),
            "erlc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut cmd = Command::new("erl");
        cmd.args(["-sname", sname, "-setcookie", cookie, "-noshell", "-pa"])
            .arg(beams.path())
            .args(["-eval", "erlmcp_stub:start()"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(port) = epmd_port {
            cmd.env("ERL_EPMD_PORT", port.to_string());
        }
        let mut child = cmd.spawn().expect("spawn erl");

        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        collect_lines(child.stdout.take().expect("stdout"), &logs, Some(ready_tx));
        collect_lines(child.stderr.take().expect("stderr"), &logs, None);
        let mut node = ErlNode {
            child,
            name: String::new(),
            cookie: cookie.to_owned(),
            epmd_port,
            logs,
            _beams: beams,
        };
        match ready_rx.recv_timeout(BOOT_TIMEOUT) {
            Ok(name) => node.name = name,
            Err(_) => panic!(
                "erl node {sname} did not print `ready` within {BOOT_TIMEOUT:?}; output:\n{}",
                node.logs.lock().unwrap().join("\n")
            ),
        }
        node
    }

    fn config(&self) -> ErlangProbeConfig {
        let mut cfg = ErlangProbeConfig::erlmcp_preset(&self.name, Secret::new(&self.cookie));
        cfg.timeout = Duration::from_secs(5);
        if let Some(port) = self.epmd_port {
            cfg.epmd_port = port;
        }
        cfg
    }

    fn short_name(&self) -> &str {
        self.name.split('@').next().unwrap_or_default()
    }

    /// Kills the VM only (its epmd stays up): the "dead node" of the runbook.
    fn kill_vm(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ErlNode {
    fn drop(&mut self) {
        self.kill_vm();
        if let Some(port) = self.epmd_port {
            // Refused while nodes are registered; ours is dead, so this stops the private epmd.
            let _ = Command::new("epmd")
                .args(["-port", &port.to_string(), "-kill"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- output of erl node {} ---\n{}",
                self.name,
                self.logs.lock().unwrap().join("\n")
            );
        }
    }
}

/// Keeps every output line for the failure dump; the first `ready <node>` line goes to `ready`.
fn collect_lines(
    stream: impl Read + Send + 'static,
    logs: &Arc<Mutex<Vec<String>>>,
    ready: Option<mpsc::Sender<String>>,
) {
    let logs = Arc::clone(logs);
    std::thread::spawn(move || {
        let mut ready = ready;
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("ready ")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(name.trim().to_owned());
            }
            logs.lock().unwrap().push(line);
        }
    });
}

/// Probes until `done` holds or `within` passes; returns the last report either way.
async fn probe_until(
    cfg: &ErlangProbeConfig,
    within: Duration,
    done: impl Fn(&ErlangReport) -> bool,
) -> ErlangReport {
    let deadline = Instant::now() + within;
    loop {
        let report = probe(cfg).await;
        if done(&report) || Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn outcome<'a>(report: &'a ErlangReport, function: &str) -> &'a RpcOutcome {
    &report
        .health_rpcs
        .iter()
        .find(|r| r.rpc.function == function)
        .unwrap_or_else(|| panic!("no result for {function} in {report:#?}"))
        .outcome
}

fn returned(value: &str) -> RpcOutcome {
    RpcOutcome::Returned {
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_node_answers_ping_memory_queue_and_health_rpcs() {
    if !erlang_installed("healthy_node_answers_ping_memory_queue_and_health_rpcs") {
        return;
    }
    let node = ErlNode::start(None);
    let cfg = node.config();

    let report = probe_until(&cfg, BOOT_TIMEOUT, |r| r.reachable).await;
    assert!(report.reachable, "{report:#?}");
    assert_eq!(report.unreachable, None);
    assert!(report.memory_total_bytes.unwrap_or(0) > 0, "{report:#?}");
    assert_eq!(report.message_queue, MessageQueue::Len { len: 0 });
    assert_eq!(outcome(&report, "check_live"), &returned("ok"));
    assert_eq!(
        outcome(&report, "check_ready"),
        &returned(r#"{ok,"ready"}"#)
    );
    assert_eq!(
        outcome(&report, "get_replication_status"),
        &returned(r#"#{lag_ms => 12,replicas => [<<"erlmcp2">>],status => ok}"#)
    );
    assert_eq!(report.replication_lag_ms, Some(12.0));
    assert!(report.summary().contains("pong"), "{}", report.summary());

    // The queue the runbook watches grows when the server falls behind.
    let flooded = rpc_call(&cfg, "erlmcp_stub", "flood", vec![ErlArg::Int(250)]).await;
    assert_eq!(flooded.unwrap(), "ok");
    let report = probe(&cfg).await;
    assert_eq!(report.message_queue, MessageQueue::Len { len: 250 });

    // The generic call keeps structure for the lead's lag probe, and encodes strings as char lists.
    let status = rpc_call_value(
        &cfg,
        "erlmcp_session_replicator",
        "get_replication_status",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(replication_lag_ms(&status), Some(12.0));
    let reversed = rpc_call(&cfg, "lists", "reverse", vec![ErlArg::Str("abc".into())]).await;
    assert_eq!(reversed.unwrap(), r#""cba""#);

    // Failures of the function itself: undef (certainly did not run) and badrpc (it ran).
    let undef = rpc_call(&cfg, "erlmcp_health", "no_such_check", vec![])
        .await
        .unwrap_err();
    assert_eq!(undef.kind(), ErlangErrorKind::Undef, "{undef}");
    assert!(!undef.may_have_run());
    let crashed = rpc_call(&cfg, "erlmcp_stub", "crash", vec![])
        .await
        .unwrap_err();
    assert_eq!(crashed.kind(), ErlangErrorKind::BadRpc, "{crashed}");
    assert!(crashed.to_string().contains("boom"), "{crashed}");

    // A hung health RPC times out within the probe's bound; the other RPCs still answer, and
    // the next probe (after the error dropped the cached connection) is healthy again.
    let mut hung_cfg = cfg.clone();
    hung_cfg.timeout = Duration::from_millis(800);
    hung_cfg
        .health_rpcs
        .push(HealthRpc::new("erlmcp_stub", "hang"));
    let started = Instant::now();
    let report = probe(&hung_cfg).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{report:#?}");
    assert!(report.reachable, "{report:#?}");
    assert!(
        matches!(outcome(&report, "hang"), RpcOutcome::Failed { kind: ErlangErrorKind::Timeout, error } if error.contains("timed out")),
        "{report:#?}"
    );
    assert_eq!(outcome(&report, "check_live"), &returned("ok"));
    let hung = rpc_call(&hung_cfg, "erlmcp_stub", "hang", vec![])
        .await
        .unwrap_err();
    assert_eq!(hung.kind(), ErlangErrorKind::Timeout, "{hung}");
    assert!(hung.may_have_run());
    let report = probe(&cfg).await;
    assert!(report.reachable, "{report:#?}");
    assert_eq!(outcome(&report, "check_live"), &returned("ok"));

    // The server process gone: the queue check says so instead of reporting 0.
    rpc_call(&cfg, "erlmcp_stub", "stop_server", vec![])
        .await
        .unwrap();
    let report = probe(&cfg).await;
    assert_eq!(report.message_queue, MessageQueue::NotRegistered);
    assert!(report.summary().contains("erlmcp_server not registered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_is_reported_as_cookie_rejected_and_never_shown() {
    if !erlang_installed("wrong_cookie_is_reported_as_cookie_rejected_and_never_shown") {
        return;
    }
    let node = ErlNode::start(None);
    let good = node.config();
    assert!(
        probe_until(&good, BOOT_TIMEOUT, |r| r.reachable)
            .await
            .reachable
    );

    let wrong_cookie = format!("WRONG{}", random_token(20));
    let mut bad = good.clone();
    bad.cookie = Secret::new(&wrong_cookie);
    let report = probe(&bad).await;
    assert!(!report.reachable, "{report:#?}");
    let why = report.unreachable.clone().expect("a reason");
    assert_eq!(why.kind, ErlangErrorKind::CookieRejected, "{report:#?}");
    assert!(why.reason.contains("cookie"), "{}", why.reason);
    let err = rpc_call(&bad, "erlang", "node", vec![]).await.unwrap_err();
    assert_eq!(err.kind(), ErlangErrorKind::CookieRejected);
    assert!(!err.may_have_run());

    let everything_shown = [
        format!("{bad:?}"),
        format!("{good:?}"),
        format!("{report:?}"),
        serde_json::to_string(&report).unwrap(),
        report.summary(),
        err.to_string(),
        format!("{err:?}"),
    ]
    .join("\n");
    for secret in [&wrong_cookie, &node.cookie] {
        assert!(
            !everything_shown.contains(secret.as_str()),
            "cookie leaked:\n{everything_shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_node_is_reported_as_not_registered_with_epmd() {
    if !erlang_installed("dead_node_is_reported_as_not_registered_with_epmd") {
        return;
    }
    // A private epmd port: proves `epmd_port` works and that only our node is gone.
    let mut node = ErlNode::start(Some(free_port()));
    let cfg = node.config();
    assert!(
        probe_until(&cfg, BOOT_TIMEOUT, |r| r.reachable)
            .await
            .reachable
    );

    node.kill_vm();
    // epmd notices the VM's registration socket close; poll until it has.
    let report = probe_until(&cfg, BOOT_TIMEOUT, |r| {
        r.unreachable
            .as_ref()
            .is_some_and(|u| u.kind == ErlangErrorKind::NodeNotRegistered)
    })
    .await;
    let why = report.unreachable.clone().expect("a reason");
    assert_eq!(why.kind, ErlangErrorKind::NodeNotRegistered, "{report:#?}");
    assert!(why.reason.contains("not running"), "{}", why.reason);
    assert_eq!(report.message_queue, MessageQueue::NotProbed);
    assert!(
        report
            .health_rpcs
            .iter()
            .all(|r| r.outcome == RpcOutcome::NotProbed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_is_reachable_on_the_next_probe() {
    if !erlang_installed("restarted_node_is_reachable_on_the_next_probe") {
        return;
    }
    let epmd_port = free_port();
    let mut first = ErlNode::start(Some(epmd_port));
    let cfg = first.config();
    assert!(
        probe_until(&cfg, BOOT_TIMEOUT, |r| r.reachable)
            .await
            .reachable
    );

    // Same name, same cookie, new VM: the cached connection is dead and must be replaced
    // rather than reported as `pang`. No probe runs in between, so the cache still holds it.
    first.kill_vm();
    let sname = first.short_name().to_owned();
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while epmd_lists(epmd_port, &sname) {
        assert!(Instant::now() < deadline, "epmd still lists {sname}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = ErlNode::start_as(&sname, &first.cookie, Some(epmd_port));
    assert_eq!(second.name, first.name);
    let report = probe(&cfg).await;
    assert!(report.reachable, "{report:#?}");
    assert_eq!(report.message_queue, MessageQueue::Len { len: 0 });
    // `first` is dropped last and kills the private epmd once `second` is gone too.
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_vm_is_a_timeout_within_the_bound_and_recovers() {
    if !erlang_installed("stopped_vm_is_a_timeout_within_the_bound_and_recovers") {
        return;
    }
    let node = ErlNode::start(None);
    let mut cfg = node.config();
    assert!(
        probe_until(&cfg, BOOT_TIMEOUT, |r| r.reachable)
            .await
            .reachable
    );

    // SIGSTOP: the sockets stay open, nothing answers — a hung VM, as the runbook means it.
    signal(&node, "-STOP");
    cfg.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let report = probe(&cfg).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{report:#?}");
    let why = report.unreachable.clone().expect("a reason");
    assert_eq!(why.kind, ErlangErrorKind::Timeout, "{report:#?}");
    assert!(why.reason.contains("hung"), "{}", why.reason);

    signal(&node, "-CONT");
    cfg.timeout = Duration::from_secs(5);
    let report = probe_until(&cfg, BOOT_TIMEOUT, |r| r.reachable).await;
    assert!(report.reachable, "{report:#?}");
}

fn signal(node: &ErlNode, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &node.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} failed");
}

/// `true` while epmd on `port` still has `sname` registered.
fn epmd_lists(port: u16, sname: &str) -> bool {
    let out = Command::new("epmd")
        .args(["-port", &port.to_string(), "-names"])
        .output()
        .expect("run epmd -names");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with(&format!("name {sname} ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_epmd_is_reported_as_epmd_not_running() {
    let mut cfg = ErlangProbeConfig::erlmcp_preset("ghost@localhost", Secret::new("c"));
    cfg.epmd_port = free_port();
    let report = probe(&cfg).await;
    assert!(!report.reachable);
    let why = report.unreachable.clone().expect("a reason");
    assert_eq!(why.kind, ErlangErrorKind::EpmdUnreachable, "{report:#?}");
    assert!(why.reason.contains("epmd is not running"), "{}", why.reason);
    assert!(report.summary().contains("pang"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_epmd_is_a_timeout_bounded_by_the_probe_timeout() {
    // Accepts connections and never answers: a hung host, as the probe sees it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    let mut cfg = ErlangProbeConfig::erlmcp_preset("hung@127.0.0.1", Secret::new("c"));
    cfg.epmd_port = port;
    cfg.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let report = probe(&cfg).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{report:#?}");
    let why = report.unreachable.clone().expect("a reason");
    assert_eq!(why.kind, ErlangErrorKind::Timeout, "{report:#?}");
    assert!(why.reason.contains("timed out"), "{}", why.reason);
}
