//! Time stamps in the registry's format: UTC ISO-8601 with microseconds and `+00:00`
//! (what Python's `datetime.now(timezone.utc).isoformat()` prints), compact stamps for
//! ref names, and ages. The calendar is jiff's.
//!
//! "Now" is the system clock, or `KINFRA_TEST_NOW` when set, so tests of age-based
//! features can move time.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::Offset;

/// The current time: `KINFRA_TEST_NOW` when set to a valid time, else the system clock.
/// (A bad `KINFRA_TEST_NOW` is reported by `envvars::check_all`.)
pub fn now() -> Timestamp {
    match crate::envvars::test_now() {
        Ok(Some(t)) => t,
        _ => Timestamp::now(),
    }
}

/// Now, as `2026-01-20T16:29:14.123456+00:00`.
pub fn now_iso() -> String {
    format_timestamp(now())
}

/// Now, compact and sortable, for ref names: `20260120T162914Z`.
pub fn now_compact() -> String {
    Offset::UTC
        .to_datetime(now())
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// Format Unix seconds + microseconds; out-of-range seconds give the epoch.
pub fn format_iso(secs: i64, micros: u32) -> String {
    let nanos = i32::try_from(micros.min(999_999) * 1000).unwrap_or(0);
    format_timestamp(Timestamp::new(secs, nanos).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Always six fraction digits, as the registry's format (SPEC §3) says. (Python leaves
/// the fraction out when it is exactly zero, once in a million; its `fromisoformat`
/// reads both.)
pub fn format_timestamp(t: Timestamp) -> String {
    let micros = t.subsec_microsecond();
    format!(
        "{}.{micros:06}+00:00",
        Offset::UTC.to_datetime(t).strftime("%Y-%m-%dT%H:%M:%S")
    )
}

/// Parse what Python's `isoformat()` writes for an aware time (with or without the
/// fraction, any offset, `Z` too). `None` for anything else, naive times included:
/// their zone is unknown.
pub fn parse_iso(text: &str) -> Option<Timestamp> {
    text.trim().parse::<Timestamp>().ok()
}

/// How long ago `text` was; zero for a time in the future (a clock that was ahead).
pub fn age(text: &str) -> Option<Duration> {
    let then = parse_iso(text)?;
    let span = now().duration_since(then);
    Some(Duration::try_from(span).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's shape: `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
    fn is_registry_format(s: &str) -> bool {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
        b.len() == 32
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && b[19] == b'.'
            && digits(20..26)
            && &s[26..] == "+00:00"
    }

    #[test]
    fn formats_like_python_isoformat() {
        assert_eq!(format_iso(0, 0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            format_iso(1_768_926_554, 123_456),
            "2026-01-20T16:29:14.123456+00:00"
        );
        // Leap day.
        assert_eq!(
            format_iso(951_782_400, 1),
            "2000-02-29T00:00:00.000001+00:00"
        );
    }

    #[test]
    fn now_has_the_registry_shape() {
        let s = now_iso();
        assert!(is_registry_format(&s), "{s}");
        let c = now_compact();
        assert_eq!(c.len(), 16, "{c}");
        assert!(c.ends_with('Z') && c.as_bytes()[8] == b'T', "{c}");
    }

    #[test]
    fn parses_what_python_writes_and_round_trips() {
        let t = parse_iso("2026-01-20T16:29:14.123456+00:00").unwrap();
        assert_eq!(t.as_second(), 1_768_926_554);
        assert_eq!(t.subsec_microsecond(), 123_456);
        assert_eq!(format_timestamp(t), "2026-01-20T16:29:14.123456+00:00");
        // Python leaves out a zero fraction.
        let t = parse_iso("2026-01-20T16:29:14+00:00").unwrap();
        assert_eq!(format_timestamp(t), "2026-01-20T16:29:14.000000+00:00");
        // Another offset is the same instant.
        assert_eq!(
            parse_iso("2026-01-20T17:29:14.5+01:00").map(format_timestamp),
            Some("2026-01-20T16:29:14.500000+00:00".into())
        );
        let now = now_iso();
        assert_eq!(parse_iso(&now).map(format_timestamp), Some(now));
    }

    #[test]
    fn refuses_what_is_not_an_aware_time() {
        for bad in [
            "",
            "yesterday",
            "2026-01-20T16:29:14",
            "2026-13-01T00:00:00+00:00",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn age_counts_from_now() {
        let an_hour_ago = format_timestamp(
            now()
                .checked_sub(jiff::SignedDuration::from_secs(3600))
                .unwrap(),
        );
        let hour = age(&an_hour_ago).unwrap();
        assert!(
            hour >= Duration::from_secs(3600) && hour < Duration::from_secs(3660),
            "{hour:?}"
        );
        assert_eq!(age("2999-01-01T00:00:00+00:00"), Some(Duration::ZERO));
        assert_eq!(age("nope"), None);
    }
}
