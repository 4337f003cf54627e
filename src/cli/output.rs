//! How the client commands write what the daemon answers: one line of text per alert, peer
//! or device for people (the severity in colour on a terminal), one JSON object per line for
//! programs, or CAP documents; and the `status` summary.
//!
//! Every function here takes the reply and returns the text (only `--color auto` looks at
//! the terminal and NO_COLOR). This room never talks to the daemon and never writes to
//! stdout itself.

use crate::alert::{ReceivedAlert, Severity};
use crate::cert::Profile;
use crate::control::{DeviceInfo, PeerInfo, StatusInfo};

use super::{ColorChoice, Format, format_time_us};

/// One JSON object on one line (empty if the value cannot be written as JSON).
pub(super) fn json_line<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Prints alerts in one of the formats of `listen` and `history`.
pub(super) struct Printer {
    format: Format,
    colour: bool,
    /// The domain's name, for CAP documents.
    domain: String,
}

impl Printer {
    /// A printer for `format`; `domain` names the domain in CAP documents (unused otherwise).
    pub(super) fn new(format: Format, colour: ColorChoice, domain: String) -> Self {
        Printer {
            format,
            colour: format == Format::Text && colour.enabled(),
            domain,
        }
    }

    /// One acknowledgement: a line of text or JSON (`"type":"ack"`), or a CAP `Ack` message.
    pub(super) fn render_ack(&self, a: &crate::control::AckInfo) -> String {
        match self.format {
            Format::Json => {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["type"] = "ack".into();
                json_line(&v)
            }
            Format::Cap => crate::cap::to_cap_ack(a, &self.domain)
                .trim_end()
                .to_string(),
            Format::Text => format!(
                "{} ACK      {} acknowledged alert {} ({} from {} on {}){}",
                format_time_us(a.at_us),
                a.by,
                a.id,
                format_time_us(a.created_at_us),
                a.sender,
                a.channel,
                if a.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", a.text)
                }
            ),
        }
    }

    /// One alert: a line of text or JSON, or a CAP document.
    pub(super) fn render(&self, a: &ReceivedAlert) -> String {
        match self.format {
            Format::Json => json_line(a),
            Format::Cap => crate::cap::to_cap(a, &self.domain).trim_end().to_string(),
            Format::Text if self.colour => format_alert_coloured(a),
            Format::Text => format_alert(a),
        }
    }
}

/// [`format_alert`] with the severity in colour (ANSI), for a terminal.
pub fn format_alert_coloured(a: &ReceivedAlert) -> String {
    let plain = format_alert(a);
    let sev = a.severity.as_str().to_uppercase();
    let code = match a.severity {
        Severity::Extreme => "1;97;41", // bold white on red
        Severity::Severe => "1;31",     // bold red
        Severity::Moderate => "33",     // yellow
        Severity::Minor => "36",        // cyan
        Severity::Unknown => "2",       // dim
    };
    // The severity is the second field: "TIME SEVERITY …".
    match plain.split_once(' ') {
        Some((time, rest)) if rest.starts_with(&sev) => {
            format!("{time} \x1b[{code}m{sev}\x1b[0m{}", &rest[sev.len()..])
        }
        _ => plain,
    }
}

