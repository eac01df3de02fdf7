//! Just enough of the Prometheus text exposition format to read gauges and counters by name:
//! `name{labels} value [timestamp]`, comments and blank lines skipped.

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// The raw label block without braces, e.g. `type="total"`; empty when unlabelled.
    pub labels: &'a str,
    pub value: f64,
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parse one line; `None` for comments, blanks and lines that do not parse.
pub fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) if line[..open].find(' ').is_none() => {
            let close = line[open..].rfind('}')? + open;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        _ => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, "", rest)
        }
    };
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample {
        name: name.trim(),
        labels,
        value,
    })
}

/// The value of metric `name`: the unlabelled sample, else one labelled `type="total"`, else
/// the sum of all samples of that name.
pub fn value_of(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<Sample<'_>> = text
        .lines()
        .filter_map(parse_line)
        .filter(|s| s.name == name)
        .collect();
    if samples.is_empty() {
        return None;
    }
    if let Some(s) = samples.iter().find(|s| s.labels.is_empty()) {
        return Some(s.value);
    }
    if let Some(s) = samples
        .iter()
        .find(|s| s.labels.split(',').any(|l| l.trim() == "type=\"total\""))
    {
        return Some(s.value);
    }
    Some(samples.iter().map(|s| s.value).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP erlmcp_memory_bytes Memory\n\
# TYPE erlmcp_memory_bytes gauge\n\
erlmcp_memory_bytes{type=\"total\"} 1.5e6\n\
erlmcp_memory_bytes{type=\"processes\"} 1000\n\
erlmcp_connections 12\n\
erlmcp_queue_depth{proc=\"a\"} 3 1700000000000\n\
erlmcp_queue_depth{proc=\"b\"} 4\n\
\n\
erlmcp_error_rate NaN\n";

    #[test]
    fn reads_values_by_name() {
        assert_eq!(value_of(TEXT, "erlmcp_memory_bytes"), Some(1.5e6));
        assert_eq!(value_of(TEXT, "erlmcp_connections"), Some(12.0));
        assert_eq!(value_of(TEXT, "erlmcp_queue_depth"), Some(7.0));
        assert!(value_of(TEXT, "erlmcp_error_rate").unwrap().is_nan());
        assert_eq!(value_of(TEXT, "erlmcp_uptime_seconds"), None);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert_eq!(parse_line("not a metric line at all"), None);
        assert_eq!(parse_line("x{a=\"b\" 3"), None);
        assert_eq!(parse_line("x"), None);
    }
}
