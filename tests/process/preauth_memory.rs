//! What reading a peer's frame costs. Before a peer is authenticated only `/ptt-node/auth/2` is
//! read from it, with frames of a hello's size each way: a larger frame (a push, or a
//! `Welcome` carrying a roster, which `/ptt-node/auth/1` read from anyone, up to 1 MiB and
//! 4.1 MB) is refused at its length prefix. Pushes (`/ptt-node/push/1`, up to 4.1 MB) are read
//! from members only. And a frame's length bounds its bytes, not what decoding builds: a list of
//! empty byte strings is one byte per element on the wire and 24 bytes per element decoded, so
//! every list a peer sends has an element bound checked at its length prefix
//! (`wire::bounded`), and decoding a maximal frame costs about the frame.
//!
//! The real codec reads each frame from an in-memory reader, under the counting allocator's
//! peak. Run alone (`counting_alloc::alone`): the count is the whole process's.

use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use ptt_node::net::{self, AuthCodec};

use crate::support::counting_alloc::{alone, live, peak, reset_peak};

/// The varint postcard writes for `n` (a count).
fn varint(n: usize) -> Vec<u8> {
    ptt_node::wire::encode(&n)
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

/// Reads `frame` as a request (or a response) with `codec`: whether it was refused, and the
/// heap's peak growth meanwhile.
fn read(
    rt: &tokio::runtime::Runtime,
    mut codec: AuthCodec,
    frame: &[u8],
    request: bool,
) -> (isize, bool) {
    let protocol = StreamProtocol::new("/ptt-node/auth/2");
    let mut io = futures::io::Cursor::new(frame.to_vec());
    peak_growth(|| {
        rt.block_on(async {
            if request {
                codec.read_request(&protocol, &mut io).await.is_err()
            } else {
                codec.read_response(&protocol, &mut io).await.is_err()
            }
        })
    })
}

#[test]
fn before_authentication_a_frame_past_a_hello_costs_nothing() {
    let _alone = alone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // What a stranger can send on the one protocol read before authentication, as a request
    // (a push where a hello goes) or as the reply to this node's hello (a `Welcome` with the
    // roster auth/1 carried): refused at the length prefix, before a byte is buffered.
    let cases: [(&str, &[u8], usize, bool); 2] = [
        ("a roster push", &[1], net::MAX_PUSH_REQUEST, true),
        ("a welcome", &[0, 0], net::MAX_PUSH_REQUEST, false),
    ];
    for (what, prefix, max, request) in cases {
        let frame = maximal_frame(prefix, max);
        let (grew, refused) = read(&rt, AuthCodec::hello(), &frame, request);
        assert!(refused, "{what} of {} bytes read", frame.len());
        assert!(
            grew < 1024,
            "refusing {what} of {} bytes grew the heap by {grew} bytes",
            frame.len()
        );
        eprintln!(
            "hello codec, {what}: {} bytes, heap peak +{grew} bytes",
            frame.len()
        );
    }
    // A frame of a hello's size at most: a list in it costs about the frame.
    let frame = maximal_frame(&[1], net::MAX_HELLO_REQUEST);
    let (grew, refused) = read(&rt, AuthCodec::hello(), &frame, true);
    assert!(refused, "a roster of {} empty entries decoded", frame.len());
    assert!(grew < 2 * frame.len() as isize, "+{grew} bytes");
}

#[test]
fn decoding_a_maximal_push_costs_about_its_size() {
    let _alone = alone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Pushes are read from authenticated members only, but a member may be hostile: a list of
    // empty entries used to decode to about 24 times the frame.
    let cases: [(&str, &[u8]); 3] = [
        ("a roster push", &[1]),
        ("a presence push", &[2]),
        ("a heard report", &[4, 1]),
    ];
    for (what, prefix) in cases {
        let frame = maximal_frame(prefix, net::MAX_PUSH_REQUEST);
        let (grew, refused) = read(&rt, AuthCodec::push(), &frame, true);
        assert!(refused, "{what} of {} bytes decoded", frame.len());
        // The frame is read into one buffer of its size; decoding adds next to nothing.
        assert!(
            grew < frame.len() as isize + 64 * 1024,
            "reading {what} of {} bytes grew the heap by {grew} bytes",
            frame.len()
        );
        eprintln!(
            "push codec, {what}: {} bytes, heap peak +{grew} bytes",
            frame.len()
        );
    }
}
