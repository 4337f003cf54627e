//! Linux network-namespace test harness for ptt-node integration tests.
//!
//! # Using it
//!
//! The namespace test binary (`tests/netns/main.rs`) includes it as
//! `support::netns`, and the mesh benchmark (`examples/bench-mesh.rs`) as a
//! module of its own, so it depends on no other support module: std only plus
//! `tempfile`.
//!
//! ```ignore
//! if !netns::require_netns() || !netns::require_program("ping") {
//!     return; // not root / no `ip netns` / no ping, and not on CI
//! }
//! let lan = netns::Lan::new("demo").expect("create LAN");
//! let a = lan.add_host("a").expect("add host a");
//! let b = lan.add_host("b").expect("add host b");
//! assert!(a.ping(b.addr()).expect("run ping"));
//! let server = b.spawn("some-daemon", ["--flag"], &[("RUST_LOG", "debug")]).expect("spawn");
//! ```
//!
//! # Topology
//!
//! Nothing is ever configured in the root namespace: the harness only creates
//! and deletes namespaces there. Each [`Lan`] is a *switch* namespace holding a
//! bridge `br0` (multicast snooping off, STP off, so ports forward at once).
//! Each [`Host`] is a namespace with `lo` up and one leg per LAN: a veth pair
//! created from inside the switch namespace, whose host end is moved straight
//! into the host namespace as `eth0` (`eth1`, … for further LANs joined with
//! [`Lan::attach`]) and whose switch end is enslaved to `br0`. The host end
//! gets `10.213.<lan index>.<10 + n>/24`, is brought up, and gets a route
//! `224.0.0.0/4 dev ethN` so that multicast (mDNS) works without a default
//! route. `net.ipv4.ip_forward` is forced to 0 in every host, so a host with
//! legs in two LANs does not route between them.
//!
//! # Names
//!
//! Every namespace is called `pttnh-<pid>-<lan seq>-…` ([`PREFIX`], the pid of
//! the test process, and a per-process counter), so test binaries and tests
//! within one binary can run in parallel. Interface names inside namespaces
//! are short and fixed (`br0`, `pN`, `ethN`), well under the 15-byte limit.
//! The first [`Lan::new`] of a process calls [`sweep_stale`], which deletes
//! namespaces left behind by harness runs whose pid is no longer alive (for
//! instance a test binary killed with SIGKILL, where no `Drop` ran).
//!
//! # Teardown
//!
//! * [`Proc`] kills its process (SIGKILL) and reaps it when dropped.
//! * [`Host`] kills every process in its namespace and deletes the namespace
//!   when dropped.
//! * [`Lan`] kills every process in, and deletes, its switch namespace and
//!   every host namespace it created when dropped, even if `Host` handles are
//!   still alive (their own `Drop` then does nothing). If the thread is
//!   panicking, `Lan`'s `Drop` first prints the stdout/stderr of every process
//!   spawned on its hosts to stderr (libtest shows it under the failed test).
//! * Deleting a namespace removes its veth ends and bridge with it.
//!
//! # Logs and files
//!
//! Each `Lan` owns a temporary directory ([`Lan::dir`]); processes started
//! with [`Host::spawn`] write stdout and stderr to files under `logs/` in it,
//! and [`Host::dir`] gives each host a private sub-directory for data. Set
//! `PTT_NETNS_KEEP=1` to keep the directory after the test (its path is
//! printed, and [`sweep_stale`] leaves it alone); otherwise it is removed
//! once the `Lan` and its hosts are dropped.
//!
//! # Environment
//!
//! Needs root and iproute2's `ip` (plus `ping`, from iputils-ping, for
//! [`Host::ping`]). Tests call [`require_netns`] (and [`require_program`])
//! first: without those they skip with a message on stderr, unless `CI` is
//! set to a non-empty value, in which case they panic (CI must never skip
//! silently).

