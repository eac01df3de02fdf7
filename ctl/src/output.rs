//! Output helpers: `-o table|json`, colours only on a terminal and never with `NO_COLOR`.

use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug)]
pub struct Colors {
    on: bool,
}

impl Colors {
    pub fn detect() -> Colors {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Colors {
            on: !no_color && std::io::stdout().is_terminal(),
        }
    }

    pub fn paint(&self, text: &str, code: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn health(&self, health: &str) -> String {
        let code = match health {
            "green" => "32",
            "yellow" => "33",
            "red" => "31;1",
            _ => "90",
        };
        self.paint(health, code)
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(text, "1")
    }
}

/// Left-aligned columns; widths from the visible text (colour codes excluded).
pub fn table(header: &[&str], rows: &[Vec<(String, String)>]) -> String {
    // each cell: (visible text, rendered text)
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (visible, _)) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(visible.chars().count());
            }
        }
    }
    let mut out = String::new();
    let last = header.len().saturating_sub(1);
    for (i, h) in header.iter().enumerate() {
        out.push_str(h);
        if i < last {
            out.push_str(&" ".repeat(widths[i] - h.chars().count() + 2));
        }
    }
    out.push('\n');
    for row in rows {
        for (i, (visible, rendered)) in row.iter().enumerate() {
            out.push_str(rendered);
            if i < last {
                out.push_str(&" ".repeat(widths[i].saturating_sub(visible.chars().count()) + 2));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_visible_width() {
        let rows = vec![
            vec![
                ("a".to_string(), "a".to_string()),
                ("red".into(), "\x1b[31mred\x1b[0m".into()),
            ],
            vec![
                ("long-host".to_string(), "long-host".to_string()),
                ("green".into(), "green".into()),
            ],
        ];
        let t = table(&["HOST", "HEALTH"], &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "HOST       HEALTH");
        assert_eq!(lines[2], "long-host  green");
        assert!(lines[1].starts_with("a          \x1b[31mred"));
    }
}
