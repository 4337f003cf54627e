//! Validating envelopes from the network and the log: parse, topic, domain, sender, rights,
//! rate limit, replay and clock, then signature and revocation, then opening what this device
//! may read. One function for every arrival path (gossip, multicast, catch-up, repair), with
//! every refusal that costs a lookup before the signature. Counts every outcome; never
//! decides what the shell does with a peer at fault.

use super::receipt::ReceivedReceipt;
use super::{DIRECT_CHANNEL, DIRECT_CHANNEL_NAME, Node};
use crate::alert::{AlertBody, ReceivedAlert};
use crate::envelope::{self, Envelope, EnvelopeError, Header, Kind};
use crate::receipt;
use crate::replay::ReplayError;

/// How far an envelope's `seq` (its sender's clock, µs) may be ahead of this node's clock on
/// arrival; further is [`Rejection::TooFarAhead`]. The same bound as voice's staleness
/// ([`super::voice::VOICE_MAX_AGE_US`]) the other way, so members' clocks must agree within it.
/// It also bounds the key ratchet: an arriving envelope asks for at most
/// ⌈300 s / `rotate_secs`⌉ periods past the one of this node's clock (5 at the shortest
/// rotation, 60 s), instead of [`crate::keys::MAX_RATCHET_AHEAD`] past the oldest one held.
pub const MAX_AHEAD_US: u64 = 300_000_000;

/// Why a message from the network is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// The envelope itself is bad.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// No certificate for the sender's device number.
    #[error("unknown sender device {0}")]
    UnknownSender(u32),
    /// The sender's certificate is outside its validity period.
    #[error("sender device {0} has an expired certificate")]
    SenderExpired(u32),
    /// The sender may not write to this channel.
    #[error("sender device {sender} may not write to channel {channel}")]
    NotAllowed {
        /// Sender device number.
        sender: u32,
        /// Channel number.
        channel: u32,
    },
    /// Already accepted, or too old.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The plaintext inside a valid envelope does not decode.
    #[error("the plaintext is not a valid alert")]
    BadPlaintext,
    /// Published on the topic of another channel than its header names.
    #[error("envelope for channel {header} arrived on the topic of channel {topic}")]
    WrongTopic {
        /// Channel in the header.
        header: u32,
        /// Channel of the topic.
        topic: u32,
    },
    /// The sender was revoked.
    #[error("sender device {0} was revoked")]
    Revoked(u32),
    /// A voice packet older than [`super::voice::VOICE_MAX_AGE_US`] by this node's clock.
    #[error("voice packet from sender device {0} is too old to play")]
    Stale(u32),
    /// An envelope or voice packet whose seq is more than [`MAX_AHEAD_US`] ahead of this
    /// node's clock.
    #[error("envelope from sender device {0} is more than 300 s ahead of this node's clock")]
    TooFarAhead(u32),
    /// The sender's recent envelopes did not open or opened to no alert, past its fault
    /// budget ([`super::rate_limit::FAULT_POLICY`]): refused before the signature until the
    /// budget refills.
    #[error("sender device {0} sent too many envelopes that do not open")]
    SenderFaulty(u32),
    /// An update or cancellation of another member's alert from a sender without the
    /// dispatcher right ([`crate::cert::RIGHT_DISPATCH`]); found only by a reader, once open.
    #[error("sender device {0} may not update or cancel another member's alert")]
    NotDispatcher(u32),
    /// An emergency declaration from a sender without the emergency right
    /// ([`crate::cert::RIGHT_EMERGENCY`]); found only by a reader, once open.
    #[error("sender device {0} may not declare an emergency")]
    NotEmergency(u32),
    /// The sender is over the channel's rate limit (live gossip and multicast only).
    #[error("sender device {sender} is over the rate limit of channel {channel}")]
    RateLimited {
        /// Sender device number.
        sender: u32,
        /// Channel number.
        channel: u32,
    },
}

