//! What every test that drives the real `ptt-node` binary shares: its path, running it outside
//! any namespace, and provisioning a domain. Never starts a daemon.

use std::path::{Path, PathBuf};
use std::process::Command;

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
