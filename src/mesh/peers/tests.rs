use super::*;
use crate::mesh::{MAX_PROBE_FAILURES, PROBE_EVERY, QUIET_BEFORE_PROBE};

type Book = PeerBook<u32, String>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(n: usize) -> String {
    format!("/ip4/10.0.0.{n}/tcp/4001")
}

/// A book for node 5 in which `peer` is a connected, authenticated member.
fn with_member(peer: u32, t0: Instant) -> Book {
    let mut b = Book::new(5);
    b.found_at(peer, [addr(1)], false, t0);
    assert!(b.established(peer, 1, None, None, t0, 0));
    assert_eq!(b.admit(&peer, false), Some(true));
    b
}

#[test]
fn smaller_key_dials_at_once_larger_defers() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    let d = b.found_at(9, [addr(1)], false, t0).expect("5 < 9 dials");
    assert_eq!((d.peer, d.addresses), (9, vec![addr(1)]));
    assert_eq!(b.found_at(2, [addr(2)], false, t0), None);
    assert_eq!(b.get(&2).and_then(|p| p.redial_at()), Some(t0 + DIAL_DEFER));
    // Found again meanwhile: the deferred dial stays as it was.
    assert_eq!(b.found_at(2, [addr(3)], false, t0 + ms(100)), None);
    assert!(b.tick(t0 + DIAL_DEFER - ms(1), |_| false).dials.is_empty());
    let t = b.tick(t0 + DIAL_DEFER, |_| false);
    assert_eq!(t.dials.len(), 1);
    assert_eq!(t.dials[0].addresses, vec![addr(2), addr(3)]);
    assert_eq!(b.get(&2).and_then(|p| p.redial_at()), None);
}

#[test]
fn a_node_alone_dials_at_once_whatever_the_keys() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    assert!(b.found_at(2, [addr(1)], true, t0).is_some());
}

#[test]
fn backoff_doubles_to_the_cap_and_jitter_stays_within_half() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    let mut expected = BACKOFF_MIN;
    for i in 0..12 {
        let now = t0 + ms(i * 1000);
        // Jitter 0 is the earliest (half), u64::MAX some point up to the full back-off.
        let at = if i == 0 {
            b.closed(&9, 0, Some("reset".into()), 0, now, 1)
                .expect("member re-dialled")
        } else {
            b.dial_failed(&9, "refused".into(), 0, now)
                .expect("re-dialled")
        };
        assert_eq!(
            b.get(&9).map(|p| p.backoff()),
            Some(expected),
            "failure {i}"
        );
        assert_eq!(at, now + expected / 2);
        let late = b.schedule_redial(&9, u64::MAX, now).expect("scheduled");
        let next = (expected * 2).min(BACKOFF_MAX);
        assert!(late >= now + next / 2 && late <= now + next, "failure {i}");
        expected = (next * 2).min(BACKOFF_MAX);
    }
    assert_eq!(b.get(&9).map(|p| p.backoff()), Some(BACKOFF_MAX));
}

#[test]
fn success_resets_the_backoff() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    b.closed(&9, 0, None, 0, t0, 1);
    b.dial_failed(&9, "x".into(), 0, t0);
    b.dial_failed(&9, "x".into(), 0, t0);
    assert_eq!(b.get(&9).map(|p| p.backoff()), Some(BACKOFF_MIN * 4));
    assert!(b.established(9, 1, Some(addr(1)), Some(addr(1)), t0, 2));
    assert_eq!(b.get(&9).and_then(|p| p.redial_at()), None);
    assert_eq!(b.admit(&9, false), Some(true));
    assert_eq!(b.get(&9).map(|p| p.backoff()), Some(Duration::ZERO));
    assert_eq!(b.get(&9).and_then(|p| p.last_error()), None);
    b.closed(&9, 0, None, 0, t0, 3);
    assert_eq!(b.get(&9).map(|p| p.backoff()), Some(BACKOFF_MIN));
}

