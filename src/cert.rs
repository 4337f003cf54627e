//! Device certificates and the domain descriptor, both signed by the domain authority.
//!
//! A certificate binds a device number and name to an Ed25519 key (whose libp2p peer id the
//! Noise handshake proves) and an X25519 key, and says which channels the device may read and
//! write. Verification takes `now` from the caller; nothing here reads a clock.

use ed25519_dalek::VerifyingKey;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::keys::{self, DomainId, SIG_CERT, SIG_DESCRIPTOR, SIG_LEN};
use crate::severity::Severity;
use crate::wire::{self, DecodeError, MAX_CERT_LEN};

/// Current certificate format version.
pub const VERSION: u8 = 1;
/// Current descriptor format version: 2 added [`DescriptorBody::rights`]. A version 1
/// descriptor (a domain made before) is still read, as one that limits no device.
pub const DESCRIPTOR_VERSION: u8 = 3;
/// Largest descriptor body a device decodes.
pub const MAX_DESCRIPTOR_BODY: usize = 64 * 1024;
/// Most devices a descriptor may give rights other than the default.
pub const MAX_RIGHTS: usize = 10_000;

/// A position in WGS 84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

impl Location {
    /// Parses `LAT,LON`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once(',')
            .ok_or_else(|| format!("location {s:?} is not LAT,LON"))?;
        let lat: f64 = a
            .trim()
            .parse()
            .map_err(|_| format!("latitude {a:?} is not a number"))?;
        let lon: f64 = b
            .trim()
            .parse()
            .map_err(|_| format!("longitude {b:?} is not a number"))?;
        let loc = Location { lat, lon };
        loc.check()?;
        Ok(loc)
    }
    /// Checks the ranges (and rejects NaN).
    pub fn check(&self) -> Result<(), String> {
        if !(-90.0..=90.0).contains(&self.lat) || !(-180.0..=180.0).contains(&self.lon) {
            return Err(format!(
                "location {},{} is out of range (latitude -90..90, longitude -180..180)",
                self.lat, self.lon
            ));
        }
        Ok(())
    }
}

/// What a device is and where: searchable by other members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Device kind, such as `motion-sensor`, `camera`, `handheld`.
    pub kind: String,
    /// Where it is installed.
    pub location: Option<Location>,
    /// Context tags such as `zone=north`.
    pub tags: Vec<(String, String)>,
    /// Whether the device sleeps most of the time.
    pub sleeps: bool,
}

/// A channel a device is admitted to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Channel number.
    pub channel: u32,
    /// Channel name.
    pub name: String,
    /// May open alerts of this channel (receives its keys).
    pub read: bool,
    /// May publish alerts on this channel.
    pub write: bool,
}

/// The signed content of a certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertBody {
    /// Format version.
    pub version: u8,
    /// The domain that issued it.
    pub domain: DomainId,
    /// Device number, unique in the domain and never reused.
    pub device: u32,
    /// Device name. Unique among the devices the authority lists as current; a forced
    /// re-enrolment issues a new certificate (and number) while the old one stays valid until
    /// it expires.
    pub name: String,
    /// Ed25519 public key: identity and libp2p peer id.
    pub ed25519: [u8; 32],
    /// X25519 public key: channel secrets are sealed to it.
    pub x25519: [u8; 32],
    /// Forwards and stores alerts but holds no channel key.
    pub relay_only: bool,
    /// Channels and rights.
    pub grants: Vec<Grant>,
    /// Kind, location, tags.
    pub profile: Profile,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds).
    pub not_after: u64,
}

/// A certificate: the body, its exact encoding and the authority's signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    /// The decoded body.
    pub body: CertBody,
    peer: PeerId,
    /// `peer` in base58, written once: every alert from this device names its sender's peer
    /// id, and encoding it took 1.5 % of a receiver's CPU in a burst.
    peer_text: String,
    /// `body.ed25519` decompressed once: every envelope from this device is checked against
    /// it, and decompressing a point costs about a third of a signature check.
    key: VerifyingKey,
    bytes: Vec<u8>,
}

