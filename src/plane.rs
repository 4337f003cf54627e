//! The sealed multicast data plane's datagrams (`proto/plane.md`): seal and open, the inner
//! kinds, the signed beacon, the group and port of a domain, and which held plane key a
//! datagram names.
//!
//! ```text
//! datagram = clear[2] ‖ nonce[24] ‖ XChaCha20-Poly1305(plane key, nonce, aad, inner) ‖ tag[16]
//! clear    = version u8 (1) ‖ key_id u8 (epoch mod 256)
//! nonce    = prefix[16] ‖ u64be(counter)
//! aad      = LABEL_PLANE_AAD ‖ domain_id[32] ‖ clear
//! inner    = kind u8 ‖ sender varint(u32) ‖ pseq varint(u32) ‖ body
//! ```
//!
//! A receiver runs [`open`] on every datagram that reaches the port, junk included, so it
//! decrypts in place and allocates nothing. This module owns no socket, reads no clock and
//! draws no randomness: the nonce prefix (random per daemon run) and the counter come from the
//! caller. It never trusts `sender` or `pseq` for acceptance: they are only authenticated as
//! "from some member", and the envelope inside carries its own signed sender.
//!
//! `evidence` is who hears whom (the heard set, peers' reports, each peer's path); `gaps` is
//! the receiver's loss detection over `pseq`s (which gaps are due for a repair); `ring` keeps
//! what this node sent or verified, to serve repairs; `repair` is the repair protocol's
//! messages, serving, and the requester's retries and give-ups.

pub mod evidence;
pub mod forgeries;
pub mod gaps;
pub mod repair;
pub mod ring;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::keys::{self, LABEL_PLANE_AAD, LABEL_PLANE_GROUP, PlaneKey, SIG_BEACON, SIG_LEN};

/// The datagram format version, the first byte of every datagram.
pub const PLANE_VERSION: u8 = 1;
/// Largest datagram (UDP payload) sent or accepted: fits IPv6's minimum MTU of 1,280 with its
/// 40-byte header and UDP's 8, with room left for VPN and PPPoE encapsulation.
pub const PLANE_MAX_DATAGRAM: usize = 1200;
/// Length of the per-run random nonce prefix.
pub const PLANE_NONCE_PREFIX_LEN: usize = 16;
/// Smallest well-formed datagram: a tail with a one-byte `sender` and a one-byte `pseq`.
pub const PLANE_MIN_DATAGRAM: usize = CLEAR_LEN + NONCE_LEN + 1 + 1 + 1 + TAG_LEN;
/// The most a datagram adds to its body: clear header, nonce, kind, `sender` and `pseq` at
/// their longest varints (5 bytes each) and the tag, 53 bytes.
pub const PLANE_MAX_OVERHEAD: usize = CLEAR_LEN + NONCE_LEN + 1 + 2 * MAX_VARINT_U32 + TAG_LEN;
/// Largest body a datagram carries, 1,147 bytes: a body of at most this length fits in
/// [`PLANE_MAX_DATAGRAM`] whatever `sender` and `pseq` are, so whether an envelope can go on the
/// plane depends on its length alone. Longer envelopes go by gossip only.
pub const PLANE_MAX_BODY: usize = PLANE_MAX_DATAGRAM - PLANE_MAX_OVERHEAD;

const CLEAR_LEN: usize = 2;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAX_VARINT_U32: usize = 5;
const AAD_LEN: usize = LABEL_PLANE_AAD.len() + 32 + CLEAR_LEN;
/// IPv4 group of SSDP (UPnP discovery), inside 239.255/16: never used as a plane group.
const SSDP_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
/// The lowest port of the plane's range 20000–29999 (below Linux's ephemeral ports).
const PORT_BASE: u16 = 20_000;
const PORT_SPAN: u16 = 10_000;

