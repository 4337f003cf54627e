//! Puts the git revision into `ptt-node --version` (PTT_GIT_REV): the short commit hash, or
//! `unknown` outside a git checkout. A packager may set PTT_GIT_REV instead.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PTT_GIT_REV");
    let rev = std::env::var("PTT_GIT_REV").ok().or_else(|| {
        let o = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    });
    // Rebuilt when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
    let git = Path::new(".git");
    if git.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        println!("cargo:rerun-if-changed=.git/packed-refs");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(r) = head.strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed=.git/{}", r.trim());
        }
    }
    println!(
        "cargo:rustc-env=PTT_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
