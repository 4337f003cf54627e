//! The event loop and its dispatch of swarm and behaviour events to the rooms that handle
//! them.
//!
//! Routes events; the decisions live in the rooms (auth, dial, gossip, catch-up, roster).

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub, mdns, request_response};
use rand_core::RngCore;
use tokio::sync::mpsc;

use super::addr::{is_circuit, is_loopback, strip_p2p};
use super::auth::sanitize;
use super::handle::Cmd;
use super::{Daemon, now_us};
use crate::mesh::Ping;
use crate::net::AuthReply;
use crate::net::BehaviourEvent;

impl Daemon {
    pub(super) async fn event_loop(
        &mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        // One sleep for every timer: until the table's earliest deadline (the tick is always
        // armed, so there is one).
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(shutdown, sleep);
        loop {
            let wake = self
                .timers
                .next_timeout()
                .map(tokio::time::Instant::from_std);
            if let Some(at) = wake
                && sleep.deadline() != at
            {
                sleep.as_mut().reset(at);
            }
            tokio::select! {
                _ = &mut shutdown => break,
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                Some(cmd) = cmds.recv() => self.on_cmd(cmd),
                () = &mut sleep, if wake.is_some() => self.on_timers(),
                () = plane_readable(&self.plane) => self.on_plane_readable(),
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder as _;
            m.libp2p.record(&ev);
        }
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.presence_dirty = true;
                // A broker hands its addresses out in reservations; on a LAN its listen
                // addresses are the ones members reach it at.
                if self.broker && !is_loopback(&address) && !is_circuit(&address) {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { .. } => self.presence_dirty = true,
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let remote = endpoint.get_remote_address();
                let dialled = endpoint.is_dialer().then(|| remote.clone());
                let direct = dialled
                    .as_ref()
                    .filter(|a| !is_circuit(a))
                    .map(|a| strip_p2p(a.clone()));
                let first = self.peers.established(
                    peer_id,
                    num_established.get() as usize,
                    dialled,
                    direct,
                    Instant::now(),
                    now_us(),
                );
                if first {
                    self.send_hello(peer_id);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.reservations.retain(|_, id| *id != listener_id);
                self.presence_dirty = true;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                let redial = self.peers.closed(
                    &peer_id,
                    num_established as usize,
                    cause.map(|c| c.to_string()),
                    rand_core::OsRng.next_u64(),
                    Instant::now(),
                    now_us(),
                );
                if redial.is_some() {
                    tracing::info!(peer = %peer_id, "member disconnected; will re-dial");
                }
                if num_established == 0 {
                    self.evidence_peer_gone(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                self.peers.dial_failed(
                    &peer,
                    error.to_string(),
                    rand_core::OsRng.next_u64(),
                    Instant::now(),
                );
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour_event(b),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder as _;
            match &ev {
                BehaviourEvent::Gossipsub(e) => m.libp2p.record(e),
                BehaviourEvent::Identify(e) => m.libp2p.record(e),
                BehaviourEvent::Ping(e) => m.libp2p.record(e),
                BehaviourEvent::Relay(e) => m.libp2p.record(e),
                BehaviourEvent::Dcutr(e) => m.libp2p.record(e),
                _ => {}
            }
        }
        if let Some(peer) = Self::alive_in(&ev) {
            self.heard_from(&peer);
        }
        match ev {
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                let me = *self.swarm.local_peer_id();
                // One dial per peer with every address it answered with.
                let mut found: Vec<(PeerId, Vec<Multiaddr>)> = vec![];
                for (peer, addr) in list {
                    if peer == me {
                        continue;
                    }
                    match found.iter_mut().find(|(p, _)| *p == peer) {
                        Some((_, addrs)) => addrs.push(addr),
                        None => found.push((peer, vec![addr])),
                    }
                }
                // Every peer of the answer is known before the first decision: under the bound
                // the overlay is computed from all of them, not grown one dial at a time.
                for (peer, addrs) in &found {
                    self.peers.discovered(*peer, addrs.iter().cloned());
                }
                for (peer, addrs) in found {
                    self.found_at(peer, addrs);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Auth(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_auth_request(peer, request, channel),
                    request_response::Message::Response { response, .. } => {
                        self.on_auth_reply(peer, response)
                    }
                }
            }
            BehaviourEvent::Auth(request_response::Event::OutboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(%peer, %error, "authentication request failed");
                if let request_response::OutboundFailure::UnsupportedProtocols = error {
                    self.refuse(
                        peer,
                        "does not speak /ptt-node/auth/2 (another program, or a ptt-node \
                         from before 2026-12-07)"
                            .into(),
                    );
                    return;
                }
                let retry = self.peers.auth_failed(&peer, &error.to_string());
                // The peer's own hello may still authenticate it; if not, ask again while
                // the connection lasts (the authentication timeout bounds this).
                if retry {
                    self.send_hello(peer);
                }
            }
            BehaviourEvent::Auth(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(%peer, %error, "authentication request from peer failed");
            }
            BehaviourEvent::Auth(request_response::Event::ResponseSent { .. }) => {}
            BehaviourEvent::Push(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_push_request(peer, request, channel),
                    request_response::Message::Response {
                        response,
                        request_id,
                    } => {
                        if self.heard_report_done(&request_id, None) {
                            return;
                        }
                        if let Some((p, serial)) = self.updates.done(&request_id) {
                            self.peers.acknowledged(&p, serial);
                        }
                        if let AuthReply::Refused { reason } = response {
                            tracing::debug!(%peer, reason = %sanitize(&reason, 200), "push refused");
                        }
                    }
                }
            }
            BehaviourEvent::Push(request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            }) => {
                if self.heard_report_done(&request_id, Some(peer)) {
                    tracing::debug!(%peer, %error, "heard report not taken: the peer hears nobody");
                    return;
                }
                // A lost push is not re-sent, but for an update (the 10 s retry): it is
                // neither an authentication problem nor worth a stream more.
                self.updates.done(&request_id);
                tracing::debug!(%peer, %error, "push failed");
            }
            BehaviourEvent::Push(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(%peer, %error, "push from peer failed");
            }
            BehaviourEvent::Push(request_response::Event::ResponseSent { .. }) => {}
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_sync_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(tx) = self.sync_pending.remove(&request_id) {
                            let _ = tx.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) => {
                if let Some(tx) = self.sync_pending.remove(&request_id) {
                    let _ = tx.send(Err(error.into()));
                }
            }
            BehaviourEvent::Repair(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_repair_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if !self.probe_answered(&request_id) {
                            self.on_repair_response(request_id, response)
                        }
                    }
                }
            }
            BehaviourEvent::Repair(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) if !self.probe_failed(&request_id, &error) => self.on_repair_failure(request_id),
            BehaviourEvent::Repair(request_response::Event::OutboundFailure { .. }) => {}
            BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result,
            }) => {
                let (ping, why) = match result {
                    Ok(_) => (Ping::Ok, None),
                    // A peer without ping is not dead; authentication decides about it.
                    Err(libp2p::ping::Failure::Unsupported) => (Ping::Unsupported, None),
                    Err(e) => (Ping::Failed(e.to_string()), Some(e.to_string())),
                };
                if self.peers.ping(&peer, ping) {
                    let error = why.unwrap_or_default();
                    tracing::info!(%peer, %error, "peer stopped answering pings; closing the connection");
                    self.swarm.close_connection(connection);
                }
            }
            BehaviourEvent::RelayClient(e) => {
                tracing::info!(event = ?e, "connection broker");
                if let libp2p::relay::client::Event::ReservationReqAccepted { .. } = e {
                    self.presence_dirty = true;
                }
            }
            BehaviourEvent::Relay(e) => tracing::debug!(event = ?e, "acting as connection broker"),
            BehaviourEvent::Dcutr(e) => tracing::info!(event = ?e, "direct connection upgrade"),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            // Copies to a peer were dropped since the last heartbeat: each queued copy has a
            // deadline (net::FORWARD_QUEUE_DEADLINE, net::PUBLISH_QUEUE_DEADLINE) and the queue
            // is bounded. A member repairs missed alerts by catch-up, later.
            BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages: f,
            }) => tracing::warn!(
                peer = %peer_id,
                dropped = f.priority + f.non_priority,
                forward_deadline = ?crate::net::FORWARD_QUEUE_DEADLINE,
                publish_deadline = ?crate::net::PUBLISH_QUEUE_DEADLINE,
                "gossip messages to a slow peer dropped: they waited in its send queue past \
                 their deadline or found the queue full"
            ),
            BehaviourEvent::Identify(libp2p::identify::Event::Received {
                peer_id, info, ..
            }) => {
                self.peers.learned_addrs(
                    &peer_id,
                    info.listen_addrs.into_iter().filter(|a| !is_loopback(a)),
                );
            }
            _ => {}
        }
    }
}

/// Resolves when the plane has a datagram; never without a plane.
async fn plane_readable(plane: &Option<super::plane::PlaneState>) {
    match plane {
        Some(p) => p.readable().await,
        None => std::future::pending().await,
    }
}
