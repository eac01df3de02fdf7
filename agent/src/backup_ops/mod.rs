//! Backups, restores and drills on this host, as the controller asks for them (the runbook's
//! Procedures 2 and 4 and its backup quick commands). The engine (`dr-backup`) blocks, so every
//! call goes through `spawn_blocking`; the store is wrapped in a [`deadline::DeadlineStore`] so
//! `[backup] timeout_s` really stops the work.
//!
//! - [`backup::backup`], [`backup::verify`], [`backup::list`], [`backup::apply_retention`]
//! - [`restore::restore`]: staging first (service untouched), then stop, swap, hooks, start,
//!   healthy, with a rollback to the previous data on any failure after the swap.
//! - [`drill::drill`]: restore into scratch space, check, delete; a failed drill is a result.
//!
//! One of backup, restore, drill or retention runs at a time on a host ([`OpSlot`]).

pub mod backup;
pub mod deadline;
pub mod drill;
pub mod fallback;
pub mod progress;
pub mod records;
pub mod restore;

use std::sync::{Arc, Mutex};

use dr_backup::store::ObjectStore;
use dr_backup::{BackupId, BackupLocation};
use dr_proto::domain::HostName;

use crate::commands::Ctx;
use crate::config::BackupSettings;

pub use backup::{apply_retention, backup, list, verify};
pub use drill::drill;
pub use restore::restore;

/// Which backup operation runs now on this host, if any.
#[derive(Debug, Default)]
pub struct OpSlot(Mutex<Option<&'static str>>);

/// Frees the [`OpSlot`] when dropped.
#[derive(Debug)]
pub struct OpGuard(Arc<OpSlot>);

impl OpSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<&'static str>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims the slot for `op`, or says what already runs.
    pub fn begin(self: &Arc<Self>, op: &'static str) -> Result<OpGuard, String> {
        let mut slot = self.lock();
        if let Some(running) = *slot {
            return Err(format!(
                "refused: a {running} is already running on this host; try again when it is done"
            ));
        }
        *slot = Some(op);
        Ok(OpGuard(self.clone()))
    }

    /// The operation running now.
    pub fn running(&self) -> Option<&'static str> {
        *self.lock()
    }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

/// The `[backup]` section, or the reason this agent cannot act.
pub(crate) fn settings(ctx: &Ctx) -> Result<&BackupSettings, String> {
    ctx.config
        .backup
        .as_ref()
        .ok_or_else(|| "no [backup] store is configured on this agent".to_string())
}

/// Runs blocking engine work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("internal error: the blocking task failed: {e}"))
}

/// Opens the configured store (S3 builds its client and runtime here, so off the async threads).
pub(crate) async fn open_store(s: &BackupSettings) -> Result<Arc<dyn ObjectStore>, String> {
    let (url, options) = (s.store.clone(), s.store_options.clone());
    blocking(move || dr_backup::open_store(&url, &options))
        .await?
        .map(Arc::from)
        .map_err(|e| e.to_string())
}

/// This group's folder of `from_host` (default: this host).
pub(crate) fn location(ctx: &Ctx, from_host: Option<&HostName>) -> Result<BackupLocation, String> {
    let host = from_host.unwrap_or(&ctx.config.host);
    BackupLocation::new(ctx.config.group.as_str(), host.as_str()).map_err(|e| e.to_string())
}

/// `None` or `latest` → the newest; otherwise a `full-…`/`incremental-…` id.
pub fn parse_backup_id(s: Option<&str>) -> Result<Option<BackupId>, String> {
    match s.map(str::trim) {
        None | Some("" | "latest") => Ok(None),
        Some(id) => id
            .parse()
            .map(Some)
            .map_err(|e| format!("{e}: give `latest` or an id such as full-2026-01-27T13:45:30Z")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operation_at_a_time() {
        let slot = Arc::new(OpSlot::default());
        let g = slot.begin("backup").unwrap();
        assert_eq!(slot.running(), Some("backup"));
        let e = slot.begin("restore").unwrap_err();
        assert!(e.contains("a backup is already running"), "{e}");
        drop(g);
        assert!(slot.begin("restore").is_ok());
    }

    #[test]
    fn backup_ids() {
        assert_eq!(parse_backup_id(None).unwrap(), None);
        assert_eq!(parse_backup_id(Some("latest")).unwrap(), None);
        let id = parse_backup_id(Some("full-2026-01-27T13:45:30Z"))
            .unwrap()
            .unwrap();
        assert_eq!(id.to_string(), "full-2026-01-27T13:45:30Z");
        assert!(
            parse_backup_id(Some("../etc"))
                .unwrap_err()
                .contains("latest")
        );
    }
}
