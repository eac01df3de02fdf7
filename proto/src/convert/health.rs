use super::session::role_from_wire;
use super::{MAX_DETAIL, ProtocolError, text};
use crate::domain::{
    AgentRoleState, Epoch, ErlangProbe, HealthReport, HostProbe, HttpClass, HttpProbe, LogFacts,
    LogProbe, MetricsProbe, PortProbe, PortState, ProcessProbe, ProcessState, RpcResult,
    ServiceMetrics,
};
use crate::pb;

const MAX_PORTS: usize = 64;
const MAX_LINES: usize = 64;
const MAX_RPCS: usize = 32;

impl TryFrom<pb::HealthReport> for HealthReport {
    type Error = ProtocolError;
    fn try_from(r: pb::HealthReport) -> Result<Self, ProtocolError> {
        if r.ports.len() > MAX_PORTS {
            return Err(ProtocolError::OutOfRange {
                field: "report.ports",
                value: format!("{} entries", r.ports.len()),
            });
        }
        Ok(HealthReport {
            seq: r.seq,
            probed_at_unix_ms: r.probed_at_unix_ms,
            process: r.process.map(ProcessProbe::try_from).transpose()?,
            ports: r
                .ports
                .into_iter()
                .map(PortProbe::try_from)
                .collect::<Result<_, _>>()?,
            http: r.http.map(HttpProbe::try_from).transpose()?,
            metrics: r.metrics.map(MetricsProbe::try_from).transpose()?,
            log: r.log.map(LogProbe::try_from).transpose()?,
            host: r.host.map(HostProbe::try_from).transpose()?,
            erlang: r.erlang.map(ErlangProbe::try_from).transpose()?,
            role_state: r.role_state.map(AgentRoleState::try_from).transpose()?,
        })
    }
}

impl From<HealthReport> for pb::HealthReport {
    fn from(r: HealthReport) -> Self {
        pb::HealthReport {
            seq: r.seq,
            probed_at_unix_ms: r.probed_at_unix_ms,
            process: r.process.map(Into::into),
            ports: r.ports.into_iter().map(Into::into).collect(),
            http: r.http.map(Into::into),
            metrics: r.metrics.map(Into::into),
            log: r.log.map(Into::into),
            host: r.host.map(Into::into),
            erlang: r.erlang.map(Into::into),
            role_state: r.role_state.map(Into::into),
        }
    }
}

impl TryFrom<pb::AgentRoleState> for AgentRoleState {
    type Error = ProtocolError;
    fn try_from(s: pb::AgentRoleState) -> Result<Self, ProtocolError> {
        Ok(AgentRoleState {
            role: role_from_wire("role_state.role", s.role)?,
            epoch: Epoch(s.epoch),
            lease_valid: s.lease_valid,
            lease_remaining_ms: s.lease_remaining_ms,
            fenced: s.fenced,
            promoted: s.promoted,
            busy_with: text("role_state.busy_with", s.busy_with, MAX_DETAIL)?,
        })
    }
}

impl From<AgentRoleState> for pb::AgentRoleState {
    fn from(s: AgentRoleState) -> Self {
        pb::AgentRoleState {
            role: pb::Role::from(s.role) as i32,
            epoch: s.epoch.0,
            lease_valid: s.lease_valid,
            lease_remaining_ms: s.lease_remaining_ms,
            fenced: s.fenced,
            promoted: s.promoted,
            busy_with: s.busy_with,
        }
    }
}

fn lines(field: &'static str, v: Vec<String>) -> Result<Vec<String>, ProtocolError> {
    if v.len() > MAX_LINES {
        return Err(ProtocolError::OutOfRange {
            field,
            value: format!("{} entries", v.len()),
        });
    }
    v.into_iter().map(|l| text(field, l, MAX_DETAIL)).collect()
}

impl TryFrom<pb::LogProbe> for LogProbe {
    type Error = ProtocolError;
    fn try_from(p: pb::LogProbe) -> Result<Self, ProtocolError> {
        if !p.ok {
            return Ok(LogProbe {
                result: Err(text("log.error", p.error, MAX_DETAIL)?),
            });
        }
        Ok(LogProbe {
            result: Ok(LogFacts {
                errors_last_minute: p.errors_last_minute,
                error_rate: finite("log.error_rate", p.error_rate)?,
                last_errors: lines("log.last_errors", p.last_errors)?,
                lines_read: p.lines_read,
                errors_since_start: p.errors_since_start,
            }),
        })
    }
}

impl From<LogProbe> for pb::LogProbe {
    fn from(p: LogProbe) -> Self {
        match p.result {
            Ok(f) => pb::LogProbe {
                ok: true,
                error: String::new(),
                errors_last_minute: f.errors_last_minute,
                error_rate: f.error_rate,
                last_errors: f.last_errors,
                lines_read: f.lines_read,
                errors_since_start: f.errors_since_start,
            },
            Err(error) => pb::LogProbe {
                ok: false,
                error,
                ..Default::default()
            },
        }
    }
}

