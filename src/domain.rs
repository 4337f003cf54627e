//! The offline domain authority: its key, descriptor, channel secrets, plane epochs and
//! device registry, and enrolment of devices into bundles.
//!
//! [`Authority`] is pure state plus an RNG argument; [`Authority::load`] and
//! [`Authority::save`] are the only functions here that touch files.

use std::path::Path;

use ed25519_dalek::SigningKey;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::bundle::Bundle;
use crate::cert::{
    self, CertBody, CertError, Certificate, ChannelInfo, ChannelPolicy, Descriptor, DescriptorBody,
    DeviceRights, Grant, Profile,
};
use crate::fsutil::{self, FileError, KeyKind};
use crate::keys::{Chain, ChannelSecret, DeviceSecrets, SealedKey};
use crate::severity::Severity;
use crate::update::{Update, UpdateBody, UpdateError};
use crate::wire;

/// Name of the channel every domain starts with.
pub const DEFAULT_CHANNEL: &str = "alerts";
/// Default certificate lifetime.
pub const DEFAULT_VALID_DAYS: u64 = 365;

/// File names in an authority directory.
pub mod files {
    /// The authority's secret key (0600).
    pub const AUTHORITY_KEY: &str = "authority.key";
    /// The signed descriptor.
    pub const DESCRIPTOR: &str = "descriptor.bin";
    /// Channel epoch secrets (0600).
    pub const EPOCHS: &str = "epochs.key";
    /// The device registry.
    pub const REGISTRY: &str = "registry.bin";
    /// Signed updates, one file per serial: `updates/000005.update`.
    pub const UPDATES: &str = "updates";
}

/// The shortest key rotation period a channel may have (a member keeps at most 5,000
/// periods, so 60 s still covers a retention window of three days).
pub const MIN_ROTATE_SECS: u32 = 60;

// The reserved channel numbers belong to the core; this path stays for the shell's code.
pub use crate::node::{NETWORK_KEY_CHANNEL, PLANE_CHANNEL};
pub use devices::{MIN_WATCH_SECS, RightsChange};

/// How far behind the authority's clock a device's may run: keys are sealed from the ratchet
/// period this long ago, certificates are valid from this long ago.
pub const CLOCK_SLACK_SECS: u64 = 3600;

/// An authority or enrolment problem.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A file problem.
    #[error(transparent)]
    File(#[from] FileError),
    /// A certificate or descriptor problem.
    #[error("{0}")]
    Cert(#[from] CertError),
    /// A device of that name exists.
    #[error(
        "device {0:?} is already enrolled; pass --force to replace it (the old certificate stays valid until it expires or is revoked)"
    )]
    AlreadyEnrolled(String),
    /// `domain init` on a directory that already holds a domain.
    #[error("{0} already holds a domain authority; choose an empty directory")]
    AlreadyExists(String),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// An update could not be made.
    #[error("{0}")]
    Update(#[from] UpdateError),
}

/// One channel epoch as the authority keeps it: the root of its ratchet.
#[derive(Serialize, Deserialize, Clone)]
struct EpochRecord {
    channel: u32,
    epoch: u32,
    rotate_secs: u32,
    /// The period `secret` belongs to (the epoch's first).
    period: u64,
    /// The update that started the epoch (0: the channel's creation).
    serial: u64,
    secret: [u8; 32],
}

impl EpochRecord {
    /// The chain from `period` on (or from the epoch's start when that is later).
    fn chain_at(&self, now_secs: u64) -> Chain {
        let mut c = Chain {
            rotate_secs: self.rotate_secs,
            period: self.period,
            secret: ChannelSecret(self.secret),
        };
        let from = now_secs.saturating_sub(CLOCK_SLACK_SECS);
        c.advance_to(Chain::period_of(
            self.rotate_secs,
            from.saturating_mul(1_000_000),
        ));
        c
    }
}

