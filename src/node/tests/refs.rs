//! Updates and cancellations (issue 25): only an alert's sender, or a device the authority
//! made a dispatcher, may update or cancel it; every reader checks, relays carry it unread.

use super::*;
use crate::alert::{AlertRef, MsgType, Reference};
use crate::envelope::Header;

fn dispatcher(on: bool) -> crate::domain::RightsChange {
    crate::domain::RightsChange {
        dispatcher: Some(on),
        ..Default::default()
    }
}

fn opened(v: Verdict) -> Box<ReceivedAlert> {
    match v {
        Verdict::Accept { content: Ok(a), .. } => a,
        other => panic!("not opened: {other:?}"),
    }
}

fn cancel_of(sender: u32, seq: u64) -> AlertBody {
    AlertBody {
        kind: "cancel".into(),
        reference: Some(Reference::Cancel(AlertRef { sender, seq })),
        ..alert("false alarm")
    }
}

/// What `node` would send if it skipped its own check: its real signature over a cancel of
/// (sender, seq), under the channel's real key.
fn forged_cancel(node: &mut Node, sender: u32, seq: u64, now_us: u64) -> Vec<u8> {
    let domain = *node.domain();
    let real = node.seal_alert("alerts", &alert("cover"), now_us).unwrap();
    let env = Envelope::parse(&real.bytes).unwrap();
    let key = node.key_for(1, env.header.epoch, env.header.seq).unwrap();
    envelope::seal(
        &node.secrets.identity,
        &domain,
        &env.header,
        &key,
        &cancel_of(sender, seq).encode(),
    )
}

#[test]
fn only_the_sender_or_a_dispatcher_may_cancel_and_every_reader_checks() {
    let (mut a, mut n, _) = domain_with_authority();
    let relay = enroll(&mut a, "relay", true);
    let relay_cert = relay.cert.clone();
    let mut relay = node(relay);
    for u in a.new_updates() {
        for x in n.iter_mut().chain(std::iter::once(&mut relay)) {
            let _ = x.apply_update(u.as_bytes(), NOW_S);
        }
    }
    for x in n.iter_mut() {
        x.authenticate_peer(&relay_cert.peer_id(), relay_cert.as_bytes(), NOW_S)
            .unwrap();
    }
    for c in n.iter().map(|x| x.cert().clone()).collect::<Vec<_>>() {
        relay
            .authenticate_peer(&c.peer_id(), c.as_bytes(), NOW_S)
            .unwrap();
    }
    let s = n[0].cert().body.device;
    let original = n[0]
        .seal_alert("alerts", &alert("intruder"), NOW_US)
        .unwrap();
    // The sender cancels its own alert: a reader sees a cancel that names it.
    let own = n[0]
        .seal_alert("alerts", &cancel_of(s, original.seq), NOW_US + 1)
        .unwrap();
    let got = opened(n[1].validate(&own.bytes, Arrival::CatchUp, NOW_US + 2));
    assert_eq!(got.msg_type, MsgType::Cancel);
    let r = got.references.expect("names the alert");
    assert_eq!(
        (r.id.as_str(), r.sender_device, r.created_at_us),
        (original.id.as_str(), s, original.seq)
    );
    assert_eq!(r.sender, "s");
    // Another member without the right: its own daemon refuses to seal it...
    assert_eq!(
        n[1].seal_alert("alerts", &cancel_of(s, original.seq), NOW_US + 3)
            .unwrap_err(),
        SealError::NotDispatcher
    );
    // ...and what it signs anyway is refused by every reader, and the sender is charged.
    let forged = forged_cancel(&mut n[1], s, original.seq, NOW_US + 4);
    let m = n[1].cert().body.device;
    assert!(n[0].has_fault_budget(m, NOW_US + 5));
    assert_eq!(
        reject_reason(n[2].validate(&forged, Arrival::CatchUp, NOW_US + 5)),
        "not_dispatcher"
    );
    assert_eq!(n[2].counters().rejected["not_dispatcher"], 1);
    assert!(
        !Rejection::NotDispatcher(1).is_peer_fault(),
        "a relay passes it on in good faith"
    );
    assert_eq!(
        reject_reason(n[0].validate(&forged, Arrival::CatchUp, NOW_US + 5)),
        "not_dispatcher"
    );
    // Each one costs the sender a fault: past its budget (ten), the next is refused before
    // the signature.
    for i in 0..9 {
        let f = forged_cancel(&mut n[1], s, original.seq, NOW_US + 100 + i);
        assert_eq!(
            reject_reason(n[0].validate(&f, Arrival::CatchUp, NOW_US + 100 + i)),
            "not_dispatcher"
        );
    }
    assert!(!n[0].has_fault_budget(m, NOW_US + 200));
    let f = forged_cancel(&mut n[1], s, original.seq, NOW_US + 200);
    assert_eq!(
        reject_reason(n[0].validate(&f, Arrival::CatchUp, NOW_US + 200)),
        "sender_faulty"
    );
    // A relay cannot read it, so it checks the signature and carries it.
    assert!(matches!(
        relay.validate(&forged, Arrival::CatchUp, NOW_US + 5),
        Verdict::Accept {
            content: Err(Unreadable::NotReader),
            ..
        }
    ));
    // The authority makes m a dispatcher: its cancel of s's alert is read by every member.
    let u = a
        .set_rights("m", dispatcher(true), NOW_S, &mut OsRng)
        .unwrap()
        .expect("a change");
    assert!(u.body.keys.is_empty(), "a right re-keys nothing");
    assert_eq!(
        a.set_rights("m", dispatcher(true), NOW_S, &mut OsRng)
            .unwrap(),
        None
    );
    for x in n.iter_mut() {
        x.apply_update(u.as_bytes(), NOW_S).unwrap();
    }
    assert!(n[1].is_dispatcher() && !n[0].is_dispatcher());
    let update = AlertBody {
        severity: Severity::Moderate,
        reference: Some(Reference::Update(AlertRef {
            sender: s,
            seq: original.seq,
        })),
        ..alert("one person, leaving")
    };
    let by_dispatcher = n[1].seal_alert("alerts", &update, NOW_US + 6).unwrap();
    let got = opened(n[2].validate(&by_dispatcher.bytes, Arrival::CatchUp, NOW_US + 7));
    assert_eq!(got.msg_type, MsgType::Update);
    assert_eq!(got.references.unwrap().id, original.id);
    // Read back from the log without the sender's certificate (at start, before any peer
    // shared its roster), the same change.
    let fresh = reload(&n[2]);
    let (h, body) = fresh
        .logged_body(&by_dispatcher.bytes)
        .expect("a change from the log");
    let (r, text) = (body.reference.expect("a reference"), body.text);
    assert_eq!(
        (h.sender, h.seq),
        (n[1].cert().body.device, by_dispatcher.seq)
    );
    assert_eq!(
        r.target(),
        AlertRef {
            sender: s,
            seq: original.seq
        }
    );
    assert_eq!(text, "one person, leaving");
    let (_, plain) = fresh.logged_body(&original.bytes).expect("a plain alert");
    assert_eq!(plain.reference, None);
    // Taking the right away again makes the same kind of message refused.
    let u = a
        .set_rights("m", dispatcher(false), NOW_S, &mut OsRng)
        .unwrap()
        .expect("a change");
    for x in n.iter_mut() {
        x.apply_update(u.as_bytes(), NOW_S).unwrap();
    }
    let again = forged_cancel(&mut n[1], s, original.seq, NOW_US + 9);
    assert_eq!(
        reject_reason(n[2].validate(&again, Arrival::CatchUp, NOW_US + 10)),
        "not_dispatcher"
    );
    // And what the log holds of it no longer counts.
    assert!(n[2].logged_body(&by_dispatcher.bytes).is_none());
}

