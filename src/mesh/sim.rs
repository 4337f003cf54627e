//! Several nodes' [`PeerBook`]s driven in memory with simulated time: discovery by mDNS and
//! by presence records pushed in batches ([`Pushes`], [`Timer::Push`]), dials, the
//! authentication hello, refusals, nodes going down and coming back. No sockets, no clock,
//! no tokio: the network is a queue of events, a link is a counter, a dial reaches a node
//! after [`LATENCY`] or fails when it is down. Each node ticks every [`TICK`] as the daemon
//! does. Test-only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{
    AUTH_TIMEOUT, BACKOFF_MAX, BLOCK_FOR, Dial, PUSH_BATCH, PeerBook, PeerStatus, Pushes,
    SURPLUS_AFTER, TICK, Timer, TimerTable, ring_position,
};

/// How long a message or a dial takes to arrive.
const LATENCY: Duration = Duration::from_millis(1);

type Key = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Tick(Key),
    /// mDNS at `at` found `peer`.
    Found {
        at: Key,
        peer: Key,
    },
    Dial {
        from: Key,
        to: Key,
    },
    /// The authentication hello, carrying the sender's domain.
    Hello {
        from: Key,
        to: Key,
        domain: u32,
    },
    Welcome {
        from: Key,
        to: Key,
    },
    Refused {
        from: Key,
        to: Key,
    },
    /// Presence records (here: the device's key, its address derives from it).
    Presence {
        from: Key,
        to: Key,
        records: Vec<Key>,
    },
    /// A node's timer table may have something due.
    Wake(Key),
}

struct SimNode {
    /// The domain its certificate is for.
    domain: u32,
    up: bool,
    book: PeerBook<Key, String>,
    /// When it started a dial, to whom.
    dials: Vec<(Instant, Key)>,
    /// The presence records it holds (its own included).
    known: BTreeSet<Key>,
    pushes: Pushes<Key>,
    timers: TimerTable,
}

impl SimNode {
    fn new(k: Key, domain: u32) -> Self {
        SimNode {
            domain,
            up: true,
            book: PeerBook::new(k),
            dials: vec![],
            known: BTreeSet::from([k]),
            pushes: Pushes::default(),
            timers: TimerTable::default(),
        }
    }
}

struct Sim {
    t0: Instant,
    now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    nodes: BTreeMap<Key, SimNode>,
    /// Open connections between two nodes (smaller key first).
    links: BTreeMap<(Key, Key), usize>,
    rng: u64,
    /// Presence requests sent.
    presence_msgs: usize,
    /// The bound on connections every node runs with, if any.
    max_peers: Option<usize>,
    /// Connections closed as surplus.
    surplus_closed: usize,
}

/// A simulated node's place on the overlay's ring.
fn position(k: &Key) -> u64 {
    ring_position(&k.to_be_bytes())
}

fn addr(k: Key) -> String {
    format!("/ip4/10.0.0.{k}/tcp/4001")
}

