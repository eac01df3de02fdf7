//! Member classification: one health report → green / yellow / red with readable reasons.
//!
//! The defaults are the runbook's METRICS & THRESHOLDS table and its message-queue guidance;
//! every band is configurable under `[thresholds]`. A value at or above `yellow` is a warning, a
//! value above `red` is critical (the runbook: "< 100ms" green, "100-500ms" warning, "> 500ms"
//! critical). Pure: no clock, no I/O.

use dr_proto::domain::{
    ErlangProbe, Health, HealthReport, HostProbe, HttpClass, HttpProbe, MetricsProbe, PortState,
    ProcessState,
};
use serde::Deserialize;

/// A warning and a critical level for one measure.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub yellow: f64,
    pub red: f64,
}

impl Band {
    const fn new(yellow: f64, red: f64) -> Band {
        Band { yellow, red }
    }

    pub fn level(&self, value: f64) -> Health {
        if value > self.red {
            Health::Red
        } else if value >= self.yellow {
            Health::Yellow
        } else {
            Health::Green
        }
    }

    /// Why a band is unusable, for the config loader to report under the band's key.
    pub fn problem(&self) -> Option<String> {
        if !self.yellow.is_finite() || !self.red.is_finite() || self.yellow < 0.0 {
            return Some("yellow and red must be finite, non-negative numbers".into());
        }
        if self.yellow > self.red {
            return Some(format!(
                "yellow ({}) must not be above red ({})",
                self.yellow, self.red
            ));
        }
        None
    }
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// The runbook's thresholds (METRICS & THRESHOLDS, message queue depth).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub response_p99_ms: Band,
    pub error_rate: Band,
    pub cpu_percent: Band,
    pub memory_bytes: Band,
    pub connections: Band,
    pub queue_depth: Band,
    /// Free space on the data directory's filesystem, in percent: below `yellow` is a warning,
    /// below `red` critical (lower is worse, unlike the other bands).
    pub disk_free_percent_min: Band,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            response_p99_ms: Band::new(100.0, 500.0),
            error_rate: Band::new(0.001, 0.05),
            cpu_percent: Band::new(70.0, 85.0),
            memory_bytes: Band::new(500.0 * MIB, GIB),
            connections: Band::new(1000.0, 5000.0),
            queue_depth: Band::new(100.0, 1000.0),
            disk_free_percent_min: Band::new(15.0, 5.0),
        }
    }
}

impl Thresholds {
    /// Each band with its config key, for validation.
    pub fn bands(&self) -> [(&'static str, &Band); 6] {
        // disk_free_percent_min is checked separately (its yellow is above its red)
        [
            ("thresholds.response_p99_ms", &self.response_p99_ms),
            ("thresholds.error_rate", &self.error_rate),
            ("thresholds.cpu_percent", &self.cpu_percent),
            ("thresholds.memory_bytes", &self.memory_bytes),
            ("thresholds.connections", &self.connections),
            ("thresholds.queue_depth", &self.queue_depth),
        ]
    }
}

/// Health with the sentences that justify it, worst first.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub health: Health,
    pub reasons: Vec<String>,
}

impl Verdict {
    pub fn unknown(reason: impl Into<String>) -> Verdict {
        Verdict {
            health: Health::Unknown,
            reasons: vec![reason.into()],
        }
    }
}

#[derive(Default)]
struct Findings(Vec<(Health, String)>);

impl Findings {
    fn add(&mut self, health: Health, reason: String) {
        self.0.push((health, reason));
    }

    fn verdict(mut self) -> Verdict {
        // stable sort keeps probe order within one severity
        self.0.sort_by_key(|(h, _)| std::cmp::Reverse(severity(*h)));
        let health = self
            .0
            .first()
            .map(|(h, _)| *h)
            .filter(|h| *h != Health::Green)
            .unwrap_or(Health::Green);
        Verdict {
            health,
            reasons: self.0.into_iter().map(|(_, r)| r).collect(),
        }
    }
}

fn severity(h: Health) -> u8 {
    match h {
        Health::Green => 0,
        Health::Unknown => 1,
        Health::Yellow => 2,
        Health::Red => 3,
    }
}

