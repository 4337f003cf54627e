//! Catch-up: reconciling two nodes' logs of envelopes, free of I/O.
//!
//! Sequence numbers are sparse (they follow the sender's clock), so logs are compared as sets
//! of ids `(sender, seq)`, bucketed by sender and by `seq >> BUCKET_SHIFT` (about 18 minutes of
//! the sender's clock). Each bucket is summarised by its count and the XOR of a 64-bit
//! fingerprint per id, maintained incrementally. A requester sends the summaries of its
//! buckets at or after a cutoff; the responder answers with every id it holds in buckets that
//! differ; the requester fetches the ids it lacks. In a steady state the exchange is one
//! digest and an empty diff. `proto/sync.md` specifies the messages.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An envelope id: sender device number and sequence number.
pub type Id = (u32, u64);
/// Where an envelope sits in the index: channel, sender, sequence number.
pub type Key = (u32, u32, u64);

/// Bucket width: `2^30` µs, about 17.9 minutes.
pub const BUCKET_SHIFT: u32 = 30;
/// Most keys in one diff reply.
pub const MAX_DIFF_IDS: usize = 8192;
/// Most ids in one fetch request.
pub const MAX_FETCH_IDS: usize = 256;
/// Most buckets in one digest (a requester with more sends the newest; a responder reads no
/// more).
pub const MAX_DIGEST_BUCKETS: usize = 4096;
/// Channels one digest names at most (a decoding bound: a domain's descriptor of at most
/// 64 KiB lists fewer).
pub const MAX_DIGEST_CHANNELS: usize = 8192;

/// Label of the id fingerprint.
pub const LABEL_SYNC_FP: &[u8] = b"ptt-node/v1/sync-fingerprint";

/// The bucket of a sequence number.
pub fn bucket_of(seq: u64) -> u32 {
    u32::try_from(seq >> BUCKET_SHIFT).unwrap_or(u32::MAX)
}

