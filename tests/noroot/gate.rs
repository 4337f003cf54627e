//! The authentication gate, tested against a real daemon by a rogue libp2p peer.
//!
//! The rogue speaks Noise, Yamux, gossipsub, the authentication, push and catch-up protocols,
//! sends a push and a catch-up request unauthenticated (both must stay unread), subscribes to
//! the domain's alert topic, but never proves membership: it holds the daemon's
//! authentication request unanswered. While it is connected and unauthenticated, a member
//! publishes an alert to a real second member. The rogue must receive nothing, and what it
//! publishes must never be read by the daemon. Runs on loopback (127.0.0.1) with mDNS off, so
//! it needs no root.

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, gossipsub, noise, request_response, tcp, yamux};
use ptt_node::net::{
    AUTH_PROTOCOL, AuthCodec, AuthRequest, PUSH_PROTOCOL, SYNC_PROTOCOL, SyncCodec, SyncRequest,
    gossipsub_config, topic,
};

use crate::support::common::BIN;
use crate::support::loopback::{start_loopback as start, status, wait_for};

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().expect("run ptt-node");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[derive(NetworkBehaviour)]
struct Rogue {
    gossipsub: gossipsub::Behaviour,
    auth: request_response::Behaviour<AuthCodec>,
    push: request_response::Behaviour<AuthCodec>,
    sync: request_response::Behaviour<SyncCodec>,
}

#[test]
fn unauthenticated_peer_gets_no_gossip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |p: &str| dir.path().join(p);
    let dom = d("dom");
    assert!(
        cli(&[
            "domain",
            "init",
            "--dir",
            dom.to_str().unwrap(),
            "--name",
            "site"
        ])
        .0
    );
    for m in ["m1", "m2"] {
        let (ok, out) = cli(&[
            "domain",
            "enroll",
            "--dir",
            dom.to_str().unwrap(),
            "--device",
            m,
            "--out",
            d(m).to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
    }
    let _m1 = start(&d("m1"), &d("m1-data"), None);
    let s1 = wait_for("m1 status", 20, || {
        status(&d("m1-data")).filter(|s| s["listen_addrs"][0].is_string())
    });
    let m1_addr = format!(
        "{}/p2p/{}",
        s1["listen_addrs"][0].as_str().unwrap(),
        s1["peer_id"].as_str().unwrap()
    );
    let _m2 = start(&d("m2"), &d("m2-data"), Some(&m1_addr));
    wait_for("m1 and m2 authenticated", 20, || {
        status(&d("m1-data"))
            .filter(|s| s["peers"]["authenticated"] == 1)
            .map(|_| ())
    });
    let domain = hex::decode(s1["domain_id"].as_str().unwrap()).unwrap();
    let domain = ptt_node::keys::DomainId(domain.try_into().unwrap());
    let alert_topic = topic(&domain, 1);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (received, held, answered) = rt.block_on(async {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| Rogue {
                gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossipsub_config().unwrap()).unwrap(),
                auth: request_response::Behaviour::with_codec(
                    AuthCodec::hello(),
                    [(AUTH_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
                ),
                push: request_response::Behaviour::with_codec(
                    AuthCodec::push(),
                    [(PUSH_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
                ),
                sync: request_response::Behaviour::new(
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
                ),
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.behaviour_mut().gossipsub.subscribe(&alert_topic).unwrap();
        swarm.dial(m1_addr.parse::<Multiaddr>().unwrap()).unwrap();
        let mut held = vec![];
        let mut received = vec![];
        let mut answered = vec![];
        let mut connected_at = None;
        let mut sent = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
        loop {
            tokio::select! {
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        connected_at = Some(tokio::time::Instant::now());
                        // A push and a catch-up request before authenticating: neither may be
                        // read, let alone answered (auth/1 answered a push with `Ack`).
                        swarm.behaviour_mut().push.send_request(&peer_id, AuthRequest::Roster { certs: vec![vec![0; 200]] });
                        swarm.behaviour_mut().sync.send_request(&peer_id, SyncRequest::Fetch { ids: vec![(1, 1)] });
                    }
                    SwarmEvent::Behaviour(RogueEvent::Push(request_response::Event::Message { message: request_response::Message::Response { response, .. }, .. })) => answered.push(format!("push: {response:?}")),
                    SwarmEvent::Behaviour(RogueEvent::Sync(request_response::Event::Message { message: request_response::Message::Response { response, .. }, .. })) => answered.push(format!("sync: {response:?}")),
                    SwarmEvent::Behaviour(RogueEvent::Push(request_response::Event::OutboundFailure { error, .. })) => answered.push(format!("push failed: {error}")),
                    SwarmEvent::Behaviour(RogueEvent::Sync(request_response::Event::OutboundFailure { error, .. })) => answered.push(format!("sync failed: {error}")),
                    SwarmEvent::ConnectionClosed { .. } => panic!("the daemon closed the rogue's connection before the end of the test: the test proves nothing"),
                    SwarmEvent::Behaviour(RogueEvent::Auth(request_response::Event::Message { message: request_response::Message::Request { channel, .. }, .. })) => held.push(channel),
                    SwarmEvent::Behaviour(RogueEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => received.push(message.data),
                    _ => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if let Some(t) = connected_at
                && !sent
                && t.elapsed() > Duration::from_secs(2)
            {
                    sent = true;
                    // A member alert goes out while the rogue is connected, subscribed and unauthenticated…
                    let data = d("m1-data");
                    let (ok, out) = tokio::task::spawn_blocking(move || {
                        cli(&["alert", "--data", data.to_str().unwrap(), "--severity", "extreme", "--kind", "intrusion", "--text", "rogue must not see this"])
                    }).await.unwrap();
                    assert!(ok, "{out}");
                    // …and the rogue publishes into the domain topic.
                    let _ = swarm.behaviour_mut().gossipsub.publish(alert_topic.clone(), b"rogue envelope".to_vec());
            }
            if tokio::time::Instant::now() > deadline {
                break;
            }
        }
        (received, held.len(), answered)
    });
    assert!(
        held >= 1,
        "the daemon never asked the rogue to authenticate"
    );
    // Held unread: not answered, not even refused (a refusal would mean it was read).
    assert!(
        answered.is_empty(),
        "an unauthenticated peer's push or catch-up request was read: {answered:?}"
    );
    assert!(
        received.is_empty(),
        "an unauthenticated peer received {} gossip messages",
        received.len()
    );
    let s1 = status(&d("m1-data")).unwrap();
    let s2 = status(&d("m2-data")).unwrap();
    assert_eq!(
        s2["counters"]["alerts_received"], 1,
        "the real member got the alert: {s2}"
    );
    assert_eq!(
        s1["counters"]["rejected"],
        serde_json::json!({}),
        "m1 read the rogue's message: {s1}"
    );
    assert_eq!(
        s2["counters"]["rejected"],
        serde_json::json!({}),
        "m2 saw the rogue's message: {s2}"
    );
    assert_eq!(s1["peers"]["authenticated"], 1, "{s1}");
}
