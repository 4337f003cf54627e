//! Operating a device: default paths as a service and per user, the CLI finding the daemon
//! without `--data`, the Prometheus endpoint (it scrapes and its figures move), rules reloaded
//! on SIGHUP, JSON logs. Real daemons on loopback (no root, no mDNS).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::common::{self, BIN, ok, p};
use crate::support::loopback::{self, Daemon, wait_for};

/// The environment variables that choose default paths, removed so the test sets its own.
const PATH_VARS: &[&str] = &[
    "PTT_NODE_DATA",
    "PTT_NODE_SOCKET",
    "PTT_NODE_CONFIG",
    "STATE_DIRECTORY",
    "RUNTIME_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "XDG_STATE_HOME",
    "XDG_CONFIG_HOME",
    "HOME",
    "RUST_LOG",
];

/// `ptt-node ARGS` with only `env` for the path variables.
fn cmd(args: &[&str], env: &[(&str, &Path)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    for v in PATH_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn out(args: &[&str], env: &[(&str, &Path)]) -> Output {
    cmd(args, env).output().expect("run ptt-node")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A domain with devices enrolled in `dir`.
fn site(dir: &Path, devices: &[&str]) {
    common::provision(dir, "ops", devices);
}

/// `ptt-node run` of the enrolled device `spare` with `extra` flags, to completion (for the
/// start-up errors).
fn run_spare(dir: &Path, extra: &[&str]) -> Output {
    let (bundle, data) = (dir.join("spare"), dir.join("spare-data"));
    let mut args = vec![
        "run",
        "--bundle",
        p(&bundle),
        "--data",
        p(&data),
        "--no-mdns",
    ];
    args.extend_from_slice(extra);
    out(&args, &[])
}

fn start(args: &[&str], env: &[(&str, &Path)]) -> Daemon {
    Daemon(
        cmd(args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    )
}

fn status_json(args: &[&str], env: &[(&str, &Path)]) -> Option<serde_json::Value> {
    let mut a = vec!["status", "--json"];
    a.extend_from_slice(args);
    let o = out(&a, env);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

#[test]
fn as_a_service_the_daemon_uses_systemds_directories_and_the_group_socket() {
    let t = tempfile::tempdir().unwrap();
    site(t.path(), &["cam", "spare"]);
    let (state, run, etc) = (
        t.path().join("state"),
        t.path().join("run"),
        t.path().join("etc"),
    );
    for d in [&state, &run, &etc] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The configuration directory's file is read without --config, as under the unit.
    std::fs::write(
        etc.join("ptt-node.toml"),
        format!(
            "bundle = {:?}\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n[discovery]\nmdns = false\n",
            p(&t.path().join("cam"))
        ),
    )
    .unwrap();
    let env = [
        ("STATE_DIRECTORY", state.as_path()),
        ("RUNTIME_DIRECTORY", run.as_path()),
        ("CONFIGURATION_DIRECTORY", etc.as_path()),
    ];
    let _d = start(&["run"], &env);
    let sock = run.join("control.sock");
    let st = wait_for("the service's socket", 20, || {
        status_json(&["--socket", p(&sock)], &[])
    });
    assert_eq!(st["device"], "cam");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660,
        "the service's socket is for its group too"
    );
    assert!(
        state.join("store.redb").exists(),
        "the log is in STATE_DIRECTORY"
    );
    assert_eq!(
        std::fs::read_link(state.join("control.sock")).unwrap(),
        sock,
        "the socket is in RUNTIME_DIRECTORY; the state directory holds a link to it"
    );
    // PTT_NODE_SOCKET points the CLI at it too, and so does --data, through the link the
    // daemon keeps in its data directory.
    assert!(status_json(&[], &[("PTT_NODE_SOCKET", sock.as_path())]).is_some());
    assert!(status_json(&["--data", p(&state)], &[]).is_some());
    assert!(
        std::fs::symlink_metadata(state.join("control.sock"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // --socket naming a file that is not a socket: refused, and the file is left alone.
    let precious = t.path().join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let o = run_spare(t.path(), &["--socket", p(&precious)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not a socket"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

    // A bad configuration file in the configuration directory stops the daemon with the key
    // and line.
    std::fs::write(etc.join("ptt-node.toml"), "bundle = \"x\"\nlisten = 7\n").unwrap();
    let o = out(&["run"], &env);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("line 2") && e.contains("listen"), "{e}");
}

#[test]
fn per_user_the_cli_finds_the_daemon_without_data_or_socket() {
    let t = tempfile::tempdir().unwrap();
    site(t.path(), &["cam"]);
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let env = [("HOME", home.as_path())];

    // Nothing running: one line naming every place looked at, exit code 3 (unless this
    // machine runs the real service, which the CLI would then find).
    let service = Path::new("/run/ptt-node/control.sock").exists();
    let o = out(&["status"], &env);
    if !service {
        assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
        let e = text(&o.stderr);
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(
            e.contains(p(&home.join(".local/state/ptt-node/control.sock")))
                && e.contains("/run/ptt-node/control.sock"),
            "{e}"
        );
    }

    let bundle = t.path().join("cam");
    let daemon = start(
        &[
            "run",
            "--bundle",
            p(&bundle),
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
        &env,
    );
    let st = wait_for("the per-user daemon", 20, || status_json(&[], &env));
    assert_eq!(st["device"], "cam");
    // No core file can hold its keys.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.0.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_default();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    let data = home.join(".local/state/ptt-node");
    assert!(data.join("store.redb").exists());
    assert_eq!(
        std::fs::metadata(data.join("control.sock"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // An alert and `peers` without --data either.
    let o = out(
        &[
            "alert",
            "--severity",
            "minor",
            "--kind",
            "test",
            "--text",
            "found",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // --data and --socket together are refused by the parser.
    let o = out(&["peers", "--data", "x", "--socket", "y"], &env);
    assert_eq!(o.status.code(), Some(2));
}

/// GETs `path` from `addr`; returns (status line, body).
fn http(addr: &str, request: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A server that closed at once (no free slot) may refuse the write: the answer is then
    // empty, which the caller checks.
    let _ = s.write_all(request);
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn scrape(addr: &str) -> String {
    let (status, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

/// The value of a sample line `name{labels} value` (the first whose name and labels start
/// with `prefix`).
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_scrape_and_move() {
    let t = tempfile::tempdir().unwrap();
    site(t.path(), &["cam", "guard", "spare"]);
    let guard_data = t.path().join("guard-data");
    let _g = start(
        &[
            "run",
            "--bundle",
            p(&t.path().join("guard")),
            "--data",
            p(&guard_data),
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ],
        &[],
    );
    let guard_addr = loopback::address(&guard_data);
    // Port 0: the system's choice, which status reports.
    let st = status_json(&["--data", p(&guard_data)], &[]).unwrap();
    let url = st["metrics"].as_str().unwrap().to_string();
    let addr = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/metrics"))
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("metrics URL {url}"));

    let before = scrape(&addr);
    assert_eq!(sample(&before, "ptt_alerts_received_total"), Some(0.0));
    assert_eq!(
        sample(&before, "ptt_alert_delivery_latency_seconds_count"),
        Some(0.0)
    );
    assert!(
        before.contains("# TYPE ptt_alerts_rejected counter"),
        "{before}"
    );

    let cam_data = t.path().join("cam-data");
    let _c = loopback::start_loopback(&t.path().join("cam"), &cam_data, Some(&guard_addr));
    wait_for("guard authenticates cam", 30, || {
        let b = scrape(&addr);
        (sample(&b, "ptt_peers{state=\"authenticated\"}") == Some(1.0)).then_some(())
    });
    // Gossip needs a heartbeat to learn the topic.
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..3 {
        ok(&[
            "alert",
            "--data",
            p(&cam_data),
            "--severity",
            "severe",
            "--kind",
            "intrusion",
            "--text",
            &format!("door {i}"),
        ]);
    }
    let after = wait_for("three alerts counted", 20, || {
        let b = scrape(&addr);
        (sample(&b, "ptt_alerts_received_total") == Some(3.0)).then_some(b)
    });
    assert_eq!(
        sample(&after, "ptt_alert_delivery_latency_seconds_count"),
        Some(3.0),
        "{after}"
    );
    // Every alert delivered within the histogram's last finite bucket.
    assert_eq!(
        sample(
            &after,
            "ptt_alert_delivery_latency_seconds_bucket{le=\"4194.304\"}"
        ),
        Some(3.0),
        "{after}"
    );
    assert!(sample(&after, "ptt_store_envelopes").unwrap() >= 3.0);
    assert!(sample(&after, "ptt_store_size_bytes").unwrap() > 0.0);
    // libp2p's own: connections and bytes moved.
    let established = after
        .lines()
        .filter(|l| l.starts_with("libp2p_swarm_connections_established_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(established >= 1.0, "{after}");
    let inbound: f64 = after
        .lines()
        .filter(|l| {
            l.starts_with("libp2p_bandwidth_bytes_total") && l.contains("direction=\"Inbound\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(inbound > 0.0, "{after}");

    // Anything else gets a clear answer, and junk does not stop the endpoint.
    assert_eq!(
        http(&addr, b"GET / HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        http(&addr, b"POST /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    // Exactly the limit, all read by the server (more would be left unread and reset).
    let (big, _) = http(&addr, &[b'A'; 8192]);
    assert_eq!(big, "HTTP/1.1 431 Request Header Fields Too Large");
    {
        // Eight clients that connect and say nothing take every slot: a ninth is closed at
        // once. They hold their slots only until they go (or their 5 s deadline).
        let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let (status, _) = http(&addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, "", "a ninth connection is closed unanswered");
        drop(idle);
        wait_for("a scrape after the idle clients left", 10, || {
            let (status, _) = http(&addr, b"GET /metrics HTTP/1.1\r\n\r\n");
            (status == "HTTP/1.1 200 OK").then_some(())
        });
    }
    // A taken port is an error at start.
    let o = run_spare(t.path(), &["--metrics", &addr]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("metrics"), "{}", text(&o.stderr));
    // A bad address is a usage error.
    let o = out(&["run", "--metrics", "localhost"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("IP:PORT"), "{}", text(&o.stderr));
}

fn rules_count(data: &Path) -> Option<u64> {
    status_json(&["--data", p(data)], &[])?["actions"]["rules"].as_u64()
}

#[test]
fn sighup_reloads_the_rules_and_a_bad_file_keeps_the_old_ones() {
    let t = tempfile::tempdir().unwrap();
    site(t.path(), &["cam"]);
    let rules = t.path().join("rules.toml");
    let rule =
        |name: &str| format!("[[rule]]\nname = \"{name}\"\nkind = \"x\"\nrun = [\"true\"]\n");
    std::fs::write(&rules, rule("a")).unwrap();
    let data = t.path().join("data");
    let log = t.path().join("daemon.log");
    let d = Daemon(
        cmd(
            &[
                "run",
                "--bundle",
                p(&t.path().join("cam")),
                "--data",
                p(&data),
                "--no-mdns",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--rules",
                p(&rules),
                "--log-format",
                "json",
            ],
            &[],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap(),
    );
    wait_for("daemon with one rule", 20, || {
        (rules_count(&data) == Some(1)).then_some(())
    });
    let hup = |pid: u32| {
        let o = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success());
    };
    std::fs::write(&rules, format!("{}{}", rule("a"), rule("b"))).unwrap();
    hup(d.0.id());
    wait_for("two rules after SIGHUP", 20, || {
        (rules_count(&data) == Some(2)).then_some(())
    });
    std::fs::write(&rules, "[[rule]]\nname = \"c\"\n").unwrap();
    hup(d.0.id());
    // The error is logged; the daemon keeps the two rules and keeps running.
    let logged = wait_for("the reload error in the log", 20, || {
        let l = std::fs::read_to_string(&log).ok()?;
        l.contains("rules not reloaded").then_some(l)
    });
    assert_eq!(rules_count(&data), Some(2));

    // Every log line is one JSON object with a time, a level and a target (libp2p logs some
    // events with fields only, no message).
    let mut n = 0;
    for line in logged.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(),
            "{line}"
        );
        n += 1;
    }
    assert!(n >= 3, "{logged}");
    assert!(
        logged.contains("\"message\":\"rules reloaded\""),
        "{logged}"
    );
    assert!(logged.contains("daemon started"), "{logged}");
}

#[test]
fn version_completions_and_manual_pages() {
    let o = out(&["--version"], &[]);
    assert!(o.status.success());
    let v = text(&o.stdout);
    assert!(
        v.starts_with(&format!("ptt-node {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    // The revision is the checkout's when built from one.
    let repo = env!("CARGO_MANIFEST_DIR");
    if let Ok(g) = Command::new("git")
        .args(["-C", repo, "rev-parse", "--short=12", "HEAD"])
        .output()
        && g.status.success()
    {
        let rev = text(&g.stdout);
        assert!(v.contains(rev.trim()), "{v} vs {rev}");
    }
    for (shell, marker) in [
        ("bash", "complete -F _ptt__node"),
        ("zsh", "#compdef ptt-node"),
        ("fish", "complete -c ptt-node"),
    ] {
        let o = out(&["completions", shell], &[]);
        assert!(o.status.success());
        let s = text(&o.stdout);
        assert!(s.contains(marker) && s.contains("listen"), "{shell}: {s}");
    }
    let o = out(&["completions", "tcsh"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let page = text(&out(&["man"], &[]).stdout);
    assert!(
        page.contains(".TH ptt-node 1") && page.contains("Exit codes"),
        "{page}"
    );
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man1");
    let o = out(&["man", "--dir", p(&dir)], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for page in [
        "ptt-node.1",
        "ptt-node-alert.1",
        "ptt-node-domain-enroll.1",
        "ptt-node-listen.1",
    ] {
        let s = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(s.contains(".SH SYNOPSIS"), "{page}");
    }
    // Every subcommand's help carries examples; the top-level help the exit codes.
    let help = text(&out(&["--help"], &[]).stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("3  no daemon running"),
        "{help}"
    );
    let help = text(&out(&["listen", "--help"], &[]).stdout);
    assert!(help.contains("--format cap"), "{help}");
}
