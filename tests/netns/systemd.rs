//! `scripts/install.sh --start` under a real systemd: a Debian bookworm root made with
//! debootstrap (once, kept under the target directory) is booted with `systemd-nspawn -b`
//! (systemd as PID 1, a private network with only loopback, the root read-only under a tmpfs
//! overlay so every run starts clean). Inside it, as an operator would: install and start the
//! service with a device bundle, read `ptt-node status` through the service's socket, see an
//! alert sent by the service in `listen` of a second device, scrape the metrics, reload, kill
//! the daemon (systemd restarts it), stop it (it ends cleanly), and check the hardening took.
//!
//! Needs root, debootstrap and systemd-nspawn (fails on CI, skips otherwise).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::common::{self, BIN, p};
use crate::support::netns::{self, Cond};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The Debian root, made once: what the installed binary needs (libopus, libasound), systemd,
/// and curl for the metrics.
fn rootfs() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd-rootfs");
    let root = base.join("root");
    let ready = base.join("ready");
    if ready.exists() {
        return root;
    }
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("rootfs dir");
    let partial = base.join("partial");
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus,libopus0,libasound2,procps,curl",
            "bookworm",
            p(&partial),
            "http://deb.debian.org/debian",
        ])
        .output()
        .expect("debootstrap");
    assert!(
        out.status.success(),
        "debootstrap: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &root).expect("rootfs");
    std::fs::write(&ready, b"").expect("rootfs marker");
    root
}

/// A booted container; powered off (then killed, if it must be) when dropped.
struct Container {
    nspawn: Child,
    leader: u32,
    log: PathBuf,
}

