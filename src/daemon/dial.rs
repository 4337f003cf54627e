//! Dialling: mDNS and presence discoveries, static peers, connection brokers (reservations
//! and circuits) and re-dial back-off.
//!
//! Carries out the dials the peer book ([`crate::mesh::PeerBook`]) decides on, and finds
//! the broker paths; it never authenticates a peer.

use std::time::Instant;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use super::Daemon;
use super::addr::{is_circuit, strip_p2p};
use crate::mesh::{Dial, on_same_lan};

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
        st.dialled_addr()
            .cloned()
            .or_else(|| st.addresses().iter().find(|a| !is_circuit(a)).cloned())
    }

    /// Dials members this node is not connected to through each connected broker.
    pub(super) fn dial_via_brokers(&mut self) {
        let now = Instant::now();
        let connected_brokers: Vec<(PeerId, Multiaddr)> = self
            .brokers
            .iter()
            .filter(|b| self.peers.get(b).is_some_and(|p| p.is_ready()))
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
            // A member on this LAN that the bound on connections leaves to others is not
            // worth a circuit either.
            if target == me
                || self.brokers.contains(&target)
                || !self.peers.wants(&target)
                || self.swarm.is_connected(&target)
                || !self.peers.circuit_due(&target, now)
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
            self.peers.circuit_dialled(target, now);
        }
    }

    /// Dials the `--peer` addresses that are not connected: those naming a peer id when that
    /// peer is not connected, the others when no peer at all is connected.
    pub(super) fn dial_static_peers(&mut self) {
        let statics: Vec<(Multiaddr, Option<PeerId>)> = self
            .static_peers
            .iter()
            .map(|a| {
                let peer = a.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                    _ => None,
                });
                (a.clone(), peer)
            })
            .collect();
        for a in self.peers.static_dials(&statics) {
            let opts = DialOpts::unknown_peer_id()
                .address(a.clone())
                .allocate_new_port()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(addr = %a, error = %e, "cannot dial static peer");
            }
        }
    }

    /// Starts a dial the peer book decided on.
    pub(super) fn start_dial(&mut self, dial: Dial<PeerId, Multiaddr>) {
        let peer = dial.peer;
        let opts = DialOpts::peer_id(peer)
            .addresses(dial.addresses)
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
            || self.peers.is_blocked(&peer)
            || self.swarm.is_connected(&peer)
        {
            return;
        }
        let Some(record) = self
            .node
            .presence_records()
            .find(|p| p.body.device == device)
        else {
            return;
        };
        // Compared with this node's own direct IPv4 addresses (relayed listen addresses name
        // the broker's).
        let on_lan = on_same_lan(self.swarm.listeners(), &record.body.addresses);
        if on_lan.is_empty() {
            return;
        }
        self.found_at(peer, on_lan);
    }

    /// A peer was found at `addrs` (mDNS, or a member's presence on this LAN): remembers them
    /// (at most [`MAX_ADDRS_PER_PEER`](crate::mesh::MAX_ADDRS_PER_PEER)) and, if the two are
    /// not connected and no dial is scheduled, dials at once (not at the next tick) when this
    /// node's peer id is the smaller, else after [`DIAL_DEFER`](crate::mesh::DIAL_DEFER), so that a pair usually ends up with one connection.
    /// A node with no connection, no dial under way and none coming in dials at once whatever
    /// the ids: a node that starts after the others hears their mDNS answers, but they do not
    /// hear of it until their next query, so waiting for them would leave it alone for
    /// `DIAL_DEFER`; its first connection brings every member's presence record, and the
    /// others learn its own from that member.
    pub(super) fn found_at(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        let info = self.swarm.network_info();
        let pending = info.connection_counters();
        let alone = info.num_peers() == 0
            && pending.num_pending_outgoing() == 0
            && pending.num_pending_incoming() == 0;
        if let Some(d) = self.peers.found_at(peer, addrs, alone, Instant::now()) {
            self.start_dial(d);
        }
    }
}
