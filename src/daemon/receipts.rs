//! Receipts in the daemon (`proto/receipts.md`): the alerts this node opened, reported in one
//! receipt per channel per window ([`Outbox`]), and what members' receipts say about each alert
//! ([`Ledger`]), for `receipts` and `alert --wait`. Both are plain state: the loop feeds them
//! and seals what [`Outbox::due`] returns.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;

use super::{Daemon, now_us};
use crate::alert::{ReceivedAlert, Via};
use crate::node::{DIRECT_CHANNEL, ReceivedReceipt};
use crate::receipt::{Ack, MAX_RECEIPT_ACKS, Opened, ReceiptBody};

/// How long an opened alert waits for others to share its receipt.
pub(super) const RECEIPT_WINDOW_US: u64 = 500_000;
/// Most alerts one receipt lists; a batch this full goes without waiting.
pub(super) const MAX_BATCH: usize = 150;
/// Largest receipt plaintext sent in one piece when it lists alerts: with the envelope's 110
/// bytes or so, it fits one datagram of the plane (`PLANE_MAX_BODY`, 1 147 bytes).
pub(super) const MAX_RECEIPT_BYTES: usize = 1000;
/// Alerts whose receipts a node keeps track of (the oldest are forgotten first).
pub(super) const MAX_LEDGER: usize = 16_384;

/// Receipts read back from the log at start, at most (the newest).
pub(super) const MAX_REBUILD_RECEIPTS: usize = 20_000;

/// Where a receipt goes: the channel of the alerts it reports, and for directed messages
/// their sender (the receipt is directed to it).
pub(super) type Dest = (u32, Option<u32>);

#[derive(Debug, Default)]
struct Batch {
    since_us: u64,
    opened: Vec<Opened>,
    acks: Vec<Ack>,
}

/// What this node opened and has not reported yet.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    batches: HashMap<Dest, Batch>,
}

impl Outbox {
    /// Notes an alert opened at `now_us`, to be reported to `dest`.
    pub(super) fn note(&mut self, dest: Dest, o: Opened, now_us: u64) {
        let b = self.batches.entry(dest).or_insert_with(|| Batch {
            since_us: now_us,
            ..Default::default()
        });
        b.opened.push(o);
    }

    /// Notes an acknowledgement: it goes at the next [`Outbox::due`].
    pub(super) fn ack(&mut self, dest: Dest, a: Ack, now_us: u64) {
        let b = self.batches.entry(dest).or_insert_with(|| Batch {
            since_us: now_us,
            ..Default::default()
        });
        b.acks.push(a);
    }

    /// The receipts to send at `now_us`: each batch whose window has passed, that is full, or
    /// that holds an acknowledgement.
    pub(super) fn due(&mut self, now_us: u64) -> Vec<(Dest, ReceiptBody)> {
        let ready: Vec<Dest> = self
            .batches
            .iter()
            .filter(|(_, b)| {
                now_us.saturating_sub(b.since_us) >= RECEIPT_WINDOW_US
                    || b.opened.len() >= MAX_BATCH
                    || !b.acks.is_empty()
            })
            .map(|(d, _)| *d)
            .collect();
        let mut out = vec![];
        for d in ready {
            let Some(b) = self.batches.remove(&d) else {
                continue;
            };
            let (mut opened, mut acks) = (b.opened, b.acks);
            while !opened.is_empty() || !acks.is_empty() {
                // As many as fit one datagram of the plane, up to MAX_BATCH; the rest follow.
                let a = acks.len().min(MAX_RECEIPT_ACKS);
                let mut n = opened.len().min(MAX_BATCH);
                let body = loop {
                    let body = ReceiptBody::new(&opened[..n], acks[..a].to_vec());
                    if n <= 1 || body.encode().len() <= MAX_RECEIPT_BYTES {
                        break body;
                    }
                    n /= 2;
                };
                opened.drain(..n);
                acks.drain(..a);
                out.push((d, body));
            }
        }
        out
    }

    /// Puts back what a receipt that could not be sealed listed: it goes in the next window.
    pub(super) fn requeue(&mut self, dest: Dest, body: &ReceiptBody, now_us: u64) {
        let b = self.batches.entry(dest).or_insert_with(|| Batch {
            since_us: now_us,
            ..Default::default()
        });
        b.opened.extend(body.opened());
        b.acks.extend(body.acks().iter().cloned());
    }