/// Why a certificate or descriptor is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    /// The bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Not signed by this domain's authority.
    #[error("not signed by this domain's authority")]
    BadSignature,
    /// Issued for another domain.
    #[error("issued for domain {found}, not this domain {expected}")]
    WrongDomain {
        /// Domain in the certificate (hex prefix).
        found: String,
        /// Our domain (hex prefix).
        expected: String,
    },
    /// Outside its validity period.
    #[error("valid from {not_before} to {not_after} (Unix seconds), now is {now}")]
    Expired {
        /// Start.
        not_before: u64,
        /// End.
        not_after: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// The public key is not a valid Ed25519 point.
    #[error("the certificate's Ed25519 key is invalid")]
    BadKey,
    /// The certificate's key is not the key the transport authenticated.
    #[error("certificate of peer {cert_peer} presented by peer {actual}")]
    PeerMismatch {
        /// Peer id derived from the certificate.
        cert_peer: String,
        /// Peer id Noise proved.
        actual: String,
    },
}

impl Certificate {
    /// Signs a body with the authority key.
    pub fn issue(authority: &ed25519_dalek::SigningKey, body: CertBody) -> Result<Self, CertError> {
        let peer = peer_id_of(&body.ed25519).ok_or(CertError::BadKey)?;
        let key = VerifyingKey::from_bytes(&body.ed25519).map_err(|_| CertError::BadKey)?;
        let body_bytes = wire::encode(&body);
        let sig = keys::sign(authority, SIG_CERT, &body_bytes);
        let mut bytes = body_bytes;
        bytes.extend_from_slice(&sig);
        Ok(Certificate {
            body,
            peer_text: peer.to_string(),
            peer,
            key,
            bytes,
        })
    }

    /// The device number a certificate claims, read without verifying (to find the one held).
    pub fn claimed_device(bytes: &[u8]) -> Result<u32, CertError> {
        let (body, _) = keys::split_signed("certificate", bytes)?;
        let b: CertBody = wire::decode("certificate", body, MAX_CERT_LEN)?;
        Ok(b.device)
    }

    /// Parses and checks the signature and domain; validity in time is checked by
    /// [`Certificate::check_time`] so that a stored certificate can be read after expiry.
    pub fn from_bytes(
        bytes: &[u8],
        authority: &VerifyingKey,
        domain: &DomainId,
    ) -> Result<Self, CertError> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(DecodeError::TooLong {
                what: "certificate",
                len: bytes.len(),
                max: MAX_CERT_LEN,
            }
            .into());
        }
        let (body_bytes, sig) = keys::split_signed("certificate", bytes)?;
        if !keys::verify(authority, SIG_CERT, body_bytes, &sig) {
            return Err(CertError::BadSignature);
        }
        let body: CertBody = wire::decode("certificate", body_bytes, MAX_CERT_LEN)?;
        if body.version != VERSION {
            return Err(DecodeError::Version {
                what: "certificate",
                found: body.version,
                expected: VERSION,
            }
            .into());
        }
        if body.domain != *domain {
            return Err(CertError::WrongDomain {
                found: body.domain.to_hex()[..16].to_string(),
                expected: domain.to_hex()[..16].to_string(),
            });
        }
        let key = VerifyingKey::from_bytes(&body.ed25519).map_err(|_| CertError::BadKey)?;
        let peer = peer_id_of(&body.ed25519).ok_or(CertError::BadKey)?;
        Ok(Certificate {
            body,
            peer_text: peer.to_string(),
            peer,
            key,
            bytes: bytes.to_vec(),
        })
    }

    /// The wire form: encoded body followed by the signature.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks the validity period against `now` (Unix seconds).
    pub fn check_time(&self, now: u64) -> Result<(), CertError> {
        if now < self.body.not_before || now > self.body.not_after {
            return Err(CertError::Expired {
                not_before: self.body.not_before,
                not_after: self.body.not_after,
                now,
            });
        }
        Ok(())
    }

    /// The device's Ed25519 verifying key (checked valid at parse time).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The libp2p peer id of the device.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The libp2p peer id of the device, as text (base58).
    pub fn peer_id_text(&self) -> &str {
        &self.peer_text
    }

    /// Checks that `peer` (proved by Noise) is the certificate's key.
    pub fn check_peer(&self, peer: &PeerId) -> Result<(), CertError> {
        let cert_peer = self.peer_id();
        if cert_peer != *peer {
            return Err(CertError::PeerMismatch {
                cert_peer: cert_peer.to_string(),
                actual: peer.to_string(),
            });
        }
        Ok(())
    }

    /// The grant for a channel, if any.
    pub fn grant(&self, channel: u32) -> Option<&Grant> {
        self.body.grants.iter().find(|g| g.channel == channel)
    }

    /// SHA-256 of the certificate bytes: what a device tag pins.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&self.bytes).into()
    }
}

