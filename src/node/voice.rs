//! Sealing and validating voice packets (`proto/voice.md`): envelopes of
//! [`Kind::Voice`](crate::envelope::Kind), under the channel's voice key, with their own rate
//! limit and replay window, never stored. As for alerts, every refusal that costs a lookup
//! (replay and clock included) comes before the signature.

use super::{
    Arrival, DIRECT_CHANNEL, MAX_AHEAD_US, Node, Rejection, SealError, Sealed, Unreadable,
    has_token, take_token,
};
use crate::cert::ChannelPolicy;
use crate::envelope::{self, Envelope, EnvelopeError, Kind};
use crate::voice::{MAX_EMERGENCY_BURST_US, VoiceBody, VoiceKind};

/// Sequence numbers of voice packets remembered per sender (about 20 s of frames). Voice has
/// a window of its own so that a long talk never pushes a sender's alert floor up (which would
/// refuse its older alerts at catch-up).
pub const VOICE_REPLAY_WINDOW: usize = 1024;
/// A voice packet whose seq (its sender's clock) is more than this behind this node's clock is
/// refused as stale. Members' clocks must agree to within this for voice.
pub const VOICE_MAX_AGE_US: u64 = 300_000_000;
/// The rate limit of voice packets per sender and channel: 50 frames a second and the claim
/// and release, with a second of slack.
pub const VOICE_POLICY: ChannelPolicy = ChannelPolicy {
    rate_per_min: 60 * 60,
    burst: 100,
    rotate_secs: 0,
};

/// A voice packet accepted and opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedVoice {
    /// Sender's device number.
    pub sender: u32,
    /// Sender's name.
    pub sender_name: String,
    /// Channel number.
    pub channel: u32,
    /// Channel name.
    pub channel_name: String,
    /// The packet's seq (sender's clock, µs).
    pub seq: u64,
    /// What it carries.
    pub body: VoiceBody,
}

/// The outcome of validating a voice packet.
#[derive(Debug)]
pub enum VoiceVerdict {
    /// Authentic and new: forward it; the opened packet, or why this node cannot read it.
    Accept(Result<Box<ReceivedVoice>, Unreadable>),
    /// Refused.
    Reject(Rejection),
}

impl Node {
    /// Seals a voice packet for `channel` at `now_us`: the same rights as an alert, the voice
    /// key, the voice signature context. `body` makes the plaintext from the packet's seq (a
    /// claim's burst id is its own seq). The caller publishes it once a durable lease covers
    /// its seq, exactly as for an alert (the nonce argument of proto/envelope.md).
    pub fn seal_voice(
        &mut self,
        channel: &str,
        now_us: u64,
        body: impl FnOnce(u64) -> VoiceBody,
    ) -> Result<Sealed, SealError> {
        let (channel, name, epoch) = self.writable(channel)?;
        let seq = self.next_seq(channel, epoch, now_us);
        let body = body(seq);
        self.may_claim(body.severity)?;
        let plain = body.encode();
        if plain.len() > crate::voice::MAX_VOICE_PLAIN {
            return Err(SealError::TooLarge(plain.len()));
        }
        let key = self
            .key_of(channel, epoch, seq, true)
            .map_err(|_| SealError::NoKey(name.clone()))?;
        let me = self.cert.body.device;
        if let Err(wait_us) = take_token(
            &mut self.voice_buckets,
            (me, channel),
            &VOICE_POLICY,
            now_us,
        ) {
            return Err(SealError::RateLimited {
                channel: name,
                rate_per_min: VOICE_POLICY.rate_per_min,
                burst: VOICE_POLICY.burst,
                retry_ms: wait_us.div_ceil(1000),
            });
        }
        let bytes = self.seal_own(Kind::Voice, channel, epoch, seq, &key, &plain);
        let _ = self.voice_replay.insert(me, seq);
        self.counters.voice_sent += 1;
        Ok(Sealed {
            bytes,
            id: envelope::alert_id(self.domain(), me, seq),
            channel,
            channel_name: name,
            seq,
        })
    }

    /// Refuses, from now on, voice packets sealed before `now_us` (the daemon calls it at
    /// start-up): the voice replay window starts empty, so a burst recorded before the start
    /// cannot be played again to this node.
    pub fn start_voice_at(&mut self, now_us: u64) {
        self.voice_since_us = now_us;
    }

    /// Validates a voice packet that arrived live on the voice topic of `topic_channel` at
    /// `now_us`; counts the outcome. [`Node::validate_voice_arrival`] with
    /// [`Arrival::Live`].
    pub fn validate_voice(
        &mut self,
        bytes: &[u8],
        topic_channel: u32,
        now_us: u64,
    ) -> VoiceVerdict {
        self.validate_voice_arrival(bytes, Arrival::Live { topic_channel }, now_us)
    }

