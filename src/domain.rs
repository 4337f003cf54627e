//! The offline domain authority: its key, descriptor, channel secrets and device registry,
//! and enrolment of devices into bundles.
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
    self, CertBody, CertError, Certificate, ChannelInfo, Descriptor, DescriptorBody, Grant, Profile,
};
use crate::fsutil::{self, FileError, KeyKind};
use crate::keys::{ChannelSecret, DeviceSecrets, SealedKey};
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
}

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
}

#[derive(Serialize, Deserialize, Clone)]
struct EpochRecord {
    channel: u32,
    epoch: u32,
    secret: [u8; 32],
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
    pub fn create(name: &str, rng: &mut impl CryptoRngCore) -> Result<Self, DomainError> {
        check_name("domain name", name)?;
        let key = SigningKey::generate(rng);
        let descriptor = Descriptor::issue(
            &key,
            DescriptorBody {
                version: cert::VERSION,
                name: name.to_string(),
                authority: key.verifying_key().to_bytes(),
                revision: 1,
                channels: vec![],
                brokers: vec![],
            },
        );
        let mut a = Authority {
            key,
            descriptor,
            epochs: vec![],
            registry: vec![],
        };
        a.add_channel(DEFAULT_CHANNEL, rng)?;
        Ok(a)
    }

    /// The descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The registry.
    pub fn registry(&self) -> &[RegistryEntry] {
        &self.registry
    }

    /// Adds (or with `remove`, removes) a connection broker's multiaddress in the descriptor.
    /// The address must name the broker's peer id (`…/p2p/<peer id>`). Bundles enrolled
    /// afterwards carry the new descriptor.
    pub fn set_broker(&mut self, addr: &str, remove: bool) -> Result<bool, DomainError> {
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
        let mut body = self.descriptor.body.clone();
        let present = body.brokers.iter().any(|b| b == addr);
        match (remove, present) {
            (false, true) | (true, false) => return Ok(false),
            (false, false) => body.brokers.push(addr.to_string()),
            (true, true) => body.brokers.retain(|b| b != addr),
        }
        body.revision += 1;
        self.descriptor = Descriptor::issue(&self.key, body);
        Ok(true)
    }

    /// Adds a channel with a fresh secret at epoch 1; returns its number.
    pub fn add_channel(
        &mut self,
        name: &str,
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
        let mut body = self.descriptor.body.clone();
        // Never reuse a number, also one whose secret was saved without its descriptor entry.
        let id = body
            .channels
            .iter()
            .map(|c| c.id)
            .chain(self.epochs.iter().map(|e| e.channel))
            .max()
            .unwrap_or(0)
            + 1;
        body.channels.push(ChannelInfo {
            id,
            name: name.to_string(),
        });
        body.revision += 1;
        self.descriptor = Descriptor::issue(&self.key, body);
        self.epochs.push(EpochRecord {
            channel: id,
            epoch: 1,
            secret: ChannelSecret::random(rng).0,
        });
        Ok(id)
    }

    fn current_secret(&self, channel: u32) -> Option<(u32, ChannelSecret)> {
        self.epochs
            .iter()
            .filter(|e| e.channel == channel)
            .max_by_key(|e| e.epoch)
            .map(|e| (e.epoch, ChannelSecret(e.secret)))
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
                    self.add_channel(name, rng)?
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
            not_before: now_secs.saturating_sub(3600),
            not_after: now_secs.saturating_add(valid_days.saturating_mul(86_400)),
        };
        let cert = Certificate::issue(&self.key, body)?;
        let mut sealed = vec![];
        for g in grants.iter().filter(|g| g.read) {
            if let Some((epoch, secret)) = self.current_secret(g.channel) {
                sealed.push(SealedKey::seal(
                    &self.key,
                    self.descriptor.domain,
                    g.channel,
                    epoch,
                    device,
                    &secrets.x25519_public(),
                    &secret,
                    rng,
                ));
            }
        }
        for e in self.registry.iter_mut().filter(|e| e.name == req.name) {
            e.replaced = true;
        }
        self.registry.push(RegistryEntry {
            device,
            name: req.name.clone(),
            cert: cert.as_bytes().to_vec(),
            enrolled_at: now_secs,
            replaced: false,
        });
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
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn enrolment_numbers_names_channels_and_persistence() {
        let mut a = Authority::create("site", &mut OsRng).unwrap();
        let req = |name: &str| EnrollRequest {
            name: name.into(),
            ..Default::default()
        };
        let (b1, _) = a.enroll(&req("cam"), 1_000, &mut OsRng).unwrap();
        assert!(matches!(
            a.enroll(&req("cam"), 1_000, &mut OsRng),
            Err(DomainError::AlreadyEnrolled(_))
        ));
        let forced = EnrollRequest {
            force: true,
            ..req("cam")
        };
        let (b2, _) = a.enroll(&forced, 1_000, &mut OsRng).unwrap();
        assert_ne!(
            b1.cert.body.device, b2.cert.body.device,
            "numbers are never reused"
        );
        assert!(a.registry()[0].replaced && !a.registry()[1].replaced);

        // New channels are created with their own number and a key for readers only.
        let ops = EnrollRequest {
            channels: vec!["ops".into(), "alerts".into()],
            ..req("hh")
        };
        let (b3, created) = a.enroll(&ops, 1_000, &mut OsRng).unwrap();
        assert_eq!(created, vec!["ops".to_string()]);
        assert_eq!(b3.sealed.len(), 2);
        let relay = EnrollRequest {
            relay_only: true,
            ..req("relay")
        };
        let (b4, _) = a.enroll(&relay, 1_000, &mut OsRng).unwrap();
        assert!(b4.sealed.is_empty(), "a relay gets no keys");
        assert_eq!(
            b4.cert.body.grants.len(),
            2,
            "a relay carries every channel"
        );
        assert!(b4.cert.body.grants.iter().all(|g| !g.read && !g.write));

        assert!(matches!(
            a.enroll(&req("bad name"), 1_000, &mut OsRng),
            Err(DomainError::Invalid(_))
        ));

        // Brokers go into the descriptor; later bundles carry them.
        let b = "/ip4/10.0.0.1/tcp/4777/p2p/12D3KooWHkcmUBx9sDc2ZHcJ7YpB6oSLGCUZexN9t8pyqw56Vi9o";
        assert!(
            a.set_broker("/ip4/10.0.0.1/tcp/4777", false).is_err(),
            "a peer id is needed"
        );
        assert!(a.set_broker(b, false).unwrap());
        assert!(!a.set_broker(b, false).unwrap(), "already there");
        let (late, _) = a.enroll(&req("after-broker"), 1_000, &mut OsRng).unwrap();
        assert_eq!(late.descriptor.body.brokers, vec![b.to_string()]);
        assert!(a.set_broker(b, true).unwrap());
        assert!(a.descriptor().body.brokers.is_empty());

        let dir = tempfile::tempdir().unwrap();
        a.save(dir.path()).unwrap();
        let b = Authority::load(dir.path()).unwrap();
        assert_eq!(b.descriptor(), a.descriptor());
        assert_eq!(b.registry().len(), 5);
        // A later enrolment still seals the same channel secret.
        let mut b = b;
        let (b5, _) = b.enroll(&req("late"), 1_000, &mut OsRng).unwrap();
        let k1 = b1.into_node_config(dir.path()).unwrap().channel_secrets;
        let k5 = b5.into_node_config(dir.path()).unwrap().channel_secrets;
        assert_eq!(k1[0].2, k5[0].2);
    }
}
