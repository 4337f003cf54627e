//! Loss detection on the plane: per sender, the highest `pseq` verified and the `pseq`s
//! missing below it, and which of them are due for a repair request (design §5, "Loss
//! detection"; `proto/plane.md`, inner part).
//!
//! Only what the receiver has verified moves a sender's position: a data datagram once its
//! envelope is accepted, a beacon once its signature is. A tail is not signed, so it may open
//! gaps for a sender already tracked but never starts tracking one nor resynchronises it. This
//! module reads no clock: every call takes `now_us`. It sends nothing and chooses no peer; the
//! caller asks for what [`Gaps::due`] returns and reports what arrives.
//!
//! Resynchronisation (a new run of the sender, whose `pseq` starts anywhere): a data datagram
//! more than [`RESYNC_JUMP`] ahead, or more than [`RESYNC_JUMP`] behind, moves the position
//! there and forgets the missing set, asking for nothing. One at most [`RESYNC_JUMP`] behind
//! that is not missing is ignored: a late copy must not drag the position back, which would
//! make the next datagram look like a jump over thousands of missing `pseq`s.

use std::collections::{BTreeMap, VecDeque};

/// How long a gap waits before it is due: a datagram reordered on the LAN fills it meanwhile.
pub const REORDER_HOLD_US: u64 = 10_000;
/// The most `pseq`s missing per sender; beyond it the oldest are dropped (catch-up covers them).
pub const MAX_MISSING_PER_SENDER: usize = 1024;
/// A `pseq` further than this from the position, either way, is a new run of the sender.
pub const RESYNC_JUMP: u32 = 4096;
/// The most senders tracked; more are not tracked (the roster holds at most 10,000 members).
pub const MAX_TRACKED_SENDERS: usize = 10_000;

/// Per-sender loss state of one receiver.
#[derive(Debug, Clone, Default)]
pub struct Gaps {
    senders: BTreeMap<u32, Sender>,
    /// `pseq`s dropped by the per-sender cap, for `status`.
    pub dropped: u64,
    /// Resynchronisations (new runs of a sender, or jumps), for `status`.
    pub resyncs: u64,
}

#[derive(Debug, Clone)]
struct Sender {
    /// Highest `pseq` verified or announced (in the order of the wrapping counter).
    high: u32,
    /// Missing `pseq`s, oldest first (gaps only open forward, so this is `pseq` order too).
    missing: VecDeque<Missing>,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    pseq: u32,
    due_us: u64,
    reported: bool,
}

/// Where a `pseq` lies relative to a sender's position.
enum Place {
    Same,
    Ahead(u32),
    Behind,
    Far,
}

fn place(high: u32, pseq: u32) -> Place {
    match (pseq.wrapping_sub(high), high.wrapping_sub(pseq)) {
        (0, _) => Place::Same,
        (d, _) if d <= RESYNC_JUMP => Place::Ahead(d),
        (_, b) if b <= RESYNC_JUMP => Place::Behind,
        _ => Place::Far,
    }
}

impl Gaps {
    /// No sender tracked.
    pub fn new() -> Self {
        Self::default()
    }

    /// A data datagram of `sender` whose envelope was accepted (receive order step 10), or a
    /// repaired one: fills its `pseq` if missing, opens gaps below it if it is ahead.
    pub fn on_data(&mut self, sender: u32, pseq: u32, now_us: u64) {
        let Some(s) = self.entry(sender, pseq) else {
            return;
        };
        let (dropped, resync) = match place(s.high, pseq) {
            Place::Same => (0, false),
            Place::Ahead(d) => {
                let dropped = s.open(s.high.wrapping_add(1), d - 1, now_us);
                s.high = pseq;
                (dropped, false)
            }
            Place::Behind => {
                s.fill(pseq);
                (0, false)
            }
            Place::Far => {
                s.high = pseq;
                s.missing.clear();
                (0, true)
            }
        };
        self.dropped += dropped;
        self.resyncs += u64::from(resync);
    }

    /// A tail of `sender` naming its last data `pseq`: opens gaps up to and including it, for a
    /// sender already tracked and within [`RESYNC_JUMP`] ahead; anything else is ignored (a tail
    /// is not signed).
    pub fn on_tail(&mut self, sender: u32, pseq: u32, now_us: u64) {
        if let Some(s) = self.senders.get_mut(&sender) {
            let dropped = s.announce(pseq, now_us);
            self.dropped += dropped;
        }
    }

