//! Property: the standalone `dr-agent backup|list|verify|restore` work end to end against a real
//! S3-protocol server (s3s + s3s-fs on loopback, signatures checked), with the endpoint and
//! credentials given by flags and the standard AWS environment, or by an agent config with key
//! files; wrong credentials, an unreachable endpoint and a missing region are clear errors with
//! the right exit codes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::s3_server::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use dr_proto::domain::{BackupRecord, VerifyOutcome};

const BUCKET: &str = "erlmcp-backups";
const STORE: &str = "s3://erlmcp-backups/prod/eu";

/// `dr-agent ARGS` with only the AWS settings given here.
fn agent(args: &[&str], aws: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::agent_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("DR_AGENT") {
            cmd.env_remove(k);
        }
    }
    // no profile files or instance metadata: only what the test gives
    cmd.env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in aws {
        cmd.env(k, v);
    }
    cmd.output().expect("dr-agent runs")
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

fn keys() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", REGION),
    ]
}

#[test]
fn backup_list_verify_restore_through_s3_with_flags_and_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s3");
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let server = S3Server::start(&root);
    let ep = server.endpoint();
    let data = tmp.path().join("data");
    common::make_tree(&data, 1);
    let data_s = data.display().to_string();
    let s3 = ["--store", STORE, "--s3-endpoint", ep.as_str()];

    let out = agent(
        &[
            &["backup"][..],
            &s3,
            &[
                "--data-dir",
                &data_s,
                "--group",
                "erlmcp",
                "--host",
                "h1",
                "-o",
                "json",
            ],
        ]
        .concat(),
        &keys(),
    );
    let full: BackupRecord = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(full.files, 3);
    // the objects are really in the bucket, under the prefix
    assert!(
        root.join(BUCKET)
            .join(format!(
                "prod/eu/erlmcp/h1/{}.tar.zst.manifest.json",
                full.id
            ))
            .is_file()
    );
    std::fs::write(data.join("mnesia/new.LOG"), "after the full backup").unwrap();
    let out = agent(
        &[
            &["backup"][..],
            &s3,
            &[
                "--data-dir",
                &data_s,
                "--group",
                "erlmcp",
                "--host",
                "h1",
                "--incremental",
            ],
        ]
        .concat(),
        &keys(),
    );
    let text = ok(&out);
    assert!(
        text.contains("incremental-") && text.contains(&full.id),
        "{text}"
    );

    let out = agent(&[&["list"][..], &s3, &["-o", "json"]].concat(), &keys());
    let listed: Vec<BackupRecord> = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].id, full.id);

    let out = agent(
        &[
            &["verify"][..],
            &s3,
            &["--backup", &full.id, "--deep", "-o", "json"],
        ]
        .concat(),
        &keys(),
    );
    let v: VerifyOutcome = serde_json::from_str(&ok(&out)).unwrap();
    assert!(v.valid && v.files_checked == 3, "{v:?}");

    // a fresh host: no --group, no --host, an empty target directory
    let target = tmp.path().join("fresh/opt/erlmcp/data");
    let target_s = target.display().to_string();
    let out = agent(
        &[
            &["restore"][..],
            &s3,
            &["--backup", "latest", "--data-dir", &target_s],
        ]
        .concat(),
        &keys(),
    );
    ok(&out);
    assert_eq!(common::tree(&target), common::tree(&data));
    drop(server);
}

#[test]
fn wrong_credentials_an_unreachable_endpoint_and_no_region_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s3");
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let server = S3Server::start(&root);
    let ep = server.endpoint();

    let mut wrong = keys();
    wrong[1] = ("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let out = agent(&["list", "--store", STORE, "--s3-endpoint", &ep], &wrong);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("credentials refused"), "{err}");
    assert!(
        err.contains("hint: the store refused the credentials"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-secret"),
        "the secret is never shown: {err}"
    );

    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let out = agent(
        &["list", "--store", STORE, "--s3-endpoint", &closed],
        &keys(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the store is unreachable"), "{err}");

    let out = agent(
        &["list", "--store", STORE, "--s3-endpoint", &ep],
        &keys()[..2],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("region"), "{err}");
    drop(server);
}

#[test]
fn an_agent_config_with_key_files_is_enough() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s3");
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let server = S3Server::start(&root);
    let data = tmp.path().join("data");
    common::make_tree(&data, 2);
    let secret = |name: &str, value: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    secret("s3-key-id", ACCESS_KEY);
    secret("s3-secret", SECRET_KEY);
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"host = "erlmcp7"
group = "erlmcp"
controllers = ["https://ctl1:7400"]
state_dir = "state"
[service]
start = ["true"]
stop = ["true"]
pid_file = "service.pid"
data_dir = {data:?}
[backup]
store = "{STORE}"
[backup.s3]
region = "{REGION}"
endpoint = "{ep}"
access_key_id_file = "s3-key-id"
secret_access_key_file = "s3-secret"
"#,
            data = data.display().to_string(),
            ep = server.endpoint(),
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();
    let text = ok(&agent(&["backup", "--config", &cfg], &[]));
    assert!(text.contains("of erlmcp/erlmcp7"), "{text}");
    let text = ok(&agent(&["list", "--config", &cfg], &[]));
    assert!(text.contains("erlmcp7") && text.contains("full-"), "{text}");
    ok(&agent(
        &["verify", "--config", &cfg, "--backup", "latest", "--deep"],
        &[],
    ));
    // restore over the config's own (non-empty) data dir: refused without --yes (exit 2)
    let out = agent(&["restore", "--config", &cfg, "--backup", "latest"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let elsewhere = tmp.path().join("copy").display().to_string();
    // another host's name finds nothing, and says whose backups there are
    let out = agent(
        &[
            "restore",
            "--config",
            &cfg,
            "--host",
            "rebuilt",
            "--backup",
            "latest",
            "--data-dir",
            &elsewhere,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("backups of other hosts: erlmcp7: give --host"),
        "{err}"
    );
    ok(&agent(
        &[
            "restore",
            "--config",
            &cfg,
            "--backup",
            "latest",
            "--data-dir",
            &elsewhere,
        ],
        &[],
    ));
    assert_eq!(common::tree(Path::new(&elsewhere)), common::tree(&data));
    drop(server);
}
