//! Receipts: a member's signed statement of which alerts it opened, when and by which path,
//! and which it acknowledged (issue 25; `proto/receipts.md`).
//!
//! A receipt is an envelope like an alert's, told apart before anything else by its header's
//! channel, [`RECEIPT_FLAG`] `|` the channel of the alerts it reports; it is sealed under its
//! own key label and signed under its own context, so relays carry and check it but cannot
//! read or forge it, and it can never pass for an alert. One receipt lists every alert its
//! author opened on one channel in a short window, delta-coded: about 5 bytes an alert.

use serde::{Deserialize, Serialize};

use crate::alert::Via;
use crate::wire::{self, DecodeError};

/// Set in an envelope header's channel: the envelope is a receipt for the alerts of channel
/// `channel & !RECEIPT_FLAG`. No channel the authority assigns has it.
pub const RECEIPT_FLAG: u32 = 0x8000_0000;
/// Most alert senders one receipt lists.
pub const MAX_RECEIPT_SENDERS: usize = 256;
/// Most alerts one receipt lists, in all.
pub const MAX_RECEIPT_IDS: usize = 1024;
/// Most acknowledgements one receipt carries.
pub const MAX_RECEIPT_ACKS: usize = 16;
/// Longest acknowledgement text, in bytes.
pub const MAX_ACK_TEXT: usize = 256;
/// Largest receipt plaintext.
pub const MAX_RECEIPT_PLAIN: usize = 16 * 1024;

/// Whether an envelope header's channel is a receipt's.
pub fn is_receipt_channel(channel: u32) -> bool {
    channel & RECEIPT_FLAG != 0
}

/// The channel of the alerts a receipt channel reports.
pub fn base_channel(channel: u32) -> u32 {
    channel & !RECEIPT_FLAG
}

/// The receipt channel of a channel's alerts.
pub fn receipt_channel(channel: u32) -> u32 {
    channel | RECEIPT_FLAG
}

/// `channels` followed by their receipt channels: the channels of a log that carries them.
pub fn with_receipts(channels: &[u32]) -> Vec<u32> {
    let receipts = channels.iter().map(|c| receipt_channel(*c));
    channels.iter().copied().chain(receipts).collect()
}

/// One alert its author opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Opened {
    /// The alert's sender.
    pub sender: u32,
    /// The alert's seq.
    pub seq: u64,
    /// When the receipt's author opened it (its clock, µs).
    pub at_us: u64,
    /// How it reached the author.
    pub via: Via,
}

/// "Handled": a person or a rule acknowledged an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The alert's sender.
    pub sender: u32,
    /// The alert's seq.
    pub seq: u64,
    /// What was done, if anything was said (at most [`MAX_ACK_TEXT`] bytes).
    pub text: String,
}

/// The alerts of one sender in a receipt, by ascending seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Run {
    sender: u32,
    /// (seq − the previous seq of the run, or the seq itself for the first; ms from the seq to
    /// when it was opened; how it came).
    #[serde(deserialize_with = "crate::wire::bounded::<MAX_RECEIPT_IDS, _, _>")]
    ids: Vec<(u64, u32, Via)>,
}

/// The plaintext of a receipt (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    #[serde(deserialize_with = "crate::wire::bounded::<MAX_RECEIPT_SENDERS, _, _>")]
    runs: Vec<Run>,
    #[serde(deserialize_with = "crate::wire::bounded::<MAX_RECEIPT_ACKS, _, _>")]
    acks: Vec<Ack>,
}

impl ReceiptBody {
    /// A body listing `opened` (any order; an alert listed twice counts once, its earliest
    /// opening) and `acks`. Times before an alert's seq count as its seq (clocks differ).
    pub fn new(opened: &[Opened], acks: Vec<Ack>) -> Self {
        let mut sorted = opened.to_vec();
        sorted.sort_by_key(|o| (o.sender, o.seq, o.at_us));
        sorted.dedup_by_key(|o| (o.sender, o.seq));
        let mut runs: Vec<Run> = vec![];
        let mut prev = 0;
        for o in sorted {
            let after_ms = u32::try_from(o.at_us.saturating_sub(o.seq) / 1000).unwrap_or(u32::MAX);
            match runs.last_mut() {
                Some(r) if r.sender == o.sender => {
                    r.ids.push((o.seq - prev, after_ms, o.via));
                }
                _ => runs.push(Run {
                    sender: o.sender,
                    ids: vec![(o.seq, after_ms, o.via)],
                }),
            }
            prev = o.seq;
        }
        ReceiptBody { runs, acks }
    }

    /// The alerts listed, by (sender, seq).
    pub fn opened(&self) -> Vec<Opened> {
        let mut out = Vec::with_capacity(self.runs.iter().map(|r| r.ids.len()).sum());
        for r in &self.runs {
            let mut seq = 0u64;
            for &(delta, after_ms, via) in &r.ids {
                // Checked when decoding: no overflow.
                seq = seq.saturating_add(delta);
                out.push(Opened {
                    sender: r.sender,
                    seq,
                    at_us: seq.saturating_add(u64::from(after_ms) * 1000),
                    via,
                });
            }
        }
        out
    }

    /// The acknowledgements.
    pub fn acks(&self) -> &[Ack] {
        &self.acks
    }

    /// How many alerts it lists.
    pub fn len(&self) -> usize {
        self.runs.iter().map(|r| r.ids.len()).sum()
    }

