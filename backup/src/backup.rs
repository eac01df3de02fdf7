//! Creating a backup: walk → tar → zstd (multi-threaded) → SHA-256 → store, in one streaming
//! pass with no temp files, then the `.sha256` line and, last, the manifest that commits it.
//! Any failure before the manifest is written leaves nothing listed.
//!
//! Threads: the walk stats entries on a few threads and streams them in order; a pool of readers
//! turns runs of entries into tar bytes (open, read, hash, frame); this thread appends them in
//! order to the zstd stream (whose workers compress) and streams large files itself. An
//! incremental loads its parent's tree on another thread meanwhile, then walks it alongside the
//! new tree (both are in walk order), so only entries that changed are read, archived and
//! written to its manifest.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::guided::{Coverage, Guided, walk_changes};
use crate::hashing::{HashingWriter, Sha256Digest, sha256sum_line};
use crate::incremental::{Clock, Decision, decide};
use crate::journal::ChangeJournal;
use crate::list::{ListError, ParentBase, latest_backup, load_parent_tree};
use crate::manifest::view::ViewMerge;
use crate::manifest::{
    ArchiveInfo, EntriesWriter, EntryKind, MANIFEST_FORMAT, ManifestEntry, ManifestError,
    ManifestHeader, RootAttrs, SkippedPath, Totals, write_stored,
};
use crate::naming::{BackupId, BackupKind, BackupLocation, NameError, parse_object_name};
use crate::pack::{
    Action, BufferPool, FileOutcome, Job, JobDone, JobItem, Outcome, Piece, ReadError, Reader,
    stream_large,
};
use crate::paths::walk_order;
use crate::progress::{Phase, ProgressSink, Throttle};
use crate::store::{ObjectStore, ObjectWriter, StoreError};
use crate::walk::{Batch, Meta, Walked, Walker};

/// zstd multi-threaded job size: small jobs keep memory low (zstd's default for level 3 is
/// 8 MiB jobs, about 140 MiB resident with two workers, 1 MiB jobs about 48 MiB) and, measured
/// on the benchmark data, compress no worse.
const ZSTD_JOB_SIZE: u32 = 1 << 20;

/// How much of the previous job each zstd job reloads (3: 1/64 of the window, 32 KiB at level
/// 3, against 1/8 by default): with 1 MiB jobs the default reload is a quarter of the work of a
/// job; measured on the benchmark data, the smaller one compresses slightly better and faster.
const ZSTD_OVERLAP_LOG: u32 = 3;

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
    /// The data directory's change journal, if this process keeps one: an incremental whose
    /// parent this process took then stats only what changed instead of walking everything.
    pub journal: Option<&'a ChangeJournal>,
}

