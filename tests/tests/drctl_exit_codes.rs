//! Property: drctl's exit status tells a script what happened, whatever the command: 0 ok,
//! 1 the operation was tried and failed (controller unreachable, refused, failed on a host),
//! 2 the command line or the config is wrong (nothing was attempted). Every failure says on
//! stderr what to do next and leaves stdout empty, so `drctl ... -o json | jq` never parses an
//! error.

use std::path::{Path, PathBuf};
use std::process::Command;

use dr_tests::harness::{Cluster, ClusterOptions};

/// Which drctl config a case runs with.
#[derive(Clone, Copy, Debug)]
enum Conf {
    /// The cluster's operator config.
    Operator,
    /// The cluster's viewer certificate (may read, may not act).
    Viewer,
    /// A controller address where nothing listens.
    Unreachable,
    /// `controllers = []`.
    NoControllers,
    /// A key file that does not exist.
    MissingKey,
    /// No --config, no DRCTL_CONFIG, no ./drctl.toml.
    Nowhere,
}

use Conf::*;

struct Case {
    what: &'static str,
    conf: Conf,
    args: &'static [&'static str],
    code: i32,
    /// stderr contains each of these.
    says: &'static [&'static str],
}

const fn case(
    what: &'static str,
    conf: Conf,
    args: &'static [&'static str],
    code: i32,
    says: &'static [&'static str],
) -> Case {
    Case {
        what,
        conf,
        args,
        code,
        says,
    }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // 0: ok
    case("status", Operator, &["status"], 0, &[]),
    case("a viewer may read", Viewer, &["status", "-o", "json"], 0, &[]),
    case("help needs no config", Nowhere, &["--help"], 0, &[]),
    case("completions need no config", Nowhere, &["completions", "bash"], 0, &[]),
    // 2: usage errors (clap's and drctl's own)
    case("unknown subcommand", Operator, &["frobnicate"], 2, &["unrecognized subcommand"]),
    case("unknown output format", Operator, &["status", "-o", "yaml"], 2, &["invalid value 'yaml'"]),
    case("missing required flag", Operator, &["switchover", "--yes"], 2, &["--to"]),
    case("interval too short", Operator, &["watch", "--interval", "5ms"], 2, &["at least 100 ms"]),
    case("bad --at", Operator, &["switchover", "--to", "erlmcp2", "--at", "tomorrow", "--yes"], 2, &["--at"]),
    case("destructive without --yes and no terminal", Operator, &["failover"], 2, &["--yes"]),
    case("missing --yes is found before dialing", Unreachable, &["restore", "--host", "erlmcp2"], 2, &["--yes"]),
    // 2: config errors
    case("empty controllers", NoControllers, &["status"], 2, &["controllers", "empty"]),
    case("unreadable key", MissingKey, &["status"], 2, &["no-such.key"]),
    case("no config anywhere", Nowhere, &["status"], 2, &["--config", "DRCTL_CONFIG", "drctl demo"]),
    // 1: unreachable
    case("unreachable controller", Unreachable, &["status"], 1, &["controller unreachable at https://127.0.0.1:", "is dr-controller running", "--config"]),
    case("watch of an unreachable controller", Unreachable, &["watch", "--count", "1", "-o", "json"], 1, &["controller unreachable at"]),
    // 1: refused by the controller
    case("switchover to a host that is not a member", Operator, &["switchover", "--to", "nosuch", "--yes"], 1, &["nosuch"]),
    case("restore onto the primary", Operator, &["restore", "--host", "erlmcp1", "--yes"], 1, &["--allow-primary"]),
    case("a viewer may not act", Viewer, &["pause"], 1, &["viewer", "operator certificate"]),
    case("an unknown incident", Operator, &["incident", "9999", "-o", "json"], 1, &["9999"]),
    case("a host whose agent is not connected", Operator, &["ping", "erlmcp9"], 1, &["erlmcp9", "is dr-agent running"]),
];

fn config_for(c: &Cluster, conf: Conf, dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(c.drctl_config()).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    match conf {
        Conf::Operator => Some(c.drctl_config()),
        Conf::Viewer => Some(write(
            "viewer.toml",
            text.replace("operator-demo.", "viewer-demo-viewer."),
        )),
        Conf::Unreachable => {
            // a port that was free a moment ago: nothing listens there
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Some(write(
                "unreachable.toml",
                replace_controllers(&text, &format!("[\"https://127.0.0.1:{port}\"]")),
            ))
        }
        Conf::NoControllers => Some(write("none.toml", replace_controllers(&text, "[]"))),
        Conf::MissingKey => Some(write(
            "missing-key.toml",
            text.replace("operator-demo.key", "no-such.key"),
        )),
        Conf::Nowhere => None,
    }
}

fn replace_controllers(text: &str, list: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("controllers = ") {
                format!("controllers = {list}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_kind_of_failure_it_was() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();
    assert_eq!(
        c.primary().as_deref(),
        Some("erlmcp1"),
        "the cases assume it"
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in CASES {
        let mut cmd = Command::new(c.bins.drctl());
        cmd.current_dir(scratch.path())
            .env_remove("DRCTL_CONFIG")
            .env("NO_COLOR", "1");
        if let Some(f) = config_for(&c, case.conf, scratch.path()) {
            cmd.arg("--config").arg(f);
        }
        let out = cmd.args(case.args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut wrong = Vec::new();
        if out.status.code() != Some(case.code) {
            wrong.push(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        for s in case.says {
            if !stderr.contains(s) {
                wrong.push(format!("stderr lacks {s:?}"));
            }
        }
        if case.code != 0 && !stdout.is_empty() {
            wrong.push(format!("stdout not empty on failure: {stdout:?}"));
        }
        if case.code != 0 && stderr.trim().is_empty() {
            wrong.push("nothing on stderr".into());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{} (drctl {}): {}\n  stderr: {}",
                case.what,
                case.args.join(" "),
                wrong.join("; "),
                stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // nothing above changed the cluster
    assert_eq!(c.primary().as_deref(), Some("erlmcp1"));
}
