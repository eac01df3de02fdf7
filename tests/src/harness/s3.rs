//! A real S3-protocol server (s3s over s3s-fs, signatures checked) in the test process, on its
//! own runtime, for the tests that back up to `s3://`. `bind` picks the address: loopback, or the
//! root namespace's address on a test network so agents in namespaces reach it.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub struct S3Server {
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl S3Server {
    /// Serve the buckets under `root` (each a directory) on a free port of 127.0.0.1.
    pub fn start(root: &Path, access_key: &str, secret_key: &str) -> anyhow::Result<S3Server> {
        S3Server::start_on([127, 0, 0, 1].into(), root, access_key, secret_key)
    }

    /// Serve the buckets under `root` on a free port of `ip`.
    pub fn start_on(
        ip: IpAddr,
        root: &Path,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<S3Server> {
        let listener = std::net::TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let service = builder.build();
        rt.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
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
        Ok(S3Server { addr, rt: Some(rt) })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // dropped inside the test's runtime: must not block
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
