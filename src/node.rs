//! The decisions of one device, free of I/O: which peers are members, how an alert is
//! sealed, whether a message from the network is accepted, forwarded, opened and shown.
//!
//! The daemon feeds it bytes and `now` and carries out what it returns. It holds the keys,
//! the roster of known member certificates, the replay state and the counters.
//!
//! One concern per file under `node/`: `validate` (envelopes from the network and the log),
//! `seal` (this device's own alerts), `roster` (member certificates), `presence` (members'
//! signed addresses and profiles), `search`, `update` (applying the authority's updates),
//! `keyring` (key chains, the key cache, erasure), `rate_limit` (token buckets) and `voice`.
//! The reserved channel numbers are the core's and live here, as does the plane key's
//! overlap.

mod keyring;
mod presence;
mod rate_limit;
mod receipt;
mod roster;
mod seal;
mod search;
#[cfg(test)]
mod tests;
mod update;
mod validate;
pub mod voice;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::cert::{Certificate, Descriptor};
use crate::keys::{Chain, ChannelSecret, DeviceSecrets, DomainId, MessageKey};
use crate::presence::Presence;
use crate::replay::ReplayGuard;

pub use receipt::{RECEIPT_POLICY, ReceivedReceipt};
pub use roster::AuthError;
pub use seal::{SealError, Sealed};
pub use search::{Found, Search};
pub use update::Applied;
pub use validate::{Arrival, MAX_AHEAD_US, Rejection, Unreadable, Verdict, is_emergency};

use rate_limit::{Bucket, has_token, take_token};

/// The channel number of directed messages (sealed to one device). Its envelopes carry the
/// recipient's device number in the epoch field.
pub const DIRECT_CHANNEL: u32 = 0;
/// The name directed messages show as their channel.
pub const DIRECT_CHANNEL_NAME: &str = "direct";
/// The pseudo-channel under which the domain's private-network key is kept and sealed.
pub const NETWORK_KEY_CHANNEL: u32 = u32::MAX;
/// The pseudo-channel under which the data plane's secret of each plane epoch is kept and
/// sealed (`proto/keys.md`, "Plane epochs"). No grant names it, so no envelope uses it.
pub const PLANE_CHANNEL: u32 = u32::MAX - 1;
/// How long a member keeps the previous plane epoch for receiving after it applied the
/// update that brought the next one (600 s).
pub const PLANE_OVERLAP_US: u64 = 600 * 1_000_000;

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

/// Counters reported by `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Alerts this node sealed.
    pub alerts_sent: u64,
    /// Alerts this node accepted and opened.
    pub alerts_received: u64,
    /// Alerts this node accepted but cannot read (forwarded and stored only).
    pub alerts_relayed: u64,
    /// Receipts this node sealed.
    pub receipts_sent: u64,
    /// Receipts this node accepted and opened.
    pub receipts_received: u64,
    /// Receipts this node accepted but cannot read (forwarded and stored only).
    pub receipts_relayed: u64,
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
    /// Signatures of arriving envelopes and voice packets checked, whatever the result (not
    /// those of `history`): what a flood of replays or junk would cost, and must not.
    pub signatures_verified: u64,
}

/// One device's protocol state.
pub struct Node {
    secrets: DeviceSecrets,
    cert: Certificate,
    descriptor: Descriptor,
    keys: HashMap<(u32, u32), Chain>,
    key_cache: RefCell<HashMap<(u32, u32, u64, bool), MessageKey>>,
    /// Per (channel, epoch): ratchet checkpoints ([`crate::keys::RATCHET_CHECKPOINT_EVERY`]).
    checkpoints: RefCell<HashMap<(u32, u32), BTreeMap<u64, ChannelSecret>>>,
    /// Ratchet steps derived for key-cache misses since start.
    ratchet_steps: Cell<u64>,
    voice_buckets: HashMap<(u32, u32), Bucket>,
    voice_replay: ReplayGuard,
    /// Voice packets with a seq below this are refused as stale (set at start-up).
    voice_since_us: u64,
    buckets: HashMap<(u32, u32), Bucket>,
    /// Per sender: its signed envelopes that did not open or opened to no alert
    /// ([`rate_limit::FAULT_POLICY`]), on every path and channel.
    fault_buckets: HashMap<(u32, u32), Bucket>,
    own_limit: bool,
    current_epoch: HashMap<u32, u32>,
    /// When this node applied the update that brought its newest plane epoch (Unix µs): the
    /// previous epoch's overlap runs from then. `None` when unknown (the newest came with the
    /// bundle, or the update was not recalled at start-up): a previous epoch then goes at the
    /// next [`Node::expire_plane`].
    plane_since_us: Option<u64>,
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
            checkpoints: RefCell::new(HashMap::new()),
            ratchet_steps: Cell::new(0),
            voice_buckets: HashMap::new(),
            voice_replay: ReplayGuard::new(voice::VOICE_REPLAY_WINDOW),
            voice_since_us: 0,
            buckets: HashMap::new(),
            fault_buckets: HashMap::new(),
            own_limit: true,
            current_epoch,
            plane_since_us: None,
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

    /// Whether this device keeps to the rate limits when sealing (on by default; off only
    /// to test how members treat a compromised member that floods).
    pub fn set_own_rate_limit(&mut self, on: bool) {
        self.own_limit = on;
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

    /// The channels of this node's log: those it carries, and their receipts
    /// (`proto/receipts.md`): what catch-up, repair and the store compare.
    pub fn carried_log_channels(&self) -> Vec<u32> {
        crate::receipt::with_receipts(&self.carried_channels())
    }

    /// Whether this node's log carries `channel` (one of [`Node::carried_log_channels`]),
    /// without building the list.
    pub fn carries_log_channel(&self, channel: u32) -> bool {
        let base = crate::receipt::base_channel(channel);
        base == DIRECT_CHANNEL || self.cert.grant(base).is_some()
    }

    /// Channel numbers this device carries (reads, writes or relays): its grants, and the
    /// channel of directed messages, which every member carries. Each is a gossip topic.
    pub fn carried_channels(&self) -> Vec<u32> {
        std::iter::once(DIRECT_CHANNEL)
            .chain(self.cert.body.grants.iter().map(|g| g.channel))
            .collect()
    }
}
