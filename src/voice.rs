//! Push-to-talk voice, the pure part (specified in `proto/voice.md`): the plaintext of a voice
//! packet, floor control (who may talk on a channel) and the listener's jitter buffer. No I/O:
//! every function takes the time it runs at.
//!
//! A **burst** is one press of the talk button: a `Claim`, then one `Frame` of Opus audio per
//! 20 ms, then a `Release`. Each packet is an envelope of its own (`envelope::Kind::Voice`),
//! sealed under the channel's voice key; the daemon seals and opens them, and only the CLI
//! encodes and decodes audio.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::alert::Severity;
use crate::wire::{self, DecodeError};

/// Audio frame length.
pub const FRAME_US: u64 = 20_000;
/// Sample rate of the audio a burst carries (Opus wideband).
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one frame (20 ms at 16 kHz, mono).
pub const FRAME_SAMPLES: usize = 320;
/// Largest Opus packet (RFC 6716, §3.2.1).
pub const MAX_OPUS_FRAME: usize = 1275;
/// Largest voice plaintext accepted.
pub const MAX_VOICE_PLAIN: usize = MAX_OPUS_FRAME + 32;
/// How long a talker waits after its claim before it speaks, so that a claim made at the same
/// moment elsewhere is heard and the same winner is chosen everywhere.
pub const ARBITRATION_US: u64 = 100_000;
/// Two claims whose first packets arrive within this of each other are simultaneous: the
/// earlier burst wins even if the other already started (a lost claim packet).
pub const CONTEST_US: u64 = 2 * ARBITRATION_US;
/// A talker not heard for this long has released the floor (vanished, crashed, out of range).
/// Two seconds, not one: on a link that loses a fifth of its packets, TCP resends a segment
/// lost four times in a row 1.46 s after it was first sent (fast retransmit, then 200, 400 and
/// 800 ms of backoff), and a burst still in flight must not end for that.
pub const FLOOR_TIMEOUT_US: u64 = 2_000_000;
/// A burst ends after this long (a radio's time-out timer), so a stuck talk button cannot hold
/// the channel for ever. Listeners allow [`CONTEST_US`] more from the claim (the talker's
/// arbitration and the network).
pub const MAX_BURST_US: u64 = 120_000_000;
/// The cap of a talker in emergency (`proto/voice.md`, "Emergency"): longer, but a cap too, so
/// a device stuck in emergency cannot hold the channel for ever either.
pub const MAX_EMERGENCY_BURST_US: u64 = 300_000_000;
/// A talker that claims again within this of its own burst's end (released or timed out),
/// with no other talker in between, continues its spell: [`MAX_BURST_US`] caps the spell, not
/// each burst, so re-claiming cannot hold the floor for ever.
pub const FLOOR_SPELL_GAP_US: u64 = 2_000_000;
/// After its spell reached the cap, a talker's claims are ignored for this long, so another
/// talker gets the floor whatever severity the first one claims.
pub const FLOOR_COOLDOWN_US: u64 = 10_000_000;
/// Frames in the longest burst (an emergency talker's).
pub const MAX_BURST_FRAMES: u32 = (MAX_EMERGENCY_BURST_US / FRAME_US) as u32;
/// The listener's jitter buffer: a frame is played this long after its slot's earliest
/// arrival time, and concealed if it has not arrived by then.
pub const JITTER_US: u64 = 60_000;
/// The jitter buffer of a burst's recording (a WAV file): it has no speaker to feed, so it
/// waits for a frame as long as the floor waits for its talker, and a frame that TCP resent
/// late is in the file instead of concealed.
pub const RECORD_JITTER_US: u64 = FLOOR_TIMEOUT_US;
/// How far ahead of the next frame to play a frame may be and still be buffered (5 s).
pub const MAX_AHEAD_FRAMES: u32 = 250;
/// Bursts remembered after they ended, so their stragglers are not taken for new bursts.
const ENDED_MEMORY: usize = 32;

