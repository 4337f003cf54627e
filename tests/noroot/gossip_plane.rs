//! The vendored gossipsub's suppression of copies for the multicast plane
//! (vendor/libp2p-gossipsub/README.md, docs/design/multicast.md §5): a peer that hears a
//! message's origin (`set_heard`) gets no copy of it by publish or forward and no IHAVE of it,
//! and `forward_external` hands a message accepted elsewhere to the mesh.
//!
//! Three gossipsub nodes in this process over libp2p's in-memory transport. A message's origin
//! here is its first byte (`message_origin_fn`), its id its bytes; ptt-node's own origin
//! function is unit-tested in `src/net.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm, gossipsub};

use crate::support::memory_swarm;

/// Long enough for a copy to cross, and for several heartbeats (200 ms) to send their IHAVEs
/// and the IWANTs they draw.
const SETTLE: Duration = Duration::from_millis(1500);

/// Validation by the application as in ptt-node, a fast heartbeat, a mesh of `mesh_n`.
fn config(mesh_n: usize, flood_publish: bool) -> gossipsub::Config {
    gossipsub::ConfigBuilder::default()
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(200))
        .mesh_n(mesh_n)
        .mesh_n_low(mesh_n)
        .mesh_n_high(mesh_n)
        .mesh_outbound_min(0)
        .flood_publish(flood_publish)
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(m.data.clone()))
        .message_origin_fn(|m: &gossipsub::RawMessage| m.data.first().map(|b| u32::from(*b)))
        .build()
        .unwrap()
}

fn topic() -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new("alerts")
}

/// A message of origin `origin`.
fn msg(origin: u8, text: &str) -> Vec<u8> {
    let mut m = vec![origin];
    m.extend_from_slice(text.as_bytes());
    m
}

fn heard(origins: &[u32]) -> Arc<BTreeSet<u32>> {
    Arc::new(origins.iter().copied().collect())
}

/// The nodes and what the application of each was handed: (data, the peer it came from).
struct Net {
    nodes: Vec<Swarm<gossipsub::Behaviour>>,
    addrs: Vec<libp2p::Multiaddr>,
    received: Vec<Vec<(Vec<u8>, PeerId)>>,
    /// Whether a node's application accepts what it is handed at once (else it stays pending).
    accept: Vec<bool>,
    pending: Vec<Vec<(gossipsub::MessageId, PeerId)>>,
}

impl Net {
    /// `n` subscribed nodes, each `i` dialing those listed in `links[i]`.
    async fn new(
        n: usize,
        config: impl Fn() -> gossipsub::Config,
        links: &[(usize, usize)],
    ) -> Net {
        let mut nodes: Vec<_> = (0..n).map(|_| memory_swarm::node(config())).collect();
        let mut addrs = Vec::new();
        for s in &mut nodes {
            s.behaviour_mut().subscribe(&topic()).unwrap();
            addrs.push(memory_swarm::listen(s).await);
        }
        for (from, to) in links {
            nodes[*from].dial(addrs[*to].clone()).unwrap();
        }
        let neighbours = links.len();
        let mut net = Net {
            nodes,
            addrs,
            received: vec![Vec::new(); n],
            accept: vec![true; n],
            pending: vec![Vec::new(); n],
        };
        net.settle(neighbours).await;
        net
    }

    /// Runs until every node knows its neighbours' subscriptions (`links` in all) and has a
    /// mesh, then for more heartbeats, which prune a mesh over its bound.
    async fn settle(&mut self, links: usize) {
        for _ in 0..100 {
            let known: usize = self
                .nodes
                .iter()
                .map(|s| {
                    s.behaviour()
                        .all_peers()
                        .filter(|(_, t)| !t.is_empty())
                        .count()
                })
                .sum();
            let meshes = self
                .nodes
                .iter()
                .all(|s| s.behaviour().mesh_peers(&topic().hash()).count() > 0);
            if known == 2 * links && meshes {
                break;
            }
            self.run(Duration::from_millis(100)).await;
        }
        self.run(Duration::from_millis(500)).await;
    }

    fn id(&self, i: usize) -> PeerId {
        *self.nodes[i].local_peer_id()
    }

