// ptt-node patch (vendor/libp2p-gossipsub/README.md): not part of upstream libp2p-gossipsub.

//! Giving back the room a burst left in a collection. A `HashMap` or a `VecDeque` keeps its
//! largest capacity after its entries are removed, so the caches and per-peer queues that a
//! burst of messages fills would otherwise hold that memory until the process ends.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, Hash},
};

/// Collections with at most this many slots are left as they are.
const KEEP: usize = 64;

/// Shrinks `m` to twice its length when less than a quarter of its room is used: a steady load
/// never reallocates, and a burst costs one reallocation on the way down.
pub(crate) fn map<K: Eq + Hash, V, S: BuildHasher>(m: &mut HashMap<K, V, S>) {
    if m.capacity() > KEEP && m.len() < m.capacity() / 4 {
        m.shrink_to((m.len() * 2).max(KEEP));
    }
}

/// As [`map`], for a deque.
pub(crate) fn deque<T>(d: &mut VecDeque<T>) {
    if d.capacity() > KEEP && d.len() < d.capacity() / 4 {
        d.shrink_to((d.len() * 2).max(KEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_given_back_and_a_steady_load_is_kept() {
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let mut d: VecDeque<u32> = (0..10_000).collect();
        let (mc, dc) = (m.capacity(), d.capacity());
        // Still well used: kept.
        m.retain(|k, _| *k < 5_000);
        d.truncate(5_000);
        map(&mut m);
        deque(&mut d);
        assert_eq!((m.capacity(), d.capacity()), (mc, dc));
        // Nearly empty: given back, the entries left intact.
        m.retain(|k, _| *k < 10);
        d.truncate(10);
        map(&mut m);
        deque(&mut d);
        assert!(m.capacity() <= 2 * KEEP && d.capacity() <= 2 * KEEP);
        assert_eq!((m.len(), d.len()), (10, 10));
        assert_eq!(m.get(&9), Some(&9));
        assert_eq!(d.back(), Some(&9));
    }
}
