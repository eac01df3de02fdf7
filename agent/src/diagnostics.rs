//! The runbook's LOGS & DIAGNOSTICS, as commands: the service log (tail, grep, follow) and a
//! diagnostics bundle (tar.zst: the last N MiB of the log, config files with secrets redacted,
//! `erl_crash.dump` if present, a metrics snapshot, the probe report, role and host facts),
//! both streamed back in chunks. Every byte of both passes through a [`Scrubber`] first: no
//! secret the agent knows of leaves the host this way.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use dr_proto::domain::{AgentMessage, CommandUpdate, UpdateKind};
use dr_proto::pb;
use regex::Regex;
use tokio::sync::mpsc;

use crate::commands::Ctx;
use crate::config::AgentConfig;
use crate::scrub::{Scrubber, setcookie_values};

const CHUNK: usize = 64 * 1024;
const MAX_LINES: u32 = 100_000;
const FOLLOW_LIMIT: Duration = Duration::from_secs(30 * 60);

fn chunk_msg(id: &str, data: Vec<u8>) -> pb::AgentMessage {
    AgentMessage::CommandUpdate(CommandUpdate {
        command_id: id.to_string(),
        update: UpdateKind::Chunk(data),
    })
    .into()
}

/// Replace secret values in config text: cookies, passwords, tokens, keys. A keyword whose value
/// is not on its line (`{secret_access_key,` then the value on the next line, as formatters wrap
/// long Erlang terms) has the next line redacted as well.
pub fn redact(text: &str) -> String {
    let keyword = Regex::new(
        r"(?i)(cookie|secret|passw|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)",
    )
    .expect("static regex");
    let aws = Regex::new(r"AKIA[0-9A-Z]{16}").expect("static regex");
    let setcookie = Regex::new(r"(?i)(-setcookie)\s+\S+").expect("static regex");
    let mut value_follows = false;
    text.lines()
        .map(|line| {
            if value_follows {
                if line.trim().is_empty() {
                    return line.to_string();
                }
                value_follows = false;
                return "<redacted>".to_string();
            }
            let line = setcookie.replace_all(line, "$1 <redacted>").into_owned();
            let line = aws.replace_all(&line, "<redacted>").into_owned();
            if !keyword.is_match(&line) || line.contains("<redacted>") {
                return line;
            }
            // keep the key, drop the value: `k = v`, `k: v`, `{k, v}`
            let cut = line
                .find(['=', ':'])
                .or_else(|| line.find(','))
                .map(|i| i + 1);
            match cut {
                Some(i) => {
                    value_follows = line[i..].trim().is_empty();
                    format!("{} <redacted>", &line[..i])
                }
                None => "<redacted>".to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The secrets the agent can name: its own (cookie, S3 keys) and the cookies set in the config
/// files it bundles (vm.args `-setcookie`), which are the service's cookie.
pub fn scrubber(config: &AgentConfig) -> Scrubber {
    let from_files = config
        .diagnostics
        .config_files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| setcookie_values(&t));
    Scrubber::for_agent(config, from_files)
}

fn last_lines(path: &Path, lines: u32) -> std::io::Result<Vec<String>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let take = (u64::from(lines) * 400)
        .clamp(64 * 1024, 8 * 1024 * 1024)
        .min(len);
    f.seek(SeekFrom::Start(len - take))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let skip_partial = usize::from(take < len && !all.is_empty());
    let all = &all[skip_partial..];
    Ok(all[all.len().saturating_sub(lines as usize)..]
        .iter()
        .map(|s| s.to_string())
        .collect())
}

/// `drctl logs HOST [--lines N] [--grep RE] [--follow]`.
pub async fn read_logs(
    ctx: &Ctx,
    id: &str,
    lines: u32,
    grep: &str,
    follow: bool,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<String, String> {
    let Some(path) = ctx.config.service.log_file.clone() else {
        return Err("no service.log_file configured".into());
    };
    let filter = if grep.is_empty() {
        None
    } else {
        Some(
            Regex::new(grep)
                .map_err(|e| format!("--grep {grep:?} is not a valid regular expression: {e}"))?,
        )
    };
    let lines = if lines == 0 {
        100
    } else {
        lines.min(MAX_LINES)
    };
    let keep = |l: &str| filter.as_ref().is_none_or(|r| r.is_match(l));
    // scrubbed before the filter sees them: --grep must not probe for a secret either
    let scrub = scrubber(&ctx.config);
    let picked: Vec<String> = {
        let p2 = path.clone();
        let all = tokio::task::spawn_blocking(move || {
            last_lines(&p2, MAX_LINES.min(lines.saturating_mul(20).max(lines)))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut v: Vec<String> = all
            .into_iter()
            .map(|l| scrub.text(&l))
            .filter(|l| keep(l))
            .collect();
        let n = v.len();
        v.drain(..n.saturating_sub(lines as usize));
        v
    };
    let mut sent = 0usize;
    let mut buf = Vec::new();
    for l in &picked {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
        if buf.len() >= CHUNK {
            sent += buf.len();
            out.send(chunk_msg(id, std::mem::take(&mut buf)))
                .await
                .map_err(|_| "session closed")?;
        }
    }
    if !buf.is_empty() {
        sent += buf.len();
        out.send(chunk_msg(id, std::mem::take(&mut buf)))
            .await
            .map_err(|_| "session closed")?;
    }
    if !follow {
        return Ok(format!("{} line(s), {sent} bytes", picked.len()));
    }
    // follow: new lines as they come, until the session ends or the time limit
    let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let mut partial = String::new();
    while started.elapsed() < FOLLOW_LIMIT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if out.is_closed() {
            break;
        }
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0;
        }
        if len == offset {
            continue;
        }
        let _ = f.seek(SeekFrom::Start(offset));
        let mut b = Vec::new();
        let _ = f.take(CHUNK as u64 * 4).read_to_end(&mut b);
        offset += b.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&b));
        let Some(end) = partial.rfind('\n') else {
            continue;
        };
        let complete: String = partial.drain(..=end).collect();
        let text: String = complete
            .lines()
            .map(|l| scrub.text(l))
            .filter(|l| keep(l))
            .map(|l| format!("{l}\n"))
            .collect();
        if !text.is_empty() && out.send(chunk_msg(id, text.into_bytes())).await.is_err() {
            break;
        }
    }
    Ok("follow ended".into())
}

/// Streams what it is given as chunk messages (used from a blocking thread).
struct ChunkWriter {
    id: String,
    out: mpsc::Sender<pb::AgentMessage>,
    buf: Vec<u8>,
    total: u64,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.total += data.len() as u64;
        self.out
            .blocking_send(chunk_msg(&self.id, data))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "session closed"))
    }
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_cksum();
    tar.append_data(&mut h, name, data)
}