/// The libp2p peer id of an Ed25519 public key.
pub fn peer_id_of(ed25519: &[u8; 32]) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(ed25519).ok()?;
    Some(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
        pk,
    )))
}

/// What the authority decides for one channel (the security level of the channel). Who may
/// read and who may write are per-device grants in the certificates; these are the limits
/// that hold for everyone on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPolicy {
    /// Alerts per minute one sender may publish on the channel; 0 means no limit. Members
    /// drop (and score down the source of) live alerts above it.
    pub rate_per_min: u32,
    /// Alerts a sender may publish at once above the rate (the token bucket's depth).
    pub burst: u32,
    /// Key rotation period in seconds: the channel key ratchets forward once per period and
    /// members erase periods older than their retention window. 0: no rotation within an
    /// epoch (keys change only with a new epoch).
    pub rotate_secs: u32,
}

impl Default for ChannelPolicy {
    fn default() -> Self {
        ChannelPolicy {
            rate_per_min: DEFAULT_RATE_PER_MIN,
            burst: DEFAULT_BURST,
            rotate_secs: DEFAULT_ROTATE_SECS,
        }
    }
}

/// Default alerts per minute per sender and channel (50 a second).
pub const DEFAULT_RATE_PER_MIN: u32 = 3000;
/// Default burst per sender and channel.
pub const DEFAULT_BURST: u32 = 500;
/// Default rotation period: one hour.
pub const DEFAULT_ROTATE_SECS: u32 = 3600;

impl ChannelPolicy {
    /// The ratchet period an envelope of sequence number `seq` (µs) belongs to.
    pub fn period_of(&self, seq: u64) -> u64 {
        match self.rotate_secs {
            0 => 0,
            s => seq / 1_000_000 / u64::from(s),
        }
    }
}

/// A channel of the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Channel number (on the wire).
    pub id: u32,
    /// Channel name (what users type).
    pub name: String,
    /// Limits and key rotation.
    pub policy: ChannelPolicy,
    /// When an unacknowledged alert is announced again (version 3).
    pub escalation: Escalation,
}

/// A channel's escalation policy (version 3): an alert of at least `min_severity` that no
/// member acknowledged within `after_secs` is announced again by its sender at the next
/// severity, once (`proto/envelope.md`, "Escalation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// Seconds after the alert's creation; 0: no escalation.
    pub after_secs: u32,
    /// The lowest severity escalated.
    pub min_severity: Severity,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            after_secs: 0,
            min_severity: Severity::Severe,
        }
    }
}

/// A version 1 or 2 channel: [`ChannelInfo`] without `escalation`.
#[derive(Clone, Serialize, Deserialize)]
struct ChannelInfoV2 {
    id: u32,
    name: String,
    policy: ChannelPolicy,
}

