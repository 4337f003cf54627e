//! The [`PeerBook`]: what this node knows about each peer (addresses, connections, whether it
//! proved membership, its back-off) and the dial policy built on it: who to dial now, who
//! waits and how long, who is blocked, who took too long to authenticate, who is forgotten,
//! and, under a bound ([`PeerBook::set_max_peers`]), which members the [`Overlay`] wants and
//! which surplus connection to close.
//!
//! It returns decisions ([`Dial`], peers to disconnect or unblock) for the daemon to carry
//! out; it never touches the swarm, a socket or the clock, and the jitter of a re-dial is a
//! random number the caller draws. Generic over the peer key `K` and the address `A`
//! (`PeerId` and `Multiaddr` in the daemon; small integers and strings in the tests).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use super::{
    ANTI_ENTROPY_EVERY, AUTH_TIMEOUT, AWAY_FOR, BACKOFF_MAX, BACKOFF_MIN, BLOCK_FOR,
    CIRCUIT_BACKOFF_MAX, DIAL_DEFER, MAX_ADDRS_PER_PEER, MAX_AUTH_ATTEMPTS, MAX_PEERS,
    MAX_STRANGER_DIALS, MAX_STRANGERS, Overlay, STRANGER_DIAL_WINDOW, STRANGER_RETRY,
    SURPLUS_AFTER, WANT_RETRY,
};

/// A dial to start: the peer and every address remembered for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial<K, A> {
    /// Who to dial.
    pub peer: K,
    /// Where (never empty).
    pub addresses: Vec<A>,
}

/// What `peers` shows for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerStatus {
    /// It proved it is not a member (or not a ptt-node).
    Refused,
    /// Connected and proved membership.
    Authenticated,
    /// Connected, membership not proved yet.
    Connecting,
    /// A sleeping member that is away.
    Asleep,
    /// A member that is away and does not sleep.
    Unreachable,
    /// A member on this LAN with no connection because the bound on connections does not
    /// want the pair: others carry its traffic.
    Standby,
    /// Found (mDNS, a presence record, a tag), never a member.
    Discovered,
}

impl PeerStatus {
    /// The word `ptt-node peers` prints (control protocol).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Refused => "refused",
            PeerStatus::Authenticated => "authenticated",
            PeerStatus::Connecting => "connecting",
            PeerStatus::Asleep => "asleep",
            PeerStatus::Unreachable => "unreachable",
            PeerStatus::Standby => "standby",
            PeerStatus::Discovered => "discovered",
        }
    }
}

impl std::fmt::Display for PeerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one ping, as the daemon's ping behaviour reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// Answered.
    Ok,
    /// The peer does not speak ping: not dead, authentication decides about it.
    Unsupported,
    /// Failed (twice in a row, libp2p reports only then), with why.
    Failed(String),
}

/// One peer's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer<A> {
    addresses: BTreeSet<A>,
    connections: usize,
    authenticated: bool,
    /// A member seen before: re-dialled when it drops.
    member: bool,
    /// Refused at authentication (not a member).
    refused: bool,
    /// Its certificate says it sleeps (for [`PeerStatus::Asleep`]).
    sleeps: bool,
    last_error: Option<String>,
    connected_at: Option<Instant>,
    backoff: Duration,
    redial_at: Option<Instant>,
    /// Authentication requests re-sent on the current connection.
    auth_attempts: u8,
    /// The address this node last reached the peer at (when it dialled).
    dialled_addr: Option<A>,
    ping_failures: u8,
    /// The last time this node heard anything from the peer on its current connection (a
    /// verified plane beacon, a gossip message, a request or an answer, a ping).
    last_heard: Option<Instant>,
    /// When the last liveness probe left, and whether it is still unanswered.
    probed_at: Option<Instant>,
    probe_in_flight: bool,
    probe_failures: u8,
    /// When this node last started a dial to it as a stranger ([`STRANGER_RETRY`]).
    stranger_tried: Option<Instant>,
    /// Its `Welcome` to this node's hello arrived on the current connections: it has admitted
    /// this node, so what this node sends it is read, not held at its gate.
    welcomed: bool,
    /// This node greeted it (roster share, presence, catch-up…) on the current connections.
    greeted: bool,
    since_us: u64,
    revision: u64,
    /// Found on this LAN (mDNS, a presence record with an address here): a member of the
    /// overlay's member set, subject to the bound.
    lan: bool,
    /// Asked for by the user (`connect` with a device tag): never closed as surplus.
    pinned: bool,
    /// Under a bound: a dial to it failed (it is away) and when it is tried again. It stays
    /// in the member set (every node keeps the same one); only the ring goes round it.
    away_until: Option<Instant>,
}

