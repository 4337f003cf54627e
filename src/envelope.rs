//! The envelope: an alert sealed for one channel epoch and signed by its sender.
//!
//! ```text
//! envelope = header ‖ varint(len) ‖ ciphertext ‖ signature[64]
//! header   = version u8 ‖ domain_tag [4] ‖ channel varint ‖ epoch varint ‖ sender varint ‖ seq varint
//! ```
//! Encrypt-then-sign: AES-256-GCM with nonce `sender ‖ seq` (big-endian u32 ‖ u64) and
//! associated data `domain_id ‖ header`; then Ed25519 over
//! `SIG_ENVELOPE ‖ 0 ‖ domain_id ‖ header ‖ varint(len) ‖ ciphertext`, so any holder of the
//! sender's certificate checks authenticity without the channel key. `proto/envelope.md` is
//! the specification; this module never reads a clock or draws randomness.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{self, DomainId, LABEL_ALERT_ID, MessageKey, SIG_ENVELOPE, SIG_LEN, SIG_VOICE};
use crate::wire::{self, DecodeError, MAX_ENVELOPE_LEN};

/// Envelope format version.
pub const VERSION: u8 = 1;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// The authenticated header of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version, [`VERSION`].
    pub version: u8,
    /// First four bytes of the domain id.
    pub domain_tag: [u8; 4],
    /// Channel number.
    pub channel: u32,
    /// Key epoch of the channel.
    pub epoch: u32,
    /// Sender's device number.
    pub sender: u32,
    /// Sender's sequence number: strictly increasing per sender, and also the sender's
    /// creation time in µs since the Unix epoch (see `proto/envelope.md`).
    pub seq: u64,
}

/// Why an envelope is refused. Each variant is a separate counter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not a well-formed envelope.
    #[error("malformed envelope: {0}")]
    Decode(#[from] DecodeError),
    /// Sealed in another domain.
    #[error("envelope from another domain")]
    WrongDomain,
    /// The signature does not verify with the sender's key.
    #[error("the sender's signature does not verify")]
    BadSignature,
    /// Decryption failed: wrong key or epoch, or tampered ciphertext.
    #[error("the envelope does not open with this channel key")]
    Decrypt,
}

impl EnvelopeError {
    /// A short stable name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            EnvelopeError::Decode(DecodeError::TooLong { .. }) => "too_long",
            EnvelopeError::Decode(DecodeError::Version { .. }) => "version",
            EnvelopeError::Decode(_) => "malformed",
            EnvelopeError::WrongDomain => "wrong_domain",
            EnvelopeError::BadSignature => "bad_signature",
            EnvelopeError::Decrypt => "decrypt",
        }
    }
}

/// What an envelope carries: an alert (or directed message), or a voice packet
/// (`proto/voice.md`). The two are signed under different contexts, so one can never pass for
/// the other, not even at a relay that cannot decrypt either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An alert or a directed message.
    Alert,
    /// A voice packet.
    Voice,
    /// A receipt (`proto/receipts.md`): its header's channel has
    /// [`crate::receipt::RECEIPT_FLAG`].
    Receipt,
}

impl Kind {
    fn sig_context(self) -> &'static [u8] {
        match self {
            Kind::Alert => SIG_ENVELOPE,
            Kind::Voice => SIG_VOICE,
            Kind::Receipt => keys::SIG_RECEIPT,
        }
    }
}

/// The AES-GCM nonce of a message: sender ‖ seq, big-endian.
pub fn nonce(sender: u32, seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&sender.to_be_bytes());
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// The alert id: first 8 bytes of SHA-256(LABEL_ALERT_ID ‖ domain ‖ sender ‖ seq), in hex.
pub fn alert_id(domain: &DomainId, sender: u32, seq: u64) -> String {
    let mut h = Sha256::new();
    h.update(LABEL_ALERT_ID);
    h.update(domain.0);
    h.update(sender.to_be_bytes());
    h.update(seq.to_be_bytes());
    wire::hex(&h.finalize()[..8])
}

fn aad(domain: &DomainId, header_bytes: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(32 + header_bytes.len());
    a.extend_from_slice(&domain.0);
    a.extend_from_slice(header_bytes);
    a
}

