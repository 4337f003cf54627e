//! The emergency state between real daemons (issue 25): a device with the authority's
//! emergency right pre-empts every talker, nobody but an earlier emergency pre-empts it, and a
//! device without the right is refused.

use std::time::Duration;

use serde_json::Value;

use crate::support::common::{BIN, p};
use crate::support::field::{Field, MEMBER};
use crate::support::netns::{self, Cond};

/// Starts `talk --severity SEV --wav CLIP` on device `i` in the background.
fn talk(f: &Field, i: usize, severity: &str, clip: &std::path::Path) -> netns::Proc {
    let d = &f.devs[i];
    d.host
        .spawn(
            BIN,
            [
                "talk",
                "--data",
                p(&d.data),
                "--severity",
                severity,
                "--wav",
                p(clip),
            ],
            &[],
        )
        .expect("talk")
}

/// The bursts device `i`'s `listen` reported as ended, by talker name.
fn bursts(f: &Field, i: usize, talker: &str) -> Vec<Value> {
    f.shown(i)
        .into_iter()
        .filter(|v| v["type"] == "burst" && v["talker"] == talker)
        .collect()
}

/// Waits until device `i`'s listener reported a burst of `talker` ended, and returns it.
fn burst_of(f: &Field, i: usize, talker: &str, secs: u64) -> Value {
    f.lan
        .wait_until(
            &format!("a burst of {talker} ends"),
            Duration::from_secs(secs),
            || match bursts(f, i, talker).pop() {
                Some(b) => Cond::Done(b),
                None => Cond::Pending(String::new()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The names device `i`'s `status` lists in emergency.
fn in_emergency(f: &Field, i: usize) -> Vec<String> {
    f.status(i)
        .and_then(|s| s["emergencies"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

/// `h` and `h2` hold the emergency right (enrolled first, so every bundle's descriptor says
/// so), `t` and `x` do not, `l` listens. `x`'s declaration is refused. `h` declares and
/// pre-empts `t`'s `extreme` burst within 300 ms with a `minor` one; `t`'s `extreme` press is
/// then refused; `h2`'s later emergency waits for `h`'s burst to end instead of pre-empting
/// it. Cleared, `h` is no longer shown in emergency.
#[test]
fn an_emergency_preempts_an_extreme_talker_and_only_an_earlier_one_preempts_it() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::provision(
        "emerg",
        &[],
        &[
            ("h", &["--emergency"]),
            ("h2", &["--emergency"]),
            ("t", MEMBER),
            ("x", MEMBER),
            ("l", MEMBER),
        ],
    );
    let all = ["h", "h2", "t", "x", "l"].map(|n| f.idx(n));
    let [h, h2, t, x, l] = all;
    for i in all {
        f.start(i);
    }
    for i in all {
        crate::adversary::wait_authenticated(&f, i, 4, "the five members authenticate");
    }
    f.listen(l);
    let long = f.tone("long.wav", 6);
    let short = f.tone("short.wav", 2);

    // Without the right: refused, saying why.
    let out = f.ptt(x, &["emergency", "--text", "captured"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not declare an emergency"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // h declares; every member shows it.
    let out = f.ptt(h, &["emergency", "--text", "man down", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in [h2, t, l] {
        f.lan
            .wait_until(
                "h is shown in emergency",
                Duration::from_secs(15),
                || match in_emergency(&f, i).as_slice() {
                    [n] if n == "h" => Cond::Done(()),
                    other => Cond::Pending(format!("{other:?}")),
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }
    assert_eq!(
        f.peer(l, "h").expect("h among l's peers")["emergency"],
        true
    );
    assert_eq!(
        f.status(h).expect("status")["emergency"]["text"],
        "man down"
    );

    // t talks at extreme; h's minor press pre-empts it.
    let mut tt = talk(&f, t, "extreme", &long);
    std::thread::sleep(Duration::from_millis(1500));
    let mut ht = talk(&f, h, "minor", &long);
    std::thread::sleep(Duration::from_millis(1500));
    let tb = burst_of(&f, l, "t", 15);
    assert_eq!(tb["reason"], "preempted", "{tb}");
    let status = tt.wait_timeout(Duration::from_secs(20)).expect("wait");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(4),
        "t's talk ends pre-empted"
    );
    // While h talks, t's extreme press is refused, and h2's later emergency waits.
    let refused = f.ptt(t, &["talk", "--severity", "extreme", "--wav", p(&short)]);
    assert_eq!(
        refused.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = f.ptt(h2, &["emergency", "--text", "second"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut h2t = talk(&f, h2, "extreme", &short);
    let hb = burst_of(&f, l, "h", 20);
    assert_eq!(hb["reason"], "released", "nobody pre-empted h: {hb}");
    assert_eq!(hb["emergency"], true, "{hb}");
    let delay = hb["started_at_us"].as_u64().expect("start") as i64
        - hb["burst"].as_u64().expect("burst") as i64;
    assert!(
        (0..=300_000).contains(&delay),
        "h's claim took the floor {delay} µs after it was made"
    );
    assert!(
        ht.wait_timeout(Duration::from_secs(20))
            .expect("wait")
            .is_some()
    );
    let h2b = burst_of(&f, l, "h2", 30);
    assert_eq!(h2b["reason"], "released", "{h2b}");
    assert!(
        h2b["started_at_us"].as_u64() >= hb["started_at_us"].as_u64(),
        "h2 spoke after h: {h2b} {hb}"
    );
    let status = h2t.wait_timeout(Duration::from_secs(20)).expect("wait");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "h2's queued talk");

    // h clears its emergency: no longer shown.
    let out = f.ptt(h, &["emergency", "--clear", "--text", "safe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.lan
        .wait_until(
            "h is no longer in emergency",
            Duration::from_secs(15),
            || {
                let now = in_emergency(&f, l);
                if now == ["h2"] {
                    Cond::Done(())
                } else {
                    Cond::Pending(format!("{now:?}"))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}
