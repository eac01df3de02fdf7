//! Property: the files in `deploy/` are accepted by the programs that read them, so an operator
//! who copies them starts from something that works: every example config by the real config
//! loader of its program (agent, controller, drctl), the erlmcp preset with the erlmcp commands;
//! the HAProxy examples by `haproxy -c`; the systemd units by `systemd-analyze verify`, with the
//! hardening they promise; the Grafana dashboard queries only metrics the controller exports
//! (and shows every one of its own); the Dockerfile builds and ships every binary as non-root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dr_agent::config::AgentConfig;
use dr_controller::config::ControllerConfig;
use dr_tests::harness::bins::{Bins, haproxy, on_path};
use dr_tests::harness::in_ci;
use drctl::config::DrctlConfig;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files in `dir` whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

#[test]
fn haproxy_example_configs_are_valid() {
    let Some(bin) = haproxy() else {
        assert!(!in_ci(), "haproxy is missing: tests/run.sh installs it");
        eprintln!("haproxy not installed: example configs not checked");
        return;
    };
    let dir = deploy().join("haproxy");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "cfg") {
            continue;
        }
        let out = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("uri /primary"),
            "{}: checks the agent's /primary",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "agent-check and runtime-API examples");
}

/// The cookie file is read (and its mode checked) when an agent config is loaded, so an example
/// naming one is checked with the path pointed at a real cookie; nothing else changes.
fn with_test_cookie(text: &str, cookie: &Path) -> String {
    let mut replaced = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("cookie_file = ") {
                replaced += 1;
                format!("cookie_file = {:?}", cookie.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(replaced <= 1, "one cookie_file per agent config");
    out.join("\n") + "\n"
}

#[test]
fn every_example_config_parses_with_its_programs_loader() {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join("cookie");
    std::fs::write(&cookie, "example-cookie\n").unwrap();
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut checked = Vec::new();
    for path in files(&deploy(), ".example.toml") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(&path);
        if name.starts_with("agent.") {
            AgentConfig::parse(&path, &with_test_cookie(&text, &cookie), false)
                .unwrap_or_else(|e| panic!("{e}"));
        } else if name.starts_with("controller.") {
            ControllerConfig::parse(&path, &text, false).unwrap_or_else(|e| panic!("{e}"));
        } else if name.starts_with("drctl.") {
            DrctlConfig::load(&path, false).unwrap_or_else(|e| panic!("{e}"));
        } else {
            panic!("{name}: which program reads it? name it agent.*, controller.* or drctl.*");
        }
        checked.push(name);
    }
    for expected in [
        "agent.example.toml",
        "agent.erlmcp.example.toml",
        "controller.example.toml",
        "drctl.example.toml",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} checked: {checked:?}"
        );
    }
}

#[test]
fn the_erlmcp_preset_drives_erlmcp_through_its_release_script() {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join("cookie");
    std::fs::write(&cookie, "example-cookie\n").unwrap();
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = deploy().join("agent.erlmcp.example.toml");
    let c = AgentConfig::parse(&path, &with_test_cookie(&read(&path), &cookie), false).unwrap();
    let script = "/opt/erlmcp/bin/erlmcp";
    assert_eq!(c.service.start, [script, "daemon"]);
    assert_eq!(c.service.stop, [script, "stop"]);
    let erlang = c.erlang.as_ref().expect("the Erlang node probe is on");
    assert_eq!(erlang.node, format!("erlmcp@{}", c.host));
    let rpcs: Vec<String> = erlang.health_rpcs.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rpcs,
        [
            "erlmcp_health:check_live/0",
            "erlmcp_health:check_ready/0",
            "erlmcp_session_replicator:get_replication_status/0"
        ],
        "the preset's health calls"
    );
    let promote = c.hooks.promote.as_ref().expect("a promote hook");
    assert_eq!(promote.command, [script, "ping"]);
    let fence = c.hooks.fence.as_ref().expect("a fence hook");
    assert_eq!(fence.command, [script, "stop"]);
    let backup = c.backup.as_ref().expect("backups configured");
    let pre = backup.pre_backup.as_ref().expect("a pre-backup hook");
    assert_eq!(
        pre.command[..2],
        [script, "rpc"],
        "Mnesia backup through rpc"
    );
    // Mnesia lives inside the data directory, so one backup holds both
    let mnesia = pre.command.last().unwrap();
    assert!(
        mnesia.contains(&c.service.data_dir.display().to_string()),
        "{mnesia} is in {}",
        c.service.data_dir.display()
    );
    assert_eq!(c.http_listen.port(), 7481);
    assert!(c.controllers.iter().all(|u| u.ends_with(":7400")));
    // the paths the systemd unit gives the agent
    let unit = read(&deploy().join("systemd/dr-agent.service"));
    assert!(unit.contains("--config /etc/erlmcp-dr/agent.toml"));
    assert!(c.state_dir.starts_with("/var/lib/erlmcp-dr/agent"));
    assert!(c.service.data_dir.starts_with("/var/lib/erlmcp"));
    assert!(
        c.service
            .log_file
            .as_ref()
            .is_some_and(|l| l.starts_with("/var/log/erlmcp")),
        "erlmcp logs where LogsDirectory= lets it write"
    );
}

