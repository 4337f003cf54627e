//! The decisions of one device, free of I/O: which peers are members, how an alert is
//! sealed, whether a message from the network is accepted, forwarded, opened and shown.
//!
//! The daemon feeds it bytes and `now` and carries out what it returns. It holds the keys,
//! the roster of known member certificates, the replay state and the counters.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};

use libp2p::PeerId;
use serde::Serialize;

use crate::alert::{AlertBody, ReceivedAlert};
use crate::cert::ChannelPolicy;
use crate::cert::{CertError, Certificate, Descriptor};
use crate::cert::{Location, Profile};
use crate::envelope::{self, Envelope, EnvelopeError, Header};
use crate::keys::{Chain, DeviceSecrets, DomainId, MessageKey, SealedKey};
use crate::presence::{Presence, PresenceBody, PresenceError};
use crate::replay::{ReplayError, ReplayGuard};
use crate::update::{Update, UpdateError};

/// The channel number of directed messages (sealed to one device). Its envelopes carry the
/// recipient's device number in the epoch field.
pub const DIRECT_CHANNEL: u32 = 0;
/// The name directed messages show as their channel.
pub const DIRECT_CHANNEL_NAME: &str = "direct";

/// How many sequence numbers per sender the replay guard remembers by default.
pub const DEFAULT_REPLAY_WINDOW: usize = 65_536;
/// How many member certificates a node keeps at most.
pub const MAX_ROSTER: usize = 10_000;
/// How many expanded message keys a node caches (a cache miss costs one HKDF per ratchet
/// step from the oldest period held, plus one).
pub const KEY_CACHE: usize = 64;
/// How many (sender, channel) rate-limit buckets a node keeps; when full, the fullest
/// (idle) buckets go first, which forgets nothing a limit depends on.
pub const MAX_BUCKETS: usize = 4096;
/// How many presence records of devices with no known certificate a node holds until the
/// certificate arrives (the oldest go first): 64 records of at most 4 KiB.
pub const MAX_PRESENCE_WAITING: usize = 64;

/// Everything a node starts from (loaded from a bundle by the shell).
pub struct NodeConfig {
    /// This device's secret keys.
    pub secrets: DeviceSecrets,
    /// This device's certificate.
    pub cert: Certificate,
    /// The domain descriptor.
    pub descriptor: Descriptor,
    /// Channel key chains this device may use: (channel, epoch, chain).
    pub channel_secrets: Vec<(u32, u32, Chain)>,
}

/// Why a peer is not admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Its certificate does not check out.
    #[error("certificate refused: {0}")]
    Cert(#[from] CertError),
    /// Another certificate (another key) already holds its device number.
    #[error("device number {0} is already held by another key")]
    Conflict(u32),
    /// The roster is full.
    #[error("roster is full")]
    RosterFull,
    /// The device was revoked by the domain authority.
    #[error("device {0} was revoked by the domain authority")]
    Revoked(u32),
}

/// Why an alert cannot be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The channel does not exist in this domain.
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// This device's certificate does not allow writing to the channel.
    #[error("this device may not write to channel {0:?}")]
    NotAllowed(String),
    /// No key for the channel.
    #[error("this device holds no key for channel {0:?}")]
    NoKey(String),
    /// A field is out of range.
    #[error("{0}")]
    Invalid(String),
    /// No member of that name is known.
    #[error("no member named {0:?} is known (see ptt-node search)")]
    UnknownDevice(String),
    /// The plaintext is too large.
    #[error("the alert is {0} bytes, more than the {max} allowed", max = crate::alert::MAX_ALERT_LEN)]
    TooLarge(usize),
    /// Over the channel's rate limit: members would drop it.
    #[error(
        "over channel {channel:?}'s limit of {rate_per_min} alerts a minute (burst {burst}); try again in {retry_ms} ms"
    )]
    RateLimited {
        /// Channel name.
        channel: String,
        /// The limit.
        rate_per_min: u32,
        /// The burst.
        burst: u32,
        /// When one alert's worth of budget is back.
        retry_ms: u64,
    },
    /// This device was revoked.
    #[error("this device was revoked by the domain authority; it can no longer send")]
    Revoked,
}

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
    /// A voice packet older than [`voice::VOICE_MAX_AGE_US`] by this node's clock.
    #[error("voice packet from sender device {0} is too old to play")]
    Stale(u32),
    /// The sender is over the channel's rate limit (live gossip only).
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
                // Clocks differ; a forwarder may be ahead of this node's.
                | Rejection::Stale(_)
                // A relay cannot open the ciphertext, so it forwards these in good faith: the
                // authenticated sender is at fault, not the peer that passed it on.
                | Rejection::Envelope(EnvelopeError::Decrypt)
                | Rejection::BadPlaintext
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
    /// Refused.
    Reject(Rejection),
}

/// A device search (`ptt-node search`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// Device kind (case-insensitive).
    pub kind: Option<String>,
    /// Within this many metres of this place.
    pub near: Option<(Location, f64)>,
    /// Every one of these tags.
    pub tags: Vec<(String, String)>,
}

