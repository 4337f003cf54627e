//! The command protocol between the control side (control clients, catch-up sessions, rule
//! actions, voice) and the event loop: [`Cmd`] messages with oneshot replies, sent through a
//! [`Handle`] that has one method per command; "the loop is gone" is one error, [`LoopGone`].
//!
//! Owns no state of the loop's; it must never touch the swarm or the node directly.

use libp2p::{PeerId, request_response};
use tokio::sync::{mpsc, oneshot};

use super::catchup::SyncError;
use super::profile::{ProfileChange, ProfileError};
use super::tags::ConnectError;
use super::voice;
use crate::alert::{AlertBody, ReceivedAlert, Severity};
use crate::control::{self, PeerInfo, Reply, StatusInfo};
use crate::net::{SyncRequest, SyncResponse};
use crate::node::{SealError, Sealed};
use crate::store::{Pruned, StoredEnvelope};
use crate::sync::Id;
use crate::update::UpdateError;

/// Messages from control clients to the event loop.
pub(super) enum Cmd {
    Seal {
        channel: String,
        body: AlertBody,
        reply: oneshot::Sender<Result<Sealed, SealError>>,
    },
    SealDirect {
        to: String,
        body: AlertBody,
        reply: oneshot::Sender<Result<Sealed, SealError>>,
    },
    /// Declares this device in emergency, or clears it.
    Emergency {
        text: String,
        channel: String,
        clear: bool,
        reply: oneshot::Sender<Result<Sealed, String>>,
    },
    /// Seals an update or a cancellation of an alert.
    Change {
        id: String,
        change: super::states::Asked,
        reply: oneshot::Sender<Result<Sealed, String>>,
    },
    Publish {
        sealed: Sealed,
        reply: oneshot::Sender<usize>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Status {
        reply: oneshot::Sender<StatusInfo>,
    },
    /// Dials a tagged device.
    Connect {
        tag: crate::tag::DeviceTag,
        reply: oneshot::Sender<Result<Reply, ConnectError>>,
    },
    /// Shows or changes this device's profile.
    Profile {
        change: ProfileChange,
        reply: oneshot::Sender<Result<crate::cert::Profile, ProfileError>>,
    },
    /// Who got an alert.
    Receipts {
        id: String,
        reply: oneshot::Sender<Result<control::ReceiptsInfo, String>>,
    },
    /// Acknowledges an alert.
    Ack {
        id: String,
        text: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Searches member profiles.
    Search {
        q: crate::node::Search,
        reply: oneshot::Sender<Vec<control::DeviceInfo>>,
    },
    /// Applies and spreads a domain update.
    Update {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Reply, UpdateError>>,
    },
    /// Opens envelopes from the log for `history`.
    Open {
        envelopes: Vec<StoredEnvelope>,
        channel: Option<String>,
        reply: oneshot::Sender<Vec<ReceivedAlert>>,
    },
    /// A catch-up session asks the loop to send a request to a peer.
    SyncSend {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, SyncError>>,
    },
    /// A spawned responder hands back its answer.
    SyncRespond {
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    /// Envelopes fetched by catch-up, to validate like any other.
    Ingest {
        envelopes: Vec<Vec<u8>>,
        /// How many were accepted, and the reason of the first refused as forged (the slice
        /// stops there).
        reply: oneshot::Sender<(usize, Option<&'static str>)>,
    },
    /// Drops the ids this node has refused before from a list to fetch.
    NotRefused {
        ids: Vec<Id>,
        reply: oneshot::Sender<Vec<Id>>,
    },
    /// A catch-up session ended.
    SyncDone {
        peer: PeerId,
        fetched: usize,
        error: Option<SyncError>,
    },
    /// Retention removed envelopes: raise replay floors so they stay refused.
    Pruned(Pruned),
    /// SIGHUP: the rules file, read again off the event loop.
    ReloadRules(crate::rules::Rules),
    /// Voice: floor claims, frames, releases of this device's talk sessions.
    Voice(voice::VoiceCmd),
}

/// The event loop is gone (the daemon is stopping): a command could not be sent, or its reply
/// never came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the daemon is shutting down")]
pub(super) struct LoopGone;

/// The control side's handle on the event loop: one method per [`Cmd`]. Cloned freely; the
/// loop ends when it stops reading, after which every method returns [`LoopGone`].
#[derive(Clone)]
pub(super) struct Handle {
    cmds: mpsc::Sender<Cmd>,
}

impl Handle {
    /// A handle and the receiving end the event loop reads, holding up to `capacity` commands.
    pub(super) fn channel(capacity: usize) -> (Self, mpsc::Receiver<Cmd>) {
        let (cmds, rx) = mpsc::channel(capacity);
        (Self { cmds }, rx)
    }

    /// Sends the command `make` builds around a reply sender and waits for the reply.
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Cmd,
    ) -> Result<T, LoopGone> {
        let (tx, rx) = oneshot::channel();
        self.tell(make(tx)).await?;
        rx.await.map_err(|_| LoopGone)
    }

    /// Sends a command that has no reply.
    async fn tell(&self, cmd: Cmd) -> Result<(), LoopGone> {
        self.cmds.send(cmd).await.map_err(|_| LoopGone)
    }

    /// Seals an alert for a channel.
    pub(super) async fn seal(
        &self,
        channel: String,
        body: AlertBody,
    ) -> Result<Result<Sealed, SealError>, LoopGone> {
        self.request(|reply| Cmd::Seal {
            channel,
            body,
            reply,
        })
        .await
    }

    /// Seals a directed message for one device.
    pub(super) async fn seal_direct(
        &self,
        to: String,
        body: AlertBody,
    ) -> Result<Result<Sealed, SealError>, LoopGone> {
        self.request(|reply| Cmd::SealDirect { to, body, reply })
            .await
    }

    /// Declares this device in emergency (or with `clear`, ends it).
    pub(super) async fn emergency(
        &self,
        text: String,
        channel: String,
        clear: bool,
    ) -> Result<Result<Sealed, String>, LoopGone> {
        self.request(|reply| Cmd::Emergency {
            text,
            channel,
            clear,
            reply,
        })
        .await
    }

    /// Seals an update or a cancellation of the alert `id`.
    pub(super) async fn change(
        &self,
        id: String,
        change: super::states::Asked,
    ) -> Result<Result<Sealed, String>, LoopGone> {
        self.request(|reply| Cmd::Change { id, change, reply })
            .await
    }

    /// Publishes a sealed alert; returns the authenticated peers connected at the time.
    pub(super) async fn publish(&self, sealed: Sealed) -> Result<usize, LoopGone> {
        self.request(|reply| Cmd::Publish { sealed, reply }).await
    }

    /// What `peers` shows.
    pub(super) async fn peers(&self) -> Result<Vec<PeerInfo>, LoopGone> {
        self.request(|reply| Cmd::Peers { reply }).await
    }

    /// The loop's part of `status` (without the log's figures).
    pub(super) async fn status(&self) -> Result<StatusInfo, LoopGone> {
        self.request(|reply| Cmd::Status { reply }).await
    }

    /// Dials a tagged device; answers once it authenticated and matched the tag, or not.
    pub(super) async fn connect(
        &self,
        tag: crate::tag::DeviceTag,
    ) -> Result<Result<Reply, ConnectError>, LoopGone> {
        self.request(|reply| Cmd::Connect { tag, reply }).await
    }

    /// Shows or changes this device's profile.
    pub(super) async fn profile(
        &self,
        change: ProfileChange,
    ) -> Result<Result<crate::cert::Profile, ProfileError>, LoopGone> {
        self.request(|reply| Cmd::Profile { change, reply }).await
    }

    /// Who got an alert.
    pub(super) async fn receipts(
        &self,
        id: String,
    ) -> Result<Result<control::ReceiptsInfo, String>, LoopGone> {
        self.request(|reply| Cmd::Receipts { id, reply }).await
    }

    /// Acknowledges an alert.
    pub(super) async fn ack(
        &self,
        id: String,
        text: String,
    ) -> Result<Result<(), String>, LoopGone> {
        self.request(|reply| Cmd::Ack { id, text, reply }).await
    }

    /// Searches member profiles.
    pub(super) async fn search(
        &self,
        q: crate::node::Search,
    ) -> Result<Vec<control::DeviceInfo>, LoopGone> {
        self.request(|reply| Cmd::Search { q, reply }).await
    }

    /// Applies and spreads a domain update.
    pub(super) async fn update(
        &self,
        bytes: Vec<u8>,
    ) -> Result<Result<Reply, UpdateError>, LoopGone> {
        self.request(|reply| Cmd::Update { bytes, reply }).await
    }

    /// Opens envelopes from the log (those of `channel` only, if given).
    pub(super) async fn open(
        &self,
        envelopes: Vec<StoredEnvelope>,
        channel: Option<String>,
    ) -> Result<Vec<ReceivedAlert>, LoopGone> {
        self.request(|reply| Cmd::Open {
            envelopes,
            channel,
            reply,
        })
        .await
    }

    /// Sends a catch-up request to a peer and waits for its answer.
    pub(super) async fn sync_send(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<Result<SyncResponse, SyncError>, LoopGone> {
        self.request(|reply| Cmd::SyncSend {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Hands a spawned responder's answer back to the loop, which sends it.
    pub(super) async fn sync_respond(
        &self,
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) -> Result<(), LoopGone> {
        self.tell(Cmd::SyncRespond { channel, response }).await
    }

    /// Validates envelopes fetched by catch-up; returns how many were accepted, and the reason
    /// of the first refused as forged (the rest of the slice is dropped).
    pub(super) async fn ingest(
        &self,
        envelopes: Vec<Vec<u8>>,
    ) -> Result<(usize, Option<&'static str>), LoopGone> {
        self.request(|reply| Cmd::Ingest { envelopes, reply }).await
    }

    /// Drops the ids this node has refused before.
    pub(super) async fn not_refused(&self, ids: Vec<Id>) -> Result<Vec<Id>, LoopGone> {
        self.request(|reply| Cmd::NotRefused { ids, reply }).await
    }

    /// Tells the loop a catch-up session ended.
    pub(super) async fn sync_done(
        &self,
        peer: PeerId,
        fetched: usize,
        error: Option<SyncError>,
    ) -> Result<(), LoopGone> {
        self.tell(Cmd::SyncDone {
            peer,
            fetched,
            error,
        })
        .await
    }

    /// Tells the loop what retention removed.
    pub(super) async fn pruned(&self, p: Pruned) -> Result<(), LoopGone> {
        self.tell(Cmd::Pruned(p)).await
    }

    /// Hands the loop the rules read again on SIGHUP.
    pub(super) async fn reload_rules(&self, r: crate::rules::Rules) -> Result<(), LoopGone> {
        self.tell(Cmd::ReloadRules(r)).await
    }

    /// Claims the floor of a channel for a talk session.
    pub(super) async fn voice_claim(
        &self,
        channel: String,
        severity: Severity,
        queue: bool,
    ) -> Result<Result<voice::Claimed, voice::Busy>, LoopGone> {
        self.request(|reply| {
            Cmd::Voice(voice::VoiceCmd::Claim {
                channel,
                severity,
                queue,
                reply,
            })
        })
        .await
    }

    /// Seals the next frame of this device's burst.
    pub(super) async fn voice_frame(
        &self,
        channel: u32,
        burst: u64,
        opus: Vec<u8>,
    ) -> Result<Result<Sealed, voice::FloorError>, LoopGone> {
        self.request(|reply| {
            Cmd::Voice(voice::VoiceCmd::Frame {
                channel,
                burst,
                opus,
                reply,
            })
        })
        .await
    }

    /// Ends this device's burst.
    pub(super) async fn voice_release(
        &self,
        channel: u32,
        burst: u64,
    ) -> Result<Result<voice::Released, voice::FloorError>, LoopGone> {
        self.request(|reply| {
            Cmd::Voice(voice::VoiceCmd::Release {
                channel,
                burst,
                reply,
            })
        })
        .await
    }

    /// Publishes a sealed voice packet on its channel's voice topic.
    pub(super) async fn voice_publish(&self, sealed: Sealed) -> Result<(), LoopGone> {
        self.tell(Cmd::Voice(voice::VoiceCmd::Publish { sealed }))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handle_on_a_stopped_loop_says_loop_gone() {
        let (handle, rx) = Handle::channel(4);
        drop(rx);
        assert_eq!(handle.peers().await.err(), Some(LoopGone));
        assert_eq!(handle.pruned(Pruned::default()).await, Err(LoopGone));
    }

    #[tokio::test]
    async fn a_command_dropped_unanswered_says_loop_gone() {
        let (handle, mut rx) = Handle::channel(4);
        let asked = tokio::spawn(async move { handle.status().await.err() });
        // The loop takes the command and stops without answering.
        assert!(matches!(rx.recv().await, Some(Cmd::Status { .. })));
        drop(rx);
        assert_eq!(asked.await.ok().flatten(), Some(LoopGone));
    }

    #[tokio::test]
    async fn a_handle_method_sends_its_command_and_returns_the_reply() {
        let (handle, mut rx) = Handle::channel(4);
        let asked = tokio::spawn(async move { handle.not_refused(vec![(1, 2), (3, 4)]).await });
        match rx.recv().await {
            Some(Cmd::NotRefused { mut ids, reply }) => {
                ids.retain(|id| id.0 != 1);
                let _ = reply.send(ids);
            }
            _ => panic!("expected NotRefused"),
        }
        assert_eq!(asked.await.ok(), Some(Ok(vec![(3, 4)])));
    }

    #[test]
    fn loop_gone_reads_as_before() {
        // Control clients have always been told this text when the daemon stops.
        assert_eq!(LoopGone.to_string(), "the daemon is shutting down");
    }
}
