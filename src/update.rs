//! Domain updates: what the offline authority says after enrolment, signed, numbered and
//! applied in order by every member.
//!
//! An update carries the new descriptor (whose revision is the update's serial), the devices
//! it revokes, the certificates of devices it adds, and the channel keys of new epochs sealed
//! to every member that keeps reading. It travels as a file (`ptt-node domain publish`), by
//! push between members and by catch-up on every handshake; `proto/update.md` is the
//! specification. This module only parses and checks; [`crate::node::Node::apply_update`]
//! applies.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::cert::{CertError, Descriptor};
use crate::keys::{self, DomainId, SIG_UPDATE};
use crate::wire::{self, DecodeError};

/// Update format version.
pub const VERSION: u8 = 1;
/// Largest update accepted (1 MiB: about 5,000 sealed keys, e.g. 1,000 readers of 5
/// channels re-keyed at once).
pub const MAX_UPDATE_LEN: usize = 1024 * 1024;

/// The signed content of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateBody {
    /// Format version, [`VERSION`].
    pub version: u8,
    /// The domain.
    pub domain: DomainId,
    /// The descriptor revision this update brings a member to.
    pub serial: u64,
    /// The revision a member must hold to apply it: that of the last earlier update that
    /// carried channel keys (0: none). Updates in between only changed the descriptor or
    /// added certificates, which this update's descriptor and the handshakes subsume, so a
    /// member may skip them.
    pub requires: u64,
    /// When the authority issued it (Unix seconds; shown, never used for a decision).
    pub issued_at: u64,
    /// What the update does, in words, for operators (`revoke cam-3`).
    pub note: String,
    /// The new descriptor (signed by the authority, revision = `serial`).
    pub descriptor: Vec<u8>,
    /// Devices revoked by this update (also listed, with all earlier ones, in the descriptor).
    pub revoked: Vec<u32>,
    /// Certificates of devices added (or re-enrolled) by this update.
    pub certs: Vec<Vec<u8>>,
    /// Channel keys of new epochs, sealed to each member that reads the channel.
    pub keys: Vec<Vec<u8>>,
}

/// A verified update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The body.
    pub body: UpdateBody,
    /// The new descriptor, verified.
    pub descriptor: Descriptor,
    bytes: Vec<u8>,
}

/// Why an update is refused or not applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// The bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Not signed by this domain's authority.
    #[error("the update is not signed by this domain's authority")]
    BadSignature,
    /// For another domain.
    #[error("the update is for another domain")]
    WrongDomain,
    /// Its descriptor does not check out or does not match the update.
    #[error("the update's descriptor is invalid: {0}")]
    Descriptor(String),
    /// Already applied.
    #[error("update {serial} is already applied (this device is at revision {have})")]
    Stale {
        /// The update's serial.
        serial: u64,
        /// The device's revision.
        have: u64,
    },
    /// An earlier update is missing.
    #[error(
        "update {serial} needs revision {requires} first (this device is at revision {have}); publish update {requires} first"
    )]
    Gap {
        /// The update's serial.
        serial: u64,
        /// The revision it needs.
        requires: u64,
        /// The device's revision.
        have: u64,
    },
}

impl UpdateError {
    /// Whether the update may still apply later (after the missing ones).
    pub fn is_gap(&self) -> bool {
        matches!(self, UpdateError::Gap { .. })
    }
}

impl Update {
    /// Signs an update.
    pub fn issue(authority: &SigningKey, body: UpdateBody) -> Result<Self, UpdateError> {
        let descriptor = Descriptor::from_bytes(&body.descriptor)
            .map_err(|e| UpdateError::Descriptor(e.to_string()))?;
        let body_bytes = wire::encode(&body);
        let sig = keys::sign(authority, SIG_UPDATE, &body_bytes);
        let mut bytes = body_bytes;
        bytes.extend_from_slice(&sig);
        Ok(Update {
            body,
            descriptor,
            bytes,
        })
    }

