//! The durable log: envelopes this node sent, received or relayed, still sealed; the highest
//! sequence number this device ever used; and the replay floors of senders whose old
//! envelopes retention removed.
//!
//! redb: an embedded, crash-safe (copy-on-write B-trees, checksummed commits), pure-Rust
//! key-value store with ACID transactions and no background threads or C dependencies, which
//! suits small devices. [`Store`] is synchronous and keeps the catch-up [`Index`] of what it
//! holds; [`StoreHandle`] runs it on its own thread (the store actor) so no caller blocks the
//! network loop on an fsync.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use crate::sync::{BucketSummary, Diff, Id, Index, Key};

/// A catch-up diff to compute (the responder's side).
#[derive(Debug, Clone)]
pub struct DiffQuery {
    /// The requester's summaries.
    pub theirs: Vec<BucketSummary>,
    /// Sequence numbers below this are not compared.
    pub cutoff: u64,
    /// Channels to compare.
    pub channels: Vec<u32>,
    /// Resume after this key.
    pub after: Option<Key>,
    /// Most keys in the reply.
    pub limit: usize,
}

/// File name of the database in the data directory.
pub const DB_FILE: &str = "store.redb";

/// (sender device, seq) → (channel, received at µs, envelope bytes).
const ENVELOPES: TableDefinition<(u32, u64), (u32, u64, &[u8])> = TableDefinition::new("envelopes");
/// (received at µs, sender, seq) → (): retention order of alerts (and directed messages).
const BY_TIME: TableDefinition<(u64, u32, u64), ()> = TableDefinition::new("by_time");
/// (received at µs, sender, seq) → (): retention order of receipts, apart, so pruning either
/// kind never walks past the other.
const RECEIPTS_BY_TIME: TableDefinition<(u64, u32, u64), ()> =
    TableDefinition::new("receipts_by_time");
/// Named counters: `own_last_seq`, `seq_lease`, `bytes`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// sender → replay floor: sequence numbers at or below it were removed by retention.
const FLOORS: TableDefinition<u32, u64> = TableDefinition::new("floors");
/// Domain updates applied: serial → (received at, Unix seconds; the update's bytes).
const UPDATES: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("updates");
/// Commands the store actor queues at most; beyond that, received envelopes are not logged
/// (counted) and requests fail with "busy" instead of growing memory.
pub const QUEUE: usize = 8192;

const OWN_LAST_SEQ: &str = "own_last_seq";
const SEQ_LEASE: &str = "seq_lease";
const BYTES: &str = "bytes";
const RECEIPT_BYTES: &str = "receipt_bytes";

/// How long and how much the log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Envelopes received longer ago than this (µs) are removed.
    pub max_age_us: u64,
    /// Oldest alerts are removed while the log holds more bytes of alerts than this;
    /// receipts have a quarter of it of their own ([`Retention::receipt_bytes`]).
    pub max_bytes: u64,
}

impl Retention {
    /// Bytes of receipts the log keeps at most, on top of `max_bytes` of alerts: a quarter
    /// of it, so that receipts never push an alert out (`proto/receipts.md`).
    pub fn receipt_bytes(&self) -> u64 {
        self.max_bytes / 4
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_us: 24 * 3600 * 1_000_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb reported an error.
    #[error("store {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        source: Box<redb::Error>,
    },
    /// A grouped write failed (the message of the underlying error).
    #[error("store write failed: {0}")]
    Write(String),
    /// The store thread is gone.
    #[error("the store has shut down")]
    Closed,
    /// The store's queue is full (the disk is not keeping up).
    #[error("the store is busy (its queue of {QUEUE} requests is full); try again shortly")]
    Busy,
}

/// One stored envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Sender device number.
    pub sender: u32,
    /// Sequence number.
    pub seq: u64,
    /// Channel number.
    pub channel: u32,
    /// When this node stored it (µs since the Unix epoch).
    pub received_at_us: u64,
    /// The envelope bytes.
    pub bytes: Vec<u8>,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Envelopes removed.
    pub removed: u64,
    /// Rows of the time indexes looked at (what the pass cost).
    pub examined: u64,
    /// Senders whose replay floor rose, with the new floor.
    pub floors: Vec<(u32, u64)>,
}

