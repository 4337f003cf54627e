//! A budget for inbound connections that have not proved membership yet.
//!
//! Any host on the LAN can open TCP connections, and any peer id is free to mint, so blocking
//! by peer id bounds nothing and every connection costs the node a Noise handshake, buffers and
//! up to 15 s of bookkeeping before it is refused. This behaviour
//! counts inbound connections from the moment they are accepted (before Noise) until the peer
//! is authenticated or the connection closes, and denies a new one past
//! [`MAX_UNAUTH_PER_IP`] from one address or [`MAX_UNAUTH_TOTAL`] in all. Connections this node
//! dialled are not counted: it chose them. Relayed connections (through a broker) are counted
//! in the total only, since they all come from the broker's address.
//!
//! The accounting is [`Unauthenticated`], which does no I/O; [`Admission`] applies it to the
//! swarm's events and is told by the daemon when a peer is authenticated.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Inbound connections not authenticated yet from one IP address, at most.
pub const MAX_UNAUTH_PER_IP: usize = 4;
/// Inbound connections not authenticated yet, at most, from every address together.
pub const MAX_UNAUTH_TOTAL: usize = 64;

/// Why an inbound connection was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Its address already has [`MAX_UNAUTH_PER_IP`] connections waiting.
    #[error("{MAX_UNAUTH_PER_IP} connections from {0} are not authenticated yet")]
    PerAddress(IpAddr),
    /// [`MAX_UNAUTH_TOTAL`] connections are waiting.
    #[error("{MAX_UNAUTH_TOTAL} connections are not authenticated yet")]
    Total,
}

/// The inbound connections waiting for authentication, by address (sans-IO).
#[derive(Debug, Default)]
pub struct Unauthenticated {
    /// Each counted connection, with its address (`None`: relayed).
    conns: HashMap<ConnectionId, Option<IpAddr>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Peers authenticated on a connection that is still open: their further connections
    /// are not counted.
    members: HashSet<PeerId>,
    member_conns: HashMap<PeerId, HashSet<ConnectionId>>,
    /// Connections denied so far.
    pub denied: u64,
}

impl Unauthenticated {
    /// Counts a new inbound connection from `ip`, or denies it.
    pub fn accept(&mut self, id: ConnectionId, ip: Option<IpAddr>) -> Result<(), Denied> {
        if self.conns.len() >= MAX_UNAUTH_TOTAL {
            self.denied += 1;
            return Err(Denied::Total);
        }
        if let Some(ip) = ip {
            let n = self.per_ip.entry(ip).or_default();
            if *n >= MAX_UNAUTH_PER_IP {
                self.denied += 1;
                return Err(Denied::PerAddress(ip));
            }
            *n += 1;
        }
        self.conns.insert(id, ip);
        Ok(())
    }

    /// The connection's peer is known (Noise completed). A peer authenticated on another open
    /// connection is not counted further.
    pub fn established(&mut self, id: ConnectionId, peer: PeerId) {
        self.member_conns.entry(peer).or_default().insert(id);
        if self.members.contains(&peer) {
            self.release(id);
        }
    }

    /// `peer` proved membership: none of its connections count any more.
    pub fn authenticated(&mut self, peer: PeerId) {
        let Some(ids) = self.member_conns.get(&peer) else {
            // Its connections are gone: its next one proves membership again.
            return;
        };
        self.members.insert(peer);
        for id in ids.clone() {
            self.release(id);
        }
    }

