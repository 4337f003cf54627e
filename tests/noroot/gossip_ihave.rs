//! A member outside the publisher's gossipsub mesh keeps receiving through a burst.
//!
//! At each heartbeat gossipsub advertises the ids of recent messages (IHAVE) to the peers
//! outside its mesh. libp2p-gossipsub's defaults let one IHAVE carry 5,000 ids (about 110 KB)
//! but make a receiver refuse any RPC whose control part exceeds 16 KB: the receiver then
//! drops the whole inbound stream, with the messages still on their way in it, and after five
//! such failures the connection's gossipsub handler gives up for good. In a burst this cut
//! members off the sender's live alerts (found with a mesh of 1 in the mesh benchmark, where
//! catch-up then brought 5,000-7,000 of 18,000 deliveries). ptt-node's configuration
//! (`net::gossipsub_config`) caps the ids per IHAVE so that it always fits.
//!
//! Six gossipsub nodes in this process over libp2p's in-memory transport (no sockets), with
//! ptt-node's configuration: one publisher connected to five others, so at least one is outside
//! its mesh (at most `MESH_N + 1` members).

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, gossipsub};

use crate::support::memory_swarm;

const PEERS: usize = 5;
/// Messages sent in `ROUNDS` rounds 100 ms apart: several heartbeats (700 ms) fall inside the
/// burst, each advertising the ids of the last heartbeat (`net::HISTORY_GOSSIP`): about 1,400
/// at this rate, 31 KB uncapped.
const PER_ROUND: usize = 200;
const ROUNDS: usize = 15;

/// The publisher, the peers connected to it, and what each peer has received.
struct Star {
    publisher: Swarm<gossipsub::Behaviour>,
    peers: Vec<Swarm<gossipsub::Behaviour>>,
    received: Vec<usize>,
}

impl Star {
    /// Runs every swarm for `d`. The peers accept what they are given (ptt-node validates
    /// every message) and count it.
    async fn run(&mut self, d: Duration) {
        let end = tokio::time::sleep(d);
        tokio::pin!(end);
        loop {
            let any_peer = futures::future::select_all(
                self.peers
                    .iter_mut()
                    .enumerate()
                    .map(|(i, s)| Box::pin(async move { (i, s.select_next_some().await) })),
            );
            tokio::select! {
                _ = &mut end => return,
                _ = self.publisher.select_next_some() => {}
                ((i, e), _, _) = any_peer => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message {
                        propagation_source, message_id, ..
                    }) = e
                    {
                        self.received[i] += 1;
                        self.peers[i].behaviour_mut().report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Accept,
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_member_outside_the_mesh_gets_every_message_of_a_burst() {
    let config = || ptt_node::net::gossipsub_config().unwrap();
    let topic = gossipsub::IdentTopic::new("alerts");
    let mut publisher = memory_swarm::node(config());
    publisher.behaviour_mut().subscribe(&topic).unwrap();
    let listening = memory_swarm::listen(&mut publisher).await;
    let mut peers: Vec<_> = (0..PEERS).map(|_| memory_swarm::node(config())).collect();
    for p in &mut peers {
        p.behaviour_mut().subscribe(&topic).unwrap();
        p.dial(listening.clone()).unwrap();
    }
    let mut net = Star {
        publisher,
        peers,
        received: vec![0; PEERS],
    };
    // Connected, subscribed, and the publisher's mesh formed. Gossipsub's first heartbeat
    // comes 5 s after start (`heartbeat_initial_delay`): the burst must come after it, or
    // no IHAVE is sent during it.
    net.run(Duration::from_secs(6)).await;
    for _ in 0..50 {
        let subscribed = net
            .publisher
            .behaviour()
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&topic.hash()))
            .count();
        if subscribed == PEERS && net.publisher.behaviour().mesh_peers(&topic.hash()).count() > 0 {
            break;
        }
        net.run(Duration::from_millis(200)).await;
    }
    let mesh: Vec<_> = net
        .publisher
        .behaviour()
        .mesh_peers(&topic.hash())
        .copied()
        .collect();
    let outside = net
        .peers
        .iter()
        .filter(|p| !mesh.contains(p.local_peer_id()))
        .count();
    assert!(
        outside > 0,
        "every peer is in the publisher's mesh ({} of {PEERS}); the test needs one outside",
        mesh.len()
    );

    let total = PER_ROUND * ROUNDS;
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            let text = format!("alert {round:03} {i:05} {}", "x".repeat(300));
            net.publisher
                .behaviour_mut()
                .publish(topic.clone(), text.into_bytes())
                .unwrap();
        }
        net.run(Duration::from_millis(100)).await;
    }
    for _ in 0..50 {
        if net.received.iter().all(|r| *r == total) {
            break;
        }
        net.run(Duration::from_millis(100)).await;
    }
    assert_eq!(
        net.received,
        vec![total; PEERS],
        "messages received by each peer ({outside} outside the publisher's mesh)"
    );
}