    fn gossip(&mut self, i: usize) -> &mut gossipsub::Behaviour {
        self.nodes[i].behaviour_mut()
    }

    /// Runs every swarm for `d`, recording what each application is handed.
    async fn run(&mut self, d: Duration) {
        let end = tokio::time::sleep(d);
        tokio::pin!(end);
        loop {
            let any = futures::future::select_all(
                self.nodes
                    .iter_mut()
                    .enumerate()
                    .map(|(i, s)| Box::pin(async move { (i, s.select_next_some().await) })),
            );
            tokio::select! {
                _ = &mut end => return,
                ((i, e), _, _) = any => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message {
                        propagation_source, message_id, message,
                    }) = e
                    {
                        self.received[i].push((message.data, propagation_source));
                        if self.accept[i] {
                            self.nodes[i].behaviour_mut().report_message_validation_result(
                                &message_id,
                                &propagation_source,
                                gossipsub::MessageAcceptance::Accept,
                            );
                        } else {
                            self.pending[i].push((message_id, propagation_source));
                        }
                    }
                }
            }
        }
    }

    /// The messages node `i` was handed, in order.
    fn data(&self, i: usize) -> Vec<Vec<u8>> {
        self.received[i].iter().map(|(d, _)| d.clone()).collect()
    }
}

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Flood publish and mesh forwarding: neither A (the publisher) nor C (a forwarder) sends B a
/// copy of a message whose origin B hears; B still gets the others, and everything once it
/// hears nothing.
#[tokio::test(flavor = "current_thread")]
async fn no_copy_to_a_peer_that_hears_the_origin() {
    let mut net = Net::new(3, || config(3, true), &[(B, A), (C, A), (C, B)]).await;
    let b = net.id(B);
    net.gossip(A).set_heard(&b, heard(&[1]));
    net.gossip(C).set_heard(&b, heard(&[1]));

    net.gossip(A).publish(topic(), msg(1, "heard")).unwrap();
    net.gossip(A).publish(topic(), msg(2, "not heard")).unwrap();
    net.run(SETTLE).await;
    assert_eq!(net.data(C), vec![msg(1, "heard"), msg(2, "not heard")]);
    assert_eq!(net.data(B), vec![msg(2, "not heard")], "B hears origin 1");

    // A publish whose every recipient hears the origin still succeeds.
    let c = net.id(C);
    net.gossip(A).set_heard(&c, heard(&[1]));
    net.gossip(A).publish(topic(), msg(1, "all hear")).unwrap();
    net.gossip(A).clear_heard(&c);

    net.gossip(A).clear_heard(&b);
    net.gossip(C).clear_heard(&b);
    net.gossip(A)
        .publish(topic(), msg(1, "after clear"))
        .unwrap();
    net.run(SETTLE).await;
    assert_eq!(
        net.data(B),
        vec![msg(2, "not heard"), msg(1, "after clear")]
    );
    assert!(!net.data(C).contains(&msg(1, "all hear")));
}

