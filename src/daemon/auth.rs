//! Authentication: the hello exchange (`/ptt-node/auth/2`, the one protocol read before a peer
//! is authenticated), admitting members, refusing and blocking the others, and the roster,
//! presence, update and heard pushes between members (`/ptt-node/push/1`, gated).
//!
//! Only a certificate the node verifies admits a peer; text from a peer is sanitized before
//! it is kept or logged.

use std::time::Instant;

use libp2p::{PeerId, request_response};

use super::{Daemon, now_us};
use crate::cert::Certificate;
use crate::net::{self, AuthHello, AuthReply, AuthRequest};
use crate::presence::PresenceError;
use crate::update::Update;

/// Why a peer's hello was refused. The text goes to the peer in the refusal (wire: a string)
/// and into `peers`.
#[derive(Debug, thiserror::Error)]
enum HelloRefused {
    /// The hello names another domain.
    #[error("belongs to another domain")]
    OtherDomain,
    /// Its certificate did not authenticate it.
    #[error(transparent)]
    Auth(#[from] crate::node::AuthError),
}

impl Daemon {
    /// Drops and blocks a peer that proved it is not a member (or not a ptt-node).
    pub(super) fn refuse(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, %reason, "peer refused");
        self.node.counters_mut().peers_refused += 1;
        self.peers.refuse(&peer, reason, Instant::now());
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    pub(super) fn send_hello(&mut self, peer: PeerId) {
        let hello = AuthHello {
            domain: *self.node.domain(),
            cert: self.node.cert().as_bytes().to_vec(),
            revision: self.node.revision(),
        };
        self.swarm
            .behaviour_mut()
            .auth
            .send_request(&peer, AuthRequest::Hello(hello));
    }

    /// Opens the gate for an authenticated peer; `announce` pushes its certificate to the
    /// other authenticated peers (when this node had not known it), so members further away
    /// learn it.
    fn admit(&mut self, peer: PeerId, cert: Certificate, announce: bool) {
        // A verdict that arrives after the peer left is moot: its next connection proves
        // membership again. Admitting also clears its back-offs.
        let Some(newly) = self.peers.admit(&peer, cert.body.profile.sleeps) else {
            return;
        };
        if announce {
            self.push_roster(vec![cert.as_bytes().to_vec()], peer);
            self.sync_roster();
        }
        if newly {
            tracing::info!(%peer, device = %cert.body.name, "peer authenticated");
        }
        self.certs.insert(peer, cert);
        self.learn_waiting_presence();
        let b = self.swarm.behaviour_mut();
        b.admission.authenticated(peer);
        b.push.open(peer);
        b.sync.open(peer);
        b.repair.open(peer);
        b.gossipsub.open(peer);
        b.relay.open(peer);
        if self.pending_tags.iter().any(|t| t.peer == peer)
            && let Some(cert) = self.certs.get(&peer).cloned()
        {
            self.check_tag(peer, &cert);
        }
        self.greet(peer);
    }

    /// What a member is sent once both sides admitted each other on its current connections:
    /// only then is it read at once, not held at the peer's gate (which holds two streams per
    /// protocol before authentication; what the multiplexer buffers for them is what a
    /// stranger can make a node keep).
    fn greet(&mut self, peer: PeerId) {
        if !self.peers.greet_now(&peer) {
            return;
        }
        // The members this node knows, so the newcomer learns senders it is not connected
        // to (on auth/1 this rode in the `Welcome`, read from anyone).
        self.share_roster(peer);
        self.reserve_on_broker(peer);
        // Tell the newcomer where everyone is.
        let records: Vec<Vec<u8>> = self
            .node
            .presence_records()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        self.send_presence(peer, &records);
        // Whatever either side missed while apart: fetch it now.
        self.start_sync(peer);
        // Which senders this node hears on the plane, so the newcomer knows what to send.
        self.report_heard_to(peer);
    }

    /// Sends `peer` the certificates of the other members this node knows, in one push.
    fn share_roster(&mut self, peer: PeerId) {
        let own = self.node.cert().body.device;
        let certs: Vec<Vec<u8>> = self
            .node
            .roster()
            .filter(|c| c.peer_id() != peer && c.body.device != own)
            .take(net::MAX_ROSTER_SHARE)
            .map(|c| c.as_bytes().to_vec())
            .collect();
        if !certs.is_empty() {
            self.swarm
                .behaviour_mut()
                .push
                .inner()
                .send_request(&peer, AuthRequest::Roster { certs });
        }
    }

