//! Baseline peer for the mesh benchmark (`scripts/bench-mesh.sh`).
//!
//! The benchmark measures ptt-node against three floors, run in the same Linux network
//! namespaces: raw UDP multicast; UDP multicast whose receivers verify one Ed25519 signature
//! per message (`udpv`, the floor of a multicast data plane that authenticates each alert,
//! issue 23); and plain rust-libp2p gossipsub (default configuration, no application crypto).
//! The driver spawns one `bench-peer` per namespace and talks to it over stdin/stdout:
//!
//! ```text
//! bench-peer gossip --listen /ip4/10.213.0.11/tcp/4001 [--peer MULTIADDR]... --expect K
//! bench-peer udp --addr 10.213.0.11 --group 239.255.77.1:5077 --expect K
//! bench-peer udpv --addr 10.213.0.11 --group 239.255.77.1:5077 --expect K
//! bench-peer junk --addr 10.213.0.20 --group 239.255.12.34:24567 --rate R --key-id K
//! bench-peer replay --addr 10.213.0.20 --group 239.255.12.34:24567 --rate R --record N
//! ```
//!
//! `udpv` is `udp` with one difference: the sender signs each payload with `ptt_node::keys::sign`
//! (a key derived from [`UDPV_SEED`], which every peer knows) and appends the 64-byte signature;
//! a receiver checks it with `ptt_node::keys::verify`, the product's own strict verification,
//! and takes RECV_US only after it passed. A datagram that fails is not reported; the count of
//! those is written to stderr on exit. SENT_US is stamped before signing, so a latency covers
//! one signature and one verification, as an alert's does.
//!
//! stdout, one line per event (all times are µs since the Unix epoch):
//! - `ready T` once: gossip, when K distinct peers have subscribed to the topic; udp, as soon as
//!   the socket is bound and has joined the group.
//! - `recv SEQ SENT_US RECV_US LEN` for every message received from another peer.
//! - `sent COUNT ERRORS T_FIRST T_LAST` when a send command has finished (T_FIRST is the first
//!   message's SENT_US, T_LAST the time the last publish call returned).
//!
//! stdin: `send COUNT RATE SIZE` publishes COUNT messages of SIZE (>= 16) bytes at RATE per
//! second (0 = as fast as possible); the payload is SEQ (u64 BE, never reused within the
//! process) ‖ SENT_US (u64 BE) ‖ zero padding. Commands arriving during a send are queued.
//! `quit` or EOF exits 0.
//!
//! `junk` is the outsider of the benchmark's `--junk`: it sends R datagrams per second to the
//! plane's group and port, each of 200 bytes that look like a plane datagram to a receiver's
//! first checks (version byte 1, the current key id K) and are random after them, so every one
//! costs a member one failed XChaCha20-Poly1305 open. It prints `junk SENT T ERRORS` every
//! 100 ms (datagrams the kernel took and refused since the start) and runs until it is killed
//! or stdin closes.
//!
//! `replay` is the other outsider of `--junk` (`--junk-kind replay`): it joins the group, prints
//! `listening T`, records the first N distinct datagrams the members send (genuine ones, sealed
//! under the current plane key: alerts, beacons, tails), prints `recorded K T` (after N, or 20 s
//! after the first one, or 60 s), and then sends them again, round after round, R per second,
//! printing `junk SENT T ERRORS` as `junk` does. Each costs a member one successful AEAD open and
//! a replay lookup (an alert's id, a beacon's or tail's sequence), never a signature.

use std::collections::{HashSet, VecDeque};
use std::io::{BufWriter, StdoutLock, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub, noise, tcp, yamux};
use ptt_node::keys::{self, SIG_LEN};
use tokio::io::AsyncBufReadExt;
use tokio::net::UdpSocket;
use tokio::time::{Interval, MissedTickBehavior};

