use super::*;
use crate::alert::Severity;
use crate::bundle::Bundle;
use crate::domain::{Authority, EnrollRequest};
use rand_core::OsRng;

const NOW_S: u64 = 1_800_000_000;
const NOW_US: u64 = NOW_S * 1_000_000;

fn enroll(a: &mut Authority, name: &str, relay_only: bool) -> Bundle {
    a.enroll(
        &EnrollRequest {
            name: name.into(),
            relay_only,
            ..Default::default()
        },
        NOW_S,
        &mut OsRng,
    )
    .unwrap()
    .0
}

fn node(b: Bundle) -> Node {
    Node::new(b.into_node_config(std::path::Path::new("test")).unwrap(), 0)
}

fn alert(text: &str) -> AlertBody {
    AlertBody {
        severity: Severity::Severe,
        kind: "intrusion".into(),
        text: text.into(),
        location: None,
        attributes: vec![("zone".into(), "north".into())],
    }
}

struct Domain {
    sender: Node,
    member: Node,
    relay: Node,
}

fn domain() -> Domain {
    let mut a = Authority::create("site", &mut OsRng).unwrap();
    let s = enroll(&mut a, "s", false);
    let m = enroll(&mut a, "m", false);
    let r = enroll(&mut a, "r", true);
    let (sc, mc, rc) = (s.cert.clone(), m.cert.clone(), r.cert.clone());
    let mut d = Domain {
        sender: node(s),
        member: node(m),
        relay: node(r),
    };
    for n in [&mut d.sender, &mut d.member, &mut d.relay] {
        for c in [&sc, &mc, &rc] {
            n.authenticate_peer(&c.peer_id(), c.as_bytes(), NOW_S)
                .unwrap();
        }
    }
    d
}

fn reject_reason(v: Verdict) -> &'static str {
    match v {
        Verdict::Reject(r) => r.reason(),
        Verdict::Accept { .. } => "accepted",
    }
}

#[test]
fn member_opens_relay_verifies_only() {
    let mut d = domain();
    let sealed = d
        .sender
        .seal_alert("alerts", &alert("gate 3 open"), NOW_US)
        .unwrap();
    match d.member.validate(&sealed.bytes, NOW_US + 5) {
        Verdict::Accept { content: Ok(a), .. } => {
            assert_eq!(a.text, "gate 3 open");
            assert_eq!(a.sender, "s");
            assert_eq!(a.channel, "alerts");
            assert_eq!(a.id, sealed.id);
            assert_eq!(a.created_at_us, NOW_US);
            assert_eq!(a.received_at_us, NOW_US + 5);
        }
        v => panic!("member: {v:?}"),
    }
    assert!(matches!(
        d.relay.validate(&sealed.bytes, NOW_US),
        Verdict::Accept {
            content: Err(Unreadable::NotReader),
            ..
        }
    ));
    assert_eq!(d.member.counters().alerts_received, 1);
    assert_eq!(d.relay.counters().alerts_relayed, 1);
    assert!(d.relay.readable_channels().is_empty());
}

#[test]
fn relay_and_unauthorised_cannot_send() {
    let mut d = domain();
    assert!(matches!(
        d.relay.seal_alert("alerts", &alert("x"), NOW_US),
        Err(SealError::NotAllowed(_))
    ));
    assert!(matches!(
        d.sender.seal_alert("nope", &alert("x"), NOW_US),
        Err(SealError::UnknownChannel(_))
    ));
}

#[test]
fn replay_is_rejected_and_counted() {
    let mut d = domain();
    let sealed = d.sender.seal_alert("alerts", &alert("a"), NOW_US).unwrap();
    assert!(matches!(
        d.member.validate(&sealed.bytes, NOW_US),
        Verdict::Accept { .. }
    ));
    assert_eq!(
        reject_reason(d.member.validate(&sealed.bytes, NOW_US)),
        "duplicate"
    );
    assert_eq!(d.member.counters().rejected.get("duplicate"), Some(&1));
}

#[test]
fn sequence_numbers_increase_even_when_the_clock_stalls_or_goes_back() {
    let mut d = domain();
    let a = d.sender.seal_alert("alerts", &alert("1"), NOW_US).unwrap();
    let b = d.sender.seal_alert("alerts", &alert("2"), NOW_US).unwrap();
    let c = d
        .sender
        .seal_alert("alerts", &alert("3"), NOW_US - 1_000_000)
        .unwrap();
    assert!(a.seq < b.seq && b.seq < c.seq);
    // A restarted node continues after the last stored sequence number.
    let mut a2 = Authority::create("x", &mut OsRng).unwrap();
    let s = enroll(&mut a2, "s", false);
    let mut n = Node::new(
        s.into_node_config(std::path::Path::new("t")).unwrap(),
        NOW_US + 10,
    );
    assert_eq!(
        n.seal_alert("alerts", &alert("x"), NOW_US).unwrap().seq,
        NOW_US + 11
    );
}

