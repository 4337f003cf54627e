//! Alert plaintexts inside authentic envelopes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::alert::AlertBody;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = AlertBody::decode(data) {
        // Whatever decodes re-encodes to the same bytes: one value, one encoding.
        assert_eq!(a.encode(), data);
    }
});
