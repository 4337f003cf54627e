//! The order of domain updates: [`PendingUpdates`] holds verified updates that arrived
//! before the one they follow (at most [`MAX_PENDING_UPDATES`]) and releases them in order
//! once it came; [`HeldUpdates`] keeps the applied ones to pass on to members that are behind,
//! and which of those pushes are in flight.
//!
//! Whether an update applies is the node's decision (its signature, the revision it
//! requires): the caller passes it in as a closure. Nothing here decodes, stores or sends.

use std::collections::BTreeMap;

use super::MAX_PENDING_UPDATES;

/// What the node made of one held update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken<T> {
    /// Applied: the node is now at its serial.
    Applied(T),
    /// Still ahead of a missing one: held again.
    Gap,
    /// Refused (or stale): dropped.
    Refused,
}

/// Updates that arrived ahead of a missing one, by serial.
#[derive(Debug, Clone, Default)]
pub struct PendingUpdates {
    held: BTreeMap<u64, Vec<u8>>,
}

impl PendingUpdates {
    /// Holds a verified update that the node found ahead of a missing one (`UpdateError::Gap`).
    /// False when [`MAX_PENDING_UPDATES`] are held already (it is dropped: the sender pushes
    /// it again at the next anti-entropy round).
    pub fn hold(&mut self, serial: u64, bytes: Vec<u8>) -> bool {
        if self.held.len() >= MAX_PENDING_UPDATES {
            return false;
        }
        // A duplicate replaces the copy held: the same serial from the same authority.
        self.held.insert(serial, bytes);
        true
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The serials held, in order.
    pub fn serials(&self) -> impl Iterator<Item = u64> + '_ {
        self.held.keys().copied()
    }

    /// After the node applied an update and is at `revision`: offers the held updates to
    /// `apply`, lowest serial first, until none applies. Those at or below the revision are
    /// dropped (duplicates, or skipped by a later one); after each one applied the scan
    /// starts again from the lowest, since it may have been waiting for that one. Returns
    /// what `apply` returned for each applied update, with its bytes, in the order applied.
    pub fn release<T>(
        &mut self,
        mut revision: u64,
        mut apply: impl FnMut(u64, &[u8]) -> Taken<T>,
    ) -> Vec<(T, Vec<u8>)> {
        let mut out = vec![];
        loop {
            self.held.retain(|s, _| *s > revision);
            let mut applied_one = false;
            let serials: Vec<u64> = self.held.keys().copied().collect();
            for s in serials {
                let Some(next) = self.held.remove(&s) else {
                    continue;
                };
                match apply(s, &next) {
                    Taken::Applied(t) => {
                        revision = s;
                        out.push((t, next));
                        applied_one = true;
                        break;
                    }
                    Taken::Gap => {
                        self.held.insert(s, next);
                    }
                    Taken::Refused => {}
                }
            }
            if !applied_one {
                return out;
            }
        }
    }
}

/// Applied updates kept to pass on (by serial, with when this node received them, in
/// seconds since the Unix epoch), and the pushes of them in flight, keyed by the request `R`
/// that carries each to a peer `K`.
#[derive(Debug, Clone)]
pub struct HeldUpdates<K, R> {
    updates: BTreeMap<u64, (u64, Vec<u8>)>,
    in_flight: BTreeMap<R, (K, u64)>,
}

impl<K, R> Default for HeldUpdates<K, R> {
    fn default() -> Self {
        HeldUpdates {
            updates: BTreeMap::new(),
            in_flight: BTreeMap::new(),
        }
    }
}

impl<K: Clone + PartialEq, R: Ord> HeldUpdates<K, R> {
    /// Starts from the updates the store kept.
    pub fn new(updates: BTreeMap<u64, (u64, Vec<u8>)>) -> Self {
        HeldUpdates {
            updates,
            in_flight: BTreeMap::new(),
        }
    }

    /// Keeps an applied update (received at `received_s`).
    pub fn insert(&mut self, serial: u64, received_s: u64, bytes: Vec<u8>) {
        self.updates.insert(serial, (received_s, bytes));
    }

    /// The updates after `revision` that `peer` lacks and that are not already on their way
    /// to it: send each, then [`HeldUpdates::sent`] with its request.
    pub fn missing(&self, peer: &K, revision: u64) -> Vec<(u64, Vec<u8>)> {
        self.updates
            .range(revision.saturating_add(1)..)
            .filter(|(s, _)| !self.in_flight.values().any(|(p, f)| p == peer && f == *s))
            .map(|(s, (_, b))| (*s, b.clone()))
            .collect()
    }

