//! The control protocol between the CLI and a running daemon: newline-delimited JSON over the
//! Unix socket `DATA/control.sock` (mode 0600). Specified in `proto/control.md`.
//!
//! One connection carries requests one at a time; each gets exactly one reply line, except
//! `listen`, whose reply is followed by one line per received alert until the client closes.

use serde::{Deserialize, Serialize};

use crate::alert::{ReceivedAlert, Severity};
use crate::cert::{Location, Profile};
use crate::node::Counters;

/// Socket file name in the data directory.
pub const SOCKET: &str = crate::paths::SOCKET;
/// Longest request or reply line accepted, newline included (2 MiB + 64 KiB: a `publish`
/// request carries an update of up to [`crate::update::MAX_UPDATE_LEN`] in hex).
pub const MAX_LINE: usize = 2 * crate::update::MAX_UPDATE_LEN + 64 * 1024;

/// A request from the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Seal, store and publish an alert.
    Alert {
        /// Channel name (default `alerts`).
        #[serde(default = "default_channel")]
        channel: String,
        /// Severity.
        severity: Severity,
        /// Kind.
        kind: String,
        /// Text.
        text: String,
        /// Location.
        #[serde(default)]
        location: Option<Location>,
        /// Attributes.
        #[serde(default)]
        attributes: Vec<(String, String)>,
        /// Replace the content of this earlier alert (CAP `Update`): sent on that alert's
        /// channel (or to its member, for a directed message), whatever `channel` says. Only
        /// its sender or a dispatcher may.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        update: Option<String>,
    },
    /// Call an earlier alert off (CAP `Cancel`). Only its sender or a dispatcher may.
    Cancel {
        /// The alert's id.
        id: String,
        /// Why.
        #[serde(default)]
        text: String,
    },
    /// Seal a directed message to one device, store it, publish it.
    Send {
        /// Device name.
        to: String,
        /// Severity.
        severity: Severity,
        /// Kind (for example `command`, `ac-on`).
        kind: String,
        /// Text.
        text: String,
        /// Attributes.
        #[serde(default)]
        attributes: Vec<(String, String)>,
    },
    /// Stream received alerts, and voice bursts.
    Listen {
        /// Also stream every voice frame (for a listener that plays or records audio).
        #[serde(default)]
        voice: bool,
    },
    /// Ask for the floor of a channel; on `floor_granted` the connection carries `frame`s
    /// until `release` (proto/voice.md).
    Talk {
        /// Channel name (default `alerts`).
        #[serde(default = "default_channel")]
        channel: String,
        /// The burst's severity: a higher one takes the floor from a talker.
        #[serde(default = "default_severity")]
        severity: Severity,
        /// Wait (up to 30 s) for a busy floor to be free instead of being refused at once.
        #[serde(default)]
        queue: bool,
    },
    /// One 20 ms Opus frame of the burst being talked (hex).
    Frame {
        /// Opus bytes, hex.
        opus: String,
    },
    /// End the burst being talked.
    Release,
    /// List peers.
    Peers,
    /// Report identity, domain, peers and counters.
    Status,
    /// Show, or change, this device's profile (signed into its presence record and spread
    /// to every member). Fields left out keep their value.
    Profile {
        /// New kind.
        #[serde(default)]
        kind: Option<String>,
        /// New location.
        #[serde(default)]
        location: Option<Location>,
        /// New tags (replace the old ones).
        #[serde(default)]
        tags: Option<Vec<(String, String)>>,
        /// Sleeping or not.
        #[serde(default)]
        sleeps: Option<bool>,
        /// Back to the profile in the certificate.
        #[serde(default)]
        reset: bool,
    },
    /// Dial the device a tag names and check it is that device.
    Connect {
        /// The tag URI.
        tag: String,
    },
    /// Members matching a search of their profiles.
    Search {
        /// Device kind.
        #[serde(default)]
        kind: Option<String>,
        /// Within `radius_m` of this place.
        #[serde(default)]
        near: Option<Location>,
        /// Radius in metres (with `near`).
        #[serde(default)]
        radius_m: Option<f64>,
        /// Every one of these tags.
        #[serde(default)]
        tags: Vec<(String, String)>,
    },
    /// Who got an alert: every member that can read it, with its receipt if one came.
    Receipts {
        /// The alert's id.
        id: String,
    },
    /// Declare this device in emergency (an `extreme` alert of kind `emergency` with its
    /// location; its voice pre-empts every other talker until cleared), or clear it.
    Emergency {
        /// What is happening.
        #[serde(default)]
        text: String,
        /// Channel (default `alerts`).
        #[serde(default = "default_channel")]
        channel: String,
        /// End this device's emergency instead (a cancellation of its emergency alert).
        #[serde(default)]
        clear: bool,
    },
    /// Acknowledge an alert ("handled"): sent in this device's receipt at once.
    Ack {
        /// The alert's id.
        id: String,
        /// What was done.
        #[serde(default)]
        text: String,
    },
    /// Apply a signed domain update (from the authority) and spread it to the members.
    Publish {
        /// The update file's bytes, hex.
        update: String,
    },
    /// Stored alerts this device can read.
    History {
        /// Only those stored at or after this time (µs since the Unix epoch).
        #[serde(default)]
        since_us: Option<u64>,
        /// Only this channel.
        #[serde(default)]
        channel: Option<String>,
        /// At most this many.
        #[serde(default = "default_limit")]
        limit: usize,
    },
}

