//! Reading the log: ids, envelopes by id, by time from a point, the newest, and counts.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{BY_TIME, ENVELOPES, Id, RECEIPTS_BY_TIME, Store, StoreError, StoredEnvelope};

/// A row of `envelopes` as a [`StoredEnvelope`].
fn stored(
    sender: u32,
    seq: u64,
    channel: u32,
    received_at_us: u64,
    bytes: &[u8],
) -> StoredEnvelope {
    StoredEnvelope {
        sender,
        seq,
        channel,
        received_at_us,
        bytes: bytes.to_vec(),
    }
}

impl Store {
    /// Every stored (sender, seq), in order.
    pub fn keys(&self) -> Result<Vec<Id>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, _) = row.map_err(|e| self.err(e))?;
            out.push(k.value());
        }
        Ok(out)
    }

    /// The envelopes with these ids that the store holds, up to `max_bytes` in total.
    pub fn get(&self, ids: &[Id], max_bytes: usize) -> Result<Vec<StoredEnvelope>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        let mut total = 0;
        for &(sender, seq) in ids {
            if let Some(v) = t.get((sender, seq)).map_err(|e| self.err(e))? {
                let (channel, received_at_us, bytes) = v.value();
                total += bytes.len();
                if total > max_bytes && !out.is_empty() {
                    break;
                }
                out.push(stored(sender, seq, channel, received_at_us, bytes));
            }
        }
        Ok(out)
    }

    /// Alerts (and directed messages) received at or after `since_us`, oldest first, at most
    /// `limit` (receipts are not among them).
    pub fn envelopes(
        &self,
        since_us: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let by_time = tx.open_table(BY_TIME).map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in by_time.range((since_us, 0, 0)..).map_err(|e| self.err(e))? {
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (_, sender, seq) = k.value();
            if let Some(v) = t.get((sender, seq)).map_err(|e| self.err(e))? {
                let (channel, received_at_us, bytes) = v.value();
                out.push(stored(sender, seq, channel, received_at_us, bytes));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The newest alerts (and directed messages) by time received, at most `limit`, newest
    /// first.
    pub fn newest(&self, limit: usize) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.newest_in(BY_TIME, limit)
    }

    /// The newest receipts by time received, at most `limit`, newest first.
    pub fn newest_receipts(&self, limit: usize) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.newest_in(RECEIPTS_BY_TIME, limit)
    }

    fn newest_in(
        &self,
        table: redb::TableDefinition<(u64, u32, u64), ()>,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let by_time = tx.open_table(table).map_err(|e| self.err(e))?;
        let t = tx.open_table(ENVELOPES).map_err(|e| self.err(e))?;
        let mut out = vec![];
        for row in by_time.iter().map_err(|e| self.err(e))?.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, _) = row.map_err(|e| self.err(e))?;
            let (_, sender, seq) = k.value();
            if let Some(v) = t.get((sender, seq)).map_err(|e| self.err(e))? {
                let (channel, received_at_us, bytes) = v.value();
                out.push(stored(sender, seq, channel, received_at_us, bytes));
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