/// The plaintext of a voice packet (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceBody {
    /// The burst: the seq of its `Claim` packet (unique per sender).
    pub burst: u64,
    /// 0 for the claim, 1… for frames, frames + 1 for the release.
    pub index: u32,
    /// The burst's severity: a higher one may take the floor from a talker.
    pub severity: Severity,
    /// What the packet carries.
    pub kind: VoiceKind,
}

/// What a voice packet carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoiceKind {
    /// "I want to talk" (index 0).
    Claim,
    /// One 20 ms Opus frame.
    Frame(Vec<u8>),
    /// "I am done": the burst had `frames` frames.
    Release {
        /// Frames sent.
        frames: u32,
    },
}

impl VoiceBody {
    /// Encodes with postcard.
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Decodes and checks the fields against the burst limits.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b: VoiceBody = wire::decode("voice packet", bytes, MAX_VOICE_PLAIN)?;
        let bad = |reason: &str| DecodeError::Malformed {
            what: "voice packet",
            reason: reason.into(),
        };
        match &b.kind {
            VoiceKind::Claim if b.index != 0 => return Err(bad("a claim has index 0")),
            VoiceKind::Frame(_) if b.index == 0 || b.index > MAX_BURST_FRAMES => {
                return Err(bad("frame index out of range"));
            }
            VoiceKind::Frame(f) if f.is_empty() || f.len() > MAX_OPUS_FRAME => {
                return Err(bad("frame length out of range"));
            }
            VoiceKind::Release { frames }
                if *frames > MAX_BURST_FRAMES || b.index != frames + 1 =>
            {
                return Err(bad("release index must be frames + 1"));
            }
            _ => {}
        }
        Ok(b)
    }
}

/// One burst as a node's floor knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Talker {
    /// Sender's device number.
    pub sender: u32,
    /// Burst id.
    pub burst: u64,
    /// Severity.
    pub severity: Severity,
    /// Local time its first packet arrived (µs).
    pub first_us: u64,
    /// Local time its talker's spell on the floor began: the first packet of its first burst,
    /// carried over while its newer bursts replace its own, or follow its own end within
    /// [`FLOOR_SPELL_GAP_US`]. [`MAX_BURST_US`] counts from here.
    pub spell_us: u64,
    /// Local time its last packet arrived.
    pub last_us: u64,
    /// Frames received.
    pub received: u32,
    /// Highest frame index received.
    pub highest: u32,
    /// Since when its talker is in emergency (its emergency alert's seq), if it is: it
    /// pre-empts every talker not in emergency, and an earlier emergency pre-empts it.
    #[serde(default)]
    pub emergency: Option<u64>,
}

impl Talker {
    /// Whether it started speaking (a frame was heard): past its arbitration.
    pub fn speaking(&self) -> bool {
        self.highest > 0
    }

    /// How long its spell may last: [`MAX_BURST_US`], or [`MAX_EMERGENCY_BURST_US`] in
    /// emergency.
    pub fn cap_us(&self) -> u64 {
        if self.emergency.is_some() {
            MAX_EMERGENCY_BURST_US
        } else {
            MAX_BURST_US
        }
    }
}

/// Why a burst ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The talker released the floor.
    Released,
    /// The talker was not heard for [`FLOOR_TIMEOUT_US`].
    TimedOut,
    /// The burst reached [`MAX_BURST_US`].
    TooLong,
    /// Another talker took the floor: a higher severity, an emergency, an earlier emergency.
    Preempted,
    /// An earlier claim of the same standing (same severity, neither in emergency) made at
    /// the same moment won the contest. Its talker is told and stops, usually before its
    /// first frame (then listeners are told nothing of it); if a claim packet was lost, after
    /// the few frames it sent within the contest window.
    Lost,
}

impl EndReason {
    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Released => "released",
            EndReason::TimedOut => "timed_out",
            EndReason::TooLong => "too_long",
            EndReason::Preempted => "preempted",
            EndReason::Lost => "lost",
        }
    }
}

