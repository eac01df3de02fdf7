//! Property: the S3 store works against a real S3-protocol server (s3s + s3s-fs on loopback):
//! multipart uploads with several parts round-trip; a server killed mid-upload leaves nothing
//! listed, its unfinished upload is swept, and a retry succeeds; a part failure aborts the upload
//! at once; wrong credentials give an error that says so; a chain of incrementals (each streaming
//! its parent's tree from S3) restores exactly.
#![cfg(feature = "s3")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::s3_server::{ACCESS_KEY, Hooks, S3Server, SECRET_KEY};
use common::*;
use dr_backup::store::{
    ObjectStore, S3Credentials, S3FailureKind, S3Options, StoreError, StoreOptions, open_store,
};
use dr_backup::verify::{VerifyMode, verify_backup};
use dr_backup::{
    BackupError, BackupLocation, BackupMode, BackupRequest, ListFilter, create_backup, list_backups,
};

const BUCKET: &str = "erlmcp-backups";

fn open(server: &S3Server, secret: &str) -> Box<dyn ObjectStore> {
    let options = StoreOptions {
        s3: S3Options {
            region: Some("us-east-1".into()),
            endpoint: Some(server.endpoint()),
            force_path_style: true,
            part_size: 5 << 20,
            max_parts_in_flight: 2,
            credentials: Some(S3Credentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: secret.into(),
            }),
            max_attempts: 2,
        },
    };
    open_store(&format!("s3://{BUCKET}/prod/eu"), &options).unwrap()
}

/// ~21 MiB of incompressible data: more than 4 parts of 5 MiB.
fn big_tree(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("segments")).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    for i in 0..7 {
        let mut body = vec![0u8; 3 << 20];
        rng.fill(&mut body);
        std::fs::write(dir.join(format!("segments/{i}.seg")), body).unwrap();
    }
    std::fs::write(dir.join("small.json"), "{}").unwrap();
}

struct World {
    tmp: tempfile::TempDir,
    server: S3Server,
}

fn world(hooks: Hooks) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("s3root");
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    big_tree(&tmp.path().join("data"));
    let server = S3Server::start(&root, "127.0.0.1:0".parse().unwrap(), Arc::new(hooks));
    World { tmp, server }
}

fn try_backup(
    store: &dyn ObjectStore,
    data: &std::path::Path,
) -> Result<dr_backup::BackupReport, BackupError> {
    let req = BackupRequest {
        data_dir: data,
        group: GROUP,
        host: HOST,
        mode: BackupMode::Full,
        options: Default::default(),
        progress: None,
        journal: None,
    };
    create_backup(store, &req)
}

#[test]
fn multipart_backup_round_trips() {
    let w = world(Hooks::default());
    let store = open(&w.server, SECRET_KEY);
    let data = w.tmp.path().join("data");
    let report = backup(store.as_ref(), &data, BackupMode::Full);
    assert!(report.header.archive.size > 20 << 20);
    let parts = w.server.hooks.parts.load(Ordering::SeqCst);
    assert!(parts > 3, "only {parts} parts uploaded");
    // The objects are under the prefix, as S3 keys.
    let on_disk = w
        .tmp
        .path()
        .join("s3root")
        .join(BUCKET)
        .join("prod/eu")
        .join(GROUP)
        .join(HOST);
    assert_eq!(names(&on_disk).len(), 3);

    let listed = list_backups(store.as_ref(), &ListFilter::default()).unwrap();
    assert_eq!(listed.len(), 1);
    let loc = BackupLocation::new(GROUP, HOST).unwrap();
    let v = verify_backup(
        store.as_ref(),
        &loc,
        report.header.id,
        VerifyMode::Deep,
        None,
    )
    .unwrap();
    assert!(v.valid, "{v:?}");
    let staging = w.tmp.path().join("data.restore");
    restore(store.as_ref(), None, &staging, &data).unwrap();
    assert_eq!(tree_snapshot(&staging, true), tree_snapshot(&data, true));
}

#[test]
fn incremental_chains_over_s3_restore_exactly() {
    let w = world(Hooks::default());
    let store = open(&w.server, SECRET_KEY);
    let data = w.tmp.path().join("data");
    for i in 0..300 {
        std::fs::create_dir_all(data.join(format!("r/{:02}", i % 10))).unwrap();
        std::fs::write(
            data.join(format!("r/{:02}/{i}.json", i % 10)),
            i.to_string(),
        )
        .unwrap();
    }
    backup(store.as_ref(), &data, BackupMode::Full);
    std::fs::write(data.join("r/00/0.json"), "changed").unwrap();
    std::fs::remove_file(data.join("segments/3.seg")).unwrap();
    backup(
        store.as_ref(),
        &data,
        BackupMode::Incremental { parent: None },
    );
    std::fs::write(data.join("r/01/new.json"), "new").unwrap();
    let last = backup(
        store.as_ref(),
        &data,
        BackupMode::Incremental { parent: None },
    );
    // The parent's tree is read from S3 as a stream; only the changes were archived.
    assert!(last.header.totals.archived_file_bytes < 1 << 20);
    let loc = BackupLocation::new(GROUP, HOST).unwrap();
    let v = verify_backup(store.as_ref(), &loc, last.header.id, VerifyMode::Deep, None).unwrap();
    assert!(v.valid, "{v:?}");
    let staging = w.tmp.path().join("data.restore");
    let report = restore(store.as_ref(), None, &staging, &data).unwrap();
    assert_eq!(report.chain.len(), 3);
    assert_eq!(tree_snapshot(&staging, true), tree_snapshot(&data, true));
}

