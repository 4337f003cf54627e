//! A device bundle: the directory an administrator copies onto a device.
//!
//! ```text
//! BUNDLE/identity.key      Ed25519 secret (0600): device identity and libp2p peer id
//! BUNDLE/x25519.key        X25519 secret (0600): channel keys are sealed to it
//! BUNDLE/certificate.bin   signed by the domain authority
//! BUNDLE/descriptor.bin    the domain descriptor, signed by the authority
//! BUNDLE/channel-keys.bin  channel secrets sealed to this device, signed by the authority
//! ```
//! Loading checks every signature, every permission and that the parts belong together.
//!
//! The first `ptt-node run` moves the channel keys into the data directory (`DATA/keys.bin`,
//! where they ratchet forward and old periods are erased) and empties `channel-keys.bin`,
//! leaving `channel-keys.imported` naming the data directory: a key kept in the bundle could
//! never be erased.

use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::cert::{Certificate, Descriptor};
use crate::fsutil::{self, FileError, KeyKind};
use crate::keys::{Chain, ChannelSecret, DeviceSecrets, SealedKey};
use crate::wire;

/// File names in a bundle.
pub mod files {
    /// Ed25519 identity (0600).
    pub const IDENTITY: &str = "identity.key";
    /// X25519 key (0600).
    pub const X25519: &str = "x25519.key";
    /// Certificate.
    pub const CERTIFICATE: &str = "certificate.bin";
    /// Descriptor.
    pub const DESCRIPTOR: &str = "descriptor.bin";
    /// Sealed channel keys.
    pub const CHANNEL_KEYS: &str = "channel-keys.bin";
    /// Left when the daemon moved the channel keys into a data directory (names it).
    pub const KEYS_IMPORTED: &str = "channel-keys.imported";
    /// In the data directory: the device's channel key chains (0600).
    pub const KEY_STATE: &str = "keys.bin";
    /// In the data directory: the latest descriptor an update brought (revocations and
    /// policies survive a restart even after the update itself is pruned).
    pub const DATA_DESCRIPTOR: &str = "descriptor.bin";
}

/// Channel key chains: (channel, epoch, chain).
pub type KeyChains = Vec<(u32, u32, Chain)>;

/// One saved channel key chain.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyRecord {
    channel: u32,
    epoch: u32,
    rotate_secs: u32,
    period: u64,
    secret: [u8; 32],
}

impl Drop for KeyRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// Saves the channel key chains a node holds to `path` (0600, atomic): erased periods are
/// gone from disk once this returns.
pub fn save_key_state(path: &Path, chains: &[(u32, u32, Chain)]) -> Result<(), FileError> {
    let records: Vec<KeyRecord> = chains
        .iter()
        .map(|(channel, epoch, c)| KeyRecord {
            channel: *channel,
            epoch: *epoch,
            rotate_secs: c.rotate_secs,
            period: c.period,
            secret: c.secret.0,
        })
        .collect();
    let payload = zeroize::Zeroizing::new(wire::encode(&records));
    fsutil::write_secret(path, &fsutil::frame_key(KeyKind::ChannelKeys, &payload))
}

/// Reads saved key chains; `Ok(None)` when there is no file.
pub fn load_key_state(path: &Path) -> Result<Option<KeyChains>, FileError> {
    if !path.exists() {
        return Ok(None);
    }
    let raw = fsutil::read_key(path, KeyKind::ChannelKeys)?;
    let records: Vec<KeyRecord> = wire::decode("channel keys", &raw, 16 * 1024 * 1024)
        .map_err(|e| FileError::invalid(path, e))?;
    Ok(Some(
        records
            .iter()
            .map(|r| {
                (
                    r.channel,
                    r.epoch,
                    Chain {
                        rotate_secs: r.rotate_secs,
                        period: r.period,
                        secret: ChannelSecret(r.secret),
                    },
                )
            })
            .collect(),
    ))
}

/// Empties the bundle's sealed channel keys once they are safely in `data`'s key state, and
/// leaves a note naming `data`.
pub fn consume_keys(bundle: &Path, data: &Path) -> Result<(), FileError> {
    let note = format!(
        "the channel keys of this bundle were moved into {}/{} by ptt-node run; run the device with that data directory, or enrol it again\n",
        data.display(),
        files::KEY_STATE
    );
    fsutil::write_public(&bundle.join(files::KEYS_IMPORTED), note.as_bytes())?;
    fsutil::write_public(
        &bundle.join(files::CHANNEL_KEYS),
        &wire::encode(&Vec::<Vec<u8>>::new()),
    )
}

/// The contents of a bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Device secrets.
    pub secrets: DeviceSecrets,
    /// Certificate.
    pub cert: Certificate,
    /// Domain descriptor.
    pub descriptor: Descriptor,
    /// Sealed channel keys.
    pub sealed: Vec<SealedKey>,
}

