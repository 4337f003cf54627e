//! Digital-world discovery: device search by kind, place and tag across a real domain in
//! namespaces, with profiles from certificates and from the devices' own presence records.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::common::{self, BIN, ok, p};
use crate::support::field::{Dev, Field, MEMBER, nft};
use crate::support::netns::{self, Cond, Host, Lan, Proc};

fn search(h: &Host, data: &Path, args: &[&str]) -> Vec<String> {
    let mut full = vec!["search", "--json", "--data", p(data)];
    full.extend_from_slice(args);
    let o = h.run(BIN, &full).expect("search");
    assert!(
        o.status.success(),
        "search {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn search_by_kind_radius_and_tag_returns_exactly_the_matches() {
    if !netns::require_netns() {
        return;
    }
    let lan = Lan::new("disc").expect("LAN");
    let root = lan.dir().to_path_buf();
    let dom = root.join("dom");
    ok(&["domain", "init", "--dir", p(&dom), "--name", "discovery"]);
    // Seoul city hall and places 100 m, 1 km and 30 km away.
    let devices = [
        ("hh", "handheld", "37.5665,126.9780", "zone=north"),
        ("cam-a", "camera", "37.5674,126.9780", "zone=north"),
        ("cam-b", "camera", "37.5755,126.9780", "zone=south"),
        ("pir-c", "motion-sensor", "37.8365,126.9780", "zone=north"),
    ];
    let mut procs: Vec<(Host, std::path::PathBuf, Proc)> = vec![];
    for (name, kind, loc, tag) in devices {
        let out = root.join(name);
        ok(&[
            "domain",
            "enroll",
            "--dir",
            p(&dom),
            "--device",
            name,
            "--out",
            p(&out),
            "--kind",
            kind,
            "--location",
            loc,
            "--tag",
            tag,
        ]);
        let h = lan.add_host(name).expect("host");
        let data = h.dir().join("data");
        let listen = format!("/ip4/{}/tcp/0", h.addr());
        let d = h
            .spawn(
                BIN,
                [
                    "run",
                    "--bundle",
                    p(&out),
                    "--data",
                    p(&data),
                    "--listen",
                    &listen,
                    "--mdns-interval",
                    "2",
                ],
                &[],
            )
            .expect("daemon");
        procs.push((h, data, d));
    }
    let (hh, hh_data, _) = &procs[0];
    lan.wait_until(
        "all devices known with addresses",
        Duration::from_secs(30),
        || {
            let o = hh.run(BIN, ["search", "--json", "--data", p(hh_data)]).ok();
            let lines: Vec<Value> = o
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect()
                })
                .unwrap_or_default();
            let with_addr = lines
                .iter()
                .filter(|v| v["addresses"].as_array().is_some_and(|a| !a.is_empty()))
                .count();
            if lines.len() == 4 && with_addr == 4 {
                Cond::Done(())
            } else {
                Cond::Pending(format!(
                    "{} devices, {with_addr} with addresses",
                    lines.len()
                ))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let near = "37.5665,126.9780";
    assert_eq!(
        search(hh, hh_data, &["--kind", "camera"]),
        ["cam-a", "cam-b"]
    );
    assert_eq!(
        search(hh, hh_data, &["--near", near, "--radius", "500"]),
        ["cam-a", "hh"]
    );
    assert_eq!(
        search(hh, hh_data, &["--near", near, "--radius", "5000"]),
        ["cam-a", "cam-b", "hh"]
    );
    assert_eq!(
        search(hh, hh_data, &["--tag", "zone=north"]),
        ["cam-a", "hh", "pir-c"]
    );
    assert_eq!(
        search(
            hh,
            hh_data,
            &[
                "--kind",
                "camera",
                "--tag",
                "zone=north",
                "--near",
                near,
                "--radius",
                "200"
            ]
        ),
        ["cam-a"]
    );
    assert!(search(hh, hh_data, &["--kind", "toaster"]).is_empty());

    // A device moves and says so: the others find it at its new place and zone.
    let (pir, pir_data, _) = &procs[3];
    let o = pir
        .run(
            BIN,
            [
                "profile",
                "--data",
                p(pir_data),
                "--location",
                near,
                "--tag",
                "zone=south",
            ],
        )
        .expect("profile");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    lan.wait_until("the move reached hh", Duration::from_secs(15), || {
        let s = search(hh, hh_data, &["--tag", "zone=south"]);
        if s == ["cam-b", "pir-c"] {
            Cond::Done(())
        } else {
            Cond::Pending(format!("{s:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        search(hh, hh_data, &["--near", near, "--radius", "500"]),
        ["cam-a", "hh", "pir-c"]
    );
    let o = pir
        .run(BIN, ["profile", "--data", p(pir_data), "--reset"])
        .expect("profile");
    assert!(o.status.success());
    lan.wait_until("the reset reached hh", Duration::from_secs(15), || {
        let s = search(hh, hh_data, &["--tag", "zone=south"]);
        if s == ["cam-b"] {
            Cond::Done(())
        } else {
            Cond::Pending(format!("{s:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Distances are reported, nearest first.
    let o = hh
        .run(
            BIN,
            [
                "search",
                "--json",
                "--data",
                p(hh_data),
                "--near",
                near,
                "--radius",
                "40000",
            ],
        )
        .expect("search");
    let found: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dist: Vec<f64> = found
        .iter()
        .map(|v| v["distance_m"].as_f64().unwrap())
        .collect();
    assert!(dist.windows(2).all(|w| w[0] <= w[1]), "{dist:?}");
    assert!(
        (dist[1] - 100.0).abs() < 5.0 && (dist[3] - 30_000.0).abs() < 500.0,
        "{dist:?}"
    );
    // Each device's announced address is its namespace address.
    let cam_a = found.iter().find(|v| v["name"] == "cam-a").unwrap();
    let want = procs[1].0.addr().to_string();
    assert!(
        cam_a["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().contains(&want)),
        "{cam_a}"
    );
}

/// Physical-world discovery: with mDNS off, a device tag read from one device lets another
/// dial and authenticate it; a tampered tag and a tag of another domain are refused.
#[test]
fn a_device_tag_connects_without_mdns_and_tampering_is_refused() {
    if !netns::require_netns() {
        return;
    }
    let lan = Lan::new("tags").expect("LAN");
    let root = lan.dir().to_path_buf();
    let (dom, other) = (root.join("dom"), root.join("other"));
    ok(&["domain", "init", "--dir", p(&dom), "--name", "tags"]);
    ok(&["domain", "init", "--dir", p(&other), "--name", "elsewhere"]);
    common::enroll(&dom, &root, &["reader", "door"]);
    ok(&[
        "domain",
        "enroll",
        "--dir",
        p(&other),
        "--device",
        "stranger",
        "--out",
        p(&root.join("stranger")),
    ]);
    let start = |name: &str| {
        let h = lan.add_host(name).expect("host");
        let data = h.dir().join("data");
        let listen = format!("/ip4/{}/tcp/0", h.addr());
        let d = h
            .spawn(
                BIN,
                [
                    "run",
                    "--no-mdns",
                    "--bundle",
                    p(&root.join(name)),
                    "--data",
                    p(&data),
                    "--listen",
                    &listen,
                ],
                &[],
            )
            .expect("daemon");
        (h, data, d)
    };
    let (reader, reader_data, _r) = start("reader");
    let (door, door_data, _d) = start("door");
    let (stranger, stranger_data, _s) = start("stranger");
    let tag_of = |h: &Host, name: &str, data: &Path| -> String {
        let mut out = None;
        lan.wait_until(
            &format!("{name}'s tag"),
            Duration::from_secs(15),
            || match h.run(
                BIN,
                [
                    "tag",
                    "--uri-only",
                    "--bundle",
                    p(&root.join(name)),
                    "--data",
                    p(data),
                ],
            ) {
                Ok(o) if o.status.success() => {
                    let uri = String::from_utf8_lossy(&o.stdout).trim().to_string();
                    if uri.contains("&a=") {
                        out = Some(uri);
                        Cond::Done(())
                    } else {
                        Cond::Pending(format!("no address yet: {uri}"))
                    }
                }
                Ok(o) => Cond::Pending(String::from_utf8_lossy(&o.stderr).into_owned()),
                Err(e) => Cond::Pending(e.to_string()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        out.expect("tag")
    };
    let door_tag = tag_of(&door, "door", &door_data);
    let stranger_tag = tag_of(&stranger, "stranger", &stranger_data);

    // Without mDNS nobody found anybody.
    let st = reader
        .run(BIN, ["status", "--json", "--data", p(&reader_data)])
        .expect("status");
    let st: Value = serde_json::from_slice(&st.stdout).expect("json");
    assert_eq!(st["peers"]["connected"], 0, "{st}");

    // A tampered fingerprint: refused, and says why.
    let fp_at = door_tag.find("fp=").expect("fp") + 3;
    let mut tampered = door_tag.clone();
    let flipped = if &tampered[fp_at..fp_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(fp_at..fp_at + 1, flipped);
    let o = reader
        .run(BIN, ["connect", "--data", p(&reader_data), &tampered])
        .expect("connect");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fingerprint"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A tag of another domain: refused before dialling.
    let o = reader
        .run(BIN, ["connect", "--data", p(&reader_data), &stranger_tag])
        .expect("connect");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("belongs to domain"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The real tag: connected and authenticated, and alerts flow.
    let o = reader
        .run(BIN, ["connect", "--data", p(&reader_data), &door_tag])
        .expect("connect");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("connected to door"));
    let listen = door
        .spawn(BIN, ["listen", "--json", "--data", p(&door_data)], &[])
        .expect("listen");
    std::thread::sleep(Duration::from_millis(1500));
    let o = reader
        .run(
            BIN,
            [
                "alert",
                "--data",
                p(&reader_data),
                "--severity",
                "minor",
                "--kind",
                "tag",
                "--text",
                "hello door",
            ],
        )
        .expect("alert");
    assert!(o.status.success());
    lan.wait_until("door shows the alert", Duration::from_secs(10), || {
        if listen
            .stdout_lines()
            .iter()
            .any(|l| l.contains("hello door"))
        {
            Cond::Done(())
        } else {
            Cond::Pending("not yet".into())
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let o = reader
        .run(BIN, ["peers", "--json", "--data", p(&reader_data)])
        .expect("peers");
    let peers = String::from_utf8_lossy(&o.stdout);
    assert!(
        !peers.contains("stranger"),
        "the stranger was never dialled or admitted: {peers}"
    );
}

/// Queries sent by one device so far: the packet count of the `queries` counter that
/// [`count_queries_drop_answers`] put in its namespace.
fn queries_sent(d: &Dev) -> u64 {
    let o = d
        .host
        .run("nft", ["list", "counter", "inet", "q", "queries"])
        .expect("nft list");
    let text = String::from_utf8_lossy(&o.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {text}"))
}

/// Counts the mDNS queries a device sends (a DNS header's QR bit is 0 in a query), and drops
/// every mDNS answer it receives, so that no answer ever resets its query timer.
fn count_queries_drop_answers(d: &Dev) {
    nft(
        d,
        &[
            "add table inet q",
            "add counter inet q queries",
            "add chain inet q out { type filter hook output priority 0 ; }",
            "add rule inet q out udp dport 5353 @th,80,1 0 counter name queries",
            "add chain inet q in { type filter hook input priority 0 ; }",
            "add rule inet q in udp dport 5353 @th,80,1 1 drop",
        ],
    );
}

/// Duplicate question suppression (the `ptt-node patch` in vendor/libp2p-mdns): every member
/// answers a query by multicast, so a member that hears another's query puts its own off. Six
/// daemons with a 2 s interval, none hearing any answer (dropped: nothing else resets their
/// timers), send about one query per interval between them; each would send its own every 2 s
/// without the patch (about 60 in the 20 s counted).
#[test]
fn members_that_hear_a_query_do_not_send_their_own() {
    if !netns::require_netns() || !netns::require_program("nft") {
        return;
    }
    let names: Vec<String> = (1..=6).map(|i| format!("q{i}")).collect();
    let specs: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), MEMBER)).collect();
    let mut f = Field::provision("mdnsq", &[], &specs);
    for i in 0..f.devs.len() {
        count_queries_drop_answers(&f.devs[i]);
        f.start(i);
    }
    // Probing (0, 0.5, 1 s: no answer ends it) is over after about 2 s.
    std::thread::sleep(Duration::from_secs(5));
    let before: u64 = f.devs.iter().map(queries_sent).sum();
    let window = Duration::from_secs(20);
    std::thread::sleep(window);
    let sent: u64 = f.devs.iter().map(queries_sent).sum::<u64>() - before;
    let each: Vec<u64> = f.devs.iter().map(queries_sent).collect();
    eprintln!("{sent} mDNS queries in {window:?} from six members");
    // About 20 s / (2 s + the smallest of six draws over 1 s) = 9, plus the rare pair that
    // fires within a query's delay of each other.
    assert!(
        (3..=20).contains(&sent),
        "{sent} queries in {window:?} from six members (totals per member {each:?})"
    );
}
