//! Golden test vectors: every format in proto/ is rebuilt here from fixed inputs and must
//! match `proto/vectors/v1.txt` byte for byte. Regenerate (after a deliberate format change,
//! with a version bump) with
//! `PTT_WRITE_VECTORS=1 cargo test --test noroot vectors:: -- --test-threads=1`.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use ptt_node::alert::{AlertBody, AlertRef, Reference, Severity, Via};
use ptt_node::cert::{
    CertBody, Certificate, ChannelInfo, ChannelPolicy, Descriptor, DescriptorBody, DeviceRights,
    Grant, Location, Profile,
};
use ptt_node::envelope::{self, Envelope, Header};
use ptt_node::keys::{Chain, ChannelSecret, DomainId, SealedKey, plane_key};
use ptt_node::net::{AuthHello, AuthReply, AuthRequest};
use ptt_node::plane::{self, Kind};
use ptt_node::receipt::{Ack as ReceiptAck, Opened, ReceiptBody};
use ptt_node::update::{Update, UpdateBody};
use ptt_node::wire;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// A deterministic RNG for vectors only: SHA-256 in counter mode over a seed.
struct VectorRng {
    seed: [u8; 32],
    counter: u64,
    buf: Vec<u8>,
}

impl VectorRng {
    fn new(label: &str) -> Self {
        VectorRng {
            seed: Sha256::digest(label.as_bytes()).into(),
            counter: 0,
            buf: vec![],
        }
    }
}

impl RngCore for VectorRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest.iter_mut() {
            if self.buf.is_empty() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.counter += 1;
                self.buf = h.finalize().to_vec();
            }
            *d = self.buf.remove(0);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for VectorRng {}