/// What a datagram carries (the first byte of its inner part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// One envelope (an alert or a directed message), byte for byte as sealed.
    Alert = 1,
    /// One voice packet, byte for byte as sealed.
    Voice = 2,
    /// No body: "the last data datagram I sent has this `pseq`".
    Tail = 3,
    /// A device's signed liveness statement (see [`Beacon`]).
    Beacon = 4,
}

impl Kind {
    /// The kind of this byte, if it names one.
    pub fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Alert),
            2 => Some(Kind::Voice),
            3 => Some(Kind::Tail),
            4 => Some(Kind::Beacon),
            _ => None,
        }
    }
}

/// The opened inner part of a datagram; `body` points into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner<'a> {
    /// What the body is.
    pub kind: Kind,
    /// The device number the sending member claims (not signed: any member can forge it).
    pub sender: u32,
    /// The sender's datagram counter, for loss detection only.
    pub pseq: u32,
    /// The envelope or voice packet; empty for a tail; the beacon's fields for a beacon.
    pub body: &'a [u8],
}

/// Why a datagram was not sealed or not opened. Each variant counts under [`PlaneError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaneError {
    /// The datagram is shorter than the smallest or longer than the largest one.
    #[error(
        "a plane datagram of {len} bytes is outside {PLANE_MIN_DATAGRAM}..={PLANE_MAX_DATAGRAM}"
    )]
    Length {
        /// Its length.
        len: usize,
    },
    /// The first byte is not the version this build speaks.
    #[error("plane datagram version {0}; this build speaks version {PLANE_VERSION}")]
    Version(u8),
    /// The key id names no plane epoch held, and none ahead of the newest held.
    #[error("no plane key is held for key id {0}")]
    UnknownKey(u8),
    /// The key id names an epoch newer than any held: the update bringing it is on its way.
    #[error("key id {0} names a plane epoch newer than any held")]
    KeyAhead(u8),
    /// The AEAD does not open: not sealed with this key for this domain, or altered.
    #[error("the datagram does not open with the plane key")]
    Junk,
    /// It opened, but what is inside breaks the format (a member's bug or mischief).
    #[error("malformed plane datagram: {0}")]
    Inner(&'static str),
    /// A body longer than [`PLANE_MAX_BODY`] was given to seal: it goes by gossip instead.
    #[error("a body of {len} bytes is more than the {PLANE_MAX_BODY} a datagram carries")]
    TooLarge {
        /// The body's length.
        len: usize,
    },
    /// A beacon's signature does not verify with the claimed sender's key.
    #[error("the beacon's signature does not verify")]
    BeaconSignature,
}

impl PlaneError {
    /// The counter this refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            PlaneError::Length { .. } | PlaneError::Version(_) | PlaneError::Inner(_) => {
                "plane_malformed"
            }
            PlaneError::UnknownKey(_) => "plane_unknown_key",
            PlaneError::KeyAhead(_) => "plane_key_ahead",
            PlaneError::Junk => "plane_junk",
            PlaneError::TooLarge { .. } => "plane_too_large",
            PlaneError::BeaconSignature => "plane_beacon_signature",
        }
    }
}

/// The key id a datagram of `epoch` carries in clear: the epoch mod 256.
pub fn key_id(epoch: u32) -> u8 {
    epoch.to_be_bytes()[3]
}

/// Seals one datagram under `key` (the plane key of `epoch`) with nonce
/// `nonce_prefix ‖ u64be(counter)`. The caller never repeats a (prefix, counter) pair: the
/// prefix is drawn at random once per run and the counter counts the run's datagrams.
///
/// Refuses a body over [`PLANE_MAX_BODY`] ([`PlaneError::TooLarge`]), a tail with a body and
/// a beacon body that does not parse ([`PlaneError::Inner`]).
#[allow(clippy::too_many_arguments)]
pub fn seal(
    key: &PlaneKey,
    epoch: u32,
    domain_id: &[u8; 32],
    nonce_prefix: &[u8; PLANE_NONCE_PREFIX_LEN],
    counter: u64,
    kind: Kind,
    sender: u32,
    pseq: u32,
    body: &[u8],
) -> Result<Vec<u8>, PlaneError> {
    check_body(kind, body)?;
    let mut inner = Vec::with_capacity(1 + 2 * MAX_VARINT_U32 + body.len());
    inner.push(kind as u8);
    push_varint(&mut inner, sender);
    push_varint(&mut inner, pseq);
    inner.extend_from_slice(body);
    Ok(seal_raw(
        key,
        epoch,
        domain_id,
        nonce_prefix,
        counter,
        &inner,
    ))
}

