//! Property: restoring any archive — arbitrary sequences of tar entries with `..`, absolute
//! paths, NUL bytes, long names, PAX path overrides, symlinks and hard links pointing anywhere,
//! devices, fifos, sparse files, setuid modes and headers that lie about their size — never
//! writes outside the staging directory and never panics. Either the restore is refused (and the
//! staging directory is gone) or the staging directory holds exactly the tree the manifest
//! describes, with every symlink resolving inside it.
//!
//! Each archive is paired with a manifest that describes it honestly, one that describes it with
//! a detail changed, or a harmless-looking one; and plain trees are restored from archives with
//! a twist the manifest does not mention. `PROPTEST_CASES` sets the number of cases (default
//! 256; each is a real restore, about 5 ms; see tests/README.md).

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use common::craft::{RawTar, commit_full, dir_entry, file_entry, link_entry};
use common::*;
use dr_backup::hashing::Sha256Digest;
use dr_backup::manifest::{EntryKind, ManifestEntry};
use dr_backup::restore::RestoreOptions;
use proptest::prelude::*;
use tar::EntryType as T;

/// Stands for the absolute path of the directory next to the target that must stay untouched.
const OUT: &str = "@OUT";

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => prop_oneof![Just("a"), Just("b"), Just("d"), Just("s")].prop_map(str::to_owned),
        2 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just(String::new()),
        1 => Just("outside".to_owned()),
        1 => Just("x\0y".to_owned()),
        1 => Just("L".repeat(120)),
    ]
}

/// A path as it may appear in a header or a link: relative, absolute, into the outside
/// directory, with a trailing slash.
fn path() -> impl Strategy<Value = String> {
    (
        prop_oneof![6 => Just(""), 1 => Just("/"), 2 => Just("@OUT/")],
        proptest::collection::vec(component(), 1..4),
        prop_oneof![8 => Just(""), 1 => Just("/")],
    )
        .prop_map(|(lead, parts, tail)| format!("{lead}{}{tail}", parts.join("/")))
}

fn kind() -> impl Strategy<Value = T> {
    prop_oneof![
        6 => Just(T::Regular),
        3 => Just(T::Directory),
        3 => Just(T::Symlink),
        2 => Just(T::Link),
        1 => Just(T::Char),
        1 => Just(T::Block),
        1 => Just(T::Fifo),
        1 => Just(T::Continuous),
        1 => Just(T::GNUSparse),
        1 => Just(T::new(b'Z')),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    kind: T,
    path: String,
    mode: u32,
    data: Vec<u8>,
    link: Option<String>,
    /// The header announces this size instead of the data's.
    declared: Option<u64>,
    /// A PAX header before the entry sets this path.
    pax_path: Option<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        kind(),
        path(),
        prop_oneof![
            6 => prop_oneof![Just(0o644u32), Just(0o755), Just(0o600)],
            1 => prop_oneof![Just(0o4755u32), Just(0o2755), Just(0o7777), Just(0o1777)],
        ],
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::option::of(path()),
        proptest::option::weighted(
            0.1,
            prop_oneof![Just(1u64 << 33), Just(u64::MAX >> 1), Just(600), Just(0)],
        ),
        proptest::option::weighted(0.1, path()),
    )
        .prop_map(|(kind, path, mode, data, link, declared, pax_path)| Spec {
            kind,
            path,
            mode,
            data,
            link,
            declared,
            pax_path,
        })
}

