//! The stand-in's switchable faults and metric overrides.

use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Faults {
    pub hang: bool,
    pub error5xx: bool,
    pub slow_ms: u64,
    /// Alternate healthy / 503 with this period.
    pub flap_period_ms: Option<u64>,
    pub memory_mib_per_s: u64,
}

impl Faults {
    /// Whether a flapping service is in its failing half right now.
    pub fn flapping_down(&self, since: Instant, now: Instant) -> bool {
        match self.flap_period_ms {
            Some(p) if p > 0 => {
                let n = now.duration_since(since).as_millis() as u64 / p;
                n % 2 == 1
            }
            _ => false,
        }
    }

    pub fn failing(&self, since: Instant, now: Instant) -> bool {
        self.error5xx || self.flapping_down(since, now)
    }

    pub fn slow(&self) -> Option<Duration> {
        (self.slow_ms > 0).then(|| Duration::from_millis(self.slow_ms))
    }
}

/// Values the metrics report instead of the measured ones (threshold tests).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    pub memory_bytes: Option<f64>,
    pub connections: Option<f64>,
    pub queue_depth: Option<f64>,
    pub error_rate: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flapping_alternates_by_period() {
        let f = Faults {
            flap_period_ms: Some(100),
            ..Faults::default()
        };
        let t0 = Instant::now();
        assert!(!f.failing(t0, t0 + Duration::from_millis(50)));
        assert!(f.failing(t0, t0 + Duration::from_millis(150)));
        assert!(!f.failing(t0, t0 + Duration::from_millis(250)));
    }
}
