//! The plane's repair in the daemon (`proto/plane.md`, "Repair"): keeps what this node sent
//! or accepted in the recent ring, sends its tails, feeds loss detection, sends the repair
//! requests the core decides on, serves other members' requests and validates the replies.
//!
//! Only I/O and plumbing: which `pseq`s are missing is [`Gaps`]'s, whom to ask, when to ask
//! again and when to give up is [`Repairs`]'s, which reply items may be validated is
//! [`Repairs::screen`]'s. Nothing here validates an envelope itself (`take_envelope` does, as
//! for gossip), and a reply item the core did not keep is never parsed further.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};

use super::Daemon;
use crate::alert::Via;
use crate::control::PlaneInfo;
use crate::mesh::Timer;
use crate::node::{Arrival, Rejection};
use crate::plane::Kind;
use crate::plane::gaps::{Gaps, REORDER_HOLD_US};
use crate::plane::repair::{
    self, RepairItem, RepairRequest, RepairResponse, Repairs, TAIL_AFTER_US,
};
use crate::plane::ring::Ring;
use crate::replay::ReplayError;

/// Repair requests in flight at most (each ends by its reply or the 1 s timeout).
const MAX_IN_FLIGHT: usize = 256;

/// The plane's repair state in the daemon.
#[derive(Default)]
pub(super) struct PlaneRepair {
    gaps: Gaps,
    ring: Ring,
    repairs: Repairs<PeerId>,
    /// Requests in flight: to whom, and what they asked.
    in_flight: HashMap<OutboundRequestId, (PeerId, RepairRequest)>,
    /// When this node's last data datagram left, and how many tails followed it.
    last_data: Option<Instant>,
    tails_sent: usize,
    /// Envelopes handed out to other members' requests.
    served: u64,
    /// Tails heard (opened; whether they opened a gap or not).
    tails_heard: u64,
}

impl PlaneRepair {
    /// The repair part of `status.plane` (the other fields left at their defaults).
    pub(super) fn info(&self) -> PlaneInfo {
        let c = &self.repairs.counters;
        let ms = self.repairs.latency_ms();
        PlaneInfo {
            repairs_asked: c.asked,
            repair_requests: c.requests,
            repairs_served: self.served,
            tails_heard: self.tails_heard,
            repairs_received: c.received,
            repairs_given_up: c.given_up,
            repair_unrequested: c.unrequested,
            repair_ms_p50: ms.map(|m| m.0),
            repair_ms_p99: ms.map(|m| m.1),
            ..PlaneInfo::default()
        }
    }
}

impl Daemon {
    /// The plane's clock: µs since the daemon started (monotonic).
    fn plane_clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// This node sent `envelope` as `pseq`: keep it for repairs, and start its tails.
    pub(super) fn plane_sent(&mut self, sender: u32, pseq: u32, envelope: &[u8]) {
        let t = self.plane_clock();
        let now = Instant::now();
        let Some(p) = self.plane.as_mut() else { return };
        let r = &mut p.repair;
        r.ring
            .insert(t, sender, pseq, Kind::Alert, envelope.to_vec());
        r.last_data = Some(now);
        r.tails_sent = 0;
        self.timers.set(
            Timer::PlaneTail,
            now + Duration::from_micros(TAIL_AFTER_US[0]),
        );
    }

    /// An envelope from the plane that validation accepted: loss detection and the ring.
    pub(super) fn plane_accepted(&mut self, sender: u32, pseq: u32, envelope: &[u8]) {
        let t = self.plane_clock();
        let Some(p) = self.plane.as_mut() else { return };
        let r = &mut p.repair;
        r.gaps.on_data(sender, pseq, t);
        r.repairs.filled(sender, pseq, t, false);
        r.ring
            .insert(t, sender, pseq, Kind::Alert, envelope.to_vec());
        self.arm_plane_repair();
    }

    /// A datagram refused over its sender's rate limit: repair never asks for that `pseq`
    /// (catch-up may still fetch the envelope later, paced by this node), and a loss it
    /// reveals before it is asked for as any other.
    pub(super) fn plane_rate_limited(&mut self, sender: u32, pseq: u32) {
        let t = self.plane_clock();
        let Some(p) = self.plane.as_mut() else { return };
        p.repair.gaps.refuse(sender, pseq, t);
        self.arm_plane_repair();
    }

