//! mTLS material: load the PEM files a config names, check them before any socket opens (so a
//! wrong file is a clear startup error, not a handshake failure later), and build tonic's
//! server and client TLS configurations.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};
use x509_parser::pem::Pem;
use x509_parser::prelude::X509Certificate;

use crate::identity::{Identity, IdentityError};

/// The `[tls]` section every config has. Relative paths are resolved against the config file's
/// directory by the loader that owns the config.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The CA certificate (PEM) that issued every certificate of this installation.
    pub ca: PathBuf,
    /// This process's certificate (PEM).
    pub cert: PathBuf,
    /// This process's private key (PEM). Must not be readable by group or others.
    pub key: PathBuf,
    /// Name to verify the controller's certificate against (clients only). Defaults to the host
    /// part of the controller address.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Why TLS material was refused. `key` is the config key (`tls.cert`, ...) to point at.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("key `{key}`: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key `{key}`: {path} holds no PEM certificate")]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("key `{key}`: {path}: {problem}")]
    BadCertificate {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("key `tls.key`: {path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error(
        "key `tls.key`: {path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("key `tls.cert`: {path} was not issued by the CA in `tls.ca` ({ca})")]
    NotIssuedByCa { path: PathBuf, ca: PathBuf },
    #[error(
        "key `tls.cert`: {path} is not valid now (valid {not_before} .. {not_after}); issue a new one with drctl pki"
    )]
    OutsideValidity {
        path: PathBuf,
        not_before: String,
        not_after: String,
    },
    #[error("key `tls.cert`: {path}: {source}")]
    Identity {
        path: PathBuf,
        source: IdentityError,
    },
}

/// Loaded and checked TLS material.
#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// Who our own certificate says we are.
    pub identity: Identity,
    /// Seconds since the epoch at which our certificate expires.
    pub not_after_unix: i64,
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsMaterial")
            .field("identity", &self.identity)
            .field("not_after_unix", &self.not_after_unix)
            .finish_non_exhaustive()
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn first_cert_der(key: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<u8>, TlsError> {
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| TlsError::BadCertificate {
            key,
            path: path.to_path_buf(),
            problem: format!("bad PEM: {e}"),
        })?;
        if block.label == "CERTIFICATE" {
            return Ok(block.contents);
        }
    }
    Err(TlsError::NoCertificate {
        key,
        path: path.to_path_buf(),
    })
}

fn parse_cert<'a>(
    key: &'static str,
    path: &Path,
    der: &'a [u8],
) -> Result<X509Certificate<'a>, TlsError> {
    use x509_parser::prelude::FromDer;
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| TlsError::BadCertificate {
            key,
            path: path.to_path_buf(),
            problem: e.to_string(),
        })
}

#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        key: "tls.key",
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<(), TlsError> {
    Ok(())
}

impl TlsMaterial {
    /// Read and check: the CA parses, our certificate parses, was signed by that CA, is valid
    /// now and names an identity; the key is PEM and private to its owner.
    pub fn load(paths: &TlsPaths) -> Result<TlsMaterial, TlsError> {
        let ca_pem = read("tls.ca", &paths.ca)?;
        let cert_pem = read("tls.cert", &paths.cert)?;
        let key_pem = read("tls.key", &paths.key)?;
        check_key_permissions(&paths.key)?;
        let has_key = Pem::iter_from_buffer(&key_pem)
            .filter_map(Result::ok)
            .any(|b| b.label.ends_with("PRIVATE KEY"));
        if !has_key {
            return Err(TlsError::NoKey {
                path: paths.key.clone(),
            });
        }

        let ca_der = first_cert_der("tls.ca", &paths.ca, &ca_pem)?;
        let ca = parse_cert("tls.ca", &paths.ca, &ca_der)?;
        let cert_der = first_cert_der("tls.cert", &paths.cert, &cert_pem)?;
        let cert = parse_cert("tls.cert", &paths.cert, &cert_der)?;

        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return Err(TlsError::NotIssuedByCa {
                path: paths.cert.clone(),
                ca: paths.ca.clone(),
            });
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let validity = cert.validity();
        if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
            return Err(TlsError::OutsideValidity {
                path: paths.cert.clone(),
                not_before: validity.not_before.to_string(),
                not_after: validity.not_after.to_string(),
            });
        }
        let identity =
            Identity::from_certificate_der(&cert_der).map_err(|source| TlsError::Identity {
                path: paths.cert.clone(),
                source,
            })?;
        let not_after_unix = validity.not_after.timestamp();
        Ok(TlsMaterial {
            ca_pem,
            cert_pem,
            key_pem,
            identity,
            not_after_unix,
            server_name: paths.server_name.clone(),
        })
    }

    /// Server side: present our certificate, require a client certificate from our CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(TlsIdentity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// Client side: trust only our CA, present our certificate, verify the server as `domain`.
    pub fn client_config(&self, domain: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(TlsIdentity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(
                self.server_name
                    .clone()
                    .unwrap_or_else(|| domain.to_string()),
            )
    }
}

/// The identity of the peer of a gRPC call, from its verified client certificate.
/// `None` when the connection carried no certificate (plaintext `--insecure-dev`).
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Result<Option<Identity>, IdentityError> {
    let Some(certs) = request.peer_certs() else {
        return Ok(None);
    };
    let Some(leaf) = certs.first() else {
        return Ok(None);
    };
    Identity::from_certificate_der(leaf.as_ref()).map(Some)
}

/// The host part of a URL like `https://ctl1:7400`, used as the default TLS server name.
pub fn host_of_url(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .or(Some(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_url_handles_ports_and_ipv6() {
        assert_eq!(host_of_url("https://ctl1:7400"), Some("ctl1"));
        assert_eq!(host_of_url("https://127.0.0.1:7400/x"), Some("127.0.0.1"));
        assert_eq!(host_of_url("https://[::1]:7400"), Some("::1"));
        assert_eq!(host_of_url("https://ctl"), Some("ctl"));
    }
}