fn vectors() -> BTreeMap<&'static str, Vec<u8>> {
    let mut v = BTreeMap::new();
    let authority = SigningKey::from_bytes(&[0x11; 32]);
    let device = SigningKey::from_bytes(&[0x22; 32]);
    let device_x = x25519_dalek::StaticSecret::from([0x33; 32]);
    let device_x_pk = x25519_dalek::PublicKey::from(&device_x).to_bytes();
    let domain = DomainId::from_authority(&authority.verifying_key());
    v.insert(
        "authority_public_key",
        authority.verifying_key().to_bytes().to_vec(),
    );
    v.insert("domain_id", domain.0.to_vec());

    let descriptor = Descriptor::issue(
        &authority,
        DescriptorBody {
            version: 1,
            name: "site-a".into(),
            authority: authority.verifying_key().to_bytes(),
            revision: 3,
            channels: vec![ChannelInfo {
                id: 1,
                name: "alerts".into(),
                policy: ChannelPolicy {
                    rate_per_min: 3000,
                    burst: 500,
                    rotate_secs: 3600,
                },
                escalation: Default::default(),
            }],
            brokers: vec![],
            revoked: vec![3],
            private_network: false,
            rights: vec![],
        },
    );
    v.insert("descriptor", descriptor.as_bytes().to_vec());
    // Version 2: the same domain one revision later, device 7 limited to `severe`.
    let mut body = descriptor.body.clone();
    body.version = 2;
    body.revision = 4;
    body.rights = vec![DeviceRights {
        max_severity: Severity::Severe,
        ..DeviceRights::default_for(7)
    }];
    v.insert(
        "descriptor_v2",
        Descriptor::issue(&authority, body.clone())
            .as_bytes()
            .to_vec(),
    );
    // Version 3: one revision later, device 7 also a dispatcher, watched every 60 s, and
    // severe alerts unacknowledged for 120 s escalated.
    body.version = 3;
    body.revision = 5;
    body.channels[0].escalation = ptt_node::cert::Escalation {
        after_secs: 120,
        min_severity: Severity::Severe,
    };
    body.rights = vec![DeviceRights {
        device: 7,
        max_severity: Severity::Severe,
        flags: ptt_node::cert::RIGHT_DISPATCH,
        watch_secs: 60,
    }];
    v.insert(
        "descriptor_v3",
        Descriptor::issue(&authority, body).as_bytes().to_vec(),
    );

    let cert = Certificate::issue(
        &authority,
        CertBody {
            version: 1,
            domain,
            device: 7,
            name: "cam-7".into(),
            ed25519: device.verifying_key().to_bytes(),
            x25519: device_x_pk,
            relay_only: false,
            grants: vec![Grant {
                channel: 1,
                name: "alerts".into(),
                read: true,
                write: true,
            }],
            profile: Profile {
                kind: "camera".into(),
                location: Some(Location {
                    lat: 37.5665,
                    lon: 126.978,
                }),
                tags: vec![("zone".into(), "north".into())],
                sleeps: false,
            },
            not_before: 1_790_000_000,
            not_after: 1_821_536_000,
        },
    )
    .expect("valid key");
    v.insert("certificate", cert.as_bytes().to_vec());
    v.insert("certificate_peer_id", cert.peer_id().to_bytes());

    // The chain is sealed at the period of the envelope below: 1_795_000_000 s / 3600 s.
    let chain = Chain {
        rotate_secs: 3600,
        period: 498_611,
        secret: ChannelSecret([0x44; 32]),
    };
    let secret = chain.secret.clone();
    v.insert("ratchet_next", secret.ratchet().0.to_vec());
    let sealed = SealedKey::seal(
        &authority,
        domain,
        1,
        1,
        7,
        &device_x_pk,
        &chain,
        &mut VectorRng::new("sealed-key"),
    );
    v.insert("sealed_key", sealed.to_bytes());
    // The plane secret of epoch 1 (32 x 0x66), sealed to device 7 under the plane's
    // pseudo-channel 2^32 - 2 like any key (proto/keys.md, "Plane epochs").
    assert_eq!(ptt_node::domain::PLANE_CHANNEL, 4_294_967_294);
    let plane = SealedKey::seal(
        &authority,
        domain,
        4_294_967_294,
        1,
        7,
        &device_x_pk,
        &Chain {
            rotate_secs: 0,
            period: 0,
            secret: ChannelSecret([0x66; 32]),
        },
        &mut VectorRng::new("plane-sealed-key"),
    );
    v.insert("plane_sealed_key", plane.to_bytes());
    let update = Update::issue(
        &authority,
        UpdateBody {
            version: 1,
            domain,
            serial: 3,
            requires: 0,
            issued_at: 1_795_000_000,
            note: "revoke cam-3 (device 3)".into(),
            descriptor: descriptor.as_bytes().to_vec(),
            revoked: vec![3],
            certs: vec![],
            keys: vec![sealed.to_bytes()],
        },
    )
    .expect("valid update");
    v.insert("update", update.as_bytes().to_vec());

    let alert = AlertBody {
        severity: Severity::Severe,
        kind: "intrusion".into(),
        text: "gate 3 forced".into(),
        location: Some(Location {
            lat: 37.5665,
            lon: 126.978,
        }),
        attributes: vec![("door".into(), "3".into())],
        reference: None,
    };
    v.insert("alert_plaintext", alert.encode());
    // Device 7 calls its alert off: the reference follows the fields.
    let cancel = AlertBody {
        severity: Severity::Minor,
        kind: "cancel".into(),
        text: "false alarm".into(),
        location: None,
        attributes: vec![],
        reference: Some(Reference::Cancel(AlertRef {
            sender: 7,
            seq: 1_795_000_000_123_456,
        })),
    };
    v.insert("alert_cancel_plaintext", cancel.encode());
    // A receipt (receipts.md): two alerts of device 7 (by gossip, then multicast) and one of
    // device 9 (by catch-up) opened, and the first of 7 acknowledged.
    let seq0 = 1_795_000_000_123_456;
    let receipt = ReceiptBody::new(
        &[
            Opened {
                sender: 9,
                seq: seq0 + 500,
                at_us: seq0 + 2_000_500,
                via: Via::CatchUp,
            },
            Opened {
                sender: 7,
                seq: seq0,
                at_us: seq0 + 40_000,
                via: Via::Gossip,
            },
            Opened {
                sender: 7,
                seq: seq0 + 1_000,
                at_us: seq0 + 1_000 + 3_000,
                via: Via::Multicast,
            },
        ],
        vec![ReceiptAck {
            sender: 7,
            seq: seq0,
            text: "handled".into(),
        }],
    );
    v.insert("receipt_plaintext", receipt.encode());
    let header = Header {
        version: 1,
        domain_tag: domain.tag(),
        channel: 1,
        epoch: 1,
        sender: 7,
        seq: 1_795_000_000_123_456,
    };
    let key = secret.message_key(&domain, 1, 1, 498_611);
    let env = envelope::seal(&device, &domain, &header, &key, &alert.encode());
    v.insert("envelope", env.clone());
    v.insert(
        "alert_id",
        envelope::alert_id(&domain, 7, header.seq).into_bytes(),
    );
    v.insert(
        "auth_hello",
        wire::encode(&AuthRequest::Hello(AuthHello {
            domain,
            cert: cert.as_bytes().to_vec(),
            revision: 1,
        })),
    );
    v.insert(
        "auth_reply_refused",
        wire::encode(&AuthReply::Refused {
            reason: "belongs to another domain".into(),
        }),
    );
    plane_vectors(&mut v, &domain, &device, &env);
    v
}

