//! Alerts as OASIS CAP 1.2 documents (the Common Alerting Protocol of public-safety systems):
//! `ptt-node listen --format cap` writes one per alert, `ptt-node alert --cap FILE` sends one.
//! The mapping is specified in `proto/cap.md`; the output is checked against the CAP 1.2 schema
//! by `tests/noroot/cap.rs`.
//!
//! Both directions are pure functions of their input. The reader is quick-xml's, which expands
//! no entities but the five predefined ones and character references, and follows no DTD, so a
//! document cannot make it fetch anything or grow without bound.

use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use crate::alert::{AlertBody, MAX_ALERT_LEN, ReceivedAlert, Severity};
use crate::cert::Location;

/// The CAP 1.2 XML namespace.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// Largest CAP document `alert --cap` reads.
pub const MAX_DOCUMENT: usize = 256 * 1024;
/// Attribute names that carry CAP fields with no ptt-node equivalent across a round trip.
pub mod attr {
    /// `<status>` when not `Actual`.
    pub const STATUS: &str = "cap:status";
    /// `<urgency>` when not `Unknown`.
    pub const URGENCY: &str = "cap:urgency";
    /// `<certainty>` when not `Observed`.
    pub const CERTAINTY: &str = "cap:certainty";
    /// `<identifier>` of an imported document.
    pub const IDENTIFIER: &str = "cap:identifier";
    /// `<sender>` of an imported document.
    pub const SENDER: &str = "cap:sender";
    /// `<sent>` of an imported document.
    pub const SENT: &str = "cap:sent";
    /// `<instruction>`.
    pub const INSTRUCTION: &str = "cap:instruction";
    /// `<areaDesc>`.
    pub const AREA: &str = "cap:area";
    /// `<category>` when not `Security`.
    pub const CATEGORY: &str = "cap:category";
    /// The radius in km of `<circle>` when not 0.
    pub const RADIUS_KM: &str = "cap:radius_km";
}

const STATUSES: [&str; 5] = ["Actual", "Exercise", "System", "Test", "Draft"];
const URGENCIES: [&str; 5] = ["Immediate", "Expected", "Future", "Past", "Unknown"];
const CERTAINTIES: [&str; 5] = ["Observed", "Likely", "Possible", "Unlikely", "Unknown"];
const CATEGORIES: [&str; 12] = [
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];

/// Why a CAP document cannot be sent.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CapError {
    /// Not well-formed XML.
    #[error("not well-formed XML at byte {at}: {message}")]
    Xml {
        /// Byte offset.
        at: u64,
        /// quick-xml's message.
        message: String,
    },
    /// The root is not a CAP 1.2 `alert`.
    #[error(
        "not a CAP 1.2 alert: the root element must be <alert xmlns=\"{NAMESPACE}\">, found {0}"
    )]
    NotCap(String),
    /// A required element is missing.
    #[error("<{0}> is missing; CAP 1.2 requires it")]
    Missing(&'static str),
    /// An element holds a value CAP 1.2 does not allow.
    #[error("<{element}> is {value:?}: CAP 1.2 allows {allowed}")]
    Bad {
        /// The element.
        element: &'static str,
        /// What it holds.
        value: String,
        /// What it may hold.
        allowed: String,
    },
    /// A message type that does not carry an alert.
    #[error("<msgType> is {0}: only Alert, Update and Cancel messages can be sent")]
    MsgType(String),
    /// A `Cancel` whose `<references>` names no ptt-node alert: there is nothing to cancel.
    #[error(
        "<msgType> is Cancel but <references> names no ptt-node alert \
         (an identifier ptt-node:DOMAIN:ID, as `listen --format cap` writes)"
    )]
    NothingToCancel,
    /// `<references>` names more than one ptt-node alert; a change names one.
    #[error(
        "<references> names {0} ptt-node alerts; an Update or a Cancel may change one \
         (name the original alert only)"
    )]
    References(usize),
    /// A word of `<references>` mentions a ptt-node alert but is not a `sender,identifier,sent`
    /// triple naming one.
    #[error(
        "<references> has {0:?}: a reference to a ptt-node alert is sender,ptt-node:DOMAIN:ID,sent \
         (ID 16 lower-case hex digits, no spaces)"
    )]
    BadReference(String),
    /// An Update or a Cancel of a ptt-node alert whose status is not `Actual`.
    #[error("<status> is {0}: only an Actual message may update or cancel an alert")]
    NotActual(String),
    /// Too large for one alert.
    #[error("the alert would be {0} bytes; one alert holds at most {MAX_ALERT_LEN}")]
    TooLarge(usize),
}