    /// Whether it lists nothing at all.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.acks.is_empty()
    }

    /// Encodes with postcard.
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Decodes and checks it: senders strictly ascending, each run non-empty with strictly
    /// ascending seqs (every delta after the first at least 1, no overflow), at most
    /// [`MAX_RECEIPT_IDS`] alerts in all, acks with short texts, not empty.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b: ReceiptBody = wire::decode("receipt", bytes, MAX_RECEIPT_PLAIN)?;
        let bad = |reason: &str| DecodeError::Malformed {
            what: "receipt",
            reason: reason.into(),
        };
        if b.is_empty() {
            return Err(bad("lists nothing"));
        }
        if b.runs.windows(2).any(|w| w[0].sender >= w[1].sender) {
            return Err(bad("senders are not in strictly ascending order"));
        }
        let mut total = 0usize;
        for r in &b.runs {
            if r.ids.is_empty() {
                return Err(bad("a sender with no alert"));
            }
            total += r.ids.len();
            let mut seq = 0u64;
            for (i, &(delta, _, _)) in r.ids.iter().enumerate() {
                if i > 0 && delta == 0 {
                    return Err(bad("seqs are not strictly ascending"));
                }
                seq = seq.checked_add(delta).ok_or_else(|| bad("seq overflows"))?;
            }
        }
        if total > MAX_RECEIPT_IDS {
            return Err(bad("more than 1024 alerts"));
        }
        if b.acks.iter().any(|a| a.text.len() > MAX_ACK_TEXT) {
            return Err(bad("an acknowledgement's text is longer than 256 bytes"));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(sender: u32, seq: u64, at_us: u64, via: Via) -> Opened {
        Opened {
            sender,
            seq,
            at_us,
            via,
        }
    }

    #[test]
    fn a_receipt_round_trips_grouped_and_delta_coded() {
        let base = 1_800_000_000_000_000;
        let opened = vec![
            o(7, base + 20_000, base + 23_500, Via::Multicast),
            o(3, base, base + 1_000, Via::Gossip),
            o(7, base + 10_000, base + 12_000, Via::Gossip),
            // Twice: the earlier opening counts.
            o(7, base + 10_000, base + 90_000, Via::CatchUp),
            // Opened "before" it was sent (the sender's clock is ahead): at its seq.
            o(3, base + 5_000, base + 4_000, Via::Repair),
        ];
        let acks = vec![Ack {
            sender: 3,
            seq: base,
            text: "guard sent".into(),
        }];
        let b = ReceiptBody::new(&opened, acks.clone());
        let bytes = b.encode();
        let d = ReceiptBody::decode(&bytes).unwrap();
        assert_eq!(d, b);
        assert_eq!(
            d.opened(),
            vec![
                o(3, base, base + 1_000, Via::Gossip),
                o(3, base + 5_000, base + 5_000, Via::Repair),
                o(7, base + 10_000, base + 12_000, Via::Gossip),
                o(7, base + 20_000, base + 23_000, Via::Multicast),
            ]
        );
        assert_eq!(d.acks(), &acks[..]);
        assert_eq!(d.len(), 4);
        // 100 alerts of one sender 10 ms apart, opened within 10 ms: about 5 bytes each.
        let many: Vec<Opened> = (0..100)
            .map(|i| o(9, base + i * 10_000, base + i * 10_000 + 3_000, Via::Gossip))
            .collect();
        let n = ReceiptBody::new(&many, vec![]).encode().len();
        assert!(n <= 100 * 5 + 16, "{n} bytes for 100 alerts");
    }

    #[test]
    fn malformed_receipts_are_refused() {
        let run = |sender: u32, ids: Vec<(u64, u32, Via)>| Run { sender, ids };
        let enc = |runs: Vec<Run>, acks: Vec<Ack>| wire::encode(&ReceiptBody { runs, acks });
        let g = Via::Gossip;
        for (bytes, why) in [
            (enc(vec![], vec![]), "lists nothing"),
            (
                enc(
                    vec![run(5, vec![(1, 0, g)]), run(5, vec![(9, 0, g)])],
                    vec![],
                ),
                "ascending",
            ),
            (enc(vec![run(5, vec![])], vec![]), "no alert"),
            (
                enc(vec![run(5, vec![(7, 0, g), (0, 0, g)])], vec![]),
                "ascending",
            ),
            (
                enc(vec![run(5, vec![(u64::MAX, 0, g), (1, 0, g)])], vec![]),
                "overflows",
            ),
            (
                enc(
                    vec![],
                    vec![Ack {
                        sender: 1,
                        seq: 1,
                        text: "x".repeat(257),
                    }],
                ),
                "256 bytes",
            ),
        ] {
            match ReceiptBody::decode(&bytes) {
                Err(DecodeError::Malformed { reason, .. }) => {
                    assert!(reason.contains(why), "{reason} / {why}")
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        // Over the bounds: refused at the count, and in all.
        let long: Vec<Run> = (0..4)
            .map(|s| run(s, (0..300).map(|i| (u64::from(i > 0) + 1, 0, g)).collect()))
            .collect();
        assert!(ReceiptBody::decode(&enc(long, vec![])).is_err());
        // An unknown path index.
        let mut bytes = enc(vec![run(5, vec![(1, 0, g)])], vec![]);
        let via_at = bytes.len() - 2;
        bytes[via_at] = 9;
        assert!(ReceiptBody::decode(&bytes).is_err());
    }
}
