//! Updates and cancellations between real daemons (issue 25): only an alert's sender or a
//! dispatcher may change it; every member hears the change and keeps it in its history.

use std::time::Duration;

use serde_json::Value;

use crate::support::common::{ok, p};
use crate::support::field::{Field, MEMBER, RELAY};
use crate::support::netns::{self, Cond};

/// `ptt-node ARGS --data DIR` on device `i`, with a 60 s limit.
fn ptt(f: &Field, i: usize, args: &[&str]) -> std::process::Output {
    f.ptt(i, args)
}

/// Runs `ptt` and returns the first line of its stdout as JSON (`--json` replies).
fn ptt_json(f: &Field, i: usize, args: &[&str]) -> Value {
    let out = ptt(f, i, args);
    assert!(
        out.status.success(),
        "{args:?} on {}: {}",
        f.devs[i].name,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().expect("a line")).expect("JSON")
}

/// Device `i`'s `history --json`, by id (an error while its daemon does not answer).
fn history(f: &Field, i: usize) -> Result<std::collections::BTreeMap<String, Value>, String> {
    let out = ptt(f, i, &["history", "--json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["id"].as_str()?.to_string(), v)))
        .collect())
}

/// What device `i`'s listeners showed of messages referring to `id`, as (msg_type, text).
fn changes_shown(f: &Field, i: usize, id: &str) -> Vec<(String, String)> {
    f.shown(i)
        .into_iter()
        .filter(|v| v["references"]["id"] == id)
        .map(|v| {
            (
                v["msg_type"].as_str().unwrap_or("").to_string(),
                v["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn rejected(f: &Field, i: usize, reason: &str) -> u64 {
    f.status(i)
        .and_then(|s| s["counters"]["rejected"][reason].as_u64())
        .unwrap_or(0)
}

/// Five running devices (sender `s`, members `m1` and `m2`, the dispatcher `desk`, a relay)
/// and a member bundle for a rogue. A member without the right is refused by its own daemon;
/// the rogue's cancellation, signed and sealed with its real keys and carried by the relay, is
/// refused by every member and shown by none. The dispatcher's update and the sender's
/// cancellation reach every listener once; `history` shows the alerts updated and cancelled,
/// also on `m2`, which slept through the cancellation, and after a restart.
#[test]
fn a_cancel_reaches_every_member_and_one_without_the_right_nobody() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::provision(
        "cancel",
        &[],
        // The dispatcher first: every later bundle's descriptor grants its right, so no
        // update needs publishing (issue 24's severity test publishes one).
        &[
            ("desk", &["--dispatcher"]),
            ("s", MEMBER),
            ("m1", MEMBER),
            ("m2", MEMBER),
            ("rogue", MEMBER),
            ("relay", RELAY),
        ],
    );
    let running = ["s", "m1", "m2", "desk", "relay"].map(|n| f.idx(n));
    let [s, m1, m2, desk, relay] = running;
    for i in running {
        f.start(i);
    }
    for i in running {
        crate::adversary::wait_authenticated(&f, i, 4, "the five devices authenticate");
    }
    for i in [m1, m2, desk] {
        f.listen(i);
    }
    std::thread::sleep(Duration::from_millis(500));
    let send = |text: &str| {
        let sent = ptt_json(
            &f,
            s,
            &[
                "alert",
                "--severity",
                "severe",
                "--kind",
                "intrusion",
                "--text",
                text,
                "--json",
                "--wait",
                "all",
                "--timeout",
                "10",
            ],
        );
        (
            sent["id"].as_str().expect("id").to_string(),
            sent["seq"].as_u64().expect("seq"),
        )
    };
    let (a, a_seq) = send("zone 3");
    let (b, _) = send("zone 4");
    assert_eq!(
        f.status(desk).expect("status")["dispatcher"],
        true,
        "enrolled with --dispatcher"
    );

    // A member without the right: its own daemon refuses, and says why.
    let out = ptt(&f, m1, &["cancel", &a, "--text", "not mine"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only the alert's sender or a dispatcher"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The rogue member skips that check. It sends its cancel (signed and sealed with its real
    // keys) to the relay, which carries it unread, and to each member directly (gossipsub
    // forwards to a mesh, not to every peer, so a relay's copy alone need not reach all):
    // every member refuses it.
    let before: Vec<u64> = [s, m1, m2, desk]
        .iter()
        .map(|i| rejected(&f, *i, "not_dispatcher"))
        .collect();
    let relayed = |f: &Field| {
        f.status(relay)
            .and_then(|x| x["counters"]["alerts_relayed"].as_u64())
            .unwrap_or(0)
    };
    let relayed_before = relayed(&f);
    let s_dev = f.status(s).expect("status")["device_number"]
        .as_u64()
        .expect("device number");
    let alert = format!("{s_dev}:{a_seq}");
    let r_i = f.idx("rogue");
    let bundle = f.devs[r_i].bundle.clone();
    for target in [relay, s, m1, m2, desk] {
        let addr = crate::adversary::victim_addr(&f, target);
        let mut r = f.devs[r_i]
            .host
            .spawn(
                crate::adversary::rogue_bin(),
                [
                    "--bundle",
                    p(&bundle),
                    "--peer",
                    &addr,
                    "--mode",
                    "cancel-forge",
                    "--count",
                    "1",
                    "--alert",
                    &alert,
                ],
                &[],
            )
            .expect("rogue");
        f.lan
            .wait_until(
                "the rogue's cancel is sent",
                Duration::from_secs(30),
                || match r.stdout_lines().iter().any(|l| l.starts_with("sent 1")) {
                    true => Cond::Done(()),
                    false => Cond::Pending(r.stderr()),
                },
            )
            .unwrap_or_else(|e| panic!("to {}: {e}", f.devs[target].name));
        std::thread::sleep(Duration::from_millis(500));
        let _ = r.kill();
    }
    f.lan
        .wait_until(
            "every member refuses the rogue's cancel, the relay carries it",
            Duration::from_secs(30),
            || {
                let now: Vec<u64> = [s, m1, m2, desk]
                    .iter()
                    .map(|i| rejected(&f, *i, "not_dispatcher"))
                    .collect();
                if now.iter().zip(&before).all(|(n, b)| n > b) && relayed(&f) > relayed_before {
                    Cond::Done(())
                } else {
                    Cond::Pending(format!(
                        "not_dispatcher {now:?} (before {before:?}); relayed {} (before {relayed_before})",
                        relayed(&f)
                    ))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    for i in [m1, m2, desk] {
        assert!(changes_shown(&f, i, &a).is_empty(), "{}", f.devs[i].name);
    }

    // The dispatcher updates b: every listener shows the update, once.
    let upd = ptt_json(
        &f,
        desk,
        &[
            "alert",
            "--update",
            &b,
            "--severity",
            "moderate",
            "--kind",
            "intrusion",
            "--text",
            "one person, leaving",
            "--json",
        ],
    );
    let upd_id = upd["id"].as_str().expect("id").to_string();
    for i in [m1, m2] {
        f.lan
            .wait_until(
                "the update is shown",
                Duration::from_secs(15),
                || match changes_shown(&f, i, &b).as_slice() {
                    [] => Cond::Pending(format!(
                        "nothing shown; rejected {}, revision {}",
                        f.status(i)
                            .map(|s| s["counters"]["rejected"].clone())
                            .unwrap_or_default(),
                        f.status(i)
                            .map(|s| s["revision"].clone())
                            .unwrap_or_default()
                    )),
                    [(t, x)] if t == "update" && x == "one person, leaving" => Cond::Done(()),
                    other => Cond::Failed(format!("{other:?}")),
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }

    // m2 sleeps; the sender cancels a; every listener awake shows it once.
    let mut m2_daemon = f.devs[m2].daemon.take().expect("m2 runs");
    m2_daemon.signal("TERM").expect("SIGTERM");
    assert!(
        m2_daemon
            .wait_timeout(Duration::from_secs(20))
            .expect("wait")
            .is_some()
    );
    let cancel = ptt_json(&f, s, &["cancel", &a, "--text", "false alarm", "--json"]);
    let cancel_id = cancel["id"].as_str().expect("id").to_string();
    for i in [m1, desk] {
        f.lan
            .wait_until(
                "the cancel is shown",
                Duration::from_secs(15),
                || match changes_shown(&f, i, &a).as_slice() {
                    [] => Cond::Pending(String::new()),
                    [(t, x)] if t == "cancel" && x == "false alarm" => Cond::Done(()),
                    other => Cond::Failed(format!("{other:?}")),
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }
    // m2 wakes and catches up.
    f.start(m2);
    let check = |f: &Field, i: usize| -> Result<(), String> {
        let h = history(f, i)?;
        let ha = h.get(&a).ok_or("a is not in the history")?;
        let c = &ha["state"]["cancelled"];
        if c["by"] != "s" || c["text"] != "false alarm" || c["id"] != cancel_id.as_str() {
            return Err(format!("a: {ha}"));
        }
        let hb = h.get(&b).ok_or("b is not in the history")?;
        if hb["state"]["updated_by"] != upd_id.as_str() || !hb["state"]["cancelled"].is_null() {
            return Err(format!("b: {hb}"));
        }
        let hc = h
            .get(&cancel_id)
            .ok_or("the cancel is not in the history")?;
        if hc["msg_type"] != "cancel" || hc["references"]["id"] != a.as_str() {
            return Err(format!("cancel: {hc}"));
        }
        Ok(())
    };
    for i in [m1, m2, desk] {
        f.lan
            .wait_until(
                "history shows a cancelled",
                Duration::from_secs(30),
                || match check(&f, i) {
                    Ok(()) => Cond::Done(()),
                    Err(e) => Cond::Pending(e),
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }
    // What a restart reads back from the log is the same.
    let mut d = f.devs[m1].daemon.take().expect("m1 runs");
    d.signal("TERM").expect("SIGTERM");
    assert!(
        d.wait_timeout(Duration::from_secs(20))
            .expect("wait")
            .is_some()
    );
    f.start(m1);
    f.lan
        .wait_until(
            "m1 answers again",
            Duration::from_secs(30),
            || match check(&f, m1) {
                Ok(()) => Cond::Done(()),
                Err(e) => Cond::Pending(e),
            },
        )
        .unwrap_or_else(|e| panic!("m1 after a restart: {e}"));
    // A cancel of an id nobody knows is refused.
    let out = ptt(&f, s, &["cancel", "0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(1));
}

/// Escalations each listener showed for the alert `id`: (severity, µs after the alert's
/// creation by the sender's clock).
fn escalations(f: &Field, i: usize, id: &str, created: u64) -> Vec<(String, i64)> {
    f.shown(i)
        .into_iter()
        .filter(|v| v["references"]["id"] == id && v["msg_type"] == "escalation")
        .map(|v| {
            (
                v["severity"].as_str().unwrap_or("").to_string(),
                v["created_at_us"].as_u64().unwrap_or(0) as i64 - created as i64,
            )
        })
        .collect()
}

/// A channel whose policy escalates severe alerts no member acknowledged within 3 s, four
/// members (m2 a dispatcher), a rule `unacknowledged = true` on one. An unacknowledged severe
/// alert is announced again once, by its sender, 3 s (±1 s) after it was made, at `extreme`:
/// every listener shows that one escalation and the rule fires once. An alert a member
/// acknowledged in time, and a moderate one, are not escalated. Then the sender sends one more
/// and is killed at once: the dispatcher escalates it in its stead, 3 s after its time.
#[test]
fn an_unacknowledged_alert_is_escalated_once_by_its_sender() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::provision(
        "escal",
        &[],
        &[
            ("s", MEMBER),
            ("m1", MEMBER),
            ("m2", &["--dispatcher"]),
            ("m3", MEMBER),
        ],
    );
    let [s, m1, m2, m3] = ["s", "m1", "m2", "m3"].map(|n| f.idx(n));
    let dom = f.lan.dir().join("dom");
    let out = ok(&[
        "domain",
        "channel",
        "--dir",
        p(&dom),
        "--channel",
        "alerts",
        "--escalate-after",
        "3",
    ]);
    assert!(
        out.contains("severe and above escalated when unacknowledged after 3 s"),
        "{out}"
    );
    let fired = f.devs[m3].host.dir().join("fired.jsonl");
    let rules = f.devs[m3].host.dir().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nname = \"unanswered\"\nunacknowledged = true\nrun = [\"sh\", \"-c\", \"cat >> {0}; echo >> {0}\"]\n",
            fired.display()
        ),
    )
    .expect("rules");
    f.start(s);
    f.start(m1);
    f.start(m2);
    f.start_with(m3, &["--rules", p(&rules)]);
    for i in [s, m1, m2, m3] {
        crate::adversary::wait_authenticated(&f, i, 3, "the four members authenticate");
    }
    f.publish_newest(s, &[m1, m2, m3]);
    for i in [m1, m2, m3] {
        f.listen(i);
    }
    std::thread::sleep(Duration::from_millis(500));
    let send = |severity: &str, text: &str| {
        let sent = ptt_json(
            &f,
            s,
            &[
                "alert",
                "--severity",
                severity,
                "--kind",
                "intrusion",
                "--text",
                text,
                "--json",
            ],
        );
        (
            sent["id"].as_str().expect("id").to_string(),
            sent["seq"].as_u64().expect("seq"),
        )
    };
    let (lone, lone_seq) = send("severe", "nobody answers");
    let (acked, acked_seq) = send("severe", "answered");
    let (minor, minor_seq) = send("moderate", "below the policy");
    // m1 acknowledges the second as soon as it has it.
    f.lan
        .wait_until("m1 acknowledges", Duration::from_secs(10), || {
            let out = ptt(&f, m1, &["ack", &acked, "--text", "on it"]);
            if out.status.success() {
                Cond::Done(())
            } else {
                Cond::Pending(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let pending = f.status(s).expect("status")["escalations_pending"].clone();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as u64;
    if now_us < lone_seq + 2_500_000 {
        assert_eq!(pending, 2, "the severe two wait; the moderate one does not");
    }
    for i in [m1, m2, m3] {
        f.lan
            .wait_until(
                "the escalation is shown",
                Duration::from_secs(10),
                || match escalations(&f, i, &lone, lone_seq).as_slice() {
                    [] => Cond::Pending(String::new()),
                    [(sev, after)] if sev == "extreme" => Cond::Done(*after),
                    other => Cond::Failed(format!("{other:?}")),
                },
            )
            .map(|after| {
                assert!(
                    (2_000_000..=4_000_000).contains(&after),
                    "escalated {after} µs after the alert, not 3 s (±1 s)"
                )
            })
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }
    // Well past the others' time (and the dispatcher's, 3 s after the sender's): still one
    // escalation each, none of the others.
    std::thread::sleep(Duration::from_secs(5));
    for i in [m1, m2, m3] {
        assert_eq!(escalations(&f, i, &lone, lone_seq).len(), 1);
        assert!(escalations(&f, i, &acked, acked_seq).is_empty());
        assert!(escalations(&f, i, &minor, minor_seq).is_empty());
    }
    assert_eq!(f.status(s).expect("status")["escalations_pending"], 0);
    // The rule fired once, on the escalation.
    let lines: Vec<Value> = std::fs::read_to_string(&fired)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("the hook's JSON"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["references"]["id"], lone.as_str());
    // The sender's history shows it escalated.
    let h = history(&f, s).expect("history");
    assert!(
        h[&lone]["state"]["escalated_by"].is_string(),
        "{}",
        h[&lone]
    );
    assert!(h[&acked]["state"].is_null(), "{}", h[&acked]);

    // The sender is gone right after its alert: the dispatcher stands in, once, 3 s after the
    // alert's escalation time; the others show its escalation.
    let (gone, gone_seq) = send("severe", "the sensor is smashed");
    for i in [m1, m2, m3] {
        f.lan
            .wait_until("the last alert arrives", Duration::from_secs(10), || {
                if f.shown(i).iter().any(|v| v["id"] == gone.as_str()) {
                    Cond::Done(())
                } else {
                    Cond::Pending(String::new())
                }
            })
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
    }
    f.devs[s]
        .daemon
        .as_mut()
        .expect("s runs")
        .signal("KILL")
        .expect("SIGKILL");
    let by = |i: usize| -> Vec<(String, i64)> {
        f.shown(i)
            .into_iter()
            .filter(|v| v["references"]["id"] == gone.as_str() && v["msg_type"] == "escalation")
            .map(|v| {
                (
                    v["sender"].as_str().unwrap_or("").to_string(),
                    v["created_at_us"].as_u64().unwrap_or(0) as i64 - gone_seq as i64,
                )
            })
            .collect()
    };
    for i in [m1, m3] {
        let after = f
            .lan
            .wait_until(
                "the dispatcher's escalation is shown",
                Duration::from_secs(15),
                || match by(i).as_slice() {
                    [] => Cond::Pending(String::new()),
                    [(who, after)] if who == "m2" => Cond::Done(*after),
                    other => Cond::Failed(format!("{other:?}")),
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", f.devs[i].name));
        assert!(
            (5_000_000..=7_000_000).contains(&after),
            "escalated {after} µs after the alert, not 3 + 3 s (±1 s)"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for i in [m1, m3] {
        assert_eq!(by(i).len(), 1, "{}", f.devs[i].name);
    }
}
