//! Small enums shown to operators; their string forms are part of the `drctl -o json` contract.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A member's role in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
    /// A former primary that lost its lease and fenced itself.
    Fenced,
    Unknown,
}

/// A member's classified health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Green,
    Yellow,
    Red,
    Unknown,
}

/// A group's operating mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Automatic actions (restart, failover, backups) allowed.
    #[default]
    Automatic,
    /// Maintenance: no automatic action; leases are still renewed.
    Paused,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Fenced => "fenced",
            Role::Unknown => "unknown",
        }
    }
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Green => "green",
            Health::Yellow => "yellow",
            Health::Red => "red",
            Health::Unknown => "unknown",
        }
    }

    /// Prometheus encoding used by `erlmcp_dr_member_health`: 0 green, 1 yellow, 2 red, 3 unknown.
    pub fn as_gauge(self) -> u8 {
        match self {
            Health::Green => 0,
            Health::Yellow => 1,
            Health::Red => 2,
            Health::Unknown => 3,
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Automatic => "automatic",
            Mode::Paused => "paused",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