impl Drop for EpochRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// One enrolled device in the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// Device number.
    pub device: u32,
    /// Device name.
    pub name: String,
    /// The certificate bytes.
    pub cert: Vec<u8>,
    /// When it was enrolled (Unix seconds).
    pub enrolled_at: u64,
    /// Replaced by a later enrolment of the same name.
    pub replaced: bool,
    /// Revoked (also every replaced device: re-enrolment revokes the old certificate).
    pub revoked: bool,
}

impl RegistryEntry {
    fn cert(&self, a: &Descriptor) -> Option<Certificate> {
        Certificate::from_bytes(&self.cert, &a.authority, &a.domain).ok()
    }
}

/// A channel's new policy (`ptt-node domain channel`); unset fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    /// Alerts per minute per sender (0: no limit).
    pub rate_per_min: Option<u32>,
    /// Burst.
    pub burst: Option<u32>,
    /// Rotation period in seconds (0: none). A change starts a new key epoch.
    pub rotate_secs: Option<u32>,
    /// Seconds after which an unacknowledged alert is escalated (0: never).
    pub escalate_after_secs: Option<u32>,
    /// The lowest severity escalated.
    pub escalate_from: Option<Severity>,
}

/// What to enrol.
#[derive(Debug, Clone, Default)]
pub struct EnrollRequest {
    /// Device name.
    pub name: String,
    /// Channels (default: `alerts`; relay-only default: every channel).
    pub channels: Vec<String>,
    /// Forward and store only, no keys.
    pub relay_only: bool,
    /// Profile.
    pub profile: Profile,
    /// Certificate lifetime in days.
    pub valid_days: u64,
    /// Testing only: the certificate's lifetime in seconds, instead of `valid_days`.
    pub valid_secs: Option<u64>,
    /// The highest severity the device may claim (`None`: every severity, or for a
    /// replacement, what the device it replaces had).
    pub max_severity: Option<Severity>,
    /// Whether the device may update and cancel other members' alerts (`None`: no, or for a
    /// replacement, what the device it replaces had).
    pub dispatcher: Option<bool>,
    /// Its check-in period in seconds (`None`: not watched, or for a replacement, what the
    /// device it replaces had; 0: not watched).
    pub watch_secs: Option<u32>,
    /// Whether the device may declare an emergency (`None`: no, or for a replacement, what the
    /// device it replaces had).
    pub emergency: Option<bool>,
    /// Replace an existing device of the same name.
    pub force: bool,
}

/// The lock on an authority directory (released on drop, when the file closes).
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] std::fs::File);

