//! Property: secrets never leave the places they are kept. The Erlang cookie, the S3 access key id
//! and secret key, the webhook bearer token and the TLS private keys appear in no log file, in no
//! `drctl diag` bundle and in no error message or output of the programs.
//!
//! A cluster is configured with every secret as a unique marker value, read from `*_file`
//! settings: the agents probe a real Erlang node with the cookie, write backups to a real S3
//! server (s3s) with the keys, the controller backs its state up to S3 with them and sends
//! notifications with the token to a webhook that refuses them. Inputs the agent bundles hold the
//! secrets the way real ones do: vm.args with `-setcookie`, a sys.config whose key value sits on
//! its own line, the service log with the release script's `Exec: ... -setcookie` line, and a real
//! `erl_crash.dump` of a node with that cookie (OTP writes the cookie atom into it). Then: backups,
//! a failing notification, a failing S3 call with a wrong key, a diag bundle, and config errors
//! about each secret setting. Finally every file under the test's directories (except the secret
//! files themselves and the planted inputs), every member of the bundle and every captured
//! stdout/stderr is searched for every marker.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dr_tests::harness::erlang::{self, ErlNode};
use dr_tests::harness::s3::S3Server;
use dr_tests::harness::{Cluster, ClusterOptions, in_ci, wait_until};

const BUCKET: &str = "drsecrets";
const REGION: &str = "us-east-1";

/// The secrets of this run: unique values nobody else could write by chance, and free of the
/// words (secret, cookie, token, key...) a keyword redactor looks for, so only a redaction that
/// really knows where secrets are can hide them.
struct Secrets {
    cookie: String,
    s3_id: String,
    s3_key: String,
    /// A wrong secret key (for the failing S3 call): also a secret.
    s3_wrong: String,
    token: String,
    /// A secret of erlmcp's own in its sys.config, which the agent knows nothing of.
    app: String,
}

impl Secrets {
    fn new() -> Secrets {
        let tag = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        )
        .to_uppercase();
        Secrets {
            cookie: format!("DRMARKC{tag}"),
            s3_id: format!("DRMARKI{tag}"),
            s3_key: format!("DRMARKK{tag}"),
            s3_wrong: format!("DRMARKW{tag}"),
            token: format!("DRMARKT{tag}"),
            app: format!("DRMARKA{tag}"),
        }
    }

    fn markers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("erlang cookie", self.cookie.clone()),
            ("s3 access key id", self.s3_id.clone()),
            ("s3 secret key", self.s3_key.clone()),
            ("wrong s3 secret key", self.s3_wrong.clone()),
            ("webhook token", self.token.clone()),
            ("erlmcp's own secret", self.app.clone()),
        ]
    }
}

