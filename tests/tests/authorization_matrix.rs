//! Property: every gRPC method of the controller (Admin, AgentSession, Raft) lets in exactly the
//! identities the authorisation table names, over real mTLS against a real controller:
//! viewers read, operators read and act, agents only open a session for their own host,
//! controllers only speak Raft; no certificate, a certificate of another CA, an expired
//! certificate, or a controller reached under a name its certificate does not carry never gets a
//! gRPC answer at all (the TLS handshake fails).
//!
//! One table (method × identity → expected outcome), one loop calling every method as every
//! identity, each call on a fresh connection. An allowed call only has to come back without an
//! authorisation error (NotFound for the bogus group every request names is fine: nothing in the
//! cluster changes). The matrix is printed as a table.

use std::path::Path;
use std::time::Duration;

use dr_proto::domain::{AgentMessage, Epoch, GroupName, Hello, HostName};
use dr_proto::pb;
use dr_proto::pb::admin_client::AdminClient;
use dr_proto::pb::agent_session_client::AgentSessionClient;
use dr_proto::pb::raft_client::RaftClient;
use dr_proto::tls::{TlsMaterial, TlsPaths};
use dr_tests::harness::{Cluster, ClusterOptions};
use drctl::demo::layout::{OPERATOR, VIEWER};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The agent certificate the "agent" identities use, and the host it may not speak for.
const AGENT_A: &str = "erlmcp1";
const HOST_B: &str = "erlmcp2";
/// Every request names this group (or host): allowed calls find nothing to change.
const NO_GROUP: &str = "authz-matrix-none";
const NO_HOST: &str = "authz-matrix-nobody";
/// Agent sessions opened by the matrix use their own group, apart from the real one.
const SESSION_GROUP: &str = "authz-matrix";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    NoCertificate,
    AgentA,
    AgentAClaimingB,
    Viewer,
    Operator,
    Controller,
    OtherCa,
    Expired,
    WrongHostName,
}

const WHO: [Who; 9] = [
    Who::NoCertificate,
    Who::AgentA,
    Who::AgentAClaimingB,
    Who::Viewer,
    Who::Operator,
    Who::Controller,
    Who::OtherCa,
    Who::Expired,
    Who::WrongHostName,
];

impl Who {
    fn column(self) -> &'static str {
        match self {
            Who::NoCertificate => "none",
            Who::AgentA => "agent a",
            Who::AgentAClaimingB => "a as b",
            Who::Viewer => "viewer",
            Who::Operator => "operator",
            Who::Controller => "controller",
            Who::OtherCa => "other CA",
            Who::Expired => "expired",
            Who::WrongHostName => "wrong name",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Who::NoCertificate => "no client certificate",
            Who::AgentA => "agent:erlmcp1 (from drctl pki), speaking for erlmcp1",
            Who::AgentAClaimingB => "agent:erlmcp1 whose Hello names erlmcp2",
            Who::Viewer => "viewer:demo-viewer (from drctl pki)",
            Who::Operator => "operator:demo (from drctl pki)",
            Who::Controller => "controller:ctl1 (from drctl pki)",
            Who::OtherCa => "operator:demo issued by another CA (rcgen)",
            Who::Expired => "operator:demo from this CA, expired in 2021 (rcgen)",
            Who::WrongHostName => {
                "operator:demo, dialling the controller under a name its certificate does not carry"
            }
        }
    }
}

/// What a call must come back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Past authorisation: any answer but PermissionDenied/Unauthenticated.
    Allowed,
    /// Refused by the controller with this gRPC code.
    Refused(Code),
    /// No gRPC answer: the TLS handshake (or the connection right after it) failed.
    Tls,
}

const OK: Expect = Expect::Allowed;
const DENY: Expect = Expect::Refused(Code::PermissionDenied);
const TLS: Expect = Expect::Tls;

