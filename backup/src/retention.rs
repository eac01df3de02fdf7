//! Retention planning, pure: given the backups of hosts and a policy, which to keep (and why) and
//! which to delete, in a safe order. Incrementals keep their whole chain alive (so a full goes
//! only together with its incrementals), the newest valid backup is never deleted, and
//! [`delete_backup`] removes the manifest first so a half-deleted backup is never listed.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::list::BackupSummary;
use crate::naming::{BackupId, BackupLocation};
use crate::store::{ObjectStore, StoreError};

/// How many restore points to keep, like restic's `forget`: the union of the rules is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RetentionPolicy {
    /// The newest N backups.
    pub keep_last: u32,
    /// The newest backup of each of the last N days (UTC) that have backups.
    pub keep_daily: u32,
    /// The newest backup of each of the last N ISO weeks that have backups.
    pub keep_weekly: u32,
}

/// One backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionItem {
    /// Group.
    pub group: String,
    /// Host.
    pub host: String,
    /// Id.
    pub id: BackupId,
    /// Parent of an incremental.
    pub parent: Option<BackupId>,
    /// False if known bad (failed verification or drill); the newest valid one is always kept.
    pub valid: bool,
}

impl From<&BackupSummary> for RetentionItem {
    fn from(s: &BackupSummary) -> Self {
        Self {
            group: s.group.clone(),
            host: s.host.clone(),
            id: s.id,
            parent: s.parent,
            valid: true,
        }
    }
}

/// A kept backup and the rules that keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// Group.
    pub group: String,
    /// Host.
    pub host: String,
    /// Id.
    pub id: BackupId,
    /// Why, e.g. `last 2`, `daily 2026-01-27`, `weekly 2026-W05`, `newest valid`, `needed by …`.
    pub reasons: Vec<String>,
}

/// A backup to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Doomed {
    /// Group.
    pub group: String,
    /// Host.
    pub host: String,
    /// Id.
    pub id: BackupId,
}

/// The plan: keep these, delete those in this order (newest first, so incrementals go before
/// the backups they depend on).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RetentionPlan {
    /// Kept backups, newest first.
    pub keep: Vec<Kept>,
    /// Backups to delete, in order.
    pub delete: Vec<Doomed>,
}

/// Plans retention for every group/host in `items` independently.
pub fn plan_retention(items: &[RetentionItem], policy: &RetentionPolicy) -> RetentionPlan {
    let mut by_host: BTreeMap<(&str, &str), Vec<&RetentionItem>> = BTreeMap::new();
    for it in items {
        by_host
            .entry((it.group.as_str(), it.host.as_str()))
            .or_default()
            .push(it);
    }
    let mut plan = RetentionPlan::default();
    for ((group, host), mut list) in by_host {
        list.sort_by_key(|it| std::cmp::Reverse(it.id));
        let reasons = keep_reasons(&list, policy);
        for it in list {
            match reasons.get(&it.id) {
                Some(r) => plan.keep.push(Kept {
                    group: group.into(),
                    host: host.into(),
                    id: it.id,
                    reasons: r.clone(),
                }),
                None => plan.delete.push(Doomed {
                    group: group.into(),
                    host: host.into(),
                    id: it.id,
                }),
            }
        }
    }
    plan
}

fn keep_reasons(
    newest_first: &[&RetentionItem],
    policy: &RetentionPolicy,
) -> HashMap<BackupId, Vec<String>> {
    let mut keep: HashMap<BackupId, Vec<String>> = HashMap::new();
    let mut add = |id: BackupId, why: String| keep.entry(id).or_default().push(why);
    for it in newest_first.iter().take(policy.keep_last as usize) {
        add(it.id, format!("last {}", policy.keep_last));
    }
    let mut days: Vec<String> = Vec::new();
    let mut weeks: Vec<String> = Vec::new();
    for it in newest_first {
        let Ok(t) = OffsetDateTime::from_unix_timestamp(it.id.unix_secs) else {
            continue;
        };
        let day = format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day());
        if !days.contains(&day) && days.len() < policy.keep_daily as usize {
            add(it.id, format!("daily {day}"));
            days.push(day);
        }
        let (y, w, _) = t.to_iso_week_date();
        let week = format!("{y:04}-W{w:02}");
        if !weeks.contains(&week) && weeks.len() < policy.keep_weekly as usize {
            add(it.id, format!("weekly {week}"));
            weeks.push(week);
        }
    }
    if let Some(newest_valid) = newest_first.iter().find(|it| it.valid) {
        add(newest_valid.id, "newest valid".into());
    }
    // A kept incremental needs every ancestor.
    let parents: HashMap<BackupId, Option<BackupId>> =
        newest_first.iter().map(|it| (it.id, it.parent)).collect();
    let kept: Vec<BackupId> = keep.keys().copied().collect();
    for id in kept {
        let mut cur = parents.get(&id).copied().flatten();
        while let Some(p) = cur {
            if !parents.contains_key(&p) {
                break;
            }
            let entry = keep.entry(p).or_default();
            let why = format!("needed by {id}");
            if !entry.contains(&why) {
                entry.push(why);
            }
            cur = parents.get(&p).copied().flatten();
        }
    }
    keep
}