/// The 64-bit fingerprint of an id: first 8 bytes (big-endian) of
/// SHA-256(LABEL_SYNC_FP ‖ sender u32 BE ‖ seq u64 BE).
pub fn fingerprint(id: Id) -> u64 {
    let mut h = Sha256::new();
    h.update(LABEL_SYNC_FP);
    h.update(id.0.to_be_bytes());
    h.update(id.1.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The summary of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSummary {
    /// Channel number.
    pub channel: u32,
    /// Sender device number.
    pub sender: u32,
    /// Bucket number (`seq >> BUCKET_SHIFT`).
    pub bucket: u32,
    /// Ids in the bucket.
    pub count: u32,
    /// XOR of the ids' fingerprints.
    pub fingerprint: u64,
}

/// Keys the responder holds in buckets that differ from the requester's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// The keys, ascending (at most [`MAX_DIFF_IDS`]).
    #[serde(deserialize_with = "crate::wire::bounded::<MAX_DIFF_IDS, _, _>")]
    pub keys: Vec<Key>,
    /// More differing keys exist than fitted: sync again after fetching these.
    pub more: bool,
}

/// The set of envelopes a node holds, with per-(channel, sender, bucket) summaries kept up
/// to date.
#[derive(Debug, Clone, Default)]
pub struct Index {
    keys: BTreeSet<Key>,
    have: HashSet<Id>,
    buckets: BTreeMap<(u32, u32, u32), (u32, u64)>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an envelope; false if its id was present.
    pub fn insert(&mut self, channel: u32, id: Id) -> bool {
        if !self.have.insert(id) {
            return false;
        }
        self.keys.insert((channel, id.0, id.1));
        let b = self
            .buckets
            .entry((channel, id.0, bucket_of(id.1)))
            .or_insert((0, 0));
        b.0 += 1;
        b.1 ^= fingerprint(id);
        true
    }

    /// Removes an envelope; false if it was absent.
    pub fn remove(&mut self, channel: u32, id: Id) -> bool {
        if !self.keys.remove(&(channel, id.0, id.1)) {
            return false;
        }
        self.have.remove(&id);
        let key = (channel, id.0, bucket_of(id.1));
        if let Some(b) = self.buckets.get_mut(&key) {
            b.0 -= 1;
            b.1 ^= fingerprint(id);
            if b.0 == 0 {
                self.buckets.remove(&key);
            }
        }
        true
    }

    /// Envelopes on channels numbered `first` and above (the receipts: [`crate::receipt`]).
    pub fn count_from_channel(&self, first: u32) -> usize {
        self.keys.range((first, 0, 0)..).count()
    }

    /// Whether the id is present.
    pub fn contains(&self, id: Id) -> bool {
        self.have.contains(&id)
    }

    /// Number of envelopes.
    pub fn len(&self) -> usize {
        self.have.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.have.is_empty()
    }

    /// Summaries of the buckets of `channels` at or after the bucket of `cutoff`, and the
    /// cutoff they cover. With more than [`MAX_DIGEST_BUCKETS`], the newest that fit are
    /// summarised and the cutoff is raised to the oldest bucket number among them: the
    /// responder then compares only from there (listing the keys of that one bucket number's
    /// pairs left out), instead of offering every key of every older bucket it was not told
    /// about (each session paging through the whole older log).
    pub fn digest(&self, cutoff: u64, channels: &[u32]) -> (u64, Vec<BucketSummary>) {
        let first = bucket_of(cutoff);
        let mut v: Vec<BucketSummary> = self
            .buckets
            .iter()
            .filter(|((c, _, b), _)| *b >= first && channels.contains(c))
            .map(
                |(&(channel, sender, bucket), &(count, fingerprint))| BucketSummary {
                    channel,
                    sender,
                    bucket,
                    count,
                    fingerprint,
                },
            )
            .collect();
        if v.len() <= MAX_DIGEST_BUCKETS {
            return (cutoff, v);
        }
        v.sort_by_key(|b| std::cmp::Reverse(b.bucket));
        v.truncate(MAX_DIGEST_BUCKETS);
        // The oldest bucket number kept may be cut in two (some of its pairs fit, some not):
        // the responder lists the keys of those left out, at most one bucket number's worth.
        // It is kept, not dropped, so that a digest is never empty, even with more pairs
        // than fit in the newest bucket number alone.
        let oldest = v.last().map_or(0, |b| b.bucket);
        v.sort_by_key(|b| (b.channel, b.sender, b.bucket));
        let raised = u64::from(oldest) << BUCKET_SHIFT;
        (raised.max(cutoff), v)
    }

    /// The responder's side: every key held, on `channels`, in a bucket (at or after the
    /// cutoff) that the requester summarised differently or not at all, ascending, after
    /// `after` (where the previous reply stopped), at most `limit`.
    pub fn diff(
        &self,
        theirs: &[BucketSummary],
        cutoff: u64,
        channels: &[u32],
        after: Option<Key>,
        limit: usize,
    ) -> Diff {
        let first = bucket_of(cutoff);
        let theirs: BTreeMap<(u32, u32, u32), (u32, u64)> = theirs
            .iter()
            .take(MAX_DIGEST_BUCKETS)
            .map(|s| ((s.channel, s.sender, s.bucket), (s.count, s.fingerprint)))
            .collect();
        let mut out = Diff::default();
        for (&(channel, sender, bucket), mine) in self
            .buckets
            .iter()
            .filter(|((c, _, b), _)| *b >= first && channels.contains(c))
        {
            if theirs.get(&(channel, sender, bucket)) == Some(mine) {
                continue;
            }
            let lo = (channel, sender, u64::from(bucket) << BUCKET_SHIFT);
            let hi = (
                channel,
                sender,
                ((u64::from(bucket) + 1) << BUCKET_SHIFT).saturating_sub(1),
            );
            for key in self.keys.range(lo..=hi) {
                if after.is_some_and(|a| *key <= a) {
                    continue;
                }
                if out.keys.len() >= limit {
                    out.more = true;
                    return out;
                }
                out.keys.push(*key);
            }
        }
        out
    }

    /// The requester's side: the ids of offered keys it lacks.
    pub fn missing(&self, offered: &[Key]) -> Vec<Id> {
        offered
            .iter()
            .map(|k| (k.1, k.2))
            .filter(|id| !self.have.contains(id))
            .collect()
    }
}

/// Envelopes of a catch-up reply handed to the event loop at once: about 1.6 ms of signature
/// checks, so gossip, the plane and the control socket get a turn between slices.
pub const INGEST_SLICE: usize = 32;

/// A fetch reply, screened against the ids asked for ([`screen_reply`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScreenedReply {
    /// The envelopes whose header names an id asked for, each id once, in the reply's order.
    pub kept: Vec<Vec<u8>>,
    /// The ids asked for that the reply did not bring, in the order asked.
    pub still_wanted: Vec<Id>,
    /// The others: a header that does not decode, an id not asked for, an id again.
    pub unrequested: usize,
}