impl Rejection {
    /// A short stable name for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Envelope(e) => e.reason(),
            Rejection::UnknownSender(_) => "unknown_sender",
            Rejection::SenderExpired(_) => "sender_expired",
            Rejection::NotAllowed { .. } => "not_allowed",
            Rejection::Replay(ReplayError::Duplicate) => "duplicate",
            Rejection::Replay(ReplayError::TooOld) => "too_old",
            Rejection::BadPlaintext => "bad_plaintext",
            Rejection::WrongTopic { .. } => "wrong_topic",
            Rejection::Revoked(_) => "revoked",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::Stale(_) => "stale",
            Rejection::TooFarAhead(_) => "too_far_ahead",
            Rejection::SenderFaulty(_) => "sender_faulty",
            Rejection::NotDispatcher(_) => "not_dispatcher",
            Rejection::NotEmergency(_) => "not_emergency",
        }
    }
    /// Whether the forwarding peer is at fault (reject and penalise) or the message is
    /// merely unusable here (ignore: drop without forwarding, no penalty).
    pub fn is_peer_fault(&self) -> bool {
        use crate::wire::DecodeError;
        !matches!(
            self,
            Rejection::UnknownSender(_)
                | Rejection::Replay(_)
                | Rejection::SenderExpired(_)
                // A member that has not applied the revocation yet forwards in good faith.
                | Rejection::Revoked(_)
                // Judged by the shell: the sender's own connection is at fault, a relay's
                // (whose budget view differs) is not.
                | Rejection::RateLimited { .. }
                // Clocks differ; a forwarder's may be behind or ahead of this node's.
                | Rejection::Stale(_)
                | Rejection::TooFarAhead(_)
                // Judged by the shell, like the failures it counts.
                | Rejection::SenderFaulty(_)
                // A relay cannot open the ciphertext, so it forwards these in good faith: the
                // authenticated sender is at fault, not the peer that passed it on.
                | Rejection::Envelope(EnvelopeError::Decrypt)
                | Rejection::BadPlaintext
                | Rejection::NotDispatcher(_)
                | Rejection::NotEmergency(_)
                // A newer version is not an attack.
                | Rejection::Envelope(EnvelopeError::Decode(DecodeError::Version { .. }))
        )
    }
}

/// The outcome of validating a message.
#[derive(Debug)]
pub enum Verdict {
    /// Authentic and new: forward and store it; `content` is the opened alert, or why this
    /// node cannot read it.
    Accept {
        /// The envelope.
        envelope: Envelope,
        /// The opened alert, or why it stays sealed here.
        content: Result<Box<ReceivedAlert>, Unreadable>,
    },
    /// An authentic new receipt (`proto/receipts.md`): forward and store it like an alert;
    /// `content` is the opened receipt, or why this node cannot read it.
    Receipt {
        /// The envelope.
        envelope: Envelope,
        /// The opened receipt, or why it stays sealed here.
        content: Result<Box<ReceivedReceipt>, Unreadable>,
    },
    /// Refused.
    Reject(Rejection),
}

/// What an accepted envelope held.
enum Content {
    Alert(Result<Box<ReceivedAlert>, Unreadable>),
    Receipt(Result<Box<ReceivedReceipt>, Unreadable>),
}

/// Why an authentic envelope stays sealed on this node (it is still forwarded and stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// This device may not read the channel (relay-only, or not granted).
    #[error("this device does not read the channel")]
    NotReader,
    /// This device reads the channel but holds no key for that epoch.
    #[error("no key for channel {channel} epoch {epoch}")]
    UnknownEpoch {
        /// Channel number.
        channel: u32,
        /// Key epoch.
        epoch: u32,
    },
    /// The key of the envelope's ratchet period is erased (older than the retention
    /// window), or more than [`crate::keys::MAX_RATCHET_AHEAD`] periods ahead.
    #[error("the key of channel {channel} epoch {epoch} period {period} is erased or out of reach")]
    KeyErased {
        /// Channel number.
        channel: u32,
        /// Key epoch.
        epoch: u32,
        /// Ratchet period.
        period: u64,
    },
}

/// How an envelope reached this node; the checks differ by path. The step numbers are those
/// of `proto/envelope.md` ("Validation order"):
///
/// | Arrival | topic (3) | rate budget (7a, 8b) | replay, clock (7b, 7c) | no forwarder to blame |
/// |---|---|---|---|---|
/// | [`Arrival::Live`] | checked | spent | checked | — |
/// | [`Arrival::Multicast`] | — | spent | checked | yes |
/// | [`Arrival::CatchUp`] | — | — | checked | — |
/// | [`Arrival::Repair`] | — | — | checked | — |
///
/// Every other step (parse, domain, sender, rights, signature, revocation, opening,
/// recording) applies to all four. Voice packets take the same table
/// ([`Node::validate_voice_arrival`]). What the shell does with the peer that passed on a
/// refused envelope is its own choice ([`Rejection::is_peer_fault`]); a multicast datagram
/// has no authenticated forwarder, so nobody is at fault for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Live, on the gossip topic of `topic_channel`: the header must name that channel, and
    /// the sender's rate budget pays for it.
    Live {
        /// The channel whose topic carried the envelope.
        topic_channel: u32,
    },
    /// Pulled by catch-up: the puller paces it, so no rate budget is spent.
    CatchUp,
    /// Live, in a datagram of the sealed multicast plane: as [`Arrival::Live`] without a topic
    /// (the shell checked that this node carries the header's channel); the sender's rate
    /// budget pays for it.
    Multicast,
    /// A repair this node asked for (gossip acting as repair for the plane): paced by the
    /// requester like [`Arrival::CatchUp`], so no rate budget is spent.
    Repair,
}