const USAGE: &str = "usage:
  bench-peer gossip --listen MULTIADDR [--peer MULTIADDR]... --expect K
  bench-peer udp --addr IPV4 --group GROUP_IPV4:PORT --expect K
  bench-peer udpv --addr IPV4 --group GROUP_IPV4:PORT --expect K
  bench-peer junk --addr IPV4 --group GROUP_IPV4:PORT --rate R --key-id K
  bench-peer replay --addr IPV4 --group GROUP_IPV4:PORT --rate R --record N";
/// Messages published per turn at RATE 0, between two polls of the swarm / socket.
const CHUNK: u64 = 50;
/// SEQ ‖ SENT_US.
const HEADER: usize = 16;
/// Datagrams drained per wake-up before stdout is flushed and other work gets a turn.
const UDP_DRAIN: usize = 1024;
/// Seed of the `udpv` signing key: a test key every peer derives, so no key needs exchanging.
const UDPV_SEED: [u8; 32] = [0x5a; 32];
/// Signature context of `udpv` payloads (`keys::sign` signs `context ‖ 0x00 ‖ msg`).
const UDPV_CONTEXT: &[u8] = b"ptt-bench-udpv";
/// `udpv` datagrams that failed verification, reported on exit.
static REJECTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

type Res = Result<(), Box<dyn std::error::Error>>;

enum Mode {
    Gossip {
        listen: Multiaddr,
        peers: Vec<Multiaddr>,
        expect: usize,
    },
    Udp {
        addr: Ipv4Addr,
        group: SocketAddrV4,
        expect: usize,
        /// `udpv`: sign each message and verify it on receipt.
        verify: bool,
    },
    Junk {
        addr: Ipv4Addr,
        group: SocketAddrV4,
        rate: u64,
        key_id: u8,
    },
    Replay {
        addr: Ipv4Addr,
        group: SocketAddrV4,
        rate: u64,
        record: usize,
    },
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn parse_args() -> Mode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let (mut listen, mut peers, mut expect, mut addr, mut group) =
        (None, Vec::new(), None, None, None);
    let (mut rate, mut key_id, mut record) = (None, None, None);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { usage() };
        let ok = match flag.as_str() {
            "--listen" => value.parse::<Multiaddr>().map(|v| listen = Some(v)).is_ok(),
            "--peer" => value.parse::<Multiaddr>().map(|v| peers.push(v)).is_ok(),
            "--expect" => value.parse::<usize>().map(|v| expect = Some(v)).is_ok(),
            "--addr" => value.parse::<Ipv4Addr>().map(|v| addr = Some(v)).is_ok(),
            "--group" => value
                .parse::<SocketAddrV4>()
                .map(|v| group = Some(v))
                .is_ok(),
            "--rate" => value.parse::<u64>().map(|v| rate = Some(v)).is_ok(),
            "--key-id" => value.parse::<u8>().map(|v| key_id = Some(v)).is_ok(),
            "--record" => value.parse::<usize>().map(|v| record = Some(v)).is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("bench-peer: bad argument {flag} {value:?}");
            usage()
        }
    }
    if mode == "replay" {
        return match (listen, expect, addr, group, rate, key_id, record) {
            (None, None, Some(addr), Some(group), Some(rate), None, Some(record))
                if peers.is_empty() && record > 0 =>
            {
                Mode::Replay {
                    addr,
                    group,
                    rate,
                    record,
                }
            }
            _ => usage(),
        };
    }
    if record.is_some() {
        usage()
    }
    if mode == "junk" {
        return match (listen, expect, addr, group, rate, key_id) {
            (None, None, Some(addr), Some(group), Some(rate), Some(key_id)) if peers.is_empty() => {
                Mode::Junk {
                    addr,
                    group,
                    rate,
                    key_id,
                }
            }
            _ => usage(),
        };
    }
    if rate.is_some() || key_id.is_some() {
        usage()
    }
    match (mode.as_str(), listen, expect, addr, group) {
        ("gossip", Some(listen), Some(expect), None, None) => Mode::Gossip {
            listen,
            peers,
            expect,
        },
        ("udp" | "udpv", None, Some(expect), Some(addr), Some(group)) if peers.is_empty() => {
            Mode::Udp {
                addr,
                group,
                expect,
                verify: mode == "udpv",
            }
        }
        _ => usage(),
    }
}

