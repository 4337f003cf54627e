//! Rules: when a received alert or directed message matches, run a command and/or send a
//! directed message (the seed's scenario 6.3: a thermal sensor's reading above a threshold
//! makes the home server switch the air conditioner on).
//!
//! Parsing and matching only; the daemon carries out the actions (hooks run with a timeout
//! in tasks of their own, never blocking it).
//!
//! ```toml
//! [[rule]]
//! name = "hot"                 # for logs and counters
//! channel = "alerts"           # or "direct"; any when absent
//! kind = "temperature"         # any when absent
//! min_severity = "moderate"    # minor < moderate < severe < extreme; unknown is lowest
//! sender = "thermal-1"         # any when absent
//! attribute = "celsius"        # with above and/or below: a numeric attribute's range
//! above = 30.0
//! max_age_s = 60               # ignore alerts older than this (catch-up after a long sleep)
//! msg_types = ["alert", "update", "escalation"]  # the default; "cancel" acts on cancellations
//! unacknowledged = true        # only escalations: alerts nobody acknowledged in time
//! run = ["/usr/local/bin/ac-switch", "on"]   # the message as JSON on stdin
//! timeout_s = 10
//! send = { to = "ac-1", kind = "ac-on", text = "{sender}: {kind} {value}" }
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::alert::{MsgType, ReceivedAlert, Severity};

/// A rules file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The rules, evaluated in order; every matching rule acts.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Name, for logs and counters.
    pub name: String,
    /// Channel name (`direct` for directed messages).
    pub channel: Option<String>,
    /// Alert kind.
    pub kind: Option<String>,
    /// Lowest severity.
    pub min_severity: Option<Severity>,
    /// Sender device name.
    pub sender: Option<String>,
    /// A numeric attribute to test with `above` / `below`.
    pub attribute: Option<String>,
    /// The attribute must be greater than this.
    pub above: Option<f64>,
    /// The attribute must be less than this.
    pub below: Option<f64>,
    /// Alerts older than this (seconds) are not acted on.
    #[serde(default = "default_max_age")]
    pub max_age_s: u64,
    /// The message types acted on (`alert`, `update`, `cancel`, `escalation`); all but
    /// cancellations when absent, so a cancellation sets off nothing unless asked for.
    pub msg_types: Option<Vec<MsgType>>,
    /// `true`: only escalations (alerts no member acknowledged within their channel's
    /// escalation time); `false`: no escalation; absent: either.
    pub unacknowledged: Option<bool>,
    /// Command to run, the message as JSON on its stdin.
    #[serde(default)]
    pub run: Vec<String>,
    /// Seconds the command may take before it is killed.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// A directed message to send.
    pub send: Option<SendAction>,
}

fn default_max_age() -> u64 {
    60
}

fn default_timeout() -> u64 {
    10
}

/// A directed message a rule sends. `{sender}`, `{kind}`, `{text}` and `{value}` (the tested
/// attribute) in `text` are replaced.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendAction {
    /// Device name.
    pub to: String,
    /// Kind of the message.
    pub kind: String,
    /// Text (a template).
    #[serde(default)]
    pub text: String,
    /// Severity (default: the triggering alert's).
    pub severity: Option<Severity>,
}

/// A rules file problem.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad TOML or an unknown key (the message names the line).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// toml's message, with line and column.
        message: String,
    },
    /// A rule that cannot work.
    #[error("{path}: rule {rule:?}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The rule.
        rule: String,
        /// What is wrong.
        message: String,
    },
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Unknown => 0,
        Severity::Minor => 1,
        Severity::Moderate => 2,
        Severity::Severe => 3,
        Severity::Extreme => 4,
    }
}

