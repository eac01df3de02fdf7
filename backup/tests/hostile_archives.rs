//! Property: a restore rejects — as a whole, not entry by entry — any archive holding something
//! it must never write: absolute paths, `..`, NUL bytes, writes through a symlinked parent,
//! symlinks or hard links pointing outside the target, device/fifo entries, setuid/setgid bits,
//! more entries or bytes than the manifest announces. Nothing is written outside the target and
//! the staging directory is removed. Each archive is tried twice: with a manifest that describes
//! it honestly (caught by the manifest check) where a manifest can express it, and with a benign
//! manifest (caught while reading the archive).

mod common;

use std::fs;
use std::path::Path;

use common::craft::{RawTar, commit_full, dir_entry, file_entry, link_entry};
use common::*;
use dr_backup::manifest::ManifestEntry;
use tar::EntryType as T;

struct Case {
    name: &'static str,
    tar: Vec<u8>,
    /// The manifest that describes the archive as it is, if the format can say it.
    honest: Option<Vec<ManifestEntry>>,
    /// A harmless-looking manifest.
    benign: Vec<ManifestEntry>,
}

fn cases(outside: &Path) -> Vec<Case> {
    let out = outside.to_str().unwrap();
    let data = b"evil data\n";
    let f = |p: &str| file_entry(p, data, 0o644);
    let single = |path: &[u8], kind: T, mode: u32, link: Option<&[u8]>| {
        let body: &[u8] = if kind == T::Regular { data } else { b"" };
        RawTar::new().entry(path, kind, mode, body, link).finish()
    };
    let abs = format!("{out}/abs-evil");
    vec![
        Case {
            name: "absolute path",
            tar: single(abs.as_bytes(), T::Regular, 0o644, None),
            honest: Some(vec![f(&abs)]),
            benign: vec![f("abs-evil")],
        },
        Case {
            name: "dot-dot",
            tar: single(b"../outside/dotdot-evil", T::Regular, 0o644, None),
            honest: Some(vec![f("../outside/dotdot-evil")]),
            benign: vec![f("dotdot-evil")],
        },
        Case {
            name: "nested dot-dot",
            tar: RawTar::new()
                .entry(b"d", T::Directory, 0o755, b"", None)
                .entry(
                    b"d/../../outside/nested-evil",
                    T::Regular,
                    0o644,
                    data,
                    None,
                )
                .finish(),
            honest: Some(vec![dir_entry("d"), f("d/../../outside/nested-evil")]),
            benign: vec![dir_entry("d"), f("d/nested-evil")],
        },
        Case {
            name: "NUL in path",
            tar: single(b"ok\0/../../outside/nul-evil", T::Regular, 0o644, None),
            honest: Some(vec![f("ok\0/../../outside/nul-evil")]),
            benign: vec![f("ok")],
        },
        Case {
            name: "write through a symlinked parent",
            tar: RawTar::new()
                .entry(b"d", T::Directory, 0o755, b"", None)
                .entry(b"lnk", T::Symlink, 0o777, b"", Some(b"d"))
                .entry(b"lnk/through", T::Regular, 0o644, data, None)
                .finish(),
            honest: Some(vec![
                dir_entry("d"),
                link_entry("lnk", "d"),
                f("lnk/through"),
            ]),
            benign: vec![dir_entry("d"), link_entry("lnk", "d"), f("zz")],
        },
        Case {
            name: "escaping symlink, then a write through it",
            tar: RawTar::new()
                .entry(b"esc", T::Symlink, 0o777, b"", Some(b"../outside"))
                .entry(b"esc/through-evil", T::Regular, 0o644, data, None)
                .finish(),
            honest: Some(vec![link_entry("esc", "../outside"), f("esc/through-evil")]),
            benign: vec![link_entry("esc", "x"), f("y")],
        },
        Case {
            name: "absolute symlink",
            tar: single(b"abs", T::Symlink, 0o777, Some(b"/etc")),
            honest: Some(vec![link_entry("abs", "/etc")]),
            benign: vec![link_entry("abs", "etc")],
        },
        Case {
            name: "relative symlink escaping",
            tar: RawTar::new()
                .entry(b"d", T::Directory, 0o755, b"", None)
                .entry(b"d/up", T::Symlink, 0o777, b"", Some(b"../../outside"))
                .finish(),
            honest: Some(vec![dir_entry("d"), link_entry("d/up", "../../outside")]),
            benign: vec![dir_entry("d"), link_entry("d/up", "../x")],
        },
        Case {
            name: "symlink chain escaping (inside lexically)",
            tar: RawTar::new()
                .entry(b"s", T::Symlink, 0o777, b"", Some(b"."))
                .entry(b"t", T::Symlink, 0o777, b"", Some(b"s/../outside"))
                .finish(),
            honest: Some(vec![link_entry("s", "."), link_entry("t", "s/../outside")]),
            benign: vec![link_entry("s", "."), link_entry("t", "x")],
        },
        Case {
            name: "hard link outside",
            tar: single(b"hl", T::Link, 0o644, Some(b"../outside/keep.txt")),
            honest: None,
            benign: vec![f("hl")],
        },
        Case {
            name: "hard link absolute",
            tar: single(b"hl", T::Link, 0o644, Some(b"/etc/passwd")),
            honest: None,
            benign: vec![f("hl")],
        },
        Case {
            name: "hard link inside",
            tar: RawTar::new()
                .entry(b"a", T::Regular, 0o644, data, None)
                .entry(b"b", T::Link, 0o644, b"", Some(b"a"))
                .finish(),
            honest: None,
            benign: vec![f("a"), f("b")],
        },
        Case {
            name: "char device",
            tar: RawTar::new().device(b"null", T::Char).finish(),
            honest: None,
            benign: vec![f("null")],
        },
        Case {
            name: "block device",
            tar: RawTar::new().device(b"sda", T::Block).finish(),
            honest: None,
            benign: vec![f("sda")],
        },
        Case {
            name: "fifo",
            tar: single(b"pipe", T::Fifo, 0o644, None),
            honest: None,
            benign: vec![f("pipe")],
        },
        Case {
            name: "setuid file",
            tar: single(b"suid", T::Regular, 0o4755, None),
            honest: Some(vec![file_entry("suid", data, 0o4755)]),
            benign: vec![f("suid")],
        },
        Case {
            name: "setgid directory",
            tar: single(b"sgid", T::Directory, 0o2755, None),
            honest: Some(vec![ManifestEntry {
                mode: 0o2755,
                ..dir_entry("sgid")
            }]),
            benign: vec![dir_entry("sgid")],
        },
        Case {
            name: "more entries than the manifest",
            tar: RawTar::new()
                .entry(b"a", T::Regular, 0o644, data, None)
                .entry(b"b", T::Regular, 0o644, b"", None)
                .finish(),
            honest: None,
            benign: vec![f("a")],
        },
        Case {
            name: "the same path twice",
            tar: RawTar::new()
                .entry(b"a", T::Regular, 0o644, data, None)
                .entry(b"a", T::Regular, 0o644, data, None)
                .finish(),
            honest: Some(vec![f("a"), f("a")]),
            benign: vec![f("a")],
        },
        Case {
            name: "more bytes than the manifest",
            tar: RawTar::new()
                .entry(b"a", T::Regular, 0o644, &vec![7u8; 1 << 20], None)
                .finish(),
            honest: None,
            benign: vec![f("a")],
        },
    ]
}

