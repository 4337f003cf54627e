//! A hostile member for the adversary tests (`tests/netns/adversary.rs`, issue 24): a test
//! binary, built by `cargo test --examples` and never installed, that holds a real member
//! bundle, authenticates to one daemon like a member, and then attacks it over gossip.
//!
//! ```text
//! rogue --bundle DIR --peer MULTIADDR/p2p/PEER_ID --mode MODE --count N [--channel C]
//! rogue --peer MULTIADDR/p2p/PEER_ID --mode preauth-flood --count CONNECTIONS [--frames F]
//!       [--frame-bytes B]
//! ```
//!
//! `catchup-junk` and `catchup-forged` answer the daemon's catch-up instead: its digest with a
//! diff of N ids of the rogue's own, and its fetch with envelopes that were not asked for
//! (junk), or with the ones asked for under a broken signature (forged). Both print
//! `authenticated T` and then `fetch K` for each fetch request answered.
//!
//! `plane-forge` sends N datagrams on the domain's multicast plane, sealed under the plane
//! key the member holds, each carrying an envelope that names member `--as DEVICE` as its
//! sender under the rogue's own (so, wrong) signature: what any holder of the plane key can do
//! in an honest member's name. It needs no `--peer`, and prints `sent N T`.
//!
//! `held-flood` is the same stranger on the protocols a daemon holds unread until a peer is
//! authenticated (push, catch-up, repair): F requests of B bytes (default 256 KiB, Yamux's
//! initial window) on each of the three, which the daemon never reads, so what it costs is what
//! the multiplexer buffers.
//!
//! `preauth-flood` needs no bundle: a stranger opens CONNECTIONS connections, each under a new
//! peer id, and on each sends F authentication requests (8 by default, the most a connection
//! may have at once) framed as B bytes (1 MiB by default, what `/ptt-node/auth/1` took from
//! anyone), all zeros after the length prefix (a list of empty entries: 24 bytes each decoded
//! where no bound stops it). It prints `connected K` when K connections are up, then
//! `sent K` once their requests are written or refused.
//!
//! `voice-reclaim` hogs the floor: once a second it claims the floor of the channel at
//! `extreme`, a new burst each time that replaces its own before the floor times out, sealed
//! with the member's real voice key, N claims in all. It prints `claimed K T` after each and
//! `sent N T` after the last.
//!
//! `receipt-forge` publishes one receipt for `--alert DEVICE:SEQ` on the channel's topic,
//! listing it as opened and acknowledged ("forged"). With `--as D` its header names member D
//! as its author under the rogue's own signature (a member forging another's receipt); without,
//! the rogue's own name (a relay-only bundle: a relay sending a receipt it may not send).
//! Prints `sent 1 T`.
//!
//! `cancel-forge` publishes one cancellation of `--alert DEVICE:SEQ` on the channel's topic,
//! signed with the member's own key and sealed under the channel's real key (from the
//! bundle's sealed keys): what a member without the dispatcher right sends if it skips its own
//! daemon's check. Prints `sent 1 T`.
//!
//! Modes (each publishes N envelopes on the channel's gossip topic, signed with the member's
//! own key, so they pass every check a forgery fails):
//! - `gossip-ahead`: a `seq` an hour ahead of the clock, and a ciphertext under a key nobody
//!   holds: before the 300 s bound existed, each made a receiver derive thousands of ratchet
//!   steps, verify a signature and fail to decrypt, free of charge.
//! - `gossip-garbage`: a current `seq`, and the same ciphertext: each costs a receiver a
//!   signature, a key derivation and a failed decryption, unless its fault budget stops it.
//!
//! stdout: `authenticated T` once the daemon has welcomed it and subscribed to the topic, then
//! `sent N T` when the envelopes are published (T in µs since the Unix epoch). It then stays
//! connected, answering hellos and pushes like a member, until it is killed or 300 s have
//! passed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, gossipsub, noise, request_response, tcp, yamux};
use ptt_node::alert::Severity;
use ptt_node::bundle::Bundle;
use ptt_node::envelope::{self, Header};
use ptt_node::keys::ChannelSecret;
use ptt_node::net::{
    AUTH_PROTOCOL, AuthCodec, AuthHello, AuthReply, AuthRequest, PUSH_PROTOCOL, SYNC_PROTOCOL,
    SyncCodec, SyncRequest, SyncResponse, gossipsub_config, topic, voice_topic,
};
use ptt_node::voice::{VoiceBody, VoiceKind};

