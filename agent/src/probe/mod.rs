//! The agent's probes and the round that combines them into one health report.
//!
//! Each probe has its own timeout and says what failed; a round runs them concurrently, so one
//! slow probe delays the report by at most its own timeout.

pub mod erlang;
pub mod exit_watch;
pub mod host;
pub mod http_health;
pub mod log;
pub mod metrics_scrape;
pub mod port;
pub mod process;
pub mod prom_text;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dr_proto::domain::{ErlangProbe, HealthReport, ProcessProbe, ProcessState, RpcResult};

use crate::config::AgentConfig;
use crate::state::AgentState;
use http_health::HttpWindow;

pub struct Prober {
    config: Arc<AgentConfig>,
    window: HttpWindow,
    pub log: Option<log::LogTail>,
    host: host::HostFacts,
    seq: u64,
}

/// The Erlang probe's report in the protocol's terms.
pub fn erlang_to_domain(r: &erlang::ErlangReport) -> ErlangProbe {
    use erlang::{MessageQueue, RpcOutcome};
    ErlangProbe {
        reachable: r.reachable,
        reason: match &r.unreachable {
            Some(u) => u.reason.clone(),
            None => r.memory_error.clone().unwrap_or_default(),
        },
        memory_total_bytes: r.memory_total_bytes.map(|m| m as f64),
        message_queue_len: match &r.message_queue {
            MessageQueue::Len { len } => Some(*len as f64),
            _ => None,
        },
        rpcs: r
            .health_rpcs
            .iter()
            .filter(|h| !matches!(h.outcome, RpcOutcome::NotProbed))
            .map(|h| RpcResult {
                name: h.rpc.to_string(),
                outcome: match &h.outcome {
                    RpcOutcome::Returned { value } => Ok(value.clone()),
                    RpcOutcome::Failed { error, .. } => Err(error.clone()),
                    RpcOutcome::NotProbed => Err("not probed".into()),
                },
            })
            .collect(),
        replication_lag_ms: r.replication_lag_ms,
    }
}

impl Prober {
    pub fn new(config: Arc<AgentConfig>) -> Prober {
        let window = HttpWindow::new(config.probes.window, config.probes.intermittent_failures);
        let log = config
            .service
            .log_file
            .clone()
            .map(|p| log::LogTail::new(p, config.error_regex.clone(), config.log.keep_lines));
        let host = host::HostFacts::new(config.service.data_dir.clone());
        Prober {
            config,
            window,
            log,
            host,
            seq: 0,
        }
    }

    /// Run every configured probe once.
    pub async fn round(&mut self, state: &AgentState) -> HealthReport {
        self.seq += 1;
        let probed_at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let svc = &self.config.service;
        let locator = svc.process.clone();
        let ports = svc.ports.clone();
        let local =
            tokio::task::spawn_blocking(move || (process::probe(&locator), port::probe(&ports)));
        let probes = &self.config.probes;
        let window = &mut self.window;
        let http = async {
            match &svc.health_url {
                Some(uri) => Some(
                    http_health::check(uri, Duration::from_millis(probes.http_timeout_ms), window)
                        .await,
                ),
                None => None,
            }
        };
        let metrics = async {
            match &svc.metrics_url {
                Some(uri) => Some(
                    metrics_scrape::scrape(uri, Duration::from_millis(probes.metrics_timeout_ms))
                        .await,
                ),
                None => None,
            }
        };
        let erl = async {
            match &self.config.erlang {
                Some(cfg) => Some(erlang::probe(cfg).await),
                None => None,
            }
        };
        let (local, http, metrics, erl) = tokio::join!(local, http, metrics, erl);
        let (process, ports) = local.unwrap_or_else(|e| {
            (
                ProcessProbe {
                    state: ProcessState::Unknown,
                    pid: None,
                    detail: format!("process probe failed: {e}"),
                },
                Vec::new(),
            )
        });
        let requests = metrics
            .as_ref()
            .and_then(|m| m.result.as_ref().ok())
            .and_then(|m| m.requests_total);
        let log = self.log.as_mut().map(|l| l.poll(Instant::now(), requests));
        let host = Some(self.host.probe());
        HealthReport {
            seq: self.seq,
            probed_at_unix_ms,
            process: Some(process),
            ports,
            http,
            metrics,
            log,
            host,
            erlang: erl.as_ref().map(erlang_to_domain),
            role_state: Some(state.role_snapshot()),
        }
    }
}
