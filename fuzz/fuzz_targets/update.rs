//! Domain updates from peers (push, catch-up) and from files (`domain publish`).
//!
//! An input is tried twice: as it is (almost always refused at the signature, as a forged
//! update from a peer would be), and as the body of an update the authority signed, so that
//! the fuzzer reaches everything checked after the signature: the body, the descriptor inside
//! it, the serial and `requires` rules and the revocation list.
#![no_main]
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use ptt_node::keys::{self, DomainId, SIG_UPDATE};
use ptt_node::update::Update;

fuzz_target!(|data: &[u8]| {
    // The golden vectors' authority (32 x 0x11), so proto/vectors' update is a valid seed.
    let authority = SigningKey::from_bytes(&[0x11u8; 32]);
    let public = authority.verifying_key();
    let domain = DomainId::from_authority(&public);

    let _ = Update::claimed_serial(data);
    let _ = Update::from_bytes(data, &public, &domain);

    let sig = keys::sign(&authority, SIG_UPDATE, data);
    let mut signed = data.to_vec();
    signed.extend_from_slice(&sig);
    if let Ok(u) = Update::from_bytes(&signed, &public, &domain) {
        // What a node orders updates by before verifying must agree with what it verified.
        assert_eq!(Update::claimed_serial(&signed).ok(), Some(u.body.serial));
        assert_eq!(u.as_bytes(), &signed[..]);
        assert_eq!(u.descriptor.body.revision, u.body.serial);
        assert!(u.body.requires < u.body.serial);
        assert!(u.body.revoked.iter().all(|d| u.descriptor.is_revoked(*d)));
    }
});
