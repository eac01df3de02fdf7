//! What an agent measured about its host in one probe round.

use serde::{Deserialize, Serialize};

/// One probe round. Probes the agent is not configured for are `None` / empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub seq: u64,
    pub probed_at_unix_ms: u64,
    pub process: Option<ProcessProbe>,
    pub ports: Vec<PortProbe>,
    pub http: Option<HttpProbe>,
    pub metrics: Option<MetricsProbe>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Running,
    NotRunning,
    /// Present but stopped (SIGSTOP or traced): it will not answer anything.
    Stopped,
    /// The probe could not decide (unreadable pid file, /proc error).
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessProbe {
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    Listening,
    Refused,
    Timeout,
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortProbe {
    pub port: u16,
    pub state: PortState,
    pub detail: String,
}

/// The runbook's impact classes ("What's the impact?").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpClass {
    Ok,
    /// No reply in time: process dead or overloaded.
    Timeout,
    /// 5xx: application error, check logs.
    ServerError,
    /// Connection refused: port not listening.
    Refused,
    /// Latest answer fine but recent ones failed: rate limiting or queue full.
    Intermittent,
    /// Anything else: 4xx, reset, protocol error.
    Error,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpProbe {
    pub class: HttpClass,
    pub status_code: Option<u16>,
    pub latency_ms: u32,
    /// p99 of answered checks over the sliding window.
    pub p99_ms: Option<u32>,
    pub window_failures: u32,
    pub window_size: u32,
    pub detail: String,
}

/// Values scraped from the service's Prometheus endpoint, under erlmcp's metric names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceMetrics {
    pub memory_bytes: Option<f64>,
    pub connections: Option<f64>,
    pub queue_depth: Option<f64>,
    pub error_rate: Option<f64>,
    pub process_count: Option<f64>,
    pub uptime_seconds: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsProbe {
    /// `Err` holds why the scrape failed.
    pub result: Result<ServiceMetrics, String>,
}
