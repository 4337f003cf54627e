//! Helpers shared by the integration tests that drive the real `ptt-node` binary.
//! Include with `#[path = "support/common.rs"] mod common;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ptt-node");

/// A path as `&str` (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs `ptt-node ARGS` outside any namespace (provisioning, loopback clients); panics with
/// its stderr unless it succeeds; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().expect("run ptt-node");
    assert!(
        o.status.success(),
        "ptt-node {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Provisions a domain named `name` in `dir/dom` and enrols each device into `dir/DEVICE`
/// (a bundle with the defaults); returns the authority directory.
pub fn provision(dir: &Path, name: &str, devices: &[&str]) -> PathBuf {
    let dom = dir.join("dom");
    ok(&["domain", "init", "--dir", p(&dom), "--name", name]);
    enroll(&dom, dir, devices);
    dom
}

/// Enrols each device of the authority `dom` into `dir/DEVICE` (a bundle with the defaults).
pub fn enroll(dom: &Path, dir: &Path, devices: &[&str]) {
    for d in devices {
        let out = dir.join(d);
        let args = [
            "domain",
            "enroll",
            "--dir",
            p(dom),
            "--device",
            d,
            "--out",
            p(&out),
        ];
        ok(&args);
    }
}

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

/// A daemon started by a loopback test, killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a daemon on 127.0.0.1 with mDNS off (loopback tests need no root).
pub fn start_loopback(bundle: &Path, data: &Path, peer: Option<&str>) -> Daemon {
    let mut c = Command::new(BIN);
    c.args([
        "run",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bundle",
        p(bundle),
        "--data",
        p(data),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(addr) = peer {
        c.args(["--peer", addr]);
    }
    Daemon(c.spawn().expect("start daemon"))
}

/// `status --json` of a daemon, if it answers.
pub fn status(data: &Path) -> Option<Value> {
    let o = Command::new(BIN)
        .args(["status", "--json", "--data", p(data)])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `secs`.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon's full dialable address (`…/p2p/<peer id>`), once it listens.
pub fn address(data: &Path) -> String {
    let st = wait_for("daemon up", 20, || {
        status(data).filter(|v| v["listen_addrs"][0].is_string())
    });
    format!(
        "{}/p2p/{}",
        st["listen_addrs"][0].as_str().unwrap_or_default(),
        st["peer_id"].as_str().unwrap_or_default()
    )
}
