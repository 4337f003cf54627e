//! The libp2p network: TCP + Noise + Yamux, mDNS discovery, identify, ping, the domain
//! authentication protocol, and gossipsub behind a [`gate::Gate`] that opens only for
//! authenticated members.
//!
//! This module builds the swarm and defines the authentication protocol's messages and codec;
//! the daemon's event loop drives it and asks the node for every decision.

pub mod admission;
pub mod gate;

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::Transport as _;
use libp2p::{
    PeerId, StreamProtocol, allow_block_list, dcutr, gossipsub, identify, identity, mdns, noise,
    ping, relay, request_response, tcp, yamux,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::keys::DomainId;
use crate::plane::repair::{
    MAX_REPAIR_REQUEST, MAX_REPAIR_RESPONSE, RepairRequest, RepairResponse,
};
use crate::sync::{self, BucketSummary, Diff, Id, Key};
use crate::wire::{self, MAX_CERT_LEN, MAX_ENVELOPE_LEN};

/// The authentication protocol: hellos only, the one protocol a peer may use before it is
/// authenticated, with frames of a hello's size (`/ptt-node/auth/1` also carried the pushes).
pub const AUTH_PROTOCOL: StreamProtocol = StreamProtocol::new("/ptt-node/auth/2");
/// The push protocol: roster, presence, update and heard pushes between authenticated members,
/// gated like gossipsub (a peer's streams are not read before it is authenticated).
pub const PUSH_PROTOCOL: StreamProtocol = StreamProtocol::new("/ptt-node/push/1");
/// Identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/ptt-node/1";
/// How often a connection is pinged: a slow backstop, for a connection that died silently
/// while the plane still carries its peer's beacons (a send on it fails at once anyway). Every
/// ping costs its connection about 1 kB with the echo, the window updates and the ACKs, both
/// ways: at 10 s that was 85 % of an idle domain's TCP traffic and at 30 nodes about 220 B of
/// every voice frame; at 60 s, with the connections of a domain started together pinging in
/// step, still about 70 B of a voice frame in a 35 s window (docs/performance.md).
/// Liveness comes from evidence instead (`daemon/liveness.rs`): a member heard from (beacons
/// every 5 s on the plane, gossip, requests) is alive, and one quiet for 15 s is probed; a frozen
/// peer is dropped about 26 s after it last spoke, a crashed one at once (its kernel resets the
/// connection).
pub const PING_INTERVAL: Duration = Duration::from_secs(300);
/// How long a ping may take. libp2p's ping handler keeps the first failure to itself and
/// reports the second in a row; the daemon closes the connection on that report.
pub const PING_TIMEOUT: Duration = Duration::from_secs(4);
/// The catch-up protocol.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/ptt-node/sync/1");
/// Largest catch-up request (a digest of [`sync::MAX_DIGEST_BUCKETS`] buckets).
pub const MAX_SYNC_REQUEST: usize = sync::MAX_DIGEST_BUCKETS * 30 + 1024;
/// Envelope bytes a fetch response carries at most (one envelope always fits).
pub const SYNC_FETCH_BYTES: usize = 1024 * 1024;
/// Largest catch-up response.
pub const MAX_SYNC_RESPONSE: usize = SYNC_FETCH_BYTES + MAX_ENVELOPE_LEN + 64 * 1024 + 8192 * 16;
/// The plane's repair protocol (`proto/plane.md`, "Repair").
pub const REPAIR_PROTOCOL: StreamProtocol = StreamProtocol::new("/ptt-node/repair/1");
/// How long a repair request may take: past it, the requester asks another peer.
pub const REPAIR_TIMEOUT: Duration = Duration::from_secs(1);
/// Certificates or presence records in one flooded push at most (a longer batch goes in
/// several pushes). The roster shared with a newly authenticated peer goes in one push of up to
/// [`MAX_ROSTER_SHARE`].
pub const MAX_ROSTER_PUSH: usize = 64;
/// Largest authentication request: a hello (its certificate, the domain id, a revision). Any
/// peer that completed Noise may send one, at most [`MAX_CONCURRENT_STREAMS`] at once per
/// connection.
pub const MAX_HELLO_REQUEST: usize = MAX_CERT_LEN + 128;
/// Largest authentication response: a `Welcome` (the responder's certificate; its roster is
/// empty on `/ptt-node/auth/2`) or a `Refused` reason. Read from any peer this node sent a hello
/// to, which is every peer that connects.
pub const MAX_HELLO_RESPONSE: usize = MAX_CERT_LEN + 1024;
/// Largest push request: one domain update (bounded by [`crate::update::MAX_UPDATE_LEN`]) or
/// the roster share of up to [`MAX_ROSTER_SHARE`] certificates, the larger. Read only from
/// authenticated members.
pub const MAX_PUSH_REQUEST: usize = MAX_AUTH_RESPONSE;
/// Largest push response: `Ack`, or a `Refused` reason.
pub const MAX_PUSH_RESPONSE: usize = 1024;
/// Concurrent inbound streams per connection for the authentication, catch-up and repair
/// protocols.
pub const MAX_CONCURRENT_STREAMS: usize = 8;
/// Room for a roster of [`MAX_ROSTER_SHARE`] certificates and one more (what a `Welcome` of
/// `/ptt-node/auth/1` carried); the push limit is this.
const MAX_AUTH_RESPONSE: usize = (MAX_ROSTER_SHARE + 1) * (MAX_CERT_LEN + 4) + 1024;
/// Streams of push, catch-up and repair held unread per connection before a peer is
/// authenticated. A member sends on them only once this node has admitted it (the `Welcome`),
/// so few are needed; each held stream can make the multiplexer buffer up to 256 KiB.
pub const MAX_HELD_STREAMS: usize = 2;
/// Connections with one peer at most: a simultaneous dial makes two, a relayed circuit and
/// its direct upgrade two more.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// How many roster certificates a reply carries at most.
pub const MAX_ROSTER_SHARE: usize = 1000;

/// The gossipsub topic of a domain channel.
pub fn topic(domain: &DomainId, channel: u32) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/ptt/1/{}/{}", &domain.to_hex()[..16], channel))
}

