//! Strangers: peers announced by mDNS that are neither in the roster nor members before, nor
//! pinned by the user. Their dials are rationed and at most [`MAX_STRANGERS`] of them are
//! remembered (issue 24, finding 6).

use std::time::Instant;

use super::{
    MAX_PEERS, MAX_STRANGER_DIALS, MAX_STRANGERS, PeerBook, STRANGER_DIAL_WINDOW, STRANGER_RETRY,
};

impl<K: Ord + Clone, A: Ord + Clone> PeerBook<K, A> {
    /// Whether `peer` is a stranger: the roster is known and lacks it, it never authenticated
    /// as a member, and the user did not pin it (a tag, a static peer). Only strangers' dials
    /// are rationed: a stranger is whatever peer id someone announced.
    pub(super) fn is_stranger(&self, peer: &K) -> bool {
        self.roster.as_ref().is_some_and(|r| !r.contains(peer))
            && self.peers.get(peer).is_some_and(|p| !p.member && !p.pinned)
    }

    /// Whether a dial to `peer` may start now, counting it if it is a stranger's: a member
    /// always; a stranger once per [`STRANGER_RETRY`], and at most [`MAX_STRANGER_DIALS`]
    /// strangers per [`STRANGER_DIAL_WINDOW`]. A genuine newcomer not in the roster yet is
    /// dialled within these, and dials this node itself anyway.
    pub(super) fn may_dial(&mut self, peer: &K, now: Instant) -> bool {
        if !self.is_stranger(peer) {
            return true;
        }
        while self
            .stranger_dials
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= STRANGER_DIAL_WINDOW)
        {
            self.stranger_dials.pop_front();
        }
        if self.stranger_dials.len() >= MAX_STRANGER_DIALS {
            return false;
        }
        let Some(st) = self.peers.get_mut(peer) else {
            return false;
        };
        if st
            .stranger_tried
            .is_some_and(|t| now.saturating_duration_since(t) < STRANGER_RETRY)
        {
            return false;
        }
        st.stranger_tried = Some(now);
        self.stranger_dials.push_back(now);
        true
    }

    /// Forgets disconnected strangers (never members) beyond [`MAX_PEERS`].
    pub fn forget_strangers(&mut self) -> Vec<K> {
        // Strangers first: at most MAX_STRANGERS of them, not connected, are kept.
        let strangers: Vec<K> = self
            .peers
            .iter()
            .filter(|(k, p)| p.connections == 0 && self.is_stranger(k))
            .map(|(k, _)| k.clone())
            .collect();
        let mut drop: Vec<K> = strangers.into_iter().skip(MAX_STRANGERS).collect();
        for k in &drop {
            self.peers.remove(k);
        }
        if self.peers.len() <= MAX_PEERS {
            return drop;
        }
        let more: Vec<K> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connections == 0 && !p.member)
            .map(|(k, _)| k.clone())
            .take(self.peers.len() - MAX_PEERS)
            .collect();
        for k in &more {
            self.peers.remove(k);
        }
        drop.extend(more);
        drop
    }
}
