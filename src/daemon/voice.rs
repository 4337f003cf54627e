//! The daemon's side of push-to-talk voice (proto/voice.md): the voice topics, the floor of
//! every carried channel, this device's own talk sessions, and the events `listen` streams.
//! Audio is never decoded here: frames are opaque Opus bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub;
use tokio::sync::{broadcast, oneshot};

use super::handle::Handle;
use super::server::write_reply;
use super::{Daemon, now_us};
use crate::alert::{AlertBody, Severity};
use crate::control::{self, BurstInfo, Reply, Request};
use crate::node::Sealed;
use crate::node::voice::VoiceVerdict;
use crate::store::StoreHandle;
use crate::voice::{
    self, ARBITRATION_US, EndReason, Floor, FloorEvent, MAX_BURST_FRAMES, MAX_BURST_US, Talker,
    VoiceBody, VoiceKind,
};

/// Voice events held for a `listen` client that falls behind (5 s of frames).
pub(super) const VOICE_BUFFER: usize = 256;
/// How long a queued `talk` waits for a busy floor.
const QUEUE_WAIT: Duration = Duration::from_secs(30);

/// Requests of talk sessions to the event loop.
pub(super) enum VoiceCmd {
    /// Claim the floor: seal the claim (the caller publishes it).
    Claim {
        channel: String,
        severity: Severity,
        queue: bool,
        reply: oneshot::Sender<Result<Claimed, Busy>>,
    },
    /// Seal the next frame of this device's burst.
    Frame {
        channel: u32,
        burst: u64,
        opus: Vec<u8>,
        reply: oneshot::Sender<Result<Sealed, FloorError>>,
    },
    /// End this device's burst: seal the release (the caller publishes it).
    Release {
        channel: u32,
        burst: u64,
        reply: oneshot::Sender<Result<Released, FloorError>>,
    },
    /// Publish a sealed voice packet on its channel's voice topic.
    Publish { sealed: Sealed },
}

