//! Self-tests of the network-namespace harness (`tests/support/netns.rs`).
//!
//! They need root and iproute2 (and `ping` from iputils-ping); without them
//! they skip with a message, except on CI (`CI` set) where they fail.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::netns::{self, Cond, Lan};

/// Skips (or, on CI, fails) unless namespaces and `ping` are available.
fn ready() -> bool {
    netns::require_netns() && netns::require_program("ping")
}

fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    netns::list_namespaces()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// State letter (R, S, T, Z, …) of a process from /proc/PID/stat.
/// Waits until `pid` is the only process in `host`'s namespace. `ip netns exec` joins the
/// namespace and then execs, so right after a spawn the child may not be in it yet.
fn wait_alone_in(host: &netns::Host, pid: u32) {
    netns::wait_until(
        "the spawned process to be in the namespace",
        Duration::from_secs(5),
        || match host.pids() {
            Ok(pids) if pids == [pid] => Cond::Done(()),
            other => Cond::Pending(format!("pids {other:?}, want [{pid}]")),
        },
    )
    .unwrap();
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ..." — comm may contain spaces, so split after ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn two_hosts_on_one_lan_can_ping_each_other() {
    if !ready() {
        return;
    }
    let lan = Lan::new("ping").expect("create LAN");
    let a = lan.add_host("a").expect("add host a");
    let b = lan.add_host("b").expect("add host b");

    assert_ne!(a.addr(), b.addr());
    for h in [&a, &b] {
        let o = h.addr().octets();
        assert_eq!(
            [o[0], o[1], o[2]],
            [10, 213, lan.index()],
            "{} address",
            h.name()
        );
        assert_eq!(h.addr_on(&lan), Some(h.addr()));
        assert_eq!(h.read_sysctl("net.ipv4.ip_forward").unwrap(), "0");
        let routes = h.iproute(&["route", "show"]).expect("ip route");
        assert!(
            routes.contains("224.0.0.0/4 dev eth0"),
            "multicast route missing on {}: {routes}",
            h.name()
        );
    }

    assert!(a.ping(b.addr()).expect("run ping"), "a cannot ping b");
    assert!(b.ping(a.addr()).expect("run ping"), "b cannot ping a");
    // Nobody has .250: ping must fail, so the assertions above can fail too.
    let nobody = Ipv4Addr::new(10, 213, lan.index(), 250);
    assert!(
        !a.ping(nobody).expect("run ping"),
        "ping to an unused address succeeded"
    );

    // Commands really run inside the namespace.
    let out = a.run("ip", ["-4", "-o", "addr", "show"]).expect("ip addr");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&a.addr().to_string()), "{text}");
    assert!(!text.contains(&b.addr().to_string()), "{text}");

    // Hygiene: the root namespace got no address in our range.
    let root = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .expect("ip addr");
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(
        !root.contains("10.213."),
        "root namespace has a harness address:\n{root}"
    );
}

