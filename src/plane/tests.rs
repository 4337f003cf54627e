use super::*;
use crate::keys::plane_key;

const DOMAIN: [u8; 32] = [5u8; 32];
const PREFIX: [u8; 16] = [0x77; 16];

fn key(epoch: u32) -> PlaneKey {
    plane_key(&DOMAIN, epoch, &[0x66; 32])
}

fn seal_alert(epoch: u32, sender: u32, pseq: u32, body: &[u8]) -> Vec<u8> {
    seal(
        &key(epoch),
        epoch,
        &DOMAIN,
        &PREFIX,
        9,
        Kind::Alert,
        sender,
        pseq,
        body,
    )
    .unwrap()
}

/// Deterministic filler bytes (SHA-256 in counter mode), so failures reproduce.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.to_be_bytes());
        h.update(i.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn limits_are_exact() {
    assert_eq!(PLANE_MIN_DATAGRAM, 45);
    assert_eq!(PLANE_MAX_OVERHEAD, 53);
    assert_eq!(PLANE_MAX_BODY, 1147);
    assert_eq!(AAD_LEN, 51);
    // The longest varints of a u32 are 5 bytes: the body limit holds at both extremes.
    let longest = seal_alert(1, u32::MAX, u32::MAX, &[0xab; PLANE_MAX_BODY]);
    assert_eq!(longest.len(), PLANE_MAX_DATAGRAM);
    let shortest = seal_alert(1, 0, 0, &[0xab; PLANE_MAX_BODY]);
    assert_eq!(shortest.len(), PLANE_MAX_DATAGRAM - 8);
    let tail = seal(&key(1), 1, &DOMAIN, &PREFIX, 0, Kind::Tail, 1, 1, &[]).unwrap();
    assert_eq!(tail.len(), PLANE_MIN_DATAGRAM);
}

#[test]
fn seal_and_open_round_trip_for_every_kind() {
    let signer = SigningKey::from_bytes(&[0x22; 32]);
    let beacon = beacon_body(&signer, &DOMAIN, 7, 41, 1_795_000_000_000_000, 3);
    let envelope = filler(1, 171);
    let cases: [(Kind, u32, u32, &[u8]); 6] = [
        (Kind::Alert, 7, 1, &envelope),
        (Kind::Voice, 0, u32::MAX, &envelope[..40]),
        (Kind::Tail, 127, 128, &[]),
        (Kind::Tail, 128, 0, &[]),
        (Kind::Beacon, 7, 41, &beacon),
        (Kind::Alert, 16_384, 2_097_151, &[]),
    ];
    for (n, (kind, sender, pseq, body)) in cases.into_iter().enumerate() {
        let mut d = seal(
            &key(300),
            300,
            &DOMAIN,
            &PREFIX,
            n as u64,
            kind,
            sender,
            pseq,
            body,
        )
        .unwrap();
        assert_eq!(d[..2], [PLANE_VERSION, 300u32 as u8]);
        assert_eq!(d[2..18], PREFIX);
        assert_eq!(d[18..26], (n as u64).to_be_bytes());
        assert_eq!(peek(&d), Ok(44));
        let inner = open(&key(300), &DOMAIN, &mut d).unwrap();
        assert_eq!(
            inner,
            Inner {
                kind,
                sender,
                pseq,
                body
            },
            "case {n}"
        );
    }
    let b = verify_beacon(&signer.verifying_key(), &DOMAIN, 7, 41, &beacon).unwrap();
    assert_eq!((b.issued_us, b.heard_count), (1_795_000_000_000_000, 3));
}

#[test]
fn every_single_byte_change_fails_to_open() {
    let d = seal_alert(1, 7, 1, &filler(2, 60));
    let mut opened = d.clone();
    assert!(open(&key(1), &DOMAIN, &mut opened).is_ok());
    for i in 0..d.len() {
        for delta in [0x01u8, 0x80, 0xff] {
            let mut t = d.clone();
            t[i] ^= delta;
            let r = open(&key(1), &DOMAIN, &mut t);
            let want = if i == 0 {
                PlaneError::Version(d[0] ^ delta)
            } else {
                PlaneError::Junk
            };
            assert_eq!(r, Err(want), "byte {i} ^ {delta:#x}");
        }
    }
    // Cut or lengthened, too.
    for len in PLANE_MIN_DATAGRAM..d.len() {
        assert!(
            open(&key(1), &DOMAIN, &mut d[..len].to_vec()).is_err(),
            "{len}"
        );
    }
    let mut longer = d.clone();
    longer.push(0);
    assert_eq!(open(&key(1), &DOMAIN, &mut longer), Err(PlaneError::Junk));
}

#[test]
fn another_domain_another_epoch_or_another_secret_does_not_open() {
    let d = seal_alert(1, 7, 1, b"envelope");
    let other_domain = [6u8; 32];
    // The same key bytes under another domain id: the AAD differs.
    assert_eq!(
        open(&key(1), &other_domain, &mut d.clone()),
        Err(PlaneError::Junk)
    );
    assert_eq!(
        open(&key(2), &DOMAIN, &mut d.clone()),
        Err(PlaneError::Junk)
    );
    let stranger = plane_key(&DOMAIN, 1, &[0x67; 32]);
    assert_eq!(
        open(&stranger, &DOMAIN, &mut d.clone()),
        Err(PlaneError::Junk)
    );
    // A failed open leaves the bytes as they were (the tag is checked before decrypting).
    let mut t = d.clone();
    let _ = open(&key(2), &DOMAIN, &mut t);
    assert_eq!(t, d);
}

#[test]
fn too_large_bodies_and_bad_inner_parts_are_refused_when_sealing() {
    let k = key(1);
    let r = seal(
        &k,
        1,
        &DOMAIN,
        &PREFIX,
        0,
        Kind::Alert,
        0,
        0,
        &[0; PLANE_MAX_BODY + 1],
    );
    assert_eq!(
        r,
        Err(PlaneError::TooLarge {
            len: PLANE_MAX_BODY + 1
        })
    );
    assert_eq!(r.unwrap_err().reason(), "plane_too_large");
    let tail = seal(&k, 1, &DOMAIN, &PREFIX, 0, Kind::Tail, 0, 0, b"x");
    assert_eq!(tail, Err(PlaneError::Inner("a tail has a body")));
    let beacon = seal(&k, 1, &DOMAIN, &PREFIX, 0, Kind::Beacon, 0, 0, &[1, 2]);
    assert!(matches!(beacon, Err(PlaneError::Inner(_))));
}

#[test]
fn the_inner_decoder_refuses_what_seal_never_makes() {
    let k = key(1);
    let bad: [(&[u8], &str); 9] = [
        (&[], "no kind"),
        (&[0, 1, 1], "unknown kind"),
        (&[5, 1, 1], "unknown kind"),
        (&[1], "bad varint"),
        (&[1, 7], "bad varint"),
        (&[1, 0x87, 0x00, 1], "non-minimal varint"),
        (&[1, 7, 0x80, 0x00], "non-minimal varint"),
        (&[1, 0xff, 0xff, 0xff, 0xff, 0x1f, 1], "bad varint"),
        (&[3, 7, 1, 0], "a tail has a body"),
    ];
    for (inner, why) in bad {
        assert_eq!(
            decode_inner(inner),
            Err(PlaneError::Inner(why)),
            "{inner:?}"
        );
        // Sealed by a member's broken encoder: opens, then the decoder refuses it.
        // (Below three bytes, the length check refuses it first.)
        let mut d = seal_raw(&k, 1, &DOMAIN, &PREFIX, 0, inner);
        let r = open(&k, &DOMAIN, &mut d);
        assert_eq!(r.unwrap_err().reason(), "plane_malformed", "{inner:?}");
    }
    // u32::MAX is the longest a sender may be.
    assert!(decode_inner(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]).is_ok());
    // A received body longer than any sender makes is malformed, though the datagram fits.
    let mut inner = vec![1, 0, 0];
    inner.resize(3 + PLANE_MAX_BODY + 1, 0);
    let mut d = seal_raw(&k, 1, &DOMAIN, &PREFIX, 0, &inner);
    assert!(d.len() <= PLANE_MAX_DATAGRAM);
    assert!(matches!(
        open(&k, &DOMAIN, &mut d),
        Err(PlaneError::Inner(_))
    ));
}

