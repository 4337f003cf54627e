//! Digital-world discovery: device search by kind, place and tag across a real domain in
//! namespaces, with profiles from certificates and from the devices' own presence records.

#[path = "support/netns.rs"]
mod netns;

use std::path::Path;
use std::time::Duration;

use netns::{Cond, Host, Lan, Proc};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ptt-node");

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn ok(args: &[&str]) {
    let o = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("ptt-node");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

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
