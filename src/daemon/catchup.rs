//! Catch-up (anti-entropy): sessions that pull what this node lacks from a member, and the
//! answers to other members' requests.
//!
//! Sessions and responders run in their own tasks and reach the loop only through its
//! [`Handle`]; they never validate envelopes themselves (the loop does,
//! like gossiped ones).

use libp2p::{PeerId, request_response};

use super::handle::Handle;
use super::{Daemon, now_us};
use crate::net;
use crate::net::{SyncRequest, SyncResponse};
use crate::store::{StoreError, StoreHandle};
use crate::sync::Id;

/// Catch-up activity, reported by `status`.
#[derive(Debug, Clone, Default)]
pub(super) struct CatchUpCounters {
    pub(super) sessions: u64,
    pub(super) failed: u64,
    pub(super) fetched: u64,
    pub(super) served: u64,
}

impl Daemon {
    /// Starts a catch-up session with `peer` unless one is running.
    pub(super) fn start_sync(&mut self, peer: PeerId) {
        if !self.syncing.insert(peer) {
            return;
        }
        self.catch_up.sessions += 1;
        let cutoff = now_us().saturating_sub(self.retention.max_age_us);
        tokio::spawn(sync_session(
            peer,
            cutoff,
            self.node.carried_log_channels(),
            self.store.clone(),
            self.handle.clone(),
        ));
    }

    /// Serves a catch-up request from `peer` (members only) without blocking the loop.
    pub(super) fn on_sync_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: request_response::ResponseChannel<SyncResponse>,
    ) {
        let member = self.member_now(&peer);
        let grants: Option<Vec<u32>> = self.certs.get(&peer).filter(|_| member).map(|c| {
            let granted: Vec<u32> = std::iter::once(crate::node::DIRECT_CHANNEL)
                .chain(c.body.grants.iter().map(|g| g.channel))
                .collect();
            crate::receipt::with_receipts(&granted)
        });
        let Some(grants) = grants else {
            let refused = SyncResponse::Refused {
                reason: "not authenticated".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .inner()
                .send_response(channel, refused);
            return;
        };
        // Only channels both carry and the requester's certificate grants.
        let mine = self.node.carried_log_channels();
        self.catch_up.served += 1;
        let (store, tx) = (self.store.clone(), self.handle.clone());
        tokio::spawn(async move {
            let response = match request {
                SyncRequest::Digest {
                    cutoff,
                    channels,
                    after,
                    buckets,
                } => {
                    let mut channels: Vec<u32> = channels
                        .into_iter()
                        .filter(|c| grants.contains(c) && mine.contains(c))
                        .collect();
                    channels.sort_unstable();
                    channels.dedup();
                    let q = crate::store::DiffQuery {
                        theirs: buckets,
                        cutoff,
                        channels,
                        after,
                        limit: crate::sync::MAX_DIFF_IDS,
                    };
                    store.diff(q).await.map(SyncResponse::Diff)
                }
                SyncRequest::Fetch { ids } => {
                    let ids: Vec<Id> = ids.into_iter().take(crate::sync::MAX_FETCH_IDS).collect();
                    store.get(ids, net::SYNC_FETCH_BYTES).await.map(|envs| {
                        SyncResponse::Envelopes {
                            envelopes: envs
                                .into_iter()
                                .filter(|e| {
                                    grants.contains(&e.channel) && mine.contains(&e.channel)
                                })
                                .map(|e| e.bytes)
                                .collect(),
                        }
                    })
                }
            };
            let response = response.unwrap_or_else(|e| SyncResponse::Refused {
                reason: e.to_string(),
            });
            let _ = tx.sync_respond(channel, response).await;
        });
    }
}