#[test]
fn open_never_panics_on_any_length() {
    let k = key(1);
    let mut keys = PlaneKeys::new();
    keys.insert(1, key(1));
    for len in 0..=1300usize {
        for seed in 0..3u64 {
            let mut d = filler(seed * 10_000 + len as u64, len);
            if seed > 0 {
                // Past the version check, so the AEAD sees it too.
                if let Some(b) = d.get_mut(0) {
                    *b = PLANE_VERSION;
                }
                if seed == 2
                    && let Some(b) = d.get_mut(1)
                {
                    *b = 1;
                }
            }
            let mut copy = d.clone();
            let err = open(&k, &DOMAIN, &mut copy).expect_err("random bytes never open");
            if !(PLANE_MIN_DATAGRAM..=PLANE_MAX_DATAGRAM).contains(&len) {
                assert_eq!(err, PlaneError::Length { len });
            } else if seed > 0 {
                assert_eq!(err, PlaneError::Junk);
            }
            let _ = keys.open(&DOMAIN, &mut d);
            let _ = decode_inner(&d);
            let _ = Beacon::parse(&d);
        }
    }
}

#[test]
fn peek_checks_length_and_version_only() {
    let d = seal_alert(258, 7, 1, b"x");
    assert_eq!(peek(&d), Ok(2));
    assert_eq!(
        peek(&d[..PLANE_MIN_DATAGRAM - 1]),
        Err(PlaneError::Length { len: 44 })
    );
    assert_eq!(peek(&[]), Err(PlaneError::Length { len: 0 }));
    assert_eq!(
        peek(&[0u8; PLANE_MAX_DATAGRAM + 1]),
        Err(PlaneError::Length { len: 1201 })
    );
    let mut v2 = d.clone();
    v2[0] = 2;
    assert_eq!(peek(&v2), Err(PlaneError::Version(2)));
    assert_eq!(peek(&[1u8; PLANE_MIN_DATAGRAM]), Ok(1));
}