/// The plane inputs (proto/plane.md): plane epoch 1 with secret 66×32, nonce prefix 77×16;
/// device 7 sends the `envelope` vector (pseq 1, counter 1), then a tail and a beacon.
const PLANE_SECRET: [u8; 32] = [0x66; 32];
const PLANE_PREFIX: [u8; 16] = [0x77; 16];
const BEACON_ISSUED_US: u64 = 1_795_000_001_000_000;
const BEACON_HEARD: u32 = 2;

fn plane_vectors(
    v: &mut BTreeMap<&'static str, Vec<u8>>,
    domain: &DomainId,
    device: &SigningKey,
    env: &[u8],
) {
    let key = plane_key(&domain.0, 1, &PLANE_SECRET);
    v.insert("plane_key", key.0.to_vec());
    let g = plane::group_for(&domain.0);
    let mut group = g.v4.octets().to_vec();
    group.extend_from_slice(&g.v6.octets());
    group.extend_from_slice(&g.port.to_be_bytes());
    v.insert("plane_group", group);
    let seal = |counter, kind, body: &[u8]| {
        plane::seal(&key, 1, &domain.0, &PLANE_PREFIX, counter, kind, 7, 1, body)
            .expect("fits a datagram")
    };
    v.insert("plane_datagram", seal(1, Kind::Alert, env));
    v.insert("plane_tail", seal(2, Kind::Tail, &[]));
    let beacon = plane::beacon_body(device, &domain.0, 7, 1, BEACON_ISSUED_US, BEACON_HEARD);
    v.insert("plane_beacon", seal(3, Kind::Beacon, &beacon));
}

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/vectors/v1.txt")
}

fn parse(text: &str) -> BTreeMap<String, Vec<u8>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("name = hex");
            (k.trim().to_string(), hex::decode(v.trim()).expect("hex"))
        })
        .collect()
}