    /// Alerts waiting to be reported.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.batches.values().map(|b| b.opened.len()).sum()
    }
}

/// What one member's receipts said about one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Fact {
    /// When it opened the alert (its clock, µs).
    pub at_us: u64,
    /// How the alert reached it.
    pub via: Via,
    /// Its acknowledgement, if any.
    pub ack: Option<String>,
}

/// One alert as the ledger knows it.
#[derive(Debug, Clone)]
pub(super) struct Tracked {
    /// Its id.
    pub id: String,
    /// Its channel (0: directed).
    pub channel: u32,
    /// For a directed message, its recipient.
    pub recipient: Option<u32>,
    /// Per member that sent a receipt for it.
    pub facts: BTreeMap<u32, Fact>,
}

/// What members' receipts say, per alert: the alerts this node sent or opened, at most
/// [`MAX_LEDGER`].
#[derive(Debug, Default)]
pub(super) struct Ledger {
    alerts: HashMap<(u32, u64), Tracked>,
    by_id: HashMap<String, (u32, u64)>,
    order: VecDeque<(u32, u64)>,
}

impl Ledger {
    /// Starts tracking an alert (one this node sent or opened).
    pub(super) fn track(
        &mut self,
        key: (u32, u64),
        id: String,
        channel: u32,
        recipient: Option<u32>,
    ) {
        if self.alerts.contains_key(&key) {
            return;
        }
        if self.order.len() >= MAX_LEDGER
            && let Some(old) = self.order.pop_front()
            && let Some(t) = self.alerts.remove(&old)
        {
            self.by_id.remove(&t.id);
        }
        self.by_id.insert(id.clone(), key);
        self.order.push_back(key);
        self.alerts.insert(
            key,
            Tracked {
                id,
                channel,
                recipient,
                facts: BTreeMap::new(),
            },
        );
    }

    /// Records what `author` said about the alerts of `channel` in one receipt. An entry for an
    /// alert this node does not track, or of another channel, is ignored (a receipt can only
    /// speak for its own channel). Returns the tracked alerts it acknowledged.
    pub(super) fn record(
        &mut self,
        author: u32,
        channel: u32,
        opened: &[Opened],
        acks: &[Ack],
    ) -> Vec<(u32, u64)> {
        for o in opened {
            let Some(t) = self.alerts.get_mut(&(o.sender, o.seq)) else {
                continue;
            };
            if t.channel != channel {
                continue;
            }
            let f = t.facts.entry(author).or_insert(Fact {
                at_us: o.at_us,
                via: o.via,
                ack: None,
            });
            if o.at_us < f.at_us {
                f.at_us = o.at_us;
                f.via = o.via;
            }
        }
        let mut acked = vec![];
        for a in acks {
            let key = (a.sender, a.seq);
            let Some(t) = self.alerts.get_mut(&key) else {
                continue;
            };
            if t.channel != channel {
                continue;
            }
            // An acknowledgement says it was opened too.
            let f = t.facts.entry(author).or_insert(Fact {
                at_us: a.seq,
                via: Via::Gossip,
                ack: None,
            });
            if f.ack.is_none() {
                f.ack = Some(a.text.clone());
                acked.push(key);
            }
        }
        acked
    }

    /// The alert of this id.
    pub(super) fn by_id(&self, id: &str) -> Option<((u32, u64), &Tracked)> {
        let key = self.by_id.get(id)?;
        self.alerts.get(key).map(|t| (*key, t))
    }

    /// The alert of this key.
    pub(super) fn by_key(&self, key: (u32, u64)) -> Option<&Tracked> {
        self.alerts.get(&key)
    }

    /// The alert of this key.
    #[cfg(test)]
    pub(super) fn get(&self, key: (u32, u64)) -> Option<&Tracked> {
        self.alerts.get(&key)
    }

    /// Alerts tracked.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.alerts.len()
    }
}

