//! Property: an incident that is not recovering escalates at the runbook's steps, as webhook
//! notifications routed by category (the CONTACT MATRIX), retried while the receiver is down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use dr_proto::process::Sig;
use dr_tests::harness::{Cluster, ClusterOptions, wait_until};

#[derive(Default)]
struct Received {
    attempts: u32,
    delivered: Vec<(Instant, serde_json::Value)>,
    erlang: Vec<serde_json::Value>,
    auth: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

async fn hook(State(s): State<Shared>, headers: axum::http::HeaderMap, body: String) -> StatusCode {
    let mut r = s.lock().unwrap();
    r.attempts += 1;
    if let Some(a) = headers.get("authorization") {
        r.auth.push(a.to_str().unwrap_or_default().to_string());
    }
    // the receiver is "down" for its first two requests
    if r.attempts <= 2 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.delivered
        .push((Instant::now(), serde_json::from_str(&body).unwrap()));
    StatusCode::OK
}

async fn erlang(State(s): State<Shared>, body: String) -> StatusCode {
    s.lock()
        .unwrap()
        .erlang
        .push(serde_json::from_str(&body).unwrap());
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_steps_fire_as_routed_webhooks_and_are_retried() {
    let received: Shared = Arc::default();
    let app = Router::new()
        .route("/oncall", post(hook))
        .route("/erlang", post(erlang))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tokens = tempfile::tempdir().unwrap();
    let token = tokens.path().join("oncall.token");
    std::fs::write(&token, "tok-123\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let extra = format!(
        "[escalation]\nsteps_s = [0, 2, 4]\n\n[restart]\nbudget = 0\n\n[notify]\nattempts = 6\n\n\
         [[notify.receiver]]\nname = \"oncall\"\nurl = \"http://{addr}/oncall\"\ncategories = [\"process_crash\"]\ntoken_file = \"{}\"\n\n\
         [[notify.receiver]]\nname = \"erlang\"\nurl = \"http://{addr}/erlang\"\ncategories = [\"memory_leak\"]\n",
        token.display()
    );
    let c = Cluster::start(ClusterOptions {
        controller_extra: extra,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    // a dead replica that may not be restarted (budget 0): the incident stays open
    c.signal_standin(1, Sig::Kill).unwrap();
    let r = received.clone();
    wait_until(
        "three escalation steps delivered",
        Duration::from_secs(30),
        || {
            let r = r.clone();
            async move {
                let got = r.lock().unwrap();
                let steps: Vec<u64> = got
                    .delivered
                    .iter()
                    .filter_map(|(_, v)| v["escalation_step"].as_u64())
                    .collect();
                (steps.len() >= 3).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let got = received.lock().unwrap();
    let steps: Vec<(Instant, u64, String)> = got
        .delivered
        .iter()
        .filter_map(|(t, v)| {
            Some((
                *t,
                v["escalation_step"].as_u64()?,
                v["text"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(
        steps.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "{steps:?}"
    );
    let gap1 = steps[1].0 - steps[0].0;
    let gap2 = steps[2].0 - steps[0].0;
    // step 0 was held up by the two failed attempts (retry backoff), so measure loosely
    assert!(
        gap2 > gap1 && gap2 >= Duration::from_millis(1500),
        "{gap1:?} {gap2:?}"
    );
    assert!(
        steps[0].2.contains("erlmcp2") && steps[0].2.contains("first alert"),
        "{}",
        steps[0].2
    );
    assert!(steps[1].2.contains("secondary on-call"));
    assert!(steps[2].2.contains("SEV-1"));
    // Slack-compatible text, the route's contact, the bearer token
    let first = &got.delivered[0].1;
    assert!(first["text"].is_string());
    assert_eq!(first["category"], "process_crash");
    assert_eq!(first["contact"], "devops_lead");
    assert!(
        got.attempts >= got.delivered.len() as u32 + 2,
        "the first two attempts failed and were retried"
    );
    assert!(got.auth.iter().all(|a| a == "Bearer tok-123"));
    // routed by category: nothing about a crash went to the Erlang expert
    assert!(got.erlang.is_empty(), "{:?}", got.erlang);
    // and the token never reached a log
    let log = std::fs::read_to_string(c.plan.controllers[0].log()).unwrap();
    assert!(!log.contains("tok-123"));
}
