//! Real daemons in network namespaces: a test domain of devices on one LAN, one namespace each
//! ([`Field`], shared by the field, key-lifecycle and voice tests), and what their data
//! directories hold on disk. Needs the netns harness; never used by the no-root tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::common::{BIN, ok, p};
use super::netns::{Cond, Host, Lan, Proc};

/// One device of the test domain.
pub struct Dev {
    pub name: String,
    pub host: Host,
    pub bundle: PathBuf,
    pub data: PathBuf,
    pub daemon: Option<Proc>,
    pub listen: Vec<Proc>,
    /// Run its daemon and `alert --stdin` at the lowest CPU priority (`nice -n 19`): all test
    /// devices share this machine's cores, while in the field each device has its own, so a
    /// device that burns CPU (a flooder) must not slow the others down through the scheduler.
    pub nice: bool,
}

/// A domain of devices on one LAN, one namespace each.
pub struct Field {
    pub lan: Lan,
    pub devs: Vec<Dev>,
}

impl Field {
    /// Provisions the devices (name, extra enrol args) and starts their daemons.
    pub fn new(hint: &str, specs: &[(&str, &[&str])]) -> Field {
        Field::new_with(hint, &[], specs)
    }

    /// Like [`Field::new`], with extra `domain init` arguments.
    pub fn new_with(hint: &str, init: &[&str], specs: &[(&str, &[&str])]) -> Field {
        let mut f = Field::provision(hint, init, specs);
        for i in 0..f.devs.len() {
            f.start(i);
        }
        f
    }

    /// Provisions the devices and their namespaces without starting any daemon.
    pub fn provision(hint: &str, init: &[&str], specs: &[(&str, &[&str])]) -> Field {
        let lan = Lan::new(hint).expect("create LAN");
        let root = lan.dir().to_path_buf();
        let dom = root.join("dom");
        let mut args = vec!["domain", "init", "--dir", p(&dom), "--name", hint];
        args.extend_from_slice(init);
        ok(&args);
        let mut devs = vec![];
        for (name, extra) in specs {
            let bundle = root.join(format!("{name}.bundle"));
            let mut args = vec!["domain", "enroll", "--dir", p(&dom), "--device", name];
            args.extend(["--out", p(&bundle)]);
            args.extend(extra.iter());
            ok(&args);
            let host = lan.add_host(name).expect("add host");
            let data = host.dir().join("data");
            devs.push(Dev {
                name: name.to_string(),
                host,
                bundle,
                data,
                daemon: None,
                listen: vec![],
                nice: false,
            });
        }
        Field { lan, devs }
    }

    /// Three meshed members m1, m2, m3 on one LAN, with `listen` running on m2 and m3.
    pub fn three_members(hint: &str) -> (Field, usize, usize, usize) {
        let mut f = Field::new(hint, &[("m1", MEMBER), ("m2", MEMBER), ("m3", MEMBER)]);
        f.wait_mesh(Duration::from_secs(30));
        let (m1, m2, m3) = (f.idx("m1"), f.idx("m2"), f.idx("m3"));
        f.listen(m2);
        f.listen(m3);
        std::thread::sleep(Duration::from_millis(500));
        (f, m1, m2, m3)
    }

    pub fn idx(&self, name: &str) -> usize {
        self.devs
            .iter()
            .position(|d| d.name == name)
            .expect("device name")
    }

    /// (Re)starts a device's daemon from its data directory.
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// (Re)starts a device's daemon with extra `run` arguments.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) {
        let d = &mut self.devs[i];
        let listen = format!("/ip4/{}/tcp/0", d.host.addr());
        let env = [("RUST_LOG", "info,ptt_node=debug")];
        let mut args = vec![
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
        args.extend_from_slice(extra);
        d.daemon = Some(
            if d.nice {
                let mut niced = vec!["-n", "19", BIN];
                niced.extend(args);
                d.host.spawn("nice", niced, &env)
            } else {
                d.host.spawn(BIN, args, &env)
            }
            .expect("start daemon"),
        );
    }

    /// `ptt-node ARGS --data DIR` on device `i`, with a 60 s limit.
    pub fn ptt(&self, i: usize, args: &[&str]) -> std::process::Output {
        let d = &self.devs[i];
        let mut all = args.to_vec();
        all.extend_from_slice(&["--data", p(&d.data)]);
        super::netns::run_with_timeout(&mut d.host.command(BIN, all), Duration::from_secs(60))
            .expect("ptt")
    }

    /// A clip of `secs` seconds of a 440 Hz tone in the LAN's directory, written as the 16 kHz
    /// WAV `talk --wav` takes.
    pub fn tone(&self, name: &str, secs: u32) -> PathBuf {
        let path = self.lan.dir().join(name);
        let mut w = ptt_node::audio::WavOut::create(&path).expect("wav");
        let pcm: Vec<i16> = (0..secs * 16_000)
            .map(|i| ((i as f64 * 440.0 * std::f64::consts::TAU / 16_000.0).sin() * 8_000.0) as i16)
            .collect();
        w.write(&pcm).expect("wav");
        w.finish().expect("wav");
        path
    }

