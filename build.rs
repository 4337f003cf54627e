//! Puts the git revision into `ptt-node --version` (PTT_GIT_REV): the short commit hash, or
//! `unknown` outside a git checkout. A packager may set PTT_GIT_REV instead.

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
    // git names the files, so a worktree (where .git is a file) is covered too.
    let git_path = |p: &str| -> Option<String> {
        let o = Command::new("git")
            .args(["rev-parse", "--git-path", p])
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(head) = git_path("HEAD") {
        println!("cargo:rerun-if-changed={head}");
        if let Some(packed) = git_path("packed-refs") {
            println!("cargo:rerun-if-changed={packed}");
        }
        if let Ok(o) = Command::new("git")
            .args(["symbolic-ref", "-q", "HEAD"])
            .output()
            && o.status.success()
            && let Some(r) = git_path(String::from_utf8_lossy(&o.stdout).trim())
        {
            println!("cargo:rerun-if-changed={r}");
        }
    }
    println!(
        "cargo:rustc-env=PTT_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}
