//! Rebuilding the whole tree of an incremental from its chain of stored manifests (a full
//! backup's entries plus, for each incremental, its changed entries and deleted paths). The
//! merge streams: the full backup's entries may come from a stream ([`super::EntryStream`]), so
//! an incremental walks its parent's tree without holding it in memory.

use std::cmp::Ordering;
use std::convert::Infallible;

use super::{EntryKind, Manifest, ManifestEntry};
use crate::naming::BackupId;
use crate::paths::walk_order;

/// Where the full backup's entries come from, in walk order.
pub(crate) trait EntrySource {
    type Error;
    fn next_entry(&mut self) -> Result<Option<ManifestEntry>, Self::Error>;
}

impl EntrySource for std::vec::IntoIter<ManifestEntry> {
    type Error = Infallible;
    fn next_entry(&mut self) -> Result<Option<ManifestEntry>, Infallible> {
        Ok(self.next())
    }
}

impl<R: std::io::BufRead> EntrySource for super::EntryStream<R> {
    type Error = super::StreamError;
    fn next_entry(&mut self) -> Result<Option<ManifestEntry>, super::StreamError> {
        super::EntryStream::next_entry(self)
    }
}

/// One entry of the whole tree.
pub(crate) struct ViewItem {
    pub entry: ManifestEntry,
    /// Its latest change only touched attributes: the data was written by an older archive,
    /// with older attributes.
    pub attrs_only: bool,
    /// The full backup's hash for this path (what its archive wrote there), if it had a file.
    pub base_sha256: Option<crate::hashing::Sha256Digest>,
}

/// One change of one incremental: (index of the incremental, index in its list, an entry or a
/// deletion).
#[derive(Clone, Copy)]
struct Change {
    delta: u32,
    index: u32,
    entry: bool,
}

/// The whole tree at the last backup of a chain, entry by entry, in walk order.
///
/// An entry's `origin` is the backup whose archive holds it (absent: the last backup's own
/// archive); `changed_while_reading` is kept only for the last backup's own entries, as the
/// backup that wrote them counted them.
pub(crate) struct ViewMerge<S> {
    base: S,
    base_peek: Option<ManifestEntry>,
    base_done: bool,
    base_id: BackupId,
    target: BackupId,
    deltas: Vec<Manifest>,
    changes: Vec<Change>,
    pos: usize,
}

impl<S: EntrySource> ViewMerge<S> {
    /// `base`: the full backup's entries (its id `base_id`); `deltas`: the incrementals on top
    /// of it, each the parent of the next.
    pub(crate) fn new(base: S, base_id: BackupId, deltas: Vec<Manifest>) -> Self {
        let target = deltas.last().map_or(base_id, |d| d.backup.id);
        // Every change of every incremental, ordered by path, then by backup, a deletion before
        // an entry of the same backup (a path that changed type is deleted and re-added).
        let mut changes = Vec::new();
        for (d, m) in deltas.iter().enumerate() {
            let delta = d as u32;
            changes.extend((0..m.deleted.len()).map(|i| Change {
                delta,
                index: i as u32,
                entry: false,
            }));
            changes.extend((0..m.entries.len()).map(|i| Change {
                delta,
                index: i as u32,
                entry: true,
            }));
        }
        changes.sort_by(|a, b| {
            walk_order(path_of(&deltas, *a), path_of(&deltas, *b))
                .then(a.delta.cmp(&b.delta))
                .then(a.entry.cmp(&b.entry))
        });
        Self {
            base,
            base_peek: None,
            base_done: false,
            base_id,
            target,
            deltas,
            changes,
            pos: 0,
        }
    }

