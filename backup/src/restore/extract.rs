//! The restore side of a scan: creates directories and symlinks in order on the reading thread
//! and hands small files to a few writer threads (which also hash them), so decompression and
//! file creation overlap. Large files are written inline, streaming. Nothing is fsynced per file;
//! the caller syncs the file system once at the end.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use super::fsops::{Attrs, Root};
use crate::hashing::Sha256Digest;
use crate::manifest::ManifestEntry;
use crate::scan::{EntrySink, ScanError};

/// Files up to this size are buffered and written by the pool.
const POOL_MAX_FILE: u64 = 256 << 10;
/// Files are handed to the pool in batches (fewer wake-ups) of at most this many files...
const BATCH_FILES: usize = 128;
/// ...or this many bytes.
const BATCH_BYTES: usize = 256 << 10;
/// Batches queued per writer thread: memory stays near threads × this × BATCH_BYTES.
const QUEUE_PER_THREAD: usize = 2;

struct Job {
    path: String,
    data: Vec<u8>,
    sha256: Option<Sha256Digest>,
    attrs: Attrs,
}

/// Writes a validated archive's entries beneath a root.
pub(crate) struct Extractor<'a> {
    root: Arc<Root>,
    tx: Option<SyncSender<Vec<Job>>>,
    batch: Vec<Job>,
    batch_bytes: usize,
    workers: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<ScanError>>>,
    preserve_owner: bool,
    /// For chains: hash of what is now on disk at each file path.
    pub(crate) written: Option<&'a mut HashMap<String, Sha256Digest>>,
}

impl<'a> Extractor<'a> {
    pub(crate) fn new(
        root: Arc<Root>,
        threads: usize,
        preserve_owner: bool,
        written: Option<&'a mut HashMap<String, Sha256Digest>>,
    ) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Vec<Job>>(threads * QUEUE_PER_THREAD);
        let rx = Arc::new(Mutex::new(rx));
        let failure = Arc::new(Mutex::new(None));
        let workers = (0..threads)
            .map(|i| {
                let (rx, root, failure) = (rx.clone(), root.clone(), failure.clone());
                std::thread::Builder::new()
                    .name(format!("dr-restore-{i}"))
                    .spawn(move || worker(&rx, &root, &failure))
            })
            .filter_map(Result::ok)
            .collect();
        Self {
            root,
            tx: Some(tx),
            batch: Vec::new(),
            batch_bytes: 0,
            workers,
            failure,
            preserve_owner,
            written,
        }
    }

    /// The entry's attributes as this archive's manifest has them (in a chain, later
    /// attribute-only changes are applied after the last archive).
    fn attrs(&self, e: &ManifestEntry) -> Attrs {
        Attrs {
            mode: e.mode,
            mtime_ns: e.mtime_ns,
            owner: self.preserve_owner.then_some((e.uid, e.gid)),
        }
    }

    fn check_failed(&self) -> Result<(), ScanError> {
        match self.failure.lock() {
            Ok(mut f) => f.take().map_or(Ok(()), Err),
            Err(_) => Err(ScanError::Corrupt(
                "a restore writer thread panicked".into(),
            )),
        }
    }

    /// Hands the current batch to the pool.
    fn flush(&mut self) -> Result<(), ScanError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let sent = self.tx.as_ref().map(|tx| tx.send(batch));
        if !matches!(sent, Some(Ok(()))) {
            self.check_failed()?;
            return Err(ScanError::Corrupt("restore writer threads stopped".into()));
        }
        Ok(())
    }

    /// Waits for every queued file to be written; returns the first failure.
    pub(crate) fn finish(mut self) -> Result<(), ScanError> {
        let flushed = self.flush();
        self.tx = None;
        for w in std::mem::take(&mut self.workers) {
            if w.join().is_err() {
                return Err(ScanError::Corrupt(
                    "a restore writer thread panicked".into(),
                ));
            }
        }
        flushed?;
        self.check_failed()
    }
}

fn worker(rx: &Mutex<Receiver<Vec<Job>>>, root: &Root, failure: &Mutex<Option<ScanError>>) {
    loop {
        let batch = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(batch) = batch else { return };
        for job in batch {
            if let Err(e) = write_small(root, job) {
                if let Ok(mut slot) = failure.lock() {
                    slot.get_or_insert(e);
                }
                break;
            }
        }
    }
}

fn write_small(root: &Root, job: Job) -> Result<(), ScanError> {
    let digest = Sha256Digest::from_hasher(Sha256::new_with_prefix(&job.data));
    if Some(digest) != job.sha256 {
        return Err(ScanError::Corrupt(format!(
            "{:?}: content does not match its sha256 in the manifest",
            job.path
        )));
    }
    let werr = |source| ScanError::Write {
        path: job.path.clone(),
        source,
    };
    let mut f = root.create_file(&job.path, job.attrs).map_err(werr)?;
    f.write_all(&job.data).map_err(werr)?;
    root.finish_file(&f, job.attrs).map_err(werr)?;
    Ok(())
}

impl EntrySink for Extractor<'_> {
    fn dir(&mut self, e: &ManifestEntry) -> Result<(), ScanError> {
        self.check_failed()?;
        self.root.mkdir(&e.path).map_err(|source| ScanError::Write {
            path: e.path.clone(),
            source,
        })
    }

    fn symlink(&mut self, e: &ManifestEntry) -> Result<(), ScanError> {
        self.check_failed()?;
        let target = e.target.as_deref().unwrap_or_default();
        if let Some(w) = self.written.as_mut() {
            w.remove(&e.path);
        }
        let attrs = self.attrs(e);
        self.root
            .symlink(&e.path, target, attrs)
            .map_err(|source| ScanError::Write {
                path: e.path.clone(),
                source,
            })
    }

    fn file(&mut self, e: &ManifestEntry, data: &mut dyn Read) -> Result<(), ScanError> {
        self.check_failed()?;
        let attrs = self.attrs(e);
        if let (Some(w), Some(h)) = (self.written.as_mut(), e.sha256) {
            w.insert(e.path.clone(), h);
        }
        let read_err =
            |err: io::Error| ScanError::Corrupt(format!("{:?}: reading its data: {err}", e.path));
        if e.size <= POOL_MAX_FILE && self.tx.is_some() {
            let mut buf = Vec::with_capacity(usize::try_from(e.size).unwrap_or(0));
            data.take(e.size).read_to_end(&mut buf).map_err(read_err)?;
            self.batch_bytes += buf.len();
            self.batch.push(Job {
                path: e.path.clone(),
                data: buf,
                sha256: e.sha256,
                attrs,
            });
            if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
                self.flush()?;
            }
            return Ok(());
        }
        let werr = |source| ScanError::Write {
            path: e.path.clone(),
            source,
        };
        let mut f = self.root.create_file(&e.path, attrs).map_err(werr)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = e.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = data.read(&mut buf[..want]).map_err(read_err)?;
            if n == 0 {
                return Err(ScanError::Corrupt(format!("{:?}: data ends early", e.path)));
            }
            hasher.update(&buf[..n]);
            f.write_all(&buf[..n]).map_err(werr)?;
            left -= n as u64;
        }
        if Some(Sha256Digest::from_hasher(hasher)) != e.sha256 {
            return Err(ScanError::Corrupt(format!(
                "{:?}: content does not match its sha256 in the manifest",
                e.path
            )));
        }
        self.root.finish_file(&f, attrs).map_err(werr)
    }
}
