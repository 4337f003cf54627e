//! The control socket's server: one task per client, reading requests (JSON lines) and
//! writing replies, pipelining `alert` requests, streaming `listen` and `history`.
//!
//! Talks to the event loop only through its [`Handle`]; the reply texts
//! are the control protocol and must not change.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

use super::handle::{Handle, LoopGone};
use super::profile::{ProfileChange, ProfileError};
use super::send::{SendError, seal_alert, send_direct, store_and_publish};
use super::status::full_status;
use super::tags::ConnectError;
use super::voice;
use crate::alert::{AlertBody, ReceivedAlert};
use crate::control::{self, Reply, Request};
use crate::store::{StoreError, StoreHandle, StoredEnvelope};
use crate::sync::Id;
use crate::update::UpdateError;

/// Why a control request failed. The text is the `error` reply's message (the control
/// protocol: clients and tests read it).
#[derive(Debug, thiserror::Error)]
pub(super) enum RequestError {
    /// An alert or directed message was not sent or not logged.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The event loop is gone.
    #[error(transparent)]
    LoopGone(#[from] LoopGone),
    /// The tag does not parse.
    #[error(transparent)]
    BadTag(#[from] crate::tag::TagError),
    /// The tagged device was not connected.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The profile was not changed.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The update is not hex.
    #[error("the update is not hex: {0}")]
    NotHex(#[from] hex::FromHexError),
    /// The update was not applied.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A `frame` or `release` outside a talk session.
    #[error("not talking: send `talk` first and wait for `floor_granted`")]
    NotTalking,
    /// The log could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A reply could not be written.
    #[error(transparent)]
    Write(#[from] std::io::Error),
    /// The loop refused the request, saying why.
    #[error("{0}")]
    Refused(String),
}

pub(super) async fn accept_loop(
    listener: UnixListener,
    cmds: Handle,
    store: StoreHandle,
    alerts: broadcast::Sender<Arc<ReceivedAlert>>,
    voice: broadcast::Sender<Arc<Reply>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_client(
                    stream,
                    cmds.clone(),
                    store.clone(),
                    alerts.clone(),
                    voice.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

pub(super) async fn write_reply(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    r: &Reply,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut line = serde_json::to_string(r).map_err(std::io::Error::other)?;
    line.push('\n');
    w.write_all(line.as_bytes()).await
}

/// Alert requests of one control connection in flight at once at most.
const PIPELINE: usize = 64;

/// Request bytes of one control connection in flight at once at most (beyond, the replies are
/// written before more is read).
const PIPELINE_BYTES: usize = 1024 * 1024;

pub(super) async fn serve_client(
    stream: UnixStream,
    cmds: Handle,
    store: StoreHandle,
    alerts: broadcast::Sender<Arc<ReceivedAlert>>,
    voice_tx: broadcast::Sender<Arc<Reply>>,
) {
    use futures::StreamExt as _;
    let (r, mut w) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(r);
    let mut buf = String::new();
    // Pipelined `alert` requests: a client may send many before reading a reply (`alert
    // --stdin`). Those already received are taken together, up to PIPELINE, and run
    // concurrently (their durable puts share a commit); replies keep the request order.
    type Pending<'a> =
        std::pin::Pin<Box<dyn Future<Output = Result<Reply, SendError>> + Send + 'a>>;
    let mut pending: futures::stream::FuturesOrdered<Pending<'_>> =
        futures::stream::FuturesOrdered::new();
    // Bytes of the requests in `pending`: drained early past PIPELINE_BYTES, so a client
    // sending huge lines cannot make the daemon hold 64 of them.
    let mut pending_bytes = 0usize;
    // Every alert taken is carried through (sealed, stored, published) even when the client
    // went away: a reply that cannot be written ends the connection after the others finish.
    macro_rules! drain {
        () => {
            let mut gone = false;
            while let Some(reply) = pending.next().await {
                let reply = reply.unwrap_or_else(|e| Reply::Error {
                    message: e.to_string(),
                });
                if !gone && write_reply(&mut w, &reply).await.is_err() {
                    gone = true;
                }
            }
            #[allow(unused_assignments)]
            {
                pending_bytes = 0;
            }
            if gone {
                return;
            }
        };
    }
    loop {
        // Another whole request already received: take it first (up to the limits).
        let more = reader.buffer().contains(&b'\n');
        if !pending.is_empty()
            && (!more || pending.len() >= PIPELINE || pending_bytes >= PIPELINE_BYTES)
        {
            drain!();
        }
        let line = match control::read_line(&mut reader, &mut buf).await {
            Ok(Some(l)) => l.to_string(),
            Ok(None) => {
                drain!();
                return;
            }
            Err(e) => {
                drain!();
                let _ = write_reply(
                    &mut w,
                    &Reply::Error {
                        message: e.to_string(),
                    },
                )
                .await;
                return;
            }
        };
        let req: Request = match serde_json::from_str(&line) {
            Ok(Request::Alert {
                channel,
                severity,
                kind,
                text,
                location,
                attributes,
                update: None,
            }) => {
                let body = AlertBody {
                    severity,
                    kind,
                    text,
                    location,
                    attributes,
                    reference: None,
                };
                pending_bytes += line.len();
                // Sealed here, in request order (so sequence numbers ascend with the
                // requests); stored and published concurrently.
                match seal_alert(&cmds, channel, body).await {
                    Ok(sealed) => {
                        pending.push_back(Box::pin(store_and_publish(&cmds, &store, sealed)))
                    }
                    Err(e) => {
                        pending.push_back(Box::pin(std::future::ready(Err::<Reply, SendError>(e))))
                    }
                }
                continue;
            }
            Ok(r) => {
                drain!();
                r
            }
            Err(e) => {
                drain!();
                let msg = format!("bad request: {e}");
                if write_reply(&mut w, &Reply::Error { message: msg })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let reply = match req {
            Request::Listen { voice } => {
                listen(
                    &mut reader,
                    &mut w,
                    alerts.subscribe(),
                    voice_tx.subscribe(),
                    voice,
                )
                .await;
                return;
            }
            Request::Talk {
                channel,
                severity,
                queue,
            } => {
                if !voice::talk(&mut reader, &mut w, &cmds, &store, channel, severity, queue).await
                {
                    return;
                }
                continue;
            }
            Request::Frame { .. } | Request::Release => Err(RequestError::NotTalking),
            // Taken above, pipelined.
            Request::Alert {
                update: Some(id),
                severity,
                kind,
                text,
                location,
                attributes,
                ..
            } => {
                let change = super::states::Asked::Update {
                    severity,
                    kind,
                    text,
                    location,
                    attributes,
                };
                change_alert(&cmds, &store, id, change).await
            }
            Request::Emergency {
                text,
                channel,
                clear,
            } => match cmds.emergency(text, channel, clear).await {
                Ok(Ok(sealed)) => store_and_publish(&cmds, &store, sealed)
                    .await
                    .map_err(RequestError::from),
                Ok(Err(message)) => Err(RequestError::Refused(message)),
                Err(e) => Err(e.into()),
            },
            Request::Cancel { id, text } => {
                change_alert(&cmds, &store, id, super::states::Asked::Cancel { text }).await
            }
            Request::Alert { update: None, .. } => continue,
            Request::Send {
                to,
                severity,
                kind,
                text,
                attributes,
            } => {
                let body = AlertBody {
                    severity,
                    kind,
                    text,
                    location: None,
                    attributes,
                    reference: None,
                };
                send_direct(&cmds, &store, to, body)
                    .await
                    .map_err(RequestError::from)
            }
            Request::Peers => cmds
                .peers()
                .await
                .map(|peers| Reply::Peers { peers })
                .map_err(RequestError::from),
            Request::Connect { tag } => match crate::tag::DeviceTag::parse(&tag) {
                Err(e) => Err(e.into()),
                Ok(tag) => match cmds.connect(tag).await {
                    Ok(r) => r.map_err(RequestError::from),
                    Err(e) => Err(e.into()),
                },
            },
            Request::Profile {
                kind,
                location,
                tags,
                sleeps,
                reset,
            } => {
                let change = ProfileChange {
                    kind,
                    location,
                    tags,
                    sleeps,
                    reset,
                };
                match cmds.profile(change).await {
                    Ok(Ok(profile)) => Ok(Reply::Profile { profile }),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(e.into()),
                }
            }
            Request::Search {
                kind,
                near,
                radius_m,
                tags,
            } => {
                let near = match (near, radius_m) {
                    (Some(at), Some(r)) if r >= 0.0 => Some((at, r)),
                    (Some(at), None) => Some((at, 1_000.0)),
                    (None, None) => None,
                    _ => {
                        let m = "--radius needs --near LAT,LON and a radius of 0 or more metres";
                        let _ = write_reply(&mut w, &Reply::Error { message: m.into() }).await;
                        continue;
                    }
                };
                let q = crate::node::Search { kind, near, tags };
                cmds.search(q)
                    .await
                    .map(|devices| Reply::Devices { devices })
                    .map_err(RequestError::from)
            }
            Request::Receipts { id } => match cmds.receipts(id).await {
                Ok(Ok(info)) => Ok(Reply::Receipts(Box::new(info))),
                Ok(Err(message)) => {
                    let _ = write_reply(&mut w, &Reply::Error { message }).await;
                    continue;
                }
                Err(e) => Err(e.into()),
            },
            Request::Ack { id, text } => match cmds.ack(id.clone(), text).await {
                Ok(Ok(())) => Ok(Reply::Acked { id }),
                Ok(Err(message)) => {
                    let _ = write_reply(&mut w, &Reply::Error { message }).await;
                    continue;
                }
                Err(e) => Err(e.into()),
            },
            Request::Publish { update } => match hex::decode(update.trim()) {
                Err(e) => Err(e.into()),
                Ok(bytes) => match cmds.update(bytes).await {
                    Ok(r) => r.map_err(RequestError::from),
                    Err(e) => Err(e.into()),
                },
            },
            Request::History {
                since_us,
                channel,
                limit,
            } => history(&mut w, &cmds, &store, since_us.unwrap_or(0), channel, limit).await,
            Request::Status => full_status(&cmds, &store)
                .await
                .map(|s| Reply::Status(Box::new(s)))
                .map_err(RequestError::from),
        };
        let reply = reply.unwrap_or_else(|e| Reply::Error {
            message: e.to_string(),
        });
        if write_reply(&mut w, &reply).await.is_err() {
            return;
        }
    }
}

/// Seals an update or a cancellation, then stores and publishes it like an alert.
async fn change_alert(
    cmds: &Handle,
    store: &StoreHandle,
    id: String,
    change: super::states::Asked,
) -> Result<Reply, RequestError> {
    match cmds.change(id, change).await? {
        Ok(sealed) => store_and_publish(cmds, store, sealed)
            .await
            .map_err(RequestError::from),
        Err(message) => Err(RequestError::Refused(message)),
    }
}

/// Streams stored alerts this device can read (oldest first, at most `limit` after the
/// channel filter) as `alert` lines, then `history_end`.
pub(super) async fn history(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    cmds: &Handle,
    store: &StoreHandle,
    since_us: u64,
    channel: Option<String>,
    limit: usize,
) -> Result<Reply, RequestError> {
    const PAGE: usize = 1000;
    let mut since = since_us;
    let mut seen: std::collections::HashSet<Id> = std::collections::HashSet::new();
    let mut count = 0;
    while count < limit {
        let envelopes = store.envelopes(since, PAGE).await?;
        let last_page = envelopes.len() < PAGE;
        let Some(newest) = envelopes.last().map(|e| e.received_at_us) else {
            break;
        };
        let fresh: Vec<StoredEnvelope> = envelopes
            .into_iter()
            .filter(|e| seen.insert((e.sender, e.seq)))
            .collect();
        if fresh.is_empty() && !last_page {
            // A whole page stored in one microsecond: step past it.
            since = newest + 1;
            continue;
        }
        let opened = cmds.open(fresh, channel.clone()).await?;
        for a in opened {
            if count >= limit {
                break;
            }
            write_reply(w, &Reply::Alert(Arc::new(a))).await?;
            count += 1;
        }
        if last_page {
            break;
        }
        since = newest;
    }
    Ok(Reply::HistoryEnd { count })
}

pub(super) async fn listen(
    reader: &mut tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
    mut rx: broadcast::Receiver<Arc<ReceivedAlert>>,
    mut voice_rx: broadcast::Receiver<Arc<Reply>>,
    frames: bool,
) {
    if write_reply(w, &Reply::Listening).await.is_err() {
        return;
    }
    let mut buf = String::new();
    loop {
        tokio::select! {
            r = voice_rx.recv() => {
                let reply = match r {
                    Ok(v) if !frames && matches!(*v, Reply::VoiceFrame { .. }) => continue,
                    Ok(v) => v,
                    Err(broadcast::error::RecvError::Lagged(n)) => Arc::new(Reply::Lagged { missed: n }),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if write_reply(w, &reply).await.is_err() {
                    return;
                }
            }
            r = rx.recv() => {
                let reply = match r {
                    Ok(a) => Reply::Alert(a),
                    Err(broadcast::error::RecvError::Lagged(n)) => Reply::Lagged { missed: n },
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if write_reply(w, &reply).await.is_err() {
                    return;
                }
            }
            r = control::read_line(reader, &mut buf) => {
                // The client only ever closes a listen connection.
                if !matches!(r, Ok(Some(_))) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_read_as_the_replies_always_did() {
        assert_eq!(
            RequestError::NotTalking.to_string(),
            "not talking: send `talk` first and wait for `floor_granted`"
        );
        let Err(e) = hex::decode("zz") else {
            panic!("zz is not hex");
        };
        assert_eq!(
            RequestError::from(e).to_string(),
            format!("the update is not hex: {e}")
        );
        // Wrapped errors say what they said before, unchanged.
        assert_eq!(
            RequestError::from(LoopGone).to_string(),
            "the daemon is shutting down"
        );
        assert_eq!(
            RequestError::from(ConnectError::OwnTag).to_string(),
            "this tag is this device's own tag"
        );
    }
}