    /// Update `serial` left for `peer` in `request`.
    pub fn sent(&mut self, request: R, peer: K, serial: u64) {
        self.in_flight.insert(request, (peer, serial));
    }

    /// A request ended (answered or failed): the peer and serial it carried, if it was an
    /// update push. On an answer the peer holds that revision
    /// ([`PeerBook::acknowledged`](super::PeerBook::acknowledged)).
    pub fn done(&mut self, request: &R) -> Option<(K, u64)> {
        self.in_flight.remove(request)
    }

    /// Drops the updates received before `before_s` (their sealed keys are at least as old as
    /// the retention window); returns their serials, for the store to drop too.
    pub fn forget_before(&mut self, before_s: u64) -> Vec<u64> {
        let old: Vec<u64> = self
            .updates
            .iter()
            .filter(|(_, (received, _))| *received < before_s)
            .map(|(s, _)| *s)
            .collect();
        for s in &old {
            self.updates.remove(s);
        }
        old
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.updates.len()
    }

    /// None kept.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that applies update `s` when it holds `s - 1` (each requires the one before).
    fn chain(rev: &mut u64) -> impl FnMut(u64, &[u8]) -> Taken<u64> + '_ {
        move |s, _| {
            if s == *rev + 1 {
                *rev = s;
                Taken::Applied(s)
            } else {
                Taken::Gap
            }
        }
    }

    #[test]
    fn out_of_order_updates_apply_in_order() {
        let mut p = PendingUpdates::default();
        // 4, 2, 3 arrive before 1.
        for s in [4, 2, 3] {
            assert!(p.hold(s, vec![s as u8]));
        }
        let mut rev = 1; // 1 arrived and was applied
        let out = p.release(1, chain(&mut rev));
        assert_eq!(out.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(out[0].1, vec![2]);
        assert_eq!(rev, 4);
        assert!(p.is_empty());
    }

    #[test]
    fn a_gap_stays_held_and_duplicates_are_dropped() {
        let mut p = PendingUpdates::default();
        p.hold(3, vec![3]);
        p.hold(3, vec![3]);
        p.hold(6, vec![6]);
        p.hold(2, vec![2]);
        assert_eq!(p.len(), 3, "a duplicate is held once");
        let mut rev = 2; // 2 applied from elsewhere: the held copy is stale
        let out = p.release(2, chain(&mut rev));
        assert_eq!(out.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3]);
        assert_eq!(p.serials().collect::<Vec<_>>(), [6], "5 is still missing");
    }

    #[test]
    fn a_refused_held_update_is_dropped() {
        let mut p = PendingUpdates::default();
        p.hold(2, vec![2]);
        p.hold(3, vec![3]);
        let out = p.release(1, |s, _| {
            if s == 2 {
                Taken::<()>::Refused
            } else {
                Taken::Gap
            }
        });
        assert!(out.is_empty());
        assert_eq!(p.serials().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn pending_updates_are_bounded() {
        let mut p = PendingUpdates::default();
        for s in 0..MAX_PENDING_UPDATES as u64 {
            assert!(p.hold(s + 10, vec![]));
        }
        assert!(!p.hold(5, vec![]));
        assert_eq!(p.len(), MAX_PENDING_UPDATES);
    }

    #[test]
    fn missing_updates_skip_those_in_flight() {
        let mut h = HeldUpdates::<u32, u64>::default();
        for s in 1..=4 {
            h.insert(s, 100 + s, vec![s as u8]);
        }
        let serials = |v: Vec<(u64, Vec<u8>)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(serials(h.missing(&7, 2)), [3, 4]);
        h.sent(1000, 7, 3);
        assert_eq!(serials(h.missing(&7, 2)), [4]);
        assert_eq!(
            serials(h.missing(&8, 2)),
            [3, 4],
            "in flight to another peer"
        );
        assert_eq!(h.done(&1000), Some((7, 3)));
        assert_eq!(h.done(&1000), None);
        assert_eq!(serials(h.missing(&7, 2)), [3, 4], "lost pushes go again");
        assert_eq!(serials(h.missing(&7, u64::MAX)), Vec::<u64>::new());
        assert_eq!(h.forget_before(103), [1, 2]);
        assert_eq!(h.len(), 2);
    }
}
