//! The device-lost watchdog (`proto/envelope.md`, "Device lost"): a device the authority gave
//! a check-in period (`DeviceRights::watch_secs`) that no evidence of life came from for that
//! long is announced lost, once for the domain, and back when it is heard again.
//!
//! Evidence of life is what this node hears anyway: anything on the device's connection (a
//! watched member's connection is probed after a third of its period when nothing else came),
//! its plane beacons (every 5 s), an alert, receipt or voice packet it sealed arriving live.
//!
//! Only a **witness** of the device announces: a node connected to it, or that keeps a
//! connection to it (on this LAN when the bound's overlay wants the pair, every LAN member
//! without a bound; a static peer or a member reached through a broker it was connected to),
//! or that heard it on the plane until it went quiet while the plane still works here.
//! A member that hears the device only through others (the bound leaves the pair unconnected,
//! another segment behind a broker) has no evidence either way, and leaves it to the device's
//! neighbours. Who announces is decided without talking: the members this node heard within
//! the period, and itself, that may write the default channel, by device number; a witness
//! first in line announces at once, the second 2 s later if no announcement came, the third 4 s
//! later, any later one 6 s later. Each announcement names its event
//! (`device-lost:DEVICE:PERIOD`, PERIOD the check-in period in which the device was last heard),
//! and members show one loss per device until it is back, so copies raised on both sides of a
//! partition, or by two neighbours at once, collapse. A node that hears no member at all
//! announces nothing: it is more likely cut off itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::{Daemon, now_us};
use crate::alert::{AlertBody, ReceivedAlert, Severity};

/// The attribute naming the event an announcement is about.
pub const EVENT_ATTR: &str = "ptt:event";
/// Kind of the announcement that a device went quiet.
pub const LOST_KIND: &str = "device-lost";
/// Kind of the announcement that it is heard again.
pub const BACK_KIND: &str = "device-back";
/// How much later each next member in line announces, if nobody did.
const STEP_US: u64 = 2_000_000;
/// Places in line with a delay of their own (the first at once, the others 2 and 4 s later);
/// every later witness waits as long as this many steps.
const IN_LINE: usize = 3;
/// Each place in line past [`IN_LINE`] waits this much longer.
const LATER_STEP_US: u64 = 250_000;
/// At most this much longer.
const MAX_LATER_US: u64 = 24_000_000;
/// A device's last beacon counts as the last evidence of it if no other evidence came more
/// than this after it (a beacon slot and its jitter).
const PLANE_SLACK_US: u64 = 6_000_000;
/// The plane works here if some member's beacon came within this (two beacon slots).
const PLANE_WORKS_US: u64 = 10_000_000;
/// Events remembered as shown, at most.
const MAX_SHOWN: usize = 4_096;

/// What this node knows of the watched devices.
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    /// When each device was last heard (this node's clock, µs).
    last_heard: HashMap<u32, u64>,
    /// When each device's plane beacon was last verified here (this node's clock, µs).
    plane_heard: HashMap<u32, u64>,
    /// The devices announced lost (here or by another member) and not back: the period index.
    lost: HashMap<u32, u64>,
    /// Since when a lost device is heard again (this node's clock, µs).
    back_since: HashMap<u32, u64>,
    /// The period of the last loss of each device a back announcement answered.
    backed: HashMap<u32, u64>,
    /// Events shown, so a copy is not shown twice.
    shown: HashSet<String>,
    shown_order: VecDeque<String>,
    /// When the watch began (a device is not lost for the time before this node started).
    started_us: u64,
}

/// The profile tag a sleeping device declares the period it wakes in with (seconds).
pub const WAKE_TAG: &str = "wake_secs";

/// How long a device watched every `watch_secs` may stay quiet: its period, or for a device
/// whose profile says it sleeps, the period it declares it wakes in ([`WAKE_TAG`]) when that
/// is longer.
pub(super) fn quiet_allowed_us(watch_secs: u32, profile: &crate::cert::Profile) -> u64 {
    let watch = u64::from(watch_secs) * 1_000_000;
    let wake = profile
        .tags
        .iter()
        .find(|(k, _)| k == WAKE_TAG)
        .and_then(|(_, v)| v.trim().parse::<u32>().ok())
        .filter(|_| profile.sleeps)
        .map_or(0, |w| u64::from(w) * 1_000_000);
    watch.max(wake)
}

