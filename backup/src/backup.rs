//! Creating a backup: walk → tar → zstd (multi-threaded) → SHA-256 → store, in one streaming
//! pass with no temp files, then the `.sha256` line and, last, the manifest that commits it.
//! Any failure before the manifest is written leaves nothing listed.

use std::collections::HashMap;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::hashing::{HashingWriter, Sha256Digest, sha256sum_line};
use crate::incremental::{Clock, Decision, decide};
use crate::list::{ListError, latest_backup, load_manifest};
use crate::manifest::{
    ArchiveInfo, EntryKind, MANIFEST_FORMAT, Manifest, ManifestEntry, ManifestHeader, RootAttrs,
    SkippedPath, totals_of,
};
use crate::naming::{BackupId, BackupKind, BackupLocation, NameError, parse_object_name};
use crate::pack::{FileOutcome, Packer};
use crate::progress::{Phase, ProgressSink, Throttle};
use crate::store::{ObjectStore, ObjectWriter, StoreError};
use crate::walk::{Meta, Walked, walk};

/// zstd multi-threaded job size: small jobs keep memory low (zstd's default for level 3 is
/// 8 MiB jobs, about 140 MiB resident with two workers, 1 MiB jobs about 48 MiB) and, measured
/// on the benchmark data, compress no worse.
const ZSTD_JOB_SIZE: u32 = 1 << 20;

/// Tuning knobs; the defaults suit a 2-core host.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// zstd level (1–19; default 3, like `zstd -3`).
    pub zstd_level: i32,
    /// zstd worker threads; `None` = one per CPU core.
    pub zstd_workers: Option<u32>,
    /// Re-reads of a small file that changed while read before it is archived as last read.
    pub read_retries: u32,
    /// Files up to this size are read whole (and can be retried); larger ones are streamed.
    pub max_buffered_file: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            zstd_workers: None,
            read_retries: 3,
            max_buffered_file: 4 << 20,
        }
    }
}

/// Full, or incremental on top of a parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMode {
    /// Everything.
    Full,
    /// Only what changed since `parent` (`None`: the host's newest backup).
    Incremental { parent: Option<BackupId> },
}

/// What to back up and where.
pub struct BackupRequest<'a> {
    /// The data directory (a symlink to a directory is followed).
    pub data_dir: &'a Path,
    /// Group name (becomes part of the object keys).
    pub group: &'a str,
    /// Host name (becomes part of the object keys).
    pub host: &'a str,
    /// Full or incremental.
    pub mode: BackupMode,
    /// Tuning.
    pub options: BackupOptions,
    /// Optional progress sink.
    pub progress: Option<&'a dyn ProgressSink>,
}