#[test]
fn golden_vectors_match() {
    let built = vectors();
    if std::env::var_os("PTT_WRITE_VECTORS").is_some() {
        let mut out = String::from(
            "# ptt-node wire format v1 golden vectors (see proto/README.md and tests/vectors.rs).\n\
             # Inputs: authority key = 32 x 0x11, device Ed25519 = 32 x 0x22, device X25519 = 32 x 0x33,\n\
             # channel secret = 32 x 0x44; the sealed key's ephemeral key comes from VectorRng(\"sealed-key\").\n\
             # Plane: epoch 1, plane secret = 32 x 0x66, nonce prefix = 16 x 0x77 (proto/plane.md).\n",
        );
        for (k, v) in &built {
            out.push_str(&format!("{k} = {}\n", hex::encode(v)));
        }
        std::fs::write(path(), out).expect("write vectors");
    }
    let text = std::fs::read_to_string(path()).expect("proto/vectors/v1.txt exists");
    let stored = parse(&text);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        built
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "vector names differ"
    );
    for (k, v) in &built {
        assert_eq!(
            hex::encode(&stored[*k]),
            hex::encode(v),
            "vector {k} differs from proto/vectors/v1.txt"
        );
    }
}

#[test]
fn stored_vectors_verify_and_open() {
    let stored = parse(&std::fs::read_to_string(path()).expect("vectors"));
    let descriptor = Descriptor::from_bytes(&stored["descriptor"]).expect("descriptor verifies");
    // Version 1 still reads, as a descriptor that limits no device; version 2 carries rights.
    assert_eq!(descriptor.body.version, 1);
    assert_eq!(descriptor.rights(7).max_severity, Severity::Extreme);
    let v2 = Descriptor::from_bytes(&stored["descriptor_v2"]).expect("descriptor v2 verifies");
    assert_eq!(v2.body.version, 2);
    assert_eq!(v2.rights(7).max_severity, Severity::Severe);
    assert_eq!(v2.severity_of(7, Severity::Extreme), Severity::Severe);
    assert_eq!(v2.severity_of(7, Severity::Minor), Severity::Minor);
    assert_eq!(v2.rights(1).max_severity, Severity::Extreme);
    assert!(!v2.rights(7).dispatcher());
    // Version 3 adds the rights' flags and the check-in period.
    let v3 = Descriptor::from_bytes(&stored["descriptor_v3"]).expect("descriptor v3 verifies");
    assert_eq!(v3.body.version, 3);
    assert!(v3.rights(7).dispatcher() && !v3.rights(1).dispatcher());
    assert_eq!(
        (v3.rights(7).max_severity, v3.rights(7).watch_secs),
        (Severity::Severe, 60)
    );
    assert_eq!(
        (v3.escalation(1).after_secs, v3.escalation(1).min_severity),
        (120, Severity::Severe)
    );
    assert_eq!(
        v2.escalation(1).after_secs,
        0,
        "version 2 escalates nothing"
    );
    // A receipt's plaintext: the alerts opened, by sender and seq, and the acknowledgement.
    let r = ReceiptBody::decode(&stored["receipt_plaintext"]).expect("receipt decodes");
    let opened: Vec<(u32, u64, u64, Via)> = r
        .opened()
        .iter()
        .map(|o| (o.sender, o.seq, o.at_us, o.via))
        .collect();
    let seq0 = 1_795_000_000_123_456;
    assert_eq!(
        opened,
        [
            (7, seq0, seq0 + 40_000, Via::Gossip),
            (7, seq0 + 1_000, seq0 + 4_000, Via::Multicast),
            (9, seq0 + 500, seq0 + 2_000_500, Via::CatchUp),
        ]
    );
    assert_eq!((r.acks()[0].sender, r.acks()[0].seq), (7, seq0));
    assert_eq!(r.acks()[0].text, "handled");
    // A cancellation's plaintext: an alert body, then the alert it calls off.
    let cancel = AlertBody::decode(&stored["alert_cancel_plaintext"]).expect("cancel decodes");
    assert_eq!(
        cancel.reference,
        Some(Reference::Cancel(AlertRef {
            sender: 7,
            seq: 1_795_000_000_123_456
        }))
    );
    assert_eq!(
        AlertBody::decode(&stored["alert_plaintext"])
            .expect("alert decodes")
            .reference,
        None
    );
    let cert = Certificate::from_bytes(
        &stored["certificate"],
        &descriptor.authority,
        &descriptor.domain,
    )
    .expect("certificate verifies");
    assert_eq!(cert.body.name, "cam-7");
    let sealed = SealedKey::from_bytes(&stored["sealed_key"], &descriptor.authority)
        .expect("sealed key verifies");
    let secret = sealed
        .open(
            &descriptor.domain,
            7,
            &x25519_dalek::StaticSecret::from([0x33; 32]),
        )
        .expect("sealed key opens");
    assert_eq!(secret.secret.0, [0x44; 32]);
    assert_eq!((secret.rotate_secs, secret.period), (3600, 498_611));
    assert_eq!(secret.secret.ratchet().0.to_vec(), stored["ratchet_next"]);
    let plane = SealedKey::from_bytes(&stored["plane_sealed_key"], &descriptor.authority)
        .expect("plane sealed key verifies");
    assert_eq!((plane.body.channel, plane.body.epoch), (4_294_967_294, 1));
    let plane = plane
        .open(
            &descriptor.domain,
            7,
            &x25519_dalek::StaticSecret::from([0x33; 32]),
        )
        .expect("plane sealed key opens");
    assert_eq!(
        (plane.secret.0, plane.rotate_secs, plane.period),
        ([0x66; 32], 0, 0)
    );
    let update = Update::from_bytes(&stored["update"], &descriptor.authority, &descriptor.domain)
        .expect("update verifies");
    assert_eq!(update.body.revoked, vec![3]);
    assert!(update.descriptor.is_revoked(3));
    let env = Envelope::parse(&stored["envelope"]).expect("envelope parses");
    env.verify(&descriptor.domain, cert.verifying_key())
        .expect("envelope verifies");
    let plain = env
        .open(
            &descriptor.domain,
            &secret.secret.message_key(
                &descriptor.domain,
                1,
                1,
                Chain::period_of(secret.rotate_secs, env.header.seq),
            ),
        )
        .expect("envelope opens");
    assert_eq!(
        AlertBody::decode(&plain).expect("alert").text,
        "gate 3 forced"
    );
    assert!(
        env.overhead() <= 100,
        "envelope overhead {} bytes",
        env.overhead()
    );
}

