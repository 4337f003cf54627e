//! `scripts/install.sh` as a new user would run it, then the installed binary with the
//! installed configuration: two devices, each installed into a root of its own (`--root`) and
//! run in its own network namespace on one LAN, find each other by mDNS, and an alert sent
//! with one installed binary is shown by `listen` of the other. The unit is checked by
//! `systemd-analyze verify` inside install.sh (any warning fails it), and a broken unit must
//! fail the install.
//!
//! Needs root and iproute2 (fails on CI, skips otherwise); systemd-analyze when present.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::common::{self, BIN, p};
use crate::support::netns::{self, Cond, Lan};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn install(root: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new("bash");
    c.arg(Path::new(REPO).join("scripts/install.sh"))
        .args(["--root", p(root), "--binary", BIN])
        .args(extra);
    c.output().expect("install.sh")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn installed_devices_find_each_other_and_deliver_an_alert() {
    if !netns::require_netns() {
        return;
    }
    let lan = Lan::new("install").expect("create LAN");
    let dir = lan.dir().to_path_buf();
    common::provision(&dir, "inst", &["cam", "guard"]);

    let mut devices = vec![];
    for name in ["cam", "guard"] {
        let bundle = dir.join(name);
        let root = dir.join(format!("{name}-root"));
        let out = install(&root, &["--bundle", p(&bundle)]);
        assert!(
            out.status.success(),
            "install.sh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let state = root.join("var/lib/ptt-node");
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("bundle/identity.key")), 0o600);
        assert_eq!(mode(&root.join("etc/ptt-node")), 0o750);
        assert_eq!(mode(&root.join("etc/ptt-node/ptt-node.toml")), 0o640);
        let unit =
            std::fs::read_to_string(root.join("etc/systemd/system/ptt-node.service")).unwrap();
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/ptt-node run --config /etc/ptt-node/ptt-node.toml"
        ));
        // Manual pages and completions from the installed binary.
        let man = root.join("usr/local/share/man/man1");
        assert!(
            std::fs::read_to_string(man.join("ptt-node.1"))
                .unwrap()
                .contains(".TH ptt-node")
        );
        assert!(man.join("ptt-node-domain-enroll.1").exists());
        assert!(
            std::fs::read_to_string(
                root.join("usr/local/share/bash-completion/completions/ptt-node")
            )
            .unwrap()
            .contains("listen")
        );
        // A second run keeps the configuration an administrator may have edited.
        let conf = root.join("etc/ptt-node/ptt-node.toml");
        let edited = std::fs::read_to_string(&conf).unwrap() + "# edited\n";
        std::fs::write(&conf, &edited).unwrap();
        assert!(install(&root, &[]).status.success());
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
        let host = lan.add_host(name).expect("add host");
        devices.push((root, host));
    }

    // The installed binary with the installed configuration, in the environment systemd gives
    // the unit (STATE_DIRECTORY, RUNTIME_DIRECTORY), so the socket goes where the service's
    // does; only the paths, which name the final locations, point into each device's root
    // (flags win over the file). The first serves metrics on its namespace's loopback.
    let mut daemons = vec![];
    for (i, (root, host)) in devices.iter().enumerate() {
        let bin = root.join("usr/local/bin/ptt-node");
        let state = root.join("var/lib/ptt-node");
        let run = root.join("run/ptt-node");
        std::fs::create_dir_all(&run).unwrap();
        let conf = root.join("etc/ptt-node/ptt-node.toml");
        let bundle = state.join("bundle");
        let mut args = vec![
            "run",
            "--config",
            p(&conf),
            "--bundle",
            p(&bundle),
            "--data",
            p(&state),
        ];
        if i == 0 {
            args.extend(["--metrics", "9464"]);
        }
        daemons.push(
            host.spawn(
                &bin,
                args,
                &[
                    ("RUST_LOG", "info"),
                    ("STATE_DIRECTORY", p(&state)),
                    ("RUNTIME_DIRECTORY", p(&run)),
                ],
            )
            .expect("start the installed daemon"),
        );
    }
    let cli = |i: usize, args: &[&str]| {
        let (root, host) = &devices[i];
        let bin = root.join("usr/local/bin/ptt-node");
        let sock = root.join("run/ptt-node/control.sock");
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--socket", p(&sock)]);
        host.run(&bin, a)
    };
    lan.wait_until(
        "the two installed devices authenticate each other",
        Duration::from_secs(30),
        || {
            let o = match cli(0, &["status", "--json"]) {
                Ok(o) if o.status.success() => o,
                _ => return Cond::Pending("no status yet".into()),
            };
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            match v["peers"]["authenticated"].as_u64() {
                Some(1) => Cond::Done(()),
                n => Cond::Pending(format!("authenticated: {n:?}")),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let (root1, host1) = &devices[1];
    let listen = host1
        .spawn(
            root1.join("usr/local/bin/ptt-node"),
            [
                "listen",
                "--json",
                "--socket",
                p(&root1.join("run/ptt-node/control.sock")),
            ],
            &[],
        )
        .expect("listen");
    std::thread::sleep(Duration::from_millis(500));
    let o = cli(
        0,
        &[
            "alert",
            "--severity",
            "severe",
            "--kind",
            "intrusion",
            "--text",
            "gate 3 forced",
        ],
    )
    .expect("alert");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    lan.wait_until("guard shows the alert", Duration::from_secs(15), || {
        let shown: Vec<serde_json::Value> = listen
            .stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        match shown.iter().find(|v| v["text"] == "gate 3 forced") {
            Some(v) if v["sender"] == "cam" && v["severity"] == "severe" => Cond::Done(()),
            Some(v) => Cond::Failed(format!("wrong fields: {v}")),
            None => Cond::Pending(format!("{} lines", shown.len())),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // The sender's metrics, scraped inside its namespace, count the alert.
    let scrape = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9464/metrics', timeout=5).read().decode())";
    let o = devices[0].1.run("python3", ["-c", scrape]).expect("scrape");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("ptt_alerts_sent_total 1"), "{text}");
    assert!(
        text.contains("ptt_peers{state=\"authenticated\"} 1"),
        "{text}"
    );
    drop(daemons);
}

/// install.sh refuses what it cannot install, and a unit systemd would not accept.
#[test]
fn install_refuses_bad_input_and_a_broken_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let out = install(&root, &["--bundle", p(tmp.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a device bundle"));
    let out = install(&root, &["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        if netns::in_ci() {
            panic!("systemd-analyze is missing: CI must check the unit (apt-get install systemd)");
        }
        eprintln!("skipping the unit check: no systemd-analyze");
        return;
    }
    // A copy of the repository's scripts with one misspelt directive in the unit.
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("scripts")).unwrap();
    std::fs::create_dir_all(repo.join("examples")).unwrap();
    for f in ["README.md", "examples/ptt-node.toml", "scripts/install.sh"] {
        std::fs::copy(Path::new(REPO).join(f), repo.join(f)).unwrap();
    }
    let unit = std::fs::read_to_string(Path::new(REPO).join("scripts/ptt-node.service")).unwrap();
    std::fs::write(
        repo.join("scripts/ptt-node.service"),
        unit.replace("ProtectSystem=strict", "ProtectSytem=strict"),
    )
    .unwrap();
    let out = Command::new("bash")
        .arg(repo.join("scripts/install.sh"))
        .args(["--root", p(&root), "--binary", BIN])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ProtectSytem"), "{err}");
}