/// What a committed backup contains.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The committed backup's header (id, parent, archive, totals).
    pub header: ManifestHeader,
    /// Files that vanished while the backup ran (not in the backup).
    pub vanished: Vec<String>,
    /// Files archived as last read because they kept changing.
    pub changed_while_reading: Vec<String>,
    /// Paths skipped on purpose.
    pub skipped: Vec<SkippedPath>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a backup failed. In every case nothing was committed: the backup is not listed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Group or host name unusable in object keys.
    #[error("backup: {0}; nothing was stored")]
    Name(#[from] NameError),
    /// Options out of range.
    #[error("backup: {0}; nothing was stored")]
    Options(String),
    /// The data directory cannot be walked.
    #[error("backup of {dir}: cannot read {source}; nothing was committed")]
    Walk { dir: PathBuf, source: io::Error },
    /// A file cannot be read (permissions, I/O error).
    #[error("backup of {dir}: cannot read {path}: {source}; nothing was committed")]
    ReadFile {
        dir: PathBuf,
        path: String,
        source: io::Error,
    },
    /// The parent of an incremental is missing or unusable.
    #[error("incremental backup: parent: {0}; nothing was stored")]
    Parent(ListError),
    /// Compression or the archive stream failed.
    #[error("backup: writing the archive: {0}; nothing was committed")]
    Archive(io::Error),
    /// The store failed.
    #[error("backup: {0}; nothing was committed (the backup is not listed)")]
    Store(#[from] StoreError),
}

/// Takes a backup and commits it. Blocking; run it on a blocking thread.
pub fn create_backup(
    store: &dyn ObjectStore,
    req: &BackupRequest<'_>,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let loc = BackupLocation::new(req.group, req.host)?;
    let opts = &req.options;
    if !(1..=22).contains(&opts.zstd_level) {
        return Err(BackupError::Options(format!(
            "zstd level {} is not 1..=22",
            opts.zstd_level
        )));
    }
    let parent = match req.mode {
        BackupMode::Full => None,
        BackupMode::Incremental { parent } => {
            let id = match parent {
                Some(id) => id,
                None => latest_backup(store, &loc).map_err(BackupError::Parent)?.id,
            };
            Some(load_manifest(store, &loc, id).map_err(BackupError::Parent)?)
        }
    };
    let kind = if parent.is_some() {
        BackupKind::Incremental
    } else {
        BackupKind::Full
    };
    let started_ns = now_ns();
    let id = allocate_id(store, &loc, kind, started_ns.div_euclid(1_000_000_000))?;

    let mut progress = Throttle::new(req.progress, Phase::Scanning);
    progress.force();
    let walked = walk(req.data_dir).map_err(|source| BackupError::Walk {
        dir: req.data_dir.into(),
        source,
    })?;
    progress.progress.files_total = walked.entries.len() as u64;
    progress.progress.bytes_total = walked
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.meta.size)
        .sum();
    progress.phase(Phase::Archiving);

    let archive_key = loc.key(&id.archive_name());
    let mut object = store.create(&archive_key)?;
    let ctx = ArchiveCtx {
        dir: req.data_dir,
        opts,
        parent: parent.as_ref(),
    };
    let written = match write_archive(&mut object, &ctx, walked.entries, &mut progress) {
        Ok(w) => w,
        Err(e) => {
            if let Err(abort) = object.abort() {
                tracing::warn!(key = %archive_key, error = %abort, "abort after a failed backup");
            }
            return Err(e);
        }
    };
    object.finish()?;

    progress.phase(Phase::Committing);
    let sha_key = loc.key(&id.sha256_name());
    let mut vanished = walked.vanished;
    vanished.extend(written.vanished);
    let deleted = parent
        .as_ref()
        .map(|p| deleted_paths(p, &written.entries))
        .unwrap_or_default();
    let totals = totals_of(
        &written.entries,
        deleted.len(),
        vanished.len(),
        walked.skipped.len(),
    );
    let header = ManifestHeader {
        format: MANIFEST_FORMAT,
        tool: format!("dr-backup {}", env!("CARGO_PKG_VERSION")),
        id,
        kind,
        group: loc.group().to_owned(),
        host: loc.host().to_owned(),
        created_at: id.timestamp(),
        started_at_unix_ns: started_ns,
        finished_at_unix_ns: now_ns(),
        parent: parent.as_ref().map(|p| p.backup.id),
        archive: ArchiveInfo {
            name: id.archive_name(),
            sha256: written.sha256,
            size: written.size,
            compression: "zstd".into(),
            level: opts.zstd_level,
        },
        totals,
    };
    let changed_while_reading = written
        .entries
        .iter()
        .filter(|e| e.changed_while_reading)
        .map(|e| e.path.clone())
        .collect();
    let root = walked.root.map(|m| RootAttrs {
        mode: m.mode & 0o1777,
        uid: m.uid,
        gid: m.gid,
        mtime_ns: m.mtime_ns,
    });
    let manifest = Manifest {
        backup: header,
        entries: written.entries,
        deleted,
        vanished,
        root,
        skipped: walked.skipped,
    };
    let commit = store
        .put(
            &sha_key,
            sha256sum_line(&written.sha256, &id.archive_name()).as_bytes(),
        )
        .and_then(|()| put_manifest(store, &loc.key(&id.manifest_name()), &manifest));
    if let Err(e) = commit {
        // Not committed: remove what was written so the store holds no orphans.
        let _ = store.delete(&sha_key);
        let _ = store.delete(&archive_key);
        return Err(e.into());
    }
    progress.force();
    Ok(BackupReport {
        header: manifest.backup,
        vanished: manifest.vanished,
        changed_while_reading,
        skipped: manifest.skipped,
        elapsed: started.elapsed(),
    })
}

fn put_manifest(store: &dyn ObjectStore, key: &str, manifest: &Manifest) -> Result<(), StoreError> {
    let mut w = store.create(key)?;
    let written = serde_json::to_writer(BufWriter::with_capacity(1 << 20, &mut w), manifest);
    match written {
        Ok(()) => w.finish().map(|_| ()),
        Err(e) => {
            let _ = w.abort();
            Err(StoreError::Io {
                store: store.url(),
                op: "write",
                key: key.to_owned(),
                source: e.into(),
                partial_object_left: false,
            })
        }
    }
}

/// Picks an id not used yet by this host: the current second, or one past the newest existing.
fn allocate_id(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    kind: BackupKind,
    now_secs: i64,
) -> Result<BackupId, StoreError> {
    let newest = store
        .list(&loc.prefix())?
        .iter()
        .filter_map(|o| o.key.rsplit('/').next().and_then(parse_object_name))
        .map(|(id, _)| id.unix_secs)
        .max();
    let unix_secs = match newest {
        Some(n) if n >= now_secs => n + 1,
        _ => now_secs,
    };
    Ok(BackupId { unix_secs, kind })
}

struct ArchiveCtx<'a> {
    dir: &'a Path,
    opts: &'a BackupOptions,
    parent: Option<&'a Manifest>,
}

struct Written {
    entries: Vec<ManifestEntry>,
    vanished: Vec<String>,
    sha256: Sha256Digest,
    size: u64,
}

