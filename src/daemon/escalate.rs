//! Escalation (`proto/envelope.md`, "Escalation"): this device's own alerts whose channel's
//! policy says to escalate them, announced again at the next severity when no member
//! acknowledged them in time. An alert's sender escalates it, so it happens once however many
//! members there are. When the sender is gone (the intruder smashed the sensor), the
//! dispatchers that read the channel stand in, one after another: the first in line
//! [`BACKUP_AFTER_US`] after the sender should have, each next one [`BACKUP_STEP_US`] later,
//! each only if no escalation, acknowledgement or cancellation of it reached it by then.

use std::collections::BTreeMap;

use super::{Daemon, now_us};
use crate::alert::{AlertBody, AlertRef, MsgType, Reference, Severity};
use crate::node::{DIRECT_CHANNEL, SealError, Sealed};

/// Alerts waiting for their escalation time, at most (the soonest due are dropped first when
/// more come: an alert that waited this long behind so many is no longer news).
pub(super) const MAX_PENDING: usize = 16_384;

/// How long an escalation refused by this device's own rate limit waits before it tries again.
const RETRY_US: u64 = 1_000_000;

/// At start, an alert whose escalation time passed longer ago than this (while the daemon was
/// down) is not escalated any more: old news, and its acknowledgements may have left the
/// ledger.
const STALE_AT_START_US: u64 = 600_000_000;

/// How long after an alert's escalation time the first dispatcher in line escalates it when
/// its sender did not.
pub(super) const BACKUP_AFTER_US: u64 = 3_000_000;
/// Each next dispatcher in line waits this much longer.
pub(super) const BACKUP_STEP_US: u64 = 2_000_000;
/// Places in line with a delay of their own; later dispatchers wait as long as the last.
const BACKUP_IN_LINE: usize = 4;
/// Other members' alerts a dispatcher waits on, at most (its own are bounded apart, so a
/// member flooding escalatable alerts cannot push them out).
pub(super) const MAX_BACKUPS: usize = 1_024;

/// An alert waiting for its escalation time: one of this device's, or, on a dispatcher,
/// another member's it stands in for.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// Its sender.
    pub sender: u32,
    /// Its seq.
    pub seq: u64,
    /// Its channel's name.
    pub channel: String,
    /// Its content.
    pub body: AlertBody,
}

/// Alerts waiting for their escalation time, by (due time, sender, seq): this device's own
/// ([`MAX_PENDING`] at most) and, on a dispatcher, those it stands in for ([`MAX_BACKUPS`]
/// at most, in a map of their own).
#[derive(Debug)]
pub(super) struct Escalations {
    pending: BTreeMap<(u64, u32, u64), Pending>,
    max: usize,
}

impl Default for Escalations {
    fn default() -> Self {
        Escalations::bounded(MAX_PENDING)
    }
}

impl Escalations {
    /// An empty set of at most `max`.
    pub(super) fn bounded(max: usize) -> Self {
        Escalations {
            pending: BTreeMap::new(),
            max,
        }
    }

    /// Waits for `due_us`.
    pub(super) fn schedule(&mut self, due_us: u64, p: Pending) {
        if self.pending.len() >= self.max {
            let dropped = self.pending.pop_first();
            tracing::warn!(
                seq = dropped.map(|(k, _)| k.2),
                "more alerts wait to be escalated than {}: the soonest is dropped",
                self.max
            );
        }
        self.pending.insert((due_us, p.sender, p.seq), p);
    }

    /// Takes those due at `now_us`.
    pub(super) fn due(&mut self, now_us: u64) -> Vec<Pending> {
        let later = self.pending.split_off(&(now_us.saturating_add(1), 0, 0));
        std::mem::replace(&mut self.pending, later)
            .into_values()
            .collect()
    }

    /// Alerts waiting.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }
}

/// The severity an escalation announces: the next one up (`extreme` stays), at most `max`.
pub(super) fn next_severity(s: Severity, max: Severity) -> Severity {
    let next = match s {
        Severity::Unknown => Severity::Minor,
        Severity::Minor => Severity::Moderate,
        Severity::Moderate => Severity::Severe,
        Severity::Severe | Severity::Extreme => Severity::Extreme,
    };
    next.min(max)
}

