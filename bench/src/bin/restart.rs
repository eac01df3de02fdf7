//! Crash → healthy again through the automatic restart (Procedure 1), over many trials, with the
//! stand-in's own boot time (measured in the same run) subtracted.

use std::time::{Duration, Instant};

use clap::Parser;
use dr_bench::{percentile, secs, table};
use dr_proto::process::Sig;
use dr_tests::harness::{Cluster, ClusterOptions, http, wait_until};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10)]
    trials: usize,
}

async fn healthy(addr: &str) -> bool {
    http::get(addr, "/health")
        .await
        .is_ok_and(|r| r.status == 200)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let c = Cluster::start(ClusterOptions {
        controller_extra: "[restart]\nbudget = 1000\nbackoff_s = 0\n".into(),
        ..ClusterOptions::default()
    })
    .await?;
    let i = 1; // a replica: its restart is pure Procedure 1
    let svc = c.host(i).service.to_string();
    let (mut recover, mut boot) = (Vec::new(), Vec::new());
    for t in 0..args.trials {
        // boot time of the stand-in alone: stop it, start it by hand, time to healthy
        c.drctl(&["pause"]);
        c.signal_standin(i, Sig::Kill)?;
        let s = svc.clone();
        wait_until("down", Duration::from_secs(10), || {
            let s = s.clone();
            async move { (!healthy(&s).await).then_some(()) }
        })
        .await?;
        let b0 = Instant::now();
        c.start_standin(i)?;
        let s = svc.clone();
        wait_until(
            "healthy after a manual start",
            Duration::from_secs(10),
            || {
                let s = s.clone();
                async move { healthy(&s).await.then_some(()) }
            },
        )
        .await?;
        let b = b0.elapsed();
        c.drctl(&["resume"]);
        c.wait_status("green", Duration::from_secs(20), |v| {
            v.groups[0]
                .members
                .iter()
                .all(|m| m.health == dr_proto::domain::Health::Green)
        })
        .await?;
        // the measured crash
        let t0 = Instant::now();
        c.signal_standin(i, Sig::Kill)?;
        let s = svc.clone();
        wait_until("down", Duration::from_secs(10), || {
            let s = s.clone();
            async move { (!healthy(&s).await).then_some(()) }
        })
        .await?;
        let s = svc.clone();
        wait_until(
            "healthy again through the restart",
            Duration::from_secs(60),
            || {
                let s = s.clone();
                async move { healthy(&s).await.then_some(()) }
            },
        )
        .await?;
        let r = t0.elapsed();
        eprintln!(
            "  trial {:>2}: healthy again after {} (boot alone {})",
            t + 1,
            secs(r),
            secs(b)
        );
        recover.push(r);
        boot.push(b);
    }
    let boot_median = percentile(&boot, 50.0);
    let net: Vec<Duration> = recover
        .iter()
        .map(|r| r.saturating_sub(boot_median))
        .collect();
    println!();
    table(
        &["measure", "trials", "median", "max", "target"],
        &[
            vec![
                "crash → healthy (total)".into(),
                recover.len().to_string(),
                secs(percentile(&recover, 50.0)),
                secs(*recover.iter().max().unwrap()),
                "-".into(),
            ],
            vec![
                "stand-in boot alone".into(),
                boot.len().to_string(),
                secs(boot_median),
                secs(*boot.iter().max().unwrap()),
                "-".into(),
            ],
            vec![
                "crash → healthy minus boot".into(),
                net.len().to_string(),
                secs(percentile(&net, 50.0)),
                secs(*net.iter().max().unwrap()),
                "≤ 2 s (runbook: < 1 min)".into(),
            ],
        ],
    );
    Ok(())
}
