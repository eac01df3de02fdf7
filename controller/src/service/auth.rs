//! Authorisation of gRPC calls from the caller's certificate (see `dr_proto::identity`).

use dr_proto::identity::{Identity, Permission};
use dr_proto::tls::peer_identity;
use tonic::{Request, Status};

/// Who is calling, if allowed to do `permission`. `Ok(None)` only in `--insecure-dev` mode,
/// where connections carry no certificate and every caller is trusted.
pub fn authorize<T>(
    request: &Request<T>,
    permission: Permission,
    insecure_dev: bool,
) -> Result<Option<Identity>, Status> {
    match peer_identity(request) {
        Ok(Some(id)) if id.may(permission) => Ok(Some(id)),
        Ok(Some(id)) => {
            tracing::warn!(identity = %id, ?permission, "call refused: not authorised");
            Err(Status::permission_denied(format!(
                "certificate {id} is not allowed to {}",
                describe(permission)
            )))
        }
        Ok(None) if insecure_dev => Ok(None),
        Ok(None) => Err(Status::unauthenticated(
            "no client certificate: every call needs a certificate from this installation's CA",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "call refused: unusable client certificate");
            Err(Status::unauthenticated(format!(
                "client certificate refused: {e}"
            )))
        }
    }
}

fn describe(p: Permission) -> &'static str {
    match p {
        Permission::AgentSession => "open an agent session (agent certificates only)",
        Permission::Read => "read status (viewer or operator certificates only)",
        Permission::Operate => "change the cluster (operator certificates only)",
        Permission::Peer => "speak as a controller peer (controller certificates only)",
    }
}
