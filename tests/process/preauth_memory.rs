//! What decoding a peer's frame costs before anything checks who sent it. Any peer that
//! completes Noise may send authentication requests of up to `MAX_AUTH_REQUEST` bytes, and a
//! node decodes the `Welcome` reply to its own hello from any peer it dials; both are decoded
//! whole before membership is checked. A frame's length bounds its bytes, not what decoding
//! builds: a list of empty byte strings is one byte per element on the wire and 24 bytes per
//! element decoded, so a maximal frame used to grow the heap about 24 times its size. Every
//! list a peer sends now has an element bound checked at its length prefix
//! (`wire::bounded`), so decoding a maximal frame costs about the frame.
//!
//! The real codec reads each frame from an in-memory reader, under the counting allocator's
//! peak. Run alone (`counting_alloc::alone`): the count is the whole process's.

use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use ptt_node::net::{self, AuthCodec};

use crate::support::counting_alloc::{alone, live, peak, reset_peak};

/// The varint postcard writes for `n`.
fn varint(mut n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(byte);
            return v;
        }
        v.push(byte | 0x80);
    }
}

/// A frame as a peer writes it (u32 big-endian length, then the body): `prefix` (the variant
/// and the fields before the list), then a list of as many empty byte strings as fill `max`.
/// Without a bound on the list, this is a valid encoding of that many elements.
fn maximal_frame(prefix: &[u8], max: usize) -> Vec<u8> {
    let mut n = max - prefix.len();
    while prefix.len() + varint(n).len() + n > max {
        n -= 1;
    }
    let mut body = prefix.to_vec();
    body.extend(varint(n));
    body.resize(body.len() + n, 0);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// The most the heap grew above `before` while `f` ran, and what `f` returned.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (isize, T) {
    let before = live();
    reset_peak();
    let out = f();
    (peak() - before, out)
}

#[test]
fn decoding_a_maximal_pre_auth_frame_costs_about_its_size() {
    let _alone = alone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let protocol = StreamProtocol::new("/ptt-node/auth/1");
    // (what, variant prefix, the frame's limit, request or response)
    let cases: [(&str, &[u8], usize, bool); 3] = [
        ("a roster push", &[1], net::MAX_AUTH_REQUEST, true),
        ("a presence push", &[2], net::MAX_AUTH_REQUEST, true),
        // Welcome: variant 0, an empty certificate, then the roster.
        ("a welcome", &[0, 0], net::MAX_AUTH_RESPONSE, false),
    ];
    for (what, prefix, max, request) in cases {
        let frame = maximal_frame(prefix, max);
        let mut codec = AuthCodec::default();
        let mut io = futures::io::Cursor::new(frame.clone());
        let (grew, refused) = peak_growth(|| {
            rt.block_on(async {
                if request {
                    codec.read_request(&protocol, &mut io).await.is_err()
                } else {
                    codec.read_response(&protocol, &mut io).await.is_err()
                }
            })
        });
        assert!(refused, "{what} of {} bytes decoded", frame.len());
        // The frame is read into one buffer of its size; decoding adds next to nothing.
        assert!(
            grew < frame.len() as isize + 64 * 1024,
            "reading {what} of {} bytes grew the heap by {grew} bytes",
            frame.len()
        );
        eprintln!("{what}: {} bytes, heap peak +{grew} bytes", frame.len());
    }
}