    /// A tail heard on the plane (not signed: it only opens gaps of a sender tracked).
    pub(super) fn plane_tail_heard(&mut self, sender: u32, pseq: u32) {
        let t = self.plane_clock();
        let Some(p) = self.plane.as_mut() else { return };
        p.repair.tails_heard += 1;
        p.repair.gaps.on_tail(sender, pseq, t);
        self.arm_plane_repair();
    }

    /// A beacon whose signature verified names its sender's last data `pseq`: a sender not
    /// tracked yet is tracked from there, so that the loss of its very next datagram (the first
    /// alert after a quiet spell) shows as a gap and is repaired, not left to catch-up.
    pub(super) fn plane_beacon_heard(&mut self, sender: u32, pseq: u32) {
        let t = self.plane_clock();
        let Some(p) = self.plane.as_mut() else { return };
        p.repair.gaps.on_beacon(sender, pseq, t);
        self.arm_plane_repair();
    }

    /// [`Timer::PlaneTail`]: sends the tail that is due and arms the next one.
    pub(super) fn plane_tails(&mut self, now: Instant) {
        let sender = self.node.cert().body.device;
        let domain = self.node.domain().0;
        let Some(p) = self.plane.as_mut() else { return };
        let Some(last) = p.repair.last_data else {
            return;
        };
        let at = |i: usize| {
            TAIL_AFTER_US
                .get(i)
                .map(|us| last + Duration::from_micros(*us))
        };
        if let Some(due) = at(p.repair.tails_sent)
            && due <= now
        {
            let pseq = p.last_pseq();
            p.seal_send(&domain, Kind::Tail, sender, pseq, &[]);
            p.repair.tails_sent += 1;
        }
        let next = at(p.repair.tails_sent);
        self.timers.set_or_cancel(Timer::PlaneTail, next);
    }

