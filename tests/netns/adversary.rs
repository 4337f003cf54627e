//! A stranger on the LAN, or a hostile member, against real daemons (issue 24): each attack
//! runs next to honest members, and the test checks both that the attack is bounded and that
//! the members still work.

use std::time::Duration;

use serde_json::Value;

use crate::support::common::{BIN, p};
use crate::support::field::{Field, MEMBER};
use crate::support::netns::{self, Cond};

/// Waits until device `i` has `n` authenticated peers.
pub(crate) fn wait_authenticated(f: &Field, i: usize, n: u64, what: &str) {
    f.lan
        .wait_until(what, Duration::from_secs(30), || {
            match f
                .status(i)
                .and_then(|s| s["peers"]["authenticated"].as_u64())
            {
                Some(k) if k == n => Cond::Done(()),
                other => Cond::Pending(format!("{other:?}")),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Three members m1, m2 and m3, of which m1 and m2 run and have authenticated each other; m3
/// is started by the test, during an attack.
fn two_and_one_to_come(hint: &str) -> (Field, usize, usize, usize) {
    let mut f = Field::provision(hint, &[], &[("m1", MEMBER), ("m2", MEMBER), ("m3", MEMBER)]);
    let (m1, m2, m3) = (f.idx("m1"), f.idx("m2"), f.idx("m3"));
    f.start(m1);
    f.start(m2);
    wait_authenticated(&f, m2, 1, "m1 and m2 authenticate");
    (f, m1, m2, m3)
}

/// The TCP port device `i`'s daemon listens on.
fn tcp_port(f: &Field, i: usize) -> u16 {
    let s = f.status(i).expect("status");
    s["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .find_map(|a| a.rsplit_once("/tcp/").and_then(|(_, p)| p.parse().ok()))
        .unwrap_or_else(|| panic!("no TCP listen address in {s}"))
}

/// A Python program that opens `n` TCP connections to `addr:port` and holds them for `hold_s`
/// seconds without sending a byte. After one second it prints how many the daemon had closed
/// (`closed K of N`), then `done` when it lets go.
const HOLD: &str = r#"
import socket, sys, time
addr, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.create_connection((addr, port), timeout=2)
    socks.append(s)
time.sleep(1)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) == b'':
            closed += 1
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print('closed', closed, 'of', n, flush=True)
time.sleep(hold)
print('done', flush=True)
"#;

#[test]
fn a_stranger_opening_many_connections_is_held_to_its_share() {
    if !netns::require_netns() {
        return;
    }
    let (mut f, _m1, m2, m3) = two_and_one_to_come("connflood");
    let stranger = f.lan.add_host("x").expect("stranger");
    let victim = f.devs[m2].host.addr().to_string();
    let port = tcp_port(&f, m2).to_string();
    let mut holder = stranger
        .spawn("python3", ["-c", HOLD, &victim, &port, "20", "20"], &[])
        .expect("stranger");
    let closed = f
        .lan
        .wait_until(
            "the stranger reports",
            Duration::from_secs(15),
            || match holder
                .stdout_lines()
                .iter()
                .find(|l| l.starts_with("closed"))
            {
                Some(l) => Cond::Done(l.clone()),
                None => Cond::Pending(holder.stderr()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // Four from one address wait for a hello; the daemon closed the other 16 at once.
    assert_eq!(closed, "closed 16 of 20", "{}", holder.stderr());
    let s = f.status(m2).expect("status answers during the flood");
    assert!(s["peers"]["denied"].as_u64() >= Some(16), "{}", s["peers"]);
    assert!(
        s["peers"]["unauthenticated"].as_u64() <= Some(4),
        "{}",
        s["peers"]
    );
    // While the stranger holds its share, a member from another address still gets in, and
    // alerts flow both ways.
    f.start(m3);
    wait_authenticated(&f, m2, 2, "m3 authenticates with m2");
    f.listen(m2);
    std::thread::sleep(Duration::from_millis(500));
    f.send(m3, "through", 0..5);
    f.wait_all(m2, "through", 5, Duration::from_secs(20));
    assert!(
        holder.try_wait().expect("stranger").is_none(),
        "the stranger let go before the member got in: the test proves nothing"
    );
}

#[test]
fn a_member_whose_certificate_expires_is_cut_off_within_a_second() {
    if !netns::require_netns() {
        return;
    }
    // No plane: an expired device keeps the keys it holds, and would read multicast datagrams
    // passively until the next epoch (proto/security.md). What this checks is that the
    // members stop serving it anything over their connections.
    let mut f = Field::provision(
        "expiry",
        &["--no-plane"],
        &[
            ("m1", MEMBER),
            ("m2", MEMBER),
            ("short", &["--valid-secs", "40"]),
        ],
    );
    let (m1, m2, short) = (f.idx("m1"), f.idx("m2"), f.idx("short"));
    for i in [m1, m2, short] {
        f.start(i);
    }
    f.wait_mesh(Duration::from_secs(30));
    f.listen(m2);
    f.listen(short);
    std::thread::sleep(Duration::from_millis(500));
    f.send(m1, "before", 0..3);
    f.wait_all(short, "before", 3, Duration::from_secs(20));
    for i in [m1, m2] {
        let what = format!("{} refuses the expired device", f.devs[i].name);
        let p = f
            .lan
            .wait_until(&what, Duration::from_secs(60), || {
                match f.peer(i, "short") {
                    Some(p) if p["state"] == "refused" => Cond::Done(p),
                    other => Cond::Pending(format!("{other:?}")),
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let err = p["last_error"].as_str().unwrap_or_default();
        let not_after: u64 = err
            .strip_prefix("certificate expired at ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("refused for another reason: {p}"));
        // Valid through second `not_after`; cut off (the connection closed, on this
        // member's clock) less than a second after that second ended.
        let closed = p["since_us"].as_u64().expect("since_us") as f64 / 1e6;
        let late = closed - (not_after + 1) as f64;
        assert!(
            (0.0..1.0).contains(&late),
            "{} closed the connection {late:.3} s after the certificate's end: {p}",
            f.devs[i].name
        );
    }
    // Nothing after: alerts reach m2 and not the expired device, which gets nothing by
    // catch-up either (it re-dials, and the members' blocks refuse it).
    f.send(m1, "after", 0..3);
    f.wait_all(m2, "after", 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let got: Vec<Value> = f
        .shown(short)
        .into_iter()
        .filter(|v| v["text"].as_str().is_some_and(|t| t.starts_with("after")))
        .collect();
    assert!(got.is_empty(), "the expired device got {got:?}");
    for i in [m1, m2] {
        let p = f.peer(i, "short").expect("still listed");
        assert_eq!(p["state"], "refused", "{p}");
        assert_eq!(p["connected"], false, "{p}");
    }
}

/// The hostile member binary (`examples/rogue.rs`), built before the tests by
/// `cargo build --examples` (scripts/test.sh).
pub(crate) fn rogue_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(BIN)
        .parent()
        .expect("target dir")
        .join("examples/rogue");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --example rogue` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A counter of `status` (`path` into its JSON), 0 when absent.
fn count(s: &Value, path: &[&str]) -> u64 {
    path.iter().fold(s, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// A field of `honest` and `victim` (and, with `rogue`, a member bundle for the rogue, whose
/// daemon never runs), the two daemons authenticated to each other and `listen` running on
/// the victim.
pub(crate) fn honest_and_victim(hint: &str, rogue: bool) -> (Field, usize, usize) {
    let mut specs = vec![("honest", MEMBER), ("victim", MEMBER)];
    if rogue {
        specs.push(("rogue", MEMBER));
    }
    let mut f = Field::provision(hint, &[], &specs);
    let (honest, victim) = (f.idx("honest"), f.idx("victim"));
    f.start(honest);
    f.start(victim);
    wait_authenticated(&f, victim, 1, "honest and victim authenticate");
    f.listen(victim);
    std::thread::sleep(Duration::from_millis(500));
    (f, honest, victim)
}

/// The address a peer dials device `i` at, its peer id included.
pub(crate) fn victim_addr(f: &Field, i: usize) -> String {
    let s = f.status(i).expect("status");
    format!(
        "/ip4/{}/tcp/{}/p2p/{}",
        f.devs[i].host.addr(),
        tcp_port(f, i),
        s["peer_id"].as_str().expect("peer id")
    )
}

/// What [`attack`] saw on the victim.
struct Seen {
    /// `status` before the attack and after it.
    before: Value,
    after: Value,
    /// The slowest `status` answer during the attack.
    slowest: Duration,
    /// The honest alerts' delays (µs, sorted).
    delays: Vec<u64>,
    /// The rogue as the victim's `peers` shows it at the end.
    rogue: Option<Value>,
}

/// Runs `mode` of the rogue member against `victim` while `honest` sends 20 alerts 100 ms apart
/// to it, until the rogue prints a line starting with `done`.
fn attack(hint: &str, mode: &str, n: u32, done: &str) -> Seen {
    let (f, honest, victim) = honest_and_victim(hint, true);
    let rogue = f.idx("rogue");
    let addr = victim_addr(&f, victim);
    let bundle = f.devs[rogue].bundle.clone();
    // Before the rogue exists: a catch-up session with it starts as soon as it is admitted.
    let before = f.status(victim).expect("status");
    let mut r = f.devs[rogue]
        .host
        .spawn(
            rogue_bin(),
            [
                "--bundle",
                p(&bundle),
                "--peer",
                &addr,
                "--mode",
                mode,
                "--count",
                &n.to_string(),
            ],
            &[],
        )
        .expect("rogue");
    f.lan
        .wait_until(
            "the rogue is authenticated",
            Duration::from_secs(30),
            || match r
                .stdout_lines()
                .iter()
                .any(|l| l.starts_with("authenticated"))
            {
                true => Cond::Done(()),
                false => Cond::Pending(r.stderr()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // The attack starts 1.5 s after `authenticated`: honest alerts and status calls run
    // across it.
    let mut slowest = Duration::ZERO;
    for k in 0..20 {
        f.send(honest, "honest", k..k + 1);
        let t = std::time::Instant::now();
        f.status(victim)
            .expect("the victim answers status during the attack");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    f.lan
        .wait_until(
            "the rogue has done its part",
            Duration::from_secs(30),
            || match r.stdout_lines().iter().find(|l| l.starts_with(done)) {
                Some(l) => Cond::Done(l.clone()),
                None => Cond::Pending(r.stderr()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    f.wait_all(victim, "honest", 20, Duration::from_secs(30));
    // What the rogue sent has arrived, or never will.
    std::thread::sleep(Duration::from_secs(2));
    let after = f.status(victim).expect("status");
    let mut delays: Vec<u64> = f
        .shown(victim)
        .iter()
        .filter(|v| v["text"].as_str().is_some_and(|t| t.starts_with("honest")))
        .map(|v| {
            v["received_at_us"].as_u64().expect("received")
                - v["created_at_us"].as_u64().expect("created")
        })
        .collect();
    delays.sort_unstable();
    let rogue = f.peer(victim, "rogue");
    let _ = r.kill();
    Seen {
        before,
        after,
        slowest,
        delays,
        rogue,
    }
}

/// The bound on an honest alert's delay under attack that a test asserts. The target is 20 ms
/// at the 99th percentile (issue 24), printed by each test; tests share this machine's two
/// cores with each other, so the assertion allows for that: a regression to queueing behind
/// the attack costs seconds.
const HONEST_WORST_US: u64 = 1_000_000;

#[test]
fn far_future_envelopes_from_a_member_cost_no_signature() {
    if !netns::require_netns() {
        return;
    }
    let Seen {
        before,
        after,
        slowest,
        delays,
        ..
    } = attack("ahead", "gossip-ahead", 600, "sent");
    let ahead = count(&after, &["counters", "rejected", "too_far_ahead"])
        - count(&before, &["counters", "rejected", "too_far_ahead"]);
    let verified = count(&after, &["counters", "signatures_verified"])
        - count(&before, &["counters", "signatures_verified"]);
    println!(
        "gossip-ahead: {ahead} refused as too far ahead, {verified} signatures checked, \
         status at worst {slowest:?}, honest delays µs {delays:?}"
    );
    // The first few were refused at a lookup, each charged to the rogue's own connection,
    // which gossipsub then graylisted: the rest were dropped unvalidated. No signature was
    // checked for any of them: those checked are the 20 honest alerts'.
    assert!(ahead >= 1, "the attack never reached validation: {after}");
    assert!(
        ahead < 600,
        "all 600 were validated: the rogue was not charged: {after}"
    );
    assert!(verified <= 22, "{verified} signatures checked: {after}");
    assert!(slowest < Duration::from_secs(1), "status took {slowest:?}");
    assert!(
        delays.last().is_some_and(|w| *w < HONEST_WORST_US),
        "honest delays µs {delays:?}"
    );
}

#[test]
fn signed_garbage_from_a_member_is_charged_to_it_and_soon_costs_nothing() {
    if !netns::require_netns() {
        return;
    }
    let Seen {
        before,
        after,
        slowest,
        delays,
        ..
    } = attack("garbage", "gossip-garbage", 600, "sent");
    let rejected = |s: &Value, r: &str| count(s, &["counters", "rejected", r]);
    let decrypt = rejected(&after, "decrypt") - rejected(&before, "decrypt");
    let faulty = rejected(&after, "sender_faulty") - rejected(&before, "sender_faulty");
    let verified = count(&after, &["counters", "signatures_verified"])
        - count(&before, &["counters", "signatures_verified"]);
    println!(
        "gossip-garbage: {decrypt} decrypt, {faulty} sender_faulty, {verified} signatures \
         checked, status at worst {slowest:?}, honest delays µs {delays:?}"
    );
    // A handful fail to decrypt, each charged to the rogue's own connection, which gossipsub
    // then graylists; the fault budget (ten) bounds the rest on any path that has no
    // accountable forwarder.
    assert!(
        decrypt >= 1,
        "the garbage never reached validation: {after}"
    );
    assert!(decrypt + faulty < 600, "all 600 were validated: {after}");
    assert!(decrypt <= 10, "{decrypt} envelopes decrypted: {after}");
    assert!(
        verified <= 22 + 10,
        "{verified} signatures checked: {after}"
    );
    assert!(slowest < Duration::from_secs(1), "status took {slowest:?}");
    assert!(
        delays.last().is_some_and(|w| *w < HONEST_WORST_US),
        "honest delays µs {delays:?}"
    );
}

/// A line of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`).
fn vm(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// What a stranger's flood cost the victim: its peak RSS growth, the flood's connections, the
/// victim's denied count and its slowest `status` answer meanwhile.
struct Flooded {
    growth: u64,
    denied: u64,
    slowest: Duration,
}

impl Flooded {
    /// The victim's peak RSS grew by less than 20 MB, and it answered `status` within 1 s.
    fn assert_bounded(&self) {
        assert!(
            self.growth < 20 << 20,
            "the victim's RSS grew by {} bytes under the flood",
            self.growth
        );
        assert!(
            self.slowest < Duration::from_secs(1),
            "status took {:?}",
            self.slowest
        );
    }
}

/// 50 strangers from one address run `mode` of the rogue (`preauth-flood` or `held-flood`)
/// against a victim while an honest member sends it 20 alerts, all of which must arrive.
fn stranger_flood(hint: &str, mode: &str) -> Flooded {
    let (f, honest, victim) = honest_and_victim(hint, false);
    let stranger = f.lan.add_host("x").expect("stranger");
    let addr = victim_addr(&f, victim);
    let pid = f.devs[victim].daemon.as_ref().expect("victim").pid();
    // Peak RSS from now on (writing 5 to clear_refs resets VmHWM).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
    let rss = vm(pid, "VmRSS");
    let mut r = stranger
        .spawn(
            rogue_bin(),
            ["--peer", &addr, "--mode", mode, "--count", "50"],
            &[],
        )
        .expect("rogue");
    let mut slowest = Duration::ZERO;
    for k in 0..20 {
        f.send(honest, "honest", k..k + 1);
        let t = std::time::Instant::now();
        f.status(victim)
            .expect("the victim answers status during the flood");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    f.wait_all(victim, "honest", 20, Duration::from_secs(30));
    // Every stranger that got in has written its frames: refused (auth), or sitting unread
    // in the victim's buffers until its authentication timeout (held).
    let _ = f
        .lan
        .wait_until("the flood is written", Duration::from_secs(20), || {
            let out = r.stdout_lines();
            let c = out.iter().filter(|l| l.starts_with("connected")).count();
            let s = out.iter().filter(|l| l.starts_with("sent")).count();
            if c > 0 && (s >= c || mode == "held-flood") {
                Cond::Done(())
            } else {
                Cond::Pending(format!("{out:?}"))
            }
        });
    if mode == "held-flood" {
        std::thread::sleep(Duration::from_secs(2));
    }
    let out = r.stdout_lines();
    let _ = r.kill();
    let connected = out.iter().filter(|l| l.starts_with("connected")).count();
    let after = f.status(victim).expect("status");
    let peak = vm(pid, "VmHWM");
    let seen = Flooded {
        growth: peak.saturating_sub(rss),
        denied: count(&after, &["peers", "denied"]),
        slowest,
    };
    println!(
        "{mode}: {connected} of 50 connected, {} denied; victim RSS {rss} B before, peak \
         {peak} B (+{} B); status at worst {slowest:?}",
        seen.denied, seen.growth
    );
    assert!(
        connected >= 1,
        "the flood never connected: {out:?} {}",
        r.stderr()
    );
    seen
}

#[test]
fn a_stranger_flooding_pre_auth_frames_costs_little_memory() {
    if !netns::require_netns() {
        return;
    }
    // 8 requests of 1 MiB each per connection: what /ptt-node/auth/1 read from anyone.
    stranger_flood("preauth", "preauth-flood").assert_bounded();
}

#[test]
fn a_stranger_filling_held_streams_costs_bounded_memory() {
    if !netns::require_netns() {
        return;
    }
    // 8 requests of 256 KiB on each of push, catch-up and repair per connection: never read
    // before authentication, so what they cost is what the multiplexer buffers.
    stranger_flood("held", "held-flood").assert_bounded();
}

/// Issue 24, finding 2: a catch-up responder no longer decides its requester's CPU.
#[test]
fn a_catch_up_responder_sending_junk_or_forgeries_is_cut_off() {
    if !netns::require_netns() {
        return;
    }
    for (mode, hint, why) in [
        ("catchup-junk", "cujunk", "not asked for"),
        ("catchup-forged", "cuforge", "refused as bad_signature"),
    ] {
        let seen = attack(hint, mode, 256, "fetch");
        let verified = count(&seen.after, &["counters", "signatures_verified"])
            - count(&seen.before, &["counters", "signatures_verified"]);
        let rogue = seen.rogue.expect("the victim lists the rogue");
        println!(
            "{mode}: {verified} signatures checked, rogue {} ({}), status at worst {:?}, \
             honest delays µs {:?}",
            rogue["state"], rogue["last_error"], seen.slowest, seen.delays
        );
        // The session ended at the first bad reply and the responder was refused: at most one
        // of its envelopes cost a signature (the forged one), beside the 20 honest alerts.
        assert_eq!(rogue["state"], "refused", "{mode}: {rogue}");
        assert!(
            rogue["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("catch-up:") && e.contains(why)),
            "{mode}: {rogue}"
        );
        assert!(verified <= 22 + 1, "{mode}: {verified} signatures checked");
        assert!(
            seen.slowest < Duration::from_secs(1),
            "status took {:?}",
            seen.slowest
        );
        assert!(
            seen.delays.last().is_some_and(|w| *w < HONEST_WORST_US),
            "honest delays µs {:?}",
            seen.delays
        );
    }
}

/// Issue 24, finding 1, the plane's case: any holder of the plane key can seal datagrams in an
/// honest member's name under a bad signature, and no forwarder can be charged for them.
#[test]
fn plane_forgeries_in_a_members_name_stop_costing_signatures() {
    if !netns::require_netns() {
        return;
    }
    let (f, honest, victim) = honest_and_victim("plforge", true);
    let rogue = f.idx("rogue");
    let as_device = f.status(honest).expect("status")["device_number"]
        .as_u64()
        .expect("device number")
        .to_string();
    let before = f.status(victim).expect("status");
    let bundle = f.devs[rogue].bundle.clone();
    let mut r = f.devs[rogue]
        .host
        .spawn(
            rogue_bin(),
            [
                "--bundle",
                p(&bundle),
                "--mode",
                "plane-forge",
                "--as",
                &as_device,
                "--count",
                "500",
            ],
            &[],
        )
        .expect("rogue");
    // About a second of forgeries, with honest alerts across it.
    for k in 0..20 {
        f.send(honest, "honest", k..k + 1);
        std::thread::sleep(Duration::from_millis(100));
    }
    f.lan
        .wait_until("the rogue has sent", Duration::from_secs(30), || {
            match r.stdout_lines().iter().find(|l| l.starts_with("sent")) {
                Some(l) => Cond::Done(l.clone()),
                None => Cond::Pending(r.stderr()),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    f.wait_all(victim, "honest", 20, Duration::from_secs(30));
    let after = f.status(victim).expect("status");
    let _ = r.kill();
    let suspended = count(&after, &["plane", "dropped", "plane_sender_suspended"]);
    let bad = count(&after, &["counters", "rejected", "bad_signature"])
        - count(&before, &["counters", "rejected", "bad_signature"]);
    let verified = count(&after, &["counters", "signatures_verified"])
        - count(&before, &["counters", "signatures_verified"]);
    println!(
        "plane-forge: {bad} forgeries checked, {suspended} dropped unverified, {verified} \
         signatures in all; honest alerts all arrived"
    );
    // Eight forgeries cost a signature each, then the sender named is suspended on the plane
    // (its alerts come by gossip meanwhile, and all 20 honest ones arrived).
    assert!(bad >= 1, "no forgery reached validation: {after}");
    assert!(bad <= 8, "{bad} forgeries cost a signature: {after}");
    assert!(
        suspended >= 400,
        "only {suspended} forgeries dropped unverified: {after}"
    );
    assert!(
        verified <= 8 + 20 + 2,
        "{verified} signatures checked: {after}"
    );
}

/// A Python program that announces `n` made-up peer ids by mDNS (unsolicited answers to
/// 224.0.0.251:5353, ten peers a packet), each at this host's address on port 4001, where
/// nothing listens: every dial to one is refused at once. Prints `announced N`.
const MDNS_FAKES: &str = r#"
import os, socket, struct, sys
n = int(sys.argv[1])
ALPHA = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
def b58(b):
    x = int.from_bytes(b, 'big'); s = ''
    while x: x, r = divmod(x, 58); s = ALPHA[r] + s
    return '1' * (len(b) - len(b.lstrip(b'\0'))) + s
def name(labels):
    return b''.join(bytes([len(l)]) + l for l in labels) + b'\0'
SERVICE = [b'_p2p', b'_udp', b'local']
def record(owner, rtype, ttl, rdata):
    return owner + struct.pack('>HHIH', rtype, 1, ttl, len(rdata)) + rdata
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
sent = 0
while sent < n:
    answers, extra, k = [], [], 0
    while k < 10 and sent < n:
        # An Ed25519 peer id: identity multihash of the protobuf public key (random bytes).
        pid = b58(bytes([0, 36, 8, 1, 18, 32]) + os.urandom(32))
        label = os.urandom(8).hex().encode()
        inst = name([label] + SERVICE)
        answers.append(record(name(SERVICE), 12, 120, inst))
        txt = ('dnsaddr=/ip4/10.0.0.1/tcp/4001/p2p/' + pid).encode()
        extra.append(record(inst, 16, 120, bytes([len(txt)]) + txt))
        k += 1; sent += 1
    header = struct.pack('>HHHHHH', 0, 0x8400, 0, len(answers), 0, len(extra))
    tx.sendto(header + b''.join(answers) + b''.join(extra), ('224.0.0.251', 5353))
print('announced', sent, flush=True)
"#;

/// Issue 24, finding 6: made-up peer ids announced by mDNS cost a bounded number of dials.
#[test]
fn fake_mdns_announcements_cost_a_bounded_number_of_dials() {
    if !netns::require_netns() {
        return;
    }
    let (mut f, m1, _m2, late) = two_and_one_to_come("mdnsfake");
    let x = f.lan.add_host("x").expect("announcer");
    // Count the connection attempts the fake peers get: they all come to this host.
    for rule in [
        "add table inet t",
        "add chain inet t input { type filter hook input priority 0 ; }",
        "add rule inet t input tcp flags syn / syn,ack counter",
    ] {
        let out = x.run("nft", [rule]).expect("nft");
        assert!(
            out.status.success(),
            "nft {rule}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let a = x
        .spawn("python3", ["-c", MDNS_FAKES, "4096"], &[])
        .expect("announcer");
    f.lan
        .wait_until(
            "the fakes are announced",
            Duration::from_secs(20),
            || match a.stdout_lines().iter().any(|l| l.starts_with("announced")) {
                true => Cond::Done(()),
                false => Cond::Pending(a.stderr()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // A member starting now still joins the domain.
    f.start(late);
    wait_authenticated(&f, late, 2, "the late member authenticates with both");
    std::thread::sleep(Duration::from_secs(10));
    let out = x.run("nft", ["list table inet t"]).expect("nft");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let syns: u64 = listing
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {listing}"));
    let connected = f
        .status(m1)
        .map(|s| count(&s, &["peers", "connected"]))
        .unwrap_or(0);
    println!("mdns-fake: 4096 fake ids announced; {syns} SYNs reached them from 3 members");
    // Each member starts at most 4 stranger dials per 10 s (a dial may try its address more
    // than once): about 15 s of it for three members, far from 4 096.
    assert!(syns >= 1, "the announcements were never heard: {listing}");
    assert!(syns <= 60, "{syns} connection attempts to made-up peers");
    assert!(connected >= 2, "m1 lost its members");
}
