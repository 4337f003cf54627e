//! Liveness by evidence (proto/network.md, "Liveness"): a connected member is alive while this
//! node hears from it, by anything it sends anyway: a verified plane beacon (every 5 s on a
//! segment), a gossip message, a request or an answer, a ping. One that has been quiet for
//! [`QUIET_BEFORE_PROBE`](crate::mesh::QUIET_BEFORE_PROBE) is probed with an empty repair
//! request on its connection; [`MAX_PROBE_FAILURES`](crate::mesh::MAX_PROBE_FAILURES)
//! unanswered in a row close the connection (and a member is re-dialled). libp2p's ping stays
//! as a slow backstop ([`PING_INTERVAL`](crate::net::PING_INTERVAL)): on a segment where the
//! plane works, the connections carry no keep-alive traffic of their own.
//!
//! The decisions are the peer book's ([`PeerBook::probes_due`](crate::mesh::PeerBook)); this
//! room sends the probes and reports their outcome.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::request_response::{OutboundFailure, OutboundRequestId};

use super::Daemon;
use crate::net::BehaviourEvent;
use crate::plane::repair::RepairRequest;

impl Daemon {
    /// Something from `peer` arrived on its connection: no probe needed for a while.
    pub(super) fn heard_from(&mut self, peer: &PeerId) {
        self.peers.heard(peer, Instant::now());
        self.watch_heard_peer(peer);
    }

    /// A verified beacon of `device` came on the plane: its connection (if any) need not be
    /// probed.
    pub(super) fn heard_on_plane(&mut self, device: u32) {
        self.watchdog.heard_on_plane(device, super::now_us());
        if let Some(peer) = self.node.member(device).map(|c| c.peer_id()) {
            self.heard_from(&peer);
        }
    }

    /// The peer a behaviour event shows alive, if any: a message (request or answer) on one of
    /// the request-response protocols, a gossip message it forwarded, a ping it answered, its
    /// identify record.
    pub(super) fn alive_in(ev: &BehaviourEvent) -> Option<PeerId> {
        use libp2p::{gossipsub, identify, ping, request_response::Event as Rr};
        match ev {
            BehaviourEvent::Auth(Rr::Message { peer, .. })
            | BehaviourEvent::Push(Rr::Message { peer, .. })
            | BehaviourEvent::Sync(Rr::Message { peer, .. })
            | BehaviourEvent::Repair(Rr::Message { peer, .. }) => Some(*peer),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source, ..
            }) => Some(*propagation_source),
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                ..
            }) => Some(*peer),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, .. }) => Some(*peer_id),
            _ => None,
        }
    }

    /// The tick's probes: an empty repair request to each member quiet for too long. A
    /// watched member is probed after a third of its check-in period when that is shorter:
    /// on a connection the plane does not keep busy (no multicast, `--no-plane`), the
    /// watchdog hears it in time.
    pub(super) fn send_probes(&mut self, now: Instant) {
        let (certs, desc) = (&self.certs, self.node.descriptor());
        let quiet_before = |peer: &PeerId| {
            certs
                .get(peer)
                .map(|c| desc.rights(c.body.device).watch_secs)
                .filter(|w| *w > 0)
                .map_or(crate::mesh::QUIET_BEFORE_PROBE, |w| {
                    crate::mesh::QUIET_BEFORE_PROBE.min(Duration::from_secs(u64::from(w)) / 3)
                })
        };
        for peer in self.peers.probes_due(now, quiet_before) {
            let id = self
                .swarm
                .behaviour_mut()
                .repair
                .inner()
                .send_request(&peer, RepairRequest { wants: vec![] });
            self.probes.insert(id, peer);
        }
    }

    /// A repair answer: true if it answered a probe (then it is taken care of).
    pub(super) fn probe_answered(&mut self, id: &OutboundRequestId) -> bool {
        let Some(peer) = self.probes.remove(id) else {
            return false;
        };
        self.peers.probe_answered(&peer, Instant::now());
        true
    }

    /// A repair request failed: true if it was a probe (then it is taken care of). A peer
    /// that does not speak the repair protocol negotiated the refusal, so it is alive.
    pub(super) fn probe_failed(&mut self, id: &OutboundRequestId, error: &OutboundFailure) -> bool {
        let Some(peer) = self.probes.remove(id) else {
            return false;
        };
        if let OutboundFailure::UnsupportedProtocols = error {
            self.peers.probe_answered(&peer, Instant::now());
            return true;
        }
        if self.peers.probe_failed(&peer, &error.to_string()) {
            tracing::info!(%peer, %error, "peer silent and its probes unanswered; closing the connection");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        true
    }
}