fn signed_message(domain: &DomainId, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + body.len());
    m.extend_from_slice(&domain.0);
    m.extend_from_slice(body);
    m
}

/// Seals and signs an alert's `plaintext`; returns the envelope bytes.
pub fn seal(
    sender_key: &SigningKey,
    domain: &DomainId,
    header: &Header,
    key: &MessageKey,
    plaintext: &[u8],
) -> Vec<u8> {
    seal_kind(Kind::Alert, sender_key, domain, header, key, plaintext)
}

/// Seals and signs `plaintext` as an envelope of `kind`; returns the envelope bytes.
pub fn seal_kind(
    kind: Kind,
    sender_key: &SigningKey,
    domain: &DomainId,
    header: &Header,
    key: &MessageKey,
    plaintext: &[u8],
) -> Vec<u8> {
    let header_bytes = wire::encode(header);
    let ct = key.seal(
        &nonce(header.sender, header.seq),
        &aad(domain, &header_bytes),
        plaintext,
    );
    let mut out = header_bytes;
    // postcard's encoding of a byte slice: varint length, then the bytes.
    out.extend_from_slice(&wire::encode(ct.as_slice()));
    let sig = keys::sign(
        sender_key,
        kind.sig_context(),
        &signed_message(domain, &out),
    );
    out.extend_from_slice(&sig);
    out
}

/// The header of envelope bytes, read without copying or checking the rest: for decisions
/// that need only the sender or the id before (or without) validation. `None` when the header
/// does not decode or is of another version.
pub fn header_of(bytes: &[u8]) -> Option<Header> {
    let (h, _) = postcard::take_from_bytes::<Header>(bytes).ok()?;
    (h.version == VERSION).then_some(h)
}

/// A parsed (not yet verified) envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The header.
    pub header: Header,
    bytes: Vec<u8>,
    header_len: usize,
    ct_start: usize,
}