/// Locked, buffered stdout; a driver that went away ends the process.
struct Out(BufWriter<StdoutLock<'static>>);

impl Out {
    fn new() -> Self {
        Out(BufWriter::new(std::io::stdout().lock()))
    }
    fn line(&mut self, args: std::fmt::Arguments) {
        if let Err(e) = writeln!(self.0, "{args}") {
            eprintln!("bench-peer: stdout: {e}");
            std::process::exit(1);
        }
    }
    fn flush(&mut self) {
        if let Err(e) = self.0.flush() {
            eprintln!("bench-peer: stdout: {e}");
            std::process::exit(1);
        }
    }
    fn quit(&mut self) -> ! {
        self.flush();
        let rejected = REJECTED.load(std::sync::atomic::Ordering::Relaxed);
        if rejected > 0 {
            eprintln!("bench-peer: {rejected} datagrams failed verification");
        }
        std::process::exit(0)
    }
    /// Prints `recv` for a received payload; payloads shorter than the header are skipped.
    fn recv(&mut self, data: &[u8], recv_us: u64) {
        let field = |range: std::ops::Range<usize>| {
            data.get(range)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        let (Some(seq), Some(sent)) = (field(0..8), field(8..HEADER)) else {
            return;
        };
        self.line(format_args!("recv {seq} {sent} {recv_us} {}", data.len()));
    }
}

/// A `send COUNT RATE SIZE` command, waiting or running.
#[derive(Clone, Copy)]
struct SendCmd {
    count: u64,
    rate: f64,
    size: usize,
}

/// One line of stdin.
enum Command {
    Blank,
    Quit,
    Send(SendCmd),
}

fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(Command::Blank),
        ["quit"] => Ok(Command::Quit),
        ["send", count, rate, size] => {
            let count = count
                .parse::<u64>()
                .map_err(|e| format!("COUNT {count:?}: {e}"))?;
            let rate = rate
                .parse::<f64>()
                .map_err(|e| format!("RATE {rate:?}: {e}"))?;
            let size = size
                .parse::<usize>()
                .map_err(|e| format!("SIZE {size:?}: {e}"))?;
            if !(rate == 0.0 || (rate.is_finite() && rate >= 0.001)) {
                return Err(format!("RATE {rate} must be 0 or in [0.001, inf)"));
            }
            if size < HEADER {
                return Err(format!("SIZE {size} must be >= {HEADER}"));
            }
            Ok(Command::Send(SendCmd { count, rate, size }))
        }
        _ => Err(format!("unknown command {line:?}")),
    }
}

/// Handles one read from stdin: queues a send, or exits on `quit` / EOF / read error.
fn on_stdin(read: std::io::Result<Option<String>>, queue: &mut VecDeque<SendCmd>, out: &mut Out) {
    let line = match read {
        Ok(Some(line)) => line,
        Ok(None) => out.quit(),
        Err(e) => {
            eprintln!("bench-peer: stdin: {e}");
            out.quit()
        }
    };
    match parse_command(&line) {
        Ok(Command::Send(cmd)) => queue.push_back(cmd),
        Ok(Command::Quit) => out.quit(),
        Ok(Command::Blank) => {}
        Err(e) => eprintln!("bench-peer: ignoring command: {e}"),
    }
}

/// The send command in progress.
struct Job {
    left: u64,
    size: usize,
    /// `None` at RATE 0 (as fast as possible).
    interval: Option<Interval>,
    count: u64,
    errors: u64,
    t_first: u64,
    t_last: u64,
}

