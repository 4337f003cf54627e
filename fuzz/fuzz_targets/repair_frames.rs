//! Repair frames from authenticated members (proto/plane.md, "Repair"): requests a node serves
//! from its ring and responses it reads. Serving must keep to the reply's limits; screening a
//! response must keep only items asked for, never more than were asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::plane::Kind;
use ptt_node::plane::repair::{
    MAX_REPAIR_REQUEST, MAX_REPAIR_RESPONSE, REPAIR_MAX_PER_SENDER, REPAIR_MAX_REPLY_BYTES,
    RepairRequest, RepairResponse, Repairs, Want, serve,
};
use ptt_node::plane::ring::Ring;
use ptt_node::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = wire::decode::<RepairRequest>("request", data, MAX_REPAIR_REQUEST) {
        // A small ring: three senders, 200 pseqs each, around the wrap.
        let mut ring = Ring::default();
        for s in 1..=3u32 {
            for i in 0..200u32 {
                let pseq = (u32::MAX - 100).wrapping_add(i);
                ring.insert(
                    0,
                    s,
                    pseq,
                    Kind::Alert,
                    vec![s as u8; 100 + (i as usize % 50)],
                );
            }
        }
        if let RepairResponse::Repaired { items, not_held } = serve(&ring, &req) {
            let asked = req.asked();
            assert!(items.iter().all(|i| asked.contains(&(i.sender, i.pseq))));
            assert!(
                items.iter().map(|i| i.envelope.len()).sum::<usize>() <= REPAIR_MAX_REPLY_BYTES
            );
            for s in 1..=3u32 {
                assert!(items.iter().filter(|i| i.sender == s).count() <= REPAIR_MAX_PER_SENDER);
            }
            assert!(
                not_held
                    .iter()
                    .flat_map(|w| w.pseqs().map(move |p| (w.sender, p)))
                    .all(|k| asked.contains(&k))
            );
            let resp = RepairResponse::Repaired { items, not_held };
            assert!(wire::encode(&resp).len() <= MAX_REPAIR_RESPONSE);
        }
    }
    if let Ok(RepairResponse::Repaired { items, .. }) =
        wire::decode::<RepairResponse>("response", data, MAX_REPAIR_RESPONSE)
    {
        let asked = RepairRequest {
            wants: vec![
                Want {
                    sender: 7,
                    from: 10,
                    bitmap: 0xff,
                },
                Want {
                    sender: 0,
                    from: u32::MAX,
                    bitmap: 0b11,
                },
            ],
        };
        let mut r: Repairs<u8> = Repairs::new();
        let n = items.len();
        let kept = r.screen(&asked, items);
        let want = asked.asked();
        assert!(kept.len() <= want.len());
        assert!(kept.iter().all(|i| want.contains(&(i.sender, i.pseq))));
        assert_eq!(kept.len() as u64 + r.counters.unrequested, n as u64);
    }
});
