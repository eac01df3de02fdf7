//! `drctl.toml`: which controllers to talk to and with which certificate. Found from
//! `--config FILE`, then `$DRCTL_CONFIG`, then `./drctl.toml`.

use std::path::{Path, PathBuf};

use dr_proto::config_file::{self, ConfigError};
use dr_proto::tls::TlsPaths;
use serde::Deserialize;

pub const ENV_PREFIX: &str = "DRCTL";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    controllers: Vec<String>,
    tls: Option<TlsPaths>,
}

#[derive(Clone, Debug)]
pub struct DrctlConfig {
    pub file: PathBuf,
    pub controllers: Vec<String>,
    pub tls: Option<TlsPaths>,
}

/// Where the config comes from, in the documented order.
pub fn locate(flag: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("DRCTL_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let local = PathBuf::from("drctl.toml");
    if local.exists() {
        return Ok(local);
    }
    Err(
        "no drctl config: pass --config FILE, set DRCTL_CONFIG, or create ./drctl.toml \
         (`drctl demo` writes one into its directory)"
            .into(),
    )
}

impl DrctlConfig {
    pub fn load(file: &Path, insecure_dev: bool) -> Result<DrctlConfig, ConfigError> {
        let raw: RawConfig = config_file::load(file, ENV_PREFIX)?;
        Self::validate(file, raw, insecure_dev)
    }

    /// Parse `text` as if read from `file`, without environment overrides (tests).
    pub fn parse(file: &Path, text: &str, insecure_dev: bool) -> Result<DrctlConfig, ConfigError> {
        let raw: RawConfig = config_file::parse(file, text, ENV_PREFIX, Vec::new())?;
        Self::validate(file, raw, insecure_dev)
    }

    fn validate(
        file: &Path,
        raw: RawConfig,
        insecure_dev: bool,
    ) -> Result<DrctlConfig, ConfigError> {
        if raw.controllers.is_empty() {
            return Err(ConfigError::key(
                file,
                "controllers",
                "empty: list at least one controller, e.g. [\"https://ctl1:7400\"]",
            ));
        }
        for (i, url) in raw.controllers.iter().enumerate() {
            let ok = url.starts_with("https://") || (insecure_dev && url.starts_with("http://"));
            if !ok {
                return Err(ConfigError::key(
                    file,
                    format!("controllers[{i}]"),
                    format!("{url:?} must start with https:// (http:// only with --insecure-dev)"),
                ));
            }
        }
        let tls = match raw.tls {
            Some(t) => Some(TlsPaths {
                ca: config_file::resolve(file, &t.ca),
                cert: config_file::resolve(file, &t.cert),
                key: config_file::resolve(file, &t.key),
                server_name: t.server_name,
            }),
            None if insecure_dev => None,
            None => {
                return Err(ConfigError::key(
                    file,
                    "tls",
                    "missing (required: an operator or viewer certificate from `drctl pki init`)",
                ));
            }
        };
        Ok(DrctlConfig {
            file: file.to_path_buf(),
            controllers: raw.controllers,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let file = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/drctl.example.toml"
        ));
        let c = DrctlConfig::load(file, false).unwrap();
        assert_eq!(c.controllers.len(), 1);
    }

    #[test]
    fn plaintext_needs_insecure_dev() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("drctl.toml");
        std::fs::write(&f, "controllers = [\"http://c:7400\"]\n").unwrap();
        let e = DrctlConfig::load(&f, false).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("controllers[0]"));
        assert!(DrctlConfig::load(&f, true).is_ok());
    }
}
