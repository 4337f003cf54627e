//! Sealed group keys from bundle files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::keys::{DomainId, SealedKey};

fuzz_target!(|data: &[u8]| {
    let authority = ed25519_dalek::SigningKey::from_bytes(&[0x11u8; 32]).verifying_key();
    if let Ok(k) = SealedKey::from_bytes(data, &authority) {
        let x = ptt_node::keys::X25519Secret::from([0x33u8; 32]);
        let _ = k.open(&DomainId::from_authority(&authority), k.body.device, &x);
    }
});
