//! CAP 1.2 in and out: every document `ptt-node` writes is valid against the OASIS CAP 1.2
//! schema (checked by xmllint, libxml2's validator, not by our own reader), and a CAP document
//! sent with `alert --cap` reaches a listener with its fields. Real daemons on loopback.
//!
//! Needs xmllint and the schema (scripts/cap-schema.sh fetches it): under CI a missing one
//! fails the test; elsewhere the test says so and skips.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptt_node::alert::{ReceivedAlert, Severity, Via};
use ptt_node::cert::Location;

use crate::support::common::{self, BIN, ok, p};
use crate::support::loopback::{self, wait_for};

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The schema's path, or `None` (skip) outside CI when it cannot be had. Fetched once per test
/// process.
fn schema() -> Option<PathBuf> {
    static SCHEMA: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(fetch_schema).clone()
}

fn fetch_schema() -> Option<PathBuf> {
    let missing = |why: String| {
        assert!(!in_ci(), "CI must validate CAP output: {why}");
        eprintln!("skipping the CAP schema check: {why}");
        None
    };
    if Command::new("xmllint").arg("--version").output().is_err() {
        return missing("xmllint not found (apt-get install libxml2-utils)".into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cap-schema.sh");
    match Command::new(&script).output() {
        Ok(o) if o.status.success() => {
            Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        }
        Ok(o) => missing(format!(
            "scripts/cap-schema.sh failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => missing(format!("scripts/cap-schema.sh: {e}")),
    }
}

/// Validates documents with xmllint; panics with its report when one is invalid.
fn validate(xsd: &Path, docs: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let f = dir.path().join(format!("{i}.xml"));
            std::fs::write(&f, d).unwrap();
            f
        })
        .collect();
    let o = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(xsd)
        .args(&files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "xmllint: {report}\nfirst document:\n{}",
        docs.first().map_or("", String::as_str)
    );
    assert_eq!(report.matches(" validates").count(), docs.len(), "{report}");
}

fn alert(i: usize) -> ReceivedAlert {
    let sev = Severity::ALL[i % 5];
    ReceivedAlert {
        id: format!("{i:016x}"),
        channel: if i.is_multiple_of(2) {
            "alerts"
        } else {
            "ops, east"
        }
        .into(),
        sender: format!("cam {i}"),
        sender_peer_id: "12D3KooWexample".into(),
        sender_device: i as u32,
        seq: i as u64,
        severity: sev,
        kind: ["intrusion", "smoke & heat", "<motion>", "temp\u{7}"][i % 4].into(),
        text: [
            "",
            "plain",
            "multi\nline & <tags> \"quoted\" 'single' \u{0}nul",
            "유니코드 텍스트 ünïcødé \u{FFFF}",
        ][i % 4]
            .into(),
        created_at_us: 1_700_000_000_000_000 + i as u64 * 1_234_567,
        received_at_us: 1_700_000_001_000_000 + i as u64 * 1_234_567,
        location: (!i.is_multiple_of(3)).then_some(Location {
            lat: -89.5 + i as f64,
            lon: 179.9 - i as f64,
        }),
        attributes: match i % 3 {
            0 => vec![],
            1 => vec![
                ("celsius".into(), "71.5".into()),
                ("cap:urgency".into(), "Immediate".into()),
                ("cap:status".into(), "Exercise".into()),
            ],
            _ => vec![
                ("cap:certainty".into(), "nonsense".into()),
                ("cap:area".into(), "North & gate".into()),
                ("cap:instruction".into(), "Leave by the east stair".into()),
            ],
        },
        recipient: (i % 4 == 3).then(|| format!("guard {i}")),
        claimed_severity: None,
        via: Via::Gossip,
        late: false,
        // Every fifth an update, every seventh a cancellation (naming a sender with a space),
        // every eleventh an escalation, every sixth an alert changed since.
        msg_type: if i % 7 == 6 {
            ptt_node::alert::MsgType::Cancel
        } else if i % 11 == 10 {
            ptt_node::alert::MsgType::Escalation
        } else if i % 5 == 4 {
            ptt_node::alert::MsgType::Update
        } else {
            ptt_node::alert::MsgType::Alert
        },
        references: (i % 7 == 6 || i % 5 == 4 || i % 11 == 10).then(|| {
            ptt_node::alert::Referenced {
                id: format!("{:016x}", i + 1000),
                sender: format!("cam, {i}"),
                sender_device: 1,
                created_at_us: 1_700_000_000_000_000,
            }
        }),
        state: (i % 6 == 5).then(|| ptt_node::alert::AlertState {
            updated_by: Some("00000000000000aa".into()),
            cancelled: (i % 12 == 11).then(|| ptt_node::alert::Cancellation {
                id: "00000000000000bb".into(),
                by: "desk <1>".into(),
                at_us: 1,
                text: "false & alarm".into(),
            }),
            escalated_by: (i % 12 == 5).then(|| "00000000000000cc".into()),
        }),
    }
}

#[test]
fn every_document_written_is_valid_cap_1_2() {
    let Some(xsd) = schema() else { return };
    // Edge cases a peer can send: a clock beyond year 9999, a location out of range.
    let mut edge = alert(5);
    edge.created_at_us = u64::MAX;
    edge.location = Some(Location {
        lat: f64::NAN,
        lon: 500.0,
    });
    let mut docs: Vec<String> = (0..24)
        .map(|i| {
            ptt_node::cap::to_cap(
                &alert(i),
                if i.is_multiple_of(2) {
                    "site-a"
                } else {
                    "site b, east"
                },
            )
        })
        .collect();
    docs.push(ptt_node::cap::to_cap(&edge, "edge"));
    // Updates and cancellations name what they change; changed alerts say so.
    for (i, d) in docs.iter().enumerate().take(24) {
        let a = alert(i);
        let kind = match a.msg_type {
            ptt_node::alert::MsgType::Alert => "Alert",
            ptt_node::alert::MsgType::Update | ptt_node::alert::MsgType::Escalation => "Update",
            ptt_node::alert::MsgType::Cancel => "Cancel",
        };
        assert_eq!(
            d.contains("ptt:escalation"),
            a.msg_type == ptt_node::alert::MsgType::Escalation,
            "{d}"
        );
        assert!(d.contains(&format!("<msgType>{kind}</msgType>")), "{d}");
        if let Some(r) = &a.references {
            assert!(
                d.contains(&format!(
                    ",ptt-node:{}:{},",
                    if i.is_multiple_of(2) {
                        "site-a"
                    } else {
                        "site-b--east"
                    },
                    r.id
                )),
                "{d}"
            );
        }
        assert_eq!(d.contains("ptt:state"), a.state.is_some(), "{d}");
    }
    assert!(docs.iter().any(|d| d.contains("<msgType>Cancel</msgType>")));
    assert!(docs.iter().any(|d| d.contains("<msgType>Update</msgType>")));
    // Acknowledgements: msgType Ack, a note, references to the alert.
    for i in 0..8 {
        let a = alert(i);
        let ack = ptt_node::control::AckInfo {
            id: a.id.clone(),
            channel: a.channel.clone(),
            sender: a.sender.clone(),
            created_at_us: a.created_at_us,
            recipient: a.recipient.clone(),
            by: format!("guard {i}"),
            by_device: 40 + i as u32,
            at_us: a.received_at_us + 5_000_000,
            text: a.text.clone(),
        };
        let doc = ptt_node::cap::to_cap_ack(&ack, "site-a");
        assert!(doc.contains("<msgType>Ack</msgType>"), "{doc}");
        let refs = doc
            .split_once("<references>")
            .and_then(|(_, r)| r.split_once("</references>"))
            .map(|(r, _)| r.to_string())
            .unwrap_or_default();
        assert_eq!(refs.split(',').count(), 3, "sender,identifier,sent: {doc}");
        assert!(refs.contains(&format!("ptt-node:site-a:{}", a.id)), "{doc}");
        docs.push(doc);
    }
    validate(&xsd, &docs);
    // The check can fail: a document missing a required element does not validate.
    let broken = docs[1].replace("<certainty>Observed</certainty>", "");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.xml");
    std::fs::write(&f, broken).unwrap();
    let o = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&xsd)
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "xmllint accepted a document without <certainty>"
    );
}