fn default_limit() -> usize {
    10_000
}

/// A reply line from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The request failed.
    Error {
        /// What went wrong, for a person.
        message: String,
    },
    /// The alert is stored durably and was handed to the network.
    Sent {
        /// Alert id.
        id: String,
        /// Channel name.
        channel: String,
        /// Sequence number.
        seq: u64,
        /// Authenticated peers it was published to directly (0: it waits in the store).
        peers: usize,
    },
    /// `listen` is subscribed; alerts follow.
    Listening,
    /// A received alert (only after `listening`).
    Alert(std::sync::Arc<ReceivedAlert>),
    /// A voice burst took the floor of a channel (after `listening`).
    BurstStart(std::sync::Arc<BurstInfo>),
    /// One frame of a burst (only to `listen` with `voice`).
    VoiceFrame {
        /// The burst.
        burst: u64,
        /// The talker's device number.
        device: u32,
        /// Frame index (1…).
        index: u32,
        /// Opus bytes, hex.
        opus: String,
        /// When this node accepted it (µs since the Unix epoch).
        received_at_us: u64,
        /// The sender's clock when it sealed the frame.
        sent_at_us: u64,
    },
    /// A voice burst ended.
    BurstEnd(std::sync::Arc<BurstInfo>),
    /// `talk`: the floor is this device's; send frames.
    FloorGranted {
        /// The burst id.
        burst: u64,
        /// The channel.
        channel: String,
    },
    /// `talk`: the floor is held by another talker (or was just taken by one).
    FloorBusy {
        /// Who holds it.
        holder: String,
        /// Its severity.
        severity: Severity,
        /// Since when (µs since the Unix epoch, this node's clock).
        since_us: u64,
        /// What happened: `busy` (refused), `lost` (a simultaneous claim won),
        /// `preempted` (a higher severity took it while talking), `timeout` (queued too long).
        why: String,
    },
    /// `release` (or the end of the burst for another reason): what was sent.
    TalkEnded {
        /// The burst id.
        burst: u64,
        /// Frames sent.
        frames: u32,
        /// Length in ms.
        duration_ms: u64,
        /// The id of the `voice` alert recording the burst in the log, if it was stored.
        alert_id: Option<String>,
    },
    /// Alerts a slow listener missed.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// The peers.
    Peers {
        /// One entry per known peer.
        peers: Vec<PeerInfo>,
    },
    /// The status.
    Status(Box<StatusInfo>),
    /// Who got an alert.
    Receipts(Box<ReceiptsInfo>),
    /// (`listen`) A member acknowledged an alert.
    Ack(std::sync::Arc<AckInfo>),
    /// The acknowledgement is on its way.
    Acked {
        /// The alert's id.
        id: String,
    },
    /// Connected to, and authenticated, the tagged device.
    Connected {
        /// Its name.
        name: String,
        /// Its device number.
        device: u32,
        /// Its peer id.
        peer_id: String,
    },
    /// This device's profile now.
    Profile {
        /// The profile.
        profile: Profile,
    },
    /// Devices found by a search.
    Devices {
        /// The devices.
        devices: Vec<DeviceInfo>,
    },
    /// The end of a `history` reply, after one `alert` line per stored alert.
    HistoryEnd {
        /// Alerts sent.
        count: usize,
    },
    /// An update was taken.
    Published {
        /// Its serial.
        serial: u64,
        /// What it does.
        note: String,
        /// Applied now (false: this device had it already).
        applied: bool,
        /// The revision this device holds now.
        revision: u64,
    },
}

