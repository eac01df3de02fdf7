//! The shell commands shown in the Markdown docs, as `tests/tests/docs.rs` runs them.
//!
//! Fences (the info string after the backticks):
//! - `sh`: run. Each command must exit 0, or N when its trailing comment starts with `exit N`
//!   (`drctl failover   # exit 2: no --yes and no terminal`).
//! - `sh no-run`: cannot run in a test (systemctl, apt-get, a real host's paths, release builds,
//!   commands that run until Ctrl-C). Not run; every `drctl` command in it is still parsed by the
//!   real drctl, so its flags cannot rot.
//! - `sh skip-test`: a feature that is not built yet. Neither run nor parsed; counted.
//!
//! Any other fence (`toml`, `text`, a bare one) holds no commands.
//! A command is one line; a trailing `\` continues it, and a heredoc (`<<EOF`, `<<'EOF'`) runs
//! to its end marker. Blank lines and `#` comment lines separate commands.

use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    Run,
    NoRun,
    SkipTest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocCommand {
    pub file: PathBuf,
    /// 1-based line of the command's first line in the file.
    pub line: usize,
    pub fence: Fence,
    /// The command as the shell gets it (continuations and heredoc included).
    pub text: String,
    /// Expected exit status.
    pub expect: i32,
}

impl DocCommand {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

fn fence_of(info: &str) -> Option<Fence> {
    let mut words = info.split_whitespace();
    match words.next() {
        Some("sh") | Some("bash") | Some("shell") => {}
        _ => return None,
    }
    let rest: Vec<&str> = words.collect();
    Some(if rest.contains(&"skip-test") {
        Fence::SkipTest
    } else if rest.contains(&"no-run") {
        Fence::NoRun
    } else {
        Fence::Run
    })
}

/// The heredoc end marker a line opens, if any (`<<EOF`, `<<'EOF'`, `<<-"EOF"`).
fn heredoc_marker(line: &str) -> Option<String> {
    let at = line.find("<<")?;
    let rest = line[at + 2..].trim_start_matches('-').trim_start();
    let marker: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!marker.is_empty()).then_some(marker)
}

/// The trailing comment of a command line (outside quotes), if any.
fn trailing_comment(line: &str) -> Option<&str> {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return Some(&line[i + 1..]),
            _ => {}
        }
        prev = c;
    }
    None
}

/// `# exit N ...` at the end of the command's first line.
fn expected_status(first_line: &str) -> i32 {
    trailing_comment(first_line)
        .and_then(|c| c.trim().strip_prefix("exit "))
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Every command in the shell fences of `markdown` (read from `file`, for locations).
pub fn extract(file: &Path, markdown: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let lines: Vec<&str> = markdown.lines().collect();
    let mut i = 0;
    let mut fence: Option<Fence> = None;
    let mut in_other_fence = false;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            if fence.is_some() || in_other_fence {
                fence = None;
                in_other_fence = false;
            } else {
                fence = fence_of(info);
                in_other_fence = fence.is_none();
            }
            i += 1;
            continue;
        }
        let Some(kind) = fence else {
            i += 1;
            continue;
        };
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut text = line.to_string();
        while text.ends_with('\\') && i + 1 < lines.len() {
            i += 1;
            text.push('\n');
            text.push_str(lines[i]);
        }
        if let Some(marker) = heredoc_marker(lines[start]) {
            while i + 1 < lines.len() {
                i += 1;
                text.push('\n');
                text.push_str(lines[i]);
                if lines[i].trim() == marker {
                    break;
                }
            }
        }
        out.push(DocCommand {
            file: file.to_path_buf(),
            line: start + 1,
            fence: kind,
            text,
            expect: expected_status(lines[start]),
        });
        i += 1;
    }
    out
}

/// The words of a simple command as the shell would split them (quotes and backslashes), up to
/// the first operator (`|`, `>`, `<`, `;`, `&`) or comment. Expansions are left as written.
pub fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has_word = false;
    let mut chars = command.chars().peekable();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\'' if !double => {
                single = !single;
                has_word = true;
            }
            '"' if !single => {
                double = !double;
                has_word = true;
            }
            '\\' if !single => match chars.next() {
                Some('\n') => {}
                Some(n) => {
                    cur.push(n);
                    has_word = true;
                }
                None => {}
            },
            c if single || double => cur.push(c),
            '|' | '>' | '<' | ';' | '&' => break,
            '#' if !has_word => break,
            c if c.is_whitespace() => {
                if has_word {
                    out.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            c => {
                cur.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"# Title

```sh
drctl status            # table
drctl failover          # exit 2: no --yes
drctl restore --host erlmcp2 \
  --yes --wait
# a comment line

cat > f.toml <<'EOF'
a = 1
EOF
```

```toml
not = "a command"
```

```sh no-run
systemctl start dr-agent
```

```sh skip-test
drctl controller backup --store file:///x
```
"#;

    #[test]
    fn commands_come_out_with_their_line_fence_and_status() {
        let c = extract(Path::new("d.md"), DOC);
        let got: Vec<(usize, Fence, &str, i32)> = c
            .iter()
            .map(|c| (c.line, c.fence, c.text.as_str(), c.expect))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, Fence::Run, "drctl status            # table", 0),
                (
                    5,
                    Fence::Run,
                    "drctl failover          # exit 2: no --yes",
                    2
                ),
                (
                    6,
                    Fence::Run,
                    "drctl restore --host erlmcp2 \\\n  --yes --wait",
                    0
                ),
                (10, Fence::Run, "cat > f.toml <<'EOF'\na = 1\nEOF", 0),
                (20, Fence::NoRun, "systemctl start dr-agent", 0),
                (
                    24,
                    Fence::SkipTest,
                    "drctl controller backup --store file:///x",
                    0
                ),
            ]
        );
    }

    #[test]
    fn words_split_like_the_shell_up_to_an_operator() {
        assert_eq!(
            words("drctl --config '/etc/a b.toml' status -o json | jq ."),
            vec!["drctl", "--config", "/etc/a b.toml", "status", "-o", "json"]
        );
        assert_eq!(
            words("drctl completions bash > /etc/bash_completion.d/drctl"),
            vec!["drctl", "completions", "bash"]
        );
        assert_eq!(
            words("drctl restore --host h \\\n  --yes   # why"),
            vec!["drctl", "restore", "--host", "h", "--yes"]
        );
        assert_eq!(words(r#"echo "a#b" ''"#), vec!["echo", "a#b", ""]);
    }

    #[test]
    fn a_hash_inside_quotes_is_not_a_comment() {
        assert_eq!(expected_status("echo '# exit 3'"), 0);
        assert_eq!(expected_status("false   # exit 1 (on purpose)"), 1);
    }
}