#[test]
fn server_killed_mid_upload_then_sweep_and_retry() {
    let hooks = Hooks::default();
    hooks.hang_from.store(3, Ordering::SeqCst);
    let (tx, rx) = std::sync::mpsc::channel();
    *hooks.hanging.lock().unwrap() = Some(tx);
    let w = world(hooks);
    let data = w.tmp.path().join("data");
    let kill = w.server.killer();
    let killer = std::thread::spawn(move || {
        // Wait until part 3 is being received, then crash the server.
        rx.recv().unwrap();
        kill();
    });
    let store = open(&w.server, SECRET_KEY);
    let err = try_backup(store.as_ref(), &data).unwrap_err();
    killer.join().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("nothing was committed"), "{msg}");
    eprintln!("killed server: {msg}");

    // Same address, same disk: the server comes back.
    let root = w.tmp.path().join("s3root");
    let server = S3Server::start(&root, w.server.addr, Arc::new(Hooks::default()));
    let store = open(&server, SECRET_KEY);
    assert!(
        list_backups(store.as_ref(), &ListFilter::default())
            .unwrap()
            .is_empty(),
        "a failed backup is listed"
    );
    assert!(
        store
            .list("")
            .unwrap()
            .iter()
            .all(|o| !o.key.ends_with(".tar.zst")),
        "a partial archive is visible"
    );
    // The client could not abort while the server was down: the sweep does it.
    let swept = store.sweep_stale_uploads(Duration::ZERO).unwrap();
    assert_eq!(swept.removed.len(), 1, "{swept:?}");
    assert!(
        store
            .sweep_stale_uploads(Duration::ZERO)
            .unwrap()
            .removed
            .is_empty()
    );

    let report = try_backup(store.as_ref(), &data).unwrap();
    assert_eq!(
        list_backups(store.as_ref(), &ListFilter::default()).unwrap()[0].id,
        report.header.id
    );
    let staging = w.tmp.path().join("data.restore");
    restore(store.as_ref(), None, &staging, &data).unwrap();
    assert_eq!(tree_snapshot(&staging, true), tree_snapshot(&data, true));
}

#[test]
fn a_failing_part_aborts_the_upload() {
    let hooks = Hooks::default();
    hooks.fail_from.store(2, Ordering::SeqCst);
    let w = world(hooks);
    let store = open(&w.server, SECRET_KEY);
    let err = try_backup(store.as_ref(), &w.tmp.path().join("data")).unwrap_err();
    assert!(
        err.to_string().contains("injected part failure")
            || err.to_string().contains("upload part"),
        "{err}"
    );
    w.server.hooks.fail_from.store(0, Ordering::SeqCst);
    // Aborted by the client right away: nothing to sweep, nothing listed.
    assert!(
        store
            .sweep_stale_uploads(Duration::ZERO)
            .unwrap()
            .removed
            .is_empty()
    );
    assert!(store.list("").unwrap().is_empty());
}

#[test]
fn wrong_credentials_say_so() {
    let w = world(Hooks::default());
    let store = open(&w.server, "not-the-secret");
    let err = list_backups(store.as_ref(), &ListFilter::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("credentials refused"), "{msg}");
    eprintln!("wrong credentials: {msg}");
    match err {
        dr_backup::ListError::Store(StoreError::S3 { kind, .. }) => {
            assert_eq!(kind, S3FailureKind::Credentials)
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = try_backup(store.as_ref(), &w.tmp.path().join("data")).unwrap_err();
    assert!(err.to_string().contains("credentials refused"), "{err}");
}

#[test]
fn bad_options_are_refused_with_reasons() {
    let opts = |f: fn(&mut S3Options)| {
        let mut o = S3Options {
            region: Some("us-east-1".into()),
            ..S3Options::default()
        };
        f(&mut o);
        StoreOptions { s3: o }
    };
    let err = open_store("s3://erlmcp-backups/x", &opts(|o| o.part_size = 1 << 20)).unwrap_err();
    assert!(err.to_string().contains("5 MiB"), "{err}");
    let err = open_store("s3://b/x", &opts(|_| {})).unwrap_err();
    assert!(err.to_string().contains("3 to 63"), "{err}");
}
