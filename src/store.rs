//! The durable log: envelopes this node sent, received or relayed, still sealed, and the
//! highest sequence number this device ever used.
//!
//! redb: an embedded, crash-safe (copy-on-write B-trees, checksummed commits), pure-Rust
//! key-value store with ACID transactions and no background threads or C dependencies,
//! which suits small devices. [`Store`] is synchronous; [`StoreHandle`] runs it on its own
//! thread so no caller blocks the network loop on an fsync.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

/// File name of the database in the data directory.
pub const DB_FILE: &str = "store.redb";

/// (sender device, seq) → (channel, received at µs, envelope bytes).
const ENVELOPES: TableDefinition<(u32, u64), (u32, u64, &[u8])> = TableDefinition::new("envelopes");
/// Named counters such as `own_last_seq`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const OWN_LAST_SEQ: &str = "own_last_seq";

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

/// The synchronous store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens or creates the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| db_err(&path, e))?;
        // Sealed envelopes only, but who talked when is still nobody else's business.
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let s = Store { db, path };
        let tx = s.db.begin_write().map_err(|e| s.err(e))?;
        tx.open_table(ENVELOPES).map_err(|e| s.err(e))?;
        tx.open_table(META).map_err(|e| s.err(e))?;
        tx.commit().map_err(|e| s.err(e))?;
        Ok(s)
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    /// Stores envelopes durably; for this device's own alerts, also raises `own_last_seq`.
    /// Returns once the commit is on disk.
    pub fn put(&self, envs: &[StoredEnvelope], own_device: u32) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let mut own_max = None;
            for e in envs {
                t.insert(
                    (e.sender, e.seq),
                    (e.channel, e.received_at_us, e.bytes.as_slice()),
                )
                .map_err(|x| self.err(x))?;
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
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The highest sequence number this device ever stored (0 if none).
    pub fn own_last_seq(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        Ok(meta
            .get(OWN_LAST_SEQ)
            .map_err(|e| self.err(e))?
            .map_or(0, |v| v.value()))
    }

    /// Every stored (sender, seq), in order.
    pub fn keys(&self) -> Result<Vec<(u32, u64)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, _) = row.map_err(|e| self.err(e))?;
            out.push(k.value());
        }
        Ok(out)
    }

    /// Stored envelopes with `received_at_us >= since_us`, oldest key first, at most `limit`.
    pub fn envelopes(
        &self,
        since_us: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let (sender, seq) = k.value();
            let (channel, received_at_us, bytes) = v.value();
            if received_at_us >= since_us {
                out.push(StoredEnvelope {
                    sender,
                    seq,
                    channel,
                    received_at_us,
                    bytes: bytes.to_vec(),
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Number of stored envelopes.
    pub fn len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }

    /// Whether the store holds no envelope.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

enum Cmd {
    Put(
        Vec<StoredEnvelope>,
        Option<oneshot::Sender<Result<(), StoreError>>>,
    ),
    Envelopes(
        u64,
        usize,
        oneshot::Sender<Result<Vec<StoredEnvelope>, StoreError>>,
    ),
}

/// A cloneable handle to the store thread (the store actor).
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Cmd>,
}

impl StoreHandle {
    /// Moves the store onto its own thread. The thread ends when every handle is dropped.
    pub fn spawn(store: Store, own_device: u32) -> Self {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("ptt-store".into())
            .spawn(move || {
                let mut next: Option<Cmd> = None;
                loop {
                    let cmd = match next.take() {
                        Some(c) => c,
                        None => match rx.recv() {
                            Ok(c) => c,
                            Err(_) => break,
                        },
                    };
                    match cmd {
                        Cmd::Put(mut envs, reply) => {
                            // Group commit: puts queued meanwhile share one fsync.
                            let mut replies = vec![reply];
                            while let Ok(c) = rx.try_recv() {
                                match c {
                                    Cmd::Put(more, r) => {
                                        envs.extend(more);
                                        replies.push(r);
                                    }
                                    other => {
                                        next = Some(other);
                                        break;
                                    }
                                }
                            }
                            let res = store.put(&envs, own_device);
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
                        Cmd::Envelopes(since, limit, reply) => {
                            let _ = reply.send(store.envelopes(since, limit));
                        }
                    }
                }
            })
            .ok();
        StoreHandle { tx }
    }

    /// Stores durably and waits for the commit.
    pub async fn put_durable(&self, env: StoredEnvelope) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Put(vec![env], Some(tx)))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores without waiting (received envelopes: losing one in a crash only means
    /// fetching it again from a peer).
    pub fn put(&self, env: StoredEnvelope) {
        let _ = self.tx.send(Cmd::Put(vec![env], None));
    }

    /// Stored envelopes received since `since_us`.
    pub async fn envelopes(
        &self,
        since_us: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Envelopes(since_us, limit, tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(sender: u32, seq: u64) -> StoredEnvelope {
        StoredEnvelope {
            sender,
            seq,
            channel: 1,
            received_at_us: seq,
            bytes: vec![sender as u8; 10],
        }
    }

    #[test]
    fn survives_reopen_and_tracks_own_seq() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.own_last_seq().unwrap(), 0);
            s.put(&[env(1, 5), env(2, 9), env(1, 7)], 1).unwrap();
            s.put(&[env(1, 6)], 1).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.own_last_seq().unwrap(), 7);
        assert_eq!(s.keys().unwrap(), vec![(1, 5), (1, 6), (1, 7), (2, 9)]);
        assert_eq!(s.envelopes(7, 10).unwrap().len(), 2);
        assert_eq!(s.len().unwrap(), 4);
    }

    #[tokio::test]
    async fn handle_commits_before_replying() {
        let dir = tempfile::tempdir().unwrap();
        let h = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 3);
        h.put_durable(env(3, 42)).await.unwrap();
        h.put(env(4, 1));
        assert_eq!(h.envelopes(0, 10).await.unwrap().len(), 2);
        drop(h);
        // The thread releases the file once the handle is gone; reopening then sees the data.
        let mut reopened = None;
        for _ in 0..100 {
            if let Ok(s) = Store::open(dir.path()) {
                reopened = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(reopened.expect("store reopens").own_last_seq().unwrap(), 42);
    }
}
