//! `dr-agent`: runs on every erlmcp host.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use dr_agent::commands::{self, Ctx};
use dr_agent::config::AgentConfig;
use dr_agent::http_server::{self, HttpState};
use dr_agent::lease;
use dr_agent::probe::{Prober, exit_watch};
use dr_agent::session::Session;
use dr_agent::standalone;
use dr_agent::state::AgentState;
use dr_proto::identity::Identity;
use dr_proto::tls::TlsMaterial;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "dr-agent", version, about = "erlmcp-dr agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: probe, report, serve /primary /replica /health /metrics.
    Run(ConfigArgs),
    /// Load and check the config (and its TLS files), then exit: 0 good, 2 bad.
    CheckConfig(ConfigArgs),
    /// Back up a data directory to a store (no controller needed).
    Backup(standalone::BackupArgs),
    /// List the committed backups in a store (no controller needed).
    List(standalone::ListArgs),
    /// Verify a backup: its stored hash, or with --deep every file (no controller needed).
    Verify(standalone::VerifyArgs),
    /// Restore a backup into a data directory, e.g. on a fresh host (no controller needed).
    Restore(standalone::RestoreArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Config file (TOML); see deploy/agent.example.toml.
    #[arg(long, env = "DR_AGENT_CONFIG")]
    config: PathBuf,
    /// Talk plaintext gRPC without certificates. Development only.
    #[arg(long)]
    insecure_dev: bool,
}

fn init_tracing() {
    init_tracing_at("info");
}

fn init_tracing_at(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn load(args: &ConfigArgs) -> Result<(AgentConfig, Option<TlsMaterial>), String> {
    let config = AgentConfig::load(&args.config, args.insecure_dev).map_err(|e| e.to_string())?;
    let tls = match &config.tls {
        Some(paths) => {
            let tls = TlsMaterial::load(paths)
                .map_err(|e| format!("config {}: {e}", args.config.display()))?;
            if tls.identity != Identity::Agent(config.host.clone()) {
                return Err(format!(
                    "config {}: key `tls.cert`: certificate is for {} but host = \"{}\"; use the agent:{} certificate",
                    args.config.display(),
                    tls.identity,
                    config.host,
                    config.host
                ));
            }
            Some(tls)
        }
        None => None,
    };
    Ok((config, tls))
}

fn main() -> ExitCode {
    dr_proto::install_crypto_provider();
    let cli = Cli::parse();
    let (args, run) = match &cli.command {
        Command::Run(a) => (a, true),
        Command::CheckConfig(a) => (a, false),
        other => return run_standalone(other),
    };
    let (config, tls) = match load(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dr-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if !run {
        println!("config {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dr-agent: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_agent(config, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dr-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `backup`, `list`, `verify`, `restore`: no controller, no async runtime of our own.
fn run_standalone(command: &Command) -> ExitCode {
    init_tracing_at("warn");
    let r = match command {
        Command::Backup(a) => standalone::backup(a),
        Command::List(a) => standalone::list(a),
        Command::Verify(a) => standalone::verify(a),
        Command::Restore(a) => standalone::restore(a),
        Command::Run(_) | Command::CheckConfig(_) => Ok(()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

async fn run_agent(config: AgentConfig, tls: Option<TlsMaterial>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let (effects_tx, effects_rx) = tokio::sync::mpsc::unbounded_channel();
    let state = Arc::new(AgentState::open(&config.state_dir, effects_tx)?);
    let shutdown = CancellationToken::new();

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} (config key `http_listen`): {e}",
                config.http_listen
            )
        })?;

    let (log_mark, log_marks) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Ctx {
        config: config.clone(),
        state: state.clone(),
        log_mark,
        ops: Default::default(),
        journal: start_journal(&config),
    };
    let (report_tx, report_rx) = watch::channel(None);
    let prober = tokio::spawn(probe_loop(
        config.clone(),
        state.clone(),
        report_tx,
        log_marks,
        shutdown.clone(),
    ));
    let watcher = tokio::spawn(exit_watch::run(
        config.clone(),
        state.clone(),
        shutdown.clone(),
    ));
    let lease = tokio::spawn(lease::run(
        state.clone(),
        std::time::Duration::from_millis(config.lease.renew_interval_ms),
        shutdown.clone(),
    ));
    let effects = tokio::spawn(commands::run_effects(ctx.clone(), effects_rx));
    let session = tokio::spawn(
        Session {
            config: config.clone(),
            tls,
            state: state.clone(),
            reports: report_rx,
            shutdown: shutdown.clone(),
            ctx,
        }
        .run(),
    );
    let http = {
        let shutdown = shutdown.clone();
        let router = http_server::router(HttpState {
            config: config.clone(),
            state: state.clone(),
        });
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        })
    };
    tracing::info!(host = %config.host, group = %config.group, http = %config.http_listen, controllers = ?config.controllers, "agent started");

    wait_for_signal().await;
    shutdown.cancel();
    effects.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        let _ = prober.await;
        let _ = watcher.await;
        let _ = lease.await;
        let _ = session.await;
        let _ = http.await;
    })
    .await;
    tracing::info!("agent stopped");
    Ok(())
}

/// Probe every `report_interval` (and at once when the service process exits). A dead service
/// gives the lease back immediately: nothing to protect, and the controller may fail over
/// without waiting for the ttl.
async fn probe_loop(
    config: Arc<AgentConfig>,
    state: Arc<AgentState>,
    reports: watch::Sender<Option<dr_proto::domain::HealthReport>>,
    mut log_marks: tokio::sync::mpsc::UnboundedReceiver<()>,
    shutdown: CancellationToken,
) {
    let mut prober = Prober::new(config.clone());
    let mut tick = tokio::time::interval(config.report_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut released_for_death = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = state.probe_now.notified() => {}
        }
        while log_marks.try_recv().is_ok() {
            if let Some(l) = prober.log.as_mut() {
                l.mark_start();
            }
        }
        let report = prober.round(&state).await;
        let dead = report
            .process
            .as_ref()
            .is_some_and(|p| p.state == dr_proto::domain::ProcessState::NotRunning);
        let busy = !state.role_snapshot().busy_with.is_empty();
        if dead && !busy && !released_for_death {
            let detail = report
                .process
                .as_ref()
                .map(|p| p.detail.clone())
                .unwrap_or_default();
            released_for_death = state.with_role(|m| {
                let fx = m.release(&format!("service died: {detail}"));
                (!fx.is_empty() || m.released, fx)
            });
        } else if !dead && released_for_death && !busy {
            state.with_role(|m| {
                m.resume();
                ((), Vec::new())
            });
            released_for_death = false;
        }
        state.set_last_report(report.clone());
        let _ = reports.send(Some(report));
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The change journal for incrementals, when backups are configured with it. Without one (or
/// when inotify is unavailable) every incremental walks the whole data directory.
fn start_journal(config: &AgentConfig) -> Option<Arc<dr_backup::ChangeJournal>> {
    if !config.backup.as_ref()?.change_journal {
        return None;
    }
    let dir = &config.service.data_dir;
    match dr_backup::ChangeJournal::start(dir) {
        Ok(j) => {
            match j.health() {
                Ok(watches) => tracing::info!(dir = %dir.display(), watches, "change journal on"),
                Err(why) => {
                    tracing::warn!(dir = %dir.display(), reason = %why, "change journal off for now: incrementals walk everything")
                }
            }
            Some(Arc::new(j))
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no change journal (inotify unavailable): incrementals walk everything");
            None
        }
    }
}