/// Seals `inner` as it is; [`seal`] is the only caller outside tests.
fn seal_raw(
    key: &PlaneKey,
    epoch: u32,
    domain_id: &[u8; 32],
    nonce_prefix: &[u8; PLANE_NONCE_PREFIX_LEN],
    counter: u64,
    inner: &[u8],
) -> Vec<u8> {
    let clear = [PLANE_VERSION, key_id(epoch)];
    let mut out = Vec::with_capacity(CLEAR_LEN + NONCE_LEN + inner.len() + TAG_LEN);
    out.extend_from_slice(&clear);
    out.extend_from_slice(nonce_prefix);
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(inner);
    let (head, plain) = out.split_at_mut(CLEAR_LEN + NONCE_LEN);
    let nonce = XNonce::from_slice(&head[CLEAR_LEN..]);
    // Encryption fails only beyond 256 GiB; the body limit is checked by the caller.
    let tag = cipher(key)
        .encrypt_in_place_detached(nonce, &aad(domain_id, clear), plain)
        .unwrap_or_default();
    out.extend_from_slice(&tag);
    out
}

/// The key id of a datagram after the checks that need no key: its length is within
/// [`PLANE_MIN_DATAGRAM`]..=[`PLANE_MAX_DATAGRAM`] and its version is [`PLANE_VERSION`].
pub fn peek(datagram: &[u8]) -> Result<u8, PlaneError> {
    let len = datagram.len();
    if !(PLANE_MIN_DATAGRAM..=PLANE_MAX_DATAGRAM).contains(&len) {
        return Err(PlaneError::Length { len });
    }
    match datagram {
        [PLANE_VERSION, key_id, ..] => Ok(*key_id),
        [version, ..] => Err(PlaneError::Version(*version)),
        [] => Err(PlaneError::Length { len }),
    }
}

/// Opens a datagram with the plane key its key id names, decrypting in place: on success the
/// inner part's body points into `datagram`. Runs [`peek`]'s checks first, then the AEAD, then
/// the inner decoder ([`decode_inner`]). Allocates nothing.
pub fn open<'a>(
    key: &PlaneKey,
    domain_id: &[u8; 32],
    datagram: &'a mut [u8],
) -> Result<Inner<'a>, PlaneError> {
    let key_id = peek(datagram)?;
    let (head, rest) = datagram.split_at_mut(CLEAR_LEN + NONCE_LEN);
    let (inner, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    cipher(key)
        .decrypt_in_place_detached(
            XNonce::from_slice(&head[CLEAR_LEN..]),
            &aad(domain_id, [PLANE_VERSION, key_id]),
            inner,
            Tag::from_slice(tag),
        )
        .map_err(|_| PlaneError::Junk)?;
    let inner: &'a [u8] = inner;
    decode_inner(inner)
}

/// Decodes an opened inner part: a known kind, minimal varints for `sender` and `pseq`, a body
/// of at most [`PLANE_MAX_BODY`] bytes, empty for a tail and a well-formed beacon for a beacon.
pub fn decode_inner(inner: &[u8]) -> Result<Inner<'_>, PlaneError> {
    let (&kind, rest) = inner.split_first().ok_or(PlaneError::Inner("no kind"))?;
    let kind = Kind::from_byte(kind).ok_or(PlaneError::Inner("unknown kind"))?;
    let (sender, rest) = take_varint::<u32>(rest)?;
    let (pseq, body) = take_varint::<u32>(rest)?;
    check_body(kind, body).map_err(|e| match e {
        PlaneError::TooLarge { .. } => PlaneError::Inner("body longer than the plane allows"),
        other => other,
    })?;
    Ok(Inner {
        kind,
        sender,
        pseq,
        body,
    })
}

