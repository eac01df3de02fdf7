//! A whole installation under test: certificates, one or more controllers (a Raft cluster),
//! N agents each managing an
//! `erlmcp-standin`, laid out exactly like `drctl demo` (it reuses drctl's layout code) but on
//! kernel-picked ports in a temp dir, with every process killed on drop.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use dr_proto::domain::{Health, StatusView};
use dr_proto::process::{Sig, read_pid_file, signal};
use drctl::demo::layout::{self, DemoPlan, GROUP, HostPlan, OPERATOR, VIEWER};
use drctl::pki::{PkiPlan, init as pki_init, names};

use super::bins::{Bins, haproxy};
use super::daemon::Daemon;
use super::delay_proxy::DelayProxy;
use super::disk::SmallDisk;
use super::netns::NetNs;
use super::s3::S3Server;
use super::testnet::TestNet;
use super::testnet_setup::{self, NetOptions};
use super::wait::wait_until;

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub hosts: usize,
    /// Controllers (1, 3 or 5): with more than one they form a Raft cluster.
    pub controllers: usize,
    /// Further controllers, configured with `join = true` and not started (for
    /// `drctl controller add`): they follow the first `controllers` in `plan.controllers`.
    pub joiners: usize,
    /// TOML appended to the controller config; must start with a table header
    /// (e.g. `[thresholds.queue_depth]`).
    pub controller_extra: String,
    /// TOML appended to every agent config; must start with a table header (e.g. `[lease]`).
    pub agent_extra: String,
    /// Wait for every member to be green (and the primary serving) before returning.
    pub wait_green: bool,
    /// Put HAProxy in front (required; the test fails if it is not installed).
    pub haproxy: bool,
    /// Hosts (by index) that run in their own network namespace (root only).
    pub netns_hosts: Vec<usize>,
    /// Controllers (by index) that run in their own network namespace (root only); the
    /// others then listen on the root side of the first such namespace's link.
    pub netns_controllers: Vec<usize>,
    /// Make every promote hook take this long (to act during a failover).
    pub promote_delay_ms: Option<u64>,
    /// The controller's `[backup]` section body (schedule, retention). None: nothing scheduled,
    /// so only tests about backups see backups (every agent has a file:// store either way).
    pub backup_schedule: Option<String>,
    /// Every host and controller in its own namespace on a private bridge, and what else the
    /// fault scenarios need (see [`NetOptions`]).
    pub net: NetOptions,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            hosts: 3,
            controllers: 1,
            joiners: 0,
            controller_extra: String::new(),
            agent_extra: String::new(),
            wait_green: true,
            haproxy: false,
            netns_hosts: Vec::new(),
            netns_controllers: Vec::new(),
            promote_delay_ms: None,
            backup_schedule: None,
            net: NetOptions::default(),
        }
    }
}

