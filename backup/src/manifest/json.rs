//! The stored manifest, format 2: one JSON object whose `backup` header comes first, entries
//! grouped by directory with short keys (about half the size of one object per path with long
//! keys, and parsed without per-entry key matching on long names). The writer puts each group on
//! its own line so `head`, `grep` and `jq` work on it:
//!
//! ```text
//! {"backup":{...}
//! ,"root":{"mode":493,"uid":0,"gid":0,"mtime_ns":...}
//! ,"deleted":["receipts/0001/r-1.json"]
//! ,"entries":[
//! {"dir":"","e":[{"n":"logs","k":"d","t":1769521530000000000,"m":"755","i":12}]}
//! ,{"dir":"logs","e":[{"n":"erlmcp.log","s":13421799,"t":...,"m":"644","i":13,"h":"8feb…"}]}
//! ]}
//! ```
//!
//! Entry keys: `n` name (the path is `dir/n`, or `n` when `dir` is empty), `k` kind (`d`
//! directory, `l` symlink, absent: regular file), `s` size (absent: 0), `t` mtime in ns, `m`
//! permission bits in octal, `u`/`g` owner (absent: the `root` owner, or 0 without `root`), `i`
//! inode, `h` SHA-256 of a file, `l` symlink target, `o` origin (the older backup whose archive
//! holds the entry), `c` true if the file changed while it was read. Unknown keys are ignored.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{EntryKind, MANIFEST_FORMAT, Manifest, ManifestEntry, ManifestHeader, RootAttrs};
use crate::hashing::Sha256Digest;
use crate::naming::BackupId;

/// Most entries per group (one line): bounds the longest line of huge directories.
const GROUP_MAX: usize = 1000;

/// Directory and name of a path such that `join(dir, name)` gives it back exactly, whatever it is
/// (hostile manifests must survive a round trip unchanged to be refused by the checks).
fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, name)) if !dir.is_empty() => (dir, name),
        _ => ("", path),
    }
}

fn join(dir: &str, name: Cow<'_, str>) -> String {
    if dir.is_empty() {
        return name.into_owned();
    }
    let mut p = String::with_capacity(dir.len() + 1 + name.len());
    p.push_str(dir);
    p.push('/');
    p.push_str(&name);
    p
}

/// Permission bits written in octal, like `ls` and `chmod` speak.
struct Octal(u32);

impl Serialize for Octal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 11];
        let mut i = buf.len();
        let mut v = self.0;
        loop {
            i -= 1;
            buf[i] = b'0' + (v & 7) as u8;
            v >>= 3;
            if v == 0 {
                break;
            }
        }
        s.serialize_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"))
    }
}

#[derive(Serialize)]
struct EntryOut<'a> {
    n: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<&'static str>,
    #[serde(skip_serializing_if = "is_zero")]
    s: u64,
    t: i64,
    m: Octal,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    g: Option<u32>,
    i: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    h: Option<&'a Sha256Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    l: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    o: Option<&'a BackupId>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    c: bool,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl<'a> EntryOut<'a> {
    fn new(name: &'a str, e: &'a ManifestEntry, owner: (u32, u32)) -> Self {
        EntryOut {
            n: name,
            k: match e.kind {
                EntryKind::File => None,
                EntryKind::Dir => Some("d"),
                EntryKind::Symlink => Some("l"),
            },
            s: e.size,
            t: e.mtime_ns,
            m: Octal(e.mode),
            u: (e.uid != owner.0).then_some(e.uid),
            g: (e.gid != owner.1).then_some(e.gid),
            i: e.inode,
            h: e.sha256.as_ref(),
            l: e.target.as_deref(),
            o: e.origin.as_ref(),
            c: e.changed_while_reading,
        }
    }
}

fn owner_of(root: Option<&RootAttrs>) -> (u32, u32) {
    root.map_or((0, 0), |r| (r.uid, r.gid))
}

