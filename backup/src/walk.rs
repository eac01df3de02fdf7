//! Deterministic walk of the data directory: depth-first, names sorted byte-wise, so the same
//! tree always produces the same archive and manifest order. Entries that vanish during the walk
//! are recorded, special files are skipped with a reason.
//!
//! The walk is syscall-bound (one `statx` per entry), so it runs on a few threads and streams:
//! work units are "list a directory" and "stat a chunk of its names"; workers take the unit the
//! ordered output needs soonest, and [`Walker::next_batch`] hands out entries in walk order
//! while the workers run ahead, with a bounded number of entries (and open directories) buffered.
//! Each entry keeps its directory open, so files are later opened with one `openat` lookup.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ffi::CStr;
use std::fs::Metadata;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, StatxFlags};
use rustix::io::Errno;

use crate::manifest::{EntryKind, SkippedPath};

/// The stat fields a backup records and an incremental compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub ino: u64,
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl Meta {
    pub(crate) fn of(md: &Metadata) -> Self {
        Self {
            size: md.size(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            ino: md.ino(),
        }
    }

    pub(crate) fn of_stat(st: &rustix::fs::Stat) -> Self {
        Self {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: ns(st.st_mtime, i64::try_from(st.st_mtime_nsec).unwrap_or(0)),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            ino: st.st_ino,
        }
    }

    fn of_statx(st: &rustix::fs::Statx) -> Self {
        Self {
            size: st.stx_size,
            mtime_ns: ns(st.stx_mtime.tv_sec, i64::from(st.stx_mtime.tv_nsec)),
            mode: u32::from(st.stx_mode) & 0o7777,
            uid: st.stx_uid,
            gid: st.stx_gid,
            ino: st.stx_ino,
        }
    }
}

/// One entry found by the walk.
#[derive(Debug, Clone)]
pub(crate) struct Walked {
    pub path: String,
    pub kind: EntryKind,
    pub meta: Meta,
    pub target: Option<String>,
    /// The directory holding it: an index into [`Batch::dirs`].
    pub dir: usize,
}

impl Walked {
    /// The last path component.
    pub(crate) fn name(&self) -> &str {
        self.path.rsplit_once('/').map_or(&self.path, |(_, n)| n)
    }
}

/// Everything the walk found (for tests that want it all at once).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct WalkResult {
    pub entries: Vec<Walked>,
    pub vanished: Vec<String>,
    pub skipped: Vec<SkippedPath>,
}

/// A slice of the walk, in order.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub entries: Vec<Walked>,
    /// The directories holding them, open (so files are opened with one `openat` lookup).
    pub dirs: Vec<Arc<OwnedFd>>,
    pub vanished: Vec<String>,
    pub skipped: Vec<SkippedPath>,
}

/// Deepest directory nesting followed (protects against pathological trees).
pub(crate) const MAX_DEPTH: usize = 256;
/// Names stat'ed per work unit.
const CHUNK: usize = 1024;
/// Entries buffered ahead of the consumer (a listed directory counts as `DIR_COST`).
const BUFFERED_MAX: usize = 8 * 1024;
/// Weight of an open directory in that budget: bounds open descriptors to about 256.
const DIR_COST: usize = 32;
/// Entries per batch handed out, and directories entered per batch.
const BATCH_ENTRIES: usize = 1024;
const BATCH_DIRS: usize = 32;

/// Walks `root` (which must be a directory; a symlink to one is followed) completely.
#[cfg(test)]
pub(crate) fn walk(root: &Path) -> io::Result<WalkResult> {
    let mut w = Walker::start(root)?;
    let mut out = WalkResult::default();
    while let Some(b) = w.next_batch()? {
        out.entries.extend(b.entries);
        out.vanished.extend(b.vanished);
        out.skipped.extend(b.skipped);
    }
    Ok(out)
}

type UnitId = u64;

/// Names of one directory, sorted, NUL-terminated in one buffer.
struct Names {
    buf: Vec<u8>,
    /// (start, len without the NUL)
    spans: Vec<(usize, usize)>,
}

impl Names {
    fn get(&self, i: usize) -> (&[u8], &CStr) {
        let (s, l) = self.spans[i];
        let c = CStr::from_bytes_with_nul(&self.buf[s..=s + l]).unwrap_or(c"");
        (&self.buf[s..s + l], c)
    }
}

