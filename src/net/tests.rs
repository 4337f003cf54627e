//! Unit tests of the network layer's messages, codecs and bounds.
use super::*;

/// A frame of a list of `count` elements, as a peer can write one: `prefix` (variant index
/// and any fields before the list), the count as a varint, then `count` zero bytes (each an
/// empty byte string, or the number 0). With `count` None, as many as fill `max` bytes.
/// Every such frame is a valid encoding: only a bound on the list refuses it.
fn list_frame(prefix: &[u8], count: Option<usize>, max: usize) -> Vec<u8> {
    // postcard writes a count as a varint.
    let varint = |n: usize| wire::encode(&n);
    let count = count.unwrap_or_else(|| {
        let mut n = max - prefix.len();
        while prefix.len() + varint(n).len() + n > max {
            n -= 1;
        }
        n
    });
    let mut b = prefix.to_vec();
    b.extend(varint(count));
    b.resize(b.len() + count, 0);
    b
}

#[test]
fn a_list_longer_than_its_bound_is_refused_at_its_length() {
    // (what, prefix, bound, the frame's limit, decoder)
    type Decode = fn(&[u8]) -> Result<(), wire::DecodeError>;
    let cases: [(&str, &[u8], usize, usize, Decode); 5] = [
        (
            "roster push",
            &[1],
            MAX_ROSTER_SHARE,
            MAX_PUSH_REQUEST,
            |b| wire::decode::<AuthRequest>("x", b, MAX_PUSH_REQUEST).map(drop),
        ),
        (
            "presence push",
            &[2],
            MAX_ROSTER_PUSH,
            MAX_PUSH_REQUEST,
            |b| wire::decode::<AuthRequest>("x", b, MAX_PUSH_REQUEST).map(drop),
        ),
        ("heard", &[4, 1], MAX_HEARD_SENDERS, MAX_PUSH_REQUEST, |b| {
            wire::decode::<AuthRequest>("x", b, MAX_PUSH_REQUEST).map(drop)
        }),
        // Welcome: index 0, an empty certificate, then the roster.
        (
            "welcome",
            &[0, 0],
            MAX_ROSTER_SHARE,
            MAX_AUTH_RESPONSE,
            |b| wire::decode::<AuthReply>("x", b, MAX_AUTH_RESPONSE).map(drop),
        ),
        // Envelopes: response index 1.
        (
            "envelopes",
            &[1],
            sync::MAX_FETCH_IDS,
            MAX_SYNC_RESPONSE,
            |b| wire::decode::<SyncResponse>("x", b, MAX_SYNC_RESPONSE).map(drop),
        ),
    ];
    for (what, prefix, bound, max, decode) in cases {
        // At the bound it decodes: honest peers are never refused.
        let at = list_frame(prefix, Some(bound), max);
        assert!(decode(&at).is_ok(), "{what} at {bound}");
        // One more is refused, and so is the longest list a frame can hold (about one
        // element per byte: 24 bytes each decoded, without the bound).
        for count in [Some(bound + 1), None] {
            let b = list_frame(prefix, count, max);
            assert!(b.len() <= max);
            assert!(
                decode(&b).is_err(),
                "{what} of {count:?} in {} bytes",
                b.len()
            );
        }
    }
}

#[test]
fn sync_and_repair_lists_are_bounded_too() {
    let fetch = SyncRequest::Fetch {
        ids: vec![(0, 0); sync::MAX_FETCH_IDS + 1],
    };
    let e = wire::decode::<SyncRequest>("x", &wire::encode(&fetch), MAX_SYNC_REQUEST).unwrap_err();
    assert!(matches!(e, wire::DecodeError::Malformed { .. }), "{e}");
    let digest = SyncRequest::Digest {
        cutoff: 0,
        channels: vec![0; sync::MAX_DIGEST_CHANNELS + 1],
        after: None,
        buckets: vec![],
    };
    let e = wire::decode::<SyncRequest>("x", &wire::encode(&digest), MAX_SYNC_REQUEST).unwrap_err();
    assert!(matches!(e, wire::DecodeError::Malformed { .. }), "{e}");
    let diff = SyncResponse::Diff(sync::Diff {
        keys: vec![(0, 0, 0); sync::MAX_DIFF_IDS + 1],
        more: false,
    });
    let e = wire::decode::<SyncResponse>("x", &wire::encode(&diff), MAX_SYNC_RESPONSE).unwrap_err();
    assert!(matches!(e, wire::DecodeError::Malformed { .. }), "{e}");
    use crate::plane::repair::{REPAIR_MAX_WANTS, RepairRequest, Want};
    let want = Want {
        sender: 1,
        from: 0,
        bitmap: 1,
    };
    let req = RepairRequest {
        wants: vec![want; REPAIR_MAX_WANTS + 1],
    };
    let e = wire::decode::<RepairRequest>("x", &wire::encode(&req), usize::MAX).unwrap_err();
    assert!(matches!(e, wire::DecodeError::Malformed { .. }), "{e}");
    let ok = RepairRequest {
        wants: vec![want; REPAIR_MAX_WANTS],
    };
    assert_eq!(
        wire::decode::<RepairRequest>("x", &wire::encode(&ok), usize::MAX).unwrap(),
        ok
    );
}

