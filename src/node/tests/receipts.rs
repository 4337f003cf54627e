//! Receipts (issue 25, `proto/receipts.md`): sealed by readers, checked by relays, opened by
//! readers, never confused with alerts, on their own budget.

use super::*;
use crate::alert::Via;
use crate::receipt::{self, Ack, Opened, ReceiptBody};

fn body(sender: u32, seq: u64) -> ReceiptBody {
    ReceiptBody::new(
        &[Opened {
            sender,
            seq,
            at_us: seq + 2_000,
            via: Via::Gossip,
        }],
        vec![Ack {
            sender,
            seq,
            text: "on it".into(),
        }],
    )
}

#[test]
fn a_reader_s_receipt_is_checked_by_relays_and_opened_by_readers_only() {
    let mut d = domain();
    let s_dev = d.sender.cert().body.device;
    let m_dev = d.member.cert().body.device;
    let a = d
        .sender
        .seal_alert("alerts", &alert("gate"), NOW_US)
        .unwrap();
    let r = d
        .member
        .seal_receipt(1, None, &body(s_dev, a.seq), NOW_US + 10)
        .unwrap();
    assert_eq!(r.channel, receipt::receipt_channel(1));
    assert_eq!(d.member.counters().receipts_sent, 1);
    // The sender opens it: who, which alert, when, how, and the acknowledgement.
    match d
        .sender
        .validate(&r.bytes, Arrival::Live { topic_channel: 1 }, NOW_US + 20)
    {
        Verdict::Receipt {
            content: Ok(got), ..
        } => {
            assert_eq!(got.author, m_dev);
            assert_eq!(got.author_name, "m");
            assert_eq!((got.channel, got.channel_name.as_str()), (1, "alerts"));
            assert_eq!(got.opened.len(), 1);
            assert_eq!((got.opened[0].sender, got.opened[0].seq), (s_dev, a.seq));
            assert_eq!(got.opened[0].at_us, a.seq + 2_000);
            assert_eq!(got.acks[0].text, "on it");
        }
        v => panic!("sender: {v:?}"),
    }
    assert_eq!(d.sender.counters().receipts_received, 1);
    // A relay checks it (and would forward and store it) but cannot read it.
    assert!(matches!(
        d.relay.validate(&r.bytes, Arrival::CatchUp, NOW_US + 20),
        Verdict::Receipt {
            content: Err(Unreadable::NotReader),
            ..
        }
    ));
    assert_eq!(d.relay.counters().receipts_relayed, 1);
    // Once only.
    assert_eq!(
        reject_reason(d.relay.validate(&r.bytes, Arrival::CatchUp, NOW_US + 30)),
        "duplicate"
    );
    // On another channel's topic; tampered; a relay's own: refused.
    let r2 = d
        .member
        .seal_receipt(1, None, &body(s_dev, a.seq), NOW_US + 40)
        .unwrap();
    assert_eq!(
        reject_reason(d.sender.validate(
            &r2.bytes,
            Arrival::Live { topic_channel: 2 },
            NOW_US + 50
        )),
        "wrong_topic"
    );
    let mut t = r2.bytes.clone();
    let n = t.len();
    t[n - 1] ^= 1;
    assert_eq!(
        reject_reason(d.sender.validate(&t, Arrival::CatchUp, NOW_US + 50)),
        "bad_signature"
    );
    assert!(matches!(
        d.relay.seal_receipt(1, None, &body(s_dev, a.seq), NOW_US),
        Err(SealError::NotAllowed(_))
    ));
}

#[test]
fn a_receipt_never_passes_for_an_alert_nor_an_alert_for_a_receipt() {
    let mut d = domain();
    let m = &d.member;
    let key = m.key_for(1, m.current_epoch(1).unwrap(), NOW_US).unwrap();
    let header = |channel: u32| crate::envelope::Header {
        version: envelope::VERSION,
        domain_tag: m.domain().tag(),
        channel,
        epoch: m.current_epoch(1).unwrap(),
        sender: m.cert().body.device,
        seq: NOW_US,
    };
    // Signed as an alert, flagged as a receipt: the receipt context does not verify it.
    let as_alert = envelope::seal_kind(
        envelope::Kind::Alert,
        &m.secrets.identity,
        m.domain(),
        &header(receipt::receipt_channel(1)),
        &key,
        &body(1, 5).encode(),
    );
    // Signed as a receipt on an alert channel: the alert context does not verify it.
    let as_receipt = envelope::seal_kind(
        envelope::Kind::Receipt,
        &m.secrets.identity,
        m.domain(),
        &header(1),
        &key,
        &alert("x").encode(),
    );
    for bytes in [as_alert, as_receipt] {
        assert_eq!(
            reject_reason(d.sender.validate(&bytes, Arrival::CatchUp, NOW_US + 5)),
            "bad_signature"
        );
    }
}

