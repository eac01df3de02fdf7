//! The manifest: the commit marker of a backup and the description of the tree it restores to.
//! A backup without one does not exist. Its `backup` header comes first in the JSON so listing can
//! read just the header and stop (see [`read_header`]).
//!
//! On the store (format 2, see `json`) entries are grouped by directory with short keys, and an
//! incremental's manifest holds only what changed since its parent; [`crate::load_manifest`]
//! rebuilds the whole tree from the chain (see `view`), so a [`Manifest`] in memory always
//! describes the whole tree unless it was deserialized directly from a stored object.

mod fast;
mod json;
#[cfg(test)]
mod properties;
pub(crate) mod view;

use std::collections::HashMap;
use std::io::Read;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::hashing::Sha256Digest;
use crate::naming::{BackupId, BackupKind, validate_name};
use crate::paths::{check_link_target, check_rel_path, parent_of, walk_order};

pub(crate) use json::{EntriesWriter, EntryStream, StreamError, parse_stored, write_stored};

/// Version of the manifest format this crate writes and reads (2: entries grouped by directory,
/// short keys, incrementals store only their changes).
pub const MANIFEST_FORMAT: u32 = 2;

/// setuid, setgid: never written by backup, refused by restore.
pub(crate) const MODE_SETID: u32 = 0o6000;

/// The whole manifest. Serialized (with serde) as the stored format 2 described in the README;
/// [`crate::load_manifest`] returns the whole-tree view even for incrementals.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Identity, archive and totals: all that listing needs.
    pub backup: ManifestHeader,
    /// Every entry of the tree at backup time, in walk order (directories before contents).
    /// Entries whose data lives in an older backup's archive carry its id in `origin`. (In the
    /// stored object of an incremental, only the entries that changed since the parent.)
    pub entries: Vec<ManifestEntry>,
    /// Incrementals: paths of the parent's tree that are gone (or changed type), in walk order.
    pub deleted: Vec<String>,
    /// Paths seen by the walk that were gone when read; not in `entries`.
    pub vanished: Vec<String>,
    /// Attributes of the data directory itself, applied to the restored root.
    pub root: Option<RootAttrs>,
    /// Paths deliberately not backed up (sockets, fifos, devices, non-UTF-8 names), with why.
    pub skipped: Vec<SkippedPath>,
}

/// Identity and summary of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// `dr-backup <version>` that wrote it.
    pub tool: String,
    /// `full-<ts>` or `incremental-<ts>`.
    pub id: BackupId,
    /// Same as the id's kind; spelled out for humans and scripts.
    pub kind: BackupKind,
    /// Group the host belongs to.
    pub group: String,
    /// Host whose data directory this is.
    pub host: String,
    /// UTC time in the id, `2026-01-27T13:45:30Z`.
    pub created_at: String,
    /// Wall clock when the walk started (ns since epoch); incrementals use it to spot racy mtimes.
    pub started_at_unix_ns: i64,
    /// Wall clock when the archive was complete.
    pub finished_at_unix_ns: i64,
    /// The backup an incremental builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<BackupId>,
    /// The stored archive object.
    pub archive: ArchiveInfo,
    /// Counts and sizes.
    pub totals: Totals,
}

/// The `.tar.zst` object as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Object name, relative to the host's folder.
    pub name: String,
    /// SHA-256 of the stored bytes (same as the `.sha256` object).
    pub sha256: Sha256Digest,
    /// Stored size in bytes.
    pub size: u64,
    /// Always `zstd`.
    pub compression: String,
    /// zstd level used.
    pub level: i32,
}

