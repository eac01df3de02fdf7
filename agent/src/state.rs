//! What the agent knows about its place in the group, shared by the session, the lease loop,
//! the command executor and the HTTP endpoints. The highest epoch seen, and whether this host
//! was primary, are persisted in `state_dir`: a restarted agent still refuses commands from an
//! older epoch, and a returning old primary still runs its demote hook.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dr_proto::domain::{Epoch, HealthReport, HostName, Role};
use dr_proto::pb;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::role::{Effect, RoleMachine};

const STATE_FILE: &str = "agent-state.json";

/// For `/health` and logs.
#[derive(Clone, Debug, Serialize)]
pub struct RoleView {
    pub role: Role,
    pub epoch: Epoch,
    pub primary: Option<HostName>,
    pub controller_id: Option<String>,
    pub connected: bool,
    pub serving_as_primary: bool,
    pub lease_remaining_ms: u32,
    pub fenced: bool,
    pub busy_with: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    last_epoch_seen: u64,
    #[serde(default)]
    was_primary: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state_dir {path}: {message}")]
    Dir { path: PathBuf, message: String },
}

pub struct AgentState {
    dir: PathBuf,
    role: Mutex<RoleMachine>,
    persisted: Mutex<Persisted>,
    last_epoch_seen: AtomicU64,
    controller: Mutex<Option<String>>,
    last_report: Mutex<Option<HealthReport>>,
    /// The outbound half of the current controller session, if any.
    link: Mutex<Option<mpsc::Sender<pb::AgentMessage>>>,
    /// Wakes the prober for an immediate round (the service process exited).
    pub probe_now: tokio::sync::Notify,
    /// Effects of the role machine waiting to be carried out.
    effects: mpsc::UnboundedSender<Effect>,
    pub reports_sent: AtomicU64,
    pub sessions_opened: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentState {
    pub fn open(
        dir: &Path,
        effects: mpsc::UnboundedSender<Effect>,
    ) -> Result<AgentState, StateError> {
        let err = |message: String| StateError::Dir {
            path: dir.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create: {e}")))?;
        let file = dir.join(STATE_FILE);
        let persisted: Persisted = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                err(format!(
                    "{STATE_FILE} is corrupt ({e}); move it aside to start fresh"
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(err(format!("cannot read {STATE_FILE}: {e}"))),
        };
        let mut machine = RoleMachine::default();
        machine.was_primary_before_restart = persisted.was_primary;
        Ok(AgentState {
            dir: dir.to_path_buf(),
            role: Mutex::new(machine),
            last_epoch_seen: AtomicU64::new(persisted.last_epoch_seen),
            persisted: Mutex::new(persisted),
            controller: Mutex::new(None),
            last_report: Mutex::new(None),
            link: Mutex::new(None),
            probe_now: tokio::sync::Notify::new(),
            effects,
            reports_sent: AtomicU64::new(0),
            sessions_opened: AtomicU64::new(0),
        })
    }

    pub fn role_view(&self) -> RoleView {
        let now = Instant::now();
        let m = lock(&self.role);
        let snap = m.snapshot(now);
        let controller = lock(&self.controller).clone();
        RoleView {
            role: snap.role,
            epoch: m.told_epoch,
            primary: m.primary.clone(),
            connected: controller.is_some(),
            controller_id: controller,
            serving_as_primary: m.serving_as_primary(now),
            lease_remaining_ms: snap.lease_remaining_ms,
            fenced: snap.fenced,
            busy_with: snap.busy_with,
        }
    }

    pub fn serving_as_primary(&self) -> bool {
        lock(&self.role).serving_as_primary(Instant::now())
    }

    pub fn role_snapshot(&self) -> dr_proto::domain::AgentRoleState {
        lock(&self.role).snapshot(Instant::now())
    }

    pub fn last_epoch_seen(&self) -> Epoch {
        Epoch(self.last_epoch_seen.load(Ordering::SeqCst))
    }

    pub fn set_connected(&self, controller_id: Option<String>) {
        *lock(&self.controller) = controller_id;
    }

    pub fn set_link(&self, link: Option<mpsc::Sender<pb::AgentMessage>>) {
        *lock(&self.link) = link;
    }

    /// Send to the controller if a session is up (best effort: lease messages are repeated, or
    /// made moot by time).
    pub fn send(&self, m: pb::AgentMessage) -> bool {
        match lock(&self.link).as_ref() {
            Some(tx) => tx.try_send(m).is_ok(),
            None => false,
        }
    }

    /// Run `f` on the role machine and queue the effects it asks for.
    pub fn with_role<T>(&self, f: impl FnOnce(&mut RoleMachine) -> (T, Vec<Effect>)) -> T {
        let (out, fx) = f(&mut lock(&self.role));
        for e in fx {
            let _ = self.effects.send(e);
        }
        out
    }

    /// Take in what the controller said about epoch and role.
    pub fn observe(&self, epoch: Epoch, role: Role, primary: Option<HostName>) {
        let seen = self.last_epoch_seen();
        if epoch < seen {
            tracing::warn!(%epoch, last_seen = %seen, "controller speaks of an older epoch than this agent has seen");
        }
        let before = {
            let m = lock(&self.role);
            (m.told_role, m.told_epoch)
        };
        if before != (role, epoch) {
            tracing::info!(%epoch, role = %role, primary = ?primary.as_ref().map(|p| p.to_string()), "role update");
        }
        self.with_role(|m| ((), m.told(role, epoch, primary)));
        if epoch > seen {
            self.last_epoch_seen.store(epoch.0, Ordering::SeqCst);
            self.update_persisted(|p| p.last_epoch_seen = epoch.0);
        }
    }

    /// Remember whether this host is (or was) primary, across agent restarts.
    pub fn set_was_primary(&self, was: bool) {
        self.update_persisted(|p| p.was_primary = was);
    }

    fn update_persisted(&self, f: impl FnOnce(&mut Persisted)) {
        let mut p = lock(&self.persisted);
        f(&mut p);
        if let Err(e) = self.write(&p) {
            tracing::error!(error = %e, "cannot persist the agent state");
        }
    }

    fn write(&self, p: &Persisted) -> std::io::Result<()> {
        use std::io::Write;
        let file = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let body = serde_json::to_vec(p)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)
    }

    pub fn set_last_report(&self, report: HealthReport) {
        *lock(&self.last_report) = Some(report);
    }

    pub fn last_report(&self) -> Option<HealthReport> {
        lock(&self.last_report).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_epoch_and_primary_history_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        {
            let s = AgentState::open(dir.path(), tx.clone()).unwrap();
            s.observe(Epoch(4), Role::Replica, None);
            s.observe(Epoch(2), Role::Replica, None);
            s.set_was_primary(true);
            assert_eq!(s.last_epoch_seen(), Epoch(4));
        }
        let s = AgentState::open(dir.path(), tx).unwrap();
        assert_eq!(s.last_epoch_seen(), Epoch(4));
        // a returning old primary runs its demote hook when told it is a replica now
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let s2 = AgentState::open(dir.path(), tx2).unwrap();
        s2.observe(Epoch(5), Role::Replica, None);
        assert_eq!(rx2.try_recv().unwrap(), Effect::Demote);
        drop(s);
    }

    #[test]
    fn corrupt_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let e = AgentState::open(dir.path(), tx).err().unwrap().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }
}
