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
use crate::envelope::Header;

/// Alerts whose state a node keeps (those that later messages changed; the oldest go first).
pub(super) const MAX_STATES: usize = 16_384;

/// Bytes of a cancellation's text the states keep.
const MAX_KEPT_TEXT: usize = 256;

/// An alert, by its channel's name, sender and seq.
type Key = (String, u32, u64);

/// What one update or cancellation says, as the states keep it: names are looked up when
/// shown (at start, the log is read before any peer has shared its roster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    /// The channel's name.
    pub channel: String,
    /// The alert it changes: sender, seq.
    pub target: (u32, u64),
    /// Update or cancel.
    pub msg_type: MsgType,
    /// Its own id.
    pub id: String,
    /// Its sender.
    pub by: u32,
    /// Its seq (its sender's clock).
    pub at_us: u64,
    /// Its text.
    pub text: String,
}

impl Change {
    /// What an opened alert changes, if it is an update or a cancellation.
    pub(super) fn of(a: &ReceivedAlert) -> Option<Change> {
        let r = a.references.as_ref()?;
        Some(Change {
            channel: a.channel.clone(),
            target: (r.sender_device, r.created_at_us),
            msg_type: a.msg_type,
            id: a.id.clone(),
            by: a.sender_device,
            at_us: a.seq,
            text: a.text.clone(),
        })
    }
}

#[derive(Debug, Default, Clone)]
struct Entry {
    /// The newest update: its id and seq.
    updated: Option<(String, u64)>,
    /// The first cancellation.
    cancelled: Option<Change>,
    /// The first escalation: its id and seq.
    escalated: Option<(String, u64)>,
}

/// What updates and cancellations did to alerts, per alert.
#[derive(Debug, Default)]
pub(super) struct States {
    map: HashMap<Key, Entry>,
    order: VecDeque<Key>,
}

impl States {
    /// Records what an update or a cancellation does to the alert it names. Returns whether
    /// the alert's state changed. The newest update (by its sender's clock) is the one shown;
    /// the first cancellation is the one kept.
    pub(super) fn note(&mut self, c: Change) -> bool {
        let key = (c.channel.clone(), c.target.0, c.target.1);
        if !self.map.contains_key(&key) {
            if self.order.len() >= MAX_STATES
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
            self.order.push_back(key.clone());
        }
        let e = self.map.entry(key).or_default();
        match c.msg_type {
            MsgType::Update if e.updated.as_ref().is_none_or(|(_, at)| c.at_us > *at) => {
                e.updated = Some((c.id, c.at_us));
                true
            }
            MsgType::Cancel if e.cancelled.as_ref().is_none_or(|x| c.at_us < x.at_us) => {
                // Kept short: a member may cancel made-up alerts of its own, each with up to
                // 16 KiB of text, and the states must stay small.
                let mut c = c;
                if c.text.len() > MAX_KEPT_TEXT {
                    let mut end = MAX_KEPT_TEXT;
                    while !c.text.is_char_boundary(end) {
                        end -= 1;
                    }
                    c.text.truncate(end);
                }
                e.cancelled = Some(c);
                true
            }
            MsgType::Escalation if e.escalated.as_ref().is_none_or(|(_, at)| c.at_us < *at) => {
                e.escalated = Some((c.id, c.at_us));
                true
            }
            _ => false,
        }
    }

    /// What later messages did to the alert `a`, if anything reached this node; `name` gives
    /// a device's name.
    pub(super) fn of(&self, a: &ReceivedAlert, name: impl Fn(u32) -> String) -> Option<AlertState> {
        let e = self.map.get(&(a.channel.clone(), a.sender_device, a.seq))?;
        Some(AlertState {
            updated_by: e.updated.as_ref().map(|(id, _)| id.clone()),
            cancelled: e.cancelled.as_ref().map(|c| Cancellation {
                id: c.id.clone(),
                by: name(c.by),
                at_us: c.at_us,
                text: c.text.clone(),
            }),
            escalated_by: e.escalated.as_ref().map(|(id, _)| id.clone()),
        })
    }

    /// Whether the alert (channel name, sender, seq) was cancelled.
    pub(super) fn cancelled(&self, channel: &str, sender: u32, seq: u64) -> bool {
        self.map
            .get(&(channel.to_string(), sender, seq))
            .is_some_and(|e| e.cancelled.is_some())
    }

    /// Whether the alert (channel name, sender, seq) was escalated.
    pub(super) fn escalated(&self, channel: &str, sender: u32, seq: u64) -> bool {
        self.map
            .get(&(channel.to_string(), sender, seq))
            .is_some_and(|e| e.escalated.is_some())
    }

