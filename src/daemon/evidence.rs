//! The plane's evidence in the daemon (`proto/plane.md`, Evidence): sends this node's signed
//! beacon every 5 s ± 10 %, verifies the beacons it hears (at most one per sender per beacon
//! interval), reports the heard set to every authenticated peer and records theirs, and shows
//! each peer's `path`.
//!
//! The decisions (what is heard, when to report, the path) are the core's
//! ([`crate::plane::evidence`]); this room only moves bytes and passes the clock in. It never
//! trusts a report for anything but what it sends that peer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::{PeerId, request_response::OutboundRequestId};
use rand_core::RngCore;

use super::{Daemon, now_us};
use crate::control::{PeerInfo, PlaneInfo};
use crate::mesh::Timer;
use crate::net::{AuthRequest, MAX_HEARD_SENDERS};
use crate::plane::evidence::{BeaconStale, Evidence, SLOT_US};
use crate::plane::{self, Kind};

/// An envelope fetched by catch-up shows a silent miss only if it was made longer ago than
/// this: a younger one may still be under repair, or have just been sent.
const SILENT_MISS_AGE_US: u64 = 4_000_000;
/// Reports held from peers not admitted yet, at most (one per peer, the latest).
const MAX_EARLY_REPORTS: usize = 64;
/// The beacon interval's jitter either way, in per mille (5 s ± 10 %).
const JITTER_PER_MILLE: u64 = 100;

/// The evidence and what the daemon did with beacons and reports.
pub(super) struct EvidenceState {
    core: Evidence,
    /// `Heard` reports in flight (their failure says nothing about authentication).
    reports: HashSet<OutboundRequestId>,
    /// A peer's report that arrived before this node admitted it (the peer admitted this
    /// node first and reported at once): taken when the peer is admitted, dropped if it leaves.
    early: HashMap<PeerId, (u32, Vec<u32>)>,
    counters: BeaconCounters,
}

/// Beacon and report counters, for `status`.
#[derive(Debug, Default, Clone)]
struct BeaconCounters {
    sent: u64,
    verified: u64,
    stale: u64,
    bad_signature: u64,
    unknown_sender: u64,
}

impl EvidenceState {
    /// The evidence of device `own`, hearing nobody yet.
    pub(super) fn new(own: u32, epoch: Option<u32>) -> Self {
        EvidenceState {
            core: Evidence::new(own, epoch),
            reports: HashSet::new(),
            early: HashMap::new(),
            counters: BeaconCounters::default(),
        }
    }
}

/// When the next beacon is due: 5 s ± 10 % after `now`, from the OS's generator.
fn next_beacon(now: Instant) -> Instant {
    let spread = 2 * JITTER_PER_MILLE * SLOT_US / 1000;
    let offset = rand_core::OsRng.next_u64() % (spread + 1);
    now + Duration::from_micros(SLOT_US - JITTER_PER_MILLE * SLOT_US / 1000 + offset)
}

impl Daemon {
    /// The senders a peer's device reports hearing on the plane, for gossipsub's per-peer skip
    /// (step 9 of the plane); `None`: it hears nobody.
    #[allow(dead_code)]
    pub(super) fn heard_by(&self, peer_device: u32) -> Option<&BTreeSet<u32>> {
        self.evidence.core.heard_by(peer_device)
    }

    /// The senders this node hears on the plane.
    #[allow(dead_code)]
    pub(super) fn heard_set(&self) -> &BTreeSet<u32> {
        self.evidence.core.heard()
    }

    /// Sends this node's beacon and arms the next one.
    pub(super) fn send_beacon(&mut self, now: Instant) {
        self.timers.set(Timer::Beacon, next_beacon(now));
        let heard = self.evidence.core.heard().len() as u32;
        let (domain, own) = (self.node.domain().0, self.node.cert().body.device);
        let node = &self.node;
        let Some(p) = self.plane.as_mut() else { return };
        let issued = now_us();
        if p.send_unnumbered(&domain, own, Kind::Beacon, |pseq| {
            node.beacon_body(pseq, issued, heard)
        }) {
            self.evidence.counters.sent += 1;
        }
    }

