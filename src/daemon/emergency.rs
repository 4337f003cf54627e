//! The emergency state (`proto/voice.md`, "Emergency"): which members are in emergency, since
//! when, until what cancels it. A device declares it with an `extreme` alert of kind
//! `emergency` (only with the authority's emergency right: every reader checks); the state
//! lasts until a cancellation of that alert (by the device or a dispatcher) or until the
//! authority takes the right away. The voice floor asks it who is in emergency.

use std::collections::BTreeMap;

use super::{Daemon, now_us};
use crate::alert::{AlertBody, EMERGENCY_KIND, MsgType, ReceivedAlert, Severity};
use crate::control::EmergencyInfo;
use crate::node::Sealed;

/// One member's emergency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Emergency {
    /// Its emergency alert's id.
    pub id: String,
    /// Its emergency alert's channel name.
    pub channel: String,
    /// Since when (the alert's seq).
    pub since_us: u64,
    /// What it said.
    pub text: String,
}

/// The members in emergency: per device, every declaration not cancelled, by its seq (the
/// earliest is the one that holds: arrival order, live or by catch-up, does not matter).
#[derive(Debug, Default)]
pub(super) struct Emergencies {
    by_device: BTreeMap<u32, BTreeMap<u64, Emergency>>,
}

/// Declarations kept per device, at most (a device's own daemon refuses a second one while
/// the first holds, so more come only from a member that skips that check).
const MAX_PER_DEVICE: usize = 16;

impl Emergencies {
    /// Notes a declaration by `device`. Returns whether the device was not in emergency.
    pub(super) fn declare(&mut self, device: u32, e: Emergency) -> bool {
        let held = self.by_device.entry(device).or_default();
        let new = held.is_empty();
        if held.len() < MAX_PER_DEVICE
            || held.last_key_value().is_some_and(|(k, _)| e.since_us < *k)
        {
            held.insert(e.since_us, e);
            while held.len() > MAX_PER_DEVICE {
                held.pop_last();
            }
        }
        new
    }

    /// Ends `device`'s declaration `id` on `channel` (a cancellation names an alert within its
    /// own channel). Returns whether the device is out of emergency now.
    pub(super) fn clear(&mut self, device: u32, id: &str, channel: &str) -> bool {
        let Some(held) = self.by_device.get_mut(&device) else {
            return false;
        };
        let before = held.len();
        held.retain(|_, e| !(e.id == id && e.channel == channel));
        let cleared = held.len() < before && held.is_empty();
        if held.is_empty() {
            self.by_device.remove(&device);
        }
        cleared
    }

    /// Since when `device` is in emergency (its earliest declaration not cancelled).
    pub(super) fn since(&self, device: u32) -> Option<u64> {
        self.get(device).map(|e| e.since_us)
    }

    /// `device`'s emergency: its earliest declaration not cancelled.
    pub(super) fn get(&self, device: u32) -> Option<&Emergency> {
        self.by_device
            .get(&device)
            .and_then(|h| h.first_key_value())
            .map(|(_, e)| e)
    }

    /// Drops the emergencies of devices `keep` says no.
    pub(super) fn retain(&mut self, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        let gone: Vec<u32> = self
            .by_device
            .keys()
            .copied()
            .filter(|d| !keep(*d))
            .collect();
        for d in &gone {
            self.by_device.remove(d);
        }
        gone
    }

    /// Every member in emergency, with the declaration that holds.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &Emergency)> {
        self.by_device
            .iter()
            .filter_map(|(d, h)| h.first_key_value().map(|(_, e)| (*d, e)))
    }
}

/// The emergencies as this node's log holds them, at start: declarations among `logged` (the
/// log's newest alerts, opened once at start, oldest first) that the states do not show
/// cancelled.
pub(super) fn rebuild(
    logged: &[(crate::envelope::Header, AlertBody)],
    node: &crate::node::Node,
    states: &super::states::States,
) -> Emergencies {
    let mut out = Emergencies::default();
    for (h, body) in logged.iter().filter(|(_, b)| crate::node::is_emergency(b)) {
        let channel = node.channel_name(h.channel);
        if !states.cancelled(&channel, h.sender, h.seq) {
            out.declare(
                h.sender,
                Emergency {
                    id: crate::envelope::alert_id(node.domain(), h.sender, h.seq),
                    channel,
                    since_us: h.seq,
                    text: body.text.clone(),
                },
            );
        }
    }
    out
}