/// The gossipsub topic of a channel's voice packets (proto/voice.md).
pub fn voice_topic(domain: &DomainId, channel: u32) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!(
        "/ptt/1/{}/{}{VOICE_TOPIC_SUFFIX}",
        &domain.to_hex()[..16],
        channel
    ))
}

/// How a voice topic ends ([`voice_topic`]).
const VOICE_TOPIC_SUFFIX: &str = "/voice";

/// The device that originated a gossipsub message, for gossipsub's suppression of copies to
/// peers that hear it on the multicast plane (`message_origin_fn`,
/// vendor/libp2p-gossipsub/README.md): the `sender` of the envelope's header, read without
/// verifying anything. `None`, so the message goes to every peer as before, for what never goes
/// on the plane: an envelope (alert, directed message or voice packet) over
/// [`crate::plane::PLANE_MAX_BODY`], and anything whose header does not parse. A forged
/// `sender` only withholds gossip copies of a message the receivers then refuse anyway.
pub fn message_origin(m: &gossipsub::RawMessage) -> Option<u32> {
    if m.data.len() > crate::plane::PLANE_MAX_BODY {
        return None;
    }
    crate::envelope::header_of(&m.data).map(|h| h.sender)
}

/// A request of the authentication protocol (`Hello` only) or of the push protocol (the other
/// variants): one enum, so each variant keeps its bytes from `/ptt-node/auth/1`, which carried
/// both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthRequest {
    /// First message on a new connection, sent by both sides.
    Hello(AuthHello),
    /// Member certificates the sender has just learned, pushed to its authenticated peers so
    /// that every member learns every other member, also without a direct connection; and the
    /// roster a member shares with a peer it has just authenticated.
    Roster {
        /// Certificates (at most [`MAX_ROSTER_PUSH`] when flooded, [`MAX_ROSTER_SHARE`] when
        /// shared).
        #[serde(deserialize_with = "wire::bounded::<MAX_ROSTER_SHARE, _, _>")]
        certs: Vec<Vec<u8>>,
    },
    /// Presence records (addresses, current profiles) the sender holds and the receiver may
    /// not: pushed after authentication and whenever one changes, flooded like certificates.
    Presence {
        /// Records (at most [`MAX_ROSTER_PUSH`]).
        #[serde(deserialize_with = "wire::bounded::<MAX_ROSTER_PUSH, _, _>")]
        records: Vec<Vec<u8>>,
    },
    /// A domain update signed by the authority: pushed to a member whose hello showed an
    /// older revision, and flooded when newly applied.
    Update {
        /// The update's bytes.
        update: Vec<u8>,
    },
    /// The senders the requester hears on the plane (`proto/plane.md`, Evidence), sent to
    /// every authenticated peer at admission and when the set changes; answered by
    /// [`AuthReply::Ack`]. A peer that does not know this variant fails the request, and is
    /// taken to hear nobody.
    Heard {
        /// The plane epoch the requester holds (a report under another epoch counts for none).
        epoch: u32,
        /// Device numbers, ascending, at most [`MAX_HEARD_SENDERS`].
        #[serde(deserialize_with = "wire::bounded::<MAX_HEARD_SENDERS, _, _>")]
        senders: Vec<u32>,
    },
}

