//! Puts the git revision into `ptt-node --version` (PTT_GIT_REV): the short commit hash, or
//! `unknown` outside a git checkout. A packager may set PTT_GIT_REV instead.
//!
//! Also links `ptt-node` with packed relative relocations (DT_RELR) where the toolchain and the
//! C library support them (`relr_supported`).

use std::path::Path;
use std::process::{Command, Stdio};

fn main() {
    pack_relative_relocations();
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
    // Rebuilt when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit),
    // loose or packed. git names the files, so a worktree (where .git is a file) is covered too.
    // Only files that exist are watched: cargo takes a missing watched file for a changed one
    // and would rebuild the crate at every invocation (a fresh clone has no packed-refs).
    let git_path = |p: &str| -> Option<String> {
        let o = Command::new("git")
            .args(["rev-parse", "--git-path", p])
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let watch = |p: Option<String>| {
        if let Some(p) = p.filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
        }
    };
    if let Some(head) = git_path("HEAD") {
        watch(Some(head));
        watch(git_path("packed-refs"));
        if let Ok(o) = Command::new("git")
            .args(["symbolic-ref", "-q", "HEAD"])
            .output()
            && o.status.success()
        {
            // A branch only in packed-refs gets a loose file at its next commit: then watch
            // the folder the file will appear in.
            let r = git_path(String::from_utf8_lossy(&o.stdout).trim());
            let dir = r
                .as_ref()
                .and_then(|r| Path::new(r).parent())
                .map(|d| d.display().to_string());
            match r {
                Some(r) if Path::new(&r).exists() => watch(Some(r)),
                _ => watch(dir),
            }
        }
    }
    // With no rerun-if-changed line cargo would re-run this script whenever any file of the
    // package changes; outside a git checkout watch this script alone.
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rustc-env=PTT_GIT_REV={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}

/// `-z pack-relative-relocs`: the binary is position-independent, so each pointer in its
/// read-only data (vtables, string tables) has a relocation the loader applies at start. Stored
/// the usual way (24 bytes each) they were 414 KiB of the 7.5 MB daemon, read at every start
/// and then resident; packed they take a few KiB. The code and the address randomisation are
/// unchanged. Needs GNU ld 2.38 or lld 15, and glibc 2.36 to load the result, so it is used only
/// when a probe program linked that way runs here; a cross build (host differs from target)
/// does not probe and links as before.
fn pack_relative_relocations() {
    const FLAG: &str = "-Wl,-z,pack-relative-relocs";
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("TARGET") != var("HOST") {
        return;
    }
    let Ok(out) = std::env::var("OUT_DIR") else {
        return;
    };
    if relr_supported(Path::new(&out), FLAG) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

/// Links a program that needs a relative relocation with `flag` (warnings fatal, so a linker
/// that would ignore the option says no) and runs it: true only if both work and the result
/// really has a packed relocation section.
fn relr_supported(out: &Path, flag: &str) -> bool {
    let src = out.join("relr-probe.c");
    let exe = out.join("relr-probe");
    let program = "static int x; int *const p = &x; int main(void) { return *p; }\n";
    if std::fs::write(&src, program).is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(cc)
        .args(["-pie", "-fPIE", "-Wl,--fatal-warnings", flag, "-o"])
        .arg(&exe)
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let runs = linked
        && Command::new(&exe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let packed = runs && std::fs::read(&exe).is_ok_and(|b| b.windows(9).any(|w| w == b".relr.dyn"));
    let _ = std::fs::remove_file(&exe);
    packed
}