pub struct Cluster {
    pub bins: Bins,
    pub plan: DemoPlan,
    /// Per controller (same order as `plan.controllers`): its process, if running.
    pub controllers: Vec<Option<Daemon>>,
    pub agents: Vec<Option<Daemon>>,
    pub haproxy: Option<Daemon>,
    /// Per host: its network namespace, if it has one.
    pub netns: Vec<Option<NetNs>>,
    /// Per controller: its network namespace, if it has one.
    pub controller_netns: Vec<Option<NetNs>>,
    /// The private bridge, when `options.net.enabled`.
    pub testnet: Option<TestNet>,
    /// The in-process S3 server agents back up to, when `options.net.s3`.
    pub s3: Option<S3Server>,
    /// Per controller: the delay proxy agents dial it through, when `options.net.delay_proxy`.
    pub proxies: Vec<DelayProxy>,
    /// Per host: its small disk, if it has one.
    pub disks: Vec<Option<SmallDisk>>,
    options: ClusterOptions,
    // last: removed after every process is gone
    dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Cluster> {
        dr_proto::install_crypto_provider();
        let bins = Bins::locate();
        let dir = tempfile::Builder::new().prefix("drtest-").tempdir()?;
        if options.haproxy {
            anyhow::ensure!(
                haproxy().is_some(),
                "haproxy is not installed (tests/run.sh installs it)"
            );
        }
        let mut plan = DemoPlan::new(
            dir.path(),
            options.hosts,
            options.controllers + options.joiners,
            options.haproxy,
            false,
        )?;
        let mut netns: Vec<Option<NetNs>> = plan.hosts.iter().map(|_| None).collect();
        let mut controller_netns: Vec<Option<NetNs>> =
            plan.controllers.iter().map(|_| None).collect();
        let mut controller_sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (mut testnet, mut s3, mut disks) = (None, None, Vec::new());
        if options.net.enabled {
            anyhow::ensure!(
                options.netns_hosts.is_empty() && options.netns_controllers.is_empty(),
                "net.enabled puts every member in a namespace already"
            );
            if !options.net.faketime_hosts.is_empty() {
                anyhow::ensure!(
                    testnet_setup::libfaketime().is_some(),
                    "libfaketime is not installed (tests/run.sh installs it)"
                );
            }
            let s = testnet_setup::place(&mut plan, &options.net)?;
            controller_sans.push(s.net.root_ip.to_string());
            for (i, ns) in s.hosts.into_iter().enumerate() {
                netns[i] = Some(ns);
            }
            for (i, ns) in s.controllers.into_iter().enumerate() {
                controller_sans.push(ns.ns_ip.to_string());
                controller_netns[i] = Some(ns);
            }
            (testnet, s3, disks) = (Some(s.net), s.s3, s.disks);
        }
        for &i in &options.netns_hosts {
            let ns = NetNs::create()?;
            let h = &mut plan.hosts[i];
            h.service = std::net::SocketAddr::from((ns.ns_ip, h.service.port()));
            h.agent_http = std::net::SocketAddr::from((ns.ns_ip, h.agent_http.port()));
            netns[i] = Some(ns);
        }
        if !options.netns_hosts.is_empty() {
            // reachable from the namespaces too
            let c = &mut plan.controllers[0];
            c.grpc = std::net::SocketAddr::from(([0, 0, 0, 0], c.grpc.port()));
        }
        for &i in &options.netns_controllers {
            let ns = NetNs::create()?;
            let c = &mut plan.controllers[i];
            c.grpc = std::net::SocketAddr::from((ns.ns_ip, c.grpc.port()));
            c.http = std::net::SocketAddr::from((ns.ns_ip, c.http.port()));
            controller_sans.push(ns.ns_ip.to_string());
            controller_sans.push(ns.root_ip.to_string());
            controller_netns[i] = Some(ns);
        }
        if let Some(root_ip) = controller_netns.iter().flatten().map(|n| n.root_ip).next() {
            // the others: on an address both namespaces reach
            for (i, c) in plan.controllers.iter_mut().enumerate() {
                if controller_netns[i].is_none() {
                    c.grpc = std::net::SocketAddr::from((root_ip, c.grpc.port()));
                }
            }
        }
        let controller_ids: Vec<String> = plan.controllers.iter().map(|c| c.id.clone()).collect();
        let pki = PkiPlan {
            dir: plan.pki_dir(),
            controllers: names("controller", &controller_ids)
                .map_err(|e| anyhow::anyhow!(e.message))?,
            controller_sans,
            agents: names(
                "agents",
                &plan
                    .hosts
                    .iter()
                    .map(|h| h.host.clone())
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| anyhow::anyhow!(e.message))?,
            operators: names("operators", &[OPERATOR.into()])
                .map_err(|e| anyhow::anyhow!(e.message))?,
            viewers: names("viewers", &[VIEWER.into()]).map_err(|e| anyhow::anyhow!(e.message))?,
            days: 30,
            force: false,
        };
        pki_init(&pki).map_err(|e| anyhow::anyhow!(e.message))?;
        // the initial members list only the first `controllers`; a joiner lists none
        let founders = DemoPlan {
            controllers: plan.controllers[..options.controllers].to_vec(),
            ..plan.clone()
        };
        for (i, c) in plan.controllers.iter().enumerate() {
            std::fs::create_dir_all(&c.dir)?;
            let base = if i < options.controllers {
                layout::controller_toml(&founders, c)
            } else {
                let alone = DemoPlan {
                    controllers: vec![c.clone()],
                    ..plan.clone()
                };
                layout::controller_toml(&alone, c)
                    .replace("[cluster]\n", "[cluster]\njoin = true\n")
            };
            std::fs::write(
                c.config(),
                format!(
                    "{}\n[backup]\n{}\n{}\n",
                    // The test hosts share the build machine's disk, which is not an erlmcp data
                    // disk: a CI machine short of space must not turn every member red. No test
                    // here is about the disk threshold (its classification is unit-tested).
                    no_disk_threshold(&base)?,
                    options
                        .backup_schedule
                        .as_deref()
                        .unwrap_or("full_every_s = 0\nincremental_every_s = 0\ndrill_every_s = 0"),
                    options.controller_extra
                ),
            )?;
        }
        let grpc_port = plan.controllers[0].grpc.port();
        if !options.netns_hosts.is_empty() {
            // the controller listens everywhere (config written above); everyone else dials
            // loopback
            plan.controllers[0].grpc = std::net::SocketAddr::from(([127, 0, 0, 1], grpc_port));
        }
        let mut proxies = Vec::new();
        if let Some(net) = testnet.as_ref().filter(|_| options.net.delay_proxy) {
            for c in &plan.controllers {
                let listen = std::net::SocketAddr::from((net.root_ip, 0));
                proxies.push(DelayProxy::start(listen, c.grpc).await?);
            }
        }
        let proxy_addrs: Vec<std::net::SocketAddr> = proxies.iter().map(|p| p.listen).collect();
        for (i, h) in plan.hosts.iter().enumerate() {
            std::fs::create_dir_all(h.data_dir())?;
            let mut text = layout::agent_toml(&plan, h, &bins.standin());
            if options.net.enabled {
                text = testnet_setup::agent_toml(
                    &text,
                    &plan,
                    i,
                    &bins.standin(),
                    (!proxy_addrs.is_empty()).then_some(&proxy_addrs[..]),
                    s3.as_ref(),
                )?;
                std::fs::write(h.dir.join("faketime.rc"), "+0\n")?;
            } else if let Some(ns) = &netns[i] {
                // the controller as seen from inside the namespace; its certificate names localhost
                let url = format!("https://{}:{grpc_port}", ns.root_ip);
                text = text
                    .lines()
                    .map(|l| {
                        if l.starts_with("controllers = ") {
                            format!("controllers = [\"{url}\"]")
                        } else if l == "[tls]" {
                            "[tls]\nserver_name = \"localhost\"".to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            if let Some(ms) = options.promote_delay_ms {
                text = text
                    .lines()
                    .map(|l| match l.strip_prefix("promote = { command = [") {
                        Some(rest) => {
                            let args = rest.split(']').next().unwrap_or_default();
                            format!(
                                "promote = {{ command = [\"sh\", \"-c\", \"sleep {:.3}; exec \\\"$0\\\" \\\"$@\\\"\", {args}], timeout_ms = {} }}",
                                ms as f64 / 1000.0,
                                ms + 10_000
                            )
                        }
                        None => l.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            std::fs::write(
                h.agent_config(),
                format!("{text}\n{}\n", options.agent_extra),
            )?;
        }
        std::fs::write(plan.drctl_config(), layout::drctl_toml(&plan))?;
        let mut cluster = Cluster {
            bins,
            agents: plan.hosts.iter().map(|_| None).collect(),
            controllers: plan.controllers.iter().map(|_| None).collect(),
            plan,
            haproxy: None,
            netns,
            controller_netns,
            testnet: testnet.take(),
            s3: s3.take(),
            proxies,
            disks,
            options,
            dir,
        };
        for i in 0..cluster.options.controllers {
            cluster.spawn_controller(i)?;
        }
        cluster.wait_controllers().await?;
        for i in 0..cluster.plan.hosts.len() {
            cluster.start_standin(i)?;
            cluster.start_agent(i)?;
        }
        if let Some(h) = cluster.plan.haproxy.clone() {
            std::fs::create_dir_all(&h.dir)?;
            std::fs::write(h.config(), drctl::demo::haproxy::config(&cluster.plan, &h))?;
            let bin = haproxy().expect("checked above");
            cluster.haproxy = Some(Daemon::spawn(
                "haproxy",
                &bin,
                &drctl::demo::haproxy::run_args(&h.config()),
                &h.log(),
            )?);
        }
        if let Err(e) = cluster.wait_ready().await {
            cluster.print_logs();
            let dir = std::mem::replace(&mut cluster.dir, tempfile::tempdir()?);
            eprintln!("(test files kept in {})", dir.keep().display());
            return Err(e);
        }
        Ok(cluster)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let cluster = self;
        if cluster.options.wait_green {
            let n = cluster.plan.hosts.len();
            cluster
                .wait_status(
                    "every member green and the primary holding its lease",
                    Duration::from_secs(30),
                    |v| {
                        v.group(GROUP).is_some_and(|g| {
                            g.members.len() == n
                                && g.members.iter().all(|m| m.health == Health::Green)
                                && g.members.iter().any(|m| m.lease_remaining_ms.is_some())
                        })
                    },
                )
                .await?;
            if cluster.haproxy.is_some() {
                let c = &cluster;
                wait_until(
                    "the load balancer to route to the primary",
                    Duration::from_secs(15),
                    || async move { c.lb_get("/").await.ok().filter(|r| r.status == 200) },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The load balancer's address.
    pub fn lb(&self) -> Option<String> {
        self.plan.haproxy.as_ref().map(|h| h.frontend.to_string())
    }

    /// GET through the load balancer.
    pub async fn lb_get(&self, path: &str) -> anyhow::Result<super::http::Reply> {
        let lb = self
            .lb()
            .ok_or_else(|| anyhow::anyhow!("no load balancer in this cluster"))?;
        Ok(
            super::http::request(hyper::Method::GET, &lb, path, None, Duration::from_secs(2))
                .await?,
        )
    }

    /// The recorded primary, from drctl status.
    pub fn primary(&self) -> Option<String> {
        self.status()
            .ok()?
            .group(GROUP)?
            .primary
            .as_ref()
            .map(|p| p.to_string())
    }

    pub fn index_of(&self, host: &str) -> usize {
        self.plan
            .hosts
            .iter()
            .position(|h| h.host == host)
            .expect("a host of this cluster")
    }

    /// `program args` for host `i`: inside its namespace if it has one.
    fn host_command(
        &self,
        i: usize,
        program: &std::path::Path,
        args: &[String],
    ) -> (PathBuf, Vec<String>) {
        match &self.netns[i] {
            Some(ns) => {
                let (p, a) = ns.wrap(&program.display().to_string(), args);
                (PathBuf::from(p), a)
            }
            None => (program.to_path_buf(), args.to_vec()),
        }
    }

    /// `program args` under libfaketime if host `i` runs with a fake clock.
    fn faked(
        &self,
        i: usize,
        program: &std::path::Path,
        args: &[String],
    ) -> (PathBuf, Vec<String>) {
        match self.options.net.faketime_hosts.contains(&i) {
            true => testnet_setup::with_faketime(&self.faketime_file(i), program, args),
            false => (program.to_path_buf(), args.to_vec()),
        }
    }

    /// The clock offset file of host `i` (libfaketime syntax: `+0`, `+1h`, `-1h`), read by its
    /// agent at most a second later.
    pub fn faketime_file(&self, i: usize) -> PathBuf {
        self.plan.hosts[i].dir.join("faketime.rc")
    }

    /// Set host `i`'s wall-clock offset (libfaketime syntax, e.g. `+1h`).
    pub fn set_clock_offset(&self, i: usize, offset: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.options.net.faketime_hosts.contains(&i),
            "host {i} does not run under libfaketime (net.faketime_hosts)"
        );
        let path = self.faketime_file(i);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n"))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn host(&self, i: usize) -> &HostPlan {
        &self.plan.hosts[i]
    }

    pub fn drctl_config(&self) -> PathBuf {
        self.plan.drctl_config()
    }

    /// Start controller `i` (its process only).
    pub fn spawn_controller(&mut self, i: usize) -> anyhow::Result<()> {
        let c = self.plan.controllers[i].clone();
        let args = [
            "run".to_string(),
            "--config".into(),
            c.config().display().to_string(),
        ];
        let (program, args) = match &self.controller_netns[i] {
            Some(ns) => {
                let (p, a) = ns.wrap(&self.bins.controller().display().to_string(), &args);
                (PathBuf::from(p), a)
            }
            None => (self.bins.controller(), args.to_vec()),
        };
        let d = Daemon::spawn(&format!("controller {}", c.id), &program, &args, &c.log())?;
        self.controllers[i] = Some(d);
        Ok(())
    }

    /// Until a controller leads with a quorum and answers `Status`.
    pub async fn wait_controllers(&self) -> anyhow::Result<()> {
        wait_until(
            "a controller to lead and answer",
            Duration::from_secs(20),
            || async move {
                self.controller_status()
                    .ok()
                    .filter(|s| s["deciding"] == true)
                    .and_then(|_| self.status().ok())
            },
        )
        .await?;
        Ok(())
    }

    /// Start (or restart) the first controller and wait until one leads.
    pub async fn start_controller(&mut self) -> anyhow::Result<()> {
        self.spawn_controller(0)?;
        self.wait_controllers().await
    }

    /// SIGTERM the first controller and wait for it to exit.
    pub fn stop_controller(&mut self) -> Option<std::process::ExitStatus> {
        self.controllers[0]
            .take()?
            .terminate(Duration::from_secs(10))
    }

    /// SIGKILL controller `i`.
    pub fn kill_controller(&mut self, i: usize) {
        if let Some(mut d) = self.controllers[i].take() {
            d.kill();
        }
    }

    /// `drctl` against controller `i` only (its own config file, one address), run inside that
    /// controller's network namespace if it has one (reachable even while cut off).
    pub fn drctl_at(&self, i: usize, args: &[&str]) -> Output {
        let text = std::fs::read_to_string(self.drctl_config()).expect("drctl config");
        let url = format!("https://{}", self.plan.controllers[i].grpc);
        let one: String = text
            .lines()
            .map(|l| {
                if l.starts_with("controllers = ") {
                    format!("controllers = [\"{url}\"]")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = self
            .dir()
            .join(format!("drctl-{}.toml", self.plan.controllers[i].id));
        std::fs::write(&path, one).expect("write drctl config");
        let mut all = vec!["--config".to_string(), path.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let drctl = self.bins.drctl();
        let (program, all) = match &self.controller_netns[i] {
            Some(ns) => ns.wrap(&drctl.display().to_string(), &all),
            None => (drctl.display().to_string(), all),
        };
        Command::new(program)
            .args(all)
            .env("NO_COLOR", "1")
            .output()
            .expect("drctl runs")
    }

    /// `drctl controller status -o json` as the deciding leader answers it (else as the first
    /// running controller that answers).
    pub fn controller_status(&self) -> anyhow::Result<serde_json::Value> {
        let mut first = None;
        let mut errors = Vec::new();
        for i in (0..self.controllers.len()).filter(|i| self.controllers[*i].is_some()) {
            let out = self.drctl_at(i, &["controller", "status", "-o", "json"]);
            if !out.status.success() {
                errors.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            if v["answered_by_leader"] == true && v["deciding"] == true {
                return Ok(v);
            }
            first.get_or_insert(v);
        }
        first.ok_or_else(|| anyhow::anyhow!("no controller answered: {}", errors.join("; ")))
    }

    /// The index of the controller that leads now (per `drctl controller status`).
    pub fn leader(&self) -> Option<usize> {
        let s = self.controller_status().ok()?;
        let name = s["leader"].as_str()?;
        self.plan.controllers.iter().position(|c| c.id == name)
    }

    pub fn start_agent(&mut self, i: usize) -> anyhow::Result<()> {
        let h = self.plan.hosts[i].clone();
        let (program, args) = self.faked(
            i,
            &self.bins.agent(),
            &[
                "run".into(),
                "--config".into(),
                h.agent_config().display().to_string(),
            ],
        );
        let (program, args) = self.host_command(i, &program, &args);
        let d = Daemon::spawn(
            &format!("agent {}", h.host),
            &program,
            &args,
            &h.agent_log(),
        )?;
        self.agents[i] = Some(d);
        Ok(())
    }

    /// Start the stand-in of host `i` the way its agent would (`service.start`).
    pub fn start_standin(&self, i: usize) -> anyhow::Result<()> {
        let start = match self.options.net.enabled {
            true => testnet_setup::standin_start(&self.plan, i, &self.bins.standin()),
            false => layout::standin_start(&self.plan.hosts[i], &self.bins.standin()),
        };
        let (program, args) = self.faked(i, std::path::Path::new(&start[0]), &start[1..]);
        let (program, args) = self.host_command(i, &program, &args);
        let out = Command::new(program).args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "stand-in {i} did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub fn standin_pid(&self, i: usize) -> Option<u32> {
        read_pid_file(&self.plan.hosts[i].service_pid())
            .ok()
            .flatten()
    }

    pub fn signal_standin(&self, i: usize, sig: Sig) -> anyhow::Result<u32> {
        let pid = self
            .standin_pid(i)
            .ok_or_else(|| anyhow::anyhow!("stand-in {i} has no pid file"))?;
        signal(pid, sig)?;
        Ok(pid)
    }

    /// Run drctl with this cluster's config.
    pub fn drctl(&self, args: &[&str]) -> Output {
        Command::new(self.bins.drctl())
            .arg("--config")
            .arg(self.drctl_config())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("drctl runs")
    }

    /// `drctl status -o json`, parsed.
    pub fn status(&self) -> anyhow::Result<StatusView> {
        let out = self.drctl(&["status", "-o", "json", "--verbose"]);
        anyhow::ensure!(
            out.status.success(),
            "drctl status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Poll `drctl status` until `pred` holds.
    pub async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&StatusView) -> bool,
    ) -> anyhow::Result<StatusView> {
        let pred = &pred;
        let r = wait_until(what, timeout, || async move {
            self.status().ok().filter(|v| pred(v))
        })
        .await;
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let now = self
                    .status()
                    .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
                    .unwrap_or_else(|e| e.to_string());
                anyhow::bail!("{e}; last status:\n{now}")
            }
        }
    }

    fn logs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.plan.controllers.iter().map(|c| c.log()).collect();
        if let Some(h) = &self.plan.haproxy {
            v.push(h.log());
        }
        for h in &self.plan.hosts {
            v.push(h.agent_log());
            v.push(h.service_log());
        }
        v
    }

    fn print_logs(&self) {
        for log in self.logs() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("===== {} (last {} lines) =====", log.display(), tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
            eprintln!("(test files kept in {})", self.dir.path().display());
        }
        for a in self.agents.iter_mut().flatten() {
            a.kill();
        }
        for i in 0..self.plan.hosts.len() {
            if let Some(pid) = self.standin_pid(i) {
                let _ = signal(pid, Sig::Cont);
                let _ = signal(pid, Sig::Kill);
            }
        }
        for c in self.controllers.iter_mut().flatten() {
            c.kill();
        }
        if let Some(h) = self.haproxy.as_mut() {
            h.kill();
        }
        for ns in self
            .netns
            .iter_mut()
            .chain(self.controller_netns.iter_mut())
        {
            drop(ns.take());
        }
        if std::thread::panicking() {
            // keep the directory for inspection
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            let _ = dir.keep();
        }
    }
}

/// The demo's controller config with the disk-free threshold turned off.
fn no_disk_threshold(config: &str) -> anyhow::Result<String> {
    const DEMO: &str = "[thresholds.disk_free_percent_min]\nyellow = 3.0\nred = 1.0";
    anyhow::ensure!(
        config.contains(DEMO),
        "the demo layout's disk threshold changed: update the harness"
    );
    Ok(config.replace(
        DEMO,
        "[thresholds.disk_free_percent_min]\nyellow = 0.0\nred = 0.0",
    ))
}
