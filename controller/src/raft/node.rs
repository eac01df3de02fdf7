//! Starting this controller's Raft node: open the store, start openraft, and form a cluster
//! (alone, or with the configured initial members) unless this node waits to be added.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dr_proto::tls::TlsMaterial;
use openraft::{ServerState, SnapshotPolicy};
use redb::Database;

use super::log_store::LogStore;
use super::network::Network;
use super::state_machine::{AppliedView, StateMachine};
use super::{ControllerNode, ControllerRaft, NodeId, node_id};

/// `[cluster]` in the controller config.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// Controllers forming the cluster at its first start (this one included). Empty: alone.
    pub initial_members: Vec<ControllerNode>,
    /// Never form a cluster: wait to be added by `drctl controller add`.
    pub join: bool,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// A snapshot (and log compaction) after this many entries.
    pub snapshot_every: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            initial_members: Vec::new(),
            join: false,
            heartbeat: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            snapshot_every: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft store {path}: {message}")]
    Store { path: String, message: String },
    #[error("raft settings: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// This controller's Raft node and what the rest of the controller needs of it.
#[derive(Clone)]
pub struct RaftNode {
    pub raft: ControllerRaft,
    pub applied: AppliedView,
    pub id: NodeId,
    pub me: ControllerNode,
    pub settings: ClusterSettings,
    pub network: Network,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.id)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// Where this controller stands, from openraft's metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    /// Leader, and a quorum acknowledged it recently enough that no other leader can exist
    /// (see [`RaftNode::standing`]): the only state in which it may grant leases or decide.
    pub leading: bool,
    pub leader: Option<ControllerNode>,
    pub term: u64,
}

impl RaftNode {
    /// Open `data_dir/raft.redb`, start Raft and, on a pristine store, form the cluster.
    pub async fn start(
        data_dir: &Path,
        me: ControllerNode,
        settings: ClusterSettings,
        tls: Option<Arc<TlsMaterial>>,
    ) -> Result<RaftNode, NodeError> {
        let path = data_dir.join("raft.redb");
        let store_err = |m: String| NodeError::Store {
            path: path.display().to_string(),
            message: m,
        };
        let db = Arc::new(Database::create(&path).map_err(|e| store_err(e.to_string()))?);
        let log = LogStore::new(db.clone()).map_err(|e| store_err(e.to_string()))?;
        let sm = StateMachine::open(db).map_err(store_err)?;
        let applied = sm.view();
        let config = openraft::Config {
            cluster_name: "erlmcp-dr".into(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: settings.election_timeout_min.as_millis() as u64,
            election_timeout_max: settings.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))?;
        let id = node_id(&me.name);
        let network = Network::new(tls);
        let raft = ControllerRaft::new(id, Arc::new(config), network.clone(), log, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let node = RaftNode {
            raft,
            applied,
            id,
            me,
            settings,
            network,
        };
        node.form().await?;
        Ok(node)
    }

    /// On a pristine store: initialize with the configured members (every initial member does
    /// this with the same list, which openraft allows), or alone; a joining node waits.
    async fn form(&self) -> Result<(), NodeError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if initialized || self.settings.join {
            return Ok(());
        }
        let members: BTreeMap<NodeId, ControllerNode> = if self.settings.initial_members.is_empty()
        {
            BTreeMap::from([(self.id, self.me.clone())])
        } else {
            self.settings
                .initial_members
                .iter()
                .map(|n| (node_id(&n.name), n.clone()))
                .collect()
        };
        tracing::info!(members = ?members.values().map(|n| n.name.as_str()).collect::<Vec<_>>(), "forming the controller cluster");
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(()),
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// Leader with a fresh quorum? A follower that acknowledged this leader refuses to vote for
    /// anyone else for `election_timeout_max` after that (openraft's leader lease), so while the
    /// newest quorum acknowledgement is younger than `election_timeout_min`, no other leader can
    /// have been elected: leases granted now cannot overlap a new leader's decisions, which
    /// start a lease ttl + margin after its election anyway.
    pub fn standing(&self) -> Standing {
        let m = self.raft.metrics().borrow().clone();
        let voters = m.membership_config.membership().voter_ids().count();
        let fresh = voters <= 1
            || m.millis_since_quorum_ack
                .is_some_and(|ms| ms < self.settings.election_timeout_min.as_millis() as u64);
        let leader = m
            .current_leader
            .and_then(|id| m.membership_config.membership().get_node(&id).cloned());
        Standing {
            leading: m.state == ServerState::Leader && m.current_leader == Some(self.id) && fresh,
            leader,
            term: m.current_term,
        }
    }

    /// Raft leader (whether or not its quorum is fresh).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// What a controller that does not lead answers, naming the leader if known.
    pub fn not_leader_message(&self) -> String {
        match self.standing().leader {
            Some(l) if l.name != self.me.name => format!(
                "controller {} is not the leader; the leader is {} at {}",
                self.me.name, l.name, l.addr
            ),
            _ => format!(
                "controller {} is not deciding: no controller leads with a quorum right now \
                 (check `drctl controller status`)",
                self.me.name
            ),
        }
    }

    /// [`Self::not_leader_message`] as a gRPC status with the leader's URL as a hint.
    pub fn not_leader(&self) -> tonic::Status {
        let leader = self.standing().leader.filter(|l| l.name != self.me.name);
        crate::service::runtime::not_leader_status(
            self.not_leader_message(),
            leader.as_ref().map(|l| l.addr.as_str()),
        )
    }
}