impl From<ChannelInfoV2> for ChannelInfo {
    fn from(c: ChannelInfoV2) -> Self {
        ChannelInfo {
            id: c.id,
            name: c.name,
            policy: c.policy,
            escalation: Escalation::default(),
        }
    }
}

impl From<&ChannelInfo> for ChannelInfoV2 {
    fn from(c: &ChannelInfo) -> Self {
        ChannelInfoV2 {
            id: c.id,
            name: c.name.clone(),
            policy: c.policy,
        }
    }
}

/// The signed, public description of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorBody {
    /// Format version.
    pub version: u8,
    /// Human name of the domain.
    pub name: String,
    /// The authority's Ed25519 public key; the domain id derives from it.
    pub authority: [u8; 32],
    /// Revision, increased by every change the authority makes.
    pub revision: u64,
    /// Channels.
    pub channels: Vec<ChannelInfo>,
    /// Multiaddresses of connection brokers.
    pub brokers: Vec<String>,
    /// Revoked device numbers, ascending: refused at every handshake, their alerts refused
    /// from the update that revoked them on.
    pub revoked: Vec<u32>,
    /// Whether connections are also protected by the domain's private-network key (a
    /// libp2p pre-shared key, sealed to each device like a channel key): a device without
    /// it cannot complete even the transport handshake.
    pub private_network: bool,
    /// Devices whose rights differ from the default, by ascending device number (version 2).
    #[serde(deserialize_with = "crate::wire::bounded::<MAX_RIGHTS, _, _>")]
    pub rights: Vec<DeviceRights>,
}

/// What the authority allows one device beyond its certificate, changeable by a domain update
/// without enrolling the device again. A device the descriptor does not list has the default:
/// every severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRights {
    /// Device number.
    pub device: u32,
    /// The highest severity its alerts and voice claims count with: members read a higher
    /// claim as this one, and its own daemon refuses to seal one.
    pub max_severity: Severity,
    /// Rights beyond the default, as bits: [`RIGHT_DISPATCH`], [`RIGHT_EMERGENCY`] (version 3). Readers ignore
    /// bits they do not know, so a later build can add rights without a new version.
    pub flags: u32,
    /// Check-in period in seconds (0: not watched), version 3: members announce the device
    /// lost when none of them in line heard it for that long (the daemon's watchdog).
    pub watch_secs: u32,
}

/// [`DeviceRights::flags`]: the device may update and cancel alerts other members sent (a
/// dispatcher); without it, a device updates and cancels only its own.
pub const RIGHT_DISPATCH: u32 = 1;

/// [`DeviceRights::flags`]: the device may declare an emergency (`ptt-node emergency`): its
/// voice claims pre-empt every talker not in emergency. A captured handset without it cannot
/// silence a channel.
pub const RIGHT_EMERGENCY: u32 = 2;

impl DeviceRights {
    /// What a device the descriptor does not list has: every severity, no extra right.
    pub fn default_for(device: u32) -> Self {
        DeviceRights {
            device,
            max_severity: Severity::Extreme,
            flags: 0,
            watch_secs: 0,
        }
    }
    /// Whether these are the default rights (an entry the descriptor need not list).
    pub fn is_default(&self) -> bool {
        *self == Self::default_for(self.device)
    }
    /// Whether the device may update and cancel other members' alerts.
    pub fn dispatcher(&self) -> bool {
        self.flags & RIGHT_DISPATCH != 0
    }
    /// Whether the device may declare an emergency.
    pub fn emergency(&self) -> bool {
        self.flags & RIGHT_EMERGENCY != 0
    }
}

/// A version 2 rights entry: [`DeviceRights`] without `flags` and `watch_secs`.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct DeviceRightsV2 {
    device: u32,
    max_severity: Severity,
}