const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KR-SEOUL-2026-0001</identifier>
  <sender>ops@city.example</sender>
  <sent>2026-11-22T10:00:00+09:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Fire</category>
    <event>smoke</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <headline>Smoke in hall B</headline>
    <description>Smoke detected in hall B &amp; corridor 2</description>
    <instruction>Leave by the east stair</instruction>
    <parameter><valueName>floor</valueName><value>2</value></parameter>
    <area>
      <areaDesc>Hall B</areaDesc>
      <circle>37.56650,126.97800 0.1</circle>
    </area>
  </info>
</alert>
"#;

/// Reads CAP documents from a `listen --format cap` until `n` are complete; fails after
/// `timeout` (the lines are read on a thread of their own, so a lost alert cannot hang the test).
fn read_docs(
    lines: &std::sync::mpsc::Receiver<String>,
    n: usize,
    timeout: Duration,
) -> Vec<String> {
    let end = Instant::now() + timeout;
    let mut docs = Vec::new();
    let mut cur = String::new();
    while docs.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("only {} CAP documents came ({e})", docs.len()));
        cur.push_str(&line);
        cur.push('\n');
        if line.trim_end() == "</alert>" {
            docs.push(std::mem::take(&mut cur));
        }
    }
    docs
}

/// Stops a `listen`.
fn listen_done(mut listen: std::process::Child) {
    let _ = listen.kill();
    let _ = listen.wait();
}

