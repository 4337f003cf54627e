//! What `peers` and `status` report: peer information and the daemon's status, with the
//! log's figures.
//!
//! Reads state only; it never changes what it reports on.

use std::sync::atomic::Ordering;

use super::Daemon;
use super::handle::{Handle, LoopGone};
use super::peer::PeerStatus;
use crate::control::{self, PeerCounts, PeerInfo, StatusInfo};
use crate::store::StoreHandle;

impl Daemon {
    pub(super) fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(id, p)| PeerInfo {
                peer_id: id.to_string(),
                name: p.cert.as_ref().map(|c| c.body.name.clone()),
                device: p.cert.as_ref().map(|c| c.body.device),
                addresses: p.addresses.iter().map(|a| a.to_string()).collect(),
                connected: p.connections > 0,
                authenticated: p.authenticated && p.connections > 0,
                relay_only: p.cert.as_ref().map(|c| c.body.relay_only),
                state: p.state().to_string(),
                since_us: p.since_us,
                profile: p.cert.as_ref().map(|c| c.body.profile.clone()),
                last_error: p.last_error.clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.name, &a.peer_id).cmp(&(&b.name, &b.peer_id)));
        v
    }

    pub(super) fn status(&self) -> StatusInfo {
        let cert = self.node.cert();
        StatusInfo {
            peer_id: self.swarm.local_peer_id().to_string(),
            device: cert.body.name.clone(),
            device_number: cert.body.device,
            domain_id: self.node.domain().to_hex(),
            domain_name: self.node.descriptor().body.name.clone(),
            relay_only: cert.body.relay_only,
            channels: self.node.readable_channels(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            peers: PeerCounts {
                connected: self.peers.values().filter(|p| p.connections > 0).count(),
                authenticated: self
                    .peers
                    .values()
                    .filter(|p| p.state() == PeerStatus::Authenticated)
                    .count(),
                asleep: self
                    .peers
                    .values()
                    .filter(|p| p.state() == PeerStatus::Asleep)
                    .count(),
                unreachable: self
                    .peers
                    .values()
                    .filter(|p| p.state() == PeerStatus::Unreachable)
                    .count(),
            },
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
            keys: self
                .node
                .key_state()
                .into_iter()
                .filter(|(channel, _, _)| *channel != crate::domain::NETWORK_KEY_CHANNEL)
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
