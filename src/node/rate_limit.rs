//! Rate limits: a token bucket per (sender, channel), for this device's own alerts and for
//! live traffic from members. Bounded in memory; never refuses on its own (the callers do).

use std::collections::HashMap;

use super::{DIRECT_CHANNEL, MAX_BUCKETS, Node};
use crate::cert::ChannelPolicy;

/// A token bucket per (sender, channel).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    at_us: u64,
}

impl Bucket {
    /// Tokens refilled up to `now_us`.
    fn tokens_at(&self, p: &ChannelPolicy, now_us: u64) -> f64 {
        let per_us = f64::from(p.rate_per_min) / 60e6;
        let elapsed = now_us.saturating_sub(self.at_us) as f64;
        (self.tokens + elapsed * per_us).min(f64::from(p.burst.max(1)))
    }

    /// Whether a token is there at `now_us` (nothing taken).
    fn has_token(&self, p: &ChannelPolicy, now_us: u64) -> bool {
        self.tokens_at(p, now_us) >= 1.0
    }

    /// Takes one token at `now_us`; `Err(µs until one is back)` when empty.
    fn take(&mut self, p: &ChannelPolicy, now_us: u64) -> Result<(), u64> {
        let per_us = f64::from(p.rate_per_min) / 60e6;
        self.tokens = self.tokens_at(p, now_us);
        self.at_us = self.at_us.max(now_us);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_us).ceil() as u64)
        }
    }
}

/// Whether the bucket of `key` has a token at `now_us` under `p` (nothing taken).
pub(super) fn has_token(
    buckets: &HashMap<(u32, u32), Bucket>,
    key: (u32, u32),
    p: &ChannelPolicy,
    now_us: u64,
) -> bool {
    buckets.get(&key).is_none_or(|b| b.has_token(p, now_us))
}

/// Takes a token from the bucket of `key` under `p` at `now_us` (a new bucket starts full);
/// `Err(µs until one is back)`. At [`MAX_BUCKETS`] buckets, the full ones are forgotten first.
pub(super) fn take_token(
    buckets: &mut HashMap<(u32, u32), Bucket>,
    key: (u32, u32),
    p: &ChannelPolicy,
    now_us: u64,
) -> Result<(), u64> {
    if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
        // Forget the buckets that have refilled: they constrain nothing.
        let cap = f64::from(p.burst.max(1));
        buckets.retain(|_, b| b.tokens_at(p, now_us) < cap);
        if buckets.len() >= MAX_BUCKETS {
            buckets.clear();
        }
    }
    buckets
        .entry(key)
        .or_insert(Bucket {
            tokens: f64::from(p.burst.max(1)),
            at_us: now_us,
        })
        .take(p, now_us)
}

/// Signed envelopes of one sender that do not open (`decrypt`) or open to no alert
/// (`bad_plaintext`), on any path and channel: ten, then one every six seconds. Only the
/// sender can cause them (a forgery fails at the signature first), and each costs this node a
/// signature, a key derivation and a decryption; past the budget the sender's envelopes are
/// refused before the signature until it refills. Honest senders never spend it.
pub const FAULT_POLICY: ChannelPolicy = ChannelPolicy {
    rate_per_min: 10,
    burst: 10,
    rotate_secs: 0,
};

impl Node {
    /// Whether `sender` has faults left in its budget at `now_us` (nothing taken).
    pub(super) fn has_fault_budget(&self, sender: u32, now_us: u64) -> bool {
        has_token(&self.fault_buckets, (sender, 0), &FAULT_POLICY, now_us)
    }

    /// Charges `sender` one fault at `now_us`.
    pub(super) fn charge_fault(&mut self, sender: u32, now_us: u64) {
        let _ = take_token(&mut self.fault_buckets, (sender, 0), &FAULT_POLICY, now_us);
    }

    /// The rate policy of a channel (directed messages: the default).
    fn rate_policy(&self, channel: u32) -> ChannelPolicy {
        if crate::receipt::is_receipt_channel(channel) {
            super::RECEIPT_POLICY
        } else if channel == DIRECT_CHANNEL {
            ChannelPolicy::default()
        } else {
            self.descriptor.policy(channel)
        }
    }

    /// Whether the (sender, channel) budget has an alert left at `now_us` (nothing taken).
    pub(super) fn has_budget(&self, sender: u32, channel: u32, now_us: u64) -> bool {
        let p = self.rate_policy(channel);
        p.rate_per_min == 0 || has_token(&self.buckets, (sender, channel), &p, now_us)
    }

    /// Takes one alert from the (sender, channel) budget at `now_us`; `Err(µs to wait)`.
    pub(super) fn take_budget(
        &mut self,
        sender: u32,
        channel: u32,
        now_us: u64,
    ) -> Result<(), u64> {
        let p = self.rate_policy(channel);
        if p.rate_per_min == 0 {
            return Ok(());
        }
        take_token(&mut self.buckets, (sender, channel), &p, now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One alert a second, two at once.
    const P: ChannelPolicy = ChannelPolicy {
        rate_per_min: 60,
        burst: 2,
        rotate_secs: 0,
    };
    const SECOND: u64 = 1_000_000;

    #[test]
    fn a_new_bucket_starts_full_and_an_empty_one_says_when_a_token_is_back() {
        let mut b = HashMap::new();
        assert!(take_token(&mut b, (1, 1), &P, 0).is_ok());
        assert!(take_token(&mut b, (1, 1), &P, 0).is_ok());
        assert!(!has_token(&b, (1, 1), &P, 0));
        assert_eq!(take_token(&mut b, (1, 1), &P, SECOND / 2), Err(SECOND / 2));
        assert!(has_token(&b, (1, 1), &P, SECOND));
        assert!(take_token(&mut b, (1, 1), &P, SECOND).is_ok());
        // Another sender, or another channel, has a budget of its own.
        assert!(has_token(&b, (2, 1), &P, SECOND));
        assert!(has_token(&b, (1, 2), &P, SECOND));
    }

    #[test]
    fn a_full_table_forgets_refilled_buckets_and_keeps_spent_ones() {
        let mut b = HashMap::new();
        // A flooding sender spends its whole burst; every other bucket spends one token.
        take_token(&mut b, (0, 0), &P, 0).unwrap();
        take_token(&mut b, (0, 0), &P, 0).unwrap();
        for i in 1..MAX_BUCKETS as u32 {
            take_token(&mut b, (i, 1), &P, 0).unwrap();
        }
        assert_eq!(b.len(), MAX_BUCKETS);
        // A second later the others are full again, the flooder has one token back.
        take_token(&mut b, (u32::MAX, 1), &P, SECOND).unwrap();
        assert_eq!(b.len(), 2);
        assert!(take_token(&mut b, (0, 0), &P, SECOND).is_ok());
        assert!(take_token(&mut b, (0, 0), &P, SECOND).is_err());
    }
}
