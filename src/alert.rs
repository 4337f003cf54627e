//! What a sensing device says: the plaintext inside an envelope.
//!
//! The alert's id, channel, sender and creation time are not repeated in the plaintext: they
//! come from the authenticated envelope header (see `proto/envelope.md`).

use serde::{Deserialize, Serialize};

use crate::cert::Location;
pub use crate::severity::Severity;
use crate::wire::{self, DecodeError};

/// The kind of an alert that declares its sender in emergency (`proto/voice.md`, "Emergency"):
/// reserved, only a device with the emergency right may send one.
pub const EMERGENCY_KIND: &str = "emergency";

/// Largest plaintext alert (16 KiB).
pub const MAX_ALERT_LEN: usize = 16 * 1024;

/// The encrypted content of an alert.
///
/// Its wire form is the postcard encoding of the fields below, then, only for an update or a
/// cancellation, the postcard encoding of its [`Reference`] (`proto/envelope.md`, "Updates and
/// cancellations"): a plain alert's bytes are what they were before references existed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertBody {
    /// How bad it is.
    pub severity: Severity,
    /// What happened: free text such as `motion`, `intrusion`, `temperature`.
    pub kind: String,
    /// Human-readable text.
    pub text: String,
    /// Where it happened.
    pub location: Option<Location>,
    /// Extra key/value attributes such as `celsius=71.5`.
    pub attributes: Vec<(String, String)>,
    /// What this message does to an earlier alert (CAP `Update`/`Cancel`); `None` for a new
    /// alert. Written after the fields above, only when present.
    #[serde(skip)]
    pub reference: Option<Reference>,
}

/// An earlier alert, by its sender's device number and sequence number (which give its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertRef {
    /// The earlier alert's sender.
    pub sender: u32,
    /// Its sequence number (its sender's clock when sealed, µs).
    pub seq: u64,
}

/// What an update, a cancellation or an escalation does to the alert it names. The postcard
/// enum index is the wire tag: 0 update, 1 cancel, 2 escalate; a later version may add more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reference {
    /// Replaces the named alert's content with this message's (CAP `Update`).
    Update(AlertRef),
    /// Calls the named alert off (CAP `Cancel`); this message's text says why.
    Cancel(AlertRef),
    /// Announces the named alert again, at a higher severity, because no member acknowledged
    /// it within its channel's escalation time (CAP `Update`).
    Escalate(AlertRef),
}

impl Reference {
    /// The alert it names.
    pub fn target(&self) -> AlertRef {
        match self {
            Reference::Update(r) | Reference::Cancel(r) | Reference::Escalate(r) => *r,
        }
    }
    /// The message type it makes.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Reference::Update(_) => MsgType::Update,
            Reference::Cancel(_) => MsgType::Cancel,
            Reference::Escalate(_) => MsgType::Escalation,
        }
    }
}

/// What a message is, as CAP 1.2 names it: a new alert, an update of one, or a cancellation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgType {
    /// A new alert.
    #[default]
    Alert,
    /// Replaces an earlier alert.
    Update,
    /// Calls an earlier alert off.
    Cancel,
    /// Announces an earlier alert again because nobody acknowledged it (CAP `Update`).
    Escalation,
}

impl MsgType {
    /// Whether this is the default (for `skip_serializing_if`).
    pub fn is_alert(&self) -> bool {
        *self == MsgType::Alert
    }
}

impl AlertBody {
    /// The plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = wire::encode(self);
        if let Some(r) = &self.reference {
            out.extend_from_slice(&wire::encode(r));
        }
        out
    }
    /// Parses plaintext bytes: the fields, then a [`Reference`] if bytes remain (nothing may
    /// follow it).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ALERT_LEN {
            return Err(DecodeError::TooLong {
                what: "alert",
                len: bytes.len(),
                max: MAX_ALERT_LEN,
            });
        }
        let (mut body, rest) =
            postcard::take_from_bytes::<AlertBody>(bytes).map_err(|e| DecodeError::Malformed {
                what: "alert",
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            body.reference = Some(wire::decode("alert reference", rest, MAX_ALERT_LEN)?);
        }
        Ok(body)
    }
}

/// The alert a message refers to, as shown to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referenced {
    /// Its id.
    pub id: String,
    /// Its sender's device name.
    pub sender: String,
    /// Its sender's device number.
    pub sender_device: u32,
    /// When its sender created it (µs since the Unix epoch): its seq.
    pub created_at_us: u64,
}

/// What later messages did to an alert, as far as this node knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// The newest update of it: its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// Its cancellation, if it was called off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Cancellation>,
    /// Its sender announced it again because no member acknowledged it in time (the
    /// escalation's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_by: Option<String>,
}

/// An alert's cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The cancel message's id.
    pub id: String,
    /// Who cancelled it.
    pub by: String,
    /// When (the canceller's clock, µs since the Unix epoch).
    pub at_us: u64,
    /// Why.
    pub text: String,
}

