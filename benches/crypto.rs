//! The per-alert work of a node, one primitive at a time (`cargo bench`).
//!
//! Sealing an alert is: encode the alert (postcard), derive the period's message key (HKDF),
//! encrypt (AES-256-GCM), sign (Ed25519). Opening one is: parse, verify the signature, derive,
//! decrypt, decode, and record the sequence number in the replay window. A node does one seal
//! per alert it sends and one open per alert it receives; a relay verifies but never opens.
//! Payload sizes are the alert text: 64 B, 512 B and 4 KiB.
//!
//! `plane` is the multicast data plane's per-datagram cost before any signature work: opening
//! a 200-byte datagram (about a 64-byte alert's) with XChaCha20-Poly1305, and failing to open
//! one whose tag is wrong, which is all that outsider junk costs a member.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use ptt_node::alert::{AlertBody, Severity};
use ptt_node::cert::Certificate;
use ptt_node::envelope::{self, Envelope, Header};
use ptt_node::keys::{ChannelSecret, DomainId};
use ptt_node::replay::ReplayGuard;

const SIZES: [usize; 3] = [64, 512, 4096];
const SEQ: u64 = 1_763_780_000_000_000;

struct Fixture {
    sender: SigningKey,
    domain: DomainId,
    secret: ChannelSecret,
}

fn fixture() -> Fixture {
    let authority = SigningKey::from_bytes(&[0x11; 32]);
    Fixture {
        sender: SigningKey::from_bytes(&[0x22; 32]),
        domain: DomainId::from_authority(&authority.verifying_key()),
        secret: ChannelSecret([7; 32]),
    }
}

fn alert(size: usize) -> AlertBody {
    AlertBody {
        severity: Severity::Severe,
        kind: "intrusion".into(),
        text: "x".repeat(size),
        location: None,
        attributes: vec![("zone".into(), "north".into())],
        reference: None,
    }
}

fn header(f: &Fixture, seq: u64) -> Header {
    Header {
        version: envelope::VERSION,
        domain_tag: f.domain.tag(),
        channel: 1,
        epoch: 1,
        sender: 7,
        seq,
    }
}

fn seal_one(f: &Fixture, body: &AlertBody, seq: u64) -> Vec<u8> {
    let key = f.secret.message_key(&f.domain, 1, 1, seq / 3_600_000_000);
    envelope::seal(&f.sender, &f.domain, &header(f, seq), &key, &body.encode())
}