/// The rogue stops by itself after this long, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(300);

#[derive(NetworkBehaviour)]
struct Rogue {
    auth: request_response::Behaviour<AuthCodec>,
    push: request_response::Behaviour<AuthCodec>,
    sync: request_response::Behaviour<SyncCodec>,
    gossipsub: gossipsub::Behaviour,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ahead,
    Garbage,
    PreauthFlood,
    HeldFlood,
    CatchupJunk,
    CatchupForged,
    PlaneForge,
    VoiceReclaim,
    ReceiptForge,
    CancelForge,
}

struct Args {
    bundle: Option<std::path::PathBuf>,
    peer: Multiaddr,
    mode: Mode,
    count: u64,
    channel: u32,
    frames: u32,
    frame_bytes: usize,
    as_device: u32,
    alert: Option<(u32, u64)>,
}

fn usage(why: &str) -> ! {
    eprintln!(
        "rogue: {why}\nusage: rogue --bundle DIR --peer MULTIADDR/p2p/PEER_ID --mode gossip-ahead|gossip-garbage --count N [--channel C]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let (mut bundle, mut peer, mut mode, mut count, mut channel) = (None, None, None, None, 1);
    let (mut frames, mut frame_bytes, mut as_device) = (8, 1 << 20, 0);
    let mut alert = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--bundle" => bundle = Some(value.into()),
            "--peer" => {
                peer = Some(
                    value
                        .parse()
                        .unwrap_or_else(|e| usage(&format!("--peer: {e}"))),
                )
            }
            "--mode" => {
                mode = Some(match value.as_str() {
                    "gossip-ahead" => Mode::Ahead,
                    "gossip-garbage" => Mode::Garbage,
                    "preauth-flood" => Mode::PreauthFlood,
                    "held-flood" => Mode::HeldFlood,
                    "catchup-junk" => Mode::CatchupJunk,
                    "catchup-forged" => Mode::CatchupForged,
                    "plane-forge" => Mode::PlaneForge,
                    "voice-reclaim" => Mode::VoiceReclaim,
                    "receipt-forge" => Mode::ReceiptForge,
                    "cancel-forge" => Mode::CancelForge,
                    m => usage(&format!("unknown mode {m}")),
                })
            }
            "--count" => {
                count = Some(
                    value
                        .parse()
                        .unwrap_or_else(|e| usage(&format!("--count: {e}"))),
                )
            }
            "--channel" => {
                channel = value
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--channel: {e}")))
            }
            "--as" => {
                as_device = value
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--as: {e}")))
            }
            "--alert" => {
                let parsed = value
                    .split_once(':')
                    .and_then(|(d, s)| Some((d.parse().ok()?, s.parse().ok()?)));
                alert = Some(parsed.unwrap_or_else(|| usage("--alert: DEVICE:SEQ")));
            }
            "--frames" => {
                frames = value
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--frames: {e}")))
            }
            "--frame-bytes" => {
                frame_bytes = value
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--frame-bytes: {e}")))
            }
            f => usage(&format!("unknown flag {f}")),
        }
    }
    let mode = mode.unwrap_or_else(|| usage("--mode is required"));
    if bundle.is_none() && !matches!(mode, Mode::PreauthFlood | Mode::HeldFlood) {
        usage("--bundle is required");
    }
    let peer = match (peer, mode) {
        (Some(p), _) => p,
        (None, Mode::PlaneForge) => Multiaddr::empty(),
        (None, _) => usage("--peer is required"),
    };
    Args {
        bundle,
        peer,
        mode,
        count: count.unwrap_or_else(|| usage("--count is required")),
        channel,
        frames,
        frame_bytes,
        as_device,
        alert,
    }
}