impl TryFrom<pb::HostProbe> for HostProbe {
    type Error = ProtocolError;
    fn try_from(p: pb::HostProbe) -> Result<Self, ProtocolError> {
        let f = |field, v: f64| finite(field, Some(v)).map(|x| x.unwrap_or(0.0));
        Ok(HostProbe {
            cpu_percent: f("host.cpu_percent", p.cpu_percent)?,
            memory_total_bytes: p.memory_total_bytes,
            memory_used_bytes: p.memory_used_bytes,
            load1: f("host.load1", p.load1)?,
            load5: f("host.load5", p.load5)?,
            load15: f("host.load15", p.load15)?,
            disk_free_bytes: p.disk_free_bytes,
            disk_total_bytes: p.disk_total_bytes,
        })
    }
}

impl From<HostProbe> for pb::HostProbe {
    fn from(p: HostProbe) -> Self {
        pb::HostProbe {
            cpu_percent: p.cpu_percent,
            memory_total_bytes: p.memory_total_bytes,
            memory_used_bytes: p.memory_used_bytes,
            load1: p.load1,
            load5: p.load5,
            load15: p.load15,
            disk_free_bytes: p.disk_free_bytes,
            disk_total_bytes: p.disk_total_bytes,
        }
    }
}

impl TryFrom<pb::ErlangProbe> for ErlangProbe {
    type Error = ProtocolError;
    fn try_from(p: pb::ErlangProbe) -> Result<Self, ProtocolError> {
        if p.rpcs.len() > MAX_RPCS {
            return Err(ProtocolError::OutOfRange {
                field: "erlang.rpcs",
                value: format!("{} entries", p.rpcs.len()),
            });
        }
        Ok(ErlangProbe {
            reachable: p.reachable,
            reason: text("erlang.reason", p.reason, MAX_DETAIL)?,
            memory_total_bytes: finite("erlang.memory_total_bytes", p.memory_total_bytes)?,
            message_queue_len: finite("erlang.message_queue_len", p.message_queue_len)?,
            rpcs: p
                .rpcs
                .into_iter()
                .map(|r| {
                    Ok(RpcResult {
                        name: text("rpc.name", r.name, MAX_DETAIL)?,
                        outcome: if r.ok {
                            Ok(text("rpc.value", r.value, MAX_DETAIL)?)
                        } else {
                            Err(text("rpc.value", r.value, MAX_DETAIL)?)
                        },
                    })
                })
                .collect::<Result<_, ProtocolError>>()?,
            replication_lag_ms: finite("erlang.replication_lag_ms", p.replication_lag_ms)?,
        })
    }
}

impl From<ErlangProbe> for pb::ErlangProbe {
    fn from(p: ErlangProbe) -> Self {
        pb::ErlangProbe {
            reachable: p.reachable,
            reason: p.reason,
            memory_total_bytes: p.memory_total_bytes,
            message_queue_len: p.message_queue_len,
            rpcs: p
                .rpcs
                .into_iter()
                .map(|r| {
                    let (ok, value) = match r.outcome {
                        Ok(v) => (true, v),
                        Err(e) => (false, e),
                    };
                    pb::RpcResult {
                        name: r.name,
                        ok,
                        value,
                    }
                })
                .collect(),
            replication_lag_ms: p.replication_lag_ms,
        }
    }
}

impl TryFrom<pb::ProcessProbe> for ProcessProbe {
    type Error = ProtocolError;
    fn try_from(p: pb::ProcessProbe) -> Result<Self, ProtocolError> {
        let state = match pb::ProcessState::try_from(p.state) {
            Ok(pb::ProcessState::Running) => ProcessState::Running,
            Ok(pb::ProcessState::NotRunning) => ProcessState::NotRunning,
            Ok(pb::ProcessState::Stopped) => ProcessState::Stopped,
            Ok(pb::ProcessState::Unknown) => ProcessState::Unknown,
            Ok(pb::ProcessState::Unspecified) | Err(_) => {
                return Err(ProtocolError::UnknownEnum {
                    field: "process.state",
                    value: p.state,
                });
            }
        };
        Ok(ProcessProbe {
            state,
            pid: (p.pid != 0).then_some(p.pid),
            detail: text("process.detail", p.detail, MAX_DETAIL)?,
        })
    }
}

impl From<ProcessProbe> for pb::ProcessProbe {
    fn from(p: ProcessProbe) -> Self {
        let state = match p.state {
            ProcessState::Running => pb::ProcessState::Running,
            ProcessState::NotRunning => pb::ProcessState::NotRunning,
            ProcessState::Stopped => pb::ProcessState::Stopped,
            ProcessState::Unknown => pb::ProcessState::Unknown,
        };
        pb::ProcessProbe {
            state: state as i32,
            pid: p.pid.unwrap_or(0),
            detail: p.detail,
        }
    }
}