fn write_secret(path: &Path, value: &str, mode: u32) {
    std::fs::write(path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// What the webhook saw: one Authorization header per attempt.
type Seen = Arc<Mutex<Vec<String>>>;

async fn refuse(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.lock().unwrap().push(auth);
    StatusCode::INTERNAL_SERVER_ERROR
}

/// A real crash dump of a node started with `cookie`.
fn crash_dump(dir: &Path, cookie: &str) -> PathBuf {
    let dump = dir.join("erl_crash.dump");
    let out = Command::new("erl")
        .args([
            "-sname",
            &format!("drcrash{}", std::process::id()),
            "-setcookie",
            cookie,
            "-noshell",
            "-eval",
            "erlang:halt(\"secrets test: crash on purpose\")",
        ])
        .env("ERL_CRASH_DUMP", &dump)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        dump.is_file(),
        "erl wrote no crash dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dump
}

/// A config with one mistake about a secret, and the key its error must name.
struct ConfigCase {
    program: PathBuf,
    label: &'static str,
    config: String,
    env: Option<(&'static str, String)>,
    key: &'static str,
}

/// Every output of a program the test ran, for the final search.
#[derive(Default)]
struct Captured(Vec<(String, Vec<u8>)>, Vec<(String, String)>);

impl Captured {
    fn add(&mut self, label: &str, out: &Output) {
        let mut all = out.stdout.clone();
        all.extend_from_slice(&out.stderr);
        self.0.push((label.to_string(), all));
        if !out.status.success() {
            let first = String::from_utf8_lossy(&out.stderr)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .chars()
                .take(240)
                .collect();
            self.1.push((label.to_string(), first));
        }
    }
}

fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("DR_AGENT") || k.starts_with("DR_CONTROLLER") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("program runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

fn find(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A few lines around the first occurrence, for the failure message.
fn context(haystack: &[u8], needle: &str) -> String {
    let text = String::from_utf8_lossy(haystack);
    text.lines()
        .filter(|l| l.contains(needle))
        .take(3)
        .map(|l| l.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n      ")
}

/// The base64 body line of a PEM private key (a marker for the key material).
fn key_marker(pem: &Path) -> String {
    std::fs::read_to_string(pem)
        .unwrap()
        .lines()
        .nth(1)
        .expect("a PEM body line")
        .to_string()
}

fn replace_line(text: &str, starts: &str, with: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with(starts) {
                with.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_a_bundle_or_an_error() {
    if !erlang::available() {
        assert!(
            !in_ci(),
            "erl/erlc missing: tests/run.sh installs Erlang/OTP"
        );
        eprintln!("skipped: erl/erlc not installed (CI fails here instead)");
        return;
    }
    let secrets = Secrets::new();
    let work = tempfile::Builder::new()
        .prefix("drtest-secrets-")
        .tempdir()
        .unwrap();
    let w = work.path();
    let secret_dir = w.join("secrets");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let (id_file, key_file, wrong_file, token_file) = (
        secret_dir.join("s3-access-key-id"),
        secret_dir.join("s3-secret-access-key"),
        secret_dir.join("s3-wrong-secret-access-key"),
        secret_dir.join("webhook.token"),
    );
    write_secret(&id_file, &secrets.s3_id, 0o600);
    write_secret(&key_file, &secrets.s3_key, 0o600);
    write_secret(&wrong_file, &secrets.s3_wrong, 0o600);
    write_secret(&token_file, &secrets.token, 0o600);

    // the world around the cluster: S3, a webhook that refuses, an Erlang node with the cookie
    let s3_root = w.join("s3");
    std::fs::create_dir_all(s3_root.join(BUCKET)).unwrap();
    let s3 = S3Server::start(&s3_root, &secrets.s3_id, &secrets.s3_key).unwrap();
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/hook", post(refuse))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let node = ErlNode::start_with_cookie(&secrets.cookie).unwrap();

    // what an erlmcp host holds: vm.args, a sys.config whose values formatting wrapped onto their
    // own lines, a real crash dump
    let inputs = w.join("erlmcp-etc");
    std::fs::create_dir_all(&inputs).unwrap();
    let vm_args = inputs.join("vm.args");
    std::fs::write(
        &vm_args,
        format!("-sname erlmcp\n-setcookie {}\n+K true\n", secrets.cookie),
    )
    .unwrap();
    let sys_config = inputs.join("sys.config");
    std::fs::write(
        &sys_config,
        format!(
            "[{{erlmcp, [\n  {{port, 8080}},\n  {{archive, [\n    {{access_key_id, \"{}\"}},\n    {{secret_access_key,\n      \"{}\"}}\n  ]}},\n  {{upstream_api_token,\n      \"{}\"}}\n]}}].\n",
            secrets.s3_id, secrets.s3_key, secrets.app
        ),
    )
    .unwrap();
    let dump = crash_dump(&inputs, &secrets.cookie);

    let s3_section = format!(
        "[backup.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\npath_style = true\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n",
        s3.endpoint(),
        id_file.display(),
        key_file.display()
    );
    let mut c = Cluster::start(ClusterOptions {
        hosts: 2,
        agent_extra: format!(
            "{}\n[diagnostics]\nconfig_files = [\"{}\", \"{}\"]\ncrash_dump = \"{}\"\n\n{s3_section}",
            node.agent_toml(),
            vm_args.display(),
            sys_config.display(),
            dump.display()
        ),
        controller_extra: format!(
            "[restart]\nbudget = 0\n\n[notify]\nattempts = 2\n\n[[notify.receiver]]\nname = \"oncall\"\nurl = \"http://{hook_addr}/hook\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
        backup_schedule: Some(format!(
            "full_every_s = 0\nincremental_every_s = 0\ndrill_every_s = 0\ncontroller_store = \"s3://{BUCKET}/controller\"\n\n{s3_section}"
        )),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let mut captured = Captured::default();
    let replica = 1;
    let replica_host = c.host(replica).host.clone();

    // the release script logs its command line, cookie included (relx does with RELX_COOKIE)
    {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(c.host(replica).service_log())
            .unwrap();
        writeln!(
            log,
            "Exec: /opt/erlmcp/erts/bin/erlexec -noshell -noinput +Bd -boot /opt/erlmcp/releases/1/start -mode embedded -setcookie {} -sname erlmcp -- foreground",
            secrets.cookie
        )
        .unwrap();
    }

    // agents back up to S3 with the keys: restart the replica's agent on an s3:// store
    if let Some(mut a) = c.agents[replica].take() {
        a.kill();
    }
    let agent_cfg = c.host(replica).agent_config();
    let cfg_text = std::fs::read_to_string(&agent_cfg).unwrap();
    std::fs::write(
        &agent_cfg,
        replace_line(
            &cfg_text,
            "store = ",
            &format!("store = \"s3://{BUCKET}/agents\""),
        ),
    )
    .unwrap();
    c.start_agent(replica).unwrap();
    let agent_log = c.host(replica).agent_log();
    wait_until(
        "the replica's restarted agent to have its session again",
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
            async move { (log.matches("session established").count() >= 2).then_some(()) }
        },
    )
    .await
    .unwrap();
    let out = c.drctl(&["backup", "create", "--host", &replica_host, "--wait"]);
    assert!(out.status.success(), "backup to S3: {}", text(&out));
    captured.add("drctl backup create (s3)", &out);
    let out = c.drctl(&["backup", "list"]);
    captured.add("drctl backup list", &out);
    let mut stored = Vec::new();
    files_under(&s3_root.join(BUCKET).join("agents"), &mut stored);
    assert!(
        stored
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".manifest.json")),
        "no backup reached S3: {stored:?}"
    );

    // the controller backs its state up to S3 with the keys; a bucket the server cannot write
    // (a file where its directory would be) fails
    let out = c.drctl(&["controller", "backup"]);
    assert!(out.status.success(), "controller backup: {}", text(&out));
    captured.add("drctl controller backup (s3)", &out);
    std::fs::write(s3_root.join("blocked"), "not a bucket").unwrap();
    let out = c.drctl(&["controller", "backup", "--store", "s3://blocked/x"]);
    assert!(!out.status.success(), "{}", text(&out));
    captured.add("drctl controller backup (unwritable bucket)", &out);

    // S3 with a wrong secret key: the standalone agent says so without the keys
    let wrong_cfg = w.join("agent-wrong-key.toml");
    std::fs::write(
        &wrong_cfg,
        std::fs::read_to_string(&agent_cfg).unwrap().replace(
            &key_file.display().to_string(),
            &wrong_file.display().to_string(),
        ),
    )
    .unwrap();
    let agent = c.bins.agent();
    let wrong_s = wrong_cfg.display().to_string();
    let out = run(&agent, &["backup", "--config", &wrong_s], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    captured.add("dr-agent backup (wrong key)", &out);
    let out = run(&agent, &["list", "--config", &wrong_s], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    captured.add("dr-agent list (wrong key)", &out);

    // a failing notification: the replica's service dies and may not be restarted (budget 0)
    c.signal_standin(replica, dr_proto::process::Sig::Kill)
        .unwrap();
    let seen2 = seen.clone();
    wait_until(
        "both notification attempts, refused by the webhook",
        Duration::from_secs(60),
        || {
            let n = seen2.lock().unwrap().len();
            async move { (n >= 2).then_some(()) }
        },
    )
    .await
    .unwrap();
    let auth = seen.lock().unwrap().clone();
    assert!(
        auth.iter()
            .all(|a| *a == format!("Bearer {}", secrets.token)),
        "the token was not sent as configured: {auth:?}"
    );
    let log_file = c.plan.controllers[0].log();
    wait_until(
        "the controller to log the dropped notification",
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            async move {
                log.contains("notification dropped after all attempts")
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();

    // the diagnostics bundle of the host whose inputs hold every secret
    let bundle = w.join("diag.tar.zst");
    let out = c.drctl(&["diag", &replica_host, "-o", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "drctl diag: {}", text(&out));
    captured.add("drctl diag", &out);
    let out = c.drctl(&["logs", &replica_host, "--lines", "20"]);
    captured.add("drctl logs", &out);
    let out = c.drctl(&["status", "--verbose"]);
    captured.add("drctl status --verbose", &out);
    let out = c.drctl(&["history", "-o", "json", "--limit", "100"]);
    captured.add("drctl history", &out);

    // config errors about each secret setting: the error names the key, never the value
    let errors = w.join("config-errors");
    std::fs::create_dir_all(&errors).unwrap();
    let open_cookie = errors.join("cookie-world-readable");
    write_secret(&open_cookie, &secrets.cookie, 0o644);
    let open_key = errors.join("s3-key-world-readable");
    write_secret(&open_key, &secrets.s3_key, 0o644);
    let base_agent = std::fs::read_to_string(&agent_cfg).unwrap();
    let node_cookie = node.cookie_file.display().to_string();
    let key_s = key_file.display().to_string();
    let controller_cfg = c.plan.controllers[0].config();
    let base_controller = std::fs::read_to_string(&controller_cfg).unwrap();
    let case = |program: &Path, label, config: String, env: Option<(&'static str, String)>, key| {
        ConfigCase {
            program: program.to_path_buf(),
            label,
            config,
            env,
            key,
        }
    };
    let controller = c.bins.controller();
    let cases = vec![
        case(
            &agent,
            "cookie file readable by others",
            base_agent.replace(&node_cookie, &open_cookie.display().to_string()),
            None,
            "erlang.cookie_file",
        ),
        case(
            &agent,
            "s3 key file readable by others",
            base_agent.replace(&key_s, &open_key.display().to_string()),
            None,
            "backup.s3.secret_access_key_file",
        ),
        case(
            &agent,
            "cookie written inline",
            base_agent.replace(
                &format!("cookie_file = \"{node_cookie}\""),
                &format!("cookie = \"{}\"", secrets.cookie),
            ),
            None,
            "erlang.cookie",
        ),
        case(
            &agent,
            "s3 key written inline",
            base_agent.replace(
                &format!("secret_access_key_file = \"{key_s}\""),
                &format!("secret_access_key = \"{}\"", secrets.s3_key),
            ),
            None,
            "backup.s3.secret_access_key",
        ),
        case(
            &agent,
            "cookie given as an environment override",
            base_agent.clone(),
            Some(("DR_AGENT__ERLANG__COOKIE", secrets.cookie.clone())),
            "erlang.cookie",
        ),
        case(
            &controller,
            "controller s3 key file readable by others",
            base_controller.replace(&key_s, &open_key.display().to_string()),
            None,
            "backup.s3.secret_access_key_file",
        ),
        case(
            &controller,
            "webhook token written inline",
            base_controller.replace(
                &format!("token_file = \"{}\"", token_file.display()),
                &format!("token = \"{}\"", secrets.token),
            ),
            None,
            "token",
        ),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let path = errors.join(format!("case-{i}.toml"));
        std::fs::write(&path, &case.config).unwrap();
        let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run(
            &case.program,
            &["check-config", "--config", path.to_str().unwrap()],
            &env,
        );
        let label = case.label;
        assert_eq!(out.status.code(), Some(2), "{label}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(case.key),
            "{label}: the error does not name `{}`: {}",
            case.key,
            text(&out)
        );
        captured.add(&format!("check-config: {label}"), &out);
    }

    // --- the search ---
    let mut markers = secrets.markers();
    for key in ["ca.key", "agent-erlmcp2.key", "operator-demo.key"] {
        markers.push(("TLS private key", key_marker(&c.plan.pki_dir().join(key))));
    }
    let controller_key = format!("controller-{}.key", c.plan.controllers[0].id);
    markers.push((
        "TLS private key",
        key_marker(&c.plan.pki_dir().join(controller_key)),
    ));

    // where the secrets are kept, and the inputs planted with them, are not searched
    let planted: Vec<PathBuf> = vec![
        id_file.clone(),
        key_file.clone(),
        wrong_file.clone(),
        token_file.clone(),
        open_cookie.clone(),
        open_key.clone(),
        vm_args.clone(),
        sys_config.clone(),
        dump.clone(),
        c.host(replica).service_log(),
    ];
    let mut files = Vec::new();
    files_under(&c.dir(), &mut files);
    files_under(w, &mut files);
    let config_error_inputs =
        |p: &Path| p.starts_with(&errors) && p.extension().is_some_and(|e| e == "toml");
    let searched: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| !planted.contains(p) && !config_error_inputs(p))
        .filter(|p| !(p.starts_with(c.plan.pki_dir()) && p.extension().is_some_and(|e| e == "key")))
        .collect();
    assert!(
        searched.iter().any(|p| p == &c.plan.controllers[0].log())
            && searched.iter().any(|p| p == &c.host(replica).agent_log())
            && searched.iter().any(|p| p == &bundle),
        "the search misses the logs or the bundle"
    );

    let mut leaks = Vec::new();
    let mut check = |what: String, bytes: &[u8]| {
        for (name, value) in &markers {
            if find(bytes, value) {
                leaks.push(format!(
                    "{name} in {what}:\n      {}",
                    context(bytes, value)
                ));
            }
        }
    };
    for p in &searched {
        check(
            p.display().to_string(),
            &std::fs::read(p).unwrap_or_default(),
        );
    }
    let raw = zstd::decode_all(std::fs::File::open(&bundle).unwrap()).unwrap();
    let mut members = Vec::new();
    let mut bodies = Vec::new();
    for entry in tar::Archive::new(raw.as_slice()).entries().unwrap() {
        let mut e = entry.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        check(format!("diag bundle member {name}"), &body);
        bodies.push((name.clone(), body));
        members.push(name);
    }
    for (label, bytes) in &captured.0 {
        check(format!("output of {label}"), bytes);
    }
    println!("what the failing commands said (no secret in any of it):");
    for (label, first_line) in &captured.1 {
        println!("  {label}: {first_line}");
    }
    for expected in [
        "logs/erlmcp.log",
        "config/vm.args",
        "config/sys.config",
        "erl_crash.dump",
    ] {
        assert!(
            members.iter().any(|m| m == expected),
            "the bundle lacks {expected} (the test would prove nothing about it): {members:?}"
        );
    }
    println!(
        "searched {} files, {} bundle members and {} program outputs for {} secrets",
        searched.len(),
        members.len(),
        captured.0.len(),
        markers.len()
    );
    assert!(
        leaks.is_empty(),
        "{} leak(s):\n  {}",
        leaks.len(),
        leaks.join("\n  ")
    );

    // ...and the bundle is still useful: the secrets are masked, the rest is there
    for (name, body) in &bodies {
        let text = String::from_utf8_lossy(body);
        match name.as_str() {
            "erl_crash.dump" => assert!(
                body.len() as u64 == std::fs::metadata(&dump).unwrap().len()
                    && text.starts_with("=erl_crash_dump"),
                "the crash dump is not the whole dump"
            ),
            "logs/erlmcp.log" => assert!(
                text.contains("-setcookie <redacted> -sname erlmcp -- foreground")
                    && text.contains("erlmcp_server: started"),
                "{text}"
            ),
            "config/sys.config" => assert!(text.contains("{port, 8080}"), "{text}"),
            _ => {}
        }
    }
}
