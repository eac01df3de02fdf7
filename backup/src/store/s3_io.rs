//! Sync bridges to the async S3 SDK. The writer fills one part buffer and hands full parts to
//! upload tasks, at most `max_parts_in_flight` at once (memory ≈ `(in flight + 1) × part size`);
//! any failure aborts the multipart upload. The reader pumps the response body through a small
//! bounded channel so network and decompression overlap.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::StoreError;
use super::s3::S3Inner;

/// Writes one object: a single PUT when it fits one part, else a multipart upload.
pub(super) struct S3Writer {
    inner: Arc<S3Inner>,
    key: String,
    buf: Vec<u8>,
    upload: Option<Upload>,
    closed: bool,
}

struct Upload {
    id: String,
    next_part: i32,
    tasks: Vec<JoinHandle<Option<CompletedPart>>>,
    slots: Arc<Semaphore>,
    /// First part failure, set by the upload task that saw it.
    failed: Arc<Mutex<Option<StoreError>>>,
}

impl S3Writer {
    pub(super) fn new(inner: Arc<S3Inner>, key: &str) -> Self {
        Self {
            inner,
            key: key.to_owned(),
            buf: Vec::new(),
            upload: None,
            closed: false,
        }
    }

    fn first_failure(&self) -> Option<String> {
        let up = self.upload.as_ref()?;
        let guard = up.failed.lock().ok()?;
        guard.as_ref().map(ToString::to_string)
    }

    /// Starts the multipart upload if needed and hands the full buffer to an upload task,
    /// waiting for a free slot first.
    fn ship_part(&mut self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        if self.upload.is_none() {
            let req = inner
                .client
                .create_multipart_upload()
                .bucket(&inner.bucket)
                .key(inner.full_key(&self.key));
            let out = inner
                .rt
                .get()
                .block_on(req.send())
                .map_err(|e| inner.error("create multipart upload", &self.key, &e, false))?;
            let Some(id) = out.upload_id().map(str::to_owned) else {
                return Err(StoreError::S3 {
                    store: inner.url.clone(),
                    op: "create multipart upload",
                    key: self.key.clone(),
                    kind: super::S3FailureKind::Service,
                    message: "the response has no upload id".into(),
                    partial_object_left: false,
                });
            };
            self.upload = Some(Upload {
                id,
                next_part: 1,
                tasks: Vec::new(),
                slots: Arc::new(Semaphore::new(inner.max_parts_in_flight)),
                failed: Arc::new(Mutex::new(None)),
            });
        }
        let Some(up) = self.upload.as_mut() else {
            return Ok(());
        };
        let permit = inner
            .rt
            .get()
            .block_on(up.slots.clone().acquire_owned())
            .map_err(|_| StoreError::BadOptions("upload slots closed".into()))?;
        let part_number = up.next_part;
        up.next_part += 1;
        let body = std::mem::replace(&mut self.buf, Vec::with_capacity(inner.part_size));
        let (upload_id, key, failed, task_inner) = (
            up.id.clone(),
            self.key.clone(),
            up.failed.clone(),
            inner.clone(),
        );
        let task = inner.rt.get().spawn(async move {
            let _permit = permit;
            let req = task_inner
                .client
                .upload_part()
                .bucket(&task_inner.bucket)
                .key(task_inner.full_key(&key))
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(body));
            match req.send().await {
                Ok(out) => Some(
                    CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .build(),
                ),
                Err(e) => {
                    let err = task_inner.error("upload part", &key, &e, true);
                    if let Ok(mut slot) = failed.lock() {
                        slot.get_or_insert(err);
                    }
                    None
                }
            }
        });
        up.tasks.push(task);
        Ok(())
    }

    fn complete(&mut self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        if self.upload.is_none() {
            let body = ByteStream::from(std::mem::take(&mut self.buf));
            let req = inner
                .client
                .put_object()
                .bucket(&inner.bucket)
                .key(inner.full_key(&self.key))
                .body(body);
            inner
                .rt
                .get()
                .block_on(req.send())
                .map_err(|e| inner.error("put", &self.key, &e, false))?;
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.ship_part()?;
        }
        let Some(up) = self.upload.as_mut() else {
            return Ok(());
        };
        let tasks = std::mem::take(&mut up.tasks);
        let results = inner.rt.get().block_on(async {
            let mut parts = Vec::with_capacity(tasks.len());
            for t in tasks {
                parts.push(t.await.ok().flatten());
            }
            parts
        });
        if let Some(msg) = self.first_failure() {
            return Err(self.failure("upload part", msg));
        }
        let Some(parts) = results.into_iter().collect::<Option<Vec<_>>>() else {
            return Err(self.failure(
                "upload part",
                "an upload task ended without a result".into(),
            ));
        };
        let Some(up) = self.upload.as_ref() else {
            return Ok(());
        };
        let req = inner
            .client
            .complete_multipart_upload()
            .bucket(&inner.bucket)
            .key(inner.full_key(&self.key))
            .upload_id(&up.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        inner
            .rt
            .get()
            .block_on(req.send())
            .map_err(|e| inner.error("complete multipart upload", &self.key, &e, true))?;
        Ok(())
    }

    fn failure(&self, op: &'static str, message: String) -> StoreError {
        StoreError::S3 {
            store: self.inner.url.clone(),
            op,
            key: self.key.clone(),
            kind: super::S3FailureKind::Service,
            message,
            partial_object_left: true,
        }
    }

    /// Aborts the multipart upload (if any). Returns whether it is certainly gone.
    fn abort_upload(&mut self) -> Result<(), StoreError> {
        let Some(up) = self.upload.take() else {
            return Ok(());
        };
        for t in &up.tasks {
            t.abort();
        }
        let inner = &self.inner;
        let req = inner
            .client
            .abort_multipart_upload()
            .bucket(&inner.bucket)
            .key(inner.full_key(&self.key))
            .upload_id(&up.id);
        inner
            .rt
            .get()
            .block_on(req.send())
            .map_err(|e| inner.error("abort multipart upload", &self.key, &e, true))?;
        Ok(())
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::Error::other("object writer already finished"));
        }
        if let Some(msg) = self.first_failure() {
            return Err(io::Error::other(msg));
        }
        let part_size = self.inner.part_size;
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(part_size);
        }
        let take = data.len().min(part_size - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == part_size {
            self.ship_part().map_err(io::Error::other)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl super::ObjectWriter for S3Writer {
    fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        self.closed = true;
        let total = self.total_written();
        match self.complete() {
            Ok(_) => {
                self.upload = None;
                Ok(total)
            }
            Err(e) => {
                let abort = self.abort_upload();
                Err(match abort {
                    // Aborted cleanly: nothing is left behind.
                    Ok(()) => clear_partial(e),
                    Err(_) => e,
                })
            }
        }
    }

    fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.closed = true;
        self.abort_upload()
    }
}

