//! The TTA seed's scenario 6.3 with the example's own rule files
//! (`examples/scenario-6.3/`): a thermal sensor publishes readings, the home server's rule
//! sends the air conditioner a directed command above 30 °C (and below 24 °C), and the air
//! conditioner's hook switches it (writes its state file). Real daemons in namespaces.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::common::{BIN, ok, p};
use crate::support::netns::{self, Cond, Host, Lan};

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/scenario-6.3")
        .join(file)
}

fn reading(h: &Host, data: &Path, celsius: &str) {
    let o = h
        .run(
            BIN,
            [
                "alert",
                "--data",
                p(data),
                "--severity",
                "minor",
                "--kind",
                "temperature",
                "--text",
                "reading",
                "--attr",
                &format!("celsius={celsius}"),
            ],
        )
        .expect("alert");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn thermal_sensor_switches_the_air_conditioner_through_the_home_server() {
    if !netns::require_netns() {
        return;
    }
    let lan = Lan::new("s63").expect("LAN");
    let root = lan.dir().to_path_buf();
    let dom = root.join("dom");
    ok(&["domain", "init", "--dir", p(&dom), "--name", "home"]);
    for (n, kind) in [
        ("thermal-1", "thermal-sensor"),
        ("home-server", "home-server"),
        ("ac-1", "air-conditioner"),
    ] {
        ok(&[
            "domain",
            "enroll",
            "--dir",
            p(&dom),
            "--device",
            n,
            "--kind",
            kind,
            "--out",
            p(&root.join(n)),
        ]);
    }
    let state = root.join("ac-1.state");
    let mut hosts = vec![];
    for (n, rules) in [
        ("thermal-1", None),
        ("home-server", Some("home-server.rules.toml")),
        ("ac-1", Some("ac.rules.toml")),
    ] {
        let h = lan.add_host(n).expect("host");
        let data = h.dir().join("data");
        let listen = format!("/ip4/{}/tcp/0", h.addr());
        let mut args = vec![
            "run".to_string(),
            "--bundle".into(),
            p(&root.join(n)).into(),
            "--data".into(),
            p(&data).into(),
            "--listen".into(),
            listen,
            "--mdns-interval".into(),
            "2".into(),
        ];
        if let Some(r) = rules {
            args.extend(["--rules".to_string(), p(&example(r)).to_string()]);
        }
        let env = [("AC_STATE", p(&state)), ("RUST_LOG", "info,ptt_node=debug")];
        let d = h.spawn(BIN, &args, &env).expect("daemon");
        hosts.push((h, data, d));
    }
    lan.wait_until("all three authenticated", Duration::from_secs(30), || {
        let n: Vec<Option<u64>> = hosts
            .iter()
            .map(|(h, d, _)| {
                let o = h.run(BIN, ["status", "--json", "--data", p(d)]).ok()?;
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
                v["peers"]["authenticated"].as_u64()
            })
            .collect();
        if n.iter().all(|x| *x == Some(2)) {
            Cond::Done(())
        } else {
            Cond::Pending(format!("{n:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (sensor, sensor_data, _) = &hosts[0];

    // Below the threshold nothing happens.
    reading(sensor, sensor_data, "26.5");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !state.exists(),
        "the air conditioner was switched below the threshold"
    );

    // Above it, the home server's rule commands the air conditioner, whose hook switches it.
    reading(sensor, sensor_data, "31.2");
    lan.wait_until("the air conditioner is on", Duration::from_secs(10), || {
        match std::fs::read_to_string(&state) {
            Ok(s) if s.trim() == "on" => Cond::Done(()),
            other => Cond::Pending(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Cool again: off.
    reading(sensor, sensor_data, "22.0");
    lan.wait_until(
        "the air conditioner is off",
        Duration::from_secs(10),
        || match std::fs::read_to_string(&state) {
            Ok(s) if s.trim() == "off" => Cond::Done(()),
            other => Cond::Pending(format!("{other:?}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let (hs, hs_data, _) = &hosts[1];
    let o = hs
        .run(BIN, ["status", "--json", "--data", p(hs_data)])
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["actions"]["sent"], 2, "{v}");
    assert_eq!(v["actions"]["matched"], 2, "{v}");
    // The sensor (not the recipient) cannot read the commands, but carried them or not: it
    // shows nothing on its own listen either way; the air conditioner's hook ran twice.
    let (ac, ac_data, _) = &hosts[2];
    let o = ac
        .run(BIN, ["status", "--json", "--data", p(ac_data)])
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["actions"]["hooks_run"], 2, "{v}");
    assert_eq!(v["actions"]["failed"], 0, "{v}");
}
