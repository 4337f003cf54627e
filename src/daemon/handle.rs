//! The command protocol between the control side (control clients, catch-up sessions, rule
//! actions, voice) and the event loop: [`Cmd`] messages with oneshot replies.
//!
//! Owns no state of the loop's; it must never touch the swarm or the node directly.

use libp2p::{PeerId, request_response};
use tokio::sync::{mpsc, oneshot};

use super::profile::ProfileChange;
use super::voice;
use crate::alert::{AlertBody, ReceivedAlert};
use crate::control::{self, PeerInfo, Reply, StatusInfo};
use crate::net::{SyncRequest, SyncResponse};
use crate::node::Sealed;
use crate::store::{Pruned, StoredEnvelope};
use crate::sync::Id;

/// Messages from control clients to the event loop.
pub(super) enum Cmd {
    Seal {
        channel: String,
        body: AlertBody,
        reply: oneshot::Sender<Result<Sealed, String>>,
    },
    SealDirect {
        to: String,
        body: AlertBody,
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
        reply: oneshot::Sender<Result<Reply, String>>,
    },
    /// Shows or changes this device's profile.
    Profile {
        change: ProfileChange,
        reply: oneshot::Sender<Result<crate::cert::Profile, String>>,
    },
    /// Searches member profiles.
    Search {
        q: crate::node::Search,
        reply: oneshot::Sender<Vec<control::DeviceInfo>>,
    },
    /// Applies and spreads a domain update.
    Update {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Reply, String>>,
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
        reply: oneshot::Sender<Result<SyncResponse, String>>,
    },
    /// A spawned responder hands back its answer.
    SyncRespond {
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    /// Envelopes fetched by catch-up, to validate like any other.
    Ingest {
        envelopes: Vec<Vec<u8>>,
        reply: oneshot::Sender<usize>,
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
        error: Option<String>,
    },
    /// Retention removed envelopes: raise replay floors so they stay refused.
    Pruned(Pruned),
    /// SIGHUP: the rules file, read again off the event loop.
    ReloadRules(crate::rules::Rules),
    /// Voice: floor claims, frames, releases of this device's talk sessions.
    Voice(voice::VoiceCmd),
}

pub(super) async fn ask<T>(
    cmds: &mpsc::Sender<Cmd>,
    cmd: Cmd,
    rx: oneshot::Receiver<T>,
) -> Result<T, String> {
    cmds.send(cmd)
        .await
        .map_err(|_| "the daemon is shutting down".to_string())?;
    rx.await
        .map_err(|_| "the daemon is shutting down".to_string())
}
