//! Controller load: N simulated agents, each a real gRPC session over mTLS with its own
//! certificate, report every 500 ms (2 Hz); each group's primary renews its lease every 250 ms
//! as the real agent does. Measured per step of the ladder, each against a fresh controller:
//! report-to-lease-grant latency (request sent → grant received), leases missed (a primary
//! without a grant for longer than the lease ttl), the controller's CPU and memory per session.
//!
//! `DR_BIN_DIR=$PWD/target/release target/release/dr-bench-load --agents 1000,2500,5000 --seconds 30`
//! Note: the load generator shares the machine's cores with the controller; both processes' CPU
//! (percent of one core) is in the table, so a saturated machine shows as such.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use dr_bench::{percentile, table};
use dr_proto::domain::{
    AgentMessage, ControllerMessage, Epoch, GroupName, HealthReport, Hello, HostName, HttpClass,
    HttpProbe, LeaseRequest, ProcessProbe, ProcessState,
};
use dr_proto::pb;
use dr_proto::pb::agent_session_client::AgentSessionClient;
use dr_tests::harness::{Bins, Daemon};
use drctl::pki::{PkiPlan, init as pki_init, names};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

#[derive(Parser)]
struct Args {
    /// Simulated agents per step (a ladder: 1000,2500,5000).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    agents: Vec<usize>,
    /// Members per group (the first of each is its primary).
    #[arg(long, default_value_t = 5)]
    per_group: usize,
    /// Measurement window per step, after every session is up.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Keep each step's controller log here (`controller-N.log`) instead of in a temp dir.
    #[arg(long)]
    log_dir: Option<std::path::PathBuf>,
}

const LEASE_TTL: Duration = Duration::from_millis(2000);

fn report(seq: u64) -> HealthReport {
    HealthReport {
        seq,
        process: Some(ProcessProbe {
            state: ProcessState::Running,
            pid: Some(1),
            detail: "pid 1".into(),
        }),
        http: Some(HttpProbe {
            class: HttpClass::Ok,
            status_code: Some(200),
            latency_ms: 1,
            p99_ms: Some(2),
            window_failures: 0,
            window_size: 10,
            detail: String::new(),
        }),
        ..Default::default()
    }
}

#[derive(Default)]
struct Totals {
    sessions_up: AtomicUsize,
    reports: AtomicU64,
    failures: AtomicUsize,
    refused: AtomicUsize,
    latencies: Mutex<Vec<Duration>>,
    /// Per primary: the longest time without a grant, in the window.
    worst_gap: Mutex<Vec<Duration>>,
}

struct Agent {
    host: String,
    group: String,
    primary: bool,
    tls: ClientTlsConfig,
}

