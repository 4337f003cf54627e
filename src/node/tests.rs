use super::*;
use crate::alert::{AlertBody, ReceivedAlert, Severity};
use crate::bundle::Bundle;
use crate::cert::CertError;
use crate::domain::{Authority, EnrollRequest};
use crate::envelope::{self, Envelope};
use crate::keys::Chain;
use crate::presence::PresenceError;
use crate::update::UpdateError;
use libp2p::PeerId;
use rand_core::OsRng;

mod receipts;
mod refs;
mod rights;

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
        reference: None,
    }
}

struct Domain {
    sender: Node,
    member: Node,
    relay: Node,
}

fn domain() -> Domain {
    let mut a = Authority::create("site", NOW_S, &mut OsRng).unwrap();
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
        Verdict::Receipt { .. } => "receipt",
    }
}

#[test]
fn member_opens_relay_verifies_only() {
    let mut d = domain();
    let sealed = d
        .sender
        .seal_alert("alerts", &alert("gate 3 open"), NOW_US)
        .unwrap();
    match d
        .member
        .validate(&sealed.bytes, Arrival::CatchUp, NOW_US + 5)
    {
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
        d.relay.validate(&sealed.bytes, Arrival::CatchUp, NOW_US),
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
        d.member.validate(&sealed.bytes, Arrival::CatchUp, NOW_US),
        Verdict::Accept { .. }
    ));
    assert_eq!(
        reject_reason(d.member.validate(&sealed.bytes, Arrival::CatchUp, NOW_US)),
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
    let mut a2 = Authority::create("x", NOW_S, &mut OsRng).unwrap();
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
    let mut other = Authority::create("other", NOW_S, &mut OsRng).unwrap();
    let mut outsider = node(enroll(&mut other, "x", false));
    assert_eq!(
        reject_reason(outsider.validate(&sealed.bytes, Arrival::CatchUp, NOW_US)),
        "wrong_domain"
    );

    // Forged signature: same header, signed by a key that is not the sender's.
    let env = Envelope::parse(&sealed.bytes).unwrap();
    let forger = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let key = crate::keys::ChannelSecret([1; 32]).message_key(d.member.domain(), 1, 1, 0);
    let forged = envelope::seal(&forger, d.member.domain(), &env.header, &key, b"x");
    assert_eq!(
        reject_reason(d.member.validate(&forged, Arrival::CatchUp, NOW_US)),
        "bad_signature"
    );

    // Unknown sender.
    let mut h = env.header;
    h.sender = 99;
    let unknown = envelope::seal(&forger, d.member.domain(), &h, &key, b"x");
    assert_eq!(
        reject_reason(d.member.validate(&unknown, Arrival::CatchUp, NOW_US)),
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
        fresh
            .member
            .validate(&wrong_epoch, Arrival::CatchUp, NOW_US),
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
        reject_reason(fresh.member.validate(&wrong_key, Arrival::CatchUp, NOW_US)),
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
            matches!(
                fresh.member.validate(&t, Arrival::CatchUp, NOW_US),
                Verdict::Reject(_)
            ),
            "byte {i}"
        );
    }
}

#[test]
fn peers_must_match_their_certificate_and_domain() {
    let mut d = domain();
    let mut other = Authority::create("other", NOW_S, &mut OsRng).unwrap();
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
    let mut a = Authority::create("site", NOW_S, &mut OsRng).unwrap();
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
fn presence_before_its_certificate_is_held_until_the_certificate_arrives() {
    let mut a = Authority::create("site", NOW_S, &mut OsRng).unwrap();
    let me = enroll(&mut a, "me", false);
    let cam = enroll(&mut a, "cam", false);
    let late = enroll(&mut a, "late", false);
    let (cam_cert, late_cert) = (cam.cert.clone(), late.cert.clone());
    let mut n = node(me);
    let mut c = node(cam);
    let mut l = node(late);
    let p = c.issue_presence(vec!["/ip4/10.0.0.2/tcp/1".into()], None, NOW_US);
    let cam_dev = cam_cert.body.device;
    assert_eq!(
        n.learn_presence(p.as_bytes()),
        Err(PresenceError::UnknownDevice(cam_dev))
    );
    assert!(n.learn_waiting_presence().is_empty(), "no certificate yet");
    // Another device's certificate does not release it.
    n.learn_certificate(late_cert.as_bytes(), NOW_S).unwrap();
    assert!(n.learn_waiting_presence().is_empty());
    n.learn_certificate(cam_cert.as_bytes(), NOW_S).unwrap();
    assert_eq!(n.learn_waiting_presence(), vec![p.as_bytes().to_vec()]);
    assert!(n.learn_waiting_presence().is_empty(), "learned once");
    let held = n
        .presence_records()
        .find(|r| r.body.device == cam_dev)
        .unwrap();
    assert_eq!(held.body.addresses, vec!["/ip4/10.0.0.2/tcp/1".to_string()]);

    // A record with a broken signature is held like any other (its device is unknown), and
    // dropped when the certificate shows it is not the device's.
    let mut m = node(enroll(&mut a, "m", false));
    let mut forged = l.issue_presence(vec![], None, NOW_US).as_bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(m.learn_presence(&forged).is_err());
    m.learn_certificate(late_cert.as_bytes(), NOW_S).unwrap();
    assert!(m.learn_waiting_presence().is_empty());
    assert!(
        m.presence_records()
            .all(|r| r.body.device != late_cert.body.device)
    );

    // Of two records of one device, the newer waits whatever the order they came in.
    let mut d2 = node(enroll(&mut a, "twice", false));
    let older = d2.issue_presence(vec!["/ip4/10.0.0.9/tcp/1".into()], None, NOW_US);
    let newer = d2.issue_presence(vec!["/ip4/10.0.0.3/tcp/1".into()], None, NOW_US);
    assert!(newer.body.issued_us > older.body.issued_us);
    let mut v = node(enroll(&mut a, "v", false));
    assert!(v.learn_presence(newer.as_bytes()).is_err());
    assert!(v.learn_presence(older.as_bytes()).is_err());
    v.learn_certificate(d2.cert().as_bytes(), NOW_S).unwrap();
    assert_eq!(v.learn_waiting_presence(), vec![newer.as_bytes().to_vec()]);

    // At most MAX_PRESENCE_WAITING records wait; the oldest go first.
    let mut w = node(enroll(&mut a, "w", false));
    let mut certs = vec![];
    for k in 0..=MAX_PRESENCE_WAITING {
        let mut d = node(enroll(&mut a, &format!("d{k}"), false));
        let r = d.issue_presence(vec![], None, NOW_US);
        assert!(w.learn_presence(r.as_bytes()).is_err());
        certs.push(d.cert().clone());
    }
    for c in &certs {
        w.learn_certificate(c.as_bytes(), NOW_S).unwrap();
    }
    let learned = w.learn_waiting_presence();
    assert_eq!(learned.len(), MAX_PRESENCE_WAITING);
    assert!(
        w.presence_records()
            .all(|r| r.body.device != certs[0].body.device)
    );
}

#[test]
fn known_certificates_and_presence_skip_only_the_checks_already_made() {
    let mut a = Authority::create("site", NOW_S, &mut OsRng).unwrap();
    let mut n = node(enroll(&mut a, "me", false));
    let cam = enroll(&mut a, "cam", false);
    let cert = cam.cert.clone();
    let mut c = node(cam);
    assert_eq!(n.learn_certificate(cert.as_bytes(), NOW_S), Ok(true));
    assert_eq!(n.learn_certificate(cert.as_bytes(), NOW_S), Ok(false));
    // Same device, other bytes (a broken authority signature): checked in full, refused.
    let mut bad = cert.as_bytes().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        n.learn_certificate(&bad, NOW_S),
        Err(AuthError::Cert(CertError::BadSignature))
    ));
    assert!(n.authenticate_peer(&cert.peer_id(), &bad, NOW_S).is_err());
    // The known bytes still go through the time check.
    assert!(matches!(
        n.authenticate_peer(&cert.peer_id(), cert.as_bytes(), NOW_S + 400 * 86_400),
        Err(AuthError::Cert(CertError::Expired { .. }))
    ));
    assert!(
        n.authenticate_peer(&cert.peer_id(), cert.as_bytes(), NOW_S)
            .is_ok()
    );

    // Presence: a newer record with a broken signature is refused; one no newer than the
    // record held is ignored.
    let first = c.issue_presence(vec!["/ip4/10.0.0.2/tcp/1".into()], None, NOW_US);
    assert_eq!(n.learn_presence(first.as_bytes()), Ok(true));
    let second = c.issue_presence(vec!["/ip4/10.0.0.3/tcp/1".into()], None, NOW_US);
    let mut forged = second.as_bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(matches!(
        n.learn_presence(&forged),
        Err(PresenceError::BadSignature(_))
    ));
    assert_eq!(n.learn_presence(first.as_bytes()), Ok(false));
    assert_eq!(n.learn_presence(second.as_bytes()), Ok(true));
    let held = n
        .presence_records()
        .find(|r| r.body.device == cert.body.device);
    assert_eq!(
        held.unwrap().body.addresses,
        vec!["/ip4/10.0.0.3/tcp/1".to_string()]
    );
}

