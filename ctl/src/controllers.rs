//! `drctl controller status|add|remove|backup`: the controller cluster itself.

use dr_proto::pb;
use serde::Serialize;

use crate::actions::confirm;
use crate::client::{Connected, status_error};
use crate::error::CliResult;
use crate::output::{Colors, Format, table};

/// `drctl controller status -o json`.
#[derive(Debug, Serialize)]
pub struct ClusterJson {
    pub answered_by: String,
    pub answered_by_leader: bool,
    pub leader: Option<String>,
    pub leader_addr: Option<String>,
    pub term: u64,
    pub last_applied: u64,
    pub last_log: u64,
    pub deciding: bool,
    pub nodes: Vec<NodeJson>,
}

#[derive(Debug, Serialize)]
pub struct NodeJson {
    pub id: String,
    pub addr: String,
    pub membership: String,
    pub leader: bool,
    pub matched: u64,
    /// Entries behind the leader (null when the answering node cannot know).
    pub lag: Option<u64>,
}

impl From<pb::ControllerStatusResponse> for ClusterJson {
    fn from(s: pb::ControllerStatusResponse) -> Self {
        let some = |x: String| (!x.is_empty()).then_some(x);
        ClusterJson {
            answered_by: s.answered_by,
            answered_by_leader: s.answered_by_leader,
            leader: some(s.leader),
            leader_addr: some(s.leader_addr),
            term: s.term,
            last_applied: s.last_applied,
            last_log: s.last_log,
            deciding: s.deciding,
            nodes: s
                .nodes
                .into_iter()
                .map(|n| NodeJson {
                    lag: n.lag_known.then_some(n.lag),
                    id: n.id,
                    addr: n.addr,
                    membership: n.membership,
                    leader: n.leader,
                    matched: n.matched,
                })
                .collect(),
        }
    }
}

pub fn render(c: &ClusterJson, format: Format) -> String {
    if format == Format::Json {
        return serde_json::to_string_pretty(c).unwrap_or_default() + "\n";
    }
    let colors = Colors::detect();
    let mut out = format!(
        "answered by {} ({}), term {}, last applied {}, leader: {}\n",
        colors.bold(&c.answered_by),
        if c.answered_by_leader {
            if c.deciding {
                "leader, deciding"
            } else {
                "leader without a quorum: not deciding"
            }
        } else {
            "follower"
        },
        c.term,
        c.last_applied,
        c.leader.as_deref().unwrap_or("none elected"),
    );
    let rows: Vec<Vec<(String, String)>> = c
        .nodes
        .iter()
        .map(|n| {
            let role = if n.leader { "leader" } else { "" };
            let lag = n.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
            [
                n.id.clone(),
                n.addr.clone(),
                n.membership.clone(),
                role.to_string(),
                n.matched.to_string(),
                lag,
            ]
            .into_iter()
            .map(|t| (t.clone(), t))
            .collect()
        })
        .collect();
    out.push_str(&table(
        &["ID", "ADDRESS", "MEMBERSHIP", "ROLE", "MATCHED", "LAG"],
        &rows,
    ));
    out
}

pub async fn status(conn: &mut Connected, format: Format) -> CliResult {
    let s = conn
        .admin
        .controller_status(pb::ControllerStatusRequest {})
        .await
        .map_err(|e| status_error(&conn.url, e))?
        .into_inner();
    print!("{}", render(&ClusterJson::from(s), format));
    Ok(())
}

pub async fn add(conn: &mut Connected, id: &str, addr: &str) -> CliResult {
    eprintln!(
        "adding controller {id} at {addr}: as a learner until it has caught up, then as a voter..."
    );
    let s = conn
        .admin
        .add_controller(pb::AddControllerRequest {
            id: id.to_string(),
            addr: addr.to_string(),
        })
        .await
        .map_err(|e| status_error(&conn.url, e))?
        .into_inner();
    println!("controller {id} added");
    print!("{}", render(&ClusterJson::from(s), Format::Table));
    Ok(())
}

pub async fn remove(conn: &mut Connected, id: &str, yes: bool) -> CliResult {
    confirm(
        &format!("remove controller {id} from the controller cluster?"),
        yes,
    )?;
    let s = conn
        .admin
        .remove_controller(pb::RemoveControllerRequest { id: id.to_string() })
        .await
        .map_err(|e| status_error(&conn.url, e))?
        .into_inner();
    println!("controller {id} removed");
    print!("{}", render(&ClusterJson::from(s), Format::Table));
    Ok(())
}

/// `drctl controller backup -o json`.
#[derive(Debug, Serialize)]
pub struct BackupJson {
    pub id: String,
    pub store: String,
    pub last_applied: u64,
    pub taken_by: String,
    pub groups: u64,
}

pub async fn backup(conn: &mut Connected, store: Option<&str>, format: Format) -> CliResult {
    let r = conn
        .admin
        .controller_backup(pb::ControllerBackupRequest {
            store: store.unwrap_or_default().to_string(),
        })
        .await
        .map_err(|e| status_error(&conn.url, e))?
        .into_inner();
    let j = BackupJson {
        id: r.id,
        store: r.store,
        last_applied: r.last_applied,
        taken_by: r.taken_by,
        groups: r.groups,
    };
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
    } else {
        println!(
            "controller state backed up: {} in {} ({} group(s), log index {}, taken by {})",
            j.id, j.store, j.groups, j.last_applied, j.taken_by
        );
        println!(
            "restore it on a new controller host with: dr-controller restore --config FILE --store {} --snapshot {}",
            j.store, j.id
        );
    }
    Ok(())
}
