//! Control protocol request lines (from the local user) and reply lines (read by the CLI).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::control::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = serde_json::from_str::<Request>(s);
        let _ = serde_json::from_str::<Reply>(s);
    }
});