impl<A> Default for Peer<A> {
    fn default() -> Self {
        Peer {
            addresses: BTreeSet::new(),
            connections: 0,
            authenticated: false,
            member: false,
            refused: false,
            sleeps: false,
            last_error: None,
            connected_at: None,
            backoff: Duration::ZERO,
            redial_at: None,
            auth_attempts: 0,
            dialled_addr: None,
            ping_failures: 0,
            last_heard: None,
            probed_at: None,
            probe_in_flight: false,
            probe_failures: 0,
            stranger_tried: None,
            welcomed: false,
            greeted: false,
            since_us: 0,
            revision: 0,
            lan: false,
            pinned: false,
            away_until: None,
        }
    }
}

impl<A> Peer<A> {
    /// What `peers` shows: a sleeping member that is away is asleep, not failed.
    pub fn status(&self) -> PeerStatus {
        match () {
            _ if self.refused => PeerStatus::Refused,
            _ if self.connections > 0 && self.authenticated => PeerStatus::Authenticated,
            _ if self.connections > 0 => PeerStatus::Connecting,
            _ if self.member && self.sleeps => PeerStatus::Asleep,
            _ if self.member => PeerStatus::Unreachable,
            _ => PeerStatus::Discovered,
        }
    }

    /// The addresses remembered (at most [`MAX_ADDRS_PER_PEER`] from discovery).
    pub fn addresses(&self) -> &BTreeSet<A> {
        &self.addresses
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// It proved membership on its current connection (the flag alone, as a roster or
    /// presence push is judged by it).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Connected and authenticated: a peer pushes, updates and catch-up go to.
    pub fn is_ready(&self) -> bool {
        self.authenticated && self.connections > 0
    }

    /// A member seen before, re-dialled when it drops.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// Refused at authentication.
    pub fn is_refused(&self) -> bool {
        self.refused
    }

    /// The last thing that went wrong with it.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The current re-dial back-off (zero after a success).
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// When it is dialled next, if scheduled.
    pub fn redial_at(&self) -> Option<Instant> {
        self.redial_at
    }

    /// The direct address this node last reached it at.
    pub fn dialled_addr(&self) -> Option<&A> {
        self.dialled_addr.as_ref()
    }

    /// When it last changed between connected and not (µs since the Unix epoch).
    pub fn since_us(&self) -> u64 {
        self.since_us
    }

    /// The domain revision it is known to hold: updates after it are pushed until
    /// acknowledged.
    pub fn revision(&self) -> u64 {
        self.revision
    }
}

/// What one tick of the peer checks decided, in the order the daemon carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTick<K, A> {
    /// Peers whose block expired: unblock them in the swarm.
    pub unblocked: Vec<K>,
    /// Connected peers that did not authenticate in time: disconnect them (no block).
    pub late: Vec<K>,
    /// Dials and re-dials due.
    pub dials: Vec<Dial<K, A>>,
    /// Disconnected strangers forgotten beyond [`MAX_STRANGERS`] (and peers beyond
    /// [`MAX_PEERS`]).
    pub forgotten: Vec<K>,
}

/// Every peer this node knows of, who is blocked, and the per-member circuit back-off.
#[derive(Debug, Clone)]
pub struct PeerBook<K, A> {
    me: K,
    peers: BTreeMap<K, Peer<A>>,
    blocked: BTreeMap<K, Instant>,
    /// Per member dialled through a broker: when to try again, and the wait that was used.
    circuits: BTreeMap<K, (Instant, Duration)>,
    /// The bound on connections, when set.
    bound: Option<Bound<K>>,
    /// The peers that hold a member certificate (not revoked), when the caller said: only
    /// those count in the overlay. A peer id anyone can announce by mDNS is no member.
    roster: Option<BTreeSet<K>>,
    /// When the recent stranger dials started (within [`STRANGER_DIAL_WINDOW`]).
    stranger_dials: VecDeque<Instant>,
}

