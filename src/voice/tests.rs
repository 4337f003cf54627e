use super::*;

fn body(burst: u64, index: u32, severity: Severity, kind: VoiceKind) -> VoiceBody {
    VoiceBody {
        burst,
        index,
        severity,
        kind,
    }
}
fn claim(burst: u64, s: Severity) -> VoiceBody {
    body(burst, 0, s, VoiceKind::Claim)
}
fn frame(burst: u64, i: u32, s: Severity) -> VoiceBody {
    body(burst, i, s, VoiceKind::Frame(vec![i as u8; 3]))
}
fn release(burst: u64, frames: u32, s: Severity) -> VoiceBody {
    body(burst, frames + 1, s, VoiceKind::Release { frames })
}
const M: Severity = Severity::Moderate;

#[test]
fn body_round_trips_and_checks_indices() {
    for b in [
        claim(7, M),
        frame(7, 1, M),
        release(7, 10, Severity::Extreme),
    ] {
        assert_eq!(VoiceBody::decode(&b.encode()).unwrap(), b);
    }
    for bad in [
        body(7, 1, M, VoiceKind::Claim),
        body(7, 0, M, VoiceKind::Frame(vec![1])),
        body(7, 3, M, VoiceKind::Frame(vec![])),
        body(7, 3, M, VoiceKind::Frame(vec![0; MAX_OPUS_FRAME + 1])),
        body(7, MAX_BURST_FRAMES + 1, M, VoiceKind::Frame(vec![1])),
        body(7, 5, M, VoiceKind::Release { frames: 5 }),
    ] {
        assert!(VoiceBody::decode(&bad.encode()).is_err(), "{bad:?}");
    }
    let mut trailing = claim(1, M).encode();
    trailing.push(0);
    assert!(VoiceBody::decode(&trailing).is_err());
}

#[test]
fn a_burst_starts_streams_and_ends_on_release() {
    let mut f = Floor::default();
    let ev = f.on_packet(3, claim(100, M), 0);
    assert!(matches!(&ev[..], [FloorEvent::Started(t)] if t.sender == 3 && t.burst == 100));
    let ev = f.on_packet(3, frame(100, 1, M), 20_000);
    assert!(matches!(&ev[..], [FloorEvent::Frame { index: 1, .. }]));
    f.on_packet(3, frame(100, 3, M), 60_000);
    let ev = f.on_packet(3, release(100, 3, M), 80_000);
    match &ev[..] {
        [
            FloorEvent::Ended {
                talker,
                reason: EndReason::Released,
                sent: Some(3),
                ..
            },
        ] => {
            assert_eq!((talker.received, talker.highest), (2, 3));
        }
        other => panic!("{other:?}"),
    }
    assert!(f.holder().is_none());
    // A straggler of the ended burst does not start it again.
    assert!(f.on_packet(3, frame(100, 2, M), 90_000).is_empty());
}

#[test]
fn a_second_talker_is_refused_while_the_first_speaks() {
    let mut f = Floor::default();
    f.on_packet(1, claim(100, M), 0);
    f.on_packet(1, frame(100, 1, M), 120_000);
    // Device 2 claims later (beyond the contest window) at the same severity: ignored,
    // and so are its frames.
    assert!(f.on_packet(2, claim(50, M), 400_000).is_empty());
    assert!(f.on_packet(2, frame(50, 1, M), 420_000).is_empty());
    assert_eq!(f.holder().unwrap().sender, 1);
}

#[test]
fn simultaneous_claims_go_to_the_earlier_burst_everywhere() {
    // Whatever order the two claims arrive in, the same burst wins.
    for order in [[(1u32, 100u64), (2, 90)], [(2, 90), (1, 100)]] {
        let mut f = Floor::default();
        for (i, (s, b)) in order.iter().enumerate() {
            f.on_packet(*s, claim(*b, M), i as u64 * 5_000);
        }
        assert_eq!(f.holder().map(|h| (h.sender, h.burst)), Some((2, 90)));
    }
    // Same burst id: the lower device number.
    let mut f = Floor::default();
    f.on_packet(9, claim(100, M), 0);
    f.on_packet(4, claim(100, M), 1_000);
    assert_eq!(f.holder().unwrap().sender, 4);
}