#[test]
fn multicast_reaches_the_other_hosts_of_the_lan_only() {
    if !ready() {
        return;
    }
    let lan = Lan::new("mcast").expect("create LAN");
    let other = Lan::new("mcast2").expect("create second LAN");
    let a = lan.add_host("a").expect("add host a");
    let b = lan.add_host("b").expect("add host b");
    let c = other.add_host("c").expect("add host c");
    for h in [&b, &c] {
        // Make them answer pings sent to a multicast group.
        h.sysctl("net.ipv4.icmp_echo_ignore_broadcasts", "0")
            .expect("sysctl");
    }
    let out = a
        .run("ping", ["-n", "-c2", "-W2", "224.0.0.1"])
        .expect("run multicast ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("from {}", b.addr())),
        "b did not answer a multicast ping from a:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(&format!("from {}", c.addr())), "{text}");
}

#[test]
fn lans_are_isolated_even_through_a_dual_homed_host() {
    if !ready() {
        return;
    }
    let lan_a = Lan::new("isoA").expect("create LAN A");
    let lan_b = Lan::new("isoB").expect("create LAN B");
    assert_ne!(lan_a.subnet(), lan_b.subnet());
    let a = lan_a.add_host("a").expect("add host a");
    let b = lan_b.add_host("b").expect("add host b");
    let gw = lan_a.add_host("gw").expect("add host gw");
    let gw_b = lan_b.attach(&gw).expect("attach gw to LAN B");
    let gw_a = gw.addr_on(&lan_a).expect("gw address on LAN A");
    assert_eq!(gw.addr_on(&lan_b), Some(gw_b));
    let names: Vec<String> = gw.interfaces().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["eth0", "eth1"]);

    // No route at all between the LANs.
    assert!(
        !a.ping(b.addr()).expect("run ping"),
        "a reached b without any route"
    );

    // The dual-homed host reaches both sides.
    assert!(gw.ping(a.addr()).expect("run ping"), "gw cannot reach a");
    assert!(gw.ping(b.addr()).expect("run ping"), "gw cannot reach b");

    // Routes through gw: still unreachable, because gw has ip_forward=0.
    let (sub_a, sub_b) = (
        format!("{}/24", lan_a.subnet()),
        format!("{}/24", lan_b.subnet()),
    );
    a.iproute(&["route", "add", &sub_b, "via", &gw_a.to_string()])
        .expect("route on a");
    b.iproute(&["route", "add", &sub_a, "via", &gw_b.to_string()])
        .expect("route on b");
    assert_eq!(gw.read_sysctl("net.ipv4.ip_forward").unwrap(), "0");
    assert!(
        !a.ping(b.addr()).expect("run ping"),
        "a reached b through gw with ip_forward=0"
    );

    // Control: with forwarding on, the same ping works, so the check above
    // really tests forwarding and not a broken setup.
    gw.sysctl("net.ipv4.ip_forward", "1")
        .expect("enable forwarding");
    assert!(
        a.ping(b.addr()).expect("run ping"),
        "control: a cannot reach b even via a router"
    );
    gw.sysctl("net.ipv4.ip_forward", "0")
        .expect("disable forwarding");
    assert!(
        !a.ping(b.addr()).expect("run ping"),
        "forwarding could not be turned off again"
    );

    // Dropping LAN B removes gw's second leg but not gw.
    drop(b);
    drop(lan_b);
    assert!(gw.exists());
    // The kernel destroys a deleted namespace (and so the veth pair)
    // asynchronously, hence the wait.
    netns::wait_until(
        "eth1 to vanish with LAN B",
        Duration::from_secs(10),
        || match gw.iproute(&["-o", "link", "show"]) {
            Ok(links) if links.contains("eth1") => Cond::Pending(links),
            Ok(_) => Cond::Done(()),
            Err(e) => Cond::Failed(e.to_string()),
        },
    )
    .unwrap();
    assert!(gw.ping(a.addr()).expect("run ping"));
}

