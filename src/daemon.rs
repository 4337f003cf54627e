//! `ptt-node run`: wires the node (decisions), the swarm (network), the store (durable log)
//! and the control socket together.
//!
//! One task owns the swarm and the node and runs the event loop; each control client gets a
//! task of its own that talks to the loop through [`Cmd`] messages with oneshot replies; the
//! store runs on its own thread. An alert is published once the store's sequence lease covers it
//! and stored durably before its client gets the reply.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, mdns, request_response};
use rand_core::RngCore;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::alert::Via;
use crate::alert::{AlertBody, ReceivedAlert};
use crate::bundle::Bundle;
use crate::cert::Certificate;
use crate::control::{self, PeerCounts, PeerInfo, Reply, Request, StatusInfo};
use crate::fsutil::{self, FileError};
use crate::net::{self, AuthHello, AuthReply, AuthRequest, Behaviour, BehaviourEvent, NetConfig};
use crate::net::{SyncRequest, SyncResponse};
use crate::node::{Applied, Node, Sealed, Unreadable, Verdict};
use crate::presence::{Presence, PresenceError};
use crate::replay::ReplayError;
use crate::store::{Pruned, Retention, Store, StoreError, StoreHandle, StoredEnvelope};
use crate::sync::Id;
use crate::update::{Update, UpdateError};

mod voice;

/// Alerts held for `listen` clients that fall behind (see `broadcast::channel` in `run`): room
/// for all of [`MAX_UNREAD`], which `reopen_unread` sends at once, and a margin.
const LISTEN_BUFFER: usize = 2048;
/// How long a connected peer may take to prove membership.
const AUTH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a refused peer stays blocked.
const BLOCK_FOR: Duration = Duration::from_secs(60);
/// Addresses remembered per peer.
const MAX_ADDRS_PER_PEER: usize = 8;
/// Peers remembered (connected ones are never forgotten).
const MAX_PEERS: usize = 4096;
/// When both sides discover each other, the larger peer id waits this long before dialling,
/// so the pair usually ends up with one connection.
const DIAL_DEFER: Duration = Duration::from_millis(1500);
/// How long a queued roster or presence push waits for more to send with it.
const PUSH_BATCH: Duration = Duration::from_millis(20);
/// At most one batch of roster and presence pushes per this long.
const PUSH_EVERY: Duration = Duration::from_millis(250);
/// Re-dial back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often catch-up runs with one random authenticated peer (anti-entropy), besides the
/// catch-up that starts whenever a peer is authenticated.
const ANTI_ENTROPY_EVERY: Duration = Duration::from_secs(10);
/// How long after the last message the daemon hands free heap back to the system
/// (`release_memory_after_traffic`): soon, for the buffers and queues, and again once gossipsub
/// has let the messages' ids go: its duplicate cache after [`net::DUPLICATE_CACHE_TIME`], its
/// peer-score delivery records after 20 s (vendor/libp2p-gossipsub/README.md).
const TRIM_AFTER_QUIET: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(25)];
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Catch-up ids refused here that are remembered, so they are not fetched again.
const MAX_REFUSED_IDS: usize = 65_536;
/// Reported ping failures after which a connection is closed (and the peer re-dialled).
/// libp2p reports a failure only when a second ping in a row failed, so one report is enough.
const MAX_PING_FAILURES: u8 = 1;
/// Updates held that arrived ahead of a missing one, at most.
const MAX_PENDING_UPDATES: usize = 64;
/// Authentic envelopes kept in memory that this node could not open for want of a key
/// epoch, re-opened (and shown) when an update brings the key.
const MAX_UNREAD: usize = 1024;

/// The device's own profile changes (`ptt-node profile`), kept across restarts.
pub const PROFILE_FILE: &str = "profile.json";

/// A change to this device's profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// New kind.
    pub kind: Option<String>,
    /// New location.
    pub location: Option<crate::cert::Location>,
    /// New tags.
    pub tags: Option<Vec<(String, String)>>,
    /// Sleeping or not.
    pub sleeps: Option<bool>,
    /// Back to the enrolled profile.
    pub reset: bool,
}

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

