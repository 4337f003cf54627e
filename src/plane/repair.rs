//! Repair for the plane (`proto/plane.md`, "Repair"): the messages of `/ptt-node/repair/1`
//! and their limits, what a node answers from its [`Ring`], which `pseq`s it has asked for,
//! of whom, when it asks again and when it gives up, and which items of a reply it may
//! validate at all.
//!
//! Pure: every call takes the time (µs on any monotonic base the caller keeps), nothing here
//! sends, chooses a peer on its own or verifies a signature. The caller passes the targets to
//! try ([`Repairs::poll`]), sends the requests, validates what [`Repairs::screen`] keeps and
//! reports the outcome ([`Repairs::filled`], [`Repairs::retry_now`]). Live voice is never
//! repaired: only alert envelopes are served.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::Kind;
use super::ring::Ring;

/// Senders one request names at most.
pub const REPAIR_MAX_SENDERS: usize = 16;
/// `pseq`s one [`Want`] covers: its bitmap's width.
pub const REPAIR_WANT_BITS: u32 = 64;
/// Envelopes a reply carries per sender at most.
pub const REPAIR_MAX_PER_SENDER: usize = 64;
/// Wants in one request at most.
pub const REPAIR_MAX_WANTS: usize = REPAIR_MAX_SENDERS * 4;
/// Items in one reply at most.
pub const REPAIR_MAX_ITEMS: usize = REPAIR_MAX_SENDERS * REPAIR_MAX_PER_SENDER;
/// Envelope bytes a reply carries at most, all senders together.
pub const REPAIR_MAX_REPLY_BYTES: usize = 256 * 1024;
/// Largest request frame: 16 wants of at most 20 bytes each, and room.
pub const MAX_REPAIR_REQUEST: usize = 1024;
/// Largest response frame: the envelope budget, and per item its sender, `pseq` and length
/// (at most 13 bytes for 16 × 64 items), the `pseq`s not held, and room.
pub const MAX_REPAIR_RESPONSE: usize = REPAIR_MAX_REPLY_BYTES + 32 * 1024;
/// When a `pseq` is asked again (to another peer if there is one), after its first request.
pub const RETRY_AFTER_US: [u64; 2] = [150_000, 400_000];
/// When a `pseq` is given up (catch-up takes over), after its first request.
pub const GIVE_UP_AFTER_US: u64 = 1_500_000;
/// When a sender sends its tails, after its last data datagram.
pub const TAIL_AFTER_US: [u64; 4] = [20_000, 150_000, 450_000, 900_000];
/// `pseq`s outstanding at most; more are given up at once.
pub const MAX_OUTSTANDING: usize = 4096;
/// Repair latencies kept for the percentiles.
pub const LATENCY_SAMPLES: usize = 1024;

/// `pseq`s of one sender: `from` and the 63 after it (wrapping), bit `i` of `bitmap` for
/// `from + i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    /// The sender's device number.
    pub sender: u32,
    /// The first `pseq` covered.
    pub from: u32,
    /// Which of `from..from + 64` are meant.
    pub bitmap: u64,
}

impl Want {
    /// The `pseq`s this names, in order.
    pub fn pseqs(&self) -> impl Iterator<Item = u32> + '_ {
        (0..REPAIR_WANT_BITS)
            .filter(|i| self.bitmap >> i & 1 == 1)
            .map(|i| self.from.wrapping_add(i))
    }
}

/// A request of `/ptt-node/repair/1`: the datagrams the requester misses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    /// At most [`REPAIR_MAX_SENDERS`] distinct senders, [`REPAIR_MAX_WANTS`] wants.
    #[serde(deserialize_with = "crate::wire::bounded::<REPAIR_MAX_WANTS, _, _>")]
    pub wants: Vec<Want>,
}

impl RepairRequest {
    /// Every `(sender, pseq)` asked, without repeats.
    pub fn asked(&self) -> BTreeSet<(u32, u32)> {
        self.wants
            .iter()
            .flat_map(|w| w.pseqs().map(move |p| (w.sender, p)))
            .collect()
    }

