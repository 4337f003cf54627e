//! Start-up: loads the bundle and the data directory, builds the node, the store, the swarm
//! and the control socket, runs the event loop until shutdown and cleans up after it.
//!
//! Everything that may fail at start fails here, with a [`DaemonError`] naming the file or
//! address; nothing here runs once the loop has started.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use libp2p::{Multiaddr, PeerId};
use tokio::net::UnixStream;
use tokio::sync::broadcast;

use super::catchup::CatchUpCounters;
use super::handle::Handle;
use super::hooks::{ActionCounters, MAX_HOOKS};
use super::profile::PROFILE_FILE;
use super::server::accept_loop;
use super::socket::{bind_control_socket, remove_if};
use super::status::full_status;
use super::voice;
use super::{Daemon, DaemonError, LISTEN_BUFFER, RunConfig, now_us};
use crate::bundle::{Bundle, files};
use crate::fsutil::{self, FileError};
use crate::mesh::{HeldUpdates, Peers, PendingUpdates, Pushes, Quiet, Timer, TimerTable, Unread};
use crate::net;
use crate::node::{Node, NodeConfig};
use crate::store::{Store, StoreError, StoreHandle};
use crate::update::UpdateError;

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
    if cfg.no_receipts {
        tracing::warn!("sending no receipts (--no-receipts)");
    }
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
        // The overlap of a previous plane epoch runs from when its successor was applied,
        // which is when the update was stored (proto/keys.md, "Plane epochs").
        node.recall_update(&bytes, received.saturating_mul(1_000_000));
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
    node.expire_plane(now_us());
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
    // The newest of the log, read once for the receipts' ledger and the alerts' states: the
    // newest alerts, then the newest receipts (each newest first).
    let mut newest = store.newest(super::receipts::MAX_LEDGER)?;
    newest.extend(store.newest_receipts(super::receipts::MAX_REBUILD_RECEIPTS)?);
    let ledger = super::receipts::rebuild(&newest, &node);
    // The alerts opened once (decrypted, not verified again), oldest first, for the states,
    // the escalations and the emergencies.
    let logged: Vec<_> = newest
        .iter()
        .rev()
        .filter(|e| !crate::receipt::is_receipt_channel(e.channel))
        .filter_map(|e| node.logged_body(&e.bytes))
        .collect();
    let states = super::states::rebuild(&logged, &node);
    let escalations = super::escalate::rebuild(&logged, &node, &states);
    let emergencies = super::emergency::rebuild(&logged, &node, &states);
    drop(logged);
    drop(newest);
    let store = StoreHandle::spawn(store, own_device);

    let mut net_cfg = cfg.net.clone();
    net_cfg.domain = Some(*node.domain());
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
    let plane_listen = listen.clone();
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
    let (handle, cmd_rx) = Handle::channel(256);
    // Slots hold their alert until overwritten, so the capacity is also what a burst leaves
    // behind in memory (about 1 MiB of typical alerts; an alert's text may be up to 64 KiB);
    // a listener further behind gets `lagged`.
    let (alerts, _) = broadcast::channel(LISTEN_BUFFER);
    let accept = tokio::spawn(accept_loop(
        listener,
        handle.clone(),
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
            let (cmds, store) = (handle.clone(), store.clone());
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
        let cmds = handle.clone();
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
                        if cmds.reload_rules(r).await.is_err() {
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
    let local_peer_id = *swarm.local_peer_id();
    let (node_device, node_plane_epoch) = (node.cert().body.device, node.plane_epoch());
    let mut d = Daemon {
        swarm,
        node,
        store,
        alerts,
        peers: {
            let mut p = Peers::new(local_peer_id);
            p.set_max_peers(cfg.max_peers, crate::mesh::peer_position);
            p
        },
        certs: HashMap::new(),
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
        handle,
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
        pending_tags: Vec::new(),
        syncing: HashSet::new(),
        presence_dirty: true,
        profile_override,
        data: cfg.data.clone(),
        catch_up: CatchUpCounters::default(),
        pending_updates: PendingUpdates::default(),
        updates: HeldUpdates::new(held_updates),
        unread: Unread::default(),
        unread_receipts: Unread::default(),
        receipts_out: Default::default(),
        receipts_on: !cfg.no_receipts,
        ledger,
        states,
        escalations,
        backups: super::escalate::Escalations::bounded(super::escalate::MAX_BACKUPS),
        watchdog: super::watchdog::Watchdog::new(super::now_us()),
        emergencies,
        key_path,
        timers: {
            // The tick runs at once, as the interval it replaced did.
            let mut t = TimerTable::at_start(Instant::now());
            t.set(Timer::Tick, Instant::now());
            t
        },
        quiet: Quiet::new(Instant::now()),
        pushes: Pushes::default(),
        plane: None,
        evidence: super::evidence::EvidenceState::new(node_device, node_plane_epoch),
        probes: HashMap::new(),
    };
    if cfg.plane.enabled {
        d.plane = Some(super::plane::PlaneState::new(
            cfg.plane.clone(),
            plane_listen,
            d.node.domain(),
        ));
        d.plane_tick(Instant::now());
    }
    d.node.start_voice_at(now_us());
    d.sync_roster();
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

// The bundle only reads and checks files; turning it into a node's configuration is the
// daemon's start-up (the bundle module knows nothing of the node).
impl Bundle {
    /// Opens the sealed keys and hands everything to a node.
    pub fn into_node_config(self, dir: &Path) -> Result<NodeConfig, FileError> {
        let mut channel_secrets = vec![];
        for s in &self.sealed {
            let secret = s
                .open(
                    &self.descriptor.domain,
                    self.cert.body.device,
                    &self.secrets.x25519,
                )
                .map_err(|e| FileError::invalid(&dir.join(files::CHANNEL_KEYS), e))?;
            channel_secrets.push((s.body.channel, s.body.epoch, secret));
        }
        Ok(NodeConfig {
            secrets: self.secrets,
            cert: self.cert,
            descriptor: self.descriptor,
            channel_secrets,
        })
    }
}