struct DirInfo {
    fd: Arc<OwnedFd>,
    rel: String,
    depth: usize,
    names: Names,
}

enum Unit {
    List {
        parent: Option<Arc<OwnedFd>>,
        rel: String,
        depth: usize,
    },
    Stat {
        dir: Arc<DirInfo>,
        from: usize,
        to: usize,
    },
}

/// A stat'ed entry; directories carry the unit listing them (none if too deep).
struct Item {
    walked: Walked,
    list: Option<UnitId>,
}

enum Done {
    Listed {
        chunks: VecDeque<UnitId>,
        vanished: bool,
    },
    Stated {
        dir: Arc<OwnedFd>,
        items: Vec<Item>,
        vanished: Vec<String>,
        skipped: Vec<SkippedPath>,
    },
}

struct State {
    queue: BinaryHeap<Reverse<(Vec<u8>, UnitId)>>,
    units: HashMap<UnitId, Unit>,
    done: HashMap<UnitId, (io::Result<Done>, usize)>,
    buffered: usize,
    awaited: Option<UnitId>,
    next_id: UnitId,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn add(&mut self, key: Vec<u8>, unit: Unit) -> UnitId {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((key, id)));
        self.units.insert(id, unit);
        id
    }
}

/// Order key of a path: walk order is byte order once `/` sorts before everything.
fn key_of(path: &[u8]) -> Vec<u8> {
    path.iter()
        .map(|&b| if b == b'/' { 0 } else { b })
        .collect()
}

struct Frame {
    chunks: VecDeque<UnitId>,
    items: std::vec::IntoIter<Item>,
    dir: Option<Arc<OwnedFd>>,
}

/// A running walk; dropping it stops the workers.
pub(crate) struct Walker {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    stack: Vec<Frame>,
    /// Stat of the root directory.
    pub(crate) root: Meta,
    started: bool,
}