/// Human units for the reasons: `1.3 GiB`, `600 MiB`.
pub fn fmt_bytes(b: f64) -> String {
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.0} MiB", b / MIB)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn fmt_percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p < 1.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn compare(value: f64, band: &Band, fmt: impl Fn(f64) -> String) -> Option<(Health, String)> {
    match band.level(value) {
        Health::Red => Some((
            Health::Red,
            format!("{} > {} (critical)", fmt(value), fmt(band.red)),
        )),
        Health::Yellow => Some((
            Health::Yellow,
            format!("{} ≥ {} (warning)", fmt(value), fmt(band.yellow)),
        )),
        _ => None,
    }
}

fn classify_http(http: &HttpProbe, t: &Thresholds, out: &mut Findings) {
    let window = || {
        format!(
            "{} of last {} checks failed",
            http.window_failures, http.window_size
        )
    };
    match http.class {
        HttpClass::Ok => {}
        HttpClass::Timeout => out.add(
            Health::Red,
            format!(
                "health check timed out after {} ms: process hung or overloaded",
                http.latency_ms
            ),
        ),
        HttpClass::ServerError => out.add(
            Health::Red,
            format!(
                "health check returned HTTP {}: application error (check logs)",
                http.status_code.unwrap_or(500)
            ),
        ),
        HttpClass::Refused => out.add(
            Health::Red,
            "health check connection refused: port not listening".to_string(),
        ),
        HttpClass::Intermittent => out.add(
            Health::Yellow,
            format!(
                "intermittent health failures: {} (rate limiting or queue full)",
                window()
            ),
        ),
        HttpClass::Error => out.add(Health::Red, format!("health check failed: {}", http.detail)),
    }
    if let Some(p99) = http.p99_ms
        && let Some((h, r)) = compare(f64::from(p99), &t.response_p99_ms, |v| format!("{v:.0} ms"))
    {
        out.add(h, format!("response time p99 {r}"));
    }
}

fn classify_metrics(m: &MetricsProbe, t: &Thresholds, out: &mut Findings) {
    let metrics = match &m.result {
        Ok(metrics) => metrics,
        Err(e) => {
            out.add(Health::Yellow, format!("metrics scrape failed: {e}"));
            return;
        }
    };
    if let Some(v) = metrics.memory_bytes
        && let Some((h, r)) = compare(v, &t.memory_bytes, fmt_bytes)
    {
        let oom = if v > 2.0 * GIB {
            ", investigate OOM"
        } else {
            ""
        };
        out.add(h, format!("memory {r}{oom}"));
    }
    if let Some(v) = metrics.queue_depth
        && let Some((h, r)) = compare(v, &t.queue_depth, |v| format!("{v:.0}"))
    {
        let meaning = if h == Health::Red {
            "circuit breaker may open"
        } else {
            "backpressure active"
        };
        out.add(h, format!("message queue {r}: {meaning}"));
    }
    if let Some(v) = metrics.error_rate
        && let Some((h, r)) = compare(v, &t.error_rate, fmt_percent)
    {
        out.add(h, format!("error rate {r}"));
    }
    if let Some(v) = metrics.connections
        && let Some((h, r)) = compare(v, &t.connections, |v| format!("{v:.0}"))
    {
        out.add(h, format!("connections {r}"));
    }
}

/// Classify one report.
pub fn classify_report(report: &HealthReport, t: &Thresholds) -> Verdict {
    let mut out = Findings::default();
    if let Some(p) = &report.process {
        match p.state {
            ProcessState::Running => {}
            ProcessState::NotRunning => {
                out.add(Health::Red, format!("process not running ({})", p.detail))
            }
            ProcessState::Stopped => out.add(
                Health::Red,
                format!("process stopped, will not answer ({})", p.detail),
            ),
            ProcessState::Unknown => out.add(
                Health::Yellow,
                format!("process state unknown ({})", p.detail),
            ),
        }
    }
    for port in &report.ports {
        match port.state {
            PortState::Listening => {}
            PortState::Refused => out.add(
                Health::Red,
                format!("port {} not listening (connection refused)", port.port),
            ),
            PortState::Timeout => out.add(
                Health::Red,
                format!("port {} did not accept a connection in time", port.port),
            ),
            PortState::Error => out.add(
                Health::Red,
                format!("port {} check failed: {}", port.port, port.detail),
            ),
        }
    }
    if let Some(http) = &report.http {
        classify_http(http, t, &mut out);
    }
    if let Some(m) = &report.metrics {
        classify_metrics(m, t, &mut out);
    }
    if let Some(e) = &report.erlang {
        classify_erlang(e, t, &mut out);
    }
    if let Some(h) = &report.host {
        classify_host(h, t, &mut out);
    }
    if let Some(l) = &report.log {
        match &l.result {
            Ok(f) => {
                if let Some(rate) = f.error_rate
                    && let Some((h, r)) = compare(rate, &t.error_rate, fmt_percent)
                {
                    out.add(
                        h,
                        format!(
                            "log error rate {r} ({} error lines in the last minute)",
                            f.errors_last_minute
                        ),
                    );
                }
            }
            Err(e) => out.add(Health::Yellow, format!("log not readable: {e}")),
        }
    }
    out.verdict()
}