impl Job {
    fn new(cmd: SendCmd) -> Self {
        let interval = (cmd.rate > 0.0).then(|| {
            // tokio timers have 1 ms resolution; Burst keeps the mean rate above 1000/s.
            let period = Duration::from_secs_f64(1.0 / cmd.rate).max(Duration::from_micros(1));
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
            interval
        });
        Job {
            left: cmd.count,
            size: cmd.size,
            interval,
            count: 0,
            errors: 0,
            t_first: 0,
            t_last: 0,
        }
    }
    /// Messages to send on this turn.
    fn batch(&self) -> u64 {
        if self.interval.is_some() {
            self.left.min(1)
        } else {
            self.left.min(CHUNK)
        }
    }
    /// The next payload, stamped now.
    fn payload(&mut self, seq: &mut u64) -> Vec<u8> {
        let mut data = vec![0u8; self.size];
        let sent = now_us();
        data[0..8].copy_from_slice(&seq.to_be_bytes());
        data[8..HEADER].copy_from_slice(&sent.to_be_bytes());
        *seq += 1;
        if self.count == 0 {
            self.t_first = sent;
        }
        data
    }
    /// Records the outcome of one publish / send_to.
    fn done<E: std::fmt::Display>(&mut self, result: Result<(), E>) {
        if let Err(e) = result {
            if self.errors == 0 {
                eprintln!("bench-peer: send error (further ones only counted): {e}");
            }
            self.errors += 1;
        }
        self.count += 1;
        self.left -= 1;
        self.t_last = now_us();
    }
}

/// Starts queued commands while none is running, reporting those with COUNT 0 at once.
fn start_jobs(job: &mut Option<Job>, queue: &mut VecDeque<SendCmd>, out: &mut Out) {
    loop {
        if let Some(j) = job.as_ref() {
            if j.left > 0 {
                return;
            }
            out.line(format_args!(
                "sent {} {} {} {}",
                j.count, j.errors, j.t_first, j.t_last
            ));
            *job = None;
        }
        let Some(cmd) = queue.pop_front() else { return };
        *job = Some(Job::new(cmd));
    }
}

/// Completes when the running job may send its next batch (immediately at RATE 0).
async fn tick(job: &mut Option<Job>) {
    if let Some(Job {
        interval: Some(interval),
        ..
    }) = job
    {
        interval.tick().await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let result = match parse_args() {
        Mode::Gossip {
            listen,
            peers,
            expect,
        } => run_gossip(listen, peers, expect).await,
        Mode::Udp {
            addr,
            group,
            expect,
            verify,
        } => run_udp(addr, group, expect, verify).await,
        Mode::Junk {
            addr,
            group,
            rate,
            key_id,
        } => run_junk(addr, group, rate, key_id),
        Mode::Replay {
            addr,
            group,
            rate,
            record,
        } => run_replay(addr, group, rate, record),
    };
    if let Err(e) = result {
        eprintln!("bench-peer: {e}");
        std::process::exit(1);
    }
}

async fn run_gossip(listen: Multiaddr, peers: Vec<Multiaddr>, expect: usize) -> Res {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let behaviour: gossipsub::Behaviour = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(behaviour)
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let me = *swarm.local_peer_id();
    let bench = gossipsub::IdentTopic::new("bench");
    swarm.behaviour_mut().subscribe(&bench)?;
    let topic = bench.hash();
    swarm.listen_on(listen)?;
    for peer in peers {
        if let Err(e) = swarm.dial(peer.clone()) {
            eprintln!("bench-peer: dial {peer}: {e}");
        }
    }

    let mut out = Out::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut subscribed = HashSet::new();
    let mut ready = expect == 0;
    if ready {
        out.line(format_args!("ready {}", now_us()));
    }
    let (mut seq, mut queue, mut job) = (0u64, VecDeque::new(), None::<Job>);
    loop {
        start_jobs(&mut job, &mut queue, &mut out);
        out.flush();
        tokio::select! {
            // The swarm first, so it keeps making progress while we publish flat out.
            biased;
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                    let recv_us = now_us();
                    if message.source != Some(me) {
                        out.recv(&message.data, recv_us);
                    }
                }
                SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, topic: t, .. })
                    if t == topic =>
                {
                    subscribed.insert(peer_id);
                    if !ready && subscribed.len() >= expect {
                        ready = true;
                        out.line(format_args!("ready {}", now_us()));
                    }
                }
                SwarmEvent::NewListenAddr { address, .. } => eprintln!("bench-peer: listening on {address}"),
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    eprintln!("bench-peer: dial {peer_id:?}: {error}");
                }
                _ => {}
            },
            read = lines.next_line() => on_stdin(read, &mut queue, &mut out),
            () = tick(&mut job), if job.is_some() => {
                if let Some(j) = job.as_mut() {
                    for _ in 0..j.batch() {
                        let data = j.payload(&mut seq);
                        let result = swarm.behaviour_mut().publish(topic.clone(), data);
                        j.done(result.map(|_| ()));
                    }
                }
            }
        }
    }
}

