//! Restore engine: fetch a backup chain (full + incrementals), verify while streaming, extract
//! into a staging directory with strict path safety, check the result against the manifest, and
//! leave the swap into place to [`swap_in`] (the agent stops the service and runs hooks around
//! it). On any failure the staging directory is removed and the data directory was never touched.

mod extract;
mod fsops;
mod space;
mod swap;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use space::{FsSpace, SpaceProbe, StatvfsProbe, human_bytes};
pub use swap::{SwapError, SwapGuard, swap_in};

use crate::hashing::Sha256Digest;
use crate::list::{ChainError, ListError, latest_backup, load_chain};
use crate::manifest::view::ViewMerge;
use crate::manifest::{EntryChecker, EntryKind, Manifest};
use crate::naming::{BackupId, BackupLocation, NameError};
use crate::progress::{Phase, ProgressSink, Throttle};
use crate::scan::{ScanError, scan_archive};
use crate::store::{ObjectStore, StoreError};
use crate::walk::Walker;
use extract::Extractor;
use fsops::{Attrs, Root};

/// Tuning and test hooks for a restore.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Threads writing small files (default: CPU cores, at most 4).
    pub writer_threads: usize,
    /// Restore file owners (default: when running as root).
    pub preserve_owner: Option<bool>,
    /// `syncfs` the staging file system at the end (default true).
    pub sync: bool,
    /// Free-space probe (default: statvfs).
    pub space_probe: Arc<dyn SpaceProbe>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("writer_threads", &self.writer_threads)
            .field("preserve_owner", &self.preserve_owner)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl Default for RestoreOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            writer_threads: cores.clamp(1, 4),
            preserve_owner: None,
            sync: true,
            space_probe: Arc::new(StatvfsProbe),
        }
    }
}

/// What to restore and where.
pub struct RestoreRequest<'a> {
    /// Group of the backup.
    pub group: &'a str,
    /// Host whose backup to restore (may differ from the host restoring).
    pub host: &'a str,
    /// Which backup; `None` = the newest.
    pub backup: Option<BackupId>,
    /// Directory to create and fill; must not exist (or be empty), next to the data directory.
    pub staging: &'a Path,
    /// The data directory that will be replaced; only used to check it shares the file system.
    pub data_dir: &'a Path,
    /// Tuning.
    pub options: RestoreOptions,
    /// Optional progress sink.
    pub progress: Option<&'a dyn ProgressSink>,
}

/// A completed extraction, ready for [`swap_in`].
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup: BackupId,
    /// The chain applied, full first.
    pub chain: Vec<BackupId>,
    /// Entries in the restored tree.
    pub entries: u64,
    /// Regular files in the restored tree.
    pub files: u64,
    /// Bytes of those files.
    pub file_bytes: u64,
    /// Compressed bytes read from the store.
    pub stored_bytes: u64,
    /// Where the tree is.
    pub staging: PathBuf,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a restore failed. In every case the data directory was not touched, and the staging
/// directory was removed if this restore had created it.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Bad group/host.
    #[error("restore: {0}; nothing was written")]
    Name(#[from] NameError),
    /// A manifest of the chain is missing, unreadable or hostile.
    #[error("restore: {0}; nothing was written")]
    Manifest(#[from] ListError),
    /// The chain is broken or inconsistent.
    #[error("restore of {id}: {problem}; nothing was written")]
    Chain { id: BackupId, problem: String },
    /// The staging directory is unusable.
    #[error("restore: staging directory {path}: {problem}; nothing was written")]
    Staging { path: PathBuf, problem: String },
    /// Not enough space.
    #[error(
        "restore: not enough {what} on the file system of {dir}: need {need}, have {have}; free some space or restore elsewhere; nothing was written"
    )]
    NoSpace {
        dir: PathBuf,
        what: &'static str,
        need: String,
        have: String,
    },
    /// The store failed while opening an archive.
    #[error(
        "restore of {id}: {source}; the staging directory was removed, the data directory is untouched"
    )]
    Store { id: BackupId, source: StoreError },
    /// The archive is corrupt or hostile, or writing failed.
    #[error(
        "restore of {id}: {source}; the staging directory was removed, the data directory is untouched"
    )]
    Archive { id: BackupId, source: ScanError },
    /// The restored tree does not match the final manifest.
    #[error(
        "restore of {id}: restored tree differs from the manifest: {problem}; the staging directory was removed"
    )]
    Mismatch { id: BackupId, problem: String },
    /// A local I/O failure after extraction (attributes, sync).
    #[error("restore of {id}: {what}: {source}; the staging directory was removed")]
    Io {
        id: BackupId,
        what: String,
        source: io::Error,
    },
}

