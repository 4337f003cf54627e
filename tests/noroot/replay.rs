//! A member's daemon restarted from its data directory refuses a replay of an old envelope.
//!
//! A test peer enrolled as a member authenticates like a daemon, records an alert's envelope
//! from gossip, and after the receiver restarts (fresh gossipsub caches, replay state only
//! from its store) publishes the same bytes again. The receiver must count it as a duplicate
//! and show nothing. Loopback only, mDNS off: no root needed.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, gossipsub, noise, request_response, tcp, yamux};
use ptt_node::bundle::Bundle;
use ptt_node::net::{AUTH_PROTOCOL, AuthCodec, AuthHello, AuthReply, AuthRequest, topic};
use sha2::Digest;

use crate::support::common::{BIN, ok, p};
use crate::support::loopback::{Daemon, address, start_loopback, status, wait_for};

#[derive(NetworkBehaviour)]
struct Peer {
    gossipsub: gossipsub::Behaviour,
    auth: request_response::Behaviour<AuthCodec>,
}

#[test]
fn restarted_member_refuses_a_replayed_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let d = |x: &str| dir.path().join(x);
    ok(&["domain", "init", "--dir", p(&d("dom")), "--name", "replay"]);
    for m in ["m1", "m2", "tp"] {
        ok(&[
            "domain",
            "enroll",
            "--dir",
            p(&d("dom")),
            "--device",
            m,
            "--out",
            p(&d(m)),
        ]);
    }
    let _m1 = start_loopback(&d("m1"), &d("m1-data"), None);
    let m1_addr = address(&d("m1-data"));
    let mut m2 = start_loopback(&d("m2"), &d("m2-data"), Some(&m1_addr));
    let m2_addr = address(&d("m2-data"));

    let bundle = Bundle::load(&d("tp")).expect("test peer bundle");
    let keypair = bundle.libp2p_keypair().unwrap();
    let hello = AuthHello {
        domain: bundle.descriptor.domain,
        cert: bundle.cert.as_bytes().to_vec(),
        revision: bundle.descriptor.body.revision,
    };
    let alert_topic = topic(&bundle.descriptor.domain, 1);
    let gcfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .duplicate_cache_time(Duration::from_millis(500))
        .history_length(2)
        .history_gossip(1)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(sha2::Sha256::digest(&m.data)[..20].to_vec())
        })
        .build()
        .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| Peer {
                gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gcfg).unwrap(),
                auth: request_response::Behaviour::with_codec(
                    AuthCodec::hello(),
                    [(AUTH_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default(),
                ),
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.behaviour_mut().gossipsub.subscribe(&alert_topic).unwrap();

        // Drives the swarm for `secs`, answering authentication like a daemon; returns the
        // gossip payloads received.
        async fn drive(swarm: &mut libp2p::Swarm<Peer>, hello: &AuthHello, secs: u64) -> Vec<Vec<u8>> {
            let mut got = vec![];
            let end = tokio::time::Instant::now() + Duration::from_secs(secs);
            while tokio::time::Instant::now() < end {
                tokio::select! {
                    ev = swarm.select_next_some() => match ev {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                            swarm.behaviour_mut().auth.send_request(&peer_id, AuthRequest::Hello(hello.clone()));
                        }
                        SwarmEvent::Behaviour(PeerEvent::Auth(request_response::Event::Message {
                            message: request_response::Message::Request { request, channel, .. }, ..
                        })) => {
                            let reply = match request {
                                AuthRequest::Hello(_) => AuthReply::Welcome { cert: hello.cert.clone(), roster: vec![] },
                                AuthRequest::Roster { .. } | AuthRequest::Presence { .. } | AuthRequest::Update { .. } | AuthRequest::Heard { .. } => AuthReply::Ack,
                            };
                            let _ = swarm.behaviour_mut().auth.send_response(channel, reply);
                        }
                        SwarmEvent::Behaviour(PeerEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                            got.push(message.data);
                        }
                        _ => {}
                    },
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            got
        }

        swarm.dial(m2_addr.parse::<Multiaddr>().unwrap()).unwrap();
        drive(&mut swarm, &hello, 3).await;
        let st = status(&d("m2-data")).unwrap();
        assert_eq!(st["peers"]["authenticated"], 2, "m2 admitted m1 and the test peer: {st}");

        let data1 = d("m1-data");
        tokio::task::spawn_blocking(move || {
            ok(&["alert", "--data", p(&data1), "--severity", "minor", "--kind", "k", "--text", "once only"])
        })
        .await
        .unwrap();
        // The alert, not m2's receipt for it (same topic, receipt flag in the header).
        let got: Vec<Vec<u8>> = drive(&mut swarm, &hello, 3)
            .await
            .into_iter()
            .filter(|b| {
                ptt_node::envelope::header_of(b)
                    .is_some_and(|h| !ptt_node::receipt::is_receipt_channel(h.channel))
            })
            .collect();
        assert_eq!(got.len(), 1, "the test peer recorded the envelope from gossip");
        let envelope = got[0].clone();
        wait_for("m2 received it", 10, || {
            status(&d("m2-data")).filter(|v| v["counters"]["alerts_received"] == 1)
        });

        // Restart m2 from its data directory.
        let _ = m2.0.kill();
        let _ = m2.0.wait();
        m2 = start_loopback(&d("m2"), &d("m2-data"), Some(&m1_addr));
        let m2_addr = address(&d("m2-data"));
        let mut listen = Daemon(Command::new(BIN)
            .args(["listen", "--json", "--data", p(&d("m2-data"))])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap());
        swarm.dial(m2_addr.parse::<Multiaddr>().unwrap()).unwrap();
        drive(&mut swarm, &hello, 4).await;
        let st = status(&d("m2-data")).unwrap();
        assert_eq!(st["peers"]["authenticated"], 2, "after restart: {st}");

        // Replay the old envelope. (gossipsub's duplicate cache only forgets expired ids when
        // something new is inserted, so a throwaway message goes first.)
        let _ = swarm
            .behaviour_mut()
            .gossipsub
            .publish(alert_topic.clone(), b"throwaway".to_vec());
        swarm
            .behaviour_mut()
            .gossipsub
            .publish(alert_topic.clone(), envelope)
            .expect("the test peer publishes the old envelope");
        drive(&mut swarm, &hello, 3).await;
        let st = status(&d("m2-data")).unwrap();
        assert_eq!(st["counters"]["rejected"]["duplicate"], 1, "m2 refused the replay: {st}");
        assert_eq!(st["counters"]["alerts_received"], 0, "nothing new shown after restart: {st}");
        let _ = listen.0.kill();
        let _ = listen.0.wait();
        let mut shown = String::new();
        if let Some(mut out) = listen.0.stdout.take() {
            use std::io::Read;
            let _ = out.read_to_string(&mut shown);
        }
        assert!(shown.trim().is_empty(), "listen showed {shown:?}");
    });
    drop(m2);
}
