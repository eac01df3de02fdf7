//! Loading TOML config files so that every mistake comes back as one line naming the file, the
//! key and the problem (`agent.toml: key `service.health_url`: missing`), which the binaries
//! print before exiting with code 2.
//!
//! Environment overrides: a variable `<PREFIX>__A__B=value` sets key `a.b` (the value is read as
//! a TOML value when it parses as one, else as a string). The prefix is `DR_AGENT`,
//! `DR_CONTROLLER` or `DRCTL`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config problem, pointing at the file and, when known, the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(
                f,
                "config {}: key `{}`: {}",
                self.file.display(),
                key,
                self.problem
            ),
            None => write!(f, "config {}: {}", self.file.display(), self.problem),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn key(file: &Path, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            key: Some(printable(key.into())),
            problem: single_line(problem.into()),
        }
    }

    pub fn file(file: &Path, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            key: None,
            problem: single_line(problem.into()),
        }
    }
}

/// The binaries print a config error as their one line of output, so a problem that arrives on
/// several lines (a regex parser's, with a caret under the bad spot) is joined.
fn single_line(problem: String) -> String {
    if !problem.contains(['\n', '\r']) {
        return problem;
    }
    problem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A key as written in the file, control characters escaped (TOML allows any in quoted keys).
fn printable(key: String) -> String {
    if !key.contains(char::is_control) {
        return key;
    }
    key.escape_default().to_string()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parse `text` (the contents of `file`) into `T`, applying `<env_prefix>__...` overrides.
pub fn parse<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    env_prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let e: toml::de::Error = e;
            let at = e
                .span()
                .map(|s| {
                    let (l, c) = line_col(text, s.start);
                    format!("line {l} column {c}: ")
                })
                .unwrap_or_default();
            return Err(ConfigError::file(
                file,
                format!("not valid TOML: {at}{}", one_line(e.message())),
            ));
        }
    };
    apply_env_overrides(&mut table, env_prefix, env);
    let value = toml::Value::Table(table);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = one_line(&e.inner().to_string());
        // serde names the missing/unknown field in the message, not in the path.
        let (key, problem) = if let Some(field) = backticked(&message, "missing field `") {
            (join_key(&path, field), "missing (required)".to_string())
        } else if message.starts_with("unknown field `") {
            // The path already ends with the unknown key.
            (
                path,
                format!(
                    "unknown key ({})",
                    message.split_once(", ").map(|x| x.1).unwrap_or("")
                ),
            )
        } else {
            (path, message)
        };
        ConfigError::key(file, key, problem)
    })
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn join_key(path: &str, field: &str) -> String {
    if path == "." || path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Read `file` and parse it (see [`parse`]), with overrides from the process environment.
pub fn load<T: DeserializeOwned>(file: &Path, env_prefix: &str) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::file(file, format!("cannot read: {e}")))?;
    parse(file, &text, env_prefix, std::env::vars())
}

fn apply_env_overrides(
    table: &mut toml::Table,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) {
    let marker = format!("{prefix}__");
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(&marker) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        set_path(table, &path, value);
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        cur = entry.as_table_mut().expect("just made a table");
    }
    cur.insert(last.clone(), value);
}

/// Resolve a path from a config file: absolute stays, relative is taken from the file's folder.
pub fn resolve(config_file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    config_file
        .parent()
        .map(|d| d.join(p))
        .unwrap_or_else(|| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        url: String,
        #[serde(default)]
        port: u16,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        host: String,
        service: Inner,
        #[serde(default)]
        list: Vec<u32>,
    }

    fn p(text: &str) -> Result<Cfg, ConfigError> {
        parse(Path::new("/etc/x.toml"), text, "DR_T", Vec::new())
    }

    #[test]
    fn missing_nested_key_is_named() {
        let e = p("host = 'a'\n[service]\nport = 1\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service.url"));
        assert_eq!(
            e.to_string(),
            "config /etc/x.toml: key `service.url`: missing (required)"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let e = p("host = 'a'\n[service]\nurl = 'u'\nport = 'x'\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service.port"));
        assert!(e.problem.contains("invalid type"), "{e}");
        let e = p("host = 'a'\nlist = [1, 'x']\n[service]\nurl = 'u'\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("list[1]"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = p("host = 'a'\n[service]\nurl = 'u'\nprot = 1\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service.prot"));
        assert!(e.problem.starts_with("unknown key"), "{e}");
    }

    #[test]
    fn multi_line_problems_and_odd_keys_are_shown_on_one_line() {
        // Found by tests/tests/config_parsing_properties.rs: a bad log.error_pattern printed the
        // regex parser's three-line message.
        let e = ConfigError::key(
            Path::new("a.toml"),
            "log.error_pattern",
            "regex parse error:\n    (?[i)\n      ^\nerror: unrecognized flag",
        );
        assert_eq!(
            e.to_string(),
            "config a.toml: key `log.error_pattern`: regex parse error: (?[i) ^ error: unrecognized flag"
        );
        let e = p("host = 'a'\n[service]\nurl = 'u'\n\"a\\nb\" = 1\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service.a\\nb"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn syntax_error_gives_line_and_column_on_one_line() {
        let e = p("host = 'a'\n[service\n").unwrap_err();
        assert_eq!(e.key, None);
        assert!(e.problem.contains("line 2"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn env_overrides_set_nested_keys_with_types() {
        let env = vec![
            ("DR_T__SERVICE__PORT".to_string(), "8080".to_string()),
            ("DR_T__HOST".to_string(), "b".to_string()),
            ("OTHER__HOST".to_string(), "z".to_string()),
        ];
        let c: Cfg = parse(
            Path::new("x"),
            "host = 'a'\n[service]\nurl = 'u'\n",
            "DR_T",
            env,
        )
        .unwrap();
        assert_eq!(c.host, "b");
        assert_eq!(c.service.port, 8080);
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        assert_eq!(
            resolve(Path::new("/etc/dr/agent.toml"), Path::new("pki/ca.pem")),
            PathBuf::from("/etc/dr/pki/ca.pem")
        );
        assert_eq!(
            resolve(Path::new("/etc/dr/agent.toml"), Path::new("/x/ca.pem")),
            PathBuf::from("/x/ca.pem")
        );
    }
}