/// Builds the `entries` array of a stored manifest one entry at a time (so a backup keeps the
/// compact JSON, not a struct per path, while it runs). Entries must come in walk order.
pub(crate) struct EntriesWriter {
    buf: Vec<u8>,
    dir: String,
    in_group: usize,
    groups: usize,
    owner: (u32, u32),
}

impl EntriesWriter {
    /// `root` gives the default owner; it must be the `root` written with the manifest.
    pub(crate) fn new(root: Option<&RootAttrs>) -> Self {
        Self {
            buf: Vec::new(),
            dir: String::new(),
            in_group: 0,
            groups: 0,
            owner: owner_of(root),
        }
    }

    pub(crate) fn push(&mut self, e: &ManifestEntry) {
        let (dir, name) = split(&e.path);
        if self.groups == 0 || dir != self.dir || self.in_group >= GROUP_MAX {
            if self.groups > 0 {
                self.buf.extend_from_slice(b"]}\n,");
            }
            self.buf.extend_from_slice(b"{\"dir\":");
            write_json(&mut self.buf, dir);
            self.buf.extend_from_slice(b",\"e\":[");
            self.dir.clear();
            self.dir.push_str(dir);
            self.in_group = 0;
            self.groups += 1;
        } else {
            self.buf.push(b',');
        }
        write_json(&mut self.buf, &EntryOut::new(name, e, self.owner));
        self.in_group += 1;
    }

    /// The array's content (without the brackets).
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.groups > 0 {
            self.buf.extend_from_slice(b"]}");
        }
        self.buf
    }
}

fn write_json(buf: &mut Vec<u8>, v: &(impl Serialize + ?Sized)) {
    // Writing into a Vec cannot fail, and our types always serialize.
    if let Err(e) = serde_json::to_writer(&mut *buf, v) {
        tracing::error!(error = %e, "manifest serialization failed");
    }
}

/// Writes a stored manifest: header, root, lists, then `entries` (`body` from an
/// [`EntriesWriter`] made with the same `root`), one group per line.
pub(crate) fn write_stored(
    w: &mut dyn Write,
    header: &ManifestHeader,
    root: Option<&RootAttrs>,
    deleted: &[String],
    vanished: &[String],
    skipped: &[super::SkippedPath],
    body: &[u8],
) -> io::Result<()> {
    let mut head = Vec::with_capacity(4096);
    head.extend_from_slice(b"{\"backup\":");
    write_json(&mut head, header);
    if let Some(r) = root {
        head.extend_from_slice(b"\n,\"root\":");
        write_json(&mut head, r);
    }
    w.write_all(&head)?;
    let mut list = |key: &str, items: &[String]| -> io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        write!(w, "\n,\"{key}\":[")?;
        for (i, item) in items.iter().enumerate() {
            let mut b = Vec::with_capacity(item.len() + 4);
            if i > 0 {
                b.extend_from_slice(b",\n");
            }
            write_json(&mut b, item);
            w.write_all(&b)?;
        }
        w.write_all(b"]")
    };
    list("deleted", deleted)?;
    list("vanished", vanished)?;
    if !skipped.is_empty() {
        let mut b = b"\n,\"skipped\":".to_vec();
        write_json(&mut b, skipped);
        w.write_all(&b)?;
    }
    w.write_all(b"\n,\"entries\":[\n")?;
    w.write_all(body)?;
    w.write_all(b"\n]}\n")
}

impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("backup", &self.backup)?;
        if let Some(r) = &self.root {
            map.serialize_entry("root", r)?;
        }
        if !self.deleted.is_empty() {
            map.serialize_entry("deleted", &self.deleted)?;
        }
        if !self.vanished.is_empty() {
            map.serialize_entry("vanished", &self.vanished)?;
        }
        if !self.skipped.is_empty() {
            map.serialize_entry("skipped", &self.skipped)?;
        }
        map.serialize_entry(
            "entries",
            &Groups {
                entries: &self.entries,
                owner: owner_of(self.root.as_ref()),
            },
        )?;
        map.end()
    }
}

