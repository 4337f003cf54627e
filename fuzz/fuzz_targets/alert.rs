//! Alert plaintexts inside authentic envelopes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::alert::AlertBody;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = AlertBody::decode(data) {
        // postcard accepts non-minimal varints, so the input need not be canonical; the
        // canonical encoding of what was decoded must decode to the same value.
        let canonical = a.encode();
        assert_eq!(AlertBody::decode(&canonical).ok(), Some(a));
    }
});