/// A voice burst as `listen` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstInfo {
    /// Channel name.
    pub channel: String,
    /// Talker's name.
    pub talker: String,
    /// Talker's device number.
    pub device: u32,
    /// Burst id (the talker's clock when it claimed, µs).
    pub burst: u64,
    /// Severity.
    pub severity: Severity,
    /// When the first packet arrived here (µs since the Unix epoch).
    pub started_at_us: u64,
    /// Ended only: ms from the first packet to the last.
    #[serde(default)]
    pub duration_ms: u64,
    /// Ended only: frames received.
    #[serde(default)]
    pub received: u32,
    /// Ended only: frames the talker says it sent (from its release).
    #[serde(default)]
    pub sent: Option<u32>,
    /// Ended only: frames that never arrived (of `sent`, or up to the highest index heard).
    #[serde(default)]
    pub lost: u32,
    /// Ended only: `released`, `timed_out`, `too_long` or `preempted`.
    #[serde(default)]
    pub reason: Option<String>,
    /// The talker is in emergency: its burst pre-empts every talker not in emergency.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emergency: bool,
}

/// A device in emergency, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyInfo {
    /// Its device number.
    pub device: u32,
    /// Its name.
    pub name: String,
    /// The id of its emergency alert (`ptt-node cancel ID` clears it, for its device or a
    /// dispatcher).
    pub id: String,
    /// Since when (its clock, µs since the Unix epoch).
    pub since_us: u64,
    /// What it said.
    pub text: String,
}

/// A peer as `peers` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// libp2p peer id.
    pub peer_id: String,
    /// Device name from its certificate (once authenticated).
    pub name: Option<String>,
    /// Device number.
    pub device: Option<u32>,
    /// Known addresses.
    pub addresses: Vec<String>,
    /// Connected now.
    pub connected: bool,
    /// Proved membership of this domain.
    pub authenticated: bool,
    /// Relay-only device.
    pub relay_only: Option<bool>,
    /// Profile from its certificate.
    pub profile: Option<Profile>,
    /// Last connection or authentication error.
    pub last_error: Option<String>,
    /// `authenticated`, `connecting`, `asleep` (a sleeping member that is away),
    /// `unreachable` (a member that is away), `refused` or `discovered`.
    pub state: String,
    /// When the peer last connected or disconnected (µs since the Unix epoch; 0: never).
    pub since_us: u64,
    /// Authenticated peers: `multicast` (this node hears the peer on the plane and the peer
    /// reports hearing this node), `gossip` (neither) or `mixed` (one of the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The peer reports hearing this node on the plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hears_me: Option<bool>,
    /// This node hears the peer on the plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard: Option<bool>,
    /// The share of the peer's last 64 plane datagrams that came by repair (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane_loss: Option<f64>,
    /// The member is in emergency.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emergency: bool,
    /// Since when `path` has held (µs since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_since_us: Option<u64>,
}