#[test]
fn a_flapping_member_backs_off_while_it_never_authenticates() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    let mut now = t0;
    let mut waits = vec![];
    // It connects and drops again before proving membership, over and over.
    for i in 0..8 {
        let at = b
            .closed(&9, 0, Some("connection reset".into()), 0, now, i)
            .expect("a member is re-dialled");
        waits.push(at - now);
        let t = b.tick(at, |_| false);
        assert_eq!(t.dials.len(), 1, "re-dial {i} due at its back-off");
        now = at + ms(10);
        assert!(b.established(9, 1, Some(addr(1)), None, now, i));
        assert_eq!(b.get(&9).map(|p| p.status()), Some(PeerStatus::Connecting));
    }
    assert_eq!(
        waits,
        [250, 500, 1000, 2000, 4000, 8000, 15_000, 15_000].map(ms)
    );
    assert_eq!(
        b.get(&9).and_then(|p| p.last_error()),
        Some("connection reset")
    );
}

#[test]
fn a_stranger_that_drops_is_not_redialled() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    b.found_at(9, [addr(1)], false, t0);
    b.established(9, 1, None, None, t0, 0);
    assert_eq!(b.closed(&9, 0, None, 0, t0, 1), None);
    assert_eq!(b.get(&9).map(|p| p.status()), Some(PeerStatus::Discovered));
}

#[test]
fn addresses_are_bounded_per_peer() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    b.found_at(9, (0..20).map(addr), false, t0);
    assert_eq!(
        b.get(&9).map(|p| p.addresses().len()),
        Some(MAX_ADDRS_PER_PEER)
    );
    b.learned_addrs(&9, (20..30).map(addr));
    b.established(9, 1, Some(addr(40)), Some(addr(40)), t0, 0);
    let p = b.get(&9).expect("known");
    assert_eq!(p.addresses().len(), MAX_ADDRS_PER_PEER);
    assert!(!p.addresses().contains(&addr(40)));
    assert_eq!(p.dialled_addr(), Some(&addr(40)));
    // Identify about an unknown peer is ignored.
    b.learned_addrs(&7, [addr(1)]);
    assert!(b.get(&7).is_none());
}

#[test]
fn strangers_beyond_the_bound_are_forgotten_members_kept() {
    let t0 = Instant::now();
    let mut b = with_member(1, t0);
    b.closed(&1, 0, None, 0, t0, 1);
    for k in 10..(10 + MAX_PEERS as u32 + 5) {
        b.found_at(k, [addr(1)], false, t0);
    }
    assert_eq!(b.len(), MAX_PEERS + 6);
    let t = b.tick(t0, |_| false);
    assert_eq!(t.forgotten.len(), 6);
    assert_eq!(b.len(), MAX_PEERS);
    assert!(b.get(&1).is_some(), "a member is never forgotten");
}

#[test]
fn refused_peers_are_blocked_then_unblocked_unless_revoked() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    b.found_at(9, [addr(1)], false, t0);
    b.found_at(8, [addr(2)], false, t0);
    b.established(9, 1, None, None, t0, 0);
    b.established(8, 1, None, None, t0, 0);
    b.refuse(&9, "belongs to another domain".into(), t0);
    b.refuse(&8, "revoked by the domain authority".into(), t0);
    assert!(b.is_blocked(&9));
    assert_eq!(b.dial(&9), None);
    // Dropping keeps the refusal's reason and does not re-dial.
    assert_eq!(b.closed(&9, 0, Some("closed".into()), 0, t0, 1), None);
    assert_eq!(
        b.get(&9).and_then(|p| p.last_error()),
        Some("belongs to another domain")
    );
    assert_eq!(b.get(&9).map(|p| p.status()), Some(PeerStatus::Refused));
    b.closed(&8, 0, None, 0, t0, 1);
    assert!(
        b.tick(t0 + BLOCK_FOR - ms(1), |_| false)
            .unblocked
            .is_empty()
    );
    let t = b.tick(t0 + BLOCK_FOR, |p| *p == 8);
    assert_eq!(t.unblocked, vec![9]);
    assert!(!b.is_blocked(&9));
    assert!(b.is_blocked(&8), "a revoked device stays blocked");
    assert_eq!(b.dial(&9).map(|d| d.peer), Some(9));
}