/// Why the event loop did not seal a frame or a release of this device's burst.
#[derive(Debug, thiserror::Error)]
pub(super) enum FloorError {
    /// The burst is as long as a burst may be (in seconds).
    #[error("the burst reached the limit of {0} s")]
    BurstTooLong(u64),
    /// The node would not seal it.
    #[error(transparent)]
    Seal(#[from] crate::node::SealError),
    /// This device does not hold the channel's floor (never did, or lost it).
    #[error("this device does not hold the floor")]
    NotHolder,
    /// The floor is held by another burst of this device.
    #[error("not this device's burst")]
    NotOwnBurst,
}

/// Why a talk session's frame, release or voice alert failed. The text is the `error` reply's
/// message.
#[derive(Debug, thiserror::Error)]
pub(super) enum TalkError {
    /// The store could not extend the sequence lease: the packet was not published.
    #[error("voice not sent: could not reserve its sequence number: {0}")]
    Lease(crate::store::StoreError),
    /// A frame that is not 1 to [`voice::MAX_OPUS_FRAME`] bytes of hex.
    #[error("a frame is 1 to 1275 bytes of Opus, in hex")]
    BadFrame,
    /// The event loop refused the frame or release.
    #[error(transparent)]
    Floor(#[from] FloorError),
    /// The voice alert recording the burst was not sent.
    #[error(transparent)]
    Send(#[from] super::send::SendError),
    /// The event loop is gone.
    #[error(transparent)]
    LoopGone(#[from] super::handle::LoopGone),
}

/// A claim sealed.
pub(super) struct Claimed {
    sealed: Sealed,
    burst: u64,
    channel: u32,
    channel_name: String,
    /// Fires when the floor is lost (a simultaneous earlier claim, or a preemption).
    lost: oneshot::Receiver<Reply>,
}

/// The floor is taken.
pub(super) struct Busy {
    reply: Reply,
    /// With `queue`: fires when the holder's burst ends.
    free: Option<oneshot::Receiver<()>>,
}

/// A release sealed.
pub(super) struct Released {
    sealed: Option<Sealed>,
    frames: u32,
    duration_ms: u64,
    severity: Severity,
    channel_name: String,
}

/// A burst this device is talking.
struct OwnTalk {
    burst: u64,
    severity: Severity,
    started_us: u64,
    frames: u32,
    lost: Option<oneshot::Sender<Reply>>,
}

/// Voice state of the daemon.
pub(super) struct VoiceState {
    /// Voice topic → channel.
    pub(super) topics: HashMap<gossipsub::TopicHash, u32>,
    floors: HashMap<u32, Floor>,
    own: HashMap<u32, OwnTalk>,
    waiters: HashMap<u32, Vec<oneshot::Sender<()>>>,
    /// Other talkers' bursts that hold a floor and whose first frame has not come: listeners
    /// are told of them with it (one per floor at most: an entry goes when its burst ends).
    unannounced: HashMap<(u32, u32, u64), BurstInfo>,
    /// To `listen` clients.
    pub(super) tx: broadcast::Sender<Arc<Reply>>,
}

impl VoiceState {
    pub(super) fn new(
        topics: HashMap<gossipsub::TopicHash, u32>,
        tx: broadcast::Sender<Arc<Reply>>,
    ) -> Self {
        VoiceState {
            topics,
            floors: HashMap::new(),
            own: HashMap::new(),
            waiters: HashMap::new(),
            unannounced: HashMap::new(),
            tx,
        }
    }
}

impl Daemon {
    fn talker_name(&self, device: u32) -> String {
        self.node.member_name(device)
    }

    fn channel_name(&self, channel: u32) -> String {
        self.node
            .descriptor()
            .channel_by_id(channel)
            .map_or_else(|| channel.to_string(), |c| c.name.clone())
    }

    fn burst_info(&self, channel: u32, t: &Talker) -> BurstInfo {
        BurstInfo {
            channel: self.channel_name(channel),
            talker: self.talker_name(t.sender),
            device: t.sender,
            burst: t.burst,
            severity: t.severity,
            // The floor runs on this node's wall clock (µs since the Unix epoch).
            started_at_us: t.first_us,
            duration_ms: 0,
            received: 0,
            sent: None,
            lost: 0,
            reason: None,
            emergency: t.emergency.is_some(),
        }
    }

    /// Tells listeners that the burst of (`sender`, `burst`) on `channel` started, if they were
    /// not told.
    fn announce_burst(&mut self, channel: u32, sender: u32, burst: u64) {
        if let Some(info) = self.voice.unannounced.remove(&(channel, sender, burst)) {
            let _ = self
                .voice
                .tx
                .send(Arc::new(Reply::BurstStart(Arc::new(info))));
        }
    }

    /// Carries out floor events of `channel`: to listeners, to this device's own talk.
    fn floor_events(&mut self, channel: u32, events: Vec<FloorEvent>, sent_at_us: u64) {
        let me = self.node.cert().body.device;
        for e in events {
            match e {
                // Listeners hear of a burst with its first frame: a claim that loses the
                // contest to an earlier one never sends a frame, and never was a burst.
                FloorEvent::Started(t) if t.sender != me => {
                    let info = self.burst_info(channel, &t);
                    tracing::info!(channel, talker = %info.talker, burst = t.burst, "voice burst started");
                    self.voice
                        .unannounced
                        .insert((channel, t.sender, t.burst), info);
                }
                FloorEvent::Started(_) => {}
                FloorEvent::Frame {
                    sender,
                    burst,
                    index,
                    opus,
                } if sender != me => {
                    self.announce_burst(channel, sender, burst);
                    let _ = self.voice.tx.send(Arc::new(Reply::VoiceFrame {
                        burst,
                        device: sender,
                        index,
                        opus: hex::encode(opus),
                        received_at_us: now_us(),
                        sent_at_us,
                    }));
                }
                FloorEvent::Frame { .. } => {}
                FloorEvent::Ended {
                    talker,
                    reason,
                    sent,
                    by,
                } => {
                    if let Some(tx) = self.voice.waiters.remove(&channel) {
                        for w in tx {
                            let _ = w.send(());
                        }
                    }
                    if talker.sender == me {
                        // This device's own burst ended from outside: taken by another talker,
                        // or given up while its talker sent nothing.
                        let holder = by.map(|d| self.talker_name(d)).unwrap_or_default();
                        let new = self
                            .voice
                            .floors
                            .get(&channel)
                            .and_then(|f| f.holder())
                            .cloned();
                        if let Some(own) = self.voice.own.get_mut(&channel)
                            && own.burst == talker.burst
                            && let Some(tx) = own.lost.take()
                        {
                            let why = reason.as_str();
                            let _ = tx.send(Reply::FloorBusy {
                                holder,
                                severity: new.as_ref().map_or(talker.severity, |h| h.severity),
                                since_us: new.as_ref().map_or_else(now_us, |h| h.first_us),
                                why: why.into(),
                            });
                        }
                        continue;
                    }
                    if reason == EndReason::Lost
                        && self
                            .voice
                            .unannounced
                            .remove(&(channel, talker.sender, talker.burst))
                            .is_some()
                    {
                        tracing::info!(channel, talker = %self.talker_name(talker.sender),
                            burst = talker.burst, "voice claim lost the contest to an earlier one");
                        continue;
                    }
                    // A burst that ended before its first frame (a press let go at once) is
                    // still one: it starts and ends now.
                    self.announce_burst(channel, talker.sender, talker.burst);
                    let mut info = self.burst_info(channel, &talker);
                    info.duration_ms = talker.last_us.saturating_sub(talker.first_us) / 1000;
                    info.received = talker.received;
                    info.sent = sent;
                    info.lost = sent
                        .unwrap_or(talker.highest)
                        .saturating_sub(talker.received);
                    info.reason = Some(reason.as_str().into());
                    tracing::info!(
                        channel,
                        talker = %info.talker,
                        burst = talker.burst,
                        received = info.received,
                        lost = info.lost,
                        reason = reason.as_str(),
                        "voice burst ended"
                    );
                    let _ = self
                        .voice
                        .tx
                        .send(Arc::new(Reply::BurstEnd(Arc::new(info))));
                }
            }
        }
    }

    /// Validates a voice packet that came by `arrival` (the voice topic of a channel, or the
    /// data plane); when this node reads it, moves the channel's floor.
    pub(super) fn take_voice(
        &mut self,
        bytes: &[u8],
        arrival: crate::node::Arrival,
    ) -> Result<(), crate::node::Rejection> {
        let now = now_us();
        match self.node.validate_voice_arrival(bytes, arrival, now) {
            VoiceVerdict::Accept(Ok(v)) => {
                let channel = v.channel;
                let emergency = self.emergencies.since(v.sender);
                let events = self
                    .voice
                    .floors
                    .entry(channel)
                    .or_default()
                    .on_packet_as(v.sender, v.body, emergency, now);
                self.floor_events(channel, events, v.seq);
                Ok(())
            }
            VoiceVerdict::Accept(Err(_)) => Ok(()),
            VoiceVerdict::Reject(r) => Err(r),
        }
    }

    /// Ends bursts whose talker went quiet (every tick).
    pub(super) fn voice_tick(&mut self) {
        let now = now_us();
        // This device's own bursts are ended by their sessions (the frame limit, the release,
        // the client going away), not by the silence timer.
        let me = self.node.cert().body.device;
        let channels: Vec<u32> = self
            .voice
            .floors
            .iter()
            .filter(|(_, f)| f.holder().is_none_or(|h| h.sender != me))
            .map(|(c, _)| *c)
            .collect();
        for ch in channels {
            let events = self
                .voice
                .floors
                .get_mut(&ch)
                .map(|f| f.tick(now))
                .unwrap_or_default();
            self.floor_events(ch, events, 0);
        }
        // A session that vanished without a release is ended here (after the longest spell
        // this device may talk: an emergency's when it is in one).
        let cap = if self.emergencies.since(me).is_some() {
            voice::MAX_EMERGENCY_BURST_US
        } else {
            MAX_BURST_US
        };
        let stale: Vec<(u32, u64)> = self
            .voice
            .own
            .iter()
            .filter(|(_, o)| now.saturating_sub(o.started_us) > cap + 5_000_000)
            .map(|(c, o)| (*c, o.burst))
            .collect();
        for (ch, burst) in stale {
            self.voice.own.remove(&ch);
            if let Some(f) = self.voice.floors.get_mut(&ch) {
                f.end_own(me, burst);
            }
        }
    }

    pub(super) fn on_voice_cmd(&mut self, cmd: VoiceCmd) {
        let me = self.node.cert().body.device;
        let now = now_us();
        match cmd {
            VoiceCmd::Claim {
                channel,
                severity,
                queue,
                reply,
            } => {
                let r = self.claim(&channel, severity, queue, now);
                let _ = reply.send(r);
            }
            VoiceCmd::Frame {
                channel,
                burst,
                opus,
                reply,
            } => {
                let r = match self.voice.own.get(&channel) {
                    Some(o) if o.burst == burst && o.lost.is_some() => {
                        let (index, severity) = (o.frames + 1, o.severity);
                        // The longest burst: an emergency's, else the usual one.
                        let cap_us = if self.emergencies.since(me).is_some() {
                            voice::MAX_EMERGENCY_BURST_US
                        } else {
                            MAX_BURST_US
                        };
                        if u64::from(index) > cap_us / voice::FRAME_US || index > MAX_BURST_FRAMES {
                            Err(FloorError::BurstTooLong(cap_us / 1_000_000))
                        } else {
                            let name = self.channel_name(channel);
                            let body = VoiceBody {
                                burst,
                                index,
                                severity,
                                kind: VoiceKind::Frame(opus),
                            };
                            match self.node.seal_voice(&name, now, |_| body.clone()) {
                                Ok(s) => {
                                    if let Some(o) = self.voice.own.get_mut(&channel) {
                                        o.frames = index;
                                    }
                                    // Keeps this device's own floor alive.
                                    let emergency = self.emergencies.since(me);
                                    let ev = self
                                        .voice
                                        .floors
                                        .entry(channel)
                                        .or_default()
                                        .on_packet_as(me, body, emergency, now);
                                    self.floor_events(channel, ev, s.seq);
                                    Ok(s)
                                }
                                Err(e) => Err(e.into()),
                            }
                        }
                    }
                    _ => Err(FloorError::NotHolder),
                };
                let _ = reply.send(r);
            }
            VoiceCmd::Release {
                channel,
                burst,
                reply,
            } => {
                let r = match self.voice.own.remove(&channel) {
                    Some(o) if o.burst == burst => {
                        if let Some(f) = self.voice.floors.get_mut(&channel) {
                            f.end_own(me, burst);
                        }
                        let name = self.channel_name(channel);
                        // A burst that lost the floor sends no release: it already stopped.
                        let sealed = if o.lost.is_some() {
                            self.node
                                .seal_voice(&name, now, |_| VoiceBody {
                                    burst,
                                    index: o.frames + 1,
                                    severity: o.severity,
                                    kind: VoiceKind::Release { frames: o.frames },
                                })
                                .ok()
                        } else {
                            None
                        };
                        Ok(Released {
                            sealed,
                            frames: o.frames,
                            duration_ms: now.saturating_sub(o.started_us) / 1000,
                            severity: o.severity,
                            channel_name: name,
                        })
                    }
                    Some(o) => {
                        self.voice.own.insert(channel, o);
                        Err(FloorError::NotOwnBurst)
                    }
                    None => Err(FloorError::NotHolder),
                };
                // Whoever queued for this floor may try now.
                if let Some(tx) = self.voice.waiters.remove(&channel) {
                    for w in tx {
                        let _ = w.send(());
                    }
                }
                let _ = reply.send(r);
            }
            VoiceCmd::Publish { sealed } => {
                // The plane's copy first, as for alerts; live voice is never repaired.
                self.plane_send(crate::plane::Kind::Voice, &sealed.bytes);
                let topic = net_voice_topic(self, sealed.channel);
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .inner()
                    .publish(topic, sealed.bytes)
                {
                    // No peer on the topic yet: the packet is gone (voice is never stored).
                    tracing::debug!(error = %e, "voice packet not published");
                }
            }
        }
    }

    fn claim(
        &mut self,
        channel: &str,
        severity: Severity,
        queue: bool,
        now: u64,
    ) -> Result<Claimed, Busy> {
        let me = self.node.cert().body.device;
        let refused = |message: String| Busy {
            reply: Reply::Error { message },
            free: None,
        };
        let ch = self
            .node
            .descriptor()
            .channel_by_name(channel)
            .map(|c| c.id)
            .ok_or_else(|| refused(format!("no channel named {channel:?} in this domain")))?;
        if self.voice.own.contains_key(&ch) {
            return Err(refused(format!(
                "this device is already talking on channel {channel}"
            )));
        }
        let emergency = self.emergencies.since(me);
        let floor = self.voice.floors.entry(ch).or_default();
        let ended = floor.tick(now);
        let busy = floor.holder().filter(|h| {
            h.sender != me && !voice::challenger_wins(h, me, u64::MAX, severity, emergency, now)
        });
        if let Some(h) = busy.cloned() {
            self.floor_events(ch, ended, 0);
            // Of two emergencies the earlier holds the floor; the later waits for it.
            let queue = queue || (emergency.is_some() && h.emergency.is_some());
            let free = queue.then(|| {
                let (tx, rx) = oneshot::channel();
                let waiting = self.voice.waiters.entry(ch).or_default();
                // Sessions that gave up waiting.
                waiting.retain(|w| !w.is_closed());
                waiting.push(tx);
                rx
            });
            return Err(Busy {
                reply: Reply::FloorBusy {
                    holder: self.talker_name(h.sender),
                    severity: h.severity,
                    since_us: h.first_us,
                    why: "busy".into(),
                },
                free,
            });
        }
        self.floor_events(ch, ended, 0);
        let sealed = self
            .node
            .seal_voice(channel, now, |seq| VoiceBody {
                burst: seq,
                index: 0,
                severity,
                kind: VoiceKind::Claim,
            })
            .map_err(|e| refused(e.to_string()))?;
        let burst = sealed.seq;
        let ev = self.voice.floors.entry(ch).or_default().on_packet_as(
            me,
            VoiceBody {
                burst,
                index: 0,
                severity,
                kind: VoiceKind::Claim,
            },
            emergency,
            now,
        );
        let (tx, lost) = oneshot::channel();
        self.voice.own.insert(
            ch,
            OwnTalk {
                burst,
                severity,
                started_us: now,
                frames: 0,
                lost: Some(tx),
            },
        );
        // A preempted holder's end goes to the listeners.
        self.floor_events(ch, ev, 0);
        tracing::info!(channel, burst, "floor claimed");
        Ok(Claimed {
            channel_name: sealed.channel_name.clone(),
            sealed,
            burst,
            channel: ch,
            lost,
        })
    }
}

fn net_voice_topic(d: &Daemon, channel: u32) -> gossipsub::IdentTopic {
    crate::net::voice_topic(d.node.domain(), channel)
}

/// Publishes a sealed voice packet once the sequence lease covers it (as an alert).
async fn publish(cmds: &Handle, store: &StoreHandle, sealed: Sealed) -> Result<(), TalkError> {
    store
        .cover_seq(sealed.seq)
        .await
        .map_err(TalkError::Lease)?;
    Ok(cmds.voice_publish(sealed).await?)
}

/// A `talk` request: claims the floor, waits out the arbitration, then carries the client's
/// frames until it releases (or closes, or loses the floor). Returns whether the connection
/// may carry more requests.
pub(super) async fn talk(
    reader: &mut tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
    w: &mut tokio::net::unix::OwnedWriteHalf,
    cmds: &Handle,
    store: &StoreHandle,
    channel: String,
    severity: Severity,
    queue: bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
    let claimed = loop {
        let r = match cmds.voice_claim(channel.clone(), severity, queue).await {
            Ok(r) => r,
            Err(e) => {
                let message = e.to_string();
                return write_reply(w, &Reply::Error { message }).await.is_ok();
            }
        };
        match r {
            Ok(c) => {
                let mut c = c;
                let sealed = c.sealed.clone();
                if let Err(e) = publish(cmds, store, sealed).await {
                    let _ = release(cmds, store, &mut c).await;
                    let message = e.to_string();
                    return write_reply(w, &Reply::Error { message }).await.is_ok();
                }
                // The arbitration: a simultaneous claim that wins arrives within it.
                let wait = tokio::time::sleep(Duration::from_micros(ARBITRATION_US));
                tokio::select! {
                    biased;
                    lost = &mut c.lost => {
                        let _ = release(cmds, store, &mut c).await;
                        let reply = lost.unwrap_or_else(|_| gone());
                        if queue && tokio::time::Instant::now() < deadline {
                            // Lost to a simultaneous claim: wait for that burst's end.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        return write_reply(w, &reply).await.is_ok();
                    }
                    _ = wait => break c,
                }
            }
            Err(Busy {
                reply,
                free: Some(free),
            }) => match tokio::time::timeout_at(deadline, free).await {
                Ok(_) => continue,
                Err(_) => {
                    let reply = match reply {
                        Reply::FloorBusy {
                            holder,
                            severity,
                            since_us,
                            ..
                        } => Reply::FloorBusy {
                            holder,
                            severity,
                            since_us,
                            why: "timeout".into(),
                        },
                        r => r,
                    };
                    return write_reply(w, &reply).await.is_ok();
                }
            },
            Err(Busy { reply, free: None }) => return write_reply(w, &reply).await.is_ok(),
        }
    };
    let mut c = claimed;
    if write_reply(
        w,
        &Reply::FloorGranted {
            burst: c.burst,
            channel: c.channel_name.clone(),
        },
    )
    .await
    .is_err()
    {
        let _ = release(cmds, store, &mut c).await;
        return false;
    }
    let mut buf = String::new();
    let end = loop {
        tokio::select! {
            // A lost floor is told before anything else the client sent.
            biased;
            lost = &mut c.lost => break End::Reply(lost.unwrap_or_else(|_| gone())),
            line = control::read_line(reader, &mut buf) => {
                let req = match line {
                    Ok(Some(l)) => serde_json::from_str::<Request>(l),
                    // Gone without a release: release for it.
                    _ => break End::Gone,
                };
                match req {
                    Ok(Request::Frame { opus }) => {
                        if let Err(e) = frame(cmds, store, &c, &opus).await {
                            // The loop takes a higher claim before this frame, tells this
                            // session through `lost`, then refuses the frame: say why.
                            if let Ok(lost) = c.lost.try_recv() {
                                break End::Reply(lost);
                            }
                            break End::Reply(Reply::Error { message: e.to_string() });
                        }
                    }
                    Ok(Request::Release) => break End::Released,
                    Ok(_) | Err(_) => {
                        break End::Reply(Reply::Error {
                            message: "while talking, only `frame` and `release` are taken".into(),
                        });
                    }
                }
            }
        }
    };
    let ended = release(cmds, store, &mut c).await;
    match end {
        End::Gone => false,
        End::Released => write_reply(w, &ended_reply(&c, ended)).await.is_ok(),
        End::Reply(r) => write_reply(w, &r).await.is_ok(),
    }
}

/// How a granted talk session ends.
enum End {
    /// The client closed the connection.
    Gone,
    /// The client released.
    Released,
    /// The floor was lost, or a frame failed: this is the client's reply.
    Reply(Reply),
}

/// The reply when the daemon ended a session itself (shutting down).
fn gone() -> Reply {
    Reply::Error {
        message: "the daemon ended this burst (shutting down)".into(),
    }
}

/// Seals and publishes one frame of the session's burst.
async fn frame(
    cmds: &Handle,
    store: &StoreHandle,
    c: &Claimed,
    opus: &str,
) -> Result<(), TalkError> {
    let opus = match hex::decode(opus.trim()) {
        Ok(b) if !b.is_empty() && b.len() <= voice::MAX_OPUS_FRAME => b,
        _ => return Err(TalkError::BadFrame),
    };
    let sealed = cmds.voice_frame(c.channel, c.burst, opus).await??;
    publish(cmds, store, sealed).await
}

fn ended_reply(c: &Claimed, r: Result<(Released, Option<String>), TalkError>) -> Reply {
    match r {
        Ok((rel, alert_id)) => Reply::TalkEnded {
            burst: c.burst,
            frames: rel.frames,
            duration_ms: rel.duration_ms,
            alert_id,
        },
        Err(e) => Reply::Error {
            message: e.to_string(),
        },
    }
}

/// Ends this device's burst: the release is published (unless the floor was lost) and, when
/// frames were sent, a `voice` alert recording the burst is sealed, published and stored.
async fn release(
    cmds: &Handle,
    store: &StoreHandle,
    c: &mut Claimed,
) -> Result<(Released, Option<String>), TalkError> {
    let mut rel = cmds.voice_release(c.channel, c.burst).await??;
    if let Some(s) = rel.sealed.take() {
        publish(cmds, store, s).await?;
    }
    if rel.frames == 0 {
        return Ok((rel, None));
    }
    let body = AlertBody {
        severity: rel.severity,
        kind: "voice".into(),
        text: format!(
            "voice burst of {:.1} s",
            f64::from(rel.frames) * voice::FRAME_US as f64 / 1e6
        ),
        location: None,
        attributes: vec![
            ("burst".into(), c.burst.to_string()),
            ("frames".into(), rel.frames.to_string()),
            ("duration_ms".into(), rel.duration_ms.to_string()),
        ],
        reference: None,
    };
    let sealed = super::send::seal_alert(cmds, rel.channel_name.clone(), body).await?;
    match super::send::store_and_publish(cmds, store, sealed).await? {
        Reply::Sent { id, .. } => Ok((rel, Some(id))),
        _ => Ok((rel, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talk_errors_read_as_the_replies_always_did() {
        assert_eq!(
            TalkError::from(FloorError::NotHolder).to_string(),
            "this device does not hold the floor"
        );
        assert_eq!(
            FloorError::NotOwnBurst.to_string(),
            "not this device's burst"
        );
        assert_eq!(
            FloorError::BurstTooLong(MAX_BURST_US / 1_000_000).to_string(),
            format!(
                "the burst reached the limit of {} s",
                MAX_BURST_US / 1_000_000
            )
        );
        // The text names the bound: keep the two in step.
        assert_eq!(voice::MAX_OPUS_FRAME, 1275);
        assert_eq!(
            TalkError::BadFrame.to_string(),
            "a frame is 1 to 1275 bytes of Opus, in hex"
        );
        let e = crate::store::StoreError::Closed;
        assert_eq!(
            TalkError::Lease(crate::store::StoreError::Closed).to_string(),
            format!("voice not sent: could not reserve its sequence number: {e}")
        );
    }
}
