//! The periodic tick: anti-entropy, static and broker dials, retention, block expiry,
//! authentication timeouts, due re-dials, the peer table's bound, and handing free memory
//! back after traffic.
//!
//! Runs on the loop every 250 ms: each duty is cheap or spawned.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use rand_core::RngCore;

use super::tags::{ConnectError, PendingTag};
use super::{ANTI_ENTROPY_EVERY, AUTH_TIMEOUT, BLOCK_FOR, Daemon, TRIM_AFTER_QUIET, now_us};

/// Peers remembered (connected ones are never forgotten).
const MAX_PEERS: usize = 4096;

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl Daemon {
    /// Once traffic has stopped, hands the allocator's free pages back to the system. A burst
    /// leaves megabytes of freed buffers, queues and cached messages inside glibc's heaps, which
    /// it keeps by default; a small device wants them back. Checked at every tick: trims at each
    /// of [`TRIM_AFTER_QUIET`] after the last message, so never in the middle of a burst.
    fn release_memory_after_traffic(&mut self, now: Instant) {
        let c = self.node.counters();
        let traffic = c.alerts_sent
            + c.alerts_received
            + c.alerts_relayed
            + c.rejected.values().sum::<u64>()
            + c.voice_sent
            + c.voice_received
            + c.voice_relayed;
        let (seen, since, trims) = self.traffic_marks;
        if traffic != seen {
            self.traffic_marks = (traffic, now, 0);
            return;
        }
        match TRIM_AFTER_QUIET.get(trims) {
            Some(quiet) if now.duration_since(since) >= *quiet => self.traffic_marks.2 += 1,
            _ => return,
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    pub(super) fn on_tick(&mut self) {
        self.voice_tick();
        let now = Instant::now();
        self.release_memory_after_traffic(now);
        let (late, rest): (Vec<PendingTag>, Vec<PendingTag>) =
            std::mem::take(&mut self.pending_tags)
                .into_iter()
                .partition(|t| t.deadline <= now);
        self.pending_tags = rest;
        for t in late {
            let why = self
                .peers
                .get(&t.peer)
                .and_then(|p| p.last_error.clone())
                .unwrap_or_else(|| "no answer".into());
            let _ = t.reply.send(Err(ConnectError::Timeout {
                secs: AUTH_TIMEOUT.as_secs(),
                why,
            }));
        }
        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + ANTI_ENTROPY_EVERY;
            self.resend_updates();
            let candidates: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(id, p)| {
                    p.authenticated && p.connections > 0 && !self.syncing.contains(id)
                })
                .map(|(id, _)| *id)
                .collect();
            if !candidates.is_empty() {
                let pick = (rand_core::OsRng.next_u32() as usize) % candidates.len();
                self.start_sync(candidates[pick]);
            }
        }
        self.refresh_presence();
        if now >= self.next_static {
            self.next_static = now + ANTI_ENTROPY_EVERY;
            self.dial_static_peers();
            // Reservations refused or expired while a broker stayed connected: ask again.
            let brokers: Vec<PeerId> = self.brokers.iter().copied().collect();
            for b in brokers {
                if self
                    .peers
                    .get(&b)
                    .is_some_and(|p| p.authenticated && p.connections > 0)
                {
                    self.reserve_on_broker(b);
                }
            }
        }
        if now >= self.next_circuit {
            self.next_circuit = now + Duration::from_secs(2);
            self.dial_via_brokers();
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
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
        // Unblock peers whose block expired.
        let expired: Vec<PeerId> = self
            .blocked
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            // A revoked device stays blocked: nothing it can do makes it a member again.
            let revoked = self
                .peers
                .get(&p)
                .and_then(|s| s.cert.as_ref())
                .is_some_and(|c| self.node.descriptor().is_revoked(c.body.device));
            if revoked {
                self.blocked.insert(p, now + BLOCK_FOR);
                continue;
            }
            self.blocked.remove(&p);
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
        }
        // Disconnect peers that did not authenticate in time.
        let late: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.connections > 0
                    && !p.authenticated
                    && p.connected_at.is_some_and(|t| now - t > AUTH_TIMEOUT)
            })
            .map(|(id, _)| *id)
            .collect();
        for p in late {
            // Not proof of anything: drop the connection without blocking, re-dial later.
            tracing::info!(peer = %p, "peer did not authenticate in time");
            if let Some(st) = self.peers.get_mut(&p) {
                st.last_error = Some("did not authenticate in time".into());
            }
            let _ = self.swarm.disconnect_peer_id(p);
        }
        // Due dials and re-dials.
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connections == 0 && p.redial_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for p in due {
            self.dial(p);
        }
        // Forget the oldest disconnected strangers beyond the bound.
        if self.peers.len() > MAX_PEERS {
            let drop: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| p.connections == 0 && !p.member)
                .map(|(id, _)| *id)
                .take(self.peers.len() - MAX_PEERS)
                .collect();
            for p in drop {
                self.peers.remove(&p);
            }
        }
    }
}