    /// Publishes the authority's newest update to device `to`, and waits until every device
    /// of `running` holds its revision.
    pub fn publish_newest(&self, to: usize, running: &[usize]) {
        let dom = self.lan.dir().join("dom");
        let update = newest_update(&dom);
        let out = ok(&[
            "domain",
            "publish",
            "--data",
            p(&self.devs[to].data),
            p(&update),
        ]);
        assert!(out.contains("applied"), "{out}");
        let rev = self.status(to).expect("status")["revision"].as_u64();
        for &i in running {
            self.lan
                .wait_until("the update spreads", Duration::from_secs(20), || match self
                    .status(i)
                    .and_then(|s| s["revision"].as_u64())
                {
                    r if r == rev => Cond::Done(()),
                    other => Cond::Pending(format!("{} at {other:?}", self.devs[i].name)),
                })
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Device `name` as device `i`'s `peers --json` shows it.
    pub fn peer(&self, i: usize, name: &str) -> Option<Value> {
        let d = &self.devs[i];
        let out = d
            .host
            .run(BIN, ["peers", "--json", "--data", p(&d.data)])
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|x| x["name"] == name)
    }

    pub fn status(&self, i: usize) -> Option<Value> {
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
    pub fn wait_mesh(&self, timeout: Duration) {
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
    pub fn listen(&mut self, i: usize) {
        let d = &mut self.devs[i];
        let proc = d
            .host
            .spawn(BIN, ["listen", "--json", "--data", p(&d.data)], &[])
            .expect("listen");
        d.listen.push(proc);
    }

    /// Every alert object the device's listeners printed.
    pub fn shown(&self, i: usize) -> Vec<Value> {
        self.devs[i]
            .listen
            .iter()
            .flat_map(|l| l.stdout_lines())
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect()
    }

    /// Count of each text with `prefix` shown by device `i`.
    pub fn counts(&self, i: usize, prefix: &str) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for v in self.shown(i) {
            if let Some(t) = v["text"].as_str().filter(|t| t.starts_with(prefix)) {
                *m.entry(t.to_string()).or_insert(0) += 1;
            }
        }
        m
    }

    /// Sends alerts `prefix 0 … prefix n-1` from device `i` through `alert --stdin`.
    pub fn send(&self, i: usize, prefix: &str, range: std::ops::Range<usize>) {
        let d = &self.devs[i];
        let mut cmd = if d.nice {
            d.host.command(
                "nice",
                ["-n", "19", BIN, "alert", "--stdin", "--data", p(&d.data)],
            )
        } else {
            d.host
                .command(BIN, ["alert", "--stdin", "--data", p(&d.data)])
        };
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
    pub fn wait_all(&self, i: usize, prefix: &str, n: usize, timeout: Duration) {
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
    pub fn assert_once(&self, i: usize, prefix: &str, n: usize) {
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

pub const MEMBER: &[&str] = &[];

/// Applies nftables commands (one per line, words split on spaces) in a device's namespace.
pub fn nft(d: &Dev, rules: &[&str]) {
    for rule in rules {
        let args: Vec<&str> = rule.split(' ').collect();
        let out = d.host.run("nft", &args).expect("nft");
        assert!(
            out.status.success(),
            "nft {rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
pub const RELAY: &[&str] = &["--relay-only"];

/// Every regular file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            out.push(path);
        }
    }
    out
}

/// The newest update the domain authority in `dom` wrote (`dom/updates/`, numbered).
pub fn newest_update(dom: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dom.join("updates"))
        .expect("updates dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v.pop().expect("an update")
}

/// Two segments that cannot route to each other and a relay-only broker `b1` with a leg in
/// each, in a fresh domain (authority in `root/dom`, b1's bundle in `root/b1`; no other device
/// enrolled yet).
pub struct Segments {
    pub a: Lan,
    pub b: Lan,
    pub root: PathBuf,
    pub dom: PathBuf,
    /// The broker's host, on segment A.
    pub b1: Host,
    /// The broker's address on segment B.
    pub b1_b: std::net::Ipv4Addr,
    /// The broker's peer id.
    pub b1_id: String,
}

impl Segments {
    /// Creates both LANs (named after `hint_a`, `hint_b`), the domain `name` and the broker.
    pub fn new(hint_a: &str, hint_b: &str, name: &str) -> Segments {
        let a = Lan::new(hint_a).expect("LAN A");
        let b = Lan::new(hint_b).expect("LAN B");
        let root = a.dir().to_path_buf();
        let dom = root.join("dom");
        ok(&["domain", "init", "--dir", p(&dom), "--name", name]);
        ok(&[
            "domain",
            "enroll",
            "--dir",
            p(&dom),
            "--device",
            "b1",
            "--relay-only",
            "--out",
            p(&root.join("b1")),
        ]);
        let b1 = a.add_host("b1").expect("b1");
        let b1_b = b.attach(&b1).expect("b1's leg in B");
        let list = ok(&["domain", "list", "--dir", p(&dom), "--json"]);
        let b1_id = list
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|d| d["name"] == "b1")
            .and_then(|d| d["peer_id"].as_str().map(str::to_owned))
            .expect("b1's peer id");
        Segments {
            a,
            b,
            root,
            dom,
            b1,
            b1_b,
            b1_id,
        }
    }
}