/// Messages from control clients to the event loop.
enum Cmd {
    Seal {
        channel: String,
        body: AlertBody,
        reply: oneshot::Sender<Result<Sealed, String>>,
    },
    SealDirect {
        to: String,
        body: AlertBody,
        reply: oneshot::Sender<Result<Sealed, String>>,
    },
    Publish {
        sealed: Sealed,
        reply: oneshot::Sender<usize>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Status {
        reply: oneshot::Sender<StatusInfo>,
    },
    /// Dials a tagged device.
    Connect {
        tag: crate::tag::DeviceTag,
        reply: oneshot::Sender<Result<Reply, String>>,
    },
    /// Shows or changes this device's profile.
    Profile {
        change: ProfileChange,
        reply: oneshot::Sender<Result<crate::cert::Profile, String>>,
    },
    /// Searches member profiles.
    Search {
        q: crate::node::Search,
        reply: oneshot::Sender<Vec<control::DeviceInfo>>,
    },
    /// Applies and spreads a domain update.
    Update {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Reply, String>>,
    },
    /// Opens envelopes from the log for `history`.
    Open {
        envelopes: Vec<StoredEnvelope>,
        channel: Option<String>,
        reply: oneshot::Sender<Vec<ReceivedAlert>>,
    },
    /// A catch-up session asks the loop to send a request to a peer.
    SyncSend {
        peer: PeerId,
        request: SyncRequest,
        reply: oneshot::Sender<Result<SyncResponse, String>>,
    },
    /// A spawned responder hands back its answer.
    SyncRespond {
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    /// Envelopes fetched by catch-up, to validate like any other.
    Ingest {
        envelopes: Vec<Vec<u8>>,
        reply: oneshot::Sender<usize>,
    },
    /// Drops the ids this node has refused before from a list to fetch.
    NotRefused {
        ids: Vec<Id>,
        reply: oneshot::Sender<Vec<Id>>,
    },
    /// A catch-up session ended.
    SyncDone {
        peer: PeerId,
        fetched: usize,
        error: Option<String>,
    },
    /// Retention removed envelopes: raise replay floors so they stay refused.
    Pruned(Pruned),
    /// SIGHUP: the rules file, read again off the event loop.
    ReloadRules(crate::rules::Rules),
    /// Voice: floor claims, frames, releases of this device's talk sessions.
    Voice(voice::VoiceCmd),
}

#[derive(Debug, Default)]
struct PeerState {
    addresses: BTreeSet<Multiaddr>,
    connections: usize,
    authenticated: bool,
    cert: Option<Certificate>,
    last_error: Option<String>,
    connected_at: Option<Instant>,
    backoff: Duration,
    redial_at: Option<Instant>,
    /// A member seen before: keep re-dialling it when it drops.
    member: bool,
    /// Authentication requests re-sent on the current connection.
    auth_attempts: u8,
    /// The address this node last reached the peer at (when it dialled).
    dialled_addr: Option<Multiaddr>,
    /// Consecutive failed pings.
    ping_failures: u8,
    /// Refused at authentication (not a member).
    refused: bool,
    /// When the peer last changed between connected and not (µs since the Unix epoch).
    since_us: u64,
    /// The domain revision the peer is known to hold (its hello, or updates it acknowledged
    /// or sent): updates after it are pushed again until acknowledged.
    revision: u64,
}

impl PeerState {
    /// What `peers` shows: a sleeping member that is away is asleep, not failed.
    fn state(&self) -> &'static str {
        let sleeps = self.cert.as_ref().is_some_and(|c| c.body.profile.sleeps);
        match () {
            _ if self.refused => "refused",
            _ if self.connections > 0 && self.authenticated => "authenticated",
            _ if self.connections > 0 => "connecting",
            _ if self.member && sleeps => "asleep",
            _ if self.member => "unreachable",
            _ => "discovered",
        }
    }
}

/// Microseconds since the Unix epoch.
pub use crate::clock::now_us;

struct Daemon {
    swarm: Swarm<Behaviour>,
    node: Node,
    store: StoreHandle,
    alerts: broadcast::Sender<Arc<ReceivedAlert>>,
    peers: HashMap<PeerId, PeerState>,
    blocked: HashMap<PeerId, Instant>,
    topics: HashMap<gossipsub::TopicHash, u32>,
    voice: voice::VoiceState,
    static_peers: Vec<Multiaddr>,
    started: Instant,
    cmd_tx: mpsc::Sender<Cmd>,
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
    circuit_next: HashMap<PeerId, (Instant, Duration)>,
    next_circuit: Instant,
    pending_tags: Vec<PendingTag>,
    sync_pending:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<SyncResponse, String>>>,
    syncing: HashSet<PeerId>,
    next_anti_entropy: Instant,
    next_prune: Instant,
    next_static: Instant,
    presence_dirty: bool,
    profile_override: Option<crate::cert::Profile>,
    data: PathBuf,
    catch_up: CatchUpCounters,
    /// Updates that arrived before the one they follow.
    pending_updates: BTreeMap<u64, Vec<u8>>,
    /// Updates held (to pass on to members behind), by serial.
    updates: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Envelopes of an epoch this node holds no key for yet: (bytes, received at).
    unread: VecDeque<(Vec<u8>, u64)>,
    /// Certificates and presence records to pass on at the next tick.
    pushes: Pushes,
    /// Traffic counted at the last tick, since when it has not changed, and how many of
    /// [`TRIM_AFTER_QUIET`] were done since (`release_memory_after_traffic`).
    traffic_marks: (u64, Instant, usize),
    key_path: PathBuf,
    /// Update pushes in flight: request → (peer, serial).
    update_pushes: HashMap<request_response::OutboundRequestId, (PeerId, u64)>,
}

/// A `connect` waiting for the tagged device to authenticate.
struct PendingTag {
    peer: PeerId,
    fingerprint: [u8; 32],
    deadline: Instant,
    reply: oneshot::Sender<Result<Reply, String>>,
}

/// What rules did, shared with the tasks that carry them out.
#[derive(Debug)]
struct ActionCounters {
    hooks: tokio::sync::Semaphore,
    /// Hook runs waiting for a free slot.
    waiting: std::sync::atomic::AtomicUsize,
    matched: AtomicU64,
    hooks_run: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
}

/// Hooks running at once at most; more wait their turn.
const MAX_HOOKS: usize = 8;
/// Hook runs waiting for a slot at most; beyond, a matched rule's hook is skipped (counted
/// as failed), so a flood of matching alerts cannot grow memory without bound.
const MAX_HOOK_QUEUE: usize = 256;
/// Bytes of a hook's stderr kept for the log.
const HOOK_STDERR: u64 = 4096;

/// Runs a rule's command with the message as JSON on stdin, killed after its timeout (which
/// covers writing its input too).
async fn run_hook(rule: crate::rules::Rule, a: ReceivedAlert, actions: Arc<ActionCounters>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let permit = actions.hooks.acquire().await;
    actions.waiting.fetch_sub(1, Ordering::Relaxed);
    let Ok(_permit) = permit else {
        return;
    };
    let mut cmd = tokio::process::Command::new(&rule.run[0]);
    // Its own process group: on a timeout, whatever it started dies with it.
    cmd.process_group(0);
    cmd.args(&rule.run[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let result = async {
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", rule.run[0]))?;
        let group = child.id();
        let mut json = serde_json::to_vec(&a).map_err(|e| e.to_string())?;
        json.push(b'\n');
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let io = async move {
            if let Some(mut stdin) = stdin {
                // A hook that does not read its input is its own business.
                let _ = stdin.write_all(&json).await;
            }
            let mut err = Vec::new();
            if let Some(stderr) = stderr {
                let _ = stderr.take(HOOK_STDERR).read_to_end(&mut err).await;
            }
            err
        };
        let run = async { tokio::join!(io, child.wait()) };
        let (err, status) = tokio::time::timeout(Duration::from_secs(rule.timeout_s), run)
            .await
            .map_err(|_| {
                if let Some(pgid) = group.and_then(|g| i32::try_from(g).ok()) {
                    // SAFETY: signals the process group this hook leads (created above).
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                format!("timed out after {} s and was killed", rule.timeout_s)
            })?;
        let status = status.map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&err);
            Err(format!(
                "{status} {}",
                err.trim().chars().take(200).collect::<String>()
            ))
        }
    }
    .await;
    actions.hooks_run.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(()) => tracing::info!(rule = %rule.name, "hook ran"),
        Err(e) => {
            actions.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(rule = %rule.name, error = %e, "hook failed");
        }
    }
}

/// Catch-up activity, reported by `status`.
#[derive(Debug, Clone, Default)]
struct CatchUpCounters {
    sessions: u64,
    failed: u64,
    fetched: u64,
    served: u64,
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    cfg: RunConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    // Taken first, so that a reload sent while the daemon starts is not SIGHUP's default
    // action (termination).
    let hup_signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let bundle = Bundle::load(&cfg.bundle)?;
    let keypair = bundle.libp2p_keypair()?;
    fsutil::create_private_dir(&cfg.data)?;
    let sock_path = cfg.socket.clone();
    if UnixStream::connect(&sock_path).await.is_ok() {
        return Err(DaemonError::AlreadyRunning(format!(
            "{} (its control socket {} answers)",
            cfg.data.display(),
            sock_path.display()
        )));
    }
    let store = Store::open(&cfg.data).map_err(|e| match e {
        StoreError::Db { source, .. } if matches!(*source, redb::Error::DatabaseAlreadyOpen) => {
            DaemonError::AlreadyRunning(cfg.data.display().to_string())
        }
        e => e.into(),
    })?;
    // Above every seq this device may have published: those in its log and the lease that
    // covers published alerts not yet logged (proto/envelope.md, nonce uniqueness).
    let last_seq = store.own_last_seq()?.max(store.seq_lease()?);
    let stored = store.keys()?;
    let stored_updates = store.updates()?;
    let mut node_cfg = bundle.into_node_config(&cfg.bundle)?;
    // Channel keys live in the data directory once imported: they ratchet there and erased
    // periods leave the disk. The bundle's copy is emptied after the first import.
    let key_path = cfg.data.join(crate::bundle::files::KEY_STATE);
    // The latest descriptor updates brought, when newer than the bundle's.
    let desc_path = cfg.data.join(crate::bundle::files::DATA_DESCRIPTOR);
    if desc_path.exists() {
        let saved = crate::cert::Descriptor::from_bytes(&fsutil::read_public(&desc_path)?)
            .map_err(|e| FileError::invalid(&desc_path, e))?;
        if saved.authority != node_cfg.descriptor.authority {
            return Err(FileError::invalid(
                &desc_path,
                "belongs to another domain than the bundle; use a data directory of this device",
            )
            .into());
        }
        if saved.body.revision > node_cfg.descriptor.body.revision {
            node_cfg.descriptor = saved;
        }
    }
    let from_bundle = !node_cfg.channel_secrets.is_empty();
    match crate::bundle::load_key_state(&key_path)? {
        Some(saved) => node_cfg.channel_secrets.extend(saved),
        None if !from_bundle
            && cfg
                .bundle
                .join(crate::bundle::files::KEYS_IMPORTED)
                .exists() =>
        {
            let note = cfg.bundle.join(crate::bundle::files::KEYS_IMPORTED);
            let why = std::fs::read_to_string(&note).unwrap_or_default();
            return Err(FileError::invalid(&note, why.trim()).into());
        }
        None => {}
    }
    if let Err(e) = node_cfg.cert.check_time(now_us() / 1_000_000) {
        return Err(FileError::invalid(
            &cfg.bundle.join(crate::bundle::files::CERTIFICATE),
            format!("this device's certificate is not valid now ({e}); enrol the device again"),
        )
        .into());
    }
    let own_device = node_cfg.cert.body.device;
    let profile_path = cfg.data.join(PROFILE_FILE);
    let profile_override = match std::fs::read(&profile_path) {
        Ok(b) => Some(
            serde_json::from_slice::<crate::cert::Profile>(&b).map_err(|e| {
                FileError::invalid(
                    &profile_path,
                    format!("{e}; fix it or delete it to use the enrolled profile"),
                )
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(FileError::io(&profile_path, e).into()),
    };
    let mut node = Node::new(node_cfg, last_seq);
    if cfg.ignore_own_rate_limit {
        tracing::warn!("sealing beyond the channel rate limits (--ignore-own-rate-limit)");
        node.set_own_rate_limit(false);
    }
    // Updates applied earlier, beyond the bundle's revision, in order.
    let mut held_updates = BTreeMap::new();
    let mut replayed = false;
    for (serial, received, bytes) in stored_updates {
        if serial > node.revision() {
            match node.apply_update(&bytes, now_us() / 1_000_000) {
                Ok(_) => replayed = true,
                Err(UpdateError::Stale { .. }) => {}
                Err(e) => tracing::warn!(serial, error = %e, "stored update not applied"),
            }
        }
        held_updates.insert(serial, (received, bytes));
    }
    if replayed {
        // A data directory written before descriptor.bin existed: save what the stored
        // updates brought, so the revocations survive those updates being pruned.
        let desc_path = cfg.data.join(crate::bundle::files::DATA_DESCRIPTOR);
        if let Err(e) = fsutil::write_public(&desc_path, node.descriptor().as_bytes()) {
            tracing::error!(error = %e, "could not save the descriptor");
        }
    }
    if node.is_revoked_self() {
        tracing::error!("this device was revoked by the domain authority: members refuse it");
    }
    node.erase_keys(now_us(), cfg.retention.max_age_us);
    crate::bundle::save_key_state(&key_path, &node.key_state())?;
    if from_bundle {
        crate::bundle::consume_keys(&cfg.bundle, &cfg.data)?;
        tracing::info!(keys = %key_path.display(), "channel keys moved from the bundle into the data directory");
    }
    for (sender, floor) in store.floors()? {
        node.replay().raise_floor(sender, floor);
    }
    for (sender, seq) in stored {
        let _ = node.replay().insert(sender, seq);
    }
    let store = StoreHandle::spawn(store, own_device);

    let mut net_cfg = cfg.net.clone();
    if node.descriptor().body.private_network {
        let key = node.network_key().ok_or_else(|| {
            FileError::invalid(
                &cfg.bundle,
                "the domain uses a private network but this device holds no network key; enrol it again",
            )
        })?;
        net_cfg.psk = Some(net::NetworkKey(key));
    }
    // The metrics endpoint is bound before anything else starts, so a taken port is an
    // error at start, not a silent absence.
    let metrics_listener =
        match cfg.metrics {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                DaemonError::Listen {
                    addr: format!("metrics {addr}"),
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
    let mut registry = metrics_listener
        .as_ref()
        .map(|_| prometheus_client::registry::Registry::default());
    let mut swarm = net::build_swarm(keypair, &net_cfg, registry.as_mut())?;
    let (exporter, recorders) = registry.map(crate::metrics::new).unzip();
    let listen = if cfg.listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/0"
                .parse()
                .map_err(|_| DaemonError::Listen {
                    addr: "/ip4/0.0.0.0/tcp/0".into(),
                    reason: "unparsable".into(),
                })?,
        ]
    } else {
        cfg.listen.clone()
    };
    for a in listen {
        swarm
            .listen_on(a.clone())
            .map_err(|e| DaemonError::Listen {
                addr: a.to_string(),
                reason: e.to_string(),
            })?;
    }
    let mut topics = HashMap::new();
    let mut voice_topics = HashMap::new();
    for ch in node.carried_channels() {
        let t = net::topic(node.domain(), ch);
        if let Err(e) = swarm.behaviour_mut().gossipsub.inner().subscribe(&t) {
            tracing::warn!(channel = ch, error = %e, "cannot subscribe");
        }
        if let Err(e) = swarm
            .behaviour_mut()
            .gossipsub
            .inner()
            .set_topic_params(t.clone(), net::topic_score())
        {
            tracing::warn!(channel = ch, error = %e, "cannot set topic score parameters");
        }
        topics.insert(t.hash(), ch);
        if ch != crate::node::DIRECT_CHANNEL {
            let v = net::voice_topic(node.domain(), ch);
            if let Err(e) = swarm.behaviour_mut().gossipsub.inner().subscribe(&v) {
                tracing::warn!(channel = ch, error = %e, "cannot subscribe to voice");
            }
            voice_topics.insert(v.hash(), ch);
        }
    }
    let (voice_tx, _) = broadcast::channel(voice::VOICE_BUFFER);

    let (listener, sock_link) = bind_control_socket(&sock_path, cfg.group_socket, &cfg.data)?;

    // Connection brokers: from the domain descriptor, and any --peer naming a peer id.
    let node_brokers: Vec<Multiaddr> = node
        .descriptor()
        .body
        .brokers
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .collect();
    let brokers: HashSet<PeerId> = node_brokers
        .iter()
        .cloned()
        .chain(cfg.peers.iter().cloned())
        .filter_map(|a| {
            a.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            })
        })
        .collect();
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    // Slots hold their alert until overwritten, so the capacity is also what a burst leaves
    // behind in memory (about 1 MiB of typical alerts; an alert's text may be up to 64 KiB);
    // a listener further behind gets `lagged`.
    let (alerts, _) = broadcast::channel(LISTEN_BUFFER);
    let accept = tokio::spawn(accept_loop(
        listener,
        cmd_tx.clone(),
        store.clone(),
        alerts.clone(),
        voice_tx.clone(),
    ));
    let metrics_url = metrics_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!("http://{a}/metrics"));
    let metrics_task = match (metrics_listener, exporter) {
        (Some(l), Some(exporter)) => {
            if let Ok(a) = l.local_addr() {
                if !a.ip().is_loopback() {
                    tracing::warn!(addr = %a, "metrics are served beyond this machine, to anyone who asks");
                }
                tracing::info!(addr = %a, "serving metrics at http://{a}/metrics");
            }
            let (cmds, store) = (cmd_tx.clone(), store.clone());
            Some(tokio::spawn(crate::metrics::serve(
                l,
                Arc::new(exporter),
                move || {
                    let (cmds, store) = (cmds.clone(), store.clone());
                    async move { full_status(&cmds, &store).await.ok() }
                },
            )))
        }
        _ => None,
    };
    // SIGHUP reads the rules file again, off the event loop; a file that does not load
    // leaves the rules as they were.
    let hup = {
        let cmds = cmd_tx.clone();
        let path = cfg.rules_path.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = hup_signal else {
                tracing::warn!("cannot watch SIGHUP: rules will not be reloaded");
                return;
            };
            while hup.recv().await.is_some() {
                let Some(path) = path.clone() else {
                    tracing::info!("SIGHUP: no rules file to reload (start with --rules FILE)");
                    continue;
                };
                let loaded =
                    tokio::task::spawn_blocking(move || crate::rules::Rules::load(&path)).await;
                match loaded {
                    Ok(Ok(r)) => {
                        if cmds.send(Cmd::ReloadRules(r)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Err(e)) => tracing::error!(
                        error = %e,
                        "rules not reloaded; the previous rules stay in force"
                    ),
                    Err(e) => tracing::error!(error = %e, "rules not reloaded"),
                }
            }
        })
    };