/// `plane-forge`: datagrams sealed under the member's plane key, each an envelope in member
/// `a.as_device`'s name with the rogue's signature, sent to the domain's group.
fn plane_forge(a: &Args, bundle_dir: &std::path::Path) {
    let bundle = Bundle::load(bundle_dir).unwrap_or_else(|e| usage(&e.to_string()));
    let domain = bundle.descriptor.domain;
    let identity = bundle.secrets.identity.clone();
    let cfg = bundle
        .into_node_config(bundle_dir)
        .unwrap_or_else(|e| usage(&e.to_string()));
    let node = ptt_node::node::Node::new(cfg, 0);
    let Some((epoch, secret)) = node.plane_secrets().into_iter().max_by_key(|(e, _)| *e) else {
        usage("the bundle holds no plane key");
    };
    let key = ptt_node::keys::plane_key(&domain.0, epoch, &secret);
    let group = ptt_node::plane::group_for(&domain.0);
    let garbage_key = ChannelSecret([0x5a; 32]).message_key(&domain, a.channel, 1, 0);
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| usage(&e.to_string()));
    let _ = socket.set_multicast_ttl_v4(1);
    let base = now_us();
    let mut sent = 0;
    for i in 0..a.count {
        let header = Header {
            version: envelope::VERSION,
            domain_tag: domain.tag(),
            channel: a.channel,
            epoch: 1,
            sender: a.as_device,
            seq: base + i,
        };
        let body = envelope::seal(&identity, &domain, &header, &garbage_key, b"forged");
        let Ok(d) = ptt_node::plane::seal(
            &key,
            epoch,
            &domain.0,
            &[0x77; ptt_node::plane::PLANE_NONCE_PREFIX_LEN],
            i,
            ptt_node::plane::Kind::Alert,
            a.as_device,
            1_000_000 + i as u32,
            &body,
        ) else {
            continue;
        };
        if socket.send_to(&d, (group.v4, group.port)).is_ok() {
            sent += 1;
        }
        // About 500 a second.
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("sent {sent} {}", now_us());
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Up to 64 KiB of what the other side sent.
async fn read_some<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let mut b = Vec::new();
    io.take(64 * 1024).read_to_end(&mut b).await?;
    Ok(b)
}

/// Frames of raw bytes on the authentication protocol, as a stranger writes them.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        // The victim's hello: taken, never answered, so the connection waits for its
        // authentication timeout instead of being refused at once.
        read_some(io).await
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_some(io).await
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        use futures::AsyncWriteExt;
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// The stranger's protocols, each with the raw codec.
#[derive(NetworkBehaviour)]
struct Flood {
    auth: request_response::Behaviour<RawCodec>,
    push: request_response::Behaviour<RawCodec>,
    sync: request_response::Behaviour<RawCodec>,
    repair: request_response::Behaviour<RawCodec>,
}

