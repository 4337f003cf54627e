//! The command line against a real daemon on loopback (no root, no mDNS): every error a user
//! can cause gives one clear line and the right exit code, and nothing is lost or half-written.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::common::BIN;
use crate::support::loopback::Daemon;

fn ptt(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run ptt-node")
}

/// `ptt-node alert --data DATA --severity minor --kind k --text t EXTRA...`.
fn minor_alert(data: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "alert",
        "--data",
        data,
        "--severity",
        "minor",
        "--kind",
        "k",
        "--text",
        "t",
    ];
    args.extend_from_slice(extra);
    ptt(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = Site { dir };
        let o = ptt(&[
            "domain",
            "init",
            "--dir",
            s(&site.path("dom")),
            "--name",
            "site",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        site
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn enroll(&self, name: &str, extra: &[&str]) -> Output {
        let dom = self.path("dom");
        let out = self.path(name);
        let mut args = vec![
            "domain",
            "enroll",
            "--dir",
            s(&dom),
            "--device",
            name,
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        ptt(&args)
    }
    fn run(&self, name: &str) -> Daemon {
        let child = Command::new(BIN)
            .args([
                "run",
                "--no-mdns",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--bundle",
            ])
            .arg(self.path(name))
            .arg("--data")
            .arg(self.path(&format!("{name}-data")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon");
        let d = Daemon(child);
        let data = self.path(&format!("{name}-data"));
        let end = Instant::now() + Duration::from_secs(20);
        while !ptt(&["status", "--data", s(&data)]).status.success() {
            assert!(Instant::now() < end, "daemon {name} did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }
}

#[test]
fn no_daemon_and_bad_arguments() {
    let site = Site::new();
    let o = minor_alert(s(&site.path("nowhere")), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no ptt-node daemon is running"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stderr(&o).trim().lines().count(),
        1,
        "one line: {}",
        stderr(&o)
    );

    let o = ptt(&["alert", "--severity", "loud", "--kind", "k", "--text", "t"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown severity"), "{}", stderr(&o));

    // Voice arguments that do not go together, or a device that does not exist: refused
    // before any daemon is asked (there is none here).
    for (args, says) in [
        (&["talk", "--mic", "--seconds", "0"][..], "--seconds"),
        (
            &["talk", "--wav", "a.wav", "--audio-device", "hw:0"][..],
            "--audio-device",
        ),
        (&["listen", "--audio-device", "hw:0"][..], "--play"),
        (&["talk"][..], "--wav"),
    ] {
        let o = ptt(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    let o = ptt(&[
        "talk",
        "--mic",
        "--audio-device",
        "ptt-none",
        "--data",
        s(&site.path("nowhere")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("audio device ptt-none: cannot open it for capture"),
        "{}",
        stderr(&o)
    );

    let o = site.enroll("cam", &["--location", "100,0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        !site.path("cam").exists(),
        "nothing written for a refused enrolment"
    );
}

#[test]
fn enrolment_rules_and_bundle_checks() {
    let site = Site::new();
    assert!(site.enroll("cam", &[]).status.success());
    let o = site.enroll("cam", &["--force"]);
    assert!(o.status.success(), "forced re-enrolment: {}", stderr(&o));
    let o = Command::new(BIN)
        .args([
            "domain",
            "enroll",
            "--dir",
            s(&site.path("dom")),
            "--device",
            "cam",
            "--out",
            s(&site.path("cam2")),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already enrolled"), "{}", stderr(&o));
    assert!(!site.path("cam2").exists());
    let list = ptt(&["domain", "list", "--dir", s(&site.path("dom")), "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["replaced"], true);
    assert_ne!(
        lines[0]["device"], lines[1]["device"],
        "a new device number on re-enrolment"
    );
    for f in ["authority.key", "epochs.key"] {
        let mode = std::fs::metadata(site.path("dom").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    // Loose permissions on a secret: refused, naming the file and the fix.
    let id = site.path("cam").join("identity.key");
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = ptt(&[
        "run",
        "--no-mdns",
        "--bundle",
        s(&site.path("cam")),
        "--data",
        s(&site.path("d")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("identity.key") && stderr(&o).contains("chmod 600"),
        "{}",
        stderr(&o)
    );
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A certificate of another domain: refused, naming the file.
    let other = tempfile::tempdir().unwrap();
    assert!(
        ptt(&[
            "domain",
            "init",
            "--dir",
            s(&other.path().join("d")),
            "--name",
            "other"
        ])
        .status
        .success()
    );
    let o = ptt(&[
        "domain",
        "enroll",
        "--dir",
        s(&other.path().join("d")),
        "--device",
        "x",
        "--out",
        s(&other.path().join("x")),
    ]);
    assert!(o.status.success());
    std::fs::copy(
        other.path().join("x/certificate.bin"),
        site.path("cam/certificate.bin"),
    )
    .unwrap();
    let o = ptt(&[
        "run",
        "--no-mdns",
        "--bundle",
        s(&site.path("cam")),
        "--data",
        s(&site.path("d")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("certificate.bin"), "{}", stderr(&o));
}

/// `run --config FILE`: the file alone is enough to start a device (bundle relative to the
/// file, data directory, listen address, log filter), flags win over it, and a bad file stops
/// the daemon with one line naming the line and the key, before anything is created.
#[test]
fn a_configuration_file_runs_a_device_and_flags_win_over_it() {
    let site = Site::new();
    assert!(site.enroll("m1", &["--channel", "ops"]).status.success());
    let conf = site.path("ptt-node.toml");
    let data = site.path("from-file");
    std::fs::write(
        &conf,
        format!(
            "bundle = \"m1\"\ndata = {data:?}\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nlog = \"debug\"\n\
             [retention]\nhours = 2\n"
        ),
    )
    .unwrap();
    // mDNS stays off by flag: this test runs outside any namespace.
    let start = |extra: &[&str], log: &Path| {
        let mut args = vec!["run", "--no-mdns", "--config", s(&conf)];
        args.extend_from_slice(extra);
        Daemon(
            Command::new(BIN)
                .args(&args)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let up = |data: &Path| {
        let end = Instant::now() + Duration::from_secs(20);
        while !ptt(&["status", "--data", s(data)]).status.success() {
            assert!(
                Instant::now() < end,
                "daemon did not come up at {}",
                data.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let log1 = site.path("run1.log");
    let d = start(&[], &log1);
    up(&data);
    let o = minor_alert(s(&data), &["--channel", "ops", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(d);
    let text = std::fs::read_to_string(&log1).unwrap();
    assert!(
        text.contains("DEBUG"),
        "the file's log filter was not used:\n{text}"
    );

    // Flags win: another listen address, a quieter log. (Not another data directory: the
    // bundle's channel keys moved into the first one at its first start.)
    let log2 = site.path("run2.log");
    let d = start(
        &["--listen", "/ip4/127.0.0.2/tcp/0", "--log", "warn"],
        &log2,
    );
    up(&data);
    let st = ptt(&["status", "--json", "--data", s(&data)]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let addrs = st["listen_addrs"].to_string();
    assert!(
        addrs.contains("127.0.0.2") && !addrs.contains("127.0.0.1/"),
        "--listen did not replace the file's: {addrs}"
    );
    drop(d);
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(
        !text.contains("INFO") && !text.contains("DEBUG"),
        "--log lost to the file:\n{text}"
    );

    // A bad value: one line with the line and the key, exit 1, nothing created.
    let fresh = site.path("never-made");
    std::fs::write(
        &conf,
        format!("bundle = \"m1\"\ndata = {fresh:?}\n\n[retention]\nhours = 0\n"),
    )
    .unwrap();
    let o = ptt(&["run", "--no-mdns", "--config", s(&conf)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("line 5") && e.contains("retention.hours") && e.contains("1 to 8760"),
        "{e}"
    );
    assert!(!fresh.exists());
    // No bundle anywhere.
    std::fs::write(&conf, "log = \"info\"\n").unwrap();
    let o = ptt(&["run", "--no-mdns", "--config", s(&conf)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no device bundle"), "{}", stderr(&o));
}

/// A crash after an alert was published but before it reached the log must not let the
/// restarted daemon seal that seq again (one AES-GCM nonce twice). Before publishing, the
/// daemon takes a durable sequence lease beyond the seq, and it restarts above the lease.
#[test]
fn a_restarted_daemon_seals_above_its_sequence_lease() {
    let site = Site::new();
    assert!(site.enroll("m1", &["--channel", "ops"]).status.success());
    let data = site.path("m1-data");
    let seq = |o: &Output| -> u64 {
        assert!(o.status.success(), "{}", stderr(o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["seq"].as_u64().expect("a seq in the reply")
    };
    let d = site.run("m1");
    let first = seq(&minor_alert(s(&data), &["--channel", "ops", "--json"]));
    drop(d); // SIGKILL: no clean shutdown

    let open = || {
        for _ in 0..100 {
            if let Ok(st) = ptt_node::store::Store::open(&data) {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the store did not reopen");
    };
    let mut store = open();
    assert_eq!(
        store.seq_lease().unwrap(),
        first + ptt_node::store::LEASE_AHEAD_US,
        "the first alert waits for a lease beyond it"
    );
    // As if alerts up to a minute ahead had been published and the crash came before any of
    // them was logged: the log still ends at `first`, only the lease knows.
    let lease = store.raise_seq_lease(first + 60_000_000).unwrap();
    assert_eq!(store.own_last_seq().unwrap(), first);
    drop(store);

    let _d = site.run("m1");
    let second = seq(&minor_alert(s(&data), &["--channel", "ops", "--json"]));
    assert!(
        second > lease,
        "seq {second} after the restart is not above the lease {lease}"
    );
}

#[test]
fn daemon_refuses_bad_requests_and_keeps_working() {
    let site = Site::new();
    assert!(
        site.enroll("m1", &["--channel", "alerts", "--channel", "ops"])
            .status
            .success()
    );
    assert!(site.enroll("r1", &["--relay-only"]).status.success());
    let mut d1 = site.run("m1");
    let data = site.path("m1-data");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("control.sock")), 0o600);
    assert_eq!(mode(&data), 0o700);

    let o = minor_alert(s(&data), &["--channel", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown channel"), "{}", stderr(&o));

    // A second daemon on the same data directory.
    let o = ptt(&[
        "run",
        "--no-mdns",
        "--bundle",
        s(&site.path("m1")),
        "--data",
        s(&data),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already running"), "{}", stderr(&o));

    // Garbage on the control socket gets an error line; the connection and daemon carry on.
    let mut sock = UnixStream::connect(data.join("control.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut r = BufReader::new(sock.try_clone().unwrap());
    let mut line = String::new();
    for bad in [
        "not json",
        "{\"op\":\"explode\"}",
        "{\"op\":\"alert\",\"severity\":\"severe\"}",
    ] {
        writeln!(sock, "{bad}").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "error", "{bad} -> {line}");
    }
    writeln!(sock, "{{\"op\":\"status\"}}").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"type\":\"status\""), "{line}");

    // With no peer the alert is still accepted (stored) and the user is told.
    let o = minor_alert(s(&data), &["--channel", "ops", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["channel"], "ops");
    assert_eq!(v["id"].as_str().map(str::len), Some(16));

    // History: the stored alert, filtered by channel and time.
    let hist = |extra: &[&str]| {
        let mut args = vec!["history", "--json", "--data", s(&data)];
        args.extend_from_slice(extra);
        let o = ptt(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let all = hist(&[]);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], v["id"]);
    assert_eq!(all[0]["via"], "log");
    assert_eq!(hist(&["--channel", "ops", "--since", "1h"]).len(), 1);
    assert_eq!(hist(&["--channel", "alerts"]).len(), 0);
    assert_eq!(hist(&["--since", "2099-01-01T00:00:00Z"]).len(), 0);
    let o = ptt(&["history", "--data", s(&data), "--since", "last tuesday"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // `alert --stdin` pipelines (up to 64 in flight): 300 alerts give 300 distinct ids in
    // order, all stored; a refused one (line 4 of the second run) stops it with the line named,
    // after the ids of the lines before it.
    let stdin_alerts = |input: String| {
        let mut child = Command::new(BIN)
            .args(["alert", "--stdin", "--json", "--data", s(&data)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let line = |n: usize, channel: &str| {
        format!(
            "{{\"severity\":\"minor\",\"kind\":\"t\",\"text\":\"piped {n}\",\"channel\":\"{channel}\"}}\n"
        )
    };
    let o = stdin_alerts((0..300).map(|n| line(n, "ops")).collect());
    assert!(o.status.success(), "{}", stderr(&o));
    let sent: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sent.len(), 300);
    let seqs: Vec<u64> = sent.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    let bad: Vec<(usize, u64, u64)> = seqs
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] >= w[1])
        .map(|(i, w)| (i, w[0], w[1]))
        .take(5)
        .collect();
    assert!(bad.is_empty(), "replies out of order: {bad:?}");
    assert_eq!(hist(&["--channel", "ops"]).len(), 301);
    let o = stdin_alerts(
        [
            line(0, "ops"),
            "\n".into(),
            line(1, "ops"),
            line(2, "nope"),
            line(3, "ops"),
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("standard input line 4") && stderr(&o).contains("unknown channel"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() >= 2);
    // A refusal ends it at once, even while standard input stays open (a sensor that writes
    // one event a minute).
    let mut child = Command::new(BIN)
        .args(["alert", "--stdin", "--data", s(&data)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(line(9, "nope").as_bytes()).unwrap();
    input.flush().unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(input);
    let _ = child.kill();
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(1),
        "alert --stdin did not stop at a refusal while its input was open"
    );

    // SIGTERM: clean exit, socket removed.
    let pid = d1.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let st = d1.0.wait().unwrap();
    assert!(st.success(), "daemon exit on SIGTERM: {st}");
    assert!(!data.join("control.sock").exists());

    // The relay-only device may not publish.
    let _r = site.run("r1");
    let o = minor_alert(s(&site.path("r1-data")), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("may not write"), "{}", stderr(&o));
}

/// `status --json` of a running device.
fn status_of(site: &Site, name: &str) -> serde_json::Value {
    let data = site.path(&format!("{name}-data"));
    let o = ptt(&["status", "--json", "--data", s(&data)]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("status JSON")
}

/// Every update file of the authority directory, in serial order.
fn update_files(site: &Site) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(site.path("dom").join("updates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn publish_all(site: &Site, name: &str) {
    let data = site.path(&format!("{name}-data"));
    let mut args = vec!["domain".to_string(), "publish".into(), "--data".into()];
    args.push(s(&data).into());
    args.extend(update_files(site).iter().map(|p| s(p).to_string()));
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert!(o.status.success(), "publish: {}", stderr(&o));
}

/// The data plane's key through the command line: a new domain's devices hold plane epoch 1,
/// the relay-only one included; a domain made without a plane gets one by `domain plane
/// --enable` and a published update, without re-enrolment; enabling twice is refused; a
/// revocation moves the remaining devices to the next epoch, and the epoch survives a
/// restart. The pseudo-channel never shows among the channel keys.
#[test]
fn plane_keys_are_enabled_and_re_keyed_by_published_updates() {
    let fresh = Site::new();
    assert!(fresh.enroll("r", &["--relay-only"]).status.success());
    let _r = fresh.run("r");
    let st = status_of(&fresh, "r");
    assert_eq!(st["plane"]["epoch"], 1, "{st}");
    assert_eq!(st["keys"], serde_json::json!([]), "{st}");

    let old = Site {
        dir: tempfile::tempdir().unwrap(),
    };
    let dom = old.path("dom");
    let o = ptt(&[
        "domain",
        "init",
        "--dir",
        s(&dom),
        "--name",
        "old",
        "--no-plane",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (name, extra) in [
        ("relay", &["--relay-only"][..]),
        ("cam", &[]),
        ("lost", &[]),
    ] {
        assert!(old.enroll(name, extra).status.success());
    }
    let relay = old.run("relay");
    assert!(status_of(&old, "relay")["plane"]["epoch"].is_null());
    let o = ptt(&["domain", "plane", "--dir", s(&dom), "--enable"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("starts plane epoch 1"), "{said}");
    let o = ptt(&["domain", "plane", "--dir", s(&dom), "--enable"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already has a data-plane key (epoch 1)"),
        "{}",
        stderr(&o)
    );
    publish_all(&old, "relay");
    assert_eq!(status_of(&old, "relay")["plane"]["epoch"], 1);

    let o = ptt(&["domain", "revoke", "--dir", s(&dom), "--device", "lost"]);
    assert!(o.status.success(), "{}", stderr(&o));
    publish_all(&old, "relay");
    let st = status_of(&old, "relay");
    assert_eq!(st["plane"]["epoch"], 2, "{st}");
    assert_eq!(st["keys"], serde_json::json!([]), "{st}");
    drop(relay);
    let _relay = old.run("relay");
    assert_eq!(status_of(&old, "relay")["plane"]["epoch"], 2);
    // A device enrolled now starts at the current epoch, from its bundle.
    assert!(old.enroll("late", &[]).status.success());
    let _late = old.run("late");
    let st = status_of(&old, "late");
    assert_eq!(st["plane"]["epoch"], 2, "{st}");
    assert_eq!(
        st["keys"].as_array().map(Vec::len),
        Some(1),
        "alerts only: {st}"
    );
}