/// The synchronous store.
pub struct Store {
    db: Database,
    path: PathBuf,
    index: Index,
    /// Bytes of alerts (and directed messages) held.
    bytes: u64,
    /// Bytes of receipts held.
    receipt_bytes: u64,
}

impl Store {
    /// Opens or creates the store in `data_dir` and loads its index.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| db_err(&path, e))?;
        // Sealed envelopes only, but who talked when is still nobody else's business.
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let mut s = Store {
            db,
            path,
            index: Index::new(),
            bytes: 0,
            receipt_bytes: 0,
        };
        let tx = s.db.begin_write().map_err(|e| s.err(e))?;
        tx.open_table(ENVELOPES).map_err(|e| s.err(e))?;
        tx.open_table(BY_TIME).map_err(|e| s.err(e))?;
        tx.open_table(META).map_err(|e| s.err(e))?;
        tx.open_table(FLOORS).map_err(|e| s.err(e))?;
        tx.open_table(UPDATES).map_err(|e| s.err(e))?;
        tx.open_table(RECEIPTS_BY_TIME).map_err(|e| s.err(e))?;
        tx.commit().map_err(|e| s.err(e))?;
        for (channel, id) in s.channels_of_keys()? {
            s.index.insert(channel, id);
        }
        s.move_receipts_out_of_by_time()?;
        s.bytes = s.meta(BYTES)?;
        s.receipt_bytes = s.meta(RECEIPT_BYTES)?;
        Ok(s)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    fn meta(&self, key: &str) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        Ok(meta
            .get(key)
            .map_err(|e| self.err(e))?
            .map_or(0, |v| v.value()))
    }

    /// The catch-up index of what the store holds.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The domain updates held, by serial: (serial, received at, bytes).
    pub fn updates(&self) -> Result<Vec<(u64, u64, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(UPDATES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let (received, bytes) = v.value();
            out.push((k.value(), received, bytes.to_vec()));
        }
        Ok(out)
    }

    /// Keeps a domain update (durably).
    pub fn put_update(
        &mut self,
        serial: u64,
        received_at: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(UPDATES).map_err(|e| self.err(e))?;
            t.insert(serial, (received_at, bytes))
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Drops updates received before `before_secs` (they hold channel keys sealed about
    /// then: keeping them would keep those keys). Returns how many went.
    pub fn prune_updates(&mut self, before_secs: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut n = 0;
        {
            let mut t = tx.open_table(UPDATES).map_err(|e| self.err(e))?;
            let old: Vec<u64> = t
                .iter()
                .map_err(|e| self.err(e))?
                .filter_map(|r| r.ok())
                .filter(|(_, v)| v.value().0 < before_secs)
                .map(|(k, _)| k.value())
                .collect();
            for k in old {
                t.remove(k).map_err(|e| self.err(e))?;
                n += 1;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Stores envelopes durably (ones already present are skipped); for this device's own
    /// alerts, also raises `own_last_seq`. Returns once the commit is on disk.
    pub fn put(&mut self, envs: &[StoredEnvelope], own_device: u32) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut added: Vec<(u32, Id)> = vec![];
        let mut added_ids: std::collections::HashSet<Id> = std::collections::HashSet::new();
        let (mut bytes, mut receipt_bytes) = (self.bytes, self.receipt_bytes);
        {
            let mut t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
            let mut by_time = tx.open_table(BY_TIME).map_err(|e| self.err(e))?;
            let mut receipts_by_time = tx.open_table(RECEIPTS_BY_TIME).map_err(|e| self.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let mut own_max = None;
            for e in envs {
                let id = (e.sender, e.seq);
                if self.index.contains(id) || !added_ids.insert(id) {
                    continue;
                }
                t.insert(id, (e.channel, e.received_at_us, e.bytes.as_slice()))
                    .map_err(|x| self.err(x))?;
                let at = (e.received_at_us, e.sender, e.seq);
                if crate::receipt::is_receipt_channel(e.channel) {
                    receipts_by_time.insert(at, ()).map_err(|x| self.err(x))?;
                    receipt_bytes += e.bytes.len() as u64;
                } else {
                    by_time.insert(at, ()).map_err(|x| self.err(x))?;
                    bytes += e.bytes.len() as u64;
                }
                added.push((e.channel, id));
                if e.sender == own_device {
                    own_max = own_max.max(Some(e.seq));
                }
            }
            if let Some(seq) = own_max {
                let cur = meta
                    .get(OWN_LAST_SEQ)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value());
                if cur.is_none_or(|c| c < seq) {
                    meta.insert(OWN_LAST_SEQ, seq).map_err(|e| self.err(e))?;
                }
            }
            meta.insert(BYTES, bytes).map_err(|e| self.err(e))?;
            meta.insert(RECEIPT_BYTES, receipt_bytes)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        for (channel, id) in added {
            self.index.insert(channel, id);
        }
        self.bytes = bytes;
        self.receipt_bytes = receipt_bytes;
        Ok(())
    }

    /// Removes envelopes received before `now_us - max_age_us`, then the oldest alerts while
    /// the log holds more than `max_bytes` of them and the oldest receipts while it holds more
    /// than [`Retention::receipt_bytes`]; raises and persists the replay floors of the senders
    /// of the alerts removed (receipts raise none). Each kind is walked in its own time index,
    /// from its oldest, and only as far as it must go.
    pub fn prune(&mut self, now_us: u64, r: Retention) -> Result<Pruned, StoreError> {
        let cutoff = now_us.saturating_sub(r.max_age_us);
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut removed = vec![];
        let mut examined = 0u64;
        let (mut bytes, mut receipt_bytes) = (self.bytes, self.receipt_bytes);
        let mut floors: BTreeMap<u32, u64> = BTreeMap::new();
        {
            let mut t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let mut floor_t = tx.open_table(FLOORS).map_err(|e| self.err(e))?;
            for (table, receipts) in [(BY_TIME, false), (RECEIPTS_BY_TIME, true)] {
                let mut by_time = tx.open_table(table).map_err(|e| self.err(e))?;
                let (held, budget) = if receipts {
                    (&mut receipt_bytes, r.receipt_bytes())
                } else {
                    (&mut bytes, r.max_bytes)
                };
                let mut victims = vec![];
                let mut left = *held;
                for row in by_time.iter().map_err(|e| self.err(e))? {
                    let (k, _) = row.map_err(|e| self.err(e))?;
                    examined += 1;
                    let (at, sender, seq) = k.value();
                    if at >= cutoff && left <= budget {
                        break;
                    }
                    let (channel, len) = t
                        .get((sender, seq))
                        .map_err(|e| self.err(e))?
                        .map_or((0, 0), |v| (v.value().0, v.value().2.len() as u64));
                    left = left.saturating_sub(len);
                    victims.push((at, sender, seq, channel, len));
                }
                for (at, sender, seq, channel, len) in victims {
                    t.remove((sender, seq)).map_err(|e| self.err(e))?;
                    by_time.remove((at, sender, seq)).map_err(|e| self.err(e))?;
                    removed.push((channel, (sender, seq)));
                    *held = held.saturating_sub(len);
                    if receipts {
                        // A receipt says only what its author opened: taking one again after
                        // it is gone is harmless, so it raises no replay floor (which would
                        // refuse its author's older alerts not caught up yet).
                        continue;
                    }
                    let f = floors.entry(sender).or_insert(0);
                    *f = (*f).max(seq);
                }
            }
            for (sender, f) in &floors {
                let cur = floor_t
                    .get(*sender)
                    .map_err(|e| self.err(e))?
                    .map_or(0, |v| v.value());
                if *f > cur {
                    floor_t.insert(*sender, *f).map_err(|e| self.err(e))?;
                }
            }
            meta.insert(BYTES, bytes).map_err(|e| self.err(e))?;
            meta.insert(RECEIPT_BYTES, receipt_bytes)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        for (channel, id) in &removed {
            self.index.remove(*channel, *id);
        }
        self.bytes = bytes;
        self.receipt_bytes = receipt_bytes;
        Ok(Pruned {
            removed: removed.len() as u64,
            examined,
            floors: floors.into_iter().collect(),
        })
    }

    /// Stores written before receipts had their own time index (or written since by a build
    /// from before it) keep receipts in `by_time`: they move, at open, when the index holds
    /// more receipts than `receipts_by_time` has rows, and the byte counts of both kinds are
    /// computed again from the envelopes (a store from before receipts had a budget counted
    /// them as alerts). One transaction: a crash leaves the store as it was.
    fn move_receipts_out_of_by_time(&mut self) -> Result<(), StoreError> {
        let receipts = self.index.count_from_channel(crate::receipt::RECEIPT_FLAG);
        let rows = {
            let tx = self.db.begin_read().map_err(|e| self.err(e))?;
            let t = tx.open_table(RECEIPTS_BY_TIME).map_err(|e| self.err(e))?;
            t.len().map_err(|e| self.err(e))?
        };
        if receipts as u64 == rows {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut moved = 0usize;
        {
            let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
            let mut by_time = tx.open_table(BY_TIME).map_err(|e| self.err(e))?;
            let mut receipts_by_time = tx.open_table(RECEIPTS_BY_TIME).map_err(|e| self.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let mut rows = vec![];
            for row in by_time.iter().map_err(|e| self.err(e))? {
                let (k, _) = row.map_err(|e| self.err(e))?;
                let (at, sender, seq) = k.value();
                let receipt = t
                    .get((sender, seq))
                    .map_err(|e| self.err(e))?
                    .is_some_and(|v| crate::receipt::is_receipt_channel(v.value().0));
                if receipt {
                    rows.push((at, sender, seq));
                }
            }
            for k in rows {
                by_time.remove(k).map_err(|e| self.err(e))?;
                receipts_by_time.insert(k, ()).map_err(|e| self.err(e))?;
                moved += 1;
            }
            let (mut alerts, mut receipts) = (0u64, 0u64);
            for row in t.iter().map_err(|e| self.err(e))? {
                let (_, v) = row.map_err(|e| self.err(e))?;
                let (channel, _, bytes) = v.value();
                if crate::receipt::is_receipt_channel(channel) {
                    receipts += bytes.len() as u64;
                } else {
                    alerts += bytes.len() as u64;
                }
            }
            meta.insert(BYTES, alerts).map_err(|e| self.err(e))?;
            meta.insert(RECEIPT_BYTES, receipts)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        tracing::info!(
            receipts = moved,
            "store: receipts moved to their own time index"
        );
        Ok(())
    }

    /// The highest sequence number this device ever stored (0 if none).
    pub fn own_last_seq(&self) -> Result<u64, StoreError> {
        self.meta(OWN_LAST_SEQ)
    }

    /// The sequence lease: this device may have published sequence numbers up to it that are
    /// not in the log (0 if none). See [`StoreHandle::cover_seq`].
    pub fn seq_lease(&self) -> Result<u64, StoreError> {
        self.meta(SEQ_LEASE)
    }

    /// Raises the sequence lease to `to` (never lowers it) and returns once that is on disk.
    /// Returns the lease now held.
    pub fn raise_seq_lease(&mut self, to: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let lease;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let cur = meta
                .get(SEQ_LEASE)
                .map_err(|e| self.err(e))?
                .map_or(0, |v| v.value());
            lease = cur.max(to);
            if lease > cur {
                meta.insert(SEQ_LEASE, lease).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(lease)
    }

    /// Envelope bytes held, alerts and receipts.
    pub fn bytes(&self) -> u64 {
        self.bytes + self.receipt_bytes
    }

    /// Bytes of receipts held.
    pub fn receipt_bytes(&self) -> u64 {
        self.receipt_bytes
    }

    /// Replay floors raised by retention.
    pub fn floors(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(FLOORS).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// Every stored (channel, (sender, seq)).
    fn channels_of_keys(&self) -> Result<Vec<(u32, Id)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((v.value().0, k.value()));
        }
        Ok(out)
    }
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Cmd {
    Put(Vec<StoredEnvelope>, Option<Reply<()>>),
    Envelopes(u64, usize, Reply<Vec<StoredEnvelope>>),
    Get(Vec<Id>, usize, Reply<Vec<StoredEnvelope>>),
    Digest(u64, Vec<u32>, Reply<(u64, Vec<BucketSummary>)>),
    Diff(DiffQuery, Reply<Diff>),
    Missing(Vec<Key>, Reply<Vec<Id>>),
    Flush(Reply<()>),
    Prune(u64, Retention, Reply<Pruned>),
    Stats(Reply<(u64, u64)>),
    PutUpdate(u64, u64, Vec<u8>, Reply<()>),
    PruneUpdates(u64, Reply<u64>),
    Lease(u64, Option<Reply<u64>>),
}

/// How far beyond a sequence number [`StoreHandle::cover_seq`] takes the lease: 2 s of the
/// sender's clock (a seq is a time in µs).
pub const LEASE_AHEAD_US: u64 = 2_000_000;

/// A cloneable handle to the store thread (the store actor).
#[derive(Clone)]
pub struct StoreHandle {
    tx: Sender,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The sequence lease on disk, and the highest one asked for.
    lease: std::sync::Arc<std::sync::atomic::AtomicU64>,
    lease_asked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Lease commits written so far (waited for or not).
    lease_commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The lease commit alerts wait for, with the lease it asks for: the alerts sealed while
    /// it is under way wait for the same commit rather than each queuing one of their own.
    /// Every waiter holds the shared future, so none depends on another being polled.
    lease_wait: std::sync::Arc<std::sync::Mutex<Option<(u64, LeaseCommit)>>>,
    /// The store thread, woken by hand for commands somebody waits for (see `run`).
    thread: Option<std::thread::Thread>,
}

/// A lease commit some alerts wait for: the lease held after it, or why it failed.
type LeaseCommit = futures::future::Shared<
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send>>,
>;

/// The sending side of the store's queue: at most [`QUEUE`] commands wait. The queue is a list
/// that grows and shrinks with its contents (`std::sync::mpsc::sync_channel` would allocate all
/// 8,192 slots, about 0.8 MiB, up front and keep them).
#[derive(Clone)]
struct Sender {
    tx: mpsc::Sender<Cmd>,
    queued: std::sync::Arc<AtomicUsize>,
}

enum TrySendError {
    Full,
    Disconnected,
}

impl Sender {
    fn try_send(&self, c: Cmd) -> Result<(), TrySendError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= QUEUE {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full);
        }
        self.tx.send(c).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected
        })
    }
}

/// The receiving side (the store thread's).
struct Receiver {
    rx: mpsc::Receiver<Cmd>,
    queued: std::sync::Arc<AtomicUsize>,
}

impl Receiver {
    fn took(&self, c: Cmd) -> Cmd {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        c
    }

    fn recv(&self) -> Option<Cmd> {
        self.rx.recv().ok().map(|c| self.took(c))
    }

    fn try_recv(&self) -> Option<Cmd> {
        self.rx.try_recv().ok().map(|c| self.took(c))
    }
}

impl StoreHandle {
    /// Moves the store onto its own thread. The thread ends when every handle is dropped.
    pub fn spawn(store: Store, own_device: u32) -> Self {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let queued = std::sync::Arc::new(AtomicUsize::new(0));
        let tx = Sender {
            tx,
            queued: queued.clone(),
        };
        let rx = Receiver { rx, queued };
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lease_commits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Unreadable counts as no lease: the first publish then waits for a new one.
        let held = store.seq_lease().unwrap_or(0);
        let lease = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(held));
        let thread = std::thread::Builder::new()
            .name("ptt-store".into())
            .spawn({
                let counters = Counters {
                    commits: commits.clone(),
                    lease: lease.clone(),
                    lease_commits: lease_commits.clone(),
                };
                move || run(store, own_device, rx, &counters)
            })
            .ok()
            .map(|j| j.thread().clone());
        StoreHandle {
            tx,
            dropped: Default::default(),
            commits,
            lease,
            lease_asked: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(held)),
            lease_commits,
            lease_wait: Default::default(),
            thread,
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, StoreError> {
        self.request(make)?.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a command somebody will wait for; returns where its answer comes.
    fn request<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Cmd,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send(make(tx)).map_err(|e| match e {
            TrySendError::Full => StoreError::Busy,
            TrySendError::Disconnected => StoreError::Closed,
        })?;
        // A group of received envelopes waits parked, without reading the queue: wake it.
        if let Some(t) = &self.thread {
            t.unpark();
        }
        Ok(rx)
    }

    /// Received envelopes not logged because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Envelope commits (groups) so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The sequence lease on disk.
    pub fn lease(&self) -> u64 {
        self.lease.load(Ordering::Acquire)
    }

    /// Lease commits so far.
    pub fn lease_commits(&self) -> u64 {
        self.lease_commits.load(Ordering::Relaxed)
    }

    /// Returns once this device may publish `seq`: the lease on disk is at least `seq`, so a
    /// restart never seals it again (the node restarts above the lease). Usually the lease
    /// already covers it and this returns at once; when less than half of
    /// [`LEASE_AHEAD_US`] is left, a longer lease is written in the background, so an alert
    /// waits for the disk only when it is the first for a while. Alerts sealed while a commit
    /// is under way (a burst that starts after a quiet spell) wait for that same commit when it
    /// asks for enough: one commit covers them all, where each used to queue its own and the
    /// n-th waited for n commits.
    pub async fn cover_seq(&self, seq: u64) -> Result<(), StoreError> {
        if self.covered(seq) {
            return Ok(());
        }
        let commit = {
            let mut wait = self.lease_wait.lock().unwrap_or_else(|e| e.into_inner());
            match &*wait {
                // A commit under way that asks for enough: wait for it too.
                Some((to, c)) if seq <= *to && c.peek().is_none() => c.clone(),
                _ => {
                    let want = seq.saturating_add(LEASE_AHEAD_US);
                    self.lease_asked.fetch_max(want, Ordering::AcqRel);
                    let rx = self.request(|r| Cmd::Lease(want, Some(r)))?;
                    let answer: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
                        Box::pin(async move {
                            match rx.await {
                                Ok(r) => r.map_err(|e| e.to_string()),
                                Err(_) => Err(StoreError::Closed.to_string()),
                            }
                        });
                    let c = futures::FutureExt::shared(answer);
                    *wait = Some((want, c.clone()));
                    c
                }
            }
        };
        match commit.await {
            Ok(lease) if seq <= lease => Ok(()),
            Ok(_) => Err(StoreError::Write("sequence lease not raised".into())),
            Err(e) => Err(StoreError::Write(e)),
        }
    }

    /// Whether the lease on disk covers `seq`; when less than half of [`LEASE_AHEAD_US`] is
    /// left beyond it, also queues a longer lease without waiting for it.
    fn covered(&self, seq: u64) -> bool {
        if seq > self.lease() {
            return false;
        }
        let want = seq.saturating_add(LEASE_AHEAD_US);
        let soon = seq.saturating_add(LEASE_AHEAD_US / 2);
        // Less than half left, and no request already on its way that reaches far enough.
        if self.lease() < soon && self.lease_asked.fetch_max(want, Ordering::AcqRel) < soon {
            // Full or closed, or the write fails on the thread: once the lease runs out, the
            // next alert asks again and waits for the answer (`cover_seq`).
            let _ = self.tx.try_send(Cmd::Lease(want, None));
        }
        true
    }

    /// Keeps a domain update durably.
    pub async fn put_update(
        &self,
        serial: u64,
        received_at: u64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.ask(|r| Cmd::PutUpdate(serial, received_at, bytes, r))
            .await
    }

    /// Drops updates issued before `before_secs`.
    pub async fn prune_updates(&self, before_secs: u64) -> Result<u64, StoreError> {
        self.ask(|r| Cmd::PruneUpdates(before_secs, r)).await
    }

    /// Stores durably and waits for the commit.
    pub async fn put_durable(&self, env: StoredEnvelope) -> Result<(), StoreError> {
        self.ask(|r| Cmd::Put(vec![env], Some(r))).await
    }

    /// Stores without waiting (received envelopes: one lost in a crash is fetched again from
    /// a peer by catch-up).
    pub fn put(&self, env: StoredEnvelope) {
        if let Err(TrySendError::Full) = self.tx.try_send(Cmd::Put(vec![env], None)) {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Stored envelopes received since `since_us`.
    pub async fn envelopes(
        &self,
        since_us: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.ask(|r| Cmd::Envelopes(since_us, limit, r)).await
    }

    /// Stored envelopes by id, up to `max_bytes`.
    pub async fn get(
        &self,
        ids: Vec<Id>,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.ask(|r| Cmd::Get(ids, max_bytes, r)).await
    }

    /// The catch-up digest of `channels`' buckets at or after `cutoff`, and the cutoff it
    /// covers ([`crate::sync::Index::digest`]).
    pub async fn digest(
        &self,
        cutoff: u64,
        channels: Vec<u32>,
    ) -> Result<(u64, Vec<BucketSummary>), StoreError> {
        self.ask(|r| Cmd::Digest(cutoff, channels, r)).await
    }

    /// The catch-up diff against a peer's digest.
    pub async fn diff(&self, q: DiffQuery) -> Result<Diff, StoreError> {
        self.ask(|r| Cmd::Diff(q, r)).await
    }

    /// Which offered keys the store lacks.
    pub async fn missing(&self, offered: Vec<Key>) -> Result<Vec<Id>, StoreError> {
        self.ask(|r| Cmd::Missing(offered, r)).await
    }

    /// Waits until everything queued before it is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.ask(Cmd::Flush).await
    }

    /// Applies retention.
    pub async fn prune(&self, now_us: u64, r: Retention) -> Result<Pruned, StoreError> {
        self.ask(|reply| Cmd::Prune(now_us, r, reply)).await
    }

    /// (envelopes held, envelope bytes held).
    pub async fn stats(&self) -> Result<(u64, u64), StoreError> {
        self.ask(Cmd::Stats).await
    }
}

/// redb's own page cache. Its default (1 GiB) let the whole log, up to the retention size, end
/// up in the daemon's memory; the operating system's page cache serves re-reads anyway. Half of
/// it is redb's write buffer, which keeps the pages of group commits until the cache is full: at
/// 2 MiB a daemon idling after a burst still held about 0.65 MiB of them (heaptrack), and the
/// store thread's heap stayed at about 0.95 MiB resident; at 256 KiB it is about 0.57 MiB, with
/// the same burst rate and CPU (bench-mesh, 10 nodes, 3 runs each).
const CACHE_BYTES: usize = 256 << 10;

/// How long received envelopes wait for others to share their commit.
const GROUP_WINDOW: Duration = Duration::from_millis(100);
/// A group stops waiting for company at this many envelopes (it still takes every put
/// already queued, so a commit holds at most this plus `QUEUE`).
const GROUP_MAX: usize = 1024;

/// What the store thread counts for its handles.
struct Counters {
    commits: std::sync::Arc<AtomicU64>,
    lease: std::sync::Arc<AtomicU64>,
    lease_commits: std::sync::Arc<AtomicU64>,
}

fn run(mut store: Store, own_device: u32, rx: Receiver, counters: &Counters) {
    let Counters {
        commits,
        lease,
        lease_commits,
    } = counters;
    let mut next: Option<Cmd> = None;
    loop {
        let cmd = match next.take() {
            Some(c) => c,
            None => match rx.recv() {
                Some(c) => c,
                None => break,
            },
        };
        match cmd {
            Cmd::Put(mut envs, reply) => {
                // Group commit: puts queued meanwhile share one fsync. Received envelopes
                // (nobody waits for them) are also held up to GROUP_WINDOW for more to share
                // it: a burst costs a few commits instead of hundreds, and a crash loses at
                // most that window of received alerts, which catch-up fetches again. A durable
                // put or any other command commits at once.
                //
                // While the group waits, the thread is parked rather than blocked on the queue:
                // a received envelope only joins the queue, without a wake-up (a futex wake
                // and two context switches per envelope, about a tenth of a receiver's CPU in
                // a burst). Commands somebody waits for, durable puts included, unpark it
                // (`StoreHandle::ask`).
                let deadline = Instant::now() + GROUP_WINDOW;
                let mut waited = reply.is_some();
                let mut replies = vec![reply];
                loop {
                    match rx.try_recv() {
                        Some(Cmd::Put(more, r)) => {
                            waited |= r.is_some();
                            envs.extend(more);
                            replies.push(r);
                            continue;
                        }
                        Some(other) => {
                            next = Some(other);
                            break;
                        }
                        None => {}
                    }
                    let now = Instant::now();
                    if waited || envs.len() >= GROUP_MAX || now >= deadline {
                        break;
                    }
                    std::thread::park_timeout(deadline - now);
                }
                let res = store.put(&envs, own_device);
                commits.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = &res {
                    tracing::error!(error = %e, "store write failed");
                }
                for r in replies.into_iter().flatten() {
                    let _ = r.send(match &res {
                        Ok(()) => Ok(()),
                        Err(e) => Err(StoreError::Write(e.to_string())),
                    });
                }
            }
            Cmd::Envelopes(since, limit, r) => {
                let _ = r.send(store.envelopes(since, limit));
            }
            Cmd::Get(ids, max, r) => {
                let _ = r.send(store.get(&ids, max));
            }
            Cmd::Digest(cutoff, channels, r) => {
                let _ = r.send(Ok(store.index().digest(cutoff, &channels)));
            }
            Cmd::Diff(q, r) => {
                let d = store
                    .index()
                    .diff(&q.theirs, q.cutoff, &q.channels, q.after, q.limit);
                let _ = r.send(Ok(d));
            }
            Cmd::Flush(r) => {
                let _ = r.send(Ok(()));
            }
            Cmd::Missing(offered, r) => {
                let _ = r.send(Ok(store.index().missing(&offered)));
            }
            Cmd::Prune(now, ret, r) => {
                let _ = r.send(store.prune(now, ret));
            }
            Cmd::Stats(r) => {
                let _ = r.send(Ok((store.index().len() as u64, store.bytes())));
            }
            Cmd::PutUpdate(serial, issued, bytes, r) => {
                let _ = r.send(store.put_update(serial, issued, &bytes));
            }
            Cmd::PruneUpdates(before, r) => {
                let _ = r.send(store.prune_updates(before));
            }
            Cmd::Lease(to, r) => {
                let res = store.raise_seq_lease(to);
                lease_commits.fetch_add(1, Ordering::Relaxed);
                match &res {
                    Ok(v) => {
                        lease.fetch_max(*v, Ordering::AcqRel);
                    }
                    Err(e) => tracing::error!(error = %e, "sequence lease not written"),
                }
                if let Some(r) = r {
                    let _ = r.send(res);
                }
            }
        }
    }
}

mod read;
#[cfg(test)]
mod tests;
