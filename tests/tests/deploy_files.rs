//! Property: the files in `deploy/` are accepted by the programs that read them: the HAProxy
//! example configs by `haproxy -c`, the controller's LB section by the controller's loader.

use std::process::Command;

use dr_tests::harness::{bins::haproxy, in_ci};

#[test]
fn haproxy_example_configs_are_valid() {
    let Some(bin) = haproxy() else {
        assert!(!in_ci(), "haproxy is missing: tests/run.sh installs it");
        eprintln!("haproxy not installed: example configs not checked");
        return;
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/haproxy");
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
