//! `s3://BUCKET/PREFIX` with aws-sdk-s3: standard credential chain (or explicit keys), a region,
//! optional custom endpoint with path-style addressing for S3-compatible servers. The store owns a
//! small tokio runtime so the blocking [`ObjectStore`] calls can drive the async SDK; call them
//! from `spawn_blocking` or a plain thread, never from inside an async task.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::s3_io::{S3Reader, S3Writer};
use super::{
    ObjectMeta, ObjectReader, ObjectStore, ObjectWriter, S3_MIN_PART_SIZE, S3FailureKind,
    S3Options, StoreError, SweepReport, check_key,
};

/// An S3 (or S3-compatible) bucket and prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub(super) inner: Arc<S3Inner>,
}

/// Shared by the store and its open readers and writers (which keep the runtime alive).
#[derive(Debug)]
pub(super) struct S3Inner {
    pub(super) rt: RuntimeHolder,
    pub(super) client: Client,
    pub(super) bucket: String,
    prefix: String,
    pub(super) url: String,
    pub(super) part_size: usize,
    pub(super) max_parts_in_flight: usize,
}

/// Owns the runtime; shuts it down without blocking so dropping a store inside async code is safe.
#[derive(Debug)]
pub(super) struct RuntimeHolder(Option<tokio::runtime::Runtime>);

impl RuntimeHolder {
    pub(super) fn get(&self) -> &tokio::runtime::Runtime {
        // Only `drop` takes it out.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("runtime used after drop"))
    }
}

impl Drop for RuntimeHolder {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl S3Inner {
    pub(super) fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn strip(&self, full: &str) -> Option<String> {
        if self.prefix.is_empty() {
            return Some(full.to_owned());
        }
        full.strip_prefix(&self.prefix)?
            .strip_prefix('/')
            .map(str::to_owned)
    }

    /// Turns an SDK error into a [`StoreError`] that says whose fault it probably is.
    pub(super) fn error<E, R>(
        &self,
        op: &'static str,
        key: &str,
        err: &SdkError<E, R>,
        partial_object_left: bool,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (kind, message) = classify(err);
        StoreError::S3 {
            store: self.url.clone(),
            op,
            key: key.to_owned(),
            kind,
            message,
            partial_object_left,
        }
    }
}

fn classify<E, R>(err: &SdkError<E, R>) -> (S3FailureKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let kind = match code {
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "ExpiredToken"
                | "InvalidToken"
                | "InvalidSecurity" => S3FailureKind::Credentials,
                "NoSuchBucket" => S3FailureKind::NoSuchBucket,
                _ if text.contains("403") => S3FailureKind::Credentials,
                _ => S3FailureKind::Service,
            };
            let msg = se.err().message().unwrap_or("");
            (
                kind,
                if code.is_empty() {
                    text
                } else {
                    format!("{code}: {msg}")
                },
            )
        }
        _ if text.contains("credentials") || text.contains("Credentials") => {
            (S3FailureKind::Credentials, text)
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            (S3FailureKind::Network, text)
        }
        _ => (S3FailureKind::Service, text),
    }
}