/// The escalations as this node's log holds them, at start: this device's own alerts among
/// `logged` (the log's newest alerts, opened once at start) that their channel escalates and
/// that were not escalated yet.
pub(super) fn rebuild(
    logged: &[(crate::envelope::Header, AlertBody)],
    node: &crate::node::Node,
    states: &super::states::States,
) -> Escalations {
    let me = node.cert().body.device;
    let now = now_us();
    let mut out = Escalations::default();
    for (h, body) in logged.iter().filter(|(h, _)| h.sender == me) {
        // Only what `alert` sends is escalated while running: the same here.
        let sent_by_alert = sent_by_alert(body);
        let channel = node.channel_name(h.channel);
        if let Some(due) = due_us(node, h.channel, h.seq, body)
            && sent_by_alert
            && due.saturating_add(STALE_AT_START_US) >= now
            && !states.escalated(&channel, me, h.seq)
            && !states.cancelled(&channel, me, h.seq)
        {
            out.schedule(
                due,
                Pending {
                    sender: me,
                    seq: h.seq,
                    channel,
                    body: body.clone(),
                },
            );
        }
    }
    out
}

/// Whether an alert is one `alert` sends (and so escalates): not an emergency declaration, not
/// a voice burst's record, not a watchdog announcement.
fn sent_by_alert(body: &AlertBody) -> bool {
    !crate::node::is_emergency(body)
        && body.kind != "voice"
        && !body
            .attributes
            .iter()
            .any(|(k, _)| k == super::watchdog::EVENT_ATTR)
}

/// When this device's alert of `seq` on `channel` is escalated, if its channel's policy says
/// so: not a directed message, not a change of another alert, at least the policy's severity.
fn due_us(node: &crate::node::Node, channel: u32, seq: u64, body: &AlertBody) -> Option<u64> {
    if channel == DIRECT_CHANNEL || body.reference.is_some() {
        return None;
    }
    let e = node.descriptor().escalation(channel);
    if e.after_secs == 0 || body.severity < e.min_severity {
        return None;
    }
    Some(seq.saturating_add(u64::from(e.after_secs) * 1_000_000))
}

impl Daemon {
    /// Notes an alert this device sealed: it waits for its escalation time if its channel
    /// escalates it.
    pub(super) fn schedule_escalation(&mut self, sealed: &Sealed, body: &AlertBody) {
        if let Some(due) = due_us(&self.node, sealed.channel, sealed.seq, body) {
            self.escalations.schedule(
                due,
                Pending {
                    sender: self.node.cert().body.device,
                    seq: sealed.seq,
                    channel: sealed.channel_name.clone(),
                    body: body.clone(),
                },
            );
        }
    }

    /// On a dispatcher: waits to stand in for the sender of an alert it opened, should the
    /// sender not escalate it (its channel escalates it, and this device may write there).
    pub(super) fn schedule_backup_escalation(&mut self, a: &crate::alert::ReceivedAlert) {
        let me = self.node.cert().body.device;
        if a.sender_device == me
            || a.recipient.is_some()
            || !self.node.is_dispatcher()
            // Its escalation would not be one: this device may not claim more.
            || self.node.max_severity() < a.severity
        {
            return;
        }
        // Only what `alert` sends is escalated (as by its sender).
        let body = AlertBody {
            severity: a.severity,
            kind: a.kind.clone(),
            text: a.text.clone(),
            location: a.location,
            attributes: a.attributes.clone(),
            reference: None,
        };
        let plain = a.msg_type == MsgType::Alert && sent_by_alert(&body);
        let desc = self.node.descriptor();
        let Some(channel) = desc.channel_by_name(&a.channel).map(|c| c.id) else {
            return;
        };
        let writes = self.node.cert().grant(channel).is_some_and(|g| g.write);
        let Some(due) = due_us(&self.node, channel, a.seq, &body).filter(|_| plain && writes)
        else {
            return;
        };
        // The dispatchers but the sender, by device number, from the descriptor alone (the
        // one thing every member holds the same): the line is the same everywhere.
        let mut line: Vec<u32> = desc
            .body
            .rights
            .iter()
            .map(|r| r.device)
            .filter(|d| *d != a.sender_device && desc.rights(*d).dispatcher())
            .filter(|d| !desc.is_revoked(*d))
            .collect();
        line.sort_unstable();
        line.dedup();
        let Some(rank) = line.iter().position(|d| *d == me) else {
            return;
        };
        let now = now_us();
        // An alert caught up long after its time is old news, as at start.
        if due.saturating_add(STALE_AT_START_US) < now {
            return;
        }
        // Timed from now, when it is opened here, not by the sender's clock (which may run
        // behind or ahead of this one): the sender's own escalation, and for an alert caught up
        // the receipts and the escalation caught up after it, have as long to come as the
        // policy says.
        let after = due.saturating_sub(a.seq);
        let wait = BACKUP_AFTER_US + BACKUP_STEP_US * rank.min(BACKUP_IN_LINE) as u64;
        self.backups.schedule(
            now.saturating_add(after).saturating_add(wait),
            Pending {
                sender: a.sender_device,
                seq: a.seq,
                channel: a.channel.clone(),
                body,
            },
        );
    }