/// The payload of a `udpv` datagram (`payload ‖ signature`) whose signature verifies.
fn verified<'a>(key: &VerifyingKey, datagram: &'a [u8]) -> Option<&'a [u8]> {
    let (body, sig) = datagram.split_at_checked(datagram.len().checked_sub(SIG_LEN)?)?;
    let sig = <&[u8; SIG_LEN]>::try_from(sig).ok()?;
    keys::verify(key, UDPV_CONTEXT, body, sig).then_some(body)
}

async fn run_udp(addr: Ipv4Addr, group: SocketAddrV4, expect: usize, verify: bool) -> Res {
    let signer = verify.then(|| SigningKey::from_bytes(&UDPV_SEED));
    let key = signer.as_ref().map(SigningKey::verifying_key);
    let rx = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, group.port())).await?;
    rx.join_multicast_v4(*group.ip(), addr)?;
    // The route 224.0.0.0/4 dev eth0 in each namespace picks the outgoing interface.
    let tx = UdpSocket::bind((addr, 0)).await?;
    tx.set_multicast_loop_v4(false)?;
    tx.set_multicast_ttl_v4(1)?;
    let dest = SocketAddr::V4(group);

    let mut out = Out::new();
    out.line(format_args!("ready {}", now_us()));
    let mode = if verify { "udpv" } else { "udp" };
    eprintln!("bench-peer: {mode} {addr} joined {group}, expecting {expect} peers");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut buf = vec![0u8; 65536];
    let (mut seq, mut queue, mut job) = (0u64, VecDeque::new(), None::<Job>);
    loop {
        start_jobs(&mut job, &mut queue, &mut out);
        out.flush();
        tokio::select! {
            biased;
            result = rx.recv_from(&mut buf) => {
                let mut result = result;
                // Drain what is already queued, then flush stdout once.
                for drained in 1.. {
                    let recv_us = now_us();
                    match result {
                        Ok((len, from)) if from.ip() != std::net::IpAddr::V4(addr) => {
                            let data = buf.get(..len).unwrap_or_default();
                            match &key {
                                None => out.recv(data, recv_us),
                                // Verified before the receive time is taken: its cost is part
                                // of the latency, as in a receiver that checks each alert.
                                Some(key) => match verified(key, data) {
                                    Some(body) => out.recv(body, now_us()),
                                    None => {
                                        REJECTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    }
                                },
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if e.kind() != std::io::ErrorKind::WouldBlock {
                                eprintln!("bench-peer: recv: {e}");
                            }
                            break;
                        }
                    }
                    if drained == UDP_DRAIN {
                        break;
                    }
                    result = rx.try_recv_from(&mut buf);
                }
            }
            read = lines.next_line() => on_stdin(read, &mut queue, &mut out),
            () = tick(&mut job), if job.is_some() => {
                if let Some(j) = job.as_mut() {
                    for _ in 0..j.batch() {
                        let mut data = j.payload(&mut seq);
                        if let Some(signer) = &signer {
                            let sig = keys::sign(signer, UDPV_CONTEXT, &data);
                            data.extend_from_slice(&sig);
                        }
                        let result = tx.send_to(&data, dest).await;
                        j.done(result.map(|_| ()));
                    }
                }
            }
        }
    }
}

