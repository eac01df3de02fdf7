//! Property: no config text makes `dr-agent`, `dr-controller` or `drctl` panic while parsing it,
//! and every refusal points somewhere: it names a key or a line, and it is one line (the
//! binaries print it as their only output before exiting with code 2).
//!
//! Inputs: the documented example configs with lines removed, duplicated, swapped or added,
//! values replaced by others of every TOML type and edge (huge numbers, NaN, dates, escapes,
//! newlines, empty strings), and characters inserted or removed anywhere; and arbitrary text.
//! `PROPTEST_CASES` sets the number of cases per property (default 256; see tests/README.md).

use std::path::Path;

use dr_agent::config::AgentConfig;
use dr_controller::config::ControllerConfig;
use dr_proto::config_file::ConfigError;
use drctl::config::DrctlConfig;
use proptest::prelude::*;

const AGENT: &str = include_str!("../../deploy/agent.example.toml");
const AGENT_ERLMCP: &str = include_str!("../../deploy/agent.erlmcp.example.toml");
const CONTROLLER: &str = include_str!("../../deploy/controller.example.toml");
const DRCTL: &str = include_str!("../../deploy/drctl.example.toml");

/// Values of every TOML type, at the edges validators care about.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "65536",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "1e400",
    "nan",
    "inf",
    "-inf",
    "0.5",
    "-0.0",
    "\"\"",
    "\"x\"",
    "\"a\\nb\"",
    "\"../../etc\"",
    "\"/etc/passwd\"",
    "\"https://\"",
    "\"http://h:1\"",
    "\"https://[::1]:7400\"",
    "\"https://h:99999\"",
    "\"s3://\"",
    "\"file://\"",
    "[]",
    "[1, \"x\"]",
    "[\"\"]",
    "{}",
    "{ a = 1 }",
    "true",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "'''multi\nline'''",
    "\"\\u00e9\\ud7ff\"",
    "\"é😀\"",
    "\"(\"",
    "\"[a-\"",
    "\"a:b/1\"",
];

/// Whole lines: headers, keys at odd places, broken syntax.
const LINES: &[&str] = &[
    "[x]",
    "[[group]]",
    "name = \"g\"",
    "[service]",
    "[tls]",
    "[backup]",
    "[backup.s3]",
    "[erlang]",
    "[cluster]",
    "[[notify.receiver]]",
    "url = \"http://x\"",
    "a.b.c = 1",
    "= 1",
    "[",
    "\"",
    "key = ",
    "controllers = []",
    "[probes]",
    "window = 0",
    "[lease]",
    "[hooks.promote]",
    "command = []",
    "store = \"s3://b/p\"",
    "[thresholds.queue_depth]",
    "yellow = 5",
    "red = 1",
    "join = true",
    "id = \"a b\"",
    "name = \"a\\nb\"",
];

/// Characters that change the meaning of what follows.
const CHARS: &[&str] = &[
    "\"", "'", "[", "]", "=", "\n", "#", "\\", "{", "}", ",", ".", "é", "\0", "\r", " ", "\t",
];

#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertLine(usize, usize),
    ReplaceValue(usize, usize),
    InsertChars(usize, usize),
    DeleteChars(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let one = prop_oneof![
        2 => any::<usize>().prop_map(Edit::DeleteLine),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        2 => (any::<usize>(), 0..LINES.len()).prop_map(|(at, l)| Edit::InsertLine(at, l)),
        4 => (any::<usize>(), 0..VALUES.len()).prop_map(|(at, v)| Edit::ReplaceValue(at, v)),
        2 => (any::<usize>(), 0..CHARS.len()).prop_map(|(at, c)| Edit::InsertChars(at, c)),
        1 => (any::<usize>(), 1usize..20).prop_map(|(at, n)| Edit::DeleteChars(at, n)),
    ];
    proptest::collection::vec(one, 1..5)
}

/// The nearest character boundary at or before `at` (modulo the length).
fn boundary(s: &str, at: usize) -> usize {
    let mut i = at % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::InsertLine(at, l) => lines.insert(at % (lines.len() + 1), LINES[*l].into()),
            Edit::ReplaceValue(i, v) if !lines.is_empty() => {
                let line = &mut lines[i % n];
                if let Some((key, _)) = line.split_once('=') {
                    *line = format!("{key}= {}", VALUES[*v]);
                }
            }
            Edit::InsertChars(at, c) => {
                let mut text = lines.join("\n");
                let at = boundary(&text, *at);
                text.insert_str(at, CHARS[*c]);
                lines = text.lines().map(str::to_owned).collect();
            }
            Edit::DeleteChars(at, len) => {
                let mut text = lines.join("\n");
                let from = boundary(&text, *at);
                let to = boundary(&text, (from + len).min(text.len()));
                text.replace_range(from..to.max(from), "");
                lines = text.lines().map(str::to_owned).collect();
            }
            _ => {}
        }
    }
    lines.join("\n") + "\n"
}

/// The refusal points at a key or a line and fits on one line.
fn points_somewhere(e: &ConfigError) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    prop_assert!(!shown.contains('\n'), "more than one line: {:?}", shown);
    let names_key = e
        .key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != "." && !k.contains(char::is_whitespace));
    let names_line = e.key.is_none() && e.problem.contains("line ");
    prop_assert!(
        names_key || names_line,
        "names neither a key nor a line: {:?}",
        e
    );
    Ok(())
}

fn all_parsers(dir: &Path, text: &str) -> Result<(), TestCaseError> {
    for insecure_dev in [false, true] {
        if let Err(e) = AgentConfig::parse(&dir.join("agent.toml"), text, insecure_dev) {
            points_somewhere(&e)?;
        }
        if let Err(e) = ControllerConfig::parse(&dir.join("controller.toml"), text, insecure_dev) {
            points_somewhere(&e)?;
        }
        if let Err(e) = DrctlConfig::parse(&dir.join("drctl.toml"), text, insecure_dev) {
            points_somewhere(&e)?;
        }
    }
    Ok(())
}

fn base() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(AGENT),
        Just(AGENT_ERLMCP),
        Just(CONTROLLER),
        Just(DRCTL)
    ]
}

proptest! {
    #[test]
    fn edited_example_configs(base in base(), edits in edits()) {
        let dir = tempfile::tempdir().expect("temp dir");
        all_parsers(dir.path(), &apply(base, &edits))?;
    }

    #[test]
    fn arbitrary_text(text in "(\\PC|[\n\"'=\\[\\]#.])*") {
        let dir = tempfile::tempdir().expect("temp dir");
        all_parsers(dir.path(), &text)?;
    }
}

#[test]
fn the_examples_themselves_parse() {
    let dir = tempfile::tempdir().unwrap();
    AgentConfig::parse(&dir.path().join("agent.toml"), AGENT, false).unwrap();
    ControllerConfig::parse(&dir.path().join("controller.toml"), CONTROLLER, false).unwrap();
    DrctlConfig::parse(&dir.path().join("drctl.toml"), DRCTL, false).unwrap();
}
