//! Receipts on the node (`proto/receipts.md`): sealing this device's own, opening members'.
//! Validation is the alerts' ([`super::validate`]), told apart by the header's channel.

use super::seal::{SealError, Sealed};
use super::validate::{Rejection, Unreadable};
use super::{DIRECT_CHANNEL, DIRECT_CHANNEL_NAME, Node};
use crate::cert::ChannelPolicy;
use crate::envelope::{self, Envelope, Header, Kind};
use crate::keys::MessageKey;
use crate::receipt::{self, Ack, Opened, ReceiptBody};

/// Receipts one member may send per channel: ten a second, 60 at once. A member sends one per
/// channel per window (`proto/receipts.md`), two a second, and more when a batch splits or for
/// acknowledgements and directed messages (which share one bucket): the headroom keeps an
/// honest member's receipts, and their duplicate copies by plane and gossip, within it. The
/// alert rate of the channel is not spent, so a member that may read but not write sends them.
pub const RECEIPT_POLICY: ChannelPolicy = ChannelPolicy {
    rate_per_min: 600,
    burst: 60,
    rotate_secs: 0,
};

/// A receipt accepted and opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedReceipt {
    /// The member that opened the alerts (the receipt's sender).
    pub author: u32,
    /// Its name.
    pub author_name: String,
    /// The channel of the alerts it reports (0: directed messages).
    pub channel: u32,
    /// That channel's name.
    pub channel_name: String,
    /// The receipt's own seq (the author's clock when it sealed it, µs).
    pub seq: u64,
    /// The alerts it opened.
    pub opened: Vec<Opened>,
    /// The alerts it acknowledged.
    pub acks: Vec<Ack>,
}

impl Node {
    /// A member's name, or `device N` when this node does not know its certificate.
    pub fn member_name(&self, device: u32) -> String {
        self.roster
            .get(&device)
            .map_or_else(|| format!("device {device}"), |c| c.body.name.clone())
    }