/// The ledger as this node's log holds it, at start: of `newest` (the newest envelopes of the
/// log, newest first), the newest [`MAX_LEDGER`] alerts (from their headers), then what the
/// receipts stored among the newest [`MAX_REBUILD_RECEIPTS`] say of them, this node's own
/// included.
pub(super) fn rebuild(newest: &[crate::store::StoredEnvelope], node: &crate::node::Node) -> Ledger {
    let mut ledger = Ledger::default();
    let (receipts, alerts): (Vec<_>, Vec<_>) = newest
        .iter()
        .rev()
        .partition(|e| crate::receipt::is_receipt_channel(e.channel));
    // Only what this node sent or can read, as while it runs.
    let me = node.cert().body.device;
    let alerts: Vec<_> = alerts
        .into_iter()
        .filter_map(|e| {
            let h = crate::envelope::header_of(&e.bytes)?;
            let mine = if e.channel == DIRECT_CHANNEL {
                e.sender == me || h.epoch == me
            } else {
                e.sender == me || node.cert().grant(e.channel).is_some_and(|g| g.read)
            };
            mine.then_some((e, h))
        })
        .collect();
    let skip = alerts.len().saturating_sub(MAX_LEDGER);
    for (e, h) in alerts.into_iter().skip(skip) {
        let id = crate::envelope::alert_id(node.domain(), e.sender, e.seq);
        let recipient = (e.channel == DIRECT_CHANNEL).then_some(h.epoch);
        ledger.track((e.sender, e.seq), id, e.channel, recipient);
    }
    let skip = receipts.len().saturating_sub(MAX_REBUILD_RECEIPTS);
    for e in receipts.into_iter().skip(skip) {
        if let Some(r) = node.open_logged_receipt(&e.bytes) {
            ledger.record(r.author, r.channel, &r.opened, &r.acks);
        }
    }
    ledger
}

impl Daemon {
    /// Notes an alert this node opened from the network: tracked for `receipts`, and listed in
    /// this node's next receipt for its channel (a directed message's, to its sender).
    pub(super) fn opened_here(&mut self, a: &ReceivedAlert) {
        let me = self.node.cert().body.device;
        if a.sender_device == me {
            return;
        }
        let channel = if a.recipient.is_some() {
            DIRECT_CHANNEL
        } else {
            match self
                .node
                .cert()
                .body
                .grants
                .iter()
                .find(|g| g.name == a.channel)
            {
                Some(g) => g.channel,
                None => return,
            }
        };
        let direct = channel == DIRECT_CHANNEL;
        self.ledger.track(
            (a.sender_device, a.seq),
            a.id.clone(),
            channel,
            direct.then_some(me),
        );
        if !self.receipts_on {
            return;
        }
        let opened = Opened {
            sender: a.sender_device,
            seq: a.seq,
            at_us: a.received_at_us,
            via: a.via,
        };
        self.receipts_out.note(
            (channel, direct.then_some(a.sender_device)),
            opened,
            now_us(),
        );
    }

    /// Takes a member's receipt, opened.
    pub(super) fn take_receipt(&mut self, r: &ReceivedReceipt) {
        let acked = self.ledger.record(r.author, r.channel, &r.opened, &r.acks);
        self.announce_acks(r.author, r.seq, &acked, &r.acks);
    }

    /// Tells `listen` of the acknowledgements (`acks`) that `author` made first in its receipt
    /// of seq `at_us` for the tracked alerts `acked`.
    fn announce_acks(&self, author: u32, at_us: u64, acked: &[(u32, u64)], acks: &[Ack]) {
        let name = |d: u32| self.node.member_name(d);
        for &key in acked {
            let Some(t) = self.ledger.by_key(key) else {
                continue;
            };
            let text = acks
                .iter()
                .find(|a| (a.sender, a.seq) == key)
                .map(|a| a.text.clone())
                .unwrap_or_default();
            let info = crate::control::AckInfo {
                id: t.id.clone(),
                channel: self.node.channel_name(t.channel),
                sender: name(key.0),
                created_at_us: key.1,
                recipient: t.recipient.map(name),
                by: name(author),
                by_device: author,
                at_us,
                text,
            };
            tracing::info!(alert = %info.id, by = %info.by, "alert acknowledged");
            let _ = self
                .voice
                .tx
                .send(Arc::new(crate::control::Reply::Ack(Arc::new(info))));
        }
    }

    /// Tracks an alert this node sent, for `receipts` and `alert --wait`.
    pub(super) fn sent_here(&mut self, sealed: &crate::node::Sealed) {
        if crate::receipt::is_receipt_channel(sealed.channel) {
            return;
        }
        let me = self.node.cert().body.device;
        let recipient = crate::envelope::header_of(&sealed.bytes)
            .filter(|h| h.channel == DIRECT_CHANNEL)
            .map(|h| h.epoch);
        self.ledger.track(
            (me, sealed.seq),
            sealed.id.clone(),
            sealed.channel,
            recipient,
        );
    }