async fn run_agent(
    a: Agent,
    url: String,
    totals: Arc<Totals>,
    window: Arc<std::sync::OnceLock<Instant>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(url)?
        .tls_config(a.tls)?
        .connect_timeout(Duration::from_secs(20))
        .connect()
        .await?;
    let mut client = AgentSessionClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(16);
    tx.send(
        AgentMessage::Hello(Hello {
            protocol_version: dr_proto::PROTOCOL_VERSION,
            host: HostName::new(&a.host)?,
            group: GroupName::new(&a.group)?,
            agent_version: "load".into(),
            capabilities: Vec::new(),
            last_epoch_seen: Epoch(0),
            priority: 0,
            no_failover: false,
        })
        .into(),
    )
    .await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    totals.sessions_up.fetch_add(1, Ordering::SeqCst);
    let mut epoch = Epoch(0);
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut last_grant: Option<Instant> = None;
    let mut worst = Duration::ZERO;
    let mut next_id = 1u64;
    let mut seq = 0u64;
    // spread the agents over the period
    let phase = Duration::from_millis(fastrand::u64(0..500));
    let mut reports = tokio::time::interval_at(
        tokio::time::Instant::now() + phase,
        Duration::from_millis(500),
    );
    let mut renew = tokio::time::interval_at(
        tokio::time::Instant::now() + phase / 2,
        Duration::from_millis(250),
    );
    let mut latencies = Vec::new();
    loop {
        tokio::select! {
            _ = reports.tick() => {
                if stop.load(Ordering::SeqCst) { break; }
                seq += 1;
                tx.send(AgentMessage::Report(report(seq)).into()).await?;
                if window.get().is_some() {
                    totals.reports.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = renew.tick(), if a.primary && epoch.0 > 0 => {
                let id = next_id;
                next_id += 1;
                pending.insert(id, Instant::now());
                tx.send(AgentMessage::LeaseRequest(LeaseRequest { request_id: id, epoch }).into()).await?;
                if let (Some(start), Some(last)) = (window.get(), last_grant) {
                    let since = Instant::now().saturating_duration_since(last.max(*start));
                    worst = worst.max(since);
                }
            }
            m = inbound.message() => {
                let Some(m) = m? else { anyhow::bail!("controller ended the session") };
                match ControllerMessage::try_from(m)? {
                    ControllerMessage::Welcome(w) => epoch = w.epoch,
                    ControllerMessage::Ack(ack) => epoch = ack.epoch,
                    ControllerMessage::LeaseGrant(g) => {
                        if let Err(why) = &g.outcome
                            && totals.refused.fetch_add(1, Ordering::Relaxed) < 3
                        {
                            eprintln!("{}: lease refused: {why}", a.host);
                        }
                        if let Some(sent) = pending.remove(&g.request_id)
                            && g.outcome.is_ok()
                        {
                            let now = Instant::now();
                            if window.get().is_some_and(|s| sent >= *s) {
                                latencies.push(now - sent);
                            }
                            last_grant = Some(now);
                        }
                    }
                    ControllerMessage::Command(_) => {}
                }
            }
        }
    }
    totals.latencies.lock().await.extend(latencies);
    if a.primary {
        totals.worst_gap.lock().await.push(worst);
    }
    Ok(())
}

/// (utime + stime in clock ticks, VmRSS in KiB) of a process.
fn proc_stats(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

async fn step(n: usize, args: &Args) -> anyhow::Result<Vec<String>> {
    let dir = tempfile::Builder::new().prefix("drload-").tempdir()?;
    let hosts: Vec<String> = (0..n).map(|i| format!("a{i:05}")).collect();
    let pki = PkiPlan {
        dir: dir.path().join("pki"),
        controllers: names("controller", &["ctl1".into()])
            .map_err(|e| anyhow::anyhow!(e.message))?,
        controller_sans: vec!["localhost".into(), "127.0.0.1".into()],
        agents: names("agents", &hosts).map_err(|e| anyhow::anyhow!(e.message))?,
        operators: names("operators", &["bench".into()]).map_err(|e| anyhow::anyhow!(e.message))?,
        viewers: Vec::new(),
        days: 2,
        force: false,
    };
    eprintln!("step {n}: {n} agent certificates...");
    pki_init(&pki).map_err(|e| anyhow::anyhow!(e.message))?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let http = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let p = dir.path().join("pki");
    let mut config = format!(
        "id = \"ctl1\"\nlisten = \"127.0.0.1:{port}\"\nhttp_listen = \"127.0.0.1:{http}\"\ndata_dir = {:?}\n\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n\n[backup]\nfull_every_s = 0\nincremental_every_s = 0\ndrill_every_s = 0\n\n",
        dir.path().join("state").display().to_string(),
        p.join("ca.pem").display().to_string(),
        p.join("controller-ctl1.pem").display().to_string(),
        p.join("controller-ctl1.key").display().to_string(),
    );
    let groups = n.div_ceil(args.per_group);
    for g in 0..groups {
        config.push_str(&format!(
            "[[group]]\nname = \"g{g:05}\"\nprimary = \"{}\"\n\n",
            hosts[g * args.per_group]
        ));
    }
    let cfg = dir.path().join("controller.toml");
    std::fs::write(&cfg, config)?;
    let bins = Bins::locate();
    let controller = Daemon::spawn(
        "controller",
        &bins.controller(),
        &["run".into(), "--config".into(), cfg.display().to_string()],
        &args
            .log_dir
            .as_deref()
            .unwrap_or(dir.path())
            .join(format!("controller-{n}.log")),
    )?;
    let pid = controller.pid();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "controller did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, rss_idle) = proc_stats(pid);

    let ca = Certificate::from_pem(std::fs::read(p.join("ca.pem"))?);
    let totals = Arc::new(Totals::default());
    let window = Arc::new(std::sync::OnceLock::new());
    let ramp_started = Instant::now();
    let ramp_budget = Duration::from_secs(120);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("https://127.0.0.1:{port}");
    let mut tasks = Vec::with_capacity(n);
    for (i, host) in hosts.iter().enumerate() {
        let tls = ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .domain_name("localhost")
            .identity(Identity::from_pem(
                std::fs::read(p.join(format!("agent-{host}.pem")))?,
                std::fs::read(p.join(format!("agent-{host}.key")))?,
            ));
        let agent = Agent {
            host: host.clone(),
            group: format!("g{:05}", i / args.per_group),
            primary: i % args.per_group == 0,
            tls,
        };
        let (t, w, u, st) = (totals.clone(), window.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = run_agent(agent, u, t.clone(), w, st).await
                && t.failures.fetch_add(1, Ordering::SeqCst) < 3
            {
                eprintln!("agent: {e:#}");
            }
        }));
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while totals.sessions_up.load(Ordering::SeqCst) + totals.failures.load(Ordering::SeqCst) < n {
        anyhow::ensure!(
            ramp_started.elapsed() < ramp_budget,
            "sessions did not come up in {ramp_budget:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp = ramp_started.elapsed();
    eprintln!(
        "step {n}: {} sessions up in {ramp:?}; warming up 5 s",
        totals.sessions_up.load(Ordering::SeqCst)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, _) = proc_stats(pid);
    let (gen0, _) = proc_stats(std::process::id());
    let t0 = Instant::now();
    let _ = window.set(Instant::now());
    // The controller's RSS over the window, sampled ten times (flat in a soak).
    let mut rss_samples = Vec::new();
    for i in 0..=10u32 {
        let at = Duration::from_secs(args.seconds) * i / 10;
        tokio::time::sleep(at.saturating_sub(t0.elapsed())).await;
        rss_samples.push(proc_stats(pid).1 / 1024);
    }
    eprintln!("step {n}: controller RSS MiB over the window: {rss_samples:?}");
    let (cpu1, rss_end) = proc_stats(pid);
    let (gen1, _) = proc_stats(std::process::id());
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    drop(controller);
    let lat = totals.latencies.lock().await.clone();
    let gaps = totals.worst_gap.lock().await.clone();
    let ticks_per_s = 100.0;
    let cpu = (cpu1 - cpu0) as f64 / ticks_per_s / elapsed.as_secs_f64() * 100.0;
    let gen_cpu = (gen1 - gen0) as f64 / ticks_per_s / elapsed.as_secs_f64() * 100.0;
    let missed = gaps.iter().filter(|g| **g > LEASE_TTL).count();
    let fine = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    Ok(vec![
        n.to_string(),
        format!(
            "{} ({} failed)",
            totals.sessions_up.load(Ordering::SeqCst),
            totals.failures.load(Ordering::SeqCst)
        ),
        format!(
            "{:.0}",
            totals.reports.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
        ),
        lat.len().to_string(),
        fine(percentile(&lat, 50.0)),
        fine(percentile(&lat, 99.0)),
        fine(lat.iter().copied().max().unwrap_or_default()),
        format!(
            "{missed} of {} ({} refusals)",
            gaps.len(),
            totals.refused.load(Ordering::Relaxed)
        ),
        format!("{cpu:.0}%"),
        format!("{gen_cpu:.0}%"),
        format!(
            "{:.0} (window: {} → {})",
            rss_end as f64 / 1024.0,
            rss_samples.first().copied().unwrap_or(0),
            rss_samples.last().copied().unwrap_or(0)
        ),
        format!(
            "{:.1}",
            (rss_end.saturating_sub(rss_idle)) as f64 / n as f64
        ),
    ])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    dr_proto::install_crypto_provider();
    let args = Args::parse();
    let mut rows = Vec::new();
    for &n in &args.agents {
        match step(n, &args).await {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("step {n} failed: {e:#}");
                rows.push(vec![n.to_string(), format!("failed: {e}")]);
            }
        }
    }
    println!(
        "\nController load: agents reporting at 2 Hz, primaries renewing every 250 ms (lease ttl 2 s):\n"
    );
    table(
        &[
            "agents",
            "sessions",
            "reports/s",
            "grants",
            "grant p50",
            "grant p99",
            "grant max",
            "primaries that missed a lease",
            "controller CPU",
            "load generator CPU",
            "controller RSS MiB",
            "KiB per session",
        ],
        &rows,
    );
    Ok(())
}
