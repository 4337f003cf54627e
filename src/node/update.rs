//! Applying a domain update from the authority to the node: descriptor, revocations,
//! certificates and the channel keys sealed to this device. Applies only the next revision,
//! signed by the authority; parsing and checking the update itself is [`crate::update`]'s.

use libp2p::PeerId;

use super::Node;
use crate::keys::SealedKey;
use crate::update::{Update, UpdateError};

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
    /// Channel epochs whose keys this device received: (channel, epoch).
    pub new_keys: Vec<(u32, u32)>,
}

impl Node {
    /// Applies a domain update: it must be signed by the authority and be the next one in
    /// order. Takes its descriptor, certificates and the keys sealed to this device.
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
            self.keys.insert((channel, epoch), chain);
            let e = self.current_epoch.entry(channel).or_insert(epoch);
            *e = (*e).max(epoch);
            new_keys.push((channel, epoch));
        }
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
}
