//! Keys and the key schedule.
//!
//! Owns every secret type of the protocol and the labels that separate their uses. Secrets
//! zeroize on drop and never print their bytes. Nothing here draws randomness of its own:
//! callers pass an RNG.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::wire::{self, DecodeError};

/// A device's X25519 static secret (zeroized on drop).
pub use x25519_dalek::StaticSecret as X25519Secret;

/// Domain id: SHA-256 of this label and the authority's public key.
pub const LABEL_DOMAIN_ID: &[u8] = b"ptt-node/v1/domain-id";
/// HKDF info prefix for a channel epoch's AES-256-GCM message key.
pub const LABEL_MESSAGE_KEY: &[u8] = b"ptt-node/v1/message-key";
/// HKDF info prefix for the key that wraps a channel secret to one device.
pub const LABEL_KEY_WRAP: &[u8] = b"ptt-node/v1/key-wrap";
/// Signature context of a device certificate.
pub const SIG_CERT: &[u8] = b"ptt-node/v1/sig/certificate";
/// Signature context of the domain descriptor.
pub const SIG_DESCRIPTOR: &[u8] = b"ptt-node/v1/sig/descriptor";
/// Signature context of a sealed group key.
pub const SIG_SEALED_KEY: &[u8] = b"ptt-node/v1/sig/sealed-key";
/// Signature context of an envelope.
pub const SIG_ENVELOPE: &[u8] = b"ptt-node/v1/sig/envelope";
/// Context of receipt signatures (`proto/receipts.md`).
pub const SIG_RECEIPT: &[u8] = b"ptt-node/v1/sig/receipt";
/// Context of voice packet signatures (`proto/voice.md`).
pub const SIG_VOICE: &[u8] = b"ptt-node/v1/sig/voice";
/// HKDF info label of a channel's voice key (`proto/voice.md`).
pub const LABEL_VOICE_KEY: &[u8] = b"ptt-node/v1/voice-key";
/// Alert ids: SHA-256 of this label, the domain id, sender and sequence number.
pub const LABEL_ALERT_ID: &[u8] = b"ptt-node/v1/alert-id";

/// HKDF info of one step of a channel epoch's ratchet.
pub const LABEL_RATCHET: &[u8] = b"ptt-node/v1/ratchet";
/// Signature context of a domain update.
pub const SIG_UPDATE: &[u8] = b"ptt-node/v1/sig/update";
/// How many periods a ratchet derives ahead of the oldest period it holds, at most: a
/// sender whose clock runs further ahead than this is unreadable until the receiver's own
/// position catches up (with hourly rotation, 416 days).
pub const MAX_RATCHET_AHEAD: u64 = 10_000;
/// A key-cache miss derives at most this many ratchet steps once the way to its period was
/// walked: the secrets every this many periods from a chain's oldest are kept in memory as
/// checkpoints (never saved; each can be derived from the chain anyway).
pub const RATCHET_CHECKPOINT_EVERY: u64 = 64;

/// HKDF info prefix for the pairwise key of directed messages.
pub const LABEL_DIRECT_KEY: &[u8] = b"ptt-node/v1/direct-key";

/// HKDF info prefix of a plane epoch's datagram key: info = label ‖ u32be(epoch).
pub const LABEL_PLANE_KEY: &[u8] = b"ptt-node/v1/plane-key";
/// Prefix of the associated data of a plane datagram (`proto/plane.md`).
pub const LABEL_PLANE_AAD: &[u8] = b"ptt-node/v1/plane";
/// A domain's plane group address and port: SHA-256 of this label and the domain id.
pub const LABEL_PLANE_GROUP: &[u8] = b"ptt-node/v1/plane-group";
/// Signature context of a device's plane beacon.
pub const SIG_BEACON: &[u8] = b"ptt-node/v1/sig/beacon";

/// The XChaCha20-Poly1305 key of one plane epoch: every device of the domain holds it, so it
/// keeps outsiders off the plane and proves nothing about which member sent a datagram.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct PlaneKey(pub [u8; 32]);

impl std::fmt::Debug for PlaneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaneKey(..)")
    }
}

