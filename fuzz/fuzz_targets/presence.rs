//! Presence records from members (and forwarded by them): read unverified to find the
//! certificate, then verified. An input is tried as it is and as the body of a record the
//! device signed, so that the checks after the signature are reached too.
#![no_main]
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use ptt_node::cert::Certificate;
use ptt_node::keys::{self, DomainId};
use ptt_node::presence::{Presence, SIG_PRESENCE};
use std::sync::OnceLock;

/// The golden vectors' certificate (authority 32 x 0x11, device key 32 x 0x22).
fn certificate() -> &'static Certificate {
    static CERT: OnceLock<Certificate> = OnceLock::new();
    CERT.get_or_init(|| {
        let vectors = include_str!("../../proto/vectors/v1.txt");
        let hex = vectors
            .lines()
            .find_map(|l| l.strip_prefix("certificate = "))
            .expect("certificate vector");
        let authority = SigningKey::from_bytes(&[0x11u8; 32]).verifying_key();
        let bytes = hex::decode(hex.trim()).expect("hex");
        Certificate::from_bytes(&bytes, &authority, &DomainId::from_authority(&authority))
            .expect("golden certificate")
    })
}

fuzz_target!(|data: &[u8]| {
    let cert = certificate();
    let _ = Presence::claimed_device(data);
    let _ = Presence::verify(data, cert);

    let device = SigningKey::from_bytes(&[0x22u8; 32]);
    let sig = keys::sign(&device, SIG_PRESENCE, data);
    let mut signed = data.to_vec();
    signed.extend_from_slice(&sig);
    if let Ok(p) = Presence::verify(&signed, cert) {
        assert_eq!(p.body.device, cert.body.device);
        assert_eq!(Presence::claimed_device(&signed).ok(), Some(p.body.device));
        assert_eq!(p.as_bytes(), &signed[..]);
    }
});
