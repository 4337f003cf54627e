//! Dials this node makes by configuration rather than discovery: static addresses (`--peer`,
//! brokers) and members dialled through a broker, with their back-off.

use std::time::{Duration, Instant};

use super::{ANTI_ENTROPY_EVERY, CIRCUIT_BACKOFF_MAX, PeerBook};

impl<K: Ord + Clone, A: Ord + Clone> PeerBook<K, A> {
    /// Which static addresses (`--peer`, brokers; each with the peer it names, if any) to
    /// dial: one naming a peer when that peer is neither connected nor blocked, the others
    /// when no peer at all is connected.
    pub fn static_dials<'a>(&self, statics: &'a [(A, Option<K>)]) -> Vec<&'a A> {
        let connected_any = self.any_connected();
        statics
            .iter()
            .filter(|(_, peer)| match peer {
                Some(id) => !self.is_connected(id) && !self.is_blocked(id),
                None => !connected_any,
            })
            .map(|(a, _)| a)
            .collect()
    }

    /// Whether a member may be dialled through a broker now (`target` not connected, not
    /// blocked, not waiting for its circuit back-off).
    pub fn circuit_due(&self, target: &K, now: Instant) -> bool {
        !self.is_connected(target)
            && !self.is_blocked(target)
            && self.circuits.get(target).is_none_or(|(t, _)| *t <= now)
    }

    /// A circuit dial to `target` started: it waits [`ANTI_ENTROPY_EVERY`] before the next,
    /// doubling while it stays unreachable, up to [`CIRCUIT_BACKOFF_MAX`]. Returns the wait.
    pub fn circuit_dialled(&mut self, target: K, now: Instant) -> Duration {
        let wait = self
            .circuits
            .get(&target)
            .map_or(ANTI_ENTROPY_EVERY, |(_, w)| {
                (*w * 2).min(CIRCUIT_BACKOFF_MAX)
            });
        self.circuits.insert(target, (now + wait, wait));
        wait
    }

    /// A fresh presence record of `target` came: its circuit dial need not wait for the
    /// back-off (the record may name a new reservation).
    pub fn circuit_reset(&mut self, target: &K) {
        self.circuits.remove(target);
    }
}
