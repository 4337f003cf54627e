//! What the authority allows a device beyond its certificate: the highest severity it may
//! claim (issue 24), set at enrolment or by a domain update, enforced by every reader.

use super::*;
use crate::node::voice::VoiceVerdict;

fn opened(v: Verdict) -> Box<ReceivedAlert> {
    match v {
        Verdict::Accept { content: Ok(a), .. } => a,
        other => panic!("not opened: {other:?}"),
    }
}

fn claim_at(seq: u64, severity: Severity) -> crate::voice::VoiceBody {
    crate::voice::VoiceBody {
        severity,
        ..claim(seq)
    }
}

#[test]
fn a_claim_above_the_senders_limit_counts_as_the_limit_on_every_path() {
    let (mut a, mut n, _) = domain_with_authority();
    let extreme = AlertBody {
        severity: Severity::Extreme,
        ..alert("intruder")
    };
    // Sealed before anyone hears of the limit.
    let early = n[0].seal_alert("alerts", &extreme, NOW_US).unwrap();
    let voice = n[0]
        .seal_voice("alerts", NOW_US + 1, |seq| claim_at(seq, Severity::Extreme))
        .unwrap();
    let u = a
        .set_max_severity("s", Severity::Moderate, NOW_S, &mut OsRng)
        .unwrap()
        .expect("a change");
    assert!(u.body.keys.is_empty(), "a limit re-keys nothing");
    assert_eq!(
        a.set_max_severity("s", Severity::Moderate, NOW_S, &mut OsRng)
            .unwrap(),
        None,
        "no change, no update"
    );
    assert!(
        a.set_max_severity("nobody", Severity::Minor, NOW_S, &mut OsRng)
            .is_err()
    );
    for node in n.iter_mut() {
        node.apply_update(u.as_bytes(), NOW_S).unwrap();
    }
    // The sender's own daemon now refuses what members would read lower.
    assert_eq!(n[0].max_severity(), Severity::Moderate);
    assert_eq!(
        n[0].seal_alert("alerts", &extreme, NOW_US + 2).unwrap_err(),
        SealError::SeverityNotAllowed {
            claimed: Severity::Extreme,
            max: Severity::Moderate
        }
    );
    assert!(matches!(
        n[0].seal_voice("alerts", NOW_US + 3, |seq| claim_at(seq, Severity::Severe)),
        Err(SealError::SeverityNotAllowed { .. })
    ));
    let moderate = AlertBody {
        severity: Severity::Moderate,
        ..alert("ok")
    };
    let fine = n[0].seal_alert("alerts", &moderate, NOW_US + 4).unwrap();
    // A member reads the early alert at the limit, and says what was claimed; live, from its
    // log, and its voice claim contests the floor at the limit too.
    let got = opened(n[1].validate(&early.bytes, Arrival::CatchUp, NOW_US + 10));
    assert_eq!(got.severity, Severity::Moderate);
    assert_eq!(got.claimed_severity, Some(Severity::Extreme));
    let stored = n[1]
        .open_stored(&early.bytes, NOW_US + 11)
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.severity, stored.claimed_severity),
        (Severity::Moderate, Some(Severity::Extreme))
    );
    let got = opened(n[1].validate(&fine.bytes, Arrival::CatchUp, NOW_US + 12));
    assert_eq!(
        (got.severity, got.claimed_severity),
        (Severity::Moderate, None)
    );
    match n[1].validate_voice(&voice.bytes, 1, NOW_US + 13) {
        VoiceVerdict::Accept(Ok(v)) => assert_eq!(v.body.severity, Severity::Moderate),
        other => panic!("{other:?}"),
    }
    // Another member's claims are untouched.
    let m = n[1].seal_alert("alerts", &extreme, NOW_US + 14).unwrap();
    let got = opened(n[2].validate(&m.bytes, Arrival::CatchUp, NOW_US + 15));
    assert_eq!(
        (got.severity, got.claimed_severity),
        (Severity::Extreme, None)
    );
}

#[test]
fn the_limit_is_set_at_enrolment_kept_by_a_replacement_and_kept_after_revocation() {
    let mut a = Authority::create("site", NOW_S, &mut OsRng).unwrap();
    let (cam, _) = a
        .enroll(
            &EnrollRequest {
                name: "cam".into(),
                max_severity: Some(Severity::Minor),
                ..Default::default()
            },
            NOW_S,
            &mut OsRng,
        )
        .unwrap();
    let first = cam.cert.body.device;
    // The bundle's descriptor already carries it: the device knows from its first start.
    assert_eq!(node(cam).max_severity(), Severity::Minor);
    // Re-enrolment (a replaced camera) keeps the limit, and the old number stays limited: what
    // it sent is still read from logs, and the authority distrusts it most.
    let (cam2, _) = a
        .enroll(
            &EnrollRequest {
                name: "cam".into(),
                force: true,
                ..Default::default()
            },
            NOW_S,
            &mut OsRng,
        )
        .unwrap();
    let second = cam2.cert.body.device;
    let d = a.descriptor();
    assert_eq!(d.rights(second).max_severity, Severity::Minor);
    assert_eq!(d.rights(first).max_severity, Severity::Minor);
    // `extreme` lifts the limit: no entry is kept for a device with the default.
    a.set_max_severity("cam", Severity::Extreme, NOW_S, &mut OsRng)
        .unwrap()
        .expect("a change");
    assert_eq!(a.descriptor().body.rights.len(), 1, "only the old number's");
    // Revocation keeps the entry with the device.
    a.set_max_severity("cam", Severity::Severe, NOW_S, &mut OsRng)
        .unwrap();
    assert_eq!(a.descriptor().body.rights.len(), 2);
    a.revoke("cam", NOW_S, &mut OsRng).unwrap();
    assert_eq!(a.descriptor().rights(second).max_severity, Severity::Severe);
    assert_eq!(a.descriptor().rights(first).max_severity, Severity::Minor);
}
