//! Searching the roster (`ptt-node search`) by kind, place and tags, with each member's
//! current profile. Reads only; never changes what the node holds.

use super::Node;
use crate::cert::{Certificate, Location, Profile};

/// A device search (`ptt-node search`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// Device kind (case-insensitive).
    pub kind: Option<String>,
    /// Within this many metres of this place.
    pub near: Option<(Location, f64)>,
    /// Every one of these tags.
    pub tags: Vec<(String, String)>,
}

/// A member found by a search.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its certificate.
    pub cert: Certificate,
    /// Its profile now.
    pub profile: Profile,
    /// Addresses from its latest presence record.
    pub addresses: Vec<String>,
    /// Distance from the searched place.
    pub distance_m: Option<f64>,
}

impl Node {
    /// Members matching a search, nearest first when searching near a place, else by name.
    pub fn search(&self, q: &Search) -> Vec<Found> {
        let mut out: Vec<Found> = self
            .roster
            .values()
            .filter(|c| !self.descriptor.is_revoked(c.body.device))
            .filter_map(|c| {
                let profile = self.profile_of(c);
                if q.kind
                    .as_ref()
                    .is_some_and(|k| !profile.kind.eq_ignore_ascii_case(k))
                {
                    return None;
                }
                if !q.tags.iter().all(|t| profile.tags.contains(t)) {
                    return None;
                }
                let distance_m = match (q.near, profile.location) {
                    (Some((at, radius)), Some(loc)) => {
                        let d = crate::presence::distance_m(at, loc);
                        if d > radius {
                            return None;
                        }
                        Some(d)
                    }
                    (Some(_), None) => return None,
                    (None, _) => None,
                };
                let addresses = self
                    .presence
                    .get(&c.body.device)
                    .map(|p| p.body.addresses.clone())
                    .unwrap_or_default();
                Some(Found {
                    cert: c.clone(),
                    profile,
                    addresses,
                    distance_m,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            a.distance_m
                .partial_cmp(&b.distance_m)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.cert.body.name.cmp(&b.cert.body.name))
        });
        out
    }
}
