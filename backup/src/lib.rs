//! dr-backup: the backup and restore engine of erlmcp-dr.
//!
//! - [`store`]: `file://` and `s3://` object stores behind one blocking trait.
//! - [`backup::create_backup`]: walk → tar → zstd → SHA-256 → store, full or incremental.
//! - [`verify::verify_backup`]: quick (stored hash) or deep (every file) checks.
//! - [`restore::restore_chain`]: safe extraction of a backup chain into a staging directory, then
//!   [`restore::swap_in`] to exchange it with the data directory (with rollback).
//! - [`list::list_backups`], [`retention::plan_retention`].
//!
//! Everything here blocks; call it from `spawn_blocking` or a dedicated thread.

pub mod backup;
mod guided;
pub mod hashing;
mod incremental;
pub mod journal;
pub mod list;
pub mod manifest;
pub mod naming;
mod pack;
mod paths;
pub mod progress;
pub mod restore;
pub mod retention;
mod scan;
pub mod store;
pub mod verify;
mod walk;

pub use backup::{
    BackupError, BackupMode, BackupOptions, BackupReport, BackupRequest, TreeScan, create_backup,
};
pub use journal::ChangeJournal;
pub use list::{BackupSummary, ListError, ListFilter, latest_backup, list_backups, load_manifest};
pub use naming::{BackupId, BackupKind, BackupLocation};
pub use progress::{Phase, Progress, ProgressSink};
pub use restore::{
    RestoreError, RestoreOptions, RestoreReport, RestoreRequest, SwapGuard, restore_chain, swap_in,
};
pub use scan::ScanError;
pub use store::{ObjectStore, StoreError, StoreOptions, open_store};
pub use verify::{VerifyError, VerifyMode, VerifyReport, verify_backup};