/// The most senders one [`AuthRequest::Heard`] names (a domain's roster bound).
pub const MAX_HEARD_SENDERS: usize = crate::plane::evidence::MAX_REPORT_SENDERS;

/// The hello: who the sender is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthHello {
    /// The domain the sender belongs to.
    pub domain: DomainId,
    /// The sender's certificate.
    pub cert: Vec<u8>,
    /// The descriptor revision the sender holds: a peer that holds later updates sends them.
    pub revision: u64,
}

/// Reply to an [`AuthHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthReply {
    /// The requester was admitted; here is the responder's certificate. (On
    /// `/ptt-node/auth/1` it also carried the other member certificates the responder knows;
    /// they now follow in a `Roster` push once the requester is authenticated.)
    Welcome {
        /// Responder's certificate.
        cert: Vec<u8>,
        /// Empty (at most [`MAX_ROSTER_SHARE`] are decoded; any are learned).
        #[serde(deserialize_with = "wire::bounded::<MAX_ROSTER_SHARE, _, _>")]
        roster: Vec<Vec<u8>>,
    },
    /// The requester was refused.
    Refused {
        /// Why.
        reason: String,
    },
    /// A push was received.
    Ack,
}

/// Length-prefixed postcard codec (u32 big-endian length, then the encoding) for a
/// request-response protocol, with a size limit each way checked before reading the body.
pub struct FramedCodec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    _types: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for FramedCodec<Req, Resp> {
    fn clone(&self) -> Self {
        FramedCodec {
            max_request: self.max_request,
            max_response: self.max_response,
            _types: std::marker::PhantomData,
        }
    }
}

/// The codec of the authentication and push protocols: one message set, different limits
/// ([`FramedCodec::hello`], [`FramedCodec::push`]).
pub type AuthCodec = FramedCodec<AuthRequest, AuthReply>;
/// The catch-up protocol's codec.
pub type SyncCodec = FramedCodec<SyncRequest, SyncResponse>;
/// The repair protocol's codec.
pub type RepairCodec = FramedCodec<RepairRequest, RepairResponse>;

impl AuthCodec {
    /// The authentication protocol's: frames of a hello's size each way.
    pub fn hello() -> Self {
        FramedCodec {
            max_request: MAX_HELLO_REQUEST,
            max_response: MAX_HELLO_RESPONSE,
            _types: std::marker::PhantomData,
        }
    }