#[test]
fn dropping_the_lan_removes_every_namespace_and_process() {
    if !netns::require_netns() {
        return;
    }
    let lan = Lan::new("drop").expect("create LAN");
    let prefix = lan.namespace_prefix().to_owned();
    let a = lan.add_host("a").expect("add host a");
    let b = lan.add_host("b").expect("add host b");
    let mut sleeper = a.spawn("sleep", ["1000"], &[]).expect("spawn sleep");
    // A process not owned by any Proc handle: only namespace teardown kills it.
    let mut orphan = b
        .command("sleep", ["1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn unmanaged sleep");
    let names = namespaces_with_prefix(&prefix);
    assert_eq!(names.len(), 3, "expected switch + 2 hosts, got {names:?}");
    assert!(names.iter().any(|n| n == lan.switch_namespace()));
    assert!(names.iter().any(|n| n == a.namespace()));
    assert!(sleeper.is_running());
    wait_alone_in(&b, orphan.id());

    // Drop the LAN while the Host handles are still alive.
    drop(lan);
    let left = namespaces_with_prefix(&prefix);
    assert!(
        left.is_empty(),
        "namespaces left after dropping the LAN: {left:?}"
    );
    assert!(!a.exists() && !b.exists());
    let status = sleeper
        .wait_timeout(Duration::from_secs(5))
        .expect("wait")
        .expect("sleep in a dropped namespace still running");
    assert!(!status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while orphan.try_wait().expect("try_wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "unmanaged process survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((a, b, sleeper)); // no-ops now, and must not panic
}

#[test]
fn dropping_a_host_removes_its_namespace() {
    if !netns::require_netns() {
        return;
    }
    let lan = Lan::new("hostdrop").expect("create LAN");
    let a = lan.add_host("a").expect("add host a");
    let ns = a.namespace().to_owned();
    let _p = a.spawn("sleep", ["1000"], &[]).expect("spawn");
    assert!(netns::list_namespaces().unwrap().contains(&ns));
    drop(a);
    assert!(!netns::list_namespaces().unwrap().contains(&ns));
    assert!(lan.add_host("a").is_err(), "duplicate host name accepted");
}

/// Deletes a namespace made by hand in a test, even if the test panics.
struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn stale_namespaces_of_dead_runs_are_swept() {
    if !netns::require_netns() {
        return;
    }
    // A pid that is certainly dead: a child we started and reaped.
    let mut t = Command::new("true").spawn().expect("spawn true");
    let dead_pid = t.id();
    t.wait().expect("wait true");
    let stale = format!("{}-{dead_pid}-0-sw-stale", netns::PREFIX);
    let live = format!("{}-{}-999999-sw-live", netns::PREFIX, std::process::id());
    let _g1 = NsGuard(stale.clone());
    let _g2 = NsGuard(live.clone());
    for ns in [&stale, &live] {
        let ok = Command::new("ip")
            .args(["netns", "add", ns])
            .status()
            .expect("ip");
        assert!(ok.success(), "ip netns add {ns}");
    }
    let mut inside = Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "1000"])
        .spawn()
        .expect("spawn sleep in the stale namespace");
    // `ip netns exec` enters the namespace, then execs sleep: wait for the exec, or the sweep
    // may find the namespace empty, delete it, and leave `ip` to enter it afterwards.
    let comm = format!("/proc/{}/comm", inside.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep never started in the stale namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let tmp = std::env::temp_dir();
    let stale_dir = tmp.join(format!("{}-{dead_pid}-stale-test", netns::PREFIX));
    let kept_dir = tmp.join(format!("{}-{dead_pid}-kept-test", netns::PREFIX));
    std::fs::create_dir_all(stale_dir.join("logs")).expect("create stale dir");
    std::fs::create_dir_all(&kept_dir).expect("create kept dir");
    std::fs::write(kept_dir.join(".ptt-netns-keep"), b"").expect("keep marker");

    let removed = netns::sweep_stale().expect("sweep");
    assert!(!stale_dir.exists(), "stale temp dir not swept");
    assert!(
        kept_dir.exists(),
        "temp dir kept with PTT_NETNS_KEEP was swept"
    );
    std::fs::remove_dir_all(&kept_dir).expect("remove kept dir");
    // (A concurrent test's first Lan::new may have swept it first, so only
    // the outcome is checked, not which call removed it.)
    assert!(
        !removed.contains(&live),
        "namespace of a live process swept"
    );
    let all = netns::list_namespaces().unwrap();
    assert!(!all.contains(&stale));
    assert!(all.contains(&live));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while inside.try_wait().expect("try_wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "process in swept namespace survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn processes_output_env_signals_and_timeouts() {
    if !netns::require_netns() {
        return;
    }
    let lan = Lan::new("proc").expect("create LAN");
    let h = lan.add_host("h").expect("add host");

    let mut p = h
        .spawn(
            "sh",
            ["-c", "echo \"out $FOO\"; echo err >&2; printf partial"],
            &[("FOO", "bar")],
        )
        .expect("spawn sh");
    let status = p
        .wait_timeout(Duration::from_secs(10))
        .expect("wait")
        .expect("sh exited");
    assert!(status.success());
    assert_eq!(p.stdout_lines(), ["out bar"]);
    assert_eq!(p.stdout(), "out bar\npartial");
    assert_eq!(p.stderr(), "err\n");
    assert!(p.stdout_path().starts_with(lan.dir()));
    let logs = lan.dump_logs();
    assert!(logs.contains("out bar") && logs.contains("err"), "{logs}");

    let mut s = h.spawn("sleep", ["1000"], &[]).expect("spawn sleep");
    let pid = s.pid();
    wait_alone_in(&h, pid);
    s.stop().expect("SIGSTOP");
    netns::wait_until(
        "SIGSTOP to take effect",
        Duration::from_secs(5),
        || match proc_state(pid) {
            Some('T') => Cond::Done(()),
            other => Cond::Pending(format!("state {other:?}")),
        },
    )
    .unwrap();
    s.cont().expect("SIGCONT");
    netns::wait_until(
        "SIGCONT to take effect",
        Duration::from_secs(5),
        || match proc_state(pid) {
            Some('S') | Some('R') => Cond::Done(()),
            other => Cond::Pending(format!("state {other:?}")),
        },
    )
    .unwrap();
    let status = s.kill().expect("SIGKILL");
    assert!(!status.success());
    assert!(!s.is_running());
    assert!(s.stop().is_err(), "signalling a reaped process must fail");

    let err = h
        .run_with("sleep", ["5"], &[], Duration::from_millis(300))
        .expect_err("sleep 5 with a 300 ms timeout");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

    let out = h.run("sh", ["-c", "exit 3"]).expect("run sh");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn link_down_cuts_the_host_off_and_link_up_restores_it() {
    if !ready() {
        return;
    }
    let lan = Lan::new("link").expect("create LAN");
    let a = lan.add_host("a").expect("add host a");
    let b = lan.add_host("b").expect("add host b");
    assert!(a.ping(b.addr()).expect("ping"));
    b.link_down().expect("link down");
    assert!(
        !a.ping(b.addr()).expect("ping"),
        "b answered with its link down"
    );
    b.link_up().expect("link up");
    lan.wait_until("b reachable again", Duration::from_secs(10), || {
        match a.ping(b.addr()) {
            Ok(true) => Cond::Done(()),
            Ok(false) => Cond::Pending("no reply".into()),
            Err(e) => Cond::Failed(e.to_string()),
        }
    })
    .unwrap();
    let routes = b.iproute(&["route", "show"]).expect("ip route");
    assert!(
        routes.contains("224.0.0.0/4 dev eth0"),
        "multicast route not restored: {routes}"
    );
}

#[test]
fn wait_until_reports_done_pending_and_failed() {
    let mut n = 0;
    let v = netns::wait_until("counter", Duration::from_secs(5), || {
        n += 1;
        if n == 3 {
            Cond::Done(n)
        } else {
            Cond::Pending(format!("n={n}"))
        }
    });
    assert_eq!(v, Ok(3));

    let e = netns::wait_until::<()>("never", Duration::from_millis(250), || {
        Cond::Pending("still nothing".into())
    })
    .unwrap_err();
    assert!(
        e.contains("timed out") && e.contains("never") && e.contains("still nothing"),
        "{e}"
    );

    let start = std::time::Instant::now();
    let e = netns::wait_until::<()>("doomed", Duration::from_secs(30), || {
        Cond::Failed("daemon died".into())
    })
    .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(e.contains("daemon died"), "{e}");
}
