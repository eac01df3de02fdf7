//! A store wrapper that cuts a backup, restore or drill off at `[backup] timeout_s`. The engine
//! blocks and cannot be cancelled from outside, but every byte it moves goes through the store:
//! once the deadline passes, the next read or write fails, the engine aborts the way it does for
//! any store failure (nothing committed; the staging directory removed) and the blocking thread
//! ends instead of running on unseen.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_backup::StoreError;
use dr_backup::store::{ObjectMeta, ObjectReader, ObjectStore, ObjectWriter, SweepReport};

/// `inner`, refusing every operation after `deadline`.
#[derive(Debug, Clone)]
pub struct DeadlineStore {
    inner: Arc<dyn ObjectStore>,
    deadline: Instant,
    limit: Duration,
}

impl DeadlineStore {
    pub fn new(inner: Arc<dyn ObjectStore>, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + limit,
            limit,
        }
    }

    fn expired(&self) -> Option<io::Error> {
        expired(self.deadline, self.limit)
    }

    fn check(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        match self.expired() {
            None => Ok(()),
            Some(source) => Err(StoreError::Io {
                store: self.inner.url(),
                op,
                key: key.to_owned(),
                source,
                partial_object_left: false,
            }),
        }
    }
}

impl DeadlineStore {
    /// Await `job` (a blocking store job through this wrapper), but give up shortly after the
    /// deadline. A store call that hangs inside its client (a black-holed S3 endpoint: the SDK
    /// waits minutes on a dead connection) never reaches this wrapper's checks, so the command
    /// must not wait on it. The abandoned thread ends at its next store operation, which is
    /// refused; as every commit marker is written last and through this wrapper, the job can
    /// commit nothing more unless a write already under way when the deadline passed completes.
    pub async fn within<T>(
        &self,
        what: &str,
        job: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let wait = self.deadline.saturating_duration_since(Instant::now()) + GIVE_UP_GRACE;
        match tokio::time::timeout(wait, job).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{what}: the store did not answer within the configured {} s (key `backup.timeout_s`): gave up waiting; nothing was committed unless a write already under way completes later (then it is complete and verifiable)",
                self.limit.as_secs()
            )),
        }
    }
}

/// After the deadline, how long a job gets to fail on its own before the command stops waiting.
const GIVE_UP_GRACE: Duration = Duration::from_secs(2);

fn expired(deadline: Instant, limit: Duration) -> Option<io::Error> {
    (Instant::now() >= deadline).then(|| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "stopped after the configured {} s (key `backup.timeout_s`)",
                limit.as_secs()
            ),
        )
    })
}

impl ObjectStore for DeadlineStore {
    fn url(&self) -> String {
        self.inner.url()
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        self.check("create", key)?;
        let inner = self.inner.create(key)?;
        Ok(Box::new(DeadlineWriter {
            inner,
            deadline: self.deadline,
            limit: self.limit,
        }))
    }

    fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        self.check("open", key)?;
        let inner = self.inner.open(key)?;
        let len = inner.len();
        Ok(ObjectReader::new(
            key,
            len,
            Box::new(DeadlineReader {
                inner,
                deadline: self.deadline,
                limit: self.limit,
            }),
        ))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.check("list", prefix)?;
        self.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check("delete", key)?;
        self.inner.delete(key)
    }

    fn sweep_stale_uploads(&self, older_than: Duration) -> Result<SweepReport, StoreError> {
        self.check("sweep", "")?;
        self.inner.sweep_stale_uploads(older_than)
    }
}

struct DeadlineWriter {
    inner: Box<dyn ObjectWriter>,
    deadline: Instant,
    limit: Duration,
}

impl Write for DeadlineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = expired(self.deadline, self.limit) {
            return Err(e);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ObjectWriter for DeadlineWriter {
    fn finish(self: Box<Self>) -> Result<u64, StoreError> {
        self.inner.finish()
    }

    fn abort(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.abort()
    }
}

struct DeadlineReader {
    inner: ObjectReader,
    deadline: Instant,
    limit: Duration,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = expired(self.deadline, self.limit) {
            return Err(e);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_backup::store::FileStore;

    #[test]
    fn operations_fail_once_the_deadline_passed() {
        let dir = tempfile::tempdir().unwrap();
        let file: Arc<dyn ObjectStore> = Arc::new(FileStore::new(dir.path()));
        let live = DeadlineStore::new(file.clone(), Duration::from_secs(60));
        live.put("g/h/a", b"hello").unwrap();
        assert_eq!(live.get("g/h/a", 100).unwrap(), b"hello");
        let dead = DeadlineStore::new(file, Duration::ZERO);
        let e = dead.get("g/h/a", 100).unwrap_err().to_string();
        assert!(e.contains("backup.timeout_s"), "{e}");
        assert!(dead.put("g/h/b", b"x").is_err());
        assert!(dead.list("g/").is_err());
    }
}
