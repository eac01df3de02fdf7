//! Property: `drctl watch` is a live view that follows the cluster. Off a terminal it prints
//! one snapshot per interval (with `-o json` one status object per line, the shape of
//! `drctl status -o json`) and stops after `--count`; it shows a switchover as it happens and
//! Ctrl-C ends it with status 0. On a terminal it draws in place on the alternate screen, with
//! colours unless NO_COLOR is set; `drctl status` colours only a terminal too.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dr_proto::domain::StatusView;
use dr_tests::harness::bins::on_path;
use dr_tests::harness::{Cluster, ClusterOptions, in_ci};

const ALT_SCREEN_ON: &str = "\x1b[?1049h";
const ALT_SCREEN_OFF: &str = "\x1b[?1049l";
const GREEN: &str = "\x1b[32m";

fn primary(line: &str) -> String {
    let v: StatusView = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    v.group("erlmcp")
        .and_then(|g| g.primary.as_ref())
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// `drctl ARGS` on a pseudo-terminal (util-linux `script`), with `env` added; what it printed.
fn on_terminal(drctl: &Path, config: &Path, args: &str, env: &[(&str, &str)]) -> String {
    let cmd = format!("{} --config {} {args}", drctl.display(), config.display());
    let out = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_the_cluster_and_stops_when_told() {
    let c = Cluster::start(ClusterOptions::default()).await.unwrap();

    // --count N -o json: N lines, each a status, at least one interval apart
    let out = c.drctl(&["watch", "--count", "3", "--interval", "200ms", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let views: Vec<StatusView> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(views.len(), 3, "{text}");
    for v in &views {
        let g = v.group("erlmcp").unwrap();
        assert_eq!(g.members.len(), 3);
        assert_eq!(g.primary.as_ref().map(|p| p.as_str()), Some("erlmcp1"));
    }
    for w in views.windows(2) {
        let gap = w[1].generated_at_unix_ms - w[0].generated_at_unix_ms;
        assert!(gap >= 190, "refreshes {gap} ms apart with --interval 200ms");
    }

    // a table off a terminal: one frame per refresh, no escape codes
    let out = c.drctl(&["watch", "--count", "2", "--interval", "100ms"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("group erlmcp").count(), 2, "{text}");
    assert!(text.contains("recent role changes"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no escape codes off a terminal: {text:?}"
    );

    // a switchover shows up in a running watch; SIGINT (Ctrl-C) ends it with status 0
    let mut watch = Command::new(c.bins.drctl())
        .arg("--config")
        .arg(c.drctl_config())
        .args(["watch", "--interval", "100ms", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a first snapshot");
    assert_eq!(primary(&first), "erlmcp1");
    let out = c.drctl(&["switchover", "--to", "erlmcp2", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = 1;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("the watch keeps printing until the switchover shows");
        seen += 1;
        if primary(&line) == "erlmcp2" {
            break;
        }
    }
    assert!(seen >= 2);
    let pid = rustix::process::Pid::from_raw(watch.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = watch.wait().unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C ends a watch normally");

    // on a terminal: the alternate screen, entered and left; colours unless NO_COLOR
    if on_path("script").is_none() {
        assert!(
            !in_ci(),
            "util-linux `script` is needed for the terminal checks"
        );
        eprintln!("`script` not installed: terminal checks skipped");
        return;
    }
    let drctl = c.bins.drctl();
    let config = c.drctl_config();
    let tty = on_terminal(&drctl, &config, "watch --count 2 --interval 100ms", &[]);
    assert!(
        tty.contains(ALT_SCREEN_ON) && tty.contains(ALT_SCREEN_OFF),
        "{tty:?}"
    );
    assert!(tty.contains(GREEN), "green members in colour: {tty:?}");
    assert!(tty.contains("Ctrl-C to stop"));
    let plain = on_terminal(
        &drctl,
        &config,
        "watch --count 2 --interval 100ms",
        &[("NO_COLOR", "1")],
    );
    assert!(plain.contains(ALT_SCREEN_ON), "still drawn in place");
    assert!(!plain.contains(GREEN), "NO_COLOR: no colours: {plain:?}");
    let status_tty = on_terminal(&drctl, &config, "status", &[]);
    assert!(status_tty.contains(GREEN), "{status_tty:?}");
    let status_plain = on_terminal(&drctl, &config, "status", &[("NO_COLOR", "1")]);
    assert!(!status_plain.contains('\x1b'), "{status_plain:?}");
}