/// The plane key of `epoch`: `HKDF-SHA256(salt = domain id, ikm = the epoch's secret,
/// info = LABEL_PLANE_KEY ‖ u32be(epoch), L = 32)`. The epoch in the info makes two epochs'
/// keys differ even if the authority's random secrets did not.
pub fn plane_key(domain_id: &[u8; 32], epoch: u32, secret: &[u8; 32]) -> PlaneKey {
    let hk = Hkdf::<Sha256>::new(Some(domain_id), secret);
    let mut info = [0u8; LABEL_PLANE_KEY.len() + 4];
    info[..LABEL_PLANE_KEY.len()].copy_from_slice(LABEL_PLANE_KEY);
    info[LABEL_PLANE_KEY.len()..].copy_from_slice(&epoch.to_be_bytes());
    let mut key = PlaneKey([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(&info, &mut key.0);
    key
}

/// The AES-256-GCM key of directed messages from `sender` to `recipient`:
/// `HKDF-SHA256(salt = domain id, ikm = X25519(own secret, other's public key),
/// info = LABEL_DIRECT_KEY ‖ sender u32 BE ‖ recipient u32 BE)`. Both ends compute it (static
/// Diffie-Hellman), so no key travels; nonces stay unique because they are sender ‖ seq.
pub fn direct_key(
    domain: &DomainId,
    own: &x25519_dalek::StaticSecret,
    other_pk: &[u8; 32],
    sender: u32,
    recipient: u32,
) -> MessageKey {
    let shared = own.diffie_hellman(&x25519_dalek::PublicKey::from(*other_pk));
    let hk = Hkdf::<Sha256>::new(Some(&domain.0), shared.as_bytes());
    let mut info = Vec::with_capacity(LABEL_DIRECT_KEY.len() + 8);
    info.extend_from_slice(LABEL_DIRECT_KEY);
    info.extend_from_slice(&sender.to_be_bytes());
    info.extend_from_slice(&recipient.to_be_bytes());
    let mut okm = zeroize::Zeroizing::new([0u8; 32]);
    let _ = hk.expand(&info, okm.as_mut());
    MessageKey {
        cipher: Aes256Gcm::new(okm.as_ref().into()),
    }
}

/// Length of an Ed25519 signature.
pub const SIG_LEN: usize = 64;

/// A 32-byte domain identifier, derived from the authority's public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DomainId(pub [u8; 32]);

impl DomainId {
    /// The id of the domain whose authority has this public key.
    pub fn from_authority(authority: &VerifyingKey) -> Self {
        let mut h = Sha256::new();
        h.update(LABEL_DOMAIN_ID);
        h.update(authority.as_bytes());
        DomainId(h.finalize().into())
    }
    /// The first four bytes, carried in every envelope so a wrong domain is told apart cheaply.
    pub fn tag(&self) -> [u8; 4] {
        [self.0[0], self.0[1], self.0[2], self.0[3]]
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        wire::hex(&self.0)
    }
}

impl std::fmt::Debug for DomainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DomainId({})", &self.to_hex()[..16])
    }
}

/// Signs `context ‖ 0x00 ‖ msg`, so a signature made for one purpose never verifies for another.
pub fn sign(key: &SigningKey, context: &[u8], msg: &[u8]) -> [u8; SIG_LEN] {
    let mut buf = Vec::with_capacity(context.len() + 1 + msg.len());
    buf.extend_from_slice(context);
    buf.push(0);
    buf.extend_from_slice(msg);
    key.sign(&buf).to_bytes()
}

/// Verifies a signature made by [`sign`] with the same context.
///
/// The checks are those of ed25519-dalek's `verify_strict`: `s` is a canonical scalar, neither
/// the key nor `R` has small order, and `[s]B - [k]A` encodes to exactly the bytes of `R`
/// (which also refuses a non-canonical encoding of `R`). Two costs are left out, which made
/// verification 13 % cheaper (`cargo bench -- ed25519`: 55 to 48 us): `R` is not decompressed (the
/// point computed is compared by its encoding, and it is `R`'s point when the encodings
/// match, so its order is checked on it), and the hash is fed the context and message in place
/// instead of from a copy. A receiver verifies every alert it takes, and this was the largest
/// part of its CPU (proto/network.md, Performance). `tests` compare it with `verify_strict`
/// on valid, mutated and small-order inputs, and so does the `verify` fuzz target.
pub fn verify(key: &VerifyingKey, context: &[u8], msg: &[u8], sig: &[u8; SIG_LEN]) -> bool {
    verify_parts(key, &[context, &[0], msg], sig)
}

