//! A small HTTP/1.1 client for tests (GET/POST with a timeout, fresh connection each time).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.body)?)
    }
}

pub async fn request(
    method: Method,
    addr: &str,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    tokio::time::timeout(timeout, async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        conn.abort();
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    })
    .await
    .map_err(|_| anyhow::anyhow!("{addr}{path}: no answer within {timeout:?}"))?
}

pub async fn get(addr: &str, path: &str) -> anyhow::Result<Reply> {
    request(Method::GET, addr, path, None, Duration::from_secs(3)).await
}

pub async fn post(addr: &str, path: &str, body: Option<String>) -> anyhow::Result<Reply> {
    request(Method::POST, addr, path, body, Duration::from_secs(3)).await
}