/// A version 2 descriptor body: [`DescriptorBody`] with version 2 rights entries.
#[derive(Serialize, Deserialize)]
struct DescriptorBodyV2 {
    version: u8,
    name: String,
    authority: [u8; 32],
    revision: u64,
    channels: Vec<ChannelInfoV2>,
    brokers: Vec<String>,
    revoked: Vec<u32>,
    private_network: bool,
    #[serde(deserialize_with = "crate::wire::bounded::<MAX_RIGHTS, _, _>")]
    rights: Vec<DeviceRightsV2>,
}

/// A version 1 descriptor body: [`DescriptorBody`] without `rights`.
#[derive(Serialize, Deserialize)]
struct DescriptorBodyV1 {
    version: u8,
    name: String,
    authority: [u8; 32],
    revision: u64,
    channels: Vec<ChannelInfoV2>,
    brokers: Vec<String>,
    revoked: Vec<u32>,
    private_network: bool,
}

impl DescriptorBody {
    /// The encoding its version has: version 1 has no `rights` (a version 1 body that gives
    /// rights cannot be written; they are dropped).
    fn encode(&self) -> Vec<u8> {
        if self.version == 2 {
            let b = self.clone();
            return wire::encode(&DescriptorBodyV2 {
                version: b.version,
                name: b.name,
                authority: b.authority,
                revision: b.revision,
                channels: b.channels.iter().map(ChannelInfoV2::from).collect(),
                brokers: b.brokers,
                revoked: b.revoked,
                private_network: b.private_network,
                rights: b
                    .rights
                    .iter()
                    .map(|r| DeviceRightsV2 {
                        device: r.device,
                        max_severity: r.max_severity,
                    })
                    .collect(),
            });
        }
        if self.version != 1 {
            return wire::encode(self);
        }
        let b = self.clone();
        wire::encode(&DescriptorBodyV1 {
            version: b.version,
            name: b.name,
            authority: b.authority,
            revision: b.revision,
            channels: b.channels.iter().map(ChannelInfoV2::from).collect(),
            brokers: b.brokers,
            revoked: b.revoked,
            private_network: b.private_network,
        })
    }
}

impl From<DescriptorBodyV2> for DescriptorBody {
    fn from(b: DescriptorBodyV2) -> Self {
        DescriptorBody {
            version: b.version,
            name: b.name,
            authority: b.authority,
            revision: b.revision,
            channels: b.channels.into_iter().map(ChannelInfo::from).collect(),
            brokers: b.brokers,
            revoked: b.revoked,
            private_network: b.private_network,
            rights: b
                .rights
                .into_iter()
                .map(|r| DeviceRights {
                    max_severity: r.max_severity,
                    ..DeviceRights::default_for(r.device)
                })
                .collect(),
        }
    }
}

impl From<DescriptorBodyV1> for DescriptorBody {
    fn from(b: DescriptorBodyV1) -> Self {
        // Version 1 is version 2 without rights.
        DescriptorBodyV2 {
            version: b.version,
            name: b.name,
            authority: b.authority,
            revision: b.revision,
            channels: b.channels,
            brokers: b.brokers,
            revoked: b.revoked,
            private_network: b.private_network,
            rights: vec![],
        }
        .into()
    }
}

/// A verified domain descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The body.
    pub body: DescriptorBody,
    /// The domain id derived from the authority key.
    pub domain: DomainId,
    /// The authority's public key.
    pub authority: VerifyingKey,
    bytes: Vec<u8>,
}

impl Descriptor {
    /// Signs a body with the authority key (whose public half must be `body.authority`).
    pub fn issue(authority: &ed25519_dalek::SigningKey, body: DescriptorBody) -> Self {
        let body_bytes = body.encode();
        let sig = keys::sign(authority, SIG_DESCRIPTOR, &body_bytes);
        let mut bytes = body_bytes;
        bytes.extend_from_slice(&sig);
        let vk = authority.verifying_key();
        Descriptor {
            body,
            domain: DomainId::from_authority(&vk),
            authority: vk,
            bytes,
        }
    }

