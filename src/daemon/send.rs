//! Sending an alert or a directed message: seal on the loop, cover its sequence number by the
//! store's lease, publish, store durably, reply.
//!
//! An alert is never published before its sequence number is covered.

use super::handle::Handle;
use super::now_us;
use crate::alert::AlertBody;
use crate::control::Reply;
use crate::store::{StoreHandle, StoredEnvelope};

/// Seals a directed message for one device, then [`store_and_publish`].
pub(super) async fn send_direct(
    cmds: &Handle,
    store: &StoreHandle,
    to: String,
    body: AlertBody,
) -> Result<Reply, String> {
    let sealed = cmds
        .seal_direct(to, body)
        .await
        .map_err(|e| e.to_string())??;
    store_and_publish(cmds, store, sealed).await
}

/// Seals an alert for a channel (then [`store_and_publish`]; `serve_client` pipelines the
/// second half).
pub(super) async fn seal_alert(
    cmds: &Handle,
    channel: String,
    body: AlertBody,
) -> Result<crate::node::Sealed, String> {
    cmds.seal(channel, body).await.map_err(|e| e.to_string())?
}

/// Publishes a sealed alert or directed message once the sequence lease covers its seq, then
/// stores it durably; replies when it is in the log. The disk is not on the alert's path: the
/// lease is normally already on disk (see [`StoreHandle::cover_seq`]).
pub(super) async fn store_and_publish(
    cmds: &Handle,
    store: &StoreHandle,
    sealed: crate::node::Sealed,
) -> Result<Reply, String> {
    let env = crate::envelope::Envelope::parse(&sealed.bytes).map_err(|e| e.to_string())?;
    store
        .cover_seq(sealed.seq)
        .await
        .map_err(|e| format!("alert not sent: could not reserve its sequence number: {e}"))?;
    let entry = StoredEnvelope {
        sender: env.header.sender,
        seq: sealed.seq,
        channel: sealed.channel,
        received_at_us: now_us(),
        bytes: sealed.bytes.clone(),
    };
    let (id, seq, channel) = (sealed.id.clone(), sealed.seq, sealed.channel_name.clone());
    let peers = cmds.publish(sealed).await.map_err(|e| e.to_string())?;
    store.put_durable(entry).await.map_err(|e| {
        format!(
            "alert {id} was sent to {peers} peers but could not be stored in this node's log: {e}"
        )
    })?;
    Ok(Reply::Sent {
        id,
        channel,
        seq,
        peers,
    })
}