/// One human-readable line for an alert: time, severity, the id that `ack`, `cancel`,
/// `receipts` and `alert --update` take, then what happened.
pub fn format_alert(a: &ReceivedAlert) -> String {
    let mut s = format!(
        "{} {:<8} {} {} from {} on {}: {}",
        format_time_us(a.created_at_us),
        a.severity.as_str().to_uppercase(),
        a.id,
        a.kind,
        a.sender,
        a.channel,
        a.text
    );
    if let Some(l) = a.location {
        s.push_str(&format!(" @{:.5},{:.5}", l.lat, l.lon));
    }
    for (k, v) in &a.attributes {
        s.push_str(&format!(" {k}={v}"));
    }
    if let Some(c) = a.claimed_severity {
        s.push_str(&format!(
            " (claimed {c}: more than the authority allows {})",
            a.sender
        ));
    }
    if let Some(r) = &a.references {
        let (verb, why) = match a.msg_type {
            crate::alert::MsgType::Cancel => ("cancels", ""),
            crate::alert::MsgType::Escalation => ("escalates", ": nobody acknowledged it"),
            _ => ("updates", ""),
        };
        s.push_str(&format!(" ({verb} {} from {}{why})", r.id, r.sender));
    }
    if let Some(st) = &a.state {
        if let Some(c) = &st.cancelled {
            s.push_str(&format!(" (CANCELLED by {}", c.by));
            if !c.text.is_empty() {
                s.push_str(&format!(": {}", c.text));
            }
            s.push(')');
        } else if let Some(u) = &st.updated_by {
            s.push_str(&format!(" (updated by {u})"));
        } else if let Some(e) = &st.escalated_by {
            s.push_str(&format!(" (UNACKNOWLEDGED: escalated by {e})"));
        }
    }
    if a.late {
        s.push_str(&format!(
            " (late: received {} s after it was sent)",
            a.received_at_us.saturating_sub(a.created_at_us) / 1_000_000
        ));
    }
    s
}

/// `receipts`: a summary line, then one line per member.
pub(super) fn format_receipts(r: &crate::control::ReceiptsInfo) -> String {
    let mut out = format!(
        "alert {} on {} from {}: {} of {} members received it, {} acknowledged\n",
        r.id, r.channel, r.sender, r.received, r.expected, r.acknowledged
    );
    for m in &r.members {
        let got = match (m.received_at_us, m.via) {
            (Some(at), Some(via)) => {
                format!("received {} by {}", format_time_us(at), via_name(via))
            }
            (Some(at), None) => format!("received {}", format_time_us(at)),
            _ => "not yet".to_string(),
        };
        let ack = match &m.ack {
            Some(t) if t.is_empty() => ", acknowledged".to_string(),
            Some(t) => format!(", acknowledged: {t}"),
            None => String::new(),
        };
        let extra = if m.expected {
            ""
        } else {
            " (cannot read the channel now)"
        };
        out.push_str(&format!("  {:<20} {got}{ack}{extra}\n", m.name));
    }
    out
}

fn via_name(v: crate::alert::Via) -> &'static str {
    match v {
        crate::alert::Via::Gossip => "gossip",
        crate::alert::Via::CatchUp => "catch-up",
        crate::alert::Via::Log => "log",
        crate::alert::Via::Multicast => "multicast",
        crate::alert::Via::Repair => "repair",
    }
}

/// One line for a peer of `peers`.
pub(super) fn format_peer(p: &PeerInfo) -> String {
    let since = if p.since_us > 0 {
        format!(" since {}", format_time_us(p.since_us))
    } else {
        String::new()
    };
    let mut s = format!(
        "{:<16} {:<13}{:<33} {}",
        p.name.as_deref().unwrap_or("?"),
        p.state,
        since,
        p.peer_id
    );
    if let Some(prof) = &p.profile {
        s.push_str(&format!(" kind={}", prof.kind));
    }
    if !p.addresses.is_empty() {
        s.push_str(&format!(" [{}]", p.addresses.join(" ")));
    }
    if let Some(path) = &p.path {
        s.push_str(&format!(" path={path}"));
        if let Some(loss) = p.plane_loss.filter(|l| *l > 0.0) {
            s.push_str(&format!(" plane_loss={:.0}%", loss * 100.0));
        }
    }
    if let (false, Some(e)) = (p.authenticated, &p.last_error) {
        s.push_str(&format!(" last error: {e}"));
    }
    s
}