#[test]
fn each_fault_has_its_own_error() {
    let mut d = domain();
    let sealed = d.sender.seal_alert("alerts", &alert("a"), NOW_US).unwrap();

    // Wrong domain: a node of another domain.
    let mut other = Authority::create("other", &mut OsRng).unwrap();
    let mut outsider = node(enroll(&mut other, "x", false));
    assert_eq!(
        reject_reason(outsider.validate(&sealed.bytes, NOW_US)),
        "wrong_domain"
    );

    // Forged signature: same header, signed by a key that is not the sender's.
    let env = Envelope::parse(&sealed.bytes).unwrap();
    let forger = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let key = ChannelSecret([1; 32]).message_key(d.member.domain(), 1, 1);
    let forged = envelope::seal(&forger, d.member.domain(), &env.header, &key, b"x");
    assert_eq!(
        reject_reason(d.member.validate(&forged, NOW_US)),
        "bad_signature"
    );

    // Unknown sender.
    let mut h = env.header;
    h.sender = 99;
    let unknown = envelope::seal(&forger, d.member.domain(), &h, &key, b"x");
    assert_eq!(
        reject_reason(d.member.validate(&unknown, NOW_US)),
        "unknown_sender"
    );

    // Wrong epoch: signed by the real sender, but for an epoch nobody has a key for is
    // authentic (relayed), not readable.
    let mut fresh = domain();
    let mut h = Envelope::parse(
        &fresh
            .sender
            .seal_alert("alerts", &alert("a"), NOW_US)
            .unwrap()
            .bytes,
    )
    .unwrap()
    .header;
    h.epoch = 2;
    h.seq += 1;
    let sk = ed25519_dalek::SigningKey::from_bytes(&fresh.sender.secrets.identity.to_bytes());
    let wrong_epoch = envelope::seal(&sk, fresh.member.domain(), &h, &key, &alert("a").encode());
    assert!(matches!(
        fresh.member.validate(&wrong_epoch, NOW_US),
        Verdict::Accept {
            content: Err(Unreadable::UnknownEpoch {
                channel: 1,
                epoch: 2
            }),
            ..
        }
    ));
    assert_eq!(fresh.member.counters().unknown_epoch, 1);

    // Wrong key: right epoch, sealed under another secret.
    h.epoch = 1;
    h.seq += 1;
    let wrong_key = envelope::seal(&sk, fresh.member.domain(), &h, &key, &alert("a").encode());
    assert_eq!(
        reject_reason(fresh.member.validate(&wrong_key, NOW_US)),
        "decrypt"
    );

    // Tampering with any byte.
    let good = fresh
        .sender
        .seal_alert("alerts", &alert("b"), NOW_US + 100)
        .unwrap()
        .bytes;
    for i in 0..good.len() {
        let mut t = good.clone();
        t[i] ^= 0x20;
        assert!(
            matches!(fresh.member.validate(&t, NOW_US), Verdict::Reject(_)),
            "byte {i}"
        );
    }
}

#[test]
fn peers_must_match_their_certificate_and_domain() {
    let mut d = domain();
    let mut other = Authority::create("other", &mut OsRng).unwrap();
    let x = enroll(&mut other, "x", false);
    assert!(matches!(
        d.member
            .authenticate_peer(&x.cert.peer_id(), x.cert.as_bytes(), NOW_S),
        Err(AuthError::Cert(CertError::BadSignature))
    ));
    let m = d.sender.cert().clone();
    assert!(matches!(
        d.member
            .authenticate_peer(&PeerId::random(), m.as_bytes(), NOW_S),
        Err(AuthError::Cert(CertError::PeerMismatch { .. }))
    ));
    assert!(matches!(
        d.member
            .authenticate_peer(&m.peer_id(), m.as_bytes(), NOW_S + 400 * 86_400),
        Err(AuthError::Cert(CertError::Expired { .. }))
    ));
}

