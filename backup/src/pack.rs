//! Writes tar entries for walked paths, reading files so that the archive is never corrupt: a
//! file's header size always equals the bytes that follow it. Small files are read whole and
//! re-read (up to `retries` times) if they change underneath; large files are streamed with the
//! size seen at open, padded or cut to it, and flagged if they changed while read.
//!
//! Small files are read by a pool of [`Reader`]s, each turning a [`Job`] (a run of walked
//! entries) into finished tar bytes; the backup thread appends those in order and streams the
//! large files itself ([`stream_large`]), so reading, hashing and tar framing overlap with
//! compression.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use crate::hashing::Sha256Digest;
use crate::manifest::MODE_SETID;
use crate::walk::{Meta, Walked};

/// What happened to one file.
#[derive(Debug)]
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

/// What to do with one walked entry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// Nothing to archive (unchanged since the parent).
    Skip,
    /// A directory or symlink header.
    Header,
    /// Read the file; keep the parent's copy if the content hashes to `parent_hash`.
    Read { parent_hash: Option<Sha256Digest> },
}

/// One walked entry of a job.
pub(crate) struct JobItem {
    pub walked: Walked,
    /// Its directory, open (needed to read a file).
    pub dir: Option<Arc<OwnedFd>>,
    pub action: Action,
    /// The parent backup's entry for the path (incrementals; not used by the readers).
    pub parent: Option<crate::manifest::ManifestEntry>,
}

/// A run of entries, in walk order.
pub(crate) struct Job {
    pub items: Vec<JobItem>,
}

/// What a reader did with one item.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Skipped as asked.
    Skipped,
    /// Directory or symlink header written.
    Header,
    /// A small file, read.
    File(FileOutcome),
    /// Left to the backup thread (a file too large for this reader, or one that grew past its
    /// limit): it reads it whole or streams it at this point.
    Large,
}

/// Finished tar bytes, or the place of a large file the backup thread must stream.
pub(crate) enum Piece {
    Bytes(Vec<u8>),
    Large(usize),
}

/// A job done: the items back, what happened to each, and the tar stream for them.
pub(crate) struct JobDone {
    pub items: Vec<JobItem>,
    pub outcomes: Vec<Outcome>,
    pub pieces: Vec<Piece>,
}

/// A failure reading one item.
#[derive(Debug)]
pub(crate) struct ReadError {
    pub path: String,
    pub source: io::Error,
}

/// Buffers handed back by the backup thread once written, so steady state allocates nothing
/// (and no allocator arena of a reader thread keeps growing).
#[derive(Default)]
pub(crate) struct BufferPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Buffers kept, and the capacity a kept buffer may have.
const POOL_BUFFERS: usize = 6;
const POOL_BUFFER_MAX: usize = 1 << 20;

impl BufferPool {
    fn get(&self) -> Vec<u8> {
        self.free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_default()
    }

    pub(crate) fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() > POOL_BUFFER_MAX {
            return;
        }
        buf.clear();
        if let Ok(mut f) = self.free.lock()
            && f.len() < POOL_BUFFERS
        {
            f.push(buf);
        }
    }
}

/// Reads jobs into tar bytes (one per thread of the pool).
pub(crate) struct Reader<'a> {
    builder: tar::Builder<Vec<u8>>,
    retries: u32,
    pool: Option<&'a BufferPool>,
    /// Files above this size are left to the backup thread ([`Outcome::Large`]).
    hand_off_above: u64,
}

impl<'a> Reader<'a> {
    /// A reader of the pool (files above [`POOL_BUFFER_MAX`] are left to the backup thread, so
    /// the pool's buffers stay small), or, without a pool, the backup thread's own reader.
    pub(crate) fn new(max_buffered: usize, retries: u32, pool: Option<&'a BufferPool>) -> Self {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Complete);
        let max_buffered = max_buffered as u64;
        Self {
            builder,
            retries,
            pool,
            hand_off_above: if pool.is_some() {
                max_buffered.min(POOL_BUFFER_MAX as u64 / 2)
            } else {
                max_buffered
            },
        }
    }

