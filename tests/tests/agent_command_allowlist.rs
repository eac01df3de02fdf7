//! Property: a dr-agent runs only what its own config names, whatever the controller sends.
//!
//! A hostile controller (an in-process AgentSession server holding a real controller certificate
//! of the installation's CA, so the real dr-agent trusts it) sends every action the protocol has,
//! with shell syntax that would create a marker file in every string field, actions whose
//! capability the agent's config does not enable, a command from an older epoch, and malformed
//! commands. The agent's config names a service start/stop command and a demote hook, each of
//! which appends its name to `allowed.log`, and nothing else (no promote or fence hook, no
//! backup store, no service log). Proven: the marker file never appears; `allowed.log` only ever
//! holds the configured commands; every action outside the config is refused with a reason; a
//! malformed command ends the session without running anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_proto::pb;
use dr_proto::pb::agent_session_server::{AgentSession, AgentSessionServer};
use dr_proto::tls::{TlsMaterial, TlsPaths};
use dr_tests::harness::{Bins, Daemon};
use drctl::pki::{PkiPlan, names};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// The epoch the hostile controller claims; commands below it are stale.
const EPOCH: u64 = 5;

/// One agent session as the hostile controller sees it.
struct SessionHandle {
    hello: pb::Hello,
    to_agent: mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    from_agent: mpsc::UnboundedReceiver<pb::AgentMessage>,
}

struct Hostile {
    sessions: mpsc::UnboundedSender<SessionHandle>,
}

#[tonic::async_trait]
impl AgentSession for Hostile {
    type SessionStream = ReceiverStream<Result<pb::ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::cancelled("no Hello"))?;
        let Some(pb::agent_message::Body::Hello(hello)) = first.body else {
            return Err(Status::failed_precondition("Hello first"));
        };
        let (to_agent, rx) = mpsc::channel(64);
        let (forward, from_agent) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if forward.send(m).is_err() {
                    break;
                }
            }
        });
        let _ = self.sessions.send(SessionHandle {
            hello,
            to_agent,
            from_agent,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn append_to(log: &Path, word: &str) -> String {
    toml_list(&[
        "sh".into(),
        "-c".into(),
        format!("echo {word} >> '{}'", log.display()),
    ])
}

/// Shell in every form that would create `marker` if any layer ran it.
fn injection(marker: &Path) -> String {
    let m = marker.display();
    format!("x; touch {m} && $(touch {m}) `touch {m}` | touch {m}")
}

fn command(id: &str, epoch: u64, action: Option<pb::command::Action>) -> pb::ControllerMessage {
    pb::ControllerMessage {
        body: Some(pb::controller_message::Body::Command(pb::Command {
            id: id.into(),
            epoch,
            action,
        })),
    }
}

/// What the agent answered to one command.
#[derive(Debug)]
enum Answer {
    Done(String),
    Refused(String),
    /// The agent ended the session instead of answering.
    SessionEnded,
}

async fn answer_to(session: &mut SessionHandle, id: &str) -> Answer {
    let wait = async {
        while let Some(m) = session.from_agent.recv().await {
            let Some(pb::agent_message::Body::CommandUpdate(u)) = m.body else {
                continue;
            };
            if u.command_id != id {
                continue;
            }
            if let Some(pb::command_update::Update::Result(r)) = u.update {
                return if r.ok {
                    Answer::Done(r.detail)
                } else {
                    Answer::Refused(r.error)
                };
            }
        }
        Answer::SessionEnded
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no answer to command {id} within 30 s"))
}

async fn next_session(sessions: &mut mpsc::UnboundedReceiver<SessionHandle>) -> SessionHandle {
    tokio::time::timeout(Duration::from_secs(30), sessions.recv())
        .await
        .expect("the agent (re)connects within 30 s")
        .expect("server running")
}

async fn welcome(session: &SessionHandle) {
    let m = pb::ControllerMessage {
        body: Some(pb::controller_message::Body::Welcome(pb::Welcome {
            controller_id: "evil".into(),
            epoch: EPOCH,
            role: pb::Role::Replica as i32,
            primary: String::new(),
        })),
    };
    session.to_agent.send(Ok(m)).await.unwrap();
}

fn lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// Prints the agent's log when the test fails.
struct PrintLogOnPanic(PathBuf);

impl Drop for PrintLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!("===== {} =====\n{log}", self.0.display());
        }
    }
}

struct Setup {
    // dropped in this order: the agent, then (on a failure) its log is printed, then the files
    _agent: Daemon,
    _print_log: PrintLogOnPanic,
    _dir: tempfile::TempDir,
    root: PathBuf,
    allowed: PathBuf,
    marker: PathBuf,
    sessions: mpsc::UnboundedReceiver<SessionHandle>,
}

