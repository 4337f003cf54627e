//! The multicast data plane in the daemon: seals each outgoing envelope into one datagram
//! per interface, opens what the plane's sockets hear, and hands the envelopes to the same
//! validation gossip uses (`Arrival::Multicast`).
//!
//! The datagram format and its checks are the core's ([`crate::plane`]); the sockets are
//! [`super::plane_io`]'s; the ring, tails and repair requests are [`super::repair`]'s; beacons
//! and reports are [`super::evidence`]'s. Gossipsub skips the peers that report hearing a
//! sender and forwards plane envelopes to the others (`forward_to_gossip`); `--plane-only`
//! (tests) sends no gossip copy at all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use rand_core::RngCore;

use super::Daemon;
use super::plane_io::{GroupAddrs, PlaneIface, PlaneSockets, choose_interfaces};
use crate::alert::Via;
use crate::config::PlaneSettings;
use crate::control::PlaneInfo;
use crate::node::Arrival;
use crate::plane::{self, KeyMatch, Kind, PlaneKeys};

/// How often the interfaces are read again.
const IFACE_EVERY: Duration = Duration::from_secs(10);
/// How often memberships are renewed (snooping switches without a querier forget them).
const REJOIN_EVERY: Duration = Duration::from_secs(60);
/// Datagrams taken per wake-up before the loop serves its other work.
const DRAIN: usize = 64;
/// The receive buffer: the largest UDP payload, so a longer datagram shows as truncated.
const BUF: usize = 1_500;
/// Datagrams of a plane epoch not held yet that are kept, at most, and for how long.
const HOLD_MAX: usize = 256;
const HOLD_FOR: Duration = Duration::from_secs(15);

/// The plane's state in the daemon.
pub(super) struct PlaneState {
    settings: PlaneSettings,
    listen: Vec<Multiaddr>,
    group: GroupAddrs,
    sockets: Option<PlaneSockets>,
    /// Why there are no sockets, when there are none.
    socket_error: Option<String>,
    /// The epochs `keys` holds, newest first (to notice a new epoch or an erased one).
    epochs: Vec<u32>,
    keys: PlaneKeys,
    /// This run's nonce prefix and datagram counter (XChaCha20 nonces never repeat).
    prefix: [u8; 16],
    counter: u64,
    /// This run's per-sender datagram counter (loss detection), from a random start.
    pseq: u32,
    buf: Vec<u8>,
    /// Repair: loss detection, the recent ring, requests outstanding, tails.
    pub(super) repair: super::repair::PlaneRepair,
    /// Datagrams under a plane epoch this node does not hold yet (its update is on the way),
    /// with when they came: opened when the epoch arrives, dropped after [`HOLD_FOR`].
    held: std::collections::VecDeque<(Instant, Vec<u8>)>,
    /// Failed signatures per sender named, and suspensions ([`plane::forgeries`]).
    forgeries: plane::forgeries::Forgeries,
    counters: PlaneCounters,
    last_iface_read: Instant,
    last_rejoin: Instant,
}

/// What the plane did, for `status`.
#[derive(Debug, Default, Clone)]
pub(super) struct PlaneCounters {
    /// Datagrams sealed and sent (once per datagram, whatever the number of interfaces).
    pub sent: u64,
    /// Copies the kernel refused (full buffer, interface down).
    pub send_failed: u64,
    /// Envelopes too large for one datagram (gossip only).
    pub too_large: u64,
    /// Datagrams received.
    pub received: u64,
    /// Envelopes from the plane that validation accepted.
    pub accepted: u64,
    /// Kept data datagrams (alerts, voice) of an epoch ahead that its key opened once the
    /// update arrived.
    pub reopened: u64,
    /// Datagrams dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
}

