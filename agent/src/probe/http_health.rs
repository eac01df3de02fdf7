//! HTTP health probe with the runbook's impact classes and a sliding window that turns
//! scattered failures into "intermittent".

use std::collections::VecDeque;
use std::time::Duration;

use dr_proto::domain::{HttpClass, HttpProbe};
use hyper::Uri;

use dr_proto::http_client::{self as http_get, GetError};

/// Latency samples kept for the p99 (≈ 1 minute at the default interval).
const LATENCY_SAMPLES: usize = 120;

/// Memory of recent checks.
#[derive(Debug)]
pub struct HttpWindow {
    size: usize,
    intermittent_failures: u32,
    outcomes: VecDeque<bool>,
    latencies_ms: VecDeque<u32>,
}

impl HttpWindow {
    pub fn new(size: u32, intermittent_failures: u32) -> HttpWindow {
        HttpWindow {
            size: size as usize,
            intermittent_failures,
            outcomes: VecDeque::new(),
            latencies_ms: VecDeque::new(),
        }
    }

    fn push(&mut self, ok: bool, latency_ms: Option<u32>) {
        self.outcomes.push_back(ok);
        while self.outcomes.len() > self.size {
            self.outcomes.pop_front();
        }
        if let Some(l) = latency_ms {
            self.latencies_ms.push_back(l);
            while self.latencies_ms.len() > LATENCY_SAMPLES {
                self.latencies_ms.pop_front();
            }
        }
    }

    fn failures(&self) -> u32 {
        self.outcomes.iter().filter(|ok| !**ok).count() as u32
    }

    fn p99(&self) -> Option<u32> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut v: Vec<u32> = self.latencies_ms.iter().copied().collect();
        v.sort_unstable();
        let idx = ((v.len() as f64) * 0.99).ceil() as usize;
        Some(v[idx.clamp(1, v.len()) - 1])
    }

    /// Fold one check's outcome into a probe result.
    pub fn record(&mut self, outcome: Result<(u16, u32), GetError>) -> HttpProbe {
        let (class, status_code, latency_ms, detail) = match outcome {
            Ok((status, latency)) if status >= 500 => (
                HttpClass::ServerError,
                Some(status),
                latency,
                format!("HTTP {status}"),
            ),
            Ok((status, latency)) if status >= 400 => (
                HttpClass::Error,
                Some(status),
                latency,
                format!("unexpected HTTP {status}"),
            ),
            Ok((status, latency)) => (HttpClass::Ok, Some(status), latency, String::new()),
            Err(GetError::Refused) => (HttpClass::Refused, None, 0, "connection refused".into()),
            Err(GetError::Timeout(ms)) => (
                HttpClass::Timeout,
                None,
                ms as u32,
                format!("no answer within {ms} ms"),
            ),
            Err(GetError::Io(e)) => (HttpClass::Error, None, 0, e),
        };
        let ok = class == HttpClass::Ok;
        let answered = matches!(
            class,
            HttpClass::Ok | HttpClass::ServerError | HttpClass::Error
        ) && status_code.is_some();
        self.push(ok, answered.then_some(latency_ms));
        let failures = self.failures();
        let class = if ok && failures >= self.intermittent_failures {
            HttpClass::Intermittent
        } else {
            class
        };
        HttpProbe {
            class,
            status_code,
            latency_ms,
            p99_ms: self.p99(),
            window_failures: failures,
            window_size: self.outcomes.len() as u32,
            detail,
        }
    }
}

/// Run one check against `uri`.
pub async fn check(uri: &Uri, timeout: Duration, window: &mut HttpWindow) -> HttpProbe {
    let outcome = http_get::get(uri, timeout).await.map(|a| {
        (
            a.status.as_u16(),
            a.elapsed.as_millis().min(u32::MAX as u128) as u32,
        )
    });
    window.record(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_runbook_table() {
        let mut w = HttpWindow::new(10, 2);
        assert_eq!(w.record(Ok((200, 3))).class, HttpClass::Ok);
        assert_eq!(w.record(Ok((503, 3))).class, HttpClass::ServerError);
        assert_eq!(w.record(Err(GetError::Refused)).class, HttpClass::Refused);
        assert_eq!(
            w.record(Err(GetError::Timeout(1000))).class,
            HttpClass::Timeout
        );
        assert_eq!(w.record(Ok((404, 1))).class, HttpClass::Error);
    }

    #[test]
    fn scattered_failures_make_an_ok_check_intermittent_until_they_age_out() {
        let mut w = HttpWindow::new(4, 2);
        w.record(Ok((200, 1)));
        w.record(Ok((500, 1)));
        assert_eq!(
            w.record(Ok((200, 1))).class,
            HttpClass::Ok,
            "one failure is tolerated"
        );
        w.record(Err(GetError::Timeout(10)));
        let p = w.record(Ok((200, 1)));
        assert_eq!(p.class, HttpClass::Intermittent);
        assert_eq!((p.window_failures, p.window_size), (2, 4));
        w.record(Ok((200, 1)));
        w.record(Ok((200, 1)));
        assert_eq!(w.record(Ok((200, 1))).class, HttpClass::Ok);
    }

    #[test]
    fn p99_tracks_slow_answers_only() {
        let mut w = HttpWindow::new(10, 2);
        for _ in 0..99 {
            w.record(Ok((200, 5)));
        }
        w.record(Ok((200, 900)));
        w.record(Err(GetError::Timeout(1000)));
        let p = w.record(Ok((200, 5)));
        assert_eq!(p.p99_ms, Some(5), "one slow answer in 101 is not the p99");
        for _ in 0..5 {
            w.record(Ok((200, 700)));
        }
        assert_eq!(w.record(Ok((200, 5))).p99_ms, Some(700));
    }
}
