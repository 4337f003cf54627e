//! What the authority decides about one enrolled device after its enrolment: revocation, and
//! its rights in the descriptor (the highest severity it may claim, whether it dispatches).

use rand_core::CryptoRngCore;

use super::{Authority, DomainError, PLANE_CHANNEL};
use crate::cert::{DeviceRights, RIGHT_DISPATCH, RIGHT_EMERGENCY};
use crate::severity::Severity;
use crate::update::Update;

/// A change of one device's rights (`ptt-node domain device`): `None` keeps what it has.
#[derive(Debug, Clone, Copy, Default)]
pub struct RightsChange {
    /// The highest severity it may claim (`extreme`: no limit).
    pub max_severity: Option<Severity>,
    /// Whether it may update and cancel other members' alerts.
    pub dispatcher: Option<bool>,
    /// Its check-in period in seconds (0: not watched).
    pub watch_secs: Option<u32>,
    /// Whether it may declare an emergency.
    pub emergency: Option<bool>,
}

impl Authority {
    /// Revokes the current device named `name`: lists it in the descriptor and starts a new
    /// key epoch for every channel it could read. Returns the update to publish.
    pub fn revoke(
        &mut self,
        name: &str,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Update, DomainError> {
        let Some(idx) = self
            .registry
            .iter()
            .position(|e| e.name == name && !e.replaced && !e.revoked)
        else {
            return Err(DomainError::Invalid(format!(
                "no current device named {name:?} (see ptt-node domain list)"
            )));
        };
        let device = self.registry[idx].device;
        let rekey = self.revoke_devices(&[device]);
        self.commit(
            format!("revoke {name} (device {device})"),
            vec![device],
            vec![],
            &rekey,
            now_secs,
            rng,
        )
    }

    /// Marks devices revoked in the registry and the descriptor; returns the channels they
    /// could read and the plane, if the domain has one (to be re-keyed).
    pub(super) fn revoke_devices(&mut self, devices: &[u32]) -> Vec<u32> {
        let mut rekey = vec![];
        for e in self.registry.iter_mut() {
            if devices.contains(&e.device) {
                e.revoked = true;
            }
        }
        for d in devices {
            if let Some(cert) = self
                .registry
                .iter()
                .find(|e| e.device == *d)
                .and_then(|e| e.cert(&self.descriptor))
            {
                for g in cert.body.grants.iter().filter(|g| g.read) {
                    if !rekey.contains(&g.channel) {
                        rekey.push(g.channel);
                    }
                }
            }
        }
        rekey.sort_unstable();
        // Every device holds the plane key, relay-only ones included.
        if self.plane_epoch().is_some() {
            rekey.push(PLANE_CHANNEL);
        }
        let devices = devices.to_vec();
        self.edit_descriptor(|b| {
            b.revoked.extend(devices);
            b.revoked.sort_unstable();
            b.revoked.dedup();
        });
        rekey
    }

    /// Gives a device its rights in the descriptor (the default removes its entry). The
    /// descriptor changes without a new revision: the caller commits.
    pub(super) fn put_rights(&mut self, rights: DeviceRights) {
        self.edit_descriptor(|b| {
            let at = b.rights.binary_search_by_key(&rights.device, |r| r.device);
            let default = rights.is_default();
            match (at, default) {
                (Ok(i), true) => {
                    b.rights.remove(i);
                }
                (Ok(i), false) => b.rights[i] = rights,
                (Err(_), true) => {}
                (Err(i), false) => b.rights.insert(i, rights),
            }
        });
    }

    /// Changes the rights of the current device named `name`: the highest severity it may
    /// claim (`extreme`: no limit), whether it dispatches (updates and cancels other members'
    /// alerts), its check-in period (0: not watched) and whether it may declare an emergency;
    /// `None` keeps what it has. Returns the update to publish, or `None`
    /// when nothing changes.
    pub fn set_rights(
        &mut self,
        name: &str,
        change: RightsChange,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Update>, DomainError> {
        let Some(e) = self
            .registry
            .iter()
            .find(|e| e.name == name && !e.replaced && !e.revoked)
        else {
            return Err(DomainError::Invalid(format!(
                "no current device named {name:?} (see ptt-node domain list)"
            )));
        };
        let device = e.device;
        let old = self.descriptor.rights(device);
        let RightsChange {
            max_severity,
            dispatcher,
            watch_secs,
            emergency,
        } = change;
        let mut new = old;
        if let Some(s) = max_severity {
            new.max_severity = s;
        }
        for (want, bit) in [(dispatcher, RIGHT_DISPATCH), (emergency, RIGHT_EMERGENCY)] {
            match want {
                Some(true) => new.flags |= bit,
                Some(false) => new.flags &= !bit,
                None => {}
            }
        }
        if let Some(w) = watch_secs {
            check_watch(w)?;
            new.watch_secs = w;
        }

        if new == old {
            return Ok(None);
        }
        self.put_rights(new);
        let mut what = vec![];
        if new.max_severity != old.max_severity {
            what.push(format!("severity at most {}", new.max_severity));
        }
        for (now, was, yes, no) in [
            (
                new.dispatcher(),
                old.dispatcher(),
                "dispatcher",
                "not a dispatcher",
            ),
            (
                new.emergency(),
                old.emergency(),
                "may declare an emergency",
                "may not declare an emergency",
            ),
        ] {
            if now != was {
                what.push(if now { yes } else { no }.to_string());
            }
        }
        if new.watch_secs != old.watch_secs {
            what.push(match new.watch_secs {
                0 => "not watched".into(),
                w => format!("watched every {w} s"),
            });
        }
        let u = self.commit(
            format!("device {name} (device {device}): {}", what.join(", ")),
            vec![],
            vec![],
            &[],
            now_secs,
            rng,
        )?;
        Ok(Some(u))
    }

    /// Sets the highest severity the current device named `name` may claim (`extreme`: no
    /// limit). Returns the update to publish, or `None` when nothing changes.
    pub fn set_max_severity(
        &mut self,
        name: &str,
        max_severity: Severity,
        now_secs: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Update>, DomainError> {
        let change = RightsChange {
            max_severity: Some(max_severity),
            ..RightsChange::default()
        };
        self.set_rights(name, change, now_secs, rng)
    }
}

/// The shortest check-in period the authority gives: two beacon slots of the plane (5 s each),
/// so a device that misses one beacon is not announced lost.
pub const MIN_WATCH_SECS: u32 = 10;

/// Refuses a check-in period that would announce devices lost that are merely between two
/// beacons.
pub(super) fn check_watch(secs: u32) -> Result<(), DomainError> {
    if secs != 0 && secs < MIN_WATCH_SECS {
        return Err(DomainError::Invalid(format!(
            "a check-in period of {secs} s is too short: use 0 (not watched) or at least {MIN_WATCH_SECS} s"
        )));
    }
    Ok(())
}
