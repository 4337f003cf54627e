//! Delivery that survives the field: real `ptt-node` daemons in network namespaces (see
//! `tests/support/netns.rs`) through freezes, link failures, packet loss, crashes and sleep.
//! Each test asserts what a user would check: every alert shown by every member, exactly once.
//! Needs root (and nftables for the loss test); skipped without, never under CI.

#[path = "support/netns.rs"]
mod netns;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use netns::{Cond, Host, Lan, Proc};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ptt-node");

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// One device of the test domain.
struct Dev {
    name: String,
    host: Host,
    bundle: PathBuf,
    data: PathBuf,
    daemon: Option<Proc>,
    listen: Vec<Proc>,
}

/// A domain of devices on one LAN, one namespace each.
struct Field {
    lan: Lan,
    devs: Vec<Dev>,
}

impl Field {
    /// Provisions the devices (name, extra enrol args) and starts their daemons.
    fn new(hint: &str, specs: &[(&str, &[&str])]) -> Field {
        let lan = Lan::new(hint).expect("create LAN");
        let root = lan.dir().to_path_buf();
        let dom = root.join("dom");
        run_ok(&["domain", "init", "--dir", p(&dom), "--name", hint]);
        let mut devs = vec![];
        for (name, extra) in specs {
            let bundle = root.join(format!("{name}.bundle"));
            let mut args = vec!["domain", "enroll", "--dir", p(&dom), "--device", name];
            args.extend(["--out", p(&bundle)]);
            args.extend(extra.iter());
            run_ok(&args);
            let host = lan.add_host(name).expect("add host");
            let data = host.dir().join("data");
            devs.push(Dev {
                name: name.to_string(),
                host,
                bundle,
                data,
                daemon: None,
                listen: vec![],
            });
        }
        let mut f = Field { lan, devs };
        for i in 0..f.devs.len() {
            f.start(i);
        }
        f
    }

    /// Three meshed members m1, m2, m3 on one LAN, with `listen` running on m2 and m3.
    fn three_members(hint: &str) -> (Field, usize, usize, usize) {
        let mut f = Field::new(hint, &[("m1", MEMBER), ("m2", MEMBER), ("m3", MEMBER)]);
        f.wait_mesh(Duration::from_secs(30));
        let (m1, m2, m3) = (f.idx("m1"), f.idx("m2"), f.idx("m3"));
        f.listen(m2);
        f.listen(m3);
        std::thread::sleep(Duration::from_millis(500));
        (f, m1, m2, m3)
    }

    fn idx(&self, name: &str) -> usize {
        self.devs
            .iter()
            .position(|d| d.name == name)
            .expect("device name")
    }

    /// (Re)starts a device's daemon from its data directory.
    fn start(&mut self, i: usize) {
        let d = &mut self.devs[i];
        let listen = format!("/ip4/{}/tcp/0", d.host.addr());
        let env = [("RUST_LOG", "info,ptt_node=debug")];
        let args = [
            "run",
            "--bundle",
            p(&d.bundle),
            "--data",
            p(&d.data),
            "--listen",
            &listen,
            "--mdns-interval",
            "2",
        ];
        d.daemon = Some(d.host.spawn(BIN, args, &env).expect("start daemon"));
    }

