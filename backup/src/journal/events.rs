//! Watches and events: setting up one inotify watch per directory, and turning each event into
//! the paths an incremental must look at again.

use std::io;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use rustix::fs::inotify::{self, ReadFlags, WatchFlags};
use rustix::io::Errno;

use super::{STAT, Shared, State, TREE};
use crate::walk::MAX_DEPTH;

/// Everything that changes what a backup records about a path or a directory's entries.
fn watch_flags() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
        | WatchFlags::EXCL_UNLINK
}

/// Bytes read from the inotify descriptor at once (an event is at most 16 + 256 bytes).
const EVENT_BUF: usize = 16 << 10;

/// How long a journal that could not arm waits before trying again.
const RETRY_ARM: Duration = Duration::from_secs(10);

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Why watching failed in a way that makes the journal useless until re-armed.
enum WatchError {
    Limit,
    Other(String),
}

impl Shared {
    /// Sets up every watch again from the root. Earlier marks are already invalid.
    pub(super) fn arm(&self, st: &mut State) {
        if st.next_arm.is_some_and(|at| Instant::now() < at) {
            return;
        }
        for (wd, _) in st.watches.drain() {
            let _ = inotify::remove_watch(&self.fd, wd);
        }
        st.changes.clear();
        let result = match std::fs::symlink_metadata(&self.root) {
            Ok(md) if md.is_dir() => self.watch_tree(st, ""),
            Ok(_) => Err(WatchError::Other(format!(
                "{} is not a directory",
                self.root.display()
            ))),
            Err(e) => Err(WatchError::Other(format!("{}: {e}", self.root.display()))),
        };
        match result {
            Ok(()) => {
                st.rearm = false;
                st.off = None;
                st.next_arm = None;
                tracing::debug!(dir = %self.root.display(), watches = st.watches.len(), "change journal armed");
            }
            Err(e) => {
                let limit = matches!(e, WatchError::Limit);
                let why = match e {
                    WatchError::Limit => format!(
                        "the inotify watch limit was reached at {} directories (raise fs.inotify.max_user_watches)",
                        st.watches.len()
                    ),
                    WatchError::Other(why) => why,
                };
                if st.off.as_deref() != Some(why.as_str()) {
                    tracing::warn!(dir = %self.root.display(), reason = %why, "change journal off: incrementals walk the whole data directory");
                }
                for (wd, _) in st.watches.drain() {
                    let _ = inotify::remove_watch(&self.fd, wd);
                }
                st.off = Some(why);
                // A missing directory (mid-swap) is retried at once; a full watch table is not
                // going to empty itself soon.
                st.next_arm = limit.then(|| Instant::now() + RETRY_ARM);
            }
        }
    }

