//! Roster and presence pushes waiting to go out together: [`Pushes`] decides when a batch
//! leaves ([`PUSH_BATCH`] after the first item, at most one batch per [`PUSH_EVERY`]) and
//! what each peer gets in it (never an item back to the peer it came from, never twice).
//!
//! Pushing each item at once cost every connection a stream per item and per peer admitted:
//! when 50 members start together that is thousands of streams. The batch keeps that to one
//! request of each kind per peer. Never sends anything itself; the daemon sends what
//! [`Pushes::flush`] returns, in chunks the wire allows.

use std::collections::HashSet;
use std::time::Instant;

use super::{PUSH_BATCH, PUSH_EVERY};

/// What one peer gets from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushBatch<K> {
    /// The peer.
    pub peer: K,
    /// Member certificates, each once.
    pub roster: Vec<Vec<u8>>,
    /// Presence records, each once.
    pub presence: Vec<Vec<u8>>,
}

/// Certificates and presence records queued for the authenticated peers, each with the peer
/// not to send it to (the one it came from). Certificates and presence records travel on
/// parallel streams: a record that reaches a peer before its device's certificate waits
/// there for it.
#[derive(Debug, Clone)]
pub struct Pushes<K> {
    roster: Vec<(Vec<u8>, Option<K>)>,
    presence: Vec<(Vec<u8>, Option<K>)>,
    /// When the queued items go out.
    due: Option<Instant>,
    /// When the last batch went out.
    last: Option<Instant>,
}

impl<K> Default for Pushes<K> {
    fn default() -> Self {
        Pushes {
            roster: Vec::new(),
            presence: Vec::new(),
            due: None,
            last: None,
        }
    }
}

impl<K: Clone + PartialEq> Pushes<K> {
    /// Queues newly learned member certificates for every authenticated peer but `except`.
    /// Returns when the batch goes out ([`Timer::Push`](super::Timer::Push)), `None` when
    /// nothing is queued.
    pub fn push_roster(&mut self, certs: Vec<Vec<u8>>, except: K, now: Instant) -> Option<Instant> {
        if certs.is_empty() {
            return self.due;
        }
        self.roster
            .extend(certs.into_iter().map(|c| (c, Some(except.clone()))));
        Some(self.schedule(now))
    }

    /// Queues presence records for every authenticated peer but `except`. Returns when the
    /// batch goes out.
    pub fn push_presence(
        &mut self,
        records: Vec<Vec<u8>>,
        except: Option<K>,
        now: Instant,
    ) -> Option<Instant> {
        if records.is_empty() {
            return self.due;
        }
        self.presence
            .extend(records.into_iter().map(|r| (r, except.clone())));
        Some(self.schedule(now))
    }

    /// Sets when the queued items go out, if not set: [`PUSH_BATCH`] from now, but not sooner
    /// than [`PUSH_EVERY`] after the last batch, so a lone change goes out at once and a
    /// start-up's storm of them once per `PUSH_EVERY`.
    fn schedule(&mut self, now: Instant) -> Instant {
        let at = match self.last {
            Some(last) => (now + PUSH_BATCH).max(last + PUSH_EVERY),
            None => now + PUSH_BATCH,
        };
        *self.due.get_or_insert(at)
    }

    /// When the queued items go out, if any are queued.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The batch goes out now, to `targets` (the authenticated, connected peers): what each
    /// gets, leaving out peers that get nothing. Counts as a batch for the spacing even when
    /// nothing was queued.
    pub fn flush(
        &mut self,
        targets: impl IntoIterator<Item = K>,
        now: Instant,
    ) -> Vec<PushBatch<K>> {
        self.due = None;
        self.last = Some(now);
        let roster = std::mem::take(&mut self.roster);
        let presence = std::mem::take(&mut self.presence);
        if roster.is_empty() && presence.is_empty() {
            return vec![];
        }
        let pick = |items: &[(Vec<u8>, Option<K>)], t: &K| -> Vec<Vec<u8>> {
            let mut seen = HashSet::new();
            items
                .iter()
                .filter(|(item, except)| except.as_ref() != Some(t) && seen.insert(item.as_slice()))
                .map(|(item, _)| item.clone())
                .collect()
        };
        targets
            .into_iter()
            .map(|t| PushBatch {
                roster: pick(&roster, &t),
                presence: pick(&presence, &t),
                peer: t,
            })
            .filter(|b| !b.roster.is_empty() || !b.presence.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_lone_push_waits_the_batch_window() {
        let t0 = Instant::now();
        let mut p = Pushes::<u32>::default();
        assert_eq!(p.push_roster(vec![], 1, t0), None, "nothing queued");
        assert_eq!(
            p.push_roster(vec![b"a".to_vec()], 1, t0),
            Some(t0 + PUSH_BATCH)
        );
        // More within the window go with it: the deadline does not move.
        assert_eq!(
            p.push_presence(vec![b"r".to_vec()], None, t0 + ms(15)),
            Some(t0 + PUSH_BATCH)
        );
        assert_eq!(p.due(), Some(t0 + PUSH_BATCH));
    }

    #[test]
    fn batches_are_spaced_by_push_every() {
        let t0 = Instant::now();
        let mut p = Pushes::<u32>::default();
        p.push_roster(vec![b"a".to_vec()], 1, t0);
        let first = p.flush([2], t0 + PUSH_BATCH);
        assert_eq!(first.len(), 1);
        // A push right after waits until PUSH_EVERY after the last batch.
        let now = t0 + ms(30);
        assert_eq!(
            p.push_roster(vec![b"b".to_vec()], 1, now),
            Some(t0 + PUSH_BATCH + PUSH_EVERY)
        );
        p.flush([2], t0 + PUSH_BATCH + PUSH_EVERY);
        // Long after the last batch: only the window.
        let later = t0 + ms(5000);
        assert_eq!(
            p.push_roster(vec![b"c".to_vec()], 1, later),
            Some(later + PUSH_BATCH)
        );
    }

    #[test]
    fn an_empty_flush_still_counts_for_spacing() {
        let t0 = Instant::now();
        let mut p = Pushes::<u32>::default();
        assert!(p.flush([1, 2], t0).is_empty());
        assert_eq!(
            p.push_presence(vec![b"r".to_vec()], None, t0),
            Some(t0 + PUSH_EVERY)
        );
    }

    #[test]
    fn each_peer_gets_each_item_once_and_never_its_own() {
        let t0 = Instant::now();
        let mut p = Pushes::<u32>::default();
        p.push_roster(vec![b"c1".to_vec(), b"c2".to_vec()], 1, t0);
        p.push_roster(vec![b"c1".to_vec()], 2, t0);
        p.push_presence(vec![b"r1".to_vec()], Some(3), t0);
        p.push_presence(vec![b"r2".to_vec(), b"r2".to_vec()], None, t0);
        let out = p.flush([1, 2, 3], t0 + PUSH_BATCH);
        let v = |s: &[&str]| s.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            out,
            vec![
                PushBatch {
                    peer: 1,
                    // c1 came from 1 but also from 2: 1 gets it through 2's entry.
                    roster: v(&["c1"]),
                    presence: v(&["r1", "r2"]),
                },
                PushBatch {
                    peer: 2,
                    roster: v(&["c1", "c2"]),
                    presence: v(&["r1", "r2"]),
                },
                PushBatch {
                    peer: 3,
                    roster: v(&["c1", "c2"]),
                    presence: v(&["r2"]),
                },
            ]
        );
        assert_eq!(p.due(), None);
        assert!(
            p.flush([1], t0 + ms(1000)).is_empty(),
            "the queue was emptied"
        );
    }
}
