//! `connect TAG`: dialling the device a tag names and answering once its certificate matches
//! the tag's fingerprint.
//!
//! A mismatch refuses the tag, never the member.

use std::time::Instant;

use libp2p::PeerId;
use tokio::sync::oneshot;

use super::{AUTH_TIMEOUT, Daemon};
use crate::cert::Certificate;
use crate::control::Reply;

/// A `connect` waiting for the tagged device to authenticate.
pub(super) struct PendingTag {
    pub(super) peer: PeerId,
    fingerprint: [u8; 32],
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<Result<Reply, ConnectError>>,
}

/// Why a `connect` failed. The text is the `error` reply's message.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    /// The tag names another domain.
    #[error(
        "this tag belongs to domain {tag}, not to this device's domain {mine} ({name}): refused"
    )]
    OtherDomain {
        /// The tag's domain id (its first 16 hex digits).
        tag: String,
        /// This device's domain id (its first 16 hex digits).
        mine: String,
        /// This device's domain name.
        name: String,
    },
    /// The tag is this device's own.
    #[error("this tag is this device's own tag")]
    OwnTag,
    /// The device reached holds another certificate than the tag pins (named here).
    #[error(
        "the device at the tag's address is {0} but its certificate does not match the tag's fingerprint: tag refused (tampered or out of date)"
    )]
    Mismatch(String),
    /// The device did not authenticate in time.
    #[error("could not reach and authenticate the tagged device within {secs} s ({why})")]
    Timeout {
        /// The time allowed.
        secs: u64,
        /// The last error seen with the peer, or "no answer".
        why: String,
    },
}

impl Daemon {
    /// Dials the device a tag names; the reply comes when its certificate has been checked
    /// against the tag's fingerprint (see [`Daemon::check_tag`]), or after 15 s.
    pub(super) fn connect_tag(
        &mut self,
        tag: crate::tag::DeviceTag,
        reply: oneshot::Sender<Result<Reply, ConnectError>>,
    ) {
        if tag.domain != *self.node.domain() {
            let _ = reply.send(Err(ConnectError::OtherDomain {
                tag: tag.domain.to_hex()[..16].to_string(),
                mine: self.node.domain().to_hex()[..16].to_string(),
                name: self.node.descriptor().body.name.clone(),
            }));
            return;
        }
        if tag.peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err(ConnectError::OwnTag));
            return;
        }
        self.peers
            .add_tag_addresses(tag.peer, tag.addresses.iter().cloned());
        let ready = self.peers.get(&tag.peer).is_some_and(|p| p.is_ready());
        let known = self.certs.get(&tag.peer).cloned();
        self.pending_tags.push(PendingTag {
            peer: tag.peer,
            fingerprint: tag.fingerprint,
            deadline: Instant::now() + AUTH_TIMEOUT,
            reply,
        });
        match known {
            Some(cert) if ready => self.check_tag(tag.peer, &cert),
            _ => {
                if let Some(d) = self.peers.dial_at_once(&tag.peer) {
                    self.start_dial(d);
                }
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
                Err(ConnectError::Mismatch(cert.body.name.clone()))
            };
            let _ = t.reply.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_read_as_the_replies_always_did() {
        let e = ConnectError::OtherDomain {
            tag: "0123456789abcdef".into(),
            mine: "fedcba9876543210".into(),
            name: "site".into(),
        };
        assert_eq!(
            e.to_string(),
            "this tag belongs to domain 0123456789abcdef, not to this device's domain fedcba9876543210 (site): refused"
        );
        assert_eq!(
            ConnectError::OwnTag.to_string(),
            "this tag is this device's own tag"
        );
        assert_eq!(
            ConnectError::Mismatch("cam-1".into()).to_string(),
            "the device at the tag's address is cam-1 but its certificate does not match the tag's fingerprint: tag refused (tampered or out of date)"
        );
        assert_eq!(
            ConnectError::Timeout {
                secs: 15,
                why: "no answer".into()
            }
            .to_string(),
            "could not reach and authenticate the tagged device within 15 s (no answer)"
        );
    }
}