impl Arrival {
    /// The channel whose gossip topic carried the envelope, when one did.
    pub(super) fn topic(self) -> Option<u32> {
        match self {
            Arrival::Live { topic_channel } => Some(topic_channel),
            _ => None,
        }
    }

    /// Whether the sender's rate budget pays: for what the sender pushes (gossip, multicast),
    /// not for what this node pulls at its own pace (catch-up, repair).
    pub(super) fn spends_budget(self) -> bool {
        matches!(self, Arrival::Live { .. } | Arrival::Multicast)
    }
}

/// An envelope that passed every check before the signature, and its channel's name.
struct Screened {
    env: Envelope,
    channel_name: String,
}

impl Node {
    /// Validates an envelope that came by `arrival` at `now_us`: counts the outcome and,
    /// when accepted, records it in the replay state.
    pub fn validate(&mut self, bytes: &[u8], arrival: Arrival, now_us: u64) -> Verdict {
        let v = self.check(bytes, arrival, now_us);
        match &v {
            Verdict::Accept { content: Ok(_), .. } => self.counters.alerts_received += 1,
            Verdict::Accept {
                content: Err(u), ..
            } => {
                self.counters.alerts_relayed += 1;
                if let Unreadable::UnknownEpoch { .. } = u {
                    self.counters.unknown_epoch += 1;
                }
            }
            Verdict::Receipt { content: Ok(_), .. } => self.counters.receipts_received += 1,
            Verdict::Receipt {
                content: Err(u), ..
            } => {
                self.counters.receipts_relayed += 1;
                if let Unreadable::UnknownEpoch { .. } = u {
                    self.counters.unknown_epoch += 1;
                }
            }
            Verdict::Reject(r) => {
                *self
                    .counters
                    .rejected
                    .entry(r.reason().to_string())
                    .or_default() += 1;
            }
        }
        v
    }

    fn check(&mut self, bytes: &[u8], arrival: Arrival, now_us: u64) -> Verdict {
        match self.check_inner(bytes, arrival, now_us) {
            Ok((envelope, Content::Alert(content))) => Verdict::Accept { envelope, content },
            Ok((envelope, Content::Receipt(content))) => Verdict::Receipt { envelope, content },
            Err(r) => Verdict::Reject(r),
        }
    }

    fn check_inner(
        &mut self,
        bytes: &[u8],
        arrival: Arrival,
        now_us: u64,
    ) -> Result<(Envelope, Content), Rejection> {
        let screened = self.screen(bytes, Some(arrival), now_us)?;
        self.counters.signatures_verified += 1;
        let verified = self.verify(screened, true)?;
        let h = verified.env.header;
        // Pushed traffic spends the sender's budget once the signature proved the sender sent
        // it (so forgeries in a sender's name cannot use it up), and before any key
        // derivation or decryption: signed ciphertext that does not open, or opens to no
        // alert, is the sender's doing and costs it as much as a good alert. Pulled traffic
        // is paced by the puller.
        if arrival.spends_budget() {
            let (sender, channel) = (h.sender, h.channel);
            self.take_budget(sender, channel, now_us)
                .map_err(|_| Rejection::RateLimited { sender, channel })?;
        }
        // Recorded only now that the envelope verified: a forgery carrying a genuine id that
        // is not seen yet fails at the signature and never shadows the genuine envelope. And
        // recorded before opening: a signed envelope that does not open is refused once, then
        // costs a replay lookup on every path, whoever sends it again.
        self.replay.insert(h.sender, h.seq)?;
        let opened = if receipt::is_receipt_channel(h.channel) {
            let Screened { env, channel_name } = verified;
            self.open_receipt(env, channel_name)
                .map(|(e, c)| (e, Content::Receipt(c)))
        } else {
            self.open(verified, now_us)
                .map(|(e, c)| (e, Content::Alert(c)))
        };
        if let Err(
            Rejection::Envelope(EnvelopeError::Decrypt)
            | Rejection::BadPlaintext
            | Rejection::NotDispatcher(_)
            | Rejection::NotEmergency(_),
        ) = opened
        {
            // Only the authenticated sender can make its signed envelope fail to open: it is
            // charged on every path (catch-up and repair too) and channel (rate 0 too).
            self.charge_fault(h.sender, now_us);
        }
        opened
    }

