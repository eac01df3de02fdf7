//! Live data: receipts written continuously into the data directory, the way erlmcp's
//! persistence keeps adding files, plus an index that grows and session files that change.
//! Every file is written to a temporary name and renamed, so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::json;

pub struct ReceiptStore {
    dir: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A receipt id is `<host>-<n>`; only such names are accepted on the way back in.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 96
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with('.')
}

impl ReceiptStore {
    pub fn open(dir: &Path) -> std::io::Result<ReceiptStore> {
        for sub in ["receipts", "index", "sessions", "client"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(ReceiptStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The next sequence number: continues after existing receipts so a restart never
    /// overwrites data.
    pub fn next_seq(&self) -> u64 {
        let count = |sub: &str| {
            std::fs::read_dir(self.dir.join(sub))
                .map(|rd| rd.count() as u64)
                .unwrap_or(0)
        };
        let days: u64 = std::fs::read_dir(self.dir.join("receipts"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        std::fs::read_dir(e.path())
                            .map(|r| r.count() as u64)
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0);
        days + count("client") + 1
    }

    /// One background receipt: the file, a line in the index, and now and then a session update.
    pub fn write_background(&self, host: &str, seq: u64) -> std::io::Result<()> {
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let day = &now[..10];
        let id = format!("{host}-{seq}");
        let body = json!({
            "id": id,
            "host": host,
            "seq": seq,
            "ts": now,
            "kind": "tool_call",
            "payload": {"tool": "search", "tokens": seq % 997, "ok": true},
        });
        write_atomic(
            &self
                .dir
                .join("receipts")
                .join(day)
                .join(format!("rcpt-{seq:08}.json")),
            body.to_string().as_bytes(),
        )?;
        let mut index = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("index").join("receipts.idx"))?;
        writeln!(index, "{seq}\t{id}\t{now}")?;
        if seq.is_multiple_of(10) {
            let session = json!({"session": seq % 16, "last_receipt": id, "updated": now});
            write_atomic(
                &self
                    .dir
                    .join("sessions")
                    .join(format!("session-{:02}.json", seq % 16)),
                session.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// A receipt sent by a client; returns its id.
    pub fn write_client(
        &self,
        host: &str,
        seq: u64,
        payload: &serde_json::Value,
    ) -> std::io::Result<String> {
        let id = format!("{host}-c{seq}");
        let body = json!({
            "id": id,
            "host": host,
            "ts": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "payload": payload,
        });
        write_atomic(
            &self.dir.join("client").join(format!("{id}.json")),
            body.to_string().as_bytes(),
        )?;
        Ok(id)
    }

    /// A client receipt written elsewhere (a peer's copy); false for an invalid id.
    pub fn store_client(&self, id: &str, bytes: &[u8]) -> std::io::Result<bool> {
        if !valid_id(id) {
            return Ok(false);
        }
        write_atomic(&self.dir.join("client").join(format!("{id}.json")), bytes)?;
        Ok(true)
    }

    pub fn read_client(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !valid_id(id) {
            return Ok(None);
        }
        match std::fs::read(self.dir.join("client").join(format!("{id}.json"))) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What `verify-data` found: counts, or the first problem.
pub fn verify(dir: &Path) -> Result<String, String> {
    fn json_files(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        };
        for e in rd {
            let e = e.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let p = e.path();
            if p.is_dir() && depth > 0 {
                json_files(&p, depth - 1, out)?;
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
        Ok(())
    }
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    let mut counts = Vec::new();
    for (sub, depth) in [("receipts", 1), ("client", 0), ("sessions", 0)] {
        let mut files = Vec::new();
        json_files(&dir.join(sub), depth, &mut files)?;
        for f in &files {
            let bytes =
                std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| format!("{} is not whole JSON: {e}", f.display()))?;
        }
        counts.push(format!("{} {sub}", files.len()));
    }
    let index = dir.join("index").join("receipts.idx");
    let lines = match std::fs::read_to_string(&index) {
        Ok(text) => {
            for (n, line) in text.lines().enumerate() {
                let fields: Vec<&str> = line.split('\t').collect();
                if fields.len() != 3 || fields[0].parse::<u64>().is_err() {
                    return Err(format!(
                        "{} line {} is malformed: {line:?}",
                        index.display(),
                        n + 1
                    ));
                }
            }
            text.lines().count()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("cannot read {}: {e}", index.display())),
    };
    Ok(format!(
        "integrity ok: {}, {lines} index entries",
        counts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_the_directory() {
        assert!(valid_id("erlmcp1-c7"));
        assert!(!valid_id("../etc/passwd"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
    }

    #[test]
    fn verify_finds_a_torn_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let s = ReceiptStore::open(dir.path()).unwrap();
        for seq in 1..=12 {
            s.write_background("h", seq).unwrap();
        }
        let report = verify(dir.path()).unwrap();
        assert!(
            report.contains("12 receipts") && report.contains("12 index entries"),
            "{report}"
        );
        let day = std::fs::read_dir(dir.path().join("receipts"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(day.join("rcpt-00000003.json"), b"{\"id\": \"h-3\", \"ho").unwrap();
        let problem = verify(dir.path()).unwrap_err();
        assert!(
            problem.contains("rcpt-00000003.json is not whole JSON"),
            "{problem}"
        );
    }

    #[test]
    fn sequence_continues_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = ReceiptStore::open(dir.path()).unwrap();
        for seq in 1..=12 {
            s.write_background("h", seq).unwrap();
        }
        s.write_client("h", 13, &json!({"x": 1})).unwrap();
        let again = ReceiptStore::open(dir.path()).unwrap();
        assert_eq!(again.next_seq(), 14);
        assert!(again.read_client("h-c13").unwrap().is_some());
    }
}
