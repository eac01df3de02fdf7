//! A real S3-protocol server in-process on 127.0.0.1: s3s (signature checking, multipart) over
//! s3s-fs (objects as files), with hooks to hang or fail part uploads, and `kill` that drops the
//! whole server runtime (listener and every connection) like a crash. ListMultipartUploads, which
//! s3s-fs lacks, is answered from s3s-fs's own on-disk upload records.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

pub const ACCESS_KEY: &str = "drbackuptestkey";
pub const SECRET_KEY: &str = "drbackuptestsecret";

/// Fault injection, shared with the test.
#[derive(Default)]
pub struct Hooks {
    /// Part uploads received.
    pub parts: AtomicUsize,
    /// From this part number of arrivals on (1-based; 0 = off), hang forever.
    pub hang_from: AtomicUsize,
    /// From this arrival on (0 = off), answer 500.
    pub fail_from: AtomicUsize,
    /// Told once when the first hang starts.
    pub hanging: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

struct TestS3 {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    hooks: Arc<Hooks>,
}

#[async_trait::async_trait]
impl S3 for TestS3 {
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.fs.put_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.fs.create_multipart_upload(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.fs.abort_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let n = self.hooks.parts.fetch_add(1, Ordering::SeqCst) + 1;
        let hang = self.hooks.hang_from.load(Ordering::SeqCst);
        if hang != 0 && n >= hang {
            if let Some(tx) = self.hooks.hanging.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::future::pending::<()>().await;
        }
        let fail = self.hooks.fail_from.load(Ordering::SeqCst);
        if fail != 0 && n >= fail {
            return Err(s3_error!(InternalError, "injected part failure"));
        }
        self.fs.upload_part(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.unwrap_or_default();
        let mut uploads = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(|e| s3_error!(InternalError, "{e}"))? {
            let entry = entry.map_err(|e| s3_error!(InternalError, "{e}"))?;
            let name = entry.file_name().into_string().unwrap_or_default();
            // `.bucket-<b64>.object-<b64>.upload-<uuid>.metadata.json`, kept while an upload is open.
            let Some(rest) = name
                .strip_prefix(".bucket-")
                .and_then(|r| r.strip_suffix(".metadata.json"))
            else {
                continue;
            };
            let Some((bucket_b64, rest)) = rest.split_once(".object-") else {
                continue;
            };
            let Some((key_b64, upload_id)) = rest.split_once(".upload-") else {
                continue;
            };
            let (Some(bucket), Some(key)) = (b64url(bucket_b64), b64url(key_b64)) else {
                continue;
            };
            if bucket != input.bucket || !key.starts_with(&prefix) {
                continue;
            }
            if !self.root.join(format!(".upload-{upload_id}.json")).exists() {
                continue;
            }
            let started = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            uploads.push(MultipartUpload {
                key: Some(key),
                upload_id: Some(upload_id.to_owned()),
                initiated: Some(Timestamp::from(started)),
                ..Default::default()
            });
        }
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            uploads: Some(uploads),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }
}

fn b64url(s: &str) -> Option<String> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &c in s.as_bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// A running server; `kill` stops it like a crash.
pub struct S3Server {
    pub addr: SocketAddr,
    pub hooks: Arc<Hooks>,
    rt: Arc<Mutex<Option<tokio::runtime::Runtime>>>,
}

impl S3Server {
    /// Serves `root` on `addr` (port 0 = any). The listener is bound before this returns, so the
    /// server is ready for connections.
    pub fn start(root: &Path, addr: SocketAddr, hooks: Arc<Hooks>) -> S3Server {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let mut builder = S3ServiceBuilder::new(TestS3 {
            fs,
            root: root.canonicalize().unwrap(),
            hooks: hooks.clone(),
        });
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(sock), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            addr,
            hooks,
            rt: Arc::new(Mutex::new(Some(rt))),
        }
    }

    /// A handle that kills the server from another thread.
    pub fn killer(&self) -> impl FnOnce() + Send + 'static {
        let rt = self.rt.clone();
        move || {
            if let Some(rt) = rt.lock().unwrap().take() {
                // Drops every task (listener, connections, the hung request) and waits for the
                // runtime's threads to exit, so the port is free when this returns.
                rt.shutdown_timeout(Duration::from_secs(10));
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        (self.killer())();
    }
}
