//! Severity on the scale of the Common Alerting Protocol (CAP 1.2): what an alert or a voice
//! burst claims, and the most a device may claim (the domain descriptor's rights).

use serde::{Deserialize, Serialize};

/// Severity on the scale of the Common Alerting Protocol (CAP 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Severity unknown.
    Unknown,
    /// Minimal to no known threat to life or property.
    Minor,
    /// Possible threat to life or property.
    Moderate,
    /// Significant threat to life or property.
    Severe,
    /// Extraordinary threat to life or property.
    Extreme,
}

impl Severity {
    /// All values, in wire order.
    pub const ALL: [Severity; 5] = [
        Severity::Unknown,
        Severity::Minor,
        Severity::Moderate,
        Severity::Severe,
        Severity::Extreme,
    ];
    /// The lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Minor => "minor",
            Severity::Moderate => "moderate",
            Severity::Severe => "severe",
            Severity::Extreme => "extreme",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown severity {s:?}: use minor, moderate, severe, extreme or unknown")
            })
    }
}