async fn setup() -> Setup {
    dr_proto::install_crypto_provider();
    let bins = Bins::locate();
    let dir = tempfile::Builder::new()
        .prefix("drtest-allowlist-")
        .tempdir()
        .unwrap();
    let root = dir.path().to_path_buf();
    let pki = root.join("pki");
    drctl::pki::init(&PkiPlan {
        dir: pki.clone(),
        controllers: names("controller", &["evil".into()]).unwrap(),
        controller_sans: vec!["localhost".into(), "127.0.0.1".into()],
        agents: names("agents", &["h1".into()]).unwrap(),
        operators: vec![],
        viewers: vec![],
        days: 1,
        force: false,
    })
    .map_err(|e| e.message)
    .unwrap();

    // the hostile controller: a real controller certificate, a real TLS server
    let tls = TlsMaterial::load(&TlsPaths {
        ca: pki.join("ca.pem"),
        cert: pki.join("controller-evil.pem"),
        key: pki.join("controller-evil.key"),
        server_name: None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sessions_tx, sessions) = mpsc::unbounded_channel();
    let server = tonic::transport::Server::builder()
        .tls_config(tls.server_config())
        .unwrap()
        .add_service(AgentSessionServer::new(Hostile {
            sessions: sessions_tx,
        }))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);

    let allowed = root.join("allowed.log");
    let marker = root.join("pwned");
    let config = root.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "host = \"h1\"\n\
             group = \"erlmcp\"\n\
             controllers = [\"https://127.0.0.1:{port}\"]\n\
             http_listen = \"127.0.0.1:{http}\"\n\
             state_dir = {state:?}\n\
             report_interval_ms = 200\n\
             \n\
             [tls]\n\
             ca = {ca:?}\n\
             cert = {cert:?}\n\
             key = {key:?}\n\
             \n\
             [service]\n\
             start = {start}\n\
             stop = {stop}\n\
             pid_file = {pid:?}\n\
             data_dir = {data:?}\n\
             \n\
             [hooks]\n\
             demote = {{ command = {demote}, timeout_ms = 5000 }}\n\
             \n\
             [restart]\n\
             stop_timeout_ms = 5000\n\
             grace_ms = 100\n\
             start_timeout_ms = 5000\n\
             healthy_timeout_ms = 300\n",
            http = free_port(),
            state = root.join("state").display().to_string(),
            ca = pki.join("ca.pem").display().to_string(),
            cert = pki.join("agent-h1.pem").display().to_string(),
            key = pki.join("agent-h1.key").display().to_string(),
            start = append_to(&allowed, "start"),
            stop = append_to(&allowed, "stop"),
            pid = root.join("service.pid").display().to_string(),
            data = root.join("data").display().to_string(),
            demote = append_to(&allowed, "demote"),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let agent = Daemon::spawn(
        "agent h1",
        &bins.agent(),
        &[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &root.join("agent.log"),
    )
    .unwrap();
    Setup {
        _agent: agent,
        _print_log: PrintLogOnPanic(root.join("agent.log")),
        _dir: dir,
        root,
        allowed,
        marker,
        sessions,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_only_what_its_config_names_whatever_the_controller_sends() {
    use pb::command::Action as A;
    let mut s = setup().await;
    let shell = injection(&s.marker);
    {
        let mut session = next_session(&mut s.sessions).await;
        let caps = session.hello.capabilities.clone();
        assert_eq!(
            caps,
            ["ping", "restart", "promote", "demote", "diagnostics"],
            "capabilities announced in Hello come from the config only"
        );
        welcome(&session).await;

        // (label, command, what the answer must say)
        let script: Vec<(&str, u64, A, Result<&str, &str>)> = vec![
            (
                "ping (shell in note)",
                EPOCH,
                A::Ping(pb::Ping {
                    note: shell.clone(),
                }),
                Ok("pong from h1"),
            ),
            (
                "backup",
                EPOCH,
                A::Backup(pb::Backup { incremental: false }),
                Err("refused: `backup` is not enabled on this agent"),
            ),
            (
                "restore",
                EPOCH,
                A::Restore(pb::Restore {
                    backup_id: String::new(),
                    from_host: String::new(),
                }),
                Err("refused: `restore` is not enabled on this agent"),
            ),
            (
                "drill",
                EPOCH,
                A::Drill(pb::Drill {
                    backup_id: String::new(),
                    from_host: String::new(),
                }),
                Err("refused: `drill` is not enabled on this agent"),
            ),
            (
                "verify backup",
                EPOCH,
                A::VerifyBackup(pb::VerifyBackup {
                    backup_id: String::new(),
                    deep: true,
                    from_host: String::new(),
                }),
                Err("refused: `backup` is not enabled on this agent"),
            ),
            (
                "list backups",
                EPOCH,
                A::ListBackups(pb::ListBackups {}),
                Err("refused: `backup` is not enabled on this agent"),
            ),
            (
                "apply retention (keep nothing)",
                EPOCH,
                A::ApplyRetention(pb::ApplyRetention {
                    keep_last: 0,
                    keep_daily: 0,
                    keep_weekly: 0,
                }),
                Err("refused: `backup` is not enabled on this agent"),
            ),
            (
                "read logs (shell in grep)",
                EPOCH,
                A::ReadLogs(pb::ReadLogs {
                    lines: 10,
                    grep: shell.clone(),
                    follow: false,
                }),
                Err("refused: `logs` is not enabled on this agent"),
            ),
            (
                "ping from an older epoch",
                EPOCH - 1,
                A::Ping(pb::Ping {
                    note: shell.clone(),
                }),
                Err("carries epoch 4 but this agent has seen epoch 5"),
            ),
            (
                "demote (shell in reason)",
                EPOCH,
                A::Demote(pb::Demote {
                    new_primary: String::new(),
                    reason: shell.clone(),
                }),
                Ok("demote hook"),
            ),
            (
                "promote (no promote hook configured)",
                EPOCH,
                A::Promote(pb::Promote {
                    old_primary: String::new(),
                }),
                // no hook runs; this controller grants no lease
                Err("promote hook: no hook configured; no lease within 3 s"),
            ),
            (
                "restart (shell in reason)",
                EPOCH,
                A::Restart(pb::Restart {
                    reason: shell.clone(),
                }),
                // the configured stop and start ran; the (absent) service never became healthy
                Err("not healthy"),
            ),
            (
                "diagnostics",
                EPOCH,
                A::Diagnostics(pb::Diagnostics { log_mib: 1 }),
                Ok("bundle of"),
            ),
        ];
        let mut report = Vec::new();
        for (i, (label, epoch, action, want)) in script.into_iter().enumerate() {
            let id = format!("hostile-{i}");
            session
                .to_agent
                .send(Ok(command(&id, epoch, Some(action))))
                .await
                .unwrap();
            let answer = answer_to(&mut session, &id).await;
            let fits = match (&answer, want) {
                (Answer::Done(d), Ok(w)) => d.contains(w),
                (Answer::Refused(e), Err(w)) => e.contains(w),
                _ => false,
            };
            assert!(fits, "{label}: expected {want:?}, got {answer:?}");
            assert!(!s.marker.exists(), "{label}: the marker file was created");
            report.push((label.to_string(), answer));
        }

        // malformed commands: a backup id that is a path, and no action at all. The agent drops
        // the session (and reconnects) instead of acting on them.
        let malformed: Vec<(&str, Option<A>)> = vec![
            (
                "restore of a path-shaped backup id",
                Some(A::Restore(pb::Restore {
                    backup_id: format!("../../{}", s.marker.display()),
                    from_host: String::new(),
                })),
            ),
            ("a command with no action", None),
        ];
        for (i, (label, action)) in malformed.into_iter().enumerate() {
            let id = format!("malformed-{i}");
            session
                .to_agent
                .send(Ok(command(&id, EPOCH, action)))
                .await
                .unwrap();
            let answer = answer_to(&mut session, &id).await;
            assert!(
                matches!(answer, Answer::SessionEnded),
                "{label}: expected the agent to end the session, got {answer:?}"
            );
            report.push((label.to_string(), answer));
            session = next_session(&mut s.sessions).await;
            welcome(&session).await;
        }

        println!("{:44} | agent's answer", "hostile command");
        println!("{}", "-".repeat(100));
        for (label, answer) in &report {
            let text = match answer {
                Answer::Done(d) => format!("done: {d}"),
                Answer::Refused(e) => format!("error: {e}"),
                Answer::SessionEnded => "session ended (invalid message), reconnected".into(),
            };
            let text: String = text.chars().take(120).collect();
            println!("{label:44} | {text}");
        }

        assert!(!s.marker.exists(), "the marker file was created");
        assert_eq!(
            lines(&s.allowed),
            ["demote", "start", "stop"],
            "only the configured commands ran, each once"
        );
        let log = std::fs::read_to_string(s.root.join("agent.log")).unwrap();
        assert!(
            log.matches("invalid message from controller").count() >= 2,
            "the agent says why it dropped the sessions:\n{log}"
        );
    }
}
