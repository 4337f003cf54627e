//! A directed message changed after it was sent: its sender updates it and cancels it, the
//! recipient's history shows it updated and cancelled, and the changes are directed too: a
//! member that relays them between the two reads none of them. Real daemons on 127.0.0.1.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::common::{self, ok, p};
use crate::support::loopback::{self, wait_for};

/// `history --json` of a device, by alert id.
fn history(data: &std::path::Path) -> BTreeMap<String, Value> {
    ok(&["history", "--json", "--data", p(data)])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .map(|v| (v["id"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

/// The id a command that sends printed.
fn sent(args: &[&str]) -> String {
    let out = ok(args);
    let v: Value = serde_json::from_str(&out).expect("--json reply");
    v["id"].as_str().expect("id").to_string()
}

#[test]
fn a_directed_message_is_updated_and_cancelled_for_its_recipient_only() {
    let t = tempfile::tempdir().unwrap();
    common::provision(t.path(), "site", &["desk", "relay", "guard"]);
    let data = |d: &str| t.path().join(format!("{d}-data"));
    // desk - relay - guard: the relay carries everything between the two.
    let _r = loopback::start_loopback(&t.path().join("relay"), &data("relay"), None);
    let relay = loopback::address(&data("relay"));
    let _d = loopback::start_loopback(&t.path().join("desk"), &data("desk"), Some(&relay));
    let _g = loopback::start_loopback(&t.path().join("guard"), &data("guard"), Some(&relay));
    wait_for("the relay authenticates both", 30, || {
        loopback::status(&data("relay"))
            .filter(|s| s["peers"]["authenticated"] == 2)
            .map(|_| ())
    });
    // Gossip needs a heartbeat to learn who subscribes.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let desk = data("desk");
    let (guard, relay) = (data("guard"), data("relay"));
    let msg = sent(&[
        "send",
        "--to",
        "guard",
        "--kind",
        "open",
        "--text",
        "gate 2",
        "--json",
        "--data",
        p(&desk),
    ]);
    wait_for("guard has the message", 20, || {
        history(&guard).contains_key(&msg).then_some(())
    });
    let upd = sent(&[
        "alert",
        "--update",
        &msg,
        "--severity",
        "moderate",
        "--kind",
        "open",
        "--text",
        "gate 3",
        "--json",
        "--data",
        p(&desk),
    ]);
    let cancel = sent(&[
        "cancel",
        &msg,
        "--text",
        "done",
        "--json",
        "--data",
        p(&desk),
    ]);
    // A broadcast after the changes, which the relay reads: once it has it, the changes have
    // passed through it too.
    let after = sent(&[
        "alert",
        "--severity",
        "minor",
        "--kind",
        "test",
        "--text",
        "after",
        "--json",
        "--data",
        p(&desk),
    ]);
    let h = wait_for("guard has the changes", 20, || {
        let h = history(&guard);
        (h.contains_key(&upd) && h.contains_key(&cancel) && h.contains_key(&after)).then_some(h)
    });
    let m = &h[&msg];
    assert_eq!(m["recipient"], "guard", "{m}");
    assert_eq!(m["state"]["updated_by"], upd.as_str(), "{m}");
    assert_eq!(m["state"]["cancelled"]["by"], "desk", "{m}");
    assert_eq!(m["state"]["cancelled"]["text"], "done", "{m}");
    for (id, t) in [(&upd, "update"), (&cancel, "cancel")] {
        let c = &h[id];
        assert_eq!(c["msg_type"], t, "{c}");
        assert_eq!(
            c["recipient"], "guard",
            "a change of a directed message is directed: {c}"
        );
        assert_eq!(c["references"]["id"], msg.as_str(), "{c}");
    }
    let r = wait_for("the relay has the broadcast", 20, || {
        let h = history(&relay);
        h.contains_key(&after).then_some(h)
    });
    for id in [&msg, &upd, &cancel] {
        assert!(!r.contains_key(id), "the relay read {id}: {:?}", r[id]);
    }
    // The relay carried them: they are in its log, sealed.
    let st = loopback::status(&relay).expect("status");
    assert!(
        st["counters"]["alerts_relayed"].as_u64().unwrap_or(0) >= 3,
        "{}",
        st["counters"]
    );
}
