//! The split-brain monitor: an `erlmcp-standin watch` process inside every host's namespace
//! (so it sees the host even while the host is cut off from everyone else) samples the agent's
//! `/primary` (what the load balancer routes on) and the stand-in's role and epoch every 50 ms.
//! Afterwards: no two hosts may answer `/primary` 200 in overlapping time spans, and no two
//! hosts' stand-ins may call themselves primary in the same epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::cluster::Cluster;
use super::daemon::Daemon;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub unix_ms: u128,
    /// The agent's `/primary` status (0: no answer).
    pub primary_code: u16,
    pub role: String,
    pub epoch: u64,
}

pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Sample {
                unix_ms: f.next()?.parse().ok()?,
                primary_code: f.next()?.parse().ok()?,
                role: f.next()?.to_string(),
                epoch: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Spans `[first, last]` (unix ms) of consecutive samples for which `is` holds.
fn spans(samples: &[Sample], is: impl Fn(&Sample) -> bool) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut open: Option<(u128, u128)> = None;
    for s in samples {
        match (is(s), open) {
            (true, None) => open = Some((s.unix_ms, s.unix_ms)),
            (true, Some((a, _))) => open = Some((a, s.unix_ms)),
            (false, Some(span)) => {
                out.push(span);
                open = None;
            }
            (false, None) => {}
        }
    }
    out.extend(open);
    out
}

/// Every violation found in the hosts' samples (empty: no split brain).
pub fn violations(per_host: &[(String, Vec<Sample>)]) -> Vec<String> {
    let mut found = Vec::new();
    let primary_spans: Vec<(&String, Vec<(u128, u128)>)> = per_host
        .iter()
        .map(|(h, s)| (h, spans(s, |x| x.primary_code == 200)))
        .collect();
    for (i, (a, sa)) in primary_spans.iter().enumerate() {
        for (b, sb) in &primary_spans[i + 1..] {
            for x in sa {
                for y in sb {
                    if x.0 <= y.1 && y.0 <= x.1 {
                        found.push(format!(
                            "{a} and {b} both answered /primary 200 between {} and {} (unix ms)",
                            x.0.max(y.0),
                            x.1.min(y.1)
                        ));
                    }
                }
            }
        }
    }
    let mut by_epoch: BTreeMap<u64, BTreeSet<&String>> = BTreeMap::new();
    for (h, samples) in per_host {
        for s in samples.iter().filter(|s| s.role == "primary") {
            by_epoch.entry(s.epoch).or_default().insert(h);
        }
    }
    for (epoch, hosts) in by_epoch.iter().filter(|(_, h)| h.len() > 1) {
        found.push(format!(
            "stand-ins {hosts:?} all said primary at epoch {epoch}"
        ));
    }
    found
}

pub struct SplitBrainMonitor {
    watchers: Vec<(String, PathBuf, Daemon)>,
}

impl SplitBrainMonitor {
    /// Start one watcher per host, inside the host's namespace when it has one.
    pub fn start(c: &Cluster) -> anyhow::Result<SplitBrainMonitor> {
        let mut watchers = Vec::new();
        for (i, h) in c.plan.hosts.iter().enumerate() {
            let out = c.dir().join(format!("watch-{}.log", h.host));
            let args = vec![
                "watch".to_string(),
                "--agent".into(),
                h.agent_http.to_string(),
                "--service".into(),
                h.service.to_string(),
                "--out".into(),
                out.display().to_string(),
            ];
            let standin = c.bins.standin();
            let (program, args) = match &c.netns[i] {
                Some(ns) => {
                    let (p, a) = ns.wrap(&standin.display().to_string(), &args);
                    (PathBuf::from(p), a)
                }
                None => (standin, args),
            };
            let log = c.dir().join(format!("watch-{}.err", h.host));
            let d = Daemon::spawn(&format!("watch {}", h.host), &program, &args, &log)?;
            watchers.push((h.host.clone(), out, d));
        }
        Ok(SplitBrainMonitor { watchers })
    }

    /// Samples so far, per host.
    pub fn samples(&self) -> Vec<(String, Vec<Sample>)> {
        self.watchers
            .iter()
            .map(|(h, out, _)| (h.clone(), read(out)))
            .collect()
    }

    /// Stop watching; the samples of the whole run per host.
    pub fn stop(mut self) -> Vec<(String, Vec<Sample>)> {
        for (_, _, d) in &mut self.watchers {
            d.kill();
        }
        self.samples()
    }
}

fn read(path: &Path) -> Vec<Sample> {
    parse(&std::fs::read_to_string(path).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, lines: &str) -> (String, Vec<Sample>) {
        (name.to_string(), parse(lines))
    }

    #[test]
    fn a_clean_handover_is_not_a_split_brain() {
        let a = host(
            "a",
            "100 200 primary 1\n150 200 primary 1\n200 503 fenced 1\n",
        );
        let b = host("b", "100 503 replica 1\n220 200 primary 2\n");
        assert!(violations(&[a, b]).is_empty());
    }

    #[test]
    fn overlapping_primaries_are_found() {
        let a = host("a", "100 200 primary 1\n300 200 primary 1\n");
        let b = host("b", "200 200 primary 2\n");
        let v = violations(&[a, b]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("both answered /primary 200"));
    }

    #[test]
    fn two_primaries_in_one_epoch_are_found() {
        let a = host("a", "100 0 primary 3\n");
        let b = host("b", "500 0 primary 3\n");
        let v = violations(&[a, b]);
        assert!(v.iter().any(|x| x.contains("epoch 3")), "{v:?}");
    }
}