    /// Arms [`Timer::PlaneRepair`] for the next gap out of its hold, retry or give-up.
    fn arm_plane_repair(&mut self) {
        let Some(p) = self.plane.as_ref() else { return };
        let r = &p.repair;
        let next = [r.gaps.next_due(), r.repairs.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let at = next.map(|us| self.started + Duration::from_micros(us));
        self.timers.set_or_cancel(Timer::PlaneRepair, at);
    }

    /// [`Timer::PlaneRepair`]: asks for the gaps that fell due, retries, gives up (and then
    /// catches up with a peer).
    pub(super) fn plane_repair(&mut self) {
        let t = self.plane_clock();
        let ready: Vec<PeerId> = self.peers.ready().copied().collect();
        let node = &self.node;
        let Some(p) = self.plane.as_mut() else { return };
        let r = &mut p.repair;
        for (sender, pseqs) in r.gaps.due(t) {
            // A gap is due one reorder hold after it was seen.
            r.repairs
                .add(sender, &pseqs, t.saturating_sub(REORDER_HOLD_US), t);
        }
        // The sender itself first when it is connected and authenticated, then the others
        // (the evidence of who hears whom comes later).
        let out = r.repairs.poll(t, |sender| {
            let own = node
                .member(sender)
                .map(|c| c.peer_id())
                .filter(|id| ready.contains(id));
            own.into_iter()
                .chain(ready.iter().copied().filter(|id| Some(*id) != own))
                .collect()
        });
        let mut catch_up: Vec<PeerId> = Vec::new();
        for (sender, pseq, last) in out.given_up {
            r.gaps.give_up(sender, pseq);
            if let Some(peer) = last.or_else(|| ready.first().copied())
                && !catch_up.contains(&peer)
            {
                catch_up.push(peer);
            }
        }
        for (peer, request) in out.requests {
            if r.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            let id = self
                .swarm
                .behaviour_mut()
                .repair
                .inner()
                .send_request(&peer, request.clone());
            r.in_flight.insert(id, (peer, request));
        }
        for peer in catch_up {
            tracing::debug!(%peer, "plane: repair given up; catching up");
            self.start_sync(peer);
        }
        self.arm_plane_repair();
    }

    /// Serves a repair request from the ring, to authenticated members only.
    pub(super) fn on_repair_request(
        &mut self,
        peer: PeerId,
        request: RepairRequest,
        channel: ResponseChannel<RepairResponse>,
    ) {
        let member = self.member_now(&peer);
        let response = match self.plane.as_mut() {
            Some(p) if member => {
                let r = repair::serve(&p.repair.ring, &request);
                if let RepairResponse::Repaired { items, .. } = &r {
                    p.repair.served += items.len() as u64;
                }
                r
            }
            Some(_) => RepairResponse::Refused {
                reason: "not authenticated".into(),
            },
            None => RepairResponse::Refused {
                reason: "no plane".into(),
            },
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .repair
            .inner()
            .send_response(channel, response);
    }

    /// A repair request failed (timeout, closed stream): ask another peer at once.
    pub(super) fn on_repair_failure(&mut self, id: OutboundRequestId) {
        let t = self.plane_clock();
        let Some(p) = self.plane.as_mut() else { return };
        let Some((peer, asked)) = p.repair.in_flight.remove(&id) else {
            return;
        };
        tracing::debug!(%peer, "plane: repair request failed");
        for (sender, pseq) in asked.asked() {
            p.repair.repairs.retry_now(sender, pseq, t);
        }
        self.arm_plane_repair();
    }

    /// A reply: validates the items asked for (as [`Arrival::Repair`]), asks another peer
    /// at once for what the responder does not hold.
    pub(super) fn on_repair_response(&mut self, id: OutboundRequestId, response: RepairResponse) {
        let t = self.plane_clock();
        let Some(p) = self.plane.as_mut() else { return };
        let Some((peer, asked)) = p.repair.in_flight.remove(&id) else {
            return;
        };
        let items = match response {
            RepairResponse::Repaired { items, not_held } => {
                let wanted = asked.asked();
                for w in &not_held {
                    for pseq in w.pseqs().filter(|q| wanted.contains(&(w.sender, *q))) {
                        p.repair.repairs.retry_now(w.sender, pseq, t);
                    }
                }
                p.repair.repairs.screen(&asked, items)
            }
            RepairResponse::Refused { reason } => {
                tracing::debug!(%peer, %reason, "plane: repair refused");
                for (sender, pseq) in asked.asked() {
                    p.repair.repairs.retry_now(sender, pseq, t);
                }
                Vec::new()
            }
        };
        for item in items {
            self.take_repair(item);
        }
        self.arm_plane_repair();
    }

    /// Validates one screened reply item; an accepted one is fed to loss detection and the
    /// ring like a plane arrival. One this node already holds, or whose channel it does not
    /// carry, is no longer missing either.
    fn take_repair(&mut self, item: RepairItem) {
        let RepairItem {
            sender,
            pseq,
            envelope,
        } = item;
        let channel = crate::envelope::Envelope::parse(&envelope)
            .ok()
            .map(|e| e.header.channel)
            .filter(|c| self.node.carries_log_channel(*c));
        let carried = channel.is_some();
        let kept = envelope.clone();
        let outcome = carried.then(|| self.take_envelope(envelope, Via::Repair, Arrival::Repair));
        let t = self.plane_clock();
        let Some(p) = self.plane.as_mut() else { return };
        let r = &mut p.repair;
        match outcome {
            Some(Ok(())) => {
                r.gaps.on_data(sender, pseq, t);
                r.repairs.filled(sender, pseq, t, true);
                r.ring.insert(t, sender, pseq, Kind::Alert, kept.clone());
                // Evidence counts it as repaired; gossip peers that do not hear the sender
                // get it forwarded, as a plane arrival would be.
                self.evidence_on_repaired(sender, pseq);
                if let Some(ch) = channel {
                    self.forward_to_gossip(false, ch, kept);
                }
            }
            None | Some(Err(Rejection::Replay(ReplayError::Duplicate))) => {
                r.gaps.give_up(sender, pseq);
                r.repairs.filled(sender, pseq, t, false);
            }
            Some(Err(e)) => {
                tracing::debug!(reason = e.reason(), error = %e, "plane: repaired envelope refused");
            }
        }
    }
}