/// Restores a backup (with its chain) into `req.staging`. Blocking.
pub fn restore_chain(
    store: &dyn ObjectStore,
    req: &RestoreRequest<'_>,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let loc = BackupLocation::new(req.group, req.host)?;
    let target = match req.backup {
        Some(id) => id,
        None => latest_backup(store, &loc)?.id,
    };
    let chain = load_chain(store, &loc, target, true).map_err(|e| match e {
        ChainError::List(e) => RestoreError::Manifest(e),
        ChainError::Broken(problem) => RestoreError::Chain {
            id: target,
            problem,
        },
    })?;
    let staging_parent = check_staging(req.staging, req.data_dir)?;
    check_space(&chain, &staging_parent, req.options.space_probe.as_ref())?;

    if let Err(e) = std::fs::create_dir(req.staging)
        && e.kind() != io::ErrorKind::AlreadyExists
    {
        return Err(RestoreError::Staging {
            path: req.staging.into(),
            problem: format!("create: {e}"),
        });
    }
    match extract_chain(store, &loc, chain, req) {
        Ok(mut report) => {
            report.elapsed = started.elapsed();
            Ok(report)
        }
        Err(e) => {
            // It was absent or empty before: removing it restores the state before the call.
            let _ = std::fs::remove_dir_all(req.staging);
            Err(e)
        }
    }
}

/// The staging directory must be absent or empty, its parent must exist and be on the data
/// directory's file system (so the swap is a rename). Returns the parent.
fn check_staging(staging: &Path, data_dir: &Path) -> Result<PathBuf, RestoreError> {
    let bad = |problem: String| RestoreError::Staging {
        path: staging.into(),
        problem,
    };
    let parent = staging
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let pmd =
        std::fs::metadata(&parent).map_err(|e| bad(format!("parent {}: {e}", parent.display())))?;
    match std::fs::symlink_metadata(staging) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Ok(md) if md.is_dir() => {
            let mut rd = std::fs::read_dir(staging).map_err(|e| bad(e.to_string()))?;
            if rd.next().is_some() {
                return Err(bad("exists and is not empty".into()));
            }
        }
        Ok(_) => return Err(bad("exists and is not a directory".into())),
        Err(e) => return Err(bad(e.to_string())),
    }
    let data_parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dmd = std::fs::metadata(data_parent).map_err(|e| {
        bad(format!(
            "data directory parent {}: {e}",
            data_parent.display()
        ))
    })?;
    if dmd.dev() != pmd.dev() {
        return Err(bad(format!(
            "is on another file system than the data directory {} (put it next to the data directory so the swap is an atomic rename)",
            data_dir.display()
        )));
    }
    Ok(parent)
}

fn check_space(chain: &[Manifest], dir: &Path, probe: &dyn SpaceProbe) -> Result<(), RestoreError> {
    let space = probe.probe(dir).map_err(|e| RestoreError::Staging {
        path: dir.into(),
        problem: format!("statvfs: {e}"),
    })?;
    let (need_bytes, need_inodes) = space::required(chain, space.block_size);
    if need_bytes > space.avail_bytes {
        return Err(RestoreError::NoSpace {
            dir: dir.into(),
            what: "space",
            need: human_bytes(need_bytes),
            have: human_bytes(space.avail_bytes),
        });
    }
    if need_inodes > space.avail_inodes {
        return Err(RestoreError::NoSpace {
            dir: dir.into(),
            what: "inodes",
            need: format!("{need_inodes} inodes"),
            have: format!("{} inodes", space.avail_inodes),
        });
    }
    Ok(())
}

