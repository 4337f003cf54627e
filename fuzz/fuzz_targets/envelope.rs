//! Envelopes from the network: parse, verify and open must never panic, and whatever a node
//! accepts must verify under the sender's key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::cert::DEFAULT_ROTATE_SECS;
use ptt_node::envelope::Envelope;
use ptt_node::keys::{Chain, ChannelSecret, DomainId};

fuzz_target!(|data: &[u8]| {
    let domain = DomainId([5u8; 32]);
    let sender = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]).verifying_key();
    if let Ok(env) = Envelope::parse(data) {
        let _ = env.overhead();
        if env.verify(&domain, &sender).is_ok() {
            // As a node does: the key of the ratchet period the sequence number falls in.
            let period = Chain::period_of(DEFAULT_ROTATE_SECS, env.header.seq);
            let key = ChannelSecret([7u8; 32]).message_key(
                &domain,
                env.header.channel,
                env.header.epoch,
                period,
            );
            let _ = env.open(&domain, &key);
        }
    }
});