    /// A beacon datagram opened: verified only if fresh ([`Evidence::beacon_check`]), with its
    /// sender's certificate.
    pub(super) fn on_beacon(&mut self, sender: u32, pseq: u32, body: &[u8]) {
        let now = now_us();
        let Ok(b) = plane::Beacon::parse(body) else {
            self.evidence.counters.bad_signature += 1;
            return;
        };
        let Some(key) = self.node.member(sender).map(|c| *c.verifying_key()) else {
            self.evidence.counters.unknown_sender += 1;
            return;
        };
        let ev = &mut self.evidence;
        match ev.core.beacon_check(sender, b.issued_us, now) {
            Ok(()) => {}
            Err(BeaconStale::NotNewer | BeaconStale::Clock | BeaconStale::TooSoon) => {
                ev.counters.stale += 1;
                return;
            }
        }
        match plane::verify_beacon(&key, &self.node.domain().0, sender, pseq, body) {
            Ok(b) if !self.node.descriptor().is_revoked(sender) => {
                ev.counters.verified += 1;
                ev.core.on_beacon(sender, b.issued_us, now);
                self.plane_beacon_heard(sender, pseq);
                self.heard_on_plane(sender);
            }
            _ => ev.counters.bad_signature += 1,
        }
    }

    /// Datagrams naming `sender` are suspended (forgeries in its name): it leaves the heard set.
    pub(super) fn evidence_suspect(&mut self, sender: u32) {
        self.evidence.core.suspect(sender, now_us());
    }

    /// A data datagram of `sender` from the plane was accepted.
    pub(super) fn evidence_on_data(&mut self, sender: u32, pseq: u32) {
        self.evidence.core.on_data(sender, pseq, now_us());
    }

    /// A datagram of `sender` missed on the plane arrived by repair (for the repair step).
    #[allow(dead_code)]
    pub(super) fn evidence_on_repaired(&mut self, sender: u32, pseq: u32) {
        self.evidence.core.on_repaired(sender, pseq, now_us());
    }

    /// An envelope of `sender` arrived by catch-up; if it is one the plane should have carried
    /// (short enough, made after `sender` was last heard to enter) and no gap showed it, the
    /// plane misses `sender` silently.
    pub(super) fn evidence_on_catch_up(&mut self, sender: u32, seq_us: u64, len: usize) {
        let core = &mut self.evidence.core;
        if len > plane::PLANE_MAX_BODY || self.plane.is_none() {
            return;
        }
        // Only an envelope made while the plane was heard, and not in its last seconds
        // (a repair may still be on its way).
        let Some(since) = core.heard_since(sender) else {
            return;
        };
        let now = now_us();
        if seq_us > since && seq_us.saturating_add(SILENT_MISS_AGE_US) < now {
            tracing::info!(
                sender,
                "plane: an envelope came by catch-up only; sender not heard"
            );
            core.on_silent_miss(sender, now);
        }
    }

