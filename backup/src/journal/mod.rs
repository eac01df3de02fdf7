//! A change journal of the data directory (Linux inotify), so that an incremental backup reads
//! the metadata of what changed instead of `statx`-ing every file (the walk of 100k unchanged
//! files is most of an incremental's time; see docs/benchmarks.md).
//!
//! A long-running process (the agent) starts one journal per data directory. Every backup takes a
//! [`Mark`] before it walks; once committed, the backup is [remembered](ChangeJournal::remember)
//! with its mark. An incremental whose parent was remembered asks for the paths changed since
//! the parent's mark ([`ChangeJournal::changes_since`]) and stats only those (`crate::guided`).
//!
//! # Invariant: a journal answer is never less than the truth
//!
//! Every path whose metadata or content changed after the parent's mark is in the answer (it
//! may hold more). This holds because:
//! - the mark is taken before the parent's walk starts, so anything the parent may have read
//!   stale was changed after the mark;
//! - the kernel queues an inotify event before the changing system call returns, and both
//!   [`ChangeJournal::mark`] and [`ChangeJournal::changes_since`] drain the queue first, so a
//!   change made before the call is recorded with a sequence number above every older mark;
//! - a new directory is recorded as a whole subtree (walked completely), because files may be
//!   created in it before its own watch is in place;
//! - anything that may lose events invalidates every mark taken so far: a queue overflow, a
//!   watch that cannot be added (the `fs.inotify.max_user_watches` limit), the data directory
//!   itself moved or deleted (a restore swaps it), an unmount, or more changed paths than the
//!   journal keeps. The next incremental then walks everything (and says why), and the journal
//!   re-arms itself;
//! - marks live in this process only: after a restart there is no remembered parent, so the
//!   first incremental walks everything.
//!
//! What inotify cannot see, and this journal therefore cannot either: writes through a shared
//! writable `mmap` (no event), writes through a hard link that lives outside the data directory
//! (the event goes to the other directory), and changes on network or FUSE file systems made by
//! another machine. erlmcp's Mnesia/DETS files are written with plain `write(2)`; for data
//! directories where these cases matter, turn the journal off (`[backup] change_journal = false`
//! in the agent), and every incremental walks. Full backups always walk.

mod events;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::fs::inotify;

use crate::naming::BackupId;
use crate::paths::walk_order;

/// Changed paths kept at most; beyond this the journal gives up until the next backup's mark
/// (the walk is as fast as reading that many paths' metadata anyway).
const MAX_CHANGED_PATHS: usize = 100_000;
/// Remembered backups (an incremental's parent is almost always the newest one).
const REMEMBERED: usize = 16;
/// How long the journal thread waits for events before checking whether it must stop or re-arm.
const POLL: Duration = Duration::from_millis(200);

/// A point in the journal's history, taken before a backup walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

/// What changed since a mark: paths relative to the data directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    /// Paths whose own metadata or content may have changed, or which may be gone.
    pub stat: Vec<String>,
    /// Directories that are new since the mark: everything under them is new or unknown.
    pub trees: Vec<String>,
}