    /// Whether it keeps to the limits: at most [`REPAIR_MAX_SENDERS`] senders.
    pub fn check(&self) -> Result<(), RepairError> {
        let senders: BTreeSet<u32> = self.wants.iter().map(|w| w.sender).collect();
        if senders.len() > REPAIR_MAX_SENDERS || self.wants.len() > REPAIR_MAX_WANTS {
            return Err(RepairError::TooManySenders);
        }
        Ok(())
    }
}

/// One envelope of a reply, as the responder's ring holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairItem {
    /// The sender it was sent by (the envelope's header must say the same).
    pub sender: u32,
    /// Its `pseq`.
    pub pseq: u32,
    /// The envelope, byte for byte.
    pub envelope: Vec<u8>,
}

/// A response of `/ptt-node/repair/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepairResponse {
    /// What the responder holds, and what it was asked for and does not hold.
    Repaired {
        /// Envelopes asked for (at most [`REPAIR_MAX_PER_SENDER`] per sender,
        /// [`REPAIR_MAX_REPLY_BYTES`] in all).
        #[serde(deserialize_with = "crate::wire::bounded::<REPAIR_MAX_ITEMS, _, _>")]
        items: Vec<RepairItem>,
        /// `pseq`s asked for that the responder does not hold (re-packed, so at most two wants
        /// per want asked: one more where a range wraps past `u32::MAX`).
        #[serde(deserialize_with = "crate::wire::bounded::<{ 2 * REPAIR_MAX_WANTS }, _, _>")]
        not_held: Vec<Want>,
    },
    /// The responder does not serve this peer (not authenticated) or this request.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Why a repair request is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    /// The request names more senders than one request may.
    #[error("a repair request names more than {REPAIR_MAX_SENDERS} senders")]
    TooManySenders,
}

/// Answers `request` from `ring`: the alert envelopes it holds (at most
/// [`REPAIR_MAX_PER_SENDER`] per sender, [`REPAIR_MAX_REPLY_BYTES`] in all) and the `pseq`s it
/// does not hold. What does not fit is left out of both: the requester asks again.
pub fn serve(ring: &Ring, request: &RepairRequest) -> RepairResponse {
    if let Err(e) = request.check() {
        return RepairResponse::Refused {
            reason: e.to_string(),
        };
    }
    let mut items = Vec::new();
    let mut not_held: Vec<Want> = Vec::new();
    let mut per_sender: BTreeMap<u32, usize> = BTreeMap::new();
    let mut bytes = 0usize;
    for (sender, pseq) in request.asked() {
        match ring.get(sender, pseq) {
            // Voice is never repaired here (live audio is concealed, not repaired).
            Some((Kind::Alert, body)) => {
                let n = per_sender.entry(sender).or_default();
                if *n >= REPAIR_MAX_PER_SENDER || bytes + body.len() > REPAIR_MAX_REPLY_BYTES {
                    continue;
                }
                *n += 1;
                bytes += body.len();
                items.push(RepairItem {
                    sender,
                    pseq,
                    envelope: body.to_vec(),
                });
            }
            _ => push_pseq(&mut not_held, sender, pseq),
        }
    }
    RepairResponse::Repaired { items, not_held }
}

/// Adds `pseq` to the last want of `sender` if it fits its bitmap, else starts a new one.
/// Called in ascending `(sender, pseq)` order.
fn push_pseq(wants: &mut Vec<Want>, sender: u32, pseq: u32) {
    if let Some(w) = wants.last_mut()
        && w.sender == sender
    {
        let d = pseq.wrapping_sub(w.from);
        if d < REPAIR_WANT_BITS {
            w.bitmap |= 1 << d;
            return;
        }
    }
    wants.push(Want {
        sender,
        from: pseq,
        bitmap: 1,
    });
}