    /// Alerts with a state.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The states as this node's log holds them, at start: what the updates and cancellations
/// among `logged` (the log's newest alerts, opened once at start, oldest first) did.
pub(super) fn rebuild(logged: &[(Header, AlertBody)], node: &crate::node::Node) -> States {
    let mut states = States::default();
    for (h, body) in logged {
        let Some(r) = body.reference else {
            continue;
        };
        let t = r.target();
        states.note(Change {
            channel: node.channel_name(h.channel),
            target: (t.sender, t.seq),
            msg_type: r.msg_type(),
            id: crate::envelope::alert_id(node.domain(), h.sender, h.seq),
            by: h.sender,
            at_us: h.seq,
            text: body.text.clone(),
        });
    }
    states
}

/// An alert this device sealed, as members will read it (shown to this device's own `listen`
/// by the watchdog).
pub(super) fn own_alert(
    node: &crate::node::Node,
    sealed: &crate::node::Sealed,
    body: &AlertBody,
) -> ReceivedAlert {
    let cert = node.cert();
    ReceivedAlert {
        id: sealed.id.clone(),
        channel: sealed.channel_name.clone(),
        sender: cert.body.name.clone(),
        sender_peer_id: cert.peer_id().to_string(),
        sender_device: cert.body.device,
        seq: sealed.seq,
        severity: body.severity,
        kind: body.kind.clone(),
        text: body.text.clone(),
        created_at_us: sealed.seq,
        received_at_us: sealed.seq,
        location: body.location,
        attributes: body.attributes.clone(),
        recipient: None,
        claimed_severity: None,
        msg_type: body.reference.map_or(MsgType::Alert, |r| r.msg_type()),
        references: None,
        state: None,
        via: crate::alert::Via::Log,
        late: false,
    }
}

/// What `alert --update` or `cancel` asks for.
#[derive(Debug, Clone)]
pub(super) enum Asked {
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
        if let Some(c) = Change::of(a)
            && self.states.note(c)
        {
            tracing::info!(id = %a.id, msg_type = ?a.msg_type, "alert state changed");
        }
        a.state = self.states.of(a, |d| self.node.member_name(d));
    }

    /// Gives alerts read from the log (`history`) their current state.
    pub(super) fn with_states(&self, alerts: &mut [ReceivedAlert]) {
        for a in alerts {
            a.state = self.states.of(a, |d| self.node.member_name(d));
        }
    }

    /// Seals an update or a cancellation of the alert `id` (one this device sent or opened:
    /// its channel and sender come from the ledger); the caller stores and publishes it like
    /// any alert.
    pub(super) fn change_alert(
        &mut self,
        id: &str,
        change: Asked,
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
            Asked::Update {
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
            Asked::Cancel { text } => AlertBody {
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
        if matches!(body.reference, Some(Reference::Cancel(_))) {
            self.emergencies.clear(sender, id, &sealed.channel_name);
        }
        if let Some(r) = body.reference {
            self.states.note(Change {
                channel: sealed.channel_name.clone(),
                target: (sender, seq),
                msg_type: r.msg_type(),
                id: sealed.id.clone(),
                by: me,
                at_us: sealed.seq,
                text: body.text.clone(),
            });
        }
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Referenced, Severity, Via};

    fn note(s: &mut States, id: &str, channel: &str, seq: u64, r: (MsgType, u32, u64)) -> bool {
        s.note(Change::of(&msg(id, channel, seq, Some(r))).expect("a change"))
    }

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
        let name = |d: u32| format!("dev{d}");
        let original = msg("a", "alerts", 100, None);
        assert_eq!(s.of(&original, name), None);
        // Updates in any order: the newest shows.
        assert!(note(&mut s, "u2", "alerts", 300, (MsgType::Update, 9, 100)));
        assert!(!note(
            &mut s,
            "u1",
            "alerts",
            200,
            (MsgType::Update, 9, 100)
        ));
        assert_eq!(
            s.of(&original, name).unwrap().updated_by.as_deref(),
            Some("u2")
        );
        assert!(s.of(&original, name).unwrap().cancelled.is_none());
        // The first cancellation stays, whichever comes first.
        assert!(note(&mut s, "c2", "alerts", 500, (MsgType::Cancel, 9, 100)));
        assert!(note(&mut s, "c1", "alerts", 400, (MsgType::Cancel, 9, 100)));
        assert!(!note(
            &mut s,
            "c3",
            "alerts",
            600,
            (MsgType::Cancel, 9, 100)
        ));
        let c = s.of(&original, name).unwrap().cancelled.unwrap();
        assert_eq!(
            (c.id.as_str(), c.at_us, c.text.as_str(), c.by.as_str()),
            ("c1", 400, "text c1", "dev9")
        );
        // The same sender and seq on another channel is another alert: untouched.
        assert_eq!(s.of(&msg("a", "ops", 100, None), name), None);
        assert!(note(&mut s, "x", "ops", 700, (MsgType::Cancel, 9, 100)));
        assert_eq!(s.len(), 2);
        // A plain alert changes nothing.
        assert_eq!(Change::of(&msg("p", "alerts", 800, None)), None);
        // Bounded: the oldest states go first.
        for i in 0..MAX_STATES as u64 {
            note(&mut s, "n", "alerts", 1_000 + i, (MsgType::Cancel, 1, i));
        }
        assert_eq!(s.len(), MAX_STATES);
        assert_eq!(s.of(&original, name), None);
    }
}