/// `forward_external` at B (the middle of A - B - C) hands C the message with B as forwarder;
/// a copy that reaches B later by gossip is a duplicate there; a copy from a peer still
/// awaiting B's verdict is forwarded at once; and a peer that hears the origin is skipped.
#[tokio::test(flavor = "current_thread")]
async fn forward_external_feeds_the_mesh_and_dedups_later_copies() {
    let mut net = Net::new(3, || config(3, true), &[(A, B), (C, B)]).await;
    let (a, b, c) = (net.id(A), net.id(B), net.id(C));
    // A would otherwise get B's copy, and its own publish below would be a duplicate.
    net.gossip(B).set_heard(&a, heard(&[1, 2, 3]));

    net.gossip(B)
        .forward_external(topic(), msg(1, "from the plane"))
        .unwrap();
    net.run(SETTLE).await;
    assert_eq!(net.received[C], vec![(msg(1, "from the plane"), b)]);
    assert!(net.received[A].is_empty());
    // The same message by gossip: it stops inside B's gossipsub, and B would not publish it.
    net.gossip(A)
        .publish(topic(), msg(1, "from the plane"))
        .unwrap();
    net.run(SETTLE).await;
    assert!(net.received[B].is_empty(), "{:?}", net.received[B]);
    assert_eq!(net.data(C), vec![msg(1, "from the plane")]);
    assert!(matches!(
        net.gossip(B)
            .forward_external(topic(), msg(1, "from the plane")),
        Err(gossipsub::PublishError::Duplicate)
    ));

    // A gossip copy reaches B first, and B's application has not judged it yet when the same
    // message comes from the plane: it goes on to C now; the late verdict changes nothing.
    net.accept[B] = false;
    net.gossip(A).publish(topic(), msg(2, "raced")).unwrap();
    // Less than the message cache's 5 heartbeats: past them gossipsub drops a message the
    // application has not judged.
    net.run(Duration::from_millis(400)).await;
    assert_eq!(net.pending[B].len(), 1);
    assert!(!net.data(C).contains(&msg(2, "raced")));
    net.gossip(B)
        .forward_external(topic(), msg(2, "raced"))
        .unwrap();
    // The verdict (a replay, as ptt-node sees it) comes before the message leaves the cache.
    let (id, from) = net.pending[B].pop().unwrap();
    assert!(net.gossip(B).report_message_validation_result(
        &id,
        &from,
        gossipsub::MessageAcceptance::Ignore
    ));
    net.accept[B] = true;
    net.run(SETTLE).await;
    assert_eq!(net.data(C), vec![msg(1, "from the plane"), msg(2, "raced")]);

    // C hears origin 3: forward_external sends it nothing.
    net.gossip(B).set_heard(&c, heard(&[3]));
    net.gossip(B)
        .forward_external(topic(), msg(3, "heard by C"))
        .unwrap();
    net.gossip(B)
        .forward_external(topic(), msg(4, "not heard"))
        .unwrap();
    net.run(SETTLE).await;
    assert_eq!(
        net.data(C),
        vec![
            msg(1, "from the plane"),
            msg(2, "raced"),
            msg(4, "not heard")
        ]
    );
}

/// IHAVE: A (mesh of one, no flood publish) reaches the peer outside its mesh only by IHAVE and
/// IWANT. That peer gets the message whose origin it does not hear, and never the other.
#[tokio::test(flavor = "current_thread")]
async fn no_ihave_to_a_peer_that_hears_the_origin() {
    let mut net = Net::new(3, || config(1, false), &[(B, A), (C, A)]).await;
    let mesh: Vec<PeerId> = net.nodes[A]
        .behaviour()
        .mesh_peers(&topic().hash())
        .copied()
        .collect();
    assert_eq!(mesh.len(), 1, "A's mesh");
    let (inside, outside) = if mesh[0] == net.id(B) { (B, C) } else { (C, B) };
    let o = net.id(outside);
    net.gossip(A).set_heard(&o, heard(&[1]));

    net.gossip(A).publish(topic(), msg(1, "heard")).unwrap();
    net.gossip(A).publish(topic(), msg(2, "not heard")).unwrap();
    net.run(SETTLE).await;
    assert_eq!(net.data(inside), vec![msg(1, "heard"), msg(2, "not heard")]);
    assert_eq!(net.data(outside), vec![msg(2, "not heard")]);
}

/// What a peer hears is forgotten when it disconnects: after it comes back it gets full copies
/// until it reports again.
#[tokio::test(flavor = "current_thread")]
async fn heard_origins_are_forgotten_on_disconnect() {
    let mut net = Net::new(2, || config(3, true), &[(B, A)]).await;
    let b = net.id(B);
    net.gossip(A).set_heard(&b, heard(&[1]));
    net.gossip(A).publish(topic(), msg(1, "heard")).unwrap();
    net.run(SETTLE).await;
    assert!(net.received[B].is_empty());

    net.nodes[A].disconnect_peer_id(b).unwrap();
    for _ in 0..50 {
        if !net.nodes[A].is_connected(&b) && !net.nodes[B].is_connected(&net.id(A)) {
            break;
        }
        net.run(Duration::from_millis(100)).await;
    }
    let addr = net.addrs[A].clone();
    net.nodes[B].dial(addr).unwrap();
    net.settle(1).await;
    net.gossip(A)
        .publish(topic(), msg(1, "after reconnecting"))
        .unwrap();
    net.run(SETTLE).await;
    assert_eq!(net.data(B), vec![msg(1, "after reconnecting")]);
}
