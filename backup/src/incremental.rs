//! Which files an incremental backup must read. Unchanged size + mtime + inode means the parent's
//! copy is reused without reading; timestamps that cannot be trusted (in the future, older than
//! the parent's, or within a second of the parent's start, when a change may not move the mtime)
//! make us hash and compare with the parent's hash instead.

use crate::hashing::Sha256Digest;
use crate::manifest::{EntryKind, ManifestEntry};
use crate::walk::Meta;

/// Clock slack for "in the future" and racy mtimes (coarse file system timestamps).
const SLACK_NS: i64 = 1_000_000_000;

/// What to do with one regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Same stamp, trustworthy: reuse the parent's entry, do not read.
    Unchanged,
    /// Read; if the content hashes to this (the parent's hash), keep the parent's copy.
    Read { parent_hash: Option<Sha256Digest> },
}

/// When the incremental runs and when its parent started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub now_ns: i64,
    pub parent_started_ns: i64,
}

pub(crate) fn decide(parent: Option<&ManifestEntry>, cur: &Meta, clock: Clock) -> Decision {
    let Some(p) = parent.filter(|p| p.kind == EntryKind::File) else {
        return Decision::Read { parent_hash: None };
    };
    let same_stamp = p.size == cur.size && p.mtime_ns == cur.mtime_ns && p.inode == cur.ino;
    let future = cur.mtime_ns > clock.now_ns.saturating_add(SLACK_NS);
    let racy = cur.mtime_ns >= clock.parent_started_ns.saturating_sub(SLACK_NS);
    if same_stamp && !future && !racy {
        return Decision::Unchanged;
    }
    // Changed or untrustworthy: read it, but keep the parent's copy if the bytes are the same.
    Decision::Read {
        parent_hash: p.sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(size: u64, mtime_ns: i64, inode: u64) -> ManifestEntry {
        ManifestEntry {
            path: "f".into(),
            kind: EntryKind::File,
            size,
            mtime_ns,
            mode: 0o644,
            uid: 0,
            gid: 0,
            inode,
            sha256: Some(Sha256Digest::of(b"p")),
            target: None,
            origin: None,
            changed_while_reading: false,
        }
    }

    fn meta(size: u64, mtime_ns: i64, ino: u64) -> Meta {
        Meta {
            size,
            mtime_ns,
            mode: 0o644,
            uid: 0,
            gid: 0,
            ino,
        }
    }

    const S: i64 = 1_000_000_000;

    #[test]
    fn decisions() {
        let clock = Clock {
            now_ns: 1000 * S,
            parent_started_ns: 900 * S,
        };
        let p = parent(10, 100 * S, 7);
        let read = Decision::Read {
            parent_hash: p.sha256,
        };
        assert_eq!(
            decide(Some(&p), &meta(10, 100 * S, 7), clock),
            Decision::Unchanged
        );
        assert_eq!(
            decide(Some(&p), &meta(11, 100 * S, 7), clock),
            read,
            "size changed"
        );
        assert_eq!(
            decide(Some(&p), &meta(10, 100 * S, 8), clock),
            read,
            "inode changed"
        );
        assert_eq!(
            decide(Some(&p), &meta(10, 50 * S, 7), clock),
            read,
            "mtime went back"
        );
        assert_eq!(
            decide(None, &meta(10, 100 * S, 7), clock),
            Decision::Read { parent_hash: None }
        );
        // Same stamp but modified around the parent's start: cannot trust it.
        let racy = parent(10, 900 * S, 7);
        assert_eq!(
            decide(Some(&racy), &meta(10, 900 * S, 7), clock),
            Decision::Read {
                parent_hash: racy.sha256
            }
        );
        // Same stamp but in the future.
        let fut = parent(10, 5000 * S, 7);
        assert_eq!(
            decide(Some(&fut), &meta(10, 5000 * S, 7), clock),
            Decision::Read {
                parent_hash: fut.sha256
            }
        );
    }
}