// The benchmark uses a small part of the harness; the tests (built with
// `cfg(test)`) are still told about anything none of them uses.
#![cfg_attr(not(test), allow(dead_code))]

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Prefix of every namespace this harness creates.
pub const PREFIX: &str = "pttnh";

/// Default timeout of [`Host::run`].
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Timeout of the harness's own `ip` invocations.
const IP_TIMEOUT: Duration = Duration::from_secs(15);

/// File marking a temp dir kept on purpose (`PTT_NETNS_KEEP`).
const KEEP_MARKER: &str = ".ptt-netns-keep";

/// Where `ip netns add` puts its bind mounts (iproute2's default).
const NETNS_RUN_DIR: &str = "/run/netns";

/// How much of each log file [`Lan::dump_logs`] prints (the tail).
const LOG_TAIL_LINES: usize = 200;
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// Per-process counter making namespace names unique.
static NEXT_SEQ: AtomicU32 = AtomicU32::new(0);

/// Sends signal `sig` (a name such as `STOP`, `KILL`) to `pids` with the
/// shell's `kill` builtin, keeping this module free of `unsafe` FFI.
fn send_signal(sig: &str, pids: &[u32]) -> io::Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sig=$1; shift; kill -s \"$sig\" \"$@\"", "sh", sig])
        .args(pids.iter().map(u32::to_string));
    let out = run_with_timeout(&mut cmd, IP_TIMEOUT)?;
    check(&cmd, out).map(drop)
}

// ---------------------------------------------------------------------------
// Environment checks
// ---------------------------------------------------------------------------

/// Returns true if network-namespace tests can run here.
///
/// Checks that we are root and that `ip netns add` works (by creating and
/// deleting a probe namespace). If not: when the environment variable `CI` is
/// set to a non-empty value this **panics** with the reason, so CI never skips
/// silently; otherwise it prints `skipping: needs root + ip netns (...)` to
/// stderr and returns false, and the caller should `return` early.
pub fn require_netns() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    match PROBE.get_or_init(probe_netns) {
        Ok(()) => true,
        Err(why) => skip_or_panic(&format!("needs root + ip netns: {why}")),
    }
}

/// Like [`require_netns`] for an external program (`ping`, …): true if
/// `program` is found in `PATH`; otherwise skips, or panics when `CI` is set.
pub fn require_program(program: &str) -> bool {
    if find_in_path(program).is_some() {
        return true;
    }
    skip_or_panic(&format!(
        "needs `{program}` in PATH (Debian: apt-get install {})",
        debian_package_for(program)
    ))
}

/// True if the `CI` environment variable is set to a non-empty value.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn skip_or_panic(why: &str) -> bool {
    if in_ci() {
        panic!(
            "netns test cannot run: {why}. CI is set, so refusing to skip: \
             CI must run these tests as root with iproute2 installed."
        );
    }
    // Written to the stderr handle directly: libtest captures `eprintln!`
    // of passing tests, and a skip must be visible.
    use std::io::Write as _;
    let _ = writeln!(io::stderr(), "skipping: {why}");
    false
}

fn debian_package_for(program: &str) -> &str {
    match program {
        "ip" => "iproute2",
        "ping" => "iputils-ping",
        "systemd-nspawn" => "systemd-container",
        other => other,
    }
}

