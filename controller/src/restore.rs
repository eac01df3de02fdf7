//! `dr-controller restore`: a new single-node controller cluster from a controller-state
//! backup. Invariants: an existing state is never overwritten (refused, or moved aside with
//! --force); a snapshot whose SHA-256 does not match is never restored; the new cluster
//! starts from exactly the snapshot's state, so epochs only grow from there.

use std::time::Duration;

use anyhow::{Context, bail};
use dr_controller::config::ControllerConfig;
use dr_controller::raft::RaftRequest;
use dr_controller::raft::node::{ClusterSettings, RaftNode};
use dr_controller::service::unix_ms;
use dr_controller::state_backup;

pub async fn run(
    config: ControllerConfig,
    store: Option<&str>,
    snapshot: Option<&str>,
    list: bool,
    force: bool,
) -> anyhow::Result<()> {
    let url = store
        .map(str::to_string)
        .or_else(|| config.controller_store.clone())
        .context("no store: give --store URL (file:///DIR or s3://BUCKET/PREFIX) or set `controller_store` in [backup]")?;
    let options = config.store_options.clone();
    let (u, id) = (url.clone(), snapshot.map(str::to_string));
    if list {
        let listed = tokio::task::spawn_blocking(move || {
            let store = state_backup::open(&u, &options)?;
            state_backup::list(&*store)
        })
        .await??;
        if listed.is_empty() {
            println!("no controller snapshot in {url}");
        }
        for l in listed {
            println!("{}  {} bytes", l.id, l.bytes);
        }
        return Ok(());
    }
    let (id, snap) = tokio::task::spawn_blocking(move || {
        let store = state_backup::open(&u, &options)?;
        state_backup::read(&*store, id.as_deref())
    })
    .await??;
    let aside = state_backup::prepare_data_dir(&config.data_dir, force, unix_ms())
        .map_err(anyhow::Error::msg)?;
    if let Some(a) = &aside {
        println!("the previous state was moved aside to {}", a.display());
    }
    // A cluster of one: whatever [cluster] lists, the restored node starts alone.
    let settings = ClusterSettings {
        initial_members: Vec::new(),
        join: false,
        ..config.cluster.clone()
    };
    let node = RaftNode::start(&config.data_dir, config.node.clone(), settings, None).await?;
    let groups = snap.state.groups.len();
    let request = RaftRequest {
        replace: Some(Box::new(snap.state.clone())),
        commands: Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match node.raft.client_write(request.clone()).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting to lead the new cluster");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("the restored state did not commit: {e}"),
        }
    }
    node.raft
        .shutdown()
        .await
        .map_err(|e| anyhow::anyhow!("raft shutdown: {e}"))?;
    println!(
        "restored controller snapshot {id} (taken by {} at log index {}, {groups} group(s)) into {}",
        snap.taken_by,
        snap.last_applied,
        config.data_dir.display()
    );
    println!(
        "next: dr-controller run --config {}; then add the other controllers with `drctl controller add ID ADDR` (they start with `join = true`)",
        config.file.display()
    );
    Ok(())
}