impl Container {
    fn boot(root: &Path, name: &str, binds: &[(&Path, &str)], log: &Path) -> Container {
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "-q",
            "-D",
            p(root),
            "-b",
            "--volatile=overlay",
            "--private-network",
            "--register=no",
            "--keep-unit",
            "-M",
            name,
        ]);
        for (host, inside) in binds {
            cmd.arg(format!("--bind-ro={}:{inside}", p(host)));
        }
        let out = std::fs::File::create(log).expect("log");
        let mut nspawn = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("systemd-nspawn");
        // The container's PID 1 is the child of nspawn that runs systemd (nspawn forks helpers
        // first).
        let id = nspawn.id();
        let leader = netns::wait_until("the container's init", Duration::from_secs(30), || {
            if let Ok(Some(s)) = nspawn.try_wait() {
                return Cond::Failed(format!("systemd-nspawn ended: {s}"));
            }
            let kids = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children"))
                .unwrap_or_default();
            let init = kids.split_whitespace().find(|k| {
                std::fs::read_to_string(format!("/proc/{k}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
            });
            match init.and_then(|k| k.parse().ok()) {
                Some(pid) => Cond::Done(pid),
                None => Cond::Pending(format!("children: {}", kids.trim())),
            }
        });
        let leader = leader.unwrap_or_else(|e| {
            panic!("{e}\n{}", std::fs::read_to_string(log).unwrap_or_default())
        });
        let c = Container {
            nspawn,
            leader,
            log: log.to_path_buf(),
        };
        // Until systemd answers, and then until it has booted.
        let booted = netns::wait_until("the boot", Duration::from_secs(90), || {
            let out = c.sh("timeout 60 systemctl is-system-running --wait");
            match String::from_utf8_lossy(&out.stdout).trim() {
                s @ ("running" | "degraded") => Cond::Done(s.to_string()),
                s @ ("maintenance" | "stopping") => Cond::Failed(s.to_string()),
                s => {
                    std::thread::sleep(Duration::from_millis(200));
                    Cond::Pending(format!(
                        "{s} {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            }
        });
        if let Err(e) = booted {
            panic!("the container did not boot: {e}\n{}", c.log());
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a shell command inside (all the container's namespaces, its root).
    fn sh(&self, script: &str) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "bash", "-c", script]);
        netns::run_with_timeout(&mut cmd, Duration::from_secs(120)).expect("nsenter")
    }

    /// [`Container::sh`], which must succeed; returns stdout.
    fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "`{script}` failed: {}\n{}\njournal:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(
                &self
                    .sh("journalctl -u ptt-node --no-pager | tail -30")
                    .stdout
            )
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn wait(&self, what: &str, script: &str, done: impl Fn(&str) -> bool) -> String {
        netns::wait_until(what, Duration::from_secs(30), || {
            let out = self.sh(script);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && done(&text) {
                Cond::Done(text)
            } else {
                Cond::Pending(format!(
                    "{}{}",
                    text.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes nspawn power the container off.
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Killing its PID 1 ends every process of the container.
        unsafe { libc::kill(self.leader as i32, libc::SIGKILL) };
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

#[test]
fn install_start_and_operate_the_service_under_systemd() {
    if !netns::require_netns()
        || !netns::require_program("debootstrap")
        || !netns::require_program("systemd-nspawn")
        || !netns::require_program("nsenter")
    {
        return;
    }
    let root = rootfs();
    let work = std::env::temp_dir().join(format!("ptt-systemd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let dom = work.join("dom");
    common::ok(&["domain", "init", "--dir", p(&dom), "--name", "sd"]);
    for d in ["m1", "m2"] {
        let out = work.join("bundles").join(d);
        common::ok(&[
            "domain",
            "enroll",
            "--dir",
            p(&dom),
            "--device",
            d,
            "--out",
            p(&out),
        ]);
    }
    let name = format!("ptt-sd-{}", std::process::id());
    let c = Container::boot(
        &root,
        &name,
        &[
            (Path::new(REPO), "/opt/src"),
            (Path::new(BIN), "/opt/bin/ptt-node"),
            (&work.join("bundles"), "/opt/bundles"),
        ],
        &work.join("nspawn.log"),
    );

    // Install and start, as the README says.
    let out = c.ok(
        "cd /opt/src && bash scripts/install.sh --binary /opt/bin/ptt-node \
         --bundle /opt/bundles/m1 --start",
    );
    assert!(out.contains("==> started"), "{out}");
    assert_eq!(c.ok("systemctl is-enabled ptt-node").trim(), "enabled");
    // The CLI finds the service's socket without --data.
    let status = c.wait("ptt-node status", "ptt-node status", |s| {
        s.contains("m1 (#1)")
    });
    assert!(status.contains("domain   sd"), "{status}");

    // The hardening took: the service user, no new privileges, no capabilities.
    let pid = c
        .ok("systemctl show -p MainPID --value ptt-node")
        .trim()
        .to_string();
    let st = c.ok(&format!("cat /proc/{pid}/status"));
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("NoNewPrivs:"), "1", "{st}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{st}");
    assert_eq!(
        c.ok(&format!("ps -o user= -p {pid}")).trim(),
        "ptt-node",
        "runs as its own user"
    );

    // A second device (by hand, beside the service) hears what the service's device sends.
    c.ok(
        "mkdir -p /tmp/m2 && cp -r /opt/bundles/m2 /tmp/m2/bundle && \
         (setsid /usr/local/bin/ptt-node run --bundle /tmp/m2/bundle \
         --data /tmp/m2/data --no-mdns --listen /ip4/127.0.0.1/tcp/7001 \
         --peer /ip4/127.0.0.1/tcp/7000 >/tmp/m2/log 2>&1 &)",
    );
    c.wait(
        "m2 authenticated",
        "ptt-node peers; tail -3 /tmp/m2/log",
        |s| s.contains("m2") && s.contains("authenticated"),
    );
    c.ok(
        "(setsid timeout 60 /usr/local/bin/ptt-node listen --json --data /tmp/m2/data \
         >/tmp/m2/listen.out 2>&1 &)",
    );
    std::thread::sleep(Duration::from_millis(800));
    c.ok("ptt-node alert --severity severe --kind smoke --text 'sent by the service'");
    let shown = c.wait("the alert at m2", "cat /tmp/m2/listen.out", |s| {
        s.contains("sent by the service")
    });
    assert!(shown.contains("\"sender\":\"m1\""), "{shown}");

    // Metrics: turned on in the installed configuration, then a restart.
    c.ok(
        "sed -i 's|^# metrics = \"127.0.0.1:9464\"|metrics = \"127.0.0.1:9464\"|' \
         /etc/ptt-node/ptt-node.toml && grep -q '^metrics' /etc/ptt-node/ptt-node.toml && \
         systemctl restart ptt-node",
    );
    c.wait("metrics", "curl -sf http://127.0.0.1:9464/metrics", |m| {
        m.contains("ptt_peers{state=\"authenticated\"} 1")
    });

    // Reload is SIGHUP (rules); the daemon says so and keeps running.
    c.ok("systemctl reload ptt-node");
    c.wait("SIGHUP logged", "journalctl -u ptt-node --no-pager", |j| {
        j.contains("SIGHUP")
    });

    // A daemon that dies is restarted.
    let before = c
        .ok("systemctl show -p MainPID --value ptt-node")
        .trim()
        .to_string();
    c.ok(&format!("kill -9 {before}"));
    c.wait(
        "restarted",
        "systemctl show -p NRestarts -p ActiveState -p MainPID ptt-node",
        |s| {
            s.contains("NRestarts=1")
                && s.contains("ActiveState=active")
                && !s.contains(&format!("MainPID={before}\n"))
        },
    );
    c.wait("status after the restart", "ptt-node status", |s| {
        s.contains("m1 (#1)")
    });

    // Stop: SIGTERM, a clean end.
    c.ok("systemctl stop ptt-node");
    let shown = c.ok("systemctl show -p Result -p ExecMainStatus ptt-node");
    assert!(
        shown.contains("Result=success") && shown.contains("ExecMainStatus=0"),
        "{shown}"
    );
    let journal = c.ok("journalctl -u ptt-node --no-pager");
    assert!(journal.contains("daemon stopped"), "{journal}");
    drop(c);
    let _ = std::fs::remove_dir_all(&work);
}