fn write_archive(
    object: &mut Box<dyn ObjectWriter>,
    ctx: &ArchiveCtx<'_>,
    walked: Vec<Walked>,
    progress: &mut Throttle<'_>,
) -> Result<Written, BackupError> {
    let workers = ctx.opts.zstd_workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
    });
    let hashing = HashingWriter::new(object);
    let mut enc = zstd::stream::write::Encoder::new(hashing, ctx.opts.zstd_level)
        .map_err(BackupError::Archive)?;
    enc.include_checksum(true).map_err(BackupError::Archive)?;
    if workers > 0 {
        enc.multithread(workers).map_err(BackupError::Archive)?;
        enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
            .map_err(BackupError::Archive)?;
    }
    let mut packer = Packer::new(
        BufWriter::with_capacity(256 << 10, enc),
        ctx.opts.max_buffered_file,
        ctx.opts.read_retries,
    );
    let parent_entries: HashMap<&str, &ManifestEntry> = ctx
        .parent
        .map(|p| p.entries.iter().map(|e| (e.path.as_str(), e)).collect())
        .unwrap_or_default();
    let clock = Clock {
        now_ns: now_ns(),
        parent_started_ns: ctx.parent.map_or(0, |p| p.backup.started_at_unix_ns),
    };
    let mut entries = Vec::with_capacity(walked.len());
    let mut vanished = Vec::new();
    let archive_err = BackupError::Archive;
    for w in walked {
        match w.kind {
            EntryKind::Dir => {
                packer.dir(&w.path, &w.meta).map_err(archive_err)?;
                entries.push(entry(w.path, EntryKind::Dir, &w.meta, None, None));
            }
            EntryKind::Symlink => {
                let target = w.target.unwrap_or_default();
                packer
                    .symlink(&w.path, &w.meta, &target)
                    .map_err(archive_err)?;
                entries.push(entry(
                    w.path,
                    EntryKind::Symlink,
                    &w.meta,
                    None,
                    Some(target),
                ));
            }
            EntryKind::File => {
                let parent_entry = parent_entries.get(w.path.as_str()).copied();
                let decision = match ctx.parent {
                    Some(_) => decide(parent_entry, &w.meta, clock),
                    None => Decision::Read { parent_hash: None },
                };
                let from_parent = |meta: &Meta| {
                    let p = parent_entry.filter(|p| p.kind == EntryKind::File);
                    let origin = p.and_then(|p| p.origin).or(ctx.parent.map(|m| m.backup.id));
                    let mut e = entry(
                        w.path.clone(),
                        EntryKind::File,
                        meta,
                        p.and_then(|p| p.sha256),
                        None,
                    );
                    e.origin = origin;
                    e
                };
                match decision {
                    Decision::Unchanged => entries.push(from_parent(&w.meta)),
                    Decision::Read { parent_hash } => {
                        let abs = ctx.dir.join(&w.path);
                        let outcome =
                            packer
                                .file(&abs, &w.path, &w.meta, parent_hash)
                                .map_err(|source| BackupError::ReadFile {
                                    dir: ctx.dir.into(),
                                    path: w.path.clone(),
                                    source,
                                })?;
                        match outcome {
                            FileOutcome::Archived {
                                meta,
                                sha256,
                                changed_while_reading,
                            } => {
                                let mut e =
                                    entry(w.path, EntryKind::File, &meta, Some(sha256), None);
                                e.changed_while_reading = changed_while_reading;
                                entries.push(e);
                            }
                            FileOutcome::SameAsParent { meta } => entries.push(from_parent(&meta)),
                            FileOutcome::Vanished => vanished.push(w.path),
                        }
                    }
                }
                progress.progress.bytes_done += w.meta.size;
            }
        }
        progress.progress.files_done += 1;
        progress.tick();
    }
    let buffered = packer.finish().map_err(archive_err)?;
    let enc = buffered
        .into_inner()
        .map_err(|e| archive_err(e.into_error()))?;
    let hashing = enc.finish().map_err(archive_err)?;
    let (_, sha256, size) = hashing.finish();
    progress.progress.stored_bytes = size;
    Ok(Written {
        entries,
        vanished,
        sha256,
        size,
    })
}

fn entry(
    path: String,
    kind: EntryKind,
    m: &Meta,
    sha256: Option<Sha256Digest>,
    target: Option<String>,
) -> ManifestEntry {
    ManifestEntry {
        path,
        kind,
        size: if kind == EntryKind::File { m.size } else { 0 },
        mtime_ns: m.mtime_ns,
        mode: m.mode & 0o1777,
        uid: m.uid,
        gid: m.gid,
        inode: m.ino,
        sha256,
        target,
        origin: None,
        changed_while_reading: false,
    }
}

/// Parent paths that are gone now or changed type, in walk order.
fn deleted_paths(parent: &Manifest, now: &[ManifestEntry]) -> Vec<String> {
    let current: HashMap<&str, EntryKind> = now.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    parent
        .entries
        .iter()
        .filter(|e| current.get(e.path.as_str()) != Some(&e.kind))
        .map(|e| e.path.clone())
        .collect()
}

pub(crate) fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