/// Totals of a backup; a restore caps entries and bytes by them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Entries in the tree (files + dirs + symlinks).
    pub entries: u64,
    /// Regular files in the tree.
    pub files: u64,
    /// Directories in the tree.
    pub dirs: u64,
    /// Symlinks in the tree.
    pub symlinks: u64,
    /// Bytes of all regular files in the tree.
    pub file_bytes: u64,
    /// Entries whose data is in this backup's archive.
    pub archived_entries: u64,
    /// File bytes in this backup's archive.
    pub archived_file_bytes: u64,
    /// Files that kept changing while read (archived as last read, consistently).
    pub changed_while_reading: u64,
    /// Paths removed since the parent (incrementals).
    pub deleted: u64,
    /// Paths that vanished while the backup ran.
    pub vanished: u64,
    /// Paths skipped on purpose.
    pub skipped: u64,
}

/// What kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
}

/// One path of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative path, `/`-separated, no `.`/`..`.
    pub path: String,
    /// File, directory or symlink.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// File size in bytes (0 for others).
    #[serde(default)]
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Permission bits (`& 0o1777`; setuid/setgid are never kept).
    pub mode: u32,
    /// Owner, restored when restoring as root.
    #[serde(default)]
    pub uid: u32,
    /// Group owner.
    #[serde(default)]
    pub gid: u32,
    /// Inode at backup time; incrementals compare it.
    #[serde(default)]
    pub inode: u64,
    /// SHA-256 of a file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Backup whose archive holds this entry (a file's data, or a directory or symlink that did
    /// not change); absent means this backup's own archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<BackupId>,
    /// The file kept changing while read; the archived bytes are a consistent last read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed_while_reading: bool,
}

impl ManifestEntry {
    /// Whether this entry's data is in the archive of the backup that owns the manifest.
    pub fn in_own_archive(&self) -> bool {
        self.origin.is_none()
    }
}

/// Mode, owner and mtime of the backed-up directory itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootAttrs {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group owner.
    pub gid: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
}

/// A path not backed up on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    /// The path (lossy if not UTF-8).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// A manifest that is malformed or hostile; restore and verify refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest of {id}: {problem}")]
pub struct ManifestError {
    /// Which backup.
    pub id: String,
    /// What is wrong, in a sentence.
    pub problem: String,
}

impl Manifest {
    /// Checks everything restore relies on for a whole-tree manifest (what
    /// [`crate::load_manifest`] returns): names, ordering, unique paths, each parent a directory,
    /// safe paths and modes, symlinks that stay inside, origins only for incrementals, totals
    /// that match the entries.
    pub fn check(&self) -> Result<(), ManifestError> {
        self.check_parts(true)
    }

    /// Checks a manifest as stored: a full backup's like [`Manifest::check`]; an incremental's
    /// (changes only) without what needs the whole tree (parents listed, symlinks resolved
    /// through other links, totals), which is checked on the rebuilt view.
    pub(crate) fn check_stored(&self) -> Result<(), ManifestError> {
        self.check_parts(self.backup.kind == BackupKind::Full)
    }

    fn check_parts(&self, whole_tree: bool) -> Result<(), ManifestError> {
        let mut c = EntryChecker::new(&self.backup, self.root.as_ref(), whole_tree)?;
        for e in &self.entries {
            c.push(e)?;
        }
        c.finish(&self.deleted, self.vanished.len(), self.skipped.len())
    }
}

/// [`Manifest::check`] one entry at a time, for trees that are streamed rather than held.
pub(crate) struct EntryChecker<'h> {
    header: &'h ManifestHeader,
    whole_tree: bool,
    /// Entries are in walk order, so the directories enclosing the current entry form a stack:
    /// checking "parent listed before, and a directory" needs no map of all paths.
    dirs: Vec<String>,
    links: HashMap<String, String>,
    prev: Option<String>,
    totals: Totals,
}