/// How long after a device is due the `rank`-th member in line announces: 2 s a place for
/// the first [`IN_LINE`], then a quarter of a second a place (at most 24 s more), so that
/// witnesses far down the line (the first places taken by members that are no witnesses) do
/// not all announce at once.
fn line_delay_us(rank: usize) -> u64 {
    let extra = (rank.saturating_sub(IN_LINE) as u64 * LATER_STEP_US).min(MAX_LATER_US);
    STEP_US * rank.min(IN_LINE) as u64 + extra
}

/// The event key of an announcement.
pub(super) fn event(kind: &str, device: u32, period: u64) -> String {
    format!("{kind}:{device}:{period}")
}

/// The (kind, device, period) an event key names.
fn parse_event(key: &str) -> Option<(&str, u32, u64)> {
    let mut it = key.split(':');
    let (k, d, p) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || (k != LOST_KIND && k != BACK_KIND) {
        return None;
    }
    Some((k, d.parse().ok()?, p.parse().ok()?))
}

impl Watchdog {
    /// A watchdog started at `now_us`.
    pub(super) fn new(now_us: u64) -> Self {
        Watchdog {
            started_us: now_us,
            ..Default::default()
        }
    }

    /// Evidence of life of `device` at `now_us`.
    pub(super) fn heard(&mut self, device: u32, now_us: u64) {
        let last = self.last_heard.entry(device).or_insert(0);
        *last = (*last).max(now_us);
        if self.lost.contains_key(&device) {
            self.back_since.entry(device).or_insert(now_us);
        }
    }

    /// A verified plane beacon of `device` at `now_us`: evidence of life, and of hearing it on
    /// the plane.
    pub(super) fn heard_on_plane(&mut self, device: u32, now_us: u64) {
        self.heard(device, now_us);
        self.plane_heard.insert(device, now_us);
    }

    /// Whether this node heard `device` on the plane until it went quiet (its last beacon is
    /// about its last evidence), while the plane still works here (another member's beacon
    /// came within [`PLANE_WORKS_US`]): then the silence of its beacons is evidence too.
    pub(super) fn lost_on_plane(&self, device: u32, now_us: u64) -> bool {
        let Some(&beacon) = self.plane_heard.get(&device) else {
            return false;
        };
        let last = self.last_heard.get(&device).copied().unwrap_or(0);
        beacon.saturating_add(PLANE_SLACK_US) >= last
            && self
                .plane_heard
                .iter()
                .any(|(d, t)| *d != device && now_us.saturating_sub(*t) < PLANE_WORKS_US)
    }

    /// When `device` was last heard, or the watch's start.
    fn last(&self, device: u32) -> u64 {
        self.last_heard
            .get(&device)
            .copied()
            .unwrap_or(0)
            .max(self.started_us)
    }

    /// Whether an announcement of `key` is news: true the first time (then remembered).
    fn first_time(&mut self, key: &str) -> bool {
        if self.shown.contains(key) {
            return false;
        }
        if self.shown_order.len() >= MAX_SHOWN
            && let Some(old) = self.shown_order.pop_front()
        {
            self.shown.remove(&old);
        }
        self.shown.insert(key.to_string());
        self.shown_order.push_back(key.to_string());
        true
    }

    /// Takes an announcement (this node's or a member's): whether to show it (its event is
    /// new). One episode of a device's loss is shown once: a loss naming a period next to the
    /// one held (raised by another witness whose last evidence fell in the next period, or on
    /// the other side of a partition) is the same loss, and a loss at or before the period a
    /// back answered is a late copy. A back is shown when it ends the loss held, or when none
    /// is held and no back of the same episode was shown.
    pub(super) fn take(&mut self, key: &str) -> bool {
        let Some((kind, device, period)) = parse_event(key) else {
            return true;
        };
        if !self.first_time(key) {
            return false;
        }
        let backed = self.backed.get(&device).copied();
        if kind == LOST_KIND {
            let same = |p: u64| p.abs_diff(period) <= 1;
            if self.lost.get(&device).copied().is_some_and(same)
                || backed.is_some_and(|b| period <= b)
            {
                return false;
            }
            // A loss held from a stale episode (its back never came here) is replaced.
            self.lost.insert(device, period);
            self.back_since.remove(&device);
            return true;
        }
        let ended = self.lost.remove(&device).is_some();
        self.back_since.remove(&device);
        self.backed
            .insert(device, backed.map_or(period, |b| b.max(period)));
        ended || backed.is_none_or(|b| b.abs_diff(period) > 1)
    }