#[test]
fn stored_plane_vectors_open() {
    let stored = parse(&std::fs::read_to_string(path()).expect("vectors"));
    let domain: [u8; 32] = stored["domain_id"].clone().try_into().expect("32 bytes");
    let key = plane_key(&domain, 1, &PLANE_SECRET);
    assert_eq!(key.0.to_vec(), stored["plane_key"]);
    let mut keys = plane::PlaneKeys::new();
    keys.insert(1, key);
    let mut d = stored["plane_datagram"].clone();
    let (epoch, inner) = keys.open(&domain, &mut d).expect("datagram opens");
    assert_eq!(
        (epoch, inner.kind, inner.sender, inner.pseq),
        (1, Kind::Alert, 7, 1)
    );
    assert_eq!(
        inner.body, stored["envelope"],
        "the envelope, byte for byte"
    );
    let mut t = stored["plane_tail"].clone();
    let (_, tail) = keys.open(&domain, &mut t).expect("tail opens");
    assert_eq!(
        (tail.kind, tail.sender, tail.pseq, tail.body),
        (Kind::Tail, 7, 1, &[][..])
    );
    let mut b = stored["plane_beacon"].clone();
    let (_, beacon) = keys.open(&domain, &mut b).expect("beacon opens");
    assert_eq!(beacon.kind, Kind::Beacon);
    let device = SigningKey::from_bytes(&[0x22; 32]).verifying_key();
    let fields = plane::verify_beacon(&device, &domain, 7, 1, beacon.body).expect("signed");
    assert_eq!(
        (fields.issued_us, fields.heard_count),
        (BEACON_ISSUED_US, BEACON_HEARD)
    );
    assert!(stored["plane_datagram"].len() <= plane::PLANE_MAX_DATAGRAM);
}