    /// Parses a descriptor and checks that its authority signed it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertError> {
        let (body_bytes, sig): (&[u8], [u8; SIG_LEN]) = keys::split_signed("descriptor", bytes)?;
        // The version is the body's first byte (a `u8` is one byte in postcard).
        let body: DescriptorBody = match body_bytes.first() {
            Some(1) => {
                wire::decode::<DescriptorBodyV1>("descriptor", body_bytes, MAX_DESCRIPTOR_BODY)?
                    .into()
            }
            Some(2) => {
                wire::decode::<DescriptorBodyV2>("descriptor", body_bytes, MAX_DESCRIPTOR_BODY)?
                    .into()
            }
            Some(&DESCRIPTOR_VERSION) => {
                wire::decode("descriptor", body_bytes, MAX_DESCRIPTOR_BODY)?
            }
            found => {
                return Err(DecodeError::Version {
                    what: "descriptor",
                    found: found.copied().unwrap_or(0),
                    expected: DESCRIPTOR_VERSION,
                }
                .into());
            }
        };
        let malformed = |reason: &str| {
            CertError::from(DecodeError::Malformed {
                what: "descriptor",
                reason: reason.into(),
            })
        };
        if body.revoked.windows(2).any(|w| w[0] >= w[1]) {
            return Err(malformed(
                "revoked devices are not in strictly ascending order",
            ));
        }
        if body.rights.windows(2).any(|w| w[0].device >= w[1].device) {
            return Err(malformed(
                "device rights are not in strictly ascending device order",
            ));
        }
        let authority = VerifyingKey::from_bytes(&body.authority).map_err(|_| CertError::BadKey)?;
        if !keys::verify(&authority, SIG_DESCRIPTOR, body_bytes, &sig) {
            return Err(CertError::BadSignature);
        }
        Ok(Descriptor {
            domain: DomainId::from_authority(&authority),
            authority,
            body,
            bytes: bytes.to_vec(),
        })
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The channel with this name.
    pub fn channel_by_name(&self, name: &str) -> Option<&ChannelInfo> {
        self.body.channels.iter().find(|c| c.name == name)
    }

    /// The channel with this number.
    pub fn channel_by_id(&self, id: u32) -> Option<&ChannelInfo> {
        self.body.channels.iter().find(|c| c.id == id)
    }

    /// The escalation policy of a channel (none for a channel this descriptor does not list).
    pub fn escalation(&self, id: u32) -> Escalation {
        self.channel_by_id(id)
            .map(|c| c.escalation)
            .unwrap_or_default()
    }

    /// The policy of a channel (the default for a channel this descriptor does not list).
    pub fn policy(&self, id: u32) -> ChannelPolicy {
        self.channel_by_id(id).map(|c| c.policy).unwrap_or_default()
    }

    /// Whether a device number is revoked.
    pub fn is_revoked(&self, device: u32) -> bool {
        self.body.revoked.binary_search(&device).is_ok()
    }

    /// The rights of a device: its entry, or the default.
    pub fn rights(&self, device: u32) -> DeviceRights {
        self.body
            .rights
            .binary_search_by_key(&device, |r| r.device)
            .map(|i| self.body.rights[i])
            .unwrap_or(DeviceRights::default_for(device))
    }

