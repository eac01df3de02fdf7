//! What the standalone commands print: progress lines on a terminal, results as text or JSON,
//! and errors with a hint of what to check.

use std::error::Error;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dr_backup::StoreError;
use dr_backup::progress::{Progress, ProgressSink};
use dr_backup::restore::human_bytes;
use dr_backup::store::S3FailureKind;
use dr_proto::domain::BackupRecord;

use super::{CliError, Output};
use crate::backup_ops::progress::describe;

/// Progress lines on stderr, at most one a second (and every phase change); silent when stderr
/// is not a terminal.
pub(crate) struct TermProgress {
    what: &'static str,
    on: bool,
    last: Mutex<Option<(Instant, dr_backup::Phase)>>,
}

impl TermProgress {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            on: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        }
    }
}

impl ProgressSink for TermProgress {
    fn update(&self, p: &Progress) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, phase)) = *last
            && phase == p.phase
            && now.duration_since(at) < Duration::from_secs(1)
        {
            return;
        }
        *last = Some((now, p.phase));
        let pct = p
            .bytes_done
            .saturating_mul(100)
            .checked_div(p.bytes_total)
            .map(|n| format!(" {n:>3}%"))
            .unwrap_or_default();
        eprintln!("{}{pct}", describe(self.what, p));
    }
}

/// Prints JSON, or the text lines.
pub(crate) fn emit<T: serde::Serialize>(output: Output, value: &T, text: impl FnOnce() -> String) {
    match output {
        Output::Json => match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("dr-agent: cannot encode JSON: {e}"),
        },
        Output::Text => println!("{}", text()),
    }
}

/// `12.3 s` / `850 ms`.
pub(crate) fn took(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The `list` table.
pub(crate) fn table(records: &[BackupRecord]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "GROUP".into(),
        "HOST".into(),
        "SIZE".into(),
        "FILES".into(),
        "DATA".into(),
        "PARENT".into(),
    ]];
    for r in records {
        rows.push([
            r.id.clone(),
            r.group.to_string(),
            r.host.to_string(),
            human_bytes(r.size_bytes),
            r.files.to_string(),
            human_bytes(r.bytes),
            r.parent.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An engine error as a failure, with a hint when the store itself is the problem.
pub(crate) fn failed(context: &str, e: &(dyn Error + 'static)) -> CliError {
    let mut msg = format!("{context}: {e}");
    if let Some(hint) = store_hint(e) {
        msg.push_str("\n  hint: ");
        msg.push_str(&hint);
    }
    CliError::Failed(msg)
}

fn store_hint(e: &(dyn Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(se) = err.downcast_ref::<StoreError>() {
            return match se {
                StoreError::S3 { kind, .. } => Some(match kind {
                    S3FailureKind::Network => "the store is unreachable: check --s3-endpoint (or backup.s3.endpoint), that the server is up and this host can reach it".into(),
                    S3FailureKind::Credentials => "the store refused the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or backup.s3.*_file in the config) and that the key may use this bucket".into(),
                    S3FailureKind::NoSuchBucket => "check the bucket name in --store".into(),
                    S3FailureKind::Service => "the S3 service answered with an error; check the URL, region and endpoint".into(),
                }),
                StoreError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    Some("check that this user may read and write the store directory".into())
                }
                StoreError::BadOptions(_) => {
                    Some("give the region with --s3-region or AWS_REGION".into())
                }
                _ => None,
            };
        }
        cur = err.source();
    }
    None
}
