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
