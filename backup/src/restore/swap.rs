//! Exchanging the restored staging directory with the data directory atomically
//! (`renameat2(RENAME_EXCHANGE)`: at every instant the data directory path holds either the old
//! or the new tree), keeping the old tree next to it for a manual rollback.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags};
use rustix::io::Errno;

use crate::naming::format_utc;
use crate::store::sync_dir;

/// Why a swap or its rollback failed, and where the trees are now.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// Checks before anything moved.
    #[error("swap {staging} into {data_dir}: {problem}; nothing was moved")]
    Refused {
        data_dir: PathBuf,
        staging: PathBuf,
        problem: String,
    },
    /// A rename failed; `state` says where each tree is.
    #[error("{op}: {source}; {state}")]
    Rename {
        op: String,
        source: io::Error,
        state: String,
    },
}

/// The result of [`swap_in`]: roll back, or commit (optionally deleting the previous tree).
#[derive(Debug)]
#[must_use = "a swap is either committed or rolled back"]
pub struct SwapGuard {
    data_dir: PathBuf,
    staging: PathBuf,
    previous: Option<PathBuf>,
}

/// Moves `staging` into place as `data_dir`; the old data directory (if any) becomes
/// `<data_dir>.previous-<UTC time>`. Both must be in the same directory's file system.
pub fn swap_in(data_dir: &Path, staging: &Path) -> Result<SwapGuard, SwapError> {
    let refuse = |problem: String| SwapError::Refused {
        data_dir: data_dir.into(),
        staging: staging.into(),
        problem,
    };
    let st = std::fs::symlink_metadata(staging).map_err(|e| refuse(format!("staging: {e}")))?;
    if !st.is_dir() {
        return Err(refuse("staging is not a directory".into()));
    }
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let pd = std::fs::metadata(parent).map_err(|e| refuse(format!("{}: {e}", parent.display())))?;
    if pd.dev() != st.dev() {
        return Err(refuse(
            "staging is on another file system than the data directory".into(),
        ));
    }
    let exists = match std::fs::symlink_metadata(data_dir) {
        Ok(md) if md.is_dir() => true,
        Ok(_) => {
            return Err(refuse(
                "the data directory path exists but is not a directory".into(),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(refuse(e.to_string())),
    };
    if !exists {
        rename(staging, data_dir, RenameFlags::NOREPLACE).map_err(|source| SwapError::Rename {
            op: format!("rename {} to {}", staging.display(), data_dir.display()),
            source,
            state: "nothing moved".into(),
        })?;
        sync_parent(data_dir);
        return Ok(SwapGuard {
            data_dir: data_dir.into(),
            staging: staging.into(),
            previous: None,
        });
    }
    let previous = previous_name(data_dir);
    match rename(staging, data_dir, RenameFlags::EXCHANGE) {
        Ok(()) => {
            // The old tree is now at the staging path; give it its lasting name.
            let kept = match rename(staging, &previous, RenameFlags::NOREPLACE) {
                Ok(()) => previous,
                Err(e) => {
                    tracing::warn!(error = %e, path = %staging.display(), "previous data left at the staging path");
                    staging.to_path_buf()
                }
            };
            sync_parent(data_dir);
            Ok(SwapGuard {
                data_dir: data_dir.into(),
                staging: staging.into(),
                previous: Some(kept),
            })
        }
        Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {
            // No RENAME_EXCHANGE on this file system: two renames, undone if the second fails.
            rename(data_dir, &previous, RenameFlags::NOREPLACE).map_err(|source| {
                SwapError::Rename {
                    op: format!("rename {} to {}", data_dir.display(), previous.display()),
                    source,
                    state: "nothing moved".into(),
                }
            })?;
            if let Err(source) = rename(staging, data_dir, RenameFlags::NOREPLACE) {
                let back = rename(&previous, data_dir, RenameFlags::NOREPLACE);
                return Err(SwapError::Rename {
                    op: format!("rename {} to {}", staging.display(), data_dir.display()),
                    source,
                    state: match back {
                        Ok(()) => "the old data directory was put back".into(),
                        Err(e) => format!(
                            "the old data is at {} (moving it back failed: {e})",
                            previous.display()
                        ),
                    },
                });
            }
            sync_parent(data_dir);
            Ok(SwapGuard {
                data_dir: data_dir.into(),
                staging: staging.into(),
                previous: Some(previous),
            })
        }
        Err(source) => Err(SwapError::Rename {
            op: format!("exchange {} with {}", staging.display(), data_dir.display()),
            source,
            state: "nothing moved".into(),
        }),
    }
}

impl SwapGuard {
    /// Where the old data directory is kept (None if there was none).
    pub fn previous(&self) -> Option<&Path> {
        self.previous.as_deref()
    }

    /// Undoes the swap: the old tree is back at the data directory and the restored tree back at
    /// the staging path (the caller decides whether to delete it).
    pub fn rollback(self) -> Result<(), SwapError> {
        let (data, staging) = (&self.data_dir, &self.staging);
        let Some(prev) = &self.previous else {
            return rename(data, staging, RenameFlags::NOREPLACE).map_err(|source| {
                SwapError::Rename {
                    op: format!("rename {} back to {}", data.display(), staging.display()),
                    source,
                    state: format!("the restored tree is still at {}", data.display()),
                }
            });
        };
        match rename(prev, data, RenameFlags::EXCHANGE) {
            Ok(()) => {
                if prev != staging {
                    rename(prev, staging, RenameFlags::NOREPLACE).map_err(|source| {
                        SwapError::Rename {
                            op: format!("rename {} to {}", prev.display(), staging.display()),
                            source,
                            state: format!(
                                "old data is back in place; the restored tree is at {}",
                                prev.display()
                            ),
                        }
                    })?;
                }
            }
            Err(_) => {
                rename(data, staging, RenameFlags::NOREPLACE).map_err(|source| {
                    SwapError::Rename {
                        op: format!("rename {} to {}", data.display(), staging.display()),
                        source,
                        state: format!(
                            "the restored tree is still in place; old data is at {}",
                            prev.display()
                        ),
                    }
                })?;
                rename(prev, data, RenameFlags::NOREPLACE).map_err(|source| SwapError::Rename {
                    op: format!("rename {} to {}", prev.display(), data.display()),
                    source,
                    state: format!(
                        "NO data directory now; old data is at {}, restored at {}",
                        prev.display(),
                        staging.display()
                    ),
                })?;
            }
        }
        sync_parent(data);
        Ok(())
    }

    /// Keeps the swap. With `keep_previous == false` the old tree is deleted; otherwise its path
    /// is returned for a manual rollback.
    pub fn commit(self, keep_previous: bool) -> Result<Option<PathBuf>, SwapError> {
        match self.previous {
            Some(prev) if !keep_previous => {
                std::fs::remove_dir_all(&prev).map_err(|source| SwapError::Rename {
                    op: format!("delete previous data {}", prev.display()),
                    source,
                    state: "the restored data is in place".into(),
                })?;
                sync_parent(&self.data_dir);
                Ok(None)
            }
            other => Ok(other),
        }
    }
}

fn previous_name(data_dir: &Path) -> PathBuf {
    let now = crate::backup::now_ns().div_euclid(1_000_000_000);
    let stamp = format_utc(now).replace(':', "-");
    let base = format!("{}.previous-{stamp}", data_dir.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.symlink_metadata().is_ok() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

fn rename(from: &Path, to: &Path, flags: RenameFlags) -> io::Result<()> {
    Ok(rustix::fs::renameat_with(CWD, from, CWD, to, flags)?)
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = sync_dir(parent);
    }
}