/// A member found by a search.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its certificate.
    pub cert: Certificate,
    /// Its profile now.
    pub profile: Profile,
    /// Addresses from its latest presence record.
    pub addresses: Vec<String>,
    /// Distance from the searched place.
    pub distance_m: Option<f64>,
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

/// What applying an update changed.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The revision now held.
    pub serial: u64,
    /// The update's note.
    pub note: String,
    /// Members revoked by it: (device, peer id) of those known.
    pub revoked: Vec<(u32, PeerId)>,
    /// Whether this device itself was revoked.
    pub revoked_self: bool,
    /// Certificates it added that were new here.
    pub new_certs: Vec<Vec<u8>>,
    /// Channel epochs whose keys this device received: (channel, epoch).
    pub new_keys: Vec<(u32, u32)>,
}

/// A token bucket per (sender, channel).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_us: u64,
}

impl Bucket {
    /// Tokens refilled up to `now_us`.
    fn tokens_at(&self, p: &ChannelPolicy, now_us: u64) -> f64 {
        let per_us = f64::from(p.rate_per_min) / 60e6;
        let elapsed = now_us.saturating_sub(self.at_us) as f64;
        (self.tokens + elapsed * per_us).min(f64::from(p.burst.max(1)))
    }

    /// Whether a token is there at `now_us` (nothing taken).
    fn has_token(&self, p: &ChannelPolicy, now_us: u64) -> bool {
        self.tokens_at(p, now_us) >= 1.0
    }

    /// Takes one token at `now_us`; `Err(µs until one is back)` when empty.
    fn take(&mut self, p: &ChannelPolicy, now_us: u64) -> Result<(), u64> {
        let per_us = f64::from(p.rate_per_min) / 60e6;
        self.tokens = self.tokens_at(p, now_us);
        self.at_us = self.at_us.max(now_us);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_us).ceil() as u64)
        }
    }
}

/// Whether the bucket of `key` has a token at `now_us` under `p` (nothing taken).
fn has_token(
    buckets: &HashMap<(u32, u32), Bucket>,
    key: (u32, u32),
    p: &ChannelPolicy,
    now_us: u64,
) -> bool {
    buckets.get(&key).is_none_or(|b| b.has_token(p, now_us))
}

/// Takes a token from the bucket of `key` under `p` at `now_us` (a new bucket starts full);
/// `Err(µs until one is back)`. At [`MAX_BUCKETS`] buckets, the full ones are forgotten first.
fn take_token(
    buckets: &mut HashMap<(u32, u32), Bucket>,
    key: (u32, u32),
    p: &ChannelPolicy,
    now_us: u64,
) -> Result<(), u64> {
    if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
        // Forget the buckets that have refilled: they constrain nothing.
        let cap = f64::from(p.burst.max(1));
        buckets.retain(|_, b| b.tokens_at(p, now_us) < cap);
        if buckets.len() >= MAX_BUCKETS {
            buckets.clear();
        }
    }
    buckets
        .entry(key)
        .or_insert(Bucket {
            tokens: f64::from(p.burst.max(1)),
            at_us: now_us,
        })
        .take(p, now_us)
}

/// A freshly sealed alert.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Envelope bytes to store and publish.
    pub bytes: Vec<u8>,
    /// Alert id.
    pub id: String,
    /// Channel number.
    pub channel: u32,
    /// Channel name.
    pub channel_name: String,
    /// Sequence number used.
    pub seq: u64,
}

/// Counters reported by `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Alerts this node sealed.
    pub alerts_sent: u64,
    /// Alerts this node accepted and opened.
    pub alerts_received: u64,
    /// Alerts this node accepted but cannot read (forwarded and stored only).
    pub alerts_relayed: u64,
    /// Refusals by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Peers refused at authentication.
    pub peers_refused: u64,
    /// Authentic alerts of a readable channel under an epoch this node has no key for.
    pub unknown_epoch: u64,
    /// Domain updates applied.
    pub updates_applied: u64,
    /// Ratchet periods erased.
    pub keys_erased: u64,
    /// Voice packets this node sealed.
    pub voice_sent: u64,
    /// Voice packets this node accepted and opened.
    pub voice_received: u64,
    /// Voice packets this node accepted but cannot read (forwarded only).
    pub voice_relayed: u64,
}

/// One device's protocol state.
pub struct Node {
    secrets: DeviceSecrets,
    cert: Certificate,
    descriptor: Descriptor,
    keys: HashMap<(u32, u32), Chain>,
    key_cache: RefCell<HashMap<(u32, u32, u64, bool), MessageKey>>,
    voice_buckets: HashMap<(u32, u32), Bucket>,
    voice_replay: ReplayGuard,
    /// Voice packets with a seq below this are refused as stale (set at start-up).
    voice_since_us: u64,
    buckets: HashMap<(u32, u32), Bucket>,
    own_limit: bool,
    current_epoch: HashMap<u32, u32>,
    roster: HashMap<u32, Certificate>,
    presence: HashMap<u32, Presence>,
    /// Presence records of devices whose certificate is not known yet, as (device, claimed
    /// `issued_us`, bytes): the newest claimed per device, at most [`MAX_PRESENCE_WAITING`].
    /// Learned by [`Node::learn_waiting_presence`] once the certificate arrives (a roster push
    /// and a presence push travel on parallel streams).
    presence_waiting: VecDeque<(u32, u64, Vec<u8>)>,
    replay: ReplayGuard,
    last_seq: u64,
    counters: Counters,
}