    tracing::info!(
        peer_id = %swarm.local_peer_id(),
        device = %node.cert().body.name,
        domain = %node.domain().to_hex(),
        "daemon started"
    );
    let mut d = Daemon {
        swarm,
        node,
        store,
        alerts,
        peers: HashMap::new(),
        blocked: HashMap::new(),
        topics,
        voice: voice::VoiceState::new(voice_topics, voice_tx.clone()),
        // --peer addresses and the descriptor's brokers are dialled and kept connected.
        static_peers: cfg
            .peers
            .iter()
            .cloned()
            .chain(
                node_brokers
                    .iter()
                    .filter(|a| !cfg.peers.contains(a))
                    .cloned(),
            )
            .collect(),
        started: Instant::now(),
        cmd_tx,
        retention: cfg.retention,
        sync_pending: HashMap::new(),
        refused_ids: HashSet::new(),
        rules: cfg.rules.clone(),
        metrics: recorders,
        metrics_url,
        actions: Arc::new(ActionCounters {
            hooks: tokio::sync::Semaphore::new(MAX_HOOKS),
            waiting: Default::default(),
            matched: AtomicU64::new(0),
            hooks_run: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }),
        broker: cfg.net.broker,
        brokers,
        reservations: HashMap::new(),
        circuit_next: HashMap::new(),
        next_circuit: Instant::now(),
        pending_tags: Vec::new(),
        syncing: HashSet::new(),
        next_anti_entropy: Instant::now() + ANTI_ENTROPY_EVERY,
        next_prune: Instant::now(),
        next_static: Instant::now() + ANTI_ENTROPY_EVERY,
        presence_dirty: true,
        profile_override,
        data: cfg.data.clone(),
        catch_up: CatchUpCounters::default(),
        pending_updates: BTreeMap::new(),
        updates: held_updates,
        unread: VecDeque::new(),
        key_path,
        update_pushes: HashMap::new(),
        traffic_marks: (0, Instant::now(), TRIM_AFTER_QUIET.len()),
        pushes: Pushes::default(),
    };
    d.node.start_voice_at(now_us());
    d.dial_static_peers();
    d.event_loop(cmd_rx, shutdown).await;
    // Commit what is still queued before going.
    if let Err(e) = d.store.flush().await {
        tracing::warn!(error = %e, "store flush at shutdown failed");
    }
    accept.abort();
    hup.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    remove_if(&sock_path, std::os::unix::fs::FileTypeExt::is_socket);
    if let Some(l) = &sock_link {
        remove_if(l, std::fs::FileType::is_symlink);
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// The IPv4 address of a direct TCP address (`/ip4/A/tcp/P…`, not through a relay).
fn direct_ipv4(a: &Multiaddr) -> Option<std::net::Ipv4Addr> {
    use libp2p::multiaddr::Protocol;
    let mut it = a.iter();
    match (it.next(), it.next()) {
        (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(_)))
            if !a.iter().any(|p| matches!(p, Protocol::P2pCircuit)) =>
        {
            Some(ip)
        }
        _ => None,
    }
}

/// Items queued for the peers, each with the peer not to send it to (the one it came from),
/// sent together [`PUSH_BATCH`] after the first was queued (at most one batch per
/// [`PUSH_EVERY`]). Certificates and presence records
/// travel on parallel streams: a record that reaches a peer before its device's certificate
/// waits there for it ([`Node::learn_waiting_presence`](crate::node::Node::learn_waiting_presence)).
#[derive(Default)]
struct Pushes {
    roster: Vec<(Vec<u8>, Option<PeerId>)>,
    presence: Vec<(Vec<u8>, Option<PeerId>)>,
    /// When the queued items go out.
    due: Option<Instant>,
    /// When the last batch went out.
    last: Option<Instant>,
}

impl Pushes {
    /// Sets when the queued items go out, if not set: [`PUSH_BATCH`] from now, but not sooner
    /// than [`PUSH_EVERY`] after the last batch, so a lone change goes out at once and a
    /// start-up's storm of them once per `PUSH_EVERY`.
    fn schedule(&mut self) {
        let now = Instant::now();
        let at = match self.last {
            Some(last) => (now + PUSH_BATCH).max(last + PUSH_EVERY),
            None => now + PUSH_BATCH,
        };
        self.due.get_or_insert(at);
    }
}

impl Daemon {
    async fn event_loop(
        &mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // Queued roster and presence pushes go out when `self.pushes.due` says.
        let push = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(shutdown, push);
        let mut push_at: Option<Instant> = None;
        loop {
            if self.pushes.due != push_at {
                push_at = self.pushes.due;
                if let Some(at) = push_at {
                    push.as_mut().reset(at.into());
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                Some(cmd) = cmds.recv() => self.on_cmd(cmd),
                _ = tick.tick() => self.on_tick(),
                () = &mut push, if push_at.is_some() => self.flush_pushes(),
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::SealDirect { to, body, reply } => {
                let r = self
                    .node
                    .seal_direct(&to, &body, now_us())
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Cmd::Seal {
                channel,
                body,
                reply,
            } => {
                let r = self
                    .node
                    .seal_alert(&channel, &body, now_us())
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Cmd::Publish { sealed, reply } => {
                let topic = net::topic(self.node.domain(), sealed.channel);
                let n = self
                    .peers
                    .values()
                    .filter(|p| p.authenticated && p.connections > 0)
                    .count();
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .inner()
                    .publish(topic, sealed.bytes)
                {
                    Ok(_) => {
                        let _ = reply.send(n);
                    }
                    Err(e) => {
                        tracing::info!(id = %sealed.id, error = %e, "alert stored, not published now");
                        let _ = reply.send(0);
                    }
                }
            }
            Cmd::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Cmd::Voice(v) => self.on_voice_cmd(v),
            Cmd::ReloadRules(r) => {
                tracing::info!(rules = r.rules.len(), "rules reloaded");
                self.rules = r;
            }
            Cmd::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Cmd::Connect { tag, reply } => self.connect_tag(tag, reply),
            Cmd::Profile { change, reply } => {
                let _ = reply.send(self.change_profile(change));
            }
            Cmd::Search { q, reply } => {
                let _ = reply.send(self.search(&q));
            }
            Cmd::Update { bytes, reply } => {
                let _ = reply.send(self.take_update(bytes, None));
            }
            Cmd::Open {
                envelopes,
                channel,
                reply,
            } => {
                let alerts = envelopes
                    .iter()
                    .filter_map(|e| self.node.open_stored(&e.bytes, e.received_at_us).ok())
                    .filter_map(Result::ok)
                    .filter(|a| channel.as_ref().is_none_or(|c| *c == a.channel))
                    .map(|a| *a)
                    .collect();
                let _ = reply.send(alerts);
            }
            Cmd::SyncSend {
                peer,
                request,
                reply,
            } => {
                if self.swarm.is_connected(&peer) {
                    let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                    self.sync_pending.insert(id, reply);
                } else {
                    let _ = reply.send(Err("peer disconnected".into()));
                }
            }
            Cmd::SyncRespond { channel, response } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Cmd::Ingest { envelopes, reply } => {
                let mut accepted = 0;
                for e in envelopes {
                    if self.ingest(e) {
                        accepted += 1;
                    }
                }
                let _ = reply.send(accepted);
            }
            Cmd::NotRefused { mut ids, reply } => {
                ids.retain(|id| !self.refused_ids.contains(id));
                let _ = reply.send(ids);
            }
            Cmd::SyncDone {
                peer,
                fetched,
                error,
            } => {
                self.syncing.remove(&peer);
                self.catch_up.fetched += fetched as u64;
                match error {
                    Some(e) => {
                        self.catch_up.failed += 1;
                        tracing::debug!(%peer, error = %e, "catch-up ended early");
                    }
                    None if fetched > 0 => {
                        tracing::info!(%peer, fetched, "caught up");
                    }
                    None => {}
                }
            }
            Cmd::Pruned(p) => {
                for (sender, floor) in p.floors {
                    self.node.replay().raise_floor(sender, floor);
                }
                if p.removed > 0 {
                    tracing::info!(removed = p.removed, "retention removed old envelopes");
                }
            }
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut v: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(id, p)| PeerInfo {
                peer_id: id.to_string(),
                name: p.cert.as_ref().map(|c| c.body.name.clone()),
                device: p.cert.as_ref().map(|c| c.body.device),
                addresses: p.addresses.iter().map(|a| a.to_string()).collect(),
                connected: p.connections > 0,
                authenticated: p.authenticated && p.connections > 0,
                relay_only: p.cert.as_ref().map(|c| c.body.relay_only),
                state: p.state().to_string(),
                since_us: p.since_us,
                profile: p.cert.as_ref().map(|c| c.body.profile.clone()),
                last_error: p.last_error.clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.name, &a.peer_id).cmp(&(&b.name, &b.peer_id)));
        v
    }

    fn status(&self) -> StatusInfo {
        let cert = self.node.cert();
        StatusInfo {
            peer_id: self.swarm.local_peer_id().to_string(),
            device: cert.body.name.clone(),
            device_number: cert.body.device,
            domain_id: self.node.domain().to_hex(),
            domain_name: self.node.descriptor().body.name.clone(),
            relay_only: cert.body.relay_only,
            channels: self.node.readable_channels(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            peers: PeerCounts {
                connected: self.peers.values().filter(|p| p.connections > 0).count(),
                authenticated: self
                    .peers
                    .values()
                    .filter(|p| p.state() == "authenticated")
                    .count(),
                asleep: self
                    .peers
                    .values()
                    .filter(|p| p.state() == "asleep")
                    .count(),
                unreachable: self
                    .peers
                    .values()
                    .filter(|p| p.state() == "unreachable")
                    .count(),
            },
            counters: self.node.counters().into(),
            catch_up: control::CatchUpInfo {
                sessions: self.catch_up.sessions,
                failed: self.catch_up.failed,
                fetched: self.catch_up.fetched,
                served: self.catch_up.served,
            },
            store: control::StoreInfo::default(),
            actions: control::ActionInfo {
                rules: self.rules.rules.len(),
                matched: self.actions.matched.load(Ordering::Relaxed),
                hooks_run: self.actions.hooks_run.load(Ordering::Relaxed),
                sent: self.actions.sent.load(Ordering::Relaxed),
                failed: self.actions.failed.load(Ordering::Relaxed),
            },
            uptime_s: self.started.elapsed().as_secs(),
            metrics: self.metrics_url.clone(),
            revision: self.node.revision(),
            revoked: self.node.is_revoked_self(),
            keys: self
                .node
                .key_state()
                .into_iter()
                .filter(|(channel, _, _)| *channel != crate::domain::NETWORK_KEY_CHANNEL)
                .map(|(channel, epoch, c)| control::KeyInfo {
                    channel,
                    epoch,
                    rotate_secs: c.rotate_secs,
                    oldest_period: c.period,
                    current: self.node.current_epoch(channel) == Some(epoch),
                })
                .collect(),
        }
    }

    /// Once traffic has stopped, hands the allocator's free pages back to the system. A burst
    /// leaves megabytes of freed buffers, queues and cached messages inside glibc's heaps, which
    /// it keeps by default; a small device wants them back. Checked at every tick: trims at each
    /// of [`TRIM_AFTER_QUIET`] after the last message, so never in the middle of a burst.
    fn release_memory_after_traffic(&mut self, now: Instant) {
        let c = self.node.counters();
        let traffic = c.alerts_sent
            + c.alerts_received
            + c.alerts_relayed
            + c.rejected.values().sum::<u64>()
            + c.voice_sent
            + c.voice_received
            + c.voice_relayed;
        let (seen, since, trims) = self.traffic_marks;
        if traffic != seen {
            self.traffic_marks = (traffic, now, 0);
            return;
        }
        match TRIM_AFTER_QUIET.get(trims) {
            Some(quiet) if now.duration_since(since) >= *quiet => self.traffic_marks.2 += 1,
            _ => return,
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    fn on_tick(&mut self) {
        self.voice_tick();
        let now = Instant::now();
        self.release_memory_after_traffic(now);
        let (late, rest): (Vec<PendingTag>, Vec<PendingTag>) =
            std::mem::take(&mut self.pending_tags)
                .into_iter()
                .partition(|t| t.deadline <= now);
        self.pending_tags = rest;
        for t in late {
            let why = self
                .peers
                .get(&t.peer)
                .and_then(|p| p.last_error.clone())
                .unwrap_or_else(|| "no answer".into());
            let _ = t.reply.send(Err(format!(
                "could not reach and authenticate the tagged device within {} s ({why})",
                AUTH_TIMEOUT.as_secs()
            )));
        }
        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + ANTI_ENTROPY_EVERY;
            self.resend_updates();
            let candidates: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(id, p)| {
                    p.authenticated && p.connections > 0 && !self.syncing.contains(id)
                })
                .map(|(id, _)| *id)
                .collect();
            if !candidates.is_empty() {
                let pick = (rand_core::OsRng.next_u32() as usize) % candidates.len();
                self.start_sync(candidates[pick]);
            }
        }
        self.refresh_presence();
        if now >= self.next_static {
            self.next_static = now + ANTI_ENTROPY_EVERY;
            self.dial_static_peers();
            // Reservations refused or expired while a broker stayed connected: ask again.
            let brokers: Vec<PeerId> = self.brokers.iter().copied().collect();
            for b in brokers {
                if self
                    .peers
                    .get(&b)
                    .is_some_and(|p| p.authenticated && p.connections > 0)
                {
                    self.reserve_on_broker(b);
                }
            }
        }
        if now >= self.next_circuit {
            self.next_circuit = now + Duration::from_secs(2);
            self.dial_via_brokers();
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
            self.erase_keys();
            let (store, tx, retention) = (self.store.clone(), self.cmd_tx.clone(), self.retention);
            tokio::spawn(async move {
                match store.prune(now_us(), retention).await {
                    Ok(p) => {
                        let _ = tx.send(Cmd::Pruned(p)).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "retention failed"),
                }
            });
        }
        // Unblock peers whose block expired.
        let expired: Vec<PeerId> = self
            .blocked
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            // A revoked device stays blocked: nothing it can do makes it a member again.
            let revoked = self
                .peers
                .get(&p)
                .and_then(|s| s.cert.as_ref())
                .is_some_and(|c| self.node.descriptor().is_revoked(c.body.device));
            if revoked {
                self.blocked.insert(p, now + BLOCK_FOR);
                continue;
            }
            self.blocked.remove(&p);
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
        }
        // Disconnect peers that did not authenticate in time.
        let late: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.connections > 0
                    && !p.authenticated
                    && p.connected_at.is_some_and(|t| now - t > AUTH_TIMEOUT)
            })
            .map(|(id, _)| *id)
            .collect();
        for p in late {
            // Not proof of anything: drop the connection without blocking, re-dial later.
            tracing::info!(peer = %p, "peer did not authenticate in time");
            if let Some(st) = self.peers.get_mut(&p) {
                st.last_error = Some("did not authenticate in time".into());
            }
            let _ = self.swarm.disconnect_peer_id(p);
        }
        // Due dials and re-dials.
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connections == 0 && p.redial_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for p in due {
            self.dial(p);
        }
        // Forget the oldest disconnected strangers beyond the bound.
        if self.peers.len() > MAX_PEERS {
            let drop: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| p.connections == 0 && !p.member)
                .map(|(id, _)| *id)
                .take(self.peers.len() - MAX_PEERS)
                .collect();
            for p in drop {
                self.peers.remove(&p);
            }
        }
    }

    /// Takes a reservation on `peer` if it is a connection broker, so members on other
    /// segments can reach this device through it.
    fn reserve_on_broker(&mut self, peer: PeerId) {
        if self.broker || !self.brokers.contains(&peer) || self.reservations.contains_key(&peer) {
            return;
        }
        let Some(addr) = self.broker_addr(&peer) else {
            return;
        };
        let addr = strip_p2p(addr)
            .with(libp2p::multiaddr::Protocol::P2p(peer))
            .with(libp2p::multiaddr::Protocol::P2pCircuit);
        match self.swarm.listen_on(addr.clone()) {
            Ok(id) => {
                tracing::info!(broker = %peer, %addr, "reserving a relayed address on the broker");
                self.reservations.insert(peer, id);
            }
            Err(e) => tracing::warn!(broker = %peer, error = %e, "cannot reserve on the broker"),
        }
    }

    /// Where this node reaches a broker: the address it dialled, else one it was told.
    fn broker_addr(&self, broker: &PeerId) -> Option<Multiaddr> {
        let st = self.peers.get(broker)?;
        st.dialled_addr
            .clone()
            .or_else(|| st.addresses.iter().find(|a| !is_circuit(a)).cloned())
    }

    /// Dials members this node is not connected to through each connected broker.
    fn dial_via_brokers(&mut self) {
        let now = Instant::now();
        let connected_brokers: Vec<(PeerId, Multiaddr)> = self
            .brokers
            .iter()
            .filter(|b| {
                self.peers
                    .get(b)
                    .is_some_and(|p| p.authenticated && p.connections > 0)
            })
            .filter_map(|b| Some((*b, self.broker_addr(b)?)))
            .collect();
        if connected_brokers.is_empty() {
            return;
        }
        let me = *self.swarm.local_peer_id();
        // Only members whose presence says they hold a reservation on one of our brokers,
        // and only through that broker: a broker charges every circuit attempt to the
        // dialler, so blind attempts at absent members would use up its allowance.
        let mut plans: Vec<(PeerId, Vec<Multiaddr>)> = vec![];
        for p in self.node.presence_records() {
            let Some(cert) = self.node.member(p.body.device) else {
                continue;
            };
            let target = cert.peer_id();
            if target == me
                || self.brokers.contains(&target)
                || self.swarm.is_connected(&target)
                || self.blocked.contains_key(&target)
                || self
                    .circuit_next
                    .get(&target)
                    .is_some_and(|(t, _)| *t > now)
            {
                continue;
            }
            let addrs: Vec<Multiaddr> = connected_brokers
                .iter()
                .filter(|(b, _)| {
                    let via = format!("/p2p/{b}/p2p-circuit");
                    p.body.addresses.iter().any(|a| a.contains(&via))
                })
                .map(|(b, addr)| {
                    strip_p2p(addr.clone())
                        .with(libp2p::multiaddr::Protocol::P2p(*b))
                        .with(libp2p::multiaddr::Protocol::P2pCircuit)
                        .with(libp2p::multiaddr::Protocol::P2p(target))
                })
                .collect();
            if !addrs.is_empty() {
                plans.push((target, addrs));
            }
        }
        for (target, addrs) in plans {
            let opts = DialOpts::peer_id(target)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            // A dial refused because one is already under way (for example to the member's
            // LAN address) is no attempt: try the broker again at the next round.
            if self.swarm.dial(opts).is_err() {
                continue;
            }
            // Back off per member while it stays unreachable: 10 s doubling to 5 min.
            let wait = self
                .circuit_next
                .get(&target)
                .map_or(ANTI_ENTROPY_EVERY, |(_, w)| {
                    (*w * 2).min(Duration::from_secs(300))
                });
            self.circuit_next.insert(target, (now + wait, wait));
        }
    }

    /// Dials the `--peer` addresses that are not connected: those naming a peer id when that
    /// peer is not connected, the others when no peer at all is connected.
    fn dial_static_peers(&mut self) {
        let connected_any = self.peers.values().any(|p| p.connections > 0);
        for a in self.static_peers.clone() {
            let peer = a.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            let wanted = match peer {
                Some(id) => !self.swarm.is_connected(&id) && !self.blocked.contains_key(&id),
                None => !connected_any,
            };
            if !wanted {
                continue;
            }
            let opts = DialOpts::unknown_peer_id()
                .address(a.clone())
                .allocate_new_port()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(addr = %a, error = %e, "cannot dial static peer");
            }
        }
    }

