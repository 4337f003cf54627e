//! Catch-up frames from authenticated members: requests a node serves and responses it reads,
//! then what a node does with them (the diff it answers a digest with, the ids it fetches
//! after a diff).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::net::{MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE, SyncRequest, SyncResponse};
use ptt_node::sync::{Index, MAX_DIFF_IDS, MAX_FETCH_IDS};
use ptt_node::wire;

fuzz_target!(|data: &[u8]| {
    // A small log: two senders on two channels, spread over several buckets.
    let mut index = Index::new();
    for i in 0..64u64 {
        let channel = 1 + (i % 2) as u32;
        let sender = 2 + (i % 3) as u32;
        index.insert(channel, (sender, 1_700_000_000_000_000 + i * 40_000_000_000));
    }
    if let Ok(req) = wire::decode::<SyncRequest>("request", data, MAX_SYNC_REQUEST) {
        match req {
            SyncRequest::Digest {
                cutoff,
                channels,
                after,
                buckets,
            } => {
                let diff = index.diff(&buckets, cutoff, &channels, after, MAX_DIFF_IDS);
                assert!(diff.keys.len() <= MAX_DIFF_IDS);
                assert!(diff.keys.windows(2).all(|w| w[0] < w[1]), "diff not ascending");
                assert!(diff.keys.iter().all(|k| index.contains((k.1, k.2))));
            }
            SyncRequest::Fetch { ids } => {
                let _ = ids.into_iter().take(MAX_FETCH_IDS).filter(|id| index.contains(*id)).count();
            }
        }
    }
    if let Ok(SyncResponse::Diff(diff)) =
        wire::decode::<SyncResponse>("response", data, MAX_SYNC_RESPONSE)
    {
        let want = index.missing(&diff.keys);
        assert!(want.len() <= diff.keys.len());
    }
});
