//! Alert plaintexts inside authentic envelopes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::alert::AlertBody;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = AlertBody::decode(data) {
        // postcard accepts non-minimal varints, so the input need not be canonical; the
        // canonical encoding of what was decoded must decode again, to the same canonical
        // encoding. Compared as bytes, not with `==` on the values: a NaN coordinate (which
        // decoding accepts) is not equal to itself.
        let canonical = a.encode();
        let again = AlertBody::decode(&canonical).expect("a canonical encoding decodes");
        assert_eq!(again.encode(), canonical);
    }
});
