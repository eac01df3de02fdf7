//! Property: a malformed or incomplete config stops every binary with exit code 2 and one line
//! that names the file, the key and the problem, before anything else happens.

use std::path::Path;
use std::process::Command;

use dr_tests::harness::Bins;

fn run(bin: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line(stderr: &str, file: &Path, key: Option<&str>, words: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line, got: {stderr:?}");
    let line = lines[0];
    assert!(
        line.contains(&file.display().to_string()),
        "names the file: {line}"
    );
    if let Some(key) = key {
        assert!(
            line.contains(&format!("key `{key}`")),
            "names key {key}: {line}"
        );
    }
    assert!(line.contains(words), "says {words:?}: {line}");
}

const AGENT: &str = r#"
host = "a"
group = "erlmcp"
controllers = ["https://127.0.0.1:7400"]
state_dir = "state"
[tls]
ca = "ca.pem"
cert = "agent-a.pem"
key = "agent-a.key"
[service]
start = ["bin/erlmcp", "daemon"]
stop = ["bin/erlmcp", "stop"]
pid_file = "erlmcp.pid"
data_dir = "data"
"#;

const CONTROLLER: &str = r#"
id = "ctl1"
data_dir = "state"
[tls]
ca = "ca.pem"
cert = "controller-ctl1.pem"
key = "controller-ctl1.key"
[[group]]
name = "erlmcp"
"#;

#[test]
fn agent_config_mistakes_name_the_key() {
    let bins = Bins::locate();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("agent.toml");
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (AGENT.replace("host = \"a\"\n", ""), Some("host"), "missing"),
        (
            AGENT.replace("[service]", "[service]\nport = 8080"),
            Some("service.port"),
            "unknown key",
        ),
        (
            AGENT.replace(
                "state_dir = \"state\"",
                "state_dir = \"state\"\nreport_interval_ms = \"fast\"",
            ),
            Some("report_interval_ms"),
            "invalid type",
        ),
        (
            AGENT.replace("https://127.0.0.1:7400", "127.0.0.1:7400"),
            Some("controllers[0]"),
            "https://",
        ),
        (
            AGENT.replace("pid_file = \"erlmcp.pid\"\n", ""),
            Some("service.pid_file"),
            "missing",
        ),
        (AGENT.replace("[tls]", "[tls"), None, "not valid TOML: line"),
        // a config naming TLS files that do not exist: the key of the first missing one
        (AGENT.to_string(), Some("tls.ca"), "cannot read"),
    ];
    for (text, key, words) in cases {
        std::fs::write(&f, &text).unwrap();
        let (code, stderr) = run(
            &bins.agent(),
            &["check-config", "--config", f.to_str().unwrap()],
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert_one_line(&stderr, &f, key, words);
        // `run` refuses the same way, before starting anything
        let (code, stderr2) = run(&bins.agent(), &["run", "--config", f.to_str().unwrap()]);
        assert_eq!(code, Some(2));
        assert_eq!(stderr, stderr2);
    }
    let missing = dir.path().join("nope.toml");
    let (code, stderr) = run(
        &bins.agent(),
        &["run", "--config", missing.to_str().unwrap()],
    );
    assert_eq!(code, Some(2));
    assert_one_line(&stderr, &missing, None, "cannot read");
}

#[test]
fn controller_config_mistakes_name_the_key() {
    let bins = Bins::locate();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("controller.toml");
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (CONTROLLER.replace("[[group]]\nname = \"erlmcp\"\n", ""), Some("group"), "no [[group]]"),
        (CONTROLLER.replace("id = \"ctl1\"", "id = \"ctl/1\""), Some("id"), "contains '/'"),
        (format!("{CONTROLLER}\n[thresholds.memory_bytes]\nyellow = 5.0\nred = 1.0\n"), Some("thresholds.memory_bytes"), "must not be above red"),
        (CONTROLLER.replace("id = \"ctl1\"", "id = \"ctl1\"\nlisten = \"everywhere\""), Some("listen"), "invalid"),
        (CONTROLLER.replace("[tls]\nca = \"ca.pem\"\ncert = \"controller-ctl1.pem\"\nkey = \"controller-ctl1.key\"\n", ""), Some("tls"), "--insecure-dev"),
    ];
    for (text, key, words) in cases {
        std::fs::write(&f, &text).unwrap();
        let (code, stderr) = run(
            &bins.controller(),
            &["run", "--config", f.to_str().unwrap()],
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert_one_line(&stderr, &f, key, words);
    }
}

#[test]
fn tls_mistakes_are_config_errors_too() {
    let bins = Bins::locate();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bins.drctl())
        .args(["pki", "init", "--dir"])
        .arg(dir.path())
        .args([
            "--controller",
            "ctl1",
            "--agents",
            "a,b",
            "--operators",
            "o",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let f = dir.path().join("agent.toml");

    // agent a configured with agent b's certificate
    std::fs::write(
        &f,
        AGENT
            .replace("agent-a.pem", "agent-b.pem")
            .replace("agent-a.key", "agent-b.key"),
    )
    .unwrap();
    let (code, stderr) = run(
        &bins.agent(),
        &["check-config", "--config", f.to_str().unwrap()],
    );
    assert_eq!(code, Some(2));
    assert_one_line(&stderr, &f, Some("tls.cert"), "agent:b");

    // a private key readable by others
    std::fs::write(&f, AGENT).unwrap();
    let key = dir.path().join("agent-a.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = run(
        &bins.agent(),
        &["check-config", "--config", f.to_str().unwrap()],
    );
    assert_eq!(code, Some(2));
    assert_one_line(&stderr, &f, Some("tls.key"), "chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stderr) = run(
        &bins.agent(),
        &["check-config", "--config", f.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn drctl_config_mistakes_are_exit_code_2() {
    let bins = Bins::locate();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("drctl.toml");
    std::fs::write(&f, "controllers = []\n").unwrap();
    let (code, stderr) = run(&bins.drctl(), &["--config", f.to_str().unwrap(), "status"]);
    assert_eq!(code, Some(2));
    assert_one_line(&stderr, &f, Some("controllers"), "empty");

    // no config anywhere: says where it looked
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bins.drctl())
        .arg("status")
        .current_dir(empty.path())
        .env_remove("DRCTL_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DRCTL_CONFIG"));
}