fn classify_erlang(e: &ErlangProbe, t: &Thresholds, out: &mut Findings) {
    if !e.reachable {
        out.add(
            Health::Red,
            format!("Erlang node unreachable: {}", e.reason),
        );
        return;
    }
    if let Some(v) = e.memory_total_bytes
        && let Some((h, r)) = compare(v, &t.memory_bytes, fmt_bytes)
    {
        let oom = if v > 2.0 * GIB {
            ", investigate OOM"
        } else {
            ""
        };
        out.add(h, format!("erlang:memory(total) {r}{oom}"));
    }
    if let Some(v) = e.message_queue_len
        && let Some((h, r)) = compare(v, &t.queue_depth, |v| format!("{v:.0}"))
    {
        let meaning = if h == Health::Red {
            "circuit breaker may open"
        } else {
            "backpressure active"
        };
        out.add(h, format!("message_queue_len {r}: {meaning}"));
    }
    for rpc in &e.rpcs {
        if let Err(err) = &rpc.outcome {
            out.add(
                Health::Yellow,
                format!("health RPC {} failed: {err}", rpc.name),
            );
        }
    }
}

fn classify_host(h: &HostProbe, t: &Thresholds, out: &mut Findings) {
    if let Some((health, r)) = compare(h.cpu_percent, &t.cpu_percent, |v| format!("{v:.0}%")) {
        out.add(health, format!("host CPU {r}"));
    }
    if h.disk_total_bytes > 0 {
        let free = h.disk_free_bytes as f64 / h.disk_total_bytes as f64 * 100.0;
        if free < t.disk_free_percent_min.red {
            out.add(
                Health::Red,
                format!(
                    "data disk {free:.1}% free < {:.0}% (critical): backups and restores will fail",
                    t.disk_free_percent_min.red
                ),
            );
        } else if free < t.disk_free_percent_min.yellow {
            out.add(
                Health::Yellow,
                format!(
                    "data disk {free:.1}% free < {:.0}% (warning)",
                    t.disk_free_percent_min.yellow
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_proto::domain::{PortProbe, ProcessProbe, ServiceMetrics};

    fn healthy() -> HealthReport {
        HealthReport {
            seq: 1,
            probed_at_unix_ms: 0,
            process: Some(ProcessProbe {
                state: ProcessState::Running,
                pid: Some(10),
                detail: "pid 10".into(),
            }),
            ports: vec![PortProbe {
                port: 8080,
                state: PortState::Listening,
                detail: String::new(),
            }],
            http: Some(HttpProbe {
                class: HttpClass::Ok,
                status_code: Some(200),
                latency_ms: 2,
                p99_ms: Some(5),
                window_failures: 0,
                window_size: 10,
                detail: String::new(),
            }),
            metrics: Some(MetricsProbe {
                result: Ok(ServiceMetrics {
                    memory_bytes: Some(64.0 * MIB),
                    connections: Some(10.0),
                    queue_depth: Some(0.0),
                    error_rate: Some(0.0),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    fn with_metrics(f: impl FnOnce(&mut ServiceMetrics)) -> HealthReport {
        let mut r = healthy();
        if let Some(MetricsProbe { result: Ok(m) }) = &mut r.metrics {
            f(m);
        }
        r
    }

    #[test]
    fn a_healthy_report_is_green_without_reasons() {
        let v = classify_report(&healthy(), &Thresholds::default());
        assert_eq!(
            v,
            Verdict {
                health: Health::Green,
                reasons: vec![]
            }
        );
    }

    #[test]
    fn dead_process_is_red_and_says_so_first() {
        let mut r = healthy();
        r.process.as_mut().unwrap().state = ProcessState::NotRunning;
        r.process.as_mut().unwrap().detail = "pid 10 from /run/x.pid: no such process".into();
        r.http.as_mut().unwrap().class = HttpClass::Refused;
        let v = classify_report(&r, &Thresholds::default());
        assert_eq!(v.health, Health::Red);
        assert_eq!(
            v.reasons[0],
            "process not running (pid 10 from /run/x.pid: no such process)"
        );
        assert!(v.reasons.iter().any(|r| r.contains("connection refused")));
    }

    #[test]
    fn runbook_impact_classes_map_to_their_meaning() {
        let cases = [
            (HttpClass::Timeout, Health::Red, "timed out"),
            (HttpClass::ServerError, Health::Red, "application error"),
            (HttpClass::Refused, Health::Red, "port not listening"),
            (
                HttpClass::Intermittent,
                Health::Yellow,
                "rate limiting or queue full",
            ),
        ];
        for (class, health, words) in cases {
            let mut r = healthy();
            r.http.as_mut().unwrap().class = class;
            r.http.as_mut().unwrap().status_code = Some(503);
            let v = classify_report(&r, &Thresholds::default());
            assert_eq!(v.health, health, "{class:?}");
            assert!(v.reasons[0].contains(words), "{class:?}: {:?}", v.reasons);
        }
    }

    #[test]
    fn memory_reason_reads_like_the_runbook() {
        let r = with_metrics(|m| m.memory_bytes = Some(1.3 * GIB));
        let v = classify_report(&r, &Thresholds::default());
        assert_eq!(v.health, Health::Red);
        assert_eq!(v.reasons, vec!["memory 1.3 GiB > 1.0 GiB (critical)"]);

        let r = with_metrics(|m| m.memory_bytes = Some(2.5 * GIB));
        let v = classify_report(&r, &Thresholds::default());
        assert!(v.reasons[0].ends_with("investigate OOM"), "{:?}", v.reasons);

        let r = with_metrics(|m| m.memory_bytes = Some(600.0 * MIB));
        let v = classify_report(&r, &Thresholds::default());
        assert_eq!(v.health, Health::Yellow);
        assert_eq!(v.reasons, vec!["memory 600 MiB ≥ 500 MiB (warning)"]);
    }

    #[test]
    fn queue_depth_bands_follow_the_runbook() {
        let t = Thresholds::default();
        for (depth, health) in [
            (99.0, Health::Green),
            (100.0, Health::Yellow),
            (1000.0, Health::Yellow),
            (1001.0, Health::Red),
        ] {
            let v = classify_report(&with_metrics(|m| m.queue_depth = Some(depth)), &t);
            assert_eq!(v.health, health, "depth {depth}");
        }
        let v = classify_report(&with_metrics(|m| m.queue_depth = Some(150.0)), &t);
        assert_eq!(
            v.reasons,
            vec!["message queue 150 ≥ 100 (warning): backpressure active"]
        );
    }

    #[test]
    fn error_rate_and_connections_and_latency() {
        let t = Thresholds::default();
        let v = classify_report(&with_metrics(|m| m.error_rate = Some(0.06)), &t);
        assert_eq!(v.reasons, vec!["error rate 6.0% > 5.0% (critical)"]);
        let v = classify_report(&with_metrics(|m| m.connections = Some(1200.0)), &t);
        assert_eq!(v.health, Health::Yellow);
        let mut r = healthy();
        r.http.as_mut().unwrap().p99_ms = Some(750);
        let v = classify_report(&r, &t);
        assert_eq!(
            v.reasons,
            vec!["response time p99 750 ms > 500 ms (critical)"]
        );
    }

    #[test]
    fn thresholds_are_configurable() {
        let t = Thresholds {
            queue_depth: Band::new(10.0, 20.0),
            ..Thresholds::default()
        };
        let v = classify_report(&with_metrics(|m| m.queue_depth = Some(25.0)), &t);
        assert_eq!(v.health, Health::Red);
    }

    #[test]
    fn bad_bands_are_reported() {
        assert!(Band::new(5.0, 1.0).problem().is_some());
        assert!(Band::new(f64::NAN, 1.0).problem().is_some());
        assert!(Band::new(1.0, 5.0).problem().is_none());
    }
}
