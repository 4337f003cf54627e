//! Forgeries on the plane in an honest sender's name (sans-IO).
//!
//! The plane key authenticates only "some member" ([`super`]): any holder of it (a relay-only
//! member, or a revoked one during the epoch's overlap) can seal datagrams whose envelope names
//! another member as its sender and carries a bad signature. Each costs a receiver a signature
//! check, and nobody can be charged: the plane has no accountable forwarder, and the budget of
//! the sender named is not spent by a forgery. This tracker counts signatures that failed per
//! sender named; past [`LIMIT`] within [`WINDOW_US`], that sender's plane datagrams are dropped
//! unverified for [`SUSPEND_US`] (its messages reach the node by gossip meanwhile: the daemon
//! takes it out of the heard set).

use std::collections::HashMap;

/// Failed signatures in one sender's name that suspend it.
pub const LIMIT: u32 = 8;
/// The window they are counted in.
pub const WINDOW_US: u64 = 10_000_000;
/// How long a suspension lasts.
pub const SUSPEND_US: u64 = 30_000_000;
/// Senders tracked at most (a forger can name any device number).
pub const MAX_TRACKED: usize = 1024;

/// Per sender named: failures in the current window, or a suspension.
#[derive(Debug, Default)]
pub struct Forgeries {
    /// sender → (window start, failures in it)
    counts: HashMap<u32, (u64, u32)>,
    /// sender → suspended until
    suspended: HashMap<u32, u64>,
}

impl Forgeries {
    /// Whether `sender`'s plane datagrams are suspended at `now_us`.
    pub fn is_suspended(&self, sender: u32, now_us: u64) -> bool {
        self.suspended
            .get(&sender)
            .is_some_and(|until| now_us < *until)
    }

    /// A plane datagram naming `sender` failed its signature at `now_us`; true when this
    /// suspends the sender (once per suspension).
    pub fn failed(&mut self, sender: u32, now_us: u64) -> bool {
        self.suspended.retain(|_, until| now_us < *until);
        if self.is_suspended(sender, now_us) {
            return false;
        }
        if self.counts.len() >= MAX_TRACKED && !self.counts.contains_key(&sender) {
            self.counts
                .retain(|_, (start, _)| now_us.saturating_sub(*start) < WINDOW_US);
            if self.counts.len() >= MAX_TRACKED {
                self.counts.clear();
            }
        }
        let (start, n) = self.counts.entry(sender).or_insert((now_us, 0));
        if now_us.saturating_sub(*start) >= WINDOW_US {
            *start = now_us;
            *n = 0;
        }
        *n += 1;
        if *n < LIMIT {
            return false;
        }
        self.counts.remove(&sender);
        self.suspended.insert(sender, now_us + SUSPEND_US);
        true
    }

    /// Senders suspended now.
    pub fn suspended(&self, now_us: u64) -> usize {
        self.suspended.values().filter(|u| now_us < **u).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_is_suspended_after_the_limit_within_the_window_then_restored() {
        let mut f = Forgeries::default();
        for i in 0..LIMIT - 1 {
            assert!(!f.failed(7, u64::from(i) * 1000));
        }
        assert!(!f.is_suspended(7, 10_000));
        assert!(f.failed(7, 10_000), "the limit suspends");
        assert!(f.is_suspended(7, 10_001));
        assert!(!f.is_suspended(8, 10_001), "only the sender named");
        // Failures while suspended do not extend it.
        assert!(!f.failed(7, 20_000));
        assert!(!f.is_suspended(7, 10_000 + SUSPEND_US));
        assert_eq!(f.suspended(10_000 + SUSPEND_US), 0);
    }

    #[test]
    fn failures_spread_beyond_the_window_never_suspend() {
        let mut f = Forgeries::default();
        for i in 0..10 * u64::from(LIMIT) {
            assert!(!f.failed(7, i * (WINDOW_US / u64::from(LIMIT - 1) + 1)));
        }
        assert!(!f.is_suspended(7, 100 * WINDOW_US));
    }

    #[test]
    fn naming_many_senders_is_bounded() {
        let mut f = Forgeries::default();
        for s in 0..(3 * MAX_TRACKED as u32) {
            f.failed(s, 0);
        }
        assert!(f.counts.len() <= MAX_TRACKED);
    }
}