/// Deletes one backup: manifest first (it stops being listed), then the archive and the
/// `.sha256`. Interrupted half-way, what remains is never listed.
pub fn delete_backup(
    store: &dyn ObjectStore,
    loc: &BackupLocation,
    id: BackupId,
) -> Result<(), StoreError> {
    store.delete(&loc.key(&id.manifest_name()))?;
    store.delete(&loc.key(&id.archive_name()))?;
    store.delete(&loc.key(&id.sha256_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{BackupKind, parse_utc};

    fn item(ts: &str, kind: BackupKind, parent: Option<&str>) -> RetentionItem {
        let id = BackupId {
            unix_secs: parse_utc(ts).unwrap(),
            kind,
        };
        let parent = parent.map(|p| BackupId {
            unix_secs: parse_utc(p).unwrap(),
            kind: BackupKind::Full,
        });
        RetentionItem {
            group: "g".into(),
            host: "h".into(),
            id,
            parent,
            valid: true,
        }
    }

    fn ids(v: &[impl AsRef<BackupId>]) -> Vec<String> {
        v.iter().map(|x| x.as_ref().to_string()).collect()
    }

    impl AsRef<BackupId> for Kept {
        fn as_ref(&self) -> &BackupId {
            &self.id
        }
    }
    impl AsRef<BackupId> for Doomed {
        fn as_ref(&self) -> &BackupId {
            &self.id
        }
    }

    #[test]
    fn keeps_exactly_what_the_policy_says() {
        use BackupKind::{Full, Incremental};
        // Three days of a daily full and an incremental on top, over two ISO weeks
        // (2026-01-25 is a Sunday, so 01-26 starts a new week).
        let items = vec![
            item("2026-01-25T01:00:00Z", Full, None),
            item(
                "2026-01-25T02:00:00Z",
                Incremental,
                Some("2026-01-25T01:00:00Z"),
            ),
            item("2026-01-26T01:00:00Z", Full, None),
            item(
                "2026-01-26T02:00:00Z",
                Incremental,
                Some("2026-01-26T01:00:00Z"),
            ),
            item("2026-01-27T01:00:00Z", Full, None),
            item(
                "2026-01-27T02:00:00Z",
                Incremental,
                Some("2026-01-27T01:00:00Z"),
            ),
        ];
        let plan = plan_retention(
            &items,
            &RetentionPolicy {
                keep_last: 1,
                keep_daily: 2,
                keep_weekly: 2,
            },
        );
        assert_eq!(
            ids(&plan.keep),
            [
                "incremental-2026-01-27T02:00:00Z",
                "full-2026-01-27T01:00:00Z",
                "incremental-2026-01-26T02:00:00Z",
                "full-2026-01-26T01:00:00Z",
                "incremental-2026-01-25T02:00:00Z",
                "full-2026-01-25T01:00:00Z",
            ]
        );
        // Without weekly, the oldest day goes, incremental first.
        let plan = plan_retention(
            &items,
            &RetentionPolicy {
                keep_last: 1,
                keep_daily: 2,
                keep_weekly: 0,
            },
        );
        assert_eq!(
            ids(&plan.delete),
            [
                "incremental-2026-01-25T02:00:00Z",
                "full-2026-01-25T01:00:00Z"
            ]
        );
        assert_eq!(
            plan.keep[3].reasons,
            ["needed by incremental-2026-01-26T02:00:00Z"]
        );
        // keep_last 1 alone keeps the newest incremental and its full.
        let plan = plan_retention(
            &items,
            &RetentionPolicy {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert_eq!(
            ids(&plan.keep),
            [
                "incremental-2026-01-27T02:00:00Z",
                "full-2026-01-27T01:00:00Z"
            ]
        );
        assert_eq!(plan.delete.len(), 4);
    }

    #[test]
    fn never_deletes_the_newest_valid_backup() {
        use BackupKind::{Full, Incremental};
        let mut items = vec![
            item("2026-01-25T01:00:00Z", Full, None),
            item("2026-01-26T01:00:00Z", Full, None),
            item(
                "2026-01-26T02:00:00Z",
                Incremental,
                Some("2026-01-26T01:00:00Z"),
            ),
        ];
        items[2].valid = false;
        let plan = plan_retention(&items, &RetentionPolicy::default());
        assert_eq!(ids(&plan.keep), ["full-2026-01-26T01:00:00Z"]);
        assert_eq!(plan.keep[0].reasons, ["newest valid"]);
        assert_eq!(
            ids(&plan.delete),
            [
                "incremental-2026-01-26T02:00:00Z",
                "full-2026-01-25T01:00:00Z"
            ]
        );
    }

    #[test]
    fn hosts_are_planned_separately() {
        let mut a = item("2026-01-25T01:00:00Z", BackupKind::Full, None);
        let mut b = a.clone();
        a.host = "h1".into();
        b.host = "h2".into();
        let plan = plan_retention(
            &[a, b],
            &RetentionPolicy {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert_eq!(plan.keep.len(), 2);
        assert!(plan.delete.is_empty());
    }
}