#[test]
fn search_by_kind_radius_and_tag_with_presence_updates() {
    use crate::cert::{Location, Profile};
    let mut a = Authority::create("site", &mut OsRng).unwrap();
    let mut add = |name: &str, kind: &str, lat: f64, tag: &str| {
        let req = EnrollRequest {
            name: name.into(),
            profile: Profile {
                kind: kind.into(),
                location: Some(Location { lat, lon: 127.0 }),
                tags: vec![("zone".into(), tag.into())],
                sleeps: false,
            },
            ..Default::default()
        };
        a.enroll(&req, NOW_S, &mut OsRng).unwrap().0
    };
    let me = add("me", "handheld", 37.0, "north");
    let cam = add("cam", "camera", 37.001, "north");
    let far = add("far", "camera", 38.0, "south");
    let (cam_cert, far_cert) = (cam.cert.clone(), far.cert.clone());
    let mut n = node(me);
    let mut c = node(cam);
    for cert in [&cam_cert, &far_cert] {
        n.learn_certificate(cert.as_bytes(), NOW_S).unwrap();
    }
    let here = Location {
        lat: 37.0,
        lon: 127.0,
    };
    let names = |v: Vec<Found>| v.into_iter().map(|f| f.cert.body.name).collect::<Vec<_>>();
    let q = |kind: Option<&str>, near: Option<f64>, tag: Option<&str>| Search {
        kind: kind.map(String::from),
        near: near.map(|r| (here, r)),
        tags: tag
            .map(|t| vec![("zone".to_string(), t.to_string())])
            .unwrap_or_default(),
    };
    assert_eq!(
        names(n.search(&q(Some("camera"), None, None))),
        vec!["cam", "far"]
    );
    assert_eq!(
        names(n.search(&q(None, Some(500.0), None))),
        vec!["me", "cam"]
    );
    assert_eq!(
        names(n.search(&q(Some("CAMERA"), Some(500.0), None))),
        vec!["cam"]
    );
    assert_eq!(names(n.search(&q(None, None, Some("south")))), vec!["far"]);
    let d = n.search(&q(Some("camera"), Some(500.0), None))[0]
        .distance_m
        .unwrap();
    assert!((d - 111.2).abs() < 1.0, "{d}");

    // The camera moves south and says so; its presence replaces the enrolled profile.
    let moved = Profile {
        kind: "camera".into(),
        location: Some(Location {
            lat: 38.0,
            lon: 127.0,
        }),
        tags: vec![("zone".into(), "south".into())],
        sleeps: false,
    };
    let p = c.issue_presence(vec!["/ip4/10.0.0.2/tcp/1".into()], Some(moved), NOW_US);
    assert_eq!(n.learn_presence(p.as_bytes()), Ok(true));
    assert_eq!(n.learn_presence(p.as_bytes()), Ok(false), "not newer");
    assert_eq!(
        names(n.search(&q(None, None, Some("south")))),
        vec!["cam", "far"]
    );
    let found = n.search(&q(Some("camera"), Some(2_000.0), None));
    assert!(found.is_empty(), "the camera is no longer near");
    let found = n.search(&q(None, None, Some("south")));
    assert_eq!(found[0].addresses, vec!["/ip4/10.0.0.2/tcp/1".to_string()]);
    // Another device cannot speak for the camera.
    let mut forger = node(add("x", "camera", 0.0, "n"));
    let fake = forger.issue_presence(vec![], None, NOW_US + 5);
    assert!(n.learn_presence(fake.as_bytes()).is_err());
}

#[test]
fn directed_messages_open_only_at_their_recipient() {
    let mut a = Authority::create("site", &mut OsRng).unwrap();
    let s = enroll(&mut a, "s", false);
    let m = enroll(&mut a, "m", false);
    let other = enroll(&mut a, "o", false);
    let r = enroll(&mut a, "r", true);
    let certs = [
        s.cert.clone(),
        m.cert.clone(),
        other.cert.clone(),
        r.cert.clone(),
    ];
    let mut nodes: Vec<Node> = [s, m, other, r].into_iter().map(node).collect();
    for n in &mut nodes {
        for c in &certs {
            n.learn_certificate(c.as_bytes(), NOW_S).unwrap();
        }
    }
    let sealed = nodes[0]
        .seal_direct("m", &alert("turn the AC on"), NOW_US)
        .unwrap();
    assert_eq!(sealed.channel, DIRECT_CHANNEL);
    match nodes[1].validate(&sealed.bytes, NOW_US) {
        Verdict::Accept { content: Ok(a), .. } => {
            assert_eq!(a.text, "turn the AC on");
            assert_eq!(a.channel, "direct");
            assert_eq!(a.recipient.as_deref(), Some("m"));
        }
        v => panic!("recipient: {v:?}"),
    }
    for i in [2, 3] {
        assert!(
            matches!(
                nodes[i].validate(&sealed.bytes, NOW_US),
                Verdict::Accept {
                    content: Err(Unreadable::NotReader),
                    ..
                }
            ),
            "node {i} forwards but cannot read"
        );
    }
    // The sender reads its own directed message back from its log.
    match nodes[0].open_stored(&sealed.bytes, NOW_US) {
        Ok(Ok(a)) => {
            assert_eq!(a.text, "turn the AC on");
            assert_eq!(a.recipient.as_deref(), Some("m"));
        }
        other => panic!("sender's own direct: {other:?}"),
    }
    assert!(matches!(
        nodes[0].seal_direct("nobody", &alert("x"), NOW_US),
        Err(SealError::UnknownDevice(_))
    ));
    assert!(matches!(
        nodes[3].seal_direct("m", &alert("x"), NOW_US),
        Err(SealError::NotAllowed(_))
    ));
}
