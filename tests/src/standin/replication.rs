//! Client receipts replicated like erlmcp's Mnesia tables would be: with `--peer` addresses, only
//! the primary takes client writes, and it answers 201 only once a majority of the group (itself
//! included) stored the receipt. A member that misses a receipt reads it from a peer, so a
//! receipt acknowledged to a client survives the loss of any minority of hosts, and a write to
//! an isolated or fenced primary is refused instead of silently diverging. This is what the
//! scenario suite's "no data lost" check reads back through the load balancer.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;

/// How long a peer may take to store or return a receipt.
const PEER_TIMEOUT: Duration = Duration::from_millis(1000);

/// Copies needed on peers for a majority of a group of `peers + 1`.
pub fn peer_acks_needed(peers: usize) -> usize {
    peers.div_ceil(2)
}

/// Store `bytes` as receipt `id` on every peer; the number that confirmed.
pub async fn replicate(peers: &[SocketAddr], id: &str, bytes: &[u8]) -> usize {
    let body = String::from_utf8_lossy(bytes).into_owned();
    let calls = peers.iter().map(|p| {
        let (p, body, id) = (p.to_string(), body.clone(), id.to_string());
        async move {
            crate::harness::http::request(
                Method::PUT,
                &p,
                &format!("/replica/receipts/{id}"),
                Some(body),
                PEER_TIMEOUT,
            )
            .await
            .is_ok_and(|r| r.status == 201)
        }
    });
    futures_join_all(calls)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count()
}

/// Receipt `id` from the first peer that has it.
pub async fn fetch(peers: &[SocketAddr], id: &str) -> Option<Vec<u8>> {
    for p in peers {
        let r = crate::harness::http::request(
            Method::GET,
            &p.to_string(),
            &format!("/replica/receipts/{id}"),
            None,
            PEER_TIMEOUT,
        )
        .await;
        if let Ok(r) = r
            && r.status == 200
        {
            return Some(r.body.into_bytes());
        }
    }
    None
}

async fn futures_join_all<F: std::future::Future<Output = bool> + Send + 'static>(
    calls: impl Iterator<Item = F>,
) -> Vec<bool> {
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap_or(false));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_majority_counts_the_primary_itself() {
        assert_eq!(super::peer_acks_needed(0), 0);
        assert_eq!(super::peer_acks_needed(1), 1);
        assert_eq!(super::peer_acks_needed(2), 1);
        assert_eq!(super::peer_acks_needed(4), 2);
    }
}