struct Groups<'a> {
    entries: &'a [ManifestEntry],
    owner: (u32, u32),
}

impl Serialize for Groups<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        let mut rest = self.entries;
        while let Some(first) = rest.first() {
            let dir = split(&first.path).0;
            let n = rest
                .iter()
                .take(GROUP_MAX)
                .take_while(|e| split(&e.path).0 == dir)
                .count();
            let (group, tail) = rest.split_at(n);
            seq.serialize_element(&Group {
                dir,
                e: GroupEntries {
                    entries: group,
                    owner: self.owner,
                },
            })?;
            rest = tail;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Group<'a> {
    dir: &'a str,
    e: GroupEntries<'a>,
}

struct GroupEntries<'a> {
    entries: &'a [ManifestEntry],
    owner: (u32, u32),
}

impl Serialize for GroupEntries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.entries.len()))?;
        for e in self.entries {
            seq.serialize_element(&EntryOut::new(split(&e.path).1, e, self.owner))?;
        }
        seq.end()
    }
}

/// Everything of a stored manifest but its entries.
#[derive(Deserialize)]
struct StoredHead {
    /// An `entries` key before the one our layout puts last: the document has two, which serde
    /// refuses, so the layout readers must not pick one.
    #[serde(default)]
    entries: Option<IgnoredAny>,
    backup: ManifestHeader,
    #[serde(default)]
    root: Option<RootAttrs>,
    #[serde(default)]
    deleted: Vec<String>,
    #[serde(default)]
    vanished: Vec<String>,
    #[serde(default)]
    skipped: Vec<super::SkippedPath>,
}

/// The same with `entries` left raw (any layout).
#[derive(Deserialize)]
struct StoredTop<'a> {
    backup: ManifestHeader,
    #[serde(default)]
    root: Option<RootAttrs>,
    #[serde(default)]
    deleted: Vec<String>,
    #[serde(default)]
    vanished: Vec<String>,
    #[serde(default)]
    skipped: Vec<super::SkippedPath>,
    #[serde(borrow)]
    entries: &'a serde_json::value::RawValue,
}

/// Where [`write_stored`] starts the entries: a newline is never inside a JSON string, so this
/// can only be the structure.
const ENTRIES_MARK: &[u8] = b"\n,\"entries\":";

/// Parses a stored manifest (format 2) from its bytes: the entries with the fast reader when
/// they are written the way [`write_stored`] writes them, with serde otherwise.
pub(crate) fn parse_stored(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
    if let Some(m) = parse_our_layout(bytes) {
        return Ok(m);
    }
    let Ok(top) = serde_json::from_slice::<StoredTop<'_>>(bytes) else {
        // Whatever is wrong, serde says it best.
        return serde_json::from_slice(bytes);
    };
    if top.backup.format != MANIFEST_FORMAT {
        return serde_json::from_slice(bytes);
    }
    let owner = owner_of(top.root.as_ref());
    let entries = match super::fast::parse_entries(top.entries.get(), owner) {
        Some(e) => e,
        None => {
            let mut entries = Vec::new();
            let mut defaulted = Vec::new();
            let mut de = serde_json::Deserializer::from_str(top.entries.get());
            GroupsSeed {
                out: &mut entries,
                owner: Some(owner),
                defaulted: &mut defaulted,
            }
            .deserialize(&mut de)?;
            de.end()?;
            entries
        }
    };
    let head = StoredHead {
        entries: None,
        backup: top.backup,
        root: top.root,
        deleted: top.deleted,
        vanished: top.vanished,
        skipped: top.skipped,
    };
    Ok(assemble(head, entries))
}