#[test]
fn an_emergency_preempts_every_other_talker_and_only_an_earlier_emergency_preempts_it() {
    const X: Severity = Severity::Extreme;
    let mut f = Floor::default();
    f.on_packet(1, claim(100, X), 0);
    f.on_packet(1, frame(100, 1, X), 150_000);
    // A moderate claim of a member in emergency (since 50) takes an extreme talker's floor.
    let ev = f.on_packet_as(2, claim(200, M), Some(50), 300_000);
    assert!(matches!(
        &ev[..],
        [FloorEvent::Ended { reason: EndReason::Preempted, by: Some(2), .. }, FloorEvent::Started(t)]
            if t.sender == 2 && t.emergency == Some(50)
    ));
    // Nobody outside an emergency takes it back, whatever the severity.
    assert!(f.on_packet(1, claim(300, X), 400_000).is_empty());
    assert_eq!(f.holder().map(|h| h.sender), Some(2));
    // A later emergency does not either; an earlier one does.
    assert!(
        f.on_packet_as(3, claim(400, X), Some(60), 500_000)
            .is_empty()
    );
    let ev = f.on_packet_as(4, claim(500, Severity::Minor), Some(40), 600_000);
    assert!(
        matches!(&ev[..], [FloorEvent::Ended { by: Some(4), .. }, FloorEvent::Started(t)] if t.sender == 4)
    );
    // Its spell is capped too, only later: past the normal cap it still holds.
    let mut t = 600_000;
    while t < MAX_BURST_US + CONTEST_US + 1_000_000 {
        t += FRAME_US * 50;
        f.on_packet_as(
            4,
            frame(500, ((t - 600_000) / FRAME_US) as u32, Severity::Minor),
            Some(40),
            t,
        );
    }
    assert_eq!(f.holder().map(|h| h.sender), Some(4));
    let mut ended = None;
    while ended.is_none() && t < MAX_EMERGENCY_BURST_US + CONTEST_US + 1_000_000 {
        t += FRAME_US * 50;
        let ev = f.on_packet_as(
            4,
            frame(500, ((t - 600_000) / FRAME_US) as u32, Severity::Minor),
            Some(40),
            t,
        );
        ended = ev.into_iter().find_map(|e| match e {
            FloorEvent::Ended { reason, .. } => Some((reason, t)),
            _ => None,
        });
    }
    let (reason, at) = ended.expect("the emergency talker's spell ends");
    assert_eq!(reason, EndReason::TooLong);
    assert!(at > MAX_EMERGENCY_BURST_US, "{at}");
}

#[test]
fn an_earlier_simultaneous_claim_wins_the_contest_and_the_later_lost_it() {
    let mut f = Floor::default();
    f.on_packet(1, claim(200, M), 0);
    // Device 2 pressed 100 µs earlier; its claim arrives 300 µs after 1's.
    let ev = f.on_packet(2, claim(100, M), 300);
    assert!(matches!(
        &ev[..],
        [FloorEvent::Ended { reason: EndReason::Lost, by: Some(2), talker, .. }, FloorEvent::Started(t)]
            if talker.sender == 1 && t.sender == 2
    ));
    // Past the contest window an earlier burst id takes nothing.
    let mut g = Floor::default();
    g.on_packet(1, claim(200, M), 0);
    assert!(g.on_packet(2, claim(100, M), CONTEST_US + 1).is_empty());
    // A higher severity at the same moment pre-empts: not a contest.
    let mut h = Floor::default();
    h.on_packet(1, claim(200, M), 0);
    let ev = h.on_packet(2, claim(300, Severity::Extreme), 300);
    assert!(matches!(
        &ev[..],
        [
            FloorEvent::Ended {
                reason: EndReason::Preempted,
                ..
            },
            FloorEvent::Started(_)
        ]
    ));
    assert_eq!(EndReason::Lost.as_str(), "lost");
}

#[test]
fn higher_severity_preempts_and_lower_never_does() {
    let mut f = Floor::default();
    f.on_packet(1, claim(100, M), 0);
    f.on_packet(1, frame(100, 1, M), 150_000);
    assert!(
        f.on_packet(2, claim(200, Severity::Minor), 300_000)
            .is_empty()
    );
    let ev = f.on_packet(3, claim(300, Severity::Extreme), 310_000);
    assert!(matches!(
        &ev[..],
        [
            FloorEvent::Ended {
                reason: EndReason::Preempted,
                by: Some(3),
                ..
            },
            FloorEvent::Started(t)
        ] if t.sender == 3
    ));
    // The preempted talker's later frames are ignored.
    assert!(
        f.on_packet(1, frame(100, 2, M), 320_000)
            .iter()
            .all(|e| !matches!(e, FloorEvent::Frame { sender: 1, .. }))
    );
}