#[test]
fn directed_messages_open_only_at_their_recipient() {
    let mut a = Authority::create("site", NOW_S, &mut OsRng).unwrap();
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
    match nodes[1].validate(&sealed.bytes, Arrival::CatchUp, NOW_US) {
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
                nodes[i].validate(&sealed.bytes, Arrival::CatchUp, NOW_US),
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

/// Three members and an authority, every member knowing every other.
fn domain_with_authority() -> (Authority, Vec<Node>, Vec<Certificate>) {
    let mut a = Authority::create("site", NOW_S, &mut OsRng).unwrap();
    let bundles: Vec<Bundle> = ["s", "m", "lost"]
        .iter()
        .map(|n| enroll(&mut a, n, false))
        .collect();
    let certs: Vec<Certificate> = bundles.iter().map(|b| b.cert.clone()).collect();
    let mut nodes: Vec<Node> = bundles.into_iter().map(node).collect();
    // Bring every node to the authority's revision (enrolments made updates).
    let updates: Vec<Vec<u8>> = a
        .new_updates()
        .iter()
        .map(|u| u.as_bytes().to_vec())
        .collect();
    for n in nodes.iter_mut() {
        for u in &updates {
            let _ = n.apply_update(u, NOW_S);
        }
        assert_eq!(n.revision(), a.descriptor().body.revision);
        for c in &certs {
            n.authenticate_peer(&c.peer_id(), c.as_bytes(), NOW_S)
                .unwrap();
        }
    }
    (a, nodes, certs)
}

#[test]
fn revocation_update_applies_in_order_and_shuts_the_device_out() {
    let (mut a, mut n, certs) = domain_with_authority();
    let before = n[0].seal_alert("alerts", &alert("before"), NOW_US).unwrap();
    let u1 = a.revoke("lost", NOW_S + 60, &mut OsRng).unwrap();
    let u2 = a
        .set_policy(
            "alerts",
            &crate::domain::PolicyChange {
                rate_per_min: Some(600),
                ..Default::default()
            },
            NOW_S + 60,
            &mut OsRng,
        )
        .unwrap()
        .unwrap();
    // Out of order: refused as a gap (the shell holds it), then in order.
    assert!(
        n[1].apply_update(u2.as_bytes(), NOW_S)
            .unwrap_err()
            .is_gap()
    );
    let applied = n[1].apply_update(u1.as_bytes(), NOW_S).unwrap();
    assert_eq!(
        applied.revoked,
        vec![(certs[2].body.device, certs[2].peer_id())]
    );
    assert_eq!(applied.new_keys, vec![(1, 2), (PLANE_CHANNEL, 2)]);
    assert!(n[1].apply_update(u2.as_bytes(), NOW_S).is_ok());
    assert!(matches!(
        n[1].apply_update(u1.as_bytes(), NOW_S),
        Err(UpdateError::Stale { .. })
    ));
    // A tampered update is refused.
    let mut t = u1.as_bytes().to_vec();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert_eq!(
        n[0].apply_update(&t, NOW_S).unwrap_err(),
        UpdateError::BadSignature
    );
    n[0].apply_update(u1.as_bytes(), NOW_S).unwrap();
    // The revoked device applies it too (say a stale member relays it): it learns it is out.
    let own = n[2].apply_update(u1.as_bytes(), NOW_S).unwrap();
    assert!(own.revoked_self && own.new_keys.is_empty());
    assert!(matches!(
        n[2].seal_alert("alerts", &alert("x"), NOW_US + 1),
        Err(SealError::Revoked)
    ));

    // Members seal with epoch 2; the revoked device holds no key for it.
    let after = n[0]
        .seal_alert("alerts", &alert("after"), NOW_US + 70_000_000)
        .unwrap();
    assert_eq!(Envelope::parse(&after.bytes).unwrap().header.epoch, 2);
    match n[1].validate(&after.bytes, Arrival::CatchUp, NOW_US + 70_000_001) {
        Verdict::Accept { content: Ok(a), .. } => assert_eq!(a.text, "after"),
        v => panic!("member: {v:?}"),
    }
    // Before the revocation, "lost" read epoch 1 alerts; with only its old keys it cannot
    // read the new one (also when it replays its keys from the bundle: same keys).
    let mut lost_copy = domain_with_authority_lost_view(&n[2], &after.bytes);
    assert!(matches!(
        lost_copy.take(),
        Some(Err(Unreadable::UnknownEpoch { epoch: 2, .. }))
    ));
    // Its handshake is refused, and what it sends after the update is refused.
    assert_eq!(
        n[1].authenticate_peer(&certs[2].peer_id(), certs[2].as_bytes(), NOW_S),
        Err(AuthError::Revoked(certs[2].body.device))
    );
    // The alert sealed before the revocation stays readable from the log.
    assert!(matches!(n[1].open_stored(&before.bytes, NOW_US), Ok(Ok(_))));
    // The rate change arrived with the second update.
    assert_eq!(n[1].descriptor().policy(1).rate_per_min, 600);
}

/// What the revoked node makes of an envelope (it validates as a relay would).
fn domain_with_authority_lost_view(
    lost: &Node,
    bytes: &[u8],
) -> Option<Result<Box<ReceivedAlert>, Unreadable>> {
    // The revoked node rejects nothing of a member; it just cannot open it.
    lost.open_stored(bytes, NOW_US + 70_000_001).ok()
}

#[test]
fn revoked_sender_is_refused_live() {
    let (mut a, mut n, _) = domain_with_authority();
    let u = a.revoke("s", NOW_S, &mut OsRng).unwrap();
    // "s" seals before it hears of its revocation; the member has applied it.
    let late = n[0].seal_alert("alerts", &alert("late"), NOW_US).unwrap();
    n[1].apply_update(u.as_bytes(), NOW_S).unwrap();
    assert_eq!(
        reject_reason(n[1].validate(&late.bytes, Arrival::CatchUp, NOW_US)),
        "revoked"
    );
}

#[test]
fn flooding_sender_is_rate_limited_per_channel_and_others_are_not() {
    let (_, mut n, _) = domain_with_authority();
    let p = n[1].descriptor().policy(1);
    let burst = p.burst as u64;
    let mut accepted = 0;
    let mut limited = 0;
    // A sender that bypasses its own limit (a compromised member) sends 2 × burst at once.
    let mut seals = vec![];
    for i in 0..2 * burst {
        // Its own node refuses beyond the burst: bypass by resetting its buckets.
        n[0].buckets.clear();
        seals.push(n[0].seal_alert("alerts", &alert("f"), NOW_US + i).unwrap());
    }
    for s in &seals {
        match n[1].validate(
            &s.bytes,
            Arrival::Live { topic_channel: 1 },
            NOW_US + 2 * burst,
        ) {
            Verdict::Accept { .. } => accepted += 1,
            Verdict::Reject(Rejection::RateLimited { .. }) => limited += 1,
            v => panic!("{v:?}"),
        }
    }
    assert_eq!((accepted, limited), (burst, burst));
    // An honest member's alert at the same moment is accepted.
    let honest = n[2]
        .seal_alert("alerts", &alert("honest"), NOW_US + 3 * burst)
        .unwrap();
    assert!(matches!(
        n[1].validate(
            &honest.bytes,
            Arrival::Live { topic_channel: 1 },
            NOW_US + 3 * burst
        ),
        Verdict::Accept { .. }
    ));
    // The limited ones were not recorded as seen: catch-up (no topic) takes them later.
    assert!(matches!(
        n[1].validate(
            &seals.last().unwrap().bytes,
            Arrival::CatchUp,
            NOW_US + 60_000_000
        ),
        Verdict::Accept { .. }
    ));
    // After a minute the budget is back (rate 3000/min > burst): live ones pass again.
    n[0].buckets.clear();
    let later = n[0]
        .seal_alert("alerts", &alert("later"), NOW_US + 61_000_000)
        .unwrap();
    assert!(matches!(
        n[1].validate(
            &later.bytes,
            Arrival::Live { topic_channel: 1 },
            NOW_US + 61_000_000
        ),
        Verdict::Accept { .. }
    ));
    // The sender's own node refuses beyond its burst with a clear error.
    let mut own_err = None;
    for i in 0..=burst {
        if let Err(e) = n[2].seal_alert("alerts", &alert("x"), NOW_US + 100_000_000 + i) {
            own_err = Some(e);
            break;
        }
    }
    assert!(
        matches!(own_err, Some(SealError::RateLimited { .. })),
        "{own_err:?}"
    );
}

#[test]
fn over_the_limit_is_refused_before_the_signature_and_forgeries_spend_no_budget() {
    let (_, mut n, _) = domain_with_authority();
    let burst = n[1].descriptor().policy(1).burst as u64;
    let seal = |node: &mut Node, i: u64| {
        node.buckets.clear();
        node.seal_alert("alerts", &alert("f"), NOW_US + i).unwrap()
    };
    // Forgeries in the sender's name (a flipped signature bit) are refused for their
    // signature and take nothing from its budget: a whole burst of them, then a whole burst
    // of genuine alerts, which are all accepted.
    for i in 0..burst {
        let mut forged = seal(&mut n[0], i).bytes;
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            reject_reason(n[1].validate(
                &forged,
                Arrival::Live { topic_channel: 1 },
                NOW_US + burst
            )),
            "bad_signature"
        );
    }
    for i in 0..burst {
        let s = seal(&mut n[0], burst + i);
        assert!(matches!(
            n[1].validate(
                &s.bytes,
                Arrival::Live { topic_channel: 1 },
                NOW_US + 2 * burst
            ),
            Verdict::Accept { .. }
        ));
    }
    // Spent: now even a forgery is refused as over the limit, that is without its signature
    // being checked.
    let mut forged = seal(&mut n[0], 3 * burst).bytes;
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        reject_reason(n[1].validate(
            &forged,
            Arrival::Live { topic_channel: 1 },
            NOW_US + 3 * burst
        )),
        "rate_limited"
    );
    // By catch-up (no topic) the forgery is still checked and refused for its signature.
    assert_eq!(
        reject_reason(n[1].validate(&forged, Arrival::CatchUp, NOW_US + 3 * burst)),
        "bad_signature"
    );
}