/// A member as `search` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device name.
    pub name: String,
    /// Device number.
    pub device: u32,
    /// libp2p peer id.
    pub peer_id: String,
    /// Its profile now (from its latest presence record, else its certificate).
    pub profile: Profile,
    /// Relay-only device.
    pub relay_only: bool,
    /// Addresses it announced, or that this node connected to.
    pub addresses: Vec<String>,
    /// Metres from the searched place.
    pub distance_m: Option<f64>,
    /// As in `peers` (`self` for this device).
    pub state: String,
}

/// Catch-up activity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatchUpInfo {
    /// Sessions started (on every authentication, and every 10 s with a random peer).
    pub sessions: u64,
    /// Sessions that ended early (peer gone, timeout, refused).
    pub failed: u64,
    /// Envelopes fetched and accepted.
    pub fetched: u64,
    /// Requests served to peers.
    pub served: u64,
}

/// Rules and their actions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionInfo {
    /// Rules loaded.
    pub rules: usize,
    /// Times a rule matched.
    pub matched: u64,
    /// Hooks run.
    pub hooks_run: u64,
    /// Directed messages sent by rules.
    pub sent: u64,
    /// Hooks or sends that failed.
    pub failed: u64,
}

/// The durable log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Envelopes held.
    pub envelopes: u64,
    /// Envelope bytes held.
    pub bytes: u64,
    /// Received envelopes not logged because the store's queue was full.
    #[serde(default)]
    pub dropped: u64,
}

/// Connected and authenticated peer counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerCounts {
    /// Peers with an open connection.
    pub connected: usize,
    /// Of those, members that proved it.
    pub authenticated: usize,
    /// Sleeping members that are away.
    pub asleep: usize,
    /// Other members that are away (being re-dialled).
    pub unreachable: usize,
    /// Members on this LAN left unconnected by the bound on connections (`max_peers`).
    #[serde(default)]
    pub standby: usize,
    /// Inbound connections waiting to prove membership now.
    #[serde(default)]
    pub unauthenticated: usize,
    /// Inbound connections denied since start: too many from one address, or in all, were
    /// waiting to prove membership.
    #[serde(default)]
    pub denied: u64,
}

/// Who got an alert (`receipts`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReceiptsInfo {
    /// The alert's id.
    pub id: String,
    /// Its channel (`direct` for a directed message).
    pub channel: String,
    /// Its sender.
    pub sender: String,
    /// Members that can read it (the sender aside; for a directed message, its recipient).
    pub expected: usize,
    /// Of them, how many sent a receipt.
    pub received: usize,
    /// Of them, how many acknowledged it.
    pub acknowledged: usize,
    /// Every member that can read it, and any other that sent a receipt, by name.
    pub members: Vec<MemberReceipt>,
}

/// A member acknowledged an alert (`listen`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AckInfo {
    /// The alert's id.
    pub id: String,
    /// Its channel (`direct` for a directed message).
    pub channel: String,
    /// Its sender.
    pub sender: String,
    /// When it was created (its sender's clock, µs).
    pub created_at_us: u64,
    /// For a directed message, its recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The member that acknowledged it.
    pub by: String,
    /// That member's device number.
    pub by_device: u32,
    /// When (that member's clock: its receipt's seq, µs).
    pub at_us: u64,
    /// What it said.
    pub text: String,
}

/// One member's part in [`ReceiptsInfo`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemberReceipt {
    /// Device number.
    pub device: u32,
    /// Device name.
    pub name: String,
    /// Whether it can read the alert's channel now.
    pub expected: bool,
    /// When it opened the alert (its clock, µs), if its receipt came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_us: Option<u64>,
    /// How the alert reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<crate::alert::Via>,
    /// Whether it acknowledged the alert.
    pub acknowledged: bool,
    /// What its acknowledgement said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
}

