//! Dialling: mDNS and presence discoveries, static peers, connection brokers (reservations
//! and circuits) and re-dial back-off.
//!
//! Decides when and where to dial; it never authenticates a peer.

use std::time::{Duration, Instant};

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use rand_core::RngCore;

use super::addr::{direct_ipv4, is_circuit, strip_p2p};
use super::{ANTI_ENTROPY_EVERY, Daemon, MAX_ADDRS_PER_PEER};

/// When both sides discover each other, the larger peer id waits this long before dialling,
/// so the pair usually ends up with one connection.
const DIAL_DEFER: Duration = Duration::from_millis(1500);
/// Re-dial back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Daemon {
    /// Takes a reservation on `peer` if it is a connection broker, so members on other
    /// segments can reach this device through it.
    pub(super) fn reserve_on_broker(&mut self, peer: PeerId) {
        if self.broker || !self.brokers.contains(&peer) || self.reservations.contains_key(&peer) {
            return;
        }
        let Some(addr) = self.broker_addr(&peer) else {
            return;
        };
        let addr = strip_p2p(addr)
            .with(libp2p::multiaddr::Protocol::P2p(peer))
            .with(libp2p::multiaddr::Protocol::P2pCircuit);
        match self.swarm.listen_on(addr.clone()) {
            Ok(id) => {
                tracing::info!(broker = %peer, %addr, "reserving a relayed address on the broker");
                self.reservations.insert(peer, id);
            }
            Err(e) => tracing::warn!(broker = %peer, error = %e, "cannot reserve on the broker"),
        }
    }

    /// Where this node reaches a broker: the address it dialled, else one it was told.
    fn broker_addr(&self, broker: &PeerId) -> Option<Multiaddr> {
        let st = self.peers.get(broker)?;
        st.dialled_addr
            .clone()
            .or_else(|| st.addresses.iter().find(|a| !is_circuit(a)).cloned())
    }

    /// Dials members this node is not connected to through each connected broker.
    pub(super) fn dial_via_brokers(&mut self) {
        let now = Instant::now();
        let connected_brokers: Vec<(PeerId, Multiaddr)> = self
            .brokers
            .iter()
            .filter(|b| {
                self.peers
                    .get(b)
                    .is_some_and(|p| p.authenticated && p.connections > 0)
            })
            .filter_map(|b| Some((*b, self.broker_addr(b)?)))
            .collect();
        if connected_brokers.is_empty() {
            return;
        }
        let me = *self.swarm.local_peer_id();
        // Only members whose presence says they hold a reservation on one of our brokers,
        // and only through that broker: a broker charges every circuit attempt to the
        // dialler, so blind attempts at absent members would use up its allowance.
        let mut plans: Vec<(PeerId, Vec<Multiaddr>)> = vec![];
        for p in self.node.presence_records() {
            let Some(cert) = self.node.member(p.body.device) else {
                continue;
            };
            let target = cert.peer_id();
            if target == me
                || self.brokers.contains(&target)
                || self.swarm.is_connected(&target)
                || self.blocked.contains_key(&target)
                || self
                    .circuit_next
                    .get(&target)
                    .is_some_and(|(t, _)| *t > now)
            {
                continue;
            }
            let addrs: Vec<Multiaddr> = connected_brokers
                .iter()
                .filter(|(b, _)| {
                    let via = format!("/p2p/{b}/p2p-circuit");
                    p.body.addresses.iter().any(|a| a.contains(&via))
                })
                .map(|(b, addr)| {
                    strip_p2p(addr.clone())
                        .with(libp2p::multiaddr::Protocol::P2p(*b))
                        .with(libp2p::multiaddr::Protocol::P2pCircuit)
                        .with(libp2p::multiaddr::Protocol::P2p(target))
                })
                .collect();
            if !addrs.is_empty() {
                plans.push((target, addrs));
            }
        }
        for (target, addrs) in plans {
            let opts = DialOpts::peer_id(target)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            // A dial refused because one is already under way (for example to the member's
            // LAN address) is no attempt: try the broker again at the next round.
            if self.swarm.dial(opts).is_err() {
                continue;
            }
            // Back off per member while it stays unreachable: 10 s doubling to 5 min.
            let wait = self
                .circuit_next
                .get(&target)
                .map_or(ANTI_ENTROPY_EVERY, |(_, w)| {
                    (*w * 2).min(Duration::from_secs(300))
                });
            self.circuit_next.insert(target, (now + wait, wait));
        }
    }

    /// Dials the `--peer` addresses that are not connected: those naming a peer id when that
    /// peer is not connected, the others when no peer at all is connected.
    pub(super) fn dial_static_peers(&mut self) {
        let connected_any = self.peers.values().any(|p| p.connections > 0);
        for a in self.static_peers.clone() {
            let peer = a.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            let wanted = match peer {
                Some(id) => !self.swarm.is_connected(&id) && !self.blocked.contains_key(&id),
                None => !connected_any,
            };
            if !wanted {
                continue;
            }
            let opts = DialOpts::unknown_peer_id()
                .address(a.clone())
                .allocate_new_port()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(addr = %a, error = %e, "cannot dial static peer");
            }
        }
    }

    pub(super) fn dial(&mut self, peer: PeerId) {
        if self.blocked.contains_key(&peer) || self.swarm.is_connected(&peer) {
            return;
        }
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        st.redial_at = None;
        if st.addresses.is_empty() {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(st.addresses.iter().cloned().collect())
            .condition(PeerCondition::DisconnectedAndNotDialing)
            // A fresh source port: dialling from the listening port lets two simultaneous
            // dials collide into one TCP connection with two Noise initiators.
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial not started");
        }
    }

    /// A member's presence record names addresses on this node's own LAN (the same IPv4 /24
    /// as one of its listen addresses) and the two are not connected: remember them and dial,
    /// as if mDNS had found it. mDNS alone misses a member whose answer was lost until the next
    /// query (`--mdns-interval`, 5 s), and a member that starts after this node's query until
    /// that member dials; one authenticated member's presence push closes both gaps. Other
    /// addresses are left to the broker paths: a dial to an unreachable private address
    /// could hang for seconds and hold up the circuit dial to the same member.
    pub(super) fn dial_from_presence(&mut self, device: u32, peer: PeerId) {
        let me = *self.swarm.local_peer_id();
        // With --no-mdns the operator chose where peers come from (network.md).
        if !self.swarm.behaviour().mdns.is_enabled()
            || peer == me
            || self.blocked.contains_key(&peer)
            || self.swarm.is_connected(&peer)
        {
            return;
        }
        // This node's own direct IPv4 addresses (relayed listen addresses name the broker's).
        let own: Vec<std::net::Ipv4Addr> = self
            .swarm
            .listeners()
            .filter_map(direct_ipv4)
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .collect();
        let same_lan = |ip: &std::net::Ipv4Addr| {
            !own.contains(ip) && own.iter().any(|o| o.octets()[..3] == ip.octets()[..3])
        };
        let Some(record) = self
            .node
            .presence_records()
            .find(|p| p.body.device == device)
        else {
            return;
        };
        let on_lan: Vec<Multiaddr> = record
            .body
            .addresses
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .filter(|a| direct_ipv4(a).is_some_and(|ip| same_lan(&ip)))
            .collect();
        if on_lan.is_empty() {
            return;
        }
        self.found_at(peer, on_lan);
    }

    /// A peer was found at `addrs` (mDNS, or a member's presence on this LAN): remembers them
    /// (at most [`MAX_ADDRS_PER_PEER`]) and, if the two are not connected and no dial is
    /// scheduled, dials at once (not at the next tick) when this node's peer id is the
    /// smaller, else after [`DIAL_DEFER`], so that a pair usually ends up with one connection.
    /// A node with no connection, no dial under way and none coming in dials at once whatever
    /// the ids: a node that starts after the others hears their mDNS answers, but they do not
    /// hear of it until their next query, so waiting for them would leave it alone for
    /// `DIAL_DEFER`; its first connection brings every member's presence record, and the
    /// others learn its own from that member.
    pub(super) fn found_at(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        let me = *self.swarm.local_peer_id();
        let info = self.swarm.network_info();
        let pending = info.connection_counters();
        let alone = info.num_peers() == 0
            && pending.num_pending_outgoing() == 0
            && pending.num_pending_incoming() == 0;
        let st = self.peers.entry(peer).or_default();
        for a in addrs {
            if st.addresses.len() < MAX_ADDRS_PER_PEER {
                st.addresses.insert(a);
            }
        }
        if st.connections > 0 || st.redial_at.is_some() {
            return;
        }
        if me < peer || alone {
            self.dial(peer);
        } else {
            st.redial_at = Some(Instant::now() + DIAL_DEFER);
        }
    }

    pub(super) fn schedule_redial(&mut self, peer: PeerId) {
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        st.backoff = if st.backoff.is_zero() {
            BACKOFF_MIN
        } else {
            (st.backoff * 2).min(BACKOFF_MAX)
        };
        // Jitter: 50 to 100 % of the back-off, so peers that lost each other together do
        // not all come back at the same instant.
        let ms = st.backoff.as_millis() as u64;
        let jitter = ms / 2 + (rand_core::OsRng.next_u64() % (ms / 2 + 1));
        st.redial_at = Some(Instant::now() + Duration::from_millis(jitter));
    }
}
