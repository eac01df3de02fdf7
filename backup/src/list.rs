//! Listing backups: only those whose manifest (the commit marker) and archive both exist, newest
//! first, from the manifest headers alone.

use serde::Serialize;

use crate::manifest::{Manifest, ManifestError, read_header};
use crate::naming::{
    BackupId, BackupKind, BackupLocation, NameError, ObjectRole, parse_object_name, validate_name,
};
use crate::store::{ObjectStore, StoreError};

/// Largest manifest accepted (a manifest line is ~200 bytes per file: this is millions of files).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// One listed backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    /// `full-<ts>` / `incremental-<ts>`.
    pub id: BackupId,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Group.
    pub group: String,
    /// Host.
    pub host: String,
    /// UTC time of the backup, `2026-01-27T13:45:30Z`.
    pub created_at: String,
    /// Stored archive size in bytes.
    pub size: u64,
    /// Regular files in the backed-up tree.
    pub files: u64,
    /// Bytes of those files.
    pub file_bytes: u64,
    /// Parent of an incremental.
    pub parent: Option<BackupId>,
}

impl BackupSummary {
    /// Where this backup's objects live.
    pub fn location(&self) -> Result<BackupLocation, NameError> {
        BackupLocation::new(&self.group, &self.host)
    }
}

/// Which backups to list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this group.
    pub group: Option<String>,
    /// Only this host.
    pub host: Option<String>,
}

/// Why listing or loading a manifest failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The store could not be read (nothing was changed).
    #[error("listing backups: {0}")]
    Store(#[from] StoreError),
    /// A filter or location name is invalid.
    #[error("listing backups: {0}")]
    Name(#[from] NameError),
    /// The manifest is missing: the backup does not exist (or was never committed).
    #[error("backup {id} of {group}/{host} not found (no manifest in {store})")]
    NotFound {
        store: String,
        group: String,
        host: String,
        id: String,
    },
    /// The group/host has no backups at all.
    #[error("no backups of {group}/{host} in {store}")]
    NoBackups {
        store: String,
        group: String,
        host: String,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("manifest {key} in {store} is unreadable: {message}")]
    BadManifest {
        store: String,
        key: String,
        message: String,
    },
    /// The manifest parsed but is inconsistent or hostile.
    #[error(transparent)]
    Invalid(#[from] ManifestError),
}

/// Lists committed backups, newest first.
pub fn list_backups(
    store: &dyn ObjectStore,
    filter: &ListFilter,
) -> Result<Vec<BackupSummary>, ListError> {
    if let Some(g) = &filter.group {
        validate_name("group", g)?;
    }
    if let Some(h) = &filter.host {
        validate_name("host", h)?;
    }
    let prefix = match (&filter.group, &filter.host) {
        (Some(g), Some(h)) => format!("{g}/{h}/"),
        (Some(g), None) => format!("{g}/"),
        _ => String::new(),
    };
    let objects = store.list(&prefix)?;
    let archives: std::collections::HashMap<&str, u64> = objects
        .iter()
        .filter(|o| o.key.ends_with(".tar.zst"))
        .map(|o| (o.key.as_str(), o.size))
        .collect();
    let mut out = Vec::new();
    for obj in &objects {
        let parts: Vec<&str> = obj.key.split('/').collect();
        let [group, host, name] = parts[..] else {
            continue;
        };
        if filter.host.as_deref().is_some_and(|h| h != host) {
            continue;
        }
        let Some((id, ObjectRole::Manifest)) = parse_object_name(name) else {
            continue;
        };
        let archive_key = format!("{group}/{host}/{}", id.archive_name());
        let Some(&archive_size) = archives.get(archive_key.as_str()) else {
            tracing::warn!(key = %obj.key, "manifest without its archive; not listed");
            continue;
        };
        let header = match store.open(&obj.key).map(read_header) {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!(key = %obj.key, error = %e, "unreadable manifest; not listed");
                continue;
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        if header.id != id || header.group != group || header.host != host {
            tracing::warn!(key = %obj.key, "manifest names another backup; not listed");
            continue;
        }
        out.push(BackupSummary {
            id,
            kind: id.kind,
            group: group.to_owned(),
            host: host.to_owned(),
            created_at: id.timestamp(),
            size: archive_size,
            files: header.totals.files,
            file_bytes: header.totals.file_bytes,
            parent: header.parent,
        });
    }
    out.sort_by(|a, b| {
        b.id.cmp(&a.id)
            .then_with(|| (&a.group, &a.host).cmp(&(&b.group, &b.host)))
    });
    Ok(out)
}

/// Loads and checks a backup's full manifest.
pub fn load_manifest(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    id: BackupId,
) -> Result<Manifest, ListError> {
    let key = loc.key(&id.manifest_name());
    let reader = match store.open(&key) {
        Ok(r) => r,
        Err(e) if e.is_not_found() => {
            return Err(ListError::NotFound {
                store: store.url(),
                group: loc.group().to_owned(),
                host: loc.host().to_owned(),
                id: id.to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if reader.len() > MAX_MANIFEST_BYTES {
        return Err(ListError::BadManifest {
            store: store.url(),
            key,
            message: format!("{} bytes is too large", reader.len()),
        });
    }
    // Streamed: the raw JSON (about as large as the parsed entries) is never held whole.
    let manifest: Manifest =
        serde_json::from_reader(std::io::BufReader::with_capacity(1 << 20, reader)).map_err(
            |e| ListError::BadManifest {
                store: store.url(),
                key: key.clone(),
                message: e.to_string(),
            },
        )?;
    if manifest.backup.id != id
        || manifest.backup.group != loc.group()
        || manifest.backup.host != loc.host()
    {
        return Err(ListError::BadManifest {
            store: store.url(),
            key,
            message: format!(
                "it describes {} of {}/{}",
                manifest.backup.id, manifest.backup.group, manifest.backup.host
            ),
        });
    }
    manifest.check()?;
    Ok(manifest)
}

/// The newest committed backup of a host.
pub fn latest_backup(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
) -> Result<BackupSummary, ListError> {
    let filter = ListFilter {
        group: Some(loc.group().to_owned()),
        host: Some(loc.host().to_owned()),
    };
    list_backups(store, &filter)?
        .into_iter()
        .next()
        .ok_or_else(|| ListError::NoBackups {
            store: store.url(),
            group: loc.group().to_owned(),
            host: loc.host().to_owned(),
        })
}