/// `preauth-flood` and `held-flood`: `a.count` strangers, one connection each, `a.frames`
/// maximal requests each on the authentication protocol, or on each held one.
async fn preauth_flood(a: &Args) {
    let held_mode = a.mode == Mode::HeldFlood;
    let frame_bytes = if held_mode && a.frame_bytes == 1 << 20 {
        256 * 1024
    } else {
        a.frame_bytes
    };
    // A roster push (variant 1) of as many empty certificates as the frame holds: a varint
    // count, then one zero byte (an empty byte string) per entry.
    // postcard writes a count as a varint.
    let varint = |n: usize| ptt_node::wire::encode(&n);
    let body_len = frame_bytes.max(8);
    let mut n = body_len - 1;
    while 1 + varint(n).len() + n > body_len {
        n -= 1;
    }
    let mut frame = (u32::try_from(body_len).unwrap_or(u32::MAX))
        .to_be_bytes()
        .to_vec();
    frame.push(1);
    frame.extend(varint(n));
    frame.resize(4 + 1 + varint(n).len() + n, 0);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    for _ in 0..a.count {
        let (peer, frame, tx, frames) = (a.peer.clone(), frame.clone(), tx.clone(), a.frames);
        tokio::spawn(async move {
            let Ok(b) = libp2p::SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )
            else {
                return;
            };
            let rr = |p: libp2p::StreamProtocol| {
                request_response::Behaviour::<RawCodec>::new(
                    [(p, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30))
                        .with_max_concurrent_streams(64),
                )
            };
            let Ok(b) = b.with_behaviour(|_| Flood {
                auth: rr(AUTH_PROTOCOL),
                push: rr(PUSH_PROTOCOL),
                sync: rr(SYNC_PROTOCOL),
                repair: rr(ptt_node::net::REPAIR_PROTOCOL),
            });
            let mut swarm = b
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
                .build();
            if swarm.dial(peer).is_err() {
                let _ = tx.send("failed");
                return;
            }
            let mut done = 0;
            let mut held = Vec::new();
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        let _ = tx.send("connected");
                        let f = swarm.behaviour_mut();
                        for _ in 0..frames {
                            if held_mode {
                                f.push.send_request(&peer_id, frame.clone());
                                f.sync.send_request(&peer_id, frame.clone());
                                f.repair.send_request(&peer_id, frame.clone());
                            } else {
                                f.auth.send_request(&peer_id, frame.clone());
                            }
                        }
                    }
                    SwarmEvent::OutgoingConnectionError { .. } => {
                        let _ = tx.send("failed");
                        return;
                    }
                    SwarmEvent::ConnectionClosed { .. } => {
                        let _ = tx.send("closed");
                        return;
                    }
                    SwarmEvent::Behaviour(FloodEvent::Auth(request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    })) => held.push(channel),
                    SwarmEvent::Behaviour(
                        FloodEvent::Auth(
                            request_response::Event::OutboundFailure { .. }
                            | request_response::Event::Message { .. },
                        )
                        | FloodEvent::Push(
                            request_response::Event::OutboundFailure { .. }
                            | request_response::Event::Message { .. },
                        )
                        | FloodEvent::Sync(
                            request_response::Event::OutboundFailure { .. }
                            | request_response::Event::Message { .. },
                        )
                        | FloodEvent::Repair(
                            request_response::Event::OutboundFailure { .. }
                            | request_response::Event::Message { .. },
                        ),
                    ) => {
                        done += 1;
                        if done == if held_mode { 3 * frames } else { frames } {
                            let _ = tx.send("sent");
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    drop(tx);
    let (mut connected, mut sent, mut failed) = (0, 0, 0);
    let started = tokio::time::Instant::now();
    while started.elapsed() < LIFETIME {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some("connected")) => {
                connected += 1;
                println!("connected {connected}");
            }
            Ok(Some("sent")) => {
                sent += 1;
                println!("sent {sent}");
            }
            Ok(Some(_)) => {
                failed += 1;
                println!("failed {failed}");
            }
            Ok(None) => return,
            Err(_) => {}
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    if matches!(a.mode, Mode::PreauthFlood | Mode::HeldFlood) {
        return preauth_flood(&a).await;
    }
    let Some(bundle_dir) = &a.bundle else {
        usage("--bundle is required");
    };
    if a.mode == Mode::PlaneForge {
        return plane_forge(&a, bundle_dir);
    }
    let bundle = Bundle::load(bundle_dir).unwrap_or_else(|e| usage(&e.to_string()));
    let keypair = bundle
        .libp2p_keypair()
        .unwrap_or_else(|e| usage(&e.to_string()));
    let domain = bundle.descriptor.domain;
    let hello = AuthHello {
        domain,
        cert: bundle.cert.as_bytes().to_vec(),
        revision: bundle.descriptor.body.revision,
    };
    let victim = a
        .peer
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .unwrap_or_else(|| usage("--peer must end in /p2p/PEER_ID"));
    let t = topic(&domain, a.channel);
    let vt = voice_topic(&domain, a.channel);
    // What a member's daemon seals voice with: the bundle's keys, the member's own rights.
    let mut voice = (a.mode == Mode::VoiceReclaim).then(|| {
        let name = bundle
            .descriptor
            .channel_by_id(a.channel)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| usage("no such channel"));
        let b = Bundle::load(bundle_dir).unwrap_or_else(|e| usage(&e.to_string()));
        let cfg = b
            .into_node_config(bundle_dir)
            .unwrap_or_else(|e| usage(&e.to_string()));
        (ptt_node::node::Node::new(cfg, 0), name)
    });
    let rr = || request_response::Config::default().with_request_timeout(Duration::from_secs(10));
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap_or_else(|e| usage(&e.to_string()))
        .with_behaviour(|_| Rogue {
            auth: request_response::Behaviour::with_codec(
                AuthCodec::hello(),
                [(AUTH_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr(),
            ),
            push: request_response::Behaviour::with_codec(
                AuthCodec::push(),
                [(PUSH_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr(),
            ),
            sync: request_response::Behaviour::new(
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr(),
            ),
            gossipsub: gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Anonymous,
                gossipsub_config().expect("gossipsub config"),
            )
            .expect("gossipsub"),
        })
        .unwrap_or_else(|e| usage(&e.to_string()))
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&t)
        .expect("subscribe");
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&vt)
        .expect("subscribe");
    swarm
        .dial(a.peer.clone())
        .unwrap_or_else(|e| usage(&e.to_string()));

    // The sender's own signature over envelopes whose ciphertext opens under no key.
    let garbage_key = ChannelSecret([0x5a; 32]).message_key(&domain, a.channel, 1, 0);
    let seal = |seq: u64| {
        let header = Header {
            version: envelope::VERSION,
            domain_tag: domain.tag(),
            channel: a.channel,
            epoch: 1,
            sender: bundle.cert.body.device,
            seq,
        };
        envelope::seal(
            &bundle.secrets.identity,
            &domain,
            &header,
            &garbage_key,
            b"not for anyone",
        )
    };

    let catch_up = matches!(a.mode, Mode::CatchupJunk | Mode::CatchupForged);
    let device = bundle.cert.body.device;
    let base_seq = now_us() - 60_000_000;
    let mut fetches = 0;
    let (mut welcomed, mut subscribed, mut sent) = (false, false, false);
    let mut ready_at: Option<tokio::time::Instant> = None;
    let (mut claims, mut last_claim) = (0, None::<tokio::time::Instant>);
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if started.elapsed() > LIFETIME {
                    return;
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == victim => {
                    swarm
                        .behaviour_mut()
                        .auth
                        .send_request(&peer_id, AuthRequest::Hello(hello.clone()));
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == victim => {
                    eprintln!("rogue: the victim closed the connection: {cause:?}");
                }
                SwarmEvent::Behaviour(RogueEvent::Auth(request_response::Event::Message {
                    message, ..
                })) => match message {
                    request_response::Message::Request { channel, .. } => {
                        let welcome = AuthReply::Welcome {
                            cert: hello.cert.clone(),
                            roster: vec![],
                        };
                        let _ = swarm.behaviour_mut().auth.send_response(channel, welcome);
                    }
                    request_response::Message::Response { response, .. } => match response {
                        AuthReply::Welcome { .. } => welcomed = true,
                        other => {
                            eprintln!("rogue: not welcomed: {other:?}");
                            std::process::exit(1);
                        }
                    },
                },
                SwarmEvent::Behaviour(RogueEvent::Push(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                })) => {
                    let _ = swarm.behaviour_mut().push.send_response(channel, AuthReply::Ack);
                }
                SwarmEvent::Behaviour(RogueEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. },
                    ..
                })) => {
                    let response = match request {
                        // Ids of the rogue's own, as if it held alerts the victim lacks.
                        SyncRequest::Digest { after: None, .. } if catch_up => {
                            SyncResponse::Diff(ptt_node::sync::Diff {
                                keys: (0..a.count)
                                    .map(|i| (a.channel, device, base_seq + i))
                                    .collect(),
                                more: false,
                            })
                        }
                        SyncRequest::Digest { .. } => SyncResponse::Diff(Default::default()),
                        SyncRequest::Fetch { ids } if catch_up => {
                            fetches += 1;
                            println!("fetch {fetches}");
                            let envelopes = match a.mode {
                                // Not what was asked for: other seqs of the same sender.
                                Mode::CatchupJunk => ids
                                    .iter()
                                    .map(|(_, seq)| seal(seq + 1_000_000_000))
                                    .collect(),
                                // What was asked for, with a broken signature.
                                _ => ids
                                    .iter()
                                    .map(|(_, seq)| {
                                        let mut e = seal(*seq);
                                        if let Some(b) = e.last_mut() {
                                            *b ^= 1;
                                        }
                                        e
                                    })
                                    .collect(),
                            };
                            SyncResponse::Envelopes { envelopes }
                        }
                        SyncRequest::Fetch { .. } => SyncResponse::Envelopes { envelopes: vec![] },
                    };
                    let _ = swarm.behaviour_mut().sync.send_response(channel, response);
                }
                SwarmEvent::Behaviour(RogueEvent::Gossipsub(gossipsub::Event::Subscribed {
                    peer_id,
                    topic,
                })) if peer_id == victim && topic == t.hash() => subscribed = true,
                _ => {}
            }
        }
        if welcomed && subscribed && ready_at.is_none() {
            println!("authenticated {}", now_us());
            ready_at = Some(tokio::time::Instant::now());
        }
        // Let the mesh form (a GRAFT) first, so the copies go straight to the victim.
        if let Some((node, name)) = voice.as_mut()
            && claims < a.count
            && ready_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(1500))
            && last_claim.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            last_claim = Some(tokio::time::Instant::now());
            let sealed = node
                .seal_voice(name, now_us(), |seq| VoiceBody {
                    burst: seq,
                    index: 0,
                    severity: Severity::Extreme,
                    kind: VoiceKind::Claim,
                })
                .unwrap_or_else(|e| usage(&format!("cannot seal voice: {e}")));
            if swarm
                .behaviour_mut()
                .gossipsub
                .publish(vt.clone(), sealed.bytes)
                .is_ok()
            {
                claims += 1;
                println!("claimed {claims} {}", now_us());
                if claims == a.count {
                    println!("sent {claims} {}", now_us());
                }
            }
        }
        if !sent
            && voice.is_none()
            && !catch_up
            && ready_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(1500))
        {
            sent = true;
            let base = match a.mode {
                Mode::Ahead => now_us() + 3_600_000_000,
                _ => now_us(),
            };
            // The single forgeries: one envelope, published once.
            let one = match a.mode {
                Mode::CancelForge => Some(forged_cancel(&a, &bundle, &domain, device, base)),
                Mode::ReceiptForge => Some(forged_receipt(&a, &bundle, device, base, &garbage_key)),
                _ => None,
            };
            if let Some(bytes) = one {
                let ok = swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(t.clone(), bytes)
                    .is_ok();
                println!("sent {} {}", u32::from(ok), now_us());
                continue;
            }
            let mut ok = 0;
            for i in 0..a.count {
                if swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(t.clone(), seal(base + i))
                    .is_ok()
                {
                    ok += 1;
                }
            }
            println!("sent {ok} {}", now_us());
        }
    }
}

