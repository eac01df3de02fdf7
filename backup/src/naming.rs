//! Backup identifiers and object names. The names are the on-store format that a human restores
//! from with plain tools, so they are produced and parsed in exactly one place.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Why a group or host name cannot be used in an object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} name is empty")]
    Empty { what: &'static str },
    #[error("{what} name {name:?} is {len} characters long (at most 63)")]
    TooLong {
        what: &'static str,
        name: String,
        len: usize,
    },
    #[error(
        "{what} name {name:?} contains {ch:?}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
    )]
    BadChar {
        what: &'static str,
        name: String,
        ch: char,
    },
    #[error(
        "backup id {0:?} is not `full-YYYY-MM-DDTHH:MM:SSZ` or `incremental-YYYY-MM-DDTHH:MM:SSZ`"
    )]
    BadId(String),
}

/// Validates a group or host name with the same rules as dr-proto's names (they end up in object
/// keys, so anything else could escape the prefix or confuse listing).
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > 63 {
        return Err(NameError::TooLong {
            what,
            name: name.to_owned(),
            len: name.len(),
        });
    }
    for (i, ch) in name.chars().enumerate() {
        let ok = ch.is_ascii_alphanumeric() || (i > 0 && matches!(ch, '.' | '_' | '-'));
        if !ok {
            return Err(NameError::BadChar {
                what,
                name: name.to_owned(),
                ch,
            });
        }
    }
    Ok(())
}

/// Full backups stand alone; incrementals need their parent chain to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// The whole tree.
    Full,
    /// Changes since a parent backup.
    Incremental,
}

impl BackupKind {
    /// The word used in object names and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `full-2026-01-27T13:45:30Z`: kind plus a UTC second. Ordered by time first so sorting ids
/// sorts backups chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackupId {
    /// Seconds since the Unix epoch (UTC) in the name.
    pub unix_secs: i64,
    /// Full or incremental.
    pub kind: BackupKind,
}

impl PartialOrd for BackupId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BackupId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.unix_secs, self.kind).cmp(&(other.unix_secs, other.kind))
    }
}

impl BackupId {
    /// Name of the compressed tar object (relative to the host's folder).
    pub fn archive_name(&self) -> String {
        format!("{self}.tar.zst")
    }

    /// Name of the `sha256sum -c` line object.
    pub fn sha256_name(&self) -> String {
        format!("{self}.tar.zst.sha256")
    }

    /// Name of the manifest, the commit marker.
    pub fn manifest_name(&self) -> String {
        format!("{self}.tar.zst.manifest.json")
    }

    /// The UTC time in the name, ISO-8601 with a `Z`.
    pub fn timestamp(&self) -> String {
        format_utc(self.unix_secs)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.kind, format_utc(self.unix_secs))
    }
}

impl FromStr for BackupId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let bad = || NameError::BadId(s.to_owned());
        let (kind, ts) = if let Some(ts) = s.strip_prefix("full-") {
            (BackupKind::Full, ts)
        } else if let Some(ts) = s.strip_prefix("incremental-") {
            (BackupKind::Incremental, ts)
        } else {
            return Err(bad());
        };
        let unix_secs = parse_utc(ts).ok_or_else(bad)?;
        Ok(BackupId { unix_secs, kind })
    }
}

impl Serialize for BackupId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where one host's backups live inside a store: `<group>/<host>/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupLocation {
    group: String,
    host: String,
}

impl BackupLocation {
    /// Validates both names so a key can never leave its folder.
    pub fn new(group: &str, host: &str) -> Result<Self, NameError> {
        validate_name("group", group)?;
        validate_name("host", host)?;
        Ok(Self {
            group: group.to_owned(),
            host: host.to_owned(),
        })
    }

    /// The group name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Key prefix of this host's objects, ending in `/`.
    pub fn prefix(&self) -> String {
        format!("{}/{}/", self.group, self.host)
    }

    /// Key of a named object of this host.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{}/{}", self.group, self.host, name)
    }
}

/// Formats Unix seconds as `2026-01-27T13:45:30Z`.
pub fn format_utc(unix_secs: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix_secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{unix_secs}"),
    }
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` (what [`format_utc`] writes).
pub fn parse_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let hms = (num(11..13)?, num(14..16)?, num(17..19)?);
    let time = Time::from_hms(
        hms.0.try_into().ok()?,
        hms.1.try_into().ok()?,
        hms.2.try_into().ok()?,
    )
    .ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Splits a key's file name into its backup id and which of the three objects it is.
pub fn parse_object_name(name: &str) -> Option<(BackupId, ObjectRole)> {
    let (stem, role) = if let Some(stem) = name.strip_suffix(".tar.zst.manifest.json") {
        (stem, ObjectRole::Manifest)
    } else if let Some(stem) = name.strip_suffix(".tar.zst.sha256") {
        (stem, ObjectRole::Sha256)
    } else if let Some(stem) = name.strip_suffix(".tar.zst") {
        (stem, ObjectRole::Archive)
    } else {
        return None;
    };
    Some((stem.parse().ok()?, role))
}

/// The three objects of one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectRole {
    /// `.tar.zst`.
    Archive,
    /// `.tar.zst.sha256`.
    Sha256,
    /// `.tar.zst.manifest.json`.
    Manifest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let id: BackupId = "full-2026-01-27T13:45:30Z".parse().unwrap();
        assert_eq!(id.to_string(), "full-2026-01-27T13:45:30Z");
        assert_eq!(id.unix_secs, 1_769_521_530);
        let inc = BackupId {
            unix_secs: id.unix_secs + 1,
            kind: BackupKind::Incremental,
        };
        assert!(inc > id);
        assert_eq!(inc.to_string().parse::<BackupId>().unwrap(), inc);
        assert_eq!(
            inc.manifest_name(),
            "incremental-2026-01-27T13:45:31Z.tar.zst.manifest.json"
        );
    }

    #[test]
    fn bad_ids_and_names_are_refused() {
        for bad in [
            "full-2026-01-27 13:45:30Z",
            "full-2026-13-27T13:45:30Z",
            "x-2026-01-27T13:45:30Z",
            "full-",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
        assert!(validate_name("host", "erlmcp1").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(validate_name("host", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_names_parse() {
        let (id, role) =
            parse_object_name("incremental-2026-01-27T13:45:31Z.tar.zst.sha256").unwrap();
        assert_eq!(id.kind, BackupKind::Incremental);
        assert_eq!(role, ObjectRole::Sha256);
        assert!(parse_object_name("notes.txt").is_none());
    }
}
