//! File operations beneath the staging root that can never leave it: every path is resolved by
//! the kernel with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so even a bug in the checks
//! above cannot write through a symlink or outside the root. On kernels without `openat2` the
//! same rule is enforced one component at a time with `O_NOFOLLOW`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// The staging directory, opened once.
pub(crate) struct Root {
    fd: OwnedFd,
    openat2: AtomicBool,
    /// Process umask (from /proc; all bits if unknown), so a file created with the right mode
    /// needs no chmod.
    umask: u32,
    /// Our uid/gid: files we create already have them, so no chown is needed for those.
    ids: (u32, u32),
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

/// Metadata to apply to a restored entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attrs {
    pub mode: u32,
    pub mtime_ns: i64,
    /// `Some((uid, gid))` when restoring ownership (running as root).
    pub owner: Option<(u32, u32)>,
}

impl Root {
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let ids = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        Ok(Root {
            fd,
            openat2: AtomicBool::new(true),
            umask: read_umask(),
            ids,
        })
    }

    /// Opens `rel` (relative, already validated) with the kernel refusing symlinks and escapes.
    fn open_beneath(&self, rel: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        if self.openat2.load(Ordering::Relaxed) {
            match rustix::fs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                mode,
                resolve_flags(),
            ) {
                Err(Errno::NOSYS) | Err(Errno::PERM) if !self.probe_openat2() => {
                    self.openat2.store(false, Ordering::Relaxed);
                }
                Err(Errno::AGAIN) => {} // retry below the slow way
                other => return other.map_err(Into::into),
            }
        }
        let (parent, name) = self.walk_parent(rel)?;
        let dir = parent.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
        Ok(rustix::fs::openat(
            dir,
            name,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            mode,
        )?)
    }

    /// Whether openat2 works at all here (seccomp filters sometimes answer EPERM/ENOSYS).
    fn probe_openat2(&self) -> bool {
        rustix::fs::openat2(
            &self.fd,
            ".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            resolve_flags(),
        )
        .is_ok()
    }

    /// Opens the parent directory of `rel` one component at a time without following symlinks.
    fn walk_parent<'a>(&self, rel: &'a str) -> io::Result<(Option<OwnedFd>, &'a str)> {
        let Some((dir, name)) = rel.rsplit_once('/') else {
            return Ok((None, rel));
        };
        let mut cur: Option<OwnedFd> = None;
        for comp in dir.split('/') {
            let base = cur.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
            let next = rustix::fs::openat(
                base,
                comp,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            cur = Some(next);
        }
        Ok((cur, name))
    }

    /// The parent directory of `rel` as an fd (None = the root itself) and the final name.
    fn parent<'a>(&self, rel: &'a str) -> io::Result<(Option<OwnedFd>, &'a str)> {
        match rel.rsplit_once('/') {
            None => Ok((None, rel)),
            Some((dir, name)) => {
                let fd = self.open_beneath(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
                Ok((Some(fd), name))
            }
        }
    }

    fn dirfd<'a>(&'a self, parent: &'a Option<OwnedFd>) -> BorrowedFd<'a> {
        parent.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd)
    }

    /// Creates a directory (owner-only until attributes are applied at the end). An existing
    /// directory is fine; anything else in the way is an error.
    pub(crate) fn mkdir(&self, rel: &str) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        match rustix::fs::mkdirat(self.dirfd(&parent), name, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(self.dirfd(&parent), name, AtFlags::SYMLINK_NOFOLLOW)?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory
                {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a non-directory is in the way",
                    ))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates (or replaces) a symlink and sets its time and owner.
    pub(crate) fn symlink(&self, rel: &str, target: &str, attrs: Attrs) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        let dir = self.dirfd(&parent);
        match rustix::fs::symlinkat(target, dir, name) {
            Err(Errno::EXIST) => {
                rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
                rustix::fs::symlinkat(target, dir, name)?;
            }
            other => other?,
        }
        if let Some((uid, gid)) = attrs.owner {
            rustix::fs::chownat(
                dir,
                name,
                Some(uid_of(uid)),
                Some(gid_of(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::utimensat(dir, name, &times(attrs.mtime_ns), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Creates a new file for writing with its final permission bits (as far as the umask
    /// allows); an existing non-directory at the path is replaced.
    pub(crate) fn create_file(&self, rel: &str, attrs: Attrs) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let mode = Mode::from_raw_mode(attrs.mode & 0o777);
        match self.open_beneath(rel, flags, mode) {
            Ok(fd) => Ok(File::from(fd)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.remove(rel)?;
                Ok(File::from(self.open_beneath(rel, flags, mode)?))
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a file, symlink or empty directory; a missing path is fine.
    pub(crate) fn remove(&self, rel: &str) -> io::Result<()> {
        let (parent, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let dir = self.dirfd(&parent);
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Applies owner, mode and mtime to a file created by [`Root::create_file`], skipping the
    /// calls whose effect is already there.
    pub(crate) fn finish_file(&self, f: &File, attrs: Attrs) -> io::Result<()> {
        if let Some((uid, gid)) = attrs.owner
            && (uid, gid) != self.ids
        {
            rustix::fs::fchown(f, Some(uid_of(uid)), Some(gid_of(gid)))?;
        }
        if attrs.mode & !0o777 != 0
            || attrs.mode & self.umask != 0
            || attrs.owner.is_some_and(|o| o != self.ids)
        {
            rustix::fs::fchmod(f, Mode::from_raw_mode(attrs.mode & 0o1777))?;
        }
        rustix::fs::futimens(f, &times(attrs.mtime_ns))?;
        Ok(())
    }

    /// Applies mode, owner and mtime to a directory.
    pub(crate) fn set_dir_attrs(&self, rel: &str, attrs: Attrs) -> io::Result<()> {
        let fd = self.open_beneath(
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        set_fd_attrs(&fd, attrs)
    }

    /// Applies owner, mode (not for symlinks) and mtime to an existing file or symlink, without
    /// following a symlink at the path.
    pub(crate) fn set_entry_attrs(&self, rel: &str, attrs: Attrs, symlink: bool) -> io::Result<()> {
        let (parent, name) = self.parent(rel)?;
        let dir = self.dirfd(&parent);
        if let Some((uid, gid)) = attrs.owner {
            rustix::fs::chownat(
                dir,
                name,
                Some(uid_of(uid)),
                Some(gid_of(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if !symlink {
            let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a regular file",
                ));
            }
            rustix::fs::chmodat(
                dir,
                name,
                Mode::from_raw_mode(attrs.mode & 0o1777),
                AtFlags::empty(),
            )?;
        }
        rustix::fs::utimensat(dir, name, &times(attrs.mtime_ns), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Flushes the whole file system once (instead of an fsync per file).
    pub(crate) fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }
}

/// Applies mode, owner and mtime through an open descriptor.
pub(crate) fn set_fd_attrs(fd: impl AsFd, attrs: Attrs) -> io::Result<()> {
    if let Some((uid, gid)) = attrs.owner {
        rustix::fs::fchown(&fd, Some(uid_of(uid)), Some(gid_of(gid)))?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(attrs.mode & 0o1777))?;
    rustix::fs::futimens(&fd, &times(attrs.mtime_ns))?;
    Ok(())
}

/// The umask from /proc/self/status; all bits when unknown (then every file gets a chmod).
fn read_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

fn times(mtime_ns: i64) -> Timestamps {
    let ts = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

fn uid_of(uid: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(uid)
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_refuses_symlinked_parents_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_path.join("link")).unwrap();
        let root = Root::open(&root_path).unwrap();
        assert!(
            root.create_file(
                "link/x",
                Attrs {
                    mode: 0o600,
                    mtime_ns: 0,
                    owner: None
                }
            )
            .is_err()
        );
        assert!(root.mkdir("link/d").is_err());
        root.mkdir("d").unwrap();
        root.mkdir("d").unwrap();
        let attrs = Attrs {
            mode: 0o640,
            mtime_ns: 1_000_000_123,
            owner: None,
        };
        let mut f = root.create_file("d/f", attrs).unwrap();
        std::io::Write::write_all(&mut f, b"x").unwrap();
        root.finish_file(
            &f,
            Attrs {
                mode: 0o666,
                ..attrs
            },
        )
        .unwrap();
        let md = f.metadata().unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777,
            0o666,
            "umask not undone"
        );
        assert_eq!(std::os::unix::fs::MetadataExt::mtime_nsec(&md), 123);
        root.symlink("d/l", "f", attrs).unwrap();
        root.symlink("d/l", "f", attrs).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // The fallback path refuses the same things.
        root.openat2.store(false, Ordering::Relaxed);
        assert!(root.create_file("link/y", attrs).is_err());
        root.create_file("d/g", attrs).unwrap();
        root.remove("d/g").unwrap();
        root.remove("d/missing").unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