impl Daemon {
    /// Notes what an opened alert (or this device's own) says of emergencies: a declaration,
    /// or a cancellation of one.
    pub(super) fn note_emergency(&mut self, a: &ReceivedAlert) {
        if a.kind == EMERGENCY_KIND && a.references.is_none() {
            let cancelled = a.state.as_ref().is_some_and(|s| s.cancelled.is_some());
            if !cancelled
                && self.emergencies.declare(
                    a.sender_device,
                    Emergency {
                        id: a.id.clone(),
                        channel: a.channel.clone(),
                        since_us: a.seq,
                        text: a.text.clone(),
                    },
                )
            {
                tracing::warn!(device = %a.sender, text = %a.text, "member in emergency");
            }
        }
        if a.msg_type == MsgType::Cancel
            && let Some(r) = &a.references
            && self.emergencies.clear(r.sender_device, &r.id, &a.channel)
        {
            tracing::info!(device = %r.sender, by = %a.sender, "emergency cleared");
        }
    }

    /// Drops the emergencies of devices that no longer hold the right (an authority update
    /// took it, or revoked them).
    pub(super) fn emergencies_check_rights(&mut self) {
        let desc = self.node.descriptor();
        for d in self
            .emergencies
            .retain(|d| desc.rights(d).emergency() && !desc.is_revoked(d))
        {
            tracing::info!(
                device = d,
                "emergency ended: the authority took the right away"
            );
        }
    }

    /// `ptt-node emergency`: seals this device's declaration (an `extreme` alert of kind
    /// `emergency` with its location), or with `clear`, a cancellation of it.
    pub(super) fn emergency(
        &mut self,
        text: String,
        channel: String,
        clear: bool,
    ) -> Result<Sealed, String> {
        let me = self.node.cert().body.device;
        if clear {
            let Some(e) = self.emergencies.get(me).cloned() else {
                return Err("this device is not in emergency".into());
            };
            return self.change_alert(&e.id, super::states::Asked::Cancel { text });
        }
        if let Some(e) = self.emergencies.get(me) {
            return Err(format!(
                "this device is in emergency since {} (alert {}); `ptt-node emergency --clear` ends it",
                crate::alert::format_time_us(e.since_us),
                e.id
            ));
        }
        let profile = self.node.profile_of(self.node.cert());
        let body = AlertBody {
            severity: Severity::Extreme.min(self.node.max_severity()),
            kind: EMERGENCY_KIND.into(),
            text,
            location: profile.location,
            attributes: vec![],
            reference: None,
        };
        let sealed = self
            .node
            .seal_alert(&channel, &body, now_us())
            .map_err(|e| e.to_string())?;
        self.sent_here(&sealed);
        self.emergencies.declare(
            me,
            Emergency {
                id: sealed.id.clone(),
                channel: sealed.channel_name.clone(),
                since_us: sealed.seq,
                text: body.text.clone(),
            },
        );
        tracing::warn!(text = %body.text, "this device declared an emergency");
        Ok(sealed)
    }

    /// What `status` shows: this device's emergency, and the others'.
    pub(super) fn emergency_infos(&self) -> (Option<EmergencyInfo>, Vec<EmergencyInfo>) {
        let me = self.node.cert().body.device;
        let info = |d: u32, e: &Emergency| EmergencyInfo {
            device: d,
            name: self.node.member_name(d),
            id: e.id.clone(),
            since_us: e.since_us,
            text: e.text.clone(),
        };
        let own = self.emergencies.get(me).map(|e| info(me, e));
        let others = self
            .emergencies
            .iter()
            .filter(|(d, _)| *d != me)
            .map(|(d, e)| info(d, e))
            .collect();
        (own, others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, since: u64) -> Emergency {
        Emergency {
            id: id.into(),
            channel: "alerts".into(),
            since_us: since,
            text: String::new(),
        }
    }

    #[test]
    fn the_earliest_declaration_not_cancelled_holds_whatever_the_arrival_order() {
        let mut m = Emergencies::default();
        // D declared E1 (100), cancelled it, declared E2 (300); this node gets E2 live first,
        // then E1 and its cancellation by catch-up: D is still in emergency, since E2.
        assert!(m.declare(3, e("e2", 300)));
        assert!(!m.declare(3, e("e1", 100)));
        assert_eq!(m.since(3), Some(100));
        assert!(!m.clear(3, "e1", "alerts"), "E2 still holds");
        assert_eq!(m.since(3), Some(300));
        // A cancellation on another channel changes nothing.
        assert!(!m.clear(3, "e2", "ops"));
        assert_eq!(m.since(3), Some(300));
        assert!(m.clear(3, "e2", "alerts"));
        assert_eq!(m.since(3), None);
        m.declare(4, e("x", 1));
        m.declare(5, e("y", 2));
        assert_eq!(m.retain(|d| d != 4), vec![4]);
        assert_eq!(m.iter().map(|(d, _)| d).collect::<Vec<_>>(), vec![5]);
        // Bounded per device, keeping the earliest.
        for i in 0..100 {
            m.declare(6, e(&format!("z{i}"), 1_000 - i));
        }
        assert_eq!(m.since(6), Some(901));
    }
}