#[test]
fn only_the_domains_topics_may_be_subscribed() {
    use gossipsub::TopicSubscriptionFilter;
    let (d, other) = (DomainId([1; 32]), DomainId([2; 32]));
    let mut f = DomainTopics::new(Some(&d));
    assert!(f.can_subscribe(&topic(&d, 1).hash()));
    assert!(f.can_subscribe(&voice_topic(&d, 7).hash()));
    assert!(!f.can_subscribe(&topic(&other, 1).hash()));
    assert!(!f.can_subscribe(&gossipsub::IdentTopic::new("junk").hash()));
    // Without a domain (test swarms), anything.
    assert!(DomainTopics::new(None).can_subscribe(&topic(&other, 1).hash()));
}

#[test]
fn auth_messages_round_trip() {
    let h = AuthRequest::Hello(AuthHello {
        domain: DomainId([1; 32]),
        cert: vec![1, 2, 3],
        revision: 7,
    });
    let b = wire::encode(&h);
    assert_eq!(
        wire::decode::<AuthRequest>("x", &b, MAX_HELLO_REQUEST).unwrap(),
        h
    );
    // The new variant comes last, so the others keep their bytes: index 4, epoch, count,
    // then each device number as a varint.
    let heard = AuthRequest::Heard {
        epoch: 1,
        senders: vec![2, 300],
    };
    assert_eq!(wire::encode(&heard), [4, 1, 2, 2, 0xac, 0x02]);
    let b = wire::encode(&heard);
    assert_eq!(
        wire::decode::<AuthRequest>("x", &b, MAX_PUSH_REQUEST).unwrap(),
        heard
    );
    let r = AuthReply::Welcome {
        cert: vec![9],
        roster: vec![vec![1], vec![2, 3]],
    };
    let b = wire::encode(&r);
    assert_eq!(
        wire::decode::<AuthReply>("x", &b, MAX_HELLO_RESPONSE).unwrap(),
        r
    );
}

#[test]
fn gossipsub_mesh_bounds_hold() {
    // libp2p-gossipsub checks these only for per-topic settings, not for the defaults.
    let c = gossipsub_config().unwrap();
    assert!(c.mesh_outbound_min() <= c.mesh_n_low());
    assert!(c.mesh_n_low() <= c.mesh_n() && c.mesh_n() <= c.mesh_n_high());
    assert!(c.mesh_outbound_min() * 2 <= c.mesh_n());
    assert!(c.mesh_n_low() >= 1 && c.flood_publish());
    assert_eq!(c.forward_queue_duration(), FORWARD_QUEUE_DEADLINE);
    assert_eq!(c.publish_queue_duration(), PUBLISH_QUEUE_DEADLINE);
    // The largest IHAVE this node sends fits what a receiver takes: each id costs its
    // protobuf tag and length, and 1 KB is left for the topic and the RPC around it.
    assert_eq!(c.max_control_messages_sent(), MAX_IHAVE_IDS);
    assert_eq!(c.history_gossip(), HISTORY_GOSSIP);
    assert!(c.history_gossip() <= c.history_length());
    assert!(MAX_IHAVE_IDS * (MESSAGE_ID_LEN + 2) + 1024 <= c.max_control_message_size());
}

#[test]
fn message_origin_is_the_envelope_sender() {
    use crate::envelope::{Header, VERSION, seal};
    use crate::keys::ChannelSecret;
    let domain = DomainId([5; 32]);
    let key = ChannelSecret([7; 32]).message_key(&domain, 1, 1, 0);
    let sk = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let header = |sender| Header {
        version: VERSION,
        domain_tag: domain.tag(),
        channel: 1,
        epoch: 1,
        sender,
        seq: 1_795_000_000_123_456,
    };
    let raw = |topic: &gossipsub::IdentTopic, data: Vec<u8>| gossipsub::RawMessage {
        source: None,
        data,
        sequence_number: None,
        topic: topic.hash(),
        signature: None,
        key: None,
        validated: false,
    };
    let t = topic(&domain, 1);
    for sender in [0, 7, 300, u32::MAX] {
        let env = seal(&sk, &domain, &header(sender), &key, b"alert");
        assert_eq!(message_origin(&raw(&t, env)), Some(sender));
    }
    let env = seal(&sk, &domain, &header(7), &key, b"alert");
    // Voice packets go on the plane too (live frames are never repaired: a peer that
    // hears the talker gets no gossip copy, a lost frame is concealed).
    assert_eq!(
        message_origin(&raw(&voice_topic(&domain, 1), env.clone())),
        Some(7)
    );
    // Another version, a cut header, junk.
    let mut v2 = env.clone();
    v2[0] = VERSION + 1;
    assert_eq!(message_origin(&raw(&t, v2)), None);
    assert_eq!(message_origin(&raw(&t, env[..7].to_vec())), None);
    assert_eq!(message_origin(&raw(&t, vec![])), None);
    assert_eq!(message_origin(&raw(&t, vec![0xff; 40])), None);
    // Too long for the plane: it went by gossip only.
    let long = seal(
        &sk,
        &domain,
        &header(7),
        &key,
        &[0; crate::plane::PLANE_MAX_BODY],
    );
    assert!(long.len() > crate::plane::PLANE_MAX_BODY);
    assert_eq!(message_origin(&raw(&t, long)), None);
    let fits = seal(&sk, &domain, &header(7), &key, &[0; 1000]);
    assert!(fits.len() <= crate::plane::PLANE_MAX_BODY);
    assert_eq!(message_origin(&raw(&t, fits)), Some(7));
}

#[test]
fn topics_differ_per_domain_and_channel() {
    let a = topic(&DomainId([1; 32]), 1).hash();
    assert_ne!(a, topic(&DomainId([2; 32]), 1).hash());
    assert_ne!(a, topic(&DomainId([1; 32]), 2).hash());
}
