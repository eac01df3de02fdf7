//! A client that keeps sending requests through the load balancer and records who answered,
//! for outage and split-brain checks: the outage is the gap between the last good answer from
//! the old primary and the first from the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;

#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    /// `Some((host, epoch))` for a 200 answer.
    pub answer: Option<(String, u64)>,
}

pub struct LbClient {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: tokio_util_like::Stop,
    task: tokio::task::JoinHandle<()>,
}

mod tokio_util_like {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone, Default)]
    pub struct Stop(Arc<AtomicBool>);

    impl Stop {
        pub fn set(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
        pub fn is_set(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }
}

impl LbClient {
    /// Send `GET /` to `lb` every `every` (each with a short timeout) until stopped.
    pub fn start(lb: String, every: Duration) -> LbClient {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop = tokio_util_like::Stop::default();
        let (s2, stop2) = (samples.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !stop2.is_set() {
                let at = Instant::now();
                let r =
                    super::http::request(Method::GET, &lb, "/", None, Duration::from_millis(500))
                        .await;
                let answer = r.ok().filter(|r| r.status == 200).and_then(|r| {
                    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
                    Some((
                        v["host"].as_str()?.to_string(),
                        v["epoch"].as_u64().unwrap_or(0),
                    ))
                });
                s2.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Sample { at, answer });
                tokio::time::sleep(every.saturating_sub(at.elapsed())).await;
            }
        });
        LbClient {
            samples,
            stop,
            task,
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub async fn stop(self) -> Vec<Sample> {
        self.stop.set();
        let samples = self.samples.clone();
        let _ = self.task.await;
        samples.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Hosts that answered for each epoch they reported.
pub fn hosts_per_epoch(samples: &[Sample]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut m: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for s in samples {
        if let Some((h, e)) = &s.answer {
            m.entry(*e).or_default().insert(h.clone());
        }
    }
    m
}

/// Hosts in the order they answered, each run collapsed.
pub fn answer_sequence(samples: &[Sample]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in samples {
        if let Some((h, _)) = &s.answer
            && out.last() != Some(h)
        {
            out.push(h.clone());
        }
    }
    out
}

/// The gap between the last answer from `old` and the first from `new` after it.
pub fn outage(samples: &[Sample], old: &str, new: &str) -> Option<Duration> {
    let first_new = samples
        .iter()
        .position(|s| s.answer.as_ref().is_some_and(|(h, _)| h == new))?;
    let last_old = samples[..first_new]
        .iter()
        .rposition(|s| s.answer.as_ref().is_some_and(|(h, _)| h == old))?;
    Some(samples[first_new].at - samples[last_old].at)
}

/// Total time covered by failed requests (each failure counts until the next sample).
pub fn error_time(samples: &[Sample]) -> Duration {
    let mut total = Duration::ZERO;
    for w in samples.windows(2) {
        if w[0].answer.is_none() {
            total += w[1].at - w[0].at;
        }
    }
    total
}
