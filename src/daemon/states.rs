//! Updates and cancellations in the daemon (`proto/envelope.md`, "Updates and cancellations"):
//! what later messages did to each alert, for `listen` and `history`, and the checks `alert
//! --update` and `cancel` make before they seal.
//!
//! The node already refused a reference from a sender that may not make it; here it is only
//! remembered. A reference names its alert within its own channel, so a message on one channel
//! can never change an alert of another, and an update or cancel that arrives before its alert
//! (catch-up order) still applies when the alert comes.

use std::collections::{HashMap, VecDeque};

use super::{Daemon, now_us};
use crate::alert::{
    AlertBody, AlertRef, AlertState, Cancellation, MsgType, ReceivedAlert, Reference,
};

/// Alerts whose state a node keeps (those that later messages changed; the oldest go first).
pub(super) const MAX_STATES: usize = 16_384;

/// An alert, by its channel's name, sender and seq.
type Key = (String, u32, u64);

#[derive(Debug, Default, Clone)]
struct Entry {
    state: AlertState,
    /// The seq of the update `state.updated_by` names.
    update_seq: u64,
    /// The seq of the cancellation `state.cancelled` names.
    cancel_seq: u64,
}

/// What updates and cancellations did to alerts, per alert.
#[derive(Debug, Default)]
pub(super) struct States {
    map: HashMap<Key, Entry>,
    order: VecDeque<Key>,
}

impl States {
    /// Records what the update or cancellation `a` does to the alert it names. Returns whether
    /// the alert's state changed. The newest update (by its sender's clock) is the one shown;
    /// the first cancellation is the one kept.
    pub(super) fn note(&mut self, a: &ReceivedAlert) -> bool {
        let Some(r) = &a.references else {
            return false;
        };
        let key = (a.channel.clone(), r.sender_device, r.created_at_us);
        if !self.map.contains_key(&key) {
            if self.order.len() >= MAX_STATES
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
            self.order.push_back(key.clone());
        }
        let e = self.map.entry(key).or_default();
        match a.msg_type {
            MsgType::Update if e.state.updated_by.is_none() || a.seq > e.update_seq => {
                e.state.updated_by = Some(a.id.clone());
                e.update_seq = a.seq;
                true
            }
            MsgType::Cancel if e.state.cancelled.is_none() || a.seq < e.cancel_seq => {
                e.state.cancelled = Some(Cancellation {
                    id: a.id.clone(),
                    by: a.sender.clone(),
                    at_us: a.seq,
                    text: a.text.clone(),
                });
                e.cancel_seq = a.seq;
                true
            }
            _ => false,
        }
    }

    /// What later messages did to the alert `a`, if anything reached this node.
    pub(super) fn of(&self, a: &ReceivedAlert) -> Option<AlertState> {
        self.map
            .get(&(a.channel.clone(), a.sender_device, a.seq))
            .map(|e| e.state.clone())
    }

    /// Alerts with a state.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The states as this node's log holds them, at start: what the updates and cancellations
/// among `newest` (newest first, as [`crate::store::Store::newest`] gives them) did.
pub(super) fn rebuild(newest: &[crate::store::StoredEnvelope], node: &crate::node::Node) -> States {
    let mut states = States::default();
    for e in newest.iter().rev() {
        if crate::receipt::is_receipt_channel(e.channel) {
            continue;
        }
        if let Some(a) = node.open_logged_alert(&e.bytes, e.received_at_us) {
            states.note(&a);
        }
    }
    states
}

/// What `alert --update` or `cancel` asks for.
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// A new content for the alert.
    Update {
        severity: crate::alert::Severity,
        kind: String,
        text: String,
        location: Option<crate::cert::Location>,
        attributes: Vec<(String, String)>,
    },
    /// Calling it off, and why.
    Cancel { text: String },
}

impl Daemon {
    /// Notes what a received alert changes, and what was changed of it before it came.
    pub(super) fn note_state(&mut self, a: &mut ReceivedAlert) {
        if a.references.is_some() && self.states.note(a) {
            tracing::info!(id = %a.id, msg_type = ?a.msg_type, "alert state changed");
        }
        a.state = self.states.of(a);
    }

    /// Gives alerts read from the log (`history`) their current state.
    pub(super) fn with_states(&self, alerts: &mut [ReceivedAlert]) {
        for a in alerts {
            a.state = self.states.of(a);
        }
    }