/// The requester's repair activity, for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairCounters {
    /// `pseq`s asked for (once each, however many times it was asked).
    pub asked: u64,
    /// Requests sent.
    pub requests: u64,
    /// `pseq`s whose envelope a repair delivered and validation accepted.
    pub received: u64,
    /// `pseq`s given up (catch-up takes over).
    pub given_up: u64,
    /// Reply items dropped unvalidated: not asked for, a repeat, or whose header names
    /// another sender.
    pub unrequested: u64,
}

#[derive(Debug, Clone)]
struct Pending<P> {
    /// When the gap was seen.
    detected_us: u64,
    /// When it was first asked for.
    first_us: u64,
    /// When to ask next (`u64::MAX`: no more asking, wait for the give-up).
    next_us: u64,
    asks: usize,
    tried: Vec<P>,
}

/// What [`Repairs::poll`] wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<P> {
    /// Requests to send, each to its peer.
    pub requests: Vec<(P, RepairRequest)>,
    /// `(sender, pseq, last peer asked)` given up: stop tracking them and catch up.
    pub given_up: Vec<(u32, u32, Option<P>)>,
}

/// The `pseq`s this node has asked for and not received yet, over time.
#[derive(Debug, Clone)]
pub struct Repairs<P> {
    pending: BTreeMap<(u32, u32), Pending<P>>,
    /// Gaps beyond [`MAX_OUTSTANDING`], given up at the next poll.
    overflow: Vec<(u32, u32)>,
    /// Repair latencies (µs), the newest last.
    latencies: VecDeque<u64>,
    /// Activity, for `status`.
    pub counters: RepairCounters,
}

impl<P> Default for Repairs<P> {
    fn default() -> Self {
        Repairs {
            pending: BTreeMap::new(),
            overflow: Vec::new(),
            latencies: VecDeque::new(),
            counters: RepairCounters::default(),
        }
    }
}

impl<P: Clone + PartialEq> Repairs<P> {
    /// Nothing outstanding.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gaps of `sender` seen at `detected_us` that fell due: asked for at the next
    /// [`Repairs::poll`]. A `pseq` already outstanding keeps its schedule.
    pub fn add(&mut self, sender: u32, pseqs: &[u32], detected_us: u64, now_us: u64) {
        for &pseq in pseqs {
            if self.pending.len() >= MAX_OUTSTANDING && !self.pending.contains_key(&(sender, pseq))
            {
                // Too much at once: the oldest stay, this one goes straight to catch-up.
                if self.overflow.len() < MAX_OUTSTANDING {
                    self.overflow.push((sender, pseq));
                }
                continue;
            }
            self.pending.entry((sender, pseq)).or_insert(Pending {
                detected_us,
                first_us: now_us,
                next_us: now_us,
                asks: 0,
                tried: Vec::new(),
            });
        }
    }

