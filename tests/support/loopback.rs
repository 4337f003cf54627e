//! Daemons on 127.0.0.1 with mDNS off, for the tests that need no root: starting one, asking
//! its status, polling until something holds. Never touches a network namespace.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::{BIN, p};

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
