//! The recent ring: the datagrams this node sent or verified in the last few seconds, by
//! `(sender, pseq)`, so it can answer a peer's repair request with exactly what was asked.
//!
//! Bounded three ways (age, entries, bytes), the oldest dropped first. Pure: the caller
//! passes the time and decides what goes in (only verified envelopes, never a datagram that
//! merely opened).

use std::collections::{HashMap, VecDeque};

use super::Kind;

/// How long a datagram is kept for repair (µs).
pub const RING_AGE_US: u64 = 10_000_000;
/// Entries kept at most.
pub const RING_ENTRIES: usize = 8_192;
/// Bytes of bodies kept at most.
pub const RING_BYTES: usize = 2 << 20;

#[derive(Debug)]
struct Entry {
    at_us: u64,
    sender: u32,
    pseq: u32,
    kind: Kind,
    body: Vec<u8>,
}

/// What this node can hand out again, by `(sender, pseq)`.
#[derive(Debug)]
pub struct Ring {
    entries: VecDeque<Entry>,
    /// Absolute position (`base` + index in `entries`) of each key.
    index: HashMap<(u32, u32), u64>,
    /// Absolute position of `entries[0]`.
    base: u64,
    bytes: usize,
    max_age_us: u64,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new(RING_AGE_US, RING_ENTRIES, RING_BYTES)
    }
}

impl Ring {
    /// A ring with the given bounds.
    pub fn new(max_age_us: u64, max_entries: usize, max_bytes: usize) -> Ring {
        Ring {
            entries: VecDeque::new(),
            index: HashMap::new(),
            base: 0,
            bytes: 0,
            max_age_us,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// Keeps `body` as `(sender, pseq)`'s datagram; the first copy of a key wins. Expires
    /// what is too old at `now_us` and drops the oldest beyond the bounds.
    pub fn insert(&mut self, now_us: u64, sender: u32, pseq: u32, kind: Kind, body: Vec<u8>) {
        self.expire(now_us);
        if self.index.contains_key(&(sender, pseq)) || body.len() > self.max_bytes {
            return;
        }
        while self.entries.len() >= self.max_entries || self.bytes + body.len() > self.max_bytes {
            if !self.pop_oldest() {
                break;
            }
        }
        let pos = self.base + self.entries.len() as u64;
        self.bytes += body.len();
        self.index.insert((sender, pseq), pos);
        self.entries.push_back(Entry {
            at_us: now_us,
            sender,
            pseq,
            kind,
            body,
        });
    }

    /// The datagram kept for `(sender, pseq)`.
    pub fn get(&self, sender: u32, pseq: u32) -> Option<(Kind, &[u8])> {
        let pos = *self.index.get(&(sender, pseq))?;
        let e = self.entries.get(usize::try_from(pos - self.base).ok()?)?;
        Some((e.kind, &e.body))
    }

    /// Drops what is older than the age bound at `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| now_us.saturating_sub(e.at_us) > self.max_age_us)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) -> bool {
        let Some(e) = self.entries.pop_front() else {
            return false;
        };
        self.base += 1;
        self.bytes -= e.body.len();
        self.index.remove(&(e.sender, e.pseq));
        true
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of bodies held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_was_put_until_it_is_too_old() {
        let mut r = Ring::new(10, 100, 1000);
        r.insert(0, 7, 1, Kind::Alert, vec![1; 10]);
        r.insert(5, 7, 2, Kind::Voice, vec![2; 10]);
        assert_eq!(r.get(7, 1), Some((Kind::Alert, &[1u8; 10][..])));
        assert_eq!(r.get(7, 2).map(|(k, _)| k), Some(Kind::Voice));
        assert_eq!(r.get(8, 1), None);
        // The first copy of a key wins.
        r.insert(6, 7, 1, Kind::Alert, vec![9; 3]);
        assert_eq!(r.get(7, 1).map(|(_, b)| b.len()), Some(10));
        r.expire(11);
        assert_eq!(r.get(7, 1), None, "older than 10 µs");
        assert!(r.get(7, 2).is_some());
        assert_eq!((r.len(), r.bytes()), (1, 10));
        r.expire(100);
        assert!(r.is_empty() && r.bytes() == 0);
    }

    #[test]
    fn drops_the_oldest_beyond_its_bounds() {
        let mut r = Ring::new(1_000_000, 3, 1000);
        for p in 0..5 {
            r.insert(p.into(), 1, p, Kind::Alert, vec![0; 10]);
        }
        assert_eq!(r.len(), 3);
        assert!(r.get(1, 0).is_none() && r.get(1, 1).is_none());
        assert!((2..5).all(|p| r.get(1, p).is_some()));
        // Bytes: a 995-byte body pushes everything else out.
        r.insert(10, 2, 0, Kind::Alert, vec![0; 995]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.bytes(), 995);
        // A body over the whole bound is not kept, and evicts nothing.
        r.insert(11, 2, 1, Kind::Alert, vec![0; 1001]);
        assert_eq!(r.len(), 1);
        assert!(r.get(2, 1).is_none());
        // Positions stay right after many evictions.
        let mut r = Ring::new(u64::MAX, 4, usize::MAX);
        for p in 0..1000u32 {
            r.insert(p.into(), 3, p, Kind::Alert, p.to_be_bytes().to_vec());
        }
        assert_eq!(
            r.get(3, 998).map(|(_, b)| b.to_vec()),
            Some(998u32.to_be_bytes().to_vec())
        );
        assert!(r.get(3, 995).is_none());
    }
}
