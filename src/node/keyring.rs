//! The channel key chains this device holds: message and voice keys derived per ratchet
//! period and cached, old periods erased, the plane epochs and their overlap, the state to
//! save. Never writes the state itself and reads no clock.

use super::{KEY_CACHE, NETWORK_KEY_CHANNEL, Node, PLANE_CHANNEL, PLANE_OVERLAP_US, Unreadable};
use crate::keys::{Chain, MessageKey};

impl Node {
    /// The domain's private-network key, when this device holds it.
    pub fn network_key(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.keys
            .get(&(NETWORK_KEY_CHANNEL, 0))
            .map(|c| zeroize::Zeroizing::new(c.secret.0))
    }

    /// The newest plane epoch held: the one this device sends under.
    pub fn plane_epoch(&self) -> Option<u32> {
        self.plane_epochs().first().copied()
    }

    /// The body of this device's beacon (`proto/plane.md`, Beacon), signed with its device
    /// key: `pseq` is its last data `pseq`, `issued_us` the time, `heard_count` how many
    /// senders it hears.
    pub fn beacon_body(&self, pseq: u32, issued_us: u64, heard_count: u32) -> Vec<u8> {
        crate::plane::beacon_body(
            &self.secrets.identity,
            &self.domain().0,
            self.cert().body.device,
            pseq,
            issued_us,
            heard_count,
        )
    }

    /// The plane secrets held, newest first: the newest epoch's and, until its overlap ends
    /// ([`Node::expire_plane`]), the previous one's. At most two.
    pub fn plane_secrets(&self) -> Vec<(u32, zeroize::Zeroizing<[u8; 32]>)> {
        self.plane_epochs()
            .into_iter()
            .take(2)
            .filter_map(|e| {
                let c = self.keys.get(&(PLANE_CHANNEL, e))?;
                Some((e, zeroize::Zeroizing::new(c.secret.0)))
            })
            .collect()
    }

    /// Erases the plane epochs this device no longer receives under: the previous epoch once
    /// [`PLANE_OVERLAP_US`] has passed since the update that brought the newest was applied
    /// (at once when that time is unknown), any older one always. Returns whether something
    /// was erased: the caller then saves [`Node::key_state`] so it is gone from disk too.
    pub fn expire_plane(&mut self, now_us: u64) -> bool {
        let over = self
            .plane_since_us
            .is_none_or(|t| now_us >= t.saturating_add(PLANE_OVERLAP_US));
        self.keep_plane(if over { 1 } else { 2 })
    }

    /// Erases every plane epoch but the `keep` newest; whether one was erased.
    pub(super) fn keep_plane(&mut self, keep: usize) -> bool {
        let gone: Vec<u32> = self.plane_epochs().into_iter().skip(keep).collect();
        for e in &gone {
            // The chain's secret zeroizes on drop.
            self.keys.remove(&(PLANE_CHANNEL, *e));
        }
        !gone.is_empty()
    }

    /// The plane epochs held, newest first.
    fn plane_epochs(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .keys
            .keys()
            .filter(|(c, _)| *c == PLANE_CHANNEL)
            .map(|(_, e)| *e)
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }

    /// The message key of (channel, epoch) for an envelope with sequence number `seq`.
    pub(super) fn key_for(
        &self,
        channel: u32,
        epoch: u32,
        seq: u64,
    ) -> Result<MessageKey, Unreadable> {
        self.key_of(channel, epoch, seq, false)
    }

    /// The message key (or, with `voice`, the voice key) of (channel, epoch) for `seq`'s
    /// ratchet period.
    pub(super) fn key_of(
        &self,
        channel: u32,
        epoch: u32,
        seq: u64,
        voice: bool,
    ) -> Result<MessageKey, Unreadable> {
        // The pseudo-channels' secrets are never message keys, whatever a header names.
        if channel == PLANE_CHANNEL || channel == NETWORK_KEY_CHANNEL {
            return Err(Unreadable::UnknownEpoch { channel, epoch });
        }
        let chain = self
            .keys
            .get(&(channel, epoch))
            .ok_or(Unreadable::UnknownEpoch { channel, epoch })?;
        let period = Chain::period_of(chain.rotate_secs, seq);
        if let Some(k) = self
            .key_cache
            .borrow()
            .get(&(channel, epoch, period, voice))
        {
            return Ok(k.clone());
        }
        let (secret, steps) = chain
            .secret_via(
                self.checkpoints
                    .borrow_mut()
                    .entry((channel, epoch))
                    .or_default(),
                period,
            )
            .ok_or(Unreadable::KeyErased {
                channel,
                epoch,
                period,
            })?;
        self.ratchet_steps.set(self.ratchet_steps.get() + steps);
        let key = if voice {
            secret.voice_key(self.domain(), channel, epoch, period)
        } else {
            secret.message_key(self.domain(), channel, epoch, period)
        };
        let mut cache = self.key_cache.borrow_mut();
        if cache.len() >= KEY_CACHE
            && let Some(k) = cache.keys().next().copied()
        {
            // One goes, not all: a sender cycling through more periods than the cache holds
            // costs a miss each (a checkpoint's worth of steps at most), not the whole cache.
            cache.remove(&k);
        }
        cache.insert((channel, epoch, period, voice), key.clone());
        Ok(key)
    }

    /// Erases every ratchet period that ended before `now_us - window_us` (the retention
    /// window): the keys are gone from memory, and the caller saves [`Node::key_state`] so
    /// they are gone from disk. Returns how many periods were erased.
    pub fn erase_keys(&mut self, now_us: u64, window_us: u64) -> u64 {
        let mut erased = 0;
        for chain in self.keys.values_mut() {
            // Never keep more periods than can be derived forward to now: with a short
            // rotation and a long window the oldest ones go early.
            let reach = u64::from(chain.rotate_secs)
                .saturating_mul(crate::keys::MAX_RATCHET_AHEAD / 2)
                .saturating_mul(1_000_000);
            let floor_us = now_us.saturating_sub(window_us.min(reach));
            let target = Chain::period_of(chain.rotate_secs, floor_us);
            let before = chain.period;
            if chain.advance_to(target) {
                erased += chain.period - before;
            }
        }
        if erased > 0 {
            let keys = &self.keys;
            self.key_cache
                .borrow_mut()
                .retain(|(c, e, p, _), _| keys.get(&(*c, *e)).is_some_and(|k| *p >= k.period));
            self.counters.keys_erased += erased;
        }
        // Erased means erased: no checkpoint before a chain's oldest period stays, nor any of
        // a chain no longer held.
        let keys = &self.keys;
        self.checkpoints
            .borrow_mut()
            .retain(|ce, points| match keys.get(ce) {
                Some(k) => {
                    *points = points.split_off(&k.period);
                    true
                }
                None => false,
            });
        erased
    }

    /// Ratchet steps derived for key-cache misses since start.
    pub fn ratchet_steps(&self) -> u64 {
        self.ratchet_steps.get()
    }

    /// The key chains held, to be saved (secret: the caller writes them 0600 and zeroizes).
    pub fn key_state(&self) -> Vec<(u32, u32, Chain)> {
        let mut v: Vec<(u32, u32, Chain)> = self
            .keys
            .iter()
            .map(|((c, e), k)| (*c, *e, k.clone()))
            .collect();
        v.sort_by_key(|(c, e, _)| (*c, *e));
        v
    }

    /// The oldest ratchet period held for (channel, epoch).
    pub fn key_period(&self, channel: u32, epoch: u32) -> Option<u64> {
        self.keys.get(&(channel, epoch)).map(|c| c.period)
    }
}
