//! What the daemon knows about each peer: addresses, connections, authentication, back-off.
//!
//! Plain data and the state `peers` shows; it never dials, sends or decides by itself.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;

use crate::cert::Certificate;

#[derive(Debug, Default)]
pub(super) struct PeerState {
    pub(super) addresses: BTreeSet<Multiaddr>,
    pub(super) connections: usize,
    pub(super) authenticated: bool,
    pub(super) cert: Option<Certificate>,
    pub(super) last_error: Option<String>,
    pub(super) connected_at: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) redial_at: Option<Instant>,
    /// A member seen before: keep re-dialling it when it drops.
    pub(super) member: bool,
    /// Authentication requests re-sent on the current connection.
    pub(super) auth_attempts: u8,
    /// The address this node last reached the peer at (when it dialled).
    pub(super) dialled_addr: Option<Multiaddr>,
    /// Consecutive failed pings.
    pub(super) ping_failures: u8,
    /// Refused at authentication (not a member).
    pub(super) refused: bool,
    /// When the peer last changed between connected and not (µs since the Unix epoch).
    pub(super) since_us: u64,
    /// The domain revision the peer is known to hold (its hello, or updates it acknowledged
    /// or sent): updates after it are pushed again until acknowledged.
    pub(super) revision: u64,
}

impl PeerState {
    /// What `peers` shows: a sleeping member that is away is asleep, not failed.
    pub(super) fn state(&self) -> PeerStatus {
        let sleeps = self.cert.as_ref().is_some_and(|c| c.body.profile.sleeps);
        match () {
            _ if self.refused => PeerStatus::Refused,
            _ if self.connections > 0 && self.authenticated => PeerStatus::Authenticated,
            _ if self.connections > 0 => PeerStatus::Connecting,
            _ if self.member && sleeps => PeerStatus::Asleep,
            _ if self.member => PeerStatus::Unreachable,
            _ => PeerStatus::Discovered,
        }
    }
}

/// A peer's state as `peers` and `search` show it (the `state` field of the control
/// protocol's JSON: the texts of [`PeerStatus::as_str`] are part of the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerStatus {
    /// Refused at authentication (not a member), blocked for a while.
    Refused,
    /// Connected and proved membership.
    Authenticated,
    /// Connected, membership not proved yet.
    Connecting,
    /// A sleeping member that is away.
    Asleep,
    /// A member that is away.
    Unreachable,
    /// Found (mDNS, a tag, a presence record) but never a member here.
    Discovered,
}

impl PeerStatus {
    /// The text the control protocol carries.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Authenticated => "authenticated",
            Self::Connecting => "connecting",
            Self::Asleep => "asleep",
            Self::Unreachable => "unreachable",
            Self::Discovered => "discovered",
        }
    }
}

impl std::fmt::Display for PeerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_status_texts_are_the_protocols() {
        // `peers --json` and `search` carry these; scripts compare them.
        let all = [
            (PeerStatus::Refused, "refused"),
            (PeerStatus::Authenticated, "authenticated"),
            (PeerStatus::Connecting, "connecting"),
            (PeerStatus::Asleep, "asleep"),
            (PeerStatus::Unreachable, "unreachable"),
            (PeerStatus::Discovered, "discovered"),
        ];
        for (s, text) in all {
            assert_eq!(s.as_str(), text);
            assert_eq!(s.to_string(), text);
        }
    }

    #[test]
    fn a_peer_state_follows_what_is_known_of_it() {
        let mut p = PeerState::default();
        assert_eq!(p.state(), PeerStatus::Discovered);
        p.connections = 1;
        assert_eq!(p.state(), PeerStatus::Connecting);
        p.authenticated = true;
        assert_eq!(p.state(), PeerStatus::Authenticated);
        // Gone: a member is unreachable, not discovered.
        p.connections = 0;
        p.member = true;
        assert_eq!(p.state(), PeerStatus::Unreachable);
        // Refused wins over everything.
        p.connections = 1;
        p.refused = true;
        assert_eq!(p.state(), PeerStatus::Refused);
    }
}