impl TryFrom<pb::PortProbe> for PortProbe {
    type Error = ProtocolError;
    fn try_from(p: pb::PortProbe) -> Result<Self, ProtocolError> {
        let port = u16::try_from(p.port).ok().filter(|port| *port != 0).ok_or(
            ProtocolError::OutOfRange {
                field: "port.port",
                value: p.port.to_string(),
            },
        )?;
        let state = match pb::PortState::try_from(p.state) {
            Ok(pb::PortState::Listening) => PortState::Listening,
            Ok(pb::PortState::Refused) => PortState::Refused,
            Ok(pb::PortState::Timeout) => PortState::Timeout,
            Ok(pb::PortState::Error) => PortState::Error,
            Ok(pb::PortState::Unspecified) | Err(_) => {
                return Err(ProtocolError::UnknownEnum {
                    field: "port.state",
                    value: p.state,
                });
            }
        };
        Ok(PortProbe {
            port,
            state,
            detail: text("port.detail", p.detail, MAX_DETAIL)?,
        })
    }
}

impl From<PortProbe> for pb::PortProbe {
    fn from(p: PortProbe) -> Self {
        let state = match p.state {
            PortState::Listening => pb::PortState::Listening,
            PortState::Refused => pb::PortState::Refused,
            PortState::Timeout => pb::PortState::Timeout,
            PortState::Error => pb::PortState::Error,
        };
        pb::PortProbe {
            port: u32::from(p.port),
            state: state as i32,
            detail: p.detail,
        }
    }
}

impl TryFrom<pb::HttpProbe> for HttpProbe {
    type Error = ProtocolError;
    fn try_from(p: pb::HttpProbe) -> Result<Self, ProtocolError> {
        let class = match pb::HttpClass::try_from(p.class) {
            Ok(pb::HttpClass::Ok) => HttpClass::Ok,
            Ok(pb::HttpClass::Timeout) => HttpClass::Timeout,
            Ok(pb::HttpClass::ServerError) => HttpClass::ServerError,
            Ok(pb::HttpClass::Refused) => HttpClass::Refused,
            Ok(pb::HttpClass::Intermittent) => HttpClass::Intermittent,
            Ok(pb::HttpClass::Error) => HttpClass::Error,
            Ok(pb::HttpClass::Unspecified) | Err(_) => {
                return Err(ProtocolError::UnknownEnum {
                    field: "http.class",
                    value: p.class,
                });
            }
        };
        let status_code = match p.status_code {
            0 => None,
            code @ 100..=599 => Some(code as u16),
            other => {
                return Err(ProtocolError::OutOfRange {
                    field: "http.status_code",
                    value: other.to_string(),
                });
            }
        };
        if p.window_failures > p.window_size {
            return Err(ProtocolError::OutOfRange {
                field: "http.window_failures",
                value: format!("{} of {}", p.window_failures, p.window_size),
            });
        }
        Ok(HttpProbe {
            class,
            status_code,
            latency_ms: p.latency_ms,
            p99_ms: p.p99_ms,
            window_failures: p.window_failures,
            window_size: p.window_size,
            detail: text("http.detail", p.detail, MAX_DETAIL)?,
        })
    }
}

impl From<HttpProbe> for pb::HttpProbe {
    fn from(p: HttpProbe) -> Self {
        let class = match p.class {
            HttpClass::Ok => pb::HttpClass::Ok,
            HttpClass::Timeout => pb::HttpClass::Timeout,
            HttpClass::ServerError => pb::HttpClass::ServerError,
            HttpClass::Refused => pb::HttpClass::Refused,
            HttpClass::Intermittent => pb::HttpClass::Intermittent,
            HttpClass::Error => pb::HttpClass::Error,
        };
        pb::HttpProbe {
            class: class as i32,
            status_code: p.status_code.map(u32::from).unwrap_or(0),
            latency_ms: p.latency_ms,
            p99_ms: p.p99_ms,
            window_failures: p.window_failures,
            window_size: p.window_size,
            detail: p.detail,
        }
    }
}

fn finite(field: &'static str, v: Option<f64>) -> Result<Option<f64>, ProtocolError> {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => Err(ProtocolError::OutOfRange {
            field,
            value: x.to_string(),
        }),
        other => Ok(other),
    }
}