/// How the backup found the data directory's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeScan {
    /// Every entry was looked at.
    Walked,
    /// An incremental looked only at the paths the change journal named.
    Journal { changed_paths: usize },
    /// An incremental with a journal walked everything anyway, for this reason.
    WalkedJournalUnusable(String),
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
    /// Whether the change journal spared the walk.
    pub scan: TreeScan,
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
    let parent_id = match req.mode {
        BackupMode::Full => None,
        BackupMode::Incremental { parent } => Some(match parent {
            Some(id) => id,
            None => latest_backup(store, &loc).map_err(BackupError::Parent)?.id,
        }),
    };
    let kind = if parent_id.is_some() {
        BackupKind::Incremental
    } else {
        BackupKind::Full
    };
    let started_ns = now_ns();
    let id = allocate_id(store, &loc, kind, started_ns.div_euclid(1_000_000_000))?;

    let mut progress = Throttle::new(req.progress, Phase::Scanning);
    progress.force();
    // Before anything is looked at (see `crate::journal` for why the order matters).
    let mark = req.journal.and_then(ChangeJournal::mark);
    let (source, scan) = scan_source(req, parent_id)?;
    // While the walk starts on its threads: the parent's tree, opened as a stream.
    let parent = match parent_id {
        None => None,
        Some(pid) => {
            let (header, merge) =
                load_parent_tree(store, &loc, pid).map_err(BackupError::Parent)?;
            Some(ParentTree {
                clock: Clock {
                    now_ns: now_ns(),
                    parent_started_ns: header.started_at_unix_ns,
                },
                id: header.id,
                merge,
                peek: None,
                last: String::new(),
                started: false,
                coverage: None,
            })
        }
    };
    let (root_meta, mut parent, mut source) = (source.root(), parent, source);
    if let Source::Guided(g) = &mut source {
        // Invariant: a guided walk always merges with its parent's tree under its coverage
        // (without it, every entry it did not look at would count as deleted).
        match (parent.as_mut(), g.coverage.take()) {
            (Some(p), Some(c)) => p.coverage = Some(c),
            _ => {
                return Err(BackupError::Archive(io::Error::other(
                    "internal error: a journal-guided walk without its parent's tree",
                )));
            }
        }
    }
    let root = RootAttrs {
        mode: root_meta.mode & 0o1777,
        uid: root_meta.uid,
        gid: root_meta.gid,
        mtime_ns: root_meta.mtime_ns,
    };

    let archive_key = loc.key(&id.archive_name());
    let mut object = store.create(&archive_key)?;
    let ctx = ArchiveCtx {
        dir: req.data_dir,
        opts,
        root,
    };
    let written = match write_archive(&mut object, &ctx, source, parent, &mut progress) {
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
    let mut totals = written.totals;
    totals.deleted = written.deleted.len() as u64;
    totals.vanished = written.vanished.len() as u64;
    totals.skipped = written.skipped.len() as u64;
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
        parent: parent_id,
        archive: ArchiveInfo {
            name: id.archive_name(),
            sha256: written.sha256,
            size: written.size,
            compression: "zstd".into(),
            level: opts.zstd_level,
        },
        totals,
    };
    let manifest_key = loc.key(&id.manifest_name());
    let commit = store
        .put(
            &sha_key,
            sha256sum_line(&written.sha256, &id.archive_name()).as_bytes(),
        )
        .and_then(|()| {
            put_manifest(store, &manifest_key, |w| {
                write_stored(
                    w,
                    &header,
                    Some(&root),
                    &written.deleted,
                    &written.vanished,
                    &written.skipped,
                    &written.body,
                )
            })
        });
    if let Err(e) = commit {
        // Not committed: remove what was written so the store holds no orphans.
        let _ = store.delete(&sha_key);
        let _ = store.delete(&archive_key);
        return Err(e.into());
    }
    progress.force();
    if let (Some(j), Some(m)) = (req.journal, mark) {
        j.remember(id, m);
    }
    Ok(BackupReport {
        header,
        vanished: written.vanished,
        changed_while_reading: written.changed_while_reading,
        skipped: written.skipped,
        elapsed: started.elapsed(),
        scan,
    })
}

/// Where the archive pass gets the current tree from.
enum Source {
    Walk(Walker),
    Guided(GuidedSource),
}

struct GuidedSource {
    batches: std::vec::IntoIter<Batch>,
    coverage: Option<Coverage>,
    root: Meta,
}

impl Source {
    fn root(&self) -> Meta {
        match self {
            Source::Walk(w) => w.root,
            Source::Guided(g) => g.root,
        }
    }

    fn next_batch(&mut self) -> io::Result<Option<Batch>> {
        match self {
            Source::Walk(w) => w.next_batch(),
            Source::Guided(g) => Ok(g.batches.next()),
        }
    }
}

