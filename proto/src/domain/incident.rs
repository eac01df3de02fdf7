//! Incidents and role changes: what happened, what was done, how long recovery took. Kept in
//! the controller's state, shown by `drctl history` / `drctl incident`, reviewed after the fact.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Epoch, GroupName, HostName};

pub type IncidentId = u64;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The runbook flowchart's branches (plus what the automation itself can run into).
    Category {
        ProcessCrash => "process_crash",
        NetworkIssue => "network_issue",
        DataProblem => "data_problem",
        NodeFailure => "node_failure",
        Overload => "overload",
        ApplicationError => "application_error",
        MemoryLeak => "memory_leak",
        NoCandidate => "no_candidate",
        BackupFailure => "backup_failure",
        RestoreFailure => "restore_failure",
        ReplicaSync => "replica_sync",
    }
);

string_enum!(
    /// Where an incident stands.
    Phase {
        Open => "open",
        Acting => "acting",
        Verifying => "verifying",
        Watching => "watching",
        Resolved => "resolved",
    }
);

string_enum!(
    /// Kinds of timeline entries, following the runbook's flowchart.
    EntryKind {
        Detected => "detected",
        Classified => "classified",
        Action => "action",
        Verification => "verification",
        Escalation => "escalation",
        Resolved => "resolved",
        Note => "note",
    }
);

string_enum!(
    /// Why the primary changed.
    ChangeKind {
        Initial => "initial",
        Failover => "failover",
        Switchover => "switchover",
        Manual => "manual",
    }
);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at_unix_ms: u64,
    pub kind: EntryKind,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub group: GroupName,
    pub host: Option<HostName>,
    pub category: Category,
    pub title: String,
    pub opened_at_unix_ms: u64,
    pub resolved_at_unix_ms: Option<u64>,
    pub phase: Phase,
    /// 0 = first alert (T+0); 1 = T+5 min; 2 = T+15 min (SEV-1); 3 = T+30 min.
    pub escalation_step: u32,
    pub timeline: Vec<TimelineEntry>,
    pub time_to_recovery_ms: Option<u64>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.phase != Phase::Resolved
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleChange {
    pub group: GroupName,
    pub epoch: Epoch,
    pub from: Option<HostName>,
    pub to: HostName,
    pub kind: ChangeKind,
    pub at_unix_ms: u64,
    /// Measured from detection (or request) to the new primary verified through the LB.
    pub rto_ms: Option<u64>,
    pub incident_id: Option<IncidentId>,
    pub reason: String,
}
