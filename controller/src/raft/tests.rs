//! The redb log store and state machine against openraft's own storage test suite, and a node
//! of one that commits, compacts and comes back after a restart with the same state.

use std::sync::Arc;
use std::time::Duration;

use dr_proto::domain::{Epoch, GroupName, HostName};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use redb::Database;

use super::log_store::LogStore;
use super::node::{ClusterSettings, RaftNode};
use super::state_machine::StateMachine;
use super::*;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("raft.redb")).unwrap());
        let log = LogStore::new(db.clone()).unwrap();
        let sm = StateMachine::open(db).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn storage_passes_the_openraft_suite() {
    Suite::test_all(Builder).unwrap();
}

#[test]
fn node_ids_are_stable_and_never_zero() {
    assert_eq!(node_id("ctl1"), node_id("ctl1"));
    assert_ne!(node_id("ctl1"), node_id("ctl2"));
    // pinned: ids live in the log, this function must never change
    assert_eq!(node_id(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(node_id("a"), 0xaf63_dc4c_8601_ec8c);
}

fn group() -> GroupName {
    GroupName::new("erlmcp").unwrap()
}

async fn write(node: &RaftNode, commands: Vec<StateCommand>) -> RaftResponse {
    node.raft
        .client_write(RaftRequest {
            replace: None,
            commands,
        })
        .await
        .unwrap()
        .data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_one_commits_compacts_and_restarts_with_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let me = ControllerNode {
        name: "ctl1".into(),
        addr: "http://127.0.0.1:1".into(),
    };
    let settings = ClusterSettings {
        snapshot_every: 5,
        ..ClusterSettings::default()
    };
    let h = HostName::new("erlmcp1").unwrap();
    let state_before = {
        let node = RaftNode::start(dir.path(), me.clone(), settings.clone(), None)
            .await
            .unwrap();
        node.raft
            .wait(Some(Duration::from_secs(5)))
            .state(openraft::ServerState::Leader, "alone, it leads")
            .await
            .unwrap();
        assert!(node.standing().leading);
        let r = write(
            &node,
            vec![
                StateCommand::EnsureGroup {
                    group: group(),
                    initial_primary: Some(h.clone()),
                    at_unix_ms: 1,
                },
                // refused: not the next epoch; the rest of the entry still applies
                StateCommand::SetPrimary {
                    group: group(),
                    host: h.clone(),
                    epoch: Epoch(9),
                },
            ],
        )
        .await;
        assert_eq!(r.outcomes.len(), 2);
        assert_eq!(r.outcomes[0], Ok(true));
        assert!(r.outcomes[1].is_err(), "{r:?}");
        // enough entries for a snapshot and a purge
        for i in 0..12 {
            write(
                &node,
                vec![StateCommand::EnsureGroup {
                    group: GroupName::new(format!("g{i}")).unwrap(),
                    initial_primary: None,
                    at_unix_ms: 2,
                }],
            )
            .await;
        }
        node.raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(|m| m.snapshot.is_some(), "a snapshot")
            .await
            .unwrap();
        let state = node.applied.read().unwrap().state.clone();
        assert_eq!(state.groups.len(), 13);
        node.raft.shutdown().await.unwrap();
        state
    };
    // the first node's tasks let go of the database file a moment after shutdown
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let node = loop {
        match RaftNode::start(dir.path(), me.clone(), settings.clone(), None).await {
            Ok(n) => break n,
            Err(e)
                if e.to_string().contains("already open")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    node.raft
        .wait(Some(Duration::from_secs(5)))
        .state(openraft::ServerState::Leader, "leads again")
        .await
        .unwrap();
    // the committed entries after the snapshot are applied again on start
    node.raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| m.last_applied.is_some_and(|l| l.index >= 14),
            "every entry applied",
        )
        .await
        .unwrap();
    assert_eq!(node.applied.read().unwrap().state, state_before);
    assert_eq!(
        node.applied.read().unwrap().state.groups[&group()].primary,
        Some(h)
    );
}