    fn dial(&mut self, peer: PeerId) {
        if self.blocked.contains_key(&peer) || self.swarm.is_connected(&peer) {
            return;
        }
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        st.redial_at = None;
        if st.addresses.is_empty() {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(st.addresses.iter().cloned().collect())
            .condition(PeerCondition::DisconnectedAndNotDialing)
            // A fresh source port: dialling from the listening port lets two simultaneous
            // dials collide into one TCP connection with two Noise initiators.
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial not started");
        }
    }

    /// A member's presence record names addresses on this node's own LAN (the same IPv4 /24
    /// as one of its listen addresses) and the two are not connected: remember them and dial,
    /// as if mDNS had found it. mDNS alone misses a member whose answer was lost until the next
    /// query (`--mdns-interval`, 5 s), and a member that starts after this node's query until
    /// that member dials; one authenticated member's presence push closes both gaps. Other
    /// addresses are left to the broker paths: a dial to an unreachable private address
    /// could hang for seconds and hold up the circuit dial to the same member.
    fn dial_from_presence(&mut self, device: u32, peer: PeerId) {
        let me = *self.swarm.local_peer_id();
        // With --no-mdns the operator chose where peers come from (network.md).
        if !self.swarm.behaviour().mdns.is_enabled()
            || peer == me
            || self.blocked.contains_key(&peer)
            || self.swarm.is_connected(&peer)
        {
            return;
        }
        // This node's own direct IPv4 addresses (relayed listen addresses name the broker's).
        let own: Vec<std::net::Ipv4Addr> = self
            .swarm
            .listeners()
            .filter_map(direct_ipv4)
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .collect();
        let same_lan = |ip: &std::net::Ipv4Addr| {
            !own.contains(ip) && own.iter().any(|o| o.octets()[..3] == ip.octets()[..3])
        };
        let Some(record) = self
            .node
            .presence_records()
            .find(|p| p.body.device == device)
        else {
            return;
        };
        let on_lan: Vec<Multiaddr> = record
            .body
            .addresses
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .filter(|a| direct_ipv4(a).is_some_and(|ip| same_lan(&ip)))
            .collect();
        if on_lan.is_empty() {
            return;
        }
        self.found_at(peer, on_lan);
    }

    /// A peer was found at `addrs` (mDNS, or a member's presence on this LAN): remembers them
    /// (at most [`MAX_ADDRS_PER_PEER`]) and, if the two are not connected and no dial is
    /// scheduled, dials at once (not at the next tick) when this node's peer id is the
    /// smaller, else after [`DIAL_DEFER`], so that a pair usually ends up with one connection.
    /// A node with no connection, no dial under way and none coming in dials at once whatever
    /// the ids: a node that starts after the others hears their mDNS answers, but they do not
    /// hear of it until their next query, so waiting for them would leave it alone for
    /// `DIAL_DEFER`; its first connection brings every member's presence record, and the
    /// others learn its own from that member.
    fn found_at(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        let me = *self.swarm.local_peer_id();
        let info = self.swarm.network_info();
        let pending = info.connection_counters();
        let alone = info.num_peers() == 0
            && pending.num_pending_outgoing() == 0
            && pending.num_pending_incoming() == 0;
        let st = self.peers.entry(peer).or_default();
        for a in addrs {
            if st.addresses.len() < MAX_ADDRS_PER_PEER {
                st.addresses.insert(a);
            }
        }
        if st.connections > 0 || st.redial_at.is_some() {
            return;
        }
        if me < peer || alone {
            self.dial(peer);
        } else {
            st.redial_at = Some(Instant::now() + DIAL_DEFER);
        }
    }

    fn schedule_redial(&mut self, peer: PeerId) {
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        st.backoff = if st.backoff.is_zero() {
            BACKOFF_MIN
        } else {
            (st.backoff * 2).min(BACKOFF_MAX)
        };
        // Jitter: 50 to 100 % of the back-off, so peers that lost each other together do
        // not all come back at the same instant.
        let ms = st.backoff.as_millis() as u64;
        let jitter = ms / 2 + (rand_core::OsRng.next_u64() % (ms / 2 + 1));
        st.redial_at = Some(Instant::now() + Duration::from_millis(jitter));
    }