    /// Reads one small file on the backup thread: the outcome, and the tar bytes to append.
    pub(crate) fn read_one(
        &mut self,
        item: &JobItem,
    ) -> Result<(Outcome, &mut Vec<u8>), ReadError> {
        self.builder.get_mut().clear();
        let outcome = match item.action {
            Action::Read { parent_hash } if item.walked.meta.size <= self.hand_off_above => {
                let w = &item.walked;
                let fail = |source| ReadError {
                    path: w.path.clone(),
                    source,
                };
                let dir = item
                    .dir
                    .as_deref()
                    .ok_or_else(|| fail(io::Error::other("walk gave no directory to read from")))?;
                self.small_file(dir, w, parent_hash).map_err(fail)?
            }
            _ => Outcome::Large,
        };
        Ok((outcome, self.builder.get_mut()))
    }

    /// The bytes so far, replaced by a recycled buffer.
    fn take_bytes(&mut self) -> Vec<u8> {
        let fresh = self.pool.map(BufferPool::get).unwrap_or_default();
        std::mem::replace(self.builder.get_mut(), fresh)
    }

    pub(crate) fn run(&mut self, job: Job) -> Result<JobDone, ReadError> {
        let mut outcomes = Vec::with_capacity(job.items.len());
        let mut pieces = Vec::new();
        for (i, item) in job.items.iter().enumerate() {
            let w = &item.walked;
            let fail = |source| ReadError {
                path: w.path.clone(),
                source,
            };
            let outcome = match item.action {
                Action::Skip => Outcome::Skipped,
                Action::Header => {
                    let written = match w.target.as_deref() {
                        Some(t) => {
                            let mut h = header(tar::EntryType::Symlink, &w.meta, 0);
                            self.builder.append_link(&mut h, &w.path, t)
                        }
                        None => {
                            let mut h = header(tar::EntryType::Directory, &w.meta, 0);
                            self.builder.append_data(&mut h, &w.path, io::empty())
                        }
                    };
                    written.map_err(fail)?;
                    Outcome::Header
                }
                Action::Read { parent_hash } => {
                    if w.meta.size > self.hand_off_above {
                        Outcome::Large
                    } else {
                        let dir = item.dir.as_deref().ok_or_else(|| {
                            fail(io::Error::other("walk gave no directory to read from"))
                        })?;
                        self.small_file(dir, w, parent_hash).map_err(fail)?
                    }
                }
            };
            if matches!(outcome, Outcome::Large) {
                let bytes = self.take_bytes();
                if !bytes.is_empty() {
                    pieces.push(Piece::Bytes(bytes));
                }
                pieces.push(Piece::Large(i));
            }
            outcomes.push(outcome);
        }
        let bytes = self.take_bytes();
        if !bytes.is_empty() {
            pieces.push(Piece::Bytes(bytes));
        }
        Ok(JobDone {
            items: job.items,
            outcomes,
            pieces,
        })
    }

    /// Reads a small file straight into the tar stream after its header. The walk's stat is the
    /// first "before" stat: a file whose stat after the read still matches it needs no other.
    fn small_file(
        &mut self,
        dir: &OwnedFd,
        w: &Walked,
        parent_hash: Option<Sha256Digest>,
    ) -> io::Result<Outcome> {
        let mut file = match open_nofollow(dir, w) {
            Ok(f) => f,
            // Gone, or replaced by a symlink (ELOOP) or something else since the walk.
            Err(e) if is_vanished(&e) => return Ok(Outcome::File(FileOutcome::Vanished)),
            Err(e) => return Err(e),
        };
        let start = self.builder.get_ref().len();
        let mut expected = w.meta;
        let mut consistent = false;
        let mut last = expected;
        let mut data_start = start;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                file.rewind()?;
                let Some(now) = fstat_file(&file)? else {
                    self.builder.get_mut().truncate(start);
                    return Ok(Outcome::File(FileOutcome::Vanished));
                };
                expected = now;
                if expected.size > self.hand_off_above {
                    self.builder.get_mut().truncate(start);
                    return Ok(Outcome::Large);
                }
            }
            self.builder.get_mut().truncate(start);
            let mut h = header(tar::EntryType::Regular, &expected, expected.size);
            self.builder.append_data(&mut h, &w.path, io::empty())?;
            data_start = self.builder.get_ref().len();
            let filled = match read_upto(&file, self.builder.get_mut(), expected.size) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
                    self.builder.get_mut().truncate(start);
                    return Ok(Outcome::File(FileOutcome::Vanished));
                }
                Err(e) => return Err(e),
            };
            let Some(now) = fstat_file(&file)? else {
                self.builder.get_mut().truncate(start);
                return Ok(Outcome::File(FileOutcome::Vanished));
            };
            last = now;
            if last == expected && filled as u64 == last.size {
                consistent = true;
                break;
            }
        }
        let out = self.builder.get_mut();
        let sha256 = Sha256Digest::from_hasher(Sha256::new_with_prefix(&out[data_start..]));
        let mut meta = last;
        meta.size = (out.len() - data_start) as u64;
        if consistent && parent_hash == Some(sha256) {
            out.truncate(start);
            return Ok(Outcome::File(FileOutcome::SameAsParent { meta }));
        }
        if !consistent {
            // The header announced another size: write it again for what was read.
            let data = out[data_start..].to_vec();
            out.truncate(start);
            let mut h = header(tar::EntryType::Regular, &meta, meta.size);
            self.builder.append_data(&mut h, &w.path, &data[..])?;
        } else {
            pad(out);
        }
        Ok(Outcome::File(FileOutcome::Archived {
            meta,
            sha256,
            changed_while_reading: !consistent,
        }))
    }
}