impl Walker {
    /// Starts walking `root` on a few threads.
    pub(crate) fn start(root: &Path) -> io::Result<Walker> {
        let md = std::fs::metadata(root)?;
        if !md.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        let fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut state = State {
            queue: BinaryHeap::new(),
            units: HashMap::new(),
            done: HashMap::new(),
            buffered: 0,
            awaited: None,
            next_id: 0,
            stop: false,
        };
        state.add(
            Vec::new(),
            Unit::List {
                parent: Some(Arc::new(fd)),
                rel: String::new(),
                depth: 0,
            },
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            cv: Condvar::new(),
        });
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        let mut workers = Vec::new();
        for i in 0..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("dr-walk-{i}"))
                .spawn(move || worker(&s));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) if workers.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(Walker {
            shared,
            workers,
            stack: Vec::new(),
            root: Meta::of(&md),
            started: false,
        })
    }

    /// Waits for a unit's result and takes it.
    fn take(&self, id: UnitId) -> io::Result<Done> {
        let mut st = self.shared.lock();
        loop {
            if let Some((done, cost)) = st.done.remove(&id) {
                st.buffered = st.buffered.saturating_sub(cost);
                if st.awaited == Some(id) {
                    st.awaited = None;
                }
                self.shared.cv.notify_all();
                return done;
            }
            if st.awaited != Some(id) {
                st.awaited = Some(id);
                self.shared.cv.notify_all();
            }
            st = self.shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn enter(&mut self, list: UnitId, path: &str, batch: &mut Batch) -> io::Result<()> {
        match self.take(list)? {
            Done::Listed { chunks, vanished } => {
                if vanished {
                    batch.vanished.push(path.to_owned());
                }
                self.stack.push(Frame {
                    chunks,
                    items: Vec::new().into_iter(),
                    dir: None,
                });
                Ok(())
            }
            Done::Stated { .. } => Err(io::Error::other("walk: unit mix-up")),
        }
    }

    /// The next entries in walk order; `None` when the walk is complete.
    pub(crate) fn next_batch(&mut self) -> io::Result<Option<Batch>> {
        let mut batch = Batch::default();
        if !self.started {
            self.started = true;
            self.enter(0, "", &mut batch)?;
        }
        let mut dirs = 0;
        while batch.entries.len() < BATCH_ENTRIES && dirs < BATCH_DIRS {
            let Some(top) = self.stack.last_mut() else {
                break;
            };
            let Some(item) = top.items.next() else {
                let Some(chunk) = top.chunks.pop_front() else {
                    self.stack.pop();
                    continue;
                };
                match self.take(chunk)? {
                    Done::Stated {
                        dir,
                        items,
                        vanished,
                        skipped,
                    } => {
                        batch.vanished.extend(vanished);
                        batch.skipped.extend(skipped);
                        if let Some(top) = self.stack.last_mut() {
                            top.items = items.into_iter();
                            top.dir = Some(dir);
                        }
                    }
                    Done::Listed { .. } => return Err(io::Error::other("walk: unit mix-up")),
                }
                continue;
            };
            let mut walked = item.walked;
            if let Some(dir) = &top.dir {
                if !batch.dirs.last().is_some_and(|d| Arc::ptr_eq(d, dir)) {
                    batch.dirs.push(dir.clone());
                }
                walked.dir = batch.dirs.len() - 1;
            }
            if let Some(list) = item.list {
                self.enter(list, &walked.path, &mut batch)?;
                dirs += 1;
            }
            batch.entries.push(walked);
        }
        let empty = batch.entries.is_empty() && batch.vanished.is_empty();
        if empty && batch.skipped.is_empty() && self.stack.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

impl Drop for Walker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(shared: &Shared) {
    loop {
        let (id, unit) = {
            let mut st = shared.lock();
            loop {
                if st.stop {
                    return;
                }
                let ready = match st.queue.peek() {
                    Some(Reverse((_, id))) => st.buffered < BUFFERED_MAX || st.awaited == Some(*id),
                    None => false,
                };
                if ready && let Some(Reverse((_, id))) = st.queue.pop() {
                    let Some(unit) = st.units.remove(&id) else {
                        continue;
                    };
                    st.buffered += match &unit {
                        Unit::List { .. } => DIR_COST,
                        Unit::Stat { from, to, .. } => to - from,
                    };
                    break (id, unit);
                }
                st = shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let estimated = match &unit {
            Unit::List { .. } => DIR_COST,
            Unit::Stat { from, to, .. } => to - from,
        };
        let result = run(unit);
        let mut st = shared.lock();
        // Give the units this one discovered their ids and link them into the result.
        let result = result.map(|done| match done {
            Discovered::Listed { dir, chunks } => match dir {
                None => Done::Listed {
                    chunks: VecDeque::new(),
                    vanished: true,
                },
                Some(dir) => Done::Listed {
                    chunks: chunks
                        .into_iter()
                        .map(|(key, from, to)| {
                            st.add(
                                key,
                                Unit::Stat {
                                    dir: dir.clone(),
                                    from,
                                    to,
                                },
                            )
                        })
                        .collect(),
                    vanished: false,
                },
            },
            Discovered::Stated {
                dir,
                mut items,
                subdirs,
                vanished,
                skipped,
            } => {
                for (idx, key, unit) in subdirs {
                    items[idx].list = Some(st.add(key, unit));
                }
                Done::Stated {
                    dir,
                    items,
                    vanished,
                    skipped,
                }
            }
        });
        let cost = match &result {
            Ok(Done::Listed { .. }) => DIR_COST,
            Ok(Done::Stated { items, .. }) => items.len(),
            Err(_) => 0,
        };
        st.buffered = st.buffered.saturating_sub(estimated) + cost;
        st.done.insert(id, (result, cost));
        shared.cv.notify_all();
    }
}

enum Discovered {
    /// `None`: the directory vanished before it could be listed.
    Listed {
        dir: Option<Arc<DirInfo>>,
        chunks: Vec<(Vec<u8>, usize, usize)>,
    },
    Stated {
        dir: Arc<OwnedFd>,
        items: Vec<Item>,
        /// Directories to list: index into `items`, order key, unit.
        subdirs: Vec<(usize, Vec<u8>, Unit)>,
        vanished: Vec<String>,
        skipped: Vec<SkippedPath>,
    },
}

fn run(unit: Unit) -> io::Result<Discovered> {
    match unit {
        Unit::List { parent, rel, depth } => list(parent, rel, depth),
        Unit::Stat { dir, from, to } => stat_chunk(&dir, from, to),
    }
}

fn list(parent: Option<Arc<OwnedFd>>, rel: String, depth: usize) -> io::Result<Discovered> {
    let vanished_dir = || {
        Ok(Discovered::Listed {
            dir: None,
            chunks: Vec::new(),
        })
    };
    let fd: Arc<OwnedFd> = if rel.is_empty() {
        // The root: opened by `start`.
        match parent {
            Some(fd) => fd,
            None => return Err(io::Error::other("walk: root without a descriptor")),
        }
    } else {
        let Some(parent) = parent else {
            return Err(io::Error::other("walk: directory without a parent"));
        };
        let name = rel.rsplit_once('/').map_or(rel.as_str(), |(_, n)| n);
        match rustix::fs::openat(
            &*parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Arc::new(fd),
            // Gone, or replaced by a file or symlink since it was stat'ed.
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return vanished_dir(),
            Err(e) => return Err(annotate(e.into(), &rel)),
        }
    };
    let mut buf: Vec<MaybeUninit<u8>> = vec![MaybeUninit::uninit(); 64 << 10];
    let mut names = Names {
        buf: Vec::new(),
        spans: Vec::new(),
    };
    {
        let mut rd = RawDir::new(&*fd, &mut buf);
        while let Some(entry) = rd.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(Errno::NOENT) if !rel.is_empty() => return vanished_dir(),
                Err(e) => return Err(annotate(e.into(), &rel)),
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.spans.push((names.buf.len(), name.len()));
            names.buf.extend_from_slice(name);
            names.buf.push(0);
        }
    }
    let nb = &names.buf;
    names
        .spans
        .sort_unstable_by(|a, b| nb[a.0..a.0 + a.1].cmp(&nb[b.0..b.0 + b.1]));
    let mut chunks = Vec::new();
    let mut from = 0;
    while from < names.spans.len() {
        let to = (from + CHUNK).min(names.spans.len());
        let (first, _) = names.get(from);
        let mut key = key_of(rel.as_bytes());
        if !rel.is_empty() {
            key.push(0);
        }
        key.extend_from_slice(first);
        chunks.push((key, from, to));
        from = to;
    }
    Ok(Discovered::Listed {
        dir: Some(Arc::new(DirInfo {
            fd,
            rel,
            depth,
            names,
        })),
        chunks,
    })
}

fn stat_chunk(dir: &Arc<DirInfo>, from: usize, to: usize) -> io::Result<Discovered> {
    let mut items = Vec::with_capacity(to - from);
    let mut subdirs = Vec::new();
    let mut vanished = Vec::new();
    let mut skipped = Vec::new();
    for i in from..to {
        let (raw, cname) = dir.names.get(i);
        let walked = match stat_name(&dir.fd, raw, cname, &dir.rel, dir.depth)? {
            Stated::Entry(w) => w,
            Stated::Vanished(path) => {
                vanished.push(path);
                continue;
            }
            Stated::Skipped(s) => {
                skipped.push(s);
                continue;
            }
        };
        if walked.kind == EntryKind::Dir {
            subdirs.push((
                items.len(),
                key_of(walked.path.as_bytes()),
                Unit::List {
                    parent: Some(dir.fd.clone()),
                    rel: walked.path.clone(),
                    depth: dir.depth + 1,
                },
            ));
        }
        items.push(Item { walked, list: None });
    }
    Ok(Discovered::Stated {
        dir: dir.fd.clone(),
        items,
        subdirs,
        vanished,
        skipped,
    })
}

/// What one name in a directory turned out to be.
pub(crate) enum Stated {
    Entry(Walked),
    Vanished(String),
    Skipped(SkippedPath),
}

/// Stats `raw` (also as `cname`) in the directory `dir` (at `rel`, `depth` levels down) without
/// following a symlink; a directory deeper than [`MAX_DEPTH`] is skipped. The entry's `dir` is 0.
pub(crate) fn stat_name(
    dir: &OwnedFd,
    raw: &[u8],
    cname: &CStr,
    rel: &str,
    depth: usize,
) -> io::Result<Stated> {
    let mask = StatxFlags::TYPE
        | StatxFlags::MODE
        | StatxFlags::UID
        | StatxFlags::GID
        | StatxFlags::MTIME
        | StatxFlags::INO
        | StatxFlags::SIZE;
    let Ok(name) = std::str::from_utf8(raw) else {
        let shown = String::from_utf8_lossy(raw);
        return Ok(Stated::Skipped(SkippedPath {
            path: join(rel, &shown),
            reason: "name is not UTF-8".into(),
        }));
    };
    let path = join(rel, name);
    let st = match rustix::fs::statx(
        dir,
        cname,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC,
        mask,
    ) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Stated::Vanished(path)),
        Err(e) => return Err(annotate(e.into(), &path)),
    };
    let meta = Meta::of_statx(&st);
    let walked = |path, kind, target| {
        Stated::Entry(Walked {
            path,
            kind,
            meta,
            target,
            dir: 0,
        })
    };
    Ok(match FileType::from_raw_mode(u32::from(st.stx_mode)) {
        FileType::RegularFile => walked(path, EntryKind::File, None),
        FileType::Directory if depth >= MAX_DEPTH => Stated::Skipped(SkippedPath {
            path,
            reason: format!("deeper than {MAX_DEPTH} levels"),
        }),
        FileType::Directory => walked(path, EntryKind::Dir, None),
        FileType::Symlink => {
            let target = match rustix::fs::readlinkat(dir, cname, Vec::new()) {
                Ok(t) => t,
                Err(Errno::NOENT) => return Ok(Stated::Vanished(path)),
                Err(e) => return Err(annotate(e.into(), &path)),
            };
            match target.into_string() {
                Ok(t) => walked(path, EntryKind::Symlink, Some(t)),
                Err(_) => Stated::Skipped(SkippedPath {
                    path,
                    reason: "symlink target is not UTF-8".into(),
                }),
            }
        }
        other => Stated::Skipped(SkippedPath {
            path,
            reason: special_kind(other).into(),
        }),
    })
}

fn special_kind(ft: FileType) -> &'static str {
    match ft {
        FileType::Socket => "socket (not backed up)",
        FileType::Fifo => "fifo (not backed up)",
        FileType::BlockDevice | FileType::CharacterDevice => "device node (not backed up)",
        _ => "special file (not backed up)",
    }
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        let mut p = String::with_capacity(rel.len() + 1 + name.len());
        p.push_str(rel);
        p.push('/');
        p.push_str(name);
        p
    }
}