impl TryFrom<pb::MetricsProbe> for MetricsProbe {
    type Error = ProtocolError;
    fn try_from(p: pb::MetricsProbe) -> Result<Self, ProtocolError> {
        if !p.ok {
            return Ok(MetricsProbe {
                result: Err(text("metrics.error", p.error, MAX_DETAIL)?),
            });
        }
        Ok(MetricsProbe {
            result: Ok(ServiceMetrics {
                memory_bytes: finite("metrics.memory_bytes", p.memory_bytes)?,
                connections: finite("metrics.connections", p.connections)?,
                queue_depth: finite("metrics.queue_depth", p.queue_depth)?,
                error_rate: finite("metrics.error_rate", p.error_rate)?,
                process_count: finite("metrics.process_count", p.process_count)?,
                uptime_seconds: finite("metrics.uptime_seconds", p.uptime_seconds)?,
                requests_total: finite("metrics.requests_total", p.requests_total)?,
            }),
        })
    }
}

impl From<MetricsProbe> for pb::MetricsProbe {
    fn from(p: MetricsProbe) -> Self {
        match p.result {
            Ok(m) => pb::MetricsProbe {
                ok: true,
                error: String::new(),
                memory_bytes: m.memory_bytes,
                connections: m.connections,
                queue_depth: m.queue_depth,
                error_rate: m.error_rate,
                process_count: m.process_count,
                uptime_seconds: m.uptime_seconds,
                requests_total: m.requests_total,
            },
            Err(error) => pb::MetricsProbe {
                ok: false,
                error,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HealthReport {
        HealthReport {
            seq: 7,
            probed_at_unix_ms: 1_700_000_000_000,
            process: Some(ProcessProbe {
                state: ProcessState::Running,
                pid: Some(42),
                detail: "pid file ok".into(),
            }),
            ports: vec![PortProbe {
                port: 8080,
                state: PortState::Listening,
                detail: String::new(),
            }],
            http: Some(HttpProbe {
                class: HttpClass::ServerError,
                status_code: Some(503),
                latency_ms: 3,
                p99_ms: Some(9),
                window_failures: 1,
                window_size: 10,
                detail: "503".into(),
            }),
            metrics: Some(MetricsProbe {
                result: Ok(ServiceMetrics {
                    memory_bytes: Some(1e6),
                    queue_depth: Some(3.0),
                    ..Default::default()
                }),
            }),
            log: Some(LogProbe {
                result: Ok(LogFacts {
                    errors_last_minute: 2,
                    error_rate: Some(0.01),
                    last_errors: vec!["[error] boom".into()],
                    lines_read: 10,
                    errors_since_start: 1,
                }),
            }),
            host: Some(HostProbe {
                cpu_percent: 12.5,
                memory_total_bytes: 100,
                memory_used_bytes: 50,
                load1: 0.5,
                load5: 0.4,
                load15: 0.3,
                disk_free_bytes: 10,
                disk_total_bytes: 20,
            }),
            erlang: Some(ErlangProbe {
                reachable: true,
                reason: String::new(),
                memory_total_bytes: Some(1e7),
                message_queue_len: Some(3.0),
                rpcs: vec![RpcResult {
                    name: "erlmcp_health:check_live/0".into(),
                    outcome: Err("undef".into()),
                }],
                replication_lag_ms: Some(12.0),
            }),
            role_state: Some(AgentRoleState {
                role: crate::domain::Role::Primary,
                epoch: Epoch(3),
                lease_valid: true,
                lease_remaining_ms: 1500,
                fenced: false,
                promoted: true,
                busy_with: String::new(),
            }),
        }
    }

    #[test]
    fn report_round_trips() {
        let r = sample();
        let wire: pb::HealthReport = r.clone().into();
        assert_eq!(HealthReport::try_from(wire).unwrap(), r);
    }

    #[test]
    fn unknown_enums_and_bad_numbers_are_refused_with_the_field_name() {
        let mut wire: pb::HealthReport = sample().into();
        wire.http.as_mut().unwrap().class = 99;
        let err = HealthReport::try_from(wire).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::UnknownEnum {
                field: "http.class",
                value: 99
            }
        );

        let mut wire: pb::HealthReport = sample().into();
        wire.ports[0].port = 70_000;
        assert!(matches!(
            HealthReport::try_from(wire),
            Err(ProtocolError::OutOfRange {
                field: "port.port",
                ..
            })
        ));

        let mut wire: pb::HealthReport = sample().into();
        wire.metrics.as_mut().unwrap().memory_bytes = Some(f64::NAN);
        assert!(HealthReport::try_from(wire).is_err());

        let mut wire: pb::HealthReport = sample().into();
        wire.http.as_mut().unwrap().window_failures = 11;
        assert!(HealthReport::try_from(wire).is_err());
    }

    #[test]
    fn oversized_text_is_refused() {
        let mut wire: pb::HealthReport = sample().into();
        wire.process.as_mut().unwrap().detail = "x".repeat(MAX_DETAIL + 1);
        assert!(matches!(
            HealthReport::try_from(wire),
            Err(ProtocolError::TooLong { .. })
        ));
    }
}