fn tail_bytes(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut b = Vec::new();
    f.read_to_end(&mut b)?;
    Ok(b)
}

/// `drctl diag HOST -o FILE.tar.zst`.
pub async fn bundle(
    ctx: &Ctx,
    id: &str,
    log_mib: u32,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<String, String> {
    let metrics = match &ctx.config.service.metrics_url {
        Some(uri) => match dr_proto::http_client::get(uri, Duration::from_secs(2)).await {
            Ok(a) => String::from_utf8_lossy(&a.body).into_owned(),
            Err(e) => format!("# metrics scrape failed: {e}\n"),
        },
        None => "# no service.metrics_url configured\n".into(),
    };
    let report = serde_json::to_string_pretty(&ctx.state.last_report()).unwrap_or_default();
    let role = serde_json::to_string_pretty(&ctx.state.role_view()).unwrap_or_default();
    let config = ctx.config.clone();
    let writer = ChunkWriter {
        id: id.to_string(),
        out: out.clone(),
        buf: Vec::new(),
        total: 0,
    };
    let log_max = u64::from(if log_mib == 0 { 10 } else { log_mib.min(1024) }) * 1024 * 1024;
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut names: Vec<String> = Vec::new();
        let enc = zstd::stream::write::Encoder::new(writer, 3)?;
        let mut tar = tar::Builder::new(enc);
        let scrub = scrubber(&config);
        // every member but the crash dump: scrubbed here
        let add = |tar: &mut tar::Builder<_>,
                   names: &mut Vec<String>,
                   name: String,
                   data: &[u8]|
         -> std::io::Result<()> {
            add_bytes(tar, &name, &scrub.bytes(data))?;
            names.push(name);
            Ok(())
        };
        if let Some(log) = &config.service.log_file {
            match tail_bytes(log, log_max) {
                Ok(b) => add(&mut tar, &mut names, "logs/erlmcp.log".into(), &b)?,
                Err(e) => add(
                    &mut tar,
                    &mut names,
                    "logs/erlmcp.log.error".into(),
                    format!("{}: {e}\n", log.display()).as_bytes(),
                )?,
            }
        }
        let agent_cfg = std::fs::read_to_string(&config.file).unwrap_or_default();
        add(
            &mut tar,
            &mut names,
            "config/agent.toml".into(),
            redact(&agent_cfg).as_bytes(),
        )?;
        for f in &config.diagnostics.config_files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "config".into());
            match std::fs::read_to_string(f) {
                Ok(t) => add(
                    &mut tar,
                    &mut names,
                    format!("config/{name}"),
                    redact(&t).as_bytes(),
                )?,
                Err(e) => add(
                    &mut tar,
                    &mut names,
                    format!("config/{name}.error"),
                    format!("{}: {e}\n", f.display()).as_bytes(),
                )?,
            }
        }
        if let Some(dump) = &config.diagnostics.crash_dump
            && dump.is_file()
        {
            // OTP writes the cookie atom into every crash dump; masked as it streams (same length)
            let mut h = tar::Header::new_gnu();
            let f = std::fs::File::open(dump)?;
            h.set_metadata(&f.metadata()?);
            tar.append_data(&mut h, "erl_crash.dump", scrub.masking_reader(f))?;
            names.push("erl_crash.dump".into());
        }
        add(
            &mut tar,
            &mut names,
            "metrics.txt".into(),
            metrics.as_bytes(),
        )?;
        add(
            &mut tar,
            &mut names,
            "probe-report.json".into(),
            report.as_bytes(),
        )?;
        add(&mut tar, &mut names, "role.json".into(), role.as_bytes())?;
        let facts = format!(
            "host: {}\ngroup: {}\nagent: {}\nos: {} {}\n",
            config.host,
            config.group,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        add(&mut tar, &mut names, "host.txt".into(), facts.as_bytes())?;
        let enc = tar.into_inner()?;
        let mut writer = enc.finish()?;
        writer.flush()?;
        Ok(format!(
            "bundle of {} files, {} bytes: {}",
            names.len(),
            writer.total,
            names.join(", ")
        ))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("diagnostics bundle failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let text = "-name erlmcp@host\n-setcookie s3cr3tc00kie\n{cookie, 'abc123'}.\npassword = \"hunter2\"\naws = AKIAABCDEFGHIJKLMNOP\nport = 8080";
        let r = redact(text);
        for secret in ["s3cr3tc00kie", "abc123", "hunter2", "AKIAABCDEFGHIJKLMNOP"] {
            assert!(!r.contains(secret), "{secret} leaked: {r}");
        }
        assert!(r.contains("-name erlmcp@host"));
        assert!(r.contains("port = 8080"));
        assert!(r.contains("-setcookie <redacted>"));
    }

    #[test]
    fn a_value_wrapped_onto_the_next_line_is_redacted_too() {
        let text =
            "[{erlmcp, [\n  {secret_access_key,\n\n      \"wrappedvalue\"},\n  {port, 8080}\n]}].";
        let r = redact(text);
        assert!(!r.contains("wrappedvalue"), "{r}");
        assert!(r.contains("{port, 8080}"), "{r}");
    }
}