fn check_body(kind: Kind, body: &[u8]) -> Result<(), PlaneError> {
    if body.len() > PLANE_MAX_BODY {
        return Err(PlaneError::TooLarge { len: body.len() });
    }
    match kind {
        Kind::Tail if !body.is_empty() => Err(PlaneError::Inner("a tail has a body")),
        Kind::Beacon => Beacon::parse(body).map(|_| ()),
        _ => Ok(()),
    }
}

fn cipher(key: &PlaneKey) -> XChaCha20Poly1305 {
    // The cipher holds a copy of the key and zeroizes it on drop.
    XChaCha20Poly1305::new(Key::from_slice(&key.0))
}

fn aad(domain_id: &[u8; 32], clear: [u8; CLEAR_LEN]) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    let (label, rest) = a.split_at_mut(LABEL_PLANE_AAD.len());
    label.copy_from_slice(LABEL_PLANE_AAD);
    let (domain, c) = rest.split_at_mut(32);
    domain.copy_from_slice(domain_id);
    c.copy_from_slice(&clear);
    a
}

/// Appends the minimal LEB128 varint of `v` (postcard's encoding of an unsigned integer).
fn push_varint(out: &mut Vec<u8>, v: impl serde::Serialize) {
    let mut buf = [0u8; 10];
    // Ten bytes hold any u64 varint, so postcard cannot run out of room.
    if let Ok(b) = postcard::to_slice(&v, &mut buf) {
        out.extend_from_slice(b);
    }
}

/// Reads one varint and refuses a non-minimal one, so each value has exactly one encoding.
fn take_varint<T: DeserializeOwned + Into<u64> + Copy>(
    bytes: &[u8],
) -> Result<(T, &[u8]), PlaneError> {
    let (v, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|_| PlaneError::Inner("bad varint"))?;
    let bits = 64 - v.into().leading_zeros() as usize;
    if bytes.len() - rest.len() != bits.div_ceil(7).max(1) {
        return Err(PlaneError::Inner("non-minimal varint"));
    }
    Ok((v, rest))
}

/// The body of a beacon: `issued_us varint ‖ heard_count varint ‖ signature[64]`. The signature
/// is the sender's (its certificate's Ed25519 key) over [`SIG_BEACON`] ‖ `0x00` ‖ the 52 bytes
/// `domain_id ‖ u32be(sender) ‖ u32be(pseq) ‖ u64be(issued_us) ‖ u32be(heard_count)`: fixed
/// width, so the signed bytes do not depend on the varints of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beacon {
    /// When the sender made it, µs since the Unix epoch, by the sender's clock.
    pub issued_us: u64,
    /// How many senders the sender hears on the plane.
    pub heard_count: u32,
    /// The sender's signature.
    pub signature: [u8; SIG_LEN],
}

impl Beacon {
    /// Parses a beacon body (structure only; [`verify_beacon`] checks the signature).
    pub fn parse(body: &[u8]) -> Result<Beacon, PlaneError> {
        let (issued_us, rest) = take_varint::<u64>(body)?;
        let (heard_count, rest) = take_varint::<u32>(rest)?;
        let signature: [u8; SIG_LEN] = rest
            .try_into()
            .map_err(|_| PlaneError::Inner("a beacon's signature is not 64 bytes"))?;
        Ok(Beacon {
            issued_us,
            heard_count,
            signature,
        })
    }
}