/// Text safe inside an XML 1.0 element: escaped, and with characters XML 1.0 cannot carry
/// (controls other than tab, newline and carriage return; U+FFFE, U+FFFF) replaced by U+FFFD.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// An identifier or sender token: CAP forbids white space, commas, `<` and `&` in them.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '&' | '>' | '"') {
                '-'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() { "-".into() } else { t }
}

/// The last second CAP's four-digit years can say (9999-12-31T23:59:59).
const LAST_CAP_SECOND_US: u64 = 253_402_300_799_000_000;

/// `YYYY-MM-DDThh:mm:ss-00:00` (CAP's form of UTC: no `Z`, no fractions). A time beyond year
/// 9999 (a sender's clock can say anything) is written as the last second of 9999.
pub fn cap_time(us: u64) -> String {
    let t = crate::alert::format_time_us(us.min(LAST_CAP_SECOND_US));
    // YYYY-MM-DDTHH:MM:SS.mmmZ without the fraction and the Z.
    format!("{}-00:00", &t[..19.min(t.len())])
}

fn attribute<'a>(a: &'a [(String, String)], key: &str) -> Option<&'a str> {
    a.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn capitalized(s: Severity) -> &'static str {
    match s {
        Severity::Unknown => "Unknown",
        Severity::Minor => "Minor",
        Severity::Moderate => "Moderate",
        Severity::Severe => "Severe",
        Severity::Extreme => "Extreme",
    }
}

/// `scope` and its `addresses` or `restriction`: a directed message is for one device, an
/// alert for the members reading its channel.
fn write_scope(x: &mut String, recipient: Option<&str>, domain: &str, channel: &str) {
    match recipient {
        Some(to) => {
            let to = if to.contains(' ') {
                format!("\"{to}\"")
            } else {
                to.to_string()
            };
            let _ = write!(
                x,
                "  <scope>Private</scope>\n  <addresses>{}</addresses>\n",
                esc(&to)
            );
        }
        None => {
            let _ = write!(
                x,
                "  <scope>Restricted</scope>\n  <restriction>members of ptt-node domain {} reading channel {}</restriction>\n",
                esc(domain),
                esc(channel)
            );
        }
    }
}

/// The CAP 1.2 `Ack` message of a member's acknowledgement: `references` names the alert
/// acknowledged (its sender, identifier and sent time, as [`to_cap`] wrote them), `note` carries
/// what the member said. An `Ack` has no `info`.
pub fn to_cap_ack(a: &crate::control::AckInfo, domain: &str) -> String {
    let mut x = String::with_capacity(1024 + a.text.len() * 2);
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\"{NAMESPACE}\">\n  <identifier>{}</identifier>\n  <sender>{}</sender>\n  <sent>{}</sent>\n  <status>Actual</status>\n  <msgType>Ack</msgType>\n",
        esc(&token(&format!(
            "ptt-node:{domain}:{}:ack:{}",
            a.id, a.by_device
        ))),
        esc(&token(&format!("{}@{domain}", a.by))),
        cap_time(a.at_us),
    );
    write_scope(&mut x, a.recipient.as_deref(), domain, &a.channel);
    if !a.text.is_empty() {
        let _ = writeln!(x, "  <note>{}</note>", esc(&a.text));
    }
    let _ = write!(
        x,
        "  <references>{},{},{}</references>\n</alert>\n",
        esc(&token(&format!("{}@{domain}", a.sender))),
        esc(&token(&format!("ptt-node:{domain}:{}", a.id))),
        cap_time(a.created_at_us),
    );
    x
}