/// The walk, or for an incremental with a usable journal, the journal-guided look.
fn scan_source(
    req: &BackupRequest<'_>,
    parent: Option<BackupId>,
) -> Result<(Source, TreeScan), BackupError> {
    let walk = |scan| {
        let walker = Walker::start(req.data_dir).map_err(|source| BackupError::Walk {
            dir: req.data_dir.into(),
            source,
        })?;
        Ok((Source::Walk(walker), scan))
    };
    let (Some(journal), Some(parent)) = (req.journal, parent) else {
        return walk(TreeScan::Walked);
    };
    let why = match journal.changes_since(&parent) {
        Err(unusable) => unusable.to_string(),
        Ok(changes) => match walk_changes(req.data_dir, &changes) {
            Ok(Guided {
                batches,
                coverage,
                root,
                changed_paths,
            }) => {
                tracing::debug!(changed_paths, "incremental guided by the change journal");
                return Ok((
                    Source::Guided(GuidedSource {
                        batches: batches.into_iter(),
                        coverage: Some(coverage),
                        root,
                    }),
                    TreeScan::Journal { changed_paths },
                ));
            }
            Err(e) => format!("looking at the changed paths: {e}"),
        },
    };
    tracing::info!(reason = %why, "change journal not used: the incremental walks the whole data directory");
    walk(TreeScan::WalkedJournalUnusable(why))
}

