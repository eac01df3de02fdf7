//! Steps the fault scenarios share: the cluster they start from, and waiting for the outcomes
//! they expect (a new primary serving, the same primary still serving, a member back green).

use std::time::Duration;

use dr_proto::domain::{Health, Role, StatusView};
use dr_proto::process::Sig;

use super::cluster::{Cluster, ClusterOptions};
use super::testnet_setup::NetOptions;
use super::wait::wait_until;

pub const GROUP: &str = "erlmcp";

/// Root, iproute2, iptables and HAProxy are there (tests/run.sh installs them). Missing: the
/// scenario fails under CI, and is skipped with a message elsewhere.
pub fn prerequisites() -> bool {
    let missing = super::netns::available().err().or_else(|| {
        ["iptables", "haproxy"]
            .into_iter()
            .find(|p| super::bins::on_path(p).is_none())
            .map(|p| format!("`{p}` is not installed"))
    });
    match missing {
        None => true,
        Some(why) => {
            assert!(
                !super::in_ci(),
                "the fault scenarios need root, iproute2, iptables and haproxy: {why}"
            );
            eprintln!("skipping: {why} (tests/run.sh installs what the scenarios need)");
            false
        }
    }
}

/// `hosts` erlmcp hosts and `controllers` controllers, each in its own namespace on a private
/// bridge, HAProxy in front, no failover cooldown (scenarios fail over once each).
pub fn options(hosts: usize, controllers: usize) -> ClusterOptions {
    ClusterOptions {
        hosts,
        controllers,
        haproxy: true,
        controller_extra: "[failover]\ncooldown_s = 0\n".into(),
        net: NetOptions {
            enabled: true,
            ..NetOptions::default()
        },
        ..ClusterOptions::default()
    }
}

pub fn primary_of(v: &StatusView) -> Option<String> {
    v.group(GROUP)?.primary.as_ref().map(|p| p.to_string())
}

pub fn epoch_of(v: &StatusView) -> u64 {
    v.group(GROUP).map(|g| g.epoch.0).unwrap_or(0)
}

/// kill -9 host `i`'s agent and stand-in.
pub fn kill_host(c: &mut Cluster, i: usize) {
    if let Some(a) = c.agents[i].as_mut() {
        a.kill();
    }
    let _ = c.signal_standin(i, Sig::Kill);
}

/// A primary other than `old`, settled (no transition) and holding its lease.
pub async fn wait_new_primary(c: &Cluster, old: &str, within: Duration) -> anyhow::Result<String> {
    let v = c
        .wait_status("a new primary holding its lease", within, |v| {
            v.group(GROUP).is_some_and(|g| {
                g.transition.is_none()
                    && g.primary.as_ref().is_some_and(|p| p.as_str() != old)
                    && g.members.iter().any(|m| {
                        m.role == Role::Primary
                            && m.lease_remaining_ms.is_some()
                            && Some(&m.host) == g.primary.as_ref()
                    })
            })
        })
        .await?;
    primary_of(&v).ok_or_else(|| anyhow::anyhow!("no primary"))
}

/// Host `host` is a green replica again.
pub async fn wait_green_replica(c: &Cluster, host: &str, within: Duration) -> anyhow::Result<()> {
    c.wait_status(&format!("{host} back as a green replica"), within, |v| {
        v.group(GROUP)
            .and_then(|g| g.member(host))
            .is_some_and(|m| {
                m.role == Role::Replica
                    && m.health == Health::Green
                    && m.connected
                    && m.last_seen_ms.is_some_and(|t| t < 2000)
            })
    })
    .await?;
    Ok(())
}

/// Every member green, `primary` primary holding its lease.
pub async fn wait_all_green(c: &Cluster, primary: &str, within: Duration) -> anyhow::Result<()> {
    let n = c.plan.hosts.len();
    c.wait_status("every member green again", within, |v| {
        v.group(GROUP).is_some_and(|g| {
            g.members.len() == n
                && g.members.iter().all(|m| m.health == Health::Green)
                && g.primary.as_ref().is_some_and(|p| p.as_str() == primary)
                && g.members
                    .iter()
                    .any(|m| m.role == Role::Primary && m.lease_remaining_ms.is_some())
        })
    })
    .await?;
    Ok(())
}

/// The role changes in the history (failovers, switchovers), oldest first.
pub fn role_changes(c: &Cluster) -> Vec<serde_json::Value> {
    let out = c.drctl(&["history", "-o", "json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["role_changes"].as_array().cloned())
        .unwrap_or_default()
}

/// Watch for `for_at_least`: the primary and epoch must stay as they are (no failover).
pub async fn hold_steady(c: &Cluster, for_at_least: Duration) -> anyhow::Result<(String, u64)> {
    let v = c.status()?;
    let (primary, epoch) = (
        primary_of(&v).ok_or_else(|| anyhow::anyhow!("no primary"))?,
        epoch_of(&v),
    );
    let until = std::time::Instant::now() + for_at_least;
    while std::time::Instant::now() < until {
        if let Ok(v) = c.status() {
            anyhow::ensure!(
                primary_of(&v).as_deref() == Some(primary.as_str()) && epoch_of(&v) == epoch,
                "the primary changed: {:?} at epoch {} (was {primary} at {epoch})",
                primary_of(&v),
                epoch_of(&v)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok((primary, epoch))
}

/// Until `check` holds, polling (a named wait).
pub async fn until(what: &str, within: Duration, check: impl Fn() -> bool) -> anyhow::Result<()> {
    let check = &check;
    wait_until(what, within, || async move { check().then_some(()) }).await
}