    /// What to announce at `now_us` about `device` (watched every `period_us`) as the
    /// `rank`-th member in line (`None`: not in line, not a witness): its event key.
    pub(super) fn due(
        &self,
        device: u32,
        period_us: u64,
        rank: Option<usize>,
        now_us: u64,
    ) -> Option<String> {
        let delay = line_delay_us(rank?);
        let last = self.last(device);
        let key = match self.lost.get(&device) {
            None => {
                let quiet = now_us.saturating_sub(last);
                (quiet >= period_us.saturating_add(delay))
                    .then(|| event(LOST_KIND, device, last / period_us.max(1)))
            }
            Some(&period) => {
                let since = *self.back_since.get(&device)?;
                // Heard again, and still heard: back.
                let recent = now_us.saturating_sub(last) < period_us;
                (recent && now_us.saturating_sub(since) >= delay)
                    .then(|| event(BACK_KIND, device, period))
            }
        }?;
        // An event is announced once: one already shown (a member heard the device again
        // and said so, while this node still does not hear it) is not announced again.
        (!self.shown.contains(&key)).then_some(key)
    }

    /// Whether anything may be due about `device` at `now_us` with a period of at least
    /// `min_period_us`: quiet that long, or announced lost and heard again.
    pub(super) fn may_be_due(&self, device: u32, min_period_us: u64, now_us: u64) -> bool {
        if self.lost.contains_key(&device) {
            return self.back_since.contains_key(&device);
        }
        now_us.saturating_sub(self.last(device)) >= min_period_us
    }

    /// The devices heard within `window_us` of `now_us`.
    pub(super) fn heard_within(&self, window_us: u64, now_us: u64) -> Vec<u32> {
        self.last_heard
            .iter()
            .filter(|(_, t)| now_us.saturating_sub(**t) < window_us)
            .map(|(d, _)| *d)
            .collect()
    }

    /// Whether `device` is announced lost.
    pub(super) fn is_lost(&self, device: u32) -> bool {
        self.lost.contains_key(&device)
    }
}

impl Daemon {
    /// Evidence of life of the member at `peer`.
    pub(super) fn watch_heard_peer(&mut self, peer: &libp2p::PeerId) {
        if let Some(device) = self.certs.get(peer).map(|c| c.body.device) {
            self.watchdog.heard(device, now_us());
        }
    }

    /// Whether an alert is to be shown: an announcement whose event was shown already is not
    /// (a copy raised by another member).
    pub(super) fn watch_take(&mut self, a: &ReceivedAlert) -> bool {
        let Some((_, key)) = a.attributes.iter().find(|(k, _)| k == EVENT_ATTR) else {
            return true;
        };
        if a.kind != LOST_KIND && a.kind != BACK_KIND {
            return true;
        }
        // Only events of devices the authority watches are kept (so a member cannot fill
        // this node's memory with made-up devices); others are shown as they are.
        let watched = parse_event(key)
            .is_some_and(|(_, d, _)| self.node.descriptor().rights(d).watch_secs > 0);
        if !watched {
            return true;
        }
        let key = key.clone();
        self.watchdog.take(&key)
    }