/// Our own layout: the head parsed by serde, the entries (after [`ENTRIES_MARK`], up to the
/// closing brace) by the fast reader, without serde scanning them first. `None` for anything
/// else.
fn parse_our_layout(bytes: &[u8]) -> Option<Manifest> {
    let mark = bytes
        .windows(ENTRIES_MARK.len())
        .position(|w| w == ENTRIES_MARK)?;
    let mut head = Vec::with_capacity(mark + 1);
    head.extend_from_slice(&bytes[..mark]);
    head.push(b'}');
    let head: StoredHead = serde_json::from_slice(&head).ok()?;
    if head.backup.format != MANIFEST_FORMAT || head.entries.is_some() {
        return None;
    }
    let rest = trim_json_end(bytes.get(mark + ENTRIES_MARK.len()..)?);
    let body = std::str::from_utf8(rest.strip_suffix(b"}")?).ok()?;
    let entries = super::fast::parse_entries(body, owner_of(head.root.as_ref()))?;
    Some(assemble(head, entries))
}

/// JSON's whitespace (not `u8::is_ascii_whitespace`, which also takes form feeds).
fn is_json_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

fn trim_json_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|&c| !is_json_space(c))
        .map_or(0, |i| i + 1);
    &b[..end]
}

fn trim_json(b: &[u8]) -> &[u8] {
    let b = trim_json_end(b);
    let start = b.iter().position(|&c| !is_json_space(c)).unwrap_or(b.len());
    &b[start..]
}

/// The entries of a stored manifest read as a stream, one line (group) at a time, so a whole
/// tree never has to be in memory: used by an incremental to walk its parent's tree.
pub(crate) struct EntryStream<R> {
    reader: R,
    line: Vec<u8>,
    group: Vec<ManifestEntry>,
    next: usize,
    owner: (u32, u32),
    done: bool,
}

/// The line [`write_stored`] puts before the first group.
const ENTRIES_LINE: &[u8] = b",\"entries\":[";

/// Why a stored manifest cannot be streamed.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// Not in our layout: parse it whole instead.
    Layout,
    Io(io::Error),
    Json(serde_json::Error),
}

impl<R: io::BufRead> EntryStream<R> {
    /// Reads the head (everything before the entries) and positions the stream on the first
    /// group. Only our own layout streams; anything else is [`StreamError::Layout`].
    pub(crate) fn open(mut reader: R) -> Result<(Manifest, Self), StreamError> {
        let mut head = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .map_err(StreamError::Io)?
                == 0
            {
                return Err(StreamError::Layout);
            }
            if trim_json_end(&line) == ENTRIES_LINE {
                break;
            }
            head.extend_from_slice(&line);
            if head.len() > 1 << 30 {
                return Err(StreamError::Layout);
            }
        }
        head.push(b'}');
        let head: StoredHead = serde_json::from_slice(&head).map_err(|_| StreamError::Layout)?;
        if head.backup.format != MANIFEST_FORMAT || head.entries.is_some() {
            return Err(StreamError::Layout);
        }
        let owner = owner_of(head.root.as_ref());
        Ok((
            assemble(head, Vec::new()),
            Self {
                reader,
                line,
                group: Vec::new(),
                next: 0,
                owner,
                done: false,
            },
        ))
    }

    /// After the closing line only whitespace may follow, as for the whole-manifest reader:
    /// a stream must not read a tree from a manifest that restore would refuse.
    fn expect_end(&mut self) -> Result<(), StreamError> {
        loop {
            let chunk = self.reader.fill_buf().map_err(StreamError::Io)?;
            if chunk.is_empty() {
                return Ok(());
            }
            if !chunk.iter().all(|&c| is_json_space(c)) {
                return Err(StreamError::Json(de::Error::custom(
                    "trailing characters after the end of the manifest",
                )));
            }
            let n = chunk.len();
            self.reader.consume(n);
        }
    }

    /// The next entry in the stored order.
    pub(crate) fn next_entry(&mut self) -> Result<Option<ManifestEntry>, StreamError> {
        while self.next >= self.group.len() {
            if self.done {
                return Ok(None);
            }
            self.group.clear();
            self.next = 0;
            self.line.clear();
            if self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(StreamError::Io)?
                == 0
            {
                // The closing line is missing: a cut-off manifest.
                return Err(StreamError::Json(de::Error::custom(
                    "manifest ends inside its entries",
                )));
            }
            let text = std::str::from_utf8(trim_json(&self.line))
                .map_err(|e| StreamError::Json(de::Error::custom(e)))?;
            if text == "]}" {
                self.expect_end()?;
                self.done = true;
                continue;
            }
            if text.is_empty() {
                continue;
            }
            let text = text.strip_prefix(',').unwrap_or(text);
            if super::fast::parse_group(text, self.owner, &mut self.group).is_none() {
                // Escaped names and the like: serde reads the line.
                let mut defaulted = Vec::new();
                let mut de = serde_json::Deserializer::from_str(text);
                GroupSeed {
                    out: &mut self.group,
                    owner: Some(self.owner),
                    defaulted: &mut defaulted,
                }
                .deserialize(&mut de)
                .map_err(StreamError::Json)?;
                de.end().map_err(StreamError::Json)?;
            }
        }
        let e = std::mem::replace(&mut self.group[self.next], placeholder());
        self.next += 1;
        Ok(Some(e))
    }
}

