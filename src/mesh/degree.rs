//! The bounded overlay: which members a node keeps connections to when the domain is larger
//! than `max_peers + 1`, so that a LAN of 100 members does not hold 4,950 connections.
//!
//! Every node computes the same graph from the same member set: the members are placed on a
//! ring by [`ring_position`] (a hash of the peer id), each keeps its ring neighbours (which
//! alone make the graph connected) and a few long links ("fingers") to the member that follows
//! a point a fixed fraction of the ring ahead, which keep the diameter near log n. Edges are
//! added in one deterministic order and only while both ends have room, so no node exceeds
//! `max_peers`; a pair keeps a connection when the graph has the edge, which is the same
//! verdict at both ends. A small domain is a full mesh, as before the bound existed.
//!
//! Pure: no I/O, no clock, no randomness. It never decides when to dial or close; the
//! [`PeerBook`](super::PeerBook) does, from [`Overlay::wants`].

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;
use sha2::{Digest, Sha256};

/// Connections to members a node keeps by default (`--max-peers`).
pub const DEFAULT_MAX_PEERS: usize = 8;
/// The smallest bound: a ring needs two neighbours per member.
pub const MIN_MAX_PEERS: usize = 2;

/// A member's place on the ring: the first 8 bytes (big-endian) of SHA-256 of its peer id's
/// bytes. Every node must compute it the same way (docs/network.md states it).
pub fn ring_position(id: &[u8]) -> u64 {
    let h = Sha256::digest(id);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b)
}

/// A libp2p peer's place on the ring: [`ring_position`] of its peer id's multihash bytes.
pub fn peer_position(p: &PeerId) -> u64 {
    ring_position(&p.to_bytes())
}

/// The graph of connections for one member set and bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay<K> {
    /// Every member, by key.
    members: BTreeSet<K>,
    /// Every member in ring order.
    ring: Vec<K>,
    /// Each member's neighbours; `None`: a full mesh (small domain).
    edges: Option<BTreeMap<K, BTreeSet<K>>>,
}

impl<K: Ord + Clone> Overlay<K> {
    /// The overlay of `members` (each with its [`ring_position`]) under `max_peers` (at least
    /// [`MIN_MAX_PEERS`]; smaller is taken as that). A key given twice counts once.
    pub fn new(members: impl IntoIterator<Item = (u64, K)>, max_peers: usize) -> Self {
        let max = max_peers.max(MIN_MAX_PEERS);
        let mut ring: Vec<(u64, K)> = members.into_iter().collect();
        ring.sort();
        let mut seen = BTreeSet::new();
        ring.retain(|(_, k)| seen.insert(k.clone()));
        let members = seen;
        let n = ring.len();
        let order: Vec<K> = ring.iter().map(|(_, k)| k.clone()).collect();
        if n <= max + 1 {
            return Overlay {
                members,
                ring: order,
                edges: None,
            };
        }
        let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        // Ring neighbours: the successor and the predecessor (n > 3: distinct members). The
        // ring alone is connected, and a member's leaving changes only its two neighbours'.
        for (i, a) in adj.iter_mut().enumerate() {
            a.insert((i + 1) % n);
            a.insert((i + n - 1) % n);
        }
        // Fingers, the longest first, each member in ring order. A finger whose target has no
        // room tries the target's successor once (it lands as near); one whose own end has no
        // room is dropped. So no member exceeds the bound, whatever in-degree the hashes give.
        let positions: Vec<u64> = ring.iter().map(|(p, _)| *p).collect();
        for frac in fingers(n, max) {
            for i in 0..n {
                if adj[i].len() >= max {
                    continue;
                }
                let first = successor(&positions, positions[i].wrapping_add(frac));
                for t in [first, (first + 1) % n] {
                    if t == i || adj[i].contains(&t) {
                        break;
                    }
                    if adj[t].len() < max {
                        adj[i].insert(t);
                        adj[t].insert(i);
                        break;
                    }
                }
            }
        }
        let edges = adj
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let set = a.iter().map(|j| ring[*j].1.clone()).collect();
                (ring[i].1.clone(), set)
            })
            .collect();
        Overlay {
            members,
            ring: order,
            edges: Some(edges),
        }
    }

    /// Whether the bound applies (more than `max_peers + 1` members); else a full mesh.
    pub fn is_bounded(&self) -> bool {
        self.edges.is_some()
    }

    /// The members it was built from.
    pub fn members(&self) -> &BTreeSet<K> {
        &self.members
    }

    /// Whether `a` and `b` keep a connection: both members and an edge of the graph (any
    /// two distinct members in a full mesh). Symmetric.
    pub fn wants(&self, a: &K, b: &K) -> bool {
        if a == b || !self.members.contains(a) || !self.members.contains(b) {
            return false;
        }
        match &self.edges {
            None => true,
            Some(e) => e.get(a).is_some_and(|s| s.contains(b)),
        }
    }

    /// The nearest member on each side of `a` on the ring for which `away` is false: its ring
    /// neighbours when they are there, else the ones past the members that are away. Two
    /// members that both see the same gap between them find each other.
    pub fn ring_neighbours(&self, a: &K, away: impl Fn(&K) -> bool) -> BTreeSet<K> {
        let n = self.ring.len();
        let Some(i) = self.ring.iter().position(|k| k == a) else {
            return BTreeSet::new();
        };
        let forward = (1..n).map(|d| &self.ring[(i + d) % n]).find(|k| !away(k));
        let backward = (1..n)
            .map(|d| &self.ring[(i + n - d) % n])
            .find(|k| !away(k));
        forward.into_iter().chain(backward).cloned().collect()
    }

    /// The members `a` keeps connections to (every other member in a full mesh).
    pub fn neighbours(&self, a: &K) -> BTreeSet<K> {
        match &self.edges {
            _ if !self.members.contains(a) => BTreeSet::new(),
            None => self.members.iter().filter(|k| *k != a).cloned().collect(),
            Some(e) => e.get(a).cloned().unwrap_or_default(),
        }
    }
}

/// The finger fractions of the ring (as a `u64` distance), longest first: half of the room
/// the ring leaves (`max - 2`, rounded up; each finger usually also lands one on someone
/// else), spread geometrically from 2^-1.5 of the ring down to one ring neighbour's spacing,
/// so a path halves its distance at each hop (about log n hops). The spacing is taken as
/// `2^-ceil(log2 n)`, so the fractions change only when n crosses a power of two: a member
/// joining between two powers moves few fingers.
fn fingers(n: usize, max: usize) -> Vec<u64> {
    let m = (max - 2).div_ceil(2);
    let levels = f64::from(n.next_power_of_two().trailing_zeros());
    (0..m)
        .map(|j| {
            let e = FIRST_FINGER + (levels - FIRST_FINGER) * j as f64 / m as f64;
            2f64.powf(64.0 - e) as u64
        })
        .collect()
}

/// The longest finger, as an exponent of two of the ring: 2^-1.5 (about 0.35 of the ring).
/// Half the ring (2^-1) made longer paths: a finger at one half is mostly its own reverse.
const FIRST_FINGER: f64 = 1.5;

/// The index of the first position at or after `point`, wrapping.
fn successor(positions: &[u64], point: u64) -> usize {
    match positions.binary_search(&point) {
        Ok(i) => i,
        Err(i) if i == positions.len() => 0,
        Err(i) => i,
    }
}

#[cfg(test)]
mod tests;
