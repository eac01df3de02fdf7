//! The `[backup.s3]` config section, shared by every program that opens a store (agent and
//! controller), so the keys and their checks are the same everywhere.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{S3Credentials, S3Options};

/// `[backup.s3]`: region, endpoint, addressing style and optional key files. Without key
/// files the standard AWS chain is used (environment, profile, instance role).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub path_style: Option<bool>,
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
}

/// A mistake in the section: the key (under `backup.s3.`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionError {
    pub key: &'static str,
    pub message: String,
}

fn valid_endpoint(ep: &str) -> bool {
    let rest = ep
        .strip_prefix("http://")
        .or_else(|| ep.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', ':']).next().unwrap_or("");
        !host.is_empty() && !r.contains(char::is_whitespace)
    })
}

impl S3Section {
    /// Check the section and read the key files with `read_secret` (which enforces whatever
    /// the caller requires of secret files, e.g. mode 0600).
    pub fn options(
        self,
        read_secret: impl Fn(&Path) -> Result<String, String>,
    ) -> Result<S3Options, SectionError> {
        if let Some(ep) = &self.endpoint
            && !valid_endpoint(ep)
        {
            return Err(SectionError {
                key: "endpoint",
                message: format!("must be an http(s)://HOST[:PORT] URL, got {ep:?}"),
            });
        }
        let read = |key: &'static str, p: &Path| {
            read_secret(p).map_err(|message| SectionError { key, message })
        };
        let credentials = match (&self.access_key_id_file, &self.secret_access_key_file) {
            (Some(id), Some(secret)) => Some(S3Credentials {
                access_key_id: read("access_key_id_file", id)?,
                secret_access_key: read("secret_access_key_file", secret)?,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(SectionError {
                    key: "secret_access_key_file",
                    message: "missing: set both key files, or neither to use the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profile, instance role)".into(),
                });
            }
            (None, Some(_)) => {
                return Err(SectionError {
                    key: "access_key_id_file",
                    message:
                        "missing: set both key files, or neither to use the standard AWS chain"
                            .into(),
                });
            }
        };
        Ok(S3Options {
            region: self.region.filter(|r| !r.is_empty()),
            force_path_style: self.path_style.unwrap_or(self.endpoint.is_some()),
            endpoint: self.endpoint,
            credentials,
            ..S3Options::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_key_pairs_are_checked() {
        let bad = S3Section {
            endpoint: Some("minio:9000".into()),
            ..S3Section::default()
        };
        assert_eq!(
            bad.options(|_| Ok(String::new())).unwrap_err().key,
            "endpoint"
        );
        let half = S3Section {
            access_key_id_file: Some("id".into()),
            ..S3Section::default()
        };
        assert_eq!(
            half.options(|_| Ok(String::new())).unwrap_err().key,
            "secret_access_key_file"
        );
        let ok = S3Section {
            endpoint: Some("http://127.0.0.1:9000".into()),
            access_key_id_file: Some("id".into()),
            secret_access_key_file: Some("secret".into()),
            ..S3Section::default()
        }
        .options(|p| Ok(format!("from {}", p.display())))
        .unwrap();
        assert!(ok.force_path_style);
        assert_eq!(ok.credentials.unwrap().secret_access_key, "from secret");
    }
}