#[test]
fn hostile_archives_are_rejected_and_nothing_escapes() {
    let probe = tempfile::tempdir().unwrap();
    let count = cases(&probe.path().join("outside")).len();
    assert!(count >= 10);
    for i in 0..count {
        for honest in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let outside = tmp.path().join("outside");
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("keep.txt"), "keep").unwrap();
            let case = cases(&outside).swap_remove(i);
            let entries = match (honest, case.honest) {
                (true, Some(e)) => e,
                (true, None) => continue,
                (false, _) => case.benign,
            };
            let store = store_at(&tmp.path().join("store"));
            let id = commit_full(&store, 1_769_521_530, &case.tar, entries);
            let staging = tmp.path().join("staging");
            let err = restore(&store, Some(id), &staging, &tmp.path().join("data")).expect_err(
                &format!("{} (honest manifest: {honest}) was restored", case.name),
            );
            let msg = err.to_string();
            let expected = if honest { "manifest of" } else { "archive" };
            assert!(
                msg.contains(expected),
                "{} (honest: {honest}): unexpected error: {msg}",
                case.name
            );
            assert!(!staging.exists(), "{}: staging left behind", case.name);
            assert_eq!(
                names(tmp.path()),
                ["outside", "store"],
                "{}: something was written next to the target",
                case.name
            );
            assert_eq!(
                names(&outside),
                ["keep.txt"],
                "{}: something was written outside",
                case.name
            );
            assert_eq!(
                fs::read_to_string(outside.join("keep.txt")).unwrap(),
                "keep"
            );
            eprintln!("{:<45} honest manifest: {honest:<5} -> {msg}", case.name);
        }
    }
}