    /// Seals and publishes the receipts that are due (each once its seq is leased, like an
    /// alert), and records this node's own part in the ledger.
    pub(super) fn send_receipts(&mut self) {
        let now = now_us();
        let me = self.node.cert().body.device;
        for ((channel, to), body) in self.receipts_out.due(now) {
            match self.node.seal_receipt(channel, to, &body, now) {
                Ok(sealed) => {
                    let acked = self.ledger.record(me, channel, &body.opened(), body.acks());
                    self.announce_acks(me, sealed.seq, &acked, body.acks());
                    let (cmds, store) = (self.handle.clone(), self.store.clone());
                    tokio::spawn(async move {
                        if let Err(e) = super::send::store_and_publish(&cmds, &store, sealed).await
                        {
                            tracing::debug!(error = %e, "receipt not sent");
                        }
                    });
                }
                // Over this node's own receipt rate: nothing is lost, the batch waits for the
                // next window (a receipt's entries keep their opening times).
                Err(crate::node::SealError::RateLimited { .. }) => {
                    self.receipts_out.requeue((channel, to), &body, now);
                }
                Err(e) => tracing::debug!(channel, error = %e, "receipt not sealed"),
            }
        }
    }
}

impl Daemon {
    /// Who got the alert of this id: every member that can read it now, and any other whose
    /// receipt came.
    pub(super) fn receipts_of(&self, id: &str) -> Result<crate::control::ReceiptsInfo, String> {
        let Some(((sender, _), t)) = self.ledger.by_id(id) else {
            return Err(format!(
                "alert {id} is not among the last {MAX_LEDGER} alerts this device sent or opened"
            ));
        };
        let readers: Vec<(u32, String)> = match t.recipient {
            Some(r) => self
                .node
                .member(r)
                .map(|c| vec![(r, c.body.name.clone())])
                .unwrap_or_default(),
            None => self.node.readers_of(t.channel, now_us() / 1_000_000),
        };
        let mut members: BTreeMap<u32, crate::control::MemberReceipt> = BTreeMap::new();
        for (device, name) in readers.into_iter().filter(|(d, _)| *d != sender) {
            members.insert(
                device,
                crate::control::MemberReceipt {
                    device,
                    name,
                    expected: true,
                    ..Default::default()
                },
            );
        }
        for (device, f) in &t.facts {
            if *device == sender {
                continue;
            }
            let m = members
                .entry(*device)
                .or_insert_with(|| crate::control::MemberReceipt {
                    device: *device,
                    name: self.node.member_name(*device),
                    ..Default::default()
                });
            m.received_at_us = Some(f.at_us);
            m.via = Some(f.via);
            m.acknowledged = f.ack.is_some();
            m.ack = f.ack.clone();
        }
        let mut members: Vec<_> = members.into_values().collect();
        members.sort_by(|a, b| a.name.cmp(&b.name).then(a.device.cmp(&b.device)));
        let expected = members.iter().filter(|m| m.expected).count();
        let received = members
            .iter()
            .filter(|m| m.expected && m.received_at_us.is_some())
            .count();
        let acknowledged = members
            .iter()
            .filter(|m| m.expected && m.acknowledged)
            .count();
        Ok(crate::control::ReceiptsInfo {
            id: id.to_string(),
            channel: self.node.channel_name(t.channel),
            sender: self.node.member_name(sender),
            expected,
            received,
            acknowledged,
            members,
        })
    }