/// Issue 24, finding 1: signed ciphertext that does not open, or opens to no alert, is the
/// sender's doing. It takes a token of the sender's budget like a good alert (so a member
/// cannot make every reader derive keys and decrypt for free), and a copy of it sent again is
/// a replay, refused for a lookup, on every path.
#[test]
fn signed_garbage_spends_the_senders_budget_and_is_a_replay_after() {
    let (_, mut n, _) = domain_with_authority();
    let burst = n[1].descriptor().policy(1).burst as u64;
    let domain = *n[0].domain();
    let wrong_key = crate::keys::ChannelSecret([7; 32]).message_key(&domain, 1, 1, 0);
    // The sender's own signature over a header of its own and a ciphertext under a key
    // nobody holds (or over a plaintext that is no alert, under the right key).
    let garbage = |node: &mut Node, i: u64, good_key: bool| {
        node.buckets.clear();
        let real = node.seal_alert("alerts", &alert("g"), NOW_US + i).unwrap();
        let env = Envelope::parse(&real.bytes).unwrap();
        let key = if good_key {
            node.key_for(1, env.header.epoch, env.header.seq).unwrap()
        } else {
            wrong_key.clone()
        };
        envelope::seal(
            &node.secrets.identity,
            &domain,
            &env.header,
            &key,
            b"not an alert",
        )
    };
    let live = Arrival::Live { topic_channel: 1 };
    let at = NOW_US + 10 * burst;
    let mut sent = vec![];
    for i in 0..burst {
        let g = garbage(&mut n[0], i, i % 2 == 0);
        // The fault budget would stop this first: it is the next test's.
        n[1].fault_buckets.clear();
        let want = if i % 2 == 0 {
            "bad_plaintext"
        } else {
            "decrypt"
        };
        assert_eq!(
            reject_reason(n[1].validate(&g, live, at)),
            want,
            "garbage {i}"
        );
        sent.push(g);
    }
    // The whole burst went on garbage: the sender's next genuine alert waits for a token.
    n[0].buckets.clear();
    n[1].fault_buckets.clear();
    let good = n[0]
        .seal_alert("alerts", &alert("late"), NOW_US + burst)
        .unwrap();
    assert_eq!(
        reject_reason(n[1].validate(&good.bytes, live, at)),
        "rate_limited"
    );
    // Sent again, by anyone and by any path, each garbage envelope is a replay: no signature
    // check, no key, no decryption.
    let verified = n[1].counters().signatures_verified;
    for g in &sent {
        assert_eq!(
            reject_reason(n[1].validate(g, Arrival::CatchUp, at)),
            "duplicate"
        );
        assert_eq!(
            reject_reason(n[1].validate(g, Arrival::Repair, at)),
            "duplicate"
        );
    }
    assert_eq!(n[1].counters().signatures_verified, verified);
}

