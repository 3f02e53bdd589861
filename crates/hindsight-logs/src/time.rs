//! RFC 3339 / ISO-8601 date-times to Unix seconds and back, without a
//! calendar library: the proleptic Gregorian calendar of
//! [Howard Hinnant's `days_from_civil`](https://howardhinnant.github.io/date_algorithms.html).

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (years 0 to 9999; other
/// values as the plain number of seconds).
pub fn format_rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return format!("{secs} s");
    }
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses an RFC 3339 / ISO-8601 date-time into Unix seconds (fractions
/// floored): `2017-11-25T01:21:10Z`, `2017-11-25 01:21:10.123+08:00`,
/// `2017-11-25T01:21`, `2017-11-25` (midnight). Without an offset the time
/// is UTC. `None` when the text is not such a date or names an impossible
/// day or time.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = i64::from(num(&b[0..4])?);
    let mo = num(&b[5..7])?;
    let d = num(&b[8..10])?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    let mut rest = &b[10..];
    if rest.is_empty() {
        return Some(secs);
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let h = num(&rest[1..3])?;
    let mi = num(&rest[4..6])?;
    rest = &rest[6..];
    let mut s = 0;
    if let [b':', s1, s2, tail @ ..] = rest {
        s = num(&[*s1, *s2])?;
        rest = tail;
        if let [b'.' | b',', tail @ ..] = rest {
            let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            rest = &tail[n..];
        }
    }
    // 60 is a leap second: counted as the last second of the minute.
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    secs += i64::from(h * 3600 + mi * 60 + s.min(59));
    let offset = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (oh, om) = match tz {
                [a, b] => (num(&[*a, *b])?, 0),
                [a, b, b':', c, d] | [a, b, c, d] => (num(&[*a, *b])?, num(&[*c, *d])?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(secs - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2017-11-25T01:21:10Z"), Some(1_511_572_870));
        assert_eq!(parse_rfc3339("2017-11-25 01:21:10"), Some(1_511_572_870));
        assert_eq!(
            parse_rfc3339("2017-11-25T09:21:10.999+08:00"),
            Some(1_511_572_870)
        );
        assert_eq!(
            parse_rfc3339("2017-11-24T20:21:10-0500"),
            Some(1_511_572_870)
        );
        assert_eq!(parse_rfc3339("2017-11-25T01:21Z"), Some(1_511_572_860));
        assert_eq!(parse_rfc3339("2017-11-25"), Some(1_511_568_000));
        assert_eq!(parse_rfc3339("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(format_rfc3339(1_511_572_870), "2017-11-25T01:21:10Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        for bad in [
            "",
            "2017",
            "1511572870",
            "2017-13-01",
            "2017-02-29",
            "1900-02-29",
            "2017-11-25T24:00:00Z",
            "2017-11-25T01:21:10+25:00",
            "2017-11-25T01:21:10Q",
            "2017-11-25T01:21:10.Z",
            "2017/11/25",
            "2017-11-25T1:2:3",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(secs in -62_167_219_200i64..253_402_300_800) {
            let text = format_rfc3339(secs);
            prop_assert_eq!(parse_rfc3339(&text), Some(secs), "{}", text);
        }

        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse_rfc3339(&text);
        }
    }
}