    /// The push protocol's: an update or a roster share, read from members only.
    pub fn push() -> Self {
        FramedCodec {
            max_request: MAX_PUSH_REQUEST,
            max_response: MAX_PUSH_RESPONSE,
            _types: std::marker::PhantomData,
        }
    }
}

impl Default for SyncCodec {
    fn default() -> Self {
        FramedCodec {
            max_request: MAX_SYNC_REQUEST,
            max_response: MAX_SYNC_RESPONSE,
            _types: std::marker::PhantomData,
        }
    }
}

impl Default for RepairCodec {
    fn default() -> Self {
        FramedCodec {
            max_request: MAX_REPAIR_REQUEST,
            max_response: MAX_REPAIR_RESPONSE,
            _types: std::marker::PhantomData,
        }
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    // Grow with what actually arrives (a length prefix alone reserves at most 64 KiB),
    // doubling, but never past the frame: `read_to_end` would leave up to twice its size.
    let mut buf: Vec<u8> = Vec::new();
    let mut n = 0;
    while n < len {
        if n == buf.len() {
            let grow = (len - n).min(n.max(64 * 1024));
            buf.reserve_exact(grow);
            buf.resize(n + grow, 0);
        }
        let r = io.read(&mut buf[n..]).await?;
        if r == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("frame ended after {n} of {len} bytes"),
            ));
        }
        n += r;
    }
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: wire::DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<Req, Resp> request_response::Codec for FramedCodec<Req, Resp>
where
    Req: Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Req> {
        let b = read_frame(io, self.max_request).await?;
        wire::decode("request", &b, self.max_request).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Resp> {
        let b = read_frame(io, self.max_response).await?;
        wire::decode("response", &b, self.max_response).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> io::Result<()> {
        write_frame(io, &wire::encode(&req)).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()> {
        write_frame(io, &wire::encode(&res)).await
    }
}

/// A request of the catch-up protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The requester's bucket summaries at or after `cutoff`; the responder answers with a
    /// [`SyncResponse::Diff`] listing ids after `after`.
    Digest {
        /// Sequence numbers below this are not compared.
        cutoff: u64,
        /// The channels the requester carries (the responder also keeps to the requester's
        /// certificate and its own channels; at most [`sync::MAX_DIGEST_CHANNELS`]).
        #[serde(deserialize_with = "wire::bounded::<{ sync::MAX_DIGEST_CHANNELS }, _, _>")]
        channels: Vec<u32>,
        /// Where the previous diff of this session stopped.
        after: Option<Key>,
        /// Bucket summaries (at most [`sync::MAX_DIGEST_BUCKETS`]).
        #[serde(deserialize_with = "wire::bounded::<{ sync::MAX_DIGEST_BUCKETS }, _, _>")]
        buckets: Vec<BucketSummary>,
    },
    /// Envelopes by id (at most [`sync::MAX_FETCH_IDS`]).
    Fetch {
        /// The ids.
        #[serde(deserialize_with = "wire::bounded::<{ sync::MAX_FETCH_IDS }, _, _>")]
        ids: Vec<Id>,
    },
}

/// A response of the catch-up protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Ids the responder holds in buckets that differ.
    Diff(Diff),
    /// Envelopes asked for (those the responder still holds, up to about 1 MiB).
    Envelopes {
        /// Envelope bytes (at most one per id asked for: [`sync::MAX_FETCH_IDS`]).
        #[serde(deserialize_with = "wire::bounded::<{ sync::MAX_FETCH_IDS }, _, _>")]
        envelopes: Vec<Vec<u8>>,
    },
    /// The responder does not serve this peer (not authenticated).
    Refused {
        /// Why.
        reason: String,
    },
}

pub use behaviour::{Behaviour, BehaviourEvent};

mod behaviour {
    #![allow(missing_docs)]
    use super::*;
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::swarm::behaviour::toggle::Toggle;

