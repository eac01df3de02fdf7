//! Property: an operator gets the runbook's diagnostic bundle and logs from any host with one
//! command, and no secret (cookie, password) is in the bundle.

use std::io::Read;

use dr_tests::harness::{Cluster, ClusterOptions};

const SECRET: &str = "SECRETCOOKIE123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diag_bundle_has_the_expected_files_and_no_secret_and_logs_stream() {
    let extra_dir = tempfile::tempdir().unwrap();
    let sys = extra_dir.path().join("sys.config");
    let vm = extra_dir.path().join("vm.args");
    std::fs::write(
        &sys,
        format!("[{{kernel, [{{cookie, '{SECRET}'}}]}},\n {{erlmcp, [{{port, 8080}}]}}].\n"),
    )
    .unwrap();
    std::fs::write(
        &vm,
        format!("-sname erlmcp\n-setcookie {SECRET}\n+K true\n"),
    )
    .unwrap();
    let dump = extra_dir.path().join("erl_crash.dump");
    std::fs::write(
        &dump,
        "=erl_crash_dump:0.5\nSlogan: eheap_alloc: Cannot allocate\n",
    )
    .unwrap();
    let c = Cluster::start(ClusterOptions {
        agent_extra: format!(
            "[diagnostics]\nconfig_files = [\"{}\", \"{}\"]\ncrash_dump = \"{}\"\n",
            sys.display(),
            vm.display(),
            dump.display()
        ),
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let out_file = extra_dir.path().join("diag.tar.zst");
    let out = c.drctl(&["diag", "erlmcp2", "-o", out_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = zstd::decode_all(std::fs::File::open(&out_file).unwrap()).unwrap();
    let mut archive = tar::Archive::new(raw.as_slice());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut body = String::new();
        e.read_to_string(&mut body).unwrap();
        assert!(!body.contains(SECRET), "{name} leaks the cookie:\n{body}");
        if name == "config/vm.args" {
            assert!(
                body.contains("-setcookie <redacted>") && body.contains("+K true"),
                "{body}"
            );
        }
        if name == "metrics.txt" {
            assert!(body.contains("erlmcp_memory_bytes"), "{body}");
        }
        if name == "probe-report.json" {
            assert!(body.contains("\"http\""), "{body}");
        }
        names.push(name);
    }
    for expected in [
        "logs/erlmcp.log",
        "config/agent.toml",
        "config/sys.config",
        "config/vm.args",
        "erl_crash.dump",
        "metrics.txt",
        "probe-report.json",
        "role.json",
        "host.txt",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    // logs: last lines, filtered
    let out = c.drctl(&["logs", "erlmcp2", "--lines", "5", "--grep", "started"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.is_empty() && text.lines().all(|l| l.contains("started")),
        "{text}"
    );
    let out = c.drctl(&["logs", "erlmcp2", "--grep", "(unclosed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid regular expression"));
}
