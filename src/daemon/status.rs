//! What `peers` and `status` report: peer information and the daemon's status, with the
//! log's figures.
//!
//! Reads state only; it never changes what it reports on.

use std::sync::atomic::Ordering;

use super::Daemon;
use super::handle::{Handle, LoopGone};
use crate::control::{self, PeerCounts, PeerInfo, StatusInfo};
use crate::mesh::{Peer, PeerStatus};
use crate::store::StoreHandle;
use libp2p::{Multiaddr, PeerId};

impl Daemon {
    pub(super) fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(id, p)| {
                let cert = self.certs.get(id);
                PeerInfo {
                    peer_id: id.to_string(),
                    name: cert.map(|c| c.body.name.clone()),
                    device: cert.map(|c| c.body.device),
                    addresses: p.addresses().iter().map(|a| a.to_string()).collect(),
                    connected: p.connections() > 0,
                    authenticated: p.is_ready(),
                    relay_only: cert.map(|c| c.body.relay_only),
                    state: self.peer_state(id, p).to_string(),
                    since_us: p.since_us(),
                    profile: cert.map(|c| c.body.profile.clone()),
                    last_error: p.last_error().map(str::to_owned),
                    emergency: cert.is_some_and(|c| self.emergencies.get(c.body.device).is_some()),
                    ..PeerInfo::default()
                }
            })
            .map(|mut info| {
                self.evidence_peer_info(&mut info);
                info
            })
            .collect();
        v.sort_by(|a, b| (&a.name, &a.peer_id).cmp(&(&b.name, &b.peer_id)));
        v
    }

    /// How many peers `f` holds for.
    fn count(&self, f: impl Fn(&Peer<Multiaddr>) -> bool) -> usize {
        self.peers.iter().filter(|(_, p)| f(p)).count()
    }

    /// How many peers are in `state` (as `peers` shows it).
    fn count_state(&self, state: PeerStatus) -> usize {
        self.peers
            .iter()
            .filter(|(id, p)| self.peer_state(id, p) == state)
            .count()
    }

    /// The state `peers` shows ([`crate::mesh::PeerBook::status`]).
    fn peer_state(&self, id: &PeerId, p: &Peer<Multiaddr>) -> PeerStatus {
        self.peers.status(id).unwrap_or(p.status())
    }

    pub(super) fn status(&self) -> StatusInfo {
        let cert = self.node.cert();
        StatusInfo {
            peer_id: self.swarm.local_peer_id().to_string(),
            device: cert.body.name.clone(),
            device_number: cert.body.device,
            max_severity: Some(self.node.max_severity())
                .filter(|s| *s != crate::alert::Severity::Extreme),
            dispatcher: self.node.is_dispatcher(),
            escalations_pending: self.escalations.len() + self.backups.len(),
            emergency: self.emergency_infos().0,
            emergencies: self.emergency_infos().1,
            domain_id: self.node.domain().to_hex(),
            domain_name: self.node.descriptor().body.name.clone(),
            relay_only: cert.body.relay_only,
            channels: self.node.readable_channels(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            peers: PeerCounts {
                connected: self.count(|p| p.connections() > 0),
                authenticated: self.count(|p| p.status() == PeerStatus::Authenticated),
                asleep: self.count(|p| p.status() == PeerStatus::Asleep),
                unreachable: self.count_state(PeerStatus::Unreachable),
                standby: self.count_state(PeerStatus::Standby),
                unauthenticated: self.swarm.behaviour().admission.waiting(),
                denied: self.swarm.behaviour().admission.denied(),
            },
            max_peers: self.peers.max_peers().unwrap_or(0),
            counters: self.node.counters().into(),
            catch_up: control::CatchUpInfo {
                sessions: self.catch_up.sessions,
                failed: self.catch_up.failed,
                fetched: self.catch_up.fetched,
                served: self.catch_up.served,
            },
            store: control::StoreInfo::default(),
            actions: control::ActionInfo {
                rules: self.rules.rules.len(),
                matched: self.actions.matched.load(Ordering::Relaxed),
                hooks_run: self.actions.hooks_run.load(Ordering::Relaxed),
                sent: self.actions.sent.load(Ordering::Relaxed),
                failed: self.actions.failed.load(Ordering::Relaxed),
            },
            uptime_s: self.started.elapsed().as_secs(),
            metrics: self.metrics_url.clone(),
            revision: self.node.revision(),
            revoked: self.node.is_revoked_self(),
            plane: {
                let mut p = self.plane_status();
                self.evidence_status(&mut p);
                p
            },
            keys: self
                .node
                .key_state()
                .into_iter()
                .filter(|(channel, _, _)| {
                    *channel != crate::domain::NETWORK_KEY_CHANNEL
                        && *channel != crate::domain::PLANE_CHANNEL
                })
                .map(|(channel, epoch, c)| control::KeyInfo {
                    channel,
                    epoch,
                    rotate_secs: c.rotate_secs,
                    oldest_period: c.period,
                    current: self.node.current_epoch(channel) == Some(epoch),
                })
                .collect(),
        }
    }
}

/// The daemon's status with the log's figures.
pub(super) async fn full_status(
    cmds: &Handle,
    store: &StoreHandle,
) -> Result<StatusInfo, LoopGone> {
    let mut s = cmds.status().await?;
    if let Ok((envelopes, bytes)) = store.stats().await {
        s.store = control::StoreInfo {
            envelopes,
            bytes,
            dropped: store.dropped(),
        };
    }
    Ok(s)
}