    /// The composed network behaviour.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// A budget for inbound connections not authenticated yet, per address and in all.
        pub admission: admission::Admission,
        /// Connections per peer, at most [`MAX_CONNECTIONS_PER_PEER`].
        pub limits: libp2p::connection_limits::Behaviour,
        /// Refuses connections from peers that failed authentication.
        pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
        /// Domain authentication: the hello exchange, the only protocol read before a peer is
        /// authenticated.
        pub auth: request_response::Behaviour<AuthCodec>,
        /// Roster, presence, update and heard pushes, gated until a peer is authenticated.
        pub push: gate::Gate<request_response::Behaviour<AuthCodec>>,
        /// Catch-up of missed envelopes, gated until a peer is authenticated.
        pub sync: gate::Gate<request_response::Behaviour<SyncCodec>>,
        /// Repair of missed plane datagrams (and liveness probes), gated until a peer is
        /// authenticated.
        pub repair: gate::Gate<request_response::Behaviour<RepairCodec>>,
        /// Alert broadcast, gated until a peer is authenticated.
        pub gossipsub: gate::Gate<Gossipsub>,
        /// LAN discovery.
        pub mdns: libp2p::swarm::behaviour::toggle::Toggle<mdns::tokio::Behaviour>,
        /// Exchange of listen addresses and protocols.
        pub identify: identify::Behaviour,
        /// Liveness.
        pub ping: ping::Behaviour,
        /// Reservations on, and circuits through, connection brokers.
        pub relay_client: relay::client::Behaviour,
        /// A connection broker (circuit relay v2 server), on with `--broker`, gated like
        /// gossipsub so only authenticated members may reserve or open circuits.
        pub relay: gate::Gate<Toggle<relay::Behaviour>>,
        /// Upgrade of relayed connections to direct ones where a direct path exists.
        pub dcutr: dcutr::Behaviour,
    }
}

/// Network tuning.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// How often mDNS queries the LAN.
    pub mdns_interval: Duration,
    /// Whether mDNS runs at all.
    pub mdns: bool,
    /// Also act as a connection broker (circuit relay v2) for members.
    pub broker: bool,
    /// The domain's private-network key, when the domain uses one.
    pub psk: Option<NetworkKey>,
    /// The domain: gossipsub takes subscriptions to its topics only ([`DomainTopics`]).
    /// `None` (tests that build a swarm without a domain) takes any topic.
    pub domain: Option<DomainId>,
}

/// The gossipsub topics peers may subscribe to: this domain's ([`topic`], [`voice_topic`]),
/// at most [`MAX_PEER_TOPICS`] per peer. Any other subscription is dropped as it arrives, so a
/// peer cannot make this node keep state for topics of its choosing.
#[derive(Debug, Clone, Default)]
pub struct DomainTopics {
    /// The topics' common prefix, `/ptt/1/<16 hex digits of the domain id>/`; empty: any.
    prefix: String,
}

impl DomainTopics {
    /// The filter for `domain` (`None`: any topic).
    pub fn new(domain: Option<&DomainId>) -> Self {
        DomainTopics {
            prefix: domain.map_or_else(String::new, |d| format!("/ptt/1/{}/", &d.to_hex()[..16])),
        }
    }
}

impl gossipsub::TopicSubscriptionFilter for DomainTopics {
    fn can_subscribe(&mut self, topic: &gossipsub::TopicHash) -> bool {
        topic.as_str().starts_with(&self.prefix)
    }
}

/// Topics one peer may be subscribed to at most, and subscriptions one message may carry: two
/// per channel (alerts and voice), for far more channels than a descriptor lists.
pub const MAX_PEER_TOPICS: usize = 1024;

/// The gossipsub behaviour as this node runs it.
pub type Gossipsub = gossipsub::Behaviour<
    gossipsub::IdentityTransform,
    gossipsub::MaxCountSubscriptionFilter<DomainTopics>,
>;

