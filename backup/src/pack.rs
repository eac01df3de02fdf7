//! Writes tar entries for walked paths, reading files so that the archive is never corrupt: a
//! file's header size always equals the bytes that follow it. Small files are read whole and
//! re-read (up to `retries` times) if they change underneath; large files are streamed with the
//! size seen at open, padded or cut to it, and flagged if they changed while read.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::hashing::Sha256Digest;
use crate::manifest::MODE_SETID;
use crate::walk::Meta;

/// What happened to one file.
pub(crate) enum FileOutcome {
    /// Written to the archive with this metadata and content hash.
    Archived {
        meta: Meta,
        sha256: Sha256Digest,
        changed_while_reading: bool,
    },
    /// Read and hashed, identical to the given parent hash: not written (incrementals).
    SameAsParent { meta: Meta },
    /// Gone (or replaced by a non-file) before it could be read.
    Vanished,
}

/// A tar stream being written.
pub(crate) struct Packer<W: Write> {
    builder: tar::Builder<W>,
    buf: Vec<u8>,
    max_buffered: u64,
    retries: u32,
}

impl<W: Write> Packer<W> {
    pub(crate) fn new(out: W, max_buffered: usize, retries: u32) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        Self {
            builder,
            buf: Vec::new(),
            max_buffered: max_buffered as u64,
            retries,
        }
    }

    /// Writes the end-of-archive blocks and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    pub(crate) fn dir(&mut self, path: &str, meta: &Meta) -> io::Result<()> {
        let mut h = header(tar::EntryType::Directory, meta, 0);
        self.builder.append_data(&mut h, path, io::empty())
    }

    pub(crate) fn symlink(&mut self, path: &str, meta: &Meta, target: &str) -> io::Result<()> {
        let mut h = header(tar::EntryType::Symlink, meta, 0);
        self.builder.append_link(&mut h, path, target)
    }

    /// Reads and archives one regular file. `walked` is its stat from the walk: a small file
    /// whose stat after the read still matches it needs no other stat call. With `parent_hash`,
    /// a file whose content turns out identical to the parent's is not written (the
    /// incremental keeps pointing at the parent).
    pub(crate) fn file(
        &mut self,
        abs: &Path,
        rel: &str,
        walked: &Meta,
        parent_hash: Option<Sha256Digest>,
    ) -> io::Result<FileOutcome> {
        let mut file = match open_nofollow(abs) {
            Ok(f) => f,
            // Gone, or replaced by a symlink (ELOOP) or something else since the walk.
            Err(e) if is_vanished(&e) => return Ok(FileOutcome::Vanished),
            Err(e) => return Err(e),
        };
        if walked.size <= self.max_buffered {
            return self.small_file(&mut file, rel, *walked, parent_hash);
        }
        let md = file.metadata()?;
        if !md.is_file() {
            return Ok(FileOutcome::Vanished);
        }
        let now = Meta::of(&md);
        if let Some(ph) = parent_hash
            && let Some(meta) = hash_unchanged(&mut file, now, ph)?
        {
            return Ok(FileOutcome::SameAsParent { meta });
        }
        self.large_file(&mut file, rel, now)
    }

    fn small_file(
        &mut self,
        file: &mut File,
        rel: &str,
        walked: Meta,
        parent_hash: Option<Sha256Digest>,
    ) -> io::Result<FileOutcome> {
        // Each read is checked against the stat taken before it (the walk's, then a fresh one).
        let mut expected = walked;
        let mut consistent = false;
        let mut last = expected;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                file.rewind()?;
                let md = file.metadata()?;
                if !md.is_file() {
                    return Ok(FileOutcome::Vanished);
                }
                expected = Meta::of(&md);
                if expected.size > self.max_buffered {
                    return self.large_file(file, rel, expected);
                }
            }
            let filled = match read_upto(file, &mut self.buf, expected.size) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
                    return Ok(FileOutcome::Vanished);
                }
                Err(e) => return Err(e),
            };
            let md = file.metadata()?;
            if !md.is_file() {
                return Ok(FileOutcome::Vanished);
            }
            last = Meta::of(&md);
            if last == expected && filled as u64 == last.size {
                consistent = true;
                break;
            }
        }
        let sha256 = Sha256Digest::from_hasher(Sha256::new_with_prefix(&self.buf));
        let mut meta = last;
        meta.size = self.buf.len() as u64;
        if consistent && parent_hash == Some(sha256) {
            return Ok(FileOutcome::SameAsParent { meta });
        }
        let mut h = header(tar::EntryType::Regular, &meta, meta.size);
        self.builder.append_data(&mut h, rel, &self.buf[..])?;
        Ok(FileOutcome::Archived {
            meta,
            sha256,
            changed_while_reading: !consistent,
        })
    }

    fn large_file(&mut self, file: &mut File, rel: &str, opened: Meta) -> io::Result<FileOutcome> {
        let mut h = header(tar::EntryType::Regular, &opened, opened.size);
        let mut reader = ExactReader {
            file: &mut *file,
            remaining: opened.size,
            hasher: Sha256::new(),
            short: false,
        };
        self.builder.append_data(&mut h, rel, &mut reader)?;
        let (short, hasher) = (reader.short, reader.hasher);
        let mut probe = [0u8; 1];
        let grew = !short && file.read(&mut probe)? > 0;
        let after = Meta::of(&file.metadata()?);
        let changed = short || grew || after != opened;
        Ok(FileOutcome::Archived {
            meta: opened,
            sha256: Sha256Digest::from_hasher(hasher),
            changed_while_reading: changed,
        })
    }
}