/// What a packet or the passing of time did to a channel's floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorEvent {
    /// A burst took the floor.
    Started(Talker),
    /// A frame of the burst holding the floor.
    Frame {
        /// Sender.
        sender: u32,
        /// Burst.
        burst: u64,
        /// Frame index (1…).
        index: u32,
        /// Opus bytes.
        opus: Vec<u8>,
    },
    /// The burst holding the floor ended.
    Ended {
        /// The burst as it stood.
        talker: Talker,
        /// Why.
        reason: EndReason,
        /// Frames the talker says it sent (from its release), when known.
        sent: Option<u32>,
        /// The burst that took the floor, for [`EndReason::Preempted`] and [`EndReason::Lost`].
        by: Option<u32>,
    },
}

/// Who wins a contest between the burst holding the floor and a challenger whose first packet
/// arrives at `now_us`: a talker in emergency (`emergency`: since when) over one that is not,
/// and of two in emergency the earlier emergency (then the lower device number); otherwise a
/// higher severity always; at equal severity the earlier burst (then the lower device number)
/// when the two are simultaneous ([`CONTEST_US`]), else the holder.
pub fn challenger_wins(
    holder: &Talker,
    sender: u32,
    burst: u64,
    severity: Severity,
    emergency: Option<u64>,
    now_us: u64,
) -> bool {
    match (holder.emergency, emergency) {
        (None, Some(_)) => return true,
        (Some(_), None) => return false,
        (Some(h), Some(c)) => return (c, sender) < (h, holder.sender),
        (None, None) => {}
    }
    if severity != holder.severity {
        return severity > holder.severity;
    }
    now_us.saturating_sub(holder.first_us) <= CONTEST_US
        && (burst, sender) < (holder.burst, holder.sender)
}

/// The floor of one channel, as one node sees it.
#[derive(Debug, Default)]
pub struct Floor {
    holder: Option<Talker>,
    /// (sender, burst) of bursts that ended or lost: their later packets are ignored.
    ended: VecDeque<(u32, u64)>,
    /// The last holder whose burst ended by itself (released, timed out): (sender, spell
    /// start, end), so a quick re-claim continues the spell.
    last_spell: Option<(u32, u64, u64)>,
    /// A talker whose spell reached the cap, and until when its claims are ignored.
    cooling: Option<(u32, u64)>,
}

impl Floor {
    /// The burst holding the floor, if any.
    pub fn holder(&self) -> Option<&Talker> {
        self.holder.as_ref()
    }

    fn forget(&mut self, sender: u32, burst: u64) {
        if self.ended.len() >= ENDED_MEMORY {
            self.ended.pop_front();
        }
        self.ended.push_back((sender, burst));
    }

    /// Whether (sender, burst) ended or lost here.
    pub fn is_ended(&self, sender: u32, burst: u64) -> bool {
        self.ended.contains(&(sender, burst))
    }

    /// Takes a packet of `sender` (already authenticated and decrypted) that arrived at
    /// `now_us`. Returns what changed, in order.
    pub fn on_packet(&mut self, sender: u32, body: VoiceBody, now_us: u64) -> Vec<FloorEvent> {
        self.on_packet_as(sender, body, None, now_us)
    }