impl Node {
    /// A node with no peers yet. `last_seq` is the highest sequence number this device ever
    /// stored (from the store), so none is reused.
    pub fn new(cfg: NodeConfig, last_seq: u64) -> Self {
        let mut keys: HashMap<(u32, u32), Chain> = HashMap::new();
        let mut current_epoch: HashMap<u32, u32> = HashMap::new();
        for (channel, epoch, chain) in cfg.channel_secrets {
            // Two copies of one epoch (the bundle's and the saved state): keep the one that
            // reaches further back; erasure moves it on.
            match keys.get(&(channel, epoch)) {
                Some(c) if c.period <= chain.period => {}
                _ => {
                    keys.insert((channel, epoch), chain);
                }
            }
            let e = current_epoch.entry(channel).or_insert(epoch);
            *e = (*e).max(epoch);
        }
        let mut roster = HashMap::new();
        roster.insert(cfg.cert.body.device, cfg.cert.clone());
        Node {
            secrets: cfg.secrets,
            cert: cfg.cert,
            descriptor: cfg.descriptor,
            keys,
            key_cache: RefCell::new(HashMap::new()),
            voice_buckets: HashMap::new(),
            voice_replay: ReplayGuard::new(voice::VOICE_REPLAY_WINDOW),
            voice_since_us: 0,
            buckets: HashMap::new(),
            own_limit: true,
            current_epoch,
            roster,
            presence: HashMap::new(),
            presence_waiting: VecDeque::new(),
            replay: ReplayGuard::new(DEFAULT_REPLAY_WINDOW),
            last_seq,
            counters: Counters::default(),
        }
    }