    /// Escalates the alerts whose time has come and that no member acknowledged, nobody
    /// cancelled and nobody escalated yet: this device's own, and on a dispatcher those of
    /// senders that did not.
    pub(super) fn escalate_due(&mut self) {
        let now = now_us();
        let me = self.node.cert().body.device;
        let mut due = self.escalations.due(now);
        due.extend(self.backups.due(now));
        for p in due {
            let acked = self
                .ledger
                .by_key((p.sender, p.seq))
                .is_some_and(|t| t.facts.values().any(|f| f.ack.is_some()));
            if acked
                || self.states.cancelled(&p.channel, p.sender, p.seq)
                || self.states.escalated(&p.channel, p.sender, p.seq)
            {
                continue;
            }
            let body = AlertBody {
                severity: next_severity(p.body.severity, self.node.max_severity()),
                reference: Some(Reference::Escalate(AlertRef {
                    sender: p.sender,
                    seq: p.seq,
                })),
                ..p.body.clone()
            };
            match self.node.seal_alert(&p.channel, &body, now) {
                Ok(sealed) => {
                    let id = crate::envelope::alert_id(self.node.domain(), p.sender, p.seq);
                    if p.sender == me {
                        tracing::info!(alert = %id, escalation = %sealed.id, severity = %body.severity,
                            "alert escalated: no member acknowledged it");
                    } else {
                        tracing::warn!(alert = %id, escalation = %sealed.id, severity = %body.severity,
                            sender = %self.node.member_name(p.sender),
                            "alert escalated in its sender's stead: nobody acknowledged it and its sender did not escalate it");
                    }
                    self.states.note(super::states::Change {
                        channel: p.channel.clone(),
                        target: (p.sender, p.seq),
                        msg_type: MsgType::Escalation,
                        id: sealed.id.clone(),
                        by: me,
                        at_us: sealed.seq,
                        text: body.text.clone(),
                    });
                    let (cmds, store) = (self.handle.clone(), self.store.clone());
                    tokio::spawn(async move {
                        if let Err(e) = super::send::store_and_publish(&cmds, &store, sealed).await
                        {
                            tracing::warn!(error = %e, "escalation not sent");
                        }
                    });
                }
                Err(SealError::RateLimited { .. }) if p.sender == me => {
                    self.escalations.schedule(now.saturating_add(RETRY_US), p);
                }
                // Standing in is not worth this device's own alerts: a flood of other members'
                // alerts must not spend its rate.
                Err(SealError::RateLimited { .. }) => {
                    tracing::warn!(
                        seq = p.seq,
                        sender = p.sender,
                        "not escalated in its sender's stead: this device's alert rate is spent"
                    );
                }
                Err(e) => tracing::warn!(seq = p.seq, error = %e, "alert not escalated"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64) -> Pending {
        Pending {
            sender: 1,
            seq,
            channel: "alerts".into(),
            body: AlertBody {
                severity: Severity::Severe,
                kind: "k".into(),
                text: String::new(),
                location: None,
                attributes: vec![],
                reference: None,
            },
        }
    }

    #[test]
    fn escalations_come_due_in_time_order_once_and_are_bounded() {
        let mut e = Escalations::default();
        e.schedule(300, p(3));
        e.schedule(100, p(1));
        e.schedule(200, p(2));
        assert!(e.due(99).is_empty());
        let due: Vec<u64> = e.due(200).iter().map(|x| x.seq).collect();
        assert_eq!(due, [1, 2]);
        assert!(e.due(200).is_empty(), "once");
        assert_eq!(e.len(), 1);
        for i in 0..MAX_PENDING as u64 {
            e.schedule(1_000 + i, p(10 + i));
        }
        assert_eq!(e.len(), MAX_PENDING);
        // The soonest (seq 3, due 300) was dropped to make room.
        assert!(e.due(999).is_empty());
        // Two senders' alerts of the same seq and time are two alerts (a member cannot
        // overwrite another's by picking its seq).
        let mut b = Escalations::bounded(2);
        let mut other = p(5);
        other.sender = 2;
        b.schedule(100, p(5));
        b.schedule(100, other);
        assert_eq!(b.len(), 2);
        b.schedule(50, p(6));
        assert_eq!(b.len(), 2, "bounded apart");
        let senders: Vec<(u32, u64)> = b.due(100).iter().map(|x| (x.sender, x.seq)).collect();
        assert_eq!(senders.len(), 2);
    }

    #[test]
    fn the_next_severity_up_to_extreme_and_the_device_s_limit() {
        use Severity::*;
        assert_eq!(next_severity(Unknown, Extreme), Minor);
        assert_eq!(next_severity(Moderate, Extreme), Severe);
        assert_eq!(next_severity(Severe, Extreme), Extreme);
        assert_eq!(next_severity(Extreme, Extreme), Extreme);
        assert_eq!(next_severity(Severe, Severe), Severe);
    }
}