/// A plain tree as a backup writes it: directories before their contents, in walk order,
/// symlinks pointing at siblings.
fn tree() -> impl Strategy<Value = Vec<Spec>> {
    let leaf = (
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4),
        prop_oneof![4 => Just(T::Regular), 1 => Just(T::Directory), 1 => Just(T::Symlink)],
        proptest::collection::vec(any::<u8>(), 0..40),
        prop_oneof![
            4 => prop_oneof![Just("b"), Just("t"), Just("../a"), Just("."), Just("c/b")],
            1 => prop_oneof![
                Just("../.."),
                Just("../../outside"),
                Just("/etc"),
                Just("@OUT"),
                Just("b/../../outside"),
                Just("a/../.."),
            ],
        ],
    );
    proptest::collection::vec(leaf, 1..6).prop_map(|leaves| {
        let mut by_path = std::collections::BTreeMap::new();
        for (parts, kind, data, target) in leaves {
            for depth in 1..parts.len() {
                by_path.insert(parts[..depth].join("/"), (T::Directory, Vec::new(), None));
            }
            let path = parts.join("/");
            let is_dir = matches!(by_path.get(&path), Some((T::Directory, _, _)));
            if !is_dir {
                let link = (kind == T::Symlink).then(|| target.to_owned());
                by_path.insert(path, (kind, data, link));
            }
        }
        // A path some leaf made a directory of must be one for all.
        let dirs: Vec<String> = by_path.keys().cloned().collect();
        for d in &dirs {
            if dirs.iter().any(|p| p.starts_with(&format!("{d}/"))) {
                by_path.insert(d.clone(), (T::Directory, Vec::new(), None));
            }
        }
        by_path
            .into_iter()
            .map(|(path, (kind, data, link))| Spec {
                kind,
                mode: if kind == T::Directory { 0o755 } else { 0o644 },
                data,
                link,
                path,
                declared: None,
                pax_path: None,
            })
            .collect()
    })
}

/// One thing a hostile archive does differently from the tree its manifest describes.
#[derive(Debug, Clone)]
enum Twist {
    Path(usize, String),
    Kind(usize, T),
    Link(usize, String),
    Mode(usize, u32),
    Declared(usize, u64),
    Pax(usize, String),
    Extra(usize, Spec),
    Drop(usize),
}

fn twist() -> impl Strategy<Value = Twist> {
    let i = any::<usize>();
    prop_oneof![
        2 => (i, path()).prop_map(|(i, p)| Twist::Path(i, p)),
        2 => (i, kind()).prop_map(|(i, k)| Twist::Kind(i, k)),
        2 => (i, path()).prop_map(|(i, p)| Twist::Link(i, p)),
        1 => (i, prop_oneof![Just(0o4755u32), Just(0o2755), Just(0o7777)]).prop_map(|(i, m)| Twist::Mode(i, m)),
        1 => (i, prop_oneof![Just(1u64 << 33), Just(600), Just(0), Just(1)]).prop_map(|(i, d)| Twist::Declared(i, d)),
        2 => (i, path()).prop_map(|(i, p)| Twist::Pax(i, p)),
        1 => (i, spec()).prop_map(|(i, s)| Twist::Extra(i, s)),
        1 => i.prop_map(Twist::Drop),
    ]
}

fn twisted(tree: &[Spec], twists: &[Twist]) -> Vec<Spec> {
    let mut specs = tree.to_vec();
    for t in twists {
        let n = specs.len();
        if n == 0 {
            break;
        }
        match t {
            Twist::Path(i, p) => specs[i % n].path = p.clone(),
            Twist::Kind(i, k) => specs[i % n].kind = *k,
            Twist::Link(i, p) => specs[i % n].link = Some(p.clone()),
            Twist::Mode(i, m) => specs[i % n].mode = *m,
            Twist::Declared(i, d) => specs[i % n].declared = Some(*d),
            Twist::Pax(i, p) => specs[i % n].pax_path = Some(p.clone()),
            Twist::Extra(i, s) => specs.insert(i % (n + 1), s.clone()),
            Twist::Drop(i) => {
                specs.remove(i % n);
            }
        }
    }
    specs
}

/// The archive to restore and the entries its manifest describes.
#[derive(Debug, Clone)]
enum Case {
    /// Any entries; the manifest as chosen.
    Random(Vec<Spec>, ManifestChoice),
    /// A plain tree, and the archive of that tree with twists; the manifest describes the
    /// plain tree (so it passes its check and the archive reader must catch the twists).
    Twisted(Vec<Spec>, Vec<Twist>),
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        (proptest::collection::vec(spec(), 1..7), manifest_choice())
            .prop_map(|(specs, choice)| Case::Random(specs, choice)),
        (tree(), manifest_choice()).prop_map(|(specs, choice)| Case::Random(specs, choice)),
        (tree(), proptest::collection::vec(twist(), 1..3))
            .prop_map(|(tree, twists)| Case::Twisted(tree, twists)),
    ]
}