/// Issue 24, finding 1: what the rate budget does not cover (pulled paths, channels without a
/// limit) the fault budget does: past ten signed envelopes that do not open, a sender costs no
/// signature on any path until its budget refills, and nobody else is affected.
#[test]
fn envelopes_that_do_not_open_use_up_the_senders_fault_budget_on_every_path() {
    let (_, mut n, _) = domain_with_authority();
    let domain = *n[0].domain();
    let wrong_key = crate::keys::ChannelSecret([7; 32]).message_key(&domain, 1, 1, 0);
    let garbage = |node: &mut Node, i: u64| {
        let real = node.seal_alert("alerts", &alert("g"), NOW_US + i).unwrap();
        let env = Envelope::parse(&real.bytes).unwrap();
        envelope::seal(
            &node.secrets.identity,
            &domain,
            &env.header,
            &wrong_key,
            b"x",
        )
    };
    let at = NOW_US + 1_000_000;
    let faults = u64::from(super::rate_limit::FAULT_POLICY.burst);
    // Catch-up and repair spend no rate budget: the fault budget still counts them.
    for i in 0..faults {
        let arrival = if i % 2 == 0 {
            Arrival::CatchUp
        } else {
            Arrival::Repair
        };
        let g = garbage(&mut n[0], i);
        assert_eq!(reject_reason(n[1].validate(&g, arrival, at)), "decrypt");
    }
    let verified = n[1].counters().signatures_verified;
    let more = garbage(&mut n[0], faults);
    let good = n[0]
        .seal_alert("alerts", &alert("good"), NOW_US + faults + 1)
        .unwrap();
    let live = Arrival::Live { topic_channel: 1 };
    for arrival in [Arrival::CatchUp, Arrival::Repair, live] {
        assert_eq!(
            reject_reason(n[1].validate(&more, arrival, at)),
            "sender_faulty"
        );
        assert_eq!(
            reject_reason(n[1].validate(&good.bytes, arrival, at)),
            "sender_faulty"
        );
    }
    assert_eq!(
        n[1].counters().signatures_verified,
        verified,
        "a faulty sender cost signatures"
    );
    // Another sender is not affected.
    let other = n[2]
        .seal_alert("alerts", &alert("other"), NOW_US + 5)
        .unwrap();
    assert!(matches!(
        n[1].validate(&other.bytes, live, at),
        Verdict::Accept { content: Ok(_), .. }
    ));
    // Six seconds later one fault is back: the sender's genuine alert is accepted.
    assert!(matches!(
        n[1].validate(&good.bytes, live, at + 6_000_000),
        Verdict::Accept { content: Ok(_), .. }
    ));
}