/// Every unit in deploy/systemd, with the binary its ExecStart names.
fn units() -> Vec<(PathBuf, String, &'static str)> {
    let binaries = [
        ("dr-agent.service", "dr-agent"),
        ("dr-controller.service", "dr-controller"),
    ];
    let found = files(&deploy().join("systemd"), ".service");
    assert_eq!(found.len(), binaries.len(), "{found:?}");
    found
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bin = binaries
                .iter()
                .find(|(unit, _)| *unit == name)
                .unwrap_or_else(|| panic!("{name}: unknown unit"))
                .1;
            let text = read(&p);
            (p, text, bin)
        })
        .collect()
}

#[test]
fn systemd_units_are_hardened() {
    for (path, text, bin) in units() {
        let has = |line: &str| text.lines().any(|l| l.trim() == line);
        let key = |k: &str| text.lines().any(|l| l.starts_with(&format!("{k}=")));
        for line in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
            "AmbientCapabilities=",
            "RestartPreventExitStatus=2",
        ] {
            assert!(has(line), "{}: {line}", path.display());
        }
        for k in [
            "User",
            "Group",
            "StateDirectory",
            "ConfigurationDirectory",
            "LogsDirectory",
        ] {
            assert!(key(k), "{}: {k}=", path.display());
        }
        assert!(
            !has("User=root") && !has("DynamicUser=yes"),
            "{}: a dedicated, fixed user (it owns key files)",
            path.display()
        );
        let exec = format!("ExecStart=/usr/local/bin/{bin} run --config /etc/erlmcp-dr/");
        assert!(text.contains(&exec), "{}: {exec}", path.display());
    }
    let agent = read(&deploy().join("systemd/dr-agent.service"));
    assert!(
        agent.lines().any(|l| l == "KillMode=process"),
        "restarting the agent must not kill the erlmcp it started"
    );
    assert!(
        !agent.contains("MemoryDenyWriteExecute=yes"),
        "erlmcp runs in the agent's sandbox and the BEAM JIT needs W+X memory"
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Some(analyze) = on_path("systemd-analyze") else {
        assert!(
            !in_ci(),
            "systemd-analyze is missing: tests/run.sh installs it"
        );
        eprintln!("systemd-analyze not installed: units not verified");
        return;
    };
    // verify insists that ExecStart's program exists: check copies that start the binaries
    // under test instead of /usr/local/bin (the only change)
    let bins = Bins::locate();
    let dir = tempfile::tempdir().unwrap();
    for (path, text, bin) in units() {
        let installed = format!("/usr/local/bin/{bin} ");
        let here = format!("{} ", bins.path(bin).display());
        assert_eq!(text.matches(&installed).count(), 1, "{}", path.display());
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, text.replace(&installed, &here)).unwrap();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&copy)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // unknown keys and bad values are only warnings (exit 0): any line about the unit fails
        let unit = path.file_name().unwrap().to_string_lossy().into_owned();
        let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains(&unit)).collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "systemd-analyze verify {}: {}\n{stderr}",
            path.display(),
            out.status
        );
    }
}

/// The metric names in a PromQL expression: its identifiers that start with `erlmcp_` (no
/// function, keyword or label name of ours does).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("erlmcp_") {
                names.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every PromQL expression of a Grafana dashboard: panel targets, annotations, variables.
fn expressions(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) if s.contains('(') => {
                        out.push(s.clone())
                    }
                    _ => expressions(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_shows_what_the_controller_exports() {
    let path = deploy().join("grafana/erlmcp-dr.json");
    let dash: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    assert_eq!(dash["uid"], "erlmcp-dr");
    let mut exprs = Vec::new();
    expressions(&dash, &mut exprs);
    let queried: std::collections::BTreeSet<String> =
        exprs.iter().flat_map(|e| metric_names(e)).collect();

    // the controller's own exposition, with every family's header even when it has no sample
    let view = dr_proto::domain::StatusView {
        controller_id: "c".into(),
        leader: true,
        generated_at_unix_ms: 0,
        groups: Vec::new(),
    };
    let text = dr_controller::metrics::render(&view, &Default::default());
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    assert!(exported.len() > 10, "{text}");
    let unknown: Vec<_> = queried.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the controller does not export: {unknown:?}"
    );
    let unshown: Vec<_> = exported.difference(&queried).collect();
    assert!(unshown.is_empty(), "exported but on no panel: {unshown:?}");
    // every panel (rows aside) queries something
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().map(Vec::len).unwrap_or(0);
        assert!(targets > 0, "panel {} has no query", p["title"]);
    }
}

#[test]
fn the_dockerfile_builds_and_ships_every_binary_as_non_root() {
    let text = read(&deploy().join("Dockerfile"));
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:") && froms[0].contains("slim"),
        "{froms:?}"
    );
    assert!(froms[0].ends_with(" AS builder"), "{froms:?}");
    assert_eq!(froms[1], "FROM debian:bookworm-slim");
    let build = text
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    for bin in ["dr-controller", "dr-agent", "drctl"] {
        assert!(
            build.contains(&format!("--bin {bin}")),
            "builds {bin}: {build}"
        );
        assert!(
            text.contains(&format!("target/release/{bin}")),
            "copies {bin} out of the builder"
        );
    }
    assert!(text.contains("COPY --from=builder"));
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    let who = user.trim_start_matches("USER ").split(':').next().unwrap();
    assert!(who != "root" && who != "0", "{user}");
    for port in ["7400", "7480", "7481"] {
        assert!(text.contains(port), "exposes {port}");
    }
    // the build context is the repository: build output stays out of it
    let ignore = read(&deploy().join("../.dockerignore"));
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}