fn seal_and_open(c: &mut Criterion) {
    let f = fixture();
    let vk = f.sender.verifying_key();
    let mut g = c.benchmark_group("alert");
    for size in SIZES {
        let body = alert(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &body, |b, body| {
            b.iter(|| seal_one(&f, black_box(body), SEQ))
        });
        let bytes = seal_one(&f, &body, SEQ);
        g.bench_with_input(BenchmarkId::new("verify", size), &bytes, |b, bytes| {
            b.iter(|| {
                let env = Envelope::parse(black_box(bytes)).unwrap();
                env.verify(&f.domain, &vk).unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("open", size), &bytes, |b, bytes| {
            b.iter(|| {
                let env = Envelope::parse(black_box(bytes)).unwrap();
                env.verify(&f.domain, &vk).unwrap();
                let h = env.header;
                let key =
                    f.secret
                        .message_key(&f.domain, h.channel, h.epoch, h.seq / 3_600_000_000);
                AlertBody::decode(&env.open(&f.domain, &key).unwrap()).unwrap()
            })
        });
    }
    g.finish();
}

fn parts(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("parts");
    g.bench_function("message_key (HKDF)", |b| {
        b.iter(|| f.secret.message_key(&f.domain, 1, black_box(1), 490_000))
    });
    g.bench_function("ratchet step (HKDF)", |b| {
        b.iter(|| black_box(&f.secret).ratchet())
    });
    for size in SIZES {
        let body = alert(size);
        let bytes = body.encode();
        g.bench_with_input(
            BenchmarkId::new("postcard encode", size),
            &body,
            |b, body| b.iter(|| black_box(body).encode()),
        );
        g.bench_with_input(
            BenchmarkId::new("postcard decode", size),
            &bytes,
            |b, bytes| b.iter(|| AlertBody::decode(black_box(bytes)).unwrap()),
        );
    }

    // The golden vectors' certificate, verified as at every handshake.
    let vectors = include_str!("../proto/vectors/v1.txt");
    let cert_hex = vectors
        .lines()
        .find_map(|l| l.strip_prefix("certificate = "))
        .expect("certificate vector");
    let cert = hex::decode(cert_hex.trim()).unwrap();
    let authority = SigningKey::from_bytes(&[0x11; 32]).verifying_key();
    g.bench_function("certificate verify", |b| {
        b.iter(|| Certificate::from_bytes(black_box(&cert), &authority, &f.domain).unwrap())
    });

    // One signature check, as every received alert costs: ed25519-dalek's verify_strict on the
    // joined message, and keys::verify, which checks the same without decompressing R or
    // copying the message (src/keys.rs).
    let msg = [0x5au8; 300];
    let sig = ptt_node::keys::sign(&f.sender, ptt_node::keys::SIG_ENVELOPE, &msg);
    let vk = f.sender.verifying_key();
    g.bench_function("ed25519 verify_strict (ed25519-dalek)", |b| {
        b.iter(|| {
            let mut full = ptt_node::keys::SIG_ENVELOPE.to_vec();
            full.push(0);
            full.extend_from_slice(black_box(&msg));
            vk.verify_strict(&full, &ed25519_dalek::Signature::from_bytes(&sig))
                .unwrap()
        })
    });
    g.bench_function("ed25519 verify (keys::verify)", |b| {
        b.iter(|| {
            assert!(ptt_node::keys::verify(
                &vk,
                ptt_node::keys::SIG_ENVELOPE,
                black_box(&msg),
                &sig
            ))
        })
    });

    // The replay window: one sender, and 50 senders whose windows are full (65,536 sequence
    // numbers each, as a node keeps), so every insert also evicts the lowest.
    g.bench_function("replay insert, 1 sender", |b| {
        let mut guard = ReplayGuard::new(ptt_node::node::DEFAULT_REPLAY_WINDOW);
        let mut seq = SEQ;
        b.iter(|| {
            seq += 1;
            guard.insert(7, black_box(seq)).unwrap()
        })
    });
    g.bench_function("replay insert, 50 senders, full windows", |b| {
        let window = ptt_node::node::DEFAULT_REPLAY_WINDOW as u64;
        let mut guard = ReplayGuard::new(window as usize);
        for s in 0..50u32 {
            for i in 0..window {
                guard.insert(s, SEQ + i).unwrap();
            }
        }
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            guard
                .insert((i % 50) as u32, black_box(SEQ + window + i))
                .unwrap()
        })
    });
    g.finish();
}

/// Length of the plane datagrams opened: about what a 64-byte alert's envelope makes.
const PLANE_DATAGRAM: usize = 200;

fn plane(c: &mut Criterion) {
    use ptt_node::keys::PlaneKey;
    use ptt_node::plane::{self, Kind, PlaneError};
    let key = PlaneKey([0x33; 32]);
    let domain = [0x44; 32];
    let prefix = [0x55; ptt_node::plane::PLANE_NONCE_PREFIX_LEN];
    // One-byte varints for sender 7 and pseq 1: 45 bytes of overhead.
    let body = vec![0xa5; PLANE_DATAGRAM - 45];
    let good = plane::seal(&key, 1, &domain, &prefix, 1, Kind::Alert, 7, 1, &body).unwrap();
    assert_eq!(good.len(), PLANE_DATAGRAM);
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    let mut g = c.benchmark_group("plane");
    g.throughput(Throughput::Elements(1));
    // open decrypts in place: each iteration copies the datagram first (a 200-byte copy, a few
    // nanoseconds), as a receiver's buffer holds a fresh one.
    let mut buf = [0u8; PLANE_DATAGRAM];
    g.bench_function("open 200 B", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&good));
            plane::open(&key, &domain, &mut buf).unwrap().pseq
        })
    });
    g.bench_function("failed open 200 B (junk)", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&bad));
            assert_eq!(
                plane::open(&key, &domain, &mut buf).unwrap_err(),
                PlaneError::Junk
            );
        })
    });
    g.finish();
}

criterion_group!(benches, seal_and_open, parts, plane);
criterion_main!(benches);