/// What `status` reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusInfo {
    /// Own peer id.
    pub peer_id: String,
    /// Own device name.
    pub device: String,
    /// Own device number.
    pub device_number: u32,
    /// Domain id (hex).
    pub domain_id: String,
    /// Domain name.
    pub domain_name: String,
    /// Relay-only device.
    pub relay_only: bool,
    /// Channels this device reads.
    pub channels: Vec<String>,
    /// Addresses the daemon listens on.
    pub listen_addrs: Vec<String>,
    /// Peer counts.
    pub peers: PeerCounts,
    /// Connections to members on this LAN kept at most once the domain is larger
    /// (`--max-peers`; 0 from a daemon that predates it).
    #[serde(default)]
    pub max_peers: usize,
    /// Counters.
    pub counters: CountersInfo,
    /// Catch-up activity.
    pub catch_up: CatchUpInfo,
    /// The durable log.
    pub store: StoreInfo,
    /// What rules did.
    pub actions: ActionInfo,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Where Prometheus metrics are served (`--metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// The domain descriptor revision held (serial of the last update applied).
    #[serde(default)]
    pub revision: u64,
    /// The authority revoked this device.
    #[serde(default)]
    pub revoked: bool,
    /// The highest severity the authority allows this device to claim, when it limits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_severity: Option<crate::alert::Severity>,
    /// The authority made this device a dispatcher: it may update and cancel other members'
    /// alerts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dispatcher: bool,
    /// This device's alerts waiting for their channel's escalation time (none acknowledged
    /// yet).
    #[serde(default)]
    pub escalations_pending: usize,
    /// This device's emergency, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<EmergencyInfo>,
    /// The other members in emergency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emergencies: Vec<EmergencyInfo>,
    /// Channel keys held: one per channel epoch.
    #[serde(default)]
    pub keys: Vec<KeyInfo>,
    /// The multicast data plane.
    #[serde(default)]
    pub plane: PlaneInfo,
}

/// The multicast data plane in `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PlaneInfo {
    /// `active`, `off` (`--no-plane`), `no_key` (this device holds no plane key),
    /// `no_interface` (no interface carries it) or `socket_error`.
    pub state: String,
    /// The plane epoch this device sends under (`null`: it holds no plane key).
    pub epoch: Option<u32>,
    /// The IPv4 group.
    #[serde(default)]
    pub group4: String,
    /// The IPv6 group.
    #[serde(default)]
    pub group6: String,
    /// The UDP port.
    #[serde(default)]
    pub port: u16,
    /// The interfaces it is sent and heard on.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// The receive buffer the kernel granted, in bytes.
    #[serde(default)]
    pub recv_buffer: u64,
    /// Datagrams sent: alerts, voice packets, tails and beacons (once each, whatever the
    /// number of interfaces).
    #[serde(default)]
    pub sent: u64,
    /// Copies the kernel refused.
    #[serde(default)]
    pub send_failed: u64,
    /// Envelopes too large for one datagram (gossip only).
    #[serde(default)]
    pub too_large: u64,
    /// Datagrams received.
    #[serde(default)]
    pub received: u64,
    /// Envelopes from the plane that validation accepted.
    #[serde(default)]
    pub accepted: u64,
    /// Kept data datagrams (alerts, voice) of an epoch ahead that its key opened once the
    /// update arrived.
    #[serde(default)]
    pub reopened: u64,
    /// Datagrams dropped before validation, by reason.
    #[serde(default)]
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Why the sockets are not open, when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Senders this node hears on the plane (its heard set).
    #[serde(default)]
    pub heard: usize,
    /// Beacons sent.
    #[serde(default)]
    pub beacons_sent: u64,
    /// Beacons whose signature verified.
    #[serde(default)]
    pub beacons_verified: u64,
    /// Beacons not verified: not newer than the last held, over 30 s off this node's clock,
    /// or too soon after the last verification of their sender.
    #[serde(default)]
    pub beacon_stale: u64,
    /// Tails heard from other members.
    #[serde(default)]
    pub tails_heard: u64,
    /// Missed datagrams asked for by repair (once each).
    #[serde(default)]
    pub repairs_asked: u64,
    /// Repair requests sent (first requests and retries).
    #[serde(default)]
    pub repair_requests: u64,
    /// Envelopes handed out to other members' repair requests.
    #[serde(default)]
    pub repairs_served: u64,
    /// Missed datagrams whose envelope a repair delivered and validation accepted.
    #[serde(default)]
    pub repairs_received: u64,
    /// Missed datagrams given up after 1.5 s (catch-up takes over).
    #[serde(default)]
    pub repairs_given_up: u64,
    /// Repair reply items dropped unvalidated: not asked for, or naming another sender.
    #[serde(default)]
    pub repair_unrequested: u64,
    /// Median time from a gap being seen to its envelope accepted by repair, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_ms_p50: Option<f64>,
    /// 99th percentile of the same, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_ms_p99: Option<f64>,
}

/// A channel key epoch as held.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyInfo {
    /// Channel number.
    pub channel: u32,
    /// Key epoch.
    pub epoch: u32,
    /// Rotation period in seconds (0: none).
    pub rotate_secs: u32,
    /// Oldest ratchet period held (earlier ones are erased).
    pub oldest_period: u64,
    /// This is the epoch the device seals with.
    pub current: bool,
}

