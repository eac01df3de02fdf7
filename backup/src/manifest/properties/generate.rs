//! Manifests that pass [`Manifest::check_stored`], in every spelling a reader may meet (our
//! line layout, compact and pretty serde JSON), and mutations of those bytes: flipped, inserted,
//! removed and cut-off bytes, and JSON tokens chosen to sit on the edges of the readers (numbers
//! serde refuses, duplicate keys, the layout's own markers, escapes).

use proptest::prelude::*;

use crate::hashing::Sha256Digest;
use crate::manifest::{
    ArchiveInfo, EntriesWriter, EntryKind, MANIFEST_FORMAT, Manifest, ManifestEntry,
    ManifestHeader, RootAttrs, SkippedPath, totals_of, write_stored,
};
use crate::naming::{BackupId, BackupKind};
use crate::paths::walk_order;

/// File names: mostly plain, some needing JSON escapes or outside ASCII, some at NAME_MAX.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9]{1,6}",
        2 => "[a-z\"\\\\\t\u{1} é€😀.-]{1,6}".prop_filter("not . or ..", |s| s != "." && s != ".."),
        1 => Just("n".repeat(255)),
    ]
}

/// Symlink targets stay inside and never name another entry (names never start with `t_`),
/// so they resolve without chains.
fn target() -> impl Strategy<Value = String> {
    prop_oneof!["t_[a-z]{1,4}", "t_d/t_[a-z]{1,4}", Just(".".to_owned())]
}

fn digest() -> impl Strategy<Value = Sha256Digest> {
    any::<[u8; 32]>().prop_map(|b| Sha256Digest::of(&b))
}

#[derive(Debug, Clone)]
struct Leaf {
    components: Vec<String>,
    kind: EntryKind,
    size: u64,
    sha256: Sha256Digest,
    target: String,
    mode: u32,
    owner: (u32, u32),
    mtime_ns: i64,
    inode: u64,
    changed: bool,
    inherited: bool,
}

fn leaf() -> impl Strategy<Value = Leaf> {
    (
        proptest::collection::vec(name(), 1..4),
        prop_oneof![
            3 => Just(EntryKind::File),
            1 => Just(EntryKind::Dir),
            1 => Just(EntryKind::Symlink)
        ],
        (
            prop_oneof![
                8 => 0u64..5000,
                1 => Just(u64::from(u32::MAX)),
                1 => 0u64..(1 << 50),
                1 => (1u64 << 63)..=u64::MAX,
            ],
            digest(),
            target(),
        ),
        (
            0u32..0o2000,
            prop_oneof![Just((0u32, 0u32)), Just((1000, 1000)), any::<(u32, u32)>()],
            any::<i64>(),
            any::<u64>(),
        ),
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(
                components,
                kind,
                (size, sha256, target),
                (mode, owner, mtime_ns, inode),
                (changed, inherited),
            )| {
                Leaf {
                    components,
                    kind,
                    size,
                    sha256,
                    target,
                    mode: mode & 0o1777,
                    owner,
                    mtime_ns,
                    inode,
                    changed,
                    inherited,
                }
            },
        )
}

fn entry_of(path: String, l: &Leaf, kind: EntryKind, origin: Option<BackupId>) -> ManifestEntry {
    ManifestEntry {
        path,
        kind,
        size: if kind == EntryKind::File { l.size } else { 0 },
        mtime_ns: l.mtime_ns,
        mode: l.mode,
        uid: l.owner.0,
        gid: l.owner.1,
        inode: l.inode,
        sha256: (kind == EntryKind::File).then_some(l.sha256),
        target: (kind == EntryKind::Symlink).then(|| l.target.clone()),
        origin,
        changed_while_reading: kind == EntryKind::File && l.changed && origin.is_none(),
    }
}

/// The tree: every leaf with its parent directories, in walk order, each path once.
fn tree(leaves: &[Leaf], parent: Option<BackupId>) -> Vec<ManifestEntry> {
    let mut by_path: std::collections::BTreeMap<String, ManifestEntry> = Default::default();
    for l in leaves {
        let origin = parent.filter(|_| l.inherited);
        for depth in 1..l.components.len() {
            let dir = l.components[..depth].join("/");
            let e = entry_of(dir.clone(), l, EntryKind::Dir, origin);
            by_path.insert(dir, e);
        }
        let path = l.components.join("/");
        if by_path.get(&path).is_none_or(|e| e.kind != EntryKind::Dir) {
            by_path.insert(path.clone(), entry_of(path, l, l.kind, origin));
        }
    }
    let mut entries: Vec<ManifestEntry> = by_path.into_values().collect();
    // A path that is a directory for one leaf and a file for another: keep the directory.
    entries.sort_by(|a, b| walk_order(&a.path, &b.path));
    let mut out: Vec<ManifestEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(prev) = out.last()
            && e.path.starts_with(&format!("{}/", prev.path))
            && prev.kind != EntryKind::Dir
        {
            let prev = out.pop().expect("just looked");
            out.push(ManifestEntry {
                kind: EntryKind::Dir,
                size: 0,
                sha256: None,
                target: None,
                changed_while_reading: false,
                ..prev
            });
        }
        out.push(e);
    }
    out
}