    /// Parses an update and checks it against the domain's authority key: the signature, the
    /// domain, and that its descriptor is the authority's at revision `serial` and lists
    /// every device it revokes.
    pub fn from_bytes(
        bytes: &[u8],
        authority: &VerifyingKey,
        domain: &DomainId,
    ) -> Result<Self, UpdateError> {
        if bytes.len() > MAX_UPDATE_LEN {
            return Err(DecodeError::TooLong {
                what: "update",
                len: bytes.len(),
                max: MAX_UPDATE_LEN,
            }
            .into());
        }
        let (body_bytes, sig) = keys::split_signed("update", bytes)?;
        if !keys::verify(authority, SIG_UPDATE, body_bytes, &sig) {
            return Err(UpdateError::BadSignature);
        }
        let body: UpdateBody = wire::decode("update", body_bytes, MAX_UPDATE_LEN)?;
        if body.version != VERSION {
            return Err(DecodeError::Version {
                what: "update",
                found: body.version,
                expected: VERSION,
            }
            .into());
        }
        if body.domain != *domain {
            return Err(UpdateError::WrongDomain);
        }
        let descriptor = Descriptor::from_bytes(&body.descriptor).map_err(|e| match e {
            CertError::Decode(d) => UpdateError::Descriptor(d.to_string()),
            e => UpdateError::Descriptor(e.to_string()),
        })?;
        if descriptor.authority != *authority {
            return Err(UpdateError::Descriptor(
                "signed by another authority".into(),
            ));
        }
        if body.requires >= body.serial {
            return Err(UpdateError::Descriptor(format!(
                "update {} cannot require revision {}",
                body.serial, body.requires
            )));
        }
        if descriptor.body.revision != body.serial {
            return Err(UpdateError::Descriptor(format!(
                "revision {} in an update numbered {}",
                descriptor.body.revision, body.serial
            )));
        }
        if let Some(d) = body.revoked.iter().find(|d| !descriptor.is_revoked(**d)) {
            return Err(UpdateError::Descriptor(format!(
                "revokes device {d} but its descriptor does not list it"
            )));
        }
        Ok(Update {
            body,
            descriptor,
            bytes: bytes.to_vec(),
        })
    }

    /// The wire form: the encoded body followed by the authority's signature.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The serial of an update without verifying it (to order updates before checking).
    pub fn claimed_serial(bytes: &[u8]) -> Result<u64, DecodeError> {
        #[derive(Deserialize)]
        struct Head {
            _version: u8,
            _domain: DomainId,
            serial: u64,
        }
        let h: (Head, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed {
                what: "update",
                reason: e.to_string(),
            })?;
        Ok(h.0.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{ChannelInfo, ChannelPolicy, DescriptorBody};
    use rand_core::OsRng;

    fn descriptor(key: &SigningKey, revision: u64, revoked: Vec<u32>) -> Descriptor {
        Descriptor::issue(
            key,
            DescriptorBody {
                version: crate::cert::VERSION,
                name: "site".into(),
                authority: key.verifying_key().to_bytes(),
                revision,
                channels: vec![ChannelInfo {
                    id: 1,
                    name: "alerts".into(),
                    policy: ChannelPolicy::default(),
                    escalation: Default::default(),
                }],
                brokers: vec![],
                revoked,
                private_network: false,
                rights: vec![],
            },
        )
    }

    fn body(key: &SigningKey, serial: u64, revoked: Vec<u32>, listed: Vec<u32>) -> UpdateBody {
        UpdateBody {
            version: VERSION,
            domain: DomainId::from_authority(&key.verifying_key()),
            serial,
            requires: 0,
            issued_at: 1,
            note: "revoke".into(),
            descriptor: descriptor(key, serial, listed).as_bytes().to_vec(),
            revoked,
            certs: vec![],
            keys: vec![],
        }
    }

    #[test]
    fn updates_verify_and_refuse() {
        let key = SigningKey::generate(&mut OsRng);
        let vk = key.verifying_key();
        let domain = DomainId::from_authority(&vk);
        let u = Update::issue(&key, body(&key, 3, vec![2], vec![2, 5])).unwrap();
        let p = Update::from_bytes(u.as_bytes(), &vk, &domain).unwrap();
        assert_eq!(p, u);
        assert_eq!(Update::claimed_serial(u.as_bytes()), Ok(3));

        let other = SigningKey::generate(&mut OsRng);
        assert_eq!(
            Update::from_bytes(u.as_bytes(), &other.verifying_key(), &domain),
            Err(UpdateError::BadSignature)
        );
        // Signed by the authority but inconsistent: refused.
        let wrong_rev = Update::issue(
            &key,
            UpdateBody {
                descriptor: descriptor(&key, 4, vec![2]).as_bytes().to_vec(),
                ..body(&key, 3, vec![2], vec![2])
            },
        )
        .unwrap();
        assert!(matches!(
            Update::from_bytes(wrong_rev.as_bytes(), &vk, &domain),
            Err(UpdateError::Descriptor(_))
        ));
        let unlisted = Update::issue(&key, body(&key, 3, vec![7], vec![2])).unwrap();
        assert!(matches!(
            Update::from_bytes(unlisted.as_bytes(), &vk, &domain),
            Err(UpdateError::Descriptor(_))
        ));
        for i in 0..u.as_bytes().len() {
            let mut t = u.as_bytes().to_vec();
            t[i] ^= 0x20;
            assert!(Update::from_bytes(&t, &vk, &domain).is_err(), "byte {i}");
        }
        let big = vec![0u8; MAX_UPDATE_LEN + 1];
        assert!(matches!(
            Update::from_bytes(&big, &vk, &domain),
            Err(UpdateError::Decode(DecodeError::TooLong { .. }))
        ));
    }
}
