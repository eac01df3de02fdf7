//! The agent's probes and the round that combines them into one health report.
//!
//! Each probe has its own timeout and says what failed; a round runs them concurrently, so one
//! slow probe delays the report by at most its own timeout.

pub mod http_get;
pub mod http_health;
pub mod metrics_scrape;
pub mod port;
pub mod process;
pub mod prom_text;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dr_proto::domain::{HealthReport, ProcessProbe, ProcessState};

use crate::config::AgentConfig;
use http_health::HttpWindow;

pub struct Prober {
    config: Arc<AgentConfig>,
    window: HttpWindow,
    seq: u64,
}

impl Prober {
    pub fn new(config: Arc<AgentConfig>) -> Prober {
        let window = HttpWindow::new(config.probes.window, config.probes.intermittent_failures);
        Prober {
            config,
            window,
            seq: 0,
        }
    }

    /// Run every configured probe once.
    pub async fn round(&mut self) -> HealthReport {
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
        let http = async {
            match &svc.health_url {
                Some(uri) => Some(
                    http_health::check(
                        uri,
                        Duration::from_millis(probes.http_timeout_ms),
                        &mut self.window,
                    )
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
        let (local, http, metrics) = tokio::join!(local, http, metrics);
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
        HealthReport {
            seq: self.seq,
            probed_at_unix_ms,
            process: Some(process),
            ports,
            http,
            metrics,
        }
    }
}
