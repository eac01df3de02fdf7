//! Log probe: tails the service log (the runbook's `tail -f logs/erlmcp.log | grep ERROR`),
//! counts error lines per minute, keeps the last ones for reports, and with the service's
//! request counter turns them into an error rate. Follows rotation (a new inode or a shorter
//! file starts over) and reads a bounded amount per round.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dr_proto::domain::{LogFacts, LogProbe};
use regex::Regex;

/// At most this much new log is read per round.
const MAX_READ: u64 = 1024 * 1024;
const MAX_LINE: usize = 400;
const WINDOW: Duration = Duration::from_secs(60);

pub struct LogTail {
    path: PathBuf,
    pattern: Regex,
    keep: usize,
    inode: Option<u64>,
    offset: u64,
    /// Incomplete last line carried to the next round.
    partial: String,
    counts: VecDeque<(Instant, u32)>,
    requests: VecDeque<(Instant, f64)>,
    last: VecDeque<String>,
    lines_read: u64,
    since_start: u32,
    started: bool,
}

impl LogTail {
    pub fn new(path: PathBuf, pattern: Regex, keep: usize) -> LogTail {
        LogTail {
            path,
            pattern,
            keep,
            inode: None,
            offset: 0,
            partial: String::new(),
            counts: VecDeque::new(),
            requests: VecDeque::new(),
            last: VecDeque::new(),
            lines_read: 0,
            since_start: 0,
            started: false,
        }
    }

    /// The service (re)started: count errors from here for the post-start log check.
    pub fn mark_start(&mut self) {
        self.since_start = 0;
    }

    fn read_new(&mut self) -> std::io::Result<String> {
        let mut f = std::fs::File::open(&self.path)?;
        let meta = f.metadata()?;
        let rotated = self.inode.is_some_and(|i| i != meta.ino()) || meta.len() < self.offset;
        if self.inode.is_none() {
            // first look: start at the end, history is not news (but keep the last lines)
            self.offset = meta.len().saturating_sub(64 * 1024);
        } else if rotated {
            self.offset = 0;
            self.partial.clear();
        }
        self.inode = Some(meta.ino());
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(MAX_READ).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// One round; `requests_total` is the service's request counter if it has one.
    pub fn poll(&mut self, now: Instant, requests_total: Option<f64>) -> LogProbe {
        let first = !self.started;
        self.started = true;
        let text = match self.read_new() {
            Ok(t) => t,
            Err(e) => {
                return LogProbe {
                    result: Err(format!("{}: {e}", self.path.display())),
                };
            }
        };
        let mut data = std::mem::take(&mut self.partial);
        data.push_str(&text);
        let complete = match data.rfind('\n') {
            Some(i) => {
                self.partial = data[i + 1..].to_string();
                &data[..i]
            }
            None => {
                self.partial = data.clone();
                ""
            }
        };
        let mut errors = 0u32;
        for line in complete.lines() {
            self.lines_read += 1;
            if self.pattern.is_match(line) {
                let mut l = line.to_string();
                if l.len() > MAX_LINE {
                    let cut = (0..=MAX_LINE)
                        .rev()
                        .find(|i| l.is_char_boundary(*i))
                        .unwrap_or(0);
                    l.truncate(cut);
                }
                self.last.push_back(l);
                if !first {
                    errors += 1;
                }
            }
        }
        while self.last.len() > self.keep {
            self.last.pop_front();
        }
        self.since_start += errors;
        self.counts.push_back((now, errors));
        while self
            .counts
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            self.counts.pop_front();
        }
        let per_minute: u32 = self.counts.iter().map(|(_, n)| n).sum();
        let error_rate = requests_total.and_then(|total| {
            self.requests.push_back((now, total));
            while self
                .requests
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
            {
                self.requests.pop_front();
            }
            let (_, oldest) = self.requests.front()?;
            let served = total - oldest;
            (served > 0.0).then(|| (f64::from(per_minute) / served).min(1.0))
        });
        LogProbe {
            result: Ok(LogFacts {
                errors_last_minute: per_minute,
                error_rate,
                last_errors: self.last.iter().cloned().collect(),
                lines_read: self.lines_read,
                errors_since_start: self.since_start,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tail(path: PathBuf) -> LogTail {
        LogTail::new(path, Regex::new(r"\[error\]").unwrap(), 3)
    }

    #[test]
    fn counts_new_errors_keeps_the_last_lines_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("erlmcp.log");
        std::fs::write(&p, "old [error] before we started\n").unwrap();
        let mut t = tail(p.clone());
        let t0 = Instant::now();
        let r = t.poll(t0, None).result.unwrap();
        assert_eq!(r.errors_last_minute, 0, "history is not news");
        assert_eq!(r.last_errors.len(), 1);

        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        write!(
            f,
            "a [info] ok\nb [error] one\nc [error] two\nd [error] half"
        )
        .unwrap();
        let r = t
            .poll(t0 + Duration::from_secs(1), Some(100.0))
            .result
            .unwrap();
        assert_eq!(r.errors_last_minute, 2, "the unfinished line waits");
        writeln!(f, " finished").unwrap();
        let r = t
            .poll(t0 + Duration::from_secs(2), Some(200.0))
            .result
            .unwrap();
        assert_eq!(r.errors_last_minute, 3);
        assert_eq!(
            r.last_errors,
            vec!["b [error] one", "c [error] two", "d [error] half finished"]
        );
        assert_eq!(r.error_rate, Some(0.03));

        // rotation: a new file
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "x [error] after rotation\n").unwrap();
        let r = t.poll(t0 + Duration::from_secs(3), None).result.unwrap();
        assert_eq!(r.errors_since_start, 4);
        // errors age out of the minute
        let r = t.poll(t0 + Duration::from_secs(120), None).result.unwrap();
        assert_eq!(r.errors_last_minute, 0);
        t.mark_start();
        let r = t.poll(t0 + Duration::from_secs(121), None).result.unwrap();
        assert_eq!(r.errors_since_start, 0);
    }

    #[test]
    fn a_missing_log_is_a_clear_error() {
        let mut t = tail(PathBuf::from("/nonexistent/erlmcp.log"));
        let e = t.poll(Instant::now(), None).result.unwrap_err();
        assert!(e.contains("/nonexistent/erlmcp.log"));
    }
}
