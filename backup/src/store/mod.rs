//! Object stores: where backups live. One blocking trait with two implementations, `file://DIR`
//! (the embedded default) and `s3://BUCKET/PREFIX` (feature `s3`). The backup pipeline is
//! synchronous (tar, zstd), so writers are plain [`std::io::Write`] with an explicit
//! [`ObjectWriter::finish`] that makes the object visible, or [`ObjectWriter::abort`] that leaves
//! nothing behind. Every call blocks: from async code, call through `spawn_blocking`.

mod file;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
mod s3_io;
mod s3_section;
mod url;

pub use s3_section::{S3Section, SectionError};

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};

pub use file::FileStore;
pub(crate) use file::sync_dir;
#[cfg(feature = "s3")]
pub use s3::S3Store;
pub use url::StoreUrl;

/// Why a store operation failed, and (see [`StoreError::object_may_exist`]) whether it may have
/// left something behind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is malformed; says which part and what to write instead.
    #[error("store URL {url:?}: {problem}")]
    BadUrl { url: String, problem: String },
    /// Options that cannot work together (for example an S3 part size under 5 MiB).
    #[error("store options: {0}")]
    BadOptions(String),
    /// A key that would leave the store's prefix.
    #[error("object key {key:?}: {problem}")]
    BadKey { key: String, problem: &'static str },
    /// The object does not exist.
    #[error("{store}: object {key:?} not found")]
    NotFound { store: String, key: String },
    /// The object is larger than the caller accepts for an in-memory read.
    #[error("{store}: object {key:?} is {size} bytes, more than the {limit} accepted")]
    TooLarge {
        store: String,
        key: String,
        size: u64,
        limit: u64,
    },
    /// A local I/O failure.
    #[error("{store}: {op} {key:?}: {source}{}", written_note(*.partial_object_left))]
    Io {
        store: String,
        op: &'static str,
        key: String,
        #[source]
        source: io::Error,
        /// True only if a partial object may remain (never visible under its final name).
        partial_object_left: bool,
    },
    /// S3 refused or failed; `kind` says whether it is the credentials, the network or other.
    #[error("{store}: S3 {op} {key:?}: {kind}: {message}{}", written_note(*.partial_object_left))]
    S3 {
        store: String,
        op: &'static str,
        key: String,
        kind: S3FailureKind,
        message: String,
        /// True if an unfinished multipart upload may remain (swept by `sweep_stale_uploads`).
        partial_object_left: bool,
    },
    /// An `s3://` URL was given to a build without the `s3` feature.
    #[error(
        "store URL {0:?} needs S3 support, which this binary was built without (cargo feature `s3` of dr-backup)"
    )]
    S3NotCompiled(String),
}

fn written_note(partial: bool) -> &'static str {
    if partial {
        " (an unfinished upload may remain; it is never listed and `sweep_stale_uploads` removes it)"
    } else {
        ""
    }
}

/// Broad class of an S3 failure, so operators know where to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3FailureKind {
    /// Access key unknown, signature mismatch, access denied, or no credentials found.
    Credentials,
    /// The bucket does not exist.
    NoSuchBucket,
    /// Could not connect, connection reset, timeout.
    Network,
    /// Anything else the service said.
    Service,
}

impl fmt::Display for S3FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            S3FailureKind::Credentials => {
                "credentials refused (check the access key and secret: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, or the configured keys)"
            }
            S3FailureKind::NoSuchBucket => "bucket does not exist (create it or fix the URL)",
            S3FailureKind::Network => "cannot reach the S3 endpoint (check endpoint, network and TLS)",
            S3FailureKind::Service => "S3 error",
        })
    }
}

impl StoreError {
    /// Whether a failed write may have left an unfinished (never listed) object behind.
    pub fn object_may_exist(&self) -> bool {
        match self {
            StoreError::Io {
                partial_object_left,
                ..
            }
            | StoreError::S3 {
                partial_object_left,
                ..
            } => *partial_object_left,
            _ => false,
        }
    }

    /// Whether the failure says the object is missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// One stored object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the store's root/prefix, `/`-separated.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, when the store says.
    pub modified: Option<SystemTime>,
}

/// What a sweep of unfinished uploads removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Unfinished uploads (S3 multipart uploads, or leftover temp files) removed.
    pub removed: Vec<String>,
}