    /// The connection closed (or its handshake failed).
    pub fn closed(&mut self, id: ConnectionId, peer: Option<PeerId>) {
        self.release(id);
        if let Some(peer) = peer
            && let Some(ids) = self.member_conns.get_mut(&peer)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.member_conns.remove(&peer);
                self.members.remove(&peer);
            }
        }
    }

    /// Connections counted now.
    pub fn waiting(&self) -> usize {
        self.conns.len()
    }

    fn release(&mut self, id: ConnectionId) {
        if let Some(Some(ip)) = self.conns.remove(&id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// The IP address a connection comes from, or `None` for a relayed one.
fn source_ip(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

/// The behaviour: [`Unauthenticated`] applied to the swarm's connections.
#[derive(Debug, Default)]
pub struct Admission {
    book: Unauthenticated,
}

impl Admission {
    /// `peer` proved membership: its connections no longer count against the budget.
    pub fn authenticated(&mut self, peer: PeerId) {
        self.book.authenticated(peer);
    }

    /// Inbound connections denied so far.
    pub fn denied(&self) -> u64 {
        self.book.denied
    }

    /// Inbound connections waiting for authentication now.
    pub fn waiting(&self) -> usize {
        self.book.waiting()
    }
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.book
            .accept(connection_id, source_ip(remote_addr))
            .map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.book.established(connection_id, peer);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Not counted, but known: an inbound connection of a peer authenticated over this one
        // is not counted either.
        self.book
            .member_conns
            .entry(peer)
            .or_default()
            .insert(connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(c) => self.book.closed(c.connection_id, Some(c.peer_id)),
            // A connection another behaviour denied after this one counted it, or a dial that
            // failed: forgotten like a closed one (its peer's entry too, when it was known).
            FromSwarm::ListenFailure(f) => self.book.closed(f.connection_id, f.peer_id),
            FromSwarm::DialFailure(f) => self.book.closed(f.connection_id, f.peer_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn one_address_gets_at_most_its_share_and_the_rest_still_get_in() {
        let mut u = Unauthenticated::default();
        for i in 0..MAX_UNAUTH_PER_IP {
            u.accept(ConnectionId::new_unchecked(i), ip(1)).unwrap();
        }
        assert_eq!(
            u.accept(ConnectionId::new_unchecked(100), ip(1)),
            Err(Denied::PerAddress(IpAddr::from([10, 0, 0, 1])))
        );
        // Another address, and a relayed connection, still get in.
        u.accept(ConnectionId::new_unchecked(101), ip(2)).unwrap();
        u.accept(ConnectionId::new_unchecked(102), None).unwrap();
        assert_eq!(u.denied, 1);
        // One closes: its address has room again.
        u.closed(ConnectionId::new_unchecked(0), None);
        u.accept(ConnectionId::new_unchecked(103), ip(1)).unwrap();
    }

    #[test]
    fn the_total_is_bounded_whatever_the_addresses() {
        let mut u = Unauthenticated::default();
        for i in 0..MAX_UNAUTH_TOTAL {
            u.accept(ConnectionId::new_unchecked(i), ip(i as u8))
                .unwrap();
        }
        assert_eq!(
            u.accept(ConnectionId::new_unchecked(1000), ip(200)),
            Err(Denied::Total)
        );
        assert_eq!(
            u.accept(ConnectionId::new_unchecked(1001), None),
            Err(Denied::Total)
        );
        assert_eq!(u.waiting(), MAX_UNAUTH_TOTAL);
    }

    #[test]
    fn authentication_releases_a_peers_connections_until_they_close() {
        let mut u = Unauthenticated::default();
        let member = PeerId::random();
        let c = |i| ConnectionId::new_unchecked(i);
        for i in 0..MAX_UNAUTH_PER_IP {
            u.accept(c(i), ip(1)).unwrap();
        }
        u.established(c(0), member);
        assert!(u.accept(c(10), ip(1)).is_err());
        u.authenticated(member);
        assert_eq!(u.waiting(), MAX_UNAUTH_PER_IP - 1);
        u.accept(c(11), ip(1)).unwrap();
        // A second connection of the authenticated member is not counted once established.
        u.established(c(11), member);
        assert_eq!(u.waiting(), MAX_UNAUTH_PER_IP - 1);
        // Once every connection of the member closed, its next one counts again.
        u.closed(c(0), Some(member));
        u.closed(c(11), Some(member));
        u.accept(c(12), ip(1)).unwrap();
        u.established(c(12), member);
        assert_eq!(u.waiting(), MAX_UNAUTH_PER_IP);
        // A verdict for a peer with no connection admits nothing in advance.
        let gone = PeerId::random();
        u.authenticated(gone);
        u.closed(c(1), None);
        u.accept(c(13), ip(1)).unwrap();
        u.established(c(13), gone);
        assert_eq!(u.waiting(), MAX_UNAUTH_PER_IP);
    }

    #[test]
    fn the_source_address_is_the_first_ip_and_none_when_relayed() {
        let direct: Multiaddr = "/ip4/10.0.0.7/tcp/4001".parse().unwrap();
        assert_eq!(source_ip(&direct), Some(IpAddr::from([10, 0, 0, 7])));
        let v6: Multiaddr = "/ip6/fe80::1/tcp/4001".parse().unwrap();
        assert!(matches!(source_ip(&v6), Some(IpAddr::V6(_))));
        let relayed: Multiaddr = format!(
            "/ip4/10.0.0.9/tcp/4001/p2p/{}/p2p-circuit",
            PeerId::random()
        )
        .parse()
        .unwrap();
        assert_eq!(source_ip(&relayed), None);
    }
}
