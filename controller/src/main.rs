//! `dr-controller`: decides failover, keeps cluster state, serves agents and drctl.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dr_controller::config::ControllerConfig;
use dr_proto::tls::TlsMaterial;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "dr-controller", version, about = "erlmcp-dr controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(ConfigArgs),
    /// Load and check the config (and its TLS files), then exit: 0 good, 2 bad.
    CheckConfig(ConfigArgs),
    /// Losing every controller: bootstrap a new single-node controller cluster in this
    /// config's data_dir from a controller-state backup (`drctl controller backup`). Add the
    /// other controllers afterwards with `drctl controller add`.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct RestoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The backup store (default: `controller_store` in [backup]).
    #[arg(long)]
    store: Option<String>,
    /// A snapshot id (default: the newest).
    #[arg(long)]
    snapshot: Option<String>,
    /// List the snapshots in the store and exit.
    #[arg(long)]
    list: bool,
    /// Move an existing state in data_dir aside (kept) instead of refusing.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Config file (TOML); see deploy/controller.example.toml.
    #[arg(long, env = "DR_CONTROLLER_CONFIG")]
    config: PathBuf,
    /// Serve plaintext gRPC without certificates. Development only: anyone who can reach the
    /// port can then act as any agent or operator.
    #[arg(long)]
    insecure_dev: bool,
}

mod restore;

fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft narrates every vote at info level: its warnings are what an operator needs
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Config and TLS problems: one line, exit code 2.
fn load(args: &ConfigArgs) -> Result<(ControllerConfig, Option<TlsMaterial>), String> {
    let config =
        ControllerConfig::load(&args.config, args.insecure_dev).map_err(|e| e.to_string())?;
    let tls = match &config.tls {
        Some(paths) => {
            let tls = TlsMaterial::load(paths)
                .map_err(|e| format!("config {}: {e}", args.config.display()))?;
            if !matches!(tls.identity, dr_proto::identity::Identity::Controller(_)) {
                return Err(format!(
                    "config {}: key `tls.cert`: certificate is for {}, a controller needs a controller:NAME certificate",
                    args.config.display(),
                    tls.identity
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
        Command::Restore(r) => (&r.config, true),
    };
    let (config, tls) = match load(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("dr-controller: {e}");
            return ExitCode::from(2);
        }
    };
    if !run {
        println!("config {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_tracing();
    if args.insecure_dev {
        tracing::warn!(
            "--insecure-dev: plaintext gRPC, no authentication; never use this in production"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dr-controller: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let work = async {
        match &cli.command {
            Command::Restore(r) => {
                restore::run(
                    config,
                    r.store.as_deref(),
                    r.snapshot.as_deref(),
                    r.list,
                    r.force,
                )
                .await
            }
            _ => run_controller(config, tls, args.insecure_dev).await,
        }
    };
    let result = runtime.block_on(work);
    // The decision loop runs on a thread of its own; do not wait on it forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dr-controller: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_controller(
    config: ControllerConfig,
    tls: Option<TlsMaterial>,
    insecure_dev: bool,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let tls = tls.map(std::sync::Arc::new);
    let (shared, runtime) =
        dr_controller::service::start(config, insecure_dev, shutdown.clone(), tls.clone()).await?;
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let served = dr_controller::server::serve(shared, tls.as_deref()).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), runtime).await;
    served?;
    tracing::info!("controller stopped");
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