/// Strict Ed25519 verification of the message `parts` concatenated (see [`verify`]).
fn verify_parts(key: &VerifyingKey, parts: &[&[u8]], sig: &[u8; SIG_LEN]) -> bool {
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;
    let (r, s) = sig.split_at(32);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(s);
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    if key.is_weak() {
        return false;
    }
    let mut h = sha2::Sha512::new();
    h.update(r);
    h.update(key.as_bytes());
    for p in parts {
        h.update(p);
    }
    let k = Scalar::from_hash(h);
    let minus_a = -key.to_edwards();
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &minus_a, &s);
    expected.compress().as_bytes() == r && !expected.is_small_order()
}

/// Splits signed bytes into the body and the 64-byte signature that ends them.
pub fn split_signed<'a>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<(&'a [u8], [u8; SIG_LEN]), DecodeError> {
    if bytes.len() < SIG_LEN {
        return Err(DecodeError::Malformed {
            what,
            reason: format!("{} bytes is shorter than a signature", bytes.len()),
        });
    }
    let (body, sig) = bytes.split_at(bytes.len() - SIG_LEN);
    let mut s = [0u8; SIG_LEN];
    s.copy_from_slice(sig);
    Ok((body, s))
}

/// A 32-byte channel secret for one (channel, epoch), chosen by the authority.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct ChannelSecret(pub [u8; 32]);

impl std::fmt::Debug for ChannelSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelSecret(..)")
    }
}

impl ChannelSecret {
    /// A fresh random secret.
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        ChannelSecret(b)
    }

    /// The next period's secret: `HKDF-SHA256(salt = none, ikm = secret, info =
    /// LABEL_RATCHET)`. One-way: the previous secret cannot be computed from the next.
    pub fn ratchet(&self) -> ChannelSecret {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut next = ChannelSecret([0u8; 32]);
        let _ = hk.expand(LABEL_RATCHET, &mut next.0);
        next
    }

    /// The AES-256-GCM key for messages of this channel, epoch and ratchet period (this
    /// secret must be the period's): `HKDF-SHA256(salt = domain id, ikm = secret, info =
    /// LABEL_MESSAGE_KEY ‖ channel u32 ‖ epoch u32 ‖ period u64)`, all big-endian.
    pub fn message_key(
        &self,
        domain: &DomainId,
        channel: u32,
        epoch: u32,
        period: u64,
    ) -> MessageKey {
        self.derive(LABEL_MESSAGE_KEY, domain, channel, epoch, period)
    }

    /// The AES-256-GCM key for the voice packets of this channel, epoch and period: as
    /// [`ChannelSecret::message_key`] with info label [`LABEL_VOICE_KEY`].
    pub fn voice_key(
        &self,
        domain: &DomainId,
        channel: u32,
        epoch: u32,
        period: u64,
    ) -> MessageKey {
        self.derive(LABEL_VOICE_KEY, domain, channel, epoch, period)
    }

    fn derive(
        &self,
        label: &[u8],
        domain: &DomainId,
        channel: u32,
        epoch: u32,
        period: u64,
    ) -> MessageKey {
        let hk = Hkdf::<Sha256>::new(Some(&domain.0), &self.0);
        let mut info = Vec::with_capacity(label.len() + 16);
        info.extend_from_slice(label);
        info.extend_from_slice(&channel.to_be_bytes());
        info.extend_from_slice(&epoch.to_be_bytes());
        info.extend_from_slice(&period.to_be_bytes());
        let mut okm = zeroize::Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(&info, okm.as_mut());
        MessageKey {
            cipher: Aes256Gcm::new(okm.as_ref().into()),
        }
    }
}

/// One channel epoch's key ratchet as a device holds it: the secret of its oldest period;
/// every earlier period is gone.
#[derive(Clone, PartialEq, Eq)]
pub struct Chain {
    /// Rotation period in seconds (0: one key for the whole epoch).
    pub rotate_secs: u32,
    /// The period `secret` belongs to.
    pub period: u64,
    /// The period's secret.
    pub secret: ChannelSecret,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("rotate_secs", &self.rotate_secs)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// The period a sequence number (µs since the Unix epoch) falls in.
    pub fn period_of(rotate_secs: u32, seq_us: u64) -> u64 {
        match rotate_secs {
            0 => 0,
            s => seq_us / 1_000_000 / u64::from(s),
        }
    }

