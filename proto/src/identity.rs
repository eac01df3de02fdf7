//! Who a certificate speaks for. The identity is the certificate's Subject Common Name,
//! `KIND:NAME`, written by `drctl pki init`: `agent:HOST`, `operator:NAME`, `viewer:NAME`,
//! `controller:NAME`.
//!
//! The controller authorises every call from this identity alone (never from what a message
//! claims): an agent may only speak for its own host, viewers may only read.

use std::fmt;
use std::str::FromStr;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::domain::{HostName, NameError};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    Agent(HostName),
    Operator(HostName),
    Viewer(HostName),
    Controller(HostName),
}

/// What a call needs. Each gRPC method maps to exactly one permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Open an agent session (only for the host in the certificate).
    AgentSession,
    /// Read status, history, lists.
    Read,
    /// Change something: failover, restart, backup, restore, pause.
    Operate,
    /// Controller-to-controller traffic (Raft).
    Peer,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate is not valid DER/X.509: {0}")]
    BadCertificate(String),
    #[error("certificate has no subject common name (expected e.g. CN=agent:HOST)")]
    NoCommonName,
    #[error(
        "certificate common name {0:?} is not KIND:NAME with KIND agent, operator, viewer or controller"
    )]
    BadKind(String),
    #[error("certificate name in {cn:?} {reason}")]
    BadName { cn: String, reason: NameError },
}

impl Identity {
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Agent(_) => "agent",
            Identity::Operator(_) => "operator",
            Identity::Viewer(_) => "viewer",
            Identity::Controller(_) => "controller",
        }
    }

    pub fn name(&self) -> &HostName {
        match self {
            Identity::Agent(n)
            | Identity::Operator(n)
            | Identity::Viewer(n)
            | Identity::Controller(n) => n,
        }
    }

    /// The authorisation table, in one place.
    pub fn may(&self, permission: Permission) -> bool {
        matches!(
            (self, permission),
            (Identity::Agent(_), Permission::AgentSession)
                | (Identity::Viewer(_), Permission::Read)
                | (
                    Identity::Operator(_),
                    Permission::Read | Permission::Operate
                )
                | (Identity::Controller(_), Permission::Peer)
        )
    }

    /// Parse the identity out of a DER certificate.
    pub fn from_certificate_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .ok_or(IdentityError::NoCommonName)?
            .as_str()
            .map_err(|_| IdentityError::NoCommonName)?;
        cn.parse()
    }
}

impl FromStr for Identity {
    type Err = IdentityError;
    fn from_str(cn: &str) -> Result<Identity, IdentityError> {
        let (kind, name) = cn
            .split_once(':')
            .ok_or_else(|| IdentityError::BadKind(cn.to_string()))?;
        let name = HostName::new(name).map_err(|reason| IdentityError::BadName {
            cn: cn.to_string(),
            reason,
        })?;
        match kind {
            "agent" => Ok(Identity::Agent(name)),
            "operator" => Ok(Identity::Operator(name)),
            "viewer" => Ok(Identity::Viewer(name)),
            "controller" => Ok(Identity::Controller(name)),
            _ => Err(IdentityError::BadKind(cn.to_string())),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_each_kind() {
        for cn in ["agent:a", "operator:alice", "viewer:bob", "controller:c1"] {
            let id: Identity = cn.parse().unwrap();
            assert_eq!(id.to_string(), cn);
        }
    }

    #[test]
    fn refuses_unknown_kinds_and_bad_names() {
        assert!(matches!(
            "admin:x".parse::<Identity>(),
            Err(IdentityError::BadKind(_))
        ));
        assert!(matches!(
            "agent".parse::<Identity>(),
            Err(IdentityError::BadKind(_))
        ));
        assert!(matches!(
            "agent:../x".parse::<Identity>(),
            Err(IdentityError::BadName { .. })
        ));
    }

    #[test]
    fn authorisation_table() {
        let agent: Identity = "agent:a".parse().unwrap();
        let viewer: Identity = "viewer:v".parse().unwrap();
        let operator: Identity = "operator:o".parse().unwrap();
        let controller: Identity = "controller:c".parse().unwrap();
        let cases = [
            (&agent, Permission::AgentSession, true),
            (&agent, Permission::Read, false),
            (&agent, Permission::Operate, false),
            (&agent, Permission::Peer, false),
            (&viewer, Permission::Read, true),
            (&viewer, Permission::Operate, false),
            (&viewer, Permission::AgentSession, false),
            (&operator, Permission::Read, true),
            (&operator, Permission::Operate, true),
            (&operator, Permission::AgentSession, false),
            (&operator, Permission::Peer, false),
            (&controller, Permission::Peer, true),
            (&controller, Permission::Operate, false),
            (&controller, Permission::AgentSession, false),
        ];
        for (id, perm, expected) in cases {
            assert_eq!(id.may(perm), expected, "{id} {perm:?}");
        }
    }

    #[test]
    fn reads_the_common_name_of_a_real_certificate() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent:erlmcp1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = Identity::from_certificate_der(cert.der()).unwrap();
        assert_eq!(id, "agent:erlmcp1".parse().unwrap());
    }
}
