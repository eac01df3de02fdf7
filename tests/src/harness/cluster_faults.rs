//! Process faults on a cluster's members, as harness methods: kill -9, SIGSTOP/SIGCONT (a hung
//! host or controller) and restart, for agents, stand-ins and controllers.

use dr_proto::process::Sig;

use super::cluster::Cluster;

impl Cluster {
    /// kill -9 host `i`'s agent (its stand-in keeps running).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(a) = self.agents[i].as_mut() {
            a.kill();
        }
    }

    /// kill -9 host `i`'s agent and start it again with the same config.
    pub fn restart_agent(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill_agent(i);
        self.start_agent(i)
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) host `i`'s agent.
    pub fn pause_agent(&self, i: usize, paused: bool) -> anyhow::Result<()> {
        let a = self.agents[i]
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("host {i} has no running agent"))?;
        a.signal(if paused { Sig::Stop } else { Sig::Cont });
        Ok(())
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) host `i`'s stand-in.
    pub fn pause_standin(&self, i: usize, paused: bool) -> anyhow::Result<()> {
        self.signal_standin(i, if paused { Sig::Stop } else { Sig::Cont })?;
        Ok(())
    }

    /// kill -9 host `i`'s stand-in and start it again (as its agent would).
    pub fn restart_standin(&self, i: usize) -> anyhow::Result<()> {
        let _ = self.signal_standin(i, Sig::Kill);
        if let Some(pid) = self.standin_pid(i) {
            dr_proto::process::wait_gone(pid, std::time::Duration::from_secs(5));
        }
        self.start_standin(i)
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) controller `i`.
    pub fn pause_controller(&self, i: usize, paused: bool) -> anyhow::Result<()> {
        let c = self.controllers[i]
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("controller {i} is not running"))?;
        c.signal(if paused { Sig::Stop } else { Sig::Cont });
        Ok(())
    }

    /// kill -9 controller `i` and start it again with the same config and data.
    pub fn restart_controller(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill_controller(i);
        self.spawn_controller(i)
    }
}