impl ChangeSet {
    pub fn len(&self) -> usize {
        self.stat.len() + self.trees.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why the journal cannot answer (the incremental then walks everything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("the parent backup {0} was not taken by this process with the journal running")]
    UnknownParent(String),
    #[error("the journal lost track after the parent backup: {0}")]
    Invalidated(String),
    #[error("the journal is off: {0}")]
    Off(String),
}

/// The journal: a watching thread and the recorded changes.
pub struct ChangeJournal {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    root: PathBuf,
    fd: OwnedFd,
    state: Mutex<State>,
    stop: AtomicBool,
}

/// Flags of a changed path.
const STAT: u8 = 1;
const TREE: u8 = 2;

struct State {
    /// Increases with every change, mark and invalidation.
    seq: u64,
    /// Marks at or below this cannot be trusted.
    broken_at: u64,
    /// Why the last invalidation happened.
    broken_why: String,
    /// Watches must be set up again from the root (after an invalidation).
    rearm: bool,
    /// Why the journal cannot work at all right now.
    off: Option<String>,
    /// When to try arming again after a failure.
    next_arm: Option<std::time::Instant>,
    /// Watch descriptor → the directory's path ("" for the root).
    watches: HashMap<i32, String>,
    /// Changed path → sequence numbers of its latest change of each kind: `[stat, tree]` (0:
    /// none). Kept apart so that a directory new before a mark is not a new tree after it.
    changes: HashMap<String, [u64; 2]>,
    /// At most this many changed paths are kept ([`MAX_CHANGED_PATHS`] but in tests).
    max_changed: usize,
    /// Committed backups and the marks they were taken at, oldest first.
    remembered: VecDeque<(BackupId, Mark)>,
    /// The buffer events are read into (kept: the journal thread drains every few hundred ms).
    buf: Vec<std::mem::MaybeUninit<u8>>,
}

impl ChangeJournal {
    /// Starts watching `root` (every directory under it). Fails when inotify is unavailable;
    /// a tree too big for the watch limit gives a journal that is [off](Unusable::Off).
    pub fn start(root: &Path) -> io::Result<ChangeJournal> {
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            fd,
            state: Mutex::new(State {
                seq: 1,
                broken_at: 1,
                broken_why: "started".into(),
                rearm: true,
                off: None,
                next_arm: None,
                watches: HashMap::new(),
                changes: HashMap::new(),
                max_changed: MAX_CHANGED_PATHS,
                remembered: VecDeque::new(),
                buf: Vec::new(),
            }),
            stop: AtomicBool::new(false),
        });
        shared.sync(&mut shared.lock());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dr-journal".into())
            .spawn(move || s.run())?;
        Ok(ChangeJournal {
            shared,
            thread: Some(thread),
        })
    }

    /// Takes a mark: call it before a backup starts walking. `None` while the journal is off.
    pub fn mark(&self) -> Option<Mark> {
        let mut st = self.shared.lock();
        self.shared.sync(&mut st);
        if st.off.is_some() || st.rearm {
            return None;
        }
        st.seq += 1;
        Some(Mark(st.seq))
    }

    /// Records that `backup` was committed from a walk that started at `mark`.
    pub fn remember(&self, backup: BackupId, mark: Mark) {
        let mut st = self.shared.lock();
        st.remembered.retain(|(id, _)| *id != backup);
        st.remembered.push_back((backup, mark));
        while st.remembered.len() > REMEMBERED {
            st.remembered.pop_front();
        }
        // Changes older than every remembered mark can never be asked for again.
        if let Some(oldest) = st.remembered.iter().map(|(_, m)| m.0).min() {
            st.changes
                .retain(|_, seqs| seqs.iter().any(|s| *s > oldest));
        }
    }

    /// The paths changed since `parent` was taken, or why the journal cannot tell.
    pub fn changes_since(&self, parent: &BackupId) -> Result<ChangeSet, Unusable> {
        let mut st = self.shared.lock();
        self.shared.sync(&mut st);
        if let Some(why) = &st.off {
            return Err(Unusable::Off(why.clone()));
        }
        let Some(&(_, mark)) = st.remembered.iter().rev().find(|(id, _)| id == parent) else {
            return Err(Unusable::UnknownParent(parent.to_string()));
        };
        if mark.0 <= st.broken_at || st.rearm {
            return Err(Unusable::Invalidated(st.broken_why.clone()));
        }
        let mut set = ChangeSet::default();
        for (path, &[stat, tree]) in &st.changes {
            if path.is_empty() {
                continue;
            }
            if tree > mark.0 {
                set.trees.push(path.clone());
            } else if stat > mark.0 {
                set.stat.push(path.clone());
            }
        }
        set.trees = outermost(set.trees);
        set.stat
            .retain(|p| !set.trees.iter().any(|t| t == p || is_under(p, t)));
        set.stat.sort_by(|a, b| walk_order(a, b));
        Ok(set)
    }

    /// Whether the journal works right now (for status and logs).
    pub fn health(&self) -> Result<usize, String> {
        let st = self.shared.lock();
        match &st.off {
            Some(why) => Err(why.clone()),
            None => Ok(st.watches.len()),
        }
    }
}

impl Drop for ChangeJournal {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The journal thread: drain events as they come, re-arm when needed.
    fn run(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            let mut pfd = [rustix::event::PollFd::new(
                &self.fd,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: i64::try_from(POLL.as_nanos()).unwrap_or(200_000_000),
            };
            let _ = rustix::event::poll(&mut pfd, Some(&timeout));
            let mut st = self.lock();
            self.sync(&mut st);
        }
    }

    /// Brings the state up to date: re-arms if needed, then applies every queued event.
    fn sync(&self, st: &mut State) {
        if st.rearm {
            self.arm(st);
        }
        self.drain(st);
        if st.rearm {
            // Draining found something that invalidated the journal: set it up again now, so
            // a mark taken right after this is good.
            self.arm(st);
            self.drain(st);
        }
    }

    /// Forgets everything recorded: every earlier mark becomes useless. With `rearm`, the
    /// watches are set up again from the root too (they may be missing or point elsewhere).
    fn invalidate(st: &mut State, why: impl Into<String>, rearm: bool) {
        st.seq += 1;
        st.broken_at = st.seq;
        st.broken_why = why.into();
        st.changes.clear();
        st.rearm |= rearm;
    }

    fn record(st: &mut State, path: String, flags: u8) {
        st.seq += 1;
        let seq = st.seq;
        let (len, max) = (st.changes.len(), st.max_changed);
        let set = |seqs: &mut [u64; 2]| {
            if flags & STAT != 0 {
                seqs[0] = seq;
            }
            if flags & TREE != 0 {
                seqs[1] = seq;
            }
        };
        match st.changes.get_mut(&path) {
            Some(seqs) => set(seqs),
            None if len >= max => {
                Self::invalidate(st, format!("more than {max} paths changed"), false)
            }
            None => {
                let mut seqs = [0; 2];
                set(&mut seqs);
                st.changes.insert(path, seqs);
            }
        }
    }
}

/// Whether `path` lies strictly under the directory `dir`.
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The trees not inside another one, in walk order.
pub(crate) fn outermost(mut trees: Vec<String>) -> Vec<String> {
    trees.sort_by(|a, b| walk_order(a, b));
    let mut kept: Vec<String> = Vec::new();
    for t in trees {
        if kept.last().is_some_and(|k| k == &t || is_under(&t, k)) {
            continue;
        }
        kept.push(t);
    }
    kept
}

#[cfg(test)]
mod tests;
