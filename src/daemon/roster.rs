//! Roster and presence: learning member certificates and presence records from members,
//! and passing them on in the batches the mesh core's [`Pushes`](crate::mesh::Pushes)
//! makes.
//!
//! Only authenticated members are told about members; nothing here authenticates a peer.

use std::time::Instant;

use libp2p::PeerId;

use super::addr::{is_loopback, is_unspecified};
use super::{Daemon, now_us};
use crate::mesh::Timer;
use crate::net::{self, AuthRequest};
use crate::presence::Presence;

impl Daemon {
    /// Queues newly learned member certificates for every authenticated peer but `except`
    /// (sent by [`Daemon::flush_pushes`]). Each receiver forwards only what is new to it, so a
    /// certificate floods the mesh once.
    pub(super) fn push_roster(&mut self, certs: Vec<Vec<u8>>, except: PeerId) {
        let due = self.pushes.push_roster(certs, except, Instant::now());
        self.timers.set_or_cancel(Timer::Push, due);
    }

    /// Queues presence records for every authenticated peer but `except`.
    pub(super) fn push_presence(&mut self, records: Vec<Vec<u8>>, except: Option<PeerId>) {
        let due = self.pushes.push_presence(records, except, Instant::now());
        self.timers.set_or_cancel(Timer::Push, due);
    }

    /// Sends what `push_roster` and `push_presence` queued: one request of each kind per peer
    /// per batch (more only past [`net::MAX_ROSTER_PUSH`] items). Pushing each item at once
    /// cost every connection a stream per item and per peer admitted: when 50 members start
    /// together that is thousands of streams, far past [`net::MAX_CONCURRENT_STREAMS`] per
    /// connection, and the hellos refused with them left members unauthenticated for a
    /// minute. Batches go out [`PUSH_BATCH`](crate::mesh::PUSH_BATCH) after the first
    /// item, at most one per [`PUSH_EVERY`](crate::mesh::PUSH_EVERY): a newcomer's address
    /// is not held up for a whole tick, and a start-up's items still go in a few requests.
    pub(super) fn flush_pushes(&mut self) {
        let targets: Vec<PeerId> = self.peers.ready().copied().collect();
        for batch in self.pushes.flush(targets, Instant::now()) {
            for chunk in batch.roster.chunks(net::MAX_ROSTER_PUSH) {
                self.swarm.behaviour_mut().push.inner().send_request(
                    &batch.peer,
                    AuthRequest::Roster {
                        certs: chunk.to_vec(),
                    },
                );
            }
            self.send_presence(batch.peer, &batch.presence);
        }
        // A push queued after the timer fired in this same wake (the tick's presence refresh)
        // went out with this batch: the timer must not fire again for it.
        self.timers.set_or_cancel(Timer::Push, self.pushes.due());
    }

    pub(super) fn send_presence(&mut self, peer: PeerId, records: &[Vec<u8>]) {
        for chunk in records.chunks(net::MAX_ROSTER_PUSH) {
            let records = chunk.to_vec();
            self.swarm
                .behaviour_mut()
                .push
                .inner()
                .send_request(&peer, AuthRequest::Presence { records });
        }
    }

    /// Re-signs this device's presence when its addresses or profile changed, and pushes it.
    pub(super) fn refresh_presence(&mut self) {
        if !self.presence_dirty {
            return;
        }
        self.presence_dirty = false;
        let mut addrs: Vec<String> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .filter(|a| !is_loopback(a) && !is_unspecified(a))
            .map(|a| a.to_string())
            .collect();
        addrs.sort();
        addrs.dedup();
        let p = self
            .node
            .issue_presence(addrs, self.profile_override.clone(), now_us());
        self.push_presence(vec![p.as_bytes().to_vec()], None);
    }

    /// Tells the peer book which peers hold a member certificate that is not revoked: only
    /// they take places in the bounded overlay (a stranger's mDNS announcements do not).
    pub(super) fn sync_roster(&mut self) {
        let desc = self.node.descriptor();
        let members: Vec<PeerId> = self
            .node
            .roster()
            .filter(|c| !desc.is_revoked(c.body.device))
            .map(|c| c.peer_id())
            .collect();
        self.peers.set_roster(members);
    }

    /// Learns certificates sent by an authenticated peer; returns those that were new.
    pub(super) fn learn_roster(&mut self, from: PeerId, certs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let now = now_us() / 1_000_000;
        let mut new = vec![];
        for c in certs.iter().take(net::MAX_ROSTER_SHARE) {
            match self.node.learn_certificate(c, now) {
                Ok(true) => new.push(c.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(peer = %from, error = %e, "roster certificate ignored")
                }
            }
        }
        if !new.is_empty() {
            self.learn_waiting_presence();
            self.sync_roster();
        }
        new
    }

    /// Learns the presence records that arrived before their device's certificate (a
    /// newcomer is sent every record and the roster at once, on parallel streams), acts on
    /// them and passes them on.
    pub(super) fn learn_waiting_presence(&mut self) {
        let learned = self.node.learn_waiting_presence();
        for r in &learned {
            self.presence_learned(r);
        }
        self.push_presence(learned, None);
    }

    /// A presence record new to this node: its addresses may be new (a fresh reservation,
    /// a member this node has not met), so they are tried at once.
    pub(super) fn presence_learned(&mut self, record: &[u8]) {
        if let Ok(device) = Presence::claimed_device(record)
            && let Some(peer) = self.node.member(device).map(|c| c.peer_id())
        {
            self.peers.circuit_reset(&peer);
            self.dial_from_presence(device, peer);
        }
    }
}