fn annotate(e: io::Error, rel: &str) -> io::Error {
    let shown = if rel.is_empty() { "." } else { rel };
    io::Error::new(e.kind(), format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn walk_is_sorted_depth_first_and_skips_specials() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a.txt"), "1").unwrap();
        fs::write(root.join("a/b/c"), "2").unwrap();
        fs::write(root.join("z"), "3").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("l")).unwrap();
        let sock = std::os::unix::net::UnixListener::bind(root.join("s.sock")).unwrap();
        let w = walk(root).unwrap();
        drop(sock);
        let paths: Vec<_> = w.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c", "a.txt", "l", "z"]);
        assert_eq!(w.entries[4].target.as_deref(), Some("a.txt"));
        assert_eq!(w.skipped.len(), 1);
        assert!(w.skipped[0].reason.contains("socket"));
    }

    #[test]
    fn big_and_deep_trees_come_out_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut want = Vec::new();
        // Enough names for several chunks per directory, and nesting between them.
        for d in ["m", "m/x", "m/x/y", "b", "zz"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for i in 0..700 {
            fs::write(root.join(format!("m/f{i:04}")), "").unwrap();
        }
        for i in 0..300 {
            fs::write(root.join(format!("m/x/y/g{i:03}")), "").unwrap();
        }
        fs::write(root.join("b/one"), "").unwrap();
        // Reference: a plain recursive walk with sorted names.
        fn rec(dir: &Path, rel: &str, out: &mut Vec<String>) {
            let mut names: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            for n in names {
                let p = if rel.is_empty() {
                    n.clone()
                } else {
                    format!("{rel}/{n}")
                };
                out.push(p.clone());
                if dir.join(&n).is_dir() {
                    rec(&dir.join(&n), &p, out);
                }
            }
        }
        rec(root, "", &mut want);
        let got: Vec<String> = walk(root)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(got, want);
        let mut sorted = got.clone();
        sorted.sort_by(|a, b| crate::paths::walk_order(a, b));
        assert_eq!(got, sorted);
    }
}