    /// A beacon of `sender` whose signature verified, naming its last data `pseq`: as a tail,
    /// and it starts tracking a sender not tracked yet (at that `pseq`, nothing missing).
    pub fn on_beacon(&mut self, sender: u32, pseq: u32, now_us: u64) {
        if let Some(s) = self.entry(sender, pseq) {
            let dropped = s.announce(pseq, now_us);
            self.dropped += dropped;
        }
    }

    /// Stops asking for `pseq` of `sender` (the caller gave up on it: catch-up takes over).
    pub fn give_up(&mut self, sender: u32, pseq: u32) {
        if let Some(s) = self.senders.get_mut(&sender) {
            s.fill(pseq);
        }
    }

    /// A datagram whose envelope was refused over its sender's rate limit: it arrived, so for
    /// loss detection it counts as [`Gaps::on_data`] does (filled if missing, never missing
    /// later): a flooder's excess must not come back through repair, which spends no budget.
    pub fn refuse(&mut self, sender: u32, pseq: u32, now_us: u64) {
        self.on_data(sender, pseq, now_us);
    }

    /// Forgets a sender (revoked, or gone from the roster).
    pub fn forget(&mut self, sender: u32) {
        self.senders.remove(&sender);
    }

    /// The gaps whose reorder hold is over and that were not returned before, per sender in
    /// ascending sender order, each list in `pseq` order. They stay missing (a repair fills
    /// them through [`Gaps::on_data`]) until filled, given up, dropped by the cap or forgotten
    /// by a resynchronisation.
    pub fn due(&mut self, now_us: u64) -> Vec<(u32, Vec<u32>)> {
        let mut out = Vec::new();
        for (sender, s) in &mut self.senders {
            let pseqs: Vec<u32> = s
                .missing
                .iter_mut()
                .filter(|m| !m.reported && m.due_us <= now_us)
                .map(|m| {
                    m.reported = true;
                    m.pseq
                })
                .collect();
            if !pseqs.is_empty() {
                out.push((*sender, pseqs));
            }
        }
        out
    }

    /// When the next gap falls due, for the caller's timer; `None` when nothing waits.
    pub fn next_due(&self) -> Option<u64> {
        self.senders
            .values()
            .flat_map(|s| s.missing.iter())
            .filter(|m| !m.reported)
            .map(|m| m.due_us)
            .min()
    }

    /// How many `pseq`s of `sender` are missing (due or not).
    pub fn missing(&self, sender: u32) -> usize {
        self.senders.get(&sender).map_or(0, |s| s.missing.len())
    }

    /// The highest `pseq` of `sender` verified or announced.
    pub fn high(&self, sender: u32) -> Option<u32> {
        self.senders.get(&sender).map(|s| s.high)
    }

    /// The sender's state, created at `pseq` if it is not tracked yet and there is room.
    fn entry(&mut self, sender: u32, pseq: u32) -> Option<&mut Sender> {
        if !self.senders.contains_key(&sender) && self.senders.len() >= MAX_TRACKED_SENDERS {
            return None;
        }
        Some(self.senders.entry(sender).or_insert_with(|| Sender {
            high: pseq,
            missing: VecDeque::new(),
        }))
    }
}

impl Sender {
    /// Marks `count` `pseq`s from `first` (wrapping) missing, due after the hold; returns how
    /// many old ones the cap dropped.
    fn open(&mut self, first: u32, count: u32, now_us: u64) -> u64 {
        let due_us = now_us.saturating_add(REORDER_HOLD_US);
        // Only the newest MAX_MISSING_PER_SENDER can survive: skip the rest without a loop.
        let keep = (count as usize).min(MAX_MISSING_PER_SENDER);
        let skipped = count as usize - keep;
        let start = first.wrapping_add(skipped as u32);
        for i in 0..keep as u32 {
            self.missing.push_back(Missing {
                pseq: start.wrapping_add(i),
                due_us,
                reported: false,
            });
        }
        let mut dropped = skipped as u64;
        while self.missing.len() > MAX_MISSING_PER_SENDER {
            self.missing.pop_front();
            dropped += 1;
        }
        dropped
    }

    fn fill(&mut self, pseq: u32) {
        if let Some(i) = self.missing.iter().position(|m| m.pseq == pseq) {
            self.missing.remove(i);
        }
    }