/// The domain's private-network key (zeroized on drop, never printed).
#[derive(Clone)]
pub struct NetworkKey(pub zeroize::Zeroizing<[u8; 32]>);

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkKey(..)")
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            mdns_interval: Duration::from_secs(5),
            mdns: true,
            broker: false,
            psk: None,
            domain: None,
        }
    }
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Building a libp2p component failed.
    #[error("network setup: {0}")]
    Setup(String),
}

fn setup(e: impl std::fmt::Display) -> NetError {
    NetError::Setup(e.to_string())
}

/// Limits of a connection broker: circuits between members last long (a day, 1 GiB) since
/// they carry a domain's traffic, not a hole-punching handshake; only authenticated members
/// can use them.
pub fn broker_config() -> relay::Config {
    relay::Config {
        max_reservations: 1024,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: 1024,
        max_circuits_per_peer: 64,
        max_circuit_duration: Duration::from_secs(24 * 3600),
        max_circuit_bytes: 1 << 30,
        ..relay::Config::default()
    }
}

/// Gossipsub mesh degree. Publishing floods to every connected member, so on a LAN every member
/// has an alert one hop after it is sent; the mesh only adds redundancy and reaches members
/// that are not connected to the sender (through a broker). Every mesh peer costs each node one
/// more send and one more duplicate receive per alert: with gossipsub's default (6, up to 12) a
/// 10-node domain sent each alert about 70 times, with 3 about 35 times, and the burst
/// benchmark's CPU fell from 16.4 s to 12.0 s (proto/network.md).
pub const MESH_N: usize = 3;

/// How long gossipsub remembers a message id to drop its duplicates (gossipsub's default is
/// 60 s). A copy arrives at most a few seconds late: the message cache answers requests for 5
/// heartbeats (3.5 s) and a copy still queued to a peer is dropped after 5 s. A later one costs
/// one more verification and is then refused as a replay, which does not count against the peer
/// that forwarded it. The ids of a 2,000-alert burst are released 15 s after it rather than a
/// minute (vendor/libp2p-gossipsub/README.md).
pub const DUPLICATE_CACHE_TIME: Duration = Duration::from_secs(15);

/// How long a copy this node forwards may wait in a peer's send queue before gossipsub drops
/// it (gossipsub's default): another mesh member or catch-up covers for it.
pub const FORWARD_QUEUE_DEADLINE: Duration = Duration::from_secs(1);

/// How long a copy this node published may wait in a peer's send queue before gossipsub drops
/// it (gossipsub's default): past it, catch-up delivers the alert.
pub const PUBLISH_QUEUE_DEADLINE: Duration = Duration::from_secs(5);

/// Length of a gossipsub message id: the first bytes of the SHA-256 of the message.
pub const MESSAGE_ID_LEN: usize = 20;

/// The most message ids one IHAVE may advertise (gossipsub's default is 5,000). A receiver
/// refuses an RPC whose control part is over 16 KB (`max_control_message_size`, gossipsub's
/// default) by dropping the whole inbound stream, with the messages still in it; after five
/// such failures the connection's gossipsub handler stops for good. At each heartbeat a node
/// advertised the ids of the last three heartbeats (now [`HISTORY_GOSSIP`]) to the peers outside
/// its mesh, so a burst above about 350 messages/s made an IHAVE too large and cut those peers off the sender's live
/// alerts (`tests/noroot/gossip_ihave.rs`). 512 ids take 11.3 KB; a random 512 of them are advertised, and catch-up
/// repairs what gossip no longer advertises.
pub const MAX_IHAVE_IDS: usize = 512;

/// For how many heartbeats a message id is advertised in IHAVEs to the peers outside the mesh
/// (gossipsub's default is 3). Publishing floods every alert to every connected member and the
/// mesh forwards it, so gossip only repairs a copy lost on the way (a full send queue, a
/// connection that broke): one heartbeat's advertisement reaches a member that missed an alert
/// from each of the others that has it, and catch-up repairs what gossip does not. At a steady
/// 100 alerts/s in a 10-node domain three heartbeats' worth cost about 3.6 KB on the wire per
/// alert; one cut the bytes per alert by 22 % and the daemons' CPU by 7 %.
pub const HISTORY_GOSSIP: usize = 1;

