//! The roster: the member certificates this node knows, checked against the domain
//! authority and its revocations, one key per device number. Never trusts a certificate it
//! did not verify itself.

use libp2p::PeerId;

use super::{MAX_ROSTER, Node};
use crate::cert::{CertError, Certificate};

/// Why a peer is not admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Its certificate does not check out.
    #[error("certificate refused: {0}")]
    Cert(#[from] CertError),
    /// Another certificate (another key) already holds its device number.
    #[error("device number {0} is already held by another key")]
    Conflict(u32),
    /// The roster is full.
    #[error("roster is full")]
    RosterFull,
    /// The device was revoked by the domain authority.
    #[error("device {0} was revoked by the domain authority")]
    Revoked(u32),
}

impl Node {
    /// Member certificates known, this device's included (revoked ones too: their old
    /// alerts stay readable in the log).
    pub fn roster(&self) -> impl Iterator<Item = &Certificate> {
        self.roster.values()
    }

    /// The certificate of a member by device number.
    pub fn member(&self, device: u32) -> Option<&Certificate> {
        self.roster.get(&device)
    }

    /// Whether a certificate with this peer id is known.
    pub fn knows_peer(&self, peer: &PeerId) -> bool {
        self.roster.values().any(|c| c.peer_id() == *peer)
    }

    /// Admits a peer whose Noise-proved id is `peer` and who presented `cert_bytes`.
    pub fn authenticate_peer(
        &mut self,
        peer: &PeerId,
        cert_bytes: &[u8],
        now_secs: u64,
    ) -> Result<Certificate, AuthError> {
        let cert = self.check_cert(cert_bytes, now_secs)?;
        cert.check_peer(peer)?;
        self.admit(cert.clone())?;
        Ok(cert)
    }

    /// Learns a member certificate relayed by another member (roster sync).
    pub fn learn_certificate(
        &mut self,
        cert_bytes: &[u8],
        now_secs: u64,
    ) -> Result<bool, AuthError> {
        let cert = self.check_cert(cert_bytes, now_secs)?;
        let new = !self.roster.contains_key(&cert.body.device);
        self.admit(cert)?;
        Ok(new)
    }

    fn check_cert(&self, cert_bytes: &[u8], now_secs: u64) -> Result<Certificate, AuthError> {
        // The same bytes as a certificate in the roster (verified when it was admitted): no
        // second signature check. Every admission and roster push brings the whole roster
        // again, so without this a 30-node start verified each certificate dozens of times.
        let known = Certificate::claimed_device(cert_bytes)
            .ok()
            .and_then(|device| self.roster.get(&device))
            .filter(|c| c.as_bytes() == cert_bytes)
            .cloned();
        let cert = match known {
            Some(c) => c,
            None => Certificate::from_bytes(cert_bytes, &self.descriptor.authority, self.domain())?,
        };
        if self.descriptor.is_revoked(cert.body.device) {
            return Err(AuthError::Revoked(cert.body.device));
        }
        cert.check_time(now_secs)?;
        Ok(cert)
    }

    fn admit(&mut self, cert: Certificate) -> Result<(), AuthError> {
        match self.roster.get(&cert.body.device) {
            Some(old) if old.body.ed25519 != cert.body.ed25519 => {
                return Err(AuthError::Conflict(cert.body.device));
            }
            Some(_) => {}
            None if self.roster.len() >= MAX_ROSTER => return Err(AuthError::RosterFull),
            None => {}
        }
        self.roster.insert(cert.body.device, cert);
        Ok(())
    }
}