#[test]
fn key_ids_are_classified_with_wrap_at_256() {
    let mut keys = PlaneKeys::new();
    assert_eq!(keys.classify(0), KeyMatch::Unknown, "no key held");
    assert!(keys.insert(299, key(299)));
    assert!(keys.insert(300, key(300)));
    assert_eq!(
        (keys.newest().map(|(e, _)| e), keys.previous()),
        (Some(300), Some(299))
    );
    // 300 mod 256 = 44, 299 mod 256 = 43.
    assert_eq!(keys.classify(44), KeyMatch::Held(300));
    assert_eq!(keys.classify(43), KeyMatch::Held(299));
    for id in 45..=171u8 {
        assert_eq!(keys.classify(id), KeyMatch::Ahead, "{id}");
    }
    for id in (172..=255u8).chain(0..=42) {
        assert_eq!(keys.classify(id), KeyMatch::Unknown, "{id}");
    }
    // Across the wrap: newest 255, so 0..=126 are ahead and 127 is not.
    let mut wrap = PlaneKeys::new();
    wrap.insert(255, key(255));
    assert_eq!(wrap.classify(255), KeyMatch::Held(255));
    assert_eq!(wrap.classify(0), KeyMatch::Ahead);
    assert_eq!(wrap.classify(126), KeyMatch::Ahead);
    assert_eq!(wrap.classify(127), KeyMatch::Unknown);
    assert_eq!(wrap.classify(254), KeyMatch::Unknown);
    wrap.insert(256, key(256));
    assert_eq!(wrap.classify(0), KeyMatch::Held(256));
    assert_eq!(wrap.classify(255), KeyMatch::Held(255));
    assert_eq!(wrap.classify(1), KeyMatch::Ahead);
}

#[test]
fn plane_keys_open_with_the_epoch_the_key_id_names() {
    let mut keys = PlaneKeys::new();
    keys.insert(1, key(1));
    keys.insert(2, key(2));
    for epoch in [1, 2] {
        let mut d = seal_alert(epoch, 7, 1, b"envelope");
        let (e, inner) = keys.open(&DOMAIN, &mut d).unwrap();
        assert_eq!((e, inner.body), (epoch, &b"envelope"[..]));
    }
    let mut ahead = seal_alert(3, 7, 1, b"envelope");
    assert_eq!(keys.open(&DOMAIN, &mut ahead), Err(PlaneError::KeyAhead(3)));
    assert_eq!(
        PlaneError::KeyAhead(3).reason(),
        "plane_key_ahead",
        "held until the update arrives"
    );
    // The end of the overlap: epoch 1 dies at its key id.
    keys.remove(1);
    let mut old = seal_alert(1, 7, 1, b"envelope");
    assert_eq!(keys.open(&DOMAIN, &mut old), Err(PlaneError::UnknownKey(1)));
    assert_eq!(PlaneError::UnknownKey(1).reason(), "plane_unknown_key");
    // Same key id, wrong key (an epoch 256 later sealed it): junk after one AEAD.
    let mut other = seal_alert(258, 7, 1, b"envelope");
    assert_eq!(keys.open(&DOMAIN, &mut other), Err(PlaneError::Junk));
}

