//! Sealing this device's own alerts: to a channel it may write, or directed to one member.
//! Picks the sequence number and keeps to the channel's rate limit; never publishes (the
//! shell does, once its lease covers the sequence number).

use super::{DIRECT_CHANNEL, DIRECT_CHANNEL_NAME, Node};
use crate::alert::{AlertBody, Severity};
use crate::cert::ChannelPolicy;
use crate::envelope::{self, Header};
use crate::keys::MessageKey;

/// Why an alert cannot be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The channel does not exist in this domain.
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// This device's certificate does not allow writing to the channel.
    #[error("this device may not write to channel {0:?}")]
    NotAllowed(String),
    /// No key for the channel.
    #[error("this device holds no key for channel {0:?}")]
    NoKey(String),
    /// A field is out of range.
    #[error("{0}")]
    Invalid(String),
    /// No member of that name is known.
    #[error("no member named {0:?} is known (see ptt-node search)")]
    UnknownDevice(String),
    /// The plaintext is too large.
    #[error("the alert is {0} bytes, more than the {max} allowed", max = crate::alert::MAX_ALERT_LEN)]
    TooLarge(usize),
    /// Over the channel's rate limit: members would drop it.
    #[error(
        "over channel {channel:?}'s limit of {rate_per_min} alerts a minute (burst {burst}); try again in {retry_ms} ms"
    )]
    RateLimited {
        /// Channel name.
        channel: String,
        /// The limit.
        rate_per_min: u32,
        /// The burst.
        burst: u32,
        /// When one alert's worth of budget is back.
        retry_ms: u64,
    },
    /// This device was revoked.
    #[error("this device was revoked by the domain authority; it can no longer send")]
    Revoked,
    /// Above the highest severity the authority allows this device.
    #[error(
        "this device may claim at most severity {max} (the domain authority's limit; `ptt-node domain device` changes it), not {claimed}"
    )]
    SeverityNotAllowed {
        /// What was asked for.
        claimed: Severity,
        /// The most allowed.
        max: Severity,
    },
    /// An update or cancellation of another member's alert, without the dispatcher right.
    #[error(
        "only the alert's sender or a dispatcher may update or cancel it (`ptt-node domain device --dispatcher on` grants the right)"
    )]
    NotDispatcher,
    /// An emergency without the emergency right.
    #[error(
        "this device may not declare an emergency (`ptt-node domain device --emergency on` grants the right)"
    )]
    NotEmergency,
}

/// A freshly sealed alert.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Envelope bytes to store and publish.
    pub bytes: Vec<u8>,
    /// Alert id.
    pub id: String,
    /// Channel number.
    pub channel: u32,
    /// Channel name.
    pub channel_name: String,
    /// Sequence number used.
    pub seq: u64,
}

impl Node {
    /// Refuses a severity above what the authority allows this device: members would read it
    /// as the lower one, so it is refused here, where the user can hear why.
    pub(super) fn may_claim(&self, claimed: Severity) -> Result<(), SealError> {
        let max = self.descriptor.rights(self.cert.body.device).max_severity;
        if claimed > max {
            return Err(SealError::SeverityNotAllowed { claimed, max });
        }
        Ok(())
    }

    /// Refuses an update or cancellation of another member's alert unless the authority made
    /// this device a dispatcher: members would refuse it.
    pub(super) fn may_refer(&self, body: &AlertBody) -> Result<(), SealError> {
        let me = self.cert.body.device;
        match &body.reference {
            Some(r) if r.target().sender != me && !self.descriptor.rights(me).dispatcher() => {
                Err(SealError::NotDispatcher)
            }
            None if super::validate::is_emergency(body)
                && !self.descriptor.rights(me).emergency() =>
            {
                Err(SealError::NotEmergency)
            }
            _ => Ok(()),
        }
    }

    /// Whether this device may declare an emergency.
    pub fn may_declare_emergency(&self) -> bool {
        self.descriptor.rights(self.cert.body.device).emergency()
    }

    /// Whether this device may update and cancel other members' alerts.
    pub fn is_dispatcher(&self) -> bool {
        self.descriptor.rights(self.cert.body.device).dispatcher()
    }

    /// The highest severity the authority allows this device.
    pub fn max_severity(&self) -> Severity {
        self.descriptor.rights(self.cert.body.device).max_severity
    }

    /// The channel named `channel` as this device may write to it: (number, name, current
    /// epoch), or why it may not.
    pub(super) fn writable(&self, channel: &str) -> Result<(u32, String, u32), SealError> {
        let info = self
            .descriptor
            .channel_by_name(channel)
            .map(|c| c.id)
            .or_else(|| {
                self.cert
                    .body
                    .grants
                    .iter()
                    .find(|g| g.name == channel)
                    .map(|g| g.channel)
            })
            .ok_or_else(|| SealError::UnknownChannel(channel.to_string()))?;
        let grant = self
            .cert
            .grant(info)
            .filter(|g| g.write)
            .ok_or_else(|| SealError::NotAllowed(channel.to_string()))?;
        let (grant_channel, grant_name) = (grant.channel, grant.name.clone());
        if self.is_revoked_self() {
            return Err(SealError::Revoked);
        }
        let epoch = *self
            .current_epoch
            .get(&grant_channel)
            .ok_or_else(|| SealError::NoKey(channel.to_string()))?;
        Ok((grant_channel, grant_name, epoch))
    }