    /// The members that can read `channel` at `now_secs` (their certificate grants it, is
    /// valid and not revoked; relay-only devices never read), by device number.
    pub fn readers_of(&self, channel: u32, now_secs: u64) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .roster
            .values()
            .filter(|c| {
                !c.body.relay_only
                    && c.grant(channel).is_some_and(|g| g.read)
                    && c.check_time(now_secs).is_ok()
                    && !self.descriptor.is_revoked(c.body.device)
            })
            .map(|c| (c.body.device, c.body.name.clone()))
            .collect();
        v.sort_unstable();
        v
    }

    /// A channel's name (`direct` for directed messages, the number when unknown).
    pub fn channel_name(&self, channel: u32) -> String {
        if channel == DIRECT_CHANNEL {
            return DIRECT_CHANNEL_NAME.to_string();
        }
        self.descriptor
            .channel_by_id(channel)
            .map(|c| c.name.clone())
            .or_else(|| self.cert.grant(channel).map(|g| g.name.clone()))
            .unwrap_or_else(|| channel.to_string())
    }

    /// Seals a receipt listing alerts of `channel` this device opened, and acknowledgements,
    /// at `now_us`. For directed messages (`channel` 0), `to` is their sender: the receipt is
    /// directed to it. Needs the right to read the channel, not to write it. The caller
    /// publishes it once a durable lease covers its seq, as for an alert.
    pub fn seal_receipt(
        &mut self,
        channel: u32,
        to: Option<u32>,
        body: &ReceiptBody,
        now_us: u64,
    ) -> Result<Sealed, SealError> {
        if self.is_revoked_self() {
            return Err(SealError::Revoked);
        }
        let me = self.cert.body.device;
        let (name, epoch, direct) = if channel == DIRECT_CHANNEL {
            let to = to.ok_or_else(|| {
                SealError::Invalid("a receipt for directed messages names their sender".into())
            })?;
            let other = self
                .roster
                .get(&to)
                .ok_or_else(|| SealError::UnknownDevice(format!("device {to}")))?;
            let key = crate::keys::direct_key(
                self.domain(),
                &self.secrets.x25519,
                &other.body.x25519,
                me,
                to,
            );
            (DIRECT_CHANNEL_NAME.to_string(), to, Some(key))
        } else {
            let g = self
                .cert
                .grant(channel)
                .filter(|g| g.read)
                .ok_or_else(|| SealError::NotAllowed(format!("channel {channel}")))?;
            let name = g.name.clone();
            let epoch = *self
                .current_epoch
                .get(&channel)
                .ok_or_else(|| SealError::NoKey(name.clone()))?;
            (name, epoch, None)
        };
        let plain = body.encode();
        if plain.len() > receipt::MAX_RECEIPT_PLAIN {
            return Err(SealError::TooLarge(plain.len()));
        }
        let seq = self.next_seq(channel, epoch, now_us);
        let key = match direct {
            Some(k) => k,
            None => self
                .key_for(channel, epoch, seq)
                .map_err(|_| SealError::NoKey(name.clone()))?,
        };
        let rc = receipt::receipt_channel(channel);
        if self.own_limit
            && let Err(wait_us) = self.take_budget(me, rc, now_us)
        {
            return Err(SealError::RateLimited {
                channel: format!("{name} (receipts)"),
                rate_per_min: RECEIPT_POLICY.rate_per_min,
                burst: RECEIPT_POLICY.burst,
                retry_ms: wait_us.div_ceil(1000),
            });
        }
        let bytes = self.seal_own(Kind::Receipt, rc, epoch, seq, &key, &plain);
        let _ = self.replay.insert(me, seq);
        self.counters.receipts_sent += 1;
        Ok(Sealed {
            bytes,
            id: envelope::alert_id(self.domain(), me, seq),
            channel: rc,
            channel_name: name,
            seq,
        })
    }

    /// The key an envelope of header `h` on channel `base` (its header's channel without the
    /// receipt flag) opens with here: the pairwise key of a directed one at its two ends, else
    /// the channel's key when this device reads it.
    pub(super) fn envelope_key(&self, h: &Header, base: u32) -> Result<MessageKey, Unreadable> {
        let me = self.cert.body.device;
        if base != DIRECT_CHANNEL {
            if !self.cert.grant(base).is_some_and(|g| g.read) {
                return Err(Unreadable::NotReader);
            }
            return self.key_for(base, h.epoch, h.seq);
        }
        // A directed envelope opens at its recipient (`epoch`), and at its sender (its own
        // log): the pairwise key is the same from both ends.
        let other = if h.epoch == me {
            self.roster.get(&h.sender)
        } else if h.sender == me {
            self.roster.get(&h.epoch)
        } else {
            None
        };
        let other = other.ok_or(Unreadable::NotReader)?;
        Ok(crate::keys::direct_key(
            self.domain(),
            &self.secrets.x25519,
            &other.body.x25519,
            h.sender,
            h.epoch,
        ))
    }

    /// Opens a receipt from this node's own log, which holds only envelopes that passed
    /// validation, so its signature is not checked again (rebuilding the ledger at start costs
    /// a decryption per receipt, not a signature). `None` for anything else.
    pub fn open_logged_receipt(&self, bytes: &[u8]) -> Option<ReceivedReceipt> {
        let env = Envelope::parse(bytes).ok()?;
        let base = receipt::base_channel(env.header.channel);
        if base == env.header.channel {
            return None;
        }
        let name = self.channel_name(base);
        match self.open_receipt(env, name) {
            Ok((_, Ok(r))) => Some(*r),
            _ => None,
        }
    }

    /// Opens a receipt from this node's log or its unread queue (validated before), telling an
    /// unknown key epoch (`Err(Some(..))`: it may open once the epoch's update arrives) from
    /// anything that never will (`Err(None)`).
    pub fn reopen_receipt(&self, bytes: &[u8]) -> Result<ReceivedReceipt, Option<Unreadable>> {
        let env = Envelope::parse(bytes).map_err(|_| None)?;
        let base = receipt::base_channel(env.header.channel);
        if base == env.header.channel {
            return Err(None);
        }
        let name = self.channel_name(base);
        match self.open_receipt(env, name) {
            Ok((_, Ok(r))) => Ok(*r),
            Ok((_, Err(u))) => Err(Some(u)),
            Err(_) => Err(None),
        }
    }

    /// Opens a verified receipt when this device may read it.
    pub(super) fn open_receipt(
        &self,
        env: Envelope,
        channel_name: String,
    ) -> Result<(Envelope, Result<Box<ReceivedReceipt>, Unreadable>), Rejection> {
        let h = env.header;
        let base = receipt::base_channel(h.channel);
        // Validation found the author's certificate; at start, reading the log, this node may
        // not know it yet.
        let author_name = self.member_name(h.sender);
        let key = match self.envelope_key(&h, base) {
            Ok(k) => k,
            Err(u) => return Ok((env, Err(u))),
        };
        let plain = env.open(self.domain(), &key)?;
        let body = ReceiptBody::decode(&plain).map_err(|_| Rejection::BadPlaintext)?;
        let r = ReceivedReceipt {
            author: h.sender,
            author_name,
            channel: base,
            channel_name,
            seq: h.seq,
            opened: body.opened(),
            acks: body.acks().to_vec(),
        };
        Ok((env, Ok(Box::new(r))))
    }
}
