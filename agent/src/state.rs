//! What the agent knows about its place in the group, shared by the session, the command
//! executor and the HTTP endpoints. The highest epoch seen is persisted in `state_dir`, so a
//! restarted agent still refuses commands from an older epoch.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use dr_proto::domain::{Epoch, HealthReport, HostName, Role};
use serde::{Deserialize, Serialize};

const STATE_FILE: &str = "agent-state.json";

#[derive(Clone, Debug, Serialize)]
pub struct RoleView {
    pub role: Role,
    pub epoch: Epoch,
    pub primary: Option<HostName>,
    pub controller_id: Option<String>,
    pub connected: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    last_epoch_seen: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state_dir {path}: {message}")]
    Dir { path: PathBuf, message: String },
}

pub struct AgentState {
    dir: PathBuf,
    view: Mutex<RoleView>,
    last_epoch_seen: AtomicU64,
    last_report: Mutex<Option<HealthReport>>,
    pub reports_sent: AtomicU64,
    pub sessions_opened: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentState {
    pub fn open(dir: &Path) -> Result<AgentState, StateError> {
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
        Ok(AgentState {
            dir: dir.to_path_buf(),
            view: Mutex::new(RoleView {
                role: Role::Unknown,
                epoch: Epoch(persisted.last_epoch_seen),
                primary: None,
                controller_id: None,
                connected: false,
            }),
            last_epoch_seen: AtomicU64::new(persisted.last_epoch_seen),
            last_report: Mutex::new(None),
            reports_sent: AtomicU64::new(0),
            sessions_opened: AtomicU64::new(0),
        })
    }

    pub fn role_view(&self) -> RoleView {
        lock(&self.view).clone()
    }

    pub fn last_epoch_seen(&self) -> Epoch {
        Epoch(self.last_epoch_seen.load(Ordering::SeqCst))
    }

    pub fn set_connected(&self, controller_id: Option<String>) {
        let mut v = lock(&self.view);
        v.connected = controller_id.is_some();
        if controller_id.is_some() {
            v.controller_id = controller_id;
        }
    }

    /// Take in what the controller said about epoch and role.
    pub fn observe(&self, epoch: Epoch, role: Role, primary: Option<HostName>) {
        let seen = self.last_epoch_seen();
        if epoch < seen {
            tracing::warn!(%epoch, last_seen = %seen, "controller speaks of an older epoch than this agent has seen");
        }
        {
            let mut v = lock(&self.view);
            if v.role != role || v.epoch != epoch {
                tracing::info!(%epoch, role = %role, primary = ?primary, "role update");
            }
            v.role = role;
            v.epoch = epoch;
            v.primary = primary;
        }
        if epoch > seen {
            self.last_epoch_seen.store(epoch.0, Ordering::SeqCst);
            if let Err(e) = self.persist(epoch) {
                tracing::error!(error = %e, "cannot persist the epoch seen");
            }
        }
    }

    fn persist(&self, epoch: Epoch) -> std::io::Result<()> {
        use std::io::Write;
        let file = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let body = serde_json::to_vec(&Persisted {
            last_epoch_seen: epoch.0,
        })?;
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
    fn highest_epoch_survives_a_restart_and_never_goes_down() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = AgentState::open(dir.path()).unwrap();
            s.observe(Epoch(4), Role::Replica, None);
            s.observe(Epoch(2), Role::Replica, None);
            assert_eq!(s.last_epoch_seen(), Epoch(4));
        }
        let s = AgentState::open(dir.path()).unwrap();
        assert_eq!(s.last_epoch_seen(), Epoch(4));
    }

    #[test]
    fn corrupt_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let e = AgentState::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }
}
