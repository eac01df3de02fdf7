//! Property: backing up a data directory that another thread keeps changing (rewrites in place,
//! atomic replaces, renames, deletions, a growing log, directories coming and going) never
//! produces a corrupt archive, and a chain of full + 2 incrementals restores to exactly the tree
//! its last manifest describes, with deletions applied. Each intermediate backup restores to its
//! own manifest too. Seeded, so a failure can be replayed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use dr_backup::verify::{VerifyMode, verify_backup};
use dr_backup::{BackupLocation, BackupMode, BackupOptions, load_manifest};

const SEED: u64 = 0x5eed_0004;

struct Churn {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Churn {
    fn start(data: PathBuf, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ops.clone());
        let handle = std::thread::spawn(move || churn(&data, seed, &s, &o));
        Self {
            stop,
            ops,
            handle: Some(handle),
        }
    }

    fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

/// Keeps changing `data/hot` and `data/big.log` until told to stop. Errors (a file another op
/// just removed) are expected and ignored.
fn churn(data: &Path, seed: u64, stop: &AtomicBool, ops: &AtomicU64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let hot = data.join("hot");
    let big = data.join("big.log");
    while !stop.load(Ordering::SeqCst) {
        let i = rng.usize(0..64);
        let mut body = vec![0u8; rng.usize(0..40_000)];
        rng.fill(&mut body);
        let f = hot.join(format!("f{i:02}"));
        let _ = match rng.u8(0..7) {
            0 => fs::write(&f, &body),
            1 => fs::write(hot.join(format!(".tmp{i}")), &body)
                .and_then(|()| fs::rename(hot.join(format!(".tmp{i}")), &f)),
            2 => fs::remove_file(&f),
            3 => fs::rename(&f, hot.join(format!("f{:02}", rng.usize(0..64)))),
            4 => fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&big)
                .and_then(|mut w| std::io::Write::write_all(&mut w, &body)),
            5 => fs::create_dir_all(hot.join(format!("d{}", i % 8)))
                .and_then(|()| fs::write(hot.join(format!("d{}/x", i % 8)), &body)),
            _ => fs::remove_dir_all(hot.join(format!("d{}", i % 8))),
        };
        if rng.u8(0..50) == 0 {
            let _ = fs::File::options()
                .write(true)
                .open(&big)
                .and_then(|f| f.set_len(rng.u64(0..100_000)));
        }
        ops.fetch_add(1, Ordering::SeqCst);
        std::thread::yield_now();
    }
}

#[test]
fn chain_of_a_changing_directory_restores_to_its_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store = store_at(&tmp.path().join("store"));
    make_tree(&data, 1500, SEED);
    fs::create_dir(data.join("hot")).unwrap();
    // Small files are read whole and retried; larger ones streamed: exercise both paths.
    let options = BackupOptions {
        max_buffered_file: 16 << 10,
        read_retries: 2,
        ..BackupOptions::default()
    };
    let loc = BackupLocation::new(GROUP, HOST).unwrap();

    let churn = Churn::start(data.clone(), SEED);
    let mut ids = Vec::new();
    for (step, mode) in [
        BackupMode::Full,
        BackupMode::Incremental { parent: None },
        BackupMode::Incremental { parent: None },
    ]
    .into_iter()
    .enumerate()
    {
        // Deterministic deletions too, so "deletions applied" never depends on timing.
        if step > 0 {
            fs::remove_file(data.join(format!("receipts/0{step}/r-0000{step}.json"))).unwrap();
        }
        let before = churn.ops();
        let report = backup_with(&store, &data, mode, options.clone());
        assert!(
            churn.ops() > before,
            "the directory did not change during backup {step}"
        );
        eprintln!(
            "backup {step}: {:?}, churn ops during it: {}",
            report.header.totals,
            churn.ops() - before
        );
        ids.push(report.header.id);
    }
    drop(churn);

    for (n, id) in ids.iter().enumerate() {
        let manifest = load_manifest(&store, &loc, *id).unwrap();
        let verified = verify_backup(&store, &loc, *id, VerifyMode::Deep, None).unwrap();
        assert!(verified.valid, "{verified:?}");
        if n > 0 {
            for step in 1..=n {
                let gone = format!("receipts/0{step}/r-0000{step}.json");
                assert!(
                    !manifest.entries.iter().any(|e| e.path == gone),
                    "{gone} still in {id}"
                );
            }
            let gone = format!("receipts/0{n}/r-0000{n}.json");
            assert!(
                manifest.deleted.contains(&gone),
                "{id} does not list {gone} as deleted"
            );
        }
        let staging = tmp.path().join(format!("restore-{n}"));
        restore(&store, Some(*id), &staging, &data).unwrap();
        let restored = without_dir_mtimes(tree_snapshot(&staging, true));
        let described = without_dir_mtimes(manifest_snapshot(&manifest, true));
        assert_eq!(restored.len(), described.len(), "{id}");
        for (path, want) in &described {
            assert_eq!(restored.get(path), Some(want), "{id}: {path}");
        }
    }
}