/// The CAP 1.2 document of a received alert. `domain` names the domain (the `status` reply's
/// `domain_name`) in the identifier, the sender and the restriction.
pub fn to_cap(a: &ReceivedAlert, domain: &str) -> String {
    let pick = |key: &str, allowed: &[&str], default: &'static str| -> String {
        attribute(&a.attributes, key)
            .and_then(|v| allowed.iter().find(|x| x.eq_ignore_ascii_case(v)))
            .map_or(default.to_string(), |v| v.to_string())
    };
    let mut x = String::with_capacity(1024 + a.text.len() * 2);
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\"{NAMESPACE}\">\n  <identifier>{}</identifier>\n  <sender>{}</sender>\n  <sent>{}</sent>\n  <status>{}</status>\n  <msgType>{}</msgType>\n",
        esc(&token(&format!("ptt-node:{domain}:{}", a.id))),
        esc(&token(&format!("{}@{domain}", a.sender))),
        cap_time(a.created_at_us),
        pick(attr::STATUS, &STATUSES, "Actual"),
        match a.msg_type {
            crate::alert::MsgType::Alert => "Alert",
            crate::alert::MsgType::Update | crate::alert::MsgType::Escalation => "Update",
            crate::alert::MsgType::Cancel => "Cancel",
        },
    );
    write_scope(&mut x, a.recipient.as_deref(), domain, &a.channel);
    // An update or a cancellation names the alert it changes, as `to_cap` wrote that alert.
    if let Some(r) = &a.references {
        let _ = writeln!(
            x,
            "  <references>{},{},{}</references>",
            esc(&token(&format!("{}@{domain}", r.sender))),
            esc(&token(&format!("ptt-node:{domain}:{}", r.id))),
            cap_time(r.created_at_us),
        );
    }
    let headline: String = a
        .text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(160)
        .collect();
    let _ = write!(
        x,
        "  <info>\n    <category>{}</category>\n    <event>{}</event>\n    <urgency>{}</urgency>\n    <severity>{}</severity>\n    <certainty>{}</certainty>\n    <senderName>{}</senderName>\n",
        pick(attr::CATEGORY, &CATEGORIES, "Security"),
        esc(&a.kind),
        pick(attr::URGENCY, &URGENCIES, "Unknown"),
        capitalized(a.severity),
        pick(attr::CERTAINTY, &CERTAINTIES, "Observed"),
        esc(&a.sender),
    );
    if !headline.is_empty() {
        let _ = writeln!(x, "    <headline>{}</headline>", esc(&headline));
    }
    if !a.text.is_empty() {
        let _ = writeln!(x, "    <description>{}</description>", esc(&a.text));
    }
    if let Some(i) = attribute(&a.attributes, attr::INSTRUCTION) {
        let _ = writeln!(x, "    <instruction>{}</instruction>", esc(i));
    }
    let state = a.state.as_ref().and_then(|s| {
        s.cancelled
            .as_ref()
            .map(|c| format!("cancelled by {} ({})", c.by, c.id))
            .or_else(|| s.updated_by.as_ref().map(|u| format!("updated by {u}")))
            .or_else(|| {
                s.escalated_by
                    .as_ref()
                    .map(|e| format!("escalated by {e}: unacknowledged"))
            })
    });
    let escalation = (a.msg_type == crate::alert::MsgType::Escalation)
        .then(|| ("ptt:escalation", "unacknowledged".to_string()));
    let own = [
        ("ptt:channel", a.channel.clone()),
        ("ptt:seq", a.seq.to_string()),
        ("ptt:sender_peer_id", a.sender_peer_id.clone()),
        ("ptt:received", cap_time(a.received_at_us)),
    ]
    .into_iter()
    .chain(state.map(|s| ("ptt:state", s)))
    .chain(escalation);
    let carried = [
        attr::STATUS,
        attr::URGENCY,
        attr::CERTAINTY,
        attr::INSTRUCTION,
        attr::AREA,
        attr::CATEGORY,
        attr::RADIUS_KM,
    ];
    let own: Vec<(&str, String)> = own.collect();
    for (k, v) in own.iter().map(|(k, v)| (*k, v.as_str())).chain(
        a.attributes
            .iter()
            .filter(|(k, _)| !carried.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        let _ = writeln!(
            x,
            "    <parameter>\n      <valueName>{}</valueName>\n      <value>{}</value>\n    </parameter>",
            esc(k),
            esc(v)
        );
    }
    // A location out of range (a peer's alert is not range-checked on receipt) has no area.
    if let Some(l) = a
        .location
        .filter(|l| (-90.0..=90.0).contains(&l.lat) && (-180.0..=180.0).contains(&l.lon))
    {
        let radius = attribute(&a.attributes, attr::RADIUS_KM)
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r >= 0.0)
            .map_or_else(|| "0".to_string(), |r| format!("{r}"));
        let desc = attribute(&a.attributes, attr::AREA)
            .map_or_else(|| format!("{:.5},{:.5}", l.lat, l.lon), str::to_string);
        let _ = write!(
            x,
            "    <area>\n      <areaDesc>{}</areaDesc>\n      <circle>{:.5},{:.5} {radius}</circle>\n    </area>\n",
            esc(&desc),
            l.lat,
            l.lon
        );
    }
    x.push_str("  </info>\n</alert>\n");
    x
}