/// The body of `sender`'s beacon, signed with its device key; `pseq` is the one the beacon
/// datagram carries (the sender's last data `pseq`).
pub fn beacon_body(
    key: &SigningKey,
    domain_id: &[u8; 32],
    sender: u32,
    pseq: u32,
    issued_us: u64,
    heard_count: u32,
) -> Vec<u8> {
    let msg = beacon_message(domain_id, sender, pseq, issued_us, heard_count);
    let mut body = Vec::with_capacity(MAX_VARINT_U32 + 10 + SIG_LEN);
    push_varint(&mut body, issued_us);
    push_varint(&mut body, heard_count);
    body.extend_from_slice(&keys::sign(key, SIG_BEACON, &msg));
    body
}

/// Parses a beacon body and verifies its signature with `key`, the certificate key of the
/// datagram's `sender`, for the `sender` and `pseq` the datagram carries.
pub fn verify_beacon(
    key: &VerifyingKey,
    domain_id: &[u8; 32],
    sender: u32,
    pseq: u32,
    body: &[u8],
) -> Result<Beacon, PlaneError> {
    let b = Beacon::parse(body)?;
    let msg = beacon_message(domain_id, sender, pseq, b.issued_us, b.heard_count);
    if keys::verify(key, SIG_BEACON, &msg, &b.signature) {
        Ok(b)
    } else {
        Err(PlaneError::BeaconSignature)
    }
}

fn beacon_message(
    domain_id: &[u8; 32],
    sender: u32,
    pseq: u32,
    issued_us: u64,
    heard_count: u32,
) -> [u8; 52] {
    let mut m = [0u8; 52];
    m[..32].copy_from_slice(domain_id);
    m[32..36].copy_from_slice(&sender.to_be_bytes());
    m[36..40].copy_from_slice(&pseq.to_be_bytes());
    m[40..48].copy_from_slice(&issued_us.to_be_bytes());
    m[48..].copy_from_slice(&heard_count.to_be_bytes());
    m
}

/// A domain's multicast group (one per address family) and UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Group {
    /// IPv4 group, in the local scope 239.255/16.
    pub v4: Ipv4Addr,
    /// IPv6 group, link-local scope with the transient flag (`ff12::/16`).
    pub v6: Ipv6Addr,
    /// UDP port, 20000–29999.
    pub port: u16,
}

/// The group and port of a domain, derived from its id alone, so a member needs nothing else to
/// join: `h = SHA-256(LABEL_PLANE_GROUP ‖ domain_id)`; IPv4 `239.255.h[0].h[1]`, or
/// `239.255.h[2].h[3]` when that is SSDP's 239.255.255.250 (and 239.255.255.251 if both are);
/// IPv6 `ff12::h[2]h[3]:h[4]h[5]`; port `20000 + u16be(h[6..8]) mod 10000`.
pub fn group_for(domain_id: &[u8; 32]) -> Group {
    let mut h = Sha256::new();
    h.update(LABEL_PLANE_GROUP);
    h.update(domain_id);
    group_from_hash(&h.finalize().into())
}

fn group_from_hash(h: &[u8; 32]) -> Group {
    let mut v4 = Ipv4Addr::new(239, 255, h[0], h[1]);
    if v4 == SSDP_V4 {
        v4 = Ipv4Addr::new(239, 255, h[2], h[3]);
    }
    if v4 == SSDP_V4 {
        v4 = Ipv4Addr::new(239, 255, 255, 251);
    }
    let v6 = Ipv6Addr::new(
        0xff12,
        0,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([h[2], h[3]]),
        u16::from_be_bytes([h[4], h[5]]),
    );
    let port = PORT_BASE + u16::from_be_bytes([h[6], h[7]]) % PORT_SPAN;
    Group { v4, v6, port }
}

/// Which held plane key a key id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// The key of this held epoch.
    Held(u32),
    /// An epoch up to 127 ahead of the newest held (mod 256): an update not applied yet.
    Ahead,
    /// Neither: an erased or far-off epoch, or no key held at all.
    Unknown,
}

