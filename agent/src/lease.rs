//! The primary's lease: renew every `lease.renew_interval_ms` while the controller names this
//! host primary (and the promote hook ran), and fence as soon as the lease runs out. The watchdog
//! runs on its own timer, independent of the controller connection: an isolated primary fences
//! itself on time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_proto::domain::{AgentMessage, LeaseRequest};
use tokio_util::sync::CancellationToken;

use crate::state::AgentState;

/// Send a lease request now if this host should hold one.
pub fn renew_now(state: &AgentState) {
    let Some((request_id, epoch)) = state.with_role(|m| (m.want_lease(Instant::now()), Vec::new()))
    else {
        return;
    };
    state.send(AgentMessage::LeaseRequest(LeaseRequest { request_id, epoch }).into());
}

pub async fn run(state: Arc<AgentState>, renew: Duration, shutdown: CancellationToken) {
    let mut renew_tick = tokio::time::interval(renew);
    renew_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `/primary` checks the lease on every request, so it stops answering 200 exactly at expiry;
    // the watchdog only has to run the fence hook soon after.
    let mut watch_tick = tokio::time::interval(Duration::from_millis(100));
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = renew_tick.tick() => renew_now(&state),
            _ = watch_tick.tick() => {
                state.with_role(|m| ((), m.watchdog(Instant::now())));
            }
        }
    }
}