    /// The domain id.
    pub fn domain(&self) -> &DomainId {
        &self.descriptor.domain
    }
    /// The descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }
    /// This device's certificate.
    pub fn cert(&self) -> &Certificate {
        &self.cert
    }
    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Mutable counters (for events the shell observes, such as refused peers).
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }
    /// Member certificates known, this device's included (revoked ones too: their old
    /// alerts stay readable in the log).
    pub fn roster(&self) -> impl Iterator<Item = &Certificate> {
        self.roster.values()
    }

    /// Whether this device keeps to the rate limits when sealing (on by default; off only
    /// to test how members treat a compromised member that floods).
    pub fn set_own_rate_limit(&mut self, on: bool) {
        self.own_limit = on;
    }

    /// The domain's private-network key, when this device holds it.
    pub fn network_key(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.keys
            .get(&(crate::domain::NETWORK_KEY_CHANNEL, 0))
            .map(|c| zeroize::Zeroizing::new(c.secret.0))
    }

    /// The epoch this device seals a channel with.
    pub fn current_epoch(&self, channel: u32) -> Option<u32> {
        self.current_epoch.get(&channel).copied()
    }

    /// The descriptor revision this device holds (the serial of the last update applied).
    pub fn revision(&self) -> u64 {
        self.descriptor.body.revision
    }

    /// Whether the authority revoked this device.
    pub fn is_revoked_self(&self) -> bool {
        self.descriptor.is_revoked(self.cert.body.device)
    }

    /// The message key of (channel, epoch) for an envelope with sequence number `seq`.
    fn key_for(&self, channel: u32, epoch: u32, seq: u64) -> Result<MessageKey, Unreadable> {
        self.key_of(channel, epoch, seq, false)
    }

    /// The message key (or, with `voice`, the voice key) of (channel, epoch) for `seq`'s
    /// ratchet period.
    fn key_of(
        &self,
        channel: u32,
        epoch: u32,
        seq: u64,
        voice: bool,
    ) -> Result<MessageKey, Unreadable> {
        let chain = self
            .keys
            .get(&(channel, epoch))
            .ok_or(Unreadable::UnknownEpoch { channel, epoch })?;
        let period = Chain::period_of(chain.rotate_secs, seq);
        if let Some(k) = self
            .key_cache
            .borrow()
            .get(&(channel, epoch, period, voice))
        {
            return Ok(k.clone());
        }
        let secret = chain.secret_at(period).ok_or(Unreadable::KeyErased {
            channel,
            epoch,
            period,
        })?;
        let key = if voice {
            secret.voice_key(self.domain(), channel, epoch, period)
        } else {
            secret.message_key(self.domain(), channel, epoch, period)
        };
        let mut cache = self.key_cache.borrow_mut();
        if cache.len() >= KEY_CACHE {
            cache.clear();
        }
        cache.insert((channel, epoch, period, voice), key.clone());
        Ok(key)
    }

    /// Erases every ratchet period that ended before `now_us - window_us` (the retention
    /// window): the keys are gone from memory, and the caller saves [`Node::key_state`] so
    /// they are gone from disk. Returns how many periods were erased.
    pub fn erase_keys(&mut self, now_us: u64, window_us: u64) -> u64 {
        let mut erased = 0;
        for chain in self.keys.values_mut() {
            // Never keep more periods than can be derived forward to now: with a short
            // rotation and a long window the oldest ones go early.
            let reach = u64::from(chain.rotate_secs)
                .saturating_mul(crate::keys::MAX_RATCHET_AHEAD / 2)
                .saturating_mul(1_000_000);
            let floor_us = now_us.saturating_sub(window_us.min(reach));
            let target = Chain::period_of(chain.rotate_secs, floor_us);
            let before = chain.period;
            if chain.advance_to(target) {
                erased += chain.period - before;
            }
        }
        if erased > 0 {
            let keys = &self.keys;
            self.key_cache
                .borrow_mut()
                .retain(|(c, e, p, _), _| keys.get(&(*c, *e)).is_some_and(|k| *p >= k.period));
            self.counters.keys_erased += erased;
        }
        erased
    }

    /// The key chains held, to be saved (secret: the caller writes them 0600 and zeroizes).
    pub fn key_state(&self) -> Vec<(u32, u32, Chain)> {
        let mut v: Vec<(u32, u32, Chain)> = self
            .keys
            .iter()
            .map(|((c, e), k)| (*c, *e, k.clone()))
            .collect();
        v.sort_by_key(|(c, e, _)| (*c, *e));
        v
    }

    /// The oldest ratchet period held for (channel, epoch).
    pub fn key_period(&self, channel: u32, epoch: u32) -> Option<u64> {
        self.keys.get(&(channel, epoch)).map(|c| c.period)
    }

    /// Applies a domain update: it must be signed by the authority and be the next one in
    /// order. Takes its descriptor, certificates and the keys sealed to this device.
    pub fn apply_update(&mut self, bytes: &[u8], now_secs: u64) -> Result<Applied, UpdateError> {
        let u = Update::from_bytes(bytes, &self.descriptor.authority, self.domain())?;
        let have = self.revision();
        if u.body.serial <= have {
            return Err(UpdateError::Stale {
                serial: u.body.serial,
                have,
            });
        }
        if u.body.requires > have {
            return Err(UpdateError::Gap {
                serial: u.body.serial,
                requires: u.body.requires,
                have,
            });
        }
        let me = self.cert.body.device;
        // Everyone the new descriptor revokes that the old one did not (an update skipped
        // on the way may have revoked some too).
        let newly: Vec<u32> = u
            .descriptor
            .body
            .revoked
            .iter()
            .copied()
            .filter(|d| !self.descriptor.is_revoked(*d))
            .collect();
        self.descriptor = u.descriptor.clone();
        let mut new_certs = vec![];
        for c in &u.body.certs {
            match self.learn_certificate(c, now_secs) {
                Ok(true) => new_certs.push(c.clone()),
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "certificate in update not admitted"),
            }
        }
        let mut new_keys = vec![];
        for k in &u.body.keys {
            let Ok(sealed) = SealedKey::from_bytes(k, &self.descriptor.authority) else {
                continue;
            };
            if sealed.body.device != me {
                continue;
            }
            let Ok(chain) = sealed.open(self.domain(), me, &self.secrets.x25519) else {
                continue;
            };
            let (channel, epoch) = (sealed.body.channel, sealed.body.epoch);
            if self.keys.contains_key(&(channel, epoch)) {
                continue;
            }
            self.keys.insert((channel, epoch), chain);
            let e = self.current_epoch.entry(channel).or_insert(epoch);
            *e = (*e).max(epoch);
            new_keys.push((channel, epoch));
        }
        let revoked = newly
            .iter()
            .filter(|d| **d != me)
            .filter_map(|d| self.roster.get(d).map(|c| (*d, c.peer_id())))
            .collect();
        self.counters.updates_applied += 1;
        Ok(Applied {
            serial: u.body.serial,
            note: u.body.note.clone(),
            revoked,
            revoked_self: newly.contains(&me),
            new_certs,
            new_keys,
        })
    }

    /// The rate policy of a channel (directed messages: the default).
    fn rate_policy(&self, channel: u32) -> ChannelPolicy {
        if channel == DIRECT_CHANNEL {
            ChannelPolicy::default()
        } else {
            self.descriptor.policy(channel)
        }
    }

    /// Whether the (sender, channel) budget has an alert left at `now_us` (nothing taken).
    fn has_budget(&self, sender: u32, channel: u32, now_us: u64) -> bool {
        let p = self.rate_policy(channel);
        p.rate_per_min == 0 || has_token(&self.buckets, (sender, channel), &p, now_us)
    }

    /// Takes one alert from the (sender, channel) budget at `now_us`; `Err(µs to wait)`.
    fn take_budget(&mut self, sender: u32, channel: u32, now_us: u64) -> Result<(), u64> {
        let p = self.rate_policy(channel);
        if p.rate_per_min == 0 {
            return Ok(());
        }
        take_token(&mut self.buckets, (sender, channel), &p, now_us)
    }

    /// Learns a presence record; `Ok(true)` when it is new or newer than the one held. A
    /// record of a device whose certificate is not known yet is refused with
    /// [`PresenceError::UnknownDevice`] and held (bounded) until
    /// [`Node::learn_waiting_presence`] finds the certificate.
    pub fn learn_presence(&mut self, bytes: &[u8]) -> Result<bool, PresenceError> {
        let (device, issued_us) = Presence::claimed(bytes)?;
        // This device speaks for itself; an old record of ours echoed back is ignored.
        if device == self.cert.body.device {
            return Ok(false);
        }
        let Some(cert) = self.roster.get(&device) else {
            // The newest claim per device waits (a device may sign two records at start-up,
            // and they may arrive in either order).
            let newer_held = self
                .presence_waiting
                .iter()
                .any(|(d, t, _)| *d == device && *t >= issued_us);
            if bytes.len() <= crate::presence::MAX_PRESENCE_LEN && !newer_held {
                self.presence_waiting.retain(|(d, _, _)| *d != device);
                if self.presence_waiting.len() >= MAX_PRESENCE_WAITING {
                    self.presence_waiting.pop_front();
                }
                self.presence_waiting
                    .push_back((device, issued_us, bytes.to_vec()));
            }
            return Err(PresenceError::UnknownDevice(device));
        };
        // A record no newer than the one held changes nothing, whoever signed it: no
        // signature check (every admission brings every record again).
        if self
            .presence
            .get(&device)
            .is_some_and(|old| old.body.issued_us >= issued_us)
        {
            return Ok(false);
        }
        // Verified, the record says what it claimed: newer than the one held.
        let p = Presence::verify(bytes, cert)?;
        self.presence.insert(device, p);
        Ok(true)
    }

    /// Learns the held presence records whose device now has a certificate (see
    /// [`Node::learn_presence`]); returns those that were new, to act on and pass on. Records
    /// that fail verification are dropped.
    pub fn learn_waiting_presence(&mut self) -> Vec<Vec<u8>> {
        if self.presence_waiting.is_empty() {
            return vec![];
        }
        let (ready, waiting): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.presence_waiting)
                .into_iter()
                .partition(|(d, _, _)| self.roster.contains_key(d));
        self.presence_waiting = waiting;
        ready
            .into_iter()
            .map(|(_, _, r)| r)
            .filter(|r| self.learn_presence(r) == Ok(true))
            .collect()
    }

    /// Signs this device's presence (addresses, and profile when it differs from the
    /// certificate's) at `now_us`, strictly newer than the last one, and holds it.
    pub fn issue_presence(
        &mut self,
        addresses: Vec<String>,
        profile: Option<Profile>,
        now_us: u64,
    ) -> Presence {
        let me = self.cert.body.device;
        let last = self.presence.get(&me).map_or(0, |p| p.body.issued_us);
        let body = PresenceBody {
            version: 1,
            domain: *self.domain(),
            device: me,
            issued_us: now_us.max(last.saturating_add(1)),
            addresses: addresses
                .into_iter()
                .filter(|a| a.len() <= crate::presence::MAX_ADDRESS_LEN)
                .take(crate::presence::MAX_ADDRESSES)
                .collect(),
            profile,
        };
        let mut body = body;
        // Every peer refuses a record over the limit: shed addresses, then the profile.
        while crate::wire::encode(&body).len() + crate::keys::SIG_LEN
            > crate::presence::MAX_PRESENCE_LEN
        {
            if body.addresses.pop().is_none() {
                body.profile = None;
                break;
            }
        }
        let p = Presence::issue(&self.secrets.identity, body);
        self.presence.insert(me, p.clone());
        p
    }

    /// Every presence record held.
    pub fn presence_records(&self) -> impl Iterator<Item = &Presence> {
        self.presence.values()
    }

    /// The profile a member has now: its latest presence record's, else its certificate's.
    pub fn profile_of(&self, cert: &Certificate) -> Profile {
        self.presence
            .get(&cert.body.device)
            .and_then(|p| p.body.profile.clone())
            .unwrap_or_else(|| cert.body.profile.clone())
    }

    /// Members matching a search, nearest first when searching near a place, else by name.
    pub fn search(&self, q: &Search) -> Vec<Found> {
        let mut out: Vec<Found> = self
            .roster
            .values()
            .filter_map(|c| {
                let profile = self.profile_of(c);
                if q.kind
                    .as_ref()
                    .is_some_and(|k| !profile.kind.eq_ignore_ascii_case(k))
                {
                    return None;
                }
                if !q.tags.iter().all(|t| profile.tags.contains(t)) {
                    return None;
                }
                let distance_m = match (q.near, profile.location) {
                    (Some((at, radius)), Some(loc)) => {
                        let d = crate::presence::distance_m(at, loc);
                        if d > radius {
                            return None;
                        }
                        Some(d)
                    }
                    (Some(_), None) => return None,
                    (None, _) => None,
                };
                let addresses = self
                    .presence
                    .get(&c.body.device)
                    .map(|p| p.body.addresses.clone())
                    .unwrap_or_default();
                Some(Found {
                    cert: c.clone(),
                    profile,
                    addresses,
                    distance_m,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            a.distance_m
                .partial_cmp(&b.distance_m)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.cert.body.name.cmp(&b.cert.body.name))
        });
        out
    }

    /// The certificate of a member by device number.
    pub fn member(&self, device: u32) -> Option<&Certificate> {
        self.roster.get(&device)
    }

    /// Whether a certificate with this peer id is known.
    pub fn knows_peer(&self, peer: &PeerId) -> bool {
        self.roster.values().any(|c| c.peer_id() == *peer)
    }
    /// The replay state (for persistence and catch-up).
    pub fn replay(&mut self) -> &mut ReplayGuard {
        &mut self.replay
    }
    /// Channel names this device may read.
    pub fn readable_channels(&self) -> Vec<String> {
        self.cert
            .body
            .grants
            .iter()
            .filter(|g| g.read && self.current_epoch.contains_key(&g.channel))
            .map(|g| g.name.clone())
            .collect()
    }
    /// Channel numbers this device carries (reads, writes or relays): its grants, and the
    /// channel of directed messages, which every member carries.
    pub fn carried_channels(&self) -> Vec<u32> {
        std::iter::once(DIRECT_CHANNEL)
            .chain(self.cert.body.grants.iter().map(|g| g.channel))
            .collect()
    }

    /// Admits a peer whose Noise-proved id is `peer` and who presented `cert_bytes`.
    pub fn authenticate_peer(
        &mut self,
        peer: &PeerId,
        cert_bytes: &[u8],
        now_secs: u64,
    ) -> Result<Certificate, AuthError> {
        let cert = self.check_cert(cert_bytes, now_secs)?;
        cert.check_peer(peer)?;
        self.admit(cert.clone())?;
        Ok(cert)
    }

    /// Learns a member certificate relayed by another member (roster sync).
    pub fn learn_certificate(
        &mut self,
        cert_bytes: &[u8],
        now_secs: u64,
    ) -> Result<bool, AuthError> {
        let cert = self.check_cert(cert_bytes, now_secs)?;
        let new = !self.roster.contains_key(&cert.body.device);
        self.admit(cert)?;
        Ok(new)
    }

    fn check_cert(&self, cert_bytes: &[u8], now_secs: u64) -> Result<Certificate, AuthError> {
        // The same bytes as a certificate in the roster (verified when it was admitted): no
        // second signature check. Every admission and roster push brings the whole roster
        // again, so without this a 30-node start verified each certificate dozens of times.
        let known = Certificate::claimed_device(cert_bytes)
            .ok()
            .and_then(|device| self.roster.get(&device))
            .filter(|c| c.as_bytes() == cert_bytes)
            .cloned();
        let cert = match known {
            Some(c) => c,
            None => Certificate::from_bytes(cert_bytes, &self.descriptor.authority, self.domain())?,
        };
        if self.descriptor.is_revoked(cert.body.device) {
            return Err(AuthError::Revoked(cert.body.device));
        }
        cert.check_time(now_secs)?;
        Ok(cert)
    }

    fn admit(&mut self, cert: Certificate) -> Result<(), AuthError> {
        match self.roster.get(&cert.body.device) {
            Some(old) if old.body.ed25519 != cert.body.ed25519 => {
                return Err(AuthError::Conflict(cert.body.device));
            }
            Some(_) => {}
            None if self.roster.len() >= MAX_ROSTER => return Err(AuthError::RosterFull),
            None => {}
        }
        self.roster.insert(cert.body.device, cert);
        Ok(())
    }

    /// The channel named `channel` as this device may write to it: (number, name, current
    /// epoch), or why it may not.
    fn writable(&self, channel: &str) -> Result<(u32, String, u32), SealError> {
        let info = self
            .descriptor
            .channel_by_name(channel)
            .map(|c| c.id)
            .or_else(|| {
                self.cert
                    .body
                    .grants
                    .iter()
                    .find(|g| g.name == channel)
                    .map(|g| g.channel)
            })
            .ok_or_else(|| SealError::UnknownChannel(channel.to_string()))?;
        let grant = self
            .cert
            .grant(info)
            .filter(|g| g.write)
            .ok_or_else(|| SealError::NotAllowed(channel.to_string()))?;
        let (grant_channel, grant_name) = (grant.channel, grant.name.clone());
        if self.is_revoked_self() {
            return Err(SealError::Revoked);
        }
        let epoch = *self
            .current_epoch
            .get(&grant_channel)
            .ok_or_else(|| SealError::NoKey(channel.to_string()))?;
        Ok((grant_channel, grant_name, epoch))
    }

    /// Seals `plain` as an envelope of `kind` from this device, with header (channel, epoch,
    /// seq), and moves the sequence counter to `seq`.
    fn seal_own(
        &mut self,
        kind: envelope::Kind,
        channel: u32,
        epoch: u32,
        seq: u64,
        key: &MessageKey,
        plain: &[u8],
    ) -> Vec<u8> {
        let header = Header {
            version: envelope::VERSION,
            domain_tag: self.domain().tag(),
            channel,
            epoch,
            sender: self.cert.body.device,
            seq,
        };
        let bytes = envelope::seal_kind(
            kind,
            &self.secrets.identity,
            self.domain(),
            &header,
            key,
            plain,
        );
        self.last_seq = seq;
        bytes
    }

    /// The next sequence number for an envelope of (channel, epoch) at `now_us`.
    fn next_seq(&self, channel: u32, epoch: u32, now_us: u64) -> u64 {
        // A clock behind the start of the key chain this device holds (say, behind the
        // authority's at enrolment) would pick an erased period: start from the chain instead.
        let chain_start_us = self.keys.get(&(channel, epoch)).map_or(0, |c| {
            c.period
                .saturating_mul(u64::from(c.rotate_secs))
                .saturating_mul(1_000_000)
        });
        now_us
            .max(chain_start_us)
            .max(self.last_seq.saturating_add(1))
    }

    /// Seals an alert for `channel` at time `now_us`. The caller publishes it only once a
    /// durable lease covers its sequence number, `max(last + 1, now_us)` (proto/envelope.md).
    pub fn seal_alert(
        &mut self,
        channel: &str,
        body: &AlertBody,
        now_us: u64,
    ) -> Result<Sealed, SealError> {
        let (grant_channel, grant_name, epoch) = self.writable(channel)?;
        if let Some(loc) = &body.location {
            loc.check().map_err(SealError::Invalid)?;
        }
        let plain = body.encode();
        if plain.len() > crate::alert::MAX_ALERT_LEN {
            return Err(SealError::TooLarge(plain.len()));
        }
        let seq = self.next_seq(grant_channel, epoch, now_us);
        let key = self
            .key_for(grant_channel, epoch, seq)
            .map_err(|_| SealError::NoKey(channel.to_string()))?;
        let me = self.cert.body.device;
        if self.own_limit
            && let Err(wait_us) = self.take_budget(me, grant_channel, now_us)
        {
            let p = self.descriptor.policy(grant_channel);
            return Err(SealError::RateLimited {
                channel: grant_name,
                rate_per_min: p.rate_per_min,
                burst: p.burst,
                retry_ms: wait_us.div_ceil(1000),
            });
        }
        let bytes = self.seal_own(
            envelope::Kind::Alert,
            grant_channel,
            epoch,
            seq,
            &key,
            &plain,
        );
        // Our own alerts are never accepted back from the network.
        let _ = self.replay.insert(me, seq);
        self.counters.alerts_sent += 1;
        Ok(Sealed {
            bytes,
            id: envelope::alert_id(self.domain(), me, seq),
            channel: grant_channel,
            channel_name: grant_name,
            seq,
        })
    }

    /// Seals a directed message to the member named `to` (pairwise key from static X25519).
    pub fn seal_direct(
        &mut self,
        to: &str,
        body: &AlertBody,
        now_us: u64,
    ) -> Result<Sealed, SealError> {
        if self.cert.body.relay_only {
            return Err(SealError::NotAllowed(DIRECT_CHANNEL_NAME.into()));
        }
        if self.is_revoked_self() {
            return Err(SealError::Revoked);
        }
        let recipient = self
            .roster
            .values()
            .filter(|c| c.body.name == to && !self.descriptor.is_revoked(c.body.device))
            .max_by_key(|c| c.body.device)
            .cloned()
            .ok_or_else(|| SealError::UnknownDevice(to.to_string()))?;
        if let Some(loc) = &body.location {
            loc.check().map_err(SealError::Invalid)?;
        }
        let plain = body.encode();
        if plain.len() > crate::alert::MAX_ALERT_LEN {
            return Err(SealError::TooLarge(plain.len()));
        }
        let me = self.cert.body.device;
        let to_device = recipient.body.device;
        let key = crate::keys::direct_key(
            self.domain(),
            &self.secrets.x25519,
            &recipient.body.x25519,
            me,
            to_device,
        );
        let seq = now_us.max(self.last_seq.saturating_add(1));
        if let Err(wait_us) = self.take_budget(me, DIRECT_CHANNEL, now_us) {
            let p = ChannelPolicy::default();
            return Err(SealError::RateLimited {
                channel: DIRECT_CHANNEL_NAME.into(),
                rate_per_min: p.rate_per_min,
                burst: p.burst,
                retry_ms: wait_us.div_ceil(1000),
            });
        }
        let bytes = self.seal_own(
            envelope::Kind::Alert,
            DIRECT_CHANNEL,
            to_device,
            seq,
            &key,
            &plain,
        );
        let _ = self.replay.insert(me, seq);
        self.counters.alerts_sent += 1;
        Ok(Sealed {
            bytes,
            id: envelope::alert_id(self.domain(), me, seq),
            channel: DIRECT_CHANNEL,
            channel_name: DIRECT_CHANNEL_NAME.into(),
            seq,
        })
    }

    /// Validates a message from the network at `now_us`: counts the outcome and, when
    /// accepted, records it in the replay state.
    pub fn validate(&mut self, bytes: &[u8], now_us: u64) -> Verdict {
        self.validate_on(bytes, None, now_us)
    }

    /// Like [`Node::validate`], for a message that arrived on the topic of `topic_channel`.
    pub fn validate_on(
        &mut self,
        bytes: &[u8],
        topic_channel: Option<u32>,
        now_us: u64,
    ) -> Verdict {
        let v = self.check(bytes, topic_channel, now_us);
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

    fn check(&mut self, bytes: &[u8], topic_channel: Option<u32>, now_us: u64) -> Verdict {
        match self.check_inner(bytes, topic_channel, now_us) {
            Ok((envelope, content)) => Verdict::Accept { envelope, content },
            Err(r) => Verdict::Reject(r),
        }
    }

    fn check_inner(
        &mut self,
        bytes: &[u8],
        topic_channel: Option<u32>,
        now_us: u64,
    ) -> Result<(Envelope, Result<Box<ReceivedAlert>, Unreadable>), Rejection> {
        // Live traffic spends the sender's budget (after every check passed, so forgeries in a
        // sender's name cannot use it up); catch-up is paced by the puller.
        let (env, content) = self.examine(bytes, topic_channel, now_us, true)?;
        if topic_channel.is_some() {
            let (sender, channel) = (env.header.sender, env.header.channel);
            self.take_budget(sender, channel, now_us)
                .map_err(|_| Rejection::RateLimited { sender, channel })?;
        }
        self.replay.insert(env.header.sender, env.header.seq)?;
        Ok((env, content))
    }

    /// Opens an envelope from this node's own log (for `history`): every check of
    /// validation but the replay check, with the sender's certificate judged at the time the
    /// envelope was stored.
    pub fn open_stored(
        &self,
        bytes: &[u8],
        received_at_us: u64,
    ) -> Result<Result<Box<ReceivedAlert>, Unreadable>, Rejection> {
        let (_, content) = self.examine(bytes, None, received_at_us, false)?;
        Ok(content.map(|mut a| {
            a.via = crate::alert::Via::Log;
            a
        }))
    }

    /// Every check but recording: parse, topic, domain, sender, rights, signature, optionally
    /// replay, then open when this node reads the channel.
    fn examine(
        &self,
        bytes: &[u8],
        topic_channel: Option<u32>,
        now_us: u64,
        check_replay: bool,
    ) -> Result<(Envelope, Result<Box<ReceivedAlert>, Unreadable>), Rejection> {
        let env = Envelope::parse(bytes)?;
        let h = env.header;
        if let Some(t) = topic_channel.filter(|t| *t != h.channel) {
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
        let direct = h.channel == DIRECT_CHANNEL;
        let channel_name = if direct {
            if sender.body.relay_only {
                return Err(Rejection::NotAllowed {
                    sender: h.sender,
                    channel: h.channel,
                });
            }
            DIRECT_CHANNEL_NAME.to_string()
        } else {
            sender
                .grant(h.channel)
                .filter(|g| g.write)
                .ok_or(Rejection::NotAllowed {
                    sender: h.sender,
                    channel: h.channel,
                })?
                .name
                .clone()
        };
        // Live gossip of a sender whose budget is spent is refused here, after the header
        // checks and before the signature check and decryption: a flood past its limit costs
        // a parse and lookups, and a forwarder is still blamed for a malformed, misdirected or
        // unauthorised envelope.
        if topic_channel.is_some() && !self.has_budget(h.sender, h.channel, now_us) {
            return Err(Rejection::RateLimited {
                sender: h.sender,
                channel: h.channel,
            });
        }
        env.verify(self.domain(), sender.verifying_key())?;
        // A revoked sender's new alerts are refused (after the signature: only a verified
        // refusal is remembered); what this node stored before the revocation stays
        // readable in its log.
        if check_replay && self.descriptor.is_revoked(h.sender) {
            return Err(Rejection::Revoked(h.sender));
        }
        if check_replay {
            self.replay.check(h.sender, h.seq)?;
        }
        let me = self.cert.body.device;
        // A directed message opens at its recipient, and at its sender (its own log): the
        // pairwise key is the same from both ends.
        let other = if !direct {
            None
        } else if h.epoch == me {
            Some(sender)
        } else if h.sender == me {
            self.roster.get(&h.epoch)
        } else {
            None
        };
        let direct_key = other.map(|o| {
            crate::keys::direct_key(
                self.domain(),
                &self.secrets.x25519,
                &o.body.x25519,
                h.sender,
                h.epoch,
            )
        });
        let recipient_name = if h.epoch == me {
            Some(self.cert.body.name.clone())
        } else {
            self.roster.get(&h.epoch).map(|c| c.body.name.clone())
        };
        let can_read = direct_key.is_some() || self.cert.grant(h.channel).is_some_and(|g| g.read);
        let key = match direct_key {
            _ if !can_read => Err(Unreadable::NotReader),
            Some(k) => Ok(k),
            None => self.key_for(h.channel, h.epoch, h.seq),
        };
        let content = match key {
            Err(u) => Err(u),
            Ok(key) => {
                let plain = env.open(self.domain(), &key)?;
                let body = AlertBody::decode(&plain).map_err(|_| Rejection::BadPlaintext)?;
                Ok(Box::new(ReceivedAlert {
                    id: envelope::alert_id(self.domain(), h.sender, h.seq),
                    channel: channel_name,
                    sender: sender.body.name.clone(),
                    sender_peer_id: sender.peer_id_text().to_owned(),
                    sender_device: h.sender,
                    seq: h.seq,
                    severity: body.severity,
                    kind: body.kind,
                    text: body.text,
                    created_at_us: h.seq,
                    received_at_us: now_us,
                    location: body.location,
                    attributes: body.attributes,
                    recipient: if direct { recipient_name } else { None },
                    via: crate::alert::Via::Gossip,
                    late: crate::alert::is_late(h.seq, now_us),
                }))
            }
        };
        Ok((env, content))
    }
}

#[cfg(test)]
mod tests;
pub mod voice;
