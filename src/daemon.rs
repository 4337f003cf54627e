//! `ptt-node run`: wires the node (decisions), the swarm (network), the store (durable log)
//! and the control socket together.
//!
//! One task owns the swarm and the node and runs the event loop; each control client gets a
//! task of its own that talks to the loop through a `Handle` (one method per `Cmd`, each with
//! a oneshot reply); the store runs on its own thread. An alert is published once the store's
//! sequence lease covers it and stored durably before its client gets the reply.
//!
//! Layout, one concern per file: `startup` (run: from the bundle to a running loop), `events`
//! (the loop and its event dispatch), `commands` (the loop's side of the handle), `tick` (the
//! periodic duties), `auth`, `dial`, `updates`, `gossip`, `catchup`, `roster` (roster and
//! presence pushes), `tags`, `profile`, `hooks`, `voice`, `status`, `evidence` (plane beacons,
//! `Heard` reports, each peer's path), `plane`, `plane_io` and `repair` (the multicast data
//! plane and its repair); on the control side `handle`,
//! `server`, `socket` and `send`; `addr` (multiaddr helpers). The decisions about peers,
//! timers, pushes, updates and unread envelopes are the mesh core's ([`crate::mesh`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, request_response};
use tokio::sync::{broadcast, oneshot};

use crate::alert::ReceivedAlert;
use crate::cert::Certificate;
use crate::fsutil::FileError;
use crate::mesh::{HeldUpdates, Peers, PendingUpdates, Pushes, Quiet, TimerTable, Unread};
use crate::net::SyncResponse;
use crate::net::{self, Behaviour, NetConfig};
use crate::node::Node;
use crate::store::{Retention, StoreError, StoreHandle};
use crate::sync::Id;

mod addr;
mod auth;
mod catchup;
mod commands;
mod dial;
mod emergency;
mod escalate;
mod events;
mod evidence;
mod gossip;
mod handle;
mod hooks;
mod liveness;
mod plane;
mod plane_io;
mod profile;
mod receipts;
mod repair;
mod roster;
mod send;
mod server;
mod socket;
mod startup;
mod states;
mod status;
mod tags;
mod tick;
mod updates;
mod voice;
mod watchdog;

use catchup::{CatchUpCounters, SyncError};
use handle::Handle;
use hooks::ActionCounters;
pub use profile::{PROFILE_FILE, ProfileChange};
pub use startup::run;
use tags::PendingTag;

/// Alerts held for `listen` clients that fall behind (see `broadcast::channel` in `run`): room
/// for all of [`MAX_UNREAD`](crate::mesh::MAX_UNREAD), which `reopen_unread` sends at once, and a margin.
const LISTEN_BUFFER: usize = 2048;

// The mesh core's constants, which the rooms share.
use crate::mesh::AUTH_TIMEOUT;

/// What `ptt-node run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The device bundle.
    pub bundle: PathBuf,
    /// The data directory (store, keys; the control socket unless `socket` says otherwise).
    pub data: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The socket is shared with the daemon's group (mode 0660), as the service's is.
    pub group_socket: bool,
    /// Where to serve Prometheus metrics, if at all.
    pub metrics: Option<std::net::SocketAddr>,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and keep connected (besides mDNS).
    pub peers: Vec<Multiaddr>,
    /// Network tuning.
    pub net: NetConfig,
    /// How long and how much the log keeps.
    pub retention: Retention,
    /// Rules acting on received alerts.
    pub rules: crate::rules::Rules,
    /// The file `rules` came from, read again on SIGHUP.
    pub rules_path: Option<PathBuf>,
    /// Testing only: seal beyond the channel rate limit (a compromised member).
    pub ignore_own_rate_limit: bool,
    /// Benchmarks only: send no receipts.
    pub no_receipts: bool,
    /// Connections to LAN members kept at most once the domain is larger (`--max-peers`).
    pub max_peers: usize,
    /// The multicast data plane.
    pub plane: crate::config::PlaneSettings,
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A bundle or data directory problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network failed to start.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The control socket failed.
    #[error("control socket {path}: {source}")]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Another daemon uses the data directory.
    #[error("another ptt-node daemon is already running with data directory {0}")]
    AlreadyRunning(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// Microseconds since the Unix epoch.
pub use crate::clock::now_us;
struct Daemon {
    swarm: Swarm<Behaviour>,
    node: Node,
    /// Alerts opened here and not reported in a receipt yet.
    receipts_out: receipts::Outbox,
    /// Whether this node sends receipts (`--no-receipts` turns them off for benchmarks).
    receipts_on: bool,
    /// What members' receipts say about the alerts this node sent or opened.
    ledger: receipts::Ledger,
    /// What updates and cancellations did to alerts.
    states: states::States,
    /// This device's alerts waiting for their escalation time.
    escalations: escalate::Escalations,
    /// On a dispatcher: other members' alerts it escalates should their sender not.
    backups: escalate::Escalations,
    /// What this node hears of the watched devices.
    watchdog: watchdog::Watchdog,
    /// The members in emergency.
    emergencies: emergency::Emergencies,
    store: StoreHandle,
    alerts: broadcast::Sender<Arc<ReceivedAlert>>,
    /// Every peer known, who is blocked, and the circuit back-off (the mesh core).
    peers: Peers,
    /// The certificate each admitted peer proved, while the book remembers the peer.
    certs: HashMap<PeerId, Certificate>,
    topics: HashMap<gossipsub::TopicHash, u32>,
    voice: voice::VoiceState,
    static_peers: Vec<Multiaddr>,
    started: Instant,
    handle: Handle,
    retention: Retention,
    refused_ids: HashSet<Id>,
    rules: crate::rules::Rules,
    /// Metrics recorders, with `--metrics`.
    metrics: Option<crate::metrics::Recorders>,
    /// Where metrics are served.
    metrics_url: Option<String>,
    actions: Arc<ActionCounters>,
    broker: bool,
    brokers: HashSet<PeerId>,
    reservations: HashMap<PeerId, libp2p::core::transport::ListenerId>,
    pending_tags: Vec<PendingTag>,
    sync_pending: HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<SyncResponse, SyncError>>,
    >,
    syncing: HashSet<PeerId>,
    presence_dirty: bool,
    profile_override: Option<crate::cert::Profile>,
    data: PathBuf,
    catch_up: CatchUpCounters,
    /// Updates that arrived before the one they follow.
    pending_updates: PendingUpdates,
    /// Updates held (to pass on to members behind), and the pushes of them in flight.
    updates: HeldUpdates<PeerId, request_response::OutboundRequestId>,
    /// Envelopes of an epoch this node holds no key for yet.
    unread: Unread,
    /// Receipts that wait for a key epoch, apart: more of them come than of alerts, and they
    /// must not push waiting alerts out.
    unread_receipts: Unread,
    /// Certificates and presence records to pass on at the next tick.
    pushes: Pushes<PeerId>,
    /// Every deadline of the loop: the tick, anti-entropy, static and broker dials,
    /// retention, pushes.
    timers: TimerTable,
    /// When heap is handed back after traffic (`release_memory_after_traffic`).
    quiet: Quiet,
    key_path: PathBuf,
    /// The multicast data plane, unless `--no-plane`.
    plane: Option<plane::PlaneState>,
    /// Who hears whom on the plane: beacons, `Heard` reports, each peer's path.
    evidence: evidence::EvidenceState,
    /// Liveness probes in flight (empty repair requests), by request.
    probes: HashMap<request_response::OutboundRequestId, PeerId>,
}