fn probe_netns() -> Result<(), String> {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Err(format!("running as uid {uid}, not root")),
        None => return Err("cannot read the effective uid from /proc/self/status".into()),
    }
    if find_in_path("ip").is_none() {
        return Err("`ip` (iproute2) not found in PATH".into());
    }
    let name = format!(
        "{PREFIX}-{}-{}-probe",
        std::process::id(),
        NEXT_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    ip(["netns", "add", &name]).map_err(|e| e.to_string())?;
    let up = ip(["-n", &name, "link", "set", "lo", "up"]);
    let del = ip(["netns", "del", &name]);
    up.map_err(|e| e.to_string())?;
    del.map_err(|e| e.to_string())?;
    Ok(())
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // "Uid: real effective saved fs"
    line.split_whitespace().nth(2)?.parse().ok()
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// Runs `cmd` to completion with a timeout, capturing stdout and stderr.
///
/// Output goes to anonymous temporary files rather than pipes, so a
/// grandchild that keeps a pipe open cannot hang the caller. On timeout the
/// child is killed and an [`io::ErrorKind::TimedOut`] error describing the
/// command and its partial output is returned. A non-zero exit is *not* an
/// error: inspect `Output::status`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut out = tempfile::tempfile()?;
    let mut err = tempfile::tempfile()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(err.try_clone()?));
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {cmd:?}: {e}")))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = read_all(&mut out)?;
    let stderr = read_all(&mut err)?;
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{cmd:?} timed out after {timeout:?} (killed)\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
        )),
    }
}

