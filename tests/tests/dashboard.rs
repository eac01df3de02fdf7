//! Property: the dashboard the controller serves shows an operator the cluster as it is and
//! follows it by itself. In a real browser (headless Chromium) the page names the primary, epoch
//! and mode, every member with its health and reasons, the RPO and the last good drill, and the
//! open incidents with their timeline and escalation step; when the primary's host is killed the
//! page changes to the new primary without a reload, shows the old one as not green and the
//! failover with its measured RTO. Screenshots before and after are saved to
//! `target/test-artifacts/`. The JSON API under `/api/v1` answers with what `drctl ... -o json`
//! prints for the same cluster.

use std::process::Output;
use std::time::{Duration, Instant};

use dr_proto::process::Sig;
use dr_tests::harness::browser::{self, Browser};
use dr_tests::harness::{Cluster, ClusterOptions, http, in_ci, wait_until};
use serde_json::Value;

const GROUP: &str = "erlmcp";

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

fn cluster_options() -> ClusterOptions {
    ClusterOptions {
        controller_extra: "[failover]\ncooldown_s = 0\n".into(),
        ..ClusterOptions::default()
    }
}

/// A full backup and a restore drill, so the RPO and the last drill have values to show.
fn backup_and_drill(c: &Cluster) {
    ok(&c.drctl(&["backup", "create", "--wait"]));
    let drill = ok(&c.drctl(&["backup", "drill"]));
    assert!(drill.contains(": ok ("), "{drill}");
}

/// What the page shows of group `erlmcp`, read from the DOM as a person would read it (the text
/// in the cells), with the `data-` attributes only to find things.
const READ_PAGE: &str = r##"(() => {
  const g = document.querySelector('section.group[data-group="erlmcp"]');
  if (!g) return null;
  const fact = k => { const b = g.querySelector(`[data-fact="${k}"] b`); return b ? b.textContent : null; };
  return {
    primary: fact("primary"), epoch: fact("epoch"), mode: fact("mode"),
    rpo: fact("rpo"), drill: fact("drill"),
    members: [...g.querySelectorAll("tr.member")].map(r => ({
      host: r.cells[0].textContent, role: r.cells[1].textContent, health: r.cells[2].textContent,
      lease: r.cells[3].textContent, seen: r.cells[4].textContent,
      reasons: [...r.cells[5].querySelectorAll("li")].map(li => li.textContent) })),
    incidents: [...document.querySelectorAll("#incidents .incident")].map(i => ({
      id: Number(i.dataset.id), text: i.innerText, entries: i.querySelectorAll("ol li").length })),
    changes: [...document.querySelectorAll("#changes tr.change")].map(r => ({
      kind: r.cells[3].textContent, change: r.cells[4].textContent, rto: r.cells[5].textContent })),
    error: document.getElementById("error").textContent,
  };
})()"##;

fn member<'a>(page: &'a Value, host: &str) -> Option<&'a Value> {
    page["members"]
        .as_array()?
        .iter()
        .find(|m| m["host"] == host)
}