impl PlaneState {
    /// The plane of a domain, as `settings` configure it; sockets open at the first
    /// [`Daemon::plane_tick`] that finds an interface.
    pub(super) fn new(
        settings: PlaneSettings,
        listen: Vec<Multiaddr>,
        domain: &crate::keys::DomainId,
    ) -> Self {
        let g = plane::group_for(&domain.0);
        let group = GroupAddrs {
            v4: settings.group4.unwrap_or(g.v4),
            v6: settings.group6.unwrap_or(g.v6),
            port: settings.port.unwrap_or(g.port),
        };
        let mut prefix = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut prefix);
        let long_ago = Instant::now()
            .checked_sub(REJOIN_EVERY)
            .unwrap_or_else(Instant::now);
        PlaneState {
            settings,
            listen,
            group,
            sockets: None,
            socket_error: None,
            epochs: Vec::new(),
            keys: PlaneKeys::new(),
            prefix,
            counter: 0,
            pseq: rand_core::OsRng.next_u32(),
            buf: vec![0; BUF],
            repair: super::repair::PlaneRepair::default(),
            held: std::collections::VecDeque::new(),
            forgeries: Default::default(),
            counters: PlaneCounters::default(),
            last_iface_read: long_ago,
            last_rejoin: Instant::now(),
        }
    }

    fn drop_as(&mut self, reason: &'static str) {
        *self.counters.dropped.entry(reason).or_default() += 1;
    }

    /// Seals and sends a datagram that consumes no `pseq` (a beacon or a tail): `body` gets
    /// this run's last data `pseq`. False when nothing went out (no sockets, no key, or the
    /// body does not fit its kind). Counted in `sent` like every datagram.
    pub(super) fn send_unnumbered(
        &mut self,
        domain: &[u8; 32],
        sender: u32,
        kind: Kind,
        body: impl FnOnce(u32) -> Vec<u8>,
    ) -> bool {
        if !self.can_send() {
            return false;
        }
        let pseq = self.pseq;
        let body = body(pseq);
        self.seal_send(domain, kind, sender, pseq, &body)
    }

    /// Whether the plane can send now: sockets open and a key held.
    pub(super) fn can_send(&self) -> bool {
        self.sockets.is_some() && self.keys.newest().is_some()
    }

    /// Seals `body` as one datagram and sends it on every interface; false when there is no
    /// socket or key, or it does not seal.
    pub(super) fn seal_send(
        &mut self,
        domain: &[u8; 32],
        kind: Kind,
        sender: u32,
        pseq: u32,
        body: &[u8],
    ) -> bool {
        let Some(s) = &self.sockets else { return false };
        let Some((epoch, key)) = self.keys.newest() else {
            return false;
        };
        self.counter += 1;
        match plane::seal(
            key,
            epoch,
            domain,
            &self.prefix,
            self.counter,
            kind,
            sender,
            pseq,
            body,
        ) {
            Ok(d) => {
                let (_, failed) = s.send(&d);
                self.counters.sent += 1;
                self.counters.send_failed += u64::from(failed);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "plane: not sealed");
                self.counters.too_large += 1;
                false
            }
        }
    }

    /// The `pseq` of this node's last data datagram (tails carry it).
    pub(super) fn last_pseq(&self) -> u32 {
        self.pseq
    }

    /// Whether an alert on the plane skips gossip (`--plane-only`, testing only).
    pub(super) fn plane_only(&self) -> bool {
        self.settings.plane_only
    }

    /// Waits for a datagram (forever without sockets).
    pub(super) async fn readable(&self) {
        match &self.sockets {
            Some(s) => s.readable().await,
            None => std::future::pending().await,
        }
    }
}

impl Daemon {
    /// Sends a sealed envelope (`Alert`: an alert or a directed message; `Voice`: a voice
    /// packet) as one datagram per interface, when the plane is on, this node holds its key
    /// and the envelope fits; returns whether it went on the plane. An alert takes the next
    /// `pseq` (receivers notice its loss and ask for it); a voice packet carries the last one
    /// and is never repaired (a lost frame is concealed).
    pub(super) fn plane_send(&mut self, kind: Kind, envelope: &[u8]) -> bool {
        let sender = self.node.cert().body.device;
        let domain = self.node.domain().0;
        let Some(p) = self.plane.as_mut() else {
            return false;
        };
        if !p.can_send() {
            return false;
        }
        if envelope.len() > plane::PLANE_MAX_BODY {
            p.counters.too_large += 1;
            return false;
        }
        if kind == Kind::Voice {
            let pseq = p.pseq;
            return p.seal_send(&domain, kind, sender, pseq, envelope);
        }
        let pseq = p.pseq.wrapping_add(1);
        if !p.seal_send(&domain, kind, sender, pseq, envelope) {
            return false;
        }
        p.pseq = pseq;
        self.plane_sent(sender, pseq, envelope);
        true
    }

    /// Takes what the plane's sockets hold, at most [`DRAIN`] datagrams.
    pub(super) fn on_plane_readable(&mut self) {
        let Some(p) = self.plane.as_mut() else { return };
        let mut buf = std::mem::take(&mut p.buf);
        for _ in 0..DRAIN {
            let Some(p) = self.plane.as_mut() else { break };
            let Some((n, _from)) = p.sockets.as_ref().and_then(|s| s.try_recv(&mut buf)) else {
                break;
            };
            p.counters.received += 1;
            self.on_datagram(&mut buf[..n]);
        }
        if let Some(p) = self.plane.as_mut() {
            p.buf = buf;
        }
    }

