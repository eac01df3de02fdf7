//! The checks every fault scenario makes, and its one-line record.
//!
//! [`Scenario::begin`] starts a client polling the load balancer every 20 ms (who answered, in
//! which epoch), the split-brain monitor ([`super::split_brain`]), writes 20 receipts through
//! the load balancer (each must be acknowledged) and keeps writing one every 100 ms.
//! [`Scenario::finish`] waits until the load balancer answers again, then checks:
//! - **no data lost**: every receipt the load balancer acknowledged, before or during the
//!   fault, is readable through it afterwards;
//! - **no split brain**: the monitor never saw two hosts answer `/primary` 200 at once nor two
//!   stand-ins primary in one epoch, and the load balancer's answers name one host per epoch;
//!
//! and records `SCENARIO|name|outcome|outage_ms|data_lost|split_brain`: printed, and written
//! to `<target>/scenario-results/<name>.line` for `tests/scenarios-table.sh`. The outage is the
//! longest client-visible gap between two good answers through the load balancer from the
//! fault on (a healthy run shows the 20 ms polling period).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;

use super::client::{LbClient, Sample, hosts_per_epoch};
use super::cluster::Cluster;
use super::http;
use super::split_brain::{SplitBrainMonitor, violations};
use super::wait::wait_until;

const RECEIPTS_BEFORE: usize = 20;

pub struct Scenario {
    pub name: String,
    lb: String,
    client: LbClient,
    monitor: SplitBrainMonitor,
    acked: Arc<Mutex<Vec<String>>>,
    stop_writer: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<()>,
    fault_at: Option<Instant>,
    results: PathBuf,
}

/// What a scenario measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub outage: Duration,
    pub receipts: usize,
    pub data_lost: Vec<String>,
    pub split_brain: Vec<String>,
}

