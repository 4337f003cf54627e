//! Envelopes from the network (gossip and catch-up): validation through the node, storing,
//! delivery to listeners, and envelopes kept until their key arrives.
//!
//! Each (sender, seq) is accepted once whichever way it comes; nothing unverified is
//! remembered.

use std::sync::Arc;

use libp2p::{PeerId, gossipsub};

use super::{Daemon, now_us};
use crate::alert::ReceivedAlert;
use crate::alert::Via;
use crate::mesh::Reopened;
use crate::node::{Arrival, Unreadable, Verdict};
use crate::replay::ReplayError;
use crate::store::StoredEnvelope;
use crate::sync::Id;

/// Catch-up ids refused here that are remembered, so they are not fetched again.
const MAX_REFUSED_IDS: usize = 65_536;

impl Daemon {
    /// Opens the envelopes that waited for a key epoch this node now holds.
    pub(super) fn reopen_unread(&mut self) {
        let node = &mut self.node;
        let opened = self
            .unread
            .reopen(|bytes, at| match node.open_stored(bytes, at) {
                Ok(Ok(a)) => Reopened::Opened(a),
                Ok(Err(Unreadable::UnknownEpoch { .. })) => Reopened::StillUnknown,
                _ => Reopened::Dropped,
            });
        for mut a in opened {
            a.via = Via::CatchUp;
            self.note_state(&mut a);
            self.note_emergency(&a);
            self.node.counters_mut().alerts_received += 1;
            if !self.watch_take(&a) {
                self.opened_here(&a);
                continue;
            }
            self.apply_rules(&a);
            self.opened_here(&a);
            self.schedule_backup_escalation(&a);
            self.deliver(a);
        }
        // The receipts after the alerts they report, which the ledger must track first.
        let node = &self.node;
        let receipts = self
            .unread_receipts
            .reopen(|bytes, _| match node.reopen_receipt(bytes) {
                Ok(r) => Reopened::Opened(r),
                Err(Some(Unreadable::UnknownEpoch { .. })) => Reopened::StillUnknown,
                Err(_) => Reopened::Dropped,
            });
        for r in receipts {
            self.node.counters_mut().receipts_received += 1;
            self.take_receipt(&r);
        }
    }