#[derive(Debug, Clone)]
enum ManifestChoice {
    /// Describes the archive's entries as they are.
    Honest,
    /// Honest but for one detail of one entry.
    Altered { entry: usize, what: u8 },
    /// One harmless file.
    Benign,
}

fn manifest_choice() -> impl Strategy<Value = ManifestChoice> {
    prop_oneof![
        5 => Just(ManifestChoice::Honest),
        2 => (any::<usize>(), 0u8..4).prop_map(|(entry, what)| ManifestChoice::Altered { entry, what }),
        1 => Just(ManifestChoice::Benign),
    ]
}

fn expand(s: &str, outside: &Path) -> String {
    s.replace(OUT, outside.to_str().expect("temp dirs are UTF-8"))
}

fn archive(specs: &[Spec], outside: &Path) -> Vec<u8> {
    let mut tar = RawTar::new();
    for s in specs {
        let path = expand(&s.path, outside);
        if let Some(p) = &s.pax_path {
            tar.pax(&[("path", expand(p, outside).as_bytes())]);
        }
        let link = s.link.as_ref().map(|l| expand(l, outside));
        let body: &[u8] = if matches!(s.kind, T::Regular | T::Continuous) {
            &s.data
        } else {
            b""
        };
        match (s.declared, s.kind) {
            (Some(size), _) => {
                tar.lying(path.as_bytes(), s.kind, s.mode, size, body);
            }
            (None, T::Char | T::Block) => {
                tar.device(path.as_bytes(), s.kind);
            }
            (None, _) => {
                tar.entry(
                    path.as_bytes(),
                    s.kind,
                    s.mode,
                    body,
                    link.as_deref().map(str::as_bytes),
                );
            }
        }
    }
    tar.finish()
}

/// The manifest entry that describes `s` as the archive presents it.
fn describe(s: &Spec, outside: &Path) -> ManifestEntry {
    let path = expand(s.pax_path.as_ref().unwrap_or(&s.path), outside);
    let link = s.link.as_ref().map(|l| expand(l, outside));
    match s.kind {
        T::Directory => ManifestEntry {
            mode: s.mode & 0o7777,
            ..dir_entry(path.trim_end_matches('/'))
        },
        T::Symlink => ManifestEntry {
            mode: s.mode & 0o7777,
            ..link_entry(&path, link.as_deref().unwrap_or(""))
        },
        _ => file_entry(&path, &s.data, s.mode & 0o7777),
    }
}

fn manifest(specs: &[Spec], choice: &ManifestChoice, outside: &Path) -> Vec<ManifestEntry> {
    let mut entries: Vec<ManifestEntry> = specs.iter().map(|s| describe(s, outside)).collect();
    match choice {
        ManifestChoice::Honest => {}
        ManifestChoice::Altered { entry, what } => {
            let n = entries.len();
            if n > 0 {
                let e = &mut entries[entry % n];
                match what {
                    0 => e.size = e.size.wrapping_add(1),
                    1 => e.sha256 = Some(Sha256Digest::of(b"something else")),
                    2 => e.mode ^= 0o100,
                    _ => e.kind = EntryKind::Dir,
                }
            }
        }
        ManifestChoice::Benign => entries = vec![file_entry("a", b"benign", 0o644)],
    }
    entries
}

/// `base` joined with the lexical resolution of `rel` (no symlinks followed); `None` if it
/// climbs above `base`.
fn lexically_inside(base: &Path, rel: &Path) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if out == base || !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Everything under `dir` is a plain directory, file or symlink, with no setuid/setgid bit, and
/// every symlink, followed through the others, stays under `root`.
fn tree_is_safe(root: &Path, dir: &Path) -> Result<(), String> {
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let md = entry.path().symlink_metadata().map_err(|e| e.to_string())?;
        let ft = md.file_type();
        if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
            return Err(format!("{}: special file", entry.path().display()));
        }
        if md.permissions().mode() & 0o6000 != 0 {
            return Err(format!("{}: setuid/setgid", entry.path().display()));
        }
        if ft.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(|e| e.to_string())?;
            let rel = entry
                .path()
                .parent()
                .expect("inside root")
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .join(&target);
            if lexically_inside(root, &rel).is_none() {
                return Err(format!(
                    "{} -> {}: escapes",
                    entry.path().display(),
                    target.display()
                ));
            }
            // Followed for real: the kernel's answer, whatever other links it passes.
            if let Ok(real) = fs::canonicalize(entry.path())
                && !real.starts_with(fs::canonicalize(root).map_err(|e| e.to_string())?)
            {
                return Err(format!(
                    "{} resolves to {}",
                    entry.path().display(),
                    real.display()
                ));
            }
        } else if ft.is_dir() {
            tree_is_safe(root, &entry.path())?;
        }
    }
    Ok(())
}

