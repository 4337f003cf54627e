//! Per-sender memory of accepted sequence numbers: a replay is refused, a late alert is not.
//!
//! Sequence numbers are strictly increasing per sender but not dense (they follow the
//! sender's clock), so each sender has a set of seen numbers above a floor. Everything at or
//! below the floor counts as seen. The set is bounded: when it is full the lowest entry is
//! dropped and the floor rises to it. Decisions never depend on the receiver's clock.

use std::collections::{BTreeSet, HashMap};

/// Why a sequence number is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ReplayError {
    /// This exact (sender, seq) was accepted before.
    #[error("replay of an alert already accepted")]
    Duplicate,
    /// At or below the sender's floor: too old to tell, so refused.
    #[error("older than anything still remembered for this sender")]
    TooOld,
}

#[derive(Debug, Default, Clone)]
struct Window {
    floor: u64,
    seen: BTreeSet<u64>,
}

/// Replay state of all senders.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    senders: HashMap<u32, Window>,
    per_sender: usize,
}

impl ReplayGuard {
    /// Remembers up to `per_sender` sequence numbers above each sender's floor.
    pub fn new(per_sender: usize) -> Self {
        ReplayGuard {
            senders: HashMap::new(),
            per_sender: per_sender.max(1),
        }
    }

    /// Whether `seq` from `sender` would be new.
    pub fn check(&self, sender: u32, seq: u64) -> Result<(), ReplayError> {
        match self.senders.get(&sender) {
            None => Ok(()),
            Some(w) if seq <= w.floor => Err(ReplayError::TooOld),
            Some(w) if w.seen.contains(&seq) => Err(ReplayError::Duplicate),
            Some(_) => Ok(()),
        }
    }

    /// Records `seq` as accepted; returns the error [`ReplayGuard::check`] would give.
    pub fn insert(&mut self, sender: u32, seq: u64) -> Result<(), ReplayError> {
        self.check(sender, seq)?;
        let w = self.senders.entry(sender).or_default();
        w.seen.insert(seq);
        while w.seen.len() > self.per_sender {
            if let Some(low) = w.seen.pop_first() {
                w.floor = w.floor.max(low);
            }
        }
        Ok(())
    }

    /// Raises a sender's floor (restored from storage, or when old entries expire).
    pub fn raise_floor(&mut self, sender: u32, floor: u64) {
        let w = self.senders.entry(sender).or_default();
        if floor > w.floor {
            w.floor = floor;
            w.seen = w.seen.split_off(&floor.saturating_add(1));
        }
    }

    /// The floor of a sender (0 when unknown).
    pub fn floor(&self, sender: u32) -> u64 {
        self.senders.get(&sender).map_or(0, |w| w.floor)
    }

    /// The highest accepted sequence number of a sender.
    pub fn highest(&self, sender: u32) -> Option<u64> {
        let w = self.senders.get(&sender)?;
        w.seen.last().copied().or((w.floor > 0).then_some(w.floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_and_old_are_refused_late_is_accepted() {
        let mut g = ReplayGuard::new(3);
        assert_eq!(g.insert(1, 10), Ok(()));
        assert_eq!(g.insert(1, 30), Ok(()));
        assert_eq!(g.insert(1, 10), Err(ReplayError::Duplicate));
        // A late alert (below the highest, never seen) is fine.
        assert_eq!(g.insert(1, 20), Ok(()));
        // Other senders are independent.
        assert_eq!(g.insert(2, 10), Ok(()));
        // Over the bound, the lowest goes and the floor rises to it.
        assert_eq!(g.insert(1, 40), Ok(()));
        assert_eq!(g.floor(1), 10);
        assert_eq!(g.check(1, 5), Err(ReplayError::TooOld));
        assert_eq!(g.check(1, 10), Err(ReplayError::TooOld));
        assert_eq!(g.check(1, 15), Ok(()));
        assert_eq!(g.highest(1), Some(40));
    }

    #[test]
    fn raised_floor_drops_what_is_below() {
        let mut g = ReplayGuard::new(100);
        for s in [5, 6, 7, 100] {
            g.insert(9, s).unwrap();
        }
        g.raise_floor(9, 7);
        assert_eq!(g.check(9, 6), Err(ReplayError::TooOld));
        assert_eq!(g.check(9, 100), Err(ReplayError::Duplicate));
        assert_eq!(g.check(9, 50), Ok(()));
    }

    proptest! {
        #[test]
        fn nothing_is_accepted_twice(seqs in proptest::collection::vec(0u64..200, 0..400), cap in 1usize..50) {
            let mut g = ReplayGuard::new(cap);
            let mut accepted = std::collections::HashSet::new();
            for s in seqs {
                if g.insert(1, s).is_ok() {
                    prop_assert!(accepted.insert(s), "accepted {} twice", s);
                }
            }
        }
    }
}
