//! A TCP proxy of the test harness that delays every chunk it forwards, in both directions, by
//! a base delay plus random jitter, switchable at runtime (this kernel has no `tc netem`).
//! Order is kept: a chunk never overtakes the one before it, so jitter stretches the stream
//! the way a slow path would, without reordering bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Default)]
struct Knobs {
    delay_ms: AtomicU64,
    jitter_ms: AtomicU64,
    /// Chunks forwarded with a delay (proof the fault took effect).
    delayed_chunks: AtomicU64,
}

pub struct DelayProxy {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    knobs: Arc<Knobs>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Listen on `listen` (port 0: any) and forward every connection to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> anyhow::Result<DelayProxy> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let knobs = Arc::new(Knobs::default());
        let k = knobs.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let k = k.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, k.clone()), pump(ro, wi, k));
                });
            }
        });
        Ok(DelayProxy {
            listen,
            target,
            knobs,
            task,
        })
    }

    /// Delay each chunk by `delay` plus a uniform random `0..=2*jitter` minus `jitter`.
    pub fn set_delay(&self, delay: Duration, jitter: Duration) {
        self.knobs
            .jitter_ms
            .store(jitter.as_millis() as u64, Ordering::SeqCst);
        self.knobs
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn clear(&self) {
        self.set_delay(Duration::ZERO, Duration::ZERO);
    }

    pub fn delayed_chunks(&self) -> u64 {
        self.knobs.delayed_chunks.load(Ordering::SeqCst)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copy `from` to `to`, each chunk held until its due time (never before the previous one's).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    knobs: Arc<Knobs>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut last_due = Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = knobs.delay_ms.load(Ordering::SeqCst);
            let jitter = knobs.jitter_ms.load(Ordering::SeqCst);
            let ms = if delay == 0 && jitter == 0 {
                0
            } else {
                knobs.delayed_chunks.fetch_add(1, Ordering::Relaxed);
                let j = fastrand::u64(0..=2 * jitter);
                (delay + j).saturating_sub(jitter)
            };
            let due = (Instant::now() + Duration::from_millis(ms)).max(last_due);
            last_due = due;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
