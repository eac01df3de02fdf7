//! The walk of an incremental guided by the change journal: only the paths the journal names are
//! looked at (new directories completely), and [`Coverage`] tells the merge with the parent's
//! tree which parent entries those looks answer for. A parent entry outside the coverage is
//! unchanged (the journal's invariant, see `crate::journal`); one inside it that the walk did not
//! find is gone.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::journal::{ChangeSet, is_under, outermost};
use crate::manifest::{EntryKind, SkippedPath};
use crate::paths::walk_order;
use crate::walk::{Batch, Meta, Stated, Walked, Walker, stat_name};

/// Entries a guided walk holds at most (it sorts them in memory); beyond this a full walk is
/// as good and bounded in memory.
pub(crate) const MAX_ENTRIES: usize = 50_000;
/// Entries per batch handed to the archive pass.
const BATCH: usize = 1024;

/// What the journal-guided walk found, in walk order.
pub(crate) struct Guided {
    pub batches: Vec<Batch>,
    pub coverage: Coverage,
    pub root: Meta,
    /// Paths the journal named.
    pub changed_paths: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GuidedError {
    #[error("more than {MAX_ENTRIES} entries changed")]
    TooBig,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The parent paths a guided walk answers for.
#[derive(Debug, Default)]
pub(crate) struct Coverage {
    stat: HashSet<String>,
    /// New directories (walked whole), in walk order, none inside another.
    trees: Vec<String>,
    /// Parent directories found gone, innermost last (their descendants are gone too).
    gone: Vec<String>,
}

impl Coverage {
    fn in_tree(&self, path: &str) -> bool {
        // The only tree that can hold `path` is the last one not after it in walk order.
        let i = self
            .trees
            .partition_point(|t| walk_order(t, path) != Ordering::Greater);
        i > 0 && {
            let t = &self.trees[i - 1];
            t == path || is_under(path, t)
        }
    }

    /// Whether the walk answered for the parent's entry at `path`. Call it in walk order.
    pub(crate) fn covers(&mut self, path: &str) -> bool {
        while let Some(g) = self.gone.last() {
            if is_under(path, g) {
                return true;
            }
            self.gone.pop();
        }
        self.stat.contains(path) || self.in_tree(path)
    }

    /// The parent's directory at `path` is gone: so is everything the parent had under it.
    pub(crate) fn gone_dir(&mut self, path: &str) {
        self.gone.push(path.to_owned());
    }
}

/// Open directories by path, each opened from its parent without following symlinks; `None`
/// for one that is gone or no longer a directory.
struct Dirs {
    root: Arc<OwnedFd>,
    open: HashMap<String, Option<Arc<OwnedFd>>>,
}

impl Dirs {
    fn get(&mut self, rel: &str) -> io::Result<Option<Arc<OwnedFd>>> {
        if rel.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        if let Some(d) = self.open.get(rel) {
            return Ok(d.clone());
        }
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let opened = match self.get(parent)? {
            None => None,
            Some(p) => match rustix::fs::openat(
                &*p,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => Some(Arc::new(fd)),
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => None,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{rel}: {e}"))),
            },
        };
        self.open.insert(rel.to_owned(), opened.clone());
        Ok(opened)
    }
}

/// Looks at what `changes` names under `root`.
pub(crate) fn walk_changes(root: &Path, changes: &ChangeSet) -> Result<Guided, GuidedError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let root_meta = Meta::of_stat(&rustix::fs::fstat(&root_fd).map_err(io::Error::from)?);
    let mut coverage = Coverage {
        trees: outermost(changes.trees.clone()),
        ..Coverage::default()
    };
    for p in &changes.stat {
        if !coverage.in_tree(p) {
            coverage.stat.insert(p.clone());
        }
    }
    let mut dirs = Dirs {
        root: Arc::new(root_fd),
        open: HashMap::new(),
    };
    let mut found: Vec<(Walked, Arc<OwnedFd>)> = Vec::new();
    let mut skipped: Vec<SkippedPath> = Vec::new();
    let mut vanished: Vec<String> = Vec::new();
    let looks = coverage.stat.iter().chain(coverage.trees.iter());
    for path in looks.filter(|p| !p.is_empty()) {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let Some(dir) = dirs.get(parent)? else {
            continue; // its directory is gone: so is it
        };
        let cname = CString::new(name)
            .map_err(|_| io::Error::other(format!("{path:?}: NUL in a path name")))?;
        let depth = if parent.is_empty() {
            0
        } else {
            parent.split('/').count()
        };
        match stat_name(&dir, name.as_bytes(), &cname, parent, depth)? {
            Stated::Entry(w) => found.push((w, dir)),
            Stated::Vanished(_) => {}
            Stated::Skipped(s) => skipped.push(s),
        }
        if found.len() > MAX_ENTRIES {
            return Err(GuidedError::TooBig);
        }
    }
    // New directories: walked whole.
    for tree in &coverage.trees {
        let is_dir = found
            .iter()
            .any(|(w, _)| &w.path == tree && w.kind == EntryKind::Dir);
        if !is_dir {
            continue;
        }
        let mut walker = match Walker::start(&root.join(tree)) {
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{tree}: {e}")).into()),
        };
        while let Some(batch) = walker.next_batch()? {
            for mut w in batch.entries {
                let dir = batch.dirs[w.dir].clone();
                w.path = format!("{tree}/{}", w.path);
                found.push((w, dir));
            }
            vanished.extend(batch.vanished.into_iter().map(|p| format!("{tree}/{p}")));
            skipped.extend(batch.skipped.into_iter().map(|mut s| {
                s.path = format!("{tree}/{}", s.path);
                s
            }));
            if found.len() > MAX_ENTRIES {
                return Err(GuidedError::TooBig);
            }
        }
    }
    found.sort_by(|(a, _), (b, _)| walk_order(&a.path, &b.path));
    let changed_paths = changes.len();
    let mut batches = Vec::new();
    let mut it = found.into_iter().peekable();
    while it.peek().is_some() {
        let mut batch = Batch::default();
        for (mut w, dir) in it.by_ref().take(BATCH) {
            if !batch.dirs.last().is_some_and(|d| Arc::ptr_eq(d, &dir)) {
                batch.dirs.push(dir);
            }
            w.dir = batch.dirs.len() - 1;
            batch.entries.push(w);
        }
        batches.push(batch);
    }
    batches.push(Batch {
        vanished,
        skipped,
        ..Batch::default()
    });
    Ok(Guided {
        batches,
        coverage,
        root: root_meta,
        changed_paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_answers_for_named_paths_new_trees_and_gone_directories() {
        let mut c = Coverage {
            stat: ["a/f".to_string(), "b".to_string()].into_iter().collect(),
            trees: outermost(vec!["n/sub".into(), "n".into(), "m".into()]),
            gone: Vec::new(),
        };
        assert_eq!(c.trees, vec!["m".to_string(), "n".to_string()]);
        // walk order: a, a/f, a/g, b, b/x, m, m/y, n, n/sub/z, n0
        assert!(!c.covers("a"));
        assert!(c.covers("a/f"));
        assert!(!c.covers("a/g"));
        assert!(c.covers("b"));
        c.gone_dir("b");
        assert!(c.covers("b/x"), "under a gone directory");
        assert!(c.covers("m"));
        assert!(c.covers("m/y"));
        assert!(c.covers("n/sub/z"));
        assert!(!c.covers("n0"), "a sibling whose name extends a tree's");
    }
}