fn pair(a: Key, b: Key) -> (Key, Key) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// Nodes `(key, domain)`, all up, each ticking from a slightly different instant.
    fn new(nodes: &[(Key, u32)]) -> Self {
        let t0 = Instant::now();
        let mut s = Sim {
            t0,
            now: t0,
            queue: BTreeMap::new(),
            seq: 0,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
            presence_msgs: 0,
            max_peers: None,
            surplus_closed: 0,
        };
        for (i, (k, domain)) in nodes.iter().enumerate() {
            s.nodes.insert(*k, SimNode::new(*k, *domain));
            s.at(t0 + Duration::from_millis(7 * i as u64), Ev::Tick(*k));
            // Its own record, issued at start (to nobody yet, as in the daemon).
            s.push_presence(*k, vec![*k], None);
        }
        s
    }

    /// Every node bounds its connections at `max` (as `--max-peers`).
    fn bounded(mut self, max: usize) -> Self {
        self.max_peers = Some(max);
        for n in self.nodes.values_mut() {
            n.book.set_max_peers(max, position);
        }
        self
    }

    /// Queues records for `k`'s authenticated peers and arms its push timer.
    fn push_presence(&mut self, k: Key, records: Vec<Key>, except: Option<Key>) {
        let now = self.now;
        let bytes = records.iter().map(|r| r.to_be_bytes().to_vec()).collect();
        let n = self.node(k);
        let due = n.pushes.push_presence(bytes, except, now);
        n.timers.set_or_cancel(Timer::Push, due);
        if let Some(at) = due {
            self.at(at, Ev::Wake(k));
        }
    }

    fn at(&mut self, when: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((when, self.seq), ev);
    }

    fn send(&mut self, ev: Ev) {
        self.at(self.now + LATENCY, ev);
    }

    /// The caller's randomness for the re-dial jitter (xorshift: deterministic runs).
    fn jitter(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn us(&self) -> u64 {
        (self.now - self.t0).as_micros() as u64
    }

    fn node(&mut self, k: Key) -> &mut SimNode {
        self.nodes.get_mut(&k).expect("a simulated node")
    }

    /// mDNS: every node that is up finds every other one that is up, at `when`.
    fn discover_all(&mut self, when: Instant) {
        let up: Vec<Key> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.up)
            .map(|(k, _)| *k)
            .collect();
        for a in &up {
            for b in &up {
                if a != b {
                    self.at(when, Ev::Found { at: *a, peer: *b });
                }
            }
        }
    }

    fn start_dial(&mut self, from: Key, d: Dial<Key, String>) {
        assert!(!d.addresses.is_empty(), "a dial has addresses");
        let now = self.now;
        self.node(from).dials.push((now, d.peer));
        self.send(Ev::Dial { from, to: d.peer });
    }

    /// No connection and no dial under way to or from `k`.
    fn alone(&self, k: Key) -> bool {
        !self
            .links
            .iter()
            .any(|((a, b), n)| *n > 0 && (*a == k || *b == k))
            && !self
                .queue
                .values()
                .any(|e| matches!(e, Ev::Dial { from, to } if *from == k || *to == k))
    }

    /// Closes every connection between `a` and `b`.
    fn close(&mut self, a: Key, b: Key, cause: &str) {
        if self.links.remove(&pair(a, b)).unwrap_or(0) == 0 {
            return;
        }
        for (me, peer) in [(a, b), (b, a)] {
            let (j, now, us) = (self.jitter(), self.now, self.us());
            if self.nodes[&me].up {
                self.node(me)
                    .book
                    .closed(&peer, 0, Some(cause.into()), j, now, us);
            }
        }
    }

    /// `k` goes down: its links close; it comes back with an empty book.
    fn down(&mut self, k: Key) {
        let peers: Vec<Key> = self
            .links
            .keys()
            .filter_map(|(a, b)| (*a == k).then_some(*b).or((*b == k).then_some(*a)))
            .collect();
        for p in peers {
            self.close(k, p, "connection reset");
        }
        self.node(k).up = false;
    }

    fn up(&mut self, k: Key) {
        let domain = self.nodes[&k].domain;
        let dials = std::mem::take(&mut self.node(k).dials);
        *self.node(k) = SimNode {
            dials,
            ..SimNode::new(k, domain)
        };
        if let Some(max) = self.max_peers {
            self.node(k).book.set_max_peers(max, position);
        }
    }

    /// `to` proved membership to `k`: on the first proof, `k` tells it where everyone is.
    fn admit(&mut self, k: Key, to: Key) {
        if self.node(k).book.admit(&to, false) == Some(true) {
            let records = self.nodes[&k].known.iter().copied().collect();
            self.presence_msgs += 1;
            self.send(Ev::Presence {
                from: k,
                to,
                records,
            });
        }
    }

    fn run_until(&mut self, until: Instant) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((when, _), ev) = entry.remove_entry();
            self.now = when;
            self.handle(ev);
        }
        self.now = until;
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Tick(k) => {
                self.at(now + TICK, Ev::Tick(k));
                if !self.nodes[&k].up {
                    return;
                }
                let t = self.node(k).book.tick(now, |_| false);
                for d in t.dials {
                    self.start_dial(k, d);
                }
                for p in t.late {
                    self.close(k, p, "did not authenticate in time");
                }
                if let Some(p) = self.node(k).book.surplus(now, |_| false) {
                    self.surplus_closed += 1;
                    self.close(k, p, "surplus");
                }
            }
            Ev::Found { at, peer } => {
                // mDNS hears only nodes that are up (answers queued before one went down).
                if !self.nodes[&at].up || !self.nodes[&peer].up {
                    return;
                }
                let alone = self.alone(at);
                if let Some(d) = self.node(at).book.found_at(peer, [addr(peer)], alone, now) {
                    self.start_dial(at, d);
                }
            }
            Ev::Dial { from, to } => {
                if !self.nodes[&from].up {
                    return;
                }
                if !self.nodes[&to].up {
                    let j = self.jitter();
                    self.node(from)
                        .book
                        .dial_failed(&to, "connection refused".into(), j, now);
                    return;
                }
                let n = {
                    let l = self.links.entry(pair(from, to)).or_default();
                    *l += 1;
                    *l
                };
                let us = self.us();
                let (df, dt) = (self.nodes[&from].domain, self.nodes[&to].domain);
                let a = Some(addr(to));
                if self
                    .node(from)
                    .book
                    .established(to, n, a.clone(), a, now, us)
                {
                    self.send(Ev::Hello {
                        from,
                        to,
                        domain: df,
                    });
                }
                if self.node(to).book.established(from, n, None, None, now, us) {
                    self.send(Ev::Hello {
                        from: to,
                        to: from,
                        domain: dt,
                    });
                }
            }
            Ev::Hello { from, to, domain } => {
                if !self.links.contains_key(&pair(from, to)) {
                    return;
                }
                if domain == self.nodes[&to].domain {
                    self.admit(to, from);
                    self.send(Ev::Welcome { from: to, to: from });
                } else {
                    self.node(to)
                        .book
                        .refuse(&from, "belongs to another domain".into(), now);
                    self.send(Ev::Refused { from: to, to: from });
                    self.close(from, to, "refused");
                }
            }
            Ev::Welcome { from, to } => {
                if self.links.contains_key(&pair(from, to)) {
                    self.admit(to, from);
                }
            }
            Ev::Presence { from, to, records } => {
                let n = &self.nodes[&to];
                if !n.up || !n.book.get(&from).is_some_and(|p| p.is_authenticated()) {
                    return;
                }
                let new: Vec<Key> = records
                    .into_iter()
                    .filter(|r| !n.known.contains(r))
                    .collect();
                self.node(to).known.extend(&new);
                self.push_presence(to, new.clone(), Some(from));
                // dial_from_presence: a member on this LAN this node is not connected to.
                for r in new {
                    let b = &self.nodes[&to].book;
                    if r == to || b.is_blocked(&r) || b.is_connected(&r) {
                        continue;
                    }
                    let alone = self.alone(to);
                    if let Some(d) = self.node(to).book.found_at(r, [addr(r)], alone, now) {
                        self.start_dial(to, d);
                    }
                }
            }
            Ev::Wake(k) => {
                if !self.nodes[&k].up {
                    return;
                }
                for t in self.node(k).timers.poll(now) {
                    assert_eq!(t, Timer::Push, "only pushes are armed here");
                    let n = self.node(k);
                    let ready: Vec<Key> = n.book.ready().copied().collect();
                    for b in n.pushes.flush(ready, now) {
                        let records = b
                            .presence
                            .iter()
                            .filter_map(|r| Some(Key::from_be_bytes(r.as_slice().try_into().ok()?)))
                            .collect();
                        self.presence_msgs += 1;
                        self.send(Ev::Presence {
                            from: k,
                            to: b.peer,
                            records,
                        });
                    }
                }
            }
            Ev::Refused { from, to } => {
                if self.nodes[&to].up {
                    self.node(to).book.refuse(&from, "refused us".into(), now);
                }
            }
        }
    }

    fn status(&self, at: Key, of: Key) -> Option<PeerStatus> {
        self.nodes[&at].book.get(&of).map(|p| p.status())
    }

    fn dials(&self, from: Key, to: Key) -> Vec<Instant> {
        self.nodes[&from]
            .dials
            .iter()
            .filter(|(_, p)| *p == to)
            .map(|(t, _)| *t)
            .collect()
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn members_discover_each_other_and_keep_one_connection_per_pair() {
    let mut s = Sim::new(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
    let t0 = s.t0;
    s.discover_all(t0);
    s.run_until(t0 + secs(5));
    for a in 1..=4 {
        for b in (1..=4).filter(|b| *b != a) {
            assert_eq!(
                s.status(a, b),
                Some(PeerStatus::Authenticated),
                "{a} sees {b}"
            );
        }
    }
    // The larger key deferred its dial: one connection per pair, one dial per pair.
    assert!(s.links.values().all(|n| *n == 1), "{:?}", s.links);
    assert_eq!(s.links.len(), 6);
    let dials: usize = s.nodes.values().map(|n| n.dials.len()).sum();
    assert_eq!(dials, 6);
}

#[test]
fn an_outsider_is_refused_blocked_and_not_redialled() {
    let mut s = Sim::new(&[(1, 1), (2, 1), (9, 2)]);
    let t0 = s.t0;
    s.discover_all(t0);
    // mDNS keeps answering: the outsider is found again and again.
    for i in 1..20 {
        s.discover_all(t0 + secs(5 * i));
    }
    s.run_until(t0 + secs(30));
    for m in [1, 2] {
        assert_eq!(s.status(m, 9), Some(PeerStatus::Refused));
        assert!(s.nodes[&m].book.is_blocked(&9));
        assert_eq!(
            s.status(9, m),
            Some(PeerStatus::Refused),
            "refused both ways"
        );
        assert_eq!(
            s.dials(m, 9).len(),
            1,
            "member {m} dialled the outsider once"
        );
    }
    assert_eq!(s.status(1, 2), Some(PeerStatus::Authenticated));
    assert!(!s.links.contains_key(&(1, 9)) && !s.links.contains_key(&(2, 9)));
    // The block lapses after BLOCK_FOR; being found again means one more try.
    s.run_until(t0 + BLOCK_FOR + secs(1));
    assert!(!s.nodes[&1].book.is_blocked(&9));
    s.run_until(t0 + BLOCK_FOR + secs(30));
    assert!(
        s.dials(1, 9).len() >= 2,
        "found again after the block: tried again"
    );
    assert_eq!(s.status(1, 9), Some(PeerStatus::Refused));
}

#[test]
fn a_member_that_goes_down_is_redialled_with_backoff_until_it_returns() {
    let mut s = Sim::new(&[(1, 1), (2, 1), (3, 1)]);
    let t0 = s.t0;
    s.discover_all(t0);
    s.run_until(t0 + secs(5));
    assert_eq!(s.status(1, 2), Some(PeerStatus::Authenticated));
    let down_at = t0 + secs(5);
    s.down(2);
    s.run_until(t0 + secs(125));
    assert_eq!(s.status(1, 2), Some(PeerStatus::Unreachable));
    assert_eq!(
        s.status(1, 3),
        Some(PeerStatus::Authenticated),
        "others unaffected"
    );
    let tries: Vec<Instant> = s.dials(1, 2).into_iter().filter(|t| *t > down_at).collect();
    // 0.5, 1, 2, 4, 8, 16, then 30 s at 50 to 100 %: about 10 in two minutes, not 480 ticks.
    assert!((6..=14).contains(&tries.len()), "{} re-dials", tries.len());
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    let last = gaps.last().copied().unwrap_or_default();
    assert!(
        last >= BACKOFF_MAX / 2 && last <= BACKOFF_MAX + TICK,
        "{gaps:?}"
    );
    assert_eq!(
        s.nodes[&1].book.get(&2).map(|p| p.backoff()),
        Some(BACKOFF_MAX)
    );
    // It comes back (with no memory of anyone): the next re-dial reaches it within the cap.
    s.up(2);
    s.run_until(t0 + secs(125) + BACKOFF_MAX + secs(1));
    for m in [1, 3] {
        assert_eq!(
            s.status(m, 2),
            Some(PeerStatus::Authenticated),
            "{m} sees 2"
        );
        assert_eq!(
            s.status(2, m),
            Some(PeerStatus::Authenticated),
            "2 sees {m}"
        );
        assert_eq!(
            s.nodes[&m].book.get(&2).map(|p| p.backoff()),
            Some(Duration::ZERO)
        );
    }
}

#[test]
fn a_peer_that_never_says_hello_is_dropped_after_the_timeout() {
    let mut s = Sim::new(&[(1, 1), (2, 1)]);
    let t0 = s.t0;
    s.at(t0, Ev::Found { at: 1, peer: 2 });
    // Node 2's hellos are lost (a node that accepts connections but never authenticates).
    s.run_until(t0 + Duration::from_millis(1));
    s.queue.retain(|_, e| !matches!(e, Ev::Hello { .. }));
    s.run_until(t0 + Duration::from_millis(5));
    assert_eq!(s.status(1, 2), Some(PeerStatus::Connecting));
    s.run_until(t0 + AUTH_TIMEOUT);
    assert!(s.links.contains_key(&(1, 2)));
    s.run_until(t0 + AUTH_TIMEOUT + TICK + Duration::from_millis(10));
    assert!(
        !s.links.contains_key(&(1, 2)),
        "dropped at the first tick past the timeout"
    );
    let p = s.nodes[&1].book.get(&2).expect("known");
    assert_eq!(p.last_error(), Some("did not authenticate in time"));
    assert!(
        !s.nodes[&1].book.is_blocked(&2),
        "not blocked: not proof of anything"
    );
}

#[test]
fn a_member_mdns_missed_is_found_through_presence_pushed_in_batches() {
    // Node 1 and node 3 never hear each other's mDNS answers; both hear node 2.
    let mut s = Sim::new(&[(1, 1), (2, 1), (3, 1)]);
    let t0 = s.t0;
    for (a, b) in [(1, 2), (2, 1), (2, 3), (3, 2)] {
        s.at(t0, Ev::Found { at: a, peer: b });
    }
    s.run_until(t0 + Duration::from_millis(3));
    assert_eq!(s.status(1, 2), Some(PeerStatus::Authenticated));
    assert_eq!(s.status(1, 3), None, "1 has not heard of 3 yet");
    // 2 learns each newcomer's record in its welcome, and passes it on in one batch
    // PUSH_BATCH later: 1 dials 3 as if mDNS had found it.
    s.run_until(t0 + PUSH_BATCH + Duration::from_millis(10));
    assert_eq!(s.status(1, 3), Some(PeerStatus::Authenticated));
    assert_eq!(s.status(3, 1), Some(PeerStatus::Authenticated));
    assert_eq!(
        s.dials(1, 3).len() + s.dials(3, 1).len(),
        1,
        "one dial for the pair"
    );
    assert!(s.nodes.values().all(|n| n.known.len() == 3));
    // Once every batch queued went out, nothing new: nothing more is sent.
    s.run_until(t0 + Duration::from_secs(1));
    let sent = s.presence_msgs;
    s.run_until(t0 + Duration::from_secs(30));
    assert_eq!(s.presence_msgs, sent);
    // Six welcomes (each side of three pairs), and batches: 2's first one (its own record
    // and both newcomers', to 1 and to 3), 1's and 3's first (their own, to 2), then theirs
    // with what they learned (to each other). Not one request per record and per peer.
    assert_eq!(sent, 6 + 2 + 2 + 2);
}

/// Each node's open connections to nodes that are up.
fn degrees(s: &Sim) -> BTreeMap<Key, usize> {
    let mut d: BTreeMap<Key, usize> = s.nodes.keys().map(|k| (*k, 0)).collect();
    for ((a, b), n) in &s.links {
        if *n > 0 {
            *d.entry(*a).or_default() += 1;
            *d.entry(*b).or_default() += 1;
        }
    }
    d
}

/// Whether the links join every node that is up.
fn connected(s: &Sim) -> bool {
    let up: BTreeSet<Key> = s
        .nodes
        .iter()
        .filter(|(_, n)| n.up)
        .map(|(k, _)| *k)
        .collect();
    let Some(first) = up.first().copied() else {
        return true;
    };
    let mut seen = BTreeSet::from([first]);
    let mut todo = vec![first];
    while let Some(a) = todo.pop() {
        for (x, y) in s.links.iter().filter(|(_, n)| **n > 0).map(|(p, _)| *p) {
            let other = if x == a {
                y
            } else if y == a {
                x
            } else {
                continue;
            };
            if up.contains(&other) && seen.insert(other) {
                todo.push(other);
            }
        }
    }
    seen == up
}

#[test]
fn a_bounded_domain_keeps_a_connected_graph_within_the_bound() {
    let nodes: Vec<(Key, u32)> = (1..=14).map(|k| (k, 1)).collect();
    let mut s = Sim::new(&nodes).bounded(4);
    let t0 = s.t0;
    // mDNS answers again every 5 s, as the daemon's default query interval.
    for i in 0..60 {
        s.discover_all(t0 + secs(5 * i));
    }
    s.run_until(t0 + SURPLUS_AFTER + secs(30));
    let d = degrees(&s);
    assert!(d.values().all(|n| *n <= 4), "{d:?}");
    assert!(connected(&s), "{:?}", s.links);
    // Every pair the overlay wants is connected and authenticated.
    for (k, n) in &s.nodes {
        let o = n.book.overlay().expect("bounded");
        assert_eq!(o.members().len(), 14, "{k} knows everyone");
        for p in o.neighbours(k) {
            assert_eq!(
                s.status(*k, p),
                Some(PeerStatus::Authenticated),
                "{k} sees {p}"
            );
        }
    }
    // Far fewer than the 91 connections of a full mesh.
    assert!(s.links.len() <= 14 * 4 / 2, "{} links", s.links.len());

    // A node goes down: its neighbours route round it, still within the bound.
    s.down(3);
    s.run_until(t0 + secs(180));
    let d = degrees(&s);
    assert!(d.values().all(|n| *n <= 4), "{d:?}");
    assert!(connected(&s), "without 3: {:?}", s.links);
    assert_eq!(d[&3], 0);
    // It comes back (with an empty book): it is found again and rejoins the graph.
    s.up(3);
    s.run_until(t0 + secs(300));
    s.run_until(t0 + secs(300));
    assert!(degrees(&s).values().all(|n| *n <= 4));
    assert!(connected(&s));
    assert!(degrees(&s)[&3] >= 2, "3 has its ring neighbours back");
    // Settled: no connection is closed and re-opened any more (no flapping).
    let (closed, links) = (s.surplus_closed, s.links.clone());
    s.run_until(t0 + secs(420));
    assert_eq!(s.surplus_closed, closed);
    assert_eq!(s.links, links);
}

#[test]
fn outsiders_among_a_bounded_domain_are_refused_and_the_members_stay_joined() {
    // Twelve members and three devices of another domain on one LAN, bounded at 4.
    let mut nodes: Vec<(Key, u32)> = (1..=12).map(|k| (k, 1)).collect();
    nodes.extend([(20, 2), (21, 2), (22, 2)]);
    let mut s = Sim::new(&nodes).bounded(4);
    let t0 = s.t0;
    for i in 0..40 {
        s.discover_all(t0 + secs(5 * i));
    }
    s.run_until(t0 + secs(180));
    // Each outsider was dialled by a member (its ring neighbours want it), refused, and is
    // out of every member's overlay that tried it; no member keeps a link to one.
    for o in [20, 21, 22] {
        let refused_by = (1..=12)
            .filter(|m| s.status(*m, o) == Some(PeerStatus::Refused))
            .count();
        assert!(refused_by >= 1, "outsider {o} refused by nobody");
        assert!((1..=12).all(|m| !s.links.contains_key(&pair(m, o))));
    }
    // The members: a connected graph within the bound.
    let members: BTreeSet<Key> = (1..=12).collect();
    let d = degrees(&s);
    assert!(members.iter().all(|m| d[m] <= 4), "{d:?}");
    let mut seen = BTreeSet::from([1]);
    let mut todo = vec![1];
    while let Some(a) = todo.pop() {
        for (x, y) in s.links.keys() {
            let other = if *x == a {
                *y
            } else if *y == a {
                *x
            } else {
                continue;
            };
            if members.contains(&other) && seen.insert(other) {
                todo.push(other);
            }
        }
    }
    assert_eq!(seen, members, "{:?}", s.links);
}