/// A manifest that passes `check_stored` (a full backup, or an incremental's changes).
pub(super) fn manifest() -> impl Strategy<Value = Manifest> {
    (
        proptest::collection::vec(leaf(), 0..10),
        (
            1_000_000_000i64..4_000_000_000,
            1i64..1_000_000,
            any::<bool>(),
        ),
        (
            "[a-z][a-z0-9-]{0,10}",
            "[a-z][a-z0-9-]{0,10}",
            "[ -~é]{0,12}",
        ),
        proptest::option::of((0u32..0o2000, any::<u32>(), any::<u32>(), any::<i64>())),
        proptest::collection::vec("[a-z]{1,5}", 0..3),
        proptest::collection::vec(("[a-z\"]{1,5}", "[ -~]{0,10}"), 0..3),
        (any::<i64>(), any::<i64>(), any::<u64>(), 1i32..20),
    )
        .prop_map(
            |(
                leaves,
                (secs, back, incremental),
                (group, host, tool),
                root,
                vanished,
                skipped,
                (started, finished, size, level),
            )| {
                let kind = if incremental {
                    BackupKind::Incremental
                } else {
                    BackupKind::Full
                };
                let id = BackupId {
                    unix_secs: secs,
                    kind,
                };
                let parent = incremental.then_some(BackupId {
                    unix_secs: secs - back,
                    kind: BackupKind::Full,
                });
                let entries = tree(&leaves, parent);
                let mut deleted: Vec<String> = if incremental {
                    leaves
                        .iter()
                        .map(|l| format!("gone/{}", l.components[0]))
                        .collect()
                } else {
                    Vec::new()
                };
                deleted.sort_by(|a, b| walk_order(a, b));
                deleted.dedup();
                let skipped: Vec<SkippedPath> = skipped
                    .into_iter()
                    .map(|(path, reason)| SkippedPath { path, reason })
                    .collect();
                let totals = totals_of(&entries, deleted.len(), vanished.len(), skipped.len());
                Manifest {
                    backup: ManifestHeader {
                        format: MANIFEST_FORMAT,
                        tool,
                        id,
                        kind,
                        group,
                        host,
                        created_at: id.timestamp(),
                        started_at_unix_ns: started,
                        finished_at_unix_ns: finished,
                        parent,
                        archive: ArchiveInfo {
                            name: id.archive_name(),
                            sha256: Sha256Digest::of(id.to_string().as_bytes()),
                            size,
                            compression: "zstd".into(),
                            level,
                        },
                        totals,
                    },
                    entries,
                    deleted,
                    vanished,
                    root: root.map(|(mode, uid, gid, mtime_ns)| RootAttrs {
                        mode: mode & 0o1777,
                        uid,
                        gid,
                        mtime_ns,
                    }),
                    skipped,
                }
            },
        )
}

/// The manifest as `dr-backup` stores it (header, lists, one directory group per line).
pub(super) fn our_layout(m: &Manifest) -> Vec<u8> {
    let mut w = EntriesWriter::new(m.root.as_ref());
    for e in &m.entries {
        w.push(e);
    }
    let mut out = Vec::new();
    write_stored(
        &mut out,
        &m.backup,
        m.root.as_ref(),
        &m.deleted,
        &m.vanished,
        &m.skipped,
        &w.finish(),
    )
    .expect("writing to a Vec");
    out
}

/// The spellings a reader meets: ours, and serde's compact and pretty JSON.
pub(super) fn spellings(m: &Manifest) -> [Vec<u8>; 3] {
    [
        our_layout(m),
        serde_json::to_vec(m).expect("serializes"),
        serde_json::to_vec_pretty(m).expect("serializes"),
    ]
}

