//! Receipts between real daemons (issue 25): who got an alert, who did not, who handled it.

use std::time::Duration;

use serde_json::Value;

use crate::support::common::p;
use crate::support::field::{Field, MEMBER, RELAY, nft};
use crate::support::netns::{self, Cond};

/// `ptt-node ARGS --data DIR` on device `i`, with a 60 s limit.
fn ptt(f: &Field, i: usize, args: &[&str]) -> std::process::Output {
    f.ptt(i, args)
}

/// `receipts ID --json` on device `i`.
fn receipts(f: &Field, i: usize, id: &str) -> Value {
    let out = ptt(f, i, &["receipts", id, "--json"]);
    assert!(
        out.status.success(),
        "receipts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("receipts JSON")
}

fn member<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == name))
}

/// Ten devices: eight members, `cut` (a member whose every packet nftables drops), and a
/// relay-only device. `alert --wait all --timeout 5` fails and names `cut`; `receipts` names
/// `cut` as missing and the relay not at all; once the link is back, `cut` opens the alert and
/// its receipt arrives, and `receipts` shows all. An acknowledgement reaches the sender.
#[test]
fn the_sender_knows_who_got_an_alert_and_who_did_not() {
    if !netns::require_netns() {
        return;
    }
    let mut specs: Vec<(String, &[&str])> = (1..=8).map(|i| (format!("m{i}"), MEMBER)).collect();
    specs.push(("cut".into(), MEMBER));
    specs.push(("relay".into(), RELAY));
    let specs: Vec<(&str, &[&str])> = specs.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    let mut f = Field::provision("rcpt", &[], &specs);
    for i in 0..f.devs.len() {
        f.start_with(i, &["--max-peers", "16"]);
    }
    f.wait_mesh(Duration::from_secs(60));
    let (m1, m2, cut) = (f.idx("m1"), f.idx("m2"), f.idx("cut"));
    f.listen(m1);

    // Everyone up: an alert is received by all nine others' readers (the relay cannot read).
    let out = ptt(
        &f,
        m1,
        &[
            "alert",
            "--severity",
            "minor",
            "--kind",
            "test",
            "--text",
            "warm-up",
            "--wait",
            "all",
            "--timeout",
            "10",
        ],
    );
    assert!(
        out.status.success(),
        "warm-up --wait all: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    nft(
        &f.devs[cut],
        &[
            "add table inet t",
            "add chain inet t input { type filter hook input priority 0 ; policy drop ; }",
            "add chain inet t output { type filter hook output priority 0 ; policy drop ; }",
        ],
    );
    let started = std::time::Instant::now();
    let out = ptt(
        &f,
        m1,
        &[
            "alert",
            "--severity",
            "severe",
            "--kind",
            "intrusion",
            "--text",
            "gate 3",
            "--wait",
            "all",
            "--timeout",
            "5",
        ],
    );
    let waited = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "exit code of --wait all: {err}");
    assert!(err.contains("missing: cut"), "{err}");
    assert!(waited >= Duration::from_secs(5), "gave up after {waited:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 16, "the alert id first: {id:?}");

    let r = receipts(&f, m1, &id);
    assert_eq!(r["expected"], 8, "{r}");
    assert_eq!(r["received"], 7, "{r}");
    let c = member(&r, "cut").expect("cut is listed");
    assert!(c["received_at_us"].is_null(), "{c}");
    assert!(member(&r, "relay").is_none(), "the relay cannot read: {r}");
    for i in 2..=8 {
        let m = member(&r, &format!("m{i}")).expect("member listed");
        assert!(m["received_at_us"].as_u64().is_some(), "{m}");
    }
    // Another member sees the same from its own ledger.
    let r2 = receipts(&f, m2, &id);
    assert_eq!(r2["received"], 7, "{r2}");

    // The link is back: cut gets the alert (catch-up or the retransmitted copy) and its
    // receipt reaches m1.
    nft(&f.devs[cut], &["delete table inet t"]);
    let r = f
        .lan
        .wait_until("cut's receipt arrives", Duration::from_secs(60), || {
            let r = receipts(&f, m1, &id);
            match r["received"].as_u64() {
                Some(8) => Cond::Done(r),
                _ => Cond::Pending(r.to_string()),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    println!("after the link came back: {r}");
    assert!(member(&r, "cut").is_some_and(|c| c["received_at_us"].as_u64().is_some()));

    // m2 acknowledges; m1 sees it.
    let out = ptt(&f, m2, &["ack", &id, "--text", "guard sent"]);
    assert!(
        out.status.success(),
        "ack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = f
        .lan
        .wait_until("m2's ack arrives", Duration::from_secs(20), || {
            let r = receipts(&f, m1, &id);
            match r["acknowledged"].as_u64() {
                Some(1) => Cond::Done(r),
                _ => Cond::Pending(r.to_string()),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let a = member(&r, "m2").expect("m2");
    assert_eq!(a["ack"], "guard sent", "{a}");
    // m1's `listen` shows the acknowledgement, once.
    let acks = f
        .lan
        .wait_until("m1's listen shows the ack", Duration::from_secs(10), || {
            let acks: Vec<Value> = f
                .shown(m1)
                .into_iter()
                .filter(|v| v["type"] == "ack")
                .collect();
            match acks.len() {
                0 => Cond::Pending("no ack line".into()),
                _ => Cond::Done(acks),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (
            &acks[0]["id"],
            &acks[0]["by"],
            &acks[0]["text"],
            &acks[0]["sender"]
        ),
        (
            &id.clone().into(),
            &"m2".into(),
            &"guard sent".into(),
            &"m1".into()
        ),
        "{acks:?}"
    );
    // The receipts are in the log: after a restart, m1 knows the same.
    let mut d = f.devs[m1].daemon.take().expect("m1 runs");
    d.signal("TERM").expect("SIGTERM");
    assert!(
        d.wait_timeout(Duration::from_secs(20))
            .expect("wait")
            .is_some(),
        "m1 stops"
    );
    f.start_with(m1, &["--max-peers", "16"]);
    let r = f
        .lan
        .wait_until("m1 answers again", Duration::from_secs(30), || {
            let out = ptt(&f, m1, &["receipts", &id, "--json"]);
            match serde_json::from_slice::<Value>(&out.stdout) {
                Ok(r) if out.status.success() => Cond::Done(r),
                _ => Cond::Pending(String::from_utf8_lossy(&out.stderr).into_owned()),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (&r["received"], &r["acknowledged"]),
        (&8.into(), &1.into()),
        "{r}"
    );
    // Nobody acknowledges its own alert, and an unknown id is refused.
    let out = ptt(&f, m1, &["ack", &id]);
    assert_eq!(out.status.code(), Some(1));
    let out = ptt(&f, m1, &["receipts", "0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not among the last"));
}

/// A receipt (with an acknowledgement) forged by a member in another member's name, and one
/// sent by a relay-only device, are refused: `receipts` shows neither, and the refusals are
/// counted as `bad_signature` and `not_allowed`.
#[test]
fn forged_receipts_and_a_relay_s_receipt_are_refused() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::provision(
        "rforge",
        &[],
        &[
            ("honest", MEMBER),
            ("victim", MEMBER),
            ("rogue", MEMBER),
            ("relay", RELAY),
        ],
    );
    let (honest, victim) = (f.idx("honest"), f.idx("victim"));
    f.start(honest);
    f.start(victim);
    crate::adversary::wait_authenticated(&f, honest, 1, "honest and victim authenticate");
    let out = ptt(
        &f,
        honest,
        &[
            "alert",
            "--severity",
            "severe",
            "--kind",
            "intrusion",
            "--text",
            "gate",
            "--json",
            "--wait",
            "all",
            "--timeout",
            "10",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .next()
            .expect("the sent line"),
    )
    .expect("sent JSON");
    let (id, seq) = (
        sent["id"].as_str().expect("id").to_string(),
        sent["seq"].as_u64().expect("seq"),
    );
    let device = |i: usize| {
        f.status(i).expect("status")["device_number"]
            .as_u64()
            .expect("device number")
    };
    let alert = format!("{}:{seq}", device(honest));
    let victim_dev = device(victim).to_string();
    let before = f.status(honest).expect("status");
    let addr = crate::adversary::victim_addr(&f, honest);
    for (who, extra) in [
        ("rogue", vec!["--as", victim_dev.as_str()]),
        ("relay", vec![]),
    ] {
        let i = f.idx(who);
        let bundle = f.devs[i].bundle.clone();
        let mut args = vec![
            "--bundle",
            p(&bundle),
            "--peer",
            &addr,
            "--mode",
            "receipt-forge",
            "--count",
            "1",
            "--alert",
            &alert,
        ];
        args.extend(extra);
        let mut r = f.devs[i]
            .host
            .spawn(crate::adversary::rogue_bin(), args, &[])
            .expect("rogue");
        f.lan
            .wait_until("the forgery is sent", Duration::from_secs(30), || {
                match r.stdout_lines().iter().any(|l| l.starts_with("sent 1")) {
                    true => Cond::Done(()),
                    false => Cond::Pending(r.stderr()),
                }
            })
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        std::thread::sleep(Duration::from_secs(2));
        let _ = r.kill();
    }
    let after = f.status(honest).expect("status");
    let rejected = |s: &Value, k: &str| s["counters"]["rejected"][k].as_u64().unwrap_or(0);
    assert!(
        rejected(&after, "bad_signature") > rejected(&before, "bad_signature"),
        "the receipt in victim's name: {after}"
    );
    assert!(
        rejected(&after, "not_allowed") > rejected(&before, "not_allowed"),
        "the relay's receipt: {after}"
    );
    let r = receipts(&f, honest, &id);
    assert_eq!(r["acknowledged"], 0, "{r}");
    assert!(member(&r, "relay").is_none(), "{r}");
    assert!(!r.to_string().contains("forged"), "{r}");
    let v = member(&r, "victim").expect("victim");
    assert!(v["ack"].is_null(), "{v}");
}