#[test]
fn a_peer_that_does_not_authenticate_in_time_is_late() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    b.found_at(9, [addr(1)], false, t0);
    b.established(9, 1, None, None, t0, 0);
    assert!(b.tick(t0 + AUTH_TIMEOUT, |_| false).late.is_empty());
    assert_eq!(b.tick(t0 + AUTH_TIMEOUT + ms(1), |_| false).late, vec![9]);
    assert_eq!(
        b.get(&9).and_then(|p| p.last_error()),
        Some("did not authenticate in time")
    );
}

#[test]
fn auth_is_retried_three_times_per_connection() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    b.found_at(9, [addr(1)], false, t0);
    b.established(9, 1, None, None, t0, 0);
    let retries: Vec<bool> = (0..5).map(|_| b.auth_failed(&9, "timeout")).collect();
    assert_eq!(retries, [true, true, true, false, false]);
    assert_eq!(
        b.get(&9).and_then(|p| p.last_error()),
        Some("authentication: timeout")
    );
    // A new connection starts counting again.
    b.closed(&9, 0, None, 0, t0, 1);
    b.established(9, 1, None, None, t0, 2);
    assert!(b.auth_failed(&9, "timeout"));
    b.admit(&9, false);
    assert!(
        !b.auth_failed(&9, "push failed"),
        "not an authentication problem"
    );
}

#[test]
fn ping_failure_closes_and_unsupported_does_not() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    assert!(!b.ping(&9, Ping::Unsupported));
    assert!(!b.ping(&9, Ping::Ok));
    assert!(b.ping(&9, Ping::Failed("timeout".into())));
    assert_eq!(
        b.get(&9).and_then(|p| p.last_error()),
        Some("ping: timeout")
    );
    assert!(!b.ping(&7, Ping::Failed("x".into())));
}

#[test]
fn a_quiet_member_is_probed_and_one_heard_is_not() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    // Counted from the connection while nothing came.
    assert!(
        b.probes_due(t0 + QUIET_BEFORE_PROBE - ms(1), |_| QUIET_BEFORE_PROBE)
            .is_empty()
    );
    // Heard (a beacon) just before: the quiet spell starts again.
    b.heard(&9, t0 + QUIET_BEFORE_PROBE - ms(1));
    assert!(
        b.probes_due(t0 + QUIET_BEFORE_PROBE, |_| QUIET_BEFORE_PROBE)
            .is_empty()
    );
    let t1 = t0 + 2 * QUIET_BEFORE_PROBE;
    assert_eq!(b.probes_due(t1, |_| QUIET_BEFORE_PROBE), vec![9]);
    // One probe in flight at a time.
    assert!(
        b.probes_due(t1 + PROBE_EVERY, |_| QUIET_BEFORE_PROBE)
            .is_empty()
    );
    b.probe_answered(&9, t1 + ms(3));
    assert!(
        b.probes_due(t1 + PROBE_EVERY, |_| QUIET_BEFORE_PROBE)
            .is_empty()
    );
    assert_eq!(
        b.probes_due(t1 + ms(3) + QUIET_BEFORE_PROBE, |_| QUIET_BEFORE_PROBE),
        vec![9]
    );
}

#[test]
fn a_member_the_watchdog_must_hear_often_is_probed_sooner() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    let short = Duration::from_secs(3);
    let quiet = |k: &u32| if *k == 9 { short } else { QUIET_BEFORE_PROBE };
    assert!(b.probes_due(t0 + short - ms(1), quiet).is_empty());
    assert_eq!(b.probes_due(t0 + short, quiet), vec![9]);
    b.probe_answered(&9, t0 + short + ms(2));
    // Still one probe per PROBE_EVERY at most, however short.
    let t1 = t0 + short + ms(2) + short;
    assert!(b.probes_due(t1, quiet).is_empty());
    assert_eq!(b.probes_due(t0 + short + PROBE_EVERY, quiet), vec![9]);
}

