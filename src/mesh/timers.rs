//! The daemon's deadlines as one table: a [`Timer`] per kind, a [`TimerTable`] that says
//! which is next ([`TimerTable::next_timeout`]) and which have expired, and [`Quiet`], which
//! says when heap is handed back after traffic stops.
//!
//! The loop sleeps until `next_timeout()` instead of polling six deadline fields. Time is
//! only ever passed in; nothing here reads a clock.

use std::time::{Duration, Instant};

use super::{ANTI_ENTROPY_EVERY, CIRCUIT_EVERY, PRUNE_EVERY, TICK, TRIM_AFTER_QUIET};

/// A kind of deadline. The order of the variants is the order in which timers that expire at
/// the same instant are handed out (the daemon's tick checks them in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Re-send unacknowledged updates and catch up with one random authenticated peer.
    AntiEntropy,
    /// Dial the static peers again and ask connected brokers for reservations again.
    Static,
    /// Dial members through the connected brokers.
    Circuit,
    /// Run retention and erase old keys.
    Prune,
    /// Send the queued roster and presence pushes ([`Pushes`](super::Pushes)).
    Push,
    /// Send this node's plane beacon (armed by its owner 5 s ± 10 % after the last one).
    Beacon,
    /// The plane's next tail after this node's last data datagram.
    PlaneTail,
    /// The plane's next repair duty: a gap out of its reorder hold, a retry or a give-up.
    PlaneRepair,
    /// The daemon's tick, every [`TICK`]: voice, `connect` deadlines, presence, and the
    /// peer checks (block expiry, authentication timeouts, due re-dials, the table's bound).
    Tick,
}

impl Timer {
    /// Every kind, in tie-break order.
    pub const ALL: [Timer; 9] = [
        Timer::AntiEntropy,
        Timer::Static,
        Timer::Circuit,
        Timer::Prune,
        Timer::Push,
        Timer::Beacon,
        Timer::PlaneTail,
        Timer::PlaneRepair,
        Timer::Tick,
    ];

    /// How long after it fired a periodic timer fires again; `None` for one-shot timers,
    /// which their owner arms when it has something due.
    pub fn period(self) -> Option<Duration> {
        match self {
            Timer::AntiEntropy | Timer::Static => Some(ANTI_ENTROPY_EVERY),
            Timer::Circuit => Some(CIRCUIT_EVERY),
            Timer::Prune => Some(PRUNE_EVERY),
            Timer::Tick => Some(TICK),
            Timer::Push | Timer::Beacon | Timer::PlaneTail | Timer::PlaneRepair => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// When each [`Timer`] fires next, if armed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    data: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// The table of a daemon that starts at `now`: retention and circuit dials at once,
    /// anti-entropy and static dials one period later, pushes, trims and the tick unarmed
    /// (the daemon arms [`Timer::Tick`] itself; the simulation has no tick).
    pub fn at_start(now: Instant) -> Self {
        let mut t = TimerTable::default();
        t.set(Timer::AntiEntropy, now + ANTI_ENTROPY_EVERY);
        t.set(Timer::Static, now + ANTI_ENTROPY_EVERY);
        t.set(Timer::Circuit, now);
        t.set(Timer::Prune, now);
        t
    }

    /// Arms `timer` for `at`, replacing any earlier setting.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer.index()] = Some(at);
    }

    /// Arms `timer` to `at`, or disarms it with `None`.
    pub fn set_or_cancel(&mut self, timer: Timer, at: Option<Instant>) {
        self.data[timer.index()] = at;
    }

    /// Disarms `timer`.
    pub fn cancel(&mut self, timer: Timer) {
        self.data[timer.index()] = None;
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer.index()]
    }

    /// The earliest armed deadline: when the loop must wake up next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// Takes the timers due at `now`, earliest deadline first (ties in [`Timer`] order), and
    /// disarms them.
    pub fn expired(&mut self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Instant, Timer)> = Timer::ALL
            .iter()
            .filter_map(|t| self.get(*t).filter(|at| *at <= now).map(|at| (at, *t)))
            .collect();
        due.sort();
        for (_, t) in &due {
            self.cancel(*t);
        }
        due.into_iter().map(|(_, t)| t).collect()
    }

    /// Like [`TimerTable::expired`], and re-arms each periodic timer one period after `now`
    /// (not after its deadline: a loop that was held up does not fire twice to catch up).
    pub fn poll(&mut self, now: Instant) -> Vec<Timer> {
        let due = self.expired(now);
        for t in &due {
            if let Some(p) = t.period() {
                self.set(*t, now + p);
            }
        }
        due
    }
}

