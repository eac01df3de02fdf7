//! The status view: what `drctl status -o json`, the controller's `/api/v1/status` and the
//! dashboard show. Field names are a stable contract (DESIGN.md § Interfaces).

use serde::{Deserialize, Serialize};

use super::{Epoch, GroupName, Health, HealthReport, HostName, Mode, Role};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// Which controller answered.
    pub controller_id: String,
    /// Whether the answering controller is the leader.
    pub leader: bool,
    pub generated_at_unix_ms: u64,
    pub groups: Vec<GroupView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: GroupName,
    pub epoch: Epoch,
    pub primary: Option<HostName>,
    pub mode: Mode,
    pub members: Vec<MemberView>,
    /// A change of primary in progress, in words.
    #[serde(default)]
    pub transition: Option<String>,
    #[serde(default)]
    pub open_incidents: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub host: HostName,
    pub role: Role,
    pub health: Health,
    /// Readable sentences, worst first.
    pub reasons: Vec<String>,
    /// Milliseconds since the last report; `null` if never seen by this controller.
    pub last_seen_ms: Option<u64>,
    /// Milliseconds of lease left for a primary holding one; `null` otherwise.
    pub lease_remaining_ms: Option<u64>,
    pub connected: bool,
    pub agent_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<HealthReport>,
}

impl StatusView {
    pub fn group(&self, name: &str) -> Option<&GroupView> {
        self.groups.iter().find(|g| g.name.as_str() == name)
    }
}

impl GroupView {
    pub fn member(&self, host: &str) -> Option<&MemberView> {
        self.members.iter().find(|m| m.host.as_str() == host)
    }
}