impl S3Writer {
    fn total_written(&self) -> u64 {
        let parts = self
            .upload
            .as_ref()
            .map_or(0, |u| u64::try_from(u.next_part - 1).unwrap_or(0));
        parts * self.inner.part_size as u64 + self.buf.len() as u64
    }
}

fn clear_partial(e: StoreError) -> StoreError {
    match e {
        StoreError::S3 {
            store,
            op,
            key,
            kind,
            message,
            ..
        } => StoreError::S3 {
            store,
            op,
            key,
            kind,
            message,
            partial_object_left: false,
        },
        other => other,
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Dropped without finish/abort (an error path): abort in the background, best effort.
        if let Some(up) = self.upload.take() {
            for t in &up.tasks {
                t.abort();
            }
            let inner = self.inner.clone();
            let key = self.key.clone();
            drop(inner.rt.get().spawn({
                let inner = inner.clone();
                async move {
                    let _ = inner
                        .client
                        .abort_multipart_upload()
                        .bucket(&inner.bucket)
                        .key(inner.full_key(&key))
                        .upload_id(up.id)
                        .send()
                        .await;
                }
            }));
        }
    }
}

/// Streams a GET body.
pub(super) struct S3Reader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    _inner: Arc<S3Inner>,
}

impl S3Reader {
    pub(super) fn spawn(inner: Arc<S3Inner>, mut body: ByteStream) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        inner.rt.get().spawn(async move {
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx
                            .send(Err(io::Error::other(format!("S3 body stream: {e}"))))
                            .await;
                        break;
                    }
                }
            }
        });
        Self {
            rx,
            current: Bytes::new(),
            _inner: inner,
        }
    }
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
