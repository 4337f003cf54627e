//! The device-lost watchdog between real daemons (issue 25): a watched device that goes quiet
//! is announced lost once for the domain, and back once when it is heard again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::field::{Field, MEMBER, nft};
use crate::support::netns::{self, Cond};

const WATCH: &[&str] = &["--watch", "10"];

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64
}

/// The announcements of `kind` about device `name` that device `i`'s listeners showed:
/// their `created_at_us`.
fn announced(f: &Field, i: usize, kind: &str, name: &str) -> Vec<u64> {
    f.shown(i)
        .into_iter()
        .filter(|v| v["kind"] == kind)
        .filter(|v| {
            v["attributes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|kv| kv[0] == "device" && kv[1] == name))
        })
        .map(|v| v["created_at_us"].as_u64().unwrap_or(0))
        .collect()
}

/// Five members; `k` and `c` are watched every 10 s (enrolled first, so every bundle's
/// descriptor says so). `k` is killed with SIGKILL and `c` cut off by nftables (all its
/// packets dropped) at the same moment. Each other member's `listen` shows exactly one
/// `device-lost` for each, within 10 + 5 s; once `k` is restarted and `c`'s link is back,
/// exactly one `device-back` for each.
#[test]
fn a_killed_and_a_cut_device_are_lost_once_and_back_once() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::provision(
        "watch",
        &[],
        &[
            ("k", WATCH),
            ("c", WATCH),
            ("a", MEMBER),
            ("b", MEMBER),
            ("m", MEMBER),
        ],
    );
    let all = ["k", "c", "a", "b", "m"].map(|n| f.idx(n));
    let [k, c, a, b, m] = all;
    for i in all {
        f.start(i);
    }
    for i in all {
        crate::adversary::wait_authenticated(&f, i, 4, "the five members authenticate");
    }
    for i in [a, b, m] {
        f.listen(i);
    }
    // Past the first check-in period since start: nobody is lost while all are there.
    std::thread::sleep(Duration::from_secs(12));
    for i in [a, b, m] {
        for name in ["k", "c"] {
            assert!(announced(&f, i, "device-lost", name).is_empty(), "{name}");
        }
    }
    let gone = now_us();
    f.devs[k]
        .daemon
        .as_mut()
        .expect("k runs")
        .signal("KILL")
        .expect("SIGKILL");
    nft(
        &f.devs[c],
        &[
            "add table inet t",
            "add chain inet t input { type filter hook input priority 0 ; policy drop ; }",
            "add chain inet t output { type filter hook output priority 0 ; policy drop ; }",
        ],
    );
    for i in [a, b, m] {
        f.lan
            .wait_until(
                "k and c are announced lost",
                Duration::from_secs(25),
                || {
                    let (lk, lc) = (
                        announced(&f, i, "device-lost", "k"),
                        announced(&f, i, "device-lost", "c"),
                    );
                    if lk.len() > 1 || lc.len() > 1 {
                        return Cond::Failed(format!("more than once: k {lk:?}, c {lc:?}"));
                    }
                    match (lk.first(), lc.first()) {
                        (Some(x), Some(y)) => Cond::Done((*x, *y)),
                        _ => Cond::Pending(format!("k {lk:?}, c {lc:?}")),
                    }
                },
            )
            .map(|(x, y)| {
                for (name, at) in [("k", x), ("c", y)] {
                    let after = at.saturating_sub(gone);
                    assert!(
                        after <= 15_000_000,
                        "{name} announced lost {after} µs after it went quiet (period 10 s + 5 s)"
                    );
                }
            })
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }
    // Both come back.
    nft(&f.devs[c], &["delete table inet t"]);
    f.start(k);
    for i in [a, b, m] {
        f.lan
            .wait_until(
                "k and c are announced back",
                Duration::from_secs(40),
                || {
                    let (bk, bc) = (
                        announced(&f, i, "device-back", "k"),
                        announced(&f, i, "device-back", "c"),
                    );
                    if bk.len() > 1 || bc.len() > 1 {
                        return Cond::Failed(format!("more than once: k {bk:?}, c {bc:?}"));
                    }
                    if bk.len() == 1 && bc.len() == 1 {
                        Cond::Done(())
                    } else {
                        Cond::Pending(format!("k {bk:?}, c {bc:?}"))
                    }
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }
    // Settled: still exactly one of each, everywhere.
    std::thread::sleep(Duration::from_secs(3));
    for i in [a, b, m] {
        for (kind, name) in [
            ("device-lost", "k"),
            ("device-lost", "c"),
            ("device-back", "k"),
            ("device-back", "c"),
        ] {
            assert_eq!(
                announced(&f, i, kind, name).len(),
                1,
                "{}: {kind} {name}",
                f.devs[i].name
            );
        }
    }
}