#[test]
fn a_silent_member_is_closed_after_its_probes_fail_in_a_row() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    let mut t = t0 + QUIET_BEFORE_PROBE;
    for i in 1..=MAX_PROBE_FAILURES {
        assert_eq!(
            b.probes_due(t, |_| QUIET_BEFORE_PROBE),
            vec![9],
            "probe {i}"
        );
        let close = b.probe_failed(&9, "timeout");
        assert_eq!(close, i == MAX_PROBE_FAILURES, "after {i} failures");
        assert!(
            b.probes_due(t + PROBE_EVERY - ms(1), |_| QUIET_BEFORE_PROBE)
                .is_empty()
        );
        t += PROBE_EVERY;
    }
    assert!(
        b.get(&9)
            .and_then(|p| p.last_error())
            .is_some_and(|e| e.contains("probes unanswered")),
        "{:?}",
        b.get(&9)
    );
    // Anything heard between failures starts the count again.
    let mut b = with_member(9, t0);
    let t = t0 + QUIET_BEFORE_PROBE;
    assert_eq!(b.probes_due(t, |_| QUIET_BEFORE_PROBE), vec![9]);
    assert!(!b.probe_failed(&9, "timeout"));
    assert_eq!(
        b.probes_due(t + PROBE_EVERY, |_| QUIET_BEFORE_PROBE),
        vec![9]
    );
    assert!(!b.probe_failed(&9, "timeout"));
    b.heard(&9, t + PROBE_EVERY + ms(10));
    let mut t = t + PROBE_EVERY + ms(10) + QUIET_BEFORE_PROBE;
    for _ in 1..MAX_PROBE_FAILURES {
        assert_eq!(b.probes_due(t, |_| QUIET_BEFORE_PROBE), vec![9]);
        assert!(!b.probe_failed(&9, "timeout"));
        t += PROBE_EVERY;
    }
}

#[test]
fn only_connected_members_are_probed_and_a_new_connection_starts_afresh() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    // Connected, not authenticated: authentication's own deadline decides.
    b.found_at(3, [addr(3)], false, t0);
    assert!(b.established(3, 1, None, None, t0, 0));
    let late = t0 + 4 * QUIET_BEFORE_PROBE;
    assert_eq!(b.probes_due(late, |_| QUIET_BEFORE_PROBE), vec![9]);
    assert!(!b.probe_failed(&9, "timeout"));
    // The connection closes: nothing is probed, nothing counts against the next one.
    b.closed(&9, 0, None, 0, late, 1);
    assert!(
        b.probes_due(late + PROBE_EVERY, |_| QUIET_BEFORE_PROBE)
            .is_empty()
    );
    assert!(!b.probe_failed(&9, "late report"));
    let again = late + PROBE_EVERY;
    assert!(b.established(9, 1, None, None, again, 2));
    assert_eq!(b.admit(&9, false), Some(true));
    assert!(
        b.probes_due(again + QUIET_BEFORE_PROBE - ms(1), |_| QUIET_BEFORE_PROBE)
            .is_empty()
    );
    assert_eq!(
        b.probes_due(again + QUIET_BEFORE_PROBE, |_| QUIET_BEFORE_PROBE),
        vec![9]
    );
    // The failure before the close counts no more: three new ones close it.
    for i in 1..=MAX_PROBE_FAILURES {
        assert_eq!(b.probe_failed(&9, "timeout"), i == MAX_PROBE_FAILURES);
    }
}

#[test]
fn status_words() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    assert_eq!(
        b.get(&9).map(|p| p.status().as_str()),
        Some("authenticated")
    );
    b.closed(&9, 0, None, 0, t0, 1);
    assert_eq!(b.get(&9).map(|p| p.status().as_str()), Some("unreachable"));
    b.established(9, 1, None, None, t0, 2);
    b.admit(&9, true);
    b.closed(&9, 0, None, 0, t0, 3);
    assert_eq!(b.get(&9).map(|p| p.status().as_str()), Some("asleep"));
    assert_eq!(b.admit(&9, true), None, "a verdict after it left is moot");
}