impl Rules {
    /// Parses rules from TOML text; `path` names the source in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, RulesError> {
        let r: Rules = toml::from_str(text).map_err(|e| RulesError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        for rule in &r.rules {
            let bad = |m: &str| RulesError::Invalid {
                path: path.to_string(),
                rule: rule.name.clone(),
                message: m.to_string(),
            };
            if rule.run.is_empty() && rule.send.is_none() {
                return Err(bad("has neither run nor send: it would do nothing"));
            }
            if (rule.above.is_some() || rule.below.is_some()) != rule.attribute.is_some() {
                return Err(bad("attribute goes with above and/or below"));
            }
            if rule.timeout_s == 0 || rule.timeout_s > 3600 {
                return Err(bad("timeout_s must be 1 to 3600"));
            }
        }
        Ok(r)
    }

    /// Reads a rules file.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The rules an alert matches, at `now_us`, with the tested attribute's value.
    pub fn matching<'a>(
        &'a self,
        a: &ReceivedAlert,
        now_us: u64,
    ) -> impl Iterator<Item = (&'a Rule, Option<f64>)> + 'a {
        let a = a.clone();
        self.rules
            .iter()
            .filter_map(move |r| r.matches(&a, now_us).map(|v| (r, v)))
    }
}

impl Rule {
    /// `Some(value of the tested attribute, if any)` when the alert matches.
    pub fn matches(&self, a: &ReceivedAlert, now_us: u64) -> Option<Option<f64>> {
        if now_us.saturating_sub(a.created_at_us) > self.max_age_s.saturating_mul(1_000_000) {
            return None;
        }
        let wanted = match &self.msg_types {
            Some(types) => types.contains(&a.msg_type),
            None => a.msg_type != MsgType::Cancel,
        };
        let escalation = a.msg_type == MsgType::Escalation;
        if !wanted || self.unacknowledged.is_some_and(|u| u != escalation) {
            return None;
        }
        if self.channel.as_ref().is_some_and(|c| *c != a.channel)
            || self.kind.as_ref().is_some_and(|k| *k != a.kind)
            || self.sender.as_ref().is_some_and(|s| *s != a.sender)
            || self
                .min_severity
                .is_some_and(|m| rank(a.severity) < rank(m))
        {
            return None;
        }
        let Some(attr) = &self.attribute else {
            return Some(None);
        };
        let v: f64 = a
            .attributes
            .iter()
            .find(|(k, _)| k == attr)
            .and_then(|(_, v)| v.trim().parse().ok())
            .filter(|v: &f64| v.is_finite())?;
        if self.above.is_some_and(|t| v <= t) || self.below.is_some_and(|t| v >= t) {
            return None;
        }
        Some(Some(v))
    }
}