impl Bundle {
    /// Writes the bundle into `dir` (created with mode 0700). Refuses a directory that already
    /// holds a bundle unless `force`.
    pub fn save(&self, dir: &Path, force: bool) -> Result<(), FileError> {
        if dir.join(files::IDENTITY).exists() && !force {
            return Err(FileError::invalid(
                dir,
                "already holds a bundle; choose another --out or pass --force",
            ));
        }
        fsutil::create_private_dir(dir)?;
        fsutil::write_secret(
            &dir.join(files::IDENTITY),
            &fsutil::frame_key(KeyKind::DeviceIdentity, self.secrets.identity.as_bytes()),
        )?;
        let x = zeroize::Zeroizing::new(self.secrets.x25519.to_bytes());
        fsutil::write_secret(
            &dir.join(files::X25519),
            &fsutil::frame_key(KeyKind::DeviceX25519, x.as_ref()),
        )?;
        fsutil::write_public(&dir.join(files::DESCRIPTOR), self.descriptor.as_bytes())?;
        let sealed: Vec<Vec<u8>> = self.sealed.iter().map(|s| s.to_bytes()).collect();
        fsutil::write_public(&dir.join(files::CHANNEL_KEYS), &wire::encode(&sealed))?;
        // The certificate last: its presence marks a complete bundle.
        fsutil::write_public(&dir.join(files::CERTIFICATE), self.cert.as_bytes())?;
        Ok(())
    }

    /// Reads and verifies a bundle.
    pub fn load(dir: &Path) -> Result<Self, FileError> {
        if !dir.is_dir() {
            return Err(FileError::invalid(
                dir,
                "is not a bundle directory (make one with: ptt-node domain enroll … --out DIR)",
            ));
        }
        let desc_path = dir.join(files::DESCRIPTOR);
        let descriptor = Descriptor::from_bytes(&fsutil::read_public(&desc_path)?)
            .map_err(|e| FileError::invalid(&desc_path, e))?;
        let id_path = dir.join(files::IDENTITY);
        let identity =
            SigningKey::from_bytes(&*fsutil::read_key32(&id_path, KeyKind::DeviceIdentity)?);
        let x_path = dir.join(files::X25519);
        let x25519 =
            x25519_dalek::StaticSecret::from(*fsutil::read_key32(&x_path, KeyKind::DeviceX25519)?);
        let cert_path = dir.join(files::CERTIFICATE);
        let cert = Certificate::from_bytes(
            &fsutil::read_public(&cert_path)?,
            &descriptor.authority,
            &descriptor.domain,
        )
        .map_err(|e| FileError::invalid(&cert_path, format!("certificate does not verify: {e}")))?;
        let secrets = DeviceSecrets { identity, x25519 };
        if cert.body.ed25519 != secrets.identity.verifying_key().to_bytes() {
            return Err(FileError::invalid(
                &cert_path,
                format!(
                    "certificate is for another identity than {}",
                    id_path.display()
                ),
            ));
        }
        if cert.body.x25519 != secrets.x25519_public() {
            return Err(FileError::invalid(
                &cert_path,
                format!(
                    "certificate is for another X25519 key than {}",
                    x_path.display()
                ),
            ));
        }
        let keys_path = dir.join(files::CHANNEL_KEYS);
        let raw: Vec<Vec<u8>> = wire::decode(
            "channel keys",
            &fsutil::read_public(&keys_path)?,
            1024 * 1024,
        )
        .map_err(|e| FileError::invalid(&keys_path, e))?;
        let mut sealed = vec![];
        for r in raw {
            sealed.push(
                SealedKey::from_bytes(&r, &descriptor.authority)
                    .map_err(|e| FileError::invalid(&keys_path, e))?,
            );
        }
        Ok(Bundle {
            secrets,
            cert,
            descriptor,
            sealed,
        })
    }

    /// The libp2p keypair of the device identity.
    pub fn libp2p_keypair(&self) -> Result<libp2p::identity::Keypair, FileError> {
        let mut b = zeroize::Zeroizing::new(self.secrets.identity.to_bytes());
        let kp = libp2p::identity::ed25519::Keypair::from(
            libp2p::identity::ed25519::SecretKey::try_from_bytes(b.as_mut())
                .map_err(|e| FileError::invalid(Path::new(files::IDENTITY), e))?,
        );
        Ok(libp2p::identity::Keypair::from(kp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Authority, EnrollRequest};
    use rand_core::OsRng;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn bundle_save_load_and_tamper() {
        let mut a = Authority::create("site", 1_000_000, &mut OsRng).unwrap();
        let (b, _) = a
            .enroll(
                &EnrollRequest {
                    name: "cam-1".into(),
                    ..Default::default()
                },
                1_000_000,
                &mut OsRng,
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("b");
        b.save(&d, false).unwrap();
        assert!(b.save(&d, false).is_err(), "overwrite without force");
        for f in [files::IDENTITY, files::X25519] {
            assert_eq!(
                std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let loaded = Bundle::load(&d).unwrap();
        assert_eq!(loaded.cert, b.cert);
        let cfg = loaded.into_node_config(&d).unwrap();
        // The default channel's key and the plane key.
        assert_eq!(cfg.channel_secrets.len(), 2);

        // A certificate from another domain is refused, naming the file.
        let mut other = Authority::create("other", 1_000_000, &mut OsRng).unwrap();
        let (ob, _) = other
            .enroll(
                &EnrollRequest {
                    name: "x".into(),
                    ..Default::default()
                },
                1_000_000,
                &mut OsRng,
            )
            .unwrap();
        std::fs::write(d.join(files::CERTIFICATE), ob.cert.as_bytes()).unwrap();
        let e = Bundle::load(&d).unwrap_err().to_string();
        assert!(e.contains("certificate.bin"), "{e}");

        // Loose permissions on a secret are refused.
        b.save(&d, true).unwrap();
        std::fs::set_permissions(
            d.join(files::IDENTITY),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = Bundle::load(&d).unwrap_err().to_string();
        assert!(e.contains("identity.key") && e.contains("chmod 600"), "{e}");
    }
}
