//! Verifying a stored backup without restoring it. Quick: the stored bytes against the `.sha256`
//! object and the manifest's hash and size. Deep: additionally decompress and check every file
//! against the manifest (and that every announced entry is there). The report follows the
//! runbook's `#{valid, files_checked}` with the problems spelled out.

use std::io::{self, Read};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::hashing::{HashingReader, Sha256Digest, parse_sha256sum_line};
use crate::list::{ListError, load_stored, load_view};
use crate::manifest::{Manifest, ManifestEntry};
use crate::naming::{BackupId, BackupLocation, NameError};
use crate::progress::{Phase, ProgressSink, Throttle};
use crate::scan::{EntrySink, ScanError, scan_archive};
use crate::store::{ObjectStore, StoreError};

/// How thorough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Hash of the stored object only.
    Quick,
    /// Every file's content too.
    Deep,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Backup checked.
    pub backup: BackupId,
    /// Group.
    pub group: String,
    /// Host.
    pub host: String,
    /// Quick or deep.
    pub mode: VerifyMode,
    /// True when no problem was found.
    pub valid: bool,
    /// Files whose content was hashed (deep only).
    pub files_checked: u64,
    /// Bytes checked: stored bytes (quick) or file bytes (deep).
    pub bytes: u64,
    /// What is wrong, one sentence each.
    pub problems: Vec<String>,
}

/// Why verification could not run at all (as opposed to finding problems).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Bad group/host.
    #[error("verify: {0}")]
    Name(#[from] NameError),
    /// No such backup (no manifest).
    #[error("verify: {0}")]
    NotFound(ListError),
    /// The store could not be read.
    #[error("verify: {0}")]
    Store(#[from] StoreError),
}

/// At most this many per-file problems are listed.
const MAX_PROBLEMS: usize = 100;

/// Verifies one backup. Read-only. Blocking.
pub fn verify_backup(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    id: BackupId,
    mode: VerifyMode,
    progress: Option<&dyn ProgressSink>,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        backup: id,
        group: loc.group().to_owned(),
        host: loc.host().to_owned(),
        mode,
        valid: false,
        files_checked: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    // The backup's own manifest is enough to check its archive (an incremental's lists exactly
    // what its archive holds); the chain is checked after.
    let manifest = match load_stored(store, loc, id, true) {
        Ok(m) => m,
        Err(e @ ListError::NotFound { .. }) => return Err(VerifyError::NotFound(e)),
        Err(ListError::Store(e)) => return Err(e.into()),
        Err(e) => {
            report.problems.push(e.to_string());
            return Ok(report);
        }
    };
    check_sha256_object(store, loc, &manifest, &mut report)?;
    if manifest.backup.parent.is_some() {
        // The whole tree it restores to: every parent present, the merged view consistent.
        match load_view(store, loc, id) {
            Ok(_) => {}
            Err(ListError::Store(e)) => return Err(e.into()),
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    let archive_key = loc.key(&manifest.backup.archive.name);
    let reader = store.open(&archive_key)?;
    let mut throttle = Throttle::new(progress, Phase::Reading);
    throttle.progress.files_total = manifest.backup.totals.archived_entries;
    throttle.progress.bytes_total = manifest.backup.totals.archived_file_bytes;
    match mode {
        VerifyMode::Quick => quick(reader, &manifest, &mut report),
        VerifyMode::Deep => {
            let mut sink = VerifySink {
                problems: Vec::new(),
                files: 0,
                bytes: 0,
            };
            let scanned = scan_archive(reader, &manifest, &mut sink, &mut throttle);
            report.files_checked = sink.files;
            report.bytes = sink.bytes;
            report.problems.extend(sink.problems);
            if let Err(e) = scanned {
                report.problems.push(e.to_string());
            }
        }
    }
    throttle.force();
    report.valid = report.problems.is_empty();
    Ok(report)
}

fn check_sha256_object(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    manifest: &Manifest,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let id = manifest.backup.id;
    let text = match store.get(&loc.key(&id.sha256_name()), 4096) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            report
                .problems
                .push(format!("{} is missing", id.sha256_name()));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    match parse_sha256sum_line(&String::from_utf8_lossy(&text)) {
        Some((digest, name)) => {
            if name != manifest.backup.archive.name {
                report.problems.push(format!(
                    "{} names {name:?}, not the archive",
                    id.sha256_name()
                ));
            }
            if digest != manifest.backup.archive.sha256 {
                report.problems.push(format!(
                    "{} says {digest}, the manifest says {}",
                    id.sha256_name(),
                    manifest.backup.archive.sha256
                ));
            }
        }
        None => report
            .problems
            .push(format!("{} is not a sha256sum line", id.sha256_name())),
    }
    Ok(())
}

fn quick(reader: impl Read, manifest: &Manifest, report: &mut VerifyReport) {
    let mut hashing = HashingReader::new(reader);
    if let Err(e) = io::copy(&mut hashing, &mut io::sink()) {
        report.problems.push(format!(
            "reading the archive failed after {} bytes: {e}",
            hashing.count()
        ));
        report.bytes = hashing.count();
        return;
    }
    let (sha, size) = hashing.finish();
    report.bytes = size;
    let info = &manifest.backup.archive;
    if size != info.size {
        report.problems.push(format!(
            "stored archive is {size} bytes, the manifest says {}",
            info.size
        ));
    }
    if sha != info.sha256 {
        report.problems.push(format!(
            "stored archive has sha256 {sha}, the manifest says {}",
            info.sha256
        ));
    }
}

/// Hashes each file, noting mismatches and going on.
struct VerifySink {
    problems: Vec<String>,
    files: u64,
    bytes: u64,
}

impl EntrySink for VerifySink {
    fn dir(&mut self, _e: &ManifestEntry) -> Result<(), ScanError> {
        Ok(())
    }

    fn symlink(&mut self, _e: &ManifestEntry) -> Result<(), ScanError> {
        Ok(())
    }

    fn file(&mut self, e: &ManifestEntry, data: &mut dyn Read) -> Result<(), ScanError> {
        let mut hasher = Sha256::new();
        let mut buf = [0u8; 64 << 10];
        let mut n_total = 0u64;
        loop {
            let n = data
                .read(&mut buf)
                .map_err(|err| ScanError::Corrupt(format!("{:?}: {err}", e.path)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            n_total += n as u64;
        }
        self.files += 1;
        self.bytes += n_total;
        let matches = n_total == e.size && Some(Sha256Digest::from_hasher(hasher)) == e.sha256;
        if !matches && self.problems.len() < MAX_PROBLEMS {
            self.problems
                .push(format!("{:?}: content does not match the manifest", e.path));
        }
        Ok(())
    }
}