/// What a CAP document's first `<info>` says, gathered while reading.
#[derive(Default)]
struct Doc {
    identifier: Option<String>,
    sender: Option<String>,
    sent: Option<String>,
    status: Option<String>,
    msg_type: Option<String>,
    references: Option<String>,
    infos: usize,
    category: Option<String>,
    event: Option<String>,
    urgency: Option<String>,
    severity: Option<String>,
    certainty: Option<String>,
    headline: Option<String>,
    description: Option<String>,
    instruction: Option<String>,
    parameters: Vec<(String, String)>,
    area_desc: Option<String>,
    circle: Option<String>,
    polygon: Option<String>,
}

/// What a CAP document given to `alert --cap` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum CapMessage {
    /// A new alert: an `Alert`, or an `Update` whose `<references>` names no ptt-node alert
    /// (an update of another system's message, which this domain has not seen).
    Alert(AlertBody),
    /// An `Update` of the ptt-node alert its `<references>` names (its id): the new content.
    Update {
        /// The alert's id.
        id: String,
        /// The new content.
        body: AlertBody,
    },
    /// A `Cancel` of the ptt-node alert its `<references>` names, with the first `<info>`'s
    /// description (else headline) as the reason, if it has one.
    Cancel {
        /// The alert's id.
        id: String,
        /// Why.
        text: String,
    },
}