#[test]
fn peer_status_texts_are_the_protocols() {
    // `peers --json` and `search` carry these; scripts compare them.
    let all = [
        (PeerStatus::Refused, "refused"),
        (PeerStatus::Authenticated, "authenticated"),
        (PeerStatus::Connecting, "connecting"),
        (PeerStatus::Asleep, "asleep"),
        (PeerStatus::Unreachable, "unreachable"),
        (PeerStatus::Discovered, "discovered"),
    ];
    for (s, text) in all {
        assert_eq!(s.as_str(), text);
        assert_eq!(s.to_string(), text);
    }
}

#[test]
fn revisions_and_peers_behind() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    b.found_at(7, [addr(2)], false, t0);
    b.established(7, 1, None, None, t0, 0);
    b.set_revision(&9, 3);
    b.sent_update(&7, 9);
    assert_eq!(
        b.get(&7).map(|p| p.revision()),
        Some(0),
        "not authenticated"
    );
    assert_eq!(b.behind(5), vec![(9, 3)]);
    b.acknowledged(&9, 5);
    b.acknowledged(&9, 4);
    assert_eq!(b.behind(5), vec![]);
}

#[test]
fn static_addresses_dialled_when_their_peer_is_away() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    let statics = vec![(addr(1), Some(9)), (addr(2), Some(8)), (addr(3), None)];
    assert_eq!(b.static_dials(&statics), vec![&addr(2)]);
    b.closed(&9, 0, None, 0, t0, 1);
    assert_eq!(b.static_dials(&statics), vec![&addr(1), &addr(2), &addr(3)]);
    b.found_at(8, [addr(2)], false, t0);
    b.refuse(&8, "no".into(), t0);
    assert_eq!(b.static_dials(&statics), vec![&addr(1), &addr(3)]);
}

#[test]
fn circuit_backoff_doubles_to_five_minutes_and_admit_clears_it() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    b.closed(&9, 0, None, 0, t0, 1);
    let mut now = t0;
    let mut waits = vec![];
    for _ in 0..7 {
        assert!(b.circuit_due(&9, now));
        let w = b.circuit_dialled(9, now);
        assert!(!b.circuit_due(&9, now + w - ms(1)));
        waits.push(w.as_secs());
        now += w;
    }
    assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
    b.established(9, 1, None, None, now, 2);
    b.admit(&9, false);
    b.closed(&9, 0, None, 0, now, 3);
    assert_eq!(b.circuit_dialled(9, now).as_secs(), 10);
    b.circuit_dialled(9, now);
    assert!(!b.circuit_due(&9, now));
    b.circuit_reset(&9);
    assert!(b.circuit_due(&9, now), "a fresh presence record: no wait");
}

#[test]
fn direct_ipv4_takes_direct_tcp_addresses_only() {
    let ip = |s: &str| direct_ipv4(&s.parse().expect("address"));
    assert_eq!(
        ip("/ip4/10.0.0.7/tcp/4001/p2p/12D3KooWAe1AuNR6C8KnymD6Cd9BkgfAS88Up4LuLynrff7TBVxi"),
        Some([10, 0, 0, 7].into())
    );
    assert_eq!(ip("/ip4/10.0.0.7/udp/4001"), None);
    assert_eq!(ip("/ip6/::1/tcp/4001"), None);
    assert_eq!(
        ip(
            "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWAe1AuNR6C8KnymD6Cd9BkgfAS88Up4LuLynrff7TBVxi/p2p-circuit"
        ),
        None
    );
}

