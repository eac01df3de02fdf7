//! Scheduled backups of the controller's own state: the leader writes a snapshot to the
//! configured `controller_store` with the data backups' cadence (incremental interval, else the
//! full one), so losing every controller costs at most that much history.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Runtime;
use crate::service::admin_cluster;

impl Runtime {
    /// Start a controller-state backup if one is due (leader only; one at a time).
    pub(super) fn state_backup_due(&mut self) {
        let config = &self.shared.config;
        let every = config
            .decide
            .backup_incremental_every
            .or(config.decide.backup_full_every);
        let (Some(every), Some(_)) = (every, &config.controller_store) else {
            return;
        };
        if self.decider.is_none() || self.state_backup_running.load(Ordering::SeqCst) {
            return;
        }
        if self.last_state_backup.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_state_backup = Some(Instant::now());
        self.state_backup_running.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        let running = Arc::clone(&self.state_backup_running);
        tokio::spawn(async move {
            match admin_cluster::backup(&shared, "").await {
                Ok(r) => {
                    shared
                        .state_backup_ok_unix_ms
                        .store(super::unix_ms(), Ordering::SeqCst);
                    tracing::debug!(id = %r.id, "scheduled controller backup written");
                }
                Err(e) => {
                    tracing::error!(error = %e.message(), "scheduled controller backup failed")
                }
            }
            running.store(false, Ordering::SeqCst);
        });
    }
}