    /// Handles one datagram; whether it was data (an alert or voice) that a held plane key
    /// opened, whatever validation made of its envelope then.
    fn on_datagram(&mut self, d: &mut [u8]) -> bool {
        let own = self.node.cert().body.device;
        let domain = self.node.domain().0;
        let Some(p) = self.plane.as_mut() else {
            return false;
        };
        let key_id = match plane::peek(d) {
            Ok(k) => k,
            Err(e) => {
                p.drop_as(e.reason());
                return false;
            }
        };
        match p.keys.classify(key_id) {
            KeyMatch::Held(_) => {}
            KeyMatch::Ahead => {
                // Sealed under an epoch whose update has not reached this node yet.
                if p.held.len() >= HOLD_MAX {
                    p.held.pop_front();
                    p.drop_as("plane_key_ahead_dropped");
                }
                p.held.push_back((Instant::now(), d.to_vec()));
                p.drop_as("plane_key_ahead");
                return false;
            }
            KeyMatch::Unknown => {
                p.drop_as("plane_unknown_key");
                return false;
            }
        }
        let inner = match p.keys.open(&domain, d) {
            Ok((_, inner)) => inner,
            Err(e) => {
                p.drop_as(e.reason());
                return false;
            }
        };
        if inner.sender == own {
            p.drop_as("plane_own");
            return false;
        }
        let voice = match inner.kind {
            Kind::Alert => false,
            Kind::Voice => true,
            Kind::Beacon => {
                self.on_beacon(inner.sender, inner.pseq, inner.body);
                return false;
            }
            Kind::Tail => {
                self.plane_tail_heard(inner.sender, inner.pseq);
                return false;
            }
        };
        let header = match crate::envelope::Envelope::parse(inner.body) {
            Ok(e) => e.header,
            Err(_) => {
                p.drop_as("plane_malformed");
                return true;
            }
        };
        if header.sender != inner.sender {
            p.drop_as("plane_mismatch");
            return true;
        }
        let carried = if voice {
            self.voice.topics.values().any(|c| *c == header.channel)
        } else {
            // A receipt rides with the alerts of its channel.
            let base = crate::receipt::base_channel(header.channel);
            self.topics.values().any(|c| *c == base)
        };
        if !carried {
            p.drop_as("plane_not_carried");
            return true;
        }
        let (sender, pseq) = (inner.sender, inner.pseq);
        let now = super::now_us();
        if p.forgeries.is_suspended(sender, now) {
            // Forgeries in this sender's name came by the plane: its datagrams go unverified
            // for a while, and its messages come by gossip meanwhile.
            p.drop_as("plane_sender_suspended");
            return true;
        }
        let body = inner.body.to_vec();
        let taken = if voice {
            self.take_voice(&body, Arrival::Multicast)
        } else {
            self.take_envelope(body.clone(), Via::Multicast, Arrival::Multicast)
        };
        if let Err(crate::node::Rejection::Envelope(crate::envelope::EnvelopeError::BadSignature)) =
            taken
            && let Some(p) = self.plane.as_mut()
            && p.forgeries.failed(sender, now)
        {
            tracing::warn!(
                sender,
                "plane: forgeries in this sender's name; its datagrams go unverified for 30 s"
            );
            self.evidence_suspect(sender);
        }
        if let Err(crate::node::Rejection::RateLimited { .. }) = taken
            && !voice
        {
            self.plane_rate_limited(sender, pseq);
        }
        if taken.is_ok()
            && let Some(p) = self.plane.as_mut()
        {
            p.counters.accepted += 1;
            if !voice {
                // Voice packets carry the last data pseq: no loss detection, no repair.
                self.plane_accepted(sender, pseq, &body);
                self.evidence_on_data(sender, pseq);
            }
            self.forward_to_gossip(voice, header.channel, body);
        }
        true
    }

    /// The plane's periodic duties: keys after an update or an overlap's end (the retention
    /// pass erases an old epoch), interfaces every 10 s, memberships every 60 s.
    pub(super) fn plane_tick(&mut self, now: Instant) {
        self.plane_keys(now);
        self.plane_interfaces(now);
    }

