//! Store URL parsing with errors that say which part is wrong and what to write instead.

use std::path::PathBuf;

use super::StoreError;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file:///absolute/dir`.
    File {
        /// The directory holding the objects.
        dir: PathBuf,
    },
    /// `s3://bucket/optional/prefix`.
    S3 {
        /// Bucket name (S3 naming rules).
        bucket: String,
        /// Key prefix without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl StoreUrl {
    /// Parses `file:///abs/dir` or `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<StoreUrl, StoreError> {
        let bad = |problem: String| StoreError::BadUrl {
            url: url.to_owned(),
            problem,
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(format!(
                    "the path after file:// must be absolute (file:///var/backups has three slashes); got {path:?}"
                )));
            }
            if path.contains('\0') {
                return Err(bad("the path contains a NUL byte".into()));
            }
            if path.split('/').any(|c| c == "..") {
                return Err(bad(
                    "the path contains `..`; give the directory itself".into()
                ));
            }
            let trimmed = path.trim_end_matches('/');
            return Ok(StoreUrl::File {
                dir: PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed }),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket).map_err(|p| bad(format!("bucket {bucket:?}: {p}")))?;
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|c| c == "." || c == "..") || prefix.contains("//") {
                return Err(bad(format!(
                    "prefix {prefix:?} has an empty, `.` or `..` component; write s3://bucket/some/prefix"
                )));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        match url.split_once("://") {
            Some((scheme, _)) => Err(bad(format!(
                "unknown scheme {scheme:?}: use file:///absolute/dir or s3://bucket/prefix"
            ))),
            None => Err(bad(
                "no scheme: write file:///absolute/dir for a directory or s3://bucket/prefix"
                    .into(),
            )),
        }
    }
}

/// S3 bucket naming rules (the general-purpose bucket subset every S3-compatible server accepts).
fn check_bucket(b: &str) -> Result<(), String> {
    if b.is_empty() {
        return Err("is empty; write s3://bucket/prefix".into());
    }
    if b.len() < 3 || b.len() > 63 {
        return Err(format!(
            "is {} characters long; S3 bucket names are 3 to 63",
            b.len()
        ));
    }
    if let Some(c) = b
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; use lower-case letters, digits, '.' and '-'"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(b.chars().next()) || !edge_ok(b.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    if b.contains("..") {
        return Err("contains `..`".into());
    }
    if b.split('.').count() == 4 && b.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err("looks like an IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_urls() {
        assert_eq!(
            StoreUrl::parse("file:///var/backups/").unwrap(),
            StoreUrl::File {
                dir: "/var/backups".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("s3://erlmcp-backups/prod/eu").unwrap(),
            StoreUrl::S3 {
                bucket: "erlmcp-backups".into(),
                prefix: "prod/eu".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("s3://erlmcp-backups").unwrap(),
            StoreUrl::S3 {
                bucket: "erlmcp-backups".into(),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn bad_urls_say_which_part() {
        let msg = |u: &str| StoreUrl::parse(u).unwrap_err().to_string();
        assert!(msg("file://backups").contains("absolute"));
        assert!(msg("/var/backups").contains("no scheme"));
        assert!(msg("ftp://x/y").contains("unknown scheme \"ftp\""));
        assert!(msg("s3://b/x").contains("3 to 63"));
        assert!(msg("s3://My_Bucket/x").contains("contains 'M'"));
        assert!(msg("s3://bucket/a/../b").contains("prefix"));
        assert!(msg("s3://192.168.1.1/x").contains("IP address"));
    }
}
