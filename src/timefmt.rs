//! Timestamps in the registry's format: UTC ISO-8601 with microseconds and `+00:00`
//! (what Python's `datetime.now(timezone.utc).isoformat()` prints).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as `2026-01-20T16:29:14.123456+00:00`.
pub fn now_iso() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_iso(since.as_secs() as i64, since.subsec_micros())
}

/// Now, compact and sortable, for ref names: `20260120T162914Z`.
pub fn now_compact() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Format Unix seconds + microseconds.
pub fn format_iso(secs: i64, micros: u32) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}+00:00")
}

/// Unix seconds → (year, month, day, hour, minute, second), proleptic Gregorian UTC.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_isoformat() {
        assert_eq!(format_iso(0, 0), "1970-01-01T00:00:00.000000+00:00");
        // 2026-01-20T16:29:14Z
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
    fn now_has_the_right_shape() {
        let s = now_iso();
        assert_eq!(s.len(), 32, "{s}");
        assert!(s.ends_with("+00:00"));
    }
}
