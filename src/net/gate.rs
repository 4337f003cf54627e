//! A gate in front of a behaviour (gossipsub): until the application opens it for a peer,
//! that peer's connection handler neither sends nor reads anything.
//!
//! Gossipsub admits every connected peer that speaks its protocol. Its blacklist does not
//! stop a blacklisted peer from being grafted into the mesh, so it cannot keep an
//! unauthenticated peer from seeing gossip. The gate does: the inner handler is not polled
//! (so nothing queued for the peer is written) and inbound streams the peer opens are held
//! unread until the peer is authenticated. A refused peer is disconnected with both closed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll, Waker};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Inbound streams held per closed connection by default ([`Gate::new`]); more are dropped
/// (closed).
const MAX_HELD_INBOUND: usize = 2;

/// The gate around behaviour `B`.
pub struct Gate<B: NetworkBehaviour> {
    inner: B,
    /// Inbound streams held per closed connection.
    hold: usize,
    open: HashSet<PeerId>,
    conns: HashMap<PeerId, HashSet<ConnectionId>>,
    pending: VecDeque<ToSwarm<B::ToSwarm, GateIn<THandlerInEvent<B>>>>,
}

impl<B: NetworkBehaviour> Gate<B> {
    /// A gate, closed for every peer.
    pub fn new(inner: B) -> Self {
        Gate::holding(inner, MAX_HELD_INBOUND)
    }
    /// A gate, closed for every peer, that holds up to `hold` inbound streams per connection
    /// until it opens (a request-response protocol: what a member sends just after it
    /// authenticated this node, before this node authenticated it).
    pub fn holding(inner: B, hold: usize) -> Self {
        Gate {
            inner,
            hold,
            open: HashSet::new(),
            conns: HashMap::new(),
            pending: VecDeque::new(),
        }
    }
    /// The inner behaviour.
    pub fn inner(&mut self) -> &mut B {
        &mut self.inner
    }
    /// Opens the gate for `peer` on every current and future connection.
    pub fn open(&mut self, peer: PeerId) {
        // A verdict that arrives after the peer's last connection closed must not leave the
        // gate open for its next connection, which proves membership again.
        if !self.conns.contains_key(&peer) || !self.open.insert(peer) {
            return;
        }
        for c in self.conns.get(&peer).into_iter().flatten() {
            self.pending.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*c),
                event: GateIn::Open,
            });
        }
    }
    /// Whether the gate is open for `peer`.
    pub fn is_open(&self, peer: &PeerId) -> bool {
        self.open.contains(peer)
    }
    fn add(&mut self, peer: PeerId, c: ConnectionId) -> bool {
        self.conns.entry(peer).or_default().insert(c);
        self.open.contains(&peer)
    }
}

/// Events to a gated handler.
#[derive(Debug)]
pub enum GateIn<T> {
    /// The peer is authenticated: let the inner handler run.
    Open,
    /// An event for the inner handler.
    Inner(T),
}

/// The gated connection handler.
pub struct GateHandler<H: ConnectionHandler> {
    inner: H,
    open: bool,
    held: Vec<FullyNegotiatedInbound<H::InboundProtocol, H::InboundOpenInfo>>,
    hold: usize,
    waker: Option<Waker>,
}

impl<H: ConnectionHandler> GateHandler<H> {
    fn new(inner: H, open: bool, hold: usize) -> Self {
        GateHandler {
            inner,
            open,
            held: Vec::new(),
            hold,
            waker: None,
        }
    }
}

impl<H: ConnectionHandler> ConnectionHandler for GateHandler<H> {
    type FromBehaviour = GateIn<H::FromBehaviour>;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        // A closed gate keeps the connection until authentication decides its fate.
        !self.open || self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        if !self.open {
            self.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        for s in self.held.drain(..) {
            self.inner
                .on_connection_event(ConnectionEvent::FullyNegotiatedInbound(s));
        }
        self.inner.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        if !self.open {
            return Poll::Ready(None);
        }
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            GateIn::Open => {
                self.open = true;
                if let Some(w) = self.waker.take() {
                    w.wake();
                }
            }
            GateIn::Inner(e) => self.inner.on_behaviour_event(e),
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(s) if !self.open => {
                if self.held.len() < self.hold {
                    self.held.push(s);
                }
            }
            e => self.inner.on_connection_event(e),
        }
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Gate<B> {
    type ConnectionHandler = GateHandler<THandler<B>>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let h = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        Ok(GateHandler::new(
            h,
            self.add(peer, connection_id),
            self.hold,
        ))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let h = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        Ok(GateHandler::new(
            h,
            self.add(peer, connection_id),
            self.hold,
        ))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(c) = &event
            && let Some(set) = self.conns.get_mut(&c.peer_id)
        {
            set.remove(&c.connection_id);
            if set.is_empty() {
                self.conns.remove(&c.peer_id);
                // A peer that comes back proves its membership again.
                self.open.remove(&c.peer_id);
            }
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(e) = self.pending.pop_front() {
            return Poll::Ready(e);
        }
        self.inner.poll(cx).map(|e| e.map_in(GateIn::Inner))
    }
}
