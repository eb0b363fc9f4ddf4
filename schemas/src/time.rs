//! UTC instants with microsecond precision, as KeyCRM sends them.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant in UTC, counted in microseconds since the Unix epoch.
///
/// Everything is stored and computed in UTC (docs/architecture.md, invariant 7); an integer keeps
/// sums of durations exact, so working time stays additive to the microsecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

pub const MICROS_PER_SECOND: i64 = 1_000_000;

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn from_seconds(seconds: i64) -> Self {
        Timestamp(seconds * MICROS_PER_SECOND)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Timestamp(dt.timestamp_micros())
    }

    /// Parses the timestamp shapes KeyCRM uses: RFC 3339 (`2026-01-29T18:53:35.000000Z`, any
    /// offset) and the zone-less `2026-02-03 09:34:10` (which KeyCRM means as UTC).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            return Some(Timestamp(dt.timestamp_micros()));
        }
        for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
                return Some(Timestamp(naive.and_utc().timestamp_micros()));
            }
        }
        None
    }

    /// RFC 3339 in UTC with a `Z`; fractional seconds only when there are any.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 UTC timestamp")))
    }
}

/// Seconds as a float, for output: microseconds divided out exactly once, at the edge.
pub fn micros_to_seconds(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_SECOND as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_keycrm_timestamp_shapes_as_utc() {
        let zulu = Timestamp::parse("2026-02-03T09:34:10.000000Z").unwrap();
        let bare = Timestamp::parse("2026-02-03 09:34:10").unwrap();
        assert_eq!(zulu, bare);
        assert_eq!(zulu.to_rfc3339(), "2026-02-03T09:34:10Z");
    }

    #[test]
    fn keeps_microseconds_and_honours_offsets() {
        let t = Timestamp::parse("2026-01-29T20:53:35.123456+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-29T18:53:35.123456Z");
    }

    #[test]
    fn rejects_text_that_is_not_a_time() {
        assert!(Timestamp::parse("yesterday").is_none());
        assert!(Timestamp::parse("2026-13-01T00:00:00Z").is_none());
    }
}
