//! Two network segments joined only by a relay-only device: alerts cross it both ways, the
//! relay validates and forwards them without being able to read them, and members on either
//! side learn each other's certificates through it (they never connect directly).
//!
//! Real `ptt-node` processes in namespaces (see `tests/support/netns.rs`); needs root.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::common::{BIN, p};
use crate::support::field::files_containing;
use crate::support::netns::{self, Cond, Host, Lan, Proc};

fn provision(args: &[&str]) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run ptt-node");
    assert!(
        out.status.success(),
        "ptt-node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn status(host: &Host, data: &Path) -> Option<Value> {
    let out = host
        .run(BIN, ["status", "--json", "--data", p(data)])
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn listened(proc: &Proc, text: &str) -> Vec<Value> {
    proc.stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["text"] == text)
        .collect()
}

#[test]
fn relay_joins_two_segments() {
    if !netns::require_netns() {
        return;
    }
    let lan_a = Lan::new("sega").expect("LAN A");
    let lan_b = Lan::new("segb").expect("LAN B");
    let root = lan_a.dir().to_path_buf();
    let dom = root.join("dom");
    provision(&["domain", "init", "--dir", p(&dom), "--name", "segments"]);
    for (name, extra) in [("m1", None), ("m2", None), ("r1", Some("--relay-only"))] {
        let out = root.join(name);
        let mut args = vec![
            "domain",
            "enroll",
            "--dir",
            p(&dom),
            "--device",
            name,
            "--out",
            p(&out),
        ];
        args.extend(extra);
        provision(&args);
    }
    let m1 = lan_a.add_host("m1").expect("m1");
    let r1 = lan_a.add_host("r1").expect("r1");
    lan_b.attach(&r1).expect("r1 leg in B");
    let m2 = lan_b.add_host("m2").expect("m2");
    assert!(
        !m1.ping(m2.addr()).expect("ping"),
        "the segments must not reach each other"
    );

    let env = [("RUST_LOG", "info,ptt_node=debug")];
    let start = |h: &Host, name: &str, listen: String| {
        let data = h.dir().join("data");
        let proc = h
            .spawn(
                BIN,
                [
                    "run",
                    "--bundle",
                    p(&root.join(name)),
                    "--data",
                    p(&data),
                    "--listen",
                    &listen,
                    "--mdns-interval",
                    "2",
                ],
                &env,
            )
            .expect("start daemon");
        (proc, data)
    };
    let (_d1, data1) = start(&m1, "m1", format!("/ip4/{}/tcp/0", m1.addr()));
    let (_dr, datar) = start(&r1, "r1", "/ip4/0.0.0.0/tcp/0".to_string());
    let (_d2, data2) = start(&m2, "m2", format!("/ip4/{}/tcp/0", m2.addr()));

    lan_a
        .wait_until(
            "relay authenticated with both members",
            Duration::from_secs(30),
            || {
                let counts: Vec<Option<u64>> = [(&m1, &data1), (&r1, &datar), (&m2, &data2)]
                    .iter()
                    .map(|(h, d)| status(h, d).and_then(|s| s["peers"]["authenticated"].as_u64()))
                    .collect();
                if counts == [Some(1), Some(2), Some(1)] {
                    Cond::Done(())
                } else {
                    Cond::Pending(format!("authenticated peers m1, r1, m2: {counts:?}"))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", lan_b.dump_logs()));

    let listen = |h: &Host, data: &Path| {
        h.spawn(BIN, ["listen", "--json", "--data", p(data)], &[])
            .expect("listen")
    };
    let l1 = listen(&m1, &data1);
    let lr = listen(&r1, &datar);
    let l2 = listen(&m2, &data2);
    std::thread::sleep(Duration::from_millis(1500));

    // One alert each way, each must arrive exactly once.
    let send = |h: &Host, data: &Path, text: &str| {
        let out = h
            .run(
                BIN,
                [
                    "alert",
                    "--data",
                    p(data),
                    "--severity",
                    "moderate",
                    "--kind",
                    "motion",
                    "--text",
                    text,
                ],
            )
            .expect("alert");
        assert!(
            out.status.success(),
            "alert: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (from, from_data, to, name) in [(&m1, &data1, &l2, "m1->m2"), (&m2, &data2, &l1, "m2->m1")]
    {
        let text = format!("across the relay {name} {}", std::process::id());
        send(from, from_data, &text);
        lan_a
            .wait_until(
                &format!("{name} delivered"),
                Duration::from_secs(10),
                || match listened(to, &text).len() {
                    0 => Cond::Pending("not yet".into()),
                    1 => Cond::Done(()),
                    n => Cond::Failed(format!("delivered {n} times")),
                },
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", lan_b.dump_logs()));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(listened(to, &text).len(), 1, "{name}: exactly once");
        assert!(
            lr.stdout_lines().is_empty(),
            "the relay printed {:?}",
            lr.stdout_lines()
        );
        // The relay stored the envelope but never the plaintext.
        let leaked = files_containing(&datar, text.as_bytes());
        assert!(leaked.is_empty(), "plaintext in {leaked:?}");
    }
    // m1 never connected to m2, yet finds it, with the address it announced on segment B.
    let o = m1
        .run(BIN, ["search", "--json", "--data", p(&data1)])
        .expect("search");
    let m2_entry = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["name"] == "m2")
        .expect("m1 finds m2");
    let want = m2.addr().to_string();
    assert!(
        m2_entry["addresses"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.contains(&want)))),
        "m2's address reached m1 through the relay: {m2_entry}"
    );
    let sr = status(&r1, &datar).expect("relay status");
    assert!(sr["counters"]["alerts_relayed"].as_u64() >= Some(2), "{sr}");
    assert_eq!(sr["counters"]["alerts_received"], 0, "{sr}");
    for (h, d) in [(&m1, &data1), (&m2, &data2)] {
        let s = status(h, d).expect("status");
        assert!(
            s["counters"]["rejected"].get("unknown_sender").is_none(),
            "a member ignored an unknown sender: {s}"
        );
    }
}