/// Counters as reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CountersInfo {
    /// Alerts sealed.
    pub alerts_sent: u64,
    /// Alerts opened.
    pub alerts_received: u64,
    /// Alerts forwarded unread.
    pub alerts_relayed: u64,
    /// Refusals by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Peers refused at authentication.
    pub peers_refused: u64,
    /// Authentic alerts under a key epoch this device lacks.
    pub unknown_epoch: u64,
    /// Domain updates applied.
    #[serde(default)]
    pub updates_applied: u64,
    /// Ratchet periods erased.
    #[serde(default)]
    pub keys_erased: u64,
    /// Voice packets sealed.
    #[serde(default)]
    pub voice_sent: u64,
    /// Voice packets opened.
    #[serde(default)]
    pub voice_received: u64,
    /// Voice packets forwarded unread.
    #[serde(default)]
    pub voice_relayed: u64,
    /// Signatures of arriving envelopes and voice packets checked.
    #[serde(default)]
    pub signatures_verified: u64,
}

impl From<&Counters> for CountersInfo {
    fn from(c: &Counters) -> Self {
        CountersInfo {
            alerts_sent: c.alerts_sent,
            alerts_received: c.alerts_received,
            alerts_relayed: c.alerts_relayed,
            rejected: c.rejected.clone(),
            peers_refused: c.peers_refused,
            unknown_epoch: c.unknown_epoch,
            updates_applied: c.updates_applied,
            keys_erased: c.keys_erased,
            voice_sent: c.voice_sent,
            voice_received: c.voice_received,
            voice_relayed: c.voice_relayed,
            signatures_verified: c.signatures_verified,
        }
    }
}

fn default_severity() -> Severity {
    Severity::Moderate
}

fn default_channel() -> String {
    crate::domain::DEFAULT_CHANNEL.to_string()
}

mod client;
pub use client::{Client, ClientError, Replies, Requests, read_line, socket_path};

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[test]
    fn requests_have_stable_json() {
        let r: Request = serde_json::from_str(
            r#"{"op":"alert","channel":"alerts","severity":"severe","kind":"motion","text":"hi"}"#,
        )
        .unwrap();
        assert!(matches!(
            r,
            Request::Alert {
                severity: Severity::Severe,
                ..
            }
        ));
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"op":"status"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"alert","severity":"bad"}"#).is_err());
        // A misspelt field is an error, not silently ignored.
        assert!(
            serde_json::from_str::<Request>(
                r#"{"op":"alert","channel":"alerts","severity":"minor","kind":"k","text":"t","txet":"x"}"#
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn overlong_lines_are_refused() {
        let data = vec![b'a'; MAX_LINE + 10];
        let mut r = BufReader::new(&data[..]);
        let mut s = String::new();
        assert!(read_line(&mut r, &mut s).await.is_err());
        let mut r = BufReader::new(&b"{}\nx"[..]);
        assert_eq!(read_line(&mut r, &mut s).await.unwrap(), Some("{}"));
    }
}