    /// Opens an envelope from this node's own log (for `history`): every check of
    /// validation but the replay and clock checks and revocation, with the sender's
    /// certificate judged at the time the envelope was stored.
    pub fn open_stored(
        &self,
        bytes: &[u8],
        received_at_us: u64,
    ) -> Result<Result<Box<ReceivedAlert>, Unreadable>, Rejection> {
        // A receipt in the log is not an alert: `receipts` reads what it says.
        if envelope::header_of(bytes).is_some_and(|h| receipt::is_receipt_channel(h.channel)) {
            return Ok(Err(Unreadable::NotReader));
        }
        let screened = self.screen(bytes, None, received_at_us)?;
        let verified = self.verify(screened, false)?;
        let (_, content) = self.open(verified, received_at_us)?;
        Ok(content.map(|mut a| {
            a.via = crate::alert::Via::Log;
            a
        }))
    }

    /// The header and plaintext of an alert in this node's own log, when this device can read
    /// it. The log holds only envelopes that passed validation, so the signature is not checked
    /// again, and no certificate is needed for a channel's alert (rebuilding the daemon's
    /// state at start, before any peer has shared its roster, costs a decryption per alert; a
    /// directed message needs the other member's certificate). `None` for a receipt, or for an
    /// update or cancellation this node would refuse now (its sender lost the dispatcher
    /// right).
    pub fn logged_body(&self, bytes: &[u8]) -> Option<(Header, AlertBody)> {
        let env = Envelope::parse(bytes).ok()?;
        let h = env.header;
        if receipt::is_receipt_channel(h.channel) || h.domain_tag != self.domain().tag() {
            return None;
        }
        let key = self.envelope_key(&h, h.channel).ok()?;
        let body = AlertBody::decode(&env.open(self.domain(), &key).ok()?).ok()?;
        if let Some(r) = body.reference
            && r.target().sender != h.sender
            && !self.descriptor.rights(h.sender).dispatcher()
        {
            return None;
        }
        if is_emergency(&body) && !self.descriptor.rights(h.sender).emergency() {
            return None;
        }
        Some((h, body))
    }

    /// Steps 1 to 7c: parse, topic, domain, sender, rights, then (for an envelope that
    /// arrived, not one read from this node's log: `arrival` is `None`) budget, replay and
    /// clock. Each costs a parse or a lookup, none a signature or a key derivation, so a
    /// replayed or far-ahead envelope is refused for the price of a lookup on every path.
    fn screen(
        &self,
        bytes: &[u8],
        arrival: Option<Arrival>,
        now_us: u64,
    ) -> Result<Screened, Rejection> {
        let env = Envelope::parse(bytes)?;
        let h = env.header;
        // A receipt travels with the alerts it reports: on their channel's topic, under its
        // key; its sender needs the right to read that channel, not to write it.
        let base = receipt::base_channel(h.channel);
        let is_receipt = base != h.channel;
        if let Some(t) = arrival.and_then(Arrival::topic).filter(|t| *t != base) {
            return Err(Rejection::WrongTopic {
                header: h.channel,
                topic: t,
            });
        }
        if h.domain_tag != self.domain().tag() {
            return Err(EnvelopeError::WrongDomain.into());
        }
        let sender = self
            .roster
            .get(&h.sender)
            .ok_or(Rejection::UnknownSender(h.sender))?;

        sender
            .check_time(now_us / 1_000_000)
            .map_err(|_| Rejection::SenderExpired(h.sender))?;
        let channel_name = if base == DIRECT_CHANNEL {
            if sender.body.relay_only {
                return Err(Rejection::NotAllowed {
                    sender: h.sender,
                    channel: h.channel,
                });
            }
            DIRECT_CHANNEL_NAME.to_string()
        } else {
            sender
                .grant(base)
                .filter(|g| if is_receipt { g.read } else { g.write })
                .ok_or(Rejection::NotAllowed {
                    sender: h.sender,
                    channel: h.channel,
                })?
                .name
                .clone()
        };
        let Some(arrival) = arrival else {
            return Ok(Screened { env, channel_name });
        };
        // A sender whose budget is spent is refused after the header checks and before the
        // signature check and decryption: a flood past its limit costs a parse and lookups,
        // and a forwarder is still blamed for a malformed, misdirected or unauthorised
        // envelope.
        if arrival.spends_budget() && !self.has_budget(h.sender, h.channel, now_us) {
            return Err(Rejection::RateLimited {
                sender: h.sender,
                channel: h.channel,
            });
        }
        // Looked up, not recorded (that waits for the signature): a replay costs a lookup
        // whichever path it comes by, and a forged header cannot shadow a genuine id.
        self.replay.check(h.sender, h.seq)?;
        // Bounds the clock skew accepted, and with it the ratchet steps a signed envelope
        // can make this node derive.
        if h.seq > now_us.saturating_add(MAX_AHEAD_US) {
            return Err(Rejection::TooFarAhead(h.sender));
        }
        // A sender whose envelopes keep failing to open costs no more signatures for a while.
        if !self.has_fault_budget(h.sender, now_us) {
            return Err(Rejection::SenderFaulty(h.sender));
        }
        Ok(Screened { env, channel_name })
    }

