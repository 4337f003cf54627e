//! A gossipsub swarm over libp2p's in-memory transport (noise, yamux; no sockets), for the
//! in-process gossip tests (of the no-root and the whole-process binaries).

use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::core::{Multiaddr, Transport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, SwarmBuilder, gossipsub, identity, noise, yamux};

/// A swarm of anonymous gossipsub with `config` and a fresh identity.
pub fn node(config: gossipsub::Config) -> Swarm<gossipsub::Behaviour> {
    SwarmBuilder::with_existing_identity(identity::Keypair::generate_ed25519())
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                MemoryTransport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .unwrap()
        .with_behaviour(|_| {
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).unwrap()
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Makes `swarm` listen on a fresh in-memory address and returns it.
pub async fn listen(swarm: &mut Swarm<gossipsub::Behaviour>) -> Multiaddr {
    swarm.listen_on("/memory/0".parse().unwrap()).unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}