/// Zero-pads a tar stream to the next 512-byte block.
fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// Appends up to `size + 1` bytes of the file to `out`, stopping as soon as `size` bytes are in:
/// usually one `read` call. A file that grew shows up as `size + 1` bytes or in the stat that
/// follows. Returns how many bytes were appended.
fn read_upto(file: &File, out: &mut Vec<u8>, size: u64) -> io::Result<usize> {
    let size = usize::try_from(size).unwrap_or(usize::MAX - 1);
    let want = size + 1;
    out.reserve(want);
    let base = out.len();
    loop {
        let filled = out.len() - base;
        if filled >= want {
            break;
        }
        let spare = out.capacity() - out.len();
        if spare == 0 {
            out.reserve(want - filled);
        }
        let n = match rustix::io::read(file, rustix::buffer::spare_capacity(out)) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let filled = out.len() - base;
        if n == 0 || filled == size {
            break;
        }
    }
    // Never more than `size + 1` (the spare capacity may have been larger).
    let filled = (out.len() - base).min(want);
    out.truncate(base + filled);
    Ok(filled)
}

fn fstat_file(file: &File) -> io::Result<Option<Meta>> {
    let st = rustix::fs::fstat(file)?;
    let is_file =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
    Ok(is_file.then(|| Meta::of_stat(&st)))
}

/// Streams a large file (read on the backup thread, straight into the archive). With
/// `parent_hash`, the file is hashed first and not archived if it matches.
pub(crate) fn stream_large<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &OwnedFd,
    w: &Walked,
    parent_hash: Option<Sha256Digest>,
) -> io::Result<FileOutcome> {
    let mut file = match open_nofollow(dir, w) {
        Ok(f) => f,
        Err(e) if is_vanished(&e) => return Ok(FileOutcome::Vanished),
        Err(e) => return Err(e),
    };
    let Some(now) = fstat_file(&file)? else {
        return Ok(FileOutcome::Vanished);
    };
    if let Some(ph) = parent_hash
        && let Some(meta) = hash_unchanged(&mut file, now, ph)?
    {
        return Ok(FileOutcome::SameAsParent { meta });
    }
    large_file(builder, &mut file, &w.path, now)
}

fn large_file<W: Write>(
    builder: &mut tar::Builder<W>,
    file: &mut File,
    rel: &str,
    opened: Meta,
) -> io::Result<FileOutcome> {
    let mut h = header(tar::EntryType::Regular, &opened, opened.size);
    let mut reader = ExactReader {
        file: &mut *file,
        remaining: opened.size,
        hasher: Sha256::new(),
        short: false,
    };
    builder.append_data(&mut h, rel, &mut reader)?;
    let (short, hasher) = (reader.short, reader.hasher);
    let mut probe = [0u8; 1];
    let grew = !short && file.read(&mut probe)? > 0;
    let after = fstat_file(file)?;
    let changed = short || grew || after != Some(opened);
    Ok(FileOutcome::Archived {
        meta: opened,
        sha256: Sha256Digest::from_hasher(hasher),
        changed_while_reading: changed,
    })
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
    let after = fstat_file(file)?;
    let same = after == Some(opened) && Sha256Digest::from_hasher(hasher) == parent;
    Ok(same.then_some(opened))
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

/// Whether `O_NOATIME` is allowed (files we own, or with CAP_FOWNER); cleared on the first EPERM.
static NOATIME: AtomicBool = AtomicBool::new(true);

/// Opens a walked file relative to its open directory, never following a symlink, and without
/// updating its access time where allowed (on disk file systems an atime update is an inode
/// write per file read).
fn open_nofollow(dir: &OwnedFd, w: &Walked) -> io::Result<File> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    if NOATIME.load(Ordering::Relaxed) {
        match rustix::fs::openat(
            dir.as_fd(),
            w.name(),
            flags | OFlags::NOATIME,
            Mode::empty(),
        ) {
            Err(Errno::PERM) => NOATIME.store(false, Ordering::Relaxed),
            other => return Ok(File::from(other?)),
        }
    }
    let fd = rustix::fs::openat(dir.as_fd(), w.name(), flags, Mode::empty())?;
    Ok(File::from(fd))
}