#[test]
fn same_lan_addresses_only() {
    let own: Vec<Multiaddr> = ["/ip4/192.168.1.10/tcp/4001", "/ip4/127.0.0.1/tcp/4001"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let theirs: Vec<String> = [
        "/ip4/192.168.1.20/tcp/4001",
        "/ip4/192.168.1.10/tcp/4002",
        "/ip4/192.168.2.20/tcp/4001",
        "/ip4/127.0.0.2/tcp/4001",
        "/ip4/192.168.1.30/tcp/4001/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp/p2p-circuit",
        "garbage",
    ]
    .map(String::from)
    .to_vec();
    let got: Vec<String> = on_same_lan(&own, &theirs)
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(got, vec!["/ip4/192.168.1.20/tcp/4001"]);
}

#[test]
fn no_dial_without_an_address_or_to_a_connected_peer() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    assert_eq!(b.found_at(9, [], false, t0), None, "nothing to dial");
    assert_eq!(b.dial(&4), None, "unknown");
    b.found_at(8, [addr(1)], false, t0);
    b.established(8, 1, None, None, t0, 0);
    assert_eq!(
        b.found_at(8, [addr(2)], true, t0),
        None,
        "connected already"
    );
    assert_eq!(b.dial(&8), None);
    assert_eq!(b.get(&8).and_then(|p| p.redial_at()), None);
}

#[test]
fn a_tag_dials_at_once_past_a_deferred_dial() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    b.found_at(2, [addr(1)], false, t0);
    assert_eq!(b.get(&2).and_then(|p| p.redial_at()), Some(t0 + DIAL_DEFER));
    // A tag's addresses count against its own bound, not the peer's.
    b.add_tag_addresses(2, (10..30).map(addr));
    assert_eq!(
        b.get(&2).map(|p| p.addresses().len()),
        Some(1 + MAX_ADDRS_PER_PEER)
    );
    let d = b.dial_at_once(&2).expect("dialled now");
    assert_eq!(d.addresses.len(), 1 + MAX_ADDRS_PER_PEER);
    assert_eq!(
        b.get(&2).and_then(|p| p.redial_at()),
        None,
        "the deferred dial was this one"
    );
    b.refuse(&2, "no".into(), t0);
    assert_eq!(b.dial_at_once(&2), None, "blocked");
}

/// A test key's place on the overlay's ring.
fn pos(k: &u32) -> u64 {
    super::super::ring_position(&k.to_be_bytes())
}

/// Node 5's book bounded at `max`, having found members 1..=12 on the LAN (no dial yet), and
/// the overlay every member computes.
fn bounded(max: usize) -> (Book, Overlay<u32>) {
    let mut b = Book::new(5);
    b.set_max_peers(max, pos);
    for k in (1..=12).filter(|k| *k != 5) {
        b.discovered(k, [addr(k as usize)]);
    }
    let o = Overlay::new((1..=12).map(|k| (pos(&k), k)), max);
    (b, o)
}

/// Connects and admits `peer` at `now`.
fn connect(b: &mut Book, peer: u32, now: Instant) {
    b.established(peer, 1, None, None, now, 0);
    assert_eq!(b.admit(&peer, false), Some(true));
}

#[test]
fn a_bounded_book_dials_only_the_members_the_overlay_wants() {
    let t0 = Instant::now();
    let (mut b, o) = bounded(2);
    let wanted = o.neighbours(&5);
    assert_eq!(wanted.len(), 2, "a ring: two neighbours");
    let mut dialled = BTreeSet::new();
    for k in (1..=12).filter(|k| *k != 5) {
        dialled.extend(b.found_at(k, [addr(k as usize)], false, t0).map(|d| d.peer));
    }
    dialled.extend(
        b.tick(t0 + DIAL_DEFER, |_| false)
            .dials
            .iter()
            .map(|d| d.peer),
    );
    assert_eq!(dialled, wanted);
    assert_eq!(b.overlay().map(|o| o.members().len()), Some(12));
    // Nothing else is dialled later either.
    let later = b.tick(t0 + secs(60), |_| false);
    assert!(
        later.dials.iter().all(|d| wanted.contains(&d.peer)),
        "{later:?}"
    );
    // Unbounded (the default), the same book dials everyone, as before the bound.
    let mut all = Book::new(5);
    let n = (1..=12)
        .filter(|k| *k != 5)
        .filter(|k| all.found_at(*k, [addr(*k as usize)], true, t0).is_some())
        .count();
    assert_eq!(n, 11);
}

