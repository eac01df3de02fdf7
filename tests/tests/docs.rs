//! Property: every command the docs show works, so the docs cannot rot. The shell fences of
//! README.md and docs/*.md are run in order, one session per file, as an operator would type
//! them: in a scratch directory, with the built binaries first on PATH (`drctl`, `dr-agent`,
//! `dr-controller`, `erlmcp-standin`), NO_COLOR set, DRCTL_CONFIG unset, stdin not a terminal.
//! The docs start their own demo (`drctl demo --dir demo --detach`); whatever is still running
//! when a file is done is stopped. Each command must exit 0, or the status its `# exit N`
//! comment documents. Fences `sh no-run` (systemctl, apt-get, a real host) are not run but
//! every drctl command in them is parsed by the real drctl; `sh skip-test` (features not built
//! yet) are counted and listed. Conventions: `tests/src/doc_commands.rs`.
//!
//! One substitution: a leading `deploy/demo.sh` becomes `drctl demo --dir "$PWD/demo"`, which
//! is what the script runs after `cargo build --release` (checked below).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dr_tests::doc_commands::{DocCommand, Fence, extract, words};
use dr_tests::harness::bins::on_path;
use dr_tests::harness::{Bins, in_ci};

/// Fewer commands run than this means the extraction broke, not that the docs got shorter.
const MIN_COMMANDS_RUN: usize = 100;
/// The longest one file's commands may take together.
const FILE_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn relative(p: &Path) -> PathBuf {
    p.strip_prefix(repo()).unwrap_or(p).to_path_buf()
}

/// The command as run: `deploy/demo.sh ARGS` is `drctl demo --dir "$PWD/demo" ARGS` once built.
fn as_run(c: &DocCommand) -> String {
    match c.text.strip_prefix("deploy/demo.sh") {
        Some(rest) => format!("drctl demo --dir \"$PWD/demo\"{rest}"),
        None => c.text.clone(),
    }
}

/// One bash script for a file: each command's output to its own file, its status reported on
/// fd 3, and the first unexpected status ends the session.
fn script(commands: &[&DocCommand], out_dir: &Path) -> String {
    let mut s = String::from("exec 3>>\"$DOCS_REPORT\"\n");
    for (i, c) in commands.iter().enumerate() {
        s.push_str(&format!(
            "echo \"start {i}\" >&3\n{{\n{}\n}} >{out}/{i}.out 2>&1 </dev/null\n__rc=$?\n\
             echo \"end {i} $__rc\" >&3\n[ \"$__rc\" -eq {expect} ] || exit 99\n",
            as_run(c),
            out = out_dir.display(),
            expect = c.expect
        ));
    }
    s
}

struct Session {
    ran: usize,
    failures: Vec<String>,
}

/// Run the `sh` commands of one file in a fresh scratch directory.
fn run_file(bins: &Bins, file: &Path, commands: &[&DocCommand]) -> Session {
    let work = tempfile::Builder::new()
        .prefix("drdocs-")
        .tempdir()
        .unwrap();
    let out_dir = work.path().join(".docs-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let report = work.path().join(".docs-report");
    let script_path = work.path().join(".docs-script.sh");
    std::fs::write(&script_path, script(commands, &out_dir)).unwrap();
    let path = format!(
        "{}:{}",
        bins.dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["--noprofile", "--norc"])
        .arg(&script_path)
        .current_dir(work.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("DOCS_REPORT", &report)
        .env_remove("DRCTL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > FILE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // stop the demo the doc started, if it is still running
    if work.path().join("demo/demo.json").exists() {
        let _ = Command::new(bins.drctl())
            .args(["demo", "--stop", "--dir"])
            .arg(work.path().join("demo"))
            .output();
    }
    let report = std::fs::read_to_string(&report).unwrap_or_default();
    let mut ran = 0;
    let mut failures = Vec::new();
    let mut last_started = None;
    for line in report.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["start", i] => last_started = i.parse::<usize>().ok(),
            ["end", i, rc] => {
                let i: usize = i.parse().unwrap();
                let rc: i32 = rc.parse().unwrap();
                ran += 1;
                last_started = None;
                let c = commands[i];
                if rc != c.expect {
                    let output = std::fs::read_to_string(out_dir.join(format!("{i}.out")))
                        .unwrap_or_default();
                    failures.push(format!(
                        "{}: exit {rc}, documented {}\n  $ {}\n{}",
                        c.location(),
                        c.expect,
                        c.text.replace('\n', "\n    "),
                        indent(&output)
                    ));
                }
            }
            _ => {}
        }
    }
    if status.is_some() && ran < commands.len() && failures.is_empty() {
        failures.push(format!(
            "{}: the session ended after {ran} of {} commands (an `exit` in the docs?)",
            relative(file).display(),
            commands.len()
        ));
    }
    if status.is_none() {
        let what = last_started
            .map(|i| format!("{}: `{}`", commands[i].location(), commands[i].text))
            .unwrap_or_else(|| "before the first command".into());
        failures.push(format!(
            "{}: not done after {} s; running {what}",
            relative(file).display(),
            FILE_TIMEOUT.as_secs()
        ));
    }
    if !failures.is_empty() {
        eprintln!("(session kept in {})", work.keep().display());
    }
    Session { ran, failures }
}

fn indent(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(30)..];
    tail.iter().map(|l| format!("    | {l}\n")).collect()
}

