//! Test hosts in their own network namespace, joined to the root namespace by a veth pair on a
//! private /30 made by the test itself (root only). Cutting the link isolates the host both
//! ways; iptables rules cut one direction. Everything is removed on drop.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct NetNs {
    pub name: String,
    pub veth_root: String,
    pub root_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Network namespaces need root and iproute2.
pub fn available() -> Result<(), String> {
    if !rustix_is_root() {
        return Err("not root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("`ip` (iproute2) is not installed".into()),
    }
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl NetNs {
    pub fn create() -> anyhow::Result<NetNs> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = (std::process::id() % 100_000) * 10 + n % 10;
        let id = format!("{:x}", tag);
        let name = format!("drt{id}");
        let veth_root = format!("vr{id}");
        let veth_ns = format!("vn{id}");
        // a /30 out of 10.200.0.0/16, unique per namespace of this process
        let block = (tag % 16_000) * 4;
        let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + block;
        let root_ip = Ipv4Addr::from(base + 1);
        let ns_ip = Ipv4Addr::from(base + 2);
        let _ = run(&["ip", "netns", "del", &name]);
        run(&["ip", "netns", "add", &name])?;
        let ns = NetNs {
            name: name.clone(),
            veth_root: veth_root.clone(),
            root_ip,
            ns_ip,
        };
        run(&[
            "ip", "link", "add", &veth_root, "type", "veth", "peer", "name", &veth_ns,
        ])?;
        run(&["ip", "link", "set", &veth_ns, "netns", &name])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{root_ip}/30"),
            "dev",
            &veth_root,
        ])?;
        run(&["ip", "link", "set", &veth_root, "up"])?;
        run(&[
            "ip",
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &veth_ns,
        ])?;
        run(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", &veth_ns, "up",
        ])?;
        run(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ])?;
        Ok(ns)
    }

    /// `program args` run inside the namespace.
    pub fn wrap(&self, program: &str, args: &[String]) -> (String, Vec<String>) {
        let mut v = vec![
            "netns".to_string(),
            "exec".into(),
            self.name.clone(),
            program.to_string(),
        ];
        v.extend(args.iter().cloned());
        ("ip".to_string(), v)
    }

    /// Isolate the host both ways.
    pub fn cut(&self) -> anyhow::Result<()> {
        run(&["ip", "link", "set", &self.veth_root, "down"])
    }

    pub fn heal(&self) -> anyhow::Result<()> {
        run(&["ip", "link", "set", &self.veth_root, "up"])
    }

    /// Drop every packet to and from the namespace with iptables (the link stays up, so the
    /// root side's address keeps working for processes of the root namespace).
    pub fn block(&self) -> anyhow::Result<()> {
        run(&[
            "iptables",
            "-I",
            "INPUT",
            "-i",
            &self.veth_root,
            "-j",
            "DROP",
        ])?;
        run(&[
            "iptables",
            "-I",
            "OUTPUT",
            "-o",
            &self.veth_root,
            "-j",
            "DROP",
        ])
    }

    /// Undo [`Self::block`].
    pub fn unblock(&self) -> anyhow::Result<()> {
        let a = run(&[
            "iptables",
            "-D",
            "INPUT",
            "-i",
            &self.veth_root,
            "-j",
            "DROP",
        ]);
        let b = run(&[
            "iptables",
            "-D",
            "OUTPUT",
            "-o",
            &self.veth_root,
            "-j",
            "DROP",
        ]);
        a.and(b)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // killing the namespace's processes is the caller's job; the veth goes with the netns
        while self.unblock().is_ok() {}
        let _ = run(&["ip", "netns", "del", &self.name]);
        let _ = run(&["ip", "link", "del", &self.veth_root]);
    }
}