    /// Steps 8 and 9: the signature, then (for an envelope that `arrived`) revocation.
    fn verify(&self, screened: Screened, arrived: bool) -> Result<Screened, Rejection> {
        let h = screened.env.header;
        let sender = self
            .roster
            .get(&h.sender)
            .ok_or(Rejection::UnknownSender(h.sender))?;
        let kind = if receipt::is_receipt_channel(h.channel) {
            Kind::Receipt
        } else {
            Kind::Alert
        };
        screened
            .env
            .verify_kind(kind, self.domain(), sender.verifying_key())?;
        // A revoked sender's new alerts are refused (after the signature: only a verified
        // refusal is remembered); what this node stored before the revocation stays
        // readable in its log.
        if arrived && self.descriptor.is_revoked(h.sender) {
            return Err(Rejection::Revoked(h.sender));
        }
        Ok(screened)
    }

    /// Steps 10 and 11, for a verified envelope: opening when this node reads the channel.
    fn open(
        &self,
        verified: Screened,
        now_us: u64,
    ) -> Result<(Envelope, Result<Box<ReceivedAlert>, Unreadable>), Rejection> {
        let Screened { env, channel_name } = verified;
        let h = env.header;
        let sender = self
            .roster
            .get(&h.sender)
            .ok_or(Rejection::UnknownSender(h.sender))?;
        let direct = h.channel == DIRECT_CHANNEL;
        let me = self.cert.body.device;
        let recipient_name = if h.epoch == me {
            Some(self.cert.body.name.clone())
        } else {
            self.roster.get(&h.epoch).map(|c| c.body.name.clone())
        };
        let key = self.envelope_key(&h, h.channel);
        let content = match key {
            Err(u) => Err(u),
            Ok(key) => {
                let plain = env.open(self.domain(), &key)?;
                let body = AlertBody::decode(&plain).map_err(|_| Rejection::BadPlaintext)?;
                if is_emergency(&body) && !self.descriptor.rights(h.sender).emergency() {
                    return Err(Rejection::NotEmergency(h.sender));
                }
                // Only its sender or a dispatcher may update or cancel an alert.
                let references = match &body.reference {
                    None => None,
                    Some(r) => {
                        let t = r.target();
                        if t.sender != h.sender && !self.descriptor.rights(h.sender).dispatcher() {
                            return Err(Rejection::NotDispatcher(h.sender));
                        }
                        Some(crate::alert::Referenced {
                            id: envelope::alert_id(self.domain(), t.sender, t.seq),
                            sender: self.member_name(t.sender),
                            sender_device: t.sender,
                            created_at_us: t.seq,
                        })
                    }
                };
                // A claim above what the authority allows the sender counts as the most it
                // allows (proto/certificate.md, DeviceRights).
                let severity = self.descriptor.severity_of(h.sender, body.severity);
                Ok(Box::new(ReceivedAlert {
                    claimed_severity: (severity != body.severity).then_some(body.severity),
                    id: envelope::alert_id(self.domain(), h.sender, h.seq),
                    channel: channel_name,
                    sender: sender.body.name.clone(),
                    sender_peer_id: sender.peer_id_text().to_owned(),
                    sender_device: h.sender,
                    seq: h.seq,
                    severity,
                    kind: body.kind,
                    text: body.text,
                    created_at_us: h.seq,
                    received_at_us: now_us,
                    location: body.location,
                    attributes: body.attributes,
                    recipient: if direct { recipient_name } else { None },
                    via: crate::alert::Via::Gossip,
                    late: crate::alert::is_late(h.seq, now_us),
                    msg_type: body
                        .reference
                        .map_or(crate::alert::MsgType::Alert, |r| r.msg_type()),
                    references,
                    state: None,
                }))
            }
        };
        Ok((env, content))
    }
}

/// Whether an alert declares its sender in emergency: kind `emergency`, not a change of
/// another alert.
pub fn is_emergency(body: &AlertBody) -> bool {
    body.kind == crate::alert::EMERGENCY_KIND && body.reference.is_none()
}
