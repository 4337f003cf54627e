//! The mesh's decisions, free of I/O: which peers to dial and when, how long a peer that
//! failed waits (back-off), who is blocked, in which order domain updates apply, when queued
//! roster and presence pushes leave, which unreadable envelopes wait for a key, and which of
//! the daemon's deadlines is next.
//!
//! The daemon feeds it events and `now` (an [`Instant`](std::time::Instant) it read) and
//! carries out what it returns: a [`Dial`] to start, a [`Timer`] to arm, a peer to disconnect.
//! This module never opens a socket, reads a clock, spawns a task or draws a random number:
//! the jitter of a re-dial is a `u64` the caller drew. Everything here is deterministic, so
//! the tests drive many nodes in memory with simulated time (`sim`).
//!
//! - [`timers`]: the [`Timer`] kinds and the [`TimerTable`] that says which is next.
//! - [`degree`]: the bounded [`Overlay`]: which members a node keeps connections to once the
//!   domain is larger than `max_peers + 1`.
//! - [`peers`]: the [`PeerBook`]: per-peer state, bounded addresses, dial policy and back-off,
//!   blocking, authentication and ping deadlines, and which quiet peer to probe.
//! - [`updates`]: domain updates that arrived out of order ([`PendingUpdates`]) and those
//!   held to pass on ([`HeldUpdates`]).
//! - [`pushes`]: the batching window and spacing of roster and presence pushes ([`Pushes`]).
//! - [`unread`]: envelopes waiting for a key epoch ([`Unread`]).

use std::time::Duration;

pub mod degree;
pub mod peers;
pub mod pushes;
pub mod timers;
pub mod unread;
pub mod updates;

#[cfg(test)]
mod sim;

pub use degree::{DEFAULT_MAX_PEERS, MIN_MAX_PEERS, Overlay, peer_position, ring_position};
pub use peers::{
    Dial, Peer, PeerBook, PeerStatus, PeerTick, Peers, Ping, direct_ipv4, on_same_lan,
};
pub use pushes::{PushBatch, Pushes};
pub use timers::{Quiet, Timer, TimerTable};
pub use unread::{Reopened, Unread};
pub use updates::{HeldUpdates, PendingUpdates, Taken};

/// How often the daemon's tick runs (voice, `connect` deadlines, peer checks).
pub const TICK: Duration = Duration::from_millis(250);
/// How long a connected peer may take to prove membership.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a refused peer stays blocked.
pub const BLOCK_FOR: Duration = Duration::from_secs(60);
/// Addresses remembered per peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;
/// Peers remembered (connected ones and members are never forgotten).
pub const MAX_PEERS: usize = 4096;
/// Strangers (peers neither in the roster nor members before, found by mDNS: any peer id anyone
/// announces) remembered at most; the others are forgotten at the next tick.
pub const MAX_STRANGERS: usize = 256;
/// Stranger dials started at most per [`STRANGER_DIAL_WINDOW`], whatever is announced.
pub const MAX_STRANGER_DIALS: usize = 4;
/// The window of [`MAX_STRANGER_DIALS`].
pub const STRANGER_DIAL_WINDOW: Duration = Duration::from_secs(10);
/// A stranger is dialled at most once per this, however often it is announced; a failed dial
/// is not retried.
pub const STRANGER_RETRY: Duration = Duration::from_secs(300);
/// When both sides discover each other, the larger peer id waits this long before dialling,
/// so the pair usually ends up with one connection.
pub const DIAL_DEFER: Duration = Duration::from_millis(1500);
/// How long a queued roster or presence push waits for more to send with it.
pub const PUSH_BATCH: Duration = Duration::from_millis(20);
/// At most one batch of roster and presence pushes per this long.
pub const PUSH_EVERY: Duration = Duration::from_millis(250);
/// The first re-dial back-off; it doubles at each failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest re-dial back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Under the bound on connections: how long after a failed dial a LAN member the overlay
/// wants is tried again (meanwhile the ring goes round it). A member that comes back dials
/// its own neighbours, which ends its absence at once.
pub const AWAY_FOR: Duration = Duration::from_secs(30);
/// Under the bound: a connection the overlay does not want is closed only after it has been
/// up this long (a newcomer's first connections, views that have not converged yet).
pub const SURPLUS_AFTER: Duration = Duration::from_secs(30);
/// Under the bound: a wanted peer a dial did not reach (and no failure came back) is dialled
/// again after this long.
pub const WANT_RETRY: Duration = Duration::from_secs(10);
/// How often catch-up runs with one random authenticated peer (anti-entropy), and how often
/// the static peers are dialled again.
pub const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(10);
/// How often members are dialled through the connected brokers.
pub const CIRCUIT_EVERY: Duration = Duration::from_secs(2);
/// The longest wait between two circuit dials to one member (it starts at
/// [`ANTI_ENTROPY_EVERY`] and doubles).
pub const CIRCUIT_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long after the last message the daemon hands free heap back to the system: soon, for
/// the buffers and queues, and again once gossipsub has let the messages' ids go (its
/// duplicate cache, its peer-score delivery records after 20 s).
pub const TRIM_AFTER_QUIET: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(25)];
/// How often retention runs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Reported ping failures after which a connection is closed (and the peer re-dialled).
/// libp2p reports a failure only when a second ping in a row failed, so one report is enough.
pub const MAX_PING_FAILURES: u8 = 1;
/// Liveness by evidence (proto/network.md, "Liveness"): a connected member this node has heard
/// nothing from for this long (no verified plane beacon, no gossip message, no request or
/// answer, no ping) is probed: one empty request on its connection.
pub const QUIET_BEFORE_PROBE: Duration = Duration::from_secs(15);
/// While a peer stays quiet, a probe per this long (each may take up to the repair protocol's
/// 1 s timeout).
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Probes in a row left unanswered after which the connection is closed (the peer is
/// re-dialled if a member): a frozen peer is dropped about 26 s after it last spoke.
pub const MAX_PROBE_FAILURES: u8 = 3;
/// Authentication requests re-sent on one connection at most.
pub const MAX_AUTH_ATTEMPTS: u8 = 3;
/// Updates held that arrived ahead of a missing one, at most.
pub const MAX_PENDING_UPDATES: usize = 64;
/// Authentic envelopes kept in memory that this node could not open for want of a key
/// epoch, re-opened (and shown) when an update brings the key.
pub const MAX_UNREAD: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::OutboundRequestId;
    use libp2p::{Multiaddr, PeerId};
    use std::time::Instant;

    /// The daemon's own types fit the core: libp2p keys, addresses and request ids.
    #[test]
    fn the_daemon_types_fit() {
        let now = Instant::now();
        let me = PeerId::random();
        let peer = PeerId::random();
        let a: Multiaddr = "/ip4/192.168.1.20/tcp/4001".parse().expect("address");
        let mut book = Peers::new(me);
        let dial = book
            .found_at(peer, [a.clone()], true, now)
            .expect("alone: at once");
        assert_eq!(dial.addresses, vec![a]);
        let mut pushes = Pushes::<PeerId>::default();
        assert!(pushes.push_roster(vec![vec![1]], peer, now).is_some());
        let held = HeldUpdates::<PeerId, OutboundRequestId>::default();
        assert!(held.missing(&peer, 0).is_empty());
    }
}