    /// Seals an update or a cancellation of the alert `id` (one this device sent or opened:
    /// its channel and sender come from the ledger); the caller stores and publishes it like
    /// any alert.
    pub(super) fn change_alert(
        &mut self,
        id: &str,
        change: Change,
    ) -> Result<crate::node::Sealed, String> {
        let Some(((sender, seq), t)) = self.ledger.by_id(id) else {
            return Err(format!(
                "alert {id} is not among the last {} alerts this device sent or opened",
                super::receipts::MAX_LEDGER
            ));
        };
        let (channel, recipient) = (t.channel, t.recipient);
        let me = self.node.cert().body.device;
        let target = AlertRef { sender, seq };
        let body = match change {
            Change::Update {
                severity,
                kind,
                text,
                location,
                attributes,
            } => AlertBody {
                severity,
                kind,
                text,
                location,
                attributes,
                reference: Some(Reference::Update(target)),
            },
            Change::Cancel { text } => AlertBody {
                // What the alert was, as far as this device can claim it.
                severity: self.node.max_severity().min(crate::alert::Severity::Minor),
                kind: "cancel".into(),
                text,
                location: None,
                attributes: vec![],
                reference: Some(Reference::Cancel(target)),
            },
        };
        let now = now_us();
        let sealed = match recipient {
            Some(r) => {
                // A directed message is changed by a directed message to the same member.
                let other = if sender == me { r } else { sender };
                let name = self.node.member_name(other);
                self.node.seal_direct(&name, &body, now)
            }
            None => {
                let name = self.node.channel_name(channel);
                self.node.seal_alert(&name, &body, now)
            }
        }
        .map_err(|e| e.to_string())?;
        // This device's own change, as members will read it.
        let own = ReceivedAlert {
            id: sealed.id.clone(),
            channel: sealed.channel_name.clone(),
            sender: self.node.cert().body.name.clone(),
            sender_peer_id: String::new(),
            sender_device: me,
            seq: sealed.seq,
            severity: body.severity,
            kind: body.kind.clone(),
            text: body.text.clone(),
            created_at_us: sealed.seq,
            received_at_us: sealed.seq,
            location: None,
            attributes: vec![],
            recipient: None,
            claimed_severity: None,
            msg_type: body.reference.map_or(MsgType::Alert, |r| r.msg_type()),
            references: Some(crate::alert::Referenced {
                id: id.to_string(),
                sender: self.node.member_name(sender),
                sender_device: sender,
                created_at_us: seq,
            }),
            state: None,
            via: crate::alert::Via::Log,
            late: false,
        };
        self.states.note(&own);
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Referenced, Severity, Via};

    fn msg(id: &str, channel: &str, seq: u64, r: Option<(MsgType, u32, u64)>) -> ReceivedAlert {
        ReceivedAlert {
            id: id.into(),
            channel: channel.into(),
            sender: "s".into(),
            sender_peer_id: String::new(),
            sender_device: 9,
            seq,
            severity: Severity::Severe,
            kind: "k".into(),
            text: format!("text {id}"),
            created_at_us: seq,
            received_at_us: seq,
            location: None,
            attributes: vec![],
            recipient: None,
            claimed_severity: None,
            msg_type: r.map_or(MsgType::Alert, |r| r.0),
            references: r.map(|(_, sender, seq)| Referenced {
                id: format!("{sender}/{seq}"),
                sender: "o".into(),
                sender_device: sender,
                created_at_us: seq,
            }),
            state: None,
            via: Via::Gossip,
            late: false,
        }
    }

    #[test]
    fn the_newest_update_and_the_first_cancel_hold_within_the_alert_s_channel() {
        let mut s = States::default();
        let original = msg("a", "alerts", 100, None);
        assert_eq!(s.of(&original), None);
        // Updates in any order: the newest shows.
        assert!(s.note(&msg("u2", "alerts", 300, Some((MsgType::Update, 9, 100)))));
        assert!(!s.note(&msg("u1", "alerts", 200, Some((MsgType::Update, 9, 100)))));
        assert_eq!(s.of(&original).unwrap().updated_by.as_deref(), Some("u2"));
        assert!(s.of(&original).unwrap().cancelled.is_none());
        // The first cancellation stays, whichever comes first.
        assert!(s.note(&msg("c2", "alerts", 500, Some((MsgType::Cancel, 9, 100)))));
        assert!(s.note(&msg("c1", "alerts", 400, Some((MsgType::Cancel, 9, 100)))));
        assert!(!s.note(&msg("c3", "alerts", 600, Some((MsgType::Cancel, 9, 100)))));
        let c = s.of(&original).unwrap().cancelled.unwrap();
        assert_eq!(
            (c.id.as_str(), c.at_us, c.text.as_str()),
            ("c1", 400, "text c1")
        );
        // The same sender and seq on another channel is another alert: untouched.
        assert_eq!(s.of(&msg("a", "ops", 100, None)), None);
        assert!(s.note(&msg("x", "ops", 700, Some((MsgType::Cancel, 9, 100)))));
        assert_eq!(s.len(), 2);
        // A plain alert changes nothing.
        assert!(!s.note(&msg("p", "alerts", 800, None)));
        // Bounded: the oldest states go first.
        for i in 0..MAX_STATES as u64 {
            s.note(&msg(
                "n",
                "alerts",
                1_000 + i,
                Some((MsgType::Cancel, 1, i)),
            ));
        }
        assert_eq!(s.len(), MAX_STATES);
        assert_eq!(s.of(&original), None);
    }
}