fn is_vanished(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
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

    fn walked(name: &str, meta: Meta) -> Walked {
        Walked {
            path: name.into(),
            kind: crate::manifest::EntryKind::File,
            meta,
            target: None,
            dir: 0,
        }
    }

    fn open_dir(dir: &std::path::Path) -> Arc<OwnedFd> {
        Arc::new(rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap())
    }

    fn finish(reader: &mut Reader<'_>) -> Vec<u8> {
        let mut out = std::mem::take(reader.builder.get_mut());
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
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
        let mut builder = tar::Builder::new(Vec::new());
        let FileOutcome::Archived {
            meta,
            sha256,
            changed_while_reading,
        } = large_file(&mut builder, &mut file, "f", opened).unwrap()
        else {
            panic!("not archived")
        };
        assert!(changed_while_reading);
        assert_eq!(meta.size, 16);
        let entries = read_back(&builder.into_inner().unwrap());
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
        // A stale stat (as if the file changed between the walk and the read): the first read
        // does not match it, the retry re-stats and gets a consistent read.
        let mut stale = Meta::of(&std::fs::metadata(&path).unwrap());
        stale.size = 3;
        stale.mtime_ns -= 1;
        let mut reader = Reader::new(1 << 20, 3, None);
        let fd = open_dir(dir.path());
        let w = walked("f", stale);
        let Outcome::File(FileOutcome::Archived {
            meta,
            sha256,
            changed_while_reading,
        }) = reader.small_file(&fd, &w, None).unwrap()
        else {
            panic!("not archived")
        };
        assert!(!changed_while_reading);
        assert_eq!(meta.size, 11);
        assert_eq!(sha256, Sha256Digest::of(b"new content"));
        assert_eq!(
            read_back(&finish(&mut reader)),
            [("f".to_owned(), 11, b"new content".to_vec())]
        );

        // Same content as the parent: not archived at all.
        let fresh = Meta::of(&std::fs::metadata(&path).unwrap());
        let w = walked("f", fresh);
        let out = reader
            .small_file(&fd, &w, Some(Sha256Digest::of(b"new content")))
            .unwrap();
        assert!(matches!(
            out,
            Outcome::File(FileOutcome::SameAsParent { .. })
        ));
        assert!(read_back(&finish(&mut reader)).is_empty());

        // Changed and no retries left: archived as read (the stale size plus the one byte that
        // shows it grew), flagged, and the header matches the bytes.
        let mut reader = Reader::new(1 << 20, 0, None);
        let w = walked("f", stale);
        let Outcome::File(FileOutcome::Archived {
            meta,
            changed_while_reading,
            ..
        }) = reader.small_file(&fd, &w, None).unwrap()
        else {
            panic!("not archived")
        };
        assert!(changed_while_reading);
        assert_eq!(meta.size, 4);
        assert_eq!(
            read_back(&finish(&mut reader)),
            [("f".to_owned(), 4, b"new ".to_vec())]
        );
    }

    #[test]
    fn jobs_split_around_large_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"aa").unwrap();
        std::fs::write(dir.path().join("b"), vec![7u8; 100]).unwrap();
        std::fs::write(dir.path().join("c"), b"cc").unwrap();
        let fd = open_dir(dir.path());
        let item = |n: &str| JobItem {
            walked: walked(n, Meta::of(&std::fs::metadata(dir.path().join(n)).unwrap())),
            dir: Some(fd.clone()),
            action: Action::Read { parent_hash: None },
            parent: None,
        };
        let mut reader = Reader::new(10, 1, None);
        let done = reader
            .run(Job {
                items: vec![item("a"), item("b"), item("c")],
            })
            .unwrap();
        assert!(matches!(done.outcomes[1], Outcome::Large));
        let kinds: Vec<_> = done
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len(),
                Piece::Large(i) => 1_000_000 + i,
            })
            .collect();
        assert_eq!(kinds, [1024, 1_000_001, 1024]);
    }
}
