//! Event time as data: milliseconds since the Unix epoch, parsed from the payload.
//!
//! The domain never reads a clock. Timestamps are parsed strictly from the formats real
//! sources send: RFC 3339 (`2026-11-24T03:00:09.512Z`, `...+01:00`) and CloudWatch's
//! offset without a colon (`2026-11-24T03:00:09.512+0000`). Fractions finer than a
//! millisecond are truncated, so the same instant always maps to the same integer.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z (UTC). Negative values are before the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EpochMs(pub i64);

/// The earliest event time opx accepts in a signal: 2000-01-01T00:00:00Z.
pub const EVENT_TIME_MIN: EpochMs = EpochMs(946_684_800_000);
/// The latest event time opx accepts in a signal: 2199-12-31T23:59:59.999Z.
pub const EVENT_TIME_MAX: EpochMs = EpochMs(7_258_118_399_999);

/// Why a timestamp was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text is not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|+HHMM)`.
    #[error("expected an RFC 3339 timestamp such as 2026-11-24T03:00:09.512Z or 2026-11-24T03:00:09.512+0000, got {0:?}")]
    Malformed(String),
    /// A field is out of its calendar range (month 13, February 30, hour 24, ...).
    #[error("timestamp {0:?} names a date or time that does not exist")]
    OutOfRange(String),
}

impl EpochMs {
    /// Parses a timestamp; see the module documentation for the accepted forms.
    pub fn parse(text: &str) -> Result<EpochMs, TimestampError> {
        parse_timestamp(text)
    }

    /// Formats as RFC 3339 UTC with milliseconds: `2026-11-24T03:00:09.512Z`.
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            year,
            month,
            day,
            ms_of_day / 3_600_000,
            (ms_of_day / 60_000) % 60,
            (ms_of_day / 1000) % 60,
            ms_of_day % 1000
        )
    }

    /// Whether the instant lies in the range opx accepts for event times.
    pub fn is_plausible_event_time(self) -> bool {
        (EVENT_TIME_MIN..=EVENT_TIME_MAX).contains(&self)
    }
}

impl fmt::Display for EpochMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn parse_timestamp(text: &str) -> Result<EpochMs, TimestampError> {
    let malformed = || TimestampError::Malformed(truncate_for_message(text));
    let out_of_range = || TimestampError::OutOfRange(truncate_for_message(text));
    let b = text.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return Err(malformed());
    }
    let digits = |from: usize, len: usize| -> Option<i64> {
        let slice = b.get(from..from + len)?;
        slice.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok {
        return Err(malformed());
    }
    let year = digits(0, 4).ok_or_else(malformed)?;
    let month = digits(5, 2).ok_or_else(malformed)?;
    let day = digits(8, 2).ok_or_else(malformed)?;
    let hour = digits(11, 2).ok_or_else(malformed)?;
    let minute = digits(14, 2).ok_or_else(malformed)?;
    let second = digits(17, 2).ok_or_else(malformed)?;

    let mut pos = 19;
    let mut millis = 0i64;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let fraction_len = pos - start;
        if fraction_len == 0 || fraction_len > 9 {
            return Err(malformed());
        }
        for i in 0..3 {
            millis *= 10;
            if i < fraction_len {
                millis += i64::from(b[start + i] - b'0');
            }
        }
    }
    let offset_minutes = match &b[pos..] {
        [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hours, minutes) = match rest {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    let two = |a: u8, b: u8| -> Option<i64> {
                        (a.is_ascii_digit() && b.is_ascii_digit())
                            .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
                    };
                    (
                        two(*h1, *h2).ok_or_else(malformed)?,
                        two(*m1, *m2).ok_or_else(malformed)?,
                    )
                }
                _ => return Err(malformed()),
            };
            if hours > 23 || minutes > 59 {
                return Err(out_of_range());
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err(malformed()),
    };
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(out_of_range());
    }
    // Second 60 (a leap second) is refused rather than folded: sources do not send it and
    // folding it would make two different texts the same instant.
    if hour > 23 || minute > 59 || second > 59 {
        return Err(out_of_range());
    }
    let days = days_from_civil(year, month, day);
    let ms = days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis
        - offset_minutes * 60_000;
    Ok(EpochMs(ms))
}

fn truncate_for_message(text: &str) -> String {
    text.chars().take(64).collect()
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_forms_sources_send() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-11-24T03:00:09.512+0000", 1_795_489_209_512),
            ("2026-11-24T03:00:09.512Z", 1_795_489_209_512),
            ("2026-11-24T04:00:09.512+01:00", 1_795_489_209_512),
            ("2026-11-24T02:00:09.512-0100", 1_795_489_209_512),
            ("2026-11-24T03:00:09.512999999Z", 1_795_489_209_512),
            ("2026-11-24T03:00:09.5Z", 1_795_489_209_500),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000),
        ];
        for (text, expected) in cases {
            assert_eq!(EpochMs::parse(text), Ok(EpochMs(expected)), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_and_impossible_times() {
        for text in [
            "",
            "2026-11-24",
            "2026-11-24T03:00:09",
            "2026-11-24T03:00:09.Z",
            "2026-11-24T03:00:09.5123456789Z",
            "2026-11-24T03:00:09+000",
            "2026-11-24T03:00:09 UTC",
            "2026/11/24T03:00:09Z",
            "２026-11-24T03:00:09Z",
        ] {
            assert!(
                matches!(EpochMs::parse(text), Err(TimestampError::Malformed(_))),
                "{text}"
            );
        }
        for text in [
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T23:60:00Z",
            "2026-11-24T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "2026-11-24T00:00:00+2400",
        ] {
            assert!(
                matches!(EpochMs::parse(text), Err(TimestampError::OutOfRange(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn alertmanager_zero_time_parses_but_is_not_plausible() {
        let zero = EpochMs::parse("0001-01-01T00:00:00Z").expect("parses");
        assert!(!zero.is_plausible_event_time());
    }

    proptest! {
        #[test]
        fn formatting_round_trips(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            let text = EpochMs(ms).to_rfc3339();
            prop_assert_eq!(EpochMs::parse(&text), Ok(EpochMs(ms)));
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,48}") {
            let _ = EpochMs::parse(&text);
        }
    }
}
