//! Property: oversized and malformed gRPC messages are refused at the controller's edge with a
//! status that says why, without the controller's memory growing with what was sent, and the
//! controller keeps serving everyone else.
//!
//! - Over `MAX_MESSAGE_BYTES` on Admin and AgentSession: `OutOfRange` (tonic checks the length
//!   prefix before reading the body), as the first message of a session and in the middle of one.
//! - Bytes that are not protobuf: `Internal`, the code gRPC assigns to unparseable requests.
//! - Valid protobuf that breaks the protocol (a port number over 65535): `InvalidArgument`.
//! - The Raft endpoint allows larger messages (log entries, snapshots): a caller without a
//!   controller certificate is refused before its message is read, so 16 MiB payloads sent
//!   concurrently by an agent's certificate cost the controller nothing.
//!
//! Memory: the controller's peak resident size (`VmHWM` in /proc/PID/status) after 50 oversized
//! attempts and the Raft flood stays within a bound of where it started.

use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use dr_proto::domain::{
    AgentMessage, Epoch, GroupName, HealthReport, Hello, HostName, PortProbe, PortState,
};
use dr_proto::{MAX_MESSAGE_BYTES, pb};
use dr_tests::harness::{Cluster, ClusterOptions};
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

/// Sends and receives message bodies as they are: whatever bytes the test chooses.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

const STATUS: &str = "/erlmcp_dr.v1.Admin/Status";
const SESSION: &str = "/erlmcp_dr.v1.AgentSession/Session";
const APPEND_ENTRIES: &str = "/erlmcp_dr.v1.Raft/AppendEntries";

/// Not protobuf: field number 0, then a length running past the end.
const MALFORMED: &[u8] = &[0x00, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x7f];

