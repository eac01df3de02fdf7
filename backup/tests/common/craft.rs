//! Hand-made archives and manifests for hostile-input tests: tar headers written field by field
//! (the tar crate's safe setters refuse `..` and absolute paths, which is the point here).

use dr_backup::hashing::{Sha256Digest, sha256sum_line};
use dr_backup::manifest::{
    ArchiveInfo, EntryKind, MANIFEST_FORMAT, Manifest, ManifestEntry, ManifestHeader, totals_of,
};
use dr_backup::store::ObjectStore;
use dr_backup::{BackupId, BackupKind, BackupLocation};

use super::{GROUP, HOST};

/// A tar stream built from raw headers.
#[derive(Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one entry with exactly these fields.
    pub fn entry(
        &mut self,
        path: &[u8],
        kind: tar::EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&[u8]>,
    ) -> &mut Self {
        if path.len() >= 100 || path.contains(&0) {
            // GNU long name entry carrying the raw bytes.
            let mut long = path.to_vec();
            long.push(0);
            self.header(
                b"././@LongLink",
                tar::EntryType::GNULongName,
                0o644,
                long.len() as u64,
                None,
                |_| {},
            );
            self.data(&long);
            self.header(
                &path[..path.len().min(99)]
                    .iter()
                    .map(|&b| if b == 0 { b'_' } else { b })
                    .collect::<Vec<_>>(),
                kind,
                mode,
                data.len() as u64,
                link,
                |_| {},
            );
        } else {
            self.header(path, kind, mode, data.len() as u64, link, |_| {});
        }
        self.data(data);
        self
    }

    /// Appends a device node entry.
    pub fn device(&mut self, path: &[u8], kind: tar::EntryType) -> &mut Self {
        self.header(path, kind, 0o644, 0, None, |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        });
        self
    }

    /// Appends a PAX extended header whose records apply to the next entry (`path=...`
    /// overrides that entry's name, `size=...` its size).
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n" where len counts the whole record, its own digits included.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() != rest.to_string().len() {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        self.header(
            b"././@PaxHeader",
            tar::EntryType::XHeader,
            0o644,
            body.len() as u64,
            None,
            |_| {},
        );
        self.data(&body);
        self
    }

    /// Appends an entry whose header announces `declared` bytes while `data` (possibly fewer,
    /// possibly none) follows.
    pub fn lying(
        &mut self,
        path: &[u8],
        kind: tar::EntryType,
        mode: u32,
        declared: u64,
        data: &[u8],
    ) -> &mut Self {
        self.header(path, kind, mode, declared, None, |_| {});
        self.data(data);
        self
    }

    fn header(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        mode: u32,
        size: u64,
        link: Option<&[u8]>,
        extra: impl FnOnce(&mut tar::Header),
    ) {
        let mut h = tar::Header::new_gnu();
        // Both fields hold 100 bytes; longer names are cut (use `entry` for a long path).
        let name = &name[..name.len().min(100)];
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            let l = &l[..l.len().min(100)];
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        extra(&mut h);
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
    }

    fn data(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    /// The stream with its two end blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

pub fn file_entry(path: &str, data: &[u8], mode: u32) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        kind: EntryKind::File,
        size: data.len() as u64,
        mtime_ns: 1_700_000_000_000_000_000,
        mode,
        uid: 0,
        gid: 0,
        inode: 1,
        sha256: Some(Sha256Digest::of(data)),
        target: None,
        origin: None,
        changed_while_reading: false,
    }
}

pub fn dir_entry(path: &str) -> ManifestEntry {
    ManifestEntry {
        kind: EntryKind::Dir,
        size: 0,
        sha256: None,
        mode: 0o755,
        ..file_entry(path, b"", 0o755)
    }
}

pub fn link_entry(path: &str, target: &str) -> ManifestEntry {
    ManifestEntry {
        kind: EntryKind::Symlink,
        size: 0,
        sha256: None,
        target: Some(target.into()),
        mode: 0o777,
        ..file_entry(path, b"", 0o777)
    }
}

/// Stores a hand-made full backup (archive, `.sha256`, manifest with consistent totals) and
/// returns its id.
pub fn commit_full(
    store: &dyn ObjectStore,
    unix_secs: i64,
    tar_bytes: &[u8],
    entries: Vec<ManifestEntry>,
) -> BackupId {
    let id = BackupId {
        unix_secs,
        kind: BackupKind::Full,
    };
    let loc = BackupLocation::new(GROUP, HOST).unwrap();
    let compressed = zstd::encode_all(tar_bytes, 3).unwrap();
    let sha = Sha256Digest::of(&compressed);
    let totals = totals_of(&entries, 0, 0, 0);
    let manifest = Manifest {
        backup: ManifestHeader {
            format: MANIFEST_FORMAT,
            tool: "crafted".into(),
            id,
            kind: BackupKind::Full,
            group: GROUP.into(),
            host: HOST.into(),
            created_at: id.timestamp(),
            started_at_unix_ns: 0,
            finished_at_unix_ns: 0,
            parent: None,
            archive: ArchiveInfo {
                name: id.archive_name(),
                sha256: sha,
                size: compressed.len() as u64,
                compression: "zstd".into(),
                level: 3,
            },
            totals,
        },
        entries,
        deleted: vec![],
        vanished: vec![],
        root: None,
        skipped: vec![],
    };
    store
        .put(&loc.key(&id.archive_name()), &compressed)
        .unwrap();
    store
        .put(
            &loc.key(&id.sha256_name()),
            sha256sum_line(&sha, &id.archive_name()).as_bytes(),
        )
        .unwrap();
    store
        .put(
            &loc.key(&id.manifest_name()),
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    id
}
