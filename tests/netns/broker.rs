//! Scenario 6.3's connection broker: two segments that cannot route to each other, a
//! relay-only broker with a leg in each (`--broker`: libp2p circuit relay v2), members that
//! know it from `--peer`. The members authenticate each other end to end through the broker,
//! exchange alerts, and the broker never sees a plaintext. Real daemons in namespaces.

use std::time::Duration;

use serde_json::Value;

use crate::support::common::{self, BIN, ok, p};
use crate::support::field::{Segments, files_containing};
use crate::support::netns::{self, Cond, Host};

fn json(h: &Host, args: &[&str]) -> Vec<Value> {
    let o = h.run(BIN, args).expect("ptt-node");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn members_on_two_segments_talk_through_a_relay_only_broker() {
    if !netns::require_netns() {
        return;
    }
    let Segments {
        a: lan_a,
        b: lan_b,
        root,
        dom,
        b1,
        b1_b,
        b1_id,
    } = Segments::new("brka", "brkb", "broker");
    let m1 = lan_a.add_host("m1").expect("m1");
    let m2 = lan_b.add_host("m2").expect("m2");
    assert!(
        !m1.ping(m2.addr()).expect("ping"),
        "the segments must not route to each other"
    );
    // m2 learns the broker from the domain descriptor in its bundle; m1 from --peer.
    let peer_a = format!("/ip4/{}/tcp/4777/p2p/{b1_id}", b1.addr());
    let peer_b = format!("/ip4/{b1_b}/tcp/4777/p2p/{b1_id}");
    ok(&["domain", "broker", "--dir", p(&dom), "--add", &peer_b]);
    common::enroll(&dom, &root, &["m1", "m2"]);
    let env = [("RUST_LOG", "info,ptt_node=debug")];
    let data = |h: &Host| h.dir().join("data");
    let _b = b1
        .spawn(
            BIN,
            [
                "run",
                "--broker",
                "--no-mdns",
                "--bundle",
                p(&root.join("b1")),
                "--data",
                p(&data(&b1)),
                "--listen",
                "/ip4/0.0.0.0/tcp/4777",
            ],
            &env,
        )
        .expect("broker");
    let _d1 = m1
        .spawn(
            BIN,
            [
                "run",
                "--no-mdns",
                "--bundle",
                p(&root.join("m1")),
                "--data",
                p(&data(&m1)),
                "--listen",
                &format!("/ip4/{}/tcp/0", m1.addr()),
                "--peer",
                &peer_a,
            ],
            &env,
        )
        .expect("m1");
    let _d2 = m2
        .spawn(
            BIN,
            [
                "run",
                "--no-mdns",
                "--bundle",
                p(&root.join("m2")),
                "--data",
                p(&data(&m2)),
                "--listen",
                &format!("/ip4/{}/tcp/0", m2.addr()),
            ],
            &env,
        )
        .expect("m2");

    // m1 and m2 authenticate each other over a circuit through the broker.
    lan_a
        .wait_until(
            "m1 and m2 authenticated through the broker",
            Duration::from_secs(40),
            || {
                let peers = json(&m1, &["peers", "--json", "--data", p(&data(&m1))]);
                match peers.iter().find(|v| v["name"] == "m2") {
                    Some(v) if v["authenticated"] == true => Cond::Done(()),
                    other => Cond::Pending(format!("m1 sees m2 as {other:?}")),
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", lan_b.dump_logs()));
    let peers = json(&m1, &["peers", "--json", "--data", p(&data(&m1))]);
    let m2_entry = peers.iter().find(|v| v["name"] == "m2").unwrap();
    assert!(
        m2_entry["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().contains("p2p-circuit")),
        "m1 reaches m2 through a relayed address: {m2_entry}"
    );

    let listen = m2
        .spawn(BIN, ["listen", "--json", "--data", p(&data(&m2))], &[])
        .expect("listen");
    let lb = b1
        .spawn(BIN, ["listen", "--json", "--data", p(&data(&b1))], &[])
        .expect("listen");
    std::thread::sleep(Duration::from_millis(1500));
    let text = format!("through the broker {}", std::process::id());
    let o = m1
        .run(
            BIN,
            [
                "alert",
                "--data",
                p(&data(&m1)),
                "--severity",
                "severe",
                "--kind",
                "intrusion",
                "--text",
                &text,
            ],
        )
        .expect("alert");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    lan_a
        .wait_until("m2 shows the alert", Duration::from_secs(15), || {
            let n = listen
                .stdout_lines()
                .iter()
                .filter(|l| l.contains(&text))
                .count();
            match n {
                0 => Cond::Pending("not yet".into()),
                1 => Cond::Done(()),
                n => Cond::Failed(format!("shown {n} times")),
            }
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", lan_b.dump_logs()));
    assert!(
        lb.stdout_lines().is_empty(),
        "the relay-only broker printed {:?}",
        lb.stdout_lines()
    );
    let leaked = files_containing(&data(&b1), text.as_bytes());
    assert!(leaked.is_empty(), "plaintext on the broker in {leaked:?}");
}