fn read_all(file: &mut File) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Turns a finished command into an error unless it exited 0.
fn check(what: &dyn std::fmt::Debug, out: Output) -> io::Result<Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{what:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

/// Runs `ip ARGS` (in the root namespace's context, e.g. `ip -n NS ...`).
fn ip<I, S>(args: I) -> io::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let out = run_with_timeout(&mut cmd, IP_TIMEOUT)?;
    let out = check(&cmd, out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------
// Namespace bookkeeping
// ---------------------------------------------------------------------------

/// Names of all network namespaces, as listed by `ip netns list`.
pub fn list_namespaces() -> io::Result<Vec<String>> {
    let out = ip(["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Deletes namespaces named `pttnh-<pid>-…` whose `<pid>` is not a live
/// process (left over by an earlier harness run that could not clean up,
/// e.g. a test binary killed by SIGKILL), killing any process still inside
/// them first. Returns the names deleted. Namespaces of live processes,
/// including other test binaries running in parallel, are left alone.
///
/// Also removes the temp dirs `pttnh-<pid>-…` of dead pids from the system
/// temp dir, except those kept with `PTT_NETNS_KEEP`.
pub fn sweep_stale() -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        let Some(pid) = harness_pid(&name) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        teardown_namespace(&name);
        if !namespace_exists(&name) {
            removed.push(name);
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let stale = harness_pid(&name).is_some_and(|pid| !pid_alive(pid))
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && !path.join(KEEP_MARKER).exists();
            if stale && let Err(e) = fs::remove_dir_all(&path) {
                eprintln!("netns harness: cannot remove stale {}: {e}", path.display());
            }
        }
    }
    Ok(removed)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid encoded in a harness namespace name, if `name` is one.
fn harness_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

fn namespace_exists(ns: &str) -> bool {
    Path::new(NETNS_RUN_DIR).join(ns).exists()
}

/// Pids of the processes whose network namespace is `ns`.
fn namespace_pids(ns: &str) -> io::Result<Vec<u32>> {
    Ok(ip(["netns", "pids", ns])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// SIGKILLs every process in `ns`, then deletes it. Never panics: problems
/// are reported on stderr (this runs from `Drop`, possibly while unwinding).
fn teardown_namespace(ns: &str) {
    if !namespace_exists(ns) {
        return;
    }
    for attempt in 0..50 {
        match namespace_pids(ns) {
            Ok(pids) if pids.is_empty() => break,
            Ok(pids) => {
                // Errors are expected when a process exits meanwhile; the
                // loop checks again.
                let _ = send_signal("KILL", &pids);
            }
            Err(e) => {
                eprintln!("netns harness: cannot list processes of {ns}: {e}");
                break;
            }
        }
        if attempt == 49 {
            eprintln!("netns harness: processes in {ns} survived SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = ip(["netns", "del", ns]) {
        eprintln!("netns harness: cannot delete namespace {ns}: {e}");
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop teardown.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps `[A-Za-z0-9_-]` of `s` (others become `_`), at most `max` characters.
fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

// ---------------------------------------------------------------------------
// Logs shared by a LAN and its hosts
// ---------------------------------------------------------------------------

struct LogFiles {
    host: String,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// State shared by a [`Lan`] and the hosts it created: the temp dir and the
/// list of log files.
struct Shared {
    dir: PathBuf,
    /// Removed (unless kept) when the LAN and all its hosts are gone.
    _tempdir: tempfile::TempDir,
    logs: Mutex<Vec<LogFiles>>,
    next_log: AtomicU32,
}

impl Shared {
    fn dump_logs(&self) -> String {
        let logs = lock(&self.logs);
        let mut s = String::new();
        if logs.is_empty() {
            s.push_str("(no processes were spawned)\n");
        }
        for log in logs.iter() {
            for (stream, path) in [("stdout", &log.stdout), ("stderr", &log.stderr)] {
                let _ = writeln!(s, "===== {} {stream}: {} =====", log.host, log.command);
                s.push_str(&tail_of(path));
                if !s.ends_with('\n') {
                    s.push('\n');
                }
            }
        }
        s
    }
}

/// The last [`LOG_TAIL_LINES`] lines (and at most [`LOG_TAIL_BYTES`]) of a file.
fn tail_of(path: &Path) -> String {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(cannot open {}: {e})", path.display()),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    let mut buf = Vec::new();
    if let Err(e) = file
        .seek(SeekFrom::Start(start))
        .and_then(|_| file.read_to_end(&mut buf))
    {
        return format!("(cannot read {}: {e})", path.display());
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut out = String::new();
    if skip > 0 || start > 0 {
        out.push_str("(… earlier output omitted …)\n");
    }
    if lines.is_empty() {
        out.push_str("(empty)\n");
    }
    for line in &lines[skip..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Lan
// ---------------------------------------------------------------------------

/// One Ethernet segment: a bridge in a dedicated switch namespace.
///
/// Dropping it tears down the switch and every host created with
/// [`Lan::add_host`] (see the module docs).
pub struct Lan {
    seq: u32,
    index: u8,
    ns_prefix: String,
    switch_ns: String,
    next_host: AtomicU32,
    /// (host name, namespace) of the hosts this LAN created and must delete.
    owned: Mutex<Vec<(String, String)>>,
    shared: Arc<Shared>,
    logs_reported: AtomicBool,
}

impl Lan {
    /// Creates a switch namespace `pttnh-<pid>-<seq>-sw-<hint>` with a bridge
    /// `br0` (multicast snooping off, up). `prefix_hint` only makes names
    /// easier to recognise (e.g. the test name); it is shortened and
    /// sanitised. The first call in a process also runs [`sweep_stale`].
    pub fn new(prefix_hint: &str) -> io::Result<Lan> {
        static SWEEP: OnceLock<()> = OnceLock::new();
        SWEEP.get_or_init(|| match sweep_stale() {
            Ok(removed) if !removed.is_empty() => {
                eprintln!("netns harness: removed stale namespaces {removed:?}");
            }
            Ok(_) => {}
            Err(e) => eprintln!("netns harness: sweep of stale namespaces failed: {e}"),
        });

        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        let ns_prefix = format!("{PREFIX}-{}-{seq}-", std::process::id());
        let switch_ns = format!("{ns_prefix}sw-{}", sanitize(prefix_hint, 16));
        let mut tempdir = tempfile::Builder::new()
            .prefix(&format!(
                "{PREFIX}-{}-{}-",
                std::process::id(),
                sanitize(prefix_hint, 16)
            ))
            .tempdir()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create temp dir: {e}")))?;
        let dir = tempdir.path().to_owned();
        if std::env::var_os("PTT_NETNS_KEEP").is_some_and(|v| !v.is_empty()) {
            tempdir.disable_cleanup(true);
            // Tells sweep_stale to leave it alone.
            fs::write(dir.join(KEEP_MARKER), b"")?;
            eprintln!(
                "netns harness: PTT_NETNS_KEEP set, keeping {}",
                dir.display()
            );
        }
        fs::create_dir_all(dir.join("logs"))?;
        let lan = Lan {
            seq,
            // 1..=250: distinct per LAN of this process (until 250 LANs).
            index: (seq % 250 + 1) as u8,
            ns_prefix,
            switch_ns,
            next_host: AtomicU32::new(0),
            owned: Mutex::new(Vec::new()),
            shared: Arc::new(Shared {
                dir,
                _tempdir: tempdir,
                logs: Mutex::new(Vec::new()),
                next_log: AtomicU32::new(0),
            }),
            logs_reported: AtomicBool::new(false),
        };
        // From here on, an error drops `lan`, which deletes what exists.
        let sw = lan.switch_ns.as_str();
        ip(["netns", "add", sw])?;
        ip(["-n", sw, "link", "set", "lo", "up"])?;
        ip([
            "-n",
            sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
            "stp_state",
            "0",
        ])?;
        ip(["-n", sw, "link", "set", "br0", "up"])?;
        Ok(lan)
    }

    /// Creates host `name` on this LAN: namespace `pttnh-<pid>-<seq>-h<n>-<name>`
    /// with `lo` up, `eth0` bridged to this LAN with address
    /// `10.213.<index>.<10+n>/24`, route `224.0.0.0/4 dev eth0` and
    /// `ip_forward=0`. Host names must be unique within the LAN.
    pub fn add_host(&self, name: &str) -> io::Result<Host> {
        if name.is_empty() || name.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad host name {name:?}"),
            ));
        }
        let n = self.alloc_host_number()?;
        let ns = format!("{}h{n}-{}", self.ns_prefix, sanitize(name, 24));
        {
            let mut owned = lock(&self.owned);
            if owned.iter().any(|(h, _)| h == name) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("host {name:?} already exists on this LAN"),
                ));
            }
            owned.push((name.to_owned(), ns.clone()));
        }
        // Registered before creation: if anything below fails, both the Lan
        // and the half-built Host clean it up.
        let host = Host {
            name: name.to_owned(),
            ns,
            shared: Arc::clone(&self.shared),
            ifaces: Mutex::new(Vec::new()),
        };
        ip(["netns", "add", &host.ns])?;
        ip(["-n", &host.ns, "link", "set", "lo", "up"])?;
        host.sysctl("net.ipv4.ip_forward", "0")?;
        self.plug(&host, n)?;
        fs::create_dir_all(host.dir())?;
        Ok(host)
    }

    /// Gives `host` (created on another LAN) a leg in this LAN: the next free
    /// `ethN`, an address in this LAN's /24, and a lower-priority
    /// `224.0.0.0/4` route. The host keeps `ip_forward=0`, so it does not
    /// route between its LANs. Returns the new address.
    ///
    /// The host namespace stays owned by the LAN that created it; dropping
    /// this LAN only removes the leg.
    pub fn attach(&self, host: &Host) -> io::Result<Ipv4Addr> {
        let n = self.alloc_host_number()?;
        self.plug(host, n)
    }

    fn alloc_host_number(&self) -> io::Result<u32> {
        let n = self.next_host.fetch_add(1, Ordering::Relaxed);
        if n > 240 {
            return Err(io::Error::other("too many hosts on one LAN (max 241)"));
        }
        Ok(n)
    }

    /// Connects `host` to the bridge through a new veth pair.
    fn plug(&self, host: &Host, n: u32) -> io::Result<Ipv4Addr> {
        let mut ifaces = lock(&host.ifaces);
        let k = ifaces.len();
        let eth = format!("eth{k}");
        let port = format!("p{n}");
        let addr = Ipv4Addr::new(10, 213, self.index, (10 + n) as u8);
        let sw = self.switch_ns.as_str();
        let hns = host.ns.as_str();
        // Created inside the switch namespace, peer end moved directly into
        // the host namespace: nothing ever appears in the root namespace.
        ip([
            "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", &eth, "netns", hns,
        ])?;
        ip(["-n", sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(["-n", hns, "addr", "add", &format!("{addr}/24"), "dev", &eth])?;
        ip(["-n", hns, "link", "set", &eth, "up"])?;
        let metric = (k * 100).to_string();
        ip([
            "-n",
            hns,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            &eth,
            "metric",
            &metric,
        ])?;
        ifaces.push(Iface {
            name: eth,
            addr,
            lan_seq: self.seq,
        });
        Ok(addr)
    }

    /// The switch namespace's name.
    pub fn switch_namespace(&self) -> &str {
        &self.switch_ns
    }

    /// Prefix shared by every namespace of this LAN (`pttnh-<pid>-<seq>-`).
    pub fn namespace_prefix(&self) -> &str {
        &self.ns_prefix
    }

    /// The third octet of this LAN's `10.213.X.0/24`.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// This LAN's subnet, e.g. `10.213.3.0` (prefix length 24).
    pub fn subnet(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.index, 0)
    }

    /// The per-test temporary directory (logs in `logs/`, hosts' dirs).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The stdout and stderr (tails) of every process spawned on the hosts of
    /// this LAN, with headers.
    pub fn dump_logs(&self) -> String {
        self.shared.dump_logs()
    }

    /// [`wait_until`], whose error also contains [`Lan::dump_logs`].
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl FnMut() -> Cond<T>,
    ) -> Result<T, String> {
        wait_until(what, timeout, cond).map_err(|e| {
            self.logs_reported.store(true, Ordering::Relaxed);
            format!("{e}\n\n{}", self.dump_logs())
        })
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if self.logs_reported.load(Ordering::Relaxed) {
                eprintln!("netns harness: test failed; node logs were printed in the error above");
            } else {
                eprintln!(
                    "netns harness: test failed; logs of every process:\n{}",
                    self.dump_logs()
                );
            }
        }
        let owned = std::mem::take(&mut *lock(&self.owned));
        for (_, ns) in &owned {
            teardown_namespace(ns);
        }
        teardown_namespace(&self.switch_ns);
    }
}

// ---------------------------------------------------------------------------
// Host
// ---------------------------------------------------------------------------

/// One leg of a host: interface name, address, LAN.
#[derive(Clone, Debug)]
pub struct Iface {
    /// `eth0`, `eth1`, …
    pub name: String,
    /// Its IPv4 address (prefix length 24).
    pub addr: Ipv4Addr,
    lan_seq: u32,
}

/// A machine on one or more LANs: a network namespace.
///
/// Dropping it kills every process in the namespace and deletes it.
pub struct Host {
    name: String,
    ns: String,
    shared: Arc<Shared>,
    ifaces: Mutex<Vec<Iface>>,
}

impl Host {
    /// The name given to [`Lan::add_host`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace's name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The address of `eth0`.
    pub fn addr(&self) -> Ipv4Addr {
        lock(&self.ifaces)
            .first()
            .map(|i| i.addr)
            .expect("host has no interface (half-built host)")
    }

    /// The address of this host on `lan`, if it has a leg there.
    pub fn addr_on(&self, lan: &Lan) -> Option<Ipv4Addr> {
        lock(&self.ifaces)
            .iter()
            .find(|i| i.lan_seq == lan.seq)
            .map(|i| i.addr)
    }

    /// All legs of this host, `eth0` first.
    pub fn interfaces(&self) -> Vec<Iface> {
        lock(&self.ifaces).clone()
    }

    /// A private directory for this host's files (created by `add_host`)
    /// inside the LAN's temp dir: `<lan dir>/<name>`.
    pub fn dir(&self) -> PathBuf {
        self.shared.dir.join(sanitize(&self.name, 64))
    }

    /// `ip netns exec NS program args...` as a `Command`, not started.
    pub fn command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args);
        cmd
    }

    /// Starts a long-running process in this host's namespace, with `env`
    /// added to the inherited environment. Its stdout and stderr go to files
    /// under `<lan dir>/logs/` (see [`Proc::stdout`], [`Lan::dump_logs`]).
    /// The process is SIGKILLed when the returned [`Proc`] is dropped.
    pub fn spawn<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
        env: &[(&str, &str)],
    ) -> io::Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let base = Path::new(program)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_else(|| "proc".into());
        // e.g. "m1.3.ptt-node-run": host, spawn number, program, subcommand.
        let mut what = base;
        if let Some(first) = args.first().map(|a| a.to_string_lossy())
            && !first.starts_with('-')
            && !first.contains('/')
        {
            what = format!("{what}-{first}");
        }
        let seq = self.shared.next_log.fetch_add(1, Ordering::Relaxed);
        let label = format!("{}.{seq}.{}", sanitize(&self.name, 24), sanitize(&what, 32));
        let logs = self.shared.dir.join("logs");
        let stdout_path = logs.join(format!("{label}.stdout"));
        let stderr_path = logs.join(format!("{label}.stderr"));
        let stdout = File::create(&stdout_path)?;
        let stderr = File::create(&stderr_path)?;
        let command_line = std::iter::once(program.to_string_lossy())
            .chain(args.iter().map(|a| a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        lock(&self.shared.logs).push(LogFiles {
            host: self.name.clone(),
            command: command_line.clone(),
            stdout: stdout_path.clone(),
            stderr: stderr_path.clone(),
        });
        let mut cmd = self.command(program, &args);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start `{command_line}` on {}: {e}", self.name),
            )
        })?;
        Ok(Proc {
            child,
            host: self.name.clone(),
            command: command_line,
            stdout: stdout_path,
            stderr: stderr_path,
        })
    }

    /// Runs a command to completion in this namespace with
    /// [`DEFAULT_RUN_TIMEOUT`]. Non-zero exit is not an error; a timeout is.
    pub fn run<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with(program, args, &[], DEFAULT_RUN_TIMEOUT)
    }

    /// [`Host::run`] with extra environment variables and a timeout.
    pub fn run_with<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program, args);
        cmd.envs(env.iter().copied());
        run_with_timeout(&mut cmd, timeout)
    }

    /// Runs `ip -n NS ARGS` and returns its stdout; fails on non-zero exit.
    pub fn iproute(&self, args: &[&str]) -> io::Result<String> {
        ip(["-n", self.ns.as_str()].iter().chain(args))
    }

    /// `ping -c1 -W2 addr` from this host: Ok(true) if a reply came back.
    pub fn ping(&self, addr: Ipv4Addr) -> io::Result<bool> {
        let out = self.run("ping", ["-n", "-c1", "-W2", &addr.to_string()])?;
        Ok(out.status.success())
    }

    /// Sets a sysctl in this namespace, e.g. `("net.ipv4.ip_forward", "0")`.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad sysctl key {key:?}"),
            ));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        // Written from inside the namespace: /proc/sys/net follows the
        // network namespace of the writing process.
        let mut cmd = self.command(
            "sh",
            ["-c", "printf '%s\\n' \"$1\" > \"$2\"", "sh", value, &path],
        );
        let out = run_with_timeout(&mut cmd, IP_TIMEOUT)?;
        check(&cmd, out).map(drop)
    }

    /// Reads a sysctl in this namespace.
    pub fn read_sysctl(&self, key: &str) -> io::Result<String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let mut cmd = self.command("cat", [&path]);
        let out = run_with_timeout(&mut cmd, IP_TIMEOUT)?;
        let out = check(&cmd, out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Takes `eth0` down (the cable is pulled; the bridge side stays up).
    pub fn link_down(&self) -> io::Result<()> {
        self.set_link("eth0", false)
    }

    /// Brings `eth0` back up. The address stays; the `224.0.0.0/4` route,
    /// which the kernel drops with the link, is re-added.
    pub fn link_up(&self) -> io::Result<()> {
        self.set_link("eth0", true)
    }

    /// Takes interface `iface` (`eth0`, `eth1`, …) down or up; when bringing
    /// it up, re-adds its multicast route if the kernel had removed it.
    pub fn set_link(&self, iface: &str, up: bool) -> io::Result<()> {
        let state = if up { "up" } else { "down" };
        self.iproute(&["link", "set", iface, state])?;
        if up {
            let k: usize = iface
                .strip_prefix("eth")
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            let metric = (k * 100).to_string();
            // `replace` is idempotent whether or not the route survived.
            self.iproute(&[
                "route",
                "replace",
                "224.0.0.0/4",
                "dev",
                iface,
                "metric",
                &metric,
            ])?;
        }
        Ok(())
    }

    /// Pids of all processes currently in this namespace.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        namespace_pids(&self.ns)
    }

    /// Whether the namespace still exists.
    pub fn exists(&self) -> bool {
        namespace_exists(&self.ns)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        teardown_namespace(&self.ns);
    }
}

