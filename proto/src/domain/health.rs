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
    #[serde(default)]
    pub log: Option<LogProbe>,
    #[serde(default)]
    pub host: Option<HostProbe>,
    #[serde(default)]
    pub erlang: Option<ErlangProbe>,
    #[serde(default)]
    pub role_state: Option<AgentRoleState>,
}

/// What the agent believes about its own role and lease (the controller's view may differ
/// while messages are in flight; the agent's is what `/primary` answers from).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRoleState {
    pub role: super::Role,
    pub epoch: super::Epoch,
    pub lease_valid: bool,
    pub lease_remaining_ms: u32,
    pub fenced: bool,
    pub promoted: bool,
    /// Non-empty while a service action (restart, promote, ...) runs.
    pub busy_with: String,
}

/// The service log, tailed: errors per minute and the last error lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogProbe {
    /// `Err` when the log cannot be read.
    pub result: Result<LogFacts, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFacts {
    pub errors_last_minute: u32,
    pub error_rate: Option<f64>,
    pub last_errors: Vec<String>,
    pub lines_read: u64,
    pub errors_since_start: u32,
}

/// Host facts: CPU, memory, load, free disk on the data directory's filesystem.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostProbe {
    pub cpu_percent: f64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
}

/// The Erlang node, over the distribution protocol.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErlangProbe {
    pub reachable: bool,
    /// Why not reachable, or what failed.
    pub reason: String,
    pub memory_total_bytes: Option<f64>,
    pub message_queue_len: Option<f64>,
    pub rpcs: Vec<RpcResult>,
    pub replication_lag_ms: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcResult {
    pub name: String,
    /// `Err` holds the failure (badrpc, undef, timeout).
    pub outcome: Result<String, String>,
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
    /// `erlmcp_requests_total`, for error rates.
    #[serde(default)]
    pub requests_total: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsProbe {
    /// `Err` holds why the scrape failed.
    pub result: Result<ServiceMetrics, String>,
}