    /// [`Floor::on_packet`] for a sender in emergency since `emergency` (`None`: not).
    pub fn on_packet_as(
        &mut self,
        sender: u32,
        body: VoiceBody,
        emergency: Option<u64>,
        now_us: u64,
    ) -> Vec<FloorEvent> {
        let mut out = self.tick(now_us);
        if self.is_ended(sender, body.burst) {
            return out;
        }
        let is_holder = self
            .holder
            .as_ref()
            .is_some_and(|h| h.sender == sender && h.burst == body.burst);
        if !is_holder
            && self
                .cooling
                .is_some_and(|(s, until)| s == sender && now_us < until)
        {
            // Its spell reached the cap a moment ago: the floor goes to someone else first.
            self.forget(sender, body.burst);
            return out;
        }
        if !is_holder && matches!(body.kind, VoiceKind::Release { .. }) {
            // The release of a burst that does not hold the floor: nothing to end, nothing
            // to contest.
            self.forget(sender, body.burst);
            return out;
        }
        if !is_holder {
            // A new burst: the floor is free, or it contests the holder. A talker's quick
            // return, or its newer burst replacing its own, continues its spell.
            let mut spell_us = match self.last_spell {
                Some((s, spell, ended)) if s == sender && now_us <= ended + FLOOR_SPELL_GAP_US => {
                    spell
                }
                _ => now_us,
            };
            if let Some(h) = self.holder.take() {
                let same = h.sender == sender;
                // An older burst of the holder's own talker is a straggler; another talker's
                // burst must win the contest.
                let loses = if same {
                    body.burst < h.burst
                } else {
                    !challenger_wins(&h, sender, body.burst, body.severity, emergency, now_us)
                };
                if loses {
                    self.holder = Some(h);
                    if !same {
                        self.forget(sender, body.burst);
                    }
                    return out;
                }
                self.forget(h.sender, h.burst);
                if same {
                    spell_us = h.spell_us;
                }
                // Same standing: the challenger won only by being earlier (the contest).
                let contest =
                    h.emergency.is_none() && emergency.is_none() && h.severity == body.severity;
                out.push(FloorEvent::Ended {
                    // A talker's newer burst ends its older one.
                    reason: if same {
                        EndReason::Released
                    } else if contest {
                        EndReason::Lost
                    } else {
                        EndReason::Preempted
                    },
                    talker: h,
                    sent: None,
                    by: (!same).then_some(sender),
                });
            }
            let t = Talker {
                sender,
                burst: body.burst,
                severity: body.severity,
                first_us: now_us,
                spell_us,
                last_us: now_us,
                received: 0,
                highest: 0,
                emergency,
            };
            out.push(FloorEvent::Started(t.clone()));
            self.holder = Some(t);
            // Another talker between two bursts breaks a spell.
            self.last_spell = None;
        }
        let Some(h) = self.holder.as_mut() else {
            return out;
        };
        h.last_us = now_us;
        match body.kind {
            VoiceKind::Claim => {}
            VoiceKind::Frame(opus) => {
                h.received = h.received.saturating_add(1);
                h.highest = h.highest.max(body.index);
                out.push(FloorEvent::Frame {
                    sender,
                    burst: body.burst,
                    index: body.index,
                    opus,
                });
            }
            VoiceKind::Release { frames } => {
                if let Some(t) = self.holder.take() {
                    self.forget(t.sender, t.burst);
                    self.last_spell = Some((t.sender, t.spell_us, now_us));
                    out.push(FloorEvent::Ended {
                        talker: t,
                        reason: EndReason::Released,
                        sent: Some(frames),
                        by: None,
                    });
                }
            }
        }
        out
    }

    /// Ends the burst holding the floor if its talker went quiet or its spell lasted too
    /// long (then its claims are ignored for [`FLOOR_COOLDOWN_US`]).
    pub fn tick(&mut self, now_us: u64) -> Vec<FloorEvent> {
        let reason = match &self.holder {
            Some(h) if now_us.saturating_sub(h.last_us) > FLOOR_TIMEOUT_US => EndReason::TimedOut,
            Some(h) if now_us.saturating_sub(h.spell_us) > h.cap_us() + CONTEST_US => {
                EndReason::TooLong
            }
            _ => return vec![],
        };
        let Some(t) = self.holder.take() else {
            return vec![];
        };
        self.forget(t.sender, t.burst);
        if reason == EndReason::TooLong {
            self.cooling = Some((t.sender, now_us + FLOOR_COOLDOWN_US));
            self.last_spell = None;
        } else {
            // A talker that went quiet and comes back at once is still on its spell.
            self.last_spell = Some((t.sender, t.spell_us, t.last_us));
        }
        vec![FloorEvent::Ended {
            talker: t,
            reason,
            sent: None,
            by: None,
        }]
    }

    /// Ends a burst this node itself holds (its talker is done, lost or gone): no event.
    pub fn end_own(&mut self, sender: u32, burst: u64) {
        if self
            .holder
            .as_ref()
            .is_some_and(|h| h.sender == sender && h.burst == burst)
        {
            self.holder = None;
        }
        self.forget(sender, burst);
    }
}

/// What the jitter buffer plays in one 20 ms slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// The frame for the slot, to decode.
    Frame(Vec<u8>),
    /// No frame arrived in time: conceal (Opus packet loss concealment).
    Missing,
}

