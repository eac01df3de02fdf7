//! `drctl`: the operator's command line for erlmcp-dr.
//! Exit codes: 0 ok, 1 the operation failed, 2 usage or config error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use dr_proto::pb;

use drctl::config::{self, DrctlConfig};
use drctl::error::{CliError, CliResult};
use drctl::output::Format;
use drctl::{
    actions, backups, client, controllers, demo, docgen, history, pki, status, streams, watch,
};

#[derive(Parser)]
#[command(
    name = "drctl",
    version,
    about = "erlmcp-dr: disaster recovery for erlmcp, from the command line",
    after_help = "Exit status: 0 ok, 1 the operation failed (refused, unreachable, failed on a \
                  host), 2 usage or config error. Runbook: docs/runbook.md."
)]
struct Cli {
    /// drctl config (TOML). Default: $DRCTL_CONFIG, then ./drctl.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Talk plaintext gRPC without certificates (only to a controller started with --insecure-dev).
    #[arg(long, global = true)]
    insecure_dev: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show every group: primary, epoch, members with health and reasons.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Include each member's last probe report in JSON output.
        #[arg(long)]
        verbose: bool,
    },
    /// Round trip through the controller to one agent's command executor.
    Ping {
        host: String,
        #[arg(long, default_value = "erlmcp")]
        group: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// A live status view: redraws every interval until Ctrl-C (elsewhere than on a terminal:
    /// one snapshot per interval; with -o json one status object per line).
    Watch {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Time between refreshes: milliseconds, or a duration like 500ms or 2s.
        #[arg(long, default_value = "1s", value_parser = watch::parse_interval)]
        interval: Duration,
        /// Stop after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Procedure 1 on one host: stop, start, wait until healthy, check the log.
    Restart {
        host: String,
        #[arg(long, default_value = "erlmcp")]
        group: String,
    },
    /// Make another host primary now; works without a healthy primary.
    Failover {
        #[arg(long, default_value = "erlmcp")]
        group: String,
        /// The new primary (default: the best healthy candidate).
        #[arg(long)]
        to: Option<String>,
        /// Allow a red or lagging target and skip the cooldown.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
        /// Follow the change until the new primary is verified.
        #[arg(long)]
        wait: bool,
    },
    /// Planned change of primary: demote first, then promote (no lease wait).
    Switchover {
        #[arg(long, default_value = "erlmcp")]
        group: String,
        #[arg(long)]
        to: String,
        /// When: +SECONDS, a duration (30s, 5m) or unix seconds. Default: now.
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        force: bool,
        #[arg(long, short)]
        yes: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Maintenance: no automatic action (leases are still renewed).
    Pause {
        #[arg(long, default_value = "erlmcp")]
        group: String,
    },
    /// End maintenance.
    Resume {
        #[arg(long, default_value = "erlmcp")]
        group: String,
    },
    /// Role changes and incidents, newest first.
    History {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One incident with its timeline; --report prints the post-incident review (Markdown).
    Incident {
        id: u64,
        #[arg(long)]
        report: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// The service log of a host.
    Logs {
        host: String,
        #[arg(long, default_value = "erlmcp")]
        group: String,
        #[arg(long, default_value_t = 100)]
        lines: u32,
        /// Only lines matching this regular expression.
        #[arg(long)]
        grep: Option<String>,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
    },
    /// A diagnostics bundle from a host: log tail, redacted configs, crash dump, metrics, probes.
    Diag {
        host: String,
        #[arg(long, default_value = "erlmcp")]
        group: String,
        /// Where to write the bundle (tar.zst).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// MiB of log to include.
        #[arg(long, default_value_t = 10)]
        log_mib: u32,
    },
    /// Backups: take one, list the catalog, verify, run a restore drill.
    Backup {
        #[command(subcommand)]
        command: BackupCmd,
    },
    /// Procedures 2 and 4: restore a backup onto a host (stage and verify, stop, swap, post-restore
    /// hooks, start, wait healthy; any failure puts the previous data back).
    Restore {
        /// The host to restore.
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "erlmcp")]
        group: String,
        /// A backup id, or `latest`.
        #[arg(long, default_value = "latest")]
        backup: String,
        /// Restore a backup taken on another host (a fresh or rebuilt host has none of its own).
        #[arg(long)]
        from_host: Option<String>,
        /// Allow restoring the current primary (its clients lose the service meanwhile).
        #[arg(long)]
        allow_primary: bool,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
        /// Follow the restore until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// The controller cluster: status, add and remove controllers, back up its state.
    Controller {
        #[command(subcommand)]
        command: ControllerCmd,
    },
    /// Certificates for controllers, agents and people.
    Pki {
        #[command(subcommand)]
        command: PkiCmd,
    },
    /// A shell completion script, e.g. `drctl completions bash > /etc/bash_completion.d/drctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (`drctl man | man -l -`); with --dir one page per command.
    Man {
        /// Write drctl.1, drctl-status.1, ... into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run a whole local installation (controller, agents, stand-ins, HAProxy, certificates).
    Demo {
        /// Directory for everything the demo writes.
        #[arg(long)]
        dir: PathBuf,
        /// Number of erlmcp hosts (agent + stand-in each).
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Number of controllers.
        #[arg(long, default_value_t = 1)]
        controllers: usize,
        /// Return once every member is green and leave everything running.
        #[arg(long)]
        detach: bool,
        /// Stop what a demo in --dir started.
        #[arg(long)]
        stop: bool,
        /// Where dr-controller, dr-agent and erlmcp-standin are (default: next to drctl).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Do not put HAProxy in front even if it is installed.
        #[arg(long)]
        no_haproxy: bool,
        /// Seconds to wait for every member to turn green.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum ControllerCmd {
    /// Every controller: membership, leader, term, last applied entry, lag behind the leader.
    Status {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Add a controller (started with `join = true` in [cluster]): as a learner until it has
    /// caught up, then as a voter.
    Add {
        /// Its id (`id` in its config; its certificate is controller:ID).
        id: String,
        /// The gRPC URL its peers reach it at, e.g. https://ctl4.example.net:7400.
        addr: String,
    },
    /// Remove a controller from the cluster.
    Remove {
        id: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Write a consistent snapshot of the controller state to a backup store (restore it with
    /// `dr-controller restore` when every controller is lost).
    Backup {
        /// file:///DIR or s3://BUCKET/PREFIX (default: the controllers' `controller_store`).
        #[arg(long)]
        store: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

#[derive(Subcommand)]
enum BackupCmd {
    /// Take a backup now (default: full, on a healthy replica).
    Create {
        #[arg(long, default_value = "erlmcp")]
        group: String,
        /// The host to back up (default: a healthy replica, else the primary).
        #[arg(long)]
        host: Option<String>,
        /// Only what changed since the newest backup of that host.
        #[arg(long)]
        incremental: bool,
        /// Show progress until the backup is stored and listed.
        #[arg(long)]
        wait: bool,
    },
    /// The catalog, newest first: id, kind, host, time, size, files, verified, last drill.
    List {
        #[arg(long, default_value = "erlmcp")]
        group: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Check a backup: stored bytes against .sha256 and the manifest; --deep also decompresses and
    /// hashes every file.
    Verify {
        /// A backup id, or `latest`.
        #[arg(default_value = "latest")]
        backup: String,
        #[arg(long, default_value = "erlmcp")]
        group: String,
        #[arg(long)]
        deep: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
    /// Restore the newest backup on a replica into a scratch directory, deep-verify it and run
    /// the integrity hook; the result shows in `backup list`.
    Drill {
        #[arg(long, default_value = "erlmcp")]
        group: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Format,
    },
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Create a CA and one certificate per identity in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Controller names (comma separated); each gets controller:NAME, valid for NAME.
        #[arg(long = "controller", required = true)]
        controllers: Vec<String>,
        /// Extra DNS names or IPs every controller certificate is valid for.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Agent host names (comma separated): agent:HOST.
        #[arg(long)]
        agents: Vec<String>,
        /// Operators (comma separated): may read and act.
        #[arg(long)]
        operators: Vec<String>,
        /// Viewers (comma separated): may only read.
        #[arg(long)]
        viewers: Vec<String>,
        /// Validity of the certificates in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Replace an existing CA in DIR.
        #[arg(long)]
        force: bool,
    },
    /// More certificates from the CA in DIR (a new host, controller or person; renewals with
    /// --force). The others stay valid.
    Issue {
        /// The directory `drctl pki init` wrote (ca.pem and ca.key).
        #[arg(long)]
        dir: PathBuf,
        /// Controller names (comma separated).
        #[arg(long = "controller")]
        controllers: Vec<String>,
        /// Extra DNS names or IPs the new controller certificates are valid for.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Agent host names (comma separated).
        #[arg(long)]
        agents: Vec<String>,
        /// Operators (comma separated).
        #[arg(long)]
        operators: Vec<String>,
        /// Viewers (comma separated).
        #[arg(long)]
        viewers: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Replace certificates that already exist.
        #[arg(long)]
        force: bool,
    },
}

fn load_config(cli: &Cli) -> CliResult<DrctlConfig> {
    let file = config::locate(cli.config.as_deref()).map_err(CliError::config)?;
    DrctlConfig::load(&file, cli.insecure_dev).map_err(|e| CliError::config(e.to_string()))
}

async fn run(cli: Cli) -> CliResult {
    match &cli.command {
        Cmd::Status {
            output,
            group,
            verbose,
        } => {
            let config = load_config(&cli)?;
            let mut conn = client::connect(&config).await?;
            let view = status::fetch(&mut conn, group.as_deref()).await?;
            print!("{}", status::render(&view, *output, *verbose));
            Ok(())
        }
        Cmd::Ping {
            host,
            group,
            output,
        } => {
            let config = load_config(&cli)?;
            let mut conn = client::connect(&config).await?;
            let r = conn
                .admin
                .ping(pb::PingRequest {
                    group: group.clone(),
                    host: host.clone(),
                    note: "drctl".into(),
                })
                .await
                .map_err(|s| client::status_error(&conn.url, s))?
                .into_inner();
            match output {
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "host": host,
                        "group": group,
                        "detail": r.detail,
                        "round_trip_ms": r.round_trip_ms,
                    })
                ),
                Format::Table => println!("{} ({} ms round trip)", r.detail, r.round_trip_ms),
            }
            Ok(())
        }
        Cmd::Watch {
            group,
            interval,
            count,
            output,
        } => {
            let args = watch::WatchArgs {
                group: group.clone(),
                interval: *interval,
                count: *count,
                format: *output,
            };
            watch::watch(&load_config(&cli)?, args).await
        }
        Cmd::Completions { shell } => docgen::completions(Cli::command(), *shell),
        Cmd::Man { dir } => docgen::man(Cli::command(), dir.as_deref()),
        Cmd::Restart { host, group } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            actions::restart(&mut conn, group, host).await
        }
        Cmd::Failover {
            group,
            to,
            force,
            yes,
            wait,
        } => {
            actions::confirmable("failover", *yes)?;
            let mut conn = client::connect(&load_config(&cli)?).await?;
            actions::failover(&mut conn, group, to.as_deref(), *force, *yes, *wait).await
        }
        Cmd::Switchover {
            group,
            to,
            at,
            force,
            yes,
            wait,
        } => {
            actions::confirmable("switchover", *yes)?;
            let mut conn = client::connect(&load_config(&cli)?).await?;
            actions::switchover(&mut conn, group, to, at.as_deref(), *force, *yes, *wait).await
        }
        Cmd::Pause { group } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            actions::set_mode(&mut conn, group, true).await
        }
        Cmd::Resume { group } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            actions::set_mode(&mut conn, group, false).await
        }
        Cmd::History {
            output,
            group,
            limit,
        } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            history::history(&mut conn, group.as_deref(), *limit, *output).await
        }
        Cmd::Incident { id, report, output } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            let i = history::fetch_incident(&mut conn, *id).await?;
            if *report {
                print!("{}", history::report(&i));
            } else {
                print!("{}", history::show(&i, *output));
            }
            Ok(())
        }
        Cmd::Logs {
            host,
            group,
            lines,
            grep,
            follow,
        } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            streams::logs(&mut conn, group, host, *lines, grep.as_deref(), *follow).await
        }
        Cmd::Diag {
            host,
            group,
            out,
            log_mib,
        } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            streams::diag(&mut conn, group, host, *log_mib, out).await
        }
        Cmd::Controller { command } => {
            let config = load_config(&cli)?;
            let mut conn = match command {
                ControllerCmd::Status { .. } => client::connect_any(&config).await?,
                _ => client::connect(&config).await?,
            };
            match command {
                ControllerCmd::Status { output } => controllers::status(&mut conn, *output).await,
                ControllerCmd::Add { id, addr } => controllers::add(&mut conn, id, addr).await,
                ControllerCmd::Remove { id, yes } => controllers::remove(&mut conn, id, *yes).await,
                ControllerCmd::Backup { store, output } => {
                    controllers::backup(&mut conn, store.as_deref(), *output).await
                }
            }
        }
        Cmd::Backup { command } => {
            let mut conn = client::connect(&load_config(&cli)?).await?;
            match command {
                BackupCmd::Create {
                    group,
                    host,
                    incremental,
                    wait,
                } => backups::create(&mut conn, group, host.as_deref(), *incremental, *wait).await,
                BackupCmd::List { group, output } => backups::list(&mut conn, group, *output).await,
                BackupCmd::Verify {
                    backup,
                    group,
                    deep,
                    output,
                } => backups::verify(&mut conn, group, backup, *deep, *output).await,
                BackupCmd::Drill { group, output } => {
                    backups::drill(&mut conn, group, *output).await
                }
            }
        }
        Cmd::Restore {
            host,
            group,
            backup,
            from_host,
            allow_primary,
            yes,
            wait,
        } => {
            actions::confirmable("restore", *yes)?;
            let mut conn = client::connect(&load_config(&cli)?).await?;
            backups::restore(
                &mut conn,
                backups::RestoreArgs {
                    group,
                    host,
                    backup,
                    from_host: from_host.as_deref(),
                    allow_primary: *allow_primary,
                    yes: *yes,
                    wait: *wait,
                },
            )
            .await
        }
        Cmd::Pki {
            command:
                PkiCmd::Init {
                    dir,
                    controllers,
                    sans,
                    agents,
                    operators,
                    viewers,
                    days,
                    force,
                },
        } => {
            let plan = pki::PkiPlan {
                dir: dir.clone(),
                controllers: pki::names("controller", controllers)?,
                controller_sans: sans.clone(),
                agents: pki::names("agents", agents)?,
                operators: pki::names("operators", operators)?,
                viewers: pki::names("viewers", viewers)?,
                days: *days,
                force: *force,
            };
            let written = pki::init(&plan)?;
            for f in &written.files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Cmd::Pki {
            command:
                PkiCmd::Issue {
                    dir,
                    controllers,
                    sans,
                    agents,
                    operators,
                    viewers,
                    days,
                    force,
                },
        } => {
            let plan = pki::PkiPlan {
                dir: dir.clone(),
                controllers: pki::names("controller", controllers)?,
                controller_sans: sans.clone(),
                agents: pki::names("agents", agents)?,
                operators: pki::names("operators", operators)?,
                viewers: pki::names("viewers", viewers)?,
                days: *days,
                force: *force,
            };
            for f in &pki::issue(&plan)?.files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Cmd::Demo {
            dir,
            hosts,
            controllers,
            detach,
            stop,
            bin_dir,
            no_haproxy,
            timeout,
        } => {
            demo::run(demo::DemoArgs {
                dir: dir.clone(),
                hosts: *hosts,
                controllers: *controllers,
                detach: *detach,
                stop: *stop,
                bin_dir: bin_dir.clone(),
                no_haproxy: *no_haproxy,
                timeout: Duration::from_secs(*timeout),
            })
            .await
        }
    }
}

fn main() -> ExitCode {
    dr_proto::install_crypto_provider();
    let cli = Cli::parse();
    // DRCTL_CHECK_ARGS=1: stop once the command line parsed (the docs test checks the commands
    // it cannot run against a demo this way)
    if std::env::var_os("DRCTL_CHECK_ARGS").is_some_and(|v| v == "1") {
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("drctl: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drctl: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
