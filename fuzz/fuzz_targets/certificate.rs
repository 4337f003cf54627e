//! Certificates and descriptors from peers and files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::cert::{Certificate, Descriptor};
use ptt_node::keys::DomainId;

fuzz_target!(|data: &[u8]| {
    let authority = ed25519_dalek::SigningKey::from_bytes(&[0x11u8; 32]).verifying_key();
    let domain = DomainId::from_authority(&authority);
    if let Ok(c) = Certificate::from_bytes(data, &authority, &domain) {
        let _ = c.check_time(0);
        let _ = c.peer_id();
    }
    if let Ok(d) = Descriptor::from_bytes(data) {
        for r in &d.body.rights {
            let _ = d.severity_of(r.device, ptt_node::alert::Severity::Extreme);
            let _ = d.rights(r.device).dispatcher();
        }
    }
});
