//! `drctl demo`: a whole local installation with embedded defaults — controller, N agents each
//! managing an `erlmcp-standin`, a `file://` backup store, HAProxy in front when installed, and
//! generated certificates. See DESIGN.md § Interfaces for the contract.

pub mod haproxy;
pub mod layout;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dr_proto::domain::{Health, StatusView};
use dr_proto::process::{StopOutcome, is_alive, read_pid_file, stop};
use std::os::unix::process::CommandExt;

use crate::client;
use crate::config::DrctlConfig;
use crate::error::{CliError, CliResult};
use crate::output::Colors;
use crate::pki::{PkiPlan, names};
use layout::{DemoPlan, GROUP, OPERATOR, VIEWER};

#[derive(Clone, Debug)]
pub struct DemoArgs {
    pub dir: PathBuf,
    pub hosts: usize,
    pub controllers: usize,
    pub detach: bool,
    pub stop: bool,
    pub bin_dir: Option<PathBuf>,
    pub no_haproxy: bool,
    pub timeout: Duration,
}

struct Bins {
    controller: PathBuf,
    agent: PathBuf,
    standin: PathBuf,
}

impl Bins {
    fn locate(bin_dir: Option<&Path>) -> CliResult<Bins> {
        let dir = match bin_dir {
            Some(d) => d.to_path_buf(),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .ok_or_else(|| {
                    CliError::failed("cannot tell where drctl is installed; pass --bin-dir")
                })?,
        };
        let find = |name: &str| -> CliResult<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(CliError::config(format!(
                    "{name} not found in {}: build everything with `cargo build --release --workspace` \
                     (or pass --bin-dir DIR)",
                    dir.display()
                )))
            }
        };
        Ok(Bins {
            controller: find("dr-controller")?,
            agent: find("dr-agent")?,
            standin: find("erlmcp-standin")?,
        })
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::failed(format!("{what} {}: {e}", path.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Start `program` in its own process group (so a terminal's Ctrl-C reaches only drctl, which
/// then stops everything in order), output appended to `log`, pid written to `pid_file`.
fn spawn(program: &Path, args: &[String], log: &Path, pid_file: &Path) -> CliResult<u32> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| io("cannot open log", log, e))?;
    let err = out.try_clone().map_err(|e| io("cannot open log", log, e))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| io("cannot start", program, e))?;
    let pid = child.id();
    std::fs::write(pid_file, format!("{pid}\n")).map_err(|e| io("cannot write", pid_file, e))?;
    Ok(pid)
}

/// Every pid file a demo may have written, in stop order (front to back).
fn pid_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = vec![(
        "haproxy".to_string(),
        dir.join("haproxy").join("haproxy.pid"),
    )];
    let list = |sub: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let hosts = list("hosts");
    for h in &hosts {
        let name = h
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        out.push((format!("agent {name}"), h.join("agent.pid")));
    }
    for h in &hosts {
        let name = h
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        out.push((format!("erlmcp-standin {name}"), h.join("service.pid")));
    }
    for c in list("controllers") {
        let name = c
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        out.push((format!("controller {name}"), c.join("controller.pid")));
    }
    out
}

fn running(dir: &Path) -> Vec<(String, u32)> {
    pid_files(dir)
        .into_iter()
        .filter_map(|(what, f)| {
            let pid = read_pid_file(&f).ok().flatten()?;
            is_alive(pid).then_some((what, pid))
        })
        .collect()
}

pub fn stop_all(dir: &Path, quiet: bool) -> CliResult {
    let mut stopped = 0;
    for (what, file) in pid_files(dir) {
        let pid = match read_pid_file(&file) {
            Ok(Some(pid)) => pid,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("drctl: {e}; skipping");
                continue;
            }
        };
        let outcome = stop(pid, Duration::from_secs(5));
        let _ = std::fs::remove_file(&file);
        if !quiet {
            match outcome {
                StopOutcome::NotRunning => {}
                StopOutcome::Terminated => println!("stopped {what} (pid {pid})"),
                StopOutcome::Killed => {
                    println!("killed {what} (pid {pid}): it ignored SIGTERM for 5 s")
                }
            }
        }
        if outcome != StopOutcome::NotRunning {
            stopped += 1;
        }
    }
    if !quiet && stopped == 0 {
        println!("nothing was running in {}", dir.display());
    }
    Ok(())
}

fn absolute(dir: &Path) -> CliResult<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    std::env::current_dir()
        .map(|c| c.join(dir))
        .map_err(|e| CliError::failed(format!("cannot read the current directory: {e}")))
}

