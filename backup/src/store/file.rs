//! `file://DIR`: objects are files under DIR. A writer writes `.NAME.partial-…` next to the final
//! name, fsyncs, renames and fsyncs the directory, so an object is either complete or absent.
//! Names starting with `.` are never listed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{
    ObjectMeta, ObjectReader, ObjectStore, ObjectWriter, StoreError, SweepReport, check_key,
};

/// Marker in temp file names; `sweep_stale_uploads` removes old ones.
const PARTIAL_MARK: &str = ".partial-";

/// Objects as files in a directory tree.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory holding the objects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, op: &'static str, key: &str, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.url(),
            op,
            key: key.to_owned(),
            source,
            partial_object_left: false,
        }
    }
}

impl ObjectStore for FileStore {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let path = self.path_of(key)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(StoreError::BadKey {
                key: key.to_owned(),
                problem: "has no file name",
            });
        };
        fs::create_dir_all(dir).map_err(|e| self.io("create directory for", key, e))?;
        let tmp = dir.join(format!(
            ".{}{PARTIAL_MARK}{}-{:016x}",
            name.to_string_lossy(),
            std::process::id(),
            fastrand::u64(..)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| self.io("create temp file for", key, e))?;
        Ok(Box::new(FileObjectWriter {
            store: self.url(),
            key: key.to_owned(),
            tmp,
            dest: path,
            file: Some(BufWriter::with_capacity(256 << 10, file)),
        }))
    }

    fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let path = self.path_of(key)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    store: self.url(),
                    key: key.to_owned(),
                });
            }
            Err(e) => return Err(self.io("open", key, e)),
        };
        let len = file.metadata().map_err(|e| self.io("stat", key, e))?.len();
        Ok(ObjectReader::new(key, len, Box::new(file)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Start at the deepest directory the prefix names, then filter by the full prefix.
        let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        if !dir_part.is_empty() {
            check_key(dir_part)?;
        }
        let mut out = Vec::new();
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut stack = vec![(start, dir_part.to_owned())];
        while let Some((dir, key_dir)) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("list", &key_dir, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| self.io("list", &key_dir, e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let key = if key_dir.is_empty() {
                    name
                } else {
                    format!("{key_dir}/{name}")
                };
                let ft = entry.file_type().map_err(|e| self.io("list", &key, e))?;
                if ft.is_dir() {
                    if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                        stack.push((entry.path(), key));
                    }
                } else if ft.is_file() && key.starts_with(prefix) {
                    let md = match entry.metadata() {
                        Ok(md) => md,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(self.io("stat", &key, e)),
                    };
                    out.push(ObjectMeta {
                        key,
                        size: md.len(),
                        modified: md.modified().ok(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io("delete", key, e)),
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(|e| self.io("fsync directory after deleting", key, e))?;
        }
        Ok(())
    }

    fn sweep_stale_uploads(&self, older_than: Duration) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("sweep", &dir.display().to_string(), e)),
            };
            for entry in rd.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                let name = entry.file_name().to_string_lossy().into_owned();
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if name.starts_with('.') && name.contains(PARTIAL_MARK) {
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t <= cutoff);
                    if old && fs::remove_file(entry.path()).is_ok() {
                        report.removed.push(entry.path().display().to_string());
                    }
                }
            }
        }
        Ok(report)
    }
}

/// fsync a directory so a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

struct FileObjectWriter {
    store: String,
    key: String,
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<BufWriter<File>>,
}

impl FileObjectWriter {
    fn err(&self, op: &'static str, source: io::Error) -> StoreError {
        StoreError::Io {
            store: self.store.clone(),
            op,
            key: self.key.clone(),
            source,
            partial_object_left: false,
        }
    }

    fn complete(&mut self) -> Result<u64, StoreError> {
        let Some(file) = self.file.take() else {
            return Err(self.err("finish", io::Error::other("writer already finished")));
        };
        let file = file
            .into_inner()
            .map_err(|e| self.err("flush", e.into_error()))?;
        file.sync_all().map_err(|e| self.err("fsync", e))?;
        let size = file.metadata().map_err(|e| self.err("stat", e))?.len();
        drop(file);
        fs::rename(&self.tmp, &self.dest).map_err(|e| self.err("rename into place", e))?;
        if let Some(dir) = self.dest.parent() {
            sync_dir(dir).map_err(|e| self.err("fsync directory", e))?;
        }
        Ok(size)
    }
}

impl Write for FileObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("object writer already finished")),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(buf),
            None => Err(io::Error::other("object writer already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for FileObjectWriter {
    fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        let result = self.complete();
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    fn abort(mut self: Box<Self>) -> Result<(), StoreError> {
        self.file = None;
        match fs::remove_file(&self.tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                store: self.store.clone(),
                op: "remove temp file of",
                key: self.key.clone(),
                source: e,
                partial_object_left: true,
            }),
        }
    }
}

impl Drop for FileObjectWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn objects_appear_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let mut w = store.create("g/h/a.bin").unwrap();
        w.write_all(b"hello").unwrap();
        w.flush().unwrap();
        assert!(store.list("").unwrap().is_empty(), "partial object listed");
        assert_eq!(w.finish().unwrap(), 5);
        let listed = store.list("g/").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "g/h/a.bin");
        let mut s = String::new();
        store
            .open("g/h/a.bin")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello");

        let mut w = store.create("g/h/b.bin").unwrap();
        w.write_all(b"partial").unwrap();
        w.abort().unwrap();
        let w = store.create("g/h/c.bin").unwrap();
        drop(w);
        assert_eq!(store.list("g/h/").unwrap().len(), 1);
        assert_eq!(
            fs::read_dir(dir.path().join("g/h")).unwrap().count(),
            1,
            "temp files left"
        );
        assert!(store.open("g/h/b.bin").unwrap_err().is_not_found());
        store.delete("g/h/a.bin").unwrap();
        store.delete("g/h/a.bin").unwrap();
        assert!(store.list("").unwrap().is_empty());
        assert!(store.create("../x").is_err());
    }

    #[test]
    fn prefix_filters_and_sweep_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.put("g1/h1/x", b"1").unwrap();
        store.put("g1/h2/x", b"2").unwrap();
        store.put("g2/h1/x", b"3").unwrap();
        let keys = |p: &str| {
            store
                .list(p)
                .unwrap()
                .into_iter()
                .map(|m| m.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys("g1/"), ["g1/h1/x", "g1/h2/x"]);
        assert_eq!(keys("g1/h2/"), ["g1/h2/x"]);
        assert_eq!(keys("g1/h"), ["g1/h1/x", "g1/h2/x"]);
        // A crash leaves a temp file: never listed, swept.
        let w = store.create("g1/h1/y").unwrap();
        std::mem::forget(w);
        assert_eq!(keys("g1/h1/"), ["g1/h1/x"]);
        assert_eq!(
            store
                .sweep_stale_uploads(Duration::from_secs(3600))
                .unwrap()
                .removed
                .len(),
            0
        );
        assert_eq!(
            store
                .sweep_stale_uploads(Duration::ZERO)
                .unwrap()
                .removed
                .len(),
            1
        );
    }
}