fn put_manifest(
    store: &dyn ObjectStore,
    key: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), StoreError> {
    let mut w = store.create(key)?;
    let written = {
        let mut buffered = BufWriter::with_capacity(1 << 20, &mut w);
        write(&mut buffered).and_then(|()| buffered.flush())
    };
    match written {
        Ok(()) => w.finish().map(|_| ()),
        Err(e) => {
            let _ = w.abort();
            Err(StoreError::Io {
                store: store.url(),
                op: "write",
                key: key.to_owned(),
                source: e,
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
    root: RootAttrs,
}

/// What the archive pass produced: everything the manifest needs.
struct Written {
    /// The manifest's `entries` (all for a full backup, the changes for an incremental).
    body: Vec<u8>,
    totals: Totals,
    deleted: Vec<String>,
    vanished: Vec<String>,
    skipped: Vec<SkippedPath>,
    changed_while_reading: Vec<String>,
    sha256: Sha256Digest,
    size: u64,
}

/// File bytes a reader job counts per file at most (larger files are read by the backup thread).
const READER_BYTES: u64 = 512 << 10;
/// Small-file bytes per reader job.
const JOB_BYTES: u64 = 256 << 10;
/// Entries per reader job.
const JOB_ITEMS: usize = 512;
/// File bytes the reader jobs in flight may hold (besides one job's overshoot): bounds memory.
const IN_FLIGHT_BYTES: u64 = 3 << 20;

/// The parent's tree, streamed alongside the new one (both in walk order).
struct ParentTree {
    merge: ViewMerge<ParentBase>,
    peek: Option<ManifestEntry>,
    /// Path of the entry taken last (its order is checked: the tree was not checked whole).
    last: String,
    started: bool,
    clock: Clock,
    id: BackupId,
    /// With a journal-guided walk: the parent entries it answered for (the rest is unchanged).
    coverage: Option<Coverage>,
}

impl ParentTree {
    fn invalid(&self, problem: String) -> BackupError {
        BackupError::Parent(ListError::Invalid(ManifestError {
            id: self.id.to_string(),
            problem,
        }))
    }

    fn peek(&mut self) -> Result<Option<&ManifestEntry>, BackupError> {
        if self.peek.is_none() {
            self.peek = self
                .merge
                .next_entry()
                .map_err(BackupError::Parent)?
                .map(|item| item.entry);
        }
        Ok(self.peek.as_ref())
    }

    fn take(&mut self) -> Result<Option<ManifestEntry>, BackupError> {
        let Some(e) = self.peek.take() else {
            return Ok(None);
        };
        if self.started && walk_order(&self.last, &e.path) != std::cmp::Ordering::Less {
            return Err(self.invalid(format!("{:?} is out of order or repeated", e.path)));
        }
        self.started = true;
        self.last.clear();
        self.last.push_str(&e.path);
        Ok(Some(e))
    }

    /// A parent path that is gone now (or changed type): it must be a safe path to be listed.
    fn gone(&self, e: ManifestEntry, deleted: &mut Vec<String>) -> Result<(), BackupError> {
        crate::paths::check_rel_path(e.path.as_bytes())
            .map_err(|problem| self.invalid(format!("{:?}: {problem}", e.path)))?;
        deleted.push(e.path);
        Ok(())
    }

    /// A parent entry the walk passed over: gone, unless a journal-guided walk did not look
    /// there (then it is unchanged, and only counted).
    fn passed(
        &mut self,
        e: ManifestEntry,
        deleted: &mut Vec<String>,
        totals: &mut Totals,
    ) -> Result<(), BackupError> {
        if let Some(c) = self.coverage.as_mut() {
            if !c.covers(&e.path) {
                totals.add_inherited(&e);
                return Ok(());
            }
            if e.kind == EntryKind::Dir {
                c.gone_dir(&e.path);
            }
        }
        self.gone(e, deleted)
    }

    /// The parent's entry for `path` if it has the same kind; parent paths passed over (gone
    /// now) or of another kind go to `deleted`.
    fn lookup(
        &mut self,
        path: &str,
        kind: EntryKind,
        deleted: &mut Vec<String>,
        totals: &mut Totals,
    ) -> Result<Option<ManifestEntry>, BackupError> {
        while let Some(e) = self.peek()? {
            let order = walk_order(&e.path, path);
            if order == std::cmp::Ordering::Greater {
                return Ok(None);
            }
            let Some(e) = self.take()? else {
                return Ok(None);
            };
            if order == std::cmp::Ordering::Equal {
                if e.kind == kind {
                    return Ok(Some(e));
                }
                if let (Some(c), EntryKind::Dir) = (self.coverage.as_mut(), e.kind) {
                    c.gone_dir(&e.path);
                }
                self.gone(e, deleted)?;
                return Ok(None);
            }
            self.passed(e, deleted, totals)?;
        }
        Ok(None)
    }

    fn rest(&mut self, deleted: &mut Vec<String>, totals: &mut Totals) -> Result<(), BackupError> {
        while self.peek()?.is_some() {
            if let Some(e) = self.take()? {
                self.passed(e, deleted, totals)?;
            }
        }
        Ok(())
    }
}

enum Pending {
    Reader(Receiver<Result<JobDone, ReadError>>, u64),
    Inline(JobDone),
}

type JobQueue = Mutex<Receiver<(Job, SyncSender<Result<JobDone, ReadError>>)>>;

fn reader_loop(queue: &JobQueue, opts: &BackupOptions, pool: &BufferPool) {
    let mut reader = Reader::new(opts.max_buffered_file, opts.read_retries, Some(pool));
    loop {
        let next = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((job, reply)) = next else { return };
        // The backup thread may have given up (its receiver is gone): nothing to do then.
        let _ = reply.send(reader.run(job));
    }
}

/// The archive pass and everything around it on this thread.
struct Assembler<'a> {
    ctx: &'a ArchiveCtx<'a>,
    parent: Option<ParentTree>,
    entries: EntriesWriter,
    totals: Totals,
    deleted: Vec<String>,
    vanished: Vec<String>,
    skipped: Vec<SkippedPath>,
    changed_while_reading: Vec<String>,
    /// Planned jobs not handed out yet, with their file bytes.
    ready: VecDeque<(Job, u64)>,
}

fn write_archive(
    object: &mut Box<dyn ObjectWriter>,
    ctx: &ArchiveCtx<'_>,
    mut walker: Source,
    parent: Option<ParentTree>,
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
        enc.set_parameter(zstd::zstd_safe::CParameter::OverlapSizeLog(
            ZSTD_OVERLAP_LOG,
        ))
        .map_err(BackupError::Archive)?;
    }
    let mut builder = tar::Builder::new(enc);
    builder.mode(tar::HeaderMode::Complete);

    let mut asm = Assembler {
        ctx,
        parent,
        entries: EntriesWriter::new(Some(&ctx.root)),
        totals: Totals::default(),
        deleted: Vec::new(),
        vanished: Vec::new(),
        skipped: Vec::new(),
        changed_while_reading: Vec::new(),
        ready: VecDeque::new(),
    };
    progress.phase(Phase::Archiving);

    let readers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let (job_tx, job_rx) = sync_channel::<(Job, SyncSender<Result<JobDone, ReadError>>)>(readers);
    let queue: JobQueue = Mutex::new(job_rx);
    let pool = BufferPool::default();
    let result = std::thread::scope(|s| {
        for i in 0..readers {
            let spawned = std::thread::Builder::new()
                .name(format!("dr-read-{i}"))
                .spawn_scoped(s, || reader_loop(&queue, ctx.opts, &pool));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a file reader thread");
            }
        }
        let r = asm.run(
            &mut builder,
            &mut walker,
            &job_tx,
            readers + 1,
            &pool,
            progress,
        );
        drop(job_tx);
        r
    });
    result?;
    drop(walker);
    if let Some(p) = asm.parent.as_mut() {
        p.rest(&mut asm.deleted, &mut asm.totals)?;
    }
    let archive_err = BackupError::Archive;
    let enc = builder.into_inner().map_err(archive_err)?;
    let hashing = enc.finish().map_err(archive_err)?;
    let (_, sha256, size) = hashing.finish();
    progress.progress.stored_bytes = size;
    asm.deleted.sort_by(|a, b| walk_order(a, b));
    asm.deleted.dedup();
    Ok(Written {
        body: asm.entries.finish(),
        totals: asm.totals,
        deleted: asm.deleted,
        vanished: asm.vanished,
        skipped: asm.skipped,
        changed_while_reading: asm.changed_while_reading,
        sha256,
        size,
    })
}

fn walk_error(ctx: &ArchiveCtx<'_>, source: io::Error) -> BackupError {
    BackupError::Walk {
        dir: ctx.dir.into(),
        source,
    }
}

impl Assembler<'_> {
    fn run<W: Write>(
        &mut self,
        builder: &mut tar::Builder<W>,
        walker: &mut Source,
        jobs: &SyncSender<(Job, SyncSender<Result<JobDone, ReadError>>)>,
        max_pending: usize,
        pool: &BufferPool,
        progress: &mut Throttle<'_>,
    ) -> Result<(), BackupError> {
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut inline = Reader::new(
            self.ctx.opts.max_buffered_file,
            self.ctx.opts.read_retries,
            None,
        );
        let mut in_flight = 0u64;
        let mut walk_done = false;
        loop {
            // Hand out work while there is room (in jobs and in bytes), walking further as needed.
            while pending.len() < max_pending {
                if let Some((job, bytes)) = self.ready.pop_front() {
                    if job.items.iter().all(|i| matches!(i.action, Action::Skip)) {
                        let outcomes = job.items.iter().map(|_| Outcome::Skipped).collect();
                        pending.push_back(Pending::Inline(JobDone {
                            items: job.items,
                            outcomes,
                            pieces: Vec::new(),
                        }));
                        continue;
                    }
                    if !pending.is_empty() && in_flight + bytes > IN_FLIGHT_BYTES {
                        self.ready.push_front((job, bytes));
                        break;
                    }
                    let (tx, rx) = sync_channel(1);
                    jobs.send((job, tx)).map_err(|_| {
                        BackupError::Archive(io::Error::other("file reader threads stopped"))
                    })?;
                    in_flight += bytes;
                    pending.push_back(Pending::Reader(rx, bytes));
                    continue;
                }
                if walk_done {
                    break;
                }
                let Some(mut batch) = walker.next_batch().map_err(|e| walk_error(self.ctx, e))?
                else {
                    walk_done = true;
                    break;
                };
                let p = &mut progress.progress;
                p.files_total += batch.entries.len() as u64;
                p.bytes_total += batch
                    .entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::File)
                    .map(|e| e.meta.size)
                    .sum::<u64>();
                self.vanished.extend(std::mem::take(&mut batch.vanished));
                self.skipped.extend(std::mem::take(&mut batch.skipped));
                self.plan(batch, progress)?;
            }
            let Some(next) = pending.pop_front() else {
                break;
            };
            let mut done = match next {
                Pending::Inline(d) => d,
                Pending::Reader(rx, bytes) => {
                    in_flight -= bytes;
                    rx.recv()
                        .map_err(|_| {
                            BackupError::Archive(io::Error::other("a file reader thread stopped"))
                        })?
                        .map_err(|e| BackupError::ReadFile {
                            dir: self.ctx.dir.into(),
                            path: e.path,
                            source: e.source,
                        })?
                }
            };
            for piece in std::mem::take(&mut done.pieces) {
                match piece {
                    Piece::Bytes(b) => {
                        builder
                            .get_mut()
                            .write_all(&b)
                            .map_err(BackupError::Archive)?;
                        pool.put(b);
                    }
                    Piece::Large(i) => {
                        let item = &done.items[i];
                        let read_err = |e: ReadError| BackupError::ReadFile {
                            dir: self.ctx.dir.into(),
                            path: e.path,
                            source: e.source,
                        };
                        // Read whole (with retries) up to the buffering limit, else streamed.
                        let (mut outcome, bytes) = inline.read_one(item).map_err(read_err)?;
                        builder
                            .get_mut()
                            .write_all(bytes)
                            .map_err(BackupError::Archive)?;
                        if let Outcome::Large = outcome {
                            let parent_hash = match item.action {
                                Action::Read { parent_hash } => parent_hash,
                                _ => None,
                            };
                            let stream_err = |source| {
                                read_err(ReadError {
                                    path: item.walked.path.clone(),
                                    source,
                                })
                            };
                            let dir = item.dir.as_deref().ok_or_else(|| {
                                stream_err(io::Error::other("walk gave no directory to read from"))
                            })?;
                            outcome = Outcome::File(
                                stream_large(builder, dir, &item.walked, parent_hash)
                                    .map_err(stream_err)?,
                            );
                        }
                        done.outcomes[i] = outcome;
                    }
                }
            }
            for (item, outcome) in done.items.into_iter().zip(done.outcomes) {
                let size = if item.walked.kind == EntryKind::File {
                    item.walked.meta.size
                } else {
                    0
                };
                self.record(item, outcome);
                progress.progress.files_done += 1;
                progress.progress.bytes_done += size;
                progress.tick();
            }
        }
        Ok(())
    }

    /// Decides what to do with each walked entry and cuts the run into reader jobs. Entries
    /// exactly as in the parent are only counted.
    fn plan(&mut self, batch: Batch, progress: &mut Throttle<'_>) -> Result<(), BackupError> {
        let mut job = Job { items: Vec::new() };
        let mut bytes = 0u64;
        for w in batch.entries {
            let (action, parent) = match self.parent.as_mut() {
                None => (
                    match w.kind {
                        EntryKind::File => Action::Read { parent_hash: None },
                        _ => Action::Header,
                    },
                    None,
                ),
                Some(tree) => {
                    let p = tree.lookup(&w.path, w.kind, &mut self.deleted, &mut self.totals)?;
                    let action = match (w.kind, &p) {
                        // The journal named this file: an event says its content may have
                        // changed even where its size and mtime did not, so it is read (and
                        // the parent's copy kept if the bytes are the same).
                        (EntryKind::File, _) if tree.coverage.is_some() => Action::Read {
                            parent_hash: p.as_ref().and_then(|p| p.sha256),
                        },
                        (EntryKind::File, _) => match decide(p.as_ref(), &w.meta, tree.clock) {
                            Decision::Unchanged => Action::Skip,
                            Decision::Read { parent_hash } => Action::Read { parent_hash },
                        },
                        (_, Some(p)) if unchanged_since(p, &w) => Action::Skip,
                        _ => Action::Header,
                    };
                    if let (Action::Skip, Some(p)) = (action, &p)
                        && unchanged_since(p, &w)
                    {
                        self.totals.add_inherited(p);
                        progress.progress.files_done += 1;
                        progress.progress.bytes_done += p.size;
                        continue;
                    }
                    (action, p)
                }
            };
            let dir = if let Action::Read { .. } = action {
                bytes += w.meta.size.min(READER_BYTES);
                batch.dirs.get(w.dir).cloned()
            } else {
                None
            };
            job.items.push(JobItem {
                walked: w,
                dir,
                action,
                parent,
            });
            if bytes >= JOB_BYTES || job.items.len() >= JOB_ITEMS {
                let full = std::mem::replace(&mut job, Job { items: Vec::new() });
                self.ready.push_back((full, bytes));
                bytes = 0;
            }
        }
        if !job.items.is_empty() {
            self.ready.push_back((job, bytes));
        }
        progress.tick();
        Ok(())
    }

    /// Turns one outcome into the new tree's entry: counted in the totals, and written to the
    /// manifest if it is new or differs from the parent's.
    fn record(&mut self, item: JobItem, outcome: Outcome) {
        let JobItem {
            walked: w, parent, ..
        } = item;
        let parent_id = self.parent.as_ref().map(|p| p.id);
        let inherit = |path: String, meta: &Meta, target: Option<String>| {
            parent.as_ref().map(|p| {
                let mut e = entry(path, p.kind, meta, p.sha256, target);
                e.origin = p.origin.or(parent_id);
                e
            })
        };
        let new = match outcome {
            Outcome::Skipped => inherit(w.path, &w.meta, w.target),
            Outcome::Header => Some(entry(w.path, w.kind, &w.meta, None, w.target)),
            Outcome::File(FileOutcome::Archived {
                meta,
                sha256,
                changed_while_reading,
            }) => {
                if changed_while_reading {
                    self.changed_while_reading.push(w.path.clone());
                }
                let mut e = entry(w.path, EntryKind::File, &meta, Some(sha256), None);
                e.changed_while_reading = changed_while_reading;
                Some(e)
            }
            Outcome::File(FileOutcome::SameAsParent { meta }) => inherit(w.path, &meta, None),
            Outcome::File(FileOutcome::Vanished) | Outcome::Large => {
                if parent.is_some() {
                    self.deleted.push(w.path.clone());
                }
                self.vanished.push(w.path);
                None
            }
        };
        let Some(e) = new else { return };
        let unchanged = e.origin.is_some() && parent.as_ref().is_some_and(|p| same_state(p, &e));
        if !unchanged {
            self.entries.push(&e);
        }
        self.totals.add_entry(&e);
    }
}

/// Whether a walked entry has exactly the parent's recorded state (for a file, without looking
/// at its content).
fn unchanged_since(p: &ManifestEntry, w: &Walked) -> bool {
    p.kind == w.kind
        && p.mtime_ns == w.meta.mtime_ns
        && p.mode == w.meta.mode & 0o1777
        && p.uid == w.meta.uid
        && p.gid == w.meta.gid
        && p.inode == w.meta.ino
        && (w.kind != EntryKind::File || p.size == w.meta.size)
        && p.target == w.target
}

/// Same recorded state (everything but where the data lives).
fn same_state(a: &ManifestEntry, b: &ManifestEntry) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.mtime_ns == b.mtime_ns
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.inode == b.inode
        && a.sha256 == b.sha256
        && a.target == b.target
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

pub(crate) fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
