//! The agent's own view of its role and lease, as one small state machine with no I/O: the
//! session, the lease loop, the watchdog and the commands feed it, and it says what to do
//! (request a lease, run a hook, give the lease back). `/primary` answers from it.
//!
//! Safety: the lease is measured from the moment the renewal request was *sent*, on this
//! host's monotonic clock, so it always ends here no later than the controller believes. When
//! it runs out the agent fences itself (`/primary` stops answering 200 and the fence hook runs).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dr_proto::domain::{AgentRoleState, Epoch, HostName, Role};

/// The lease ttl assumed before the first grant said otherwise (the controller's default).
const DEFAULT_TTL: Duration = Duration::from_millis(2000);

/// Lease round trips remembered for [`RoleMachine::lease_stalled`].
const RTT_SAMPLES: usize = 8;

/// Something the owner of the machine must do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Run the promote hook for this epoch (the controller says we are primary).
    Promote(Epoch),
    /// Run the demote hook (we were primary; the controller says we are not).
    Demote,
    /// The lease ran out: run the fence hook.
    Fence,
    /// Tell the controller we gave the lease back.
    Release { epoch: Epoch, reason: String },
}

#[derive(Debug)]
pub struct RoleMachine {
    pub told_role: Role,
    pub told_epoch: Epoch,
    pub primary: Option<HostName>,
    /// The promote hook finished for this epoch.
    pub promoted: Option<Epoch>,
    pub lease_until: Option<Instant>,
    pub fenced: bool,
    /// We gave the lease back (service dead, restart, demote) and do not ask for it again until
    /// `resume` says so.
    pub released: bool,
    /// A hook or service action in progress.
    pub busy_with: String,
    /// This host was primary when the agent last ran (from its state file).
    pub was_primary_before_restart: bool,
    sent: HashMap<u64, Instant>,
    next_request: u64,
    /// When the oldest lease request still without any answer was sent (None: all answered).
    unanswered_since: Option<Instant>,
    /// The ttl of the last grant.
    last_ttl: Option<Duration>,
    /// Round trips of the last few answered lease requests (newest last).
    recent_rtts: std::collections::VecDeque<Duration>,
}

impl Default for RoleMachine {
    fn default() -> Self {
        RoleMachine {
            told_role: Role::Unknown,
            told_epoch: Epoch::ZERO,
            primary: None,
            promoted: None,
            lease_until: None,
            fenced: false,
            released: false,
            busy_with: String::new(),
            was_primary_before_restart: false,
            sent: HashMap::new(),
            next_request: 1,
            unanswered_since: None,
            last_ttl: None,
            recent_rtts: std::collections::VecDeque::new(),
        }
    }
}