/// The domain authority.
pub struct Authority {
    key: SigningKey,
    descriptor: Descriptor,
    epochs: Vec<EpochRecord>,
    registry: Vec<RegistryEntry>,
    /// Updates made since loading, written by [`Authority::save`].
    new_updates: Vec<Update>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("domain", &self.descriptor.domain)
            .field("devices", &self.registry.len())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A new domain with the default channel at epoch 1.
    pub fn create(
        name: &str,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, DomainError> {
        Self::create_with(name, false, now_secs, rng)
    }

    /// A new domain, with plane epoch 1; with `private_network`, also a pre-shared key that
    /// every device gets and without which no connection to a member completes.
    pub fn create_with(
        name: &str,
        private_network: bool,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, DomainError> {
        Self::create_inner(name, private_network, true, now_secs, rng)
    }

    /// A new domain as made before the data plane existed: no plane epoch, so its bundles
    /// carry no plane key until [`Authority::enable_plane`] (`domain init --no-plane`, which
    /// exists to test that upgrade).
    pub fn create_without_plane(
        name: &str,
        private_network: bool,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, DomainError> {
        Self::create_inner(name, private_network, false, now_secs, rng)
    }

    fn create_inner(
        name: &str,
        private_network: bool,
        plane: bool,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, DomainError> {
        check_name("domain name", name)?;
        let key = SigningKey::generate(rng);
        let descriptor = Descriptor::issue(
            &key,
            DescriptorBody {
                version: cert::DESCRIPTOR_VERSION,
                name: name.to_string(),
                authority: key.verifying_key().to_bytes(),
                revision: 0,
                channels: vec![],
                brokers: vec![],
                revoked: vec![],
                private_network,
                rights: vec![],
            },
        );
        let mut a = Authority {
            key,
            descriptor,
            epochs: vec![],
            registry: vec![],
            new_updates: vec![],
        };
        a.add_channel(DEFAULT_CHANNEL, now_secs, rng)?;
        if private_network {
            a.epochs.push(EpochRecord {
                channel: NETWORK_KEY_CHANNEL,
                epoch: 0,
                rotate_secs: 0,
                period: 0,
                serial: 0,
                secret: ChannelSecret::random(rng).0,
            });
        }
        if plane {
            a.epochs.push(plane_record(1, 0, rng));
        }
        a.edit_descriptor(|b| b.revision = 1);
        Ok(a)
    }

    /// Re-signs the descriptor after `f` changed its body (revision unchanged: [`Self::commit`]
    /// numbers the change).
    fn edit_descriptor(&mut self, f: impl FnOnce(&mut DescriptorBody)) {
        let mut body = self.descriptor.body.clone();
        f(&mut body);
        // A domain made before version 2 moves to it with its first change.
        body.version = cert::DESCRIPTOR_VERSION;
        self.descriptor = Descriptor::issue(&self.key, body);
    }

    /// The updates made since this authority was loaded.
    pub fn new_updates(&self) -> &[Update] {
        &self.new_updates
    }

    /// Numbers the changes made to the descriptor as the next revision, starts a new key
    /// epoch for each of `rekey` sealed to every current member that reads the channel (for
    /// [`PLANE_CHANNEL`]: to every current device, relay-only ones included), and records the
    /// signed update.
    fn commit(
        &mut self,
        note: String,
        revoked: Vec<u32>,
        certs: Vec<Vec<u8>>,
        rekey: &[u32],
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Update, DomainError> {
        if self.descriptor.body.rights.len() > cert::MAX_RIGHTS {
            return Err(DomainError::Invalid(format!(
                "the descriptor would give rights to {} devices, more than the {} a device accepts",
                self.descriptor.body.rights.len(),
                cert::MAX_RIGHTS
            )));
        }
        // Members refuse a descriptor body over 64 KiB.
        let body_len = self
            .descriptor
            .as_bytes()
            .len()
            .saturating_sub(crate::keys::SIG_LEN);
        if body_len > cert::MAX_DESCRIPTOR_BODY {
            return Err(DomainError::Invalid(format!(
                "the descriptor would be {body_len} bytes, more than the {} a device accepts",
                cert::MAX_DESCRIPTOR_BODY
            )));
        }
        // Members may skip updates back to the last one that carried keys.
        let requires = self.epochs.iter().map(|e| e.serial).max().unwrap_or(0);
        self.edit_descriptor(|b| b.revision += 1);
        let serial = self.descriptor.body.revision;
        let mut keys = vec![];
        for &channel in rekey {
            let epoch = self
                .epochs
                .iter()
                .filter(|e| e.channel == channel)
                .map(|e| e.epoch)
                .max()
                .unwrap_or(0)
                + 1;
            let plane = channel == PLANE_CHANNEL;
            let record = if plane {
                plane_record(epoch, serial, rng)
            } else {
                let rotate_secs = self.descriptor.policy(channel).rotate_secs;
                let start = now_secs.saturating_sub(CLOCK_SLACK_SECS);
                EpochRecord {
                    channel,
                    epoch,
                    rotate_secs,
                    period: Chain::period_of(rotate_secs, start.saturating_mul(1_000_000)),
                    serial,
                    secret: ChannelSecret::random(rng).0,
                }
            };
            let chain = record.chain_at(now_secs);
            self.epochs.push(record);
            for e in self.registry.iter().filter(|e| !e.revoked && !e.replaced) {
                let Some(cert) = e.cert(&self.descriptor) else {
                    continue;
                };
                // An expired device gets no new key: it could not use it (members refuse its
                // certificate), and it must not read what the new epoch seals.
                if cert.body.not_after < now_secs {
                    continue;
                }
                // Relay-only devices hear the plane to store and serve what they carry.
                let reads = cert.grant(channel).is_some_and(|g| g.read) && !cert.body.relay_only;
                if plane || reads {
                    keys.push(
                        SealedKey::seal(
                            &self.key,
                            self.descriptor.domain,
                            channel,
                            epoch,
                            e.device,
                            &cert.body.x25519,
                            &chain,
                            rng,
                        )
                        .to_bytes(),
                    );
                }
            }
        }
        let u = Update::issue(
            &self.key,
            UpdateBody {
                version: crate::update::VERSION,
                domain: self.descriptor.domain,
                serial,
                requires,
                issued_at: now_secs,
                note,
                descriptor: self.descriptor.as_bytes().to_vec(),
                revoked,
                certs,
                keys,
            },
        )?;
        if u.as_bytes().len() > crate::update::MAX_UPDATE_LEN {
            return Err(DomainError::Invalid(format!(
                "the update would be {} bytes, more than the {} a device accepts; re-key fewer channels at once",
                u.as_bytes().len(),
                crate::update::MAX_UPDATE_LEN
            )));
        }
        self.new_updates.push(u.clone());
        Ok(u)
    }

    /// Changes a channel's policy. A new rotation period starts a new key epoch.
    pub fn set_policy(
        &mut self,
        channel: &str,
        change: &PolicyChange,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Update>, DomainError> {
        let Some(info) = self.descriptor.channel_by_name(channel).cloned() else {
            return Err(DomainError::Invalid(format!(
                "no channel named {channel:?} (see ptt-node domain list)"
            )));
        };
        let mut p = info.policy;
        p.rate_per_min = change.rate_per_min.unwrap_or(p.rate_per_min);
        p.burst = change.burst.unwrap_or(p.burst);
        p.rotate_secs = change.rotate_secs.unwrap_or(p.rotate_secs);
        // Only a rotation being set is checked: a rate or burst change leaves an existing one.
        if let Some(r) = change.rotate_secs
            && r != 0
            && r < MIN_ROTATE_SECS
        {
            return Err(DomainError::Invalid(format!(
                "a rotation period of {r} s is too short: use 0 (no rotation) or at least {MIN_ROTATE_SECS} s"
            )));
        }
        let mut e = info.escalation;
        e.after_secs = change.escalate_after_secs.unwrap_or(e.after_secs);
        e.min_severity = change.escalate_from.unwrap_or(e.min_severity);
        if p == info.policy && e == info.escalation {
            return Ok(None);
        }
        let rekey = if p.rotate_secs != info.policy.rotate_secs {
            vec![info.id]
        } else {
            vec![]
        };
        self.edit_descriptor(|b| {
            for c in b.channels.iter_mut().filter(|c| c.id == info.id) {
                c.policy = p;
                c.escalation = e;
            }
        });
        let escalation = match e.after_secs {
            0 => String::new(),
            t => format!(", escalate {} and above after {t} s", e.min_severity),
        };
        let u = self.commit(
            format!(
                "channel {channel}: {} alerts/min, burst {}, rotate every {} s{escalation}",
                p.rate_per_min, p.burst, p.rotate_secs
            ),
            vec![],
            vec![],
            &rekey,
            now_secs,
            rng,
        )?;
        Ok(Some(u))
    }

    /// The descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The newest plane epoch (`None`: a domain made without a plane, not enabled yet).
    pub fn plane_epoch(&self) -> Option<u32> {
        self.epochs
            .iter()
            .filter(|e| e.channel == PLANE_CHANNEL)
            .map(|e| e.epoch)
            .max()
    }

    /// Gives a domain made without a data plane its plane epoch 1, sealed to every current
    /// device (relay-only ones included) in one update: members apply it like any key update,
    /// with no re-enrolment. Refused when the domain has a plane.
    pub fn enable_plane(
        &mut self,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Update, DomainError> {
        if let Some(e) = self.plane_epoch() {
            return Err(DomainError::Invalid(format!(
                "the domain already has a data-plane key (epoch {e}); to draw a new one use: ptt-node domain plane --rotate"
            )));
        }
        self.commit(
            "plane: enable (epoch 1)".into(),
            vec![],
            vec![],
            &[PLANE_CHANNEL],
            now_secs,
            rng,
        )
    }

    /// Starts a new plane epoch, sealed to every current device (for an operator who suspects
    /// the plane key leaked). Refused when the domain has no plane yet.
    pub fn rotate_plane(
        &mut self,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Update, DomainError> {
        let Some(e) = self.plane_epoch() else {
            return Err(DomainError::Invalid(
                "the domain has no data-plane key yet; give it one with: ptt-node domain plane --enable".into(),
            ));
        };
        self.commit(
            format!("plane: new epoch {}", e.saturating_add(1)),
            vec![],
            vec![],
            &[PLANE_CHANNEL],
            now_secs,
            rng,
        )
    }

    /// The registry.
    pub fn registry(&self) -> &[RegistryEntry] {
        &self.registry
    }

    /// Adds (or with `remove`, removes) a connection broker's multiaddress in the descriptor.
    /// The address must name the broker's peer id (`…/p2p/<peer id>`). Bundles enrolled
    /// afterwards carry the new descriptor; running members get it with the update returned.
    pub fn set_broker(
        &mut self,
        addr: &str,
        remove: bool,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Update>, DomainError> {
        let ma: libp2p::Multiaddr = addr
            .parse()
            .map_err(|e| DomainError::Invalid(format!("{addr:?} is not a multiaddress: {e}")))?;
        if !ma
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        {
            return Err(DomainError::Invalid(format!(
                "{addr:?} names no peer id: append /p2p/<the broker's peer id> (see ptt-node domain list)"
            )));
        }
        let present = self.descriptor.body.brokers.iter().any(|b| b == addr);
        match (remove, present) {
            (false, true) | (true, false) => return Ok(None),
            (false, false) => self.edit_descriptor(|b| b.brokers.push(addr.to_string())),
            (true, true) => self.edit_descriptor(|b| b.brokers.retain(|b| b != addr)),
        }
        let verb = if remove { "remove" } else { "add" };
        let u = self.commit(
            format!("{verb} broker {addr}"),
            vec![],
            vec![],
            &[],
            now_secs,
            rng,
        )?;
        Ok(Some(u))
    }

    /// Adds a channel with the default policy and a fresh secret at epoch 1; returns its
    /// number. The descriptor changes without a new revision: the caller commits.
    fn add_channel(
        &mut self,
        name: &str,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<u32, DomainError> {
        check_name("channel name", name)?;
        if name == crate::node::DIRECT_CHANNEL_NAME {
            return Err(DomainError::Invalid(format!(
                "{name:?} is reserved for directed messages; choose another channel name"
            )));
        }
        if self.descriptor.channel_by_name(name).is_some() {
            return Err(DomainError::Invalid(format!(
                "channel {name:?} already exists"
            )));
        }
        // Never reuse a number, also one whose secret was saved without its descriptor entry.
        let id = self
            .descriptor
            .body
            .channels
            .iter()
            .map(|c| c.id)
            .chain(
                self.epochs
                    .iter()
                    .map(|e| e.channel)
                    .filter(|c| !is_reserved(*c)),
            )
            .max()
            .unwrap_or(0)
            + 1;
        if is_reserved(id) {
            return Err(DomainError::Invalid(format!(
                "no channel number is left for {name:?}: {id} and above are reserved"
            )));
        }
        let policy = ChannelPolicy::default();
        self.edit_descriptor(|b| {
            b.channels.push(ChannelInfo {
                id,
                name: name.to_string(),
                policy,
                escalation: Default::default(),
            })
        });
        let start = now_secs.saturating_sub(CLOCK_SLACK_SECS);
        self.epochs.push(EpochRecord {
            channel: id,
            epoch: 1,
            rotate_secs: policy.rotate_secs,
            period: Chain::period_of(policy.rotate_secs, start.saturating_mul(1_000_000)),
            serial: 0,
            secret: ChannelSecret::random(rng).0,
        });
        Ok(id)
    }

    /// The current epoch of a channel and its chain from about now on.
    fn current_chain(&self, channel: u32, now_secs: u64) -> Option<(u32, Chain)> {
        self.epochs
            .iter()
            .filter(|e| e.channel == channel)
            .max_by_key(|e| e.epoch)
            .map(|e| (e.epoch, e.chain_at(now_secs)))
    }

    /// Enrols a device: new keys, a certificate, and the channel keys sealed to it. Channels
    /// named in the request that the domain lacks are created.
    pub fn enroll(
        &mut self,
        req: &EnrollRequest,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Bundle, Vec<String>), DomainError> {
        check_name("device name", &req.name)?;
        if let Some(loc) = &req.profile.location {
            loc.check().map_err(DomainError::Invalid)?;
        }
        let existing = self
            .registry
            .iter()
            .any(|e| e.name == req.name && !e.replaced);
        if existing && !req.force {
            return Err(DomainError::AlreadyEnrolled(req.name.clone()));
        }
        let mut created = vec![];
        let channels: Vec<String> = if req.channels.is_empty() {
            if req.relay_only {
                self.descriptor
                    .body
                    .channels
                    .iter()
                    .map(|c| c.name.clone())
                    .collect()
            } else {
                vec![DEFAULT_CHANNEL.to_string()]
            }
        } else {
            req.channels.clone()
        };
        let mut grants = vec![];
        for name in &channels {
            let id = match self.descriptor.channel_by_name(name) {
                Some(c) => c.id,
                None => {
                    created.push(name.clone());
                    self.add_channel(name, now_secs, rng)?
                }
            };
            if grants.iter().any(|g: &Grant| g.channel == id) {
                continue;
            }
            grants.push(Grant {
                channel: id,
                name: name.clone(),
                read: !req.relay_only,
                write: !req.relay_only,
            });
        }
        let secrets = DeviceSecrets::generate(rng);
        let device = self.registry.iter().map(|e| e.device).max().unwrap_or(0) + 1;
        let valid_days = if req.valid_days == 0 {
            DEFAULT_VALID_DAYS
        } else {
            req.valid_days
        };
        let body = CertBody {
            version: cert::VERSION,
            domain: self.descriptor.domain,
            device,
            name: req.name.clone(),
            ed25519: secrets.identity.verifying_key().to_bytes(),
            x25519: secrets.x25519_public(),
            relay_only: req.relay_only,
            grants: grants.clone(),
            profile: req.profile.clone(),
            // A little slack for devices whose clocks run behind the authority's.
            not_before: now_secs.saturating_sub(CLOCK_SLACK_SECS),
            not_after: now_secs.saturating_add(
                req.valid_secs
                    .unwrap_or_else(|| valid_days.saturating_mul(86_400)),
            ),
        };
        let cert = Certificate::issue(&self.key, body)?;
        // Re-enrolment revokes the certificates it replaces.
        let replaced: Vec<u32> = self
            .registry
            .iter()
            .filter(|e| e.name == req.name && !e.revoked)
            .map(|e| e.device)
            .collect();
        // A replacement keeps the rights of the device it replaces unless told otherwise.
        let max_severity = req.max_severity.unwrap_or_else(|| {
            replaced
                .iter()
                .map(|d| self.descriptor.rights(*d).max_severity)
                .min()
                .unwrap_or(Severity::Extreme)
        });
        let old_flags = replaced
            .iter()
            .map(|d| self.descriptor.rights(*d).flags)
            .fold(0, |a, f| a | f);
        let mut flags = match req.dispatcher {
            None => old_flags,
            Some(true) => old_flags | cert::RIGHT_DISPATCH,
            Some(false) => old_flags & !cert::RIGHT_DISPATCH,
        };
        match req.emergency {
            None => {}
            Some(true) => flags |= cert::RIGHT_EMERGENCY,
            Some(false) => flags &= !cert::RIGHT_EMERGENCY,
        }
        if let Some(w) = req.watch_secs {
            devices::check_watch(w)?;
        }
        let watch_secs = req.watch_secs.unwrap_or_else(|| {
            replaced
                .iter()
                .map(|d| self.descriptor.rights(*d).watch_secs)
                .max()
                .unwrap_or(0)
        });
        for e in self.registry.iter_mut().filter(|e| e.name == req.name) {
            e.replaced = true;
        }
        self.registry.push(RegistryEntry {
            device,
            name: req.name.clone(),
            cert: cert.as_bytes().to_vec(),
            enrolled_at: now_secs,
            replaced: false,
            revoked: false,
        });
        let rekey = if replaced.is_empty() {
            vec![]
        } else {
            self.revoke_devices(&replaced)
        };
        self.put_rights(DeviceRights {
            device,
            max_severity,
            flags,
            watch_secs,
        });
        let mut note = format!("enrol {} (device {device})", req.name);
        if !replaced.is_empty() {
            note.push_str(&format!(", revoking device {replaced:?}"));
        }
        self.commit(
            note,
            replaced,
            vec![cert.as_bytes().to_vec()],
            &rekey,
            now_secs,
            rng,
        )?;
        let mut sealed = vec![];
        // Every device (relays too) needs the private-network key to connect at all, and the
        // plane key to hear the plane.
        let network = self
            .descriptor
            .body
            .private_network
            .then_some(NETWORK_KEY_CHANNEL);
        let channels = grants
            .iter()
            .filter(|g| g.read)
            .map(|g| g.channel)
            .chain(network)
            .chain(std::iter::once(PLANE_CHANNEL));
        for channel in channels {
            if let Some((epoch, chain)) = self.current_chain(channel, now_secs) {
                sealed.push(SealedKey::seal(
                    &self.key,
                    self.descriptor.domain,
                    channel,
                    epoch,
                    device,
                    &secrets.x25519_public(),
                    &chain,
                    rng,
                ));
            }
        }
        Ok((
            Bundle {
                secrets,
                cert,
                descriptor: self.descriptor.clone(),
                sealed,
            },
            created,
        ))
    }

    /// Writes the authority directory (creating it with mode 0700).
    pub fn save(&self, dir: &Path) -> Result<(), DomainError> {
        fsutil::create_private_dir(dir)?;
        fsutil::write_secret(
            &dir.join(files::AUTHORITY_KEY),
            &fsutil::frame_key(KeyKind::Authority, self.key.as_bytes()),
        )?;
        let epochs = Zeroizing::new(wire::encode(&self.epochs));
        fsutil::write_secret(
            &dir.join(files::EPOCHS),
            &fsutil::frame_key(KeyKind::EpochSecrets, &epochs),
        )?;
        fsutil::write_public(&dir.join(files::REGISTRY), &wire::encode(&self.registry))?;
        if !self.new_updates.is_empty() {
            let up = dir.join(files::UPDATES);
            std::fs::create_dir_all(&up).map_err(|e| FileError::io(&up, e))?;
            for u in &self.new_updates {
                fsutil::write_public(&update_path(dir, u.body.serial), u.as_bytes())?;
            }
        }
        // The descriptor last: its presence marks a complete authority directory.
        fsutil::write_public(&dir.join(files::DESCRIPTOR), self.descriptor.as_bytes())?;
        Ok(())
    }

    /// Takes the authority directory's lock (`DIR/.lock`, flock): two enrolments at once
    /// would otherwise hand out one device number twice. Held until the guard drops.
    pub fn lock(dir: &Path) -> Result<DirLock, DomainError> {
        use std::os::fd::AsRawFd;
        if !Self::exists(dir) {
            return Err(DomainError::Invalid(format!(
                "{} holds no domain authority (make one with: ptt-node domain init --dir {} --name NAME)",
                dir.display(),
                dir.display()
            )));
        }
        let path = dir.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FileError::io(&path, e))?;
        // SAFETY: flock on a file descriptor we own, for the lifetime of `f`.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(DomainError::Invalid(format!(
                "{} is in use by another ptt-node domain command; try again when it has finished",
                dir.display()
            )));
        }
        Ok(DirLock(f))
    }

    /// Whether `dir` holds an authority.
    pub fn exists(dir: &Path) -> bool {
        dir.join(files::DESCRIPTOR).exists() || dir.join(files::AUTHORITY_KEY).exists()
    }

    /// Reads an authority directory and checks that its parts belong together.
    pub fn load(dir: &Path) -> Result<Self, DomainError> {
        let key_path = dir.join(files::AUTHORITY_KEY);
        let key = SigningKey::from_bytes(&*fsutil::read_key32(&key_path, KeyKind::Authority)?);
        let desc_path = dir.join(files::DESCRIPTOR);
        let descriptor = Descriptor::from_bytes(&fsutil::read_public(&desc_path)?)
            .map_err(|e| FileError::invalid(&desc_path, e))?;
        if descriptor.authority != key.verifying_key() {
            return Err(FileError::invalid(
                &desc_path,
                "descriptor belongs to another authority key",
            )
            .into());
        }
        let ep_path = dir.join(files::EPOCHS);
        let raw = fsutil::read_key(&ep_path, KeyKind::EpochSecrets)?;
        let epochs: Vec<EpochRecord> = wire::decode("epoch secrets", &raw, 16 * 1024 * 1024)
            .map_err(|e| FileError::invalid(&ep_path, e))?;
        let reg_path = dir.join(files::REGISTRY);
        let registry: Vec<RegistryEntry> = wire::decode(
            "registry",
            &fsutil::read_public(&reg_path)?,
            64 * 1024 * 1024,
        )
        .map_err(|e| FileError::invalid(&reg_path, e))?;
        Ok(Authority {
            key,
            descriptor,
            epochs,
            registry,
            new_updates: vec![],
        })
    }
}

/// A plane epoch's record: 32 fresh random bytes that never ratchet (`rotate_secs` 0, period 0).
fn plane_record(epoch: u32, serial: u64, rng: &mut impl CryptoRngCore) -> EpochRecord {
    EpochRecord {
        channel: PLANE_CHANNEL,
        epoch,
        rotate_secs: 0,
        period: 0,
        serial,
        secret: ChannelSecret::random(rng).0,
    }
}

/// The pseudo-channels (the plane's and the network key's): no channel, grant or envelope
/// ever has their numbers.
fn is_reserved(channel: u32) -> bool {
    channel >= PLANE_CHANNEL
}

/// Where the update with this serial is kept in an authority directory.
pub fn update_path(dir: &Path, serial: u64) -> std::path::PathBuf {
    dir.join(files::UPDATES).join(format!("{serial:06}.update"))
}

/// Names are 1 to 64 printable characters without whitespace, so they survive CLIs and logs.
pub fn check_name(what: &str, name: &str) -> Result<(), DomainError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::Invalid(format!(
            "{what} {name:?} is not valid: use 1 to 64 letters, digits or - _ . : @"
        )))
    }
}

mod devices;
#[cfg(test)]
mod tests;