impl S3Store {
    /// Builds a client for `bucket`/`prefix`. No request is sent yet: a wrong key or endpoint
    /// shows up on the first operation, with an error saying which.
    pub fn connect(bucket: &str, prefix: &str, options: &S3Options) -> Result<Self, StoreError> {
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        if options.part_size < S3_MIN_PART_SIZE {
            return Err(StoreError::BadOptions(format!(
                "S3 part size {} is below the S3 minimum of {S3_MIN_PART_SIZE} bytes (5 MiB)",
                options.part_size
            )));
        }
        if options.max_parts_in_flight == 0 {
            return Err(StoreError::BadOptions(
                "S3 parts in flight must be at least 1".into(),
            ));
        }
        let region = options
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| StoreError::BadOptions(format!(
                "{url}: no S3 region: set the store's region (or AWS_REGION); S3-compatible servers accept any, e.g. us-east-1"
            )))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dr-backup-s3")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::BadOptions(format!("{url}: cannot start the S3 runtime: {e}"))
            })?;
        let mut builder = match &options.credentials {
            Some(c) => aws_sdk_s3::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(Credentials::new(
                    c.access_key_id.clone(),
                    c.secret_access_key.clone(),
                    None,
                    None,
                    "dr-backup",
                )),
            None => {
                let loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(region.clone()));
                aws_sdk_s3::config::Builder::from(&rt.block_on(loader.load()))
            }
        };
        builder = builder
            .region(Region::new(region))
            .force_path_style(options.force_path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(options.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            )
            // S3-compatible servers vary in their support of the newer default checksums; every
            // stored byte is covered by our own SHA-256 anyway.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(ep) = &options.endpoint {
            builder = builder.endpoint_url(ep.clone());
        }
        let client = Client::from_conf(builder.build());
        Ok(Self {
            inner: Arc::new(S3Inner {
                rt: RuntimeHolder(Some(rt)),
                client,
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                url,
                part_size: options.part_size,
                max_parts_in_flight: options.max_parts_in_flight,
            }),
        })
    }
}

impl ObjectStore for S3Store {
    fn url(&self) -> String {
        self.inner.url.clone()
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        check_key(key)?;
        Ok(Box::new(S3Writer::new(self.inner.clone(), key)))
    }

    fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        check_key(key)?;
        let inner = &self.inner;
        let sent = inner.rt.get().block_on(
            inner
                .client
                .get_object()
                .bucket(&inner.bucket)
                .key(inner.full_key(key))
                .send(),
        );
        let out = match sent {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StoreError::NotFound {
                    store: inner.url.clone(),
                    key: key.to_owned(),
                });
            }
            Err(e) => return Err(inner.error("get", key, &e, false)),
        };
        let len = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
        Ok(ObjectReader::new(
            key,
            len,
            Box::new(S3Reader::spawn(inner.clone(), out.body)),
        ))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let inner = &self.inner;
        let full_prefix = inner.full_key(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = inner
                .client
                .list_objects_v2()
                .bucket(&inner.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take());
            let page = inner
                .rt
                .get()
                .block_on(req.send())
                .map_err(|e| inner.error("list", prefix, &e, false))?;
            for obj in page.contents() {
                let Some(key) = obj.key().and_then(|k| inner.strip(k)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key,
                    size: u64::try_from(obj.size().unwrap_or(0)).unwrap_or(0),
                    modified: obj
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let inner = &self.inner;
        let req = inner
            .client
            .delete_object()
            .bucket(&inner.bucket)
            .key(inner.full_key(key));
        inner
            .rt
            .get()
            .block_on(req.send())
            .map_err(|e| inner.error("delete", key, &e, false))?;
        Ok(())
    }

    fn sweep_stale_uploads(&self, older_than: Duration) -> Result<SweepReport, StoreError> {
        let inner = &self.inner;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let prefix = inner.full_key("");
        let mut report = SweepReport::default();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let req = inner
                .client
                .list_multipart_uploads()
                .bucket(&inner.bucket)
                .prefix(&prefix)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take());
            let page = inner
                .rt
                .get()
                .block_on(req.send())
                .map_err(|e| inner.error("list multipart uploads", &prefix, &e, false))?;
            for up in page.uploads() {
                let (Some(key), Some(id)) = (up.key(), up.upload_id()) else {
                    continue;
                };
                let started = up.initiated().and_then(|t| SystemTime::try_from(*t).ok());
                if started.is_some_and(|t| t > cutoff) {
                    continue;
                }
                let req = inner
                    .client
                    .abort_multipart_upload()
                    .bucket(&inner.bucket)
                    .key(key)
                    .upload_id(id);
                inner
                    .rt
                    .get()
                    .block_on(req.send())
                    .map_err(|e| inner.error("abort multipart upload", key, &e, true))?;
                report.removed.push(format!("{key} (upload {id})"));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
        Ok(report)
    }
}
