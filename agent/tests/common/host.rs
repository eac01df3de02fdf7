//! One erlmcp host for the agent's command functions: a real `erlmcp-standin` started and
//! stopped through the agent config's `service.start`/`service.stop`, a `[backup]` section with
//! a `file://` store in the test directory, and the `Ctx` the command functions take.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dr_agent::commands::Ctx;
use dr_agent::config::AgentConfig;
use dr_agent::service_ctl;
use dr_agent::state::AgentState;
use dr_proto::domain::{AgentMessage, UpdateKind};
use dr_proto::pb;
use dr_proto::process::{Sig, read_pid_file, signal};
use tokio::sync::mpsc;

pub const GROUP: &str = "erlmcp";
pub const HOST: &str = "erlmcp1";

pub struct Host {
    pub ctx: Ctx,
    pub data: PathBuf,
    pub store: PathBuf,
    pub pid_file: PathBuf,
    pub out: mpsc::Sender<pb::AgentMessage>,
    updates: mpsc::Receiver<pb::AgentMessage>,
    // last: removed after the service is gone
    pub dir: tempfile::TempDir,
}

fn toml_str(s: impl AsRef<str>) -> String {
    format!("{:?}", s.as_ref())
}

fn toml_list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(toml_str).collect::<Vec<_>>().join(", ")
    )
}

impl Host {
    /// A host whose data directory is `<data_parent or test dir>/data`; `backup_extra` is TOML
    /// appended inside `[backup]` (hooks, timeouts), `@DIR@` in it standing for the test dir.
    pub fn new(data_parent: Option<&Path>, backup_extra: &str) -> Host {
        let dir = tempfile::Builder::new()
            .prefix("dragentbk-")
            .tempdir()
            .unwrap();
        let base = dir.path();
        let backup_extra = backup_extra.replace("@DIR@", &base.display().to_string());
        let data = data_parent.unwrap_or(base).join("data");
        let store = base.join("store");
        let pid_file = base.join("service.pid");
        let log = base.join("service.log");
        let port = super::free_port();
        let standin = super::standin_bin().display().to_string();
        let addr = format!("127.0.0.1:{port}");
        let start = vec![
            standin.clone(),
            "daemon".into(),
            "--host".into(),
            HOST.into(),
            "--listen".into(),
            addr.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--log-file".into(),
            log.display().to_string(),
            "--pid-file".into(),
            pid_file.display().to_string(),
            "--receipt-interval-ms".into(),
            "50".into(),
        ];
        let stop = vec![
            standin,
            "stop".into(),
            "--pid-file".into(),
            pid_file.display().to_string(),
        ];
        let text = format!(
            "host = {host}\ngroup = {group}\ncontrollers = [\"http://127.0.0.1:1\"]\nstate_dir = {state}\n\
             [service]\nstart = {start}\nstop = {stop}\npid_file = {pid}\nprocess_match = \"erlmcp-standin\"\n\
             ports = [{port}]\nhealth_url = {health}\ndata_dir = {data}\nlog_file = {log}\n\
             [restart]\nstop_timeout_ms = 5000\ngrace_ms = 3000\nstart_timeout_ms = 15000\nhealthy_timeout_ms = 15000\n\
             [backup]\nstore = {store}\n{backup_extra}\n",
            host = toml_str(HOST),
            group = toml_str(GROUP),
            state = toml_str(base.join("state").display().to_string()),
            start = toml_list(&start),
            stop = toml_list(&stop),
            pid = toml_str(pid_file.display().to_string()),
            health = toml_str(format!("http://{addr}/health")),
            data = toml_str(data.display().to_string()),
            log = toml_str(log.display().to_string()),
            store = toml_str(store.display().to_string()),
        );
        let file = base.join("agent.toml");
        std::fs::write(&file, &text).unwrap();
        let config = AgentConfig::load(&file, true).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (effects, _) = mpsc::unbounded_channel();
        let state = Arc::new(AgentState::open(&config.state_dir, effects).unwrap());
        let (log_mark, _) = mpsc::unbounded_channel();
        let (out, updates) = mpsc::channel(100_000);
        Host {
            ctx: Ctx {
                config: Arc::new(config),
                state,
                log_mark,
                ops: Default::default(),
                journal: None,
            },
            data,
            store,
            pid_file,
            out,
            updates,
            dir,
        }
    }

    /// Starts the service the way the agent does and waits until it is healthy.
    pub async fn start_service(&self) {
        let env = self.ctx.env(self.ctx.state.last_epoch_seen(), None, None);
        service_ctl::start(&self.ctx.config, &env)
            .await
            .expect("service starts");
        service_ctl::wait_healthy(&self.ctx.config)
            .await
            .expect("service healthy");
    }

    pub async fn healthy(&self) -> Result<(), String> {
        service_ctl::healthy_now(&self.ctx.config).await
    }

    pub fn service_pid(&self) -> Option<u32> {
        read_pid_file(&self.pid_file).ok().flatten()
    }

    /// Progress messages sent since the last call.
    pub fn progress(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(m) = self.updates.try_recv() {
            if let Ok(AgentMessage::CommandUpdate(u)) = AgentMessage::try_from(m)
                && let UpdateKind::Progress { message, .. } = u.update
            {
                v.push(message);
            }
        }
        v
    }

    /// Paths next to the data directory (staging, previous copies).
    pub fn siblings(&self) -> Vec<String> {
        let parent = self.data.parent().unwrap();
        let name = self.data.file_name().unwrap().to_string_lossy().to_string();
        let mut v: Vec<String> = std::fs::read_dir(parent)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(&name) && *n != name)
            .collect();
        v.sort();
        v
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(pid) = self.service_pid() {
            let _ = signal(pid, Sig::Cont);
            let _ = signal(pid, Sig::Kill);
        }
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("===== service log (last 30 lines) =====");
            for l in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{l}");
            }
        }
    }
}