/// A store of immutable objects addressed by `/`-separated keys.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// The store's URL, for messages.
    fn url(&self) -> String;

    /// Starts writing an object. Nothing is visible under `key` until [`ObjectWriter::finish`].
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError>;

    /// Opens an object for streaming reads. The reader fails if fewer bytes arrive than listed.
    fn open(&self, key: &str) -> Result<ObjectReader, StoreError>;

    /// Objects whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Deletes an object; deleting a missing object succeeds.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Removes unfinished uploads older than `older_than` (S3 multipart uploads under the prefix,
    /// leftover temp files of the file store), e.g. after a crash or a killed server.
    fn sweep_stale_uploads(&self, older_than: Duration) -> Result<SweepReport, StoreError>;

    /// Writes a small object in one go.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut w = self.create(key)?;
        if let Err(source) = w.write_all(bytes) {
            // The write failed; abort so nothing remains. Report the write failure.
            let _ = w.abort();
            return Err(StoreError::Io {
                store: self.url(),
                op: "write",
                key: key.to_owned(),
                source,
                partial_object_left: false,
            });
        }
        w.finish().map(|_| ())
    }

    /// Reads a small object completely, refusing anything over `limit` bytes.
    fn get(&self, key: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let mut r = self.open(key)?;
        if r.len() > limit {
            return Err(StoreError::TooLarge {
                store: self.url(),
                key: key.to_owned(),
                size: r.len(),
                limit,
            });
        }
        let mut out = Vec::with_capacity(usize::try_from(r.len()).unwrap_or(0));
        r.read_to_end(&mut out).map_err(|source| StoreError::Io {
            store: self.url(),
            op: "read",
            key: key.to_owned(),
            source,
            partial_object_left: false,
        })?;
        Ok(out)
    }
}

/// A writer for one object. Dropping it without `finish` aborts.
pub trait ObjectWriter: Write + Send {
    /// Flushes, makes the object durable and visible under its key; returns its size.
    fn finish(self: Box<Self>) -> Result<u64, StoreError>;

    /// Discards everything written; nothing becomes visible.
    fn abort(self: Box<Self>) -> Result<(), StoreError>;
}

/// A streaming reader of one object that knows the object's listed length and fails with
/// `UnexpectedEof` if the stream ends early (a truncated object or a dropped connection).
pub struct ObjectReader {
    inner: Box<dyn Read + Send>,
    len: u64,
    read: u64,
    key: String,
}

impl fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .field("len", &self.len)
            .finish()
    }
}

impl ObjectReader {
    /// Wraps a stream of an object of `len` bytes.
    pub fn new(key: &str, len: u64, inner: Box<dyn Read + Send>) -> Self {
        Self {
            inner,
            len,
            read: 0,
            key: key.to_owned(),
        }
    }

    /// Listed length of the object.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n == 0 && !buf.is_empty() && self.read < self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "object {:?} ended after {} of {} bytes",
                    self.key, self.read, self.len
                ),
            ));
        }
        if self.read > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "object {:?} is longer than its listed {} bytes",
                    self.key, self.len
                ),
            ));
        }
        Ok(n)
    }
}

/// Options for opening a store from a URL.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Settings used only by `s3://` URLs.
    pub s3: S3Options,
}

/// S3 settings. Credentials come from the standard AWS chain unless given here.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Region (required; falls back to `AWS_REGION` / `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Custom endpoint for S3-compatible servers, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub force_path_style: bool,
    /// Multipart part size in bytes (at least 5 MiB, the S3 minimum; default 16 MiB).
    pub part_size: usize,
    /// Parts uploaded concurrently (default 4); memory is about `(this + 1) × part_size`.
    pub max_parts_in_flight: usize,
    /// Explicit credentials instead of the standard chain.
    pub credentials: Option<S3Credentials>,
    /// Attempts per request including retries (default 3).
    pub max_attempts: u32,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            force_path_style: false,
            part_size: 16 << 20,
            max_parts_in_flight: 4,
            credentials: None,
            max_attempts: 3,
        }
    }
}

/// Static S3 credentials.
#[derive(Clone)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The smallest multipart part S3 accepts (except the last).
pub const S3_MIN_PART_SIZE: usize = 5 << 20;

/// Opens the store a URL names: `file:///abs/dir` or `s3://bucket/prefix`.
pub fn open_store(url: &str, options: &StoreOptions) -> Result<Box<dyn ObjectStore>, StoreError> {
    match StoreUrl::parse(url)? {
        StoreUrl::File { dir } => Ok(Box::new(FileStore::new(dir))),
        #[cfg(feature = "s3")]
        StoreUrl::S3 { bucket, prefix } => {
            Ok(Box::new(S3Store::connect(&bucket, &prefix, &options.s3)?))
        }
        #[cfg(not(feature = "s3"))]
        StoreUrl::S3 { .. } => {
            let _ = options;
            Err(StoreError::S3NotCompiled(url.to_owned()))
        }
    }
}

/// Checks a key: relative, `/`-separated, no empty, `.` or `..` components, no NUL.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = |problem| {
        Err(StoreError::BadKey {
            key: key.to_owned(),
            problem,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    if key.starts_with('/') {
        return bad("starts with `/`");
    }
    if key
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("has an empty, `.` or `..` component");
    }
    Ok(())
}