/// The ids of the ptt-node alerts a `<references>` value names. CAP writes it as
/// space-separated `sender,identifier,sent` triples; `to_cap` writes a ptt-node alert's
/// identifier as `ptt-node:DOMAIN:ID` with ID 16 lower-case hex digits. Other systems' triples
/// are skipped; a word that mentions `ptt-node:` but is not such a triple is an error (sending
/// the document as a new alert would leave the alert it meant unchanged).
fn referenced_ids(references: &str) -> Result<Vec<String>, CapError> {
    let mut ids = vec![];
    for t in references.split_whitespace() {
        if !t.contains("ptt-node:") {
            continue;
        }
        let parts: Vec<&str> = t.split(',').collect();
        let id = match parts.as_slice() {
            [sender, identifier, sent] if !sender.is_empty() && !sent.is_empty() => identifier
                .strip_prefix("ptt-node:")
                .and_then(|rest| rest.rsplit_once(':'))
                .filter(|(domain, id)| {
                    !domain.is_empty()
                        && id.len() == 16
                        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                })
                .map(|(_, id)| id.to_string()),
            _ => None,
        };
        ids.push(id.ok_or_else(|| CapError::BadReference(t.chars().take(120).collect()))?);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Reads a CAP 1.2 document given to `alert --cap`: an `Alert`, an `Update` or a `Cancel`
/// (see [`CapMessage`]; the body as [`from_cap`] reads it).
pub fn message_from_cap(xml: &str) -> Result<CapMessage, CapError> {
    let d = read(xml)?;
    let ids = match d.references.as_deref() {
        Some(r) => referenced_ids(r)?,
        None => vec![],
    };
    if ids.len() > 1 {
        return Err(CapError::References(ids.len()));
    }
    let id = ids.into_iter().next();
    let change = matches!(d.msg_type.as_deref(), Some("Update" | "Cancel")) && id.is_some();
    // A test, exercise, draft or system message does not change a live alert.
    if change {
        let status = d.status.as_deref().ok_or(CapError::Missing("status"))?;
        check("status", status, &STATUSES)?;
        if status != "Actual" {
            return Err(CapError::NotActual(status.to_string()));
        }
    }
    match (d.msg_type.as_deref(), id) {
        (Some("Cancel"), None) => Err(CapError::NothingToCancel),
        (Some("Cancel"), Some(id)) => {
            let text: String = d.description.or(d.headline).unwrap_or_default();
            let n = AlertBody {
                severity: Severity::Minor,
                kind: "cancel".into(),
                text: text.clone(),
                location: None,
                attributes: vec![],
                reference: None,
            }
            .encode()
            .len()
                + 32;
            if n > MAX_ALERT_LEN {
                return Err(CapError::TooLarge(n));
            }
            Ok(CapMessage::Cancel { id, text })
        }
        (Some("Update"), Some(id)) => Ok(CapMessage::Update {
            id,
            body: body_of(d)?,
        }),
        _ => Ok(CapMessage::Alert(body_of(d)?)),
    }
}

/// Reads a CAP 1.2 document into an alert body: `<event>` is the kind, `<severity>` the
/// severity, `<description>` (else `<headline>`) the text, the first `<area>`'s circle centre
/// (else its polygon's first point) the location, `<parameter>`s the attributes; status,
/// urgency, certainty, category, instruction, area description, identifier, sender and sent
/// time are kept as `cap:*` attributes. Only the first `<info>` is read. `Alert` and `Update`
/// messages only (see [`message_from_cap`] for what an `Update` or a `Cancel` refers to).
pub fn from_cap(xml: &str) -> Result<AlertBody, CapError> {
    body_of(read(xml)?)
}

/// The alert body of a document read: `Alert` and `Update` messages only.
fn body_of(d: Doc) -> Result<AlertBody, CapError> {
    match d.msg_type.as_deref() {
        None => return Err(CapError::Missing("msgType")),
        Some("Alert" | "Update") => {}
        Some(other) => return Err(CapError::MsgType(other.to_string())),
    }
    let status = d.status.clone().ok_or(CapError::Missing("status"))?;
    check("status", &status, &STATUSES)?;
    if d.infos == 0 {
        return Err(CapError::Missing("info"));
    }
    let kind = d
        .event
        .clone()
        .filter(|e| !e.trim().is_empty())
        .ok_or(CapError::Missing("event"))?;
    let sev = d.severity.clone().ok_or(CapError::Missing("severity"))?;
    let severity = Severity::ALL
        .into_iter()
        .find(|s| capitalized(*s) == sev)
        .ok_or_else(|| CapError::Bad {
            element: "severity",
            value: sev.clone(),
            allowed: "Extreme, Severe, Moderate, Minor or Unknown".into(),
        })?;
    let mut attributes = Vec::new();
    let mut keep = |k: &str, v: Option<&String>, default: Option<&str>| {
        if let Some(v) = v.filter(|v| Some(v.as_str()) != default && !v.is_empty()) {
            attributes.push((k.to_string(), v.clone()));
        }
    };
    keep(attr::STATUS, Some(&status), Some("Actual"));
    if let Some(u) = &d.urgency {
        check("urgency", u, &URGENCIES)?;
    }
    if let Some(c) = &d.certainty {
        check("certainty", c, &CERTAINTIES)?;
    }
    if let Some(c) = &d.category {
        check("category", c, &CATEGORIES)?;
    }
    keep(attr::URGENCY, d.urgency.as_ref(), Some("Unknown"));
    keep(attr::CERTAINTY, d.certainty.as_ref(), Some("Observed"));
    keep(attr::CATEGORY, d.category.as_ref(), Some("Security"));
    keep(attr::INSTRUCTION, d.instruction.as_ref(), None);
    keep(attr::IDENTIFIER, d.identifier.as_ref(), None);
    keep(attr::SENDER, d.sender.as_ref(), None);
    keep(attr::SENT, d.sent.as_ref(), None);
    let location = match (&d.circle, &d.polygon) {
        (Some(c), _) => Some(point(c.split_whitespace().next().unwrap_or(""), "circle")?),
        (None, Some(p)) => Some(point(p.split_whitespace().next().unwrap_or(""), "polygon")?),
        (None, None) => None,
    };
    if location.is_some() || d.area_desc.is_some() {
        keep(attr::AREA, d.area_desc.as_ref(), None);
    }
    if let Some(r) = d
        .circle
        .as_deref()
        .and_then(|c| c.split_whitespace().nth(1))
        .filter(|r| r.parse::<f64>().is_ok_and(|r| r.is_finite() && r > 0.0))
    {
        attributes.push((attr::RADIUS_KM.to_string(), r.to_string()));
    }
    // Parameters written by `to_cap` about the copy it came from are not the new alert's, and
    // `cap:*` names are this mapping's own: a parameter may not set them.
    attributes.extend(
        d.parameters
            .into_iter()
            .filter(|(k, _)| !k.starts_with("ptt:") && !k.starts_with("cap:")),
    );
    let body = AlertBody {
        severity,
        kind,
        text: d.description.or(d.headline).unwrap_or_default(),
        location,
        attributes,
        reference: None,
    };
    let n = body.encode().len();
    if n > MAX_ALERT_LEN {
        return Err(CapError::TooLarge(n));
    }
    Ok(body)
}

fn check(element: &'static str, v: &str, allowed: &[&str]) -> Result<(), CapError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(CapError::Bad {
            element,
            value: v.to_string(),
            allowed: allowed.join(", "),
        })
    }
}

