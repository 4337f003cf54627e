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
    pub(super) fn state(&self) -> &'static str {
        let sleeps = self.cert.as_ref().is_some_and(|c| c.body.profile.sleeps);
        match () {
            _ if self.refused => "refused",
            _ if self.connections > 0 && self.authenticated => "authenticated",
            _ if self.connections > 0 => "connecting",
            _ if self.member && sleeps => "asleep",
            _ if self.member => "unreachable",
            _ => "discovered",
        }
    }
}