    /// Gives up what is overdue and asks for what is due: one request per peer and per
    /// [`REPAIR_MAX_SENDERS`] senders. `targets(sender)` lists the peers that may hold the
    /// sender's datagrams, the best first (the sender itself when connected); a retry goes to
    /// the first one not tried yet for that `pseq`, else the first.
    pub fn poll(&mut self, now_us: u64, mut targets: impl FnMut(u32) -> Vec<P>) -> Outgoing<P> {
        let mut given_up: Vec<(u32, u32, Option<P>)> =
            self.overflow.drain(..).map(|(s, p)| (s, p, None)).collect();
        self.pending.retain(|&(sender, pseq), p| {
            let over = now_us.saturating_sub(p.first_us) >= GIVE_UP_AFTER_US;
            if over {
                given_up.push((sender, pseq, p.tried.last().cloned()));
            }
            !over
        });
        self.counters.given_up += given_up.len() as u64;
        // Per target, the (sender, pseq)s to ask it for, in order.
        let mut asks: Vec<(P, Vec<(u32, u32)>)> = Vec::new();
        let mut cache: BTreeMap<u32, Vec<P>> = BTreeMap::new();
        for (&(sender, pseq), p) in &mut self.pending {
            if p.next_us > now_us {
                continue;
            }
            let list = cache.entry(sender).or_insert_with(|| targets(sender));
            let Some(target) = list
                .iter()
                .find(|t| !p.tried.contains(t))
                .or(list.first())
                .cloned()
            else {
                // Nobody to ask now: look again at the next retry instant.
                p.next_us = retry_at(p.first_us, p.asks.max(1)).max(now_us + 1);
                continue;
            };
            if p.asks == 0 {
                self.counters.asked += 1;
            }
            p.asks += 1;
            p.tried.push(target.clone());
            p.next_us = retry_at(p.first_us, p.asks);
            match asks.iter_mut().find(|(t, _)| *t == target) {
                Some((_, v)) => v.push((sender, pseq)),
                None => asks.push((target, vec![(sender, pseq)])),
            }
        }
        let mut requests = Vec::new();
        for (target, ids) in asks {
            let mut wants: Vec<Want> = Vec::new();
            for (sender, pseq) in ids {
                push_pseq(&mut wants, sender, pseq);
            }
            // At most REPAIR_MAX_SENDERS wants per request (so at most as many senders).
            for chunk in wants.chunks(REPAIR_MAX_SENDERS) {
                requests.push((
                    target.clone(),
                    RepairRequest {
                        wants: chunk.to_vec(),
                    },
                ));
            }
        }
        self.counters.requests += requests.len() as u64;
        Outgoing { requests, given_up }
    }

    /// When [`Repairs::poll`] has something to do next.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.overflow.is_empty() {
            return Some(0);
        }
        self.pending
            .values()
            .map(|p| p.next_us.min(p.first_us.saturating_add(GIVE_UP_AFTER_US)))
            .min()
    }

    /// Keeps the items of a reply to `asked` that may be validated: asked for, once each,
    /// whose envelope's header names the item's sender; so never more than were asked for.
    /// The others are dropped unvalidated and counted `unrequested`.
    pub fn screen(&mut self, asked: &RepairRequest, items: Vec<RepairItem>) -> Vec<RepairItem> {
        let mut open = asked.asked();
        let mut kept = Vec::new();
        for item in items {
            let header_sender = crate::envelope::Envelope::parse(&item.envelope)
                .ok()
                .map(|e| e.header.sender);
            if header_sender == Some(item.sender) && open.remove(&(item.sender, item.pseq)) {
                kept.push(item);
            } else {
                self.counters.unrequested += 1;
            }
        }
        kept
    }

    /// `(sender, pseq)` is no longer missing: by repair (`repaired`: counted, and its latency
    /// kept) or otherwise (a late datagram, or it was already held). Returns the latency (µs)
    /// of a repair.
    pub fn filled(&mut self, sender: u32, pseq: u32, now_us: u64, repaired: bool) -> Option<u64> {
        let p = self.pending.remove(&(sender, pseq))?;
        if !repaired {
            return None;
        }
        self.counters.received += 1;
        let latency = now_us.saturating_sub(p.detected_us);
        if self.latencies.len() >= LATENCY_SAMPLES {
            self.latencies.pop_front();
        }
        self.latencies.push_back(latency);
        Some(latency)
    }

    /// The peer asked for `(sender, pseq)` does not hold it, or the request failed: ask
    /// another at once, if a retry is left.
    pub fn retry_now(&mut self, sender: u32, pseq: u32, now_us: u64) {
        if let Some(p) = self.pending.get_mut(&(sender, pseq))
            && p.asks <= RETRY_AFTER_US.len()
        {
            p.next_us = p.next_us.min(now_us);
        }
    }

    /// Whether `(sender, pseq)` is outstanding.
    pub fn is_pending(&self, sender: u32, pseq: u32) -> bool {
        self.pending.contains_key(&(sender, pseq))
    }

    /// How many `pseq`s are outstanding.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The 50th and 99th percentiles of the kept repair latencies, in ms.
    pub fn latency_ms(&self) -> Option<(f64, f64)> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = self.latencies.iter().copied().collect();
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            v[i] as f64 / 1000.0
        };
        Some((at(0.50), at(0.99)))
    }
}