fn write(path: &Path, text: &str) -> CliResult {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("cannot create", parent, e))?;
    }
    std::fs::write(path, text).map_err(|e| io("cannot write", path, e))
}

pub async fn run(args: DemoArgs) -> CliResult {
    let dir = absolute(&args.dir)?;
    if args.stop {
        return stop_all(&dir, false);
    }
    if args.hosts == 0 || args.hosts > 16 {
        return Err(CliError::config("--hosts must be between 1 and 16"));
    }
    if !matches!(args.controllers, 1 | 3 | 5) {
        return Err(CliError::config(
            "--controllers must be 1, 3 or 5 (a Raft cluster of an even size tolerates no more \
             failures than one controller fewer)",
        ));
    }
    let live = running(&dir);
    if let Some((what, pid)) = live.first() {
        return Err(CliError::failed(format!(
            "a demo is already running in {} ({what}, pid {pid}); stop it with: drctl demo --dir {} --stop",
            dir.display(),
            dir.display()
        )));
    }
    let bins = Bins::locate(args.bin_dir.as_deref())?;
    let haproxy_bin = if args.no_haproxy {
        None
    } else {
        haproxy::find()
    };
    let plan = DemoPlan::new(
        &dir,
        args.hosts,
        args.controllers,
        haproxy_bin.is_some(),
        true,
    )
    .map_err(|e| CliError::failed(format!("cannot find free ports: {e}")))?;

    std::fs::create_dir_all(plan.store_dir())
        .map_err(|e| io("cannot create", &plan.store_dir(), e))?;
    if !plan.pki_dir().join("ca.pem").exists() {
        let pki = PkiPlan {
            dir: plan.pki_dir(),
            controllers: names(
                "controller",
                &plan
                    .controllers
                    .iter()
                    .map(|c| c.id.clone())
                    .collect::<Vec<_>>(),
            )?,
            controller_sans: vec!["localhost".into(), "127.0.0.1".into()],
            agents: names(
                "agents",
                &plan
                    .hosts
                    .iter()
                    .map(|h| h.host.clone())
                    .collect::<Vec<_>>(),
            )?,
            operators: names("operators", &[OPERATOR.into()])?,
            viewers: names("viewers", &[VIEWER.into()])?,
            days: 825,
            force: false,
        };
        crate::pki::init(&pki)?;
    }
    for c in &plan.controllers {
        write(&c.config(), &layout::controller_toml(&plan, c))?;
    }
    for h in &plan.hosts {
        std::fs::create_dir_all(h.data_dir()).map_err(|e| io("cannot create", &h.data_dir(), e))?;
        write(
            &h.agent_config(),
            &layout::agent_toml(&plan, h, &bins.standin),
        )?;
    }
    write(&plan.drctl_config(), &layout::drctl_toml(&plan))?;
    let ctl_config = DrctlConfig::load(&plan.drctl_config(), false)
        .map_err(|e| CliError::failed(format!("the demo wrote a bad drctl config: {e}")))?;

    let started = start_everything(&plan, &bins, haproxy_bin.as_deref(), &ctl_config).await;
    if let Err(e) = started {
        stop_all(&dir, true)?;
        return Err(e);
    }
    let json = serde_json::to_string_pretty(&layout::demo_json(&plan)).expect("serializes");
    write(&plan.demo_json(), &format!("{json}\n"))?;

    let colors = Colors::detect();
    println!(
        "{} in {}",
        colors.bold("erlmcp-dr demo running"),
        dir.display()
    );
    println!("  dashboard      http://{}/", plan.controllers[0].http);
    match &plan.haproxy {
        Some(h) => println!(
            "  load balancer  {} (HAProxy; admin socket {})",
            h.frontend,
            h.socket().display()
        ),
        None => println!(
            "  load balancer  none (haproxy is not installed; clients can use the stand-ins directly)"
        ),
    }
    println!(
        "  status         drctl --config {} status",
        plan.drctl_config().display()
    );
    println!("  stop           drctl demo --dir {} --stop", dir.display());

    let view = wait_all_green(&ctl_config, args.hosts, args.timeout).await;
    match view {
        Ok(view) => {
            println!(
                "all {} members green; primary {}",
                args.hosts,
                primary_of(&view)
            );
        }
        Err(e) => {
            if args.detach {
                return Err(e);
            }
            eprintln!("drctl: {}", e.message);
        }
    }
    if args.detach {
        return Ok(());
    }
    println!("press Ctrl-C to stop the demo");
    wait_for_signal().await;
    stop_all(&dir, false)
}