    /// Acknowledges the alert of this id: an entry in this device's next receipt, sent at the
    /// next tick.
    pub(super) fn ack(&mut self, id: &str, text: String) -> Result<(), String> {
        if text.len() > crate::receipt::MAX_ACK_TEXT {
            return Err(format!(
                "the acknowledgement's text is {} bytes, more than {}",
                text.len(),
                crate::receipt::MAX_ACK_TEXT
            ));
        }
        let me = self.node.cert().body.device;
        let Some(((sender, seq), t)) = self.ledger.by_id(id) else {
            return Err(format!(
                "alert {id} is not among the last {MAX_LEDGER} alerts this device opened"
            ));
        };
        if sender == me {
            return Err(format!("alert {id} is this device's own"));
        }
        let dest = match t.recipient {
            Some(_) => (DIRECT_CHANNEL, Some(sender)),
            None => (t.channel, None),
        };
        self.receipts_out
            .ack(dest, Ack { sender, seq, text }, now_us());
        self.send_receipts();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(sender: u32, seq: u64, at_us: u64) -> Opened {
        Opened {
            sender,
            seq,
            at_us,
            via: Via::Gossip,
        }
    }

    #[test]
    fn openings_wait_for_the_window_and_leave_in_receipts_that_fit_the_plane() {
        let mut out = Outbox::default();
        let t = 1_000_000;
        out.note((1, None), o(3, 10, t), t);
        out.note((1, None), o(4, 20, t + 100_000), t + 100_000);
        assert!(out.due(t + RECEIPT_WINDOW_US - 1).is_empty());
        let due = out.due(t + RECEIPT_WINDOW_US);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, (1, None));
        assert_eq!(due[0].1.len(), 2);
        assert_eq!(out.waiting(), 0);
        // 400 at once: full receipts go at once, each at most MAX_BATCH, the rest with them.
        for i in 0..400 {
            out.note((2, None), o(3, 100 + i, t), t);
        }
        let due = out.due(t);
        assert_eq!(due.iter().map(|(_, b)| b.len()).sum::<usize>(), 400);
        assert!(due.iter().all(|(_, b)| b.len() <= MAX_BATCH));
        assert!(
            due.iter()
                .all(|(_, b)| b.encode().len() <= MAX_RECEIPT_BYTES),
            "a full receipt fits a plane datagram: {:?}",
            due.iter()
                .map(|(_, b)| b.encode().len())
                .collect::<Vec<_>>()
        );
        // Alerts far apart in time and opened late take more bytes each: still within a
        // datagram, in more receipts.
        for i in 0..300u64 {
            out.note(
                (3, None),
                o(9, i * 3_000_000_000, i * 3_000_000_000 + 60_000_000),
                t,
            );
        }
        let due = out.due(t);
        assert_eq!(due.iter().map(|(_, b)| b.len()).sum::<usize>(), 300);
        assert!(
            due.iter()
                .all(|(_, b)| b.encode().len() <= MAX_RECEIPT_BYTES)
        );
        // A receipt that could not be sealed (over this node's own rate) goes back whole.
        let (d, body) = due.into_iter().next().expect("a receipt");
        out.requeue(d, &body, t);
        assert_eq!(out.waiting(), body.len());
        let again = out.due(t + RECEIPT_WINDOW_US);
        assert_eq!(
            again.iter().map(|(_, b)| b.len()).sum::<usize>(),
            body.len()
        );
        // An acknowledgement does not wait.
        out.ack(
            (0, Some(7)),
            Ack {
                sender: 7,
                seq: 5,
                text: "done".into(),
            },
            t,
        );
        let due = out.due(t);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, (0, Some(7)));
        assert_eq!(due[0].1.acks().len(), 1);
    }

    #[test]
    fn the_ledger_keeps_the_first_opening_and_the_first_ack_per_member_and_forgets_the_oldest() {
        let mut l = Ledger::default();
        l.track((3, 10), "a".into(), 1, None);
        l.record(5, 1, &[o(3, 10, 2_000), o(3, 99, 1_000)], &[]);
        l.record(5, 1, &[o(3, 10, 3_000)], &[]);
        l.record(6, 1, &[o(3, 10, 1_500)], &[]);
        // Another channel's receipt cannot speak for this alert.
        l.record(7, 2, &[o(3, 10, 1_500)], &[]);
        let (_, t) = l.by_id("a").unwrap();
        assert_eq!(t.facts.len(), 2);
        assert_eq!(t.facts[&5].at_us, 2_000);
        let ack = |text: &str| Ack {
            sender: 3,
            seq: 10,
            text: text.into(),
        };
        assert_eq!(l.record(6, 1, &[], &[ack("first")]), vec![(3, 10)]);
        assert_eq!(l.record(6, 1, &[], &[ack("again")]), vec![]);
        assert_eq!(
            l.get((3, 10)).unwrap().facts[&6].ack.as_deref(),
            Some("first")
        );
        for i in 0..MAX_LEDGER as u64 {
            l.track((4, i), format!("x{i}"), 1, None);
        }
        assert_eq!(l.len(), MAX_LEDGER);
        assert!(l.by_id("a").is_none());
    }
}