    /// The severity a claim of `claimed` by `device` counts with: at most the device's
    /// [`DeviceRights::max_severity`].
    pub fn severity_of(&self, device: u32, claimed: Severity) -> Severity {
        claimed.min(self.rights(device).max_severity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use rand_core::OsRng;

    fn body(domain: DomainId, key: &SigningKey) -> CertBody {
        CertBody {
            version: VERSION,
            domain,
            device: 1,
            name: "cam-1".into(),
            ed25519: key.verifying_key().to_bytes(),
            x25519: [9; 32],
            relay_only: false,
            grants: vec![Grant {
                channel: 1,
                name: "alerts".into(),
                read: true,
                write: true,
            }],
            profile: Profile {
                kind: "camera".into(),
                location: Some(Location { lat: 1.0, lon: 2.0 }),
                tags: vec![("zone".into(), "north".into())],
                sleeps: false,
            },
            not_before: 100,
            not_after: 200,
        }
    }

    #[test]
    fn certificate_checks() {
        let auth = SigningKey::generate(&mut OsRng);
        let domain = DomainId::from_authority(&auth.verifying_key());
        let dev = SigningKey::generate(&mut OsRng);
        let cert = Certificate::issue(&auth, body(domain, &dev)).unwrap();
        let parsed =
            Certificate::from_bytes(cert.as_bytes(), &auth.verifying_key(), &domain).unwrap();
        assert_eq!(parsed, cert);
        assert!(parsed.check_time(150).is_ok());
        assert!(matches!(
            parsed.check_time(201),
            Err(CertError::Expired { .. })
        ));
        assert!(matches!(
            parsed.check_time(99),
            Err(CertError::Expired { .. })
        ));
        let peer = peer_id_of(&dev.verifying_key().to_bytes()).unwrap();
        assert!(parsed.check_peer(&peer).is_ok());
        assert_eq!(parsed.peer_id_text(), peer.to_string());
        assert_eq!(cert.peer_id_text(), peer.to_string());
        assert!(matches!(
            parsed.check_peer(&PeerId::random()),
            Err(CertError::PeerMismatch { .. })
        ));

        let other = SigningKey::generate(&mut OsRng);
        let other_domain = DomainId::from_authority(&other.verifying_key());
        assert_eq!(
            Certificate::from_bytes(cert.as_bytes(), &other.verifying_key(), &other_domain),
            Err(CertError::BadSignature)
        );
        let foreign = Certificate::issue(&other, body(other_domain, &dev)).unwrap();
        assert!(matches!(
            Certificate::from_bytes(foreign.as_bytes(), &other.verifying_key(), &domain),
            Err(CertError::WrongDomain { .. })
        ));
        for i in 0..cert.as_bytes().len() {
            let mut t = cert.as_bytes().to_vec();
            t[i] ^= 0x80;
            assert!(
                Certificate::from_bytes(&t, &auth.verifying_key(), &domain).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn descriptor_round_trip() {
        let auth = SigningKey::generate(&mut OsRng);
        let d = Descriptor::issue(
            &auth,
            DescriptorBody {
                version: VERSION,
                name: "site".into(),
                authority: auth.verifying_key().to_bytes(),
                revision: 1,
                channels: vec![ChannelInfo {
                    id: 1,
                    name: "alerts".into(),
                    policy: ChannelPolicy::default(),
                    escalation: Escalation::default(),
                }],
                brokers: vec![],
                revoked: vec![],
                private_network: false,
                rights: vec![],
            },
        );
        let p = Descriptor::from_bytes(d.as_bytes()).unwrap();
        assert_eq!(p, d);
        assert_eq!(p.channel_by_name("alerts").unwrap().id, 1);
        let mut t = d.as_bytes().to_vec();
        let n = t.len();
        t[n - 1] ^= 1;
        assert_eq!(Descriptor::from_bytes(&t), Err(CertError::BadSignature));
    }

    #[test]
    fn descriptor_rights_are_ordered_bounded_and_versioned() {
        let auth = SigningKey::generate(&mut OsRng);
        let rights = |d: u32, s: Severity| DeviceRights {
            max_severity: s,
            ..DeviceRights::default_for(d)
        };
        let body = |version: u8, r: Vec<DeviceRights>| DescriptorBody {
            version,
            name: "site".into(),
            authority: auth.verifying_key().to_bytes(),
            revision: 1,
            channels: vec![],
            brokers: vec![],
            revoked: vec![],
            private_network: false,
            rights: r,
        };
        let v2 = Descriptor::issue(
            &auth,
            body(
                DESCRIPTOR_VERSION,
                vec![rights(2, Severity::Minor), rights(5, Severity::Severe)],
            ),
        );
        let p = Descriptor::from_bytes(v2.as_bytes()).unwrap();
        assert_eq!(p.rights(5).max_severity, Severity::Severe);
        assert_eq!(p.rights(3).max_severity, Severity::Extreme);
        assert_eq!(p.severity_of(2, Severity::Extreme), Severity::Minor);
        assert_eq!(p.severity_of(2, Severity::Unknown), Severity::Unknown);
        // Out of order, or twice the same device: refused, signature or not.
        for bad in [
            vec![rights(5, Severity::Minor), rights(2, Severity::Severe)],
            vec![rights(2, Severity::Minor), rights(2, Severity::Severe)],
        ] {
            let d = Descriptor::issue(&auth, body(DESCRIPTOR_VERSION, bad));
            assert!(
                matches!(
                    Descriptor::from_bytes(d.as_bytes()),
                    Err(CertError::Decode(DecodeError::Malformed { .. }))
                ),
                "{:?}",
                Descriptor::from_bytes(d.as_bytes())
            );
        }
        // Version 1 is written and read without rights; a version this build does not know is
        // refused as such.
        let v1 = Descriptor::issue(&auth, body(1, vec![]));
        let p1 = Descriptor::from_bytes(v1.as_bytes()).unwrap();
        assert_eq!(p1.body.version, 1);
        assert!(p1.body.rights.is_empty());
        assert_eq!(v1.as_bytes().len() + 1, {
            Descriptor::issue(&auth, body(2, vec![])).as_bytes().len()
        });
        // Version 2 entries hold a severity only: written without the flags and the watch
        // period, read back with none.
        let dispatcher = DeviceRights {
            flags: RIGHT_DISPATCH | 0x100,
            watch_secs: 60,
            ..rights(4, Severity::Severe)
        };
        let v2 = Descriptor::issue(&auth, body(2, vec![dispatcher]));
        let p2 = Descriptor::from_bytes(v2.as_bytes()).unwrap();
        assert_eq!(p2.rights(4), rights(4, Severity::Severe));
        assert!(!p2.rights(4).dispatcher());
        // Version 3 keeps them; a bit this build does not know is kept and means nothing.
        let v3 = Descriptor::issue(&auth, body(3, vec![dispatcher]));
        let p3 = Descriptor::from_bytes(v3.as_bytes()).unwrap();
        assert_eq!(p3.rights(4), dispatcher);
        assert!(p3.rights(4).dispatcher() && !p3.rights(5).dispatcher());
        // The flags (0x101: two varint bytes) and the period (one byte) are all it adds.
        assert_eq!(v3.as_bytes().len(), v2.as_bytes().len() + 3);
        let v4 = Descriptor::issue(&auth, body(4, vec![]));
        assert!(matches!(
            Descriptor::from_bytes(v4.as_bytes()),
            Err(CertError::Decode(DecodeError::Version { found: 4, .. }))
        ));
        // A list longer than MAX_RIGHTS is refused at its count.
        let mut long = wire::encode(&body(3, vec![]));
        long.pop();
        long.extend_from_slice(&[0x91, 0x4e]); // 10 001
        long.extend_from_slice(&[0u8; 64]);
        assert!(matches!(
            Descriptor::from_bytes(&long),
            Err(CertError::Decode(DecodeError::Malformed { .. }))
        ));
    }

    #[test]
    fn location_parse() {
        assert_eq!(
            Location::parse("37.5,127.0").unwrap(),
            Location {
                lat: 37.5,
                lon: 127.0
            }
        );
        assert!(Location::parse("91,0").is_err());
        assert!(Location::parse("NaN,0").is_err());
        assert!(Location::parse("1;2").is_err());
    }
}
