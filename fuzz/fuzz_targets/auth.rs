//! Authentication and push protocol messages: hellos from unauthenticated peers
//! (`/ptt-node/auth/2`), pushes from members (`/ptt-node/push/1`), each at its protocol's limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::net::{
    AuthReply, AuthRequest, MAX_HELLO_REQUEST, MAX_HELLO_RESPONSE, MAX_PUSH_REQUEST,
    MAX_PUSH_RESPONSE,
};
use ptt_node::wire;

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode::<AuthRequest>("hello", data, MAX_HELLO_REQUEST);
    let _ = wire::decode::<AuthReply>("hello reply", data, MAX_HELLO_RESPONSE);
    let _ = wire::decode::<AuthRequest>("push", data, MAX_PUSH_REQUEST);
    let _ = wire::decode::<AuthReply>("push reply", data, MAX_PUSH_RESPONSE);
});