/// An alert as shown to a user: the plaintext and what the envelope says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedAlert {
    /// Alert id (16 hex digits, derived from domain, sender and sequence number).
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// Sender's device name.
    pub sender: String,
    /// Sender's libp2p peer id.
    pub sender_peer_id: String,
    /// Sender's device number.
    pub sender_device: u32,
    /// Sender's sequence number.
    pub seq: u64,
    /// Severity.
    pub severity: Severity,
    /// Kind.
    pub kind: String,
    /// Text.
    pub text: String,
    /// When the sender created it (its clock, µs since the Unix epoch).
    pub created_at_us: u64,
    /// When this node accepted it (µs since the Unix epoch).
    pub received_at_us: u64,
    /// Location, if given.
    pub location: Option<Location>,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
    /// For a directed message: the device it was sent to (this one); `None` for a broadcast.
    #[serde(default)]
    pub recipient: Option<String>,
    /// The severity its sender claimed, when that was above what the authority allows the
    /// sender (`severity` is then the most it allows: [`crate::cert::DeviceRights`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_severity: Option<Severity>,
    /// A new alert, an update or a cancellation.
    #[serde(default)]
    pub msg_type: MsgType,
    /// For an update or a cancellation: the alert it refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Referenced>,
    /// What later updates and cancellations did to this alert, when any reached this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AlertState>,
    /// How it reached this node.
    pub via: Via,
    /// Received more than [`LATE_AFTER_US`] after it was created (for example fetched by
    /// catch-up after a sleep): shown, but marked so a user can tell.
    pub late: bool,
}

/// Alerts received longer than this after creation (by the sender's clock) are marked late.
pub const LATE_AFTER_US: u64 = 10_000_000;

/// Whether an alert created at `created_at_us` (sender's clock) and received at
/// `received_at_us` (this node's) is late: more than [`LATE_AFTER_US`] between them.
pub fn is_late(created_at_us: u64, received_at_us: u64) -> bool {
    received_at_us.saturating_sub(created_at_us) > LATE_AFTER_US
}

/// How an alert reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Live broadcast.
    Gossip,
    /// Fetched from a peer's log after a gap (sleep, partition, restart, loss).
    CatchUp,
    /// Read back from this node's own log (`history`).
    Log,
    /// Live, in a datagram of the sealed multicast plane.
    Multicast,
    /// Asked for again from a peer after its datagram on the plane was missed (gossip acting
    /// as repair for the plane).
    Repair,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for µs since the Unix epoch.
pub fn format_time_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let ms = (us / 1000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_via_has_its_json_name() {
        for (via, name) in [
            (Via::Gossip, "gossip"),
            (Via::CatchUp, "catch_up"),
            (Via::Log, "log"),
            (Via::Multicast, "multicast"),
            (Via::Repair, "repair"),
        ] {
            let json = serde_json::to_string(&via).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Via>(&json).unwrap(), via);
        }
    }

    #[test]
    fn a_reference_follows_the_fields_only_when_there_is_one() {
        let plain = AlertBody {
            severity: Severity::Severe,
            kind: "intrusion".into(),
            text: "gate".into(),
            location: None,
            attributes: vec![],
            reference: None,
        };
        let bytes = plain.encode();
        assert_eq!(
            bytes,
            wire::encode(&plain),
            "a plain alert is what it always was"
        );
        assert_eq!(AlertBody::decode(&bytes).unwrap(), plain);
        for r in [
            Reference::Update(AlertRef { sender: 7, seq: 9 }),
            Reference::Cancel(AlertRef {
                sender: u32::MAX,
                seq: u64::MAX,
            }),
        ] {
            let b = AlertBody {
                reference: Some(r),
                ..plain.clone()
            };
            let enc = b.encode();
            assert_eq!(&enc[..bytes.len()], &bytes[..]);
            assert_eq!(AlertBody::decode(&enc).unwrap(), b);
            assert_eq!(b.reference.unwrap().target(), r.target());
            let mut extra = enc.clone();
            extra.push(0);
            assert!(matches!(
                AlertBody::decode(&extra),
                Err(DecodeError::Trailing { .. })
            ));
        }
        assert_eq!(
            Reference::Cancel(AlertRef { sender: 1, seq: 2 }).msg_type(),
            MsgType::Cancel
        );
        let mut unknown = bytes.clone();
        unknown.extend_from_slice(&[3, 1, 2]);
        assert!(AlertBody::decode(&unknown).is_err());
        let mut big = vec![0u8; MAX_ALERT_LEN + 1];
        big[0] = 1;
        assert!(matches!(
            AlertBody::decode(&big),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn late_means_strictly_more_than_ten_seconds_after_creation() {
        let created = 1_795_000_000_000_000;
        assert!(!is_late(created, created + LATE_AFTER_US));
        assert!(is_late(created, created + LATE_AFTER_US + 1));
        // A sender clock ahead of this node's never marks late.
        assert!(!is_late(created, created - 1));
    }
}
