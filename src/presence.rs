//! A device's own signed statement about itself: where it can be reached now and, if it
//! changed since enrolment, its profile (kind, location, context tags, sleeping).
//!
//! The certificate carries the profile the authority registered; a device that moves or
//! changes role publishes a newer presence record, signed with its identity key, that members
//! spread to each other (like certificates) so everyone can search for, and dial, members they
//! are not connected to. Pure data and checks; no I/O, no clock.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::cert::{Certificate, Profile};
use crate::keys::{self, DomainId};
use crate::wire::{self, DecodeError};

/// Signature context of a presence record.
pub const SIG_PRESENCE: &[u8] = b"ptt-node/v1/sig/presence";
/// Largest presence record.
pub const MAX_PRESENCE_LEN: usize = 4096;
/// Addresses in one record at most.
pub const MAX_ADDRESSES: usize = 16;
/// Longest address.
pub const MAX_ADDRESS_LEN: usize = 256;

/// The signed content of a presence record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceBody {
    /// Format version, 1.
    pub version: u8,
    /// The domain.
    pub domain: DomainId,
    /// The device number.
    pub device: u32,
    /// When the device issued it (its clock, µs): a newer record replaces an older one.
    pub issued_us: u64,
    /// Multiaddresses the device listens on.
    pub addresses: Vec<String>,
    /// Its profile now, when it differs from the certificate's.
    pub profile: Option<Profile>,
}

/// A verified presence record.
#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    /// The body.
    pub body: PresenceBody,
    bytes: Vec<u8>,
}

/// Why a presence record is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PresenceError {
    /// Malformed or too large.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Not signed by the device its certificate names.
    #[error("presence record not signed by device {0}")]
    BadSignature(u32),
    /// For another domain or device than the certificate.
    #[error("presence record for another domain or device")]
    Mismatch,
    /// No certificate is known for the device it names.
    #[error("presence record of unknown device {0}")]
    UnknownDevice(u32),
    /// The device it names was revoked: it is no member, and speaks for nothing.
    #[error("presence record of revoked device {0}")]
    Revoked(u32),
    /// Too many or too long addresses, or a bad location.
    #[error("presence record out of bounds: {0}")]
    Bounds(String),
}

impl Presence {
    /// Signs a record with the device's identity key.
    pub fn issue(identity: &SigningKey, body: PresenceBody) -> Self {
        let mut bytes = wire::encode(&body);
        let sig = keys::sign(identity, SIG_PRESENCE, &bytes);
        bytes.extend_from_slice(&sig);
        Presence { body, bytes }
    }

    /// The device number a record claims, read without verifying (to find its certificate).
    pub fn claimed_device(bytes: &[u8]) -> Result<u32, PresenceError> {
        Self::claimed(bytes).map(|(device, _)| device)
    }

    /// The device and `issued_us` a record claims, unverified.
    pub fn claimed(bytes: &[u8]) -> Result<(u32, u64), PresenceError> {
        let (body, _) = keys::split_signed("presence", bytes)?;
        let b: PresenceBody = wire::decode("presence", body, MAX_PRESENCE_LEN)?;
        Ok((b.device, b.issued_us))
    }

    /// Parses and verifies a record against the certificate of the device it names.
    pub fn verify(bytes: &[u8], cert: &Certificate) -> Result<Self, PresenceError> {
        if bytes.len() > MAX_PRESENCE_LEN {
            return Err(DecodeError::TooLong {
                what: "presence",
                len: bytes.len(),
                max: MAX_PRESENCE_LEN,
            }
            .into());
        }
        let (body_bytes, sig) = keys::split_signed("presence", bytes)?;
        if !keys::verify(cert.verifying_key(), SIG_PRESENCE, body_bytes, &sig) {
            return Err(PresenceError::BadSignature(cert.body.device));
        }
        let body: PresenceBody = wire::decode("presence", body_bytes, MAX_PRESENCE_LEN)?;
        if body.version != 1 {
            return Err(DecodeError::Version {
                what: "presence",
                found: body.version,
                expected: 1,
            }
            .into());
        }
        if body.domain != cert.body.domain || body.device != cert.body.device {
            return Err(PresenceError::Mismatch);
        }
        if body.addresses.len() > MAX_ADDRESSES
            || body.addresses.iter().any(|a| a.len() > MAX_ADDRESS_LEN)
        {
            return Err(PresenceError::Bounds("addresses".into()));
        }
        if let Some(loc) = body.profile.as_ref().and_then(|p| p.location) {
            loc.check().map_err(PresenceError::Bounds)?;
        }
        Ok(Presence {
            body,
            bytes: bytes.to_vec(),
        })
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Great-circle distance in metres (haversine, mean Earth radius).
pub fn distance_m(a: crate::cert::Location, b: crate::cert::Location) -> f64 {
    let r = 6_371_008.8;
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dla = (b.lat - a.lat).to_radians();
    let dlo = (b.lon - a.lon).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * r * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Location;
    use crate::domain::{Authority, EnrollRequest};
    use rand_core::OsRng;

    #[test]
    fn presence_is_bound_to_its_device() {
        let mut a = Authority::create("site", 1_000_000, &mut OsRng).unwrap();
        let req = |n: &str| EnrollRequest {
            name: n.into(),
            ..Default::default()
        };
        let (b1, _) = a.enroll(&req("a"), 1_000, &mut OsRng).unwrap();
        let (b2, _) = a.enroll(&req("b"), 1_000, &mut OsRng).unwrap();
        let body = PresenceBody {
            version: 1,
            domain: b1.cert.body.domain,
            device: b1.cert.body.device,
            issued_us: 5,
            addresses: vec!["/ip4/10.0.0.1/tcp/4001".into()],
            profile: None,
        };
        let p = Presence::issue(&b1.secrets.identity, body.clone());
        assert_eq!(
            Presence::claimed_device(p.as_bytes()).unwrap(),
            b1.cert.body.device
        );
        assert_eq!(Presence::verify(p.as_bytes(), &b1.cert).unwrap(), p);
        assert_eq!(
            Presence::verify(p.as_bytes(), &b2.cert),
            Err(PresenceError::BadSignature(b2.cert.body.device))
        );
        // Signed by b, claiming to be a.
        let forged = Presence::issue(&b2.secrets.identity, body.clone());
        assert!(Presence::verify(forged.as_bytes(), &b1.cert).is_err());
        let wrong = Presence::issue(&b2.secrets.identity, body.clone());
        assert_eq!(
            Presence::verify(wrong.as_bytes(), &b2.cert),
            Err(PresenceError::Mismatch)
        );
        let many = PresenceBody {
            addresses: vec!["x".into(); 17],
            ..body
        };
        let p = Presence::issue(&b1.secrets.identity, many);
        assert!(matches!(
            Presence::verify(p.as_bytes(), &b1.cert),
            Err(PresenceError::Bounds(_))
        ));
    }

    #[test]
    fn distances() {
        let seoul = Location {
            lat: 37.5665,
            lon: 126.9780,
        };
        let busan = Location {
            lat: 35.1796,
            lon: 129.0756,
        };
        let d = distance_m(seoul, busan);
        assert!((d - 325_000.0).abs() < 5_000.0, "{d}");
        assert!(distance_m(seoul, seoul) < 1e-6);
    }
}