fn extract_chain(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    mut chain: Vec<Manifest>,
    req: &RestoreRequest<'_>,
) -> Result<RestoreReport, RestoreError> {
    let Some(last) = chain.last() else {
        return Err(RestoreError::Staging {
            path: req.staging.into(),
            problem: "empty chain".into(),
        });
    };
    let target = last.backup.id;
    let io_err = |what: &str| {
        let what = what.to_owned();
        move |source| RestoreError::Io {
            id: target,
            what: what.clone(),
            source,
        }
    };
    let root = Arc::new(Root::open(req.staging).map_err(io_err("open staging directory"))?);
    let preserve_owner = req
        .options
        .preserve_owner
        .unwrap_or_else(|| rustix::process::geteuid().is_root());
    let mut written: HashMap<String, Sha256Digest> = HashMap::new();
    let mut progress = Throttle::new(req.progress, Phase::Reading);
    progress.progress.files_total = chain.iter().map(|m| m.backup.totals.archived_entries).sum();
    progress.progress.bytes_total = chain
        .iter()
        .map(|m| m.backup.totals.archived_file_bytes)
        .sum();
    progress.force();
    let mut stored_bytes = 0;
    let chain_ids: Vec<BackupId> = chain.iter().map(|m| m.backup.id).collect();
    // Each archive in order, with the attributes its own manifest gives. What the incrementals
    // write is remembered (path → hash) for the final check; the full backup's is in its
    // manifest.
    for (i, m) in chain.iter().enumerate() {
        let id = m.backup.id;
        for path in m.deleted.iter().rev() {
            root.remove(path).map_err(|source| RestoreError::Archive {
                id,
                source: ScanError::Write {
                    path: path.clone(),
                    source,
                },
            })?;
            written.remove(path);
        }
        let reader = store
            .open(&loc.key(&m.backup.archive.name))
            .map_err(|source| RestoreError::Store { id, source })?;
        let mut sink = Extractor::new(
            root.clone(),
            req.options.writer_threads,
            preserve_owner,
            (i > 0).then_some(&mut written),
        );
        let scanned = scan_archive(reader, m, &mut sink, &mut progress);
        let finished = sink.finish();
        let stats = scanned
            .and_then(|s| finished.map(|()| s))
            .map_err(|source| RestoreError::Archive { id, source })?;
        stored_bytes += stats.stored_bytes;
    }
    progress.phase(Phase::Finishing);
    let attrs_of = |e: &crate::manifest::ManifestEntry| Attrs {
        mode: e.mode,
        mtime_ns: e.mtime_ns,
        owner: preserve_owner.then_some((e.uid, e.gid)),
    };
    // Directories get their attributes last, deepest first (their contents are complete then,
    // and a read-only directory does not block its children's).
    let mut dirs: Vec<(String, Attrs)> = Vec::new();
    let base = chain.remove(0);
    let last = if chain.is_empty() {
        for e in base.entries.iter().filter(|e| e.kind == EntryKind::Dir) {
            dirs.push((e.path.clone(), attrs_of(e)));
        }
        Head {
            backup: base.backup,
            root: base.root,
        }
    } else {
        // A chain: the whole tree at the target's time, merged from the manifests as a stream,
        // is checked like any manifest and held against what is on disk, entry by entry;
        // attribute-only changes of later backups are applied on the way.
        let Some(newest) = chain.last() else {
            return Err(RestoreError::Staging {
                path: req.staging.into(),
                problem: "empty chain".into(),
            });
        };
        let head = Head {
            backup: newest.backup.clone(),
            root: newest.root,
        };
        let lists = (
            newest.deleted.clone(),
            newest.vanished.len(),
            newest.skipped.len(),
        );
        let base_id = base.backup.id;
        let mut merge = ViewMerge::new(base.entries.into_iter(), base_id, chain);
        let mut checker = EntryChecker::new(&head.backup, head.root.as_ref(), true)
            .map_err(|e| RestoreError::Manifest(ListError::Invalid(e)))?;
        let mismatch = |problem: String| RestoreError::Mismatch {
            id: target,
            problem,
        };
        let mut disk = OnDisk::new(req.staging).map_err(&mismatch)?;
        while let Ok(Some(item)) = merge.next_entry() {
            let want = &item.entry;
            checker
                .push(want)
                .map_err(|e| RestoreError::Manifest(ListError::Invalid(e)))?;
            let got = disk
                .next()
                .map_err(&mismatch)?
                .ok_or_else(|| mismatch(format!("{:?} is missing", want.path)))?;
            if got.path != want.path {
                return Err(mismatch(format!(
                    "found {:?} where {:?} was expected",
                    got.path, want.path
                )));
            }
            // What was written last at this path: by an incremental's archive, or else by the
            // full backup's.
            let content = written.get(&want.path).copied().or(item.base_sha256);
            let same = got.kind == want.kind
                && (want.kind != EntryKind::File
                    || (got.meta.size == want.size && content == want.sha256))
                && got.target == want.target;
            if !same {
                return Err(mismatch(format!(
                    "{:?} differs (type, size, content or target)",
                    want.path
                )));
            }
            match want.kind {
                EntryKind::Dir => dirs.push((want.path.clone(), attrs_of(want))),
                kind if item.attrs_only => root
                    .set_entry_attrs(&want.path, attrs_of(want), kind == EntryKind::Symlink)
                    .map_err(io_err(&format!("set attributes of {:?}", want.path)))?,
                _ => {}
            }
        }
        if let Some(extra) = disk.next().map_err(&mismatch)? {
            return Err(mismatch(format!("{:?} is not in the manifest", extra.path)));
        }
        checker
            .finish(&lists.0, lists.1, lists.2)
            .map_err(|e| RestoreError::Manifest(ListError::Invalid(e)))?;
        head
    };
    drop(written);
    for (path, attrs) in dirs.iter().rev() {
        root.set_dir_attrs(path, *attrs)
            .map_err(io_err(&format!("set attributes of {path:?}")))?;
    }
    if let Some(r) = &last.root {
        let attrs = Attrs {
            mode: r.mode,
            mtime_ns: r.mtime_ns,
            owner: preserve_owner.then_some((r.uid, r.gid)),
        };
        fsops::set_fd_attrs(
            std::fs::File::open(req.staging).map_err(io_err("open staging"))?,
            attrs,
        )
        .map_err(io_err("set attributes of the staging directory"))?;
    }
    if req.options.sync {
        root.sync().map_err(io_err("syncfs"))?;
    }
    progress.force();
    let t = &last.backup.totals;
    Ok(RestoreReport {
        backup: target,
        chain: chain_ids,
        entries: t.entries,
        files: t.files,
        file_bytes: t.file_bytes,
        stored_bytes,
        staging: req.staging.into(),
        elapsed: Duration::ZERO,
    })
}

/// The header and root attributes of the restored backup.
struct Head {
    backup: crate::manifest::ManifestHeader,
    root: Option<crate::manifest::RootAttrs>,
}

/// The restored tree as walked, entry by entry.
struct OnDisk {
    walker: Walker,
    batch: std::vec::IntoIter<crate::walk::Walked>,
}

impl OnDisk {
    fn new(staging: &Path) -> Result<Self, String> {
        Ok(Self {
            walker: Walker::start(staging)
                .map_err(|e| format!("walking the restored tree: {e}"))?,
            batch: Vec::new().into_iter(),
        })
    }

    fn next(&mut self) -> Result<Option<crate::walk::Walked>, String> {
        loop {
            if let Some(w) = self.batch.next() {
                return Ok(Some(w));
            }
            let Some(b) = self
                .walker
                .next_batch()
                .map_err(|e| format!("walking the restored tree: {e}"))?
            else {
                return Ok(None);
            };
            if let Some(s) = b.skipped.first() {
                return Err(format!("{:?}: {}", s.path, s.reason));
            }
            if let Some(v) = b.vanished.first() {
                return Err(format!("{v:?} vanished from the restored tree"));
            }
            self.batch = b.entries.into_iter();
        }
    }
}