#[test]
fn plane_keys_hold_two_epochs_with_distinct_key_ids() {
    let mut keys = PlaneKeys::new();
    assert!(keys.insert(5, key(5)));
    assert!(keys.insert(5 + 256, key(5 + 256)));
    assert_eq!(
        keys.previous(),
        None,
        "same key id as the new newest: dropped"
    );
    assert!(!keys.insert(5, key(5)), "cannot be held beside 261");
    assert!(keys.insert(7, key(7)));
    assert_eq!(keys.previous(), Some(7));
    assert!(!keys.insert(6, key(6)), "older than both");
    assert!(keys.insert(8, key(8)), "newer than the previous");
    assert_eq!(keys.previous(), Some(8));
    keys.remove(261);
    assert_eq!(
        (keys.newest().map(|(e, _)| e), keys.previous()),
        (Some(8), None)
    );
    keys.remove(8);
    assert!(keys.newest().is_none());
    assert_eq!(keys.classify(8), KeyMatch::Unknown);
}

#[test]
fn groups_and_ports_are_derived_from_the_domain_id() {
    let g = group_for(&DOMAIN);
    let mut h = Sha256::new();
    h.update(b"ptt-node/v1/plane-group");
    h.update(DOMAIN);
    let h: [u8; 32] = h.finalize().into();
    assert_eq!(g.v4.octets()[..2], [239, 255]);
    if g.v4 != SSDP_V4 && [h[0], h[1]] != [255, 250] {
        assert_eq!(g.v4.octets()[2..], h[..2]);
    }
    assert_eq!(g.v6.octets()[..2], [0xff, 0x12]);
    assert_eq!(g.v6.octets()[2..12], [0; 10]);
    assert_eq!(g.v6.octets()[12..], h[2..6]);
    assert_eq!(g.port, 20_000 + u16::from_be_bytes([h[6], h[7]]) % 10_000);
    assert_ne!(group_for(&[6u8; 32]), g);
    let (mut lo, mut hi) = (u16::MAX, 0);
    for i in 0..2000u32 {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        let g = group_for(&d);
        assert!(g.v4.is_multicast() && g.v6.is_multicast());
        assert_ne!(g.v4, SSDP_V4);
        (lo, hi) = (lo.min(g.port), hi.max(g.port));
    }
    assert!(
        lo >= 20_000 && hi <= 29_999 && hi - lo > 9_000,
        "{lo}..{hi}"
    );
}

#[test]
fn the_ssdp_group_is_never_chosen() {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&[255, 250, 1, 2, 3, 4, 0x27, 0x10]);
    let g = group_from_hash(&h);
    assert_eq!(g.v4, Ipv4Addr::new(239, 255, 1, 2));
    assert_eq!(g.v6, "ff12::102:304".parse::<Ipv6Addr>().unwrap());
    assert_eq!(g.port, 20_000);
    h[2..4].copy_from_slice(&[255, 250]);
    assert_eq!(group_from_hash(&h).v4, Ipv4Addr::new(239, 255, 255, 251));
    h[..2].copy_from_slice(&[255, 249]);
    assert_eq!(group_from_hash(&h).v4, Ipv4Addr::new(239, 255, 255, 249));
    // A real domain id whose hash starts with ff fa (1 in 65,536): found by search.
    let domain = (0u32..)
        .map(|i| {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            d
        })
        .find(|d| {
            let mut h = Sha256::new();
            h.update(LABEL_PLANE_GROUP);
            h.update(d);
            h.finalize()[..2] == [255, 250]
        })
        .unwrap();
    assert_ne!(group_for(&domain).v4, SSDP_V4);
}

