//! Why a payload or a record was not written. Every rejection carries one of these
//! reasons (the dead-letter store and `/metrics` count by it) and a message naming the
//! field or position.

use serde::{Deserialize, Serialize};

/// The reason a payload or record went to the dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The payload is not valid JSON/CSV/XML (syntax, truncation).
    Decode,
    /// The payload is not UTF-8 text.
    Encoding,
    /// The payload is larger than the configured limit.
    Oversized,
    /// No mapping handles this source or topic.
    NoMapping,
    /// A required value is missing from the record.
    MissingValue,
    /// A value does not convert (not a number, not in the enum map, no regex match).
    BadValue,
    /// The observation time does not parse.
    BadTime,
    /// The geometry is invalid.
    BadGeometry,
    /// The entity id or type built from the record is not valid.
    BadId,
    /// The store rejected the entity (NGSI-LD validation).
    Invalid,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Decode,
        Reason::Encoding,
        Reason::Oversized,
        Reason::NoMapping,
        Reason::MissingValue,
        Reason::BadValue,
        Reason::BadTime,
        Reason::BadGeometry,
        Reason::BadId,
        Reason::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Decode => "decode",
            Reason::Encoding => "encoding",
            Reason::Oversized => "oversized",
            Reason::NoMapping => "no_mapping",
            Reason::MissingValue => "missing_value",
            Reason::BadValue => "bad_value",
            Reason::BadTime => "bad_time",
            Reason::BadGeometry => "bad_geometry",
            Reason::BadId => "bad_id",
            Reason::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection: the reason and a message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: Reason,
    pub message: String,
}

impl Reject {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}