/// The plane keys a receiver holds: the newest epoch and, during the overlap after a new epoch,
/// the previous one. Two held epochs always have different key ids. Which epochs to hold and
/// when the overlap ends is the keyring's decision; this only stores and selects.
#[derive(Debug, Clone, Default)]
pub struct PlaneKeys {
    newest: Option<(u32, PlaneKey)>,
    previous: Option<(u32, PlaneKey)>,
}

impl PlaneKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds `key` for `epoch`. A newer epoch becomes the newest and the former newest the
    /// previous; an older one replaces the previous if it is newer than it. Returns whether the
    /// key is held: not if it is older than both, or its key id is the newest's (an epoch 256
    /// or more behind); a new newest drops a previous of the same key id.
    pub fn insert(&mut self, epoch: u32, key: PlaneKey) -> bool {
        let Some((newest, _)) = self.newest else {
            self.newest = Some((epoch, key));
            return true;
        };
        if epoch == newest {
            self.newest = Some((epoch, key));
        } else if epoch > newest {
            self.previous = self.newest.take();
            self.newest = Some((epoch, key));
            if self
                .previous
                .as_ref()
                .is_some_and(|(p, _)| key_id(*p) == key_id(epoch))
            {
                self.previous = None;
            }
        } else {
            let newer_than_previous = self.previous.as_ref().is_none_or(|(p, _)| epoch >= *p);
            if key_id(epoch) == key_id(newest) || !newer_than_previous {
                return false;
            }
            self.previous = Some((epoch, key));
        }
        true
    }

    /// Forgets `epoch` (the end of its overlap); the previous one becomes the newest if the
    /// newest is removed.
    pub fn remove(&mut self, epoch: u32) {
        if self.previous.as_ref().is_some_and(|(p, _)| *p == epoch) {
            self.previous = None;
        }
        if self.newest.as_ref().is_some_and(|(n, _)| *n == epoch) {
            self.newest = self.previous.take();
        }
    }

    /// The newest epoch held and its key: what this node sends under.
    pub fn newest(&self) -> Option<(u32, &PlaneKey)> {
        self.newest.as_ref().map(|(e, k)| (*e, k))
    }

    /// The previous epoch held, during an overlap.
    pub fn previous(&self) -> Option<u32> {
        self.previous.as_ref().map(|(e, _)| *e)
    }

    /// What a datagram's key id names: a held epoch, one ahead of the newest
    /// (`(key_id − newest) mod 256` in 1..=127), or nothing.
    pub fn classify(&self, id: u8) -> KeyMatch {
        let Some((newest, _)) = &self.newest else {
            return KeyMatch::Unknown;
        };
        for (epoch, _) in [&self.newest, &self.previous].into_iter().flatten() {
            if key_id(*epoch) == id {
                return KeyMatch::Held(*epoch);
            }
        }
        match id.wrapping_sub(key_id(*newest)) {
            1..=127 => KeyMatch::Ahead,
            _ => KeyMatch::Unknown,
        }
    }

    /// Opens a datagram with the held key its key id names (see [`open`]); returns the epoch
    /// it was sealed under with the inner part.
    pub fn open<'a>(
        &self,
        domain_id: &[u8; 32],
        datagram: &'a mut [u8],
    ) -> Result<(u32, Inner<'a>), PlaneError> {
        let id = peek(datagram)?;
        let epoch = match self.classify(id) {
            KeyMatch::Held(epoch) => epoch,
            KeyMatch::Ahead => return Err(PlaneError::KeyAhead(id)),
            KeyMatch::Unknown => return Err(PlaneError::UnknownKey(id)),
        };
        let key = [&self.newest, &self.previous]
            .into_iter()
            .flatten()
            .find_map(|(e, k)| (*e == epoch).then_some(k))
            .ok_or(PlaneError::UnknownKey(id))?;
        Ok((epoch, open(key, domain_id, datagram)?))
    }
}