    pub(super) fn on_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        msg: gossipsub::Message,
    ) {
        // The header's sender, for a refusal only its author could cause (the message itself
        // moves into validation; the header is read in place, nothing is copied).
        let msg_sender = crate::envelope::header_of(&msg.data).map(|h| h.sender);
        let taken = if let Some(ch) = self.voice.topics.get(&msg.topic).copied() {
            Some(self.take_voice(&msg.data, Arrival::Live { topic_channel: ch }))
        } else if let Some(ch) = self.topics.get(&msg.topic).copied() {
            let arrival = Arrival::Live { topic_channel: ch };
            Some(self.take_envelope(msg.data, Via::Gossip, arrival))
        } else {
            // gossipsub hands over only the topics this node subscribed, all of them in one
            // of the two maps; anything else is dropped unread, never taken as catch-up.
            tracing::debug!(peer = %source, topic = %msg.topic, "message on an unknown topic");
            None
        };
        let acceptance = match taken {
            Some(Ok(())) => gossipsub::MessageAcceptance::Accept,
            Some(Err(r)) => self.refusal(source, &r, msg_sender),
            None => gossipsub::MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .inner()
            .report_message_validation_result(&id, &source, acceptance);
    }

    /// How gossipsub treats the peer that forwarded a refused message (alert or voice).
    fn refusal(
        &self,
        source: PeerId,
        r: &crate::node::Rejection,
        header_sender: Option<u32>,
    ) -> gossipsub::MessageAcceptance {
        use crate::envelope::EnvelopeError;
        use crate::node::Rejection;
        tracing::debug!(peer = %source, reason = r.reason(), error = %r, "message refused");
        // A sender over its rate limit, one whose signed envelope does not open or opens to no
        // alert, or one far ahead of this node's clock: its own connection is penalised (scored down, then graylisted by
        // gossipsub); a member that relayed it is not (a relay cannot tell).
        // A far-ahead envelope is charged the same way without its signature being checked:
        // the peer that delivered it is the device its header names (Noise proved that), so
        // the envelope is that peer's doing whatever its signature holds.
        let author = match r {
            Rejection::RateLimited { sender, .. } | Rejection::TooFarAhead(sender) => Some(*sender),
            Rejection::Envelope(EnvelopeError::Decrypt)
            | Rejection::BadPlaintext
            | Rejection::SenderFaulty(_) => header_sender,
            _ => None,
        };
        let flooder = author
            .and_then(|a| self.node.member(a))
            .is_some_and(|c| c.peer_id() == source);
        if r.is_peer_fault() || flooder {
            gossipsub::MessageAcceptance::Reject
        } else {
            gossipsub::MessageAcceptance::Ignore
        }
    }

    /// Validates an envelope from the network (gossip or catch-up); when accepted, stores it
    /// and shows it to listeners if this node can read it. Each (sender, seq) is accepted
    /// once, whichever way it comes.
    pub(super) fn take_envelope(
        &mut self,
        bytes: Vec<u8>,
        via: Via,
        arrival: Arrival,
    ) -> Result<(), crate::node::Rejection> {
        // The store and the unread queue keep the instant the sender's certificate was judged
        // at, because reopening the envelope later judges it at that time again (control.md).
        // The live alert is stamped when it is accepted: verified, checked against replay and
        // opened. The benchmark's latency runs to that stamp.
        let now = now_us();
        let verdict = self.node.validate(&bytes, arrival, now);
        // What its author pushed just now is evidence it is alive (not what was pulled).
        if let (Verdict::Accept { envelope, .. } | Verdict::Receipt { envelope, .. }, true) =
            (&verdict, matches!(via, Via::Gossip | Via::Multicast))
        {
            self.watchdog.heard(envelope.header.sender, now);
        }
        match verdict {
            Verdict::Accept { envelope, content } => {
                let h = envelope.header;
                let bytes_for_unread = if matches!(content, Err(Unreadable::UnknownEpoch { .. })) {
                    bytes.clone()
                } else {
                    Vec::new()
                };
                self.store.put(StoredEnvelope {
                    sender: h.sender,
                    seq: h.seq,
                    channel: h.channel,
                    received_at_us: now,
                    bytes,
                });
                match content {
                    Ok(mut a) => {
                        a.via = via;
                        a.received_at_us = now_us();
                        a.late = crate::alert::is_late(a.created_at_us, a.received_at_us);
                        self.note_state(&mut a);
                        self.note_emergency(&a);
                        if !self.watch_take(&a) {
                            // A copy of an announcement another member made first.
                            self.opened_here(&a);
                            return Ok(());
                        }
                        self.apply_rules(&a);
                        tracing::debug!(id = %a.id, sender = %a.sender, ?via, late = a.late, "alert received");
                        self.opened_here(&a);
                        self.schedule_backup_escalation(&a);
                        self.deliver(a);
                    }
                    Err(Unreadable::UnknownEpoch { .. }) => {
                        // Probably sealed under an epoch whose update has not reached this
                        // node yet: open it when the update comes.
                        self.unread.push(bytes_for_unread, now);
                    }
                    Err(_) => {}
                }
                Ok(())
            }
            Verdict::Receipt { envelope, content } => {
                let h = envelope.header;
                // Like an alert, a receipt under an epoch whose key has not come yet waits
                // for it (then the ledger learns what it says).
                if let Err(Unreadable::UnknownEpoch { .. }) = content {
                    self.unread_receipts.push(bytes.clone(), now);
                }
                self.store.put(StoredEnvelope {
                    sender: h.sender,
                    seq: h.seq,
                    channel: h.channel,
                    received_at_us: now,
                    bytes,
                });
                if let Ok(r) = content {
                    self.take_receipt(&r);
                }
                Ok(())
            }
            Verdict::Reject(r) => Err(r),
        }
    }

    /// Hands an opened alert to the listeners (and counts its latency).
    fn deliver(&self, a: Box<ReceivedAlert>) {
        if let Some(m) = &self.metrics {
            m.delivered(a.created_at_us, a.received_at_us);
        }
        let _ = self.alerts.send(Arc::from(a));
    }

    /// Takes an envelope fetched by catch-up. One refused for good after its signature
    /// verified (it does not open, or is older than the replay floor) is remembered, so later
    /// sessions do not fetch it again; nothing unverified is remembered, and an unknown
    /// sender is not final (its certificate may still arrive).
    pub(super) fn ingest(&mut self, bytes: Vec<u8>) -> Result<bool, &'static str> {
        use crate::envelope::EnvelopeError;
        use crate::node::Rejection;
        use crate::wire::DecodeError;
        let header = crate::envelope::header_of(&bytes);
        let carried = header.is_some_and(|h| self.node.carries_log_channel(h.channel));
        if !carried {
            return Ok(false);
        }
        let len = bytes.len();
        match self.take_envelope(bytes, Via::CatchUp, Arrival::CatchUp) {
            Ok(()) => {
                if let Some(h) = header {
                    self.evidence_on_catch_up(h.sender, h.seq, len);
                }
                Ok(true)
            }
            Err(r) => {
                tracing::debug!(reason = r.reason(), error = %r, "fetched envelope refused");
                // A receipt refused as a duplicate was taken before and may have left the log
                // by size (it raises no floor): the responder lists it again, so it is
                // remembered like any settled refusal, or every session would fetch it.
                let receipt_seen = matches!(r, Rejection::Replay(ReplayError::Duplicate))
                    && header.is_some_and(|h| crate::receipt::is_receipt_channel(h.channel));
                let settled = receipt_seen
                    || matches!(
                        r,
                        Rejection::Envelope(crate::envelope::EnvelopeError::Decrypt)
                            | Rejection::BadPlaintext
                            | Rejection::NotDispatcher(_)
                            | Rejection::NotEmergency(_)
                            | Rejection::Replay(ReplayError::TooOld)
                            | Rejection::Revoked(_)
                    );
                if let (true, Some(h)) = (settled, header) {
                    self.remember_refused((h.sender, h.seq));
                }
                // What no envelope a member stored can fail: the responder made it up.
                let forged = matches!(
                    r,
                    Rejection::Envelope(
                        EnvelopeError::BadSignature
                            | EnvelopeError::WrongDomain
                            | EnvelopeError::Decode(
                                DecodeError::Malformed { .. } | DecodeError::Trailing { .. }
                            )
                    )
                );
                if forged { Err(r.reason()) } else { Ok(false) }
            }
        }
    }

    fn remember_refused(&mut self, id: Id) {
        if self.refused_ids.len() >= MAX_REFUSED_IDS {
            // Forget everything rather than grow: at worst some are fetched once more.
            self.refused_ids.clear();
        }
        self.refused_ids.insert(id);
    }
}