/// When the `asks`-th retry is due (after `asks` requests), or never once both are spent.
fn retry_at(first_us: u64, asks: usize) -> u64 {
    match RETRY_AFTER_US.get(asks.saturating_sub(1)) {
        Some(after) => first_us.saturating_add(*after),
        None => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Header, VERSION};

    const MS: u64 = 1000;

    /// An envelope that parses (structure only) with `sender` in its header.
    fn envelope(sender: u32, seq: u64) -> Vec<u8> {
        let header = Header {
            version: VERSION,
            domain_tag: [1; 4],
            channel: 1,
            epoch: 1,
            sender,
            seq,
        };
        let mut b = crate::wire::encode(&header);
        b.extend_from_slice(&crate::wire::encode(&[7u8; 20][..]));
        b.extend_from_slice(&[0; 64]);
        b
    }

    fn item(sender: u32, pseq: u32) -> RepairItem {
        RepairItem {
            sender,
            pseq,
            envelope: envelope(sender, u64::from(pseq)),
        }
    }

    fn peers<'a>(list: &'a [&'static str]) -> impl FnMut(u32) -> Vec<&'static str> + 'a {
        move |_| list.to_vec()
    }

    #[test]
    fn one_request_per_target_with_a_bitmap_per_sender() {
        let mut r: Repairs<&str> = Repairs::new();
        r.add(7, &[10, 11, 13, 80], 0, 10 * MS);
        r.add(9, &[2], 0, 10 * MS);
        let out = r.poll(10 * MS, |s| if s == 7 { vec!["a", "b"] } else { vec!["b"] });
        assert!(out.given_up.is_empty());
        assert_eq!(out.requests.len(), 2);
        let (to, req) = &out.requests[0];
        assert_eq!(*to, "a");
        assert_eq!(
            req.wants,
            vec![
                Want {
                    sender: 7,
                    from: 10,
                    bitmap: 0b1011
                },
                Want {
                    sender: 7,
                    from: 80,
                    bitmap: 1
                },
            ]
        );
        // The worked example of proto/plane.md.
        let example = RepairRequest {
            wants: vec![Want {
                sender: 7,
                from: 10,
                bitmap: 0b1011,
            }],
        };
        assert_eq!(crate::wire::encode(&example), [0x01, 0x07, 0x0a, 0x0b]);
        assert_eq!(out.requests[1].0, "b");
        assert_eq!(
            out.requests[1].1.asked().into_iter().collect::<Vec<_>>(),
            [(9, 2)]
        );
        assert_eq!((r.counters.asked, r.counters.requests), (5, 2));
        // Nothing more until the first retry.
        assert!(r.poll(100 * MS, peers(&["a"])).requests.is_empty());
        assert_eq!(r.next_deadline(), Some(10 * MS + RETRY_AFTER_US[0]));
    }

    #[test]
    fn retries_go_to_another_target_then_it_gives_up_after_1500_ms() {
        let mut r: Repairs<&str> = Repairs::new();
        r.add(7, &[5], 0, 0);
        let ask = |r: &mut Repairs<&'static str>, at: u64| {
            r.poll(at, peers(&["sender", "x", "y"]))
                .requests
                .into_iter()
                .map(|(p, _)| p)
                .collect::<Vec<_>>()
        };
        assert_eq!(ask(&mut r, 0), ["sender"]);
        assert!(ask(&mut r, 149 * MS).is_empty());
        assert_eq!(ask(&mut r, 150 * MS), ["x"], "the first retry, elsewhere");
        assert!(ask(&mut r, 399 * MS).is_empty());
        assert_eq!(ask(&mut r, 400 * MS), ["y"], "the second, to a third peer");
        assert!(ask(&mut r, 1_000 * MS).is_empty(), "no third retry");
        assert_eq!(r.next_deadline(), Some(GIVE_UP_AFTER_US));
        let out = r.poll(GIVE_UP_AFTER_US - 1, peers(&["sender"]));
        assert!(out.given_up.is_empty());
        let out = r.poll(GIVE_UP_AFTER_US, peers(&["sender"]));
        assert_eq!(out.given_up, vec![(7, 5, Some("y"))]);
        assert_eq!((r.outstanding(), r.counters.given_up), (0, 1));
        assert_eq!(r.next_deadline(), None);
        // With one peer only, the retries go to it again.
        r.add(7, &[6], 0, 0);
        assert_eq!(ask(&mut r, 0), ["sender"]);
        let out = r.poll(150 * MS, peers(&["sender"]));
        assert_eq!(out.requests.len(), 1);
        assert_eq!(out.requests[0].0, "sender");
        // "Not held" or a failed request: ask another at once.
        r.add(8, &[1], 0, 200 * MS);
        assert_eq!(ask(&mut r, 200 * MS), ["sender"]);
        r.retry_now(8, 1, 210 * MS);
        assert_eq!(ask(&mut r, 210 * MS), ["x"]);
    }

    #[test]
    fn a_replys_pseqs_clear_the_outstanding_set_and_give_the_latency() {
        let mut r: Repairs<&str> = Repairs::new();
        r.add(7, &[1, 2, 3], 5 * MS, 15 * MS);
        let out = r.poll(15 * MS, peers(&["a"]));
        let asked = out.requests[0].1.clone();
        let kept = r.screen(&asked, vec![item(7, 1), item(7, 3)]);
        assert_eq!(kept.len(), 2);
        for i in &kept {
            assert!(r.filled(i.sender, i.pseq, 25 * MS, true).is_some());
        }
        assert!(!r.is_pending(7, 1) && r.is_pending(7, 2) && !r.is_pending(7, 3));
        assert_eq!(r.counters.received, 2);
        assert_eq!(r.latency_ms(), Some((20.0, 20.0)));
        // A late datagram clears it too, without counting as a repair.
        assert_eq!(r.filled(7, 2, 30 * MS, false), None);
        assert_eq!((r.outstanding(), r.counters.received), (0, 2));
        assert_eq!(r.filled(7, 2, 30 * MS, true), None, "not outstanding");
    }

    #[test]
    fn items_not_asked_for_are_refused_unvalidated() {
        let mut r: Repairs<&str> = Repairs::new();
        let asked = RepairRequest {
            wants: vec![Want {
                sender: 7,
                from: 10,
                bitmap: 0b11,
            }],
        };
        let mut forged = item(7, 11);
        forged.envelope = envelope(8, 11);
        let items = vec![
            item(7, 10),
            item(7, 10), // a repeat
            item(7, 12), // not asked
            item(9, 10), // a sender not asked about
            forged,      // header names another sender
            RepairItem {
                sender: 7,
                pseq: 11,
                envelope: vec![1, 2, 3], // not an envelope
            },
            item(7, 11),
        ];
        let kept = r.screen(&asked, items);
        assert_eq!(
            kept.iter().map(|i| (i.sender, i.pseq)).collect::<Vec<_>>(),
            [(7, 10), (7, 11)]
        );
        assert_eq!(
            kept[1].envelope,
            envelope(7, 11),
            "the honest copy, not the forged one"
        );
        assert_eq!(r.counters.unrequested, 5);
    }

    /// The liveness probe of proto/network.md: a request with no wants, answered `Repaired`
    /// with both lists empty, bytes as proto/plane.md gives them.
    #[test]
    fn an_empty_request_is_a_probe_answered_with_nothing() {
        let mut ring = Ring::default();
        ring.insert(0, 7, 1, Kind::Alert, envelope(7, 1));
        let probe = RepairRequest { wants: vec![] };
        assert_eq!(crate::wire::encode(&probe), [0x00]);
        let answer = serve(&ring, &probe);
        assert_eq!(
            answer,
            RepairResponse::Repaired {
                items: vec![],
                not_held: vec![]
            }
        );
        assert_eq!(crate::wire::encode(&answer), [0x00, 0x00, 0x00]);
    }

    #[test]
    fn the_responder_serves_what_its_ring_holds_within_the_limits() {
        let mut ring = Ring::default();
        for p in 0..100u32 {
            ring.insert(0, 7, p, Kind::Alert, envelope(7, p.into()));
        }
        ring.insert(0, 8, 1, Kind::Voice, vec![1; 10]);
        let req = RepairRequest {
            wants: vec![
                Want {
                    sender: 7,
                    from: 98,
                    bitmap: 0b111,
                },
                Want {
                    sender: 8,
                    from: 1,
                    bitmap: 1,
                },
            ],
        };
        let RepairResponse::Repaired { items, not_held } = serve(&ring, &req) else {
            panic!("refused")
        };
        assert_eq!(
            items.iter().map(|i| (i.sender, i.pseq)).collect::<Vec<_>>(),
            [(7, 98), (7, 99)]
        );
        assert_eq!(items[0].envelope, envelope(7, 98));
        // 100 is not held; voice is never served.
        assert_eq!(
            not_held,
            vec![
                Want {
                    sender: 7,
                    from: 100,
                    bitmap: 1
                },
                Want {
                    sender: 8,
                    from: 1,
                    bitmap: 1
                }
            ]
        );
        // At most 64 per sender, even over several wants.
        let req = RepairRequest {
            wants: vec![
                Want {
                    sender: 7,
                    from: 0,
                    bitmap: u64::MAX,
                },
                Want {
                    sender: 7,
                    from: 64,
                    bitmap: 0xff,
                },
            ],
        };
        let RepairResponse::Repaired { items, .. } = serve(&ring, &req) else {
            panic!("refused")
        };
        assert_eq!(items.len(), REPAIR_MAX_PER_SENDER);
        // More than 16 senders is refused.
        let req = RepairRequest {
            wants: (0..17)
                .map(|s| Want {
                    sender: s,
                    from: 0,
                    bitmap: 1,
                })
                .collect(),
        };
        assert!(matches!(serve(&ring, &req), RepairResponse::Refused { .. }));
        // The largest request and response fit their frames.
        let req = RepairRequest {
            wants: (0..16)
                .map(|s| Want {
                    sender: u32::MAX - s,
                    from: u32::MAX,
                    bitmap: u64::MAX,
                })
                .collect(),
        };
        assert!(crate::wire::encode(&req).len() <= MAX_REPAIR_REQUEST);
        let items: Vec<RepairItem> = (0..REPAIR_MAX_REPLY_BYTES / super::super::PLANE_MAX_BODY)
            .map(|i| RepairItem {
                sender: u32::MAX,
                pseq: u32::MAX - i as u32,
                envelope: vec![0; super::super::PLANE_MAX_BODY],
            })
            .collect();
        let resp = RepairResponse::Repaired {
            items,
            not_held: req.wants.clone(),
        };
        assert!(crate::wire::encode(&resp).len() <= MAX_REPAIR_RESPONSE);
    }

    #[test]
    fn a_wrapping_run_and_the_outstanding_bound() {
        let mut r: Repairs<&str> = Repairs::new();
        r.add(7, &[u32::MAX, 0], 0, 0);
        let out = r.poll(0, peers(&["a"]));
        let asked = out.requests[0].1.asked();
        assert!(asked.contains(&(7, u32::MAX)) && asked.contains(&(7, 0)));
        let many: Vec<u32> = (1..=MAX_OUTSTANDING as u32 + 10).collect();
        r.add(8, &many, 0, 0);
        let out = r.poll(1, peers(&["a"]));
        assert_eq!(
            out.given_up.len(),
            12,
            "beyond the bound: straight to catch-up"
        );
        assert!(out.requests.iter().all(|(_, q)| q.check().is_ok()));
    }
}
