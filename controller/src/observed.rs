//! Observed state: what agents last said. Memory only; after a controller restart it is rebuilt
//! as the agents reconnect (they do so by themselves). Times are `Instant`s passed in by the
//! caller, so this module reads no clock.

use std::collections::HashMap;
use std::time::Instant;

use dr_proto::domain::{GroupName, HealthReport, HostName};

pub type MemberKey = (GroupName, HostName);

#[derive(Clone, Debug, Default)]
pub struct MemberObservation {
    /// The live session, if any. A newer session replaces an older one of the same host.
    pub session_id: Option<u64>,
    pub agent_version: String,
    pub capabilities: Vec<String>,
    pub last_report: Option<HealthReport>,
    /// When the last message (hello or report) arrived.
    pub last_seen: Option<Instant>,
    pub last_report_at: Option<Instant>,
    pub disconnected_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Observed {
    members: HashMap<MemberKey, MemberObservation>,
}

impl Observed {
    pub fn get(&self, key: &MemberKey) -> Option<&MemberObservation> {
        self.members.get(key)
    }

    pub fn session_opened(
        &mut self,
        key: MemberKey,
        session_id: u64,
        agent_version: String,
        capabilities: Vec<String>,
        now: Instant,
    ) {
        let m = self.members.entry(key).or_default();
        m.session_id = Some(session_id);
        m.agent_version = agent_version;
        m.capabilities = capabilities;
        m.last_seen = Some(now);
        m.disconnected_at = None;
    }

    /// Record a report. Returns false (and records nothing) when `session_id` is not the member's
    /// current session: a superseded session must not overwrite fresher news.
    pub fn report(
        &mut self,
        key: &MemberKey,
        session_id: u64,
        report: HealthReport,
        now: Instant,
    ) -> bool {
        let Some(m) = self.members.get_mut(key) else {
            return false;
        };
        if m.session_id != Some(session_id) {
            return false;
        }
        m.last_report = Some(report);
        m.last_seen = Some(now);
        m.last_report_at = Some(now);
        true
    }

    /// Mark the session closed, unless a newer one already replaced it.
    pub fn session_closed(&mut self, key: &MemberKey, session_id: u64, now: Instant) {
        if let Some(m) = self.members.get_mut(key)
            && m.session_id == Some(session_id)
        {
            m.session_id = None;
            m.disconnected_at = Some(now);
        }
    }

    pub fn connected_sessions(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.session_id.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key() -> MemberKey {
        (GroupName::new("g").unwrap(), HostName::new("a").unwrap())
    }

    #[test]
    fn a_superseded_session_cannot_report_or_close_the_new_one() {
        let t0 = Instant::now();
        let mut o = Observed::default();
        o.session_opened(key(), 1, "v".into(), vec![], t0);
        o.session_opened(key(), 2, "v".into(), vec![], t0 + Duration::from_millis(1));
        assert!(!o.report(&key(), 1, HealthReport::default(), t0));
        o.session_closed(&key(), 1, t0);
        assert_eq!(o.get(&key()).unwrap().session_id, Some(2));
        assert!(o.report(&key(), 2, HealthReport::default(), t0));
        o.session_closed(&key(), 2, t0);
        assert_eq!(o.get(&key()).unwrap().session_id, None);
        assert_eq!(o.connected_sessions(), 0);
    }
}