impl RoleMachine {
    pub fn lease_valid(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|u| now < u)
    }

    /// What `/primary` answers: 200 only for a promoted primary holding a valid lease.
    pub fn serving_as_primary(&self, now: Instant) -> bool {
        self.told_role == Role::Primary
            && self.promoted == Some(self.told_epoch)
            && self.lease_valid(now)
            && !self.fenced
            && !self.released
    }

    /// The controller said who we are (welcome or ack).
    pub fn told(&mut self, role: Role, epoch: Epoch, primary: Option<HostName>) -> Vec<Effect> {
        let mut fx = Vec::new();
        let was_primary = self.promoted.is_some()
            || self.lease_until.is_some()
            || self.fenced
            || self.was_primary_before_restart;
        if epoch < self.told_epoch {
            // an older controller view (message reordering): ignore
            return fx;
        }
        if role == Role::Primary && epoch > self.told_epoch {
            // a new term as primary starts clean: a release from an older epoch does not hold
            self.released = false;
        }
        self.told_role = role;
        self.told_epoch = epoch;
        self.primary = primary;
        match role {
            Role::Primary => {
                self.was_primary_before_restart = false;
                if self.promoted != Some(epoch) && self.busy_with.is_empty() && !self.released {
                    self.busy_with = "promote".into();
                    fx.push(Effect::Promote(epoch));
                }
            }
            _ => {
                if was_primary && self.busy_with.is_empty() {
                    self.busy_with = "demote".into();
                    self.was_primary_before_restart = false;
                    self.promoted = None;
                    self.lease_until = None;
                    fx.push(Effect::Demote);
                }
            }
        }
        fx
    }

    /// A lease request to send now, if we should hold a lease.
    pub fn want_lease(&mut self, now: Instant) -> Option<(u64, Epoch)> {
        if self.told_role != Role::Primary
            || self.promoted != Some(self.told_epoch)
            || self.released
        {
            return None;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.sent.insert(id, now);
        self.unanswered_since.get_or_insert(now);
        // forget very old requests (lost answers)
        self.sent
            .retain(|_, t| now.saturating_duration_since(*t) < Duration::from_secs(30));
        Some((id, self.told_epoch))
    }

    /// The controller answered a lease request at `now` (its round trip counts towards
    /// [`Self::lease_stalled`]).
    pub fn lease_answer_at(
        &mut self,
        now: Instant,
        request_id: u64,
        epoch: Epoch,
        outcome: Result<u32, String>,
    ) -> Vec<Effect> {
        if let Some(sent_at) = self.sent.get(&request_id) {
            if self.recent_rtts.len() == RTT_SAMPLES {
                self.recent_rtts.pop_front();
            }
            self.recent_rtts
                .push_back(now.saturating_duration_since(*sent_at));
        }
        self.lease_answer(request_id, epoch, outcome)
    }

    /// The controller answered a lease request.
    pub fn lease_answer(
        &mut self,
        request_id: u64,
        epoch: Epoch,
        outcome: Result<u32, String>,
    ) -> Vec<Effect> {
        let Some(sent_at) = self.sent.remove(&request_id) else {
            return Vec::new();
        };
        // the session carries answers again; a request sent after this one may still be out
        self.unanswered_since = self.sent.values().filter(|t| **t > sent_at).min().copied();
        match outcome {
            Ok(ttl_ms) if epoch == self.told_epoch && !self.released => {
                self.last_ttl = Some(Duration::from_millis(u64::from(ttl_ms)));
                let until = sent_at + Duration::from_millis(u64::from(ttl_ms));
                self.lease_until = Some(self.lease_until.map_or(until, |u| u.max(until)));
                if self.fenced {
                    // we hold the lease again after fencing: re-run the promote hook first
                    self.fenced = false;
                    self.promoted = None;
                    self.lease_until = None;
                    if self.busy_with.is_empty() {
                        self.busy_with = "promote".into();
                        return vec![Effect::Promote(self.told_epoch)];
                    }
                }
                Vec::new()
            }
            Ok(_) => Vec::new(),
            Err(_) => {
                // refused: whatever lease we had ends now
                self.lease_until = None;
                self.fence_if_needed()
            }
        }
    }

    /// A new session with a controller: requests sent on the old one will never be answered.
    pub fn session_started(&mut self) {
        self.sent.clear();
        self.unanswered_since = None;
    }

    /// The session stalled: a lease request has gone unanswered for half the lease ttl (the
    /// controller is cut off, hung, or lost its quorum), and for three times the slowest recent
    /// round trip (a slow network is not a stalled controller: a new session would be as slow,
    /// and setting it up costs several round trips). Move to another controller now, while the
    /// lease still runs, rather than let it lapse waiting for TCP keepalives to notice.
    pub fn lease_stalled(&self, now: Instant) -> bool {
        let slowest = self.recent_rtts.iter().max().copied().unwrap_or_default();
        let limit = (self.last_ttl.unwrap_or(DEFAULT_TTL) / 2).max(slowest * 3);
        self.unanswered_since
            .is_some_and(|t| now.saturating_duration_since(t) >= limit)
    }

    /// Called often: fence when the lease ran out.
    pub fn watchdog(&mut self, now: Instant) -> Vec<Effect> {
        if self.lease_until.is_some_and(|u| now >= u) {
            self.lease_until = None;
            return self.fence_if_needed();
        }
        Vec::new()
    }

    fn fence_if_needed(&mut self) -> Vec<Effect> {
        if self.promoted.is_some() && !self.fenced && !self.released {
            self.fenced = true;
            return vec![Effect::Fence];
        }
        Vec::new()
    }

    /// Give the lease back (service died, restart, demote).
    pub fn release(&mut self, reason: &str) -> Vec<Effect> {
        if self.released {
            return Vec::new();
        }
        let held = self.lease_until.is_some()
            || self.promoted == Some(self.told_epoch) && self.told_role == Role::Primary;
        self.released = true;
        self.lease_until = None;
        if held {
            vec![Effect::Release {
                epoch: self.told_epoch,
                reason: reason.to_string(),
            }]
        } else {
            Vec::new()
        }
    }

    /// The service is back (restart done): lease requests may resume.
    pub fn resume(&mut self) {
        self.released = false;
    }

    /// The promote hook finished. A `Promote` command is the controller's word that this host is
    /// primary at `epoch` (it persisted that before sending), so it may run ahead of the acks.
    pub fn promote_done(&mut self, epoch: Epoch, ok: bool) {
        if self.busy_with == "promote" {
            self.busy_with.clear();
        }
        if ok && epoch > self.told_epoch {
            self.told_epoch = epoch;
            self.told_role = Role::Primary;
        }
        if ok && epoch == self.told_epoch && self.told_role == Role::Primary {
            self.promoted = Some(epoch);
            self.fenced = false;
            self.released = false;
        }
    }

    pub fn demote_done(&mut self) {
        if self.busy_with == "demote" {
            self.busy_with.clear();
        }
        self.promoted = None;
        self.lease_until = None;
        self.fenced = false;
    }

    pub fn snapshot(&self, now: Instant) -> AgentRoleState {
        AgentRoleState {
            role: if self.fenced {
                Role::Fenced
            } else {
                self.told_role
            },
            epoch: self.told_epoch,
            lease_valid: self.lease_valid(now),
            lease_remaining_ms: self
                .lease_until
                .map(|u| {
                    u.saturating_duration_since(now)
                        .as_millis()
                        .min(u32::MAX as u128) as u32
                })
                .unwrap_or(0),
            fenced: self.fenced,
            promoted: self.promoted == Some(self.told_epoch) && self.told_role == Role::Primary,
            busy_with: self.busy_with.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary_with_lease(t0: Instant) -> RoleMachine {
        let mut m = RoleMachine::default();
        assert_eq!(
            m.told(Role::Primary, Epoch(1), None),
            vec![Effect::Promote(Epoch(1))]
        );
        m.promote_done(Epoch(1), true);
        let (id, e) = m.want_lease(t0).unwrap();
        m.lease_answer(id, e, Ok(2000));
        m
    }

    #[test]
    fn renewals_unanswered_for_half_the_ttl_stall_the_session() {
        let t0 = Instant::now();
        let mut m = primary_with_lease(t0);
        let ms = |n| t0 + Duration::from_millis(n);
        // answered renewals never stall, however long the session lives
        let (id, e) = m.want_lease(ms(250)).unwrap();
        m.lease_answer(id, e, Ok(2000));
        assert!(!m.lease_stalled(ms(5000)));
        // a slow answer is not a stall while a younger request is out
        let (slow, e) = m.want_lease(ms(500)).unwrap();
        m.want_lease(ms(750)).unwrap();
        m.lease_answer(slow, e, Ok(2000));
        assert!(!m.lease_stalled(ms(1700)));
        // nothing answered since 750 ms: half the 2 s ttl later, stalled
        m.want_lease(ms(1000)).unwrap();
        assert!(m.lease_stalled(ms(1750)));
        // a new session starts clean
        m.session_started();
        assert!(!m.lease_stalled(ms(1800)));
    }

    #[test]
    fn on_a_slow_network_a_stall_takes_three_round_trips() {
        let t0 = Instant::now();
        let mut m = primary_with_lease(t0);
        let ms = |n| t0 + Duration::from_millis(n);
        // answers take 800 ms
        let (id, e) = m.want_lease(ms(100)).unwrap();
        m.lease_answer_at(ms(900), id, e, Ok(2000));
        m.want_lease(ms(1000)).unwrap();
        assert!(
            !m.lease_stalled(ms(2000)),
            "1 s is not a stall at 800 ms a round trip"
        );
        assert!(m.lease_stalled(ms(3400)));
    }

    #[test]
    fn primary_serves_only_with_a_lease_measured_from_the_request() {
        let t0 = Instant::now();
        let mut m = RoleMachine::default();
        m.told(Role::Primary, Epoch(1), None);
        assert!(!m.serving_as_primary(t0), "not before the promote hook");
        m.promote_done(Epoch(1), true);
        assert!(!m.serving_as_primary(t0), "not before a lease");
        let (id, e) = m.want_lease(t0).unwrap();
        // the answer arrives late; the lease still counts from the request
        m.lease_answer(id, e, Ok(2000));
        assert!(m.serving_as_primary(t0 + Duration::from_millis(1999)));
        assert!(!m.serving_as_primary(t0 + Duration::from_millis(2000)));
    }

    #[test]
    fn an_expired_lease_fences_once_and_a_new_grant_re_promotes() {
        let t0 = Instant::now();
        let mut m = primary_with_lease(t0);
        assert!(m.watchdog(t0 + Duration::from_millis(1000)).is_empty());
        assert_eq!(
            m.watchdog(t0 + Duration::from_millis(2001)),
            vec![Effect::Fence]
        );
        assert!(
            m.watchdog(t0 + Duration::from_millis(3000)).is_empty(),
            "fence once"
        );
        assert_eq!(m.snapshot(t0).role, Role::Fenced);
        // still primary on record: asking again is allowed; a grant re-runs the promote hook
        let t1 = t0 + Duration::from_secs(4);
        let (id, e) = m.want_lease(t1).unwrap();
        assert_eq!(
            m.lease_answer(id, e, Ok(2000)),
            vec![Effect::Promote(Epoch(1))]
        );
        assert!(!m.serving_as_primary(t1));
        m.promote_done(Epoch(1), true);
        let (id, e) = m.want_lease(t1).unwrap();
        m.lease_answer(id, e, Ok(2000));
        assert!(m.serving_as_primary(t1 + Duration::from_millis(10)));
    }

    #[test]
    fn a_newer_epoch_with_another_primary_demotes_a_returning_old_primary() {
        let t0 = Instant::now();
        let mut m = primary_with_lease(t0);
        m.watchdog(t0 + Duration::from_secs(3));
        assert_eq!(m.told(Role::Replica, Epoch(2), None), vec![Effect::Demote]);
        m.demote_done();
        assert!(!m.serving_as_primary(t0 + Duration::from_secs(3)));
        assert_eq!(m.snapshot(t0).role, Role::Replica);
        assert!(m.want_lease(t0).is_none());
        // an old message about epoch 1 is ignored
        assert!(m.told(Role::Primary, Epoch(1), None).is_empty());
    }

    #[test]
    fn release_stops_serving_and_renewing_until_resumed() {
        let t0 = Instant::now();
        let mut m = primary_with_lease(t0);
        assert_eq!(
            m.release("service died"),
            vec![Effect::Release {
                epoch: Epoch(1),
                reason: "service died".into()
            }]
        );
        assert!(m.release("again").is_empty());
        assert!(!m.serving_as_primary(t0));
        assert!(m.want_lease(t0).is_none());
        assert!(
            m.watchdog(t0 + Duration::from_secs(5)).is_empty(),
            "released is not fenced"
        );
        m.resume();
        assert!(m.want_lease(t0).is_some());
    }

    #[test]
    fn a_promote_command_may_run_ahead_of_the_acks_and_clears_an_old_release() {
        let t0 = Instant::now();
        let mut m = RoleMachine::default();
        m.told(Role::Replica, Epoch(2), None);
        m.release("demoted at epoch 2");
        // the controller made us primary at epoch 4; its command arrives before any ack says so
        m.promote_done(Epoch(4), true);
        let (id, e) = m.want_lease(t0).expect("asks for the lease of epoch 4");
        assert_eq!(e, Epoch(4));
        m.lease_answer(id, e, Ok(2000));
        assert!(m.serving_as_primary(t0));
    }

    #[test]
    fn a_refused_renewal_fences() {
        let t0 = Instant::now();
        let mut m = primary_with_lease(t0);
        let (id, e) = m.want_lease(t0).unwrap();
        assert_eq!(
            m.lease_answer(id, e, Err("not the primary".into())),
            vec![Effect::Fence]
        );
        assert!(!m.serving_as_primary(t0));
    }
}
