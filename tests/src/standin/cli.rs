//! `erlmcp-standin run|daemon|stop`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use dr_proto::process::{is_alive, read_pid_file, stop as stop_pid};
use std::os::unix::process::CommandExt;
use tokio::sync::Notify;

use super::faults::{Faults, Overrides};
use super::http::{Standin, router};
use super::logger::Logger;
use super::receipts::ReceiptStore;

#[derive(Parser)]
#[command(
    name = "erlmcp-standin",
    version,
    about = "Stand-in for erlmcp in erlmcp-dr demos and tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run in the foreground.
    Run(RunArgs),
    /// Start in the background; return once it answers (like `bin/erlmcp daemon`).
    Daemon(RunArgs),
    /// Tell a running instance its role (used as the demo's promote/demote/fence hook); the
    /// epoch comes from ERLMCP_DR_EPOCH.
    Role {
        #[arg(long)]
        addr: SocketAddr,
        /// primary, replica or fenced
        role: String,
    },
    /// Check a data directory the way the runbook's `tcps_persistence:verify_integrity()` would:
    /// every receipt, client receipt and session file is whole JSON and every index line is well
    /// formed. Used as the demo's post-restore and drill integrity hook. Exit 1 on a problem.
    VerifyData {
        /// Default: ERLMCP_DR_DATA_DIR (set by the agent for backup hooks).
        #[arg(long, env = "ERLMCP_DR_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Stop the instance of a pid file: SIGTERM, SIGKILL after the grace (like `bin/erlmcp stop`).
    Stop {
        #[arg(long)]
        pid_file: PathBuf,
        #[arg(long, default_value_t = 5000)]
        grace_ms: u64,
    },
    /// Poll an agent's `/primary` and a stand-in's role every `every_ms` and append
    /// `unix_ms primary_code role epoch` lines to `out` (split-brain evidence, run inside the
    /// host's network namespace so it sees the host even while cut off).
    Watch {
        #[arg(long)]
        agent: SocketAddr,
        #[arg(long)]
        service: SocketAddr,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 50)]
        every_ms: u64,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Host name reported to clients.
    #[arg(long)]
    host: String,
    /// Address to serve on.
    #[arg(long)]
    listen: SocketAddr,
    /// Data directory (receipts, index, sessions).
    #[arg(long)]
    data_dir: PathBuf,
    /// Log file in erlmcp's style.
    #[arg(long)]
    log_file: PathBuf,
    /// Pid file, written once the port is bound.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Initial role reported by `GET /`.
    #[arg(long, default_value = "replica")]
    role: String,
    /// Background receipt every N ms (0: none).
    #[arg(long, default_value_t = 250)]
    receipt_interval_ms: u64,
    /// Simulated boot time before the port opens.
    #[arg(long, default_value_t = 0)]
    boot_ms: u64,
    /// Another member's service address (repeat): client receipts are replicated to a majority.
    #[arg(long = "peer")]
    peers: Vec<SocketAddr>,
}

impl RunArgs {
    fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "run".into(),
            "--host".into(),
            self.host.clone(),
            "--listen".into(),
            self.listen.to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--log-file".into(),
            self.log_file.display().to_string(),
            "--role".into(),
            self.role.clone(),
            "--receipt-interval-ms".into(),
            self.receipt_interval_ms.to_string(),
            "--boot-ms".into(),
            self.boot_ms.to_string(),
        ];
        if let Some(p) = &self.pid_file {
            v.push("--pid-file".into());
            v.push(p.display().to_string());
        }
        for p in &self.peers {
            v.push("--peer".into());
            v.push(p.to_string());
        }
        v
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Daemon(args) => daemon(args),
        Cmd::Stop { pid_file, grace_ms } => stop(&pid_file, Duration::from_millis(grace_ms)),
        Cmd::Role { addr, role } => set_role(addr, &role),
        Cmd::Watch {
            agent,
            service,
            out,
            every_ms,
        } => super::watch::run(agent, service, &out, Duration::from_millis(every_ms)),
        Cmd::VerifyData { data_dir } => match super::receipts::verify(&data_dir) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(problem) => {
                eprintln!(
                    "integrity check of {} failed: {problem}",
                    data_dir.display()
                );
                ExitCode::from(1)
            }
        },
    }
}