#[test]
fn receipts_spend_their_own_budget_not_the_channel_s_alert_rate() {
    let mut d = domain();
    let s_dev = d.sender.cert().body.device;
    let mut sent = 0;
    let mut limited = None;
    for i in 0..2 * u64::from(RECEIPT_POLICY.burst) {
        match d
            .member
            .seal_receipt(1, None, &body(s_dev, NOW_US + i), NOW_US + i)
        {
            Ok(_) => sent += 1,
            Err(e) => {
                limited = Some(e);
                break;
            }
        }
    }
    assert_eq!(sent, RECEIPT_POLICY.burst);
    assert!(
        matches!(limited, Some(SealError::RateLimited { .. })),
        "{limited:?}"
    );
    // The alert budget is whole.
    assert!(
        d.member
            .seal_alert("alerts", &alert("x"), NOW_US + 100)
            .is_ok()
    );
    // And a receipt that does not decode is the sender's fault, like an alert's.
    let m = &mut d.member;
    let epoch = m.current_epoch(1).unwrap();
    let key = m.key_for(1, epoch, NOW_US + 200).unwrap();
    let bad = envelope::seal_kind(
        envelope::Kind::Receipt,
        &m.secrets.identity,
        m.domain(),
        &crate::envelope::Header {
            version: envelope::VERSION,
            domain_tag: m.domain().tag(),
            channel: receipt::receipt_channel(1),
            epoch,
            sender: m.cert().body.device,
            seq: NOW_US + 200,
        },
        &key,
        b"\x00\x00",
    );
    assert_eq!(
        reject_reason(d.sender.validate(&bad, Arrival::CatchUp, NOW_US + 300)),
        "bad_plaintext"
    );
}

#[test]
fn a_directed_message_s_receipt_goes_to_its_sender_only() {
    let mut d = domain();
    let s_dev = d.sender.cert().body.device;
    let a = d.sender.seal_direct("m", &alert("for m"), NOW_US).unwrap();
    let r = d
        .member
        .seal_receipt(0, Some(s_dev), &body(s_dev, a.seq), NOW_US + 10)
        .unwrap();
    assert_eq!(r.channel, receipt::receipt_channel(0));
    assert!(matches!(
        d.sender
            .validate(&r.bytes, Arrival::Live { topic_channel: 0 }, NOW_US + 20),
        Verdict::Receipt { content: Ok(_), .. }
    ));
    assert!(matches!(
        d.relay.validate(&r.bytes, Arrival::CatchUp, NOW_US + 20),
        Verdict::Receipt {
            content: Err(Unreadable::NotReader),
            ..
        }
    ));
    assert!(matches!(
        d.member
            .seal_receipt(0, None, &body(s_dev, a.seq), NOW_US + 30),
        Err(SealError::Invalid(_))
    ));
}

#[test]
fn a_receipt_under_an_epoch_not_held_yet_opens_once_its_update_arrives() {
    let (mut a, mut n, _) = domain_with_authority();
    let s_dev = n[0].cert().body.device;
    let alert_sealed = n[0].seal_alert("alerts", &alert("gate"), NOW_US).unwrap();
    // A new epoch (the revocation of "lost"): m applies it, s does not yet.
    let u = a.revoke("lost", NOW_S + 60, &mut OsRng).unwrap();
    n[1].apply_update(u.as_bytes(), NOW_S + 60).unwrap();
    let r = n[1]
        .seal_receipt(1, None, &body(s_dev, alert_sealed.seq), NOW_US + 70_000_000)
        .unwrap();
    assert!(matches!(
        n[0].validate(&r.bytes, Arrival::CatchUp, NOW_US + 70_000_001),
        Verdict::Receipt {
            content: Err(Unreadable::UnknownEpoch { .. }),
            ..
        }
    ));
    assert!(matches!(
        n[0].reopen_receipt(&r.bytes),
        Err(Some(Unreadable::UnknownEpoch { .. }))
    ));
    n[0].apply_update(u.as_bytes(), NOW_S + 60).unwrap();
    let got = n[0]
        .reopen_receipt(&r.bytes)
        .expect("opens with the new epoch");
    assert_eq!(got.opened[0].seq, alert_sealed.seq);
    // An alert is no receipt.
    assert_eq!(n[0].reopen_receipt(&alert_sealed.bytes).err(), Some(None));
}
