//! This device's profile (`ptt-node profile`, kept in [`PROFILE_FILE`]) and the search over
//! member profiles.
//!
//! Changes only this device's own profile; members' profiles come from their records.

use super::Daemon;
use crate::control::{self};
use crate::fsutil::{self};

/// The device's own profile changes (`ptt-node profile`), kept across restarts.
pub const PROFILE_FILE: &str = "profile.json";

/// A change to this device's profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    /// New kind.
    pub kind: Option<String>,
    /// New location.
    pub location: Option<crate::cert::Location>,
    /// New tags.
    pub tags: Option<Vec<(String, String)>>,
    /// Sleeping or not.
    pub sleeps: Option<bool>,
    /// Back to the enrolled profile.
    pub reset: bool,
}

/// Why this device's profile was not changed. The text is the `error` reply's message.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProfileError {
    /// A kind or tags beyond the bounds a profile record allows.
    #[error(
        "a profile has a kind of at most 64 bytes and at most 16 tags of at most 64 bytes each"
    )]
    TooLarge,
    /// The location is out of range.
    #[error("{0}")]
    Location(String),
    /// The saved profile could not be removed (`--reset`).
    #[error("{}: {source}", path.display())]
    Remove {
        /// The profile file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The profile could not be encoded.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// The profile could not be saved.
    #[error(transparent)]
    Save(#[from] crate::fsutil::FileError),
}

impl Daemon {
    pub(super) fn change_profile(
        &mut self,
        c: ProfileChange,
    ) -> Result<crate::cert::Profile, ProfileError> {
        let unchanged =
            c.kind.is_none() && c.location.is_none() && c.tags.is_none() && c.sleeps.is_none();
        if unchanged && !c.reset {
            return Ok(self.node.profile_of(self.node.cert()));
        }
        let mut p = if c.reset {
            self.node.cert().body.profile.clone()
        } else {
            self.node.profile_of(self.node.cert())
        };
        if c.kind.as_ref().is_some_and(|k| k.len() > 64)
            || c.tags.as_ref().is_some_and(|t| {
                t.len() > 16 || t.iter().any(|(k, v)| k.len() > 64 || v.len() > 64)
            })
        {
            return Err(ProfileError::TooLarge);
        }
        if let Some(k) = c.kind {
            p.kind = k;
        }
        if let Some(l) = c.location {
            l.check().map_err(ProfileError::Location)?;
            p.location = Some(l);
        }
        if let Some(t) = c.tags {
            p.tags = t;
        }
        if let Some(s) = c.sleeps {
            p.sleeps = s;
        }
        let path = self.data.join(PROFILE_FILE);
        if c.reset {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ProfileError::Remove { path, source }),
            }
            self.profile_override = None;
        } else {
            let json = serde_json::to_vec_pretty(&p)?;
            fsutil::write_secret(&path, &json)?;
            self.profile_override = Some(p.clone());
        }
        self.presence_dirty = true;
        Ok(p)
    }

    pub(super) fn search(&self, q: &crate::node::Search) -> Vec<control::DeviceInfo> {
        let me = self.node.cert().body.device;
        self.node
            .search(q)
            .into_iter()
            .map(|f| {
                let peer = f.cert.peer_id();
                let st = self.peers.get(&peer);
                let mut addresses = f.addresses;
                if addresses.is_empty()
                    && let Some(st) = st
                {
                    addresses = st.addresses().iter().map(|a| a.to_string()).collect();
                }
                control::DeviceInfo {
                    name: f.cert.body.name.clone(),
                    device: f.cert.body.device,
                    peer_id: peer.to_string(),
                    profile: f.profile,
                    relay_only: f.cert.body.relay_only,
                    addresses,
                    distance_m: f.distance_m,
                    state: if f.cert.body.device == me {
                        "self".into()
                    } else {
                        st.map_or("known", |s| s.status().as_str()).into()
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_errors_read_as_the_replies_always_did() {
        assert_eq!(
            ProfileError::TooLarge.to_string(),
            "a profile has a kind of at most 64 bytes and at most 16 tags of at most 64 bytes each"
        );
        assert_eq!(
            ProfileError::Location("latitude out of range".into()).to_string(),
            "latitude out of range"
        );
        let path = std::path::PathBuf::from("/data/profile.json");
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let text = format!("{}: {e}", path.display());
        assert_eq!(ProfileError::Remove { path, source: e }.to_string(), text);
    }
}