/// A bound on connections: the overlay of the LAN members known now.
#[derive(Debug, Clone)]
struct Bound<K> {
    max_peers: usize,
    position: fn(&K) -> u64,
    overlay: Overlay<K>,
    /// The nearest members on each side of the ring that are not away: this node's ring
    /// neighbours when nobody near is away, else the ones past the gap (whose own walk
    /// finds this node, so both ends agree).
    bypass: BTreeSet<K>,
}

impl<K: Ord + Clone, A: Ord + Clone> PeerBook<K, A> {
    /// An empty book for the node whose key is `me`.
    pub fn new(me: K) -> Self {
        PeerBook {
            me,
            peers: BTreeMap::new(),
            blocked: BTreeMap::new(),
            circuits: BTreeMap::new(),
            bound: None,
            roster: None,
            stranger_dials: VecDeque::new(),
        }
    }

    /// Bounds the connections to LAN members at `max_peers` (see [`Overlay`]), each member
    /// placed on the ring at `position(key)`. Without it every member is dialled, as when the
    /// domain has at most `max_peers + 1` members.
    pub fn set_max_peers(&mut self, max_peers: usize, position: fn(&K) -> u64) {
        let overlay = Overlay::new([(position(&self.me), self.me.clone())], max_peers);
        self.bound = Some(Bound {
            max_peers,
            position,
            overlay,
            bypass: BTreeSet::new(),
        });
    }

    /// The bound on connections, if set.
    pub fn max_peers(&self) -> Option<usize> {
        self.bound.as_ref().map(|b| b.max_peers)
    }

    /// The overlay as last computed (under a bound).
    pub fn overlay(&self) -> Option<&Overlay<K>> {
        self.bound.as_ref().map(|b| &b.overlay)
    }

    /// The peers that hold a member certificate: from now on only they (found on the LAN)
    /// count in the overlay, so peer ids announced by a stranger cannot take places on the
    /// ring nor the bound's room. Called again whenever the roster changes.
    pub fn set_roster(&mut self, roster: impl IntoIterator<Item = K>) {
        let roster: BTreeSet<K> = roster.into_iter().collect();
        if self.roster.as_ref() != Some(&roster) {
            self.roster = Some(roster);
            self.refresh();
        }
    }

    /// Recomputes the overlay when the member set changed (this node and every peer found on
    /// the LAN that is neither refused nor blocked, and in the roster when one was given), and
    /// the ring bypass round away members.
    fn refresh(&mut self) {
        let Some(bound) = &self.bound else {
            return;
        };
        let roster = &self.roster;
        let members: BTreeSet<&K> = self
            .peers
            .iter()
            .filter(|(k, p)| p.lan && !p.refused && !self.blocked.contains_key(*k))
            .filter(|(k, _)| roster.as_ref().is_none_or(|r| r.contains(*k)))
            .map(|(k, _)| k)
            .chain([&self.me])
            .collect();
        let same = members.len() == bound.overlay.members().len()
            && members.iter().all(|k| bound.overlay.members().contains(*k));
        let overlay = if same {
            None
        } else {
            let position = bound.position;
            Some(Overlay::new(
                members.into_iter().map(|k| (position(k), k.clone())),
                bound.max_peers,
            ))
        };
        let Some(b) = &mut self.bound else {
            return;
        };
        if let Some(o) = overlay {
            b.overlay = o;
        }
        let away = |k: &K| {
            self.peers
                .get(k)
                .is_some_and(|p| p.away_until.is_some() && p.connections == 0)
        };
        b.bypass = b.overlay.ring_neighbours(&self.me, away);
    }

    /// Whether this node keeps (and dials) a connection to `peer`: always without a bound, for
    /// a peer not found on the LAN (a static peer, a broker, a circuit, a tag) and for one
    /// outside the roster (see [`PeerBook::set_roster`]); else when the overlay has the pair
    /// (which the other end computes the same way).
    pub fn wants(&self, peer: &K) -> bool {
        let Some(bound) = &self.bound else {
            return true;
        };
        // A peer outside the roster is no part of the overlay: it is dialled as without a
        // bound, and authentication refuses it (or admits a member this node had not heard
        // of, whose certificate then joins the roster).
        let in_roster = self.roster.as_ref().is_none_or(|r| r.contains(peer));
        match self.peers.get(peer) {
            Some(p) if p.lan && !p.pinned && in_roster => {
                bound.overlay.wants(&self.me, peer) || bound.bypass.contains(peer)
            }
            _ => true,
        }
    }

