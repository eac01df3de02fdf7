//! The agent's footprint at default probing, including the Erlang probe against a real OTP
//! node: RSS (current and peak) and CPU (share of one core) over a measurement period, and the
//! agent's and controller's RSS sampled ten times over it (a soak: `--seconds 600` shows
//! whether memory stays flat).

use std::time::{Duration, Instant};

use clap::Parser;
use dr_bench::table;
use dr_tests::harness::erlang::{ErlNode, available};
use dr_tests::harness::{Cluster, ClusterOptions};

#[derive(Parser)]
struct Args {
    /// Measurement period after a 5 s warm-up.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Run the agent without its backup change journal (`[backup] change_journal = false`).
    #[arg(long)]
    no_journal: bool,
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').ok_or_else(|| anyhow::anyhow!("bad stat"))? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .ok_or_else(|| anyhow::anyhow!("no {key}"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        available(),
        "erl/erlc not found: apt-get install erlang-base"
    );
    let node = ErlNode::start()?;
    let c = Cluster::start(ClusterOptions {
        hosts: 1,
        // The demo layout's agent config ends in its [backup] section.
        agent_extra: format!(
            "{}\n{}",
            if args.no_journal {
                "change_journal = false"
            } else {
                ""
            },
            node.agent_toml()
        ),
        ..ClusterOptions::default()
    })
    .await?;
    let pid = c.agents[0].as_ref().unwrap().pid();
    let report = c.status()?;
    let m = &report.groups[0].members[0];
    let erl = m.last_report.as_ref().and_then(|r| r.erlang.as_ref());
    anyhow::ensure!(
        erl.is_some_and(|e| e.reachable),
        "the Erlang probe does not reach {}: {:?}",
        node.node,
        erl
    );
    tokio::time::sleep(Duration::from_secs(5)).await; // warm-up
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    let cpid = c.controllers[0].as_ref().map(|d| d.pid()).unwrap_or(0);
    let mut samples = Vec::new();
    for i in 0..=10u64 {
        let at = Duration::from_secs(args.seconds) * u32::try_from(i).unwrap_or(0) / 10;
        tokio::time::sleep(at.saturating_sub(t0.elapsed())).await;
        samples.push(vec![
            format!("{:.0} s", t0.elapsed().as_secs_f64()),
            format!("{:.1}", status_kib(pid, "VmRSS:")? as f64 / 1024.0),
            format!("{:.1}", status_kib(cpid, "VmRSS:")? as f64 / 1024.0),
        ]);
    }
    let (elapsed, c1) = (t0.elapsed(), cpu_ticks(pid)?);
    let cpu = (c1 - c0) as f64 / ticks_per_s / elapsed.as_secs_f64() * 100.0;
    let rss = status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let hwm = status_kib(pid, "VmHWM:")? as f64 / 1024.0;
    let reports = report.groups[0].members[0]
        .last_report
        .as_ref()
        .map(|r| r.seq)
        .unwrap_or(0);
    println!();
    table(
        &[
            "agent footprint (report every 500 ms; process, ports, HTTP, metrics, log, host, Erlang probes)",
            "value",
            "target",
        ],
        &[
            vec![
                format!("CPU over {} s", args.seconds),
                format!("{cpu:.2}% of one core"),
                "≤ 1%".into(),
            ],
            vec!["RSS now".into(), format!("{rss:.1} MiB"), "≤ 15 MiB".into()],
            vec![
                "RSS peak (VmHWM)".into(),
                format!("{hwm:.1} MiB"),
                "≤ 15 MiB".into(),
            ],
        ],
    );
    println!();
    table(
        &["soak: time", "agent RSS MiB", "controller RSS MiB"],
        &samples,
    );
    eprintln!("(reports sent before the warm-up: {reports})");
    Ok(())
}
