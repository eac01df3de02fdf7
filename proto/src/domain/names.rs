//! Names that cross the wire and end up in file paths, metrics labels and certificates, so they
//! are validated once, here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a host or group name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long (at most 63)")]
    TooLong(usize),
    #[error(
        "contains {0:?}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
    )]
    BadChar(char),
}

fn validate_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > 63 {
        return Err(NameError::TooLong(s.len()));
    }
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(NameError::BadChar(c));
        }
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validate and wrap.
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                validate_name(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

name_type!(
    /// The name of an erlmcp host as its agent certificate and config know it.
    HostName
);
name_type!(
    /// The name of a group: one erlmcp deployment with one primary and its replicas.
    GroupName
);

/// A group's epoch: increases by one at every change of primary; 0 means "no primary yet".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    pub const ZERO: Epoch = Epoch(0);

    #[must_use]
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_host_names() {
        for ok in ["a", "erlmcp1", "db-2.eu", "node_3"] {
            assert!(HostName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_names_that_would_escape_paths_or_labels() {
        assert_eq!(HostName::new(""), Err(NameError::Empty));
        assert_eq!(HostName::new("../x"), Err(NameError::BadChar('.')));
        assert_eq!(HostName::new("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(HostName::new("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(HostName::new("-a"), Err(NameError::BadChar('-')));
        assert_eq!(HostName::new("x".repeat(64)), Err(NameError::TooLong(64)));
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let ok: HostName = serde_json::from_str("\"a1\"").unwrap();
        assert_eq!(ok.as_str(), "a1");
        assert!(serde_json::from_str::<HostName>("\"a/..\"").is_err());
    }
}