    /// Watches `rel` and every directory under it (a watch comes before its listing, so
    /// anything created after the listing is an event).
    fn watch_tree(&self, st: &mut State, rel: &str) -> Result<(), WatchError> {
        let depth = if rel.is_empty() {
            0
        } else {
            rel.split('/').count()
        };
        if depth > MAX_DEPTH {
            return Ok(()); // the walk skips it too
        }
        let path = self.root.join(rel);
        match inotify::add_watch(&self.fd, &path, watch_flags()) {
            Ok(wd) => {
                st.watches.insert(wd, rel.to_owned());
            }
            // Gone again, or not a directory any more (a symlink): its parent's events say so.
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) if !rel.is_empty() => return Ok(()),
            Err(Errno::NOSPC) => return Err(WatchError::Limit),
            Err(e) => {
                return Err(WatchError::Other(format!(
                    "cannot watch {}: {}",
                    path.display(),
                    io::Error::from(e)
                )));
            }
        }
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.is_empty() => return Ok(()),
            Err(e) => {
                return Err(WatchError::Other(format!(
                    "cannot list {}: {e}",
                    path.display()
                )));
            }
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            // Names that are not UTF-8 are skipped by the walk: nothing under them is backed up.
            if let (true, Ok(name)) = (is_dir, entry.file_name().into_string()) {
                self.watch_tree(st, &join(rel, &name))?;
            }
        }
        Ok(())
    }

    /// Stops watching `rel` and everything under it (it moved away).
    fn unwatch_tree(&self, st: &mut State, rel: &str) {
        let prefix = format!("{rel}/");
        let gone: Vec<i32> = st
            .watches
            .iter()
            .filter(|(_, p)| p.as_str() == rel || p.starts_with(&prefix))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            st.watches.remove(&wd);
            let _ = inotify::remove_watch(&self.fd, wd);
        }
    }

    /// Applies every queued event.
    pub(super) fn drain(&self, st: &mut State) {
        let mut buf = std::mem::take(&mut st.buf);
        buf.resize(EVENT_BUF, MaybeUninit::uninit());
        self.drain_with(st, &mut buf);
        st.buf = buf;
    }

    fn drain_with(&self, st: &mut State, buf: &mut [MaybeUninit<u8>]) {
        let mut reader = inotify::Reader::new(&self.fd, buf);
        loop {
            let ev = match reader.next() {
                Ok(ev) => ev,
                Err(Errno::AGAIN | Errno::INTR) => return,
                Err(e) => {
                    Self::invalidate(st, format!("reading inotify events: {e}"), true);
                    return;
                }
            };
            let name = ev
                .file_name()
                .map(|c| c.to_bytes().to_vec())
                .filter(|n| !n.is_empty());
            self.apply(st, ev.wd(), ev.events(), name);
        }
    }

    fn apply(&self, st: &mut State, wd: i32, mask: ReadFlags, name: Option<Vec<u8>>) {
        if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            Self::invalidate(
                st,
                "the kernel's inotify queue overflowed (fs.inotify.max_queued_events)",
                true,
            );
            return;
        }
        if mask.contains(ReadFlags::UNMOUNT) {
            Self::invalidate(
                st,
                "a file system under the data directory was unmounted",
                true,
            );
            return;
        }
        if mask.contains(ReadFlags::IGNORED) {
            st.watches.remove(&wd);
            return;
        }
        let Some(dir) = st.watches.get(&wd).cloned() else {
            return; // a watch already forgotten
        };
        let Some(raw) = name else {
            // The directory itself.
            if mask.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
                if dir.is_empty() {
                    Self::invalidate(
                        st,
                        "the data directory itself was moved or deleted (a restore swaps it)",
                        true,
                    );
                }
                // Any other directory: its parent's event records it.
            } else if mask.intersects(ReadFlags::ATTRIB | ReadFlags::MODIFY) && !dir.is_empty() {
                Self::record(st, dir, STAT);
            }
            return;
        };
        let entries_changed = mask.intersects(
            ReadFlags::CREATE | ReadFlags::DELETE | ReadFlags::MOVED_FROM | ReadFlags::MOVED_TO,
        );
        if entries_changed && !dir.is_empty() {
            // Its mtime moved.
            Self::record(st, dir.clone(), STAT);
        }
        let Ok(name) = String::from_utf8(raw) else {
            return; // the walk skips names that are not UTF-8
        };
        let path = join(&dir, &name);
        let is_dir = mask.contains(ReadFlags::ISDIR);
        if is_dir && mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
            // New here: files may have appeared in it before its watch did, so it is walked
            // whole; and everything under it is watched from now on.
            Self::record(st, path.clone(), STAT | TREE);
            match self.watch_tree(st, &path) {
                Ok(()) => {}
                Err(WatchError::Limit) => Self::invalidate(
                    st,
                    "the inotify watch limit was reached (raise fs.inotify.max_user_watches)",
                    true,
                ),
                Err(WatchError::Other(why)) => Self::invalidate(st, why, true),
            }
        } else if is_dir && mask.contains(ReadFlags::MOVED_FROM) {
            self.unwatch_tree(st, &path);
            Self::record(st, path, STAT);
        } else {
            Self::record(st, path, STAT);
        }
    }
}