/// A cancellation of `--alert` in the member's own name, under the channel's real key of the
/// newest epoch its bundle holds, at `seq`.
fn forged_cancel(
    a: &Args,
    bundle: &Bundle,
    domain: &ptt_node::keys::DomainId,
    device: u32,
    seq: u64,
) -> Vec<u8> {
    use ptt_node::alert::{AlertBody, AlertRef, Reference};
    use ptt_node::keys::Chain;
    let (sender, alert_seq) = a
        .alert
        .unwrap_or_else(|| usage("--alert DEVICE:SEQ is required"));
    let sealed = bundle
        .sealed
        .iter()
        .filter(|k| k.body.channel == a.channel)
        .max_by_key(|k| k.body.epoch)
        .unwrap_or_else(|| usage("the bundle holds no key for the channel"));
    let chain = sealed
        .open(domain, device, &bundle.secrets.x25519)
        .unwrap_or_else(|e| usage(&e.to_string()));
    let period = Chain::period_of(chain.rotate_secs, seq);
    let key = chain
        .secret_at(period)
        .unwrap_or_else(|| usage("the key of this period is out of reach"))
        .message_key(domain, a.channel, sealed.body.epoch, period);
    let body = AlertBody {
        severity: Severity::Minor,
        kind: "cancel".into(),
        text: "forged".into(),
        location: None,
        attributes: vec![],
        reference: Some(Reference::Cancel(AlertRef {
            sender,
            seq: alert_seq,
        })),
    };
    let header = Header {
        version: envelope::VERSION,
        domain_tag: domain.tag(),
        channel: a.channel,
        epoch: sealed.body.epoch,
        sender: device,
        seq,
    };
    envelope::seal(
        &bundle.secrets.identity,
        domain,
        &header,
        &key,
        &body.encode(),
    )
}

