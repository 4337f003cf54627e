//! Liveness, the peer book's part (proto/network.md, "Liveness"): ping results, and liveness
//! by evidence: when a connected member was last heard from, which quiet member to probe, and
//! when its probes have failed often enough to close its connection. The daemon's `liveness`
//! room sends the probes.

use std::time::{Duration, Instant};

use super::{PeerBook, Ping};
#[cfg(doc)]
use crate::mesh::QUIET_BEFORE_PROBE;
use crate::mesh::{MAX_PING_FAILURES, MAX_PROBE_FAILURES, PROBE_EVERY};

impl<K: Ord + Clone, A: Ord + Clone> PeerBook<K, A> {
    /// A ping result: true when the connection is to be closed (it stopped answering).
    pub fn ping(&mut self, peer: &K, result: Ping) -> bool {
        let Some(st) = self.peers.get_mut(peer) else {
            return false;
        };
        match result {
            Ping::Ok => st.ping_failures = 0,
            Ping::Unsupported => {}
            Ping::Failed(e) => {
                st.ping_failures = st.ping_failures.saturating_add(1);
                if st.ping_failures >= MAX_PING_FAILURES {
                    st.last_error = Some(format!("ping: {e}"));
                    st.ping_failures = 0;
                    return true;
                }
            }
        }
        false
    }

    /// Something from `peer` arrived on its connection (a verified plane beacon, a gossip
    /// message, a request or an answer, a ping): it is alive, no probe is needed for a while.
    pub fn heard(&mut self, peer: &K, now: Instant) {
        if let Some(st) = self.peers.get_mut(peer).filter(|s| s.connections > 0) {
            st.last_heard = Some(now);
            st.probe_failures = 0;
        }
    }

    /// The connected, authenticated peers to probe now: heard from for nothing for
    /// `quiet_before(peer)` (counted from the connection when nothing came yet), no probe in
    /// flight, none sent in the last [`PROBE_EVERY`]. Each is marked probed; the caller
    /// sends the probes and reports with [`PeerBook::probe_answered`] or
    /// [`PeerBook::probe_failed`]. `quiet_before` is [`QUIET_BEFORE_PROBE`] for most peers;
    /// the daemon shortens it for a device the watchdog must hear more often.
    pub fn probes_due(&mut self, now: Instant, quiet_before: impl Fn(&K) -> Duration) -> Vec<K> {
        let mut due = vec![];
        for (k, st) in self.peers.iter_mut() {
            if !(st.authenticated && st.connections > 0) || st.probe_in_flight {
                continue;
            }
            let Some(since) = st.last_heard.or(st.connected_at) else {
                continue;
            };
            let quiet = now.saturating_duration_since(since) >= quiet_before(k);
            let spaced = st
                .probed_at
                .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_EVERY);
            if quiet && spaced {
                st.probed_at = Some(now);
                st.probe_in_flight = true;
                due.push(k.clone());
            }
        }
        due
    }

    /// A probe was answered (any answer: the peer's loop runs).
    pub fn probe_answered(&mut self, peer: &K, now: Instant) {
        if let Some(st) = self.peers.get_mut(peer) {
            st.probe_in_flight = false;
        }
        self.heard(peer, now);
    }

    /// A probe went unanswered: true when the connection is to be closed
    /// ([`MAX_PROBE_FAILURES`] in a row without anything heard in between).
    pub fn probe_failed(&mut self, peer: &K, why: &str) -> bool {
        let Some(st) = self.peers.get_mut(peer) else {
            return false;
        };
        st.probe_in_flight = false;
        if st.connections == 0 {
            return false;
        }
        st.probe_failures = st.probe_failures.saturating_add(1);
        if st.probe_failures >= MAX_PROBE_FAILURES {
            st.probe_failures = 0;
            st.last_error = Some(format!(
                "silent, {MAX_PROBE_FAILURES} probes unanswered: {why}"
            ));
            return true;
        }
        false
    }
}
