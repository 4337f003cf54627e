//! `connect TAG`: dialling the device a tag names and answering once its certificate matches
//! the tag's fingerprint.
//!
//! A mismatch refuses the tag, never the member.

use std::time::Instant;

use libp2p::PeerId;
use tokio::sync::oneshot;

use super::{AUTH_TIMEOUT, Daemon, MAX_ADDRS_PER_PEER};
use crate::cert::Certificate;
use crate::control::Reply;

/// A `connect` waiting for the tagged device to authenticate.
pub(super) struct PendingTag {
    pub(super) peer: PeerId,
    fingerprint: [u8; 32],
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<Reply, String>>,
}

impl Daemon {
    /// Dials the device a tag names; the reply comes when its certificate has been checked
    /// against the tag's fingerprint (see [`Daemon::check_tag`]), or after 15 s.
    pub(super) fn connect_tag(
        &mut self,
        tag: crate::tag::DeviceTag,
        reply: oneshot::Sender<Result<Reply, String>>,
    ) {
        if tag.domain != *self.node.domain() {
            let _ = reply.send(Err(format!(
                "this tag belongs to domain {}, not to this device's domain {} ({}): refused",
                &tag.domain.to_hex()[..16],
                &self.node.domain().to_hex()[..16],
                self.node.descriptor().body.name
            )));
            return;
        }
        if tag.peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err("this tag is this device's own tag".into()));
            return;
        }
        let st = self.peers.entry(tag.peer).or_default();
        for a in tag.addresses.iter().take(MAX_ADDRS_PER_PEER) {
            st.addresses.insert(a.clone());
        }
        let ready = st.authenticated && st.connections > 0;
        let known = st.cert.clone();
        self.pending_tags.push(PendingTag {
            peer: tag.peer,
            fingerprint: tag.fingerprint,
            deadline: Instant::now() + AUTH_TIMEOUT,
            reply,
        });
        match known {
            Some(cert) if ready => self.check_tag(tag.peer, &cert),
            _ => {
                if let Some(st) = self.peers.get_mut(&tag.peer) {
                    st.redial_at = None;
                }
                self.dial(tag.peer);
            }
        }
    }

    /// Answers pending `connect`s for `peer` once its certificate is known: it must be the
    /// very certificate the tag pins. A mismatch refuses the tag, not the member.
    pub(super) fn check_tag(&mut self, peer: PeerId, cert: &Certificate) {
        let fp = cert.fingerprint();
        let (mine, rest): (Vec<PendingTag>, Vec<PendingTag>) =
            std::mem::take(&mut self.pending_tags)
                .into_iter()
                .partition(|t| t.peer == peer);
        self.pending_tags = rest;
        for t in mine {
            let r = if t.fingerprint == fp {
                Ok(Reply::Connected {
                    name: cert.body.name.clone(),
                    device: cert.body.device,
                    peer_id: peer.to_string(),
                })
            } else {
                Err(format!(
                    "the device at the tag's address is {} but its certificate does not match the tag's fingerprint: tag refused (tampered or out of date)",
                    cert.body.name
                ))
            };
            let _ = t.reply.send(r);
        }
    }
}