/// Traffic seen at the last check, since when it has not changed, and how many of
/// [`TRIM_AFTER_QUIET`] were done since: once traffic stops, the heap is handed back at each
/// of those delays after the last message, so never in the middle of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    seen: u64,
    since: Instant,
    trims: usize,
}

impl Quiet {
    /// Nothing to trim until traffic has been seen (as the daemon at start).
    pub fn new(now: Instant) -> Self {
        Quiet {
            seen: 0,
            since: now,
            trims: TRIM_AFTER_QUIET.len(),
        }
    }

    /// Takes the traffic counted so far (any total that grows with each message): true when
    /// the heap is to be trimmed now.
    pub fn check(&mut self, traffic: u64, now: Instant) -> bool {
        if traffic != self.seen {
            *self = Quiet {
                seen: traffic,
                since: now,
                trims: 0,
            };
            return false;
        }
        match TRIM_AFTER_QUIET.get(self.trims) {
            Some(quiet) if now.duration_since(self.since) >= *quiet => {
                self.trims += 1;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn next_timeout_is_the_earliest_armed() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::Prune, t0 + ms(300));
        t.set(Timer::Push, t0 + ms(20));
        t.set(Timer::Static, t0 + ms(100));
        assert_eq!(t.next_timeout(), Some(t0 + ms(20)));
        t.cancel(Timer::Push);
        assert_eq!(t.next_timeout(), Some(t0 + ms(100)));
    }

    #[test]
    fn expired_yields_in_deadline_order_then_kind_order() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::Static, t0 + ms(5));
        t.set(Timer::Push, t0 + ms(10));
        t.set(Timer::AntiEntropy, t0 + ms(10));
        t.set(Timer::Circuit, t0 + ms(1));
        t.set(Timer::Prune, t0 + ms(50));
        assert_eq!(
            t.expired(t0 + ms(10)),
            vec![
                Timer::Circuit,
                Timer::Static,
                Timer::AntiEntropy,
                Timer::Push
            ]
        );
        // Taken: not handed out twice.
        assert!(t.expired(t0 + ms(10)).is_empty());
        assert_eq!(t.next_timeout(), Some(t0 + ms(50)));
    }

    #[test]
    fn poll_rearms_periodic_timers_from_now() {
        let t0 = Instant::now();
        let mut t = TimerTable::at_start(t0);
        t.set(Timer::Push, t0);
        // A loop held up for 3 s: each fires once, then one period after now.
        let now = t0 + ms(3000);
        assert_eq!(t.poll(now), vec![Timer::Circuit, Timer::Prune, Timer::Push]);
        assert_eq!(t.get(Timer::Circuit), Some(now + CIRCUIT_EVERY));
        assert_eq!(t.get(Timer::Prune), Some(now + PRUNE_EVERY));
        assert_eq!(t.get(Timer::Push), None, "one-shot stays disarmed");
        assert_eq!(t.get(Timer::AntiEntropy), Some(t0 + ANTI_ENTROPY_EVERY));
        let later = t0 + ANTI_ENTROPY_EVERY;
        assert_eq!(
            t.poll(later),
            vec![Timer::Circuit, Timer::AntiEntropy, Timer::Static]
        );
        assert_eq!(t.get(Timer::Static), Some(later + ANTI_ENTROPY_EVERY));
    }

    #[test]
    fn quiet_trims_at_each_delay_after_the_last_message() {
        let t0 = Instant::now();
        let mut q = Quiet::new(t0);
        assert!(!q.check(0, t0 + ms(60_000)));
        assert!(!q.check(5, t0 + ms(100)));
        assert!(!q.check(5, t0 + ms(2099)));
        assert!(q.check(5, t0 + ms(2100)));
        assert!(!q.check(5, t0 + ms(2350)), "one trim per delay");
        assert!(q.check(5, t0 + ms(25_100)));
        assert!(!q.check(5, t0 + ms(90_000)));
        // New traffic starts over.
        assert!(!q.check(6, t0 + ms(90_000)));
        assert!(q.check(6, t0 + ms(92_000)));
    }
}