fn options() -> RestoreOptions {
    RestoreOptions {
        writer_threads: 2,
        preserve_owner: Some(false),
        sync: false,
        ..RestoreOptions::default()
    }
}

fn restore_case(case: &Case) -> Result<(), TestCaseError> {
    match case {
        Case::Random(specs, choice) => restore_once(specs, |out| manifest(specs, choice, out)),
        Case::Twisted(tree, twists) => restore_once(&twisted(tree, twists), |out| {
            manifest(tree, &ManifestChoice::Honest, out)
        }),
    }
}

/// Restores the archive of `specs` with the manifest entries `describe` gives (both may name
/// the outside directory, whose path they are given).
fn restore_once(
    specs: &[Spec],
    describe: impl Fn(&Path) -> Vec<ManifestEntry>,
) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("keep.txt"), "keep").expect("write");
    let store = store_at(&tmp.path().join("store"));
    let entries = describe(&outside);
    let id = commit_full(&store, 1_769_521_530, &archive(specs, &outside), entries);
    let staging = tmp.path().join("staging");
    let result = restore_with(
        &store,
        Some(id),
        &staging,
        &tmp.path().join("data"),
        options(),
    );
    prop_assert_eq!(
        names(&outside),
        ["keep.txt"],
        "something was written outside"
    );
    prop_assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).expect("read"),
        "keep"
    );
    match result {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                !msg.contains("panicked"),
                "a restore thread panicked: {}",
                msg
            );
            prop_assert!(!staging.exists(), "staging left behind after: {}", msg);
            prop_assert_eq!(names(tmp.path()), ["outside", "store"]);
        }
        Ok(_) => {
            prop_assert_eq!(names(tmp.path()), ["outside", "staging", "store"]);
            tree_is_safe(&staging, &staging).map_err(TestCaseError::fail)?;
            let loc = dr_backup::BackupLocation::new(GROUP, HOST).expect("valid names");
            let manifest = dr_backup::load_manifest(&store, &loc, id).expect("it was restored");
            prop_assert_eq!(
                without_dir_mtimes(tree_snapshot(&staging, false)),
                without_dir_mtimes(manifest_snapshot(&manifest, false)),
                "the restored tree is not the manifest's"
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_archive_is_refused_or_restored_exactly_inside(case in case()) {
        restore_case(&case)?;
    }
}

/// Archives the property must also cover however its random choices fall.
#[test]
fn known_hostile_shapes() {
    let spec = |kind, path: &str, link: Option<&str>| Spec {
        kind,
        path: path.into(),
        mode: 0o644,
        data: b"evil".to_vec(),
        link: link.map(str::to_owned),
        declared: None,
        pax_path: None,
    };
    let cases: Vec<Vec<Spec>> = vec![
        vec![Spec {
            pax_path: Some("@OUT/pax-evil".into()),
            ..spec(T::Regular, "a", None)
        }],
        vec![Spec {
            pax_path: Some("../outside/pax-evil".into()),
            ..spec(T::Regular, "a", None)
        }],
        vec![Spec {
            declared: Some(1 << 33),
            ..spec(T::Regular, "a", None)
        }],
        vec![
            spec(T::Symlink, "s", Some(".")),
            spec(T::Symlink, "t", Some("s/../outside")),
        ],
        vec![spec(T::GNUSparse, "a", None)],
        vec![
            spec(T::Directory, "d/", None),
            spec(T::Regular, "d/a", None),
        ],
    ];
    for specs in cases {
        for choice in [ManifestChoice::Honest, ManifestChoice::Benign] {
            if let Err(e) = restore_case(&Case::Random(specs.clone(), choice.clone())) {
                panic!("{specs:?} with {choice:?}: {e}");
            }
        }
    }
}