impl Envelope {
    /// Parses envelope bytes; checks size, structure and version only.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(DecodeError::TooLong {
                what: "envelope",
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            }
            .into());
        }
        let malformed = |e: postcard::Error| DecodeError::Malformed {
            what: "envelope",
            reason: e.to_string(),
        };
        let (body, _sig) = keys::split_signed("envelope", bytes)?;
        let (header, rest) = postcard::take_from_bytes::<Header>(body).map_err(malformed)?;
        if header.version != VERSION {
            return Err(DecodeError::Version {
                what: "envelope",
                found: header.version,
                expected: VERSION,
            }
            .into());
        }
        let header_len = body.len() - rest.len();
        let (ct, rest) = postcard::take_from_bytes::<&[u8]>(rest).map_err(malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing {
                what: "envelope",
                extra: rest.len(),
            }
            .into());
        }
        if ct.len() < TAG_LEN {
            return Err(DecodeError::Malformed {
                what: "envelope",
                reason: "ciphertext shorter than its tag".into(),
            }
            .into());
        }
        let ct_start = body.len() - ct.len();
        Ok(Envelope {
            header,
            bytes: bytes.to_vec(),
            header_len,
            ct_start,
        })
    }

    /// The envelope bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks the domain tag and the sender's signature.
    pub fn verify(&self, domain: &DomainId, sender: &VerifyingKey) -> Result<(), EnvelopeError> {
        self.verify_kind(Kind::Alert, domain, sender)
    }

    /// Checks the domain tag and the sender's signature of an envelope of `kind`.
    pub fn verify_kind(
        &self,
        kind: Kind,
        domain: &DomainId,
        sender: &VerifyingKey,
    ) -> Result<(), EnvelopeError> {
        if self.header.domain_tag != domain.tag() {
            return Err(EnvelopeError::WrongDomain);
        }
        let (body, sig) = self.bytes.split_at(self.bytes.len() - SIG_LEN);
        let mut s = [0u8; SIG_LEN];
        s.copy_from_slice(sig);
        if !keys::verify(
            sender,
            kind.sig_context(),
            &signed_message(domain, body),
            &s,
        ) {
            return Err(EnvelopeError::BadSignature);
        }
        Ok(())
    }

    /// Decrypts the plaintext (call [`Envelope::verify`] first).
    pub fn open(&self, domain: &DomainId, key: &MessageKey) -> Result<Vec<u8>, EnvelopeError> {
        let ct = &self.bytes[self.ct_start..self.bytes.len() - SIG_LEN];
        key.open(
            &nonce(self.header.sender, self.header.seq),
            &aad(domain, &self.bytes[..self.header_len]),
            ct,
        )
        .ok_or(EnvelopeError::Decrypt)
    }

    /// Bytes of the envelope beyond its plaintext.
    pub fn overhead(&self) -> usize {
        SIG_LEN + self.ct_start + TAG_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ChannelSecret;
    use proptest::prelude::*;

    fn fixture() -> (SigningKey, DomainId, MessageKey) {
        let sk = SigningKey::from_bytes(&[3u8; 32]);
        let domain = DomainId([5u8; 32]);
        let key = ChannelSecret([7u8; 32]).message_key(&domain, 1, 1, 0);
        (sk, domain, key)
    }

    fn header(domain: &DomainId, seq: u64) -> Header {
        Header {
            version: VERSION,
            domain_tag: domain.tag(),
            channel: 1,
            epoch: 1,
            sender: 2,
            seq,
        }
    }

    #[test]
    fn overhead_is_under_100_bytes() {
        let (sk, domain, key) = fixture();
        let env = seal(
            &sk,
            &domain,
            &header(&domain, 1_763_780_000_000_000),
            &key,
            &[0u8; 100],
        );
        let e = Envelope::parse(&env).unwrap();
        assert_eq!(e.overhead(), env.len() - 100);
        assert!(e.overhead() <= 100, "overhead {}", e.overhead());
    }

    #[test]
    fn wrong_domain_and_bad_signature_are_told_apart() {
        let (sk, domain, key) = fixture();
        let env = seal(&sk, &domain, &header(&domain, 9), &key, b"hi");
        let e = Envelope::parse(&env).unwrap();
        assert_eq!(
            e.verify(&DomainId([6u8; 32]), &sk.verifying_key()),
            Err(EnvelopeError::WrongDomain)
        );
        let other = SigningKey::from_bytes(&[4u8; 32]);
        assert_eq!(
            e.verify(&domain, &other.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
        // Same tag, different domain: the signature binds the whole domain id.
        let mut d2 = domain;
        d2.0[31] ^= 1;
        assert_eq!(
            e.verify(&d2, &sk.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn truncated_or_extended_input_is_malformed() {
        let (sk, domain, key) = fixture();
        let env = seal(&sk, &domain, &header(&domain, 9), &key, b"hello");
        for n in 0..env.len() {
            assert!(
                Envelope::parse(&env[..n])
                    .and_then(|e| e.verify(&domain, &sk.verifying_key()))
                    .is_err(),
                "prefix {n}"
            );
        }
        let mut long = env.clone();
        long.push(0);
        assert!(
            Envelope::parse(&long)
                .and_then(|e| e.verify(&domain, &sk.verifying_key()))
                .is_err()
        );
        assert!(matches!(
            Envelope::parse(&vec![0u8; MAX_ENVELOPE_LEN + 1]),
            Err(EnvelopeError::Decode(DecodeError::TooLong { .. }))
        ));
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..2048), seq in any::<u64>()) {
            let (sk, domain, key) = fixture();
            let env = seal(&sk, &domain, &header(&domain, seq), &key, &plain);
            let e = Envelope::parse(&env).unwrap();
            prop_assert_eq!(e.header.seq, seq);
            e.verify(&domain, &sk.verifying_key()).unwrap();
            prop_assert_eq!(e.open(&domain, &key).unwrap(), plain);
        }

        #[test]
        fn any_flipped_byte_is_rejected(idx in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (sk, domain, key) = fixture();
            let mut env = seal(&sk, &domain, &header(&domain, 77), &key, b"intrusion at gate 3");
            let i = idx.index(env.len());
            env[i] ^= 1 << bit;
            let r = Envelope::parse(&env).and_then(|e| e.verify(&domain, &sk.verifying_key()).map(|_| e));
            prop_assert!(r.is_err());
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::parse(&bytes);
        }
    }
}