    /// The secret of `period`, derived forward without moving the chain; `None` for a period
    /// already erased or more than [`MAX_RATCHET_AHEAD`] ahead.
    pub fn secret_at(&self, period: u64) -> Option<ChannelSecret> {
        if self.rotate_secs == 0 {
            return (period == 0).then(|| self.secret.clone());
        }
        let steps = period.checked_sub(self.period)?;
        if steps > MAX_RATCHET_AHEAD {
            return None;
        }
        let mut s = self.secret.clone();
        for _ in 0..steps {
            s = s.ratchet();
        }
        Some(s)
    }

    /// The secret of `period` like [`Chain::secret_at`], derived from the nearest of
    /// `checkpoints` at or before it (else from the chain), recording a checkpoint every
    /// [`RATCHET_CHECKPOINT_EVERY`] periods on the way; also returns the steps it took.
    /// Checkpoints before the chain's oldest period are dropped first: nothing erased stays.
    pub fn secret_via(
        &self,
        checkpoints: &mut std::collections::BTreeMap<u64, ChannelSecret>,
        period: u64,
    ) -> Option<(ChannelSecret, u64)> {
        if self.rotate_secs == 0 {
            return self.secret_at(period).map(|s| (s, 0));
        }
        let ahead = period.checked_sub(self.period)?;
        if ahead > MAX_RATCHET_AHEAD {
            return None;
        }
        // Erasure drops the checkpoints before the chain's oldest period
        // (`Node::erase_keys`); one left over would be skipped here anyway.
        let (mut p, mut s) = match checkpoints.range(self.period..=period).next_back() {
            Some((p, s)) => (*p, s.clone()),
            None => (self.period, self.secret.clone()),
        };
        let mut steps = 0;
        while p < period {
            s = s.ratchet();
            p += 1;
            steps += 1;
            if (p - self.period).is_multiple_of(RATCHET_CHECKPOINT_EVERY) {
                checkpoints.insert(p, s.clone());
            }
        }
        Some((s, steps))
    }

    /// Moves the chain to `period`, erasing every earlier secret; no-op when it is there
    /// already, or when the chain does not rotate. Returns whether it moved.
    pub fn advance_to(&mut self, period: u64) -> bool {
        if self.rotate_secs == 0 || period <= self.period {
            return false;
        }
        // One HKDF per period, however many: a device that was off for a year with hourly
        // rotation does 8,760. The target comes from this device's own clock, never a peer.
        while self.period < period {
            self.secret = self.secret.ratchet();
            self.period += 1;
        }
        true
    }
}

/// An expanded AES-256-GCM key for one channel epoch (zeroized on drop by aes-gcm).
#[derive(Clone)]
pub struct MessageKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(..)")
    }
}

impl MessageKey {
    /// Encrypts `plaintext` under the 96-bit `nonce` and authenticates `aad` with it.
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.cipher
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Encryption only fails for inputs beyond 64 GiB.
            .unwrap_or_default()
    }
    /// Decrypts and authenticates; `None` when the key, nonce, aad or ciphertext is wrong.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

/// A device's secret keys: its Ed25519 identity (also its libp2p identity) and its X25519 key
/// to which the authority seals channel secrets.
pub struct DeviceSecrets {
    /// Ed25519 signing key (zeroized on drop by ed25519-dalek).
    pub identity: SigningKey,
    /// X25519 static secret (zeroized on drop by x25519-dalek).
    pub x25519: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for DeviceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSecrets")
            .field(
                "identity",
                &wire::hex(self.identity.verifying_key().as_bytes()),
            )
            .field("x25519", &"..")
            .finish()
    }
}

impl DeviceSecrets {
    /// Fresh random keys.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        DeviceSecrets {
            identity: SigningKey::generate(rng),
            x25519: x25519_dalek::StaticSecret::random_from_rng(rng),
        }
    }
    /// The X25519 public key.
    pub fn x25519_public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.x25519).to_bytes()
    }
}

/// The signed body of a sealed group key: one channel secret wrapped to one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedKeyBody {
    /// Format version, 1.
    pub version: u8,
    /// The domain.
    pub domain: DomainId,
    /// The channel number.
    pub channel: u32,
    /// The key epoch.
    pub epoch: u32,
    /// The device number the key is sealed to.
    pub device: u32,
    /// The epoch's rotation period in seconds (0: no rotation).
    pub rotate_secs: u32,
    /// The ratchet period the sealed secret belongs to (earlier periods cannot be derived).
    pub period: u64,
    /// The authority's ephemeral X25519 public key.
    pub ephemeral: [u8; 32],
    /// AES-256-GCM of the 32-byte secret (48 bytes with the tag).
    pub wrapped: Vec<u8>,
}