    /// The tick's watch: announces the watched devices that went quiet, and those heard
    /// again, when this node is in line to.
    pub(super) fn watch_tick(&mut self) {
        let now = now_us();
        let me = self.node.cert().body.device;
        let desc = self.node.descriptor();
        // Every tick: only the devices that may be due cost more than a lookup (a profile, the
        // line of members). None is due while it has been heard within the authority's period,
        // which a sleeping device's declared one can only lengthen.
        let watched: Vec<(u32, u64)> = desc
            .body
            .rights
            .iter()
            .filter(|r| r.watch_secs > 0 && r.device != me && !desc.is_revoked(r.device))
            .filter(|r| {
                self.watchdog
                    .may_be_due(r.device, u64::from(r.watch_secs) * 1_000_000, now)
            })
            .map(|r| {
                let profile = self
                    .node
                    .member(r.device)
                    .map(|c| self.node.profile_of(c))
                    .unwrap_or_default();
                (r.device, quiet_allowed_us(r.watch_secs, &profile))
            })
            .collect();
        if watched.is_empty() {
            return;
        }
        let Some(channel) = self.writable_default_channel() else {
            return;
        };
        for (device, period_us) in watched {
            let rank = self.watch_rank(device, period_us, now);
            let Some(key) = self.watchdog.due(device, period_us, rank, now) else {
                continue;
            };
            self.announce(&channel, device, period_us, &key, now);
        }
    }

    /// The default channel's name, if this device may write it.
    fn writable_default_channel(&self) -> Option<String> {
        let name = crate::domain::DEFAULT_CHANNEL;
        let id = self.node.descriptor().channel_by_name(name)?.id;
        self.node
            .cert()
            .grant(id)
            .is_some_and(|g| g.write)
            .then(|| name.to_string())
    }

    /// This node's place in line to announce about `device`: among itself and the members
    /// heard within the period that may write the default channel (not `device`), by device
    /// number. `None` when this node is no witness of `device`, or hears no other member
    /// (then it is more likely cut off itself).
    fn watch_rank(&self, device: u32, period_us: u64, now: u64) -> Option<usize> {
        if !self.watch_witness(device, now) {
            return None;
        }
        let me = self.node.cert().body.device;
        let channel = self
            .node
            .descriptor()
            .channel_by_name(crate::domain::DEFAULT_CHANNEL)?
            .id;
        let mut line: Vec<u32> = self
            .watchdog
            .heard_within(period_us, now)
            .into_iter()
            .filter(|d| *d != device && *d != me)
            .filter(|d| {
                self.node
                    .member(*d)
                    .and_then(|c| c.grant(channel))
                    .is_some_and(|g| g.write)
            })
            .collect();
        if line.is_empty() {
            return None;
        }
        line.push(me);
        line.sort_unstable();
        line.iter().position(|d| *d == me)
    }

    /// Whether this node witnesses `device`'s life: it is connected to it, or keeps a
    /// connection to it (so it tries to reach it, and not reaching it is evidence), or heard
    /// it on the plane until it went quiet.
    fn watch_witness(&self, device: u32, now: u64) -> bool {
        let peer = self.node.member(device).map(|c| c.peer_id());
        peer.is_some_and(|p| self.swarm.is_connected(&p) || self.peers.keeps(&p))
            || self.watchdog.lost_on_plane(device, now)
    }

    /// Seals and sends the announcement `key` about `device`, and shows it here.
    fn announce(&mut self, channel: &str, device: u32, period_us: u64, key: &str, now: u64) {
        let lost = key.starts_with(LOST_KIND);
        let cert = self.node.member(device).cloned();
        let name = self.node.member_name(device);
        let secs = period_us / 1_000_000;
        let body = AlertBody {
            severity: if lost {
                Severity::Severe
            } else {
                Severity::Minor
            }
            .min(self.node.max_severity()),
            kind: if lost { LOST_KIND } else { BACK_KIND }.into(),
            text: if lost {
                format!("{name} not heard for {secs} s")
            } else {
                format!("{name} is heard again")
            },
            location: cert.as_ref().and_then(|c| c.body.profile.location),
            attributes: vec![
                (EVENT_ATTR.into(), key.to_string()),
                ("device".into(), name.clone()),
                ("watch_secs".into(), secs.to_string()),
            ],
            reference: None,
        };
        match self.node.seal_alert(channel, &body, now) {
            Ok(sealed) => {
                tracing::warn!(device = %name, event = %key, "{}", body.text);
                self.watchdog.take(key);
                let own = super::states::own_alert(&self.node, &sealed, &body);
                self.apply_rules(&own);
                let _ = self.alerts.send(Arc::new(own));
                let (cmds, store) = (self.handle.clone(), self.store.clone());
                tokio::spawn(async move {
                    if let Err(e) = super::send::store_and_publish(&cmds, &store, sealed).await {
                        tracing::warn!(error = %e, "watchdog announcement not sent");
                    }
                });
            }
            Err(e) => tracing::debug!(error = %e, "watchdog announcement not sealed"),
        }
    }

