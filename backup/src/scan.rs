//! Reading an archive back, shared by deep verify and restore: hash the stored bytes as they
//! stream in, decompress, walk the tar entries and hold each one against the manifest before
//! anything is done with it. Anything the manifest does not announce, in the order it announces,
//! is refused: unsafe paths, links leaving the tree, hard links, devices and fifos,
//! setuid/setgid, more entries or bytes than the manifest says.

use std::io::{self, BufReader, Read};

use crate::hashing::{HashingReader, Sha256Digest};
use crate::manifest::{EntryKind, MODE_SETID, Manifest, ManifestEntry};
use crate::paths::{NoLinks, check_link_target, check_rel_path};
use crate::progress::Throttle;
use crate::store::ObjectReader;

/// Why reading an archive stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The archive holds something a restore must never write.
    #[error("hostile archive: entry {entry:?}: {problem}")]
    Hostile { entry: String, problem: String },
    /// The stored bytes are damaged or do not match the manifest.
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    /// The consumer (restore) failed to write.
    #[error("writing {path:?}: {source}")]
    Write { path: String, source: io::Error },
}

/// Receives validated entries in manifest order.
pub(crate) trait EntrySink {
    /// A directory.
    fn dir(&mut self, e: &ManifestEntry) -> Result<(), ScanError>;
    /// A symlink (target already checked).
    fn symlink(&mut self, e: &ManifestEntry) -> Result<(), ScanError>;
    /// A file: `data` yields exactly `e.size` bytes; the sink checks them against `e.sha256`.
    fn file(&mut self, e: &ManifestEntry, data: &mut dyn Read) -> Result<(), ScanError>;
}

/// What a completed scan saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScanStats {
    pub entries: u64,
    pub file_bytes: u64,
    pub stored_bytes: u64,
    pub stored_sha256: Option<Sha256Digest>,
}

/// Streams `reader` (the stored `.tar.zst`) through validation into `sink`, then checks the
/// stored bytes against the manifest's hash and size.
pub(crate) fn scan_archive(
    reader: ObjectReader,
    manifest: &Manifest,
    sink: &mut dyn EntrySink,
    progress: &mut Throttle<'_>,
) -> Result<ScanStats, ScanError> {
    let corrupt = |what: &str, e: io::Error| ScanError::Corrupt(format!("{what}: {e}"));
    let hashing = HashingReader::new(reader);
    let decoder = zstd::stream::read::Decoder::new(hashing).map_err(|e| corrupt("zstd", e))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(256 << 10, decoder));
    let totals = &manifest.backup.totals;
    let mut expected = manifest.entries.iter().filter(|e| e.in_own_archive());
    let mut stats = ScanStats::default();
    let entries = archive
        .entries()
        .map_err(|e| corrupt("reading the tar stream", e))?;
    for item in entries {
        let mut entry = item.map_err(|e| corrupt("reading the tar stream", e))?;
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let hostile = |problem: String| ScanError::Hostile {
            entry: shown.clone(),
            problem,
        };
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned());
                let target = target.unwrap_or_default();
                let escapes = check_rel_path(target.as_bytes()).is_err();
                return Err(hostile(if escapes {
                    format!("hard link to {target:?} points outside the target")
                } else {
                    format!("hard link to {target:?} (backups never contain hard links)")
                }));
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(hostile("device node entry".into()));
            }
            tar::EntryType::Fifo => return Err(hostile("fifo entry".into())),
            other => return Err(hostile(format!("unsupported entry type {other:?}"))),
        };
        // Directories may be written as `dir/`; nothing else may end in a slash.
        let path_bytes = match (kind, raw_path.strip_suffix(b"/")) {
            (EntryKind::Dir, Some(p)) => p,
            _ => &raw_path[..],
        };
        let path = check_rel_path(path_bytes).map_err(&hostile)?;
        let mode = header.mode().map_err(|e| corrupt("entry mode", e))?;
        if mode & MODE_SETID != 0 {
            return Err(hostile(format!("mode {mode:o} has setuid/setgid")));
        }
        let target = match kind {
            EntryKind::Symlink => {
                let t = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile("symlink without a target".into()))?;
                let t = String::from_utf8(t.into_owned())
                    .map_err(|_| hostile("symlink target is not UTF-8".into()))?;
                check_link_target(path, &t, &NoLinks).map_err(&hostile)?;
                Some(t)
            }
            _ => None,
        };
        let size = entry.size();
        stats.entries += 1;
        if stats.entries > totals.archived_entries {
            return Err(hostile(format!(
                "more entries than the {} the manifest announces",
                totals.archived_entries
            )));
        }
        if kind == EntryKind::File {
            stats.file_bytes = stats.file_bytes.saturating_add(size);
        } else if size != 0 {
            return Err(hostile(format!("a {kind:?} entry carrying {size} bytes")));
        }
        if stats.file_bytes > totals.archived_file_bytes {
            return Err(hostile(format!(
                "more bytes than the {} the manifest announces",
                totals.archived_file_bytes
            )));
        }
        let Some(want) = expected.next() else {
            return Err(hostile("not in the manifest".into()));
        };
        if want.path != path {
            return Err(hostile(format!(
                "not in the manifest at this point (expected {:?})",
                want.path
            )));
        }
        if want.kind != kind
            || want.size != size
            || want.target != target
            || want.mode != (mode & 0o7777)
        {
            return Err(ScanError::Corrupt(format!(
                "{path:?}: type, size, mode or target differ from the manifest"
            )));
        }
        match kind {
            EntryKind::Dir => sink.dir(want)?,
            EntryKind::Symlink => sink.symlink(want)?,
            EntryKind::File => sink.file(want, &mut entry)?,
        }
        progress.progress.files_done += 1;
        progress.progress.bytes_done += size;
        progress.tick();
    }
    if let Some(missing) = expected.next() {
        return Err(ScanError::Corrupt(format!(
            "the archive ends before {:?}: entries are missing",
            missing.path
        )));
    }
    // Read to the very end: the zstd checksum and any trailing bytes are part of the stored hash.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| corrupt("reading past the tar end", e))?;
    let mut raw = rest.into_inner().finish();
    io::copy(&mut raw, &mut io::sink()).map_err(|e| corrupt("reading the stored object", e))?;
    let (sha, size) = raw.into_inner().finish();
    stats.stored_bytes = size;
    stats.stored_sha256 = Some(sha);
    let info = &manifest.backup.archive;
    if size != info.size || sha != info.sha256 {
        return Err(ScanError::Corrupt(format!(
            "stored archive is {size} bytes with sha256 {sha}, the manifest says {} bytes with {}",
            info.size, info.sha256
        )));
    }
    Ok(stats)
}