/// Length of a junk datagram: about an alert's.
const JUNK_LEN: usize = 200;

/// The `junk` mode: R datagrams/s of version 1, key id K and random bytes after them.
fn run_junk(addr: Ipv4Addr, group: SocketAddrV4, rate: u64, key_id: u8) -> Res {
    // xorshift64*, seeded once: random enough that no two datagrams share a nonce or tag, and
    // cheap enough that 50,000/s leaves the sender's core to the sending.
    let mut seed = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let mut x = u64::from_le_bytes(seed) | 1;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    flood(addr, group, rate, |buf| {
        buf.resize(JUNK_LEN, 0);
        buf[0] = 1;
        buf[1] = key_id;
        for chunk in buf[2..].chunks_mut(8) {
            let r = next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    })
}

/// The `replay` mode: records N genuine datagrams of the group, then sends them again at R/s.
fn run_replay(addr: Ipv4Addr, group: SocketAddrV4, rate: u64, record: usize) -> Res {
    let rx = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, group.port()))?;
    rx.join_multicast_v4(group.ip(), &addr)?;
    rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut out = Out::new();
    out.line(format_args!("listening {}", now_us()));
    out.flush();
    let start = std::time::Instant::now();
    let mut first: Option<std::time::Instant> = None;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut recorded: Vec<Vec<u8>> = Vec::new();
    let mut buf = [0u8; 2048];
    while recorded.len() < record
        && start.elapsed() < Duration::from_secs(60)
        && first.is_none_or(|f| f.elapsed() < Duration::from_secs(20))
    {
        match rx.recv_from(&mut buf) {
            Ok((n, _)) => {
                first.get_or_insert_with(std::time::Instant::now);
                let d = buf[..n].to_vec();
                if seen.insert(d.clone()) {
                    recorded.push(d);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(rx);
    out.line(format_args!("recorded {} {}", recorded.len(), now_us()));
    out.flush();
    drop(out);
    if recorded.is_empty() {
        return Err("nothing to replay: no datagram was heard".into());
    }
    let mut round = recorded.iter().cycle();
    flood(addr, group, rate, |buf| {
        buf.clear();
        buf.extend_from_slice(round.next().map_or(&[][..], Vec::as_slice));
    })
}

/// Sends R datagrams/s to the group, each written into one reused buffer by `fill`, until
/// stdin closes; prints `junk SENT T ERRORS` every 100 ms.
fn flood(
    addr: Ipv4Addr,
    group: SocketAddrV4,
    rate: u64,
    mut fill: impl FnMut(&mut Vec<u8>),
) -> Res {
    let mut buf = Vec::new();
    let tx = std::net::UdpSocket::bind((addr, 0))?;
    tx.set_multicast_loop_v4(false)?;
    tx.set_multicast_ttl_v4(1)?;
    // stdin closing (the driver gone) ends the process.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0)
    });
    let start = std::time::Instant::now();
    let (mut attempted, mut sent, mut errors, mut reported) = (0u64, 0u64, 0u64, 0u64);
    let mut out = Out::new();
    loop {
        let elapsed = start.elapsed();
        // Catch up to the schedule, then sleep a millisecond: R/s on average, in small batches.
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        while attempted < due {
            attempted += 1;
            fill(&mut buf);
            if tx.send_to(&buf, group).is_ok() {
                sent += 1;
            } else {
                errors += 1;
            }
        }
        // Every 100 ms, so that the driver's reading of SENT is never far behind.
        let tenths = elapsed.as_millis() as u64 / 100;
        if tenths > reported {
            reported = tenths;
            out.line(format_args!("junk {sent} {} {errors}", now_us()));
            out.flush();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