/// What [`JitterBuffer::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered for its slot.
    Buffered,
    /// Its slot was already played (concealed): dropped.
    Late,
    /// Already buffered: dropped.
    Duplicate,
    /// Too far ahead of the slot being played: dropped.
    TooFarAhead,
}

/// A listener's jitter buffer for one burst: frame `i` is played at
/// `base + (i − 1) × 20 ms + depth` ([`JITTER_US`] live, [`RECORD_JITTER_US`] for a
/// recording), where `base` is the arrival time of the first frame heard, moved back by its
/// index (so joining a burst late keeps the timing).
#[derive(Debug)]
pub struct JitterBuffer {
    base_us: Option<u64>,
    depth_us: u64,
    next: u32,
    frames: BTreeMap<u32, Vec<u8>>,
    /// Frames dropped because they came after their slot was played.
    pub late: u32,
    /// Slots concealed.
    pub concealed: u32,
    /// Slots played (frames and concealed).
    pub played: u32,
}

impl JitterBuffer {
    /// An empty buffer that plays `depth_us` behind the earliest arrival.
    pub fn new(depth_us: u64) -> Self {
        JitterBuffer {
            base_us: None,
            depth_us,
            next: 1,
            frames: BTreeMap::new(),
            late: 0,
            concealed: 0,
            played: 0,
        }
    }

    fn due_us(&self, index: u32) -> Option<u64> {
        self.base_us
            .map(|b| b + u64::from(index.saturating_sub(1)) * FRAME_US + self.depth_us)
    }

    /// When the next slot is due (µs): `None` before the first frame and after the last slot
    /// a burst can have.
    pub fn next_due_us(&self) -> Option<u64> {
        if self.next > MAX_BURST_FRAMES {
            return None;
        }
        self.due_us(self.next)
    }

    /// Takes frame `index` (1…) that arrived at `now_us`.
    pub fn push(&mut self, index: u32, opus: Vec<u8>, now_us: u64) -> Pushed {
        if index == 0 || index < self.next {
            if index != 0 {
                self.late += 1;
            }
            return Pushed::Late;
        }
        if index > MAX_BURST_FRAMES {
            return Pushed::TooFarAhead;
        }
        if self.base_us.is_none() {
            // The first frame heard: its slot is due JITTER after now. A frame `index` steps
            // into the burst puts the burst's start that far back, and the slots before it
            // are skipped (this listener joined late).
            self.base_us = Some(now_us.saturating_sub(u64::from(index - 1) * FRAME_US));
            self.next = index;
        }
        if index - self.next > MAX_AHEAD_FRAMES {
            return Pushed::TooFarAhead;
        }
        if self.frames.contains_key(&index) {
            return Pushed::Duplicate;
        }
        self.frames.insert(index, opus);
        Pushed::Buffered
    }

    /// The slots due at `now_us`, in order.
    pub fn pop_due(&mut self, now_us: u64) -> Vec<Slot> {
        let mut out = vec![];
        while let Some(due) = self.next_due_us() {
            if due > now_us {
                break;
            }
            out.push(self.take_next());
        }
        out
    }

    fn take_next(&mut self) -> Slot {
        let s = match self.frames.remove(&self.next) {
            Some(f) => Slot::Frame(f),
            None => {
                self.concealed += 1;
                Slot::Missing
            }
        };
        self.next += 1;
        self.played += 1;
        s
    }

    /// The burst ended: every remaining slot up to `last` (the frame count from the release,
    /// or the highest index buffered), at once.
    pub fn finish(&mut self, last: Option<u32>) -> Vec<Slot> {
        if self.base_us.is_none() {
            return vec![];
        }
        let highest = self.frames.keys().next_back().copied().unwrap_or(0);
        let last = last
            .unwrap_or(highest)
            .max(highest)
            .min(self.next.saturating_add(MAX_AHEAD_FRAMES))
            .min(MAX_BURST_FRAMES);
        let mut out = vec![];
        while self.next <= last {
            out.push(self.take_next());
        }
        out
    }
}

#[cfg(test)]
mod tests;
