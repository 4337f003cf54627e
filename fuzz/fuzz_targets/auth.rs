//! Authentication protocol messages from unauthenticated peers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::net::{AuthReply, AuthRequest, MAX_AUTH_REQUEST, MAX_AUTH_RESPONSE};
use ptt_node::wire;

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode::<AuthRequest>("auth request", data, MAX_AUTH_REQUEST);
    let _ = wire::decode::<AuthReply>("auth reply", data, MAX_AUTH_RESPONSE);
});
