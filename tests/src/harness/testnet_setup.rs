//! How a [`super::Cluster`] is laid out on a [`TestNet`]: every host (agent + stand-in) and every
//! controller in its own namespace with an address on the test's bridge, HAProxy and the
//! optional S3 server in the root namespace on the bridge's root address, the stand-ins told
//! their peers (replicated receipts), and optionally a small disk per host, a delay proxy in
//! front of each controller, and libfaketime under chosen hosts' agents.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use drctl::demo::layout::{self, DemoPlan, HostPlan};

use super::disk::SmallDisk;
use super::netns::NetNs;
use super::s3::S3Server;
use super::testnet::TestNet;

/// Test-network options of a cluster (all off by default).
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// Put every host and controller in its own namespace on a private bridge.
    pub enabled: bool,
    /// Mount a tmpfs of this many MiB as each of these hosts' directory (index, MiB).
    pub small_disks: Vec<(usize, u64)>,
    /// Agents dial each controller through a [`super::delay_proxy::DelayProxy`].
    pub delay_proxy: bool,
    /// Run these hosts' agents (and what they start) under libfaketime, offset by the file
    /// [`super::Cluster::faketime_file`] (initially `+0`).
    pub faketime_hosts: Vec<usize>,
    /// Agents back up to an in-process S3 server (bucket `drscenarios`) instead of file://.
    pub s3: bool,
}

pub const S3_BUCKET: &str = "drscenarios";
const S3_KEY_ID: &str = "DRSCENARIOKEY";
const S3_SECRET: &str = "drscenario-secret-not-a-real-one";

/// The libfaketime library, if installed (Debian's `libfaketime`).
pub fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// What the layout made: namespaces, disks, S3.
pub struct NetSetup {
    pub net: TestNet,
    pub hosts: Vec<NetNs>,
    pub controllers: Vec<NetNs>,
    pub disks: Vec<Option<SmallDisk>>,
    pub s3: Option<S3Server>,
}

/// Move every address of `plan` onto a new test network (and hosts onto their small disks).
pub fn place(plan: &mut DemoPlan, o: &NetOptions) -> anyhow::Result<NetSetup> {
    let net = TestNet::create()?;
    let mut hosts = Vec::new();
    let mut disks: Vec<Option<SmallDisk>> = plan.hosts.iter().map(|_| None).collect();
    for (i, h) in plan.hosts.iter_mut().enumerate() {
        let ns = net.add_node()?;
        h.service = SocketAddr::from((ns.ns_ip, h.service.port()));
        h.agent_http = SocketAddr::from((ns.ns_ip, h.agent_http.port()));
        if let Some(&(_, mb)) = o.small_disks.iter().find(|(j, _)| *j == i) {
            let parent = h.dir.parent().unwrap_or(Path::new("/tmp")).to_path_buf();
            std::fs::create_dir_all(&parent)?;
            let disk = SmallDisk::mount(&parent, &h.host, mb)?;
            h.dir = disk.mount.clone();
            disks[i] = Some(disk);
        }
        hosts.push(ns);
    }
    let mut controllers = Vec::new();
    for c in plan.controllers.iter_mut() {
        let ns = net.add_node()?;
        c.grpc = SocketAddr::from((ns.ns_ip, c.grpc.port()));
        c.http = SocketAddr::from((ns.ns_ip, c.http.port()));
        controllers.push(ns);
    }
    if let Some(h) = plan.haproxy.as_mut() {
        // controllers in their namespaces smoke-test through it
        h.frontend = SocketAddr::from((net.root_ip, h.frontend.port()));
    }
    let s3 = if o.s3 {
        let root = plan.dir.join("s3");
        std::fs::create_dir_all(root.join(S3_BUCKET))?;
        Some(S3Server::start_on(
            IpAddr::V4(net.root_ip),
            &root,
            S3_KEY_ID,
            S3_SECRET,
        )?)
    } else {
        None
    };
    Ok(NetSetup {
        net,
        hosts,
        controllers,
        disks,
        s3,
    })
}

/// The stand-in's start command on a test network: the demo's, plus its peers.
pub fn standin_start(plan: &DemoPlan, i: usize, standin: &Path) -> Vec<String> {
    let mut v = layout::standin_start(&plan.hosts[i], standin);
    for (j, h) in plan.hosts.iter().enumerate() {
        if j != i {
            v.push("--peer".into());
            v.push(h.service.to_string());
        }
    }
    v
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| layout::toml_string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Rewrite the demo agent config of host `i` for the test network: the stand-in's peers, the
/// controllers (through the delay proxies when given), the S3 store.
pub fn agent_toml(
    text: &str,
    plan: &DemoPlan,
    i: usize,
    standin: &Path,
    proxies: Option<&[SocketAddr]>,
    s3: Option<&S3Server>,
) -> anyhow::Result<String> {
    let h: &HostPlan = &plan.hosts[i];
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("start = ") {
            out.push(format!(
                "start = {}",
                toml_list(&standin_start(plan, i, standin))
            ));
        } else if line.starts_with("controllers = ")
            && let Some(p) = proxies
        {
            let urls: Vec<String> = p.iter().map(|a| format!("https://{a}")).collect();
            out.push(format!("controllers = {}", toml_list(&urls)));
        } else if line.starts_with("store = ")
            && let Some(s3) = s3
        {
            let _ = s3;
            out.push(format!("store = \"s3://{S3_BUCKET}/agents\""));
        } else {
            out.push(line.to_string());
        }
    }
    let mut text = out.join("\n");
    if let Some(s3) = s3 {
        let id_file = h.dir.join("s3-access-key-id");
        let key_file = h.dir.join("s3-secret-access-key");
        write_secret(&id_file, S3_KEY_ID)?;
        write_secret(&key_file, S3_SECRET)?;
        text.push_str(&format!(
            "\n\n[backup.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n",
            s3.endpoint(),
            id_file.display(),
            key_file.display()
        ));
    }
    Ok(text)
}

fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, value)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// `program args` prefixed with libfaketime's environment (through `env`, so only that program
/// and its children see it): realtime offset from `file`, re-read every second; monotonic time
/// untouched.
pub fn with_faketime(file: &Path, program: &Path, args: &[String]) -> (PathBuf, Vec<String>) {
    let lib = libfaketime().unwrap_or_else(|| PathBuf::from("libfaketime-missing"));
    let mut v = vec![
        format!("LD_PRELOAD={}", lib.display()),
        format!("FAKETIME_TIMESTAMP_FILE={}", file.display()),
        "FAKETIME_CACHE_DURATION=1".into(),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
        program.display().to_string(),
    ];
    v.extend(args.iter().cloned());
    (PathBuf::from("env"), v)
}
