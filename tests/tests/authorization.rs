//! Property: mTLS decides who may do what. No certificate, or one from another CA, never gets
//! in; an agent speaks only for the host in its certificate; agents cannot read status; viewers
//! can read but not act.

use std::path::Path;
use std::time::Duration;

use dr_proto::domain::{AgentMessage, Epoch, GroupName, Hello, HostName};
use dr_proto::pb;
use dr_proto::pb::admin_client::AdminClient;
use dr_proto::pb::agent_session_client::AgentSessionClient;
use dr_tests::harness::{Cluster, ClusterOptions};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

fn tls(pki: &Path, ca_dir: &Path, who: Option<&str>) -> ClientTlsConfig {
    let ca = std::fs::read(ca_dir.join("ca.pem")).unwrap();
    let mut cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(who) = who {
        let cert = std::fs::read(pki.join(format!("{who}.pem"))).unwrap();
        let key = std::fs::read(pki.join(format!("{who}.key"))).unwrap();
        cfg = cfg.identity(Identity::from_pem(cert, key));
    }
    cfg
}

async fn channel(c: &Cluster, cfg: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://{}", c.plan.controllers[0].grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .tls_config(cfg)
        .unwrap()
        .connect()
        .await
}

async fn status_as(c: &Cluster, cfg: ClientTlsConfig) -> Result<(), String> {
    let ch = channel(c, cfg).await.map_err(|e| format!("connect: {e}"))?;
    AdminClient::new(ch)
        .status(pb::StatusRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

fn hello(host: &str) -> pb::AgentMessage {
    AgentMessage::Hello(Hello {
        protocol_version: dr_proto::PROTOCOL_VERSION,
        host: HostName::new(host).unwrap(),
        group: GroupName::new("erlmcp").unwrap(),
        agent_version: "test".into(),
        capabilities: vec![],
        last_epoch_seen: Epoch(0),
        priority: 0,
        no_failover: false,
    })
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_decide_who_may_do_what() {
    let c = Cluster::start(ClusterOptions {
        hosts: 2,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let pki = c.plan.pki_dir();

    // operator and viewer may read
    status_as(&c, tls(&pki, &pki, Some("operator-demo")))
        .await
        .unwrap();
    status_as(&c, tls(&pki, &pki, Some("viewer-demo-viewer")))
        .await
        .unwrap();

    // no client certificate: the handshake or the call fails, never succeeds
    let r = status_as(&c, tls(&pki, &pki, None)).await;
    assert!(r.is_err(), "a client without a certificate was let in");

    // a certificate from another CA (trusting our server CA so only the client side differs)
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(c.bins.drctl())
        .args(["pki", "init", "--dir"])
        .arg(other.path())
        .args([
            "--controller",
            "ctl1",
            "--agents",
            "erlmcp1",
            "--operators",
            "demo",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = status_as(&c, tls(other.path(), &pki, Some("operator-demo"))).await;
    assert!(
        r.is_err(),
        "an operator certificate of another CA was let in"
    );

    // an agent certificate may not read status
    let r = status_as(&c, tls(&pki, &pki, Some("agent-erlmcp1"))).await;
    let e = r.unwrap_err();
    assert!(e.starts_with("PermissionDenied"), "{e}");

    // agent erlmcp1 may not speak for erlmcp2
    let ch = channel(&c, tls(&pki, &pki, Some("agent-erlmcp1")))
        .await
        .unwrap();
    let stream = tokio_stream_once(hello("erlmcp2"));
    let err = AgentSessionClient::new(ch)
        .session(stream)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("may not speak for host `erlmcp2`"),
        "{}",
        err.message()
    );

    // ...but for itself it may (the session opens and is welcomed)
    let ch = channel(&c, tls(&pki, &pki, Some("agent-erlmcp1")))
        .await
        .unwrap();
    let mut inbound = AgentSessionClient::new(ch)
        .session(tokio_stream_once(hello("erlmcp1")))
        .await
        .unwrap()
        .into_inner();
    let first = inbound.message().await.unwrap().unwrap();
    assert!(matches!(
        first.body,
        Some(pb::controller_message::Body::Welcome(_))
    ));

    // a viewer may not act (ping is an operator action)
    let ch = channel(&c, tls(&pki, &pki, Some("viewer-demo-viewer")))
        .await
        .unwrap();
    let err = AdminClient::new(ch)
        .ping(pb::PingRequest {
            group: "erlmcp".into(),
            host: "erlmcp1".into(),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// A request stream holding one message and then staying open (like a live agent).
fn tokio_stream_once(m: pb::AgentMessage) -> ReceiverStream<pb::AgentMessage> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.try_send(m).expect("room for one");
    tokio::spawn(async move { tx.closed().await });
    ReceiverStream::new(rx)
}
