//! The daemon's timers ([`TimerTable`](crate::mesh::TimerTable)): the 250 ms tick (voice,
//! `connect` deadlines, presence, block expiry, authentication timeouts, due re-dials, the
//! peer table's bound, handing free memory back after traffic), anti-entropy, static and
//! broker dials, retention, the roster and presence pushes, and the plane's tails and
//! repairs.
//!
//! Runs on the loop when the table's earliest deadline passes: each duty is cheap or spawned.
//! Never decides when a timer is due; the table does.

use std::collections::HashSet;
use std::time::Instant;

use libp2p::PeerId;
use rand_core::RngCore;

use super::addr::strip_p2p;
use super::tags::{ConnectError, PendingTag};
use super::{AUTH_TIMEOUT, Daemon, now_us};
use crate::mesh::Timer;

impl Daemon {
    /// Once traffic has stopped, hands the allocator's free pages back to the system. A burst
    /// leaves megabytes of freed buffers, queues and cached messages inside glibc's heaps, which
    /// it keeps by default; a small device wants them back. Checked at every tick: trims at each
    /// of [`TRIM_AFTER_QUIET`](crate::mesh::TRIM_AFTER_QUIET) after the last message
    /// ([`Quiet`](crate::mesh::Quiet)), so never in the middle of a burst.
    fn release_memory_after_traffic(&mut self, now: Instant) {
        let c = self.node.counters();
        let traffic = c.alerts_sent
            + c.alerts_received
            + c.alerts_relayed
            + c.rejected.values().sum::<u64>()
            + c.voice_sent
            + c.voice_received
            + c.voice_relayed;
        if !self.quiet.check(traffic, now) {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    /// Runs the timers that are due, re-arming the periodic ones. The duties run in the order
    /// the single tick always ran them, whichever timers fired together.
    pub(super) fn on_timers(&mut self) {
        let now = Instant::now();
        let due = self.timers.poll(now);
        let fired = |t: Timer| due.contains(&t);
        if fired(Timer::Tick) {
            self.voice_tick();
            self.release_memory_after_traffic(now);
            self.expire_pending_tags(now);
        }
        if fired(Timer::AntiEntropy) {
            self.anti_entropy();
        }
        if fired(Timer::Tick) {
            self.refresh_presence();
        }
        if fired(Timer::Static) {
            self.redial_static();
        }
        if fired(Timer::Circuit) {
            self.dial_via_brokers();
        }
        if fired(Timer::Prune) {
            self.prune();
        }
        if fired(Timer::Tick) {
            self.check_peers(now);
        }
        if fired(Timer::Push) {
            self.flush_pushes();
        }
        if fired(Timer::Tick) {
            self.plane_tick(now);
            self.evidence_tick(now);
            self.send_receipts();
            self.escalate_due();
            self.watch_tick();
            self.emergencies_check_rights();
        }
        if fired(Timer::Beacon) {
            self.send_beacon(now);
        }
        if fired(Timer::PlaneTail) {
            self.plane_tails(now);
        }
        if fired(Timer::PlaneRepair) {
            self.plane_repair();
        }
    }

    /// Answers the `connect` commands whose peer did not authenticate in time.
    fn expire_pending_tags(&mut self, now: Instant) {
        let (late, rest): (Vec<PendingTag>, Vec<PendingTag>) =
            std::mem::take(&mut self.pending_tags)
                .into_iter()
                .partition(|t| t.deadline <= now);
        self.pending_tags = rest;
        for t in late {
            let why = self
                .peers
                .get(&t.peer)
                .and_then(|p| p.last_error().map(str::to_owned))
                .unwrap_or_else(|| "no answer".into());
            let _ = t.reply.send(Err(ConnectError::Timeout {
                secs: AUTH_TIMEOUT.as_secs(),
                why,
            }));
        }
    }

    /// Re-sends unacknowledged updates and catches up with one random authenticated peer.
    fn anti_entropy(&mut self) {
        self.resend_updates();
        let candidates: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| p.is_ready() && !self.syncing.contains(id))
            .map(|(id, _)| *id)
            .collect();
        if !candidates.is_empty() {
            let pick = (rand_core::OsRng.next_u32() as usize) % candidates.len();
            self.start_sync(candidates[pick]);
        }
    }

    /// Dials the static peers again, and asks connected brokers for reservations again.
    fn redial_static(&mut self) {
        self.dial_static_peers();
        // Reservations refused or expired while a broker stayed connected: ask again.
        let brokers: Vec<PeerId> = self.brokers.iter().copied().collect();
        for b in brokers {
            if self.peers.get(&b).is_some_and(|p| p.is_ready()) {
                self.reserve_on_broker(b);
            }
        }
    }

    /// Erases old keys and runs retention.
    fn prune(&mut self) {
        self.erase_keys();
        let (store, tx, retention) = (self.store.clone(), self.handle.clone(), self.retention);
        tokio::spawn(async move {
            match store.prune(now_us(), retention).await {
                Ok(p) => {
                    let _ = tx.pruned(p).await;
                }
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            }
        });
    }

    /// Peers never closed as surplus: the brokers, and the static peers (`--peer`, named by
    /// peer id or reached at the address given).
    fn unbounded_peers(&self) -> HashSet<PeerId> {
        let mut keep: HashSet<PeerId> = self.brokers.iter().copied().collect();
        for a in &self.static_peers {
            let named = a.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            keep.extend(named);
            let bare = strip_p2p(a.clone());
            keep.extend(
                self.peers
                    .iter()
                    .filter(|(_, p)| p.dialled_addr() == Some(&bare))
                    .map(|(id, _)| *id),
            );
        }
        keep
    }

    /// The tick's peer checks: block expiry, authentication timeouts, due re-dials, the peer
    /// table's bound.
    fn check_peers(&mut self, now: Instant) {
        // A certificate that expired on a live connection ends it, within a tick: validity
        // is not only a handshake matter.
        let now_s = now_us() / 1_000_000;
        let expired: Vec<(PeerId, u64)> = self
            .certs
            .iter()
            .filter(|(p, c)| {
                c.body.not_after < now_s && self.peers.get(p).is_some_and(|s| s.is_authenticated())
            })
            .map(|(p, c)| (*p, c.body.not_after))
            .collect();
        for (p, at) in expired {
            self.refuse(p, format!("certificate expired at {at} (Unix seconds)"));
        }
        // A revoked or expired device stays blocked: nothing it can do makes it a member
        // again (a renewed certificate comes with a new identity).
        let (certs, descriptor) = (&self.certs, self.node.descriptor());
        let tick = self.peers.tick(now, |p| {
            certs
                .get(p)
                .is_some_and(|c| descriptor.is_revoked(c.body.device) || c.body.not_after < now_s)
        });
        for p in tick.unblocked {
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
        }
        for p in tick.late {
            // Not proof of anything: drop the connection without blocking, re-dial later.
            tracing::info!(peer = %p, "peer did not authenticate in time");
            let _ = self.swarm.disconnect_peer_id(p);
        }
        for d in tick.dials {
            self.start_dial(d);
        }
        // Under the bound: one surplus connection at a time (never a static peer or broker).
        let keep = self.unbounded_peers();
        if let Some(p) = self.peers.surplus(now, |p| keep.contains(p)) {
            tracing::info!(peer = %p, "closing a connection the bound on connections does not want");
            let _ = self.swarm.disconnect_peer_id(p);
        }
        self.send_probes(now);
        // The oldest disconnected strangers beyond the bound were forgotten.
        for p in tick.forgotten {
            self.certs.remove(&p);
        }
    }
}
