//! Where everything of a demo lives, which ports it uses, and the config files it writes.
//! The layout is the DESIGN.md demo contract: `DIR/drctl.toml`, `DIR/demo.json`,
//! `DIR/hosts/<host>/{agent.pid,service.pid}`, `DIR/controllers/<id>/controller.pid`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub const GROUP: &str = "erlmcp";
pub const OPERATOR: &str = "demo";
pub const VIEWER: &str = "demo-viewer";

/// Ports handed out by this process (a port is only probed, then bound later by another
/// process, so the same one must not be handed out twice meanwhile).
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// Below the kernel's ephemeral range (32768-60999 by default): a port picked here is not taken
/// by some client's outgoing connection between the probe and the real bind.
const PICK_FROM: std::ops::Range<u32> = 20_000..32_000;

/// A free loopback port: `preferred` when it is free, else a free one below the ephemeral
/// range, else one the kernel picks.
pub fn free_port(preferred: Option<u16>) -> std::io::Result<u16> {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let free = |p: u16, handed: &Vec<u16>| {
        !handed.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok()
    };
    if let Some(p) = preferred
        && free(p, &handed)
    {
        handed.push(p);
        return Ok(p);
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().rotate_left(16);
    for _ in 0..64 {
        // xorshift: good enough to spread parallel test processes over the range
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let p = (PICK_FROM.start + seed % (PICK_FROM.end - PICK_FROM.start)) as u16;
        if free(p, &handed) {
            handed.push(p);
            return Ok(p);
        }
    }
    let l = TcpListener::bind(("127.0.0.1", 0))?;
    let p = l.local_addr()?.port();
    handed.push(p);
    Ok(p)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[derive(Clone, Debug)]
pub struct ControllerPlan {
    pub id: String,
    pub dir: PathBuf,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl ControllerPlan {
    pub fn config(&self) -> PathBuf {
        self.dir.join("controller.toml")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("controller.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("controller.log")
    }
}

#[derive(Clone, Debug)]
pub struct HostPlan {
    pub host: String,
    pub dir: PathBuf,
    pub service: SocketAddr,
    pub agent_http: SocketAddr,
}

impl HostPlan {
    pub fn agent_config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }
    pub fn agent_pid(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }
    pub fn agent_log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    pub fn service_pid(&self) -> PathBuf {
        self.dir.join("service.pid")
    }
    pub fn service_log(&self) -> PathBuf {
        self.dir.join("erlmcp.log")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

#[derive(Clone, Debug)]
pub struct HaproxyPlan {
    pub dir: PathBuf,
    pub frontend: SocketAddr,
}

impl HaproxyPlan {
    pub fn config(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("haproxy.pid")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("haproxy.log")
    }
}

#[derive(Clone, Debug)]
pub struct DemoPlan {
    pub dir: PathBuf,
    pub controllers: Vec<ControllerPlan>,
    pub hosts: Vec<HostPlan>,
    pub haproxy: Option<HaproxyPlan>,
}

impl DemoPlan {
    /// Plan a demo in `dir`. With `default_ports`, the first controller and agent get the
    /// documented defaults (7400, 7480, 7481) and HAProxy 8080 when free; otherwise every port
    /// is picked by the kernel (tests running side by side).
    pub fn new(
        dir: &Path,
        hosts: usize,
        controllers: usize,
        haproxy: bool,
        default_ports: bool,
    ) -> std::io::Result<DemoPlan> {
        let pref = |p: u16, first: bool| (default_ports && first).then_some(p);
        let mut controller_plans = Vec::new();
        for i in 1..=controllers {
            let id = format!("ctl{i}");
            let first = i == 1;
            controller_plans.push(ControllerPlan {
                dir: dir.join("controllers").join(&id),
                id,
                grpc: addr(free_port(pref(7400, first))?),
                http: addr(free_port(pref(7480, first))?),
            });
        }
        let mut host_plans = Vec::new();
        for i in 1..=hosts {
            let host = format!("erlmcp{i}");
            host_plans.push(HostPlan {
                dir: dir.join("hosts").join(&host),
                host,
                service: addr(free_port(None)?),
                agent_http: addr(free_port(pref(7481, i == 1))?),
            });
        }
        let haproxy = if haproxy {
            Some(HaproxyPlan {
                dir: dir.join("haproxy"),
                frontend: addr(free_port(pref(8080, true))?),
            })
        } else {
            None
        };
        Ok(DemoPlan {
            dir: dir.to_path_buf(),
            controllers: controller_plans,
            hosts: host_plans,
            haproxy,
        })
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }
    pub fn drctl_config(&self) -> PathBuf {
        self.dir.join("drctl.toml")
    }
    pub fn demo_json(&self) -> PathBuf {
        self.dir.join("demo.json")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("backups")
    }

    pub fn controller_urls(&self) -> Vec<String> {
        self.controllers
            .iter()
            .map(|c| format!("https://{}", c.grpc))
            .collect()
    }
}

fn toml_str(s: &str) -> String {
    toml_string(s)
}

/// TOML basic string with escapes.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| toml_str(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `[cluster]` of a demo controller: advertised at its loopback URL; with several
/// controllers, every one lists them all (they form the cluster together at first start).
fn cluster_toml(plan: &DemoPlan, c: &ControllerPlan) -> String {
    let mut out = format!(
        "[cluster]\nadvertise = {}\n",
        toml_str(&format!("https://{}", c.grpc))
    );
    if plan.controllers.len() > 1 {
        for m in &plan.controllers {
            out.push_str(&format!(
                "\n[[cluster.member]]\nid = {}\naddr = {}\n",
                toml_str(&m.id),
                toml_str(&format!("https://{}", m.grpc))
            ));
        }
    }
    out
}

pub fn controller_toml(plan: &DemoPlan, c: &ControllerPlan) -> String {
    let pki = plan.pki_dir();
    let cluster = cluster_toml(plan, c);
    format!(
        "# erlmcp-dr demo controller (written by drctl demo)\n\
id = {id}\n\
listen = {grpc}\n\
http_listen = {http}\n\
data_dir = {data}\n\
\n\
{cluster}\n\
[tls]\n\
ca = {ca}\n\
cert = {cert}\n\
key = {key}\n\
\n\
# Every demo host shares this machine's CPU: do not judge members by it.\n\
[thresholds.cpu_percent]\n\
yellow = 1000.0\n\
red = 1000.0\n\
\n\
# ...and its disk, which is not an erlmcp data disk: warn only when it is nearly full...\n\
[thresholds.disk_free_percent_min]\n\
yellow = 3.0\n\
red = 1.0\n\
\n\
# ...and its scheduler: one slow answer while everything starts at once is not a slow erlmcp\n\
# (with under 100 samples the p99 is the slowest answer). The stand-in's slow switch still shows.\n\
[thresholds.response_p99_ms]\n\
yellow = 300.0\n\
red = 1000.0\n\
\n\
[[group]]\n\
name = {group}\n\
primary = {primary}\n\
{lb}",
        id = toml_str(&c.id),
        grpc = toml_str(&c.grpc.to_string()),
        http = toml_str(&c.http.to_string()),
        data = toml_str(&c.dir.join("state").display().to_string()),
        ca = toml_str(&pki.join("ca.pem").display().to_string()),
        cert = toml_str(
            &pki.join(format!("controller-{}.pem", c.id))
                .display()
                .to_string()
        ),
        key = toml_str(
            &pki.join(format!("controller-{}.key", c.id))
                .display()
                .to_string()
        ),
        group = toml_str(GROUP),
        primary = toml_str(&plan.hosts[0].host),
        lb = match &plan.haproxy {
            Some(h) => format!(
                "smoke_url = {}\n\n[group.lb]\ndriver = \"haproxy\"\nsocket = {}\nbackend = \"erlmcp\"\n",
                toml_str(&format!("http://{}/", h.frontend)),
                toml_str(&h.socket().display().to_string())
            ),
            None => String::new(),
        },
    )
}

/// How the stand-in of `h` is started: the agent's `service.start`, also used by the demo itself.
pub fn standin_start(h: &HostPlan, standin: &Path) -> Vec<String> {
    vec![
        standin.display().to_string(),
        "daemon".into(),
        "--host".into(),
        h.host.clone(),
        "--listen".into(),
        h.service.to_string(),
        "--data-dir".into(),
        h.data_dir().display().to_string(),
        "--log-file".into(),
        h.service_log().display().to_string(),
        "--pid-file".into(),
        h.service_pid().display().to_string(),
    ]
}

/// A hook that tells the stand-in its role (the demo's promote, demote and fence hooks).
pub fn standin_role_hook(h: &HostPlan, standin: &Path, role: &str) -> Vec<String> {
    vec![
        standin.display().to_string(),
        "role".into(),
        "--addr".into(),
        h.service.to_string(),
        role.into(),
    ]
}

/// How the stand-in of `h` is stopped: the agent's `service.stop`.
pub fn standin_stop(h: &HostPlan, standin: &Path) -> Vec<String> {
    vec![
        standin.display().to_string(),
        "stop".into(),
        "--pid-file".into(),
        h.service_pid().display().to_string(),
    ]
}

pub fn agent_toml(plan: &DemoPlan, h: &HostPlan, standin: &Path) -> String {
    let pki = plan.pki_dir();
    let start = standin_start(h, standin);
    let stop = standin_stop(h, standin);
    format!(
        "# erlmcp-dr demo agent for {host} (written by drctl demo)\n\
host = {host_s}\n\
group = {group}\n\
controllers = {controllers}\n\
http_listen = {http}\n\
state_dir = {state}\n\
\n\
[tls]\n\
ca = {ca}\n\
cert = {cert}\n\
key = {key}\n\
\n\
[service]\n\
name = \"erlmcp-standin\"\n\
start = {start}\n\
stop = {stop}\n\
pid_file = {pid}\n\
process_match = \"erlmcp-standin\"\n\
ports = [{port}]\n\
health_url = {health}\n\
metrics_url = {metrics}\n\
data_dir = {data}\n\
log_file = {log}\n\
\n\
[hooks]\n\
promote = {{ command = {promote}, timeout_ms = 5000 }}\n\
demote = {{ command = {demote}, timeout_ms = 5000 }}\n\
fence = {{ command = {fence}, timeout_ms = 5000 }}\n\
\n\
[backup]\n\
store = {store}\n\
timeout_s = 600\n\
# the stand-in's integrity check (erlmcp: tcps_persistence:verify_integrity())\n\
post_restore = [{{ command = {verify}, timeout_ms = 30000 }}]\n\
drill_check = {{ command = {verify}, timeout_ms = 30000 }}\n",
        host = h.host,
        host_s = toml_str(&h.host),
        group = toml_str(GROUP),
        controllers = toml_list(&plan.controller_urls()),
        http = toml_str(&h.agent_http.to_string()),
        state = toml_str(&h.dir.join("agent-state").display().to_string()),
        ca = toml_str(&pki.join("ca.pem").display().to_string()),
        cert = toml_str(
            &pki.join(format!("agent-{}.pem", h.host))
                .display()
                .to_string()
        ),
        key = toml_str(
            &pki.join(format!("agent-{}.key", h.host))
                .display()
                .to_string()
        ),
        start = toml_list(&start),
        stop = toml_list(&stop),
        pid = toml_str(&h.service_pid().display().to_string()),
        port = h.service.port(),
        health = toml_str(&format!("http://{}/health", h.service)),
        metrics = toml_str(&format!("http://{}/metrics", h.service)),
        data = toml_str(&h.data_dir().display().to_string()),
        log = toml_str(&h.service_log().display().to_string()),
        promote = toml_list(&standin_role_hook(h, standin, "primary")),
        demote = toml_list(&standin_role_hook(h, standin, "replica")),
        fence = toml_list(&standin_role_hook(h, standin, "fenced")),
        store = toml_str(&format!("file://{}", plan.store_dir().display())),
        verify = toml_list(&[standin.display().to_string(), "verify-data".into()]),
    )
}

pub fn drctl_toml(plan: &DemoPlan) -> String {
    let pki = plan.pki_dir();
    format!(
        "# drctl config for the demo in this directory (written by drctl demo)\n\
controllers = {controllers}\n\
\n\
[tls]\n\
ca = {ca}\n\
cert = {cert}\n\
key = {key}\n",
        controllers = toml_list(&plan.controller_urls()),
        ca = toml_str(&pki.join("ca.pem").display().to_string()),
        cert = toml_str(
            &pki.join(format!("operator-{OPERATOR}.pem"))
                .display()
                .to_string()
        ),
        key = toml_str(
            &pki.join(format!("operator-{OPERATOR}.key"))
                .display()
                .to_string()
        ),
    )
}

#[derive(Serialize)]
pub struct DemoJson {
    pub controllers: Vec<ControllerJson>,
    pub dashboard: String,
    pub lb: Option<String>,
    pub lb_admin_socket: Option<String>,
    pub store: String,
    pub group: String,
    pub drctl_config: String,
    pub hosts: Vec<HostJson>,
}

#[derive(Serialize)]
pub struct ControllerJson {
    pub id: String,
    pub grpc: String,
    pub http: String,
    pub pid_file: String,
}

#[derive(Serialize)]
pub struct HostJson {
    pub host: String,
    pub service_addr: String,
    pub agent_http: String,
    pub data_dir: String,
    pub log_file: String,
    pub agent_config: String,
}

pub fn demo_json(plan: &DemoPlan) -> DemoJson {
    DemoJson {
        controllers: plan
            .controllers
            .iter()
            .map(|c| ControllerJson {
                id: c.id.clone(),
                grpc: c.grpc.to_string(),
                http: c.http.to_string(),
                pid_file: c.pid_file().display().to_string(),
            })
            .collect(),
        dashboard: format!("http://{}/", plan.controllers[0].http),
        lb: plan.haproxy.as_ref().map(|h| h.frontend.to_string()),
        lb_admin_socket: plan
            .haproxy
            .as_ref()
            .map(|h| h.socket().display().to_string()),
        store: format!("file://{}", plan.store_dir().display()),
        group: GROUP.into(),
        drctl_config: plan.drctl_config().display().to_string(),
        hosts: plan
            .hosts
            .iter()
            .map(|h| HostJson {
                host: h.host.clone(),
                service_addr: h.service.to_string(),
                agent_http: h.agent_http.to_string(),
                data_dir: h.data_dir().display().to_string(),
                log_file: h.service_log().display().to_string(),
                agent_config: h.agent_config().display().to_string(),
            })
            .collect(),
    }
}