    /// Drops and blocks a peer that proved it is not a member (or not a ptt-node).
    fn refuse(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, %reason, "peer refused");
        self.node.counters_mut().peers_refused += 1;
        if let Some(st) = self.peers.get_mut(&peer) {
            st.last_error = Some(reason);
            st.redial_at = None;
            st.member = false;
            st.refused = true;
        }
        self.blocked.insert(peer, Instant::now() + BLOCK_FOR);
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Erases ratchet periods older than the retention window, from memory and disk, and
    /// drops the updates received before it (their sealed keys are at least as old).
    fn erase_keys(&mut self) {
        let window = self.retention.max_age_us;
        if self.node.erase_keys(now_us(), window) > 0 {
            self.save_keys();
        }
        let before = now_us().saturating_sub(window) / 1_000_000;
        // By when this node received them, not the authority's clock.
        let old: Vec<u64> = self
            .updates
            .iter()
            .filter(|(_, (received, _))| *received < before)
            .map(|(s, _)| *s)
            .collect();
        if !old.is_empty() {
            for s in &old {
                self.updates.remove(s);
            }
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.prune_updates(before).await {
                    tracing::warn!(error = %e, "could not drop old updates");
                }
            });
        }
    }

    fn save_keys(&self) {
        if let Err(e) = crate::bundle::save_key_state(&self.key_path, &self.node.key_state()) {
            tracing::error!(error = %e, "could not save channel keys");
        }
    }

    /// Takes a domain update from a member (`from`) or the control socket: applies it when
    /// it is the next one, holds it when one before it is missing, spreads what it applied.
    fn take_update(&mut self, bytes: Vec<u8>, from: Option<PeerId>) -> Result<Reply, String> {
        let serial = Update::claimed_serial(&bytes).map_err(|e| e.to_string())?;
        match self.node.apply_update(&bytes, now_us() / 1_000_000) {
            Ok(applied) => {
                let note = applied.note.clone();
                self.after_update(applied, bytes, from);
                // Later ones that were waiting for it, in order.
                loop {
                    self.pending_updates
                        .retain(|s, _| *s > self.node.revision());
                    let mut applied_one = false;
                    let serials: Vec<u64> = self.pending_updates.keys().copied().collect();
                    for s in serials {
                        let Some(next) = self.pending_updates.remove(&s) else {
                            continue;
                        };
                        match self.node.apply_update(&next, now_us() / 1_000_000) {
                            Ok(a) => {
                                self.after_update(a, next, None);
                                applied_one = true;
                                break;
                            }
                            Err(UpdateError::Gap { .. }) => {
                                self.pending_updates.insert(s, next);
                            }
                            Err(e) => tracing::warn!(error = %e, "held update not applied"),
                        }
                    }
                    if !applied_one {
                        break;
                    }
                }
                Ok(Reply::Published {
                    serial,
                    note,
                    applied: true,
                    revision: self.node.revision(),
                })
            }
            Err(UpdateError::Stale { serial, have }) => Ok(Reply::Published {
                serial,
                note: format!("already applied (revision {have})"),
                applied: false,
                revision: have,
            }),
            Err(e @ UpdateError::Gap { .. }) => {
                // Verified (a gap is found after the signature check): hold it for later.
                if self.pending_updates.len() < MAX_PENDING_UPDATES {
                    self.pending_updates.insert(serial, bytes);
                }
                Err(e.to_string())
            }
            Err(e) => {
                if let Some(peer) = from {
                    tracing::warn!(%peer, error = %e, "update refused");
                }
                Err(e.to_string())
            }
        }
    }

    /// Carries out what an applied update changed.
    fn after_update(&mut self, a: Applied, bytes: Vec<u8>, from: Option<PeerId>) {
        tracing::info!(serial = a.serial, note = %a.note, "domain update applied");
        let received = now_us() / 1_000_000;
        self.updates.insert(a.serial, (received, bytes.clone()));
        let store = self.store.clone();
        let b = bytes.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put_update(a.serial, received, b).await {
                tracing::error!(error = %e, "could not store update");
            }
        });
        if a.revoked_self {
            tracing::error!("this device was revoked by the domain authority: members refuse it");
        }
        let desc_path = self.data.join(crate::bundle::files::DATA_DESCRIPTOR);
        if let Err(e) = fsutil::write_public(&desc_path, self.node.descriptor().as_bytes()) {
            tracing::error!(error = %e, "could not save the descriptor");
        }
        // Brokers the update added: dial and keep them like those of the bundle.
        let brokers: Vec<Multiaddr> = self
            .node
            .descriptor()
            .body
            .brokers
            .iter()
            .filter_map(|b| b.parse::<Multiaddr>().ok())
            .collect();
        for b in brokers {
            if let Some(id) = b.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            }) && self.brokers.insert(id)
            {
                tracing::info!(broker = %b, "broker added by the update");
                self.static_peers.push(b);
            }
        }
        for (device, peer) in &a.revoked {
            tracing::warn!(device, %peer, "member revoked: disconnecting");
            if self.swarm.is_connected(peer) || self.peers.contains_key(peer) {
                self.refuse(*peer, "revoked by the domain authority".into());
            }
        }
        if !a.new_keys.is_empty() {
            self.save_keys();
            self.reopen_unread();
        }
        if !a.new_certs.is_empty() {
            self.push_roster(
                a.new_certs.clone(),
                from.unwrap_or(*self.swarm.local_peer_id()),
            );
            self.learn_waiting_presence();
        }
        // Pass it on to every member but the one it came from.
        let targets: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| Some(**id) != from && p.authenticated && p.connections > 0)
            .map(|(id, _)| *id)
            .collect();
        for t in targets {
            let id = self.swarm.behaviour_mut().auth.send_request(
                &t,
                AuthRequest::Update {
                    update: bytes.clone(),
                },
            );
            self.update_pushes.insert(id, (t, a.serial));
        }
    }

    /// Sends a member the updates it lacks (it is known to hold `revision`).
    fn send_updates(&mut self, peer: PeerId, revision: u64) {
        let missing: Vec<(u64, Vec<u8>)> = self
            .updates
            .range(revision + 1..)
            .map(|(s, (_, b))| (*s, b.clone()))
            .collect();
        for (serial, update) in missing {
            if self.update_pushes.values().any(|p| *p == (peer, serial)) {
                continue;
            }
            let id = self
                .swarm
                .behaviour_mut()
                .auth
                .send_request(&peer, AuthRequest::Update { update });
            self.update_pushes.insert(id, (peer, serial));
        }
    }

    /// Pushes again the updates a member has not acknowledged (a push lost to a freeze or a
    /// dropped stream would otherwise wait for the next connection).
    fn resend_updates(&mut self) {
        let mine = self.node.revision();
        let behind: Vec<(PeerId, u64)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.authenticated && p.connections > 0 && p.revision < mine)
            .map(|(id, p)| (*id, p.revision))
            .collect();
        for (peer, rev) in behind {
            self.send_updates(peer, rev);
        }
    }

    /// Opens the envelopes that waited for a key epoch this node now holds.
    fn reopen_unread(&mut self) {
        let waiting = std::mem::take(&mut self.unread);
        for (bytes, at) in waiting {
            match self.node.open_stored(&bytes, at) {
                Ok(Ok(mut a)) => {
                    a.via = Via::CatchUp;
                    self.node.counters_mut().alerts_received += 1;
                    self.apply_rules(&a);
                    self.deliver(a);
                }
                Ok(Err(Unreadable::UnknownEpoch { .. })) => self.unread.push_back((bytes, at)),
                _ => {}
            }
        }
    }

    fn send_hello(&mut self, peer: PeerId) {
        let hello = AuthHello {
            domain: *self.node.domain(),
            cert: self.node.cert().as_bytes().to_vec(),
            revision: self.node.revision(),
        };
        self.swarm
            .behaviour_mut()
            .auth
            .send_request(&peer, AuthRequest::Hello(hello));
    }

    /// Opens the gate for an authenticated peer; `announce` pushes its certificate to the
    /// other authenticated peers (when this node had not known it), so members further away
    /// learn it.
    fn admit(&mut self, peer: PeerId, cert: Certificate, announce: bool) {
        // A verdict that arrives after the peer left is moot: its next connection proves
        // membership again.
        if !self.swarm.is_connected(&peer) {
            return;
        }
        if announce {
            self.push_roster(vec![cert.as_bytes().to_vec()], peer);
        }
        let st = self.peers.entry(peer).or_default();
        if !st.authenticated {
            tracing::info!(%peer, device = %cert.body.name, "peer authenticated");
        }
        st.authenticated = true;
        st.member = true;
        st.backoff = Duration::ZERO;
        st.last_error = None;
        st.cert = Some(cert);
        st.refused = false;
        self.learn_waiting_presence();
        self.circuit_next.remove(&peer);
        self.swarm.behaviour_mut().gossipsub.open(peer);
        self.swarm.behaviour_mut().relay.open(peer);
        self.reserve_on_broker(peer);
        // Tell the newcomer where everyone is.
        let records: Vec<Vec<u8>> = self
            .node
            .presence_records()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        self.send_presence(peer, &records);
        // Whatever either side missed while apart: fetch it now.
        self.start_sync(peer);
        if self.pending_tags.iter().any(|t| t.peer == peer)
            && let Some(cert) = self.peers.get(&peer).and_then(|p| p.cert.clone())
        {
            self.check_tag(peer, &cert);
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder as _;
            m.libp2p.record(&ev);
        }
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.presence_dirty = true;
                // A broker hands its addresses out in reservations; on a LAN its listen
                // addresses are the ones members reach it at.
                if self.broker && !is_loopback(&address) && !is_circuit(&address) {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { .. } => self.presence_dirty = true,
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let st = self.peers.entry(peer_id).or_default();
                st.connections = num_established.get() as usize;
                st.redial_at = None;
                if st.connected_at.is_none() || num_established.get() == 1 {
                    st.connected_at = Some(Instant::now());
                }
                if endpoint.is_dialer() && !is_circuit(endpoint.get_remote_address()) {
                    st.dialled_addr = Some(strip_p2p(endpoint.get_remote_address().clone()));
                }
                if endpoint.is_dialer() && st.addresses.len() < MAX_ADDRS_PER_PEER {
                    st.addresses.insert(endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 {
                    st.auth_attempts = 0;
                    st.ping_failures = 0;
                    st.since_us = now_us();
                    self.send_hello(peer_id);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.reservations.retain(|_, id| *id != listener_id);
                self.presence_dirty = true;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                let member = if let Some(st) = self.peers.get_mut(&peer_id) {
                    st.connections = num_established as usize;
                    if num_established == 0 {
                        st.authenticated = false;
                        st.since_us = now_us();
                        st.connected_at = None;
                        // A refused peer keeps the reason it was refused for.
                        if let Some(c) = cause.filter(|_| !st.refused) {
                            st.last_error = Some(c.to_string());
                        }
                    }
                    st.member && num_established == 0
                } else {
                    false
                };
                if member {
                    tracing::info!(peer = %peer_id, "member disconnected; will re-dial");
                    self.schedule_redial(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if let Some(st) = self.peers.get_mut(&peer).filter(|s| !s.refused) {
                    st.last_error = Some(error.to_string());
                }
                if !self.swarm.is_connected(&peer) && !self.blocked.contains_key(&peer) {
                    self.schedule_redial(peer);
                }
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour_event(b),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        if let Some(m) = &self.metrics {
            use libp2p::metrics::Recorder as _;
            match &ev {
                BehaviourEvent::Gossipsub(e) => m.libp2p.record(e),
                BehaviourEvent::Identify(e) => m.libp2p.record(e),
                BehaviourEvent::Ping(e) => m.libp2p.record(e),
                BehaviourEvent::Relay(e) => m.libp2p.record(e),
                BehaviourEvent::Dcutr(e) => m.libp2p.record(e),
                _ => {}
            }
        }
        match ev {
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                let me = *self.swarm.local_peer_id();
                // One dial per peer with every address it answered with.
                let mut found: Vec<(PeerId, Vec<Multiaddr>)> = vec![];
                for (peer, addr) in list {
                    if peer == me {
                        continue;
                    }
                    match found.iter_mut().find(|(p, _)| *p == peer) {
                        Some((_, addrs)) => addrs.push(addr),
                        None => found.push((peer, vec![addr])),
                    }
                }
                for (peer, addrs) in found {
                    self.found_at(peer, addrs);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Auth(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_auth_request(peer, request, channel),
                    request_response::Message::Response {
                        response,
                        request_id,
                    } => {
                        if let Some((p, serial)) = self.update_pushes.remove(&request_id)
                            && let Some(st) = self.peers.get_mut(&p)
                        {
                            st.revision = st.revision.max(serial);
                        }
                        self.on_auth_reply(peer, response)
                    }
                }
            }
            BehaviourEvent::Auth(request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            }) => {
                self.update_pushes.remove(&request_id);
                tracing::debug!(%peer, %error, "authentication request failed");
                if let request_response::OutboundFailure::UnsupportedProtocols = error {
                    self.refuse(
                        peer,
                        "does not speak the ptt-node authentication protocol".into(),
                    );
                    return;
                }
                let retry = match self.peers.get_mut(&peer) {
                    // A failed roster push to a member is not an authentication problem.
                    Some(st) if st.authenticated => false,
                    Some(st) => {
                        if !st.refused {
                            st.last_error = Some(format!("authentication: {error}"));
                        }
                        let again = st.connections > 0 && st.auth_attempts < 3;
                        st.auth_attempts += u8::from(again);
                        again
                    }
                    None => false,
                };
                // The peer's own hello may still authenticate it; if not, ask again while
                // the connection lasts (the authentication timeout bounds this).
                if retry {
                    self.send_hello(peer);
                }
            }
            BehaviourEvent::Auth(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(%peer, %error, "authentication request from peer failed");
            }
            BehaviourEvent::Auth(request_response::Event::ResponseSent { .. }) => {}
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_sync_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(tx) = self.sync_pending.remove(&request_id) {
                            let _ = tx.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) => {
                if let Some(tx) = self.sync_pending.remove(&request_id) {
                    let _ = tx.send(Err(error.to_string()));
                }
            }
            BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result,
            }) => {
                let Some(st) = self.peers.get_mut(&peer) else {
                    return;
                };
                match result {
                    Ok(_) => st.ping_failures = 0,
                    // A peer without ping is not dead; authentication decides about it.
                    Err(libp2p::ping::Failure::Unsupported) => {}
                    Err(e) => {
                        st.ping_failures = st.ping_failures.saturating_add(1);
                        if st.ping_failures >= MAX_PING_FAILURES {
                            tracing::info!(%peer, error = %e, "peer stopped answering pings; closing the connection");
                            st.last_error = Some(format!("ping: {e}"));
                            st.ping_failures = 0;
                            self.swarm.close_connection(connection);
                        }
                    }
                }
            }
            BehaviourEvent::RelayClient(e) => {
                tracing::info!(event = ?e, "connection broker");
                if let libp2p::relay::client::Event::ReservationReqAccepted { .. } = e {
                    self.presence_dirty = true;
                }
            }
            BehaviourEvent::Relay(e) => tracing::debug!(event = ?e, "acting as connection broker"),
            BehaviourEvent::Dcutr(e) => tracing::info!(event = ?e, "direct connection upgrade"),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            // Copies to a peer were dropped since the last heartbeat: each queued copy has a
            // deadline (net::FORWARD_QUEUE_DEADLINE, net::PUBLISH_QUEUE_DEADLINE) and the queue
            // is bounded. A member repairs missed alerts by catch-up, later.
            BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages: f,
            }) => tracing::warn!(
                peer = %peer_id,
                dropped = f.priority + f.non_priority,
                forward_deadline = ?crate::net::FORWARD_QUEUE_DEADLINE,
                publish_deadline = ?crate::net::PUBLISH_QUEUE_DEADLINE,
                "gossip messages to a slow peer dropped: they waited in its send queue past \
                 their deadline or found the queue full"
            ),
            BehaviourEvent::Identify(libp2p::identify::Event::Received {
                peer_id, info, ..
            }) => {
                if let Some(st) = self.peers.get_mut(&peer_id) {
                    for a in info.listen_addrs.into_iter().filter(|a| !is_loopback(a)) {
                        if st.addresses.len() >= MAX_ADDRS_PER_PEER {
                            break;
                        }
                        st.addresses.insert(a);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_auth_request(
        &mut self,
        peer: PeerId,
        request: AuthRequest,
        channel: request_response::ResponseChannel<AuthReply>,
    ) {
        let hello = match request {
            AuthRequest::Hello(h) => h,
            AuthRequest::Roster { certs } => {
                if self.ack_from_member(peer, channel) {
                    let new = self.learn_roster(peer, &certs);
                    self.push_roster(new, peer);
                }
                return;
            }
            AuthRequest::Update { update } => {
                if let (Some(st), Ok(serial)) =
                    (self.peers.get_mut(&peer), Update::claimed_serial(&update))
                    && st.authenticated
                {
                    st.revision = st.revision.max(serial);
                }
                if self.ack_from_member(peer, channel)
                    && let Err(e) = self.take_update(update, Some(peer))
                {
                    tracing::debug!(%peer, error = %e, "update from peer not applied");
                }
                return;
            }
            AuthRequest::Presence { records } => {
                if self.ack_from_member(peer, channel) {
                    let mut new = vec![];
                    for r in records.into_iter().take(net::MAX_ROSTER_PUSH) {
                        match self.node.learn_presence(&r) {
                            Ok(true) => {
                                self.presence_learned(&r);
                                new.push(r)
                            }
                            Ok(false) => {}
                            Err(PresenceError::UnknownDevice(device)) => {
                                tracing::debug!(%peer, device, "presence held until its certificate arrives")
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "presence ignored"),
                        }
                    }
                    self.push_presence(new, Some(peer));
                }
                return;
            }
        };
        let now = now_us() / 1_000_000;
        let known = self.node.knows_peer(&peer);
        let result = if hello.domain != *self.node.domain() {
            Err("belongs to another domain".to_string())
        } else {
            self.node
                .authenticate_peer(&peer, &hello.cert, now)
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(cert) => {
                let own = self.node.cert().body.device;
                let roster: Vec<Vec<u8>> = self
                    .node
                    .roster()
                    .filter(|c| c.peer_id() != peer && c.body.device != own)
                    .take(net::MAX_ROSTER_SHARE)
                    .map(|c| c.as_bytes().to_vec())
                    .collect();
                let reply = AuthReply::Welcome {
                    cert: self.node.cert().as_bytes().to_vec(),
                    roster,
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .auth
                    .send_response(channel, reply);
                self.admit(peer, cert, !known);
                if let Some(st) = self.peers.get_mut(&peer) {
                    st.revision = hello.revision;
                }
                if hello.revision < self.node.revision() {
                    self.send_updates(peer, hello.revision);
                }
            }
            Err(reason) => {
                let _ = self.swarm.behaviour_mut().auth.send_response(
                    channel,
                    AuthReply::Refused {
                        reason: reason.clone(),
                    },
                );
                self.refuse(peer, reason);
            }
        }
    }

    /// Acknowledges a roster or presence push; true when it came from an authenticated
    /// member (only members may tell us about members).
    fn ack_from_member(
        &mut self,
        peer: PeerId,
        channel: request_response::ResponseChannel<AuthReply>,
    ) -> bool {
        let _ = self
            .swarm
            .behaviour_mut()
            .auth
            .send_response(channel, AuthReply::Ack);
        self.peers.get(&peer).is_some_and(|p| p.authenticated)
    }

    fn on_auth_reply(&mut self, peer: PeerId, reply: AuthReply) {
        let now = now_us() / 1_000_000;
        match reply {
            AuthReply::Welcome { cert, roster } => {
                let known = self.node.knows_peer(&peer);
                match self.node.authenticate_peer(&peer, &cert, now) {
                    Ok(cert) => {
                        self.admit(peer, cert, !known);
                        let new = self.learn_roster(peer, &roster);
                        self.push_roster(new, peer);
                    }
                    Err(e) => self.refuse(peer, e.to_string()),
                }
            }
            AuthReply::Refused { reason } => {
                let reason = sanitize(&reason, 200);
                tracing::warn!(%peer, %reason, "refused by peer");
                self.refuse(peer, format!("refused us: {reason}"));
            }
            AuthReply::Ack => {}
        }
    }

    /// Queues newly learned member certificates for every authenticated peer but `except`
    /// (sent by [`Daemon::flush_pushes`]). Each receiver forwards only what is new to it, so a
    /// certificate floods the mesh once.
    fn push_roster(&mut self, certs: Vec<Vec<u8>>, except: PeerId) {
        if certs.is_empty() {
            return;
        }
        self.pushes
            .roster
            .extend(certs.into_iter().map(|c| (c, Some(except))));
        self.pushes.schedule();
    }

    /// Queues presence records for every authenticated peer but `except`.
    fn push_presence(&mut self, records: Vec<Vec<u8>>, except: Option<PeerId>) {
        if records.is_empty() {
            return;
        }
        self.pushes
            .presence
            .extend(records.into_iter().map(|r| (r, except)));
        self.pushes.schedule();
    }

    /// Sends what `push_roster` and `push_presence` queued: one request of each kind per peer
    /// per batch (more only past [`net::MAX_ROSTER_PUSH`] items). Pushing each item at once
    /// cost every connection a stream per item and per peer admitted: when 50 members start
    /// together that is thousands of streams, far past [`net::MAX_CONCURRENT_STREAMS`] per
    /// connection, and the hellos refused with them left members unauthenticated for a
    /// minute. Batches go out [`PUSH_BATCH`] after the first item, at most one per
    /// [`PUSH_EVERY`]: a newcomer's address is not held up for a whole tick, and a start-up's
    /// items still go in a few requests.
    fn flush_pushes(&mut self) {
        self.pushes.due = None;
        self.pushes.last = Some(Instant::now());
        let roster = std::mem::take(&mut self.pushes.roster);
        let presence = std::mem::take(&mut self.pushes.presence);
        if roster.is_empty() && presence.is_empty() {
            return;
        }
        let targets: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.authenticated && p.connections > 0)
            .map(|(id, _)| *id)
            .collect();
        for t in targets {
            let pick = |items: &[(Vec<u8>, Option<PeerId>)]| -> Vec<Vec<u8>> {
                let mut seen = HashSet::new();
                items
                    .iter()
                    .filter(|(item, except)| *except != Some(t) && seen.insert(item.as_slice()))
                    .map(|(item, _)| item.clone())
                    .collect()
            };
            let certs = pick(&roster);
            for chunk in certs.chunks(net::MAX_ROSTER_PUSH) {
                self.swarm.behaviour_mut().auth.send_request(
                    &t,
                    AuthRequest::Roster {
                        certs: chunk.to_vec(),
                    },
                );
            }
            let records = pick(&presence);
            self.send_presence(t, &records);
        }
    }

    fn send_presence(&mut self, peer: PeerId, records: &[Vec<u8>]) {
        for chunk in records.chunks(net::MAX_ROSTER_PUSH) {
            let records = chunk.to_vec();
            self.swarm
                .behaviour_mut()
                .auth
                .send_request(&peer, AuthRequest::Presence { records });
        }
    }

    /// Re-signs this device's presence when its addresses or profile changed, and pushes it.
    fn refresh_presence(&mut self) {
        if !self.presence_dirty {
            return;
        }
        self.presence_dirty = false;
        let mut addrs: Vec<String> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .filter(|a| !is_loopback(a) && !is_unspecified(a))
            .map(|a| a.to_string())
            .collect();
        addrs.sort();
        addrs.dedup();
        let p = self
            .node
            .issue_presence(addrs, self.profile_override.clone(), now_us());
        self.push_presence(vec![p.as_bytes().to_vec()], None);
    }

    /// Dials the device a tag names; the reply comes when its certificate has been checked
    /// against the tag's fingerprint (see [`Daemon::check_tag`]), or after 15 s.
    fn connect_tag(
        &mut self,
        tag: crate::tag::DeviceTag,
        reply: oneshot::Sender<Result<Reply, String>>,
    ) {
        if tag.domain != *self.node.domain() {
            let _ = reply.send(Err(format!(
                "this tag belongs to domain {}, not to this device's domain {} ({}): refused",
                &tag.domain.to_hex()[..16],
                &self.node.domain().to_hex()[..16],
                self.node.descriptor().body.name
            )));
            return;
        }
        if tag.peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err("this tag is this device's own tag".into()));
            return;
        }
        let st = self.peers.entry(tag.peer).or_default();
        for a in tag.addresses.iter().take(MAX_ADDRS_PER_PEER) {
            st.addresses.insert(a.clone());
        }
        let ready = st.authenticated && st.connections > 0;
        let known = st.cert.clone();
        self.pending_tags.push(PendingTag {
            peer: tag.peer,
            fingerprint: tag.fingerprint,
            deadline: Instant::now() + AUTH_TIMEOUT,
            reply,
        });
        match known {
            Some(cert) if ready => self.check_tag(tag.peer, &cert),
            _ => {
                if let Some(st) = self.peers.get_mut(&tag.peer) {
                    st.redial_at = None;
                }
                self.dial(tag.peer);
            }
        }
    }

    /// Answers pending `connect`s for `peer` once its certificate is known: it must be the
    /// very certificate the tag pins. A mismatch refuses the tag, not the member.
    fn check_tag(&mut self, peer: PeerId, cert: &Certificate) {
        let fp = cert.fingerprint();
        let (mine, rest): (Vec<PendingTag>, Vec<PendingTag>) =
            std::mem::take(&mut self.pending_tags)
                .into_iter()
                .partition(|t| t.peer == peer);
        self.pending_tags = rest;
        for t in mine {
            let r = if t.fingerprint == fp {
                Ok(Reply::Connected {
                    name: cert.body.name.clone(),
                    device: cert.body.device,
                    peer_id: peer.to_string(),
                })
            } else {
                Err(format!(
                    "the device at the tag's address is {} but its certificate does not match the tag's fingerprint: tag refused (tampered or out of date)",
                    cert.body.name
                ))
            };
            let _ = t.reply.send(r);
        }
    }

    fn change_profile(&mut self, c: ProfileChange) -> Result<crate::cert::Profile, String> {
        let unchanged =
            c.kind.is_none() && c.location.is_none() && c.tags.is_none() && c.sleeps.is_none();
        if unchanged && !c.reset {
            return Ok(self.node.profile_of(self.node.cert()));
        }
        let mut p = if c.reset {
            self.node.cert().body.profile.clone()
        } else {
            self.node.profile_of(self.node.cert())
        };
        if c.kind.as_ref().is_some_and(|k| k.len() > 64)
            || c.tags.as_ref().is_some_and(|t| {
                t.len() > 16 || t.iter().any(|(k, v)| k.len() > 64 || v.len() > 64)
            })
        {
            return Err("a profile has a kind of at most 64 bytes and at most 16 tags of at most 64 bytes each".into());
        }
        if let Some(k) = c.kind {
            p.kind = k;
        }
        if let Some(l) = c.location {
            l.check()?;
            p.location = Some(l);
        }
        if let Some(t) = c.tags {
            p.tags = t;
        }
        if let Some(s) = c.sleeps {
            p.sleeps = s;
        }
        let path = self.data.join(PROFILE_FILE);
        if c.reset {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
            self.profile_override = None;
        } else {
            let json = serde_json::to_vec_pretty(&p).map_err(|e| e.to_string())?;
            fsutil::write_secret(&path, &json).map_err(|e| e.to_string())?;
            self.profile_override = Some(p.clone());
        }
        self.presence_dirty = true;
        Ok(p)
    }

    fn search(&self, q: &crate::node::Search) -> Vec<control::DeviceInfo> {
        let me = self.node.cert().body.device;
        self.node
            .search(q)
            .into_iter()
            .map(|f| {
                let peer = f.cert.peer_id();
                let st = self.peers.get(&peer);
                let mut addresses = f.addresses;
                if addresses.is_empty()
                    && let Some(st) = st
                {
                    addresses = st.addresses.iter().map(|a| a.to_string()).collect();
                }
                control::DeviceInfo {
                    name: f.cert.body.name.clone(),
                    device: f.cert.body.device,
                    peer_id: peer.to_string(),
                    profile: f.profile,
                    relay_only: f.cert.body.relay_only,
                    addresses,
                    distance_m: f.distance_m,
                    state: if f.cert.body.device == me {
                        "self".into()
                    } else {
                        st.map_or("known", |s| s.state()).into()
                    },
                }
            })
            .collect()
    }

    /// Learns certificates sent by an authenticated peer; returns those that were new.
    fn learn_roster(&mut self, from: PeerId, certs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let now = now_us() / 1_000_000;
        let mut new = vec![];
        for c in certs.iter().take(net::MAX_ROSTER_SHARE) {
            match self.node.learn_certificate(c, now) {
                Ok(true) => new.push(c.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(peer = %from, error = %e, "roster certificate ignored")
                }
            }
        }
        if !new.is_empty() {
            self.learn_waiting_presence();
        }
        new
    }

    /// Learns the presence records that arrived before their device's certificate (a
    /// newcomer is sent every record and the roster at once, on parallel streams), acts on
    /// them and passes them on.
    fn learn_waiting_presence(&mut self) {
        let learned = self.node.learn_waiting_presence();
        for r in &learned {
            self.presence_learned(r);
        }
        self.push_presence(learned, None);
    }

    /// A presence record new to this node: its addresses may be new (a fresh reservation,
    /// a member this node has not met), so they are tried at once.
    fn presence_learned(&mut self, record: &[u8]) {
        if let Ok(device) = Presence::claimed_device(record)
            && let Some(peer) = self.node.member(device).map(|c| c.peer_id())
        {
            self.circuit_next.remove(&peer);
            self.dial_from_presence(device, peer);
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, msg: gossipsub::Message) {
        let taken = match self.voice.topics.get(&msg.topic).copied() {
            Some(ch) => self.take_voice(&msg.data, ch),
            None => {
                let topic_channel = self.topics.get(&msg.topic).copied();
                self.take_envelope(msg.data, Via::Gossip, topic_channel)
            }
        };
        let acceptance = match taken {
            Ok(()) => gossipsub::MessageAcceptance::Accept,
            Err(r) => self.refusal(source, &r),
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .inner()
            .report_message_validation_result(&id, &source, acceptance);
    }

    /// How gossipsub treats the peer that forwarded a refused message (alert or voice).
    fn refusal(&self, source: PeerId, r: &crate::node::Rejection) -> gossipsub::MessageAcceptance {
        tracing::debug!(peer = %source, reason = r.reason(), error = %r, "message refused");
        // A sender over its rate limit: its own connection is penalised (scored down, then
        // graylisted by gossipsub); a member that relayed it is not.
        let flooder = match r {
            crate::node::Rejection::RateLimited { sender, .. } => self
                .node
                .member(*sender)
                .is_some_and(|c| c.peer_id() == source),
            _ => false,
        };
        if r.is_peer_fault() || flooder {
            gossipsub::MessageAcceptance::Reject
        } else {
            gossipsub::MessageAcceptance::Ignore
        }
    }

    /// Validates an envelope from the network (gossip or catch-up); when accepted, stores it
    /// and shows it to listeners if this node can read it. Each (sender, seq) is accepted
    /// once, whichever way it comes.
    fn take_envelope(
        &mut self,
        bytes: Vec<u8>,
        via: Via,
        topic_channel: Option<u32>,
    ) -> Result<(), crate::node::Rejection> {
        // The store and the unread queue keep the instant the sender's certificate was judged
        // at, because reopening the envelope later judges it at that time again (control.md).
        // The live alert is stamped when it is accepted: verified, checked against replay and
        // opened. The benchmark's latency runs to that stamp.
        let now = now_us();
        match self.node.validate_on(&bytes, topic_channel, now) {
            Verdict::Accept { envelope, content } => {
                let h = envelope.header;
                let bytes_for_unread = if matches!(content, Err(Unreadable::UnknownEpoch { .. })) {
                    bytes.clone()
                } else {
                    Vec::new()
                };
                self.store.put(StoredEnvelope {
                    sender: h.sender,
                    seq: h.seq,
                    channel: h.channel,
                    received_at_us: now,
                    bytes,
                });
                match content {
                    Ok(mut a) => {
                        a.via = via;
                        a.received_at_us = now_us();
                        a.late = crate::alert::is_late(a.created_at_us, a.received_at_us);
                        self.apply_rules(&a);
                        tracing::debug!(id = %a.id, sender = %a.sender, ?via, late = a.late, "alert received");
                        self.deliver(a);
                    }
                    Err(Unreadable::UnknownEpoch { .. }) => {
                        // Probably sealed under an epoch whose update has not reached this
                        // node yet: open it when the update comes.
                        if self.unread.len() >= MAX_UNREAD {
                            self.unread.pop_front();
                        }
                        self.unread.push_back((bytes_for_unread, now));
                    }
                    Err(_) => {}
                }
                Ok(())
            }
            Verdict::Reject(r) => Err(r),
        }
    }

    /// Hands an opened alert to the listeners (and counts its latency).
    fn deliver(&self, a: Box<ReceivedAlert>) {
        if let Some(m) = &self.metrics {
            m.delivered(a.created_at_us, a.received_at_us);
        }
        let _ = self.alerts.send(Arc::from(a));
    }

    /// Carries out the rules an alert matches, each in a task of its own.
    fn apply_rules(&self, a: &ReceivedAlert) {
        let now = now_us();
        for (rule, value) in self.rules.matching(a, now) {
            self.actions.matched.fetch_add(1, Ordering::Relaxed);
            tracing::info!(rule = %rule.name, alert = %a.id, "rule matched");
            if !rule.run.is_empty() {
                if self.actions.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_HOOK_QUEUE {
                    self.actions.waiting.fetch_sub(1, Ordering::Relaxed);
                    self.actions.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %rule.name, "hook skipped: {MAX_HOOK_QUEUE} runs already wait");
                } else {
                    tokio::spawn(run_hook(rule.clone(), a.clone(), self.actions.clone()));
                }
            }
            if let Some(send) = &rule.send {
                let body = AlertBody {
                    severity: send.severity.unwrap_or(a.severity),
                    kind: send.kind.clone(),
                    text: send.render(a, value),
                    location: None,
                    attributes: vec![
                        ("rule".into(), rule.name.clone()),
                        ("trigger".into(), a.id.clone()),
                    ],
                };
                let (cmds, store, to) = (self.cmd_tx.clone(), self.store.clone(), send.to.clone());
                let (actions, name) = (self.actions.clone(), rule.name.clone());
                tokio::spawn(async move {
                    match send_direct(&cmds, &store, to.clone(), body).await {
                        Ok(_) => {
                            actions.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            actions.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(rule = %name, %to, error = %e, "rule could not send");
                        }
                    }
                });
            }
        }
    }

    /// Takes an envelope fetched by catch-up. One refused for good after its signature
    /// verified (it does not open, or is older than the replay floor) is remembered, so later
    /// sessions do not fetch it again; nothing unverified is remembered, and an unknown
    /// sender is not final (its certificate may still arrive).
    fn ingest(&mut self, bytes: Vec<u8>) -> bool {
        use crate::node::Rejection;
        let header = crate::envelope::Envelope::parse(&bytes)
            .ok()
            .map(|e| e.header);
        let carried = header.is_some_and(|h| self.node.carried_channels().contains(&h.channel));
        if !carried {
            return false;
        }
        match self.take_envelope(bytes, Via::CatchUp, None) {
            Ok(()) => true,
            Err(r) => {
                tracing::debug!(reason = r.reason(), error = %r, "fetched envelope refused");
                let settled = matches!(
                    r,
                    Rejection::Envelope(crate::envelope::EnvelopeError::Decrypt)
                        | Rejection::BadPlaintext
                        | Rejection::Replay(ReplayError::TooOld)
                        | Rejection::Revoked(_)
                );
                if let (true, Some(h)) = (settled, header) {
                    self.remember_refused((h.sender, h.seq));
                }
                false
            }
        }
    }

    fn remember_refused(&mut self, id: Id) {
        if self.refused_ids.len() >= MAX_REFUSED_IDS {
            // Forget everything rather than grow: at worst some are fetched once more.
            self.refused_ids.clear();
        }
        self.refused_ids.insert(id);
    }

    /// Starts a catch-up session with `peer` unless one is running.
    fn start_sync(&mut self, peer: PeerId) {
        if !self.syncing.insert(peer) {
            return;
        }
        self.catch_up.sessions += 1;
        let cutoff = now_us().saturating_sub(self.retention.max_age_us);
        tokio::spawn(sync_session(
            peer,
            cutoff,
            self.node.carried_channels(),
            self.store.clone(),
            self.cmd_tx.clone(),
        ));
    }

    /// Serves a catch-up request from `peer` (members only) without blocking the loop.
    fn on_sync_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: request_response::ResponseChannel<SyncResponse>,
    ) {
        let grants: Option<Vec<u32>> = self
            .peers
            .get(&peer)
            .filter(|p| p.authenticated)
            .and_then(|p| p.cert.as_ref())
            .map(|c| {
                std::iter::once(crate::node::DIRECT_CHANNEL)
                    .chain(c.body.grants.iter().map(|g| g.channel))
                    .collect()
            });
        let Some(grants) = grants else {
            let refused = SyncResponse::Refused {
                reason: "not authenticated".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, refused);
            return;
        };
        // Only channels both carry and the requester's certificate grants.
        let mine = self.node.carried_channels();
        self.catch_up.served += 1;
        let (store, tx) = (self.store.clone(), self.cmd_tx.clone());
        tokio::spawn(async move {
            let response = match request {
                SyncRequest::Digest {
                    cutoff,
                    channels,
                    after,
                    buckets,
                } => {
                    let mut channels: Vec<u32> = channels
                        .into_iter()
                        .filter(|c| grants.contains(c) && mine.contains(c))
                        .collect();
                    channels.sort_unstable();
                    channels.dedup();
                    let q = crate::store::DiffQuery {
                        theirs: buckets,
                        cutoff,
                        channels,
                        after,
                        limit: crate::sync::MAX_DIFF_IDS,
                    };
                    store.diff(q).await.map(SyncResponse::Diff)
                }
                SyncRequest::Fetch { ids } => {
                    let ids: Vec<Id> = ids.into_iter().take(crate::sync::MAX_FETCH_IDS).collect();
                    store.get(ids, net::SYNC_FETCH_BYTES).await.map(|envs| {
                        SyncResponse::Envelopes {
                            envelopes: envs
                                .into_iter()
                                .filter(|e| {
                                    grants.contains(&e.channel) && mine.contains(&e.channel)
                                })
                                .map(|e| e.bytes)
                                .collect(),
                        }
                    })
                }
            };
            let response = response.unwrap_or_else(|e| SyncResponse::Refused {
                reason: e.to_string(),
            });
            let _ = tx.send(Cmd::SyncRespond { channel, response }).await;
        });
    }
}

/// Text from a peer, cut to `max` characters and stripped of control characters, so it can be
/// kept, logged and printed safely.
fn sanitize(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn is_circuit(a: &Multiaddr) -> bool {
    a.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

/// The address without its /p2p/… parts.
fn strip_p2p(a: Multiaddr) -> Multiaddr {
    a.into_iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn is_loopback(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// One catch-up session: pull from `peer` everything this node lacks (digest → diff → fetch,
/// repeated while the diff says there is more), validating each envelope like a gossiped one.
async fn sync_session(
    peer: PeerId,
    cutoff: u64,
    channels: Vec<u32>,
    store: StoreHandle,
    cmds: mpsc::Sender<Cmd>,
) {
    let result = pull_from(peer, cutoff, channels, &store, &cmds).await;
    let (fetched, error) = match result {
        Ok(n) => (n, None),
        Err((n, e)) => (n, Some(e)),
    };
    let _ = cmds
        .send(Cmd::SyncDone {
            peer,
            fetched,
            error,
        })
        .await;
}

async fn sync_request(
    cmds: &mpsc::Sender<Cmd>,
    peer: PeerId,
    request: SyncRequest,
) -> Result<SyncResponse, String> {
    let (tx, rx) = oneshot::channel();
    cmds.send(Cmd::SyncSend {
        peer,
        request,
        reply: tx,
    })
    .await
    .map_err(|_| "daemon stopping".to_string())?;
    match rx.await.map_err(|_| "daemon stopping".to_string())?? {
        SyncResponse::Refused { reason } => Err(format!("refused: {reason}")),
        r => Ok(r),
    }
}

async fn pull_from(
    peer: PeerId,
    cutoff: u64,
    channels: Vec<u32>,
    store: &StoreHandle,
    cmds: &mpsc::Sender<Cmd>,
) -> Result<usize, (usize, String)> {
    let mut fetched = 0;
    let mut after: Option<crate::sync::Key> = None;
    // Bounded: each round moves `after` forward; a peer cannot keep us here forever.
    for _ in 0..1000 {
        let buckets = store
            .digest(cutoff, channels.clone())
            .await
            .map_err(|e| (fetched, e.to_string()))?;
        let request = SyncRequest::Digest {
            cutoff,
            channels: channels.clone(),
            after,
            buckets,
        };
        let diff = match sync_request(cmds, peer, request)
            .await
            .map_err(|e| (fetched, e))?
        {
            SyncResponse::Diff(d) => d,
            other => return Err((fetched, format!("unexpected reply {other:?}"))),
        };
        if diff.keys.len() > crate::sync::MAX_DIFF_IDS
            || (after.is_some() && !diff.keys.is_empty() && diff.keys.last().copied() <= after)
        {
            return Err((fetched, "diff out of bounds or not advancing".into()));
        }
        if diff.keys.is_empty() {
            break;
        }
        after = diff.keys.last().copied();
        let missing = store
            .missing(diff.keys)
            .await
            .map_err(|e| (fetched, e.to_string()))?;
        // Ids this node refused for good after verifying them (do not open, too old) are not
        // fetched again.
        let (tx, rx) = oneshot::channel();
        cmds.send(Cmd::NotRefused {
            ids: missing,
            reply: tx,
        })
        .await
        .map_err(|_| (fetched, "daemon stopping".to_string()))?;
        let missing = rx.await.unwrap_or_default();
        for chunk in missing.chunks(crate::sync::MAX_FETCH_IDS) {
            let mut want: Vec<Id> = chunk.to_vec();
            // A responder sends what fits in its byte budget; ask again for the rest, and
            // give up on what it no longer holds.
            while !want.is_empty() {
                let envelopes =
                    match sync_request(cmds, peer, SyncRequest::Fetch { ids: want.clone() })
                        .await
                        .map_err(|e| (fetched, e))?
                    {
                        SyncResponse::Envelopes { envelopes } => envelopes,
                        other => return Err((fetched, format!("unexpected reply {other:?}"))),
                    };
                if envelopes.is_empty() {
                    break;
                }
                let got: std::collections::HashSet<Id> = envelopes
                    .iter()
                    .filter_map(|e| crate::envelope::Envelope::parse(e).ok())
                    .map(|e| (e.header.sender, e.header.seq))
                    .collect();
                let (tx, rx) = oneshot::channel();
                cmds.send(Cmd::Ingest {
                    envelopes,
                    reply: tx,
                })
                .await
                .map_err(|_| (fetched, "daemon stopping".to_string()))?;
                fetched += rx.await.unwrap_or(0);
                let before = want.len();
                want.retain(|id| !got.contains(id));
                if want.len() == before {
                    break;
                }
            }
        }
        if !diff.more {
            break;
        }
    }
    Ok(fetched)
}

async fn accept_loop(
    listener: UnixListener,
    cmds: mpsc::Sender<Cmd>,
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

async fn write_reply(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Reply) -> std::io::Result<()> {
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

async fn serve_client(
    stream: UnixStream,
    cmds: mpsc::Sender<Cmd>,
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
    type Pending<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Reply, String>> + Send + 'a>>;
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
                let reply = reply.unwrap_or_else(|message| Reply::Error { message });
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
            }) => {
                let body = AlertBody {
                    severity,
                    kind,
                    text,
                    location,
                    attributes,
                };
                pending_bytes += line.len();
                // Sealed here, in request order (so sequence numbers ascend with the
                // requests); stored and published concurrently.
                match seal_alert(&cmds, channel, body).await {
                    Ok(sealed) => {
                        pending.push_back(Box::pin(store_and_publish(&cmds, &store, sealed)))
                    }
                    Err(e) => {
                        pending.push_back(Box::pin(std::future::ready(Err::<Reply, String>(e))))
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
            Request::Frame { .. } | Request::Release => {
                Err("not talking: send `talk` first and wait for `floor_granted`".to_string())
            }
            // Taken above, pipelined.
            Request::Alert { .. } => continue,
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
                };
                send_direct(&cmds, &store, to, body).await
            }
            Request::Peers => {
                let (tx, rx) = oneshot::channel();
                ask(&cmds, Cmd::Peers { reply: tx }, rx)
                    .await
                    .map(|peers| Reply::Peers { peers })
            }
            Request::Connect { tag } => match crate::tag::DeviceTag::parse(&tag) {
                Err(e) => Err(e.to_string()),
                Ok(tag) => {
                    let (tx, rx) = oneshot::channel();
                    match ask(&cmds, Cmd::Connect { tag, reply: tx }, rx).await {
                        Ok(r) => r,
                        Err(e) => Err(e),
                    }
                }
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
                let (tx, rx) = oneshot::channel();
                match ask(&cmds, Cmd::Profile { change, reply: tx }, rx).await {
                    Ok(Ok(profile)) => Ok(Reply::Profile { profile }),
                    Ok(Err(e)) | Err(e) => Err(e),
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
                let (tx, rx) = oneshot::channel();
                ask(&cmds, Cmd::Search { q, reply: tx }, rx)
                    .await
                    .map(|devices| Reply::Devices { devices })
            }
            Request::Publish { update } => match hex::decode(update.trim()) {
                Err(e) => Err(format!("the update is not hex: {e}")),
                Ok(bytes) => {
                    let (tx, rx) = oneshot::channel();
                    ask(&cmds, Cmd::Update { bytes, reply: tx }, rx)
                        .await
                        .and_then(|r| r)
                }
            },
            Request::History {
                since_us,
                channel,
                limit,
            } => history(&mut w, &cmds, &store, since_us.unwrap_or(0), channel, limit).await,
            Request::Status => full_status(&cmds, &store)
                .await
                .map(|s| Reply::Status(Box::new(s))),
        };
        let reply = reply.unwrap_or_else(|message| Reply::Error { message });
        if write_reply(&mut w, &reply).await.is_err() {
            return;
        }
    }
}

/// Removes `path` if it is there and of the kind `is` accepts (never another kind of file).
fn remove_if(path: &Path, is: impl Fn(&std::fs::FileType) -> bool) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| is(&m.file_type())) {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds the control socket at `path` (mode 0600, or 0660 for the service's group), creating
/// its directory if missing. A stale socket there is replaced; any other file is an error, never
/// removed. When the socket is not `DATA/control.sock`, a symbolic link there points at it, so
/// `--data DATA` reaches the daemon wherever its socket is; the link is returned.
fn bind_control_socket(
    path: &Path,
    group: bool,
    data: &Path,
) -> Result<(UnixListener, Option<PathBuf>), DaemonError> {
    use std::os::unix::fs::FileTypeExt as _;
    let err = |p: &Path, e: std::io::Error| DaemonError::Socket {
        path: p.to_path_buf(),
        source: e,
    };
    match std::fs::symlink_metadata(path) {
        // A stale socket, or the link an earlier run as a service left in its data directory.
        Ok(m) if m.file_type().is_socket() || m.file_type().is_symlink() => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(err(
                path,
                std::io::Error::other(
                    "exists and is not a socket; refusing to replace it (choose another --socket)",
                ),
            ));
        }
        Err(_) => {}
    }
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
        std::fs::set_permissions(
            parent,
            std::os::unix::fs::PermissionsExt::from_mode(if group { 0o750 } else { 0o700 }),
        )
        .map_err(|e| err(parent, e))?;
    }
    let mode = if group { 0o660 } else { 0o600 };
    // The socket is created with its final mode: no moment when others may connect.
    // SAFETY: umask only changes this process's file creation mask; it is restored at once.
    let old = unsafe { libc::umask(0o777 & !mode) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| err(path, e))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(|e| err(path, e))?;
    let link = control::socket_path(data);
    if link == path {
        return Ok((listener, None));
    }
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() || m.file_type().is_socket() => {
            let _ = std::fs::remove_file(&link);
        }
        Ok(_) => {
            tracing::warn!(path = %link.display(), "not a socket or link: left alone; --data will not reach this daemon");
            return Ok((listener, None));
        }
        Err(_) => {}
    }
    match std::os::unix::fs::symlink(path, &link) {
        Ok(()) => Ok((listener, Some(link))),
        Err(e) => {
            tracing::warn!(path = %link.display(), error = %e, "cannot link the control socket into the data directory");
            Ok((listener, None))
        }
    }
}

/// The daemon's status with the log's figures.
async fn full_status(cmds: &mpsc::Sender<Cmd>, store: &StoreHandle) -> Result<StatusInfo, String> {
    let (tx, rx) = oneshot::channel();
    let mut s = ask(cmds, Cmd::Status { reply: tx }, rx).await?;
    if let Ok((envelopes, bytes)) = store.stats().await {
        s.store = control::StoreInfo {
            envelopes,
            bytes,
            dropped: store.dropped(),
        };
    }
    Ok(s)
}

/// Streams stored alerts this device can read (oldest first, at most `limit` after the
/// channel filter) as `alert` lines, then `history_end`.
async fn history(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    cmds: &mpsc::Sender<Cmd>,
    store: &StoreHandle,
    since_us: u64,
    channel: Option<String>,
    limit: usize,
) -> Result<Reply, String> {
    const PAGE: usize = 1000;
    let mut since = since_us;
    let mut seen: std::collections::HashSet<Id> = std::collections::HashSet::new();
    let mut count = 0;
    while count < limit {
        let envelopes = store
            .envelopes(since, PAGE)
            .await
            .map_err(|e| e.to_string())?;
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
        let (tx, rx) = oneshot::channel();
        let open = Cmd::Open {
            envelopes: fresh,
            channel: channel.clone(),
            reply: tx,
        };
        for a in ask(cmds, open, rx).await? {
            if count >= limit {
                break;
            }
            write_reply(w, &Reply::Alert(Arc::new(a)))
                .await
                .map_err(|e| e.to_string())?;
            count += 1;
        }
        if last_page {
            break;
        }
        since = newest;
    }
    Ok(Reply::HistoryEnd { count })
}

async fn ask<T>(cmds: &mpsc::Sender<Cmd>, cmd: Cmd, rx: oneshot::Receiver<T>) -> Result<T, String> {
    cmds.send(cmd)
        .await
        .map_err(|_| "the daemon is shutting down".to_string())?;
    rx.await
        .map_err(|_| "the daemon is shutting down".to_string())
}

/// Seals a directed message for one device, then [`store_and_publish`].
async fn send_direct(
    cmds: &mpsc::Sender<Cmd>,
    store: &StoreHandle,
    to: String,
    body: AlertBody,
) -> Result<Reply, String> {
    let (tx, rx) = oneshot::channel();
    let sealed = ask(
        cmds,
        Cmd::SealDirect {
            to,
            body,
            reply: tx,
        },
        rx,
    )
    .await??;
    store_and_publish(cmds, store, sealed).await
}

/// Seals an alert for a channel (then [`store_and_publish`]; `serve_client` pipelines the
/// second half).
async fn seal_alert(
    cmds: &mpsc::Sender<Cmd>,
    channel: String,
    body: AlertBody,
) -> Result<crate::node::Sealed, String> {
    let (tx, rx) = oneshot::channel();
    ask(
        cmds,
        Cmd::Seal {
            channel,
            body,
            reply: tx,
        },
        rx,
    )
    .await?
}

/// Publishes a sealed alert or directed message once the sequence lease covers its seq, then
/// stores it durably; replies when it is in the log. The disk is not on the alert's path: the
/// lease is normally already on disk (see [`StoreHandle::cover_seq`]).
async fn store_and_publish(
    cmds: &mpsc::Sender<Cmd>,
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
    let (tx, rx) = oneshot::channel();
    let peers = ask(cmds, Cmd::Publish { sealed, reply: tx }, rx).await?;
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

async fn listen(
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
    use super::direct_ipv4;

    #[test]
    fn direct_ipv4_takes_direct_tcp_addresses_only() {
        let ip = |s: &str| direct_ipv4(&s.parse().unwrap());
        assert_eq!(
            ip("/ip4/10.0.0.7/tcp/4001/p2p/12D3KooWAe1AuNR6C8KnymD6Cd9BkgfAS88Up4LuLynrff7TBVxi"),
            Some([10, 0, 0, 7].into())
        );
        assert_eq!(ip("/ip4/10.0.0.7/udp/4001"), None);
        assert_eq!(ip("/ip6/::1/tcp/4001"), None);
        assert_eq!(
            ip(
                "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWAe1AuNR6C8KnymD6Cd9BkgfAS88Up4LuLynrff7TBVxi/p2p-circuit"
            ),
            None
        );
    }
}