/// A channel secret sealed to one device and signed by the authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// The signed body.
    pub body: SealedKeyBody,
    /// The encoded body, exactly as signed.
    pub body_bytes: Vec<u8>,
    /// The authority's signature over [`SIG_SEALED_KEY`] and `body_bytes`.
    pub signature: [u8; SIG_LEN],
}

/// Why a sealed key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealedKeyError {
    /// The bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The authority's signature does not verify.
    #[error("the authority's signature on the sealed key does not verify")]
    BadSignature,
    /// Sealed for another domain or device.
    #[error("the sealed key is for another domain or device")]
    NotForUs,
    /// Unwrapping failed: wrong X25519 key or tampered ciphertext.
    #[error("the sealed key does not open with this device's X25519 key")]
    Unwrap,
}

fn wrap_key(
    shared: &[u8; 32],
    domain: &DomainId,
    ephemeral: &[u8; 32],
    device_pk: &[u8; 32],
) -> MessageKeyRaw {
    let hk = Hkdf::<Sha256>::new(Some(&domain.0), shared);
    let mut info = Vec::with_capacity(LABEL_KEY_WRAP.len() + 64);
    info.extend_from_slice(LABEL_KEY_WRAP);
    info.extend_from_slice(ephemeral);
    info.extend_from_slice(device_pk);
    let mut okm = MessageKeyRaw([0u8; 32]);
    let _ = hk.expand(&info, &mut okm.0);
    okm
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct MessageKeyRaw([u8; 32]);

fn wrap_aad(channel: u32, epoch: u32, device: u32, rotate_secs: u32, period: u64) -> [u8; 24] {
    let mut aad = [0u8; 24];
    aad[..4].copy_from_slice(&channel.to_be_bytes());
    aad[4..8].copy_from_slice(&epoch.to_be_bytes());
    aad[8..12].copy_from_slice(&device.to_be_bytes());
    aad[12..16].copy_from_slice(&rotate_secs.to_be_bytes());
    aad[16..].copy_from_slice(&period.to_be_bytes());
    aad
}

impl SealedKey {
    /// Seals a chain's secret to the device with X25519 public key `device_pk` (ECIES: an ephemeral
    /// X25519 key, HKDF, AES-256-GCM with a zero nonce under a single-use key) and signs it.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        authority: &SigningKey,
        domain: DomainId,
        channel: u32,
        epoch: u32,
        device: u32,
        device_pk: &[u8; 32],
        chain: &Chain,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        let secret = &chain.secret;
        let eph = x25519_dalek::EphemeralSecret::random_from_rng(rng);
        let eph_pk = x25519_dalek::PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(*device_pk));
        let k = wrap_key(shared.as_bytes(), &domain, &eph_pk, device_pk);
        let cipher = Aes256Gcm::new((&k.0).into());
        let wrapped = cipher
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &secret.0,
                    aad: &wrap_aad(channel, epoch, device, chain.rotate_secs, chain.period),
                },
            )
            .unwrap_or_default();
        let body = SealedKeyBody {
            version: 1,
            domain,
            channel,
            epoch,
            device,
            rotate_secs: chain.rotate_secs,
            period: chain.period,
            ephemeral: eph_pk,
            wrapped,
        };
        let body_bytes = wire::encode(&body);
        let signature = sign(authority, SIG_SEALED_KEY, &body_bytes);
        SealedKey {
            body,
            body_bytes,
            signature,
        }
    }

    /// The wire form: the encoded body followed by the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.body_bytes.clone();
        v.extend_from_slice(&self.signature);
        v
    }

    /// Parses and verifies against the authority key (does not unwrap).
    pub fn from_bytes(bytes: &[u8], authority: &VerifyingKey) -> Result<Self, SealedKeyError> {
        let (body_bytes, signature) = split_signed("sealed key", bytes)?;
        if !verify(authority, SIG_SEALED_KEY, body_bytes, &signature) {
            return Err(SealedKeyError::BadSignature);
        }
        let body: SealedKeyBody = wire::decode("sealed key", body_bytes, 1024)?;
        if body.version != 1 {
            return Err(DecodeError::Version {
                what: "sealed key",
                found: body.version,
                expected: 1,
            }
            .into());
        }
        Ok(SealedKey {
            body,
            body_bytes: body_bytes.to_vec(),
            signature,
        })
    }

    /// Unwraps the chain with the device's X25519 secret.
    pub fn open(
        &self,
        domain: &DomainId,
        device: u32,
        x25519: &x25519_dalek::StaticSecret,
    ) -> Result<Chain, SealedKeyError> {
        if self.body.domain != *domain || self.body.device != device {
            return Err(SealedKeyError::NotForUs);
        }
        let device_pk = x25519_dalek::PublicKey::from(x25519).to_bytes();
        let shared = x25519.diffie_hellman(&x25519_dalek::PublicKey::from(self.body.ephemeral));
        let k = wrap_key(shared.as_bytes(), domain, &self.body.ephemeral, &device_pk);
        let cipher = Aes256Gcm::new((&k.0).into());
        let mut plain = cipher
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &self.body.wrapped,
                    aad: &wrap_aad(
                        self.body.channel,
                        self.body.epoch,
                        self.body.device,
                        self.body.rotate_secs,
                        self.body.period,
                    ),
                },
            )
            .map_err(|_| SealedKeyError::Unwrap)?;
        if plain.len() != 32 {
            plain.zeroize();
            return Err(SealedKeyError::Unwrap);
        }
        let mut s = [0u8; 32];
        s.copy_from_slice(&plain);
        plain.zeroize();
        Ok(Chain {
            rotate_secs: self.body.rotate_secs,
            period: self.body.period,
            secret: ChannelSecret(s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn sealed_key_round_trip_and_rejections() {
        let authority = SigningKey::generate(&mut OsRng);
        let domain = DomainId::from_authority(&authority.verifying_key());
        let dev = DeviceSecrets::generate(&mut OsRng);
        let other = DeviceSecrets::generate(&mut OsRng);
        let secret = Chain {
            rotate_secs: 3600,
            period: 490_000,
            secret: ChannelSecret::random(&mut OsRng),
        };
        let sk = SealedKey::seal(
            &authority,
            domain,
            1,
            1,
            7,
            &dev.x25519_public(),
            &secret,
            &mut OsRng,
        );
        let bytes = sk.to_bytes();
        let parsed = SealedKey::from_bytes(&bytes, &authority.verifying_key()).unwrap();
        assert_eq!(parsed.open(&domain, 7, &dev.x25519).unwrap(), secret);
        assert_eq!(
            parsed.open(&domain, 7, &other.x25519),
            Err(SealedKeyError::Unwrap)
        );
        assert_eq!(
            parsed.open(&domain, 8, &dev.x25519),
            Err(SealedKeyError::NotForUs)
        );
        let stranger = SigningKey::generate(&mut OsRng);
        assert_eq!(
            SealedKey::from_bytes(&bytes, &stranger.verifying_key()),
            Err(SealedKeyError::BadSignature)
        );
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            assert!(
                SealedKey::from_bytes(&t, &authority.verifying_key()).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn signatures_are_bound_to_their_context() {
        let k = SigningKey::generate(&mut OsRng);
        let s = sign(&k, SIG_CERT, b"hello");
        assert!(verify(&k.verifying_key(), SIG_CERT, b"hello", &s));
        assert!(!verify(&k.verifying_key(), SIG_ENVELOPE, b"hello", &s));
        assert!(!verify(&k.verifying_key(), SIG_CERT, b"hellp", &s));
    }

    /// What ed25519-dalek's `verify_strict` says of `sig` on the message `parts` joined.
    fn dalek_strict(key: &VerifyingKey, parts: &[&[u8]], sig: &[u8; SIG_LEN]) -> bool {
        key.verify_strict(&parts.concat(), &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }

    /// What ed25519-dalek's plain (non-strict) verification says.
    fn dalek_plain(key: &VerifyingKey, parts: &[&[u8]], sig: &[u8; SIG_LEN]) -> bool {
        use ed25519_dalek::Verifier;
        key.verify(&parts.concat(), &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }

    fn hex32(h: &str) -> [u8; 32] {
        hex::decode(h).unwrap().try_into().unwrap()
    }

    #[test]
    fn strict_verification_passes_the_rfc_8032_vectors() {
        // RFC 8032, section 7.1, tests 1 to 3: secret key, public key, message, signature.
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (secret, public, msg, sig) in vectors {
            let sk = SigningKey::from_bytes(&hex32(secret));
            let vk = sk.verifying_key();
            assert_eq!(vk.to_bytes(), hex32(public));
            let msg = hex::decode(msg).unwrap();
            let sig: [u8; SIG_LEN] = hex::decode(sig).unwrap().try_into().unwrap();
            assert_eq!(sk.sign(&msg).to_bytes(), sig);
            assert!(verify_parts(&vk, &[&msg], &sig));
            // Split anywhere, the message is the same.
            if let Some((a, b)) = msg.split_first() {
                assert!(verify_parts(&vk, &[&[*a], b], &sig));
            }
            for bit in [0, 100, 255, 256, 400, 511] {
                let mut bad = sig;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!verify_parts(&vk, &[&msg], &bad), "bit {bit}");
            }
            let mut longer = msg.clone();
            longer.push(0);
            assert!(!verify_parts(&vk, &[&longer], &sig));
        }
    }

    #[test]
    fn strict_verification_refuses_small_order_keys_and_nonces_that_plain_verification_takes() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        let hash = |r: &[u8], a: &[u8], m: &[u8]| {
            let mut h = sha2::Sha512::new();
            h.update(r);
            h.update(a);
            h.update(m);
            Scalar::from_hash(h)
        };

        // A small-order R with an honest key: s = k * a makes [s]B - [k]A the identity.
        let sk = SigningKey::generate(&mut OsRng);
        let vk = sk.verifying_key();
        let mut small_r_cases = 0;
        for t in EIGHT_TORSION.iter() {
            let r = t.compress().to_bytes();
            let k = hash(&r, vk.as_bytes(), b"forged");
            // [s]B - [k]A is then the identity: plain verification takes it when R is the
            // identity's encoding, and refuses the other seven.
            let s = k * sk.to_scalar();
            let mut sig = [0u8; SIG_LEN];
            sig[..32].copy_from_slice(&r);
            sig[32..].copy_from_slice(s.as_bytes());
            if dalek_plain(&vk, &[b"forged"], &sig) {
                small_r_cases += 1;
            }
            assert!(!verify_parts(&vk, &[b"forged"], &sig));
            assert!(!dalek_strict(&vk, &[b"forged"], &sig));
            // The encoding with its sign bit set, and s made for those bytes: for the identity
            // this is a "negative zero", a non-canonical encoding of the same point.
            sig[31] |= 0x80;
            let k = hash(&sig[..32], vk.as_bytes(), b"forged");
            sig[32..].copy_from_slice((k * sk.to_scalar()).as_bytes());
            assert!(!verify_parts(&vk, &[b"forged"], &sig));
            assert!(!dalek_strict(&vk, &[b"forged"], &sig));
        }
        assert_eq!(
            small_r_cases, 1,
            "only the identity is taken by plain verification"
        );

        // A small-order key: with R = [r]B and s = r, [s]B - [k]A = R whenever [k]A is the
        // identity, which some message makes so (1 in 8 for a point of order 8).
        let a = EIGHT_TORSION[1];
        let weak = VerifyingKey::from_bytes(&a.compress().to_bytes()).unwrap();
        assert!(weak.is_weak());
        let r_scalar = Scalar::from(12345u32);
        let r = (r_scalar * ED25519_BASEPOINT_POINT).compress().to_bytes();
        let mut sig = [0u8; SIG_LEN];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(r_scalar.as_bytes());
        let msg = (0u32..200)
            .map(|i| i.to_le_bytes())
            .find(|m| dalek_plain(&weak, &[m], &sig))
            .expect("some message makes [k]A the identity");
        assert!(!verify_parts(&weak, &[&msg], &sig));
        assert!(!dalek_strict(&weak, &[&msg], &sig));
    }

    #[test]
    fn strict_verification_agrees_with_ed25519_dalek_on_valid_and_mutated_signatures() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use rand_core::RngCore;
        // L, the group order, little-endian: s + L is the same scalar, non-canonically encoded.
        let l = hex32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..300u32 {
            let sk = SigningKey::generate(&mut OsRng);
            let vk = sk.verifying_key();
            let mut msg = vec![0u8; (i % 70) as usize];
            OsRng.fill_bytes(&mut msg);
            let sig = sign(&sk, SIG_ENVELOPE, &msg);
            let parts: [&[u8]; 3] = [SIG_ENVELOPE, &[0], &msg];
            let mut cases = vec![(sig, vk)];
            let mut flipped = sig;
            flipped[(OsRng.next_u32() % 512 / 8) as usize] ^= 1 << (OsRng.next_u32() % 8);
            cases.push((flipped, vk));
            let mut high = sig;
            let mut carry = 0u16;
            for (b, lb) in high[32..].iter_mut().zip(l) {
                let v = *b as u16 + lb as u16 + carry;
                *b = v as u8;
                carry = v >> 8;
            }
            cases.push((high, vk));
            let mut torsion_r = sig;
            torsion_r[..32].copy_from_slice(&EIGHT_TORSION[i as usize % 8].compress().to_bytes());
            cases.push((torsion_r, vk));
            let other = SigningKey::generate(&mut OsRng).verifying_key();
            cases.push((sig, other));
            for (n, (s, k)) in cases.iter().enumerate() {
                let ours = verify_parts(k, &parts, s);
                assert_eq!(ours, dalek_strict(k, &parts, s), "case {n} of round {i}");
                assert_eq!(ours, verify(k, SIG_ENVELOPE, &msg, s));
                if ours {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Only the unmodified signatures verify.
        assert_eq!((accepted, refused), (300, 1200));
    }

    #[test]
    fn plane_keys_differ_per_epoch_domain_and_secret_and_never_print() {
        let d1 = [1u8; 32];
        let k = plane_key(&d1, 1, &[0x66; 32]);
        assert_eq!(k, plane_key(&d1, 1, &[0x66; 32]));
        assert_ne!(k, plane_key(&d1, 2, &[0x66; 32]));
        assert_ne!(k, plane_key(&[2u8; 32], 1, &[0x66; 32]));
        assert_ne!(k, plane_key(&d1, 1, &[0x67; 32]));
        // The info is the label and the epoch big-endian: what RFC 5869 gives for it.
        let hk = Hkdf::<Sha256>::new(Some(&d1), &[0x66; 32]);
        let mut okm = [0u8; 32];
        hk.expand(b"ptt-node/v1/plane-key\x00\x00\x00\x01", &mut okm)
            .unwrap();
        assert_eq!(k.0, okm);
        assert_eq!(format!("{k:?}"), "PlaneKey(..)");
    }

    #[test]
    fn message_keys_differ_per_channel_epoch_and_domain() {
        let s = ChannelSecret([7u8; 32]);
        let d1 = DomainId([1u8; 32]);
        let d2 = DomainId([2u8; 32]);
        let n = [0u8; 12];
        let ct = s.message_key(&d1, 1, 1, 5).seal(&n, b"", b"x");
        assert!(s.message_key(&d1, 1, 1, 5).open(&n, b"", &ct).is_some());
        assert!(s.message_key(&d1, 1, 2, 5).open(&n, b"", &ct).is_none());
        assert!(s.message_key(&d1, 2, 1, 5).open(&n, b"", &ct).is_none());
        assert!(s.message_key(&d2, 1, 1, 5).open(&n, b"", &ct).is_none());
        assert!(s.message_key(&d1, 1, 1, 6).open(&n, b"", &ct).is_none());
    }

    #[test]
    fn ratchet_moves_forward_only() {
        let root = Chain {
            rotate_secs: 3600,
            period: 100,
            secret: ChannelSecret([3u8; 32]),
        };
        assert_eq!(root.secret_at(100), Some(root.secret.clone()));
        assert_eq!(root.secret_at(99), None, "before the chain's start");
        let s103 = root.secret_at(103).unwrap();
        assert_eq!(s103, root.secret.ratchet().ratchet().ratchet());
        assert_ne!(s103, root.secret);
        let mut c = root.clone();
        assert!(c.advance_to(102));
        assert!(!c.advance_to(101), "never backwards");
        assert_eq!(c.period, 102);
        assert_eq!(
            c.secret_at(103),
            Some(s103),
            "same key from either position"
        );
        assert_eq!(c.secret_at(101), None, "erased");
        assert_eq!(c.secret_at(102 + MAX_RATCHET_AHEAD + 1), None);
        assert_eq!(Chain::period_of(3600, 7_200_000_000), 2);
        assert_eq!(Chain::period_of(0, 7_200_000_000), 0);
        let mut flat = Chain {
            rotate_secs: 0,
            ..root
        };
        assert!(!flat.advance_to(5));
        assert!(flat.secret_at(0).is_some() && flat.secret_at(1).is_none());
    }
}