#[test]
fn a_surplus_connection_is_closed_after_a_while_and_not_redialled() {
    let t0 = Instant::now();
    let (mut b, o) = bounded(2);
    let wanted: Vec<u32> = o.neighbours(&5).into_iter().collect();
    let surplus = (1..=12)
        .find(|k| *k != 5 && !wanted.contains(k))
        .expect("one not wanted");
    for k in wanted.iter().chain([&surplus]) {
        connect(&mut b, *k, t0);
    }
    assert!(!b.wants(&surplus));
    assert_eq!(b.surplus(t0 + secs(10), |_| false), None, "too young");
    assert_eq!(b.surplus(t0 + SURPLUS_AFTER, |_| true), None, "kept");
    assert_eq!(b.surplus(t0 + SURPLUS_AFTER, |_| false), Some(surplus));
    // Closed: not re-dialled; a wanted one that drops is.
    assert_eq!(b.closed(&surplus, 0, None, 0, t0 + secs(31), 1), None);
    assert!(b.closed(&wanted[0], 0, None, 0, t0 + secs(31), 1).is_some());
    // `peers` shows the one left out on standby, the wanted one unreachable.
    assert_eq!(b.status(&surplus), Some(PeerStatus::Standby));
    assert_eq!(b.status(&wanted[0]), Some(PeerStatus::Unreachable));
    assert_eq!(b.status(&wanted[1]), Some(PeerStatus::Authenticated));
    // At the bound (two ready would be fine; one now): nothing more to close.
    assert_eq!(b.surplus(t0 + secs(60), |_| false), None);
    // A peer the user asked for (a tag) is never surplus.
    let (mut b, _) = bounded(2);
    for k in wanted.iter().chain([&surplus]) {
        connect(&mut b, *k, t0);
    }
    b.add_tag_addresses(surplus, [addr(99)]);
    assert!(b.wants(&surplus));
    assert_eq!(b.surplus(t0 + secs(60), |_| false), None);
}