fn primary_of(view: &StatusView) -> String {
    view.group(GROUP)
        .and_then(|g| g.primary.as_ref())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "none".into())
}

async fn start_everything(
    plan: &DemoPlan,
    bins: &Bins,
    haproxy_bin: Option<&Path>,
    ctl_config: &DrctlConfig,
) -> CliResult {
    let mut pids = Vec::new();
    for c in &plan.controllers {
        std::fs::create_dir_all(&c.dir).map_err(|e| io("cannot create", &c.dir, e))?;
        pids.push(spawn(
            &bins.controller,
            &[
                "run".into(),
                "--config".into(),
                c.config().display().to_string(),
            ],
            &c.log(),
            &c.pid_file(),
        )?);
    }
    for (c, pid) in plan.controllers.iter().zip(pids) {
        let one = DrctlConfig {
            controllers: vec![format!("https://{}", c.grpc)],
            ..ctl_config.clone()
        };
        wait_controller(&one, pid, &c.log()).await?;
    }
    wait_leader(ctl_config).await?;
    for h in &plan.hosts {
        let agent_cfg = h.agent_config();
        // The stand-in is started exactly as its agent would start it.
        let start = layout::standin_start(h, &bins.standin);
        let out = Command::new(&start[0])
            .args(&start[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io("cannot start", &bins.standin, e))?;
        if !out.status.success() {
            return Err(CliError::failed(format!(
                "erlmcp-standin for {} did not start ({}): {}; its log {}:\n{}",
                h.host,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                h.service_log().display(),
                tail(&h.service_log(), 20)
            )));
        }
        spawn(
            &bins.agent,
            &[
                "run".into(),
                "--config".into(),
                agent_cfg.display().to_string(),
            ],
            &h.agent_log(),
            &h.agent_pid(),
        )?;
    }
    if let (Some(bin), Some(h)) = (haproxy_bin, &plan.haproxy) {
        write(&h.config(), &haproxy::config(plan, h))?;
        let check = Command::new(bin)
            .args(haproxy::check_args(&h.config()))
            .output()
            .map_err(|e| io("cannot run", bin, e))?;
        if !check.status.success() {
            return Err(CliError::failed(format!(
                "HAProxy refused the generated config {}: {}",
                h.config().display(),
                String::from_utf8_lossy(&check.stderr).trim()
            )));
        }
        spawn(
            bin,
            &haproxy::run_args(&h.config()),
            &h.log(),
            &h.pid_file(),
        )?;
    }
    Ok(())
}

async fn wait_controller(config: &DrctlConfig, pid: u32, log: &Path) -> CliResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if !is_alive(pid) {
            return Err(CliError::failed(format!(
                "dr-controller exited during start; its log {}:\n{}",
                log.display(),
                tail(log, 20)
            )));
        }
        if let Ok(mut conn) = client::connect(config).await
            && crate::status::fetch(&mut conn, None).await.is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "dr-controller did not answer within 20 s; its log {}:\n{}",
                log.display(),
                tail(log, 20)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Until a controller leads with a quorum (at once with one controller; an election with more).
async fn wait_leader(config: &DrctlConfig) -> CliResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut conn) = client::connect(config).await
            && let Ok(s) = conn
                .admin
                .controller_status(dr_proto::pb::ControllerStatusRequest {})
                .await
            && s.get_ref().deciding
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::failed(
                "no controller leads after 20 s: see the controllers' logs and `drctl controller status`",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_all_green(
    config: &DrctlConfig,
    hosts: usize,
    timeout: Duration,
) -> CliResult<StatusView> {
    let deadline = Instant::now() + timeout;
    let mut last: Option<StatusView> = None;
    loop {
        if let Ok(mut conn) = client::connect(config).await
            && let Ok(view) = crate::status::fetch(&mut conn, Some(GROUP)).await
        {
            let green = view.group(GROUP).is_some_and(|g| {
                g.members.len() == hosts && g.members.iter().all(|m| m.health == Health::Green)
            });
            if green {
                return Ok(view);
            }
            last = Some(view);
        }
        if Instant::now() > deadline {
            let detail = last
                .map(|v| crate::status::render_table(&v, Colors::detect()))
                .unwrap_or_else(|| "the controller did not answer".into());
            return Err(CliError::failed(format!(
                "not every member turned green within {} s:\n{detail}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