// ---------------------------------------------------------------------------
// Proc
// ---------------------------------------------------------------------------

/// A process started with [`Host::spawn`]. SIGKILLed and reaped on drop.
pub struct Proc {
    child: Child,
    host: String,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// The process id (`ip netns exec` execs the program, so this is the
    /// program itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the file receiving its stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// Everything it wrote to stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        fs::read(&self.stdout)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Everything it wrote to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The complete lines (terminated by `\n`) written to stdout so far; a
    /// trailing partial line is left out until its newline arrives. Poll it
    /// to read a streaming process's output line by line.
    pub fn stdout_lines(&self) -> Vec<String> {
        let out = self.stdout();
        let complete = match out.rfind('\n') {
            Some(i) => &out[..i],
            None => return Vec::new(),
        };
        complete.split('\n').map(str::to_owned).collect()
    }

    /// `Some(status)` once the process has exited (reaping it).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGSTOP (freezes the process; its sockets stay open).
    pub fn stop(&mut self) -> io::Result<()> {
        self.signal("STOP")
    }

    /// Sends SIGCONT (resumes after [`Proc::stop`]).
    pub fn cont(&mut self) -> io::Result<()> {
        self.signal("CONT")
    }

    /// Sends SIGKILL and reaps the process; returns its exit status.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.child.kill()?;
        self.child.wait()
    }

    /// Sends signal `sig`, named as for `kill -s` (`HUP`, `USR1`, …), unless
    /// the process has already been reaped (an unreaped pid cannot be
    /// reused, so this never hits another process).
    pub fn signal(&mut self, sig: &str) -> io::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Err(io::Error::other(format!(
                "`{}` on {} has already exited",
                self.command, self.host
            )));
        }
        send_signal(sig, &[self.child.id()])
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// What a condition polled by [`wait_until`] reports.
#[derive(Debug)]
pub enum Cond<T> {
    /// The condition holds; stop waiting and return this.
    Done(T),
    /// Not yet; the text says why (reported if the deadline passes).
    Pending(String),
    /// It can never hold (e.g. a daemon died); stop waiting with this error.
    Failed(String),
}

/// Polls `cond` every 100 ms until it returns [`Cond::Done`], returns
/// [`Cond::Failed`], or `timeout` passes. The error names `what`, the time
/// waited and the last [`Cond::Pending`] reason. `cond` is always polled at
/// least once, and once more at the deadline.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> Cond<T>,
) -> Result<T, String> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let last = match cond() {
            Cond::Done(v) => return Ok(v),
            Cond::Failed(why) => {
                return Err(format!(
                    "gave up waiting for {what} after {:.1?}: {why}",
                    start.elapsed()
                ));
            }
            Cond::Pending(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "timed out after {:.1?} waiting for {what}; last state: {last}",
                start.elapsed()
            ));
        }
        std::thread::sleep(Duration::from_millis(100).min(deadline - now));
    }
}
