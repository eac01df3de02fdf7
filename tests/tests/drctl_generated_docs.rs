//! Property: `drctl completions bash|zsh|fish` and `drctl man` come from the same clap
//! definition as the parser, so they name every subcommand drctl accepts. The list of
//! subcommands is read from `drctl --help` at every level, independently of the generators.
//! Neither needs a config or a controller.

use std::path::Path;
use std::process::{Command, Output};

use dr_tests::harness::Bins;

fn drctl(bins: &Bins, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bins.drctl())
        .args(args)
        .current_dir(cwd)
        .env_remove("DRCTL_CONFIG")
        .output()
        .unwrap()
}

/// Every subcommand path (`["backup", "create"]`, ...), from the "Commands:" section of each
/// level's `--help`.
fn subcommands(bins: &Bins, cwd: &Path, path: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let out = drctl(bins, cwd, &args);
    assert!(out.status.success(), "drctl {}", args.join(" "));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut found = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if line.trim().is_empty() {
                break;
            }
            let name = line.split_whitespace().next().unwrap_or_default();
            if name == "help" || !line.starts_with("  ") || line.starts_with("   ") {
                continue;
            }
            let mut p = path.to_vec();
            p.push(name.to_string());
            found.push(p.clone());
            found.extend(subcommands(bins, cwd, &p));
        }
    }
    found
}

#[test]
fn completions_and_man_pages_name_every_subcommand() {
    let bins = Bins::locate();
    let cwd = tempfile::tempdir().unwrap();
    let all = subcommands(&bins, cwd.path(), &[]);
    let names: Vec<String> = all.iter().map(|p| p.join(" ")).collect();
    for expected in [
        "status",
        "watch",
        "backup create",
        "controller status",
        "pki issue",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    for shell in ["bash", "zsh", "fish"] {
        let out = drctl(&bins, cwd.path(), &["completions", shell]);
        assert!(out.status.success(), "completions {shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.len() > 1000, "{shell} completions are not empty");
        for p in &all {
            let leaf = p.last().unwrap();
            assert!(
                script.contains(leaf.as_str()),
                "{shell} completions name `{}`",
                p.join(" ")
            );
        }
    }
    let out = drctl(&bins, cwd.path(), &["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    // one page on stdout: every top-level subcommand in its SUBCOMMANDS section
    let out = drctl(&bins, cwd.path(), &["man"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "roff: {page:.80}"
    );
    assert!(page.contains(".TH drctl 1"), "{page:.200}");
    assert!(
        page.contains("Exit status"),
        "the exit codes are in the page"
    );
    for p in all.iter().filter(|p| p.len() == 1) {
        let reference = format!("drctl\\-{}(1)", p[0].replace('-', "\\-"));
        assert!(page.contains(&reference), "man page lists {reference}");
    }

    // one page per command with --dir
    let dir = cwd.path().join("man1");
    let out = drctl(&bins, cwd.path(), &["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success());
    for p in &all {
        let file = dir.join(format!("drctl-{}.1", p.join("-")));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(".TH drctl-"),
            "{} is a man page",
            file.display()
        );
        assert!(text.contains(".SH SYNOPSIS"), "{}", file.display());
    }
    assert!(dir.join("drctl.1").is_file());
}
