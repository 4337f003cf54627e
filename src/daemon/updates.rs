//! Domain updates: applying them in serial order (holding those that arrive early), carrying
//! out what they change, passing them on to members behind, and the channel key state they
//! and retention change.
//!
//! The node verifies and applies; this room orders, stores and spreads.

use libp2p::{Multiaddr, PeerId};

use super::{Daemon, now_us};
use crate::control::Reply;
use crate::fsutil::{self};
use crate::mesh::Taken;
use crate::net::AuthRequest;
use crate::node::Applied;
use crate::update::{Update, UpdateError};

impl Daemon {
    /// Erases ratchet periods older than the retention window and a previous plane epoch
    /// past its overlap, from memory and disk, and drops the updates received before the
    /// window (their sealed keys are at least as old).
    pub(super) fn erase_keys(&mut self) {
        let window = self.retention.max_age_us;
        let erased = self.node.erase_keys(now_us(), window) > 0;
        if self.node.expire_plane(now_us()) || erased {
            self.save_keys();
        }
        let before = now_us().saturating_sub(window) / 1_000_000;
        // By when this node received them, not the authority's clock.
        if !self.updates.forget_before(before).is_empty() {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.prune_updates(before).await {
                    tracing::warn!(error = %e, "could not drop old updates");
                }
            });
        }
    }

    fn save_keys(&self) {
        if let Err(e) = crate::bundle::save_key_state(&self.key_path, &self.node.key_state()) {
            tracing::error!(error = %e, "could not save channel keys");
        }
    }

    /// Takes a domain update from a member (`from`) or the control socket: applies it when
    /// it is the next one, holds it when one before it is missing, spreads what it applied.
    pub(super) fn take_update(
        &mut self,
        bytes: Vec<u8>,
        from: Option<PeerId>,
    ) -> Result<Reply, UpdateError> {
        let serial = Update::claimed_serial(&bytes)?;
        match self.node.apply_update(&bytes, now_us() / 1_000_000) {
            Ok(applied) => {
                let note = applied.note.clone();
                self.after_update(applied, bytes, from);
                // Later ones that were waiting for it, in order. Taken out for the scan:
                // carrying out each one applied needs the whole daemon.
                let mut pending = std::mem::take(&mut self.pending_updates);
                pending.release(self.node.revision(), |_, next| {
                    match self.node.apply_update(next, now_us() / 1_000_000) {
                        Ok(a) => {
                            self.after_update(a, next.to_vec(), None);
                            Taken::Applied(())
                        }
                        Err(UpdateError::Gap { .. }) => Taken::Gap,
                        Err(e) => {
                            tracing::warn!(error = %e, "held update not applied");
                            Taken::Refused
                        }
                    }
                });
                self.pending_updates = pending;
                Ok(Reply::Published {
                    serial,
                    note,
                    applied: true,
                    revision: self.node.revision(),
                })
            }
            Err(UpdateError::Stale { serial, have }) => Ok(Reply::Published {
                serial,
                note: format!("already applied (revision {have})"),
                applied: false,
                revision: have,
            }),
            Err(e @ UpdateError::Gap { .. }) => {
                // Verified (a gap is found after the signature check): hold it for later.
                self.pending_updates.hold(serial, bytes);
                Err(e)
            }
            Err(e) => {
                if let Some(peer) = from {
                    tracing::warn!(%peer, error = %e, "update refused");
                }
                Err(e)
            }
        }
    }

    /// Carries out what an applied update changed.
    fn after_update(&mut self, a: Applied, bytes: Vec<u8>, from: Option<PeerId>) {
        tracing::info!(serial = a.serial, note = %a.note, "domain update applied");
        let received = now_us() / 1_000_000;
        self.updates.insert(a.serial, received, bytes.clone());
        let store = self.store.clone();
        let b = bytes.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put_update(a.serial, received, b).await {
                tracing::error!(error = %e, "could not store update");
            }
        });
        if a.revoked_self {
            tracing::error!("this device was revoked by the domain authority: members refuse it");
        }
        let desc_path = self.data.join(crate::bundle::files::DATA_DESCRIPTOR);
        if let Err(e) = fsutil::write_public(&desc_path, self.node.descriptor().as_bytes()) {
            tracing::error!(error = %e, "could not save the descriptor");
        }
        // Brokers the update added: dial and keep them like those of the bundle.
        let brokers: Vec<Multiaddr> = self
            .node
            .descriptor()
            .body
            .brokers
            .iter()
            .filter_map(|b| b.parse::<Multiaddr>().ok())
            .collect();
        for b in brokers {
            if let Some(id) = b.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            }) && self.brokers.insert(id)
            {
                tracing::info!(broker = %b, "broker added by the update");
                self.static_peers.push(b);
            }
        }
        self.sync_roster();
        for (device, peer) in &a.revoked {
            tracing::warn!(device, %peer, "member revoked: disconnecting");
            if self.swarm.is_connected(peer) || self.peers.get(peer).is_some() {
                self.refuse(*peer, "revoked by the domain authority".into());
            }
        }
        if !a.new_keys.is_empty() {
            self.save_keys();
            self.reopen_unread();
            // A new plane epoch is sent under at once, and what waited for it is opened.
            self.plane_keys(std::time::Instant::now());
        }
        if !a.new_certs.is_empty() {
            self.push_roster(
                a.new_certs.clone(),
                from.unwrap_or(*self.swarm.local_peer_id()),
            );
            self.learn_waiting_presence();
        }
        // Pass it on to every member but the one it came from.
        let targets: Vec<PeerId> = self
            .peers
            .ready()
            .filter(|id| Some(**id) != from)
            .copied()
            .collect();
        for t in targets {
            let id = self.swarm.behaviour_mut().push.inner().send_request(
                &t,
                AuthRequest::Update {
                    update: bytes.clone(),
                },
            );
            self.updates.sent(id, t, a.serial);
        }
    }

    /// Sends a member the updates it lacks (it is known to hold `revision`).
    pub(super) fn send_updates(&mut self, peer: PeerId, revision: u64) {
        for (serial, update) in self.updates.missing(&peer, revision) {
            let id = self
                .swarm
                .behaviour_mut()
                .push
                .inner()
                .send_request(&peer, AuthRequest::Update { update });
            self.updates.sent(id, peer, serial);
        }
    }

    /// Pushes again the updates a member has not acknowledged (a push lost to a freeze or a
    /// dropped stream would otherwise wait for the next connection).
    pub(super) fn resend_updates(&mut self) {
        let mine = self.node.revision();
        for (peer, rev) in self.peers.behind(mine) {
            self.send_updates(peer, rev);
        }
    }
}