/// JSON fragments at the edges of what the readers accept.
const TOKENS: &[&str] = &[
    "-0",
    "007",
    "1.0",
    "1e3",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "4294967296",
    "null",
    "true",
    "\"\"",
    "\"\\u0000\"",
    "\"\\\"\"",
    "\"../x\"",
    "\"/abs\"",
    "\"a/../../x\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\n",
    " ",
    "\u{c}",
    "\r\n",
    "\n]}\n",
    "\n,\"entries\":[\n",
    ",\"entries\":[]",
    "\"entries\":",
    "{\"dir\":\"\",\"e\":[]}",
    "\"k\":\"l\"",
    "\"k\":\"d\"",
    "\"k\":\"x\"",
    "\"s\":1",
    "\"u\":1",
    "\"o\":\"full-2000-01-01T00:00:00Z\"",
    "\"c\":true",
    "\"h\":\"00\"",
    "\"m\":\"7777\"",
    "\"m\":\"+644\"",
    "\"format\":1",
    "\u{e9}",
    "\u{ff}",
];

/// Numbers where JSON, serde and a hand-written reader may differ.
const NUMBERS: &[&str] = &[
    "-0",
    "007",
    "00",
    "-00",
    "0.0",
    "-0.0",
    "1.0",
    "1e3",
    "1E3",
    "-1",
    "+1",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e400",
];

/// Endings: garbage, whitespace JSON does and does not allow, a second close.
const ENDINGS: &[&str] = &["x", " ", "\n", "\u{c}", "\u{b}", "\r\n", "}", "]}\n", "\0"];

#[derive(Debug, Clone)]
pub(super) enum Mutation {
    /// Replaces the `nth` (modulo their count) number that follows a `:` with `NUMBERS[number]`.
    Number {
        nth: usize,
        number: usize,
    },
    /// Appends `ENDINGS[ending]`.
    Ending(usize),
    /// Adds an `entries` key before the real one (a duplicate key), right before its `,` or
    /// before the line break that precedes that.
    EntriesTwice {
        before_line_break: bool,
    },
    Flip {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Token {
        at: usize,
        token: usize,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Repeats a slice of the document somewhere else (duplicate keys, entries, groups).
    Copy {
        from: usize,
        len: usize,
        to: usize,
    },
}

pub(super) fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        3 => (any::<usize>(), 0..NUMBERS.len())
            .prop_map(|(nth, number)| Mutation::Number { nth, number }),
        1 => (0..ENDINGS.len()).prop_map(Mutation::Ending),
        1 => any::<bool>().prop_map(|before_line_break| Mutation::EntriesTwice { before_line_break }),
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        4 => (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Token { at, token }),
        2 => (any::<usize>(), 1usize..12).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), 1usize..80, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Copy { from, len, to }),
    ];
    proptest::collection::vec(one, 1..4)
}

pub(super) fn apply(mut b: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = b.len();
        match m {
            Mutation::Number { nth, number } => {
                let starts: Vec<usize> = (1..n)
                    .filter(|&i| b[i - 1] == b':' && (b[i].is_ascii_digit() || b[i] == b'-'))
                    .collect();
                if let Some(&at) = starts.get(nth % starts.len().max(1)) {
                    let len = b[at..]
                        .iter()
                        .position(|c| !(c.is_ascii_digit() || *c == b'-'))
                        .unwrap_or(n - at);
                    b.splice(at..at + len, NUMBERS[*number].bytes());
                }
            }
            Mutation::Ending(i) => b.extend_from_slice(ENDINGS[*i].as_bytes()),
            Mutation::EntriesTwice { before_line_break } => {
                let key = b"\"entries\":";
                // The last one: the header's totals have an `entries` key too.
                if let Some(at) = b.windows(key.len()).rposition(|w| w == key) {
                    let mut at = b[..at].iter().rposition(|&c| c == b',').unwrap_or(at);
                    if *before_line_break && at > 0 && b[at - 1] == b'\n' {
                        at -= 1;
                    }
                    b.splice(at..at, b",\"entries\":[]".iter().copied());
                }
            }
            Mutation::Flip { at, bit } if n > 0 => b[at % n] ^= 1 << bit,
            Mutation::Insert { at, bytes } => {
                let at = at % (n + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Token { at, token } => {
                let at = at % (n + 1);
                b.splice(at..at, TOKENS[*token].bytes());
            }
            Mutation::Remove { at, len } if n > 0 => {
                let at = at % n;
                b.drain(at..(at + len).min(n));
            }
            Mutation::Truncate { at } => b.truncate(at % (n + 1)),
            Mutation::Copy { from, len, to } if n > 0 => {
                let from = from % n;
                let piece = b[from..(from + len).min(n)].to_vec();
                let to = to % (n + 1);
                b.splice(to..to, piece);
            }
            _ => {}
        }
    }
    b
}