impl<'h> EntryChecker<'h> {
    /// Checks the header (and root attributes); `whole_tree` as in [`Manifest::check`], else as
    /// an incremental's stored changes.
    pub(crate) fn new(
        header: &'h ManifestHeader,
        root: Option<&RootAttrs>,
        whole_tree: bool,
    ) -> Result<Self, ManifestError> {
        let c = Self {
            header,
            whole_tree,
            dirs: Vec::new(),
            links: HashMap::new(),
            prev: None,
            totals: Totals::default(),
        };
        let h = header;
        if h.format != MANIFEST_FORMAT {
            return Err(c.fail(format!("format {} is not {MANIFEST_FORMAT}", h.format)));
        }
        validate_name("group", &h.group).map_err(|e| c.fail(e.to_string()))?;
        validate_name("host", &h.host).map_err(|e| c.fail(e.to_string()))?;
        if h.kind != h.id.kind {
            return Err(c.fail(format!("kind {} does not match the id", h.kind)));
        }
        match (h.kind, h.parent) {
            (BackupKind::Full, Some(_)) => {
                return Err(c.fail("a full backup names a parent".into()));
            }
            (BackupKind::Incremental, None) => {
                return Err(c.fail("an incremental backup names no parent".into()));
            }
            (BackupKind::Incremental, Some(p)) if p >= h.id => {
                return Err(c.fail(format!("parent {p} is not older than the backup")));
            }
            _ => {}
        }
        if h.archive.name != h.id.archive_name() {
            return Err(c.fail(format!(
                "archive name {:?} does not match the id",
                h.archive.name
            )));
        }
        if let Some(r) = root
            && (r.mode & !0o7777 != 0 || r.mode & MODE_SETID != 0)
        {
            return Err(c.fail(format!(
                "root mode {:o} has setuid/setgid or non-permission bits",
                r.mode
            )));
        }
        Ok(c)
    }

    fn fail(&self, problem: String) -> ManifestError {
        ManifestError {
            id: self.header.id.to_string(),
            problem,
        }
    }

    /// The next entry, in walk order.
    pub(crate) fn push(&mut self, e: &ManifestEntry) -> Result<(), ManifestError> {
        let h = self.header;
        let p = check_rel_path(e.path.as_bytes())
            .map_err(|m| self.fail(format!("{:?}: {m}", e.path)))?;
        match &mut self.prev {
            Some(prev) => {
                if walk_order(prev, p) != std::cmp::Ordering::Less {
                    return Err(self.fail(format!("{p:?} is out of order or repeated")));
                }
                prev.clear();
                prev.push_str(p);
            }
            None => self.prev = Some(p.to_owned()),
        }
        if self.whole_tree {
            let parent = parent_of(p);
            while let Some(top) = self.dirs.last() {
                if parent.is_some_and(|par| is_within(par, top)) {
                    break;
                }
                self.dirs.pop();
            }
            if let Some(parent) = parent
                && self.dirs.last().map(String::as_str) != Some(parent)
            {
                return Err(self.fail(format!(
                    "{p:?}: parent {parent:?} is not a directory listed before it"
                )));
            }
            if e.kind == EntryKind::Dir {
                self.dirs.push(p.to_owned());
            }
            self.totals.add_entry(e);
        }
        if e.mode & !0o7777 != 0 || e.mode & MODE_SETID != 0 {
            return Err(self.fail(format!(
                "{p:?}: mode {:o} has setuid/setgid or non-permission bits",
                e.mode
            )));
        }
        if let Some(origin) = e.origin
            && (h.kind == BackupKind::Full || origin >= h.id)
        {
            return Err(self.fail(format!("{p:?}: origin {origin} is not an older backup")));
        }
        let shape_ok = match e.kind {
            EntryKind::File => e.sha256.is_some() && e.target.is_none(),
            EntryKind::Dir => e.size == 0 && e.sha256.is_none() && e.target.is_none(),
            EntryKind::Symlink => e.size == 0 && e.sha256.is_none() && e.target.is_some(),
        };
        if !shape_ok {
            return Err(self.fail(format!(
                "{p:?}: a file needs a sha256, a symlink a target, a directory neither (and only files have a size)"
            )));
        }
        if let (EntryKind::Symlink, Some(t)) = (e.kind, e.target.as_deref()) {
            self.links.insert(p.to_owned(), t.to_owned());
        }
        Ok(())
    }