#[test]
fn beacons_verify_only_for_their_sender_pseq_domain_and_fields() {
    let signer = SigningKey::from_bytes(&[0x22; 32]);
    let vk = signer.verifying_key();
    let body = beacon_body(&signer, &DOMAIN, 7, 41, 1_795_000_000_000_000, 3);
    assert_eq!(body.len(), 8 + 1 + 64);
    assert!(verify_beacon(&vk, &DOMAIN, 7, 41, &body).is_ok());
    assert_eq!(
        verify_beacon(&vk, &DOMAIN, 8, 41, &body),
        Err(PlaneError::BeaconSignature)
    );
    assert_eq!(
        verify_beacon(&vk, &DOMAIN, 7, 42, &body),
        Err(PlaneError::BeaconSignature)
    );
    assert_eq!(
        verify_beacon(&vk, &[6u8; 32], 7, 41, &body),
        Err(PlaneError::BeaconSignature)
    );
    let other = SigningKey::from_bytes(&[0x23; 32]).verifying_key();
    assert_eq!(
        verify_beacon(&other, &DOMAIN, 7, 41, &body),
        Err(PlaneError::BeaconSignature)
    );
    assert_eq!(
        PlaneError::BeaconSignature.reason(),
        "plane_beacon_signature"
    );
    for i in 0..body.len() {
        let mut t = body.clone();
        t[i] ^= 0x01;
        assert!(verify_beacon(&vk, &DOMAIN, 7, 41, &t).is_err(), "byte {i}");
    }
    // The signed message is fixed width: the context, 0x00 and 52 bytes.
    let b = Beacon::parse(&body).unwrap();
    let mut msg = Vec::new();
    msg.extend_from_slice(&DOMAIN);
    msg.extend_from_slice(&7u32.to_be_bytes());
    msg.extend_from_slice(&41u32.to_be_bytes());
    msg.extend_from_slice(&1_795_000_000_000_000u64.to_be_bytes());
    msg.extend_from_slice(&3u32.to_be_bytes());
    assert!(keys::verify(
        &vk,
        b"ptt-node/v1/sig/beacon",
        &msg,
        &b.signature
    ));
    assert!(Beacon::parse(&body[..body.len() - 1]).is_err());
    assert!(Beacon::parse(&[body.as_slice(), &[0]].concat()).is_err());
}

#[test]
fn every_refusal_has_its_counter() {
    let cases = [
        (PlaneError::Length { len: 3 }, "plane_malformed"),
        (PlaneError::Version(2), "plane_malformed"),
        (PlaneError::Inner("x"), "plane_malformed"),
        (PlaneError::UnknownKey(1), "plane_unknown_key"),
        (PlaneError::KeyAhead(1), "plane_key_ahead"),
        (PlaneError::Junk, "plane_junk"),
        (PlaneError::TooLarge { len: 2000 }, "plane_too_large"),
        (PlaneError::BeaconSignature, "plane_beacon_signature"),
    ];
    for (e, reason) in cases {
        assert_eq!(e.reason(), reason, "{e}");
    }
    assert_eq!(key_id(0), 0);
    assert_eq!(key_id(255), 255);
    assert_eq!(key_id(256), 0);
    assert_eq!(key_id(u32::MAX), 255);
}

/// What the `plane_datagram` fuzz target checks, over mutations of valid inner parts: an inner
/// part sealed as it is opens to what the decoder says, and what opens seals again to the same
/// bytes (minimal varints: one encoding per inner part).
#[test]
fn inner_parts_have_one_encoding() {
    let k = key(1);
    let signer = SigningKey::from_bytes(&[0x22; 32]);
    let mut seeds: Vec<Vec<u8>> = vec![
        [&[1u8, 7, 1][..], &filler(3, 40)].concat(),
        vec![3, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x80, 0x01],
        [
            &[4u8, 7, 1][..],
            &beacon_body(&signer, &DOMAIN, 7, 1, 1 << 50, 2),
        ]
        .concat(),
    ];
    for round in 0..3000u64 {
        let base = &seeds[(round % 3) as usize];
        let noise = filler(round, 3);
        let mut inner = base.clone();
        let at = noise[0] as usize % inner.len();
        match noise[1] % 4 {
            0 => inner[at] = noise[2],
            1 => inner.truncate(at),
            2 => inner.insert(at, noise[2]),
            _ => inner[at] ^= 1 << (noise[2] % 8),
        }
        let mut d = seal_raw(&k, 1, &DOMAIN, &PREFIX, 9, &inner);
        let original = d.clone();
        let opened = open(&k, &DOMAIN, &mut d);
        if inner.len() < 3 {
            assert_eq!(
                opened,
                Err(PlaneError::Length {
                    len: original.len()
                })
            );
            continue;
        }
        assert_eq!(opened, decode_inner(&inner), "{inner:?}");
        if let Ok(i) = opened {
            let again = seal(&k, 1, &DOMAIN, &PREFIX, 9, i.kind, i.sender, i.pseq, i.body).unwrap();
            assert_eq!(again, original, "{inner:?}");
        }
        if round % 500 == 0 {
            seeds.push(inner);
        }
    }
}
