//! The durable writes of a node, one at a time (`cargo bench --bench store`), on the disk that
//! holds the system's temporary directory (set TMPDIR to measure another).
//!
//! - `lease`: raising the sequence lease, the one commit an alert can wait for before it is
//!   published (`StoreHandle::cover_seq`, proto/storage.md#the-sequence-lease);
//! - `put/1` and `put/100`: storing one envelope, and a group of 100 sharing one commit (the
//!   log of received alerts commits in groups).
//!
//! Each is a redb write transaction committed with fsync: the figures are mostly the disk's.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ptt_node::store::{Store, StoredEnvelope};

const SEQ: u64 = 1_763_780_000_000_000;

fn envelope(sender: u32, seq: u64) -> StoredEnvelope {
    StoredEnvelope {
        sender,
        seq,
        channel: 1,
        received_at_us: seq + 1_000,
        // About the size of a short sealed alert.
        bytes: vec![0x5a; 200],
    }
}

fn writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut store = Store::open(dir.path()).expect("open the store");
    let mut g = c.benchmark_group("store");
    let mut lease = SEQ;
    g.bench_function("lease", |b| {
        b.iter(|| {
            lease += 1;
            black_box(store.raise_seq_lease(lease).expect("lease"))
        })
    });
    let mut seq = SEQ;
    for n in [1usize, 100] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("put", n), &n, |b, &n| {
            b.iter(|| {
                let envs: Vec<_> = (0..n)
                    .map(|_| {
                        seq += 1;
                        envelope(9, seq)
                    })
                    .collect();
                store.put(&envs, 7).expect("put");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, writes);
criterion_main!(benches);