impl SendAction {
    /// The message text for an alert.
    pub fn render(&self, a: &ReceivedAlert, value: Option<f64>) -> String {
        // One pass over the template: text coming from the alert is never expanded again.
        let value = value.map(|v| v.to_string()).unwrap_or_default();
        let mut out = String::with_capacity(self.text.len());
        let mut rest = self.text.as_str();
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let (sub, len) = [
                ("{sender}", a.sender.as_str()),
                ("{kind}", a.kind.as_str()),
                ("{text}", a.text.as_str()),
                ("{value}", value.as_str()),
            ]
            .iter()
            .find(|(k, _)| tail.starts_with(k))
            .map_or(("{", 1), |(k, v)| (*v, k.len()));
            out.push_str(sub);
            rest = &tail[len..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Via;

    fn reading(c: &str, created: u64) -> ReceivedAlert {
        ReceivedAlert {
            id: "x".into(),
            channel: "alerts".into(),
            sender: "thermal-1".into(),
            sender_peer_id: String::new(),
            sender_device: 1,
            seq: created,
            severity: Severity::Moderate,
            kind: "temperature".into(),
            text: "reading".into(),
            created_at_us: created,
            received_at_us: created,
            location: None,
            attributes: vec![("celsius".into(), c.into())],
            recipient: None,
            claimed_severity: None,
            via: Via::Gossip,
            late: false,
            msg_type: Default::default(),
            references: None,
            state: None,
        }
    }

    const RULES: &str = r#"
        [[rule]]
        name = "hot"
        channel = "alerts"
        kind = "temperature"
        attribute = "celsius"
        above = 30.0
        send = { to = "ac-1", kind = "ac-on", text = "{sender} reads {value}" }
    "#;

    #[test]
    fn threshold_and_age() {
        let r = Rules::parse(RULES, "rules.toml").unwrap();
        let now = 1_000_000_000;
        assert_eq!(r.matching(&reading("35.5", now), now).count(), 1);
        assert_eq!(r.matching(&reading("30", now), now).count(), 0);
        assert_eq!(r.matching(&reading("hot", now), now).count(), 0);
        assert_eq!(r.matching(&reading("NaN", now), now).count(), 0);
        let mut sneaky = reading("35", now);
        sneaky.sender = "{value}{text}".into();
        let (rule, v) = r.matching(&reading("35", now), now).next().unwrap();
        assert_eq!(
            rule.send.as_ref().unwrap().render(&sneaky, v),
            "{value}{text} reads 35"
        );
        assert_eq!(
            r.matching(&reading("35", now - 61_000_000), now).count(),
            0,
            "too old"
        );
        let (rule, v) = r.matching(&reading("35.5", now), now).next().unwrap();
        assert_eq!(
            rule.send.as_ref().unwrap().render(&reading("35.5", now), v),
            "thermal-1 reads 35.5"
        );
    }

    #[test]
    fn a_cancellation_sets_off_only_the_rules_that_ask_for_it() {
        let r = Rules::parse(
            "[[rule]]\nname = \"any\"\nrun = [\"true\"]\n\
             [[rule]]\nname = \"stop\"\nmsg_types = [\"cancel\"]\nrun = [\"true\"]\n",
            "r.toml",
        )
        .unwrap();
        let now = 1_000_000_000;
        let names = |a: &ReceivedAlert| -> Vec<String> {
            r.matching(a, now).map(|(x, _)| x.name.clone()).collect()
        };
        let mut a = reading("1", now);
        assert_eq!(names(&a), ["any"]);
        a.msg_type = MsgType::Update;
        assert_eq!(names(&a), ["any"]);
        a.msg_type = MsgType::Cancel;
        assert_eq!(names(&a), ["stop"]);
        // `unacknowledged` picks escalations, which the default types include.
        let r = Rules::parse(
            "[[rule]]\nname = \"any\"\nrun = [\"true\"]\n\
             [[rule]]\nname = \"unanswered\"\nunacknowledged = true\nrun = [\"true\"]\n\
             [[rule]]\nname = \"answered\"\nunacknowledged = false\nrun = [\"true\"]\n",
            "r.toml",
        )
        .unwrap();
        let names = |a: &ReceivedAlert| -> Vec<String> {
            r.matching(a, now).map(|(x, _)| x.name.clone()).collect()
        };
        a.msg_type = MsgType::Escalation;
        assert_eq!(names(&a), ["any", "unanswered"]);
        a.msg_type = MsgType::Alert;
        assert_eq!(names(&a), ["any", "answered"]);
        assert!(
            Rules::parse(
                "[[rule]]\nname = \"x\"\nmsg_types = [\"ack\"]\nrun = [\"true\"]\n",
                "r.toml"
            )
            .is_err()
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let e = Rules::parse(
            "[[rule]]\nname = \"x\"\nrun = [\"true\"]\nkindd = \"y\"\n",
            "r.toml",
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("r.toml") && m.contains("kindd") && m.contains("line 4"),
            "{m}"
        );
        let e = Rules::parse("[[rule]]\nname = \"idle\"\n", "r.toml").unwrap_err();
        assert!(e.to_string().contains("neither run nor send"));
        let e = Rules::parse(
            "[[rule]]\nname = \"n\"\nrun=[\"x\"]\nabove = 3.0\n",
            "r.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("attribute goes with"));
    }
}