fn placeholder() -> ManifestEntry {
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

fn assemble(head: StoredHead, entries: Vec<ManifestEntry>) -> Manifest {
    Manifest {
        backup: head.backup,
        entries,
        deleted: head.deleted,
        vanished: head.vanished,
        root: head.root,
        skipped: head.skipped,
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ManifestVisitor)
    }
}

struct ManifestVisitor;

impl<'de> Visitor<'de> for ManifestVisitor {
    type Value = Manifest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dr-backup manifest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Manifest, A::Error> {
        let mut backup: Option<ManifestHeader> = None;
        let mut root: Option<RootAttrs> = None;
        let mut deleted = Vec::new();
        let mut vanished = Vec::new();
        let mut skipped = Vec::new();
        let mut entries = Vec::new();
        // Entries that relied on the default owner before `root` was seen (never with our
        // writer, which puts `root` first): patched at the end.
        let mut defaulted: Vec<(usize, bool, bool)> = Vec::new();
        let mut seen_entries = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "backup" => {
                    let h: ManifestHeader = map.next_value()?;
                    if h.format != MANIFEST_FORMAT {
                        return Err(de::Error::custom(format!(
                            "manifest format {} is not supported (this dr-backup reads format {MANIFEST_FORMAT})",
                            h.format
                        )));
                    }
                    backup = Some(h);
                }
                "root" => root = map.next_value()?,
                "deleted" => deleted = map.next_value()?,
                "vanished" => vanished = map.next_value()?,
                "skipped" => skipped = map.next_value()?,
                "entries" => {
                    if seen_entries {
                        return Err(de::Error::duplicate_field("entries"));
                    }
                    seen_entries = true;
                    let owner = root.as_ref().map(|r| (r.uid, r.gid));
                    map.next_value_seed(GroupsSeed {
                        out: &mut entries,
                        owner,
                        defaulted: &mut defaulted,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let backup = backup.ok_or_else(|| de::Error::missing_field("backup"))?;
        if !seen_entries {
            return Err(de::Error::missing_field("entries"));
        }
        let (uid, gid) = owner_of(root.as_ref());
        for (i, u, g) in defaulted {
            if u {
                entries[i].uid = uid;
            }
            if g {
                entries[i].gid = gid;
            }
        }
        Ok(Manifest {
            backup,
            entries,
            deleted,
            vanished,
            root,
            skipped,
        })
    }
}

struct GroupsSeed<'a> {
    out: &'a mut Vec<ManifestEntry>,
    owner: Option<(u32, u32)>,
    defaulted: &'a mut Vec<(usize, bool, bool)>,
}

impl<'de> DeserializeSeed<'de> for GroupsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for GroupsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of {\"dir\", \"e\"} groups")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(GroupSeed {
                out: &mut *self.out,
                owner: self.owner,
                defaulted: &mut *self.defaulted,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct GroupSeed<'a> {
    out: &'a mut Vec<ManifestEntry>,
    owner: Option<(u32, u32)>,
    defaulted: &'a mut Vec<(usize, bool, bool)>,
}

impl<'de> DeserializeSeed<'de> for GroupSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for GroupSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a {\"dir\", \"e\"} group")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut dir: Option<Cow<'de, str>> = None;
        let mut seen_e = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "dir" => dir = Some(map.next_value()?),
                "e" => {
                    let Some(d) = dir.as_deref() else {
                        return Err(de::Error::custom(
                            "a group's \"e\" comes before its \"dir\"",
                        ));
                    };
                    seen_e = true;
                    map.next_value_seed(EntriesSeed {
                        dir: d,
                        out: &mut *self.out,
                        owner: self.owner,
                        defaulted: &mut *self.defaulted,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_e {
            return Err(de::Error::missing_field("e"));
        }
        Ok(())
    }
}

struct EntriesSeed<'a> {
    dir: &'a str,
    out: &'a mut Vec<ManifestEntry>,
    owner: Option<(u32, u32)>,
    defaulted: &'a mut Vec<(usize, bool, bool)>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

#[derive(Deserialize)]
struct EntryIn<'a> {
    #[serde(borrow)]
    n: Cow<'a, str>,
    #[serde(default, borrow)]
    k: Option<Cow<'a, str>>,
    #[serde(default)]
    s: u64,
    t: i64,
    #[serde(borrow)]
    m: Cow<'a, str>,
    #[serde(default)]
    u: Option<u32>,
    #[serde(default)]
    g: Option<u32>,
    #[serde(default)]
    i: u64,
    #[serde(default)]
    h: Option<Sha256Digest>,
    #[serde(default, borrow)]
    l: Option<Cow<'a, str>>,
    #[serde(default)]
    o: Option<BackupId>,
    #[serde(default)]
    c: bool,
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (uid0, gid0) = self.owner.unwrap_or((0, 0));
        while let Some(e) = seq.next_element::<EntryIn<'de>>()? {
            let kind = match e.k.as_deref() {
                None => EntryKind::File,
                Some("d") => EntryKind::Dir,
                Some("l") => EntryKind::Symlink,
                Some(other) => {
                    return Err(de::Error::custom(format!(
                        "entry kind {other:?} is not \"d\" or \"l\" (absent for files)"
                    )));
                }
            };
            let mode = u32::from_str_radix(&e.m, 8)
                .map_err(|_| de::Error::custom(format!("mode {:?} is not an octal number", e.m)))?;
            if self.owner.is_none() && (e.u.is_none() || e.g.is_none()) {
                self.defaulted
                    .push((self.out.len(), e.u.is_none(), e.g.is_none()));
            }
            self.out.push(ManifestEntry {
                path: join(self.dir, e.n),
                kind,
                size: e.s,
                mtime_ns: e.t,
                mode,
                uid: e.u.unwrap_or(uid0),
                gid: e.g.unwrap_or(gid0),
                inode: e.i,
                sha256: e.h,
                target: e.l.map(Cow::into_owned),
                origin: e.o,
                changed_while_reading: e.c,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_round_trip_any_path() {
        for p in [
            "a",
            "a/b",
            "a/b/c.json",
            "/abs",
            "/",
            "a//b",
            "a/",
            "../x",
            "x/..",
        ] {
            let (d, n) = split(p);
            assert_eq!(join(d, Cow::Borrowed(n)), p, "{p:?}");
        }
    }

    #[test]
    fn stored_layout_and_serde_agree() {
        let mut m = super::super::tests::sample();
        m.root = Some(RootAttrs {
            mode: 0o750,
            uid: 1000,
            gid: 1000,
            mtime_ns: 5,
        });
        m.entries[2].uid = 7;
        m.vanished = vec!["gone".into()];
        let mut w = EntriesWriter::new(m.root.as_ref());
        for e in &m.entries {
            w.push(e);
        }
        let body = w.finish();
        let mut stored = Vec::new();
        write_stored(
            &mut stored,
            &m.backup,
            m.root.as_ref(),
            &m.deleted,
            &m.vanished,
            &m.skipped,
            &body,
        )
        .unwrap();
        let text = String::from_utf8(stored.clone()).unwrap();
        assert!(text.starts_with("{\"backup\":{\"format\":2,"), "{text}");
        assert!(
            text.contains("{\"dir\":\"d\",\"e\":[{\"n\":\"f\",\"s\":4,"),
            "{text}"
        );
        assert!(text.contains("\"m\":\"644\""), "{text}");
        assert!(text.contains("\"u\":7,"), "{text}");
        let from_writer = parse_stored(&stored).unwrap();
        let from_serde = parse_stored(&serde_json::to_vec(&m).unwrap()).unwrap();
        for got in [&from_writer, &from_serde] {
            assert_eq!(got.entries, m.entries);
            assert_eq!(got.backup, m.backup);
            assert_eq!(got.root, m.root);
            assert_eq!(got.vanished, m.vanished);
        }
        // A generic JSON tool can read it.
        let v: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(v["entries"][1]["dir"], "d");
    }

    #[test]
    fn every_reader_agrees_on_odd_names() {
        let mut m = super::super::tests::sample();
        m.root = Some(RootAttrs {
            mode: 0o755,
            uid: 5,
            gid: 6,
            mtime_ns: -3,
        });
        let odd = ["d/quote\"q", "d/tab\tt", "d/\u{e9}t\u{e9}", "d/back\\slash"];
        for (i, name) in odd.iter().enumerate() {
            let mut e = m.entries[2].clone();
            e.path = (*name).to_owned();
            e.mtime_ns = -1_000 - i as i64;
            e.origin = None;
            m.entries.push(e);
        }
        m.entries[1..].sort_by(|a, b| crate::paths::walk_order(&a.path, &b.path));
        let mut w = EntriesWriter::new(m.root.as_ref());
        for e in &m.entries {
            w.push(e);
        }
        let mut stored = Vec::new();
        write_stored(
            &mut stored,
            &m.backup,
            m.root.as_ref(),
            &[],
            &[],
            &[],
            &w.finish(),
        )
        .unwrap();
        let compact = serde_json::to_vec(&m).unwrap();
        let pretty = serde_json::to_vec_pretty(&m).unwrap();
        // Our layout with escapes (fast reader gives up, serde takes over), and without.
        for bytes in [&stored, &compact, &pretty] {
            let got = parse_stored(bytes).unwrap();
            assert_eq!(got.entries, m.entries);
            assert_eq!(got.root, m.root);
            let via_serde: Manifest = serde_json::from_slice(bytes).unwrap();
            assert_eq!(via_serde.entries, m.entries);
        }
        // Plain names take the fast reader.
        let plain = super::super::tests::sample();
        let mut w = EntriesWriter::new(None);
        for e in &plain.entries {
            w.push(e);
        }
        let body = w.finish();
        let parsed = super::super::fast::parse_entries(
            &format!("[{}]", String::from_utf8(body).unwrap()),
            (0, 0),
        );
        assert_eq!(parsed.as_deref(), Some(&plain.entries[..]));
        // Invalid values are not taken by the fast reader.
        for bad in [
            r#"[{"dir":"","e":[{"n":"a","t":1,"m":"9"}]}]"#,
            r#"[{"dir":"","e":[{"n":"a","t":1.5,"m":"644"}]}]"#,
            r#"[{"dir":"","e":[{"n":"a","n":"b","t":1,"m":"644"}]}]"#,
            r#"[{"dir":"","e":[{"n":"a","t":1,"m":"644","x":1}]}]"#,
            r#"[{"e":[],"dir":""}]"#,
        ] {
            assert!(
                super::super::fast::parse_entries(bad, (0, 0)).is_none(),
                "{bad}"
            );
        }
    }

    /// The sample manifest as `write_stored` writes it.
    fn sample_stored() -> Vec<u8> {
        let m = super::super::tests::sample();
        let mut w = EntriesWriter::new(m.root.as_ref());
        for e in &m.entries {
            w.push(e);
        }
        let mut out = Vec::new();
        write_stored(&mut out, &m.backup, None, &[], &[], &[], &w.finish()).unwrap();
        out
    }

    fn sample_stored_with(from: &str, to: &str) -> Vec<u8> {
        let text = String::from_utf8(sample_stored()).unwrap();
        assert!(text.contains(from), "{from} not in {text}");
        text.replacen(from, to, 1).into_bytes()
    }

    /// Whether the streaming reader reads a whole tree from `bytes`.
    fn streams_whole(bytes: &[u8]) -> bool {
        let Ok((_, mut stream)) = EntryStream::open(io::Cursor::new(bytes)) else {
            return false;
        };
        loop {
            match stream.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Found by `manifest::properties::fast_reader_agrees_with_serde`: the fast reader took
    /// `-0` and leading zeros, which JSON (and serde) refuse.
    #[test]
    fn the_fast_reader_refuses_numbers_serde_refuses() {
        for (from, to) in [
            ("\"i\":1", "\"i\":-0"),
            ("\"i\":1", "\"i\":01"),
            ("\"t\":1", "\"t\":-0"),
            ("\"s\":3", "\"s\":-0"),
        ] {
            let bytes = sample_stored_with(from, to);
            assert!(serde_json::from_slice::<Manifest>(&bytes).is_err(), "{to}");
            assert!(parse_stored(&bytes).is_err(), "{to} accepted");
        }
    }

    /// Found by `manifest::properties::fast_reader_agrees_with_serde`: with an `entries` key in
    /// the head, our layout's reader took the second one where serde refuses the duplicate.
    #[test]
    fn a_second_entries_key_is_refused() {
        let bytes = sample_stored_with("\n,\"entries\":", ",\"entries\":[]\n,\"entries\":");
        assert!(serde_json::from_slice::<Manifest>(&bytes).is_err());
        assert!(parse_stored(&bytes).is_err());
        assert!(!streams_whole(&bytes));
    }

    /// Found by `manifest::properties::fast_reader_agrees_with_serde`: the streaming reader
    /// stopped at the closing line and took a manifest with bytes after it (so an incremental
    /// could build on a parent that restore refuses), and both layout readers trimmed form
    /// feeds, which JSON does not count as whitespace.
    #[test]
    fn bytes_after_the_end_are_refused_by_every_reader() {
        for tail in ["x", "\u{c}", "]}\n"] {
            let mut bytes = sample_stored();
            bytes.extend_from_slice(tail.as_bytes());
            assert!(parse_stored(&bytes).is_err(), "{tail:?} accepted");
            assert!(!streams_whole(&bytes), "{tail:?} streamed");
        }
        let mut bytes = sample_stored();
        bytes.extend_from_slice(b" \n\t\r\n");
        assert!(parse_stored(&bytes).is_ok());
        assert!(streams_whole(&bytes));
    }

    #[test]
    fn older_formats_are_refused_clearly() {
        let mut m = super::super::tests::sample();
        m.backup.format = 1;
        let err = parse_stored(&serde_json::to_vec(&m).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("format 1 is not supported"),
            "{err}"
        );
    }
}
