//! Applying a domain update from the authority to the node: descriptor, revocations,
//! certificates and the channel keys sealed to this device. Applies only the next revision,
//! signed by the authority; parsing and checking the update itself is [`crate::update`]'s.

use libp2p::PeerId;

use super::{Node, PLANE_CHANNEL};
use crate::keys::{SealedKey, SealedKeyBody};
use crate::update::{Update, UpdateError};
use crate::wire;

/// What applying an update changed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The revision now held.
    pub serial: u64,
    /// The update's note.
    pub note: String,
    /// Members revoked by it: (device, peer id) of those known.
    pub revoked: Vec<(u32, PeerId)>,
    /// Whether this device itself was revoked.
    pub revoked_self: bool,
    /// Certificates it added that were new here.
    pub new_certs: Vec<Vec<u8>>,
    /// Channel epochs whose keys this device received: (channel, epoch), a plane epoch as
    /// ([`super::PLANE_CHANNEL`], epoch).
    pub new_keys: Vec<(u32, u32)>,
}

impl Node {
    /// Applies a domain update: it must be signed by the authority and be the next one in
    /// order. Takes its descriptor, certificates and the keys sealed to this device. A new
    /// plane epoch is sent under at once; the previous one is kept for receiving until
    /// [`super::PLANE_OVERLAP_US`] after `now_secs` ([`Node::expire_plane`]).
    pub fn apply_update(&mut self, bytes: &[u8], now_secs: u64) -> Result<Applied, UpdateError> {
        let u = Update::from_bytes(bytes, &self.descriptor.authority, self.domain())?;
        let have = self.revision();
        if u.body.serial <= have {
            return Err(UpdateError::Stale {
                serial: u.body.serial,
                have,
            });
        }
        if u.body.requires > have {
            return Err(UpdateError::Gap {
                serial: u.body.serial,
                requires: u.body.requires,
                have,
            });
        }
        let me = self.cert.body.device;
        // Everyone the new descriptor revokes that the old one did not (an update skipped
        // on the way may have revoked some too).
        let newly: Vec<u32> = u
            .descriptor
            .body
            .revoked
            .iter()
            .copied()
            .filter(|d| !self.descriptor.is_revoked(*d))
            .collect();
        self.descriptor = u.descriptor.clone();
        // What the revoked devices said of themselves goes with them.
        for d in &newly {
            self.presence.remove(d);
        }
        self.presence_waiting.retain(|(d, _, _)| !newly.contains(d));
        let mut new_certs = vec![];
        for c in &u.body.certs {
            match self.learn_certificate(c, now_secs) {
                Ok(true) => new_certs.push(c.clone()),
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "certificate in update not admitted"),
            }
        }
        let mut new_keys = vec![];
        for k in &u.body.keys {
            let Ok(sealed) = SealedKey::from_bytes(k, &self.descriptor.authority) else {
                continue;
            };
            if sealed.body.device != me {
                continue;
            }
            let Ok(chain) = sealed.open(self.domain(), me, &self.secrets.x25519) else {
                continue;
            };
            let (channel, epoch) = (sealed.body.channel, sealed.body.epoch);
            if self.keys.contains_key(&(channel, epoch)) {
                continue;
            }
            if channel == PLANE_CHANNEL {
                // An epoch older than the newest held is never sent under again.
                if self.plane_epoch().is_some_and(|n| epoch < n) {
                    continue;
                }
                self.plane_since_us = Some(now_secs.saturating_mul(1_000_000));
            }
            self.keys.insert((channel, epoch), chain);
            let e = self.current_epoch.entry(channel).or_insert(epoch);
            *e = (*e).max(epoch);
            new_keys.push((channel, epoch));
        }
        // At most two plane epochs: the new one and the one in its overlap.
        self.keep_plane(2);
        let revoked = newly
            .iter()
            .filter(|d| **d != me)
            .filter_map(|d| self.roster.get(d).map(|c| (*d, c.peer_id())))
            .collect();
        self.counters.updates_applied += 1;
        Ok(Applied {
            serial: u.body.serial,
            note: u.body.note.clone(),
            revoked,
            revoked_self: newly.contains(&me),
            new_certs,
            new_keys,
        })
    }

    /// Tells the node when it applied an earlier update (at start-up, from the store, with the
    /// time the update was stored when applied): if that update brought the newest plane epoch
    /// held while an older one is still held, that older one's overlap runs from
    /// `applied_us`, as it did before the restart. Returns whether it did.
    pub fn recall_update(&mut self, bytes: &[u8], applied_us: u64) -> bool {
        let Some(newest) = self.plane_epoch() else {
            return false;
        };
        if self.plane_secrets().len() < 2 {
            return false;
        }
        let Ok(u) = Update::from_bytes(bytes, &self.descriptor.authority, self.domain()) else {
            return false;
        };
        let me = self.cert.body.device;
        // The update's signature covers its keys: their bodies are read, not verified again.
        let brought = u.body.keys.iter().any(|k| {
            crate::keys::split_signed("sealed key", k)
                .ok()
                .and_then(|(body, _)| wire::decode::<SealedKeyBody>("sealed key", body, 1024).ok())
                .is_some_and(|b| (b.channel, b.epoch, b.device) == (PLANE_CHANNEL, newest, me))
        });
        if brought {
            self.plane_since_us = Some(applied_us);
        }
        brought
    }
}