#[test]
fn a_reference_that_does_not_decode_is_bad_plaintext() {
    let (_, mut n, _) = domain_with_authority();
    let domain = *n[0].domain();
    let real = n[0].seal_alert("alerts", &alert("x"), NOW_US).unwrap();
    let env = Envelope::parse(&real.bytes).unwrap();
    let key = n[0].key_for(1, env.header.epoch, env.header.seq).unwrap();
    // An unknown reference tag (3), then a valid one followed by a stray byte.
    let mut unknown = alert("x").encode();
    unknown.extend_from_slice(&[3, 1, 1]);
    let mut trailing = cancel_of(1, 1).encode();
    trailing.push(0);
    for (i, plain) in [unknown, trailing].into_iter().enumerate() {
        assert!(AlertBody::decode(&plain).is_err());
        let h = Header {
            seq: env.header.seq + 1 + i as u64,
            ..env.header
        };
        let key = n[0].key_for(1, h.epoch, h.seq).unwrap_or(key.clone());
        let bytes = envelope::seal(&n[0].secrets.identity, &domain, &h, &key, &plain);
        assert_eq!(
            reject_reason(n[1].validate(&bytes, Arrival::CatchUp, NOW_US + 10)),
            "bad_plaintext"
        );
    }
}

#[test]
fn only_a_device_with_the_right_declares_an_emergency_and_every_reader_checks() {
    let (mut a, mut n, _) = domain_with_authority();
    let declare = AlertBody {
        severity: Severity::Extreme,
        kind: crate::alert::EMERGENCY_KIND.into(),
        ..alert("man down")
    };
    assert_eq!(
        n[0].seal_alert("alerts", &declare, NOW_US).unwrap_err(),
        SealError::NotEmergency
    );
    assert!(!n[0].may_declare_emergency());
    // What it signs anyway, with the real channel key, is refused by every reader.
    let domain = *n[0].domain();
    let cover = n[0]
        .seal_alert("alerts", &alert("cover"), NOW_US + 1)
        .unwrap();
    let env = Envelope::parse(&cover.bytes).unwrap();
    let key = n[0].key_for(1, env.header.epoch, env.header.seq).unwrap();
    let forged = envelope::seal(
        &n[0].secrets.identity,
        &domain,
        &env.header,
        &key,
        &declare.encode(),
    );
    assert_eq!(
        reject_reason(n[1].validate(&forged, Arrival::CatchUp, NOW_US + 2)),
        "not_emergency"
    );
    assert!(!Rejection::NotEmergency(1).is_peer_fault());
    // With the right, the declaration is sealed and read; a cancellation of one is not a
    // declaration.
    let u = a
        .set_rights(
            "s",
            crate::domain::RightsChange {
                emergency: Some(true),
                ..Default::default()
            },
            NOW_S,
            &mut OsRng,
        )
        .unwrap()
        .expect("a change");
    for x in n.iter_mut() {
        x.apply_update(u.as_bytes(), NOW_S).unwrap();
    }
    assert!(n[0].may_declare_emergency());
    let ok = n[0].seal_alert("alerts", &declare, NOW_US + 3).unwrap();
    let got = opened(n[1].validate(&ok.bytes, Arrival::CatchUp, NOW_US + 4));
    assert_eq!(got.kind, "emergency");
    assert!(crate::node::is_emergency(&declare));
    assert!(!crate::node::is_emergency(&cancel_of(1, 1)));
}