    /// A push from a peer (`/ptt-node/push/1`): its streams are read only once this node has
    /// authenticated the peer, and each push is acted on only if it still is.
    pub(super) fn on_push_request(
        &mut self,
        peer: PeerId,
        request: AuthRequest,
        channel: request_response::ResponseChannel<AuthReply>,
    ) {
        match request {
            AuthRequest::Hello(_) => {
                let refused = AuthReply::Refused {
                    reason: "a hello goes on /ptt-node/auth/2".into(),
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .push
                    .inner()
                    .send_response(channel, refused);
            }
            AuthRequest::Roster { certs } => {
                if self.ack_from_member(peer, channel) {
                    let new = self.learn_roster(peer, &certs);
                    self.push_roster(new, peer);
                }
            }
            AuthRequest::Update { update } => {
                if !self.ack_from_member(peer, channel) {
                    return;
                }
                if let Ok(serial) = Update::claimed_serial(&update) {
                    self.peers.sent_update(&peer, serial);
                }
                if let Err(e) = self.take_update(update, Some(peer)) {
                    tracing::debug!(%peer, error = %e, "update from peer not applied");
                }
            }
            AuthRequest::Heard { epoch, senders } => {
                let member = self.ack_from_member(peer, channel);
                self.on_heard(peer, member, epoch, senders);
            }
            AuthRequest::Presence { records } => {
                if self.ack_from_member(peer, channel) {
                    let mut new = vec![];
                    for r in records.into_iter().take(net::MAX_ROSTER_PUSH) {
                        match self.node.learn_presence(&r) {
                            Ok(true) => {
                                self.presence_learned(&r);
                                new.push(r)
                            }
                            Ok(false) => {}
                            Err(PresenceError::UnknownDevice(device)) => {
                                tracing::debug!(%peer, device, "presence held until its certificate arrives")
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "presence ignored"),
                        }
                    }
                    self.push_presence(new, Some(peer));
                }
            }
        }
    }

    /// A request on `/ptt-node/auth/2`: a hello, or nothing this node acts on.
    pub(super) fn on_auth_request(
        &mut self,
        peer: PeerId,
        request: AuthRequest,
        channel: request_response::ResponseChannel<AuthReply>,
    ) {
        let AuthRequest::Hello(hello) = request else {
            let refused = AuthReply::Refused {
                reason: "only a hello goes on /ptt-node/auth/2; pushes go on /ptt-node/push/1"
                    .into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .auth
                .send_response(channel, refused);
            return;
        };
        let now = now_us() / 1_000_000;
        let known = self.node.knows_peer(&peer);
        let result = if hello.domain != *self.node.domain() {
            Err(HelloRefused::OtherDomain)
        } else {
            self.node
                .authenticate_peer(&peer, &hello.cert, now)
                .map_err(HelloRefused::from)
        };
        match result {
            Ok(cert) => {
                let reply = AuthReply::Welcome {
                    cert: self.node.cert().as_bytes().to_vec(),
                    roster: vec![],
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .auth
                    .send_response(channel, reply);
                self.admit(peer, cert, !known);
                self.peers.set_revision(&peer, hello.revision);
                if hello.revision < self.node.revision() {
                    self.send_updates(peer, hello.revision);
                }
            }
            Err(refused) => {
                let reason = refused.to_string();
                let _ = self.swarm.behaviour_mut().auth.send_response(
                    channel,
                    AuthReply::Refused {
                        reason: reason.clone(),
                    },
                );
                self.refuse(peer, reason);
            }
        }
    }

    /// Acknowledges a push; true when it came from an authenticated member (only members may
    /// tell us about members).
    fn ack_from_member(
        &mut self,
        peer: PeerId,
        channel: request_response::ResponseChannel<AuthReply>,
    ) -> bool {
        let _ = self
            .swarm
            .behaviour_mut()
            .push
            .inner()
            .send_response(channel, AuthReply::Ack);
        self.member_now(&peer)
    }

    /// Whether `peer` is an authenticated member now: its certificate has not expired and
    /// its device is not revoked since it authenticated (the tick disconnects such a peer
    /// within 250 ms; this closes the window for what it asks meanwhile).
    pub(super) fn member_now(&self, peer: &PeerId) -> bool {
        let now = now_us() / 1_000_000;
        self.peers.get(peer).is_some_and(|p| p.is_authenticated())
            && self.certs.get(peer).is_some_and(|c| {
                c.body.not_after >= now && !self.node.descriptor().is_revoked(c.body.device)
            })
    }

    pub(super) fn on_auth_reply(&mut self, peer: PeerId, reply: AuthReply) {
        let now = now_us() / 1_000_000;
        match reply {
            AuthReply::Welcome { cert, roster } => {
                // The peer admitted this node (it answers a hello that verified only).
                self.peers.welcomed(&peer);
                let known = self.node.knows_peer(&peer);
                match self.node.authenticate_peer(&peer, &cert, now) {
                    Ok(cert) => {
                        self.admit(peer, cert, !known);
                        let new = self.learn_roster(peer, &roster);
                        self.push_roster(new, peer);
                    }
                    Err(e) => self.refuse(peer, e.to_string()),
                }
            }
            AuthReply::Refused { reason } => {
                let reason = sanitize(&reason, 200);
                tracing::warn!(%peer, %reason, "refused by peer");
                self.refuse(peer, format!("refused us: {reason}"));
            }
            AuthReply::Ack => {}
        }
    }
}

/// Text from a peer, cut to `max` characters and stripped of control characters, so it can be
/// kept, logged and printed safely.
pub(super) fn sanitize(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_from_another_domain_is_refused_with_the_same_words() {
        // Peers of older versions read this reason; `peers` shows it.
        assert_eq!(
            HelloRefused::OtherDomain.to_string(),
            "belongs to another domain"
        );
    }

    #[test]
    fn text_from_a_peer_is_cut_and_stripped_of_control_characters() {
        assert_eq!(sanitize("ok\u{1b}[31m red\n", 200), "ok[31m red");
        assert_eq!(sanitize("abcdef", 3), "abc");
        assert_eq!(sanitize("é€x", 2), "é€");
    }
}
