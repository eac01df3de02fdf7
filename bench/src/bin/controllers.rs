//! Controller high availability, over many trials: leader failover time (kill -9 of the Raft
//! leader → a surviving controller commits a state change) in a three-controller cluster, and
//! the latency of one committed state change (an operator's `SetMode`, over gRPC/mTLS) with one
//! and with three controllers, measured in the same run so the ratio is meaningful.

use std::time::{Duration, Instant};

use clap::Parser;
use dr_bench::{percentile, secs, table};
use dr_proto::pb;
use dr_proto::pb::admin_client::AdminClient;
use dr_tests::harness::{Cluster, ClusterOptions, wait_until};
use drctl::demo::layout::OPERATOR;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Parser)]
struct Args {
    /// Leader kills.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// State changes timed per cluster size.
    #[arg(long, default_value_t = 200)]
    writes: usize,
}

const GROUP: &str = "erlmcp";

/// An operator's admin client to controller `i` (mTLS with the cluster's own PKI).
async fn admin(c: &Cluster, i: usize) -> anyhow::Result<AdminClient<Channel>> {
    let pki = c.plan.pki_dir();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(pki.join("ca.pem"))?))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            std::fs::read(pki.join(format!("operator-{OPERATOR}.pem")))?,
            std::fs::read(pki.join(format!("operator-{OPERATOR}.key")))?,
        ));
    let channel = Endpoint::from_shared(format!("https://{}", c.plan.controllers[i].grpc))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(AdminClient::new(channel))
}

fn set_mode(paused: bool) -> pb::SetModeRequest {
    pb::SetModeRequest {
        group: GROUP.into(),
        mode: if paused {
            pb::Mode::Paused as i32
        } else {
            pb::Mode::Automatic as i32
        },
    }
}

/// Time `n` committed state changes on the leader, one after the other.
async fn write_latencies(c: &Cluster, n: usize) -> anyhow::Result<Vec<Duration>> {
    let leader = c.leader().ok_or_else(|| anyhow::anyhow!("no leader"))?;
    let mut client = admin(c, leader).await?;
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let t = Instant::now();
        client.set_mode(set_mode(k.is_multiple_of(2))).await?;
        out.push(t.elapsed());
    }
    client.set_mode(set_mode(false)).await?;
    Ok(out)
}

/// Kill -9 the leader; the time until one of the others commits a state change.
async fn leader_failover(c: &mut Cluster, trial: usize) -> anyhow::Result<Duration> {
    let old = c.leader().ok_or_else(|| anyhow::anyhow!("no leader"))?;
    let others: Vec<usize> = (0..c.plan.controllers.len())
        .filter(|i| *i != old)
        .collect();
    let mut clients = Vec::new();
    for &i in &others {
        clients.push(admin(c, i).await?);
    }
    c.kill_controller(old);
    let t0 = Instant::now();
    let took = loop {
        let mut done = None;
        for client in clients.iter_mut() {
            if client
                .set_mode(set_mode(trial.is_multiple_of(2)))
                .await
                .is_ok()
            {
                done = Some(t0.elapsed());
                break;
            }
        }
        if let Some(d) = done {
            break d;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "no leader after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Bring it back and let it catch up before the next trial.
    c.spawn_controller(old)?;
    wait_until(
        "the old leader to rejoin",
        Duration::from_secs(20),
        || async {
            let out = c.drctl_at(old, &["controller", "status", "-o", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (out.status.success() && v["leader"].as_str().is_some_and(|l| !l.is_empty()))
                .then_some(())
        },
    )
    .await?;
    c.wait_controllers().await?;
    Ok(took)
}

/// Milliseconds with two decimals below a second (write latencies), else seconds.
fn fine(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else {
        secs(d)
    }
}

fn row(name: &str, v: &[Duration], baseline: Option<Duration>) -> Vec<String> {
    let median = percentile(v, 50.0);
    vec![
        name.to_string(),
        v.len().to_string(),
        fine(median),
        fine(percentile(v, 99.0)),
        fine(v.iter().copied().max().unwrap_or_default()),
        baseline
            .map(|b| format!("{:.2}×", median.as_secs_f64() / b.as_secs_f64().max(1e-9)))
            .unwrap_or_else(|| "1.00× (baseline)".into()),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    dr_proto::install_crypto_provider();
    let args = Args::parse();

    let one = Cluster::start(ClusterOptions::default()).await?;
    let w1 = write_latencies(&one, args.writes).await?;
    drop(one);
    let mut three = Cluster::start(ClusterOptions {
        controllers: 3,
        ..ClusterOptions::default()
    })
    .await?;
    let w3 = write_latencies(&three, args.writes).await?;
    let mut failovers = Vec::new();
    for trial in 0..args.trials {
        let d = leader_failover(&mut three, trial).await?;
        eprintln!("trial {}: {}", trial + 1, secs(d));
        failovers.push(d);
    }

    println!("\nCommitted state change (operator SetMode over gRPC/mTLS, leader to quorum):\n");
    let b = percentile(&w1, 50.0);
    table(
        &[
            "controllers",
            "writes",
            "median",
            "p99",
            "max",
            "median vs 1 node",
        ],
        &[row("1", &w1, None), row("3", &w3, Some(b))],
    );
    println!("\nLeader failover: kill -9 of the leader → a survivor commits a state change:\n");
    table(
        &["cluster", "trials", "median", "p99", "max", "target"],
        &[{
            let mut r = row("3 controllers", &failovers, None);
            r[5] = "< 2 s".into();
            r
        }],
    );
    Ok(())
}
