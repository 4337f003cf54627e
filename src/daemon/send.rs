//! Sending an alert or a directed message: seal on the loop, cover its sequence number by the
//! store's lease, publish, store durably, reply.
//!
//! An alert is never published before its sequence number is covered.

use super::handle::{Handle, LoopGone};
use super::now_us;
use crate::alert::AlertBody;
use crate::control::Reply;
use crate::store::{StoreError, StoreHandle, StoredEnvelope};

/// Why an alert or a directed message was not sent, or not logged. The text is the `error`
/// reply's message.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// The node would not seal it (no grant, over the rate limit, too long, revoked…).
    #[error(transparent)]
    Seal(#[from] crate::node::SealError),
    /// The sealed envelope does not parse back.
    #[error(transparent)]
    Envelope(#[from] crate::envelope::EnvelopeError),
    /// The store could not extend the sequence lease: nothing was published.
    #[error("alert not sent: could not reserve its sequence number: {0}")]
    Lease(StoreError),
    /// Published, but not in this node's log.
    #[error(
        "alert {id} was sent to {peers} peers but could not be stored in this node's log: {source}"
    )]
    NotStored {
        /// The alert's id.
        id: String,
        /// Peers it was published to.
        peers: usize,
        /// Why the store failed.
        source: StoreError,
    },
    /// The event loop is gone.
    #[error(transparent)]
    LoopGone(#[from] LoopGone),
}

/// Seals a directed message for one device, then [`store_and_publish`].
pub(super) async fn send_direct(
    cmds: &Handle,
    store: &StoreHandle,
    to: String,
    body: AlertBody,
) -> Result<Reply, SendError> {
    let sealed = cmds.seal_direct(to, body).await??;
    store_and_publish(cmds, store, sealed).await
}

/// Seals an alert for a channel (then [`store_and_publish`]; `serve_client` pipelines the
/// second half).
pub(super) async fn seal_alert(
    cmds: &Handle,
    channel: String,
    body: AlertBody,
) -> Result<crate::node::Sealed, SendError> {
    Ok(cmds.seal(channel, body).await??)
}

/// Publishes a sealed alert or directed message once the sequence lease covers its seq, then
/// stores it durably; replies when it is in the log. The disk is not on the alert's path: the
/// lease is normally already on disk (see [`StoreHandle::cover_seq`]).
pub(super) async fn store_and_publish(
    cmds: &Handle,
    store: &StoreHandle,
    sealed: crate::node::Sealed,
) -> Result<Reply, SendError> {
    let env = crate::envelope::Envelope::parse(&sealed.bytes)?;
    store
        .cover_seq(sealed.seq)
        .await
        .map_err(SendError::Lease)?;
    let entry = StoredEnvelope {
        sender: env.header.sender,
        seq: sealed.seq,
        channel: sealed.channel,
        received_at_us: now_us(),
        bytes: sealed.bytes.clone(),
    };
    let (id, seq, channel) = (sealed.id.clone(), sealed.seq, sealed.channel_name.clone());
    let peers = cmds.publish(sealed).await?;
    store
        .put_durable(entry)
        .await
        .map_err(|source| SendError::NotStored {
            id: id.clone(),
            peers,
            source,
        })?;
    Ok(Reply::Sent {
        id,
        channel,
        seq,
        peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_read_as_the_replies_always_did() {
        // The texts the control socket sent before the errors were typed.
        let e = StoreError::Closed;
        assert_eq!(
            SendError::Lease(StoreError::Closed).to_string(),
            format!("alert not sent: could not reserve its sequence number: {e}")
        );
        let (id, peers) = ("2a-7".to_string(), 3);
        assert_eq!(
            SendError::NotStored {
                id: id.clone(),
                peers,
                source: StoreError::Closed,
            }
            .to_string(),
            format!(
                "alert {id} was sent to {peers} peers but could not be stored in this node's log: {e}"
            )
        );
        assert_eq!(
            SendError::from(LoopGone).to_string(),
            "the daemon is shutting down"
        );
    }
}