async fn write_receipt(lb: &str, scenario: &str, n: usize) -> Option<String> {
    let body = serde_json::json!({"scenario": scenario, "n": n}).to_string();
    let r = http::request(
        Method::POST,
        lb,
        "/receipts",
        Some(body),
        Duration::from_secs(2),
    )
    .await
    .ok()?;
    (r.status == 201)
        .then(|| r.json().ok()?["id"].as_str().map(str::to_string))
        .flatten()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Scenario {
    pub async fn begin(c: &Cluster, name: &str) -> anyhow::Result<Scenario> {
        let lb = c
            .lb()
            .ok_or_else(|| anyhow::anyhow!("scenarios need the load balancer"))?;
        let monitor = SplitBrainMonitor::start(c)?;
        let client = LbClient::start(lb.clone(), Duration::from_millis(20));
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        for n in 0..RECEIPTS_BEFORE {
            let (lb, name) = (&lb, name);
            let id = wait_until(
                "a receipt acknowledged through the load balancer",
                Duration::from_secs(10),
                || async move { write_receipt(lb, name, n).await },
            )
            .await?;
            lock(&acked).push(id);
        }
        let stop_writer = Arc::new(AtomicBool::new(false));
        let writer = {
            let (lb, name, acked, stop) = (
                lb.clone(),
                name.to_string(),
                acked.clone(),
                stop_writer.clone(),
            );
            tokio::spawn(async move {
                let mut n = RECEIPTS_BEFORE;
                while !stop.load(Ordering::SeqCst) {
                    let at = Instant::now();
                    if let Some(id) = write_receipt(&lb, &name, n).await {
                        lock(&acked).push(id);
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(100).saturating_sub(at.elapsed()))
                        .await;
                }
            })
        };
        Ok(Scenario {
            name: name.to_string(),
            lb,
            client,
            monitor,
            acked,
            stop_writer,
            writer,
            fault_at: None,
            results: c.bins.dir.join("scenario-results"),
        })
    }

    /// Mark the moment the fault starts (the outage is measured from here).
    pub fn fault(&mut self) {
        self.fault_at = Some(Instant::now());
    }

    /// The load balancer client's samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.client.samples()
    }

    /// What the split-brain monitor saw so far, per host.
    pub fn watched(&self) -> Vec<(String, Vec<super::split_brain::Sample>)> {
        self.monitor.samples()
    }

    /// Until host `host`'s own stand-in says `role` (seen from inside its namespace).
    pub async fn wait_role(&self, host: &str, role: &str, within: Duration) -> anyhow::Result<()> {
        wait_until(&format!("{host} to say {role}"), within, || async move {
            let all = self.monitor.samples();
            let (_, samples) = all.iter().find(|(h, _)| h == host)?;
            samples.last().filter(|s| s.role == role).map(|_| ())
        })
        .await
    }

    /// Receipts acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        lock(&self.acked).len()
    }

    /// Wait until the load balancer serves again, run the common checks, record and print the
    /// scenario's line, and fail the test if data was lost or a split brain seen.
    pub async fn finish(self, outcome: &str) -> Report {
        let report = self.measure().await;
        let line = format!(
            "SCENARIO|{}|{}|{}|{}|{}",
            self.name,
            outcome,
            report.outage.as_millis(),
            if report.data_lost.is_empty() {
                "none".to_string()
            } else {
                format!("{} of {}", report.data_lost.len(), report.receipts)
            },
            if report.split_brain.is_empty() {
                "never"
            } else {
                "SEEN"
            }
        );
        eprintln!("{line}");
        let _ = std::fs::create_dir_all(&self.results);
        let _ = std::fs::write(
            self.results.join(format!("{}.line", self.name)),
            format!("{line}\n"),
        );
        assert!(
            report.data_lost.is_empty(),
            "{}: acknowledged receipts lost: {:?}",
            self.name,
            report.data_lost
        );
        assert!(
            report.split_brain.is_empty(),
            "{}: split brain: {:?}",
            self.name,
            report.split_brain
        );
        report
    }

    async fn measure(&self) -> Report {
        // the service is back: the last few answers through the load balancer are good
        let client = &self.client;
        let back = wait_until(
            "the load balancer to serve again",
            Duration::from_secs(60),
            || async move {
                let s = client.samples();
                (s.len() >= 3 && s.iter().rev().take(3).all(|x| x.answer.is_some())).then_some(())
            },
        )
        .await;
        self.stop_writer.store(true, Ordering::SeqCst);
        while !self.writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let samples = self.client.samples();
        let watched = self.monitor.samples();
        let mut split_brain = violations(&watched);
        // a monitor that saw nothing proves nothing
        for (host, s) in &watched {
            if s.len() < 10 {
                split_brain.push(format!(
                    "(the monitor saw only {} samples of {host})",
                    s.len()
                ));
            }
        }
        if !watched
            .iter()
            .any(|(_, s)| s.iter().any(|x| x.primary_code == 200))
        {
            split_brain.push("(the monitor never saw a primary)".into());
        }
        for (epoch, hosts) in hosts_per_epoch(&samples) {
            if hosts.len() > 1 {
                split_brain.push(format!(
                    "the load balancer answered from {hosts:?} in epoch {epoch}"
                ));
            }
        }
        let ids = lock(&self.acked).clone();
        let mut data_lost = Vec::new();
        if let Err(e) = back {
            data_lost.push(format!("(not read back: {e})"));
        } else {
            for id in &ids {
                let (lb, id) = (&self.lb, id.clone());
                let found = wait_until("a receipt read back", Duration::from_secs(10), || {
                    let id = id.clone();
                    async move {
                        let r = http::get(lb, &format!("/receipts/{id}")).await.ok()?;
                        (r.status == 200 && r.body.contains(&id)).then_some(())
                    }
                })
                .await;
                if found.is_err() {
                    data_lost.push(id);
                }
            }
        }
        Report {
            outage: outage_since(&samples, self.fault_at),
            receipts: ids.len(),
            data_lost,
            split_brain,
        }
    }
}

/// The longest gap between two good answers, from the last good answer before `fault` on.
pub fn outage_since(samples: &[Sample], fault: Option<Instant>) -> Duration {
    let good: Vec<Instant> = samples
        .iter()
        .filter(|s| s.answer.is_some())
        .map(|s| s.at)
        .collect();
    let from = match fault {
        Some(f) => good.iter().rposition(|t| *t <= f).unwrap_or(0),
        None => 0,
    };
    good[from.min(good.len().saturating_sub(1))..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop_writer.store(true, Ordering::SeqCst);
        self.writer.abort();
    }
}