/// Reads up to `size + 1` bytes into `buf` (resized to what was read), stopping as soon as
/// `size` bytes are in: usually one `read` call. A file that grew shows up as `size + 1` bytes
/// or in the stat that follows.
fn read_upto(file: &mut File, buf: &mut Vec<u8>, size: u64) -> io::Result<usize> {
    let size = usize::try_from(size).unwrap_or(usize::MAX - 1);
    buf.clear();
    buf.resize(size + 1, 0);
    let mut filled = 0;
    while filled < buf.len() {
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        if n == 0 || filled == size {
            break;
        }
    }
    buf.truncate(filled);
    Ok(filled)
}

/// Hashes a large file first; returns its meta if it is unchanged against the parent's hash and
/// did not change while hashed.
fn hash_unchanged(file: &mut File, opened: Meta, parent: Sha256Digest) -> io::Result<Option<Meta>> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    file.rewind()?;
    let after = Meta::of(&file.metadata()?);
    let same = after == opened && Sha256Digest::from_hasher(hasher) == parent;
    Ok(same.then_some(after))
}

/// Yields exactly `remaining` bytes of the file, padding with zeros if it shrank.
struct ExactReader<'a> {
    file: &'a mut File,
    remaining: u64,
    hasher: Sha256,
    short: bool,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut n = if self.short {
            0
        } else {
            self.file.read(&mut buf[..want])?
        };
        if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            n = want;
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn header(kind: tar::EntryType, meta: &Meta, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.mode & 0o7777 & !MODE_SETID);
    h.set_uid(u64::from(meta.uid));
    h.set_gid(u64::from(meta.gid));
    h.set_mtime(u64::try_from(meta.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0));
    h
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    let flags =
        rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::NONBLOCK;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

fn is_vanished(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(tar_bytes: &[u8]) -> Vec<(String, u64, Vec<u8>)> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    e.header().size().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn a_file_that_shrinks_while_streamed_is_padded_and_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut file = File::open(&path).unwrap();
        // The file was 16 bytes when opened; only 10 remain.
        let mut opened = Meta::of(&file.metadata().unwrap());
        opened.size = 16;
        let mut packer = Packer::new(Vec::new(), 4, 3);
        let FileOutcome::Archived {
            meta,
            sha256,
            changed_while_reading,
        } = packer.large_file(&mut file, "f", opened).unwrap()
        else {
            panic!("not archived")
        };
        assert!(changed_while_reading);
        assert_eq!(meta.size, 16);
        let entries = read_back(&packer.finish().unwrap());
        let mut want = b"0123456789".to_vec();
        want.resize(16, 0);
        assert_eq!(entries, [("f".to_owned(), 16, want.clone())]);
        assert_eq!(
            sha256,
            Sha256Digest::of(&want),
            "manifest hash must describe the archived bytes"
        );
    }

    #[test]
    fn a_small_file_that_changed_is_reread_and_archived_consistently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"new content").unwrap();
        let mut file = File::open(&path).unwrap();
        // A stale stat (as if the file changed between fstat and read): the first read does not
        // match it, the retry re-stats and gets a consistent read.
        let mut stale = Meta::of(&file.metadata().unwrap());
        stale.size = 3;
        stale.mtime_ns -= 1;
        let mut packer = Packer::new(Vec::new(), 1 << 20, 3);
        let FileOutcome::Archived {
            meta,
            sha256,
            changed_while_reading,
        } = packer.small_file(&mut file, "f", stale, None).unwrap()
        else {
            panic!("not archived")
        };
        assert!(!changed_while_reading);
        assert_eq!(meta.size, 11);
        assert_eq!(sha256, Sha256Digest::of(b"new content"));
        assert_eq!(
            read_back(&packer.finish().unwrap()),
            [("f".to_owned(), 11, b"new content".to_vec())]
        );

        // Same content as the parent: not archived at all.
        let mut packer = Packer::new(Vec::new(), 1 << 20, 3);
        let fresh = Meta::of(&file.metadata().unwrap());
        let out = packer
            .small_file(
                &mut file,
                "f",
                fresh,
                Some(Sha256Digest::of(b"new content")),
            )
            .unwrap();
        assert!(matches!(out, FileOutcome::SameAsParent { .. }));
        assert!(read_back(&packer.finish().unwrap()).is_empty());
    }
}
