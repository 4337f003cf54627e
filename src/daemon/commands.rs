//! The event loop's side of [`Cmd`]: carries out what control clients, catch-up sessions and
//! rule actions ask for.
//!
//! Runs on the loop: it must never wait (slow work is spawned and answers with a `Cmd`).

use super::catchup::SyncError;
use super::handle::Cmd;
use super::{Daemon, now_us};
use crate::net;

impl Daemon {
    pub(super) fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::SealDirect { to, body, reply } => {
                let r = self.node.seal_direct(&to, &body, now_us());
                let _ = reply.send(r);
            }
            Cmd::Seal {
                channel,
                body,
                reply,
            } => {
                let r = self.node.seal_alert(&channel, &body, now_us());
                if let Ok(sealed) = &r {
                    self.schedule_escalation(sealed, &body);
                }
                let _ = reply.send(r);
            }
            Cmd::Emergency {
                text,
                channel,
                clear,
                reply,
            } => {
                let _ = reply.send(self.emergency(text, channel, clear));
            }
            Cmd::Change { id, change, reply } => {
                let _ = reply.send(self.change_alert(&id, change));
            }
            Cmd::Publish { sealed, reply } => {
                self.sent_here(&sealed);
                let topic = net::topic(
                    self.node.domain(),
                    crate::receipt::base_channel(sealed.channel),
                );
                let n = self.peers.ready().count();
                // The plane's copy first: it is the one most members keep.
                let on_plane = self.plane_send(crate::plane::Kind::Alert, &sealed.bytes);
                if on_plane && self.plane.as_ref().is_some_and(|p| p.plane_only()) {
                    let _ = reply.send(n);
                    return;
                }
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .inner()
                    .publish(topic, sealed.bytes)
                {
                    Ok(_) => {
                        let _ = reply.send(n);
                    }
                    Err(e) => {
                        tracing::info!(id = %sealed.id, error = %e, "alert stored, not published now");
                        let _ = reply.send(0);
                    }
                }
            }
            Cmd::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Cmd::Voice(v) => self.on_voice_cmd(v),
            Cmd::ReloadRules(r) => {
                tracing::info!(rules = r.rules.len(), "rules reloaded");
                self.rules = r;
            }
            Cmd::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Cmd::Connect { tag, reply } => self.connect_tag(tag, reply),
            Cmd::Profile { change, reply } => {
                let _ = reply.send(self.change_profile(change));
            }
            Cmd::Receipts { id, reply } => {
                let _ = reply.send(self.receipts_of(&id));
            }
            Cmd::Ack { id, text, reply } => {
                let _ = reply.send(self.ack(&id, text));
            }
            Cmd::Search { q, reply } => {
                let _ = reply.send(self.search(&q));
            }
            Cmd::Update { bytes, reply } => {
                let _ = reply.send(self.take_update(bytes, None));
            }
            Cmd::Open {
                envelopes,
                channel,
                reply,
            } => {
                let mut alerts: Vec<_> = envelopes
                    .iter()
                    .filter_map(|e| self.node.open_stored(&e.bytes, e.received_at_us).ok())
                    .filter_map(Result::ok)
                    .filter(|a| channel.as_ref().is_none_or(|c| *c == a.channel))
                    .map(|a| *a)
                    .collect();
                self.with_states(&mut alerts);
                let _ = reply.send(alerts);
            }
            Cmd::SyncSend {
                peer,
                request,
                reply,
            } => {
                if self.swarm.is_connected(&peer) {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .inner()
                        .send_request(&peer, request);
                    self.sync_pending.insert(id, reply);
                } else {
                    let _ = reply.send(Err(SyncError::Disconnected));
                }
            }
            Cmd::SyncRespond { channel, response } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .inner()
                    .send_response(channel, response);
            }
            Cmd::Ingest { envelopes, reply } => {
                let mut accepted = 0;
                let mut forged = None;
                for e in envelopes {
                    match self.ingest(e) {
                        Ok(true) => accepted += 1,
                        Ok(false) => {}
                        Err(reason) => {
                            forged = Some(reason);
                            break;
                        }
                    }
                }
                let _ = reply.send((accepted, forged));
            }
            Cmd::NotRefused { mut ids, reply } => {
                ids.retain(|id| !self.refused_ids.contains(id));
                let _ = reply.send(ids);
            }
            Cmd::SyncDone {
                peer,
                fetched,
                error,
            } => {
                self.syncing.remove(&peer);
                self.catch_up.fetched += fetched as u64;
                match error {
                    Some(
                        e @ (super::catchup::SyncError::Unrequested(_)
                        | super::catchup::SyncError::Forged(_)),
                    ) => {
                        self.catch_up.failed += 1;
                        self.refuse(peer, format!("catch-up: {e}"));
                    }
                    Some(e) => {
                        self.catch_up.failed += 1;
                        tracing::debug!(%peer, error = %e, "catch-up ended early");
                    }
                    None if fetched > 0 => {
                        tracing::info!(%peer, fetched, "caught up");
                    }
                    None => {}
                }
            }
            Cmd::Pruned(p) => {
                for (sender, floor) in p.floors {
                    self.node.replay().raise_floor(sender, floor);
                }
                if p.removed > 0 {
                    tracing::info!(removed = p.removed, "retention removed old envelopes");
                }
            }
        }
    }
}
