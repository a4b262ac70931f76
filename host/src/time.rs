//! Timestamps. Stored as microseconds since the Unix epoch (sortable and
//! comparable in both SQLite and PostgreSQL); rendered as RFC 3339 on the wire.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

/// RFC 3339 with microsecond precision, always in UTC (`...Z`).
pub fn rfc3339(micros: i64) -> String {
    let nanos = i128::from(micros) * 1_000;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", t.hour(), t.minute(), t.second(), t.microsecond())
}

/// Parse an RFC 3339 timestamp into epoch microseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let now = now_micros();
        assert_eq!(parse_rfc3339(&rfc3339(now)), Some(now));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05+01:00"), Some(1_767_319_445_000_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
