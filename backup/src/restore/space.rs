//! Free-space check before a restore touches anything: a restore that fills the file system
//! half-way is worse than one that refuses up front. The probe is a trait so tests can inject a
//! small file system.

use std::io;
use std::path::Path;

use crate::manifest::{EntryKind, Manifest};

/// Space available to unprivileged writers on one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Bytes available.
    pub avail_bytes: u64,
    /// Inodes available (`u64::MAX` when the file system does not count them).
    pub avail_inodes: u64,
    /// Allocation unit, used to round file sizes up.
    pub block_size: u64,
}

/// Measures free space of the file system holding a directory.
pub trait SpaceProbe: Send + Sync {
    /// Space on the file system of `dir`.
    fn probe(&self, dir: &Path) -> io::Result<FsSpace>;
}

/// The real probe: `statvfs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatvfsProbe;

impl SpaceProbe for StatvfsProbe {
    fn probe(&self, dir: &Path) -> io::Result<FsSpace> {
        let st = rustix::fs::statvfs(dir)?;
        let unit = if st.f_frsize > 0 {
            st.f_frsize
        } else {
            st.f_bsize
        };
        Ok(FsSpace {
            avail_bytes: st.f_bavail.saturating_mul(unit),
            avail_inodes: if st.f_files == 0 {
                u64::MAX
            } else {
                st.f_favail
            },
            block_size: unit.max(512),
        })
    }
}

/// What a chain needs: the full backup's tree plus every incremental's archived data (an upper
/// bound of the peak while incrementals are applied), files rounded up to whole blocks.
pub(crate) fn required(chain: &[Manifest], block: u64) -> (u64, u64) {
    let round = |n: u64| n.div_ceil(block).saturating_mul(block);
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    for (i, m) in chain.iter().enumerate() {
        for e in &m.entries {
            if i > 0 && !e.in_own_archive() {
                continue;
            }
            inodes += 1;
            bytes = bytes.saturating_add(match e.kind {
                EntryKind::File => round(e.size),
                EntryKind::Dir => block,
                EntryKind::Symlink => 0,
            });
        }
    }
    (bytes, inodes)
}

/// `1.5 GiB`, for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