#[test]
fn ratchet_periods_are_erased_after_the_window_with_simulated_time() {
    let (_, mut n, _) = domain_with_authority();
    let hour = 3_600_000_000u64;
    let day = 24 * hour;
    // Alerts an hour apart over two days.
    let sealed: Vec<Sealed> = (0..48)
        .map(|h| {
            n[0].seal_alert("alerts", &alert("tick"), NOW_US + h * hour)
                .unwrap()
        })
        .collect();
    let reader = &mut n[1];
    // Everything opens while nothing is erased.
    for s in &sealed {
        assert!(matches!(reader.open_stored(&s.bytes, NOW_US), Ok(Ok(_))));
    }
    let start = reader.key_period(1, 1).unwrap();
    // Two days later with a one-day window: the first day's periods go.
    let now = NOW_US + 2 * day;
    let erased = reader.erase_keys(now, day);
    assert!(erased >= 24, "erased {erased}");
    assert_eq!(reader.key_period(1, 1), Some(start + erased));
    assert_eq!(reader.counters().keys_erased, erased);
    let mut gone = 0;
    for s in &sealed {
        let seq = Envelope::parse(&s.bytes).unwrap().header.seq;
        match reader.open_stored(&s.bytes, NOW_US) {
            Ok(Ok(_)) => assert!(seq + day >= now - hour, "an old one opened"),
            Ok(Err(Unreadable::KeyErased { .. })) => {
                gone += 1;
                assert!(seq + day < now, "a recent one was erased");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(gone >= 23, "{gone} erased");
    // The saved state holds only the chain from the window's start: nothing before it can
    // be derived from what is kept.
    let state = reader.key_state();
    let chain = &state.iter().find(|(c, e, _)| (*c, *e) == (1, 1)).unwrap().2;
    assert_eq!(chain.period, Chain::period_of(chain.rotate_secs, now - day));
    assert_eq!(chain.secret_at(chain.period - 1), None);
    // Erasing again at the same time erases nothing more.
    assert_eq!(reader.erase_keys(now, day), 0);
}

#[test]
fn a_clock_behind_the_held_key_chain_seals_from_the_chain_start() {
    let (_, mut n, _) = domain_with_authority();
    let day = 24 * 3_600_000_000u64;
    // The sender holds the chain from now on only; then its clock falls a day behind.
    n[0].erase_keys(NOW_US, 0);
    let period = n[0].key_period(1, 1).unwrap();
    let state = n[0].key_state();
    let rotate = state
        .iter()
        .find(|(c, e, _)| (*c, *e) == (1, 1))
        .unwrap()
        .2
        .rotate_secs;
    let chain_start_us = period * u64::from(rotate) * 1_000_000;
    assert!(chain_start_us > NOW_US - day);
    let s = n[0]
        .seal_alert("alerts", &alert("behind"), NOW_US - day)
        .unwrap();
    assert_eq!(s.seq, chain_start_us);
    match n[1].validate(&s.bytes, Arrival::CatchUp, NOW_US) {
        Verdict::Accept { content: Ok(a), .. } => assert_eq!(a.text, "behind"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_sender_whose_clock_is_behind_by_hours_or_ahead_by_minutes_is_still_read() {
    let (_, mut n, _) = domain_with_authority();
    let hour = 3_600_000_000u64;
    // The receiver erased what is older than its one-day window.
    n[1].erase_keys(NOW_US, 24 * hour);
    // In increasing order: a clock set back keeps seq strictly increasing.
    let skews = [
        -(23 * hour as i64),
        -(5 * hour as i64),
        MAX_AHEAD_US as i64 - 1,
        MAX_AHEAD_US as i64,
    ];
    for (i, skew) in skews.into_iter().enumerate() {
        let sender_now = (NOW_US as i64 + skew) as u64;
        n[0].buckets.clear();
        let s = n[0]
            .seal_alert("alerts", &alert(&format!("skew {i}")), sender_now)
            .unwrap();
        if skew > 0 {
            // (Behind the chain it holds, the sender seals from the chain's start instead.)
            assert_eq!(s.seq, sender_now);
        }
        match n[1].validate(&s.bytes, Arrival::CatchUp, NOW_US) {
            Verdict::Accept { content: Ok(a), .. } => assert_eq!(a.text, format!("skew {i}")),
            v => panic!("skew {skew} µs: {v:?}"),
        }
    }
    // Ahead by hours: refused until this node's clock is within reach of it, then accepted
    // (by catch-up, which fetches it again: the refusal is not final).
    n[0].buckets.clear();
    let ahead = n[0]
        .seal_alert("alerts", &alert("ahead"), NOW_US + 5 * hour)
        .unwrap();
    assert_eq!(
        reject_reason(n[1].validate(&ahead.bytes, Arrival::CatchUp, NOW_US)),
        "too_far_ahead"
    );
    assert!(matches!(
        n[1].validate(
            &ahead.bytes,
            Arrival::CatchUp,
            NOW_US + 5 * hour - MAX_AHEAD_US
        ),
        Verdict::Accept { content: Ok(_), .. }
    ));
    // Beyond the window behind: authentic, forwarded, but its key is gone here.
    let mut old = domain_with_authority();
    old.1[1].erase_keys(NOW_US + 48 * hour, 24 * hour);
    let s = old.1[0]
        .seal_alert("alerts", &alert("stale clock"), NOW_US)
        .unwrap();
    assert!(matches!(
        old.1[1].validate(&s.bytes, Arrival::CatchUp, NOW_US + 48 * hour),
        Verdict::Accept {
            content: Err(Unreadable::KeyErased { .. }),
            ..
        }
    ));
}

#[test]
fn voice_packets_open_at_members_relay_unread_and_never_pass_for_alerts() {
    use crate::alert::Severity;
    use crate::node::voice::VoiceVerdict;
    use crate::voice::{VoiceBody, VoiceKind};
    let mut d = domain();
    let ch = d.member.descriptor().channel_by_name("alerts").unwrap().id;
    let reason = |v: VoiceVerdict| match v {
        VoiceVerdict::Accept(Ok(_)) => "opened",
        VoiceVerdict::Accept(Err(_)) => "relayed",
        VoiceVerdict::Reject(r) => r.reason(),
    };
    let claim = |seq: u64| VoiceBody {
        burst: seq,
        index: 0,
        severity: Severity::Severe,
        kind: VoiceKind::Claim,
    };
    let c = d.sender.seal_voice("alerts", NOW_US, claim).unwrap();
    match d.member.validate_voice(&c.bytes, ch, NOW_US) {
        VoiceVerdict::Accept(Ok(v)) => {
            assert_eq!((v.sender_name.as_str(), v.body.burst), ("s", c.seq));
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(
        reason(d.relay.validate_voice(&c.bytes, ch, NOW_US)),
        "relayed"
    );
    assert_eq!(
        reason(d.member.validate_voice(&c.bytes, ch, NOW_US)),
        "duplicate"
    );
    // A voice packet is not an alert, and an alert is not a voice packet, even at a relay.
    assert_eq!(
        reject_reason(d.relay.validate(&c.bytes, Arrival::CatchUp, NOW_US)),
        "bad_signature"
    );
    let a = d.sender.seal_alert("alerts", &alert("x"), NOW_US).unwrap();
    assert_eq!(
        reason(d.relay.validate_voice(&a.bytes, ch, NOW_US)),
        "bad_signature"
    );
    // A claim whose burst id is not its own seq (an early id wins contests): refused.
    let forged = d
        .sender
        .seal_voice("alerts", NOW_US + 1_000, |_| claim(1))
        .unwrap();
    assert_eq!(
        reason(d.member.validate_voice(&forged.bytes, ch, NOW_US)),
        "bad_plaintext"
    );
    // A frame far past the longest burst (an emergency's, 300 s): refused too.
    let late = d
        .sender
        .seal_voice("alerts", NOW_US + 400_000_000, |_| VoiceBody {
            burst: c.seq,
            index: 1,
            severity: Severity::Severe,
            kind: VoiceKind::Frame(vec![1, 2, 3]),
        })
        .unwrap();
    assert_eq!(
        reason(
            d.member
                .validate_voice(&late.bytes, ch, NOW_US + 400_000_000)
        ),
        "bad_plaintext"
    );
    // Sealed before this node started (a recording replayed after a restart): stale.
    let mut fresh = domain();
    let old = fresh.sender.seal_voice("alerts", NOW_US, claim).unwrap();
    fresh.member.start_voice_at(NOW_US + 1);
    assert_eq!(
        reason(fresh.member.validate_voice(&old.bytes, ch, NOW_US + 2)),
        "stale"
    );
    assert_eq!(d.member.counters().voice_received, 1);
    assert_eq!(d.relay.counters().voice_relayed, 1);
}

#[test]
fn only_a_live_envelope_is_held_to_the_topic_it_came_on() {
    let mut d = domain();
    let sealed = d
        .sender
        .seal_alert("alerts", &alert("door 4 forced"), NOW_US)
        .unwrap();
    // Live on the topic of another channel: refused before any other check.
    let elsewhere = Arrival::Live {
        topic_channel: sealed.channel + 1,
    };
    assert_eq!(
        reject_reason(d.member.validate(&sealed.bytes, elsewhere, NOW_US)),
        "wrong_topic"
    );
    // The same bytes pulled by catch-up have no topic: accepted.
    assert!(matches!(
        d.member.validate(&sealed.bytes, Arrival::CatchUp, NOW_US),
        Verdict::Accept { content: Ok(_), .. }
    ));
    // On its own topic (at a relay, which has not seen it yet): accepted too.
    let own = Arrival::Live {
        topic_channel: sealed.channel,
    };
    assert!(matches!(
        d.relay.validate(&sealed.bytes, own, NOW_US),
        Verdict::Accept { .. }
    ));
}

/// The node a restart makes of `n`: its bundle's identity and certificate, the descriptor it
/// holds and its saved key state.
fn reload(n: &Node) -> Node {
    Node::new(
        NodeConfig {
            secrets: crate::keys::DeviceSecrets {
                identity: n.secrets.identity.clone(),
                x25519: n.secrets.x25519.clone(),
            },
            cert: n.cert.clone(),
            descriptor: n.descriptor.clone(),
            channel_secrets: n.key_state(),
        },
        0,
    )
}

fn plane_epochs(n: &Node) -> Vec<u32> {
    n.plane_secrets().iter().map(|(e, _)| *e).collect()
}

#[test]
fn every_device_of_a_new_domain_holds_plane_epoch_1_and_no_envelope_uses_it() {
    let d = domain();
    for n in [&d.sender, &d.member, &d.relay] {
        assert_eq!(n.plane_epoch(), Some(1));
        assert_eq!(plane_epochs(n), vec![1]);
    }
    // One secret for the whole domain, which is no channel key.
    assert_eq!(d.sender.plane_secrets()[0].1, d.relay.plane_secrets()[0].1);
    assert!(d.relay.readable_channels().is_empty());
    assert!(!d.member.carried_channels().contains(&PLANE_CHANNEL));
    assert!(matches!(
        d.member.key_for(PLANE_CHANNEL, 1, NOW_US),
        Err(Unreadable::UnknownEpoch { .. })
    ));
}

#[test]
fn enabling_the_plane_reaches_every_member_by_update_without_re_enrolment() {
    let mut a = Authority::create_without_plane("old", false, NOW_S, &mut OsRng).unwrap();
    let mut nodes: Vec<Node> = [("m", false), ("r", true)]
        .iter()
        .map(|(name, relay)| node(enroll(&mut a, name, *relay)))
        .collect();
    let earlier: Vec<Vec<u8>> = a
        .new_updates()
        .iter()
        .map(|u| u.as_bytes().to_vec())
        .collect();
    let u = a.enable_plane(NOW_S, &mut OsRng).unwrap();
    for n in nodes.iter_mut() {
        assert_eq!(n.plane_epoch(), None);
        for e in &earlier {
            let _ = n.apply_update(e, NOW_S);
        }
        let applied = n.apply_update(u.as_bytes(), NOW_S).unwrap();
        assert_eq!(applied.new_keys, vec![(PLANE_CHANNEL, 1)]);
        assert_eq!(n.plane_epoch(), Some(1));
        // Nothing to expire: one epoch held.
        assert!(!n.expire_plane(NOW_US + PLANE_OVERLAP_US));
        assert!(
            n.key_state()
                .iter()
                .any(|(c, e, _)| (*c, *e) == (PLANE_CHANNEL, 1))
        );
    }
    assert_eq!(nodes[0].plane_secrets()[0].1, nodes[1].plane_secrets()[0].1);
}

#[test]
fn after_a_new_plane_epoch_the_previous_one_is_kept_600_s_then_erased_for_good() {
    let (mut a, mut n, _) = domain_with_authority();
    let u = a.revoke("lost", NOW_S, &mut OsRng).unwrap();
    let old = n[0].plane_secrets()[0].1.clone();
    // The revoked device gets no key of the new epoch.
    n[2].apply_update(u.as_bytes(), NOW_S).unwrap();
    assert_eq!(n[2].plane_epoch(), Some(1));
    let member = &mut n[0];
    member.apply_update(u.as_bytes(), NOW_S).unwrap();
    // It sends under epoch 2 at once and still receives under 1.
    assert_eq!(member.plane_epoch(), Some(2));
    assert_eq!(plane_epochs(member), vec![2, 1]);
    assert_eq!(member.plane_secrets()[1].1, old);
    assert_ne!(member.plane_secrets()[0].1, old);
    // A restart within the overlap: the saved state holds both, and the stored update (with
    // the time it was applied) tells the reloaded node when the overlap started.
    let mut restarted = reload(member);
    assert!(restarted.recall_update(u.as_bytes(), NOW_US));
    let end = NOW_US + PLANE_OVERLAP_US;
    for m in [&mut *member, &mut restarted] {
        assert!(!m.expire_plane(end - 1));
        assert_eq!(plane_epochs(m), vec![2, 1]);
        assert!(m.expire_plane(end));
        assert_eq!(plane_epochs(m), vec![2]);
        assert!(!m.expire_plane(end + 1), "nothing left to erase");
        assert!(
            m.key_state()
                .iter()
                .all(|(c, e, _)| (*c, *e) != (PLANE_CHANNEL, 1)),
            "the erased epoch is gone from the state to save"
        );
    }
    // And it stays gone after a reload.
    let again = reload(member);
    assert_eq!(plane_epochs(&again), vec![2]);
    // Restarted without the stored update (pruned): the overlap's start is unknown, so the
    // previous epoch goes at the first expiry.
    let (mut a, mut n, _) = domain_with_authority();
    let u = a.rotate_plane(NOW_S, &mut OsRng).unwrap();
    n[1].apply_update(u.as_bytes(), NOW_S).unwrap();
    let mut forgot = reload(&n[1]);
    assert_eq!(plane_epochs(&forgot), vec![2, 1]);
    // Another update (no plane key in it) tells it nothing.
    assert!(!forgot.recall_update(a.new_updates()[0].as_bytes(), NOW_US));
    assert!(forgot.expire_plane(NOW_US));
    assert_eq!(plane_epochs(&forgot), vec![2]);
}

#[test]
fn two_plane_epochs_in_a_row_keep_only_the_two_newest() {
    let (mut a, mut n, _) = domain_with_authority();
    let u2 = a.rotate_plane(NOW_S, &mut OsRng).unwrap();
    let u3 = a.rotate_plane(NOW_S + 10, &mut OsRng).unwrap();
    let m = &mut n[1];
    m.apply_update(u2.as_bytes(), NOW_S).unwrap();
    m.apply_update(u3.as_bytes(), NOW_S + 10).unwrap();
    assert_eq!(plane_epochs(m), vec![3, 2]);
    assert!(
        m.key_state()
            .iter()
            .all(|(c, e, _)| (*c, *e) != (PLANE_CHANNEL, 1))
    );
    // Epoch 2's overlap runs from the update that brought epoch 3.
    assert!(!m.expire_plane((NOW_S + 10) * 1_000_000 + PLANE_OVERLAP_US - 1));
    assert!(m.expire_plane((NOW_S + 10) * 1_000_000 + PLANE_OVERLAP_US));
    assert_eq!(plane_epochs(m), vec![3]);
}

/// Every way an envelope arrives, for the `alerts` channel (1) of [`domain_with_authority`].
const ARRIVALS: [Arrival; 4] = [
    Arrival::Live { topic_channel: 1 },
    Arrival::CatchUp,
    Arrival::Multicast,
    Arrival::Repair,
];

fn voice_reason(v: voice::VoiceVerdict) -> &'static str {
    match v {
        voice::VoiceVerdict::Accept(Ok(_)) => "opened",
        voice::VoiceVerdict::Accept(Err(_)) => "relayed",
        voice::VoiceVerdict::Reject(r) => r.reason(),
    }
}

fn claim(seq: u64) -> crate::voice::VoiceBody {
    crate::voice::VoiceBody {
        burst: seq,
        index: 0,
        severity: Severity::Severe,
        kind: crate::voice::VoiceKind::Claim,
    }
}

/// Flips the last bit of the signature: the header, and so the id, stay genuine.
fn forge(bytes: &[u8]) -> Vec<u8> {
    let mut f = bytes.to_vec();
    let last = f.len() - 1;
    f[last] ^= 1;
    f
}

#[test]
fn a_replay_costs_no_signature_whichever_way_it_comes() {
    let (_, mut n, _) = domain_with_authority();
    let sent = n[0].seal_alert("alerts", &alert("a"), NOW_US).unwrap();
    assert!(matches!(
        n[1].validate(&sent.bytes, Arrival::CatchUp, NOW_US),
        Verdict::Accept { content: Ok(_), .. }
    ));
    let verified = n[1].counters().signatures_verified;
    assert_eq!(verified, 1);
    for arrival in ARRIVALS {
        assert_eq!(
            reject_reason(n[1].validate(&sent.bytes, arrival, NOW_US)),
            "duplicate",
            "{arrival:?}"
        );
    }
    // Below the sender's floor: too old, also without a signature check.
    let old = n[0].seal_alert("alerts", &alert("b"), NOW_US + 1).unwrap();
    let sender = n[0].cert().body.device;
    n[1].replay().raise_floor(sender, old.seq);
    for arrival in ARRIVALS {
        assert_eq!(
            reject_reason(n[1].validate(&old.bytes, arrival, NOW_US)),
            "too_old",
            "{arrival:?}"
        );
    }
    assert_eq!(n[1].counters().signatures_verified, verified);

    // Voice: its own window, the same order.
    let c = n[0].seal_voice("alerts", NOW_US + 2, claim).unwrap();
    assert_eq!(
        voice_reason(n[1].validate_voice(&c.bytes, 1, NOW_US + 2)),
        "opened"
    );
    let verified = n[1].counters().signatures_verified;
    for arrival in ARRIVALS {
        assert_eq!(
            voice_reason(n[1].validate_voice_arrival(&c.bytes, arrival, NOW_US + 2)),
            "duplicate",
            "{arrival:?}"
        );
    }
    assert_eq!(n[1].counters().signatures_verified, verified);
    assert_eq!(n[1].counters().rejected.get("voice_duplicate"), Some(&4));
}

#[test]
fn a_forged_header_with_a_genuine_unseen_id_never_shadows_the_genuine_envelope() {
    let (_, mut n, _) = domain_with_authority();
    for (i, arrival) in ARRIVALS.into_iter().enumerate() {
        let now = NOW_US + i as u64 * 1_000;
        let genuine = n[0].seal_alert("alerts", &alert("real"), now).unwrap();
        let before = n[1].counters().signatures_verified;
        assert_eq!(
            reject_reason(n[1].validate(&forge(&genuine.bytes), arrival, now)),
            "bad_signature",
            "{arrival:?}"
        );
        // The forgery reached the signature (its id was new), and recorded nothing.
        assert_eq!(n[1].counters().signatures_verified, before + 1);
        match n[1].validate(&genuine.bytes, arrival, now) {
            Verdict::Accept { content: Ok(a), .. } => assert_eq!(a.text, "real"),
            v => panic!("{arrival:?}: {v:?}"),
        }
        let v = n[0].seal_voice("alerts", now + 1, claim).unwrap();
        assert_eq!(
            voice_reason(n[1].validate_voice_arrival(&forge(&v.bytes), arrival, now + 1)),
            "bad_signature",
            "{arrival:?}"
        );
        assert_eq!(
            voice_reason(n[1].validate_voice_arrival(&v.bytes, arrival, now + 1)),
            "opened",
            "{arrival:?}"
        );
    }
}

#[test]
fn a_seq_more_than_300_s_ahead_is_refused_before_the_signature() {
    let (_, mut n, _) = domain_with_authority();
    for (i, arrival) in ARRIVALS.into_iter().enumerate() {
        let now = NOW_US + i as u64 * 1_000_000;
        n[0].buckets.clear();
        n[0].voice_buckets.clear();
        let edge = n[0]
            .seal_alert("alerts", &alert("edge"), now + MAX_AHEAD_US)
            .unwrap();
        let beyond = n[0]
            .seal_alert("alerts", &alert("beyond"), now + MAX_AHEAD_US + 1)
            .unwrap();
        assert_eq!(beyond.seq, now + MAX_AHEAD_US + 1);
        let voice_edge = n[0]
            .seal_voice("alerts", now + MAX_AHEAD_US + 2, claim)
            .unwrap();
        let voice_beyond = n[0]
            .seal_voice("alerts", now + MAX_AHEAD_US + 3, claim)
            .unwrap();
        let before = n[1].counters().signatures_verified;
        assert_eq!(
            reject_reason(n[1].validate(&beyond.bytes, arrival, now)),
            "too_far_ahead",
            "{arrival:?}"
        );
        assert_eq!(
            voice_reason(n[1].validate_voice_arrival(&voice_beyond.bytes, arrival, now + 2)),
            "too_far_ahead",
            "{arrival:?}"
        );
        assert_eq!(n[1].counters().signatures_verified, before);
        assert!(matches!(
            n[1].validate(&edge.bytes, arrival, now),
            Verdict::Accept { content: Ok(_), .. }
        ));
        assert_eq!(
            voice_reason(n[1].validate_voice_arrival(&voice_edge.bytes, arrival, now + 2)),
            "opened",
            "{arrival:?}"
        );
    }
    assert_eq!(n[1].counters().rejected.get("too_far_ahead"), Some(&4));
    assert_eq!(
        n[1].counters().rejected.get("voice_too_far_ahead"),
        Some(&4)
    );
    // Clocks differ: the peer that passed it on is not at fault.
    assert!(!Rejection::TooFarAhead(1).is_peer_fault());
}

#[test]
fn multicast_spends_the_senders_budget_and_repair_does_not() {
    let (mut a, mut n, _) = domain_with_authority();
    let one = crate::domain::PolicyChange {
        rate_per_min: Some(1),
        burst: Some(1),
        ..Default::default()
    };
    let u = a
        .set_policy("alerts", &one, NOW_S, &mut OsRng)
        .unwrap()
        .unwrap();
    n[1].apply_update(u.as_bytes(), NOW_S).unwrap();
    let sent: Vec<Sealed> = (0..4)
        .map(|i| {
            n[0].buckets.clear();
            n[0].seal_alert("alerts", &alert("m"), NOW_US + i).unwrap()
        })
        .collect();
    let at = NOW_US + 10;
    assert!(matches!(
        n[1].validate(&sent[0].bytes, Arrival::Multicast, at),
        Verdict::Accept { .. }
    ));
    let before = n[1].counters().signatures_verified;
    assert_eq!(
        reject_reason(n[1].validate(&sent[1].bytes, Arrival::Multicast, at)),
        "rate_limited"
    );
    // Live gossip draws on the same budget.
    assert_eq!(
        reject_reason(n[1].validate(&sent[2].bytes, Arrival::Live { topic_channel: 1 }, at)),
        "rate_limited"
    );
    assert_eq!(n[1].counters().signatures_verified, before);
    // A repair (like catch-up) is paced by this node: no budget, the limited ones come so.
    for s in &sent[1..] {
        assert!(matches!(
            n[1].validate(&s.bytes, Arrival::Repair, at),
            Verdict::Accept { .. }
        ));
    }

    // Voice: multicast spends the voice budget (100 packets at once), repair does not.
    let burst = u64::from(voice::VOICE_POLICY.burst);
    let packets: Vec<Sealed> = (0..=burst)
        .map(|i| {
            n[0].voice_buckets.clear();
            n[0].seal_voice("alerts", at + i, claim).unwrap()
        })
        .collect();
    let reasons: Vec<&str> = packets
        .iter()
        .map(|p| voice_reason(n[1].validate_voice_arrival(&p.bytes, Arrival::Multicast, at)))
        .collect();
    assert!(reasons[..burst as usize].iter().all(|r| *r == "opened"));
    assert_eq!(reasons[burst as usize], "rate_limited");
    assert_eq!(
        voice_reason(n[1].validate_voice_arrival(
            &packets[burst as usize].bytes,
            Arrival::Repair,
            at
        )),
        "opened"
    );
}

/// Issue 24, finding 7: a revoked device's presence is no longer verified, kept, flooded or
/// listed.
#[test]
fn a_revoked_devices_presence_is_dropped_refused_and_not_searched() {
    let (mut a, mut n, certs) = domain_with_authority();
    let lost_device = certs[2].body.device;
    let p = n[2].issue_presence(vec!["/ip4/10.0.0.3/tcp/1".into()], None, NOW_US);
    assert_eq!(n[0].learn_presence(p.as_bytes()), Ok(true));
    let listed = |n: &Node| {
        n.search(&Default::default())
            .iter()
            .any(|f| f.cert.body.device == lost_device)
    };
    assert!(listed(&n[0]));
    let u = a.revoke("lost", NOW_S + 60, &mut OsRng).unwrap();
    n[0].apply_update(u.as_bytes(), NOW_S + 60).unwrap();
    // The record held is gone, a newer one is refused before any signature, and search no
    // longer lists the device.
    assert!(
        n[0].presence_records()
            .all(|r| r.body.device != lost_device)
    );
    let again = n[2].issue_presence(vec!["/ip4/10.0.0.3/tcp/2".into()], None, NOW_US + 1);
    assert_eq!(
        n[0].learn_presence(again.as_bytes()),
        Err(crate::presence::PresenceError::Revoked(lost_device))
    );
    assert!(!listed(&n[0]));
}

/// Issue 24, finding 1: a key-cache miss used to cost a walk from the chain's oldest period
/// (up to 10 000 HKDF steps, 5.6 ms); with checkpoints every 64 periods, once the way was
/// walked a miss costs at most 64 steps, and a checkpoint never outlives erasure.
#[test]
fn a_key_miss_costs_at_most_a_checkpoint_of_ratchet_steps() {
    let (_, mut n, _) = domain_with_authority();
    let m = &mut n[1];
    let p0 = m.key_period(1, 1).expect("a chain for alerts");
    let rotate = u64::from(m.descriptor().policy(1).rotate_secs);
    let seq = |period: u64| period * rotate * 1_000_000;
    // 70 distinct periods, far and near alternately: more than the key cache holds.
    let periods: Vec<u64> = (0..70)
        .map(|i| {
            if i % 2 == 0 {
                p0 + 4_990 - i
            } else {
                p0 + 10 + i
            }
        })
        .collect();
    let before = m.ratchet_steps();
    for p in &periods {
        m.key_for(1, 1, seq(*p)).expect("key");
    }
    let steps = m.ratchet_steps() - before;
    // The first far period walks the way once; every other miss starts at a checkpoint.
    let bound = 4_990 + 70 * crate::keys::RATCHET_CHECKPOINT_EVERY;
    assert!(
        steps <= bound,
        "{steps} ratchet steps, at most {bound} expected"
    );
    // Without checkpoints: the sum of the distances, about 175 000.
    let walks: u64 = periods.iter().map(|p| p - p0).sum();
    assert!(
        walks > 10 * bound,
        "the test's periods are too close: {walks}"
    );
    // The same keys, whichever way they were derived.
    let chain = m
        .key_state()
        .into_iter()
        .find(|(c, e, _)| (*c, *e) == (1, 1))
        .unwrap()
        .2;
    let direct = chain
        .secret_at(p0 + 4_990)
        .unwrap()
        .message_key(m.domain(), 1, 1, p0 + 4_990);
    let domain = *m.domain();
    let via = m.key_for(1, 1, seq(p0 + 4_990)).unwrap();
    let sealed = via.seal(&[0; 12], &domain.0, b"x");
    assert_eq!(
        direct.open(&[0; 12], &domain.0, &sealed).as_deref(),
        Some(&b"x"[..])
    );
}