/// The authorisation matrix. Columns in the order of [`WHO`]:
/// none, agent a, agent a claiming b, viewer, operator, controller, other CA, expired, wrong name.
#[rustfmt::skip]
const MATRIX: &[(&str, [Expect; 9])] = &[
    //                                none agent a-as-b viewer operator ctl  other expired wrong
    ("Admin/Status",                  [TLS, DENY, DENY, OK,   OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Ping",                    [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Restart",                 [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Failover",                [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Switchover",              [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/SetMode",                 [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/History",                 [TLS, DENY, DENY, OK,   OK,   DENY, TLS, TLS, TLS]),
    ("Admin/GetIncident",             [TLS, DENY, DENY, OK,   OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Logs",                    [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Diagnostics",             [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/BackupCreate",            [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/BackupList",              [TLS, DENY, DENY, OK,   OK,   DENY, TLS, TLS, TLS]),
    ("Admin/BackupVerify",            [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/BackupDrill",             [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Restore",                 [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/Progress",                [TLS, DENY, DENY, OK,   OK,   DENY, TLS, TLS, TLS]),
    ("Admin/ControllerStatus",        [TLS, DENY, DENY, OK,   OK,   DENY, TLS, TLS, TLS]),
    ("Admin/AddController",           [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/RemoveController",        [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("Admin/ControllerBackup",        [TLS, DENY, DENY, DENY, OK,   DENY, TLS, TLS, TLS]),
    ("AgentSession/Session",          [TLS, OK,   DENY, DENY, DENY, DENY, TLS, TLS, TLS]),
    ("Raft/AppendEntries",            [TLS, DENY, DENY, DENY, DENY, OK,   TLS, TLS, TLS]),
    ("Raft/Vote",                     [TLS, DENY, DENY, DENY, DENY, OK,   TLS, TLS, TLS]),
    ("Raft/InstallSnapshot",          [TLS, DENY, DENY, DENY, DENY, OK,   TLS, TLS, TLS]),
];

/// Every method of the three services, so a method added to a .proto without a row here fails.
const PROTO_FILES: [&str; 3] = ["admin.proto", "agent.proto", "raft.proto"];

/// What a call came back with.
#[derive(Clone, Debug)]
enum Seen {
    /// A gRPC answer (`Code::Ok` for success).
    Answer(Code, String),
    /// No gRPC answer: connection or transport failure below gRPC.
    Transport(String),
    /// Nothing within the time limit.
    Hung,
}

impl Seen {
    fn matches(&self, expected: Expect) -> bool {
        match (self, expected) {
            (Seen::Answer(code, _), Expect::Allowed) => {
                !matches!(code, Code::PermissionDenied | Code::Unauthenticated)
            }
            (Seen::Answer(code, _), Expect::Refused(want)) => *code == want,
            (Seen::Transport(_), Expect::Tls) => true,
            _ => false,
        }
    }

    fn cell(&self) -> String {
        match self {
            Seen::Answer(Code::Ok, _) => "ok".into(),
            Seen::Answer(Code::PermissionDenied, _) => "denied".into(),
            Seen::Answer(Code::Unauthenticated, _) => "unauth".into(),
            Seen::Answer(code, _) => format!("ok:{}", short_code(*code)),
            Seen::Transport(_) => "TLS".into(),
            Seen::Hung => "HUNG".into(),
        }
    }
}

fn short_code(code: Code) -> &'static str {
    match code {
        Code::NotFound => "NotFound",
        Code::InvalidArgument => "InvalidArg",
        Code::FailedPrecondition => "Precond",
        Code::Unavailable => "Unavail",
        Code::Aborted => "Aborted",
        _ => "other",
    }
}

/// Everything a client needs to call as one identity.
struct Caller {
    tls: ClientTlsConfig,
    /// The host the agent identities claim in Hello.
    hello_host: &'static str,
}

fn pki_material(pki: &Path, name: &str) -> TlsMaterial {
    TlsMaterial::load(&TlsPaths {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{name}.pem")),
        key: pki.join(format!("{name}.key")),
        server_name: None,
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn raw_tls(ca_pem: &[u8], cert_key: Option<(String, String)>) -> ClientTlsConfig {
    let mut cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = cert_key {
        cfg = cfg.identity(Identity::from_pem(cert, key));
    }
    cfg
}

fn operator_params(
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("operator:{OPERATOR}"));
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// An operator certificate and key signed by a CA made here, not by this installation's.
fn other_ca_operator() -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "erlmcp-dr CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = operator_params((2020, 1, 1), (2099, 1, 1))
        .signed_by(&key, &issuer)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An operator certificate of this installation's CA that expired in 2021.
fn expired_operator(pki: &Path) -> (String, String) {
    let ca_pem = std::fs::read_to_string(pki.join("ca.pem")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = operator_params((2020, 1, 1), (2021, 1, 1))
        .signed_by(&key, &issuer)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn callers(c: &Cluster) -> Vec<Caller> {
    let pki = c.plan.pki_dir();
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    let controller = format!("controller-{}", c.plan.controllers[0].id);
    WHO.iter()
        .map(|who| {
            let tls = match who {
                Who::NoCertificate => raw_tls(&ca, None),
                Who::AgentA | Who::AgentAClaimingB => {
                    pki_material(&pki, &format!("agent-{AGENT_A}")).client_config("localhost")
                }
                Who::Viewer => {
                    pki_material(&pki, &format!("viewer-{VIEWER}")).client_config("localhost")
                }
                Who::Operator => {
                    pki_material(&pki, &format!("operator-{OPERATOR}")).client_config("localhost")
                }
                Who::Controller => pki_material(&pki, &controller).client_config("localhost"),
                Who::OtherCa => raw_tls(&ca, Some(other_ca_operator())),
                Who::Expired => raw_tls(&ca, Some(expired_operator(&pki))),
                // the product's own client config, verifying a name the controller does not have
                Who::WrongHostName => pki_material(&pki, &format!("operator-{OPERATOR}"))
                    .client_config("not-the-controller.invalid"),
            };
            let hello_host = if *who == Who::AgentAClaimingB {
                HOST_B
            } else {
                AGENT_A
            };
            Caller { tls, hello_host }
        })
        .collect()
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    text
}

fn seen_status(s: tonic::Status) -> Seen {
    // A status the server sent carries no source; one made from a transport failure does.
    match std::error::Error::source(&s) {
        Some(_) => Seen::Transport(chain(&s)),
        None => Seen::Answer(s.code(), s.message().to_string()),
    }
}

fn seen<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Seen {
    match r {
        Ok(_) => Seen::Answer(Code::Ok, String::new()),
        Err(s) => seen_status(s),
    }
}

/// A request stream holding one Hello and then staying open, like a live agent.
fn hello_stream(host: &str) -> ReceiverStream<pb::AgentMessage> {
    let hello: pb::AgentMessage = AgentMessage::Hello(Hello {
        protocol_version: dr_proto::PROTOCOL_VERSION,
        host: HostName::new(host).unwrap(),
        group: GroupName::new(SESSION_GROUP).unwrap(),
        agent_version: "authz-matrix".into(),
        capabilities: vec![],
        last_epoch_seen: Epoch(0),
        priority: 0,
        no_failover: true,
    })
    .into();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.try_send(hello).expect("room for one");
    tokio::spawn(async move { tx.closed().await });
    ReceiverStream::new(rx)
}

fn not_raft() -> pb::RaftPayload {
    pb::RaftPayload {
        json: b"authz-matrix: not a Raft message".to_vec(),
    }
}

async fn call(method: &str, ch: Channel, hello_host: &str) -> Seen {
    let g = NO_GROUP.to_string();
    let h = NO_HOST.to_string();
    let mut admin = AdminClient::new(ch.clone());
    let mut raft = RaftClient::new(ch.clone());
    match method {
        "Admin/Status" => seen(admin.status(pb::StatusRequest { group: g }).await),
        "Admin/Ping" => seen(
            admin
                .ping(pb::PingRequest {
                    group: g,
                    host: h,
                    note: String::new(),
                })
                .await,
        ),
        "Admin/Restart" => seen(
            admin
                .restart(pb::RestartRequest { group: g, host: h })
                .await,
        ),
        "Admin/Failover" => seen(
            admin
                .failover(pb::FailoverRequest {
                    group: g,
                    to: h,
                    force: false,
                })
                .await,
        ),
        "Admin/Switchover" => seen(
            admin
                .switchover(pb::SwitchoverRequest {
                    group: g,
                    to: h,
                    at_unix_ms: 0,
                    force: false,
                })
                .await,
        ),
        "Admin/SetMode" => seen(
            admin
                .set_mode(pb::SetModeRequest {
                    group: g,
                    mode: pb::Mode::Paused as i32,
                })
                .await,
        ),
        "Admin/History" => seen(
            admin
                .history(pb::HistoryRequest { group: g, limit: 1 })
                .await,
        ),
        "Admin/GetIncident" => seen(
            admin
                .get_incident(pb::IncidentRequest { id: u64::MAX })
                .await,
        ),
        "Admin/Logs" => seen(
            admin
                .logs(pb::LogsRequest {
                    group: g,
                    host: h,
                    lines: 1,
                    grep: String::new(),
                    follow: false,
                })
                .await,
        ),
        "Admin/Diagnostics" => seen(
            admin
                .diagnostics(pb::DiagnosticsRequest {
                    group: g,
                    host: h,
                    log_mib: 1,
                })
                .await,
        ),
        "Admin/BackupCreate" => seen(
            admin
                .backup_create(pb::BackupCreateRequest {
                    group: g,
                    host: h,
                    incremental: false,
                })
                .await,
        ),
        "Admin/BackupList" => seen(admin.backup_list(pb::BackupListRequest { group: g }).await),
        "Admin/BackupVerify" => seen(
            admin
                .backup_verify(pb::BackupVerifyRequest {
                    group: g,
                    backup_id: String::new(),
                    deep: false,
                })
                .await,
        ),
        "Admin/BackupDrill" => seen(
            admin
                .backup_drill(pb::BackupDrillRequest { group: g })
                .await,
        ),
        "Admin/Restore" => seen(
            admin
                .restore(pb::RestoreRequest {
                    group: g,
                    host: h,
                    backup_id: String::new(),
                    from_host: String::new(),
                    allow_primary: false,
                })
                .await,
        ),
        "Admin/Progress" => seen(
            admin
                .progress(pb::ProgressRequest {
                    group: g,
                    action_id: 0,
                })
                .await,
        ),
        "Admin/ControllerStatus" => seen(
            admin
                .controller_status(pb::ControllerStatusRequest {})
                .await,
        ),
        // an empty id is refused as invalid: nothing joins
        "Admin/AddController" => seen(
            admin
                .add_controller(pb::AddControllerRequest {
                    id: String::new(),
                    addr: String::new(),
                })
                .await,
        ),
        "Admin/RemoveController" => seen(
            admin
                .remove_controller(pb::RemoveControllerRequest { id: h })
                .await,
        ),
        // no store given and none configured: refused as invalid, nothing written
        "Admin/ControllerBackup" => seen(
            admin
                .controller_backup(pb::ControllerBackupRequest {
                    store: String::new(),
                })
                .await,
        ),
        "AgentSession/Session" => seen(
            AgentSessionClient::new(ch)
                .session(hello_stream(hello_host))
                .await,
        ),
        "Raft/AppendEntries" => seen(raft.append_entries(not_raft()).await),
        "Raft/Vote" => seen(raft.vote(not_raft()).await),
        "Raft/InstallSnapshot" => seen(raft.install_snapshot(not_raft()).await),
        other => panic!("no call for {other}: add it to `call`"),
    }
}

async fn call_as(addr: &str, caller: &Caller, method: &str) -> Seen {
    let attempt = async {
        let ch = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(3))
            .tls_config(caller.tls.clone())
            .unwrap()
            .connect()
            .await;
        match ch {
            Err(e) => Seen::Transport(chain(&e)),
            Ok(ch) => call(method, ch, caller.hello_host).await,
        }
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .unwrap_or(Seen::Hung)
}

/// `Service/Method` for every rpc in the .proto files.
fn proto_methods() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto/erlmcp_dr/v1");
    let mut out = Vec::new();
    for file in PROTO_FILES {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut service = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().unwrap_or_default().into();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest.split('(').next().unwrap_or_default().trim();
                out.push(format!("{service}/{name}"));
            }
        }
    }
    out
}

fn print_matrix(results: &[(&str, Vec<Seen>)]) {
    let width = MATRIX.iter().map(|(m, _)| m.len()).max().unwrap_or(10);
    let mut header = format!("{:width$}", "method \\ identity");
    for who in WHO {
        header.push_str(&format!(" | {:>13}", who.column()));
    }
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for ((method, seen), (_, expected)) in results.iter().zip(MATRIX) {
        let mut row = format!("{method:width$}");
        for (s, e) in seen.iter().zip(expected) {
            let mark = if s.matches(*e) { "" } else { "!" };
            row.push_str(&format!(" | {:>13}", format!("{mark}{}", s.cell())));
        }
        println!("{row}");
    }
    println!();
    println!("ok = allowed (ok:CODE = allowed, then refused for the bogus target), denied =");
    println!(
        "PermissionDenied, unauth = Unauthenticated, TLS = no gRPC answer, ! = not as expected"
    );
    // per identity, why it was turned away (the agent session first: it shows the host check)
    let session_first = results
        .iter()
        .filter(|(m, _)| m.starts_with("AgentSession/"))
        .chain(
            results
                .iter()
                .filter(|(m, _)| !m.starts_with("AgentSession/")),
        );
    let rows: Vec<&(&str, Vec<Seen>)> = session_first.collect();
    for (i, who) in WHO.iter().enumerate() {
        let detail = rows.iter().find_map(|(_, seen)| match &seen[i] {
            Seen::Transport(t) => Some(format!("TLS: {}", t.chars().take(220).collect::<String>())),
            Seen::Answer(Code::PermissionDenied, m) => Some(format!("denied: {m}")),
            _ => None,
        });
        println!(
            "  {:>10}: {}{}",
            who.column(),
            who.describe(),
            detail
                .map(|d| format!("\n              e.g. {d}"))
                .unwrap_or_default()
        );
    }
}

#[test]
fn the_table_covers_every_method_of_every_service() {
    let mut in_table: Vec<String> = MATRIX.iter().map(|(m, _)| m.to_string()).collect();
    let mut in_proto = proto_methods();
    in_table.sort();
    in_proto.sort();
    assert_eq!(
        in_table, in_proto,
        "the matrix and the .proto files disagree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_as_every_identity_gets_exactly_what_the_table_says() {
    let c = Cluster::start(ClusterOptions {
        hosts: 1,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let addr = c.plan.controllers[0].grpc.to_string();
    let callers = callers(&c);
    let mut results: Vec<(&str, Vec<Seen>)> = Vec::new();
    for (method, _) in MATRIX {
        let mut row = Vec::new();
        for caller in &callers {
            row.push(call_as(&addr, caller, method).await);
        }
        results.push((method, row));
    }
    print_matrix(&results);

    let mut wrong = Vec::new();
    for ((method, seen), (_, expected)) in results.iter().zip(MATRIX) {
        for ((s, e), who) in seen.iter().zip(expected).zip(WHO) {
            if !s.matches(*e) {
                wrong.push(format!(
                    "{method} as {} ({}): expected {e:?}, got {s:?}",
                    who.column(),
                    who.describe()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cell(s) differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // nothing the matrix did changed the real group: the same primary, no bogus group made
    let status = c.status().unwrap();
    let group = status.group(drctl::demo::layout::GROUP).unwrap();
    assert_eq!(
        group.primary.as_ref().map(|p| p.to_string()).as_deref(),
        Some(AGENT_A)
    );
    assert!(
        status.group(NO_GROUP).is_none(),
        "a call of the matrix created the bogus group"
    );
}
