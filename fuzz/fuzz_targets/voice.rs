//! Voice plaintexts and the floor and jitter buffer they drive: any sequence of packets from
//! any senders at any times gives floor events and played slots, never a panic, and the
//! buffer never plays more slots than a burst can have.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::voice::{Floor, FloorEvent, JITTER_US, JitterBuffer, MAX_BURST_FRAMES, VoiceBody};

fuzz_target!(|data: &[u8]| {
    let mut floor = Floor::default();
    let mut jitter = JitterBuffer::new(JITTER_US);
    let mut now = 0u64;
    // Records: sender u8, time step u16 (ms), length u8, then the plaintext.
    let mut rest = data;
    while rest.len() >= 4 {
        let (sender, step, len) = (rest[0], u16::from_le_bytes([rest[1], rest[2]]), rest[3]);
        rest = &rest[4..];
        let take = usize::from(len).min(rest.len());
        let (pkt, tail) = rest.split_at(take);
        rest = tail;
        now += u64::from(step) * 1000;
        let Ok(body) = VoiceBody::decode(pkt) else {
            floor.tick(now);
            continue;
        };
        for e in floor.on_packet(u32::from(sender), body, now) {
            if let FloorEvent::Frame { index, opus, .. } = e {
                jitter.push(index, opus, now);
            }
        }
        jitter.pop_due(now);
    }
    jitter.finish(Some(u32::MAX));
    assert!(jitter.played <= MAX_BURST_FRAMES + 1);
});