    /// After the last entry: symlinks resolved within the tree, the lists, and (whole trees)
    /// the totals.
    pub(crate) fn finish(
        self,
        deleted: &[String],
        vanished: usize,
        skipped: usize,
    ) -> Result<(), ManifestError> {
        let h = self.header;
        let borrowed: HashMap<&str, &str> = self
            .links
            .iter()
            .map(|(l, t)| (l.as_str(), t.as_str()))
            .collect();
        for (link, target) in &borrowed {
            let checked = if self.whole_tree {
                check_link_target(link, target, &borrowed)
            } else {
                check_link_target(link, target, &crate::paths::NoLinks)
            };
            checked.map_err(|m| self.fail(format!("{link:?}: {m}")))?;
        }
        let mut prev: Option<&str> = None;
        for d in deleted {
            check_rel_path(d.as_bytes()).map_err(|m| self.fail(format!("deleted {d:?}: {m}")))?;
            if let Some(prev) = prev
                && walk_order(prev, d) != std::cmp::Ordering::Less
            {
                return Err(self.fail(format!("deleted {d:?} is out of order or repeated")));
            }
            prev = Some(d);
        }
        if h.kind == BackupKind::Full && !deleted.is_empty() {
            return Err(self.fail("a full backup lists deleted paths".into()));
        }
        if self.whole_tree {
            let mut totals = self.totals.clone();
            totals.deleted = deleted.len() as u64;
            totals.vanished = vanished as u64;
            totals.skipped = skipped as u64;
            if totals != h.totals {
                return Err(self.fail(format!(
                    "totals {:?} do not match the entries ({totals:?})",
                    h.totals
                )));
            }
        }
        Ok(())
    }
}

/// Whether `path` is `dir` or inside it.
fn is_within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Totals as they follow from the entries and lists (for tools and tests that build manifests).
pub fn totals_of(
    entries: &[ManifestEntry],
    deleted: usize,
    vanished: usize,
    skipped: usize,
) -> Totals {
    let mut t = Totals {
        deleted: deleted as u64,
        vanished: vanished as u64,
        skipped: skipped as u64,
        ..Totals::default()
    };
    for e in entries {
        t.add_entry(e);
    }
    t
}

impl Totals {
    /// Counts one entry of the tree (everything but `deleted`, `vanished`, `skipped`).
    /// Byte counts saturate: sizes come from manifests, which may be hostile, and a sum that
    /// wrapped could be made to match small totals (a saturated one only matches `u64::MAX`).
    pub fn add_entry(&mut self, e: &ManifestEntry) {
        self.entries += 1;
        match e.kind {
            EntryKind::File => {
                self.files += 1;
                self.file_bytes = self.file_bytes.saturating_add(e.size);
            }
            EntryKind::Dir => self.dirs += 1,
            EntryKind::Symlink => self.symlinks += 1,
        }
        if e.origin.is_none() {
            self.archived_entries += 1;
            if e.kind == EntryKind::File {
                self.archived_file_bytes = self.archived_file_bytes.saturating_add(e.size);
            }
        }
        self.changed_while_reading += u64::from(e.changed_while_reading);
    }

    /// Counts an entry taken over unchanged from a parent (its data is in an older archive).
    pub(crate) fn add_inherited(&mut self, parent: &ManifestEntry) {
        self.entries += 1;
        match parent.kind {
            EntryKind::File => {
                self.files += 1;
                self.file_bytes = self.file_bytes.saturating_add(parent.size);
            }
            EntryKind::Dir => self.dirs += 1,
            EntryKind::Symlink => self.symlinks += 1,
        }
    }
}