fn chromium_present() -> bool {
    if browser::chromium().is_some() {
        return true;
    }
    assert!(
        !in_ci(),
        "chromium is missing: tests/run.sh installs it (Debian package `chromium`)"
    );
    eprintln!("skipping: chromium is not installed (tests/run.sh installs it)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_failover_in_a_real_browser() {
    if !chromium_present() {
        return;
    }
    let artifacts = browser::artifacts_dir().unwrap();
    let mut c = Cluster::start(cluster_options()).await.unwrap();
    backup_and_drill(&c);
    // erlmcp3 answers 500: red with a reason, an open application_error incident, and not a
    // failover candidate, so the new primary will be erlmcp2
    c.signal_standin(2, Sig::Usr1).unwrap();
    let old = c.primary().unwrap();
    assert_eq!(old, "erlmcp1");

    let url = format!("http://{}/", c.plan.controllers[0].http);
    let log = artifacts.join("dashboard-chromium.log");
    let _ = std::fs::remove_file(&log);
    let mut b = Browser::open(&url, &log).await.unwrap();
    let page = b
        .wait_for(
            "erlmcp1 primary, erlmcp3 red with its incident, RPO and drill",
            Duration::from_secs(30),
            READ_PAGE,
            |p| {
                p["primary"] == "erlmcp1"
                    && member(p, "erlmcp3").is_some_and(|m| m["health"] == "red")
                    && p["incidents"].as_array().is_some_and(|i| !i.is_empty())
            },
        )
        .await
        .unwrap();
    // every member of the group, as drctl sees them
    let status = c.status().unwrap();
    let group = status.group(GROUP).unwrap();
    assert_eq!(
        page["members"].as_array().unwrap().len(),
        group.members.len(),
        "{page:#}"
    );
    assert_eq!(page["epoch"], group.epoch.0.to_string(), "{page:#}");
    assert_eq!(page["mode"], "automatic", "{page:#}");
    let primary = member(&page, "erlmcp1").unwrap();
    assert_eq!(primary["role"], "primary", "{page:#}");
    assert_eq!(primary["health"], "green", "{page:#}");
    assert!(
        primary["lease"].as_str().unwrap().ends_with(" s"),
        "the primary's lease is shown: {page:#}"
    );
    assert!(
        primary["seen"].as_str().unwrap().ends_with(" ago"),
        "{page:#}"
    );
    let red = member(&page, "erlmcp3").unwrap();
    assert!(
        red["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("application error")),
        "the reason is readable: {page:#}"
    );
    let rpo = page["rpo"].as_str().unwrap();
    assert!(rpo.ends_with(" s") || rpo.ends_with(" min"), "RPO {rpo:?}");
    let drill = page["drill"].as_str().unwrap();
    assert!(drill.ends_with(" ago"), "last good drill {drill:?}");
    let incident = &page["incidents"][0];
    let text = incident["text"].as_str().unwrap();
    assert!(
        text.contains("application_error") && text.contains("escalation step 0"),
        "{text}"
    );
    assert!(
        incident["entries"].as_u64().unwrap() >= 1,
        "a timeline: {text}"
    );
    assert_eq!(page["error"], "", "{page:#}");
    b.screenshot(&artifacts.join("dashboard-before-failover.png"))
        .await
        .unwrap();

    // kill -9 the primary's host (agent and service), as in failover.rs
    c.agents[0].as_mut().unwrap().kill();
    c.signal_standin(0, Sig::Kill).unwrap();
    let page = b
        .wait_for(
            "erlmcp2 as the new primary and the failover in the history",
            Duration::from_secs(30),
            READ_PAGE,
            |p| {
                p["primary"] == "erlmcp2"
                    && p["changes"]
                        .as_array()
                        .and_then(|c| c.first())
                        .is_some_and(|c| c["kind"] == "failover")
            },
        )
        .await
        .unwrap();
    let change = &page["changes"][0];
    assert_eq!(change["change"], "erlmcp1 → erlmcp2", "{page:#}");
    let rto = change["rto"].as_str().unwrap();
    assert!(rto.ends_with(" s"), "measured RTO shown: {rto:?}");
    assert_eq!(
        member(&page, "erlmcp2").unwrap()["role"],
        "primary",
        "{page:#}"
    );
    assert_ne!(
        member(&page, "erlmcp1").unwrap()["health"],
        "green",
        "the lost host is not shown healthy: {page:#}"
    );
    // the page and drctl agree on who is primary
    assert_eq!(c.primary().as_deref(), Some("erlmcp2"));
    let shot = artifacts.join("dashboard-after-failover.png");
    b.screenshot(&shot).await.unwrap();
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    eprintln!("screenshots in {}", artifacts.display());
    b.close().await;
}

/// JSON keys whose values change from one moment to the next: compared by type only.
const VOLATILE: &[&str] = &["generated_at_unix_ms", "last_seen_ms", "lease_remaining_ms"];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `v` with every volatile value replaced by its type.
fn steady(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if VOLATILE.contains(&k.as_str()) {
                        Value::String(format!("<{}>", type_name(v)))
                    } else {
                        steady(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(steady).collect()),
        other => other.clone(),
    }
}

/// Only the shape of `v`: keys and the type of every value.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        other => Value::String(type_name(other).into()),
    }
}

async fn api(c: &Cluster, path: &str) -> (u16, Value) {
    let r = http::get(&c.plan.controllers[0].http.to_string(), path)
        .await
        .unwrap();
    let body = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.body));
    (r.status, body)
}