    /// Whether this node keeps a connection to `peer`, connected now or not: a peer found on
    /// this LAN that the bound wants (every one without a bound), or a member it was connected
    /// to before that the bound has no say over (a static peer, one reached through a
    /// broker). A LAN member the bound leaves to others is not kept, nor is a member this node
    /// only heard of.
    pub fn keeps(&self, peer: &K) -> bool {
        self.peers.get(peer).is_some_and(|p| p.lan || p.member) && self.wants(peer)
    }

    /// This node's own key.
    pub fn me(&self) -> &K {
        &self.me
    }

    /// One peer's record.
    pub fn get(&self, peer: &K) -> Option<&Peer<A>> {
        self.peers.get(peer)
    }

    /// Every peer, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Peer<A>)> {
        self.peers.iter()
    }

    /// How many peers are remembered.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// No peer remembered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// What `peers` shows for `peer`: its [`Peer::status`], except that a member this node
    /// does not [want](PeerBook::wants) and is not connected to is on standby: one that was
    /// connected (not unreachable), or one never connected that is in the roster (not merely
    /// discovered).
    pub fn status(&self, peer: &K) -> Option<PeerStatus> {
        let s = self.peers.get(peer)?.status();
        let in_roster = self.roster.as_ref().is_some_and(|r| r.contains(peer));
        Some(match s {
            PeerStatus::Unreachable if !self.wants(peer) => PeerStatus::Standby,
            PeerStatus::Discovered if in_roster && !self.wants(peer) => PeerStatus::Standby,
            s => s,
        })
    }

    /// At least one connection open.
    pub fn is_connected(&self, peer: &K) -> bool {
        self.peers.get(peer).is_some_and(|p| p.connections > 0)
    }

    /// Any peer connected.
    pub fn any_connected(&self) -> bool {
        self.peers.values().any(|p| p.connections > 0)
    }

    /// Connected and authenticated peers: where pushes, updates and catch-up go.
    pub fn ready(&self) -> impl Iterator<Item = &K> {
        self.peers
            .iter()
            .filter(|(_, p)| p.is_ready())
            .map(|(k, _)| k)
    }

    /// Whether the peer is blocked (refused, until [`BLOCK_FOR`] after).
    pub fn is_blocked(&self, peer: &K) -> bool {
        self.blocked.contains_key(peer)
    }

    /// A peer was found at `addrs` (mDNS, a member's presence on this LAN): remembers them
    /// (at most [`MAX_ADDRS_PER_PEER`]) and, if the two are not connected and no dial is
    /// scheduled, dials at once when this node's key is the smaller, else after
    /// [`DIAL_DEFER`], so that a pair usually ends up with one connection. `alone` (no
    /// connection, none pending either way) dials at once whatever the keys: a node that
    /// starts after the others would otherwise wait for them to hear of it.
    pub fn found_at(
        &mut self,
        peer: K,
        addrs: impl IntoIterator<Item = A>,
        alone: bool,
        now: Instant,
    ) -> Option<Dial<K, A>> {
        // Remembers the addresses and refreshes the overlay.
        self.discovered(peer.clone(), addrs);
        let st = self.peers.get(&peer)?;
        if st.connections > 0 || st.redial_at.is_some() {
            return None;
        }
        if !self.wants(&peer) {
            return None;
        }
        self.dial_wanted(peer, alone, now)
    }

    /// A peer was found on the LAN at `addrs`: remembers them (at most
    /// [`MAX_ADDRS_PER_PEER`]) and, being a sign of life, no longer counts it away. Dials
    /// nobody: the daemon tells the book of every peer an mDNS answer names before
    /// [`PeerBook::found_at`] decides, so the first decisions see them all.
    pub fn discovered(&mut self, peer: K, addrs: impl IntoIterator<Item = A>) {
        let st = self.peers.entry(peer).or_default();
        for a in addrs {
            if st.addresses.len() < MAX_ADDRS_PER_PEER {
                st.addresses.insert(a);
            }
        }
        st.lan = true;
        st.away_until = None;
        self.refresh();
    }

    /// The pair rule for a peer to dial: at once when this node's key is the smaller (or it
    /// is `alone`), else after [`DIAL_DEFER`]. Under a bound, a dial started is tried again
    /// after [`WANT_RETRY`] if it led nowhere (the swarm reports nothing for a dial it
    /// refused to start).
    fn dial_wanted(&mut self, peer: K, alone: bool, now: Instant) -> Option<Dial<K, A>> {
        if self.me < peer || alone {
            if !self.may_dial(&peer, now) {
                return None;
            }
            let d = self.dial(&peer);
            if d.is_some()
                && self.bound.is_some()
                && let Some(st) = self.peers.get_mut(&peer)
            {
                st.redial_at = Some(now + WANT_RETRY);
            }
            d
        } else {
            if let Some(st) = self.peers.get_mut(&peer) {
                st.redial_at = Some(now + DIAL_DEFER);
            }
            None
        }
    }

    /// A dial to `peer` with every address remembered, unless it is blocked, connected or
    /// has no address. Clears a scheduled re-dial (this is it).
    pub fn dial(&mut self, peer: &K) -> Option<Dial<K, A>> {
        if self.is_blocked(peer) || self.is_connected(peer) {
            return None;
        }
        let st = self.peers.get_mut(peer)?;
        st.redial_at = None;
        if st.addresses.is_empty() {
            return None;
        }
        Some(Dial {
            peer: peer.clone(),
            addresses: st.addresses.iter().cloned().collect(),
        })
    }

    /// `connect` with a device tag: remembers the tag's addresses (its first
    /// [`MAX_ADDRS_PER_PEER`], whatever is known already). The user asked for this peer:
    /// it is dialled and kept whatever the bound.
    pub fn add_tag_addresses(&mut self, peer: K, addrs: impl IntoIterator<Item = A>) {
        let st = self.peers.entry(peer).or_default();
        st.pinned = true;
        for a in addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
            st.addresses.insert(a);
        }
    }

    /// Dials now whatever was scheduled (`connect` with a tag not yet authenticated).
    pub fn dial_at_once(&mut self, peer: &K) -> Option<Dial<K, A>> {
        if let Some(st) = self.peers.get_mut(peer) {
            st.redial_at = None;
        }
        self.dial(peer)
    }

    /// Addresses a connected peer announced (identify), loopback ones already left out:
    /// remembered while there is room.
    pub fn learned_addrs(&mut self, peer: &K, addrs: impl IntoIterator<Item = A>) {
        if let Some(st) = self.peers.get_mut(peer) {
            for a in addrs {
                if st.addresses.len() >= MAX_ADDRS_PER_PEER {
                    break;
                }
                st.addresses.insert(a);
            }
        }
    }

    /// A connection to `peer` is up (`num_established` now open). `remote` is its address
    /// when this node dialled, `direct` the same without relay (`None` through a circuit).
    /// True for the first connection: send the authentication hello.
    pub fn established(
        &mut self,
        peer: K,
        num_established: usize,
        remote: Option<A>,
        direct: Option<A>,
        now: Instant,
        now_us: u64,
    ) -> bool {
        let st = self.peers.entry(peer).or_default();
        st.connections = num_established;
        st.redial_at = None;
        let was_away = st.away_until.take().is_some();
        if st.connected_at.is_none() || num_established == 1 {
            st.connected_at = Some(now);
        }
        if direct.is_some() {
            st.dialled_addr = direct;
        }
        if let Some(a) = remote
            && st.addresses.len() < MAX_ADDRS_PER_PEER
        {
            st.addresses.insert(a);
        }
        let first = num_established == 1;
        if first {
            st.auth_attempts = 0;
            st.ping_failures = 0;
            st.since_us = now_us;
        }
        if was_away {
            self.refresh();
        }
        first
    }

    /// A connection to `peer` closed (`num_established` still open, `cause` when it failed).
    /// When the last one of a member closes, it is re-dialled after its back-off if this node
    /// [wants](PeerBook::wants) it (a surplus connection closed under the bound is not):
    /// returns when (`jitter` is a random number the caller drew).
    pub fn closed(
        &mut self,
        peer: &K,
        num_established: usize,
        cause: Option<String>,
        jitter: u64,
        now: Instant,
        now_us: u64,
    ) -> Option<Instant> {
        let st = self.peers.get_mut(peer)?;
        st.connections = num_established;
        if num_established == 0 {
            st.authenticated = false;
            st.welcomed = false;
            st.greeted = false;
            st.since_us = now_us;
            st.connected_at = None;
            st.last_heard = None;
            st.probed_at = None;
            st.probe_in_flight = false;
            st.probe_failures = 0;
            // A refused peer keeps the reason it was refused for.
            if let Some(c) = cause.filter(|_| !st.refused) {
                st.last_error = Some(c);
            }
        }
        let member = st.member;
        self.refresh();
        if member && num_established == 0 && self.wants(peer) {
            self.schedule_redial(peer, jitter, now)
        } else {
            None
        }
    }

    /// A dial to `peer` failed: unless it is connected (another connection won) or blocked,
    /// it is dialled again after its back-off; returns when. Under a bound smaller than the
    /// domain's LAN (the overlay is not a full mesh), a LAN peer is away instead: the ring
    /// goes round it, and it is tried again after [`AWAY_FOR`] if the overlay wants it.
    pub fn dial_failed(
        &mut self,
        peer: &K,
        error: String,
        jitter: u64,
        now: Instant,
    ) -> Option<Instant> {
        if let Some(st) = self.peers.get_mut(peer).filter(|s| !s.refused) {
            st.last_error = Some(error);
        }
        if self.is_connected(peer) || self.is_blocked(peer) {
            return None;
        }
        if self.is_stranger(peer) {
            // Not a member: no re-dial, however often it is announced again
            // ([`STRANGER_RETRY`] rations the next try).
            if let Some(st) = self.peers.get_mut(peer) {
                st.redial_at = None;
            }
            return None;
        }
        if self.overlay().is_some_and(|o| o.is_bounded())
            && let Some(st) = self.peers.get_mut(peer).filter(|p| p.lan && !p.pinned)
        {
            st.away_until = Some(now + AWAY_FOR);
            st.redial_at = None;
            self.refresh();
            return None;
        }
        self.schedule_redial(peer, jitter, now)
    }

    /// Doubles the peer's back-off (from [`BACKOFF_MIN`] to at most [`BACKOFF_MAX`]) and
    /// schedules a re-dial at 50 to 100 % of it, chosen by `jitter`, so peers that lost each
    /// other together do not all come back at the same instant.
    pub fn schedule_redial(&mut self, peer: &K, jitter: u64, now: Instant) -> Option<Instant> {
        let st = self.peers.get_mut(peer)?;
        st.backoff = if st.backoff.is_zero() {
            BACKOFF_MIN
        } else {
            (st.backoff * 2).min(BACKOFF_MAX)
        };
        let ms = st.backoff.as_millis() as u64;
        let wait = ms / 2 + (jitter % (ms / 2 + 1));
        let at = now + Duration::from_millis(wait);
        st.redial_at = Some(at);
        Some(at)
    }

    /// The peer proved membership (its certificate says whether it `sleeps`): resets its
    /// back-off and clears its error. `None` when it is no longer connected (the verdict is
    /// moot: its next connection proves membership again), else whether it was not
    /// authenticated before.
    pub fn admit(&mut self, peer: &K, sleeps: bool) -> Option<bool> {
        if !self.is_connected(peer) {
            return None;
        }
        let st = self.peers.get_mut(peer)?;
        let newly = !st.authenticated;
        st.authenticated = true;
        st.member = true;
        st.backoff = Duration::ZERO;
        st.last_error = None;
        st.sleeps = sleeps;
        st.refused = false;
        self.circuits.remove(peer);
        Some(newly)
    }

    /// The peer's `Welcome` arrived: it admitted this node.
    pub fn welcomed(&mut self, peer: &K) {
        if let Some(st) = self.peers.get_mut(peer).filter(|s| s.connections > 0) {
            st.welcomed = true;
        }
    }

    /// Whether to greet `peer` now: this node admitted it, it admitted this node, and it was
    /// not greeted yet on its current connections (then it counts as greeted).
    pub fn greet_now(&mut self, peer: &K) -> bool {
        match self.peers.get_mut(peer) {
            Some(st) if st.authenticated && st.welcomed && !st.greeted => {
                st.greeted = true;
                true
            }
            _ => false,
        }
    }

    /// The peer proved it is not a member: no more re-dials, and blocked for [`BLOCK_FOR`].
    /// The daemon blocks it in the swarm and disconnects it.
    pub fn refuse(&mut self, peer: &K, reason: String, now: Instant) {
        if let Some(st) = self.peers.get_mut(peer) {
            st.last_error = Some(reason);
            st.redial_at = None;
            st.member = false;
            st.refused = true;
            // Not authenticated from now on: nothing it asks is served, and the checks that
            // refused it (expiry, revocation) do not find it again before it is gone.
            st.authenticated = false;
        }
        self.blocked.insert(peer.clone(), now + BLOCK_FOR);
    }

    /// An authentication request to `peer` failed: true when the hello is to be sent again
    /// (still connected, not authenticated, fewer than [`MAX_AUTH_ATTEMPTS`] re-sent).
    pub fn auth_failed(&mut self, peer: &K, error: &str) -> bool {
        match self.peers.get_mut(peer) {
            // A failed roster push to a member is not an authentication problem.
            Some(st) if st.authenticated => false,
            Some(st) => {
                if !st.refused {
                    st.last_error = Some(format!("authentication: {error}"));
                }
                let again = st.connections > 0 && st.auth_attempts < MAX_AUTH_ATTEMPTS;
                st.auth_attempts += u8::from(again);
                again
            }
            None => false,
        }
    }

    /// The peer said (hello) it holds `revision`.
    pub fn set_revision(&mut self, peer: &K, revision: u64) {
        if let Some(st) = self.peers.get_mut(peer) {
            st.revision = revision;
        }
    }

    /// The peer acknowledged update `serial`: it holds at least that revision.
    pub fn acknowledged(&mut self, peer: &K, serial: u64) {
        if let Some(st) = self.peers.get_mut(peer) {
            st.revision = st.revision.max(serial);
        }
    }

    /// An authenticated peer sent update `serial`: it holds at least that revision.
    pub fn sent_update(&mut self, peer: &K, serial: u64) {
        if let Some(st) = self.peers.get_mut(peer).filter(|s| s.authenticated) {
            st.revision = st.revision.max(serial);
        }
    }

    /// Ready peers known to hold a revision before `mine`, with theirs: updates are pushed
    /// to them again.
    pub fn behind(&self, mine: u64) -> Vec<(K, u64)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.is_ready() && p.revision < mine)
            .map(|(k, p)| (k.clone(), p.revision))
            .collect()
    }

    /// The peer checks of one tick, in the daemon's order: unblock peers whose block
    /// expired (a `revoked` one stays blocked for another [`BLOCK_FOR`]), find peers that did
    /// not authenticate within [`AUTH_TIMEOUT`], start the dials due, forget the disconnected
    /// strangers beyond [`MAX_PEERS`].
    pub fn tick(&mut self, now: Instant, revoked: impl Fn(&K) -> bool) -> PeerTick<K, A> {
        let expired: Vec<K> = self
            .blocked
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| p.clone())
            .collect();
        let mut unblocked = vec![];
        for p in expired {
            // A revoked device stays blocked: nothing it can do makes it a member again.
            if revoked(&p) {
                self.blocked.insert(p, now + BLOCK_FOR);
                continue;
            }
            self.blocked.remove(&p);
            unblocked.push(p);
        }
        let late = self.late(now);
        let mut dials = self.dial_newly_wanted(now);
        let due: Vec<K> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connections == 0 && p.redial_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for p in due {
            if !self.wants(&p) {
                // The overlay moved on (or the peer was closed as surplus): no re-dial.
                if let Some(st) = self.peers.get_mut(&p) {
                    st.redial_at = None;
                }
                continue;
            }
            if !self.may_dial(&p, now) {
                if let Some(st) = self.peers.get_mut(&p) {
                    st.redial_at = None;
                }
                continue;
            }
            dials.extend(self.dial(&p));
            if self.bound.is_some()
                && let Some(st) = self.peers.get_mut(&p)
            {
                st.redial_at = Some(now + WANT_RETRY);
            }
        }
        let forgotten = self.forget_strangers();
        PeerTick {
            unblocked,
            late,
            dials,
            forgotten,
        }
    }

    /// Under a bound: the overlay wants peers that are neither connected nor scheduled (a
    /// member joined or left, or one came back from away): the pair rule dials them.
    fn dial_newly_wanted(&mut self, now: Instant) -> Vec<Dial<K, A>> {
        if self.bound.is_none() {
            return vec![];
        }
        self.refresh();
        let idle: Vec<K> = self
            .peers
            .iter()
            .filter(|(k, p)| {
                p.lan
                    // A member, one away (a dial failed), or a peer never tried: not a
                    // stranger that connected and failed to authenticate (it is not dialled
                    // again, as without a bound).
                    && (p.member || p.away_until.is_some() || p.last_error.is_none())
                    && p.connections == 0
                    && p.redial_at.is_none()
                    && p.away_until.is_none_or(|t| t <= now)
                    && !self.blocked.contains_key(*k)
            })
            .map(|(k, _)| k.clone())
            .filter(|k| self.wants(k))
            .collect();
        idle.into_iter()
            .filter_map(|k| self.dial_wanted(k, false, now))
            .collect()
    }

    /// Under a bound, the surplus connection to close now, if any: an authenticated LAN
    /// member neither end of the pair wants, connected for at least [`SURPLUS_AFTER`], while
    /// more than `max_peers` peers are ready. One at a time, so the graph does not flap; the
    /// pairs the overlay wants stay, so no member loses its path. `keep` names the peers the
    /// daemon never closes (static peers, brokers).
    pub fn surplus(&mut self, now: Instant, keep: impl Fn(&K) -> bool) -> Option<K> {
        let max = self.max_peers()?;
        self.refresh();
        if self.ready().count() <= max {
            return None;
        }
        self.peers
            .iter()
            .filter(|(k, p)| {
                p.is_ready()
                    && p.lan
                    && !p.pinned
                    && p.connected_at.is_some_and(|t| now - t >= SURPLUS_AFTER)
                    && !self.wants(k)
                    && !keep(k)
            })
            .map(|(k, _)| k.clone())
            .next()
    }

    /// Connected peers that did not authenticate within [`AUTH_TIMEOUT`] of connecting. Not
    /// proof of anything: the daemon drops the connection without blocking, and re-dials.
    pub fn late(&mut self, now: Instant) -> Vec<K> {
        let mut late = vec![];
        for (k, p) in self.peers.iter_mut() {
            // A refused peer is being disconnected already, and keeps its reason.
            if p.connections > 0
                && !p.authenticated
                && !p.refused
                && p.connected_at.is_some_and(|t| now - t > AUTH_TIMEOUT)
            {
                p.last_error = Some("did not authenticate in time".into());
                late.push(k.clone());
            }
        }
        late
    }
}