/// Why a catch-up session ended early, or a request of it failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum SyncError {
    /// The event loop is gone.
    #[error("daemon stopping")]
    Stopping,
    /// The peer is no longer connected.
    #[error("peer disconnected")]
    Disconnected,
    /// The request failed on its way (timeout, stream closed, …).
    #[error(transparent)]
    Failed(#[from] request_response::OutboundFailure),
    /// The peer refused (its reason, as it gave it).
    #[error("refused: {0}")]
    Refused(String),
    /// The peer answered with another kind of reply than the request asks for.
    #[error("unexpected reply {0:?}")]
    Unexpected(Box<SyncResponse>),
    /// The diff has too many ids or does not move forward.
    #[error("diff out of bounds or not advancing")]
    OutOfBounds,
    /// A fetch reply carried envelopes that were not asked for (or one id twice, or an
    /// unparsable one): an honest responder never does; the responder is refused.
    #[error("{0} envelopes not asked for in a fetch reply")]
    Unrequested(usize),
    /// A fetched envelope failed a check no stored envelope can fail (its signature, its
    /// encoding, its domain): an honest responder stored only what it had validated, so the
    /// responder is refused.
    #[error("a fetched envelope was refused as {0}")]
    Forged(&'static str),
    /// This node's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One catch-up session: pull from `peer` everything this node lacks (digest → diff → fetch,
/// repeated while the diff says there is more), validating each envelope like a gossiped one.
async fn sync_session(
    peer: PeerId,
    cutoff: u64,
    channels: Vec<u32>,
    store: StoreHandle,
    cmds: Handle,
) {
    let result = pull_from(peer, cutoff, channels, &store, &cmds).await;
    let (fetched, error) = match result {
        Ok(n) => (n, None),
        Err((n, e)) => (n, Some(e)),
    };
    let _ = cmds.sync_done(peer, fetched, error).await;
}

async fn sync_request(
    cmds: &Handle,
    peer: PeerId,
    request: SyncRequest,
) -> Result<SyncResponse, SyncError> {
    match cmds
        .sync_send(peer, request)
        .await
        .map_err(|_| SyncError::Stopping)??
    {
        SyncResponse::Refused { reason } => Err(SyncError::Refused(reason)),
        r => Ok(r),
    }
}

async fn pull_from(
    peer: PeerId,
    cutoff: u64,
    channels: Vec<u32>,
    store: &StoreHandle,
    cmds: &Handle,
) -> Result<usize, (usize, SyncError)> {
    let mut fetched = 0;
    let mut after: Option<crate::sync::Key> = None;
    // Bounded: each round moves `after` forward; a peer cannot keep us here forever.
    for _ in 0..1000 {
        let (cutoff, buckets) = store
            .digest(cutoff, channels.clone())
            .await
            .map_err(|e| (fetched, e.into()))?;
        let request = SyncRequest::Digest {
            cutoff,
            channels: channels.clone(),
            after,
            buckets,
        };
        let diff = match sync_request(cmds, peer, request)
            .await
            .map_err(|e| (fetched, e))?
        {
            SyncResponse::Diff(d) => d,
            other => return Err((fetched, SyncError::Unexpected(Box::new(other)))),
        };
        if diff.keys.len() > crate::sync::MAX_DIFF_IDS
            || (after.is_some() && !diff.keys.is_empty() && diff.keys.last().copied() <= after)
        {
            return Err((fetched, SyncError::OutOfBounds));
        }
        if diff.keys.is_empty() {
            break;
        }
        after = diff.keys.last().copied();
        let missing = store
            .missing(diff.keys)
            .await
            .map_err(|e| (fetched, e.into()))?;
        // Ids this node refused for good after verifying them (do not open, too old) are not
        // fetched again.
        let missing = cmds
            .not_refused(missing)
            .await
            .map_err(|_| (fetched, SyncError::Stopping))?;
        for chunk in missing.chunks(crate::sync::MAX_FETCH_IDS) {
            let mut want: Vec<Id> = chunk.to_vec();
            // A responder sends what fits in its byte budget; ask again for the rest, and
            // give up on what it no longer holds.
            while !want.is_empty() {
                let envelopes =
                    match sync_request(cmds, peer, SyncRequest::Fetch { ids: want.clone() })
                        .await
                        .map_err(|e| (fetched, e))?
                    {
                        SyncResponse::Envelopes { envelopes } => envelopes,
                        other => return Err((fetched, SyncError::Unexpected(Box::new(other)))),
                    };
                if envelopes.is_empty() {
                    break;
                }
                // Only what was asked for reaches validation, in slices that let the loop
                // serve everything else between them; anything else ends the session.
                let screened = crate::sync::screen_reply(&want, envelopes);
                if screened.unrequested > 0 {
                    return Err((fetched, SyncError::Unrequested(screened.unrequested)));
                }
                let mut kept = screened.kept.into_iter();
                loop {
                    let slice: Vec<Vec<u8>> =
                        kept.by_ref().take(crate::sync::INGEST_SLICE).collect();
                    if slice.is_empty() {
                        break;
                    }
                    let (accepted, forged) = cmds
                        .ingest(slice)
                        .await
                        .map_err(|_| (fetched, SyncError::Stopping))?;
                    fetched += accepted;
                    if let Some(reason) = forged {
                        return Err((fetched, SyncError::Forged(reason)));
                    }
                }
                if screened.still_wanted.len() == want.len() {
                    break;
                }
                want = screened.still_wanted;
            }
        }
        if !diff.more {
            break;
        }
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_errors_read_as_the_log_always_said() {
        assert_eq!(SyncError::Stopping.to_string(), "daemon stopping");
        assert_eq!(SyncError::Disconnected.to_string(), "peer disconnected");
        assert_eq!(
            SyncError::Refused("not authenticated".into()).to_string(),
            "refused: not authenticated"
        );
        assert_eq!(
            SyncError::OutOfBounds.to_string(),
            "diff out of bounds or not advancing"
        );
        let other = SyncResponse::Refused { reason: "x".into() };
        assert_eq!(
            SyncError::Unexpected(Box::new(other.clone())).to_string(),
            format!("unexpected reply {other:?}")
        );
    }
}