/// Reads only the `backup` header of a manifest from a stream, stopping as soon as it has it,
/// so listing many backups does not download every entry list.
pub fn read_header(reader: impl Read) -> Result<ManifestHeader, serde_json::Error> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = de::Deserializer::deserialize_map(&mut de, HeaderVisitor { out: &mut found });
    match (found, result) {
        (Some(h), _) => Ok(h),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(de::Error::missing_field("backup")),
    }
}

const STOP: &str = "dr-backup: header read, rest skipped";

struct HeaderVisitor<'a> {
    out: &'a mut Option<ManifestHeader>,
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a manifest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "backup" {
                *self.out = Some(map.next_value()?);
                // Stop here: the caller has what it needs and the entries may be large.
                return Err(de::Error::custom(STOP));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let id: BackupId = "full-2026-01-27T13:45:30Z".parse().unwrap();
        let file = |path: &str, size: u64| ManifestEntry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mtime_ns: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            inode: 1,
            sha256: Some(Sha256Digest::of(b"x")),
            target: None,
            origin: None,
            changed_while_reading: false,
        };
        let mut dir = file("d", 0);
        dir.kind = EntryKind::Dir;
        dir.sha256 = None;
        let mut link = file("d/l", 0);
        link.kind = EntryKind::Symlink;
        link.sha256 = None;
        link.target = Some("../a".into());
        let entries = vec![file("a", 3), dir, file("d/f", 4), link];
        Manifest {
            backup: ManifestHeader {
                format: MANIFEST_FORMAT,
                tool: "t".into(),
                id,
                kind: BackupKind::Full,
                group: "g1".into(),
                host: "h1".into(),
                created_at: id.timestamp(),
                started_at_unix_ns: 0,
                finished_at_unix_ns: 0,
                parent: None,
                archive: ArchiveInfo {
                    name: id.archive_name(),
                    sha256: Sha256Digest::of(b""),
                    size: 0,
                    compression: "zstd".into(),
                    level: 3,
                },
                totals: Totals {
                    entries: 4,
                    files: 2,
                    dirs: 1,
                    symlinks: 1,
                    file_bytes: 7,
                    archived_entries: 4,
                    archived_file_bytes: 7,
                    ..Totals::default()
                },
            },
            entries,
            deleted: vec![],
            vanished: vec![],
            root: None,
            skipped: vec![],
        }
    }

    #[test]
    fn sample_passes_and_header_reads_alone() {
        let m = sample();
        m.check().unwrap();
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(read_header(&json[..]).unwrap(), m.backup);
        // Only the header is needed: a cut-off manifest still lists.
        let cut = json.iter().position(|&b| b == b'[').unwrap();
        assert_eq!(read_header(&json[..cut + 10]).unwrap(), m.backup);
    }

    /// Found by `manifest::properties`: sizes whose sum overflows panicked the totals check in
    /// debug builds and wrapped in release ones.
    #[test]
    fn sizes_whose_sum_overflows_are_refused_not_a_panic() {
        let mut m = sample();
        m.entries[0].size = u64::MAX;
        m.entries[2].size = u64::MAX;
        assert!(m.check().is_err());
        m.backup.totals = totals_of(&m.entries, 0, 0, 0);
        assert_eq!(m.backup.totals.file_bytes, u64::MAX);
    }

    #[test]
    fn hostile_manifests_fail_check() {
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "escaping link",
                Box::new(|m| m.entries[3].target = Some("../../x".into())),
            ),
            (
                "absolute path",
                Box::new(|m| m.entries[0].path = "/a".into()),
            ),
            ("setuid", Box::new(|m| m.entries[0].mode = 0o4755)),
            ("unsorted", Box::new(|m| m.entries.swap(0, 1))),
            ("totals", Box::new(|m| m.backup.totals.file_bytes += 1)),
            (
                "file under file",
                Box::new(|m| m.entries[1].kind = EntryKind::File),
            ),
        ];
        for (what, mutate) in cases {
            let mut m = sample();
            mutate(&mut m);
            assert!(m.check().is_err(), "{what} passed");
        }
    }
}