/// The gossipsub configuration: anonymous messages (the envelope carries its own sender
/// signature, so per-hop gossipsub signatures would be redundant work), manual validation
/// (every node validates before forwarding), content-hash message ids, a small mesh
/// ([`MESH_N`]), origins for the plane's suppression ([`message_origin`]).
pub fn gossipsub_config() -> Result<gossipsub::Config, NetError> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(700))
        .duplicate_cache_time(DUPLICATE_CACHE_TIME)
        .forward_queue_duration(FORWARD_QUEUE_DEADLINE)
        .publish_queue_duration(PUBLISH_QUEUE_DEADLINE)
        .mesh_n(MESH_N)
        .mesh_n_low(MESH_N - 1)
        .mesh_n_high(MESH_N + 1)
        .mesh_outbound_min(1)
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(MAX_ENVELOPE_LEN + 1024)
        .max_control_messages_sent(MAX_IHAVE_IDS)
        .history_gossip(HISTORY_GOSSIP)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(sha2::Sha256::digest(&m.data)[..MESSAGE_ID_LEN].to_vec())
        })
        .message_origin_fn(message_origin)
        .build()
        .map_err(setup)
}

/// The multicast plane's hooks into gossipsub (vendor/libp2p-gossipsub/README.md), through
/// the gate: they neither open nor check it.
impl gate::Gate<Gossipsub> {
    /// `peer` hears these senders on the plane: gossipsub sends it no copy and no IHAVE of
    /// their envelopes ([`message_origin`]). Replaces the previous set; gossipsub forgets it
    /// when the peer disconnects, and ignores it for a peer not connected.
    pub fn set_heard(&mut self, peer: &PeerId, senders: Arc<BTreeSet<u32>>) {
        self.inner().set_heard(peer, senders);
    }
    /// `peer` hears no sender on the plane any more: full copies again.
    pub fn clear_heard(&mut self, peer: &PeerId) {
        self.inner().clear_heard(peer);
    }
    /// An envelope accepted from the plane or a repair: gossipsub takes it as received and
    /// validated (a later gossip copy is a duplicate, IWANT is served) and forwards it to the
    /// mesh peers of `topic` that do not hear its sender. `Err(Duplicate)` when gossipsub
    /// already had it.
    pub fn forward_external(
        &mut self,
        topic: gossipsub::TopicHash,
        envelope: Vec<u8>,
    ) -> Result<gossipsub::MessageId, gossipsub::PublishError> {
        self.inner().forward_external(topic, envelope)
    }
}

/// Peer scoring (gossipsub v1.1): what matters here is P4, invalid messages. A member whose
/// own messages are rejected (forged, malformed, over its rate limit) sinks below the
/// graylist threshold after a handful and gossipsub then drops everything it sends until its
/// score decays back (about ten seconds after it stops). Mesh delivery-rate penalties (P3,
/// P3b) are off: an alert network is quiet most of the time, and a quiet peer is not a bad
/// one. IP colocation is off: relayed connections all come from the broker's address.
pub fn peer_score() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let params = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    (params, gossipsub::PeerScoreThresholds::default())
}

/// Score parameters of a channel topic (see [`peer_score`]).
pub fn topic_score() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 100.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    }
}

