//! Strict signature verification (`keys::verify`, written for speed) against ed25519-dalek's
//! `verify_strict`: the two must agree on every input. An input is a key (32 bytes), a
//! signature (64) and the message after them. It is also used to change a valid signature of
//! the message by a fixed key (the byte the key's first byte points at, xored with its second),
//! so that inputs reach the checks after the hash and the accepting path.
#![no_main]
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;
use ptt_node::keys::{self, SIG_ENVELOPE};

/// Both verifications of `sig` on `msg`, which must agree; returns the verdict.
fn agree(key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> bool {
    let mut full = SIG_ENVELOPE.to_vec();
    full.push(0);
    full.extend_from_slice(msg);
    let theirs = key
        .verify_strict(&full, &Signature::from_bytes(sig))
        .is_ok();
    let ours = keys::verify(key, SIG_ENVELOPE, msg, sig);
    assert_eq!(ours, theirs, "keys::verify and verify_strict disagree");
    ours
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 96 {
        return;
    }
    let (key, rest) = data.split_at(32);
    let (sig, msg) = rest.split_at(64);
    let key: [u8; 32] = key.try_into().expect("32 bytes");
    let sig: [u8; 64] = sig.try_into().expect("64 bytes");
    if let Ok(vk) = VerifyingKey::from_bytes(&key) {
        agree(&vk, msg, &sig);
    }

    let signer = SigningKey::from_bytes(&[0x22u8; 32]);
    let good = keys::sign(&signer, SIG_ENVELOPE, msg);
    assert!(agree(&signer.verifying_key(), msg, &good));
    let mut changed = good;
    changed[key[0] as usize % 64] ^= key[1];
    let verdict = agree(&signer.verifying_key(), msg, &changed);
    assert_eq!(verdict, key[1] == 0, "a changed signature verified");
});
