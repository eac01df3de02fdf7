//! A one-shot HTTP/1.1 client over a fresh TCP connection, reporting *where* it failed: refused
//! (nothing listening), timeout (no answer in time: hung or overloaded), or an I/O / protocol
//! error. Health checks want exactly this distinction, and a fresh connection per request (no
//! pooling) so a wedged keep-alive connection cannot hide a dead server. Used for the agent's
//! probes, the controller's smoke requests and webhooks, and the tests.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Bodies larger than this are refused (a metrics page is a few KiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    #[error("connection refused")]
    Refused,
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("{0}")]
    Io(String),
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub elapsed: Duration,
}

/// GET `uri` within `timeout`.
pub async fn get(uri: &Uri, timeout: Duration) -> Result<Answer, GetError> {
    request(Method::GET, uri, &[], Bytes::new(), timeout).await
}

/// Any request, with extra headers and a body, within `timeout`.
pub async fn request(
    method: Method,
    uri: &Uri,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, GetError> {
    let started = Instant::now();
    match tokio::time::timeout(timeout, request_inner(method, uri, headers, body)).await {
        Ok(Ok((status, body))) => Ok(Answer {
            status,
            body,
            elapsed: started.elapsed(),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(GetError::Timeout(timeout.as_millis() as u64)),
    }
}

async fn request_inner(
    method: Method,
    uri: &Uri,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(StatusCode, Bytes), GetError> {
    let host = uri
        .host()
        .ok_or_else(|| GetError::Io("URL has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => GetError::Refused,
            _ => GetError::Io(format!("connect: {e}")),
        })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| GetError::Io(format!("handshake: {e}")))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "erlmcp-dr");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| GetError::Io(format!("request: {e}")))?;
    let response = sender.send_request(request).await.map_err(|e| {
        if e.is_incomplete_message() || e.is_closed() {
            GetError::Io(format!("connection closed before an answer: {e}"))
        } else {
            GetError::Io(e.to_string())
        }
    })?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| GetError::Io(format!("reading body: {e}")))?
        .to_bytes();
    conn.abort();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn refused_timeout_and_answer_are_told_apart() {
        // refused: bind then drop to get a free, closed port
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let uri: Uri = format!("http://127.0.0.1:{port}/health").parse().unwrap();
        assert_eq!(
            get(&uri, Duration::from_secs(1)).await.unwrap_err(),
            GetError::Refused
        );

        // timeout: a listener that accepts and never answers
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/health", silent.local_addr().unwrap())
            .parse()
            .unwrap();
        let hold = tokio::spawn(async move {
            let (_s, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        assert_eq!(
            get(&uri, Duration::from_millis(200)).await.unwrap_err(),
            GetError::Timeout(200)
        );
        hold.abort();

        // an answer with status and body
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/health", server.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown")
                .await
                .unwrap();
        });
        let a = get(&uri, Duration::from_secs(2)).await.unwrap();
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(&a.body[..], b"down");
    }
}