/// The IPv4 address of a direct TCP address (`/ip4/A/tcp/P…`, not through a relay).
pub fn direct_ipv4(a: &Multiaddr) -> Option<Ipv4Addr> {
    use libp2p::multiaddr::Protocol;
    let mut it = a.iter();
    match (it.next(), it.next()) {
        (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(_)))
            if !a.iter().any(|p| matches!(p, Protocol::P2pCircuit)) =>
        {
            Some(ip)
        }
        _ => None,
    }
}

/// The addresses of a member's presence record that are on this node's own LAN (the same
/// IPv4 /24 as one of its direct listen addresses `own`, but none of them): those worth
/// dialling as if mDNS had found them. Other addresses are left to the broker paths: a dial
/// to an unreachable private address could hang for seconds.
pub fn on_same_lan<'a>(
    own: impl IntoIterator<Item = &'a Multiaddr>,
    theirs: &[String],
) -> Vec<Multiaddr> {
    let own: Vec<Ipv4Addr> = own
        .into_iter()
        .filter_map(direct_ipv4)
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    let same_lan = |ip: &Ipv4Addr| {
        !own.contains(ip) && own.iter().any(|o| o.octets()[..3] == ip.octets()[..3])
    };
    theirs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .filter(|a| direct_ipv4(a).is_some_and(|ip| same_lan(&ip)))
        .collect()
}

/// The daemon's book: libp2p peer ids and multiaddresses.
pub type Peers = PeerBook<PeerId, Multiaddr>;

mod liveness;
mod statics;
mod strangers;

#[cfg(test)]
mod tests;
