use super::{MAX_DETAIL, ProtocolError, text};
use crate::domain::{
    HealthReport, HttpClass, HttpProbe, MetricsProbe, PortProbe, PortState, ProcessProbe,
    ProcessState, ServiceMetrics,
};
use crate::pb;

const MAX_PORTS: usize = 64;

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