#[test]
fn a_vanished_talker_releases_the_floor_after_the_timeout() {
    let mut f = Floor::default();
    f.on_packet(1, claim(100, M), 0);
    f.on_packet(1, frame(100, 1, M), 100_000);
    assert!(f.tick(100_000 + FLOOR_TIMEOUT_US).is_empty());
    let ev = f.tick(100_001 + FLOOR_TIMEOUT_US);
    assert!(matches!(
        &ev[..],
        [FloorEvent::Ended {
            reason: EndReason::TimedOut,
            ..
        }]
    ));
    // The floor is free: another talker gets it at once.
    let ev = f.on_packet(2, claim(5, M), 100_001 + FLOOR_TIMEOUT_US);
    assert!(matches!(&ev[..], [FloorEvent::Started(t)] if t.sender == 2));
}

#[test]
fn a_burst_cannot_hold_the_floor_beyond_the_limit() {
    let mut f = Floor::default();
    f.on_packet(1, claim(100, M), 0);
    let mut t = 0;
    let mut i = 1;
    let mut ended = None;
    while ended.is_none() && t < MAX_BURST_US + CONTEST_US + 10 * FRAME_US {
        t += FRAME_US;
        for e in f.on_packet(1, frame(100, i, M), t) {
            if let FloorEvent::Ended { reason, .. } = e {
                ended = Some(reason);
            }
        }
        i += 1;
    }
    assert_eq!(ended, Some(EndReason::TooLong));
}

#[test]
fn a_talker_reclaiming_at_extreme_loses_the_floor_at_the_cap() {
    const X: Severity = Severity::Extreme;
    let mut f = Floor::default();
    let (hog, honest) = (7, 3);
    let (mut t, mut burst, mut ended_at) = (0, 1_000, None);
    // A new burst every 3 s, at extreme, each replacing the last: the spell runs on.
    while ended_at.is_none() && t < 2 * MAX_BURST_US {
        let mut events = f.on_packet(hog, claim(burst, X), t);
        for i in 1..=140 {
            t += FRAME_US;
            events.extend(f.on_packet(hog, frame(burst, i, X), t));
        }
        for e in events {
            if let FloorEvent::Ended {
                reason: EndReason::TooLong,
                talker,
                ..
            } = e
            {
                assert_eq!(talker.sender, hog);
                assert_eq!(talker.spell_us, 0, "{talker:?}");
                ended_at = Some(t);
            }
        }
        burst += 1;
    }
    let ended_at = ended_at.expect("the hog was never cut off");
    assert!(
        ended_at <= MAX_BURST_US + CONTEST_US + 3_000_000,
        "cut off at {ended_at} µs"
    );
    // An honest claim at moderate now wins; the hog's claims are ignored while it cools.
    let t = ended_at + 1_000_000;
    let ev = f.on_packet(honest, claim(50, M), t);
    assert!(
        matches!(&ev[..], [FloorEvent::Started(x)] if x.sender == honest),
        "{ev:?}"
    );
    assert!(f.on_packet(hog, claim(burst, X), t + 1_000_000).is_empty());
    assert_eq!(f.holder().map(|h| h.sender), Some(honest));
    // Once the honest talker is done and the cool-down is over, the hog may talk again.
    f.on_packet(honest, release(50, 0, M), t + 2_000_000);
    let later = t + FLOOR_COOLDOWN_US;
    let ev = f.on_packet(hog, claim(burst + 1, X), later);
    assert!(
        matches!(&ev[..], [FloorEvent::Started(x)] if x.sender == hog && x.spell_us == later),
        "{ev:?}"
    );
}