/// `GET path` and `drctl args` give the same JSON (after `normal`). The cluster keeps running
/// between the two reads, so they are read again until they agree, for at most 10 s; then the
/// last pair is shown side by side.
async fn same_answer(c: &Cluster, path: &str, args: &[&str], normal: fn(&Value) -> Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cli: Value = serde_json::from_str(&ok(&c.drctl(args))).unwrap();
        let (status, body) = api(c, path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        let (from_api, from_cli) = (normal(&body), normal(&cli));
        if from_api == from_cli {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} and drctl {} differ:\napi:   {from_api:#}\ndrctl: {from_cli:#}",
            args.join(" ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_endpoint_answers_what_drctl_prints() {
    let c = Cluster::start(cluster_options()).await.unwrap();
    // something in every list: a backup and a drill, a role change, a resolved incident
    backup_and_drill(&c);
    ok(&c.drctl(&["switchover", "--to", "erlmcp2", "--yes", "--wait"]));
    c.signal_standin(2, Sig::Kill).unwrap();
    let incident = wait_until(
        "the crash of erlmcp3 restarted and its incident resolved",
        Duration::from_secs(30),
        || async {
            let h: Value = serde_json::from_str(&ok(&c.drctl(&["history", "-o", "json"]))).ok()?;
            h["incidents"]
                .as_array()?
                .iter()
                .find(|i| {
                    i["host"] == "erlmcp3"
                        && i["category"] == "process_crash"
                        && i["phase"] == "resolved"
                })
                .and_then(|i| i["id"].as_u64())
        },
    )
    .await
    .unwrap();
    c.wait_status("every member green", Duration::from_secs(30), |v| {
        v.group(GROUP)
            .unwrap()
            .members
            .iter()
            .all(|m| m.health == dr_proto::domain::Health::Green)
    })
    .await
    .unwrap();

    let id = incident.to_string();
    same_answer(&c, "/api/v1/status", &["status", "-o", "json"], steady).await;
    same_answer(
        &c,
        "/api/v1/status?group=erlmcp",
        &["status", "-o", "json", "--group", "erlmcp"],
        steady,
    )
    .await;
    // the raw probe reports hold live measurements: same keys and types
    same_answer(
        &c,
        "/api/v1/status?verbose=true",
        &["status", "-o", "json", "--verbose"],
        shape,
    )
    .await;
    same_answer(&c, "/api/v1/history", &["history", "-o", "json"], steady).await;
    same_answer(
        &c,
        "/api/v1/history?limit=1",
        &["history", "-o", "json", "--limit", "1"],
        steady,
    )
    .await;
    same_answer(
        &c,
        &format!("/api/v1/incidents/{id}"),
        &["incident", &id, "-o", "json"],
        steady,
    )
    .await;
    same_answer(
        &c,
        "/api/v1/backups",
        &["backup", "list", "-o", "json"],
        steady,
    )
    .await;
    same_answer(
        &c,
        "/api/v1/backups?group=erlmcp",
        &["backup", "list", "-o", "json", "--group", "erlmcp"],
        steady,
    )
    .await;

    // the lists are not empty, so the shapes above were compared on real entries
    let (_, history) = api(&c, "/api/v1/history").await;
    assert_eq!(
        history["role_changes"][0]["kind"], "switchover",
        "{history}"
    );
    let (_, backups) = api(&c, "/api/v1/backups").await;
    assert_eq!(backups["backups"].as_array().unwrap().len(), 1, "{backups}");
    assert_eq!(backups["last_drill"]["ok"], true, "{backups}");

    // /api/v1/incidents: the incidents of the history; ?open=true the open ones (none now)
    let (_, incidents) = api(&c, "/api/v1/incidents").await;
    assert_eq!(incidents["incidents"], history["incidents"]);
    let (_, open) = api(&c, "/api/v1/incidents?open=true").await;
    assert_eq!(open["incidents"], Value::Array(Vec::new()), "{open}");

    // errors are JSON too, with the HTTP status closest to drctl's error
    let (status, body) = api(&c, "/api/v1/status?group=nope").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let (status, body) = api(&c, "/api/v1/incidents/999999").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api(&c, "/api/v1/history?group=bad%20name").await;
    assert_eq!(status, 400, "{body}");
}