    /// A tail or beacon naming `pseq` as the last data datagram: everything above the position
    /// up to it is missing.
    fn announce(&mut self, pseq: u32, now_us: u64) -> u64 {
        match place(self.high, pseq) {
            Place::Ahead(d) => {
                let dropped = self.open(self.high.wrapping_add(1), d, now_us);
                self.high = pseq;
                dropped
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn due(g: &mut Gaps, now: u64) -> Vec<(u32, Vec<u32>)> {
        g.due(now)
    }

    #[test]
    fn a_refused_datagram_never_falls_due() {
        let mut g = Gaps::new();
        g.on_data(7, 10, 0);
        // 11 and 12 refused over the rate limit as they came, 13 lost; 14 accepted.
        g.refuse(7, 11, 0);
        g.refuse(7, 12, 0);
        g.on_data(7, 14, MS);
        assert_eq!(due(&mut g, 20 * MS), vec![(7, vec![13])]);
        assert_eq!(g.missing(7), 1);
        // Refused after its gap opened: settled at once.
        g.on_data(7, 17, 30 * MS);
        g.refuse(7, 15, 40 * MS);
        assert_eq!(due(&mut g, 50 * MS), vec![(7, vec![16])]);
    }

    #[test]
    fn in_order_datagrams_leave_nothing_missing() {
        let mut g = Gaps::new();
        for p in 100..200 {
            g.on_data(7, p, p as u64 * MS);
        }
        assert_eq!(g.high(7), Some(199));
        assert_eq!(g.missing(7), 0);
        assert_eq!(g.next_due(), None);
        assert!(due(&mut g, 1_000 * MS).is_empty());
        // The first datagram of a sender sets its position: nothing before it is asked for.
        g.on_data(8, 5_000, 0);
        assert_eq!(g.missing(8), 0);
    }

    #[test]
    fn a_reorder_within_the_hold_asks_for_nothing() {
        let mut g = Gaps::new();
        g.on_data(7, 10, 0);
        g.on_data(7, 12, MS);
        assert_eq!(g.missing(7), 1);
        assert_eq!(g.next_due(), Some(MS + REORDER_HOLD_US));
        assert!(due(&mut g, MS + REORDER_HOLD_US - 1).is_empty(), "held");
        g.on_data(7, 11, 5 * MS);
        assert_eq!(g.missing(7), 0);
        assert!(due(&mut g, 100 * MS).is_empty());
        assert_eq!(
            g.high(7),
            Some(12),
            "a late one never moves the position back"
        );
    }

    #[test]
    fn gaps_fall_due_after_the_hold_once_and_repairs_fill_them() {
        let mut g = Gaps::new();
        g.on_data(7, 10, 0);
        g.on_data(7, 14, 2 * MS);
        g.on_data(9, 1, 3 * MS);
        g.on_data(9, 3, 3 * MS);
        assert_eq!(
            due(&mut g, 13 * MS),
            vec![(7, vec![11, 12, 13]), (9, vec![2])]
        );
        assert!(due(&mut g, 14 * MS).is_empty(), "reported once");
        assert_eq!(g.next_due(), None);
        assert_eq!(g.missing(7), 3, "still missing until repaired");
        g.on_data(7, 12, 50 * MS);
        g.give_up(7, 11);
        assert_eq!(g.missing(7), 1);
        assert_eq!(g.high(7), Some(14));
    }

    #[test]
    fn a_tail_reveals_a_lost_last_datagram() {
        let mut g = Gaps::new();
        g.on_data(7, 10, 0);
        // 11 and 12 are lost; the tail says the last one was 12.
        g.on_tail(7, 12, 20 * MS);
        assert_eq!(g.high(7), Some(12));
        assert_eq!(due(&mut g, 30 * MS), vec![(7, vec![11, 12])]);
        // Later tails naming the same pseq change nothing.
        g.on_tail(7, 12, 150 * MS);
        assert!(due(&mut g, 500 * MS).is_empty());
        assert_eq!(g.missing(7), 2);
        // A tail of an untracked sender, behind, or far off is ignored.
        g.on_tail(8, 3, 0);
        assert_eq!(g.high(8), None);
        g.on_tail(7, 5, 0);
        g.on_tail(7, 12 + RESYNC_JUMP + 1, 0);
        assert_eq!(g.high(7), Some(12));
        // A verified beacon starts tracking, and later ones announce like tails.
        g.on_beacon(8, 40, 0);
        assert_eq!((g.high(8), g.missing(8)), (Some(40), 0));
        g.on_beacon(8, 42, 0);
        assert_eq!(due(&mut g, 600 * MS), vec![(8, vec![41, 42])]);
    }

    #[test]
    fn pseq_wraps_from_the_top_to_zero() {
        let mut g = Gaps::new();
        g.on_data(7, u32::MAX - 1, 0);
        g.on_data(7, 1, MS);
        assert_eq!(g.high(7), Some(1));
        assert_eq!(due(&mut g, 20 * MS), vec![(7, vec![u32::MAX, 0])]);
        g.on_data(7, u32::MAX, 30 * MS);
        g.on_data(7, 0, 30 * MS);
        assert_eq!(g.missing(7), 0);
        g.on_tail(7, 3, 40 * MS);
        assert_eq!(due(&mut g, 60 * MS), vec![(7, vec![2, 3])]);
    }

    #[test]
    fn a_restarted_sender_is_resynchronised_without_asking() {
        let mut g = Gaps::new();
        g.on_data(7, 1_000, 0);
        g.on_data(7, 1_003, 0);
        assert_eq!(g.missing(7), 2);
        // New run, far ahead: no gap of millions, and the old run's gaps are forgotten.
        g.on_data(7, 3_000_000_000, MS);
        assert_eq!(
            (g.high(7), g.missing(7), g.resyncs),
            (Some(3_000_000_000), 0, 1)
        );
        // New run, far behind: the same.
        g.on_data(7, 17, 2 * MS);
        assert_eq!((g.high(7), g.missing(7), g.resyncs), (Some(17), 0, 2));
        g.on_data(7, 18, 3 * MS);
        assert!(due(&mut g, 100 * MS).is_empty());
        // Just past the jump limit ahead is a new run; at it, a gap.
        g.on_data(7, 18 + RESYNC_JUMP + 1, 4 * MS);
        assert_eq!((g.missing(7), g.resyncs), (0, 3));
        let h = 18 + RESYNC_JUMP + 1;
        g.on_data(7, h + 3, 5 * MS);
        assert_eq!(g.missing(7), 2);
        // A late copy a little behind, not missing, is ignored: no jump back.
        g.on_data(7, h - 100, 6 * MS);
        assert_eq!((g.high(7), g.resyncs), (Some(h + 3), 3));
    }

    #[test]
    fn at_most_1024_pseqs_are_missing_per_sender() {
        let mut g = Gaps::new();
        g.on_data(7, 0, 0);
        g.on_data(7, 2_000, MS);
        assert_eq!(g.missing(7), MAX_MISSING_PER_SENDER);
        assert_eq!(g.dropped, 1_999 - 1_024);
        let got = due(&mut g, 20 * MS);
        assert_eq!(got.len(), 1);
        // The newest are kept: the oldest are the ones catch-up is best at.
        assert_eq!(got[0].1.first(), Some(&(2_000 - 1_024)));
        assert_eq!(got[0].1.last(), Some(&1_999));
        assert_eq!(got[0].1.len(), 1_024);
        // More gaps push the oldest out.
        g.on_data(7, 2_010, 30 * MS);
        assert_eq!(g.missing(7), MAX_MISSING_PER_SENDER);
        assert_eq!(g.dropped, 1_999 - 1_024 + 9);
        assert_eq!(due(&mut g, 50 * MS), vec![(7, (2_001..2_010).collect())]);
        // Another sender has its own cap.
        g.on_data(8, 0, 0);
        g.on_data(8, 4, 0);
        assert_eq!(g.missing(8), 3);
    }

    #[test]
    fn senders_beyond_the_limit_are_not_tracked() {
        let mut g = Gaps::new();
        for s in 0..MAX_TRACKED_SENDERS as u32 {
            g.on_data(s, 0, 0);
        }
        g.on_data(u32::MAX, 0, 0);
        g.on_beacon(u32::MAX - 1, 0, 0);
        assert_eq!((g.high(u32::MAX), g.high(u32::MAX - 1)), (None, None));
        g.forget(0);
        g.on_data(u32::MAX, 0, 0);
        assert_eq!(g.high(u32::MAX), Some(0));
    }
}