    /// Seals `plain` as an envelope of `kind` from this device, with header (channel, epoch,
    /// seq), and moves the sequence counter to `seq`.
    pub(super) fn seal_own(
        &mut self,
        kind: envelope::Kind,
        channel: u32,
        epoch: u32,
        seq: u64,
        key: &MessageKey,
        plain: &[u8],
    ) -> Vec<u8> {
        let header = Header {
            version: envelope::VERSION,
            domain_tag: self.domain().tag(),
            channel,
            epoch,
            sender: self.cert.body.device,
            seq,
        };
        let bytes = envelope::seal_kind(
            kind,
            &self.secrets.identity,
            self.domain(),
            &header,
            key,
            plain,
        );
        self.last_seq = seq;
        bytes
    }

    /// The next sequence number for an envelope of (channel, epoch) at `now_us`.
    pub(super) fn next_seq(&self, channel: u32, epoch: u32, now_us: u64) -> u64 {
        // A clock behind the start of the key chain this device holds (say, behind the
        // authority's at enrolment) would pick an erased period: start from the chain instead.
        let chain_start_us = self.keys.get(&(channel, epoch)).map_or(0, |c| {
            c.period
                .saturating_mul(u64::from(c.rotate_secs))
                .saturating_mul(1_000_000)
        });
        now_us
            .max(chain_start_us)
            .max(self.last_seq.saturating_add(1))
    }

    /// Seals an alert for `channel` at time `now_us`. The caller publishes it only once a
    /// durable lease covers its sequence number, `max(last + 1, now_us)` (proto/envelope.md).
    pub fn seal_alert(
        &mut self,
        channel: &str,
        body: &AlertBody,
        now_us: u64,
    ) -> Result<Sealed, SealError> {
        let (grant_channel, grant_name, epoch) = self.writable(channel)?;
        if let Some(loc) = &body.location {
            loc.check().map_err(SealError::Invalid)?;
        }
        self.may_claim(body.severity)?;
        self.may_refer(body)?;
        let plain = body.encode();
        if plain.len() > crate::alert::MAX_ALERT_LEN {
            return Err(SealError::TooLarge(plain.len()));
        }
        let seq = self.next_seq(grant_channel, epoch, now_us);
        let key = self
            .key_for(grant_channel, epoch, seq)
            .map_err(|_| SealError::NoKey(channel.to_string()))?;
        let me = self.cert.body.device;
        if self.own_limit
            && let Err(wait_us) = self.take_budget(me, grant_channel, now_us)
        {
            let p = self.descriptor.policy(grant_channel);
            return Err(SealError::RateLimited {
                channel: grant_name,
                rate_per_min: p.rate_per_min,
                burst: p.burst,
                retry_ms: wait_us.div_ceil(1000),
            });
        }
        let bytes = self.seal_own(
            envelope::Kind::Alert,
            grant_channel,
            epoch,
            seq,
            &key,
            &plain,
        );
        // Our own alerts are never accepted back from the network.
        let _ = self.replay.insert(me, seq);
        self.counters.alerts_sent += 1;
        Ok(Sealed {
            bytes,
            id: envelope::alert_id(self.domain(), me, seq),
            channel: grant_channel,
            channel_name: grant_name,
            seq,
        })
    }

    /// Seals a directed message to the member named `to` (pairwise key from static X25519).
    pub fn seal_direct(
        &mut self,
        to: &str,
        body: &AlertBody,
        now_us: u64,
    ) -> Result<Sealed, SealError> {
        if self.cert.body.relay_only {
            return Err(SealError::NotAllowed(DIRECT_CHANNEL_NAME.into()));
        }
        if self.is_revoked_self() {
            return Err(SealError::Revoked);
        }
        let recipient = self
            .roster
            .values()
            .filter(|c| c.body.name == to && !self.descriptor.is_revoked(c.body.device))
            .max_by_key(|c| c.body.device)
            .cloned()
            .ok_or_else(|| SealError::UnknownDevice(to.to_string()))?;
        if let Some(loc) = &body.location {
            loc.check().map_err(SealError::Invalid)?;
        }
        self.may_claim(body.severity)?;
        self.may_refer(body)?;
        let plain = body.encode();
        if plain.len() > crate::alert::MAX_ALERT_LEN {
            return Err(SealError::TooLarge(plain.len()));
        }
        let me = self.cert.body.device;
        let to_device = recipient.body.device;
        let key = crate::keys::direct_key(
            self.domain(),
            &self.secrets.x25519,
            &recipient.body.x25519,
            me,
            to_device,
        );
        let seq = now_us.max(self.last_seq.saturating_add(1));
        if let Err(wait_us) = self.take_budget(me, DIRECT_CHANNEL, now_us) {
            let p = ChannelPolicy::default();
            return Err(SealError::RateLimited {
                channel: DIRECT_CHANNEL_NAME.into(),
                rate_per_min: p.rate_per_min,
                burst: p.burst,
                retry_ms: wait_us.div_ceil(1000),
            });
        }
        let bytes = self.seal_own(
            envelope::Kind::Alert,
            DIRECT_CHANNEL,
            to_device,
            seq,
            &key,
            &plain,
        );
        let _ = self.replay.insert(me, seq);
        self.counters.alerts_sent += 1;
        Ok(Sealed {
            bytes,
            id: envelope::alert_id(self.domain(), me, seq),
            channel: DIRECT_CHANNEL,
            channel_name: DIRECT_CHANNEL_NAME.into(),
            seq,
        })
    }
}