    /// The evidence's share of the tick: moves the windows on, keeps the epoch, sends a
    /// changed heard set (at most every 2 s), and arms the first beacon.
    pub(super) fn evidence_tick(&mut self, now: Instant) {
        let t = now_us();
        let epoch = self.node.plane_epoch();
        self.evidence.core.set_epoch(epoch, t);
        self.evidence.core.tick(t);
        let sending = self.plane.as_ref().is_some_and(|p| p.can_send());
        if sending && self.timers.get(Timer::Beacon).is_none() {
            self.timers.set(Timer::Beacon, next_beacon(now));
        }
        if let Some(senders) = self.evidence.core.report_due(t) {
            let peers: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| p.is_ready())
                .map(|(id, _)| *id)
                .collect();
            for peer in peers {
                self.send_heard(peer, senders.clone());
            }
        }
    }

    /// Sends the current heard set to a peer just admitted, and takes the report it sent
    /// before this node admitted it, if any.
    pub(super) fn report_heard_to(&mut self, peer: PeerId) {
        if let Some((epoch, senders)) = self.evidence.early.remove(&peer) {
            self.on_heard(peer, true, epoch, senders);
        }
        let senders: Vec<u32> = self.evidence.core.heard().iter().copied().collect();
        self.send_heard(peer, senders);
    }

    fn send_heard(&mut self, peer: PeerId, senders: Vec<u32>) {
        // Without a plane (or its key) this node hears nobody: the default every peer assumes.
        let Some(epoch) = self.node.plane_epoch().filter(|_| self.plane.is_some()) else {
            return;
        };
        let id = self
            .swarm
            .behaviour_mut()
            .push
            .inner()
            .send_request(&peer, AuthRequest::Heard { epoch, senders });
        self.evidence.reports.insert(id);
    }

    /// Whether `id` was a `Heard` report (now answered or failed); on failure the peer is
    /// taken to hear nobody (a version without the variant cannot decode it).
    pub(super) fn heard_report_done(
        &mut self,
        id: &OutboundRequestId,
        failed_peer: Option<PeerId>,
    ) -> bool {
        if !self.evidence.reports.remove(id) {
            return false;
        }
        if let Some(device) = failed_peer
            .and_then(|p| self.certs.get(&p))
            .map(|c| c.body.device)
        {
            self.evidence.core.clear_report(device, now_us());
        }
        if let Some(peer) = failed_peer {
            self.swarm.behaviour_mut().gossipsub.clear_heard(&peer);
        }
        true
    }

    /// A peer's `Heard` report (already acknowledged). Only an authenticated `member`'s
    /// counts; one from a peer not admitted yet waits for its admission.
    pub(super) fn on_heard(&mut self, peer: PeerId, member: bool, epoch: u32, senders: Vec<u32>) {
        let device = self.certs.get(&peer).map(|c| c.body.device);
        let Some(device) = device.filter(|_| member) else {
            let early = &mut self.evidence.early;
            if early.len() < MAX_EARLY_REPORTS || early.contains_key(&peer) {
                early.insert(peer, (epoch, senders));
            }
            return;
        };
        let ascending = senders.windows(2).all(|w| w[0] < w[1]);
        let senders: BTreeSet<u32> = if ascending && senders.len() <= MAX_HEARD_SENDERS {
            senders.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        // Gossipsub stops sending this peer full copies (and IHAVEs) of what it hears on the
        // plane, and of its own messages; repair covers what its plane loses. A report of
        // another plane epoch, or of nobody, gets full copies as before.
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        if self.node.plane_epoch() == Some(epoch) && !senders.is_empty() {
            let mut skip = senders.clone();
            skip.insert(device);
            gossipsub.set_heard(&peer, std::sync::Arc::new(skip));
        } else {
            gossipsub.clear_heard(&peer);
        }
        self.evidence
            .core
            .set_report(device, epoch, senders, now_us());
    }

    /// A peer's last connection closed: its report goes with it.
    pub(super) fn evidence_peer_gone(&mut self, peer: &PeerId) {
        self.evidence.early.remove(peer);
        if let Some(c) = self.certs.get(peer) {
            self.evidence.core.clear_report(c.body.device, now_us());
        }
    }

    /// The evidence's fields of a peer in `peers` (authenticated peers only).
    pub(super) fn evidence_peer_info(&self, info: &mut PeerInfo) {
        let Some(device) = info.device.filter(|_| info.authenticated) else {
            return;
        };
        let e = &self.evidence.core;
        info.path = Some(e.path(device).as_str().to_string());
        info.hears_me = Some(e.hears_me(device));
        info.heard = Some(e.hears(device));
        info.plane_loss = Some(e.plane_loss(device));
        info.path_since_us = e.since(device);
    }

    /// The evidence's fields of `status.plane`.
    pub(super) fn evidence_status(&self, info: &mut PlaneInfo) {
        let c = &self.evidence.counters;
        info.heard = self.evidence.core.heard().len();
        info.beacons_sent = c.sent;
        info.beacons_verified = c.verified;
        info.beacon_stale = c.stale;
        for (reason, n) in [
            ("plane_beacon_stale", c.stale),
            ("plane_beacon_signature", c.bad_signature),
            ("plane_beacon_unknown_sender", c.unknown_sender),
        ] {
            if n > 0 {
                info.dropped.insert(reason.to_string(), n);
            }
        }
    }
}
