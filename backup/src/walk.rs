//! Deterministic walk of the data directory: depth-first, names sorted byte-wise, so the same
//! tree always produces the same archive and manifest order. Entries that vanish during the walk
//! are recorded, special files are skipped with a reason.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

impl Meta {
    pub(crate) fn of(md: &Metadata) -> Self {
        Self {
            size: md.size(),
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            ino: md.ino(),
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
}

/// Everything the walk found.
#[derive(Debug, Default)]
pub(crate) struct WalkResult {
    pub root: Option<Meta>,
    pub entries: Vec<Walked>,
    pub vanished: Vec<String>,
    pub skipped: Vec<SkippedPath>,
}

/// Deepest directory nesting followed (protects against pathological trees).
const MAX_DEPTH: usize = 256;

/// Walks `root` (which must be a directory; a symlink to one is followed).
pub(crate) fn walk(root: &Path) -> io::Result<WalkResult> {
    let md = fs::metadata(root)?;
    if !md.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut out = WalkResult {
        root: Some(Meta::of(&md)),
        ..WalkResult::default()
    };
    walk_dir(root.to_path_buf(), "", 0, &mut out)?;
    Ok(out)
}

fn walk_dir(dir: PathBuf, rel: &str, depth: usize, out: &mut WalkResult) -> io::Result<()> {
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !rel.is_empty() => {
            out.vanished.push(rel.to_owned());
            return Ok(());
        }
        Err(e) => return Err(annotate(e, rel)),
    };
    let mut children = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(annotate(e, rel)),
        };
        children.push(entry);
    }
    children.sort_by_key(fs::DirEntry::file_name);
    let stats = stat_all(&children);
    for (entry, md) in children.into_iter().zip(stats) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            let shown = join(rel, &name.to_string_lossy());
            out.skipped.push(SkippedPath {
                path: shown,
                reason: "name is not UTF-8".into(),
            });
            continue;
        };
        let path = join(rel, name);
        let md = match md {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.vanished.push(path);
                continue;
            }
            Err(e) => return Err(annotate(e, &path)),
        };
        let ft = md.file_type();
        let meta = Meta::of(&md);
        if ft.is_file() {
            out.entries.push(Walked {
                path,
                kind: EntryKind::File,
                meta,
                target: None,
            });
        } else if ft.is_dir() {
            if depth >= MAX_DEPTH {
                out.skipped.push(SkippedPath {
                    path,
                    reason: format!("deeper than {MAX_DEPTH} levels"),
                });
                continue;
            }
            out.entries.push(Walked {
                path: path.clone(),
                kind: EntryKind::Dir,
                meta,
                target: None,
            });
            walk_dir(entry.path(), &path, depth + 1, out)?;
        } else if ft.is_symlink() {
            let target = match fs::read_link(entry.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    out.vanished.push(path);
                    continue;
                }
                Err(e) => return Err(annotate(e, &path)),
            };
            match target.into_os_string().into_string() {
                Ok(t) => out.entries.push(Walked {
                    path,
                    kind: EntryKind::Symlink,
                    meta,
                    target: Some(t),
                }),
                Err(_) => out.skipped.push(SkippedPath {
                    path,
                    reason: "symlink target is not UTF-8".into(),
                }),
            }
        } else {
            out.skipped.push(SkippedPath {
                path,
                reason: special_kind(&md).into(),
            });
        }
    }
    Ok(())
}

/// Directories with at least this many entries are stat'ed by several threads.
const PARALLEL_STAT_MIN: usize = 256;

/// `lstat` of every entry, in order; big directories are split across threads (on tmpfs or a
/// warm cache the walk is syscall-bound, and the stats are independent).
fn stat_all(entries: &[fs::DirEntry]) -> Vec<io::Result<Metadata>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads < 2 || entries.len() < PARALLEL_STAT_MIN {
        return entries.iter().map(fs::DirEntry::metadata).collect();
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || part.iter().map(fs::DirEntry::metadata).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(io::Error::other("stat thread panicked"))])
            })
            .collect()
    })
}

fn special_kind(md: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    if ft.is_socket() {
        "socket (not backed up)"
    } else if ft.is_fifo() {
        "fifo (not backed up)"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device node (not backed up)"
    } else {
        "special file (not backed up)"
    }
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}

fn annotate(e: io::Error, rel: &str) -> io::Error {
    let shown = if rel.is_empty() { "." } else { rel };
    io::Error::new(e.kind(), format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