fn set_role(addr: SocketAddr, role: &str) -> ExitCode {
    let epoch = std::env::var("ERLMCP_DR_EPOCH").unwrap_or_else(|_| "0".into());
    let uri: hyper::Uri =
        match format!("http://{addr}/control/role?role={role}&epoch={epoch}").parse() {
            Ok(u) => u,
            Err(e) => return fail(e),
        };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let r = rt.block_on(dr_proto::http_client::request(
        hyper::Method::POST,
        &uri,
        &[],
        Default::default(),
        Duration::from_secs(3),
    ));
    match r {
        Ok(a) if a.status.is_success() => {
            println!("{role} at epoch {epoch}");
            ExitCode::SUCCESS
        }
        Ok(a) => fail(format!(
            "HTTP {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        )),
        Err(e) => fail(format!("{addr}: {e}")),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("erlmcp-standin: {msg}");
    ExitCode::from(1)
}

fn daemon(args: RunArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find own executable: {e}")),
    };
    if let Some(parent) = args.log_file.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let out = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log_file)
    {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot open {}: {e}", args.log_file.display())),
    };
    let err = match out.try_clone() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let mut child = match Command::new(exe)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(10) + Duration::from_millis(args.boot_ms);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return fail(format!(
                "exited during start ({status}); see {}",
                args.log_file.display()
            ));
        }
        // ready = it wrote its own pid (after binding) and the port answers; a port that answers
        // for someone else does not count
        let own_pid = args
            .pid_file
            .as_ref()
            .is_none_or(|p| read_pid_file(p).ok().flatten() == Some(child.id()));
        if own_pid
            && std::net::TcpStream::connect_timeout(&args.listen, Duration::from_millis(200))
                .is_ok()
        {
            println!("{}", child.id());
            return ExitCode::SUCCESS;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return fail(format!(
                "did not open {} in time; see {}",
                args.listen,
                args.log_file.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(pid_file: &Path, grace: Duration) -> ExitCode {
    let pid = match read_pid_file(pid_file) {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            println!("not running (no pid file {})", pid_file.display());
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(e),
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("erlmcp-standin"))
        .unwrap_or(false);
    if !is_alive(pid) || !ours {
        println!("not running (stale pid file {})", pid_file.display());
        let _ = std::fs::remove_file(pid_file);
        return ExitCode::SUCCESS;
    }
    let outcome = stop_pid(pid, grace);
    let _ = std::fs::remove_file(pid_file);
    println!("stopped pid {pid}: {outcome:?}");
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

async fn serve(args: RunArgs) -> anyhow::Result<()> {
    let log = Logger::open(&args.log_file)?;
    log.info(
        "application_controller",
        &format!("starting erlmcp on {} as {}", args.listen, args.host),
    );
    let receipts = ReceiptStore::open(&args.data_dir)?;
    let seq = receipts.next_seq();
    if args.boot_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.boot_ms)).await;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    let s = Arc::new(Standin {
        host: args.host.clone(),
        started: Instant::now(),
        role: Mutex::new((args.role.clone(), 0)),
        faults: Mutex::new(Faults::default()),
        fault_since: Mutex::new(Instant::now()),
        overrides: Mutex::new(Overrides::default()),
        changed: Notify::new(),
        requests: Default::default(),
        in_flight: Default::default(),
        outcomes: Mutex::new(Default::default()),
        leaked: Mutex::new(Vec::new()),
        leaked_bytes: Default::default(),
        receipts,
        seq: seq.into(),
        log,
        peers: args.peers.clone(),
    });
    s.log.info(
        "erlmcp_server",
        &format!(
            "started: listening on {}, data in {}",
            args.listen,
            args.data_dir.display()
        ),
    );

    tokio::spawn(write_receipts(s.clone(), args.receipt_interval_ms));
    tokio::spawn(grow_memory(s.clone()));
    let shutdown = Arc::new(Notify::new());
    tokio::spawn(signals(s.clone(), shutdown.clone()));

    let stopped = shutdown.clone();
    axum::serve(listener, router(s.clone()))
        .with_graceful_shutdown(async move { stopped.notified().await })
        .await?;
    s.log.info("application_controller", "erlmcp stopped");
    if let Some(p) = &args.pid_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

async fn write_receipts(s: Arc<Standin>, interval_ms: u64) {
    if interval_ms == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    let mut written = 0u64;
    loop {
        tick.tick().await;
        if s.faults().hang {
            continue;
        }
        let seq = s.seq.fetch_add(1, Ordering::Relaxed);
        let s2 = s.clone();
        let r =
            tokio::task::spawn_blocking(move || s2.receipts.write_background(&s2.host, seq)).await;
        match r {
            Ok(Ok(())) => {
                written += 1;
                if written.is_multiple_of(100) {
                    s.log
                        .info("tcps_persistence", &format!("{written} receipts written"));
                }
            }
            Ok(Err(e)) => s.log.error(
                "tcps_persistence",
                &format!("cannot write receipt {seq}: {e}"),
            ),
            Err(e) => s
                .log
                .error("tcps_persistence", &format!("receipt writer failed: {e}")),
        }
    }
}

/// The memory fault: really allocate, so host memory probes see it too.
async fn grow_memory(s: Arc<Standin>) {
    const CAP: u64 = 4 * 1024 * 1024 * 1024;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let rate = s.faults().memory_mib_per_s;
        if rate == 0 || s.leaked_bytes.load(Ordering::Relaxed) >= CAP {
            continue;
        }
        let bytes = (rate * 1024 * 1024 / 10) as usize;
        let chunk = vec![0xA5u8; bytes];
        s.leaked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(chunk);
        s.leaked_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

async fn signals(s: Arc<Standin>, shutdown: Arc<Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut usr1), Ok(mut usr2), Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        s.log
            .error("erlmcp_dr_fault", "cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = usr1.recv() => {
                s.set_faults(|f| f.error5xx = !f.error5xx);
                s.log.warning("erlmcp_dr_fault", &format!("SIGUSR1: 5xx fault {}", if s.faults().error5xx { "on" } else { "off" }));
            }
            _ = usr2.recv() => {
                s.set_faults(|f| f.hang = !f.hang);
                s.log.warning("erlmcp_dr_fault", &format!("SIGUSR2: hang fault {}", if s.faults().hang { "on" } else { "off" }));
            }
            _ = hup.recv() => {
                s.set_faults(|f| *f = Faults::default());
                s.log.info("erlmcp_dr_fault", "SIGHUP: faults cleared");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    s.log.info("init", "stop requested: shutting down");
    // release hung requests so the graceful shutdown can finish
    s.set_faults(|f| *f = Faults::default());
    shutdown.notify_waiters();
    shutdown.notify_one();
}
