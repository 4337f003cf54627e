//! A hostile member on the floor (issue 24, finding 5): a talker that re-claims the floor to
//! keep it, and one that claims more severity than the authority allows it. The rogue is
//! `examples/rogue.rs` in mode `voice-reclaim`, against real daemons.

use std::time::Duration;

use serde_json::Value;

use crate::adversary::{honest_and_victim, rogue_bin, victim_addr};
use crate::support::common::{BIN, ok, p};
use crate::support::field::Field;
use crate::support::netns::{self, Cond};

/// `talk --severity extreme --wav CLIP` on device `i`.
fn talk_extreme(f: &Field, i: usize, clip: &std::path::Path) -> std::process::Output {
    let d = &f.devs[i];
    let args = [
        "talk",
        "--data",
        p(&d.data),
        "--severity",
        "extreme",
        "--wav",
        p(clip),
    ];
    netns::run_with_timeout(&mut d.host.command(BIN, args), Duration::from_secs(60)).expect("talk")
}

/// The bursts device `i`'s `listen` reported as ended.
fn bursts(f: &Field, i: usize) -> Vec<Value> {
    f.shown(i)
        .into_iter()
        .filter(|v| v["type"] == "burst")
        .collect()
}

/// Starts the rogue member hogging the floor of `victim`'s channel (`voice-reclaim`, `count`
/// claims, one a second) and waits for its third claim; returns it and when that was seen.
fn start_hog(
    f: &Field,
    victim: usize,
    count: u32,
) -> (crate::support::netns::Proc, std::time::Instant) {
    let rogue = f.idx("rogue");
    let addr = victim_addr(f, victim);
    let bundle = f.devs[rogue].bundle.clone();
    let count = count.to_string();
    let r = f.devs[rogue]
        .host
        .spawn(
            rogue_bin(),
            [
                "--bundle",
                p(&bundle),
                "--peer",
                &addr,
                "--mode",
                "voice-reclaim",
                "--count",
                &count,
            ],
            &[],
        )
        .expect("rogue");
    let third = f
        .lan
        .wait_until("the rogue claims", Duration::from_secs(30), || {
            match r.stdout_lines().iter().any(|l| l.starts_with("claimed 3 ")) {
                true => Cond::Done(std::time::Instant::now()),
                false => Cond::Pending(r.stderr()),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    (r, third)
}

/// Issue 24, finding 5: a member that claims the floor at `extreme` again and again, each new
/// burst replacing its own before the floor times out, loses the floor at the 120 s cap; an
/// honest claim at the same severity then wins, which it could not before.
#[test]
fn a_member_re_claiming_the_floor_loses_it_at_the_cap() {
    if !netns::require_netns() {
        return;
    }
    let (f, honest, victim) = honest_and_victim("hog", true);
    let clip = f.tone("tone.wav", 2);
    let (mut r, first) = start_hog(&f, victim, 150);
    // The rogue's claims reach the honest member through the victim: the floor is held.
    let held = talk_extreme(&f, honest, &clip);
    assert_eq!(
        held.status.code(),
        Some(4),
        "an honest extreme press while the hog holds the floor: {}",
        String::from_utf8_lossy(&held.stderr)
    );
    // The victim sees the hog's spell end at the cap: 120 s from its first claim, however
    // many bursts it started since.
    let cut = f
        .lan
        .wait_until(
            "the hog is cut off",
            Duration::from_secs(150),
            || match bursts(&f, victim)
                .into_iter()
                .find(|b| b["talker"] == "rogue" && b["reason"] == "too_long")
            {
                Some(b) => Cond::Done(b),
                None => Cond::Pending(format!("{:?}", bursts(&f, victim))),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let after = first.elapsed();
    println!("the hog was cut off {after:?} after its third claim: {cut}");
    // Within its cool-down, the same extreme press now takes the floor, and the hog's claims
    // (one a second, still coming) do not take it back.
    let won = talk_extreme(&f, honest, &clip);
    assert!(
        won.status.success(),
        "an honest extreme press after the cap: {}",
        String::from_utf8_lossy(&won.stderr)
    );
    let heard = f
        .lan
        .wait_until(
            "the victim hears the honest burst",
            Duration::from_secs(20),
            || match bursts(&f, victim)
                .into_iter()
                .find(|b| b["talker"] == "honest")
            {
                Some(b) => Cond::Done(b),
                None => Cond::Pending(format!("{:?}", bursts(&f, victim))),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(heard["reason"], "released", "{heard}");
    assert_eq!(heard["severity"], "extreme", "{heard}");
    assert!(
        r.stdout_lines().iter().all(|l| !l.starts_with("sent")),
        "the hog was still claiming while the honest member talked"
    );
    let _ = r.kill();
}

/// Limits device `name` to `max` with `domain device`, publishes the update to device `to`,
/// and waits until every running daemon holds it.
fn limit(f: &Field, name: &str, max: &str, to: usize, running: &[usize]) {
    let dom = f.lan.dir().join("dom");
    let out = ok(&[
        "domain",
        "device",
        "--dir",
        p(&dom),
        "--device",
        name,
        "--max-severity",
        max,
    ]);
    assert!(out.contains(&format!("severity at most {max}")), "{out}");
    f.publish_newest(to, running);
}

/// Issue 24, finding 5's other half: the authority bounds the severity a member may claim.
/// A member limited to `severe` that claims the floor at `extreme` contests it as `severe`,
/// so an honest `extreme` press takes the floor at once; and a limited member's own daemon
/// refuses to seal above its limit, saying why.
#[test]
fn a_member_limited_to_severe_cannot_hold_the_floor_at_extreme() {
    if !netns::require_netns() {
        return;
    }
    let (f, honest, victim) = honest_and_victim("sevcap", true);
    limit(&f, "rogue", "severe", victim, &[victim, honest]);
    let clip = f.tone("tone.wav", 2);
    // The rogue holds the bundle it was enrolled with, which knows nothing of the limit.
    let (mut r, _) = start_hog(&f, victim, 60);
    let won = talk_extreme(&f, honest, &clip);
    assert!(
        won.status.success(),
        "an honest extreme press against a member limited to severe: {}",
        String::from_utf8_lossy(&won.stderr)
    );
    let heard = f
        .lan
        .wait_until("the victim hears both", Duration::from_secs(20), || {
            let b = bursts(&f, victim);
            let honest_done = b.iter().any(|b| b["talker"] == "honest");
            let rogue_seen = b.iter().any(|b| b["talker"] == "rogue");
            match honest_done && rogue_seen {
                true => Cond::Done(b),
                false => Cond::Pending(format!("{b:?}")),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = r.kill();
    for b in heard.iter().filter(|b| b["talker"] == "rogue") {
        assert_eq!(
            b["severity"], "severe",
            "the rogue's claims count as severe: {b}"
        );
    }
    assert!(
        heard
            .iter()
            .any(|b| b["talker"] == "rogue" && b["reason"] == "preempted"),
        "the honest press took the floor from the rogue: {heard:?}"
    );
    let h = heard
        .iter()
        .find(|b| b["talker"] == "honest")
        .expect("honest burst");
    assert_eq!(
        (&h["severity"], &h["reason"]),
        (&"extreme".into(), &"released".into())
    );

    // A limited member's own daemon refuses to seal above the limit, and says so.
    limit(&f, "honest", "moderate", honest, &[victim, honest]);
    let s = f.status(honest).expect("status");
    assert_eq!(s["max_severity"], "moderate", "{s}");
    let d = &f.devs[honest];
    let out = netns::run_with_timeout(
        &mut d.host.command(
            BIN,
            [
                "alert",
                "--data",
                p(&d.data),
                "--severity",
                "extreme",
                "--kind",
                "motion",
                "--text",
                "too loud",
            ],
        ),
        Duration::from_secs(20),
    )
    .expect("alert");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sealed above the limit");
    assert!(err.contains("at most severity moderate"), "{err}");
    let refused = talk_extreme(&f, honest, &clip);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "talked above the limit");
    assert!(err.contains("at most severity moderate"), "{err}");
}