/// The first line of `status`: one word a person can act on, and why.
pub fn health(s: &StatusInfo) -> String {
    if s.revoked {
        return "REVOKED  the domain authority revoked this device: members refuse it; enrol it again".into();
    }
    if s.peers.authenticated == 0 {
        return "ALONE    no authenticated peer: alerts sent now are stored here and reach nobody until one connects".into();
    }
    let mut why = Vec::new();
    if s.peers.unreachable > 0 {
        why.push(format!("{} peer(s) unreachable", s.peers.unreachable));
    }
    if s.store.dropped > 0 {
        why.push(format!(
            "{} received envelope(s) not logged (store busy)",
            s.store.dropped
        ));
    }
    if s.actions.failed > 0 {
        why.push(format!("{} rule action(s) failed", s.actions.failed));
    }
    if why.is_empty() {
        format!(
            "OK       {} of {} known peer(s) authenticated",
            s.peers.authenticated,
            s.peers.authenticated + s.peers.asleep + s.peers.unreachable
        )
    } else {
        format!("DEGRADED {}", why.join(", "))
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The data plane's line of `status` (and its drop reasons, one line each).
fn format_plane(p: &crate::control::PlaneInfo) -> String {
    let epoch = p.epoch.map_or("none".to_string(), |e| e.to_string());
    let mut out = if p.state == "active" {
        format!(
            "plane    active, epoch {epoch}, {}:{} and [{}]:{} on {}; {} sent, {} received, {} accepted\n",
            p.group4,
            p.port,
            p.group6,
            p.port,
            p.interfaces.join(", "),
            p.sent,
            p.received,
            p.accepted
        )
    } else {
        format!("plane    {}, epoch {epoch}\n", p.state)
    };
    if let Some(e) = &p.error {
        out.push_str(&format!("  error  {e}\n"));
    }
    for (k, v) in &p.dropped {
        out.push_str(&format!("  dropped {k}: {v}\n"));
    }
    out
}

/// The whole `status` summary, [`health`] first, one line per topic.
pub(super) fn format_status(s: &StatusInfo) -> String {
    let c = &s.counters;
    let rejected: u64 = c.rejected.values().sum();
    let mut out = format!(
        "{}\ndevice   {} (#{}){}{}{}\npeer id  {}\ndomain   {} ({})\nchannels {}\nlisten   {}\npeers    {} connected, {} authenticated, {} asleep, {} unreachable, {} standby (at most {} kept)\nalerts   {} sent, {} received, {} relayed, {} rejected, {} signatures checked\nuptime   {}\n",
        health(s),
        s.device,
        s.device_number,
        if s.relay_only { ", relay-only" } else { "" },
        s.max_severity
            .map(|m| format!(", severity at most {m}"))
            .unwrap_or_default(),
        if s.dispatcher { ", dispatcher" } else { "" },
        s.peer_id,
        s.domain_name,
        s.domain_id.get(..16).unwrap_or(&s.domain_id),
        if s.channels.is_empty() {
            "(none: relay-only)".to_string()
        } else {
            s.channels.join(", ")
        },
        s.listen_addrs.join(" "),
        s.peers.connected,
        s.peers.authenticated,
        s.peers.asleep,
        s.peers.unreachable,
        s.peers.standby,
        s.max_peers,
        c.alerts_sent,
        c.alerts_received,
        c.alerts_relayed,
        rejected,
        c.signatures_verified,
        format_duration(s.uptime_s)
    );
    if let Some(m) = &s.metrics {
        out.push_str(&format!("metrics  {m}\n"));
    }
    // Who is in emergency comes right after the identity: it is what matters most.
    if let Some(e) = &s.emergency {
        out.push_str(&format!(
            "EMERGENCY this device since {}: {} (`ptt-node emergency --clear` ends it)\n",
            format_time_us(e.since_us),
            e.text
        ));
    }
    for e in &s.emergencies {
        out.push_str(&format!(
            "EMERGENCY {} since {}: {} (alert {})\n",
            e.name,
            format_time_us(e.since_us),
            e.text,
            e.id
        ));
    }
    if s.escalations_pending > 0 {
        out.push_str(&format!(
            "escalation {} of this device's alerts wait for an acknowledgement\n",
            s.escalations_pending
        ));
    }
    if s.peers.denied > 0 {
        out.push_str(&format!(
            "  denied {} inbound connections (too many waiting to authenticate; {} waiting now)\n",
            s.peers.denied, s.peers.unauthenticated
        ));
    }
    for (k, v) in &c.rejected {
        out.push_str(&format!("  rejected {k}: {v}\n"));
    }
    out.push_str(&format_plane(&s.plane));
    out.push_str(&format!(
        "domain   revision {}, {} updates applied, {} key periods erased{}\n",
        s.revision,
        c.updates_applied,
        c.keys_erased,
        if s.revoked {
            ", THIS DEVICE IS REVOKED"
        } else {
            ""
        }
    ));
    for k in &s.keys {
        out.push_str(&format!(
            "  key    channel {} epoch {}{}: rotates every {} s, oldest period held {}\n",
            k.channel,
            k.epoch,
            if k.current { " (current)" } else { "" },
            k.rotate_secs,
            k.oldest_period
        ));
    }
    out.push_str(&format!(
        "catch-up {} sessions ({} ended early), {} fetched, {} requests served\nlog      {} envelopes, {} KiB{}\nrules    {} loaded, {} matched, {} hooks run, {} sent, {} failed\n",
        s.catch_up.sessions,
        s.catch_up.failed,
        s.catch_up.fetched,
        s.catch_up.served,
        s.store.envelopes,
        s.store.bytes.div_ceil(1024),
        if s.store.dropped > 0 {
            format!(", {} dropped (store busy)", s.store.dropped)
        } else {
            String::new()
        },
        s.actions.rules,
        s.actions.matched,
        s.actions.hooks_run,
        s.actions.sent,
        s.actions.failed
    ));
    out
}

/// The `profile` summary: kind, location, context tags, whether the device sleeps.
pub(super) fn format_profile(profile: &Profile) -> String {
    let tags: Vec<String> = profile
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let location = match profile.location {
        Some(l) => format!("{},{}", l.lat, l.lon),
        None => "-".to_string(),
    };
    format!(
        "kind     {}\nlocation {location}\ntags     {}\nsleeps   {}\n",
        profile.kind,
        tags.join(" "),
        if profile.sleeps { "yes" } else { "no" }
    )
}

/// One line for a device `search` found.
pub(super) fn format_device(d: &DeviceInfo) -> String {
    let dist = d
        .distance_m
        .map(|m| format!("{m:>8.0} m"))
        .unwrap_or_else(|| "         -".into());
    let tags: Vec<String> = d
        .profile
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{:<16} {:<14} {:<13} {} {} [{}] {}{}",
        d.name,
        d.profile.kind,
        d.state,
        dist,
        d.peer_id,
        d.addresses.join(" "),
        tags.join(","),
        if d.profile.sleeps { " (sleeps)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Via;
    use crate::cert::Location;

    fn alert(severity: Severity) -> ReceivedAlert {
        ReceivedAlert {
            id: "5c1e0a2b9d3f4e71".into(),
            channel: "alerts".into(),
            sender: "cam-1".into(),
            sender_peer_id: "12D3KooW".into(),
            sender_device: 1,
            seq: 1,
            severity,
            kind: "intrusion".into(),
            text: "gate 3 forced".into(),
            created_at_us: 1_763_781_234_567_000,
            received_at_us: 1_763_781_234_567_000 + 12_000_000,
            location: Some(Location {
                lat: 37.5665,
                lon: 126.978,
            }),
            attributes: vec![("zone".into(), "north".into())],
            recipient: None,
            claimed_severity: None,
            via: Via::Gossip,
            late: true,
            msg_type: Default::default(),
            references: None,
            state: None,
        }
    }

    #[test]
    fn status_says_at_a_glance_what_is_wrong() {
        let mut s = StatusInfo::default();
        assert!(health(&s).starts_with("ALONE"), "{}", health(&s));
        s.peers.authenticated = 2;
        s.peers.asleep = 1;
        assert_eq!(health(&s), "OK       2 of 3 known peer(s) authenticated");
        s.peers.unreachable = 1;
        s.store.dropped = 4;
        let h = health(&s);
        assert!(
            h.starts_with("DEGRADED")
                && h.contains("1 peer(s) unreachable")
                && h.contains("4 received"),
            "{h}"
        );
        s.revoked = true;
        assert!(health(&s).starts_with("REVOKED"));
        // The whole summary: the health first, nothing panics on a short domain id.
        s.domain_id = "ab".into();
        s.uptime_s = 3 * 3600 + 7 * 60;
        s.metrics = Some("http://127.0.0.1:9464/metrics".into());
        s.counters.signatures_verified = 7;
        s.emergencies = vec![crate::control::EmergencyInfo {
            device: 4,
            name: "guard-2".into(),
            id: "00aa".into(),
            since_us: 0,
            text: "man down".into(),
        }];
        let text = format_status(&s);
        assert!(
            text.contains(
                "EMERGENCY guard-2 since 1970-01-01T00:00:00.000Z: man down (alert 00aa)\n"
            ),
            "{text}"
        );
        assert!(text.starts_with("REVOKED"), "{text}");
        assert!(
            text.contains("uptime   3h 7m\n")
                && text.contains(" 0 rejected, 7 signatures checked\n")
                && text.contains("metrics  http://127.0.0.1:9464/metrics"),
            "{text}"
        );
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(61), "1m 1s");
        assert_eq!(format_duration(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn an_alert_is_one_line_with_the_severity_in_colour_only_on_request() {
        let a = alert(Severity::Severe);
        assert_eq!(
            format_alert(&a),
            "2025-11-22T03:13:54.567Z SEVERE   5c1e0a2b9d3f4e71 intrusion from cam-1 on alerts: gate 3 forced \
             @37.56650,126.97800 zone=north (late: received 12 s after it was sent)"
        );
        assert_eq!(
            format_alert_coloured(&a),
            format_alert(&a).replacen("SEVERE", "\x1b[1;31mSEVERE\x1b[0m", 1)
        );
        let mut a = alert(Severity::Extreme);
        a.kind = "extreme".into();
        let coloured = format_alert_coloured(&a);
        assert_eq!(coloured.matches("\x1b[").count(), 2, "{coloured:?}");
        assert!(coloured.contains("\x1b[1;97;41mEXTREME\x1b[0m  5c1e0a2b9d3f4e71 extreme"));
        let never = Printer::new(Format::Text, ColorChoice::Never, String::new());
        let always = Printer::new(Format::Text, ColorChoice::Always, String::new());
        assert_eq!(never.render(&a), format_alert(&a));
        assert_eq!(always.render(&a), coloured);
        // An update and a cancellation name their alert; an alert shows what they did.
        let mut c = alert(Severity::Minor);
        c.late = false;
        c.kind = "cancel".into();
        c.text = "false alarm".into();
        c.msg_type = crate::alert::MsgType::Cancel;
        c.references = Some(crate::alert::Referenced {
            id: "00aa".into(),
            sender: "cam-2".into(),
            sender_device: 2,
            created_at_us: 1,
        });
        assert!(
            format_alert(&c).ends_with("(cancels 00aa from cam-2)"),
            "{}",
            format_alert(&c)
        );
        let mut o = alert(Severity::Severe);
        o.late = false;
        o.state = Some(crate::alert::AlertState {
            updated_by: Some("00bb".into()),
            cancelled: None,
            escalated_by: None,
        });
        assert!(format_alert(&o).ends_with("(updated by 00bb)"));
        o.state = Some(crate::alert::AlertState {
            updated_by: Some("00bb".into()),
            cancelled: Some(crate::alert::Cancellation {
                id: "00cc".into(),
                by: "desk".into(),
                at_us: 2,
                text: "false alarm".into(),
            }),
            escalated_by: None,
        });
        assert!(format_alert(&o).ends_with("(CANCELLED by desk: false alarm)"));
        let json = Printer::new(Format::Json, ColorChoice::Always, String::new()).render(&a);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["text"], "gate 3 forced");
        assert!(!json.contains('\n') && !json.contains("\x1b["));
    }

    #[test]
    fn peers_devices_and_profiles_are_written_as_before() {
        let profile = Profile {
            kind: "camera".into(),
            location: Some(Location {
                lat: -33.9,
                lon: 18.4,
            }),
            tags: vec![("zone".into(), "n".into()), ("floor".into(), "2".into())],
            sleeps: true,
        };
        let mut p = PeerInfo {
            peer_id: "12D3KooWpeer".into(),
            name: Some("cam-1".into()),
            device: Some(1),
            addresses: vec!["/ip4/10.0.0.2/tcp/7000".into()],
            connected: true,
            authenticated: false,
            relay_only: Some(false),
            profile: Some(profile.clone()),
            last_error: Some("refused".into()),
            state: "unreachable".into(),
            since_us: 0,
            ..PeerInfo::default()
        };
        // Name in 16 columns, state in 13, no "since" (33 blank columns), then the peer id.
        assert_eq!(
            format_peer(&p),
            format!(
                "cam-1{}unreachable{}12D3KooWpeer kind=camera [/ip4/10.0.0.2/tcp/7000] \
                 last error: refused",
                " ".repeat(11 + 1),
                " ".repeat(2 + 33 + 1)
            )
        );
        p.authenticated = true;
        p.name = None;
        p.since_us = 1_763_781_234_567_000;
        p.addresses.clear();
        assert_eq!(
            format_peer(&p),
            "?                unreachable   since 2025-11-22T03:13:54.567Z   12D3KooWpeer kind=camera"
        );
        // An authenticated peer shows its path, and its plane loss when there is any.
        p.path = Some("mixed".into());
        p.plane_loss = Some(0.25);
        assert!(
            format_peer(&p).ends_with(" kind=camera path=mixed plane_loss=25%"),
            "{}",
            format_peer(&p)
        );
        assert_eq!(
            format_profile(&profile),
            "kind     camera\nlocation -33.9,18.4\ntags     zone=n floor=2\nsleeps   yes\n"
        );
        assert_eq!(
            format_profile(&Profile::default()),
            "kind     \nlocation -\ntags     \nsleeps   no\n"
        );
        let d = DeviceInfo {
            name: "cam-1".into(),
            device: 1,
            peer_id: "12D3KooWpeer".into(),
            profile,
            relay_only: false,
            addresses: vec!["/ip4/10.0.0.2/tcp/7000".into()],
            distance_m: Some(412.4),
            state: "authenticated".into(),
        };
        assert_eq!(
            format_device(&d),
            "cam-1            camera         authenticated      412 m 12D3KooWpeer \
             [/ip4/10.0.0.2/tcp/7000] zone=n,floor=2 (sleeps)"
        );
    }

    #[test]
    fn status_shows_the_plane_and_its_drops() {
        let mut s = StatusInfo {
            plane: crate::control::PlaneInfo {
                state: "active".into(),
                epoch: Some(2),
                group4: "239.255.1.2".into(),
                group6: "ff12::7".into(),
                port: 24000,
                interfaces: vec!["eth0".into()],
                sent: 5,
                received: 9,
                accepted: 7,
                dropped: [("plane_junk".to_string(), 2)].into_iter().collect(),
                ..Default::default()
            },
            ..StatusInfo::default()
        };
        let text = format_status(&s);
        assert!(
            text.contains("plane    active, epoch 2, 239.255.1.2:24000 and [ff12::7]:24000 on eth0; 5 sent, 9 received, 7 accepted\n  dropped plane_junk: 2\n"),
            "{text}"
        );
        s.plane = crate::control::PlaneInfo {
            state: "no_key".into(),
            ..Default::default()
        };
        assert!(format_status(&s).contains("plane    no_key, epoch none\n"));
    }
}