    /// Whether `device` is announced lost (for `peers` and `status`).
    #[allow(dead_code)]
    pub(super) fn watch_lost(&self, device: u32) -> bool {
        self.watchdog.is_lost(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 10_000_000;

    #[test]
    fn a_quiet_device_is_lost_after_its_period_by_the_first_in_line_then_the_next() {
        let t0 = 1_000 * P;
        let mut w = Watchdog::new(t0);
        // Not lost for the time before the watch began.
        assert_eq!(w.due(7, P, Some(0), t0 + P - 1), None);
        assert!(!w.may_be_due(7, P, t0 + P - 1));
        assert!(w.may_be_due(7, P, t0 + P));
        w.heard(7, t0 + 3_000_000);
        let lost = event(LOST_KIND, 7, (t0 + 3_000_000) / P);
        assert_eq!(w.due(7, P, Some(0), t0 + 3_000_000 + P - 1), None);
        assert_eq!(w.due(7, P, Some(0), t0 + 3_000_000 + P), Some(lost.clone()));
        // The second in line waits 2 s more, the fourth 6 s, each later one a quarter of a
        // second more, up to 30 s; a node not in line (no witness) never announces.
        assert_eq!(w.due(7, P, Some(1), t0 + 3_000_000 + P), None);
        assert!(w.due(7, P, Some(1), t0 + 5_000_000 + P).is_some());
        assert_eq!(w.due(7, P, Some(3), t0 + 9_000_000 - 1 + P), None);
        assert!(w.due(7, P, Some(3), t0 + 9_000_000 + P).is_some());
        assert_eq!(w.due(7, P, Some(5), t0 + 9_499_999 + P), None);
        assert!(w.due(7, P, Some(5), t0 + 9_500_000 + P).is_some());
        assert_eq!(line_delay_us(40), 6_000_000 + 37 * 250_000);
        assert_eq!(line_delay_us(10_000), 30_000_000);
        assert_eq!(w.due(7, P, None, t0 + 100 * P), None);
        // Once announced (here or by a member), shown once, and not announced again.
        assert!(w.take(&lost));
        assert!(!w.take(&lost), "a copy is not shown");
        assert!(w.is_lost(7));
        assert_eq!(w.due(7, P, Some(0), t0 + 50 * P), None);
        // Heard again: back, by the same line.
        w.heard(7, t0 + 60 * P);
        let back = event(BACK_KIND, 7, (t0 + 3_000_000) / P);
        assert_eq!(w.due(7, P, Some(0), t0 + 60 * P), Some(back.clone()));
        assert_eq!(w.due(7, P, Some(1), t0 + 60 * P + 1), None);
        assert!(w.take(&back));
        assert!(!w.is_lost(7));
        assert!(!w.take(&back));
        // And lost again later, as a new event.
        let again = w.due(7, P, Some(0), t0 + 62 * P);
        assert_eq!(again, Some(event(LOST_KIND, 7, 60 + 1_000)));
    }

    #[test]
    fn an_event_a_member_answered_is_not_announced_again() {
        // This node announced 7 lost; another member, which still hears 7, announced it back;
        // this node still hears nothing of 7. It must not announce the same loss again, every
        // tick, for ever.
        let t0 = 1_000 * P;
        let mut w = Watchdog::new(t0);
        w.heard(7, t0);
        let lost = w.due(7, P, Some(0), t0 + P).expect("lost");
        assert!(w.take(&lost));
        let back = event(BACK_KIND, 7, t0 / P);
        assert!(w.take(&back), "the member's back");
        assert!(!w.is_lost(7));
        for k in 1..100 {
            assert_eq!(w.due(7, P, Some(0), t0 + P + k * 250_000), None);
        }
        // Heard again and quiet for a new period: a new event.
        w.heard(7, t0 + 5 * P);
        assert!(w.due(7, P, Some(0), t0 + 6 * P).is_some());
    }

    #[test]
    fn one_episode_of_a_loss_is_shown_once_whoever_raised_it() {
        // Two neighbours of 7 announced it lost at once, naming adjacent periods (their last
        // evidence fell either side of a period's end), then each announced it back: a member
        // shows one loss and one back.
        let mut w = Watchdog::new(0);
        assert!(w.take(&event(LOST_KIND, 7, 100)));
        assert!(
            !w.take(&event(LOST_KIND, 7, 101)),
            "the same loss, another witness"
        );
        assert!(
            w.take(&event(BACK_KIND, 7, 101)),
            "back, whichever loss it answers"
        );
        assert!(!w.is_lost(7));
        assert!(
            !w.take(&event(BACK_KIND, 7, 100)),
            "the other witness's back"
        );
        assert!(
            !w.take(&event(LOST_KIND, 7, 100)),
            "a late copy of the loss"
        );
        // A later loss is a new episode, and so is its back.
        assert!(w.take(&event(LOST_KIND, 7, 200)));
        assert!(w.is_lost(7));
        assert!(w.take(&event(BACK_KIND, 7, 200)));
        // The back of an episode never seen here as lost (it started after) is shown once.
        assert!(w.take(&event(BACK_KIND, 8, 50)));
        assert!(!w.take(&event(BACK_KIND, 8, 51)));
        // A loss whose back never came here does not hide the next episode.
        assert!(w.take(&event(LOST_KIND, 9, 10)));
        assert!(w.take(&event(LOST_KIND, 9, 40)), "a stale loss is replaced");
        assert!(w.is_lost(9));
    }

    #[test]
    fn the_plane_witnesses_a_device_whose_beacons_stopped_only_while_it_works_here() {
        let t0 = 1_000 * P;
        let mut w = Watchdog::new(t0);
        // 7 and 8 beacon; 7 stops, 8 goes on: this node witnessed 7 go quiet.
        w.heard_on_plane(7, t0);
        w.heard_on_plane(8, t0);
        w.heard_on_plane(8, t0 + P);
        assert!(w.lost_on_plane(7, t0 + P + 1));
        // No other member's beacon lately: this node's own plane may be what broke.
        assert!(!w.lost_on_plane(7, t0 + 3 * P));
        // 9 was heard only by gossip long after its last beacon: the plane had lost it
        // before, so its silence there proves nothing.
        w.heard_on_plane(9, t0);
        w.heard(9, t0 + P);
        w.heard_on_plane(8, t0 + P + 1);
        assert!(!w.lost_on_plane(9, t0 + P + 2));
        // A device never heard on the plane.
        assert!(!w.lost_on_plane(10, t0 + P + 2));
    }

    #[test]
    fn a_sleeping_device_may_stay_quiet_for_the_period_it_declares_it_wakes_in() {
        let mut p = crate::cert::Profile::default();
        assert_eq!(quiet_allowed_us(60, &p), 60_000_000);
        p.tags = vec![(WAKE_TAG.into(), "600".into())];
        assert_eq!(
            quiet_allowed_us(60, &p),
            60_000_000,
            "awake: the tag is ignored"
        );
        p.sleeps = true;
        assert_eq!(quiet_allowed_us(60, &p), 600_000_000);
        assert_eq!(
            quiet_allowed_us(900, &p),
            900_000_000,
            "the longer of the two"
        );
        p.tags = vec![(WAKE_TAG.into(), "soon".into())];
        assert_eq!(quiet_allowed_us(60, &p), 60_000_000);
    }

    #[test]
    fn event_keys_parse_only_when_well_formed() {
        assert_eq!(parse_event("device-lost:7:99"), Some((LOST_KIND, 7, 99)));
        assert_eq!(parse_event("device-back:7:99"), Some((BACK_KIND, 7, 99)));
        for bad in [
            "device-lost:7",
            "device-lost:x:1",
            "other:7:1",
            "device-lost:7:1:2",
        ] {
            assert_eq!(parse_event(bad), None, "{bad}");
        }
        // An alert that merely carries the attribute with a bad value is shown as it is.
        let mut w = Watchdog::new(0);
        assert!(w.take("nonsense"));
        assert!(w.take("nonsense"));
    }
}