/// `lat,lon` of a CAP circle or polygon.
fn point(s: &str, element: &'static str) -> Result<Location, CapError> {
    let bad = || CapError::Bad {
        element,
        value: s.to_string(),
        allowed: "WGS 84 points \"lat,lon\", lat -90 to 90, lon -180 to 180".into(),
    };
    let (lat, lon) = s.split_once(',').ok_or_else(bad)?;
    let (lat, lon): (f64, f64) = (
        lat.trim().parse().map_err(|_| bad())?,
        lon.trim().parse().map_err(|_| bad())?,
    );
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad());
    }
    Ok(Location { lat, lon })
}

/// Reads the elements [`from_cap`] uses, checking the root and the namespace.
fn read(xml: &str) -> Result<Doc, CapError> {
    let mut r = quick_xml::reader::NsReader::from_str(xml);
    let mut d = Doc::default();
    // Element names from the root down (local names of CAP elements; "?" for others).
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut param: (Option<String>, Option<String>) = (None, None);
    let mut areas = 0usize;
    let mut roots = 0usize;
    let err = |r: &quick_xml::reader::NsReader<&[u8]>, e: &dyn std::fmt::Display| CapError::Xml {
        at: r.buffer_position(),
        message: e.to_string(),
    };
    loop {
        let step = match r.read_resolved_event() {
            Ok((ns, ev)) => Ok((
                matches!(ns, ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes()),
                match ns {
                    ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
                    _ => "no namespace".to_string(),
                },
                ev,
            )),
            Err(e) => Err(e.to_string()),
        };
        let (in_cap, ns, ev) = step.map_err(|m| err(&r, &m))?;
        match ev {
            Event::Start(e) if path.is_empty() => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if roots > 0 {
                    return Err(err(&r, &"a second root element after </alert>"));
                }
                if !in_cap || local != "alert" {
                    return Err(CapError::NotCap(describe(&local, &ns)));
                }
                roots += 1;
                path.push(local);
            }
            Event::Empty(_) if path.is_empty() && roots > 0 => {
                return Err(err(&r, &"a second root element after </alert>"));
            }
            Event::Empty(e) if path.is_empty() => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                return Err(CapError::NotCap(format!(
                    "an empty {}",
                    describe(&local, &ns)
                )));
            }
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let name = if in_cap { local } else { "?".into() };
                if path.len() == 1 && name == "info" {
                    d.infos += 1;
                }
                if path.len() == 2 && path[1] == "info" && name == "area" && d.infos == 1 {
                    areas += 1;
                }
                path.push(name);
                text.clear();
                if path.len() > 64 {
                    return Err(err(&r, &"elements nested deeper than 64"));
                }
            }
            Event::Empty(_) => {}
            Event::Text(t) => {
                // XML 1.0 line ends (quick-xml's xml_content would apply XML 1.1's, which also
                // turn U+0085 and U+2028 into newlines).
                let raw = t.decode().map_err(|e| err(&r, &e))?;
                text.push_str(&raw.replace("\r\n", "\n").replace('\r', "\n"));
            }
            Event::CData(t) => {
                text.push_str(&t.decode().map_err(|e| err(&r, &e))?);
            }
            Event::GeneralRef(g) => match g.resolve_char_ref().map_err(|e| err(&r, &e))? {
                Some(c) => text.push(c),
                None => {
                    let name = g.decode().map_err(|e| err(&r, &e))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(v) => text.push_str(v),
                        None => return Err(err(&r, &format!("unknown entity &{name};"))),
                    }
                }
            },
            Event::End(_) => {
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                let v = std::mem::take(&mut text).trim().to_string();
                let first_info = d.infos == 1;
                let set = |slot: &mut Option<String>| {
                    // The first non-empty value counts.
                    if slot.is_none() && !v.is_empty() {
                        *slot = Some(v.clone());
                    }
                };
                match p.as_slice() {
                    ["alert", "identifier"] => set(&mut d.identifier),
                    ["alert", "sender"] => set(&mut d.sender),
                    ["alert", "sent"] => set(&mut d.sent),
                    ["alert", "status"] => set(&mut d.status),
                    ["alert", "msgType"] => set(&mut d.msg_type),
                    ["alert", "references"] => set(&mut d.references),
                    ["alert", "info", f] if first_info => match *f {
                        "category" => set(&mut d.category),
                        "event" => set(&mut d.event),
                        "urgency" => set(&mut d.urgency),
                        "severity" => set(&mut d.severity),
                        "certainty" => set(&mut d.certainty),
                        "headline" => set(&mut d.headline),
                        "description" => set(&mut d.description),
                        "instruction" => set(&mut d.instruction),
                        "parameter" => {
                            if let (Some(k), Some(v)) = std::mem::take(&mut param)
                                && d.parameters.len() < 64
                            {
                                d.parameters.push((k, v));
                            }
                        }
                        _ => {}
                    },
                    ["alert", "info", "parameter", "valueName"] if first_info => param.0 = Some(v),
                    ["alert", "info", "parameter", "value"] if first_info => param.1 = Some(v),
                    ["alert", "info", "area", f] if first_info && areas == 1 => match *f {
                        "areaDesc" => set(&mut d.area_desc),
                        "circle" => set(&mut d.circle),
                        "polygon" => set(&mut d.polygon),
                        _ => {}
                    },
                    _ => {}
                }
                path.pop();
            }
            Event::Eof if !path.is_empty() => {
                return Err(err(
                    &r,
                    &format!(
                        "the document ends inside <{}>: it is cut short",
                        path.join("><")
                    ),
                ));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if roots == 0 {
        // Nothing but a prologue, comments or white space.
        return Err(CapError::NotCap("an empty document".into()));
    }
    Ok(d)
}

/// `<name> in NAMESPACE` for errors.
fn describe(local: &str, ns: &str) -> String {
    format!("<{local}> in {ns}")
}

#[cfg(test)]
mod tests;
