//! Plane datagrams from the network (proto/plane.md). First byte even: the rest is a datagram
//! as received, opened with a fixed key; it must never panic, and a datagram refused before the
//! AEAD is refused for the same reason by the key holder. First byte odd: the rest is an inner
//! part, sealed under the key first so that the inner decoder runs on it; whatever opens must
//! seal again to the same bytes (one encoding per inner part).
#![no_main]
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use libfuzzer_sys::fuzz_target;
use ptt_node::keys::{PlaneKey, plane_key};
use ptt_node::plane::{self, Kind, PlaneError, PlaneKeys};

const DOMAIN: [u8; 32] = [5u8; 32];
const PREFIX: [u8; 16] = [0x77; 16];
const COUNTER: u64 = 9;

/// A datagram around `inner` as it is, written from proto/plane.md rather than with the
/// crate's sealing, which refuses malformed inner parts.
fn seal_raw(key: &PlaneKey, epoch: u32, inner: &[u8]) -> Vec<u8> {
    let clear = [1u8, epoch as u8];
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(&PREFIX);
    nonce[16..].copy_from_slice(&COUNTER.to_be_bytes());
    let mut aad = b"ptt-node/v1/plane".to_vec();
    aad.extend_from_slice(&DOMAIN);
    aad.extend_from_slice(&clear);
    let mut buf = inner.to_vec();
    let tag = XChaCha20Poly1305::new(Key::from_slice(&key.0))
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut buf)
        .expect("small input");
    [&clear[..], &nonce, &buf, &tag].concat()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = plane_key(&DOMAIN, 1, &[0x66; 32]);
    let mut keys = PlaneKeys::new();
    keys.insert(1, key.clone());
    keys.insert(2, plane_key(&DOMAIN, 2, &[0x67; 32]));
    if mode & 1 == 0 {
        let mut d = rest.to_vec();
        let peeked = plane::peek(&d);
        let opened = plane::open(&key, &DOMAIN, &mut d).map(|i| (i.kind, i.sender, i.pseq));
        if let Err(e) = peeked {
            assert_eq!(opened, Err(e));
        }
        let mut d = rest.to_vec();
        let _ = keys.open(&DOMAIN, &mut d);
        return;
    }
    let mut d = seal_raw(&key, 1, rest);
    let in_range = (plane::PLANE_MIN_DATAGRAM..=plane::PLANE_MAX_DATAGRAM).contains(&d.len());
    let original = d.clone();
    let opened = keys.open(&DOMAIN, &mut d).map(|(_, i)| i);
    if !in_range {
        assert_eq!(opened, Err(PlaneError::Length { len: original.len() }));
        return;
    }
    assert_ne!(opened, Err(PlaneError::Junk), "sealed under the held key");
    assert_eq!(opened, plane::decode_inner(rest));
    if let Ok(inner) = opened {
        let again = plane::seal(
            &key,
            1,
            &DOMAIN,
            &PREFIX,
            COUNTER,
            inner.kind,
            inner.sender,
            inner.pseq,
            inner.body,
        )
        .expect("what opens, seals");
        assert_eq!(again, original, "one encoding per inner part");
        if inner.kind == Kind::Beacon {
            let device = ed25519_dalek::SigningKey::from_bytes(&[0x22; 32]).verifying_key();
            let _ = plane::verify_beacon(&device, &DOMAIN, inner.sender, inner.pseq, inner.body);
        }
    }
});