    fn status(&self, i: usize) -> Option<Value> {
        let d = &self.devs[i];
        let out = d
            .host
            .run(BIN, ["status", "--json", "--data", p(&d.data)])
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Waits until every device is authenticated with all the others.
    fn wait_mesh(&self, timeout: Duration) {
        let want = self.devs.len() as u64 - 1;
        let r = self.lan.wait_until("full mesh", timeout, || {
            let counts: Vec<Option<u64>> = (0..self.devs.len())
                .map(|i| {
                    self.status(i)
                        .and_then(|s| s["peers"]["authenticated"].as_u64())
                })
                .collect();
            if counts.iter().all(|c| *c == Some(want)) {
                Cond::Done(())
            } else {
                Cond::Pending(format!("authenticated peers: {counts:?}, want {want}"))
            }
        });
        r.unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts `listen --json` on a device (after waiting until its daemon answers).
    fn listen(&mut self, i: usize) {
        let d = &mut self.devs[i];
        let proc = d
            .host
            .spawn(BIN, ["listen", "--json", "--data", p(&d.data)], &[])
            .expect("listen");
        d.listen.push(proc);
    }

    /// Every alert object the device's listeners printed.
    fn shown(&self, i: usize) -> Vec<Value> {
        self.devs[i]
            .listen
            .iter()
            .flat_map(|l| l.stdout_lines())
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect()
    }

    /// Count of each text with `prefix` shown by device `i`.
    fn counts(&self, i: usize, prefix: &str) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for v in self.shown(i) {
            if let Some(t) = v["text"].as_str().filter(|t| t.starts_with(prefix)) {
                *m.entry(t.to_string()).or_insert(0) += 1;
            }
        }
        m
    }

    /// Sends alerts `prefix 0 … prefix n-1` from device `i` through `alert --stdin`.
    fn send(&self, i: usize, prefix: &str, range: std::ops::Range<usize>) {
        let d = &self.devs[i];
        let mut cmd = d
            .host
            .command(BIN, ["alert", "--stdin", "--data", p(&d.data)]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("alert --stdin");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            for n in range {
                writeln!(
                    stdin,
                    r#"{{"severity":"moderate","kind":"motion","text":"{prefix} {n}"}}"#
                )
                .expect("write alert");
            }
        }
        let out = child.wait_with_output().expect("alert --stdin");
        assert!(
            out.status.success(),
            "alert --stdin on {}: {}",
            d.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until device `i` has shown every text `prefix 0..n`, then checks none twice.
    fn wait_all(&self, i: usize, prefix: &str, n: usize, timeout: Duration) {
        let what = format!("{} shows all {n} alerts '{prefix} …'", self.devs[i].name);
        let r = self.lan.wait_until(&what, timeout, || {
            let c = self.counts(i, prefix);
            if let Some((t, k)) = c.iter().find(|(_, k)| **k > 1) {
                return Cond::Failed(format!("{t:?} shown {k} times"));
            }
            if c.len() == n {
                Cond::Done(())
            } else {
                let missing: Vec<usize> = (0..n)
                    .filter(|k| !c.contains_key(&format!("{prefix} {k}")))
                    .take(10)
                    .collect();
                Cond::Pending(format!(
                    "{} of {n} shown; missing e.g. {missing:?}",
                    c.len()
                ))
            }
        });
        r.unwrap_or_else(|e| panic!("{e}"));
    }

    /// After things settle, nothing is shown twice.
    fn assert_once(&self, i: usize, prefix: &str, n: usize) {
        std::thread::sleep(Duration::from_secs(1));
        let c = self.counts(i, prefix);
        assert_eq!(c.len(), n, "{}: distinct alerts", self.devs[i].name);
        assert!(
            c.values().all(|k| *k == 1),
            "{}: duplicates {c:?}",
            self.devs[i].name
        );
    }
}

fn run_ok(args: &[&str]) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("ptt-node");
    assert!(
        out.status.success(),
        "ptt-node {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const MEMBER: &[&str] = &[];
const RELAY: &[&str] = &["--relay-only"];

#[test]
fn frozen_member_shows_all_100_alerts_once() {
    if !netns::require_netns() {
        return;
    }
    let (mut f, m1, m2, m3) = Field::three_members("frozen");
    f.devs[m2]
        .daemon
        .as_mut()
        .expect("daemon")
        .stop()
        .expect("SIGSTOP");
    f.send(m1, "frozen", 0..100);
    f.wait_all(m3, "frozen", 100, Duration::from_secs(30));
    // Long enough for the others to notice (pings fail) and drop the connection.
    std::thread::sleep(Duration::from_secs(15));
    f.devs[m2]
        .daemon
        .as_mut()
        .expect("daemon")
        .cont()
        .expect("SIGCONT");
    f.wait_all(m2, "frozen", 100, Duration::from_secs(60));
    f.assert_once(m2, "frozen", 100);
    f.assert_once(m3, "frozen", 100);
    let late = f.shown(m2).iter().filter(|v| v["late"] == true).count();
    assert!(
        late > 0,
        "alerts fetched after a 15 s freeze are marked late"
    );
}

#[test]
fn link_down_during_a_stream_loses_nothing() {
    if !netns::require_netns() {
        return;
    }
    let (f, m1, m2, m3) = Field::three_members("flap");
    f.send(m1, "flap", 0..20);
    f.devs[m2].host.link_down().expect("link down");
    f.send(m1, "flap", 20..40);
    std::thread::sleep(Duration::from_secs(3));
    f.send(m1, "flap", 40..50);
    f.devs[m2].host.link_up().expect("link up");
    f.send(m1, "flap", 50..60);
    f.wait_all(m3, "flap", 60, Duration::from_secs(30));
    f.wait_all(m2, "flap", 60, Duration::from_secs(60));
    f.assert_once(m2, "flap", 60);
    f.assert_once(m3, "flap", 60);
}

#[test]
fn quarter_of_packets_lost_everywhere_loses_no_alert() {
    if !netns::require_netns() || !netns::require_program("nft") {
        return;
    }
    let mut f = Field::new("loss", &[("m1", MEMBER), ("m2", MEMBER), ("m3", MEMBER)]);
    for d in &f.devs {
        for rule in [
            "add table inet loss",
            "add chain inet loss input { type filter hook input priority 0 ; }",
            "add rule inet loss input iifname eth0 numgen random mod 100 < 25 drop",
        ] {
            let args: Vec<&str> = rule.split(' ').collect();
            let out = d.host.run("nft", &args).expect("nft");
            assert!(
                out.status.success(),
                "nft {rule}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    f.wait_mesh(Duration::from_secs(90));
    let (m1, m2, m3) = (f.idx("m1"), f.idx("m2"), f.idx("m3"));
    f.listen(m2);
    f.listen(m3);
    std::thread::sleep(Duration::from_millis(500));
    for k in 0..5 {
        f.send(m1, "lossy", k * 10..(k + 1) * 10);
        std::thread::sleep(Duration::from_millis(300));
    }
    f.wait_all(m2, "lossy", 50, Duration::from_secs(120));
    f.wait_all(m3, "lossy", 50, Duration::from_secs(120));
    f.assert_once(m2, "lossy", 50);
    f.assert_once(m3, "lossy", 50);
}

#[test]
fn sender_killed_right_after_accept_still_delivers() {
    if !netns::require_netns() {
        return;
    }
    let (mut f, m1, m2, m3) = Field::three_members("kill");
    // Cut the sender off first, so the alert can only leave through its durable log.
    f.devs[m1].host.link_down().expect("link down");
    f.send(m1, "durable", 0..1);
    f.devs[m1]
        .daemon
        .as_mut()
        .expect("daemon")
        .kill()
        .expect("SIGKILL");
    f.devs[m1].host.link_up().expect("link up");
    f.start(m1);
    f.wait_all(m2, "durable", 1, Duration::from_secs(45));
    f.wait_all(m3, "durable", 1, Duration::from_secs(45));
    f.assert_once(m2, "durable", 1);
    // The restarted sender continues its sequence: a new alert is accepted too.
    f.send(m1, "after-restart", 0..1);
    f.wait_all(m2, "after-restart", 1, Duration::from_secs(30));
}

#[test]
fn relay_holds_alerts_for_a_sleeping_member() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::new(
        "sleep",
        &[("m1", MEMBER), ("m2", &["--sleeps"]), ("r1", RELAY)],
    );
    f.wait_mesh(Duration::from_secs(30));
    let (m1, m2, r1) = (f.idx("m1"), f.idx("m2"), f.idx("r1"));
    f.listen(m2);
    std::thread::sleep(Duration::from_millis(500));
    f.devs[m2]
        .daemon
        .as_mut()
        .expect("daemon")
        .stop()
        .expect("SIGSTOP");
    f.send(m1, "asleep", 0..5);
    f.lan
        .wait_until(
            "relay stored the alerts",
            Duration::from_secs(20),
            || match f
                .status(r1)
                .and_then(|s| s["counters"]["alerts_relayed"].as_u64())
            {
                Some(n) if n >= 5 => Cond::Done(()),
                other => Cond::Pending(format!("relayed {other:?}")),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // The sender leaves for good; only the relay is awake. Wait until the relay has noticed
    // that the sleeper stopped answering (pings: about 16 s).
    f.devs[m1]
        .daemon
        .take()
        .expect("daemon")
        .kill()
        .expect("SIGKILL");
    std::thread::sleep(Duration::from_secs(25));
    let r1_view = f.devs[r1]
        .host
        .run(BIN, ["peers", "--json", "--data", p(&f.devs[r1].data)])
        .expect("peers");
    let r1_view = String::from_utf8_lossy(&r1_view.stdout).into_owned();
    let m2_line = r1_view
        .lines()
        .find(|l| l.contains("\"name\":\"m2\""))
        .unwrap_or_else(|| panic!("relay lists m2: {r1_view}"));
    assert!(
        m2_line.contains("\"state\":\"asleep\""),
        "a sleeping member is shown asleep: {m2_line}"
    );
    f.devs[m2]
        .daemon
        .as_mut()
        .expect("daemon")
        .cont()
        .expect("SIGCONT");
    f.wait_all(m2, "asleep", 5, Duration::from_secs(60));
    f.assert_once(m2, "asleep", 5);
    assert!(f.shown(m2).iter().all(|v| v["sender"] == "m1"));
}

#[test]
fn restarted_member_does_not_show_old_alerts_again() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::new("restart", &[("m1", MEMBER), ("m2", MEMBER)]);
    f.wait_mesh(Duration::from_secs(30));
    let (m1, m2) = (f.idx("m1"), f.idx("m2"));
    f.listen(m2);
    std::thread::sleep(Duration::from_millis(500));
    f.send(m1, "before", 0..10);
    f.wait_all(m2, "before", 10, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    f.devs[m2]
        .daemon
        .take()
        .expect("daemon")
        .kill()
        .expect("SIGKILL");
    f.devs[m2].listen.clear();
    f.start(m2);
    f.wait_mesh(Duration::from_secs(30));
    f.listen(m2);
    // Catch-up runs on reconnection: it must find nothing new to show.
    std::thread::sleep(Duration::from_secs(4));
    f.send(m1, "after", 0..3);
    f.wait_all(m2, "after", 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let old: Vec<Value> = f
        .shown(m2)
        .into_iter()
        .filter(|v| v["text"].as_str().is_some_and(|t| t.starts_with("before")))
        .collect();
    assert!(
        old.is_empty(),
        "old alerts shown again after restart: {old:?}"
    );
    let h = f.devs[m2]
        .host
        .run(BIN, ["history", "--json", "--data", p(&f.devs[m2].data)])
        .expect("history");
    let n = String::from_utf8_lossy(&h.stdout)
        .lines()
        .filter(|l| l.contains("\"before "))
        .count();
    assert_eq!(n, 10, "history keeps what was received before the restart");
}