/// A receipt for `--alert`, listing it as opened and acknowledged ("forged"), in the name of
/// `--as` (or the rogue's own), under a key nobody holds, at `base`.
fn forged_receipt(
    a: &Args,
    bundle: &Bundle,
    device: u32,
    base: u64,
    garbage_key: &ptt_node::keys::MessageKey,
) -> Vec<u8> {
    let domain = bundle.descriptor.domain;
    let (sender, seq) = a
        .alert
        .unwrap_or_else(|| usage("--alert DEVICE:SEQ is required"));
    let body = ptt_node::receipt::ReceiptBody::new(
        &[ptt_node::receipt::Opened {
            sender,
            seq,
            at_us: now_us(),
            via: ptt_node::alert::Via::Gossip,
        }],
        vec![ptt_node::receipt::Ack {
            sender,
            seq,
            text: "forged".into(),
        }],
    );
    let header = Header {
        version: envelope::VERSION,
        domain_tag: domain.tag(),
        channel: ptt_node::receipt::receipt_channel(a.channel),
        epoch: 1,
        sender: if a.as_device != 0 {
            a.as_device
        } else {
            device
        },
        seq: base,
    };
    envelope::seal_kind(
        envelope::Kind::Receipt,
        &bundle.secrets.identity,
        &domain,
        &header,
        garbage_key,
        &body.encode(),
    )
}
