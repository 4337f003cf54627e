//! A member's daemon restarted from its data directory refuses a replay of an old envelope.
//!
//! A test peer enrolled as a member authenticates like a daemon, records an alert's envelope
//! from gossip, and after the receiver restarts (fresh gossipsub caches, replay state only
//! from its store) publishes the same bytes again. The receiver must count it as a duplicate
//! and show nothing. Loopback only, mDNS off: no root needed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, gossipsub, noise, request_response, tcp, yamux};
use ptt_node::bundle::Bundle;
use ptt_node::net::{AUTH_PROTOCOL, AuthCodec, AuthHello, AuthReply, AuthRequest, topic};
use serde_json::Value;
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_ptt-node");

struct Kid(Child);
impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn ok(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().expect("ptt-node");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn status(data: &Path) -> Option<Value> {
    let o = Command::new(BIN)
        .args(["status", "--json", "--data", s(data)])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

fn wait<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn daemon(bundle: &Path, data: &Path, peer: Option<&str>) -> Kid {
    let mut c = Command::new(BIN);
    c.args([
        "run",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bundle",
        s(bundle),
        "--data",
        s(data),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(p) = peer {
        c.args(["--peer", p]);
    }
    Kid(c.spawn().expect("daemon"))
}

fn address(data: &Path) -> String {
    let st = wait("daemon up", 20, || {
        status(data).filter(|v| v["listen_addrs"][0].is_string())
    });
    format!(
        "{}/p2p/{}",
        st["listen_addrs"][0].as_str().unwrap(),
        st["peer_id"].as_str().unwrap()
    )
}

#[derive(NetworkBehaviour)]
struct Peer {
    gossipsub: gossipsub::Behaviour,
    auth: request_response::Behaviour<AuthCodec>,
}

#[test]
fn restarted_member_refuses_a_replayed_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let d = |x: &str| dir.path().join(x);
    ok(&["domain", "init", "--dir", s(&d("dom")), "--name", "replay"]);
    for m in ["m1", "m2", "tp"] {
        ok(&[
            "domain",
            "enroll",
            "--dir",
            s(&d("dom")),
            "--device",
            m,
            "--out",
            s(&d(m)),
        ]);
    }
    let _m1 = daemon(&d("m1"), &d("m1-data"), None);
    let m1_addr = address(&d("m1-data"));
    let mut m2 = daemon(&d("m2"), &d("m2-data"), Some(&m1_addr));
    let m2_addr = address(&d("m2-data"));

    let bundle = Bundle::load(&d("tp")).expect("test peer bundle");
    let keypair = bundle.libp2p_keypair().unwrap();
    let hello = AuthHello {
        domain: bundle.descriptor.domain,
        cert: bundle.cert.as_bytes().to_vec(),
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
                auth: request_response::Behaviour::new(
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
                                AuthRequest::Roster { .. } | AuthRequest::Presence { .. } => AuthReply::Ack,
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
            ok(&["alert", "--data", s(&data1), "--severity", "minor", "--kind", "k", "--text", "once only"])
        })
        .await
        .unwrap();
        let got = drive(&mut swarm, &hello, 3).await;
        assert_eq!(got.len(), 1, "the test peer recorded the envelope from gossip");
        let envelope = got[0].clone();
        wait("m2 received it", 10, || {
            status(&d("m2-data")).filter(|v| v["counters"]["alerts_received"] == 1)
        });

        // Restart m2 from its data directory.
        let _ = m2.0.kill();
        let _ = m2.0.wait();
        m2 = daemon(&d("m2"), &d("m2-data"), Some(&m1_addr));
        let m2_addr = address(&d("m2-data"));
        let mut listen = Kid(Command::new(BIN)
            .args(["listen", "--json", "--data", s(&d("m2-data"))])
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
