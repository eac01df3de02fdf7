//! The Erlang cookie as a value that cannot leak by accident.
//!
//! Anyone holding the cookie can run arbitrary code on every node of the cluster, so it must
//! never reach a log line, an error message, a `Debug` dump or a report sent to the controller.
//! `Secret` prints as `<redacted>` in both `Debug` and `Display`; the only way to read it is the
//! deliberately named [`Secret::expose_secret`].

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a secret could not be loaded. Never contains the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Erlang itself refuses a group/world-accessible `.erlang.cookie`; so do we.
    #[error(
        "secret file {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("secret file {path} is empty")]
    EmptyFile { path: PathBuf },
    #[error("environment variable {var} is not set")]
    EnvMissing { var: String },
    #[error("environment variable {var} is not valid UTF-8")]
    EnvNotUnicode { var: String },
    #[error("environment variable {var} is empty")]
    EnvEmpty { var: String },
}

/// A secret string (the Erlang cookie) whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value already in memory (tests, or config code that read it elsewhere).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a cookie file, as Erlang's own `.erlang.cookie`: the trailing newline an editor adds
    /// is removed, and a file others can read is refused so a leaked cookie is not silently used.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Secret, SecretError> {
        use std::os::unix::fs::PermissionsExt;
        let path = path.as_ref();
        let read_err = |source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_err)?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(SecretError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        Ok(Secret(value.to_owned()))
    }

    /// Reads a secret from the environment (containers and systemd `LoadCredential` setups).
    pub fn from_env(var: &str) -> Result<Secret, SecretError> {
        match std::env::var(var) {
            Ok(v) if v.trim_end_matches(['\n', '\r']).is_empty() => {
                Err(SecretError::EnvEmpty { var: var.into() })
            }
            Ok(v) => Ok(Secret(v.trim_end_matches(['\n', '\r']).to_owned())),
            Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing { var: var.into() }),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(SecretError::EnvNotUnicode { var: var.into() })
            }
        }
    }

    /// The value itself. Named loudly so every use is easy to audit: only the handshake needs it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("SUPERSECRETCOOKIE");
        assert!(!format!("{s:?}").contains("SUPERSECRETCOOKIE"));
        assert!(!format!("{s}").contains("SUPERSECRETCOOKIE"));
        assert!(!format!("{s:#?}").contains("SUPERSECRETCOOKIE"));
        assert_eq!(s.expose_secret(), "SUPERSECRETCOOKIE");
    }

    #[test]
    fn from_file_trims_the_newline_and_requires_mode_600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookie");
        std::fs::write(&path, "c00kie\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secret::from_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains("c00kie"), "{msg}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose_secret(), "c00kie");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose_secret(), "c00kie");
    }

    #[test]
    fn from_file_refuses_empty_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookie");
        assert!(matches!(
            Secret::from_file(&path),
            Err(SecretError::Read { .. })
        ));
        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Secret::from_file(&path),
            Err(SecretError::EmptyFile { .. })
        ));
    }

    #[test]
    fn from_env_reports_a_missing_variable_by_name() {
        let var = "DR_AGENT_TEST_COOKIE_SURELY_UNSET_1F3A";
        match Secret::from_env(var) {
            Err(SecretError::EnvMissing { var: v }) => assert_eq!(v, var),
            other => panic!("unexpected {other:?}"),
        }
        // PATH is always set in a test process and is not a secret.
        assert!(Secret::from_env("PATH").is_ok());
    }
}