/// The requester's screen of a `Fetch` reply: only envelopes that claim an id of `want` are
/// kept, each id once; an honest responder sends nothing else, so anything else is counted
/// and dropped unread (no signature is checked for it). Costs a header decode per envelope.
pub fn screen_reply(want: &[Id], envelopes: Vec<Vec<u8>>) -> ScreenedReply {
    let mut open: HashSet<Id> = want.iter().copied().collect();
    let mut out = ScreenedReply::default();
    for e in envelopes {
        match crate::envelope::header_of(&e).map(|h| (h.sender, h.seq)) {
            Some(id) if open.remove(&id) => out.kept.push(e),
            _ => out.unrequested += 1,
        }
    }
    out.still_wanted = want
        .iter()
        .copied()
        .filter(|id| open.contains(id))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An envelope of `sender` with `seq` (its signature is not what the screen looks at).
    fn env(sender: u32, seq: u64) -> Vec<u8> {
        let domain = crate::keys::DomainId([3; 32]);
        let header = crate::envelope::Header {
            version: crate::envelope::VERSION,
            domain_tag: [3; 4],
            channel: 1,
            epoch: 1,
            sender,
            seq,
        };
        let key = crate::keys::ChannelSecret([1; 32]).message_key(&domain, 1, 1, 0);
        let signer = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        crate::envelope::seal(&signer, &domain, &header, &key, b"x")
    }

    #[test]
    fn a_reply_keeps_only_ids_asked_for_once_each() {
        let want = [(1, 10), (1, 11), (2, 10)];
        let reply = vec![
            env(1, 10),
            env(3, 99), // not asked for
            env(1, 11),
            env(1, 10),     // again
            vec![0xff; 40], // no header
            env(2, 10),
        ];
        let s = screen_reply(&want, reply.clone());
        assert_eq!(
            s.kept,
            vec![reply[0].clone(), reply[2].clone(), reply[5].clone()]
        );
        assert_eq!(s.unrequested, 3);
        assert!(s.still_wanted.is_empty());
        // An honest reply: all kept, nothing unrequested, the rest still wanted; an empty one
        // brings nothing.
        let s = screen_reply(&want, vec![env(2, 10), env(1, 11)]);
        assert_eq!((s.kept.len(), s.unrequested), (2, 0));
        assert_eq!(s.still_wanted, [(1, 10)]);
        let s = screen_reply(&want, vec![]);
        assert_eq!((s.kept.len(), s.unrequested), (0, 0));
        assert_eq!(s.still_wanted, want);
        // 13,500 envelopes for one id asked: one kept, the rest never reach a signature check.
        let flood: Vec<Vec<u8>> = (0..13_500).map(|i| env(1, 1000 + i)).collect();
        let s = screen_reply(&[(1, 1000)], flood);
        assert_eq!((s.kept.len(), s.unrequested), (1, 13_499));
    }

    /// One full pull of `b`'s log into `a`, as the daemon runs it; returns round trips made.
    const CH: &[u32] = &[1];

    fn pull(a: &mut Index, b: &Index, cutoff: u64) -> usize {
        let mut rounds = 0;
        let mut after = None;
        loop {
            rounds += 1;
            let diff = b.diff(&a.digest(cutoff, CH).1, cutoff, CH, after, 16);
            after = diff.keys.last().copied();
            for chunk in a.missing(&diff.keys).chunks(4) {
                for id in chunk {
                    a.insert(1, *id);
                }
            }
            if !diff.more {
                return rounds;
            }
            assert!(rounds < 1000, "does not converge");
        }
    }

    // Simulated time: a sender's seq is its clock in µs.
    const T0: u64 = 1_800_000_000_000_000;
    const MIN: u64 = 60_000_000;

    #[test]
    fn in_sync_logs_exchange_nothing() {
        let mut a = Index::new();
        for i in 0..100 {
            a.insert(1, (1, T0 + i * MIN));
        }
        let b = a.clone();
        let d = b.diff(&a.digest(0, CH).1, 0, CH, None, MAX_DIFF_IDS);
        assert!(d.keys.is_empty() && !d.more);
    }

    #[test]
    fn a_node_that_slept_fetches_exactly_what_it_missed() {
        let (mut awake, mut sleeper) = (Index::new(), Index::new());
        for i in 0..50 {
            awake.insert(1, (1, T0 + i * MIN));
            sleeper.insert(1, (1, T0 + i * MIN));
        }
        // The sleeper misses an hour of two senders' alerts.
        let missed: Vec<Id> = (50..110)
            .map(|i| (1 + (i % 2) as u32, T0 + i * MIN))
            .collect();
        for id in &missed {
            awake.insert(1, *id);
        }
        let diff = awake.diff(&sleeper.digest(0, CH).1, 0, CH, None, MAX_DIFF_IDS);
        let mut missed = missed;
        missed.sort();
        assert_eq!(sleeper.missing(&diff.keys), missed);
        // Only the differing buckets travel, not the whole log.
        assert!(diff.keys.len() < 110, "sent {} ids", diff.keys.len());
    }

    #[test]
    fn cutoff_limits_what_is_compared() {
        let (mut a, mut b) = (Index::new(), Index::new());
        a.insert(1, (1, T0));
        b.insert(1, (1, T0 + 48 * 60 * MIN));
        let cutoff = T0 + 24 * 60 * MIN;
        assert_eq!(
            b.diff(&a.digest(cutoff, CH).1, cutoff, CH, None, 10).keys,
            vec![(1, 1, T0 + 48 * 60 * MIN)]
        );
        // The old one is past the cutoff: not offered back.
        assert!(
            a.diff(&b.digest(cutoff, CH).1, cutoff, CH, None, 10)
                .keys
                .is_empty()
        );
    }

    #[test]
    fn only_the_asked_channels_are_compared() {
        let (mut a, mut b) = (Index::new(), Index::new());
        b.insert(1, (1, T0));
        b.insert(2, (1, T0 + 1));
        let d = b.diff(&a.digest(0, &[1]).1, 0, &[1], None, 10);
        assert_eq!(d.keys, vec![(1, 1, T0)]);
        a.insert(2, (9, T0));
        assert!(a.digest(0, &[1]).1.is_empty());
    }

    #[test]
    fn more_buckets_than_a_digest_holds_are_not_offered_again_every_session() {
        // Two equal logs of 80 senders (alerts and their receipts' senders alike) over 60
        // buckets (18 hours): 4 800 buckets, more than a digest holds.
        let (mut a, mut b) = (Index::new(), Index::new());
        let bucket_us = 1u64 << BUCKET_SHIFT;
        let first = bucket_of(T0);
        for sender in 0..80u32 {
            for k in 0..60u64 {
                let id = (sender, T0 + k * bucket_us + u64::from(sender));
                a.insert(1, id);
                b.insert(1, id);
            }
        }
        let (cutoff, digest) = a.digest(0, CH);
        assert_eq!(digest.len(), MAX_DIGEST_BUCKETS);
        // 51 whole bucket numbers (4 080 pairs) and 16 of the 52nd newest: the cutoff rises to
        // that one.
        assert_eq!(bucket_of(cutoff), first + 8);
        // Equal logs: only the keys of the 64 pairs of that bucket left out are offered.
        // With the cutoff asked for (0), the responder offered those and every key of the
        // 8 older buckets: 704, in every session.
        assert_eq!(
            b.diff(&digest, cutoff, CH, None, MAX_DIFF_IDS).keys.len(),
            64
        );
        assert_eq!(b.diff(&digest, 0, CH, None, MAX_DIFF_IDS).keys.len(), 704);
        // A key missing within the covered window is still found.
        let late = (3, T0 + 59 * bucket_us + 7);
        b.insert(1, late);
        assert!(
            b.diff(&digest, cutoff, CH, None, MAX_DIFF_IDS)
                .keys
                .contains(&(1, late.0, late.1))
        );
        // More pairs than fit in the newest bucket number alone: still a digest, of it.
        let mut many = Index::new();
        for sender in 0..(MAX_DIGEST_BUCKETS as u32 + 10) {
            many.insert(1, (sender, T0));
        }
        let (cutoff, digest) = many.digest(0, CH);
        assert_eq!(digest.len(), MAX_DIGEST_BUCKETS);
        assert_eq!(bucket_of(cutoff), first);
        // Under the bound, the cutoff asked for stays.
        assert_eq!(Index::new().digest(12_345, CH).0, 12_345);
    }

    #[test]
    fn removal_restores_the_summary() {
        let mut a = Index::new();
        a.insert(1, (1, T0));
        let before = a.digest(0, CH).1;
        a.insert(1, (1, T0 + 1));
        assert_ne!(a.digest(0, CH).1, before);
        a.remove(1, (1, T0 + 1));
        assert_eq!(a.digest(0, CH).1, before);
        a.remove(1, (1, T0));
        assert!(a.digest(0, CH).1.is_empty());
    }

    proptest! {
        #[test]
        fn pulling_both_ways_converges(
            xs in proptest::collection::vec((1u32..4, 0u64..400), 0..200),
            ys in proptest::collection::vec((1u32..4, 0u64..400), 0..200),
        ) {
            let (mut a, mut b) = (Index::new(), Index::new());
            for (s, m) in xs { a.insert(1, (s, T0 + m * MIN / 3)); }
            for (s, m) in ys { b.insert(1, (s, T0 + m * MIN / 3)); }
            let union: BTreeSet<Key> = a.keys.union(&b.keys).copied().collect();
            pull(&mut a, &b, 0);
            pull(&mut b, &a, 0);
            prop_assert_eq!(&a.keys, &union);
            prop_assert_eq!(&b.keys, &union);
            prop_assert_eq!(a.digest(0, CH).1, b.digest(0, CH).1);
        }
    }
}