async fn channel(c: &Cluster, who: &str) -> Channel {
    let pki = c.plan.pki_dir();
    let read = |p: &Path| std::fs::read(p).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&pki.join("ca.pem"))))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            read(&pki.join(format!("{who}.pem"))),
            read(&pki.join(format!("{who}.key"))),
        ));
    Endpoint::from_shared(format!("https://{}", c.plan.controllers[0].grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn unary(ch: &Channel, path: &'static str, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        Request::new(body),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// Opens a session sending `messages`, then keeps the request side open; returns the answers
/// up to the first error (the call's status, or one on the answer stream), or the first
/// `messages.len()` answers (a Welcome, then what the second message earned), or what came
/// within 5 s.
async fn session(ch: &Channel, messages: Vec<Bytes>) -> Result<Vec<Bytes>, Status> {
    let want = messages.len();
    let (tx, rx) = tokio::sync::mpsc::channel(messages.len() + 1);
    for m in messages {
        tx.try_send(m).unwrap();
    }
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut answers = grpc
        .streaming(
            Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            PathAndQuery::from_static(SESSION),
            RawCodec,
        )
        .await?
        .into_inner();
    let mut got = Vec::new();
    // The Welcome, then (for a bad second message) the error the session ends with.
    while got.len() < want
        && let Ok(next) = tokio::time::timeout(Duration::from_secs(5), answers.next()).await
    {
        match next {
            Some(Ok(m)) => got.push(m),
            Some(Err(status)) => return Err(status),
            None => break,
        }
    }
    drop(tx);
    Ok(got)
}

fn encode(m: AgentMessage) -> Bytes {
    Bytes::from(prost::Message::encode_to_vec(&pb::AgentMessage::from(m)))
}

fn hello(host: &str) -> Bytes {
    encode(AgentMessage::Hello(Hello {
        protocol_version: dr_proto::PROTOCOL_VERSION,
        host: HostName::new(host).unwrap(),
        group: GroupName::new("erlmcp").unwrap(),
        agent_version: "grpc-limits-test".into(),
        capabilities: vec![],
        last_epoch_seen: Epoch(0),
        priority: 0,
        no_failover: false,
    }))
}

/// A report whose protobuf is fine but whose port number is not a port.
fn report_with_bad_port() -> Bytes {
    let report = HealthReport {
        ports: vec![PortProbe {
            port: 1,
            state: PortState::Listening,
            detail: String::new(),
        }],
        ..HealthReport::default()
    };
    let mut wire = pb::AgentMessage::from(AgentMessage::Report(report));
    if let Some(pb::agent_message::Body::Report(r)) = &mut wire.body {
        r.ports[0].port = 70_000;
    }
    Bytes::from(prost::Message::encode_to_vec(&wire))
}

fn oversized() -> Bytes {
    Bytes::from(vec![0u8; MAX_MESSAGE_BYTES + 1])
}

/// `VmHWM` (peak resident set) of `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn expect_code<T: std::fmt::Debug>(what: &str, r: Result<T, Status>, code: Code, words: &str) {
    let status = r.expect_err(&format!("{what}: accepted"));
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(
        status.message().contains(words),
        "{what}: {:?} does not say {words:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_messages_are_refused_without_memory_growth() {
    let mut c = Cluster::start(ClusterOptions {
        hosts: 2,
        wait_green: false,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    // erlmcp2's agent is stopped: the test speaks with its certificate.
    c.agents[1] = None;
    let pid = c.controllers[0].as_ref().unwrap().pid();
    let operator = channel(&c, "operator-demo").await;
    let agent = channel(&c, "agent-erlmcp2").await;
    unary(&operator, STATUS, Bytes::new()).await.unwrap();
    let baseline = peak_rss(pid);

    // Admin: too large, not protobuf.
    expect_code(
        "oversized Status",
        unary(&operator, STATUS, oversized()).await,
        Code::OutOfRange,
        "too large",
    );
    expect_code(
        "malformed Status",
        unary(&operator, STATUS, Bytes::from_static(MALFORMED)).await,
        Code::Internal,
        "decode",
    );

    // AgentSession: as the first message, and after a valid Hello.
    expect_code(
        "oversized first message",
        session(&agent, vec![oversized()]).await,
        Code::OutOfRange,
        "too large",
    );
    expect_code(
        "malformed first message",
        session(&agent, vec![Bytes::from_static(MALFORMED)]).await,
        Code::Internal,
        "decode",
    );
    expect_code(
        "oversized report",
        session(&agent, vec![hello("erlmcp2"), oversized()]).await,
        Code::OutOfRange,
        "too large",
    );
    expect_code(
        "malformed report",
        session(
            &agent,
            vec![hello("erlmcp2"), Bytes::from_static(MALFORMED)],
        )
        .await,
        Code::Internal,
        "decode",
    );
    expect_code(
        "report breaking the protocol",
        session(&agent, vec![hello("erlmcp2"), report_with_bad_port()]).await,
        Code::InvalidArgument,
        "port.port",
    );

    // 50 more oversized attempts, ten at a time, on both services (sessions refused at their
    // first message: two live sessions of one host would replace each other).
    for _ in 0..5 {
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (operator, agent) = (operator.clone(), agent.clone());
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    unary(&operator, STATUS, oversized()).await.map(|_| ())
                } else {
                    session(&agent, vec![oversized()]).await.map(|_| ())
                }
            }));
        }
        for t in tasks {
            expect_code(
                "oversized, concurrently",
                t.await.unwrap(),
                Code::OutOfRange,
                "too large",
            );
        }
    }

    let grown = peak_rss(pid).saturating_sub(baseline);
    eprintln!(
        "peak RSS {} KiB, +{} KiB after 57 refused messages",
        baseline >> 10,
        grown >> 10
    );
    assert!(
        grown < 24 << 20,
        "after 50 oversized messages the controller's peak RSS grew by {} MiB (from {} MiB)",
        grown >> 20,
        baseline >> 20
    );

    // Raft: 16 MiB payloads from an agent, eight at once, refused before they are read.
    let flood = Bytes::from(vec![b' '; 16 << 20]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (agent, flood) = (agent.clone(), flood.clone());
        tasks.push(tokio::spawn(async move {
            unary(&agent, APPEND_ENTRIES, flood).await
        }));
    }
    for t in tasks {
        expect_code(
            "Raft payload from an agent",
            t.await.unwrap(),
            Code::PermissionDenied,
            "controller peer",
        );
    }

    let grown = peak_rss(pid).saturating_sub(baseline);
    eprintln!("peak RSS +{} KiB after the Raft flood", grown >> 10);
    assert!(
        grown < 32 << 20,
        "after 8 × 16 MiB Raft payloads the controller's peak RSS grew by {} MiB (from {} MiB)",
        grown >> 20,
        baseline >> 20
    );

    // Still serving: status answers and the remaining agent is connected.
    let status: pb::StatusResponse =
        prost::Message::decode(unary(&operator, STATUS, Bytes::new()).await.unwrap()).unwrap();
    let members = &status.groups[0].members;
    let erlmcp1 = members.iter().find(|m| m.host == "erlmcp1").unwrap();
    assert!(erlmcp1.connected, "{members:?}");
    let welcome = session(&agent, vec![hello("erlmcp2")]).await.unwrap();
    assert!(!welcome.is_empty(), "no Welcome after the abuse");
}
