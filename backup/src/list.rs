//! Listing backups: only those whose manifest (the commit marker) and archive both exist, newest
//! first, from the manifest headers alone.

use serde::Serialize;

use std::io::{BufReader, Read};

use crate::manifest::view::{EntrySource, ViewMerge, build_view};
use crate::manifest::{
    EntryStream, Manifest, ManifestError, ManifestHeader, StreamError, parse_stored, read_header,
};
use crate::naming::{
    BackupId, BackupKind, BackupLocation, NameError, ObjectRole, parse_object_name, validate_name,
};
use crate::store::{ObjectStore, StoreError};

/// Largest manifest accepted (about 150 bytes per file: this is millions of files).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// Longest chain of incrementals followed (a loop or absurd chain is refused).
pub(crate) const MAX_CHAIN: usize = 10_000;

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
        let header = match store
            .open(&obj.key)
            .map(|r| read_header(BufReader::with_capacity(8 << 10, r)))
        {
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

/// Loads a backup's manifest as the whole tree at its time: for an incremental, its chain of
/// manifests (each stores only its changes) is loaded and merged, and entries whose data lives in
/// an older backup carry that backup's id in `origin`. The result is checked
/// ([`Manifest::check`]); a missing parent is reported as an invalid manifest (the chain is
/// broken).
pub fn load_manifest(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    id: BackupId,
) -> Result<Manifest, ListError> {
    let (view, _) = load_view(store, loc, id)?;
    Ok(view)
}

/// [`load_manifest`], plus the indices of entries whose latest change touched only attributes.
pub(crate) fn load_view(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    id: BackupId,
) -> Result<(Manifest, Vec<usize>), ListError> {
    let mut chain = match load_chain(store, loc, id, true) {
        Ok(c) => c,
        Err(ChainError::List(e)) => return Err(e),
        Err(ChainError::Broken(problem)) => {
            return Err(ListError::Invalid(ManifestError {
                id: id.to_string(),
                problem,
            }));
        }
    };
    let base = chain.remove(0);
    let single = chain.is_empty();
    let (view, fixups) = build_view(base, chain);
    if !single {
        // (A full backup's manifest was checked whole when loaded.)
        view.check()?;
    }
    Ok((view, fixups))
}

/// The whole tree of a backup, streamed, for an incremental built on it: the full backup's
/// entries are read as they are needed, merged with its incrementals' changes (loaded whole;
/// they are small). No safety checks beyond the manifests' identity: the incremental only
/// compares against this tree (checking order and paths as it goes), and its own manifest and
/// any restore are checked.
pub(crate) fn load_parent_tree(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    id: BackupId,
) -> Result<(ManifestHeader, ViewMerge<ParentBase>), ListError> {
    let mut deltas: Vec<Manifest> = Vec::new();
    let mut cur = id;
    loop {
        if cur.kind == crate::naming::BackupKind::Full {
            break;
        }
        if deltas.len() >= MAX_CHAIN {
            return Err(broken(id, format!("chain longer than {MAX_CHAIN}")));
        }
        let m = load_stored(store, loc, cur, false).map_err(|e| match e {
            ListError::NotFound { .. } if cur != id => broken(
                id,
                format!("parent {cur} is missing (the chain is broken; take a full backup)"),
            ),
            other => other,
        })?;
        let Some(parent) = m.backup.parent else {
            return Err(broken(id, format!("{cur} names no parent")));
        };
        if parent >= cur {
            return Err(broken(
                id,
                format!("{cur} names a parent that is not older"),
            ));
        }
        deltas.push(m);
        cur = parent;
    }
    deltas.reverse();
    let key = loc.key(&cur.manifest_name());
    let bad = |message: String| ListError::BadManifest {
        store: store.url(),
        key: key.clone(),
        message,
    };
    let open = |store: &dyn ObjectStore| match store.open(&key) {
        Err(e) if e.is_not_found() => Err(if cur == id {
            ListError::NotFound {
                store: store.url(),
                group: loc.group().to_owned(),
                host: loc.host().to_owned(),
                id: id.to_string(),
            }
        } else {
            broken(
                id,
                format!("parent {cur} is missing (the chain is broken; take a full backup)"),
            )
        }),
        other => other.map_err(ListError::from),
    };
    let reader = BufReader::with_capacity(256 << 10, open(store)?);
    let (head, base) = match EntryStream::open(reader) {
        Ok((head, stream)) => (
            head,
            ParentBase::Stream {
                stream: Box::new(stream),
                store: store.url(),
                key: key.clone(),
            },
        ),
        Err(StreamError::Layout) => {
            // Not our layout (hand-made?): read it whole.
            let m = load_stored(store, loc, cur, false)?;
            let entries = m.entries.into_iter();
            (
                Manifest {
                    entries: Vec::new(),
                    ..m
                },
                ParentBase::Whole(entries),
            )
        }
        Err(StreamError::Io(e)) => return Err(bad(format!("reading: {e}"))),
        Err(StreamError::Json(e)) => return Err(bad(e.to_string())),
    };
    if head.backup.id != cur || head.backup.group != loc.group() || head.backup.host != loc.host() {
        return Err(bad(format!(
            "it describes {} of {}/{}",
            head.backup.id, head.backup.group, head.backup.host
        )));
    }
    let header = deltas
        .last()
        .map_or(head.backup.clone(), |d| d.backup.clone());
    Ok((header, ViewMerge::new(base, cur, deltas)))
}

fn stream_problem(e: StreamError) -> String {
    match e {
        StreamError::Io(e) => format!("reading: {e}"),
        StreamError::Json(e) => e.to_string(),
        StreamError::Layout => "unexpected layout".into(),
    }
}

fn broken(id: BackupId, problem: String) -> ListError {
    ListError::Invalid(ManifestError {
        id: id.to_string(),
        problem,
    })
}

/// The full backup's entries under an incremental's parent tree.
pub(crate) enum ParentBase {
    /// Read from the store as they are needed.
    Stream {
        stream: Box<EntryStream<BufReader<crate::store::ObjectReader>>>,
        store: String,
        key: String,
    },
    /// Loaded whole (a manifest not in our own layout).
    Whole(std::vec::IntoIter<crate::manifest::ManifestEntry>),
}

impl EntrySource for ParentBase {
    type Error = ListError;
    fn next_entry(&mut self) -> Result<Option<crate::manifest::ManifestEntry>, ListError> {
        match self {
            ParentBase::Whole(it) => Ok(it.next()),
            ParentBase::Stream { stream, store, key } => {
                stream.next_entry().map_err(|e| ListError::BadManifest {
                    store: store.clone(),
                    key: key.clone(),
                    message: stream_problem(e),
                })
            }
        }
    }
}

/// Why a chain of manifests cannot be loaded.
#[derive(Debug)]
pub(crate) enum ChainError {
    /// A manifest is missing (the target's), unreadable or invalid, or the store failed.
    List(ListError),
    /// A parent is missing or the chain is inconsistent: a sentence saying so.
    Broken(String),
}

/// The stored manifests of `target` and its parents, full first, each checked as stored (with
/// `checked`); every parent must exist and every `origin` name a backup earlier in the chain.
pub(crate) fn load_chain(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    target: BackupId,
    checked: bool,
) -> Result<Vec<Manifest>, ChainError> {
    let mut chain = vec![load_stored(store, loc, target, checked).map_err(ChainError::List)?];
    while let Some(parent) = chain.last().and_then(|m| m.backup.parent) {
        if chain.len() >= MAX_CHAIN {
            return Err(ChainError::Broken(format!("chain longer than {MAX_CHAIN}")));
        }
        let m = load_stored(store, loc, parent, checked).map_err(|e| match e {
            ListError::NotFound { .. } => ChainError::Broken(format!(
                "parent {parent} is missing (the chain is broken; restore an older full backup)"
            )),
            other => ChainError::List(other),
        })?;
        chain.push(m);
    }
    chain.reverse();
    if chain.first().map(|m| m.backup.kind) != Some(crate::naming::BackupKind::Full) {
        return Err(ChainError::Broken(
            "the chain does not start with a full backup".into(),
        ));
    }
    for (i, m) in chain.iter().enumerate() {
        let earlier: Vec<BackupId> = chain[..i].iter().map(|m| m.backup.id).collect();
        if let Some(bad) = m
            .entries
            .iter()
            .find(|e| e.origin.is_some_and(|o| !earlier.contains(&o)))
        {
            return Err(ChainError::Broken(format!(
                "{:?} in {} refers to {:?}, which is not in its chain",
                bad.path, m.backup.id, bad.origin
            )));
        }
    }
    Ok(chain)
}

/// Loads one manifest as stored (an incremental's holds only its changes) and, with `checked`,
/// checks it as such.
pub(crate) fn load_stored(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    id: BackupId,
    checked: bool,
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
    let bad = |message: String| ListError::BadManifest {
        store: store.url(),
        key: key.clone(),
        message,
    };
    let len = reader.len();
    if len > MAX_MANIFEST_BYTES {
        return Err(bad(format!("{len} bytes is too large")));
    }
    // Our own layout streams, a group (line) at a time: the raw JSON is never held whole.
    let manifest = match EntryStream::open(BufReader::with_capacity(256 << 10, reader)) {
        Ok((mut head, mut stream)) => {
            // Sized from the header, but never beyond what the object could hold.
            let announced = usize::try_from(head.backup.totals.entries).unwrap_or(0);
            head.entries
                .reserve(announced.min(usize::try_from(len / 40).unwrap_or(0)));
            loop {
                match stream.next_entry() {
                    Ok(Some(e)) => head.entries.push(e),
                    Ok(None) => break,
                    Err(StreamError::Io(e)) => return Err(bad(format!("reading: {e}"))),
                    Err(e) => return Err(bad(stream_problem(e))),
                }
            }
            head
        }
        Err(StreamError::Io(e)) => return Err(bad(format!("reading: {e}"))),
        Err(_) => {
            // Another layout (hand-made): read and parse it whole.
            let reader = store.open(&key)?;
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            reader
                .take(MAX_MANIFEST_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("reading: {e}")))?;
            parse_stored(&bytes).map_err(|e| bad(e.to_string()))?
        }
    };
    if manifest.backup.id != id
        || manifest.backup.group != loc.group()
        || manifest.backup.host != loc.host()
    {
        return Err(bad(format!(
            "it describes {} of {}/{}",
            manifest.backup.id, manifest.backup.group, manifest.backup.host
        )));
    }
    if checked {
        manifest.check_stored()?;
    }
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