#[test]
fn an_unreachable_ring_neighbour_is_bypassed_and_tried_again_later() {
    let t0 = Instant::now();
    let (mut b, o) = bounded(2);
    let ring_next = |o: &Overlay<u32>, away: &[u32]| o.ring_neighbours(&5, |k| away.contains(k));
    let before = ring_next(&o, &[]);
    let gone = *before.iter().next().expect("a neighbour");
    assert!(b.wants(&gone));
    assert_eq!(b.dial_failed(&gone, "no route".into(), 0, t0), None);
    assert!(
        b.wants(&gone),
        "still an edge of the overlay, tried again later"
    );
    let past = ring_next(&o, &[gone]);
    let new: Vec<u32> = past.difference(&before).copied().collect();
    assert_eq!(new.len(), 1, "{before:?} -> {past:?}");
    assert!(b.wants(&new[0]), "the member past the gap");
    let t = b.tick(t0 + DIAL_DEFER * 2, |_| false);
    assert!(
        t.dials.iter().any(|d| d.peer == new[0]) || 5 > new[0],
        "dialled (or left to the smaller key): {t:?}"
    );
    assert!(t.dials.iter().all(|d| d.peer != gone));
    // After AWAY_FOR it is tried again; an answer ends its absence.
    let t = b.tick(t0 + AWAY_FOR, |_| false);
    assert!(t.dials.iter().any(|d| d.peer == gone) || 5 > gone, "{t:?}");
    connect(&mut b, gone, t0 + AWAY_FOR);
    assert!(b.wants(&gone));
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn peer_ids_outside_the_roster_take_no_place_in_the_overlay() {
    let t0 = Instant::now();
    let (mut b, o) = bounded(2);
    b.set_roster(1..=12);
    assert_eq!(b.overlay(), Some(&o), "the roster holds every member found");
    // A stranger announces 50 peer ids on the LAN: none joins the ring, so the members keep
    // the same overlay (the one every member computes).
    for k in 100..150 {
        b.discovered(k, [addr(k as usize)]);
    }
    assert_eq!(b.overlay(), Some(&o));
    // A member the overlay leaves to others is on standby; a stranger is merely discovered.
    let left_out = (1..=12)
        .find(|k| *k != 5 && !o.neighbours(&5).contains(k))
        .expect("a member not wanted");
    assert_eq!(b.status(&left_out), Some(PeerStatus::Standby));
    assert_eq!(b.status(&100), Some(PeerStatus::Discovered));
    // Each is still dialled as without a bound (authentication refuses it) ...
    assert!((100..150).all(|k| b.wants(&k)));
    assert!(b.found_at(120, [addr(120)], true, t0).is_some());
    // ... and a member this node had not heard of joins once its certificate is learned.
    b.set_roster((1..=12).chain([120]));
    let with_new = Overlay::new((1..=12).chain([120]).map(|k| (pos(&k), k)), 2);
    assert_eq!(b.overlay(), Some(&with_new));
    // Without a roster (the book's default), every peer found counts, as before.
    let (mut plain, _) = bounded(2);
    plain.discovered(100, [addr(100)]);
    assert_eq!(plain.overlay().map(|o| o.members().len()), Some(13));
}

#[test]
fn fake_announcements_cause_bounded_dials_and_no_redials() {
    let t0 = Instant::now();
    let mut b = Book::new(5);
    // The roster: this node and member 7, not found yet. Everyone else is a stranger.
    b.set_roster([5, 7]);
    let mut dialled: BTreeMap<u32, u32> = BTreeMap::new();
    fn count(dialled: &mut BTreeMap<u32, u32>, ds: impl IntoIterator<Item = Dial<u32, String>>) {
        for d in ds {
            *dialled.entry(d.peer).or_default() += 1;
        }
    }
    // 4 096 fake peer ids announced over 4 s, each announced again a second later.
    for round in 0..2u64 {
        for i in 0..4096u32 {
            let t = t0 + ms(round * 1000 + u64::from(i));
            count(&mut dialled, b.found_at(10 + i, [addr(1)], false, t));
        }
    }
    // Every stranger dial fails; a minute of ticks follows, with announcements going on.
    let failed: Vec<u32> = dialled.keys().copied().collect();
    for p in &failed {
        assert_eq!(b.dial_failed(p, "refused".into(), 0, t0 + ms(8000)), None);
    }
    for k in 0..240u64 {
        let t = t0 + ms(8000 + k * 250);
        count(
            &mut dialled,
            b.found_at(10 + (k as u32 % 4096), [addr(1)], false, t),
        );
        count(&mut dialled, b.tick(t, |_| false).dials);
    }
    let total: u32 = dialled.values().sum();
    // At most MAX_STRANGER_DIALS per 10 s window over about 70 s, and never one twice.
    assert!(
        total as usize <= MAX_STRANGER_DIALS * 8,
        "{total} stranger dials: {dialled:?}"
    );
    assert!(dialled.values().all(|n| *n == 1), "re-dialled: {dialled:?}");
    // What is remembered of them is bounded too.
    assert!(b.len() <= MAX_STRANGERS + 1, "{} peers remembered", b.len());
    // A roster member found now is dialled at once, whatever the strangers did.
    let t = t0 + ms(70_000);
    let d = b
        .found_at(7, [addr(2)], false, t)
        .expect("the member is dialled");
    assert_eq!(d.peer, 7);
    // And a failed member dial is retried, unlike a stranger's.
    assert!(b.dial_failed(&7, "refused".into(), 0, t).is_some());
}

#[test]
fn a_refused_peer_is_no_longer_authenticated_even_before_it_is_gone() {
    let t0 = Instant::now();
    let mut b = with_member(9, t0);
    assert!(b.get(&9).unwrap().is_authenticated());
    b.refuse(&9, "certificate expired at 1 (Unix seconds)".into(), t0);
    // Still connected until the swarm closes it, but neither served nor refused again.
    assert!(b.is_connected(&9));
    assert!(!b.get(&9).unwrap().is_authenticated());
    assert!(b.is_blocked(&9));
    // Nor taken for one that did not authenticate in time: it keeps its reason.
    assert!(b.late(t0 + AUTH_TIMEOUT + ms(1)).is_empty());
    assert_eq!(
        b.get(&9).unwrap().last_error(),
        Some("certificate expired at 1 (Unix seconds)")
    );
}