#[test]
fn a_quick_return_continues_the_spell_and_a_pause_starts_a_new_one() {
    let mut f = Floor::default();
    f.on_packet(1, claim(10, M), 0);
    f.on_packet(1, release(10, 0, M), 1_000_000);
    // Back within the gap: the same spell.
    let ev = f.on_packet(1, claim(11, M), 2_500_000);
    assert!(
        matches!(&ev[..], [FloorEvent::Started(x)] if x.spell_us == 0),
        "{ev:?}"
    );
    f.on_packet(1, release(11, 0, M), 3_000_000);
    // Back after a longer pause: a new spell.
    let ev = f.on_packet(1, claim(12, M), 3_000_000 + FLOOR_SPELL_GAP_US + 1);
    assert!(
        matches!(&ev[..], [FloorEvent::Started(x)] if x.spell_us == 3_000_000 + FLOOR_SPELL_GAP_US + 1),
        "{ev:?}"
    );
    f.on_packet(1, release(12, 0, M), 6_000_000);
    // Another talker in between breaks the spell too.
    f.on_packet(2, claim(20, M), 6_100_000);
    f.on_packet(2, release(20, 0, M), 6_200_000);
    let ev = f.on_packet(1, claim(13, M), 6_300_000);
    assert!(
        matches!(&ev[..], [FloorEvent::Started(x)] if x.spell_us == 6_300_000),
        "{ev:?}"
    );
}

#[test]
fn jitter_buffer_plays_in_order_conceals_gaps_and_drops_late_frames() {
    let mut j = JitterBuffer::new(JITTER_US);
    assert_eq!(j.push(1, vec![1], 1_000_000), Pushed::Buffered);
    // Nothing is due before the buffer depth.
    assert!(j.pop_due(1_000_000 + JITTER_US - 1).is_empty());
    assert_eq!(j.pop_due(1_000_000 + JITTER_US), vec![Slot::Frame(vec![1])]);
    // Frame 3 arrives early and out of order; frame 2 never comes.
    assert_eq!(j.push(3, vec![3], 1_030_000), Pushed::Buffered);
    assert_eq!(j.push(3, vec![3], 1_031_000), Pushed::Duplicate);
    let slots = j.pop_due(1_000_000 + JITTER_US + 2 * FRAME_US);
    assert_eq!(slots, vec![Slot::Missing, Slot::Frame(vec![3])]);
    // Frame 2 shows up after its slot: late.
    assert_eq!(j.push(2, vec![2], 1_200_000), Pushed::Late);
    assert_eq!((j.late, j.concealed, j.played), (1, 1, 3));
    assert_eq!(j.push(10_000, vec![9], 1_200_000), Pushed::TooFarAhead);
    // The end flushes the rest, concealing what never came.
    assert_eq!(j.push(5, vec![5], 1_210_000), Pushed::Buffered);
    assert_eq!(
        j.finish(Some(6)),
        vec![Slot::Missing, Slot::Frame(vec![5]), Slot::Missing]
    );
}

#[test]
fn jitter_buffer_joined_mid_burst_keeps_the_timing() {
    let mut j = JitterBuffer::new(JITTER_US);
    j.push(50, vec![50], 5_000_000);
    assert_eq!(j.next_due_us(), Some(5_000_000 + JITTER_US));
    assert_eq!(
        j.pop_due(5_000_000 + JITTER_US),
        vec![Slot::Frame(vec![50])]
    );
    assert_eq!(j.played, 1);
    assert!(JitterBuffer::new(JITTER_US).finish(Some(10)).is_empty());
}

#[test]
fn jitter_buffer_never_plays_beyond_the_longest_burst() {
    // Found by the voice fuzz target: finishing near the limit played up to 250 slots more,
    // and a listener joining beyond frame 251 never buffered anything.
    let mut j = JitterBuffer::new(JITTER_US);
    j.push(MAX_BURST_FRAMES - 1, vec![1], 0);
    j.finish(Some(u32::MAX));
    assert_eq!(j.played, 2);
    assert!(j.finish(Some(u32::MAX)).is_empty());
    // Nothing is ever due again (a listener that missed the end does not spin).
    assert_eq!(j.next_due_us(), None);
    assert!(j.pop_due(u64::MAX).is_empty());
}

#[test]
fn a_release_of_another_burst_does_not_touch_the_floor() {
    let mut f = Floor::default();
    f.on_packet(1, claim(100, M), 0);
    f.on_packet(1, frame(100, 1, M), 120_000);
    // A higher-severity, earlier release of a burst never heard: ignored.
    assert!(
        f.on_packet(2, release(50, 3, Severity::Extreme), 130_000)
            .is_empty()
    );
    assert_eq!(f.holder().map(|h| h.sender), Some(1));
}