    /// The next entry of the tree.
    pub(crate) fn next_entry(&mut self) -> Result<Option<ViewItem>, S::Error> {
        loop {
            if self.base_peek.is_none() && !self.base_done {
                self.base_peek = self.base.next_entry()?;
                self.base_done = self.base_peek.is_none();
            }
            let change = self.changes.get(self.pos).copied();
            let order = match (&self.base_peek, change) {
                (None, None) => return Ok(None),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(b), Some(c)) => walk_order(&b.path, path_of(&self.deltas, c)),
            };
            let mut state = if order == Ordering::Greater {
                None
            } else {
                self.base_peek.take().map(|mut b| {
                    if self.base_id != self.target {
                        b.origin = Some(self.base_id);
                        b.changed_while_reading = false;
                    }
                    b
                })
            };
            let base_sha256 = state.as_ref().and_then(|b| b.sha256);
            let mut attrs_only = false;
            if let (true, Some(first)) = (order != Ordering::Less, change) {
                let path = path_of(&self.deltas, first).to_owned();
                while let Some(&c) = self.changes.get(self.pos) {
                    if path_of(&self.deltas, c) != path {
                        break;
                    }
                    self.pos += 1;
                    if !c.entry {
                        state = None;
                        attrs_only = false;
                        continue;
                    }
                    let delta = &mut self.deltas[c.delta as usize];
                    let from = delta.backup.id;
                    let mut e = std::mem::replace(&mut delta.entries[c.index as usize], taken());
                    attrs_only = e.origin.is_some();
                    if e.origin.is_none() && from != self.target {
                        e.origin = Some(from);
                    }
                    if e.origin.is_some() {
                        e.changed_while_reading = false;
                    }
                    state = Some(e);
                }
            }
            if let Some(entry) = state {
                return Ok(Some(ViewItem {
                    entry,
                    attrs_only,
                    base_sha256,
                }));
            }
        }
    }

    /// The incrementals (their entries taken), to get at the last one's header and lists.
    pub(crate) fn into_deltas(self) -> Vec<Manifest> {
        self.deltas
    }
}

fn path_of(deltas: &[Manifest], c: Change) -> &str {
    let m = &deltas[c.delta as usize];
    if c.entry {
        &m.entries[c.index as usize].path
    } else {
        &m.deleted[c.index as usize]
    }
}

fn taken() -> ManifestEntry {
    ManifestEntry {
        path: String::new(),
        kind: EntryKind::Dir,
        size: 0,
        mtime_ns: 0,
        mode: 0,
        uid: 0,
        gid: 0,
        inode: 0,
        sha256: None,
        target: None,
        origin: None,
        changed_while_reading: false,
    }
}

/// The whole-tree view of the last of `deltas` (each the parent of the next, the first one's
/// parent `base`, a full backup), and the indices of view entries whose latest change only
/// touched attributes. Without deltas the view is `base` itself.
pub(crate) fn build_view(base: Manifest, deltas: Vec<Manifest>) -> (Manifest, Vec<usize>) {
    if deltas.is_empty() {
        return (base, Vec::new());
    }
    let most = base.entries.len() + deltas.iter().map(|d| d.entries.len()).sum::<usize>();
    let announced = deltas
        .last()
        .map_or(0, |d| usize::try_from(d.backup.totals.entries).unwrap_or(0));
    let mut merge = ViewMerge::new(base.entries.into_iter(), base.backup.id, deltas);
    let mut entries = Vec::with_capacity(announced.min(most));
    let mut fixups = Vec::new();
    while let Ok(Some(item)) = merge.next_entry() {
        if item.attrs_only {
            fixups.push(entries.len());
        }
        entries.push(item.entry);
    }
    let Some(last) = merge.into_deltas().pop() else {
        return (
            Manifest {
                backup: base.backup,
                entries,
                deleted: base.deleted,
                vanished: base.vanished,
                root: base.root,
                skipped: base.skipped,
            },
            fixups,
        );
    };
    (
        Manifest {
            backup: last.backup,
            entries,
            deleted: last.deleted,
            vanished: last.vanished,
            root: last.root,
            skipped: last.skipped,
        },
        fixups,
    )
}