#[test]
fn a_cap_document_sent_reaches_a_listener_as_valid_cap() {
    let xsd = schema();
    let t = tempfile::tempdir().unwrap();
    common::provision(t.path(), "seoul", &["cam", "guard"]);
    let (cam_data, guard_data) = (t.path().join("cam-data"), t.path().join("guard-data"));
    let _g = loopback::start_loopback(&t.path().join("guard"), &guard_data, None);
    let guard_addr = loopback::address(&guard_data);
    let _c = loopback::start_loopback(&t.path().join("cam"), &cam_data, Some(&guard_addr));
    wait_for("guard authenticates cam", 30, || {
        loopback::status(&guard_data)
            .filter(|s| s["peers"]["authenticated"] == 1)
            .map(|_| ())
    });
    let mut listen = Command::new(BIN)
        .args(["listen", "--format", "cap", "--data", p(&guard_data)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = BufReader::new(listen.stdout.take().unwrap());
    std::thread::spawn(move || {
        for l in stdout.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    // Gossip needs a heartbeat to learn the topic.
    std::thread::sleep(Duration::from_secs(2));

    let file = t.path().join("smoke.xml");
    std::fs::write(&file, DOC).unwrap();
    let id = ok(&["alert", "--data", p(&cam_data), "--cap", p(&file)]);
    assert_eq!(id.trim().len(), 16, "prints the alert id: {id}");
    // And from standard input, edited.
    let mut stdin_alert = Command::new(BIN)
        .args(["alert", "--data", p(&cam_data), "--cap", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    stdin_alert
        .stdin
        .take()
        .unwrap()
        .write_all(DOC.replace("<event>smoke", "<event>heat").as_bytes())
        .unwrap();
    assert!(stdin_alert.wait_with_output().unwrap().status.success());

    let docs = read_docs(&lines, 2, Duration::from_secs(20));
    let first = &docs[0];
    for want in [
        "<sender>cam@seoul</sender>",
        "<event>smoke</event>",
        "<severity>Extreme</severity>",
        "<urgency>Immediate</urgency>",
        "<category>Fire</category>",
        "<description>Smoke detected in hall B &amp; corridor 2</description>",
        "<instruction>Leave by the east stair</instruction>",
        "<valueName>floor</valueName>\n      <value>2</value>",
        "<valueName>cap:identifier</valueName>\n      <value>KR-SEOUL-2026-0001</value>",
        "<areaDesc>Hall B</areaDesc>",
        "<circle>37.56650,126.97800 0.1</circle>",
        "<restriction>members of ptt-node domain seoul reading channel alerts</restriction>",
    ] {
        assert!(first.contains(want), "{want} missing from\n{first}");
    }
    assert!(docs[1].contains("<event>heat</event>"), "{}", docs[1]);
    if let Some(xsd) = &xsd {
        validate(xsd, &docs);
    }

    // A CAP tool updates the first alert it received: an Update whose <references> names it
    // as CAP does (sender,identifier,sent of the document listen wrote). Then it cancels it
    // with the update's own document turned into a Cancel. Both reach the listener and name
    // the first alert; history shows it cancelled.
    let field = |doc: &str, name: &str| -> String {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let from = doc.find(&open).expect(name) + open.len();
        doc[from..from + doc[from..].find(&close).expect(name)].to_string()
    };
    let first_ref = format!(
        "{},{},{}",
        field(first, "sender"),
        field(first, "identifier"),
        field(first, "sent")
    );
    let update = DOC
        .replace("<msgType>Alert", "<msgType>Update")
        .replace(
            "<info>",
            &format!("<references>other@x,NWS-1 {first_ref}</references><info>"),
        )
        .replace(
            "Smoke detected in hall B &amp; corridor 2",
            "Smoke cleared in hall B",
        );
    std::fs::write(&file, &update).unwrap();
    let upd_id = ok(&["alert", "--data", p(&cam_data), "--cap", p(&file)]);
    let cancel = update
        .replace("<msgType>Update", "<msgType>Cancel")
        .replace("Smoke cleared in hall B", "false alarm: a kettle");
    std::fs::write(&file, &cancel).unwrap();
    let cancel_id = ok(&["alert", "--data", p(&cam_data), "--cap", p(&file), "--json"]);
    let cancel_id: serde_json::Value = serde_json::from_str(&cancel_id).expect("json");
    let mut changes = read_docs(&lines, 2, Duration::from_secs(20));
    // Gossip may deliver the two in either order.
    changes.sort_by_key(|d| field(d, "msgType") != "Update");
    for (doc, msg_type, text, own) in [
        (
            &changes[0],
            "Update",
            "Smoke cleared in hall B",
            upd_id.trim(),
        ),
        (
            &changes[1],
            "Cancel",
            "false alarm: a kettle",
            cancel_id["id"].as_str().expect("id"),
        ),
    ] {
        assert_eq!(field(doc, "msgType"), msg_type, "{doc}");
        assert!(field(doc, "identifier").ends_with(own), "{doc}");
        assert_eq!(field(doc, "references"), first_ref, "{doc}");
        assert!(
            doc.contains(&format!("<description>{text}</description>")),
            "{doc}"
        );
    }
    if let Some(xsd) = &xsd {
        validate(xsd, &changes);
    }
    let first_id = field(first, "identifier")
        .rsplit(':')
        .next()
        .expect("id")
        .to_string();
    let h: Vec<serde_json::Value> = ok(&["history", "--data", p(&guard_data), "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let original = h
        .iter()
        .find(|a| a["id"] == first_id.as_str())
        .unwrap_or_else(|| panic!("{first_id} not in {h:?}"));
    assert_eq!(
        original["state"]["cancelled"]["text"], "false alarm: a kettle",
        "{original}"
    );
    assert_eq!(original["state"]["updated_by"], upd_id.trim(), "{original}");
    listen_done(listen);

    // history: CAP too, and text with colour only when asked (stdout is a pipe here).
    let h = ok(&["history", "--data", p(&guard_data), "--format", "cap"]);
    assert_eq!(h.matches("</alert>").count(), 4, "{h}");
    let plain = ok(&["history", "--data", p(&guard_data)]);
    assert!(
        plain.contains("EXTREME") && !plain.contains('\x1b'),
        "{plain}"
    );
    let coloured = ok(&["history", "--data", p(&guard_data), "--color", "always"]);
    assert!(
        coloured.contains("\x1b[1;97;41mEXTREME\x1b[0m"),
        "{coloured:?}"
    );

    // A bad document: one line naming the file and what is wrong; nothing is sent.
    let sent_before = loopback::status(&cam_data).unwrap()["counters"]["alerts_sent"].clone();
    let bad = t.path().join("bad.xml");
    for (doc, says) in [
        (
            DOC.replace("<severity>Extreme", "<severity>Huge"),
            "<severity> is \"Huge\"",
        ),
        (DOC.replace("cap:1.2", "cap:1.1"), "not a CAP 1.2 alert"),
        (DOC.replace("</info>", ""), "not well-formed"),
        (
            DOC.replace("<msgType>Alert", "<msgType>Cancel"),
            "<references> names no ptt-node alert",
        ),
        (
            DOC.replace("<msgType>Alert", "<msgType>Ack"),
            "<msgType> is Ack",
        ),
    ] {
        std::fs::write(&bad, doc).unwrap();
        let o = Command::new(BIN)
            .args(["alert", "--data", p(&cam_data), "--cap", p(&bad)])
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains(p(&bad)) && e.contains(says), "{says}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    let o = Command::new(BIN)
        .args([
            "alert",
            "--data",
            p(&cam_data),
            "--cap",
            p(&t.path().join("missing.xml")),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    // --cap with --kind is a usage error.
    let o = Command::new(BIN)
        .args(["alert", "--cap", p(&file), "--kind", "x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        loopback::status(&cam_data).unwrap()["counters"]["alerts_sent"],
        sent_before
    );
}