/// Builds the swarm for a device identity.
/// With `metrics`, the transport counts the bytes it carries into that registry
/// (`libp2p_bandwidth_bytes`).
pub fn build_swarm(
    keypair: identity::Keypair,
    cfg: &NetConfig,
    metrics: Option<&mut prometheus_client::registry::Registry>,
) -> Result<libp2p::Swarm<Behaviour>, NetError> {
    let gcfg = gossipsub_config()?;
    let mdns_cfg = mdns::Config {
        ttl: Duration::from_secs(60),
        query_interval: cfg.mdns_interval,
        enable_ipv6: false,
    };
    let mdns_enabled = cfg.mdns;
    let broker = cfg.broker;
    let domain = cfg.domain;
    let make = move |key: &identity::Keypair,
                     relay_client: relay::client::Behaviour|
          -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
        let peer = key.public().to_peer_id();
        let mut gossipsub: Gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
            gossipsub::MessageAuthenticity::Anonymous,
            gcfg,
            gossipsub::MaxCountSubscriptionFilter {
                filter: DomainTopics::new(domain.as_ref()),
                max_subscribed_topics: MAX_PEER_TOPICS,
                max_subscriptions_per_request: MAX_PEER_TOPICS,
            },
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        let (params, thresholds) = peer_score();
        gossipsub
            .with_peer_score(params, thresholds)
            .map_err(io::Error::other)?;
        Ok(Behaviour {
            admission: Default::default(),
            limits: libp2p::connection_limits::Behaviour::new(
                libp2p::connection_limits::ConnectionLimits::default()
                    .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER)),
            ),
            blocked: Default::default(),
            auth: request_response::Behaviour::with_codec(
                AuthCodec::hello(),
                [(AUTH_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
            ),
            push: gate::Gate::holding(
                request_response::Behaviour::with_codec(
                    AuthCodec::push(),
                    [(PUSH_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10))
                        .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
                ),
                MAX_HELD_STREAMS,
            ),
            sync: gate::Gate::holding(
                request_response::Behaviour::new(
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(20))
                        .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
                ),
                MAX_HELD_STREAMS,
            ),
            repair: gate::Gate::holding(
                request_response::Behaviour::new(
                    [(REPAIR_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(REPAIR_TIMEOUT)
                        .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
                ),
                MAX_HELD_STREAMS,
            ),
            gossipsub: gate::Gate::new(gossipsub),
            mdns: if mdns_enabled {
                Some(mdns::tokio::Behaviour::new(mdns_cfg, peer)?)
            } else {
                None
            }
            .into(),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                    .with_push_listen_addr_updates(true),
            ),
            relay_client,
            relay: gate::Gate::new(
                if broker {
                    let mut r = relay::Behaviour::new(peer, broker_config());
                    // On a LAN there is no "confirmed external address" to wait for:
                    // a broker serves from the start.
                    r.set_status(Some(relay::Status::Enable));
                    Some(r)
                } else {
                    None
                }
                .into(),
            ),
            dcutr: dcutr::Behaviour::new(peer),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
        })
    };
    // The same last steps for both transports, with or without bandwidth metrics.
    macro_rules! finish {
        ($b:expr) => {{
            let b = $b
                .with_relay_client(noise::Config::new, yamux::Config::default)
                .map_err(setup)?;
            match metrics {
                Some(r) => b
                    .with_bandwidth_metrics(r)
                    .with_behaviour(make)
                    .map_err(setup)?
                    .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
                    .build(),
                None => b
                    .with_behaviour(make)
                    .map_err(setup)?
                    .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
                    .build(),
            }
        }};
    }
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let swarm = match &cfg.psk {
        None => finish!(
            builder
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .map_err(setup)?
        ),
        // The domain's private network: every TCP connection is first wrapped in the
        // libp2p pnet XSalsa20 stream under the pre-shared key, so a device without it fails
        // Noise at its first message and never sees a certificate.
        Some(psk) => finish!(
            builder
                .with_other_transport(|key| {
                    let psk = libp2p::pnet::PreSharedKey::new(*psk.0);
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                            .and_then(move |socket, _| {
                                libp2p::pnet::PnetConfig::new(psk).handshake(socket)
                            })
                            .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                            .authenticate(noise::Config::new(key)?)
                            .multiplex(yamux::Config::default()),
                    )
                })
                .map_err(setup)?
        ),
    };
    Ok(swarm)
}

#[cfg(test)]
mod tests;
