//! HTTP helpers for tests, on top of the project's own one-shot client.

use std::time::Duration;

use dr_proto::http_client::{self, GetError};
use hyper::Method;

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
) -> Result<Reply, GetError> {
    let uri: hyper::Uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| GetError::Io(format!("bad URL: {e}")))?;
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    let a = http_client::request(
        method,
        &uri,
        headers,
        body.unwrap_or_default().into(),
        timeout,
    )
    .await?;
    Ok(Reply {
        status: a.status.as_u16(),
        body: String::from_utf8_lossy(&a.body).into_owned(),
    })
}

pub async fn get(addr: &str, path: &str) -> anyhow::Result<Reply> {
    Ok(request(Method::GET, addr, path, None, Duration::from_secs(3)).await?)
}

pub async fn post(addr: &str, path: &str, body: Option<String>) -> anyhow::Result<Reply> {
    Ok(request(Method::POST, addr, path, body, Duration::from_secs(3)).await?)
}