/// drctl parses every drctl command of the no-run fences.
fn parse_no_run(bins: &Bins, commands: &[&DocCommand]) -> (usize, Vec<String>) {
    let mut parsed = 0;
    let mut failures = Vec::new();
    for c in commands {
        for piece in c.text.split("&&") {
            let w = words(piece.trim());
            if w.first().map(String::as_str) != Some("drctl") {
                continue;
            }
            let out = Command::new(bins.drctl())
                .args(&w[1..])
                .env("DRCTL_CHECK_ARGS", "1")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            parsed += 1;
            if !out.status.success() {
                failures.push(format!(
                    "{}: drctl does not accept `{}`:\n{}",
                    c.location(),
                    w.join(" "),
                    indent(&String::from_utf8_lossy(&out.stderr))
                ));
            }
        }
    }
    (parsed, failures)
}

#[test]
fn every_command_in_the_docs_runs() {
    let bins = Bins::locate();
    for tool in ["bash", "jq", "curl", "zstd", "tar", "sha256sum"] {
        if on_path(tool).is_none() {
            assert!(
                !in_ci(),
                "{tool} is needed to run the docs' commands (tests/run.sh installs it)"
            );
            eprintln!("{tool} not installed: the docs test is skipped");
            return;
        }
    }
    // the substitution above stays true only while demo.sh is build + `drctl demo --dir ./demo`
    let demo_sh = std::fs::read_to_string(repo().join("deploy/demo.sh")).unwrap();
    assert!(
        demo_sh.contains("args+=(--dir \"$PWD/demo\")"),
        "deploy/demo.sh changed: update as_run"
    );
    assert!(
        demo_sh.contains("exec target/release/drctl demo \"${args[@]}\""),
        "deploy/demo.sh changed: update as_run"
    );

    // DOCS_ONLY=docs/runbook.md: only the files whose path contains this (while editing them)
    let only = std::env::var("DOCS_ONLY").ok().filter(|s| !s.is_empty());
    let mut failures = Vec::new();
    let mut total_ran = 0;
    let mut summary = Vec::new();
    let mut skipped = Vec::new();
    for file in doc_files() {
        if only
            .as_deref()
            .is_some_and(|o| !relative(&file).display().to_string().contains(o))
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let all = extract(&relative(&file), &text);
        let run: Vec<&DocCommand> = all.iter().filter(|c| c.fence == Fence::Run).collect();
        let no_run: Vec<&DocCommand> = all.iter().filter(|c| c.fence == Fence::NoRun).collect();
        skipped.extend(
            all.iter()
                .filter(|c| c.fence == Fence::SkipTest)
                .map(|c| format!("{}: {}", c.location(), c.text)),
        );
        let (parsed, parse_failures) = parse_no_run(&bins, &no_run);
        failures.extend(parse_failures);
        let ran = if run.is_empty() {
            0
        } else {
            let s = run_file(&bins, &file, &run);
            failures.extend(s.failures);
            s.ran
        };
        total_ran += ran;
        summary.push(format!(
            "{}: {ran}/{} run, {} not runnable ({parsed} drctl commands parsed), {} skipped",
            relative(&file).display(),
            run.len(),
            no_run.len(),
            all.iter().filter(|c| c.fence == Fence::SkipTest).count()
        ));
    }
    eprintln!("{}", summary.join("\n"));
    if !skipped.is_empty() {
        eprintln!(
            "skip-test (not run, not parsed):\n  {}",
            skipped.join("\n  ")
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if only.is_some() {
        assert!(!in_ci(), "DOCS_ONLY is for editing docs, not for CI");
        return;
    }
    assert!(
        total_ran >= MIN_COMMANDS_RUN,
        "only {total_ran} commands ran (at least {MIN_COMMANDS_RUN} expected): {}",
        summary.join("; ")
    );
    for file in [
        "README.md",
        "docs/runbook.md",
        "docs/operations.md",
        "docs/architecture.md",
    ] {
        assert!(
            summary
                .iter()
                .any(|s| s.starts_with(file) && !s.contains(": 0/")),
            "{file} has commands that run: {summary:?}"
        );
    }
}
