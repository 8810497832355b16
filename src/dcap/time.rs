//! Seconds since the Unix epoch, the only notion of "now" the pure core accepts.
//!
//! The core never reads the clock: callers pass a `UnixTime`, so every verification
//! is reproducible at a recorded instant (the fixtures depend on that).

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time, in whole seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

/// A timestamp string that is neither RFC 3339 nor a whole number of seconds.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 time (2025-07-04T10:00:00Z) or Unix seconds")]
pub struct BadTime(pub String);

impl UnixTime {
    /// Parses RFC 3339 (`2025-07-04T10:00:00Z`) or decimal Unix seconds.
    pub fn parse(text: &str) -> Result<Self, BadTime> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<i64>() {
            return Ok(Self(secs));
        }
        Self::parse_rfc3339(text).ok_or_else(|| BadTime(text.to_owned()))
    }

    /// Parses an RFC 3339 timestamp as found in Intel's TCB info and QE identity.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(|t| Self(t.unix_timestamp()))
    }

    /// The same date and time `years` later (29 February moves to 1 March), if representable.
    pub fn plus_years(self, years: i32) -> Option<Self> {
        let t = OffsetDateTime::from_unix_timestamp(self.0).ok()?;
        let year = t.year().checked_add(years)?;
        let moved = t.replace_year(year).ok().or_else(|| {
            // Only 29 February has no counterpart in a common year.
            t.replace_day(28)
                .ok()?
                .replace_year(year)
                .ok()
                .map(|d| d + time::Duration::days(1))
        })?;
        Some(Self(moved.unix_timestamp()))
    }

    /// Formats as RFC 3339 in UTC, or as plain seconds if out of the representable range.
    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings_of_the_same_instant() {
        let a = UnixTime::parse("2025-07-04T10:00:00Z").map(|t| t.0).ok();
        let b = UnixTime::parse("1751623200").map(|t| t.0).ok();
        assert_eq!(a, Some(1_751_623_200));
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_garbage() {
        assert!(UnixTime::parse("yesterday").is_err());
        assert!(UnixTime::parse("2025-13-40T00:00:00Z").is_err());
    }

    #[test]
    fn a_year_later_is_the_same_date_and_29_february_moves_to_1_march() {
        let at = |s: &str| UnixTime::parse(s).ok();
        assert_eq!(
            at("2025-08-12T00:00:00Z").and_then(|t| t.plus_years(1)),
            at("2026-08-12T00:00:00Z")
        );
        assert_eq!(
            at("2024-02-29T10:00:00Z").and_then(|t| t.plus_years(1)),
            at("2025-03-01T10:00:00Z")
        );
        assert_eq!(UnixTime(i64::MAX).plus_years(1), None);
    }

    #[test]
    fn formats_utc() {
        assert_eq!(UnixTime(1_751_623_200).to_rfc3339(), "2025-07-04T10:00:00Z");
    }
}