    /// Takes the plane keys the node holds now; opens what waited for a new epoch.
    pub(super) fn plane_keys(&mut self, now: Instant) {
        let secrets = self.node.plane_secrets();
        let domain = self.node.domain().0;
        let Some(p) = self.plane.as_mut() else { return };
        let epochs: Vec<u32> = secrets.iter().map(|(e, _)| *e).collect();
        let mut reopen = Vec::new();
        if epochs != p.epochs {
            let mut keys = PlaneKeys::new();
            for (e, s) in &secrets {
                keys.insert(*e, crate::keys::plane_key(&domain, *e, s));
            }
            p.keys = keys;
            tracing::info!(epochs = ?epochs, "plane: keys");
            p.epochs = epochs;
            reopen = std::mem::take(&mut p.held)
                .into_iter()
                .filter(|(at, _)| now.duration_since(*at) <= HOLD_FOR)
                .map(|(_, d)| d)
                .collect();
        }
        while p
            .held
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > HOLD_FOR)
        {
            p.held.pop_front();
            p.drop_as("plane_key_ahead_dropped");
        }
        for mut d in reopen {
            if self.on_datagram(&mut d)
                && let Some(p) = self.plane.as_mut()
            {
                p.counters.reopened += 1;
            }
        }
    }

    /// Re-reads the interfaces (every 10 s) and renews memberships (every 60 s).
    fn plane_interfaces(&mut self, now: Instant) {
        let Some(p) = self.plane.as_mut() else { return };
        if now.duration_since(p.last_iface_read) < IFACE_EVERY {
            return;
        }
        p.last_iface_read = now;
        let rejoin = now.duration_since(p.last_rejoin) >= REJOIN_EVERY;
        if rejoin {
            p.last_rejoin = now;
        }
        let host = match if_addrs::get_if_addrs() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "plane: cannot read the interfaces");
                return;
            }
        };
        let ifaces = choose_interfaces(&host, &p.listen, &p.settings.interfaces);
        let r = match &mut p.sockets {
            Some(s) => s.refresh(ifaces, rejoin).map(|_| ()),
            None if ifaces.is_empty() => Ok(()),
            None => PlaneSockets::open(p.group, ifaces).map(|s| p.sockets = Some(s)),
        };
        match r {
            Ok(()) => p.socket_error = None,
            Err(e) => {
                if p.socket_error.is_none() {
                    tracing::warn!(error = %e, "plane: cannot open its sockets; gossip only");
                }
                p.socket_error = Some(e.to_string());
                p.sockets = None;
            }
        }
    }

    /// The plane's part of `status`.
    pub(super) fn plane_status(&self) -> PlaneInfo {
        let epoch = self.node.plane_epoch();
        let Some(p) = &self.plane else {
            return PlaneInfo {
                state: "off".into(),
                epoch,
                ..PlaneInfo::default()
            };
        };
        let ifaces: &[PlaneIface] = p.sockets.as_ref().map_or(&[], |s| s.interfaces());
        let state = if epoch.is_none() {
            "no_key"
        } else if p.socket_error.is_some() {
            "socket_error"
        } else if ifaces.is_empty() {
            "no_interface"
        } else {
            "active"
        };
        let c = &p.counters;
        PlaneInfo {
            state: state.into(),
            epoch,
            group4: p.group.v4.to_string(),
            group6: p.group.v6.to_string(),
            port: p.group.port,
            interfaces: ifaces.iter().map(|i| i.name.clone()).collect(),
            recv_buffer: p.sockets.as_ref().map_or(0, |s| s.recv_buffer as u64),
            sent: c.sent,
            send_failed: c.send_failed,
            too_large: c.too_large,
            received: c.received,
            accepted: c.accepted,
            reopened: c.reopened,
            dropped: c
                .dropped
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            error: p.socket_error.clone(),
            ..p.repair.info()
        }
    }
}

impl Daemon {
    /// Hands an envelope accepted from the plane (or a repair) to gossipsub: its id goes into
    /// the duplicate cache, so a later gossip copy stops there unvalidated, and it is forwarded
    /// to the mesh peers that do not hear its sender on the plane (another segment, a broker,
    /// a filtering access point).
    pub(super) fn forward_to_gossip(&mut self, voice: bool, channel: u32, envelope: Vec<u8>) {
        if self.plane.as_ref().is_some_and(PlaneState::plane_only) {
            // Testing repair alone: no gossip copy at all.
            return;
        }
        let topic = if voice {
            crate::net::voice_topic(self.node.domain(), channel)
        } else {
            // A receipt travels on the topic of the channel it reports.
            crate::net::topic(self.node.domain(), crate::receipt::base_channel(channel))
        };
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .forward_external(topic.hash(), envelope)
        {
            // A duplicate: gossip brought it first, or it was already forwarded.
            tracing::trace!(error = %e, "plane envelope not forwarded");
        }
    }
}