    /// Validates a voice packet that came by `arrival` at `now_us` (the checks per path are
    /// those of [`Arrival`]); counts the outcome.
    pub fn validate_voice_arrival(
        &mut self,
        bytes: &[u8],
        arrival: Arrival,
        now_us: u64,
    ) -> VoiceVerdict {
        match self.check_voice(bytes, arrival, now_us) {
            Ok(content) => {
                if content.is_ok() {
                    self.counters.voice_received += 1;
                } else {
                    self.counters.voice_relayed += 1;
                }
                VoiceVerdict::Accept(content)
            }
            Err(r) => {
                *self
                    .counters
                    .rejected
                    .entry(format!("voice_{}", r.reason()))
                    .or_default() += 1;
                VoiceVerdict::Reject(r)
            }
        }
    }

    fn check_voice(
        &mut self,
        bytes: &[u8],
        arrival: Arrival,
        now_us: u64,
    ) -> Result<Result<Box<ReceivedVoice>, Unreadable>, Rejection> {
        let env = Envelope::parse(bytes)?;
        let h = env.header;
        if let Some(t) = arrival.topic().filter(|t| *t != h.channel) {
            return Err(Rejection::WrongTopic {
                header: h.channel,
                topic: t,
            });
        }
        if h.domain_tag != self.domain().tag() {
            return Err(EnvelopeError::WrongDomain.into());
        }
        let not_allowed = Rejection::NotAllowed {
            sender: h.sender,
            channel: h.channel,
        };
        if h.channel == DIRECT_CHANNEL {
            return Err(not_allowed);
        }
        let sender = self
            .roster
            .get(&h.sender)
            .ok_or(Rejection::UnknownSender(h.sender))?;
        sender
            .check_time(now_us / 1_000_000)
            .map_err(|_| Rejection::SenderExpired(h.sender))?;
        let channel_name = sender
            .grant(h.channel)
            .filter(|g| g.write)
            .ok_or(not_allowed)?
            .name
            .clone();
        let sender_name = sender.body.name.clone();
        if h.seq.saturating_add(VOICE_MAX_AGE_US) < now_us || h.seq < self.voice_since_us {
            return Err(Rejection::Stale(h.sender));
        }
        // As for alerts: bounds the clock skew, and the ratchet steps a packet can ask for.
        if h.seq > now_us.saturating_add(MAX_AHEAD_US) {
            return Err(Rejection::TooFarAhead(h.sender));
        }
        let spends = arrival.spends_budget();
        let limited = Rejection::RateLimited {
            sender: h.sender,
            channel: h.channel,
        };
        if spends
            && !has_token(
                &self.voice_buckets,
                (h.sender, h.channel),
                &VOICE_POLICY,
                now_us,
            )
        {
            return Err(limited);
        }
        // Looked up before the signature, recorded only after it (as for alerts).
        self.voice_replay.check(h.sender, h.seq)?;
        self.counters.signatures_verified += 1;
        env.verify_kind(Kind::Voice, self.domain(), sender.verifying_key())?;
        if self.descriptor.is_revoked(h.sender) {
            return Err(Rejection::Revoked(h.sender));
        }
        if spends {
            take_token(
                &mut self.voice_buckets,
                (h.sender, h.channel),
                &VOICE_POLICY,
                now_us,
            )
            .map_err(|_| limited)?;
        }
        self.voice_replay.insert(h.sender, h.seq)?;
        if !self.cert.grant(h.channel).is_some_and(|g| g.read) {
            return Ok(Err(Unreadable::NotReader));
        }
        let key = match self.key_of(h.channel, h.epoch, h.seq, true) {
            Ok(k) => k,
            Err(u) => return Ok(Err(u)),
        };
        let plain = env.open(self.domain(), &key)?;
        let mut body = VoiceBody::decode(&plain).map_err(|_| Rejection::BadPlaintext)?;
        // A claim above what the authority allows the sender contests the floor as the most it
        // allows.
        body.severity = self.descriptor.severity_of(h.sender, body.severity);
        // The burst id is the claim's own seq, and a burst's packets follow it within the
        // burst's length: a sender cannot pick an early id to win contests for the floor.
        let in_burst = match body.kind {
            VoiceKind::Claim => h.seq == body.burst,
            _ => h.seq > body.burst && h.seq - body.burst <= MAX_EMERGENCY_BURST_US + 10_000_000,
        };
        if !in_burst {
            return Err(Rejection::BadPlaintext);
        }
        Ok(Ok(Box::new(ReceivedVoice {
            sender: h.sender,
            sender_name,
            channel: h.channel,
            channel_name,
            seq: h.seq,
            body,
        })))
    }
}
