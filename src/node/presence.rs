//! Presence: the signed records of members' addresses and current profiles that this node
//! holds, its own included. Never holds a record it could not verify against a known
//! certificate, except the bounded few waiting for theirs.

use std::collections::VecDeque;

use super::{MAX_PRESENCE_WAITING, Node};
use crate::cert::{Certificate, Profile};
use crate::presence::{Presence, PresenceBody, PresenceError};

impl Node {
    /// Learns a presence record; `Ok(true)` when it is new or newer than the one held. A
    /// record of a device whose certificate is not known yet is refused with
    /// [`PresenceError::UnknownDevice`] and held (bounded) until
    /// [`Node::learn_waiting_presence`] finds the certificate.
    pub fn learn_presence(&mut self, bytes: &[u8]) -> Result<bool, PresenceError> {
        let (device, issued_us) = Presence::claimed(bytes)?;
        // This device speaks for itself; an old record of ours echoed back is ignored.
        if device == self.cert.body.device {
            return Ok(false);
        }
        // Before any signature check: a revoked device's records are neither kept, nor
        // flooded, nor listed.
        if self.descriptor.is_revoked(device) {
            return Err(PresenceError::Revoked(device));
        }
        let Some(cert) = self.roster.get(&device) else {
            // The newest claim per device waits (a device may sign two records at start-up,
            // and they may arrive in either order).
            let newer_held = self
                .presence_waiting
                .iter()
                .any(|(d, t, _)| *d == device && *t >= issued_us);
            if bytes.len() <= crate::presence::MAX_PRESENCE_LEN && !newer_held {
                self.presence_waiting.retain(|(d, _, _)| *d != device);
                if self.presence_waiting.len() >= MAX_PRESENCE_WAITING {
                    self.presence_waiting.pop_front();
                }
                self.presence_waiting
                    .push_back((device, issued_us, bytes.to_vec()));
            }
            return Err(PresenceError::UnknownDevice(device));
        };
        // A record no newer than the one held changes nothing, whoever signed it: no
        // signature check (every admission brings every record again).
        if self
            .presence
            .get(&device)
            .is_some_and(|old| old.body.issued_us >= issued_us)
        {
            return Ok(false);
        }
        // Verified, the record says what it claimed: newer than the one held.
        let p = Presence::verify(bytes, cert)?;
        self.presence.insert(device, p);
        Ok(true)
    }

    /// Learns the held presence records whose device now has a certificate (see
    /// [`Node::learn_presence`]); returns those that were new, to act on and pass on. Records
    /// that fail verification are dropped.
    pub fn learn_waiting_presence(&mut self) -> Vec<Vec<u8>> {
        if self.presence_waiting.is_empty() {
            return vec![];
        }
        let (ready, waiting): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.presence_waiting)
                .into_iter()
                .partition(|(d, _, _)| self.roster.contains_key(d));
        self.presence_waiting = waiting;
        ready
            .into_iter()
            .map(|(_, _, r)| r)
            .filter(|r| self.learn_presence(r) == Ok(true))
            .collect()
    }

    /// Signs this device's presence (addresses, and profile when it differs from the
    /// certificate's) at `now_us`, strictly newer than the last one, and holds it.
    pub fn issue_presence(
        &mut self,
        addresses: Vec<String>,
        profile: Option<Profile>,
        now_us: u64,
    ) -> Presence {
        let me = self.cert.body.device;
        let last = self.presence.get(&me).map_or(0, |p| p.body.issued_us);
        let body = PresenceBody {
            version: 1,
            domain: *self.domain(),
            device: me,
            issued_us: now_us.max(last.saturating_add(1)),
            addresses: addresses
                .into_iter()
                .filter(|a| a.len() <= crate::presence::MAX_ADDRESS_LEN)
                .take(crate::presence::MAX_ADDRESSES)
                .collect(),
            profile,
        };
        let mut body = body;
        // Every peer refuses a record over the limit: shed addresses, then the profile.
        while crate::wire::encode(&body).len() + crate::keys::SIG_LEN
            > crate::presence::MAX_PRESENCE_LEN
        {
            if body.addresses.pop().is_none() {
                body.profile = None;
                break;
            }
        }
        let p = Presence::issue(&self.secrets.identity, body);
        self.presence.insert(me, p.clone());
        p
    }

    /// Every presence record held.
    pub fn presence_records(&self) -> impl Iterator<Item = &Presence> {
        self.presence.values()
    }

    /// The profile a member has now: its latest presence record's, else its certificate's.
    pub fn profile_of(&self, cert: &Certificate) -> Profile {
        self.presence
            .get(&cert.body.device)
            .and_then(|p| p.body.profile.clone())
            .unwrap_or_else(|| cert.body.profile.clone())
    }
}
