//! Times in UTC for names and messages, from seconds since the Unix epoch (no time-zone data is
//! needed for UTC).

/// A time broken down in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// The year.
    pub year: i64,
    /// The month, 1 to 12.
    pub month: i64,
    /// The day of the month, 1 to 31.
    pub day: i64,
    /// The hour, 0 to 23.
    pub hour: u64,
    /// The minute, 0 to 59.
    pub minute: u64,
    /// The second, 0 to 59.
    pub second: u64,
}

impl Utc {
    /// The time `seconds` after 1970-01-01 00:00:00 UTC.
    pub fn from_unix(seconds: u64) -> Utc {
        let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
        // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc { year, month, day, hour: rest / 3600, minute: rest / 60 % 60, second: rest % 60 }
    }
}

#[cfg(test)]
mod tests {
    use super::Utc;

    #[test]
    fn dates_across_leap_years_and_centuries_are_right() {
        let at = |y, mo, d, h, mi, s| Utc { year: y, month: mo, day: d, hour: h, minute: mi, second: s };
        assert_eq!(Utc::from_unix(0), at(1970, 1, 1, 0, 0, 0));
        assert_eq!(Utc::from_unix(951_782_400), at(2000, 2, 29, 0, 0, 0));
        assert_eq!(Utc::from_unix(1_738_367_999), at(2025, 1, 31, 23, 59, 59));
        assert_eq!(Utc::from_unix(4_107_542_400), at(2100, 3, 1, 0, 0, 0));
    }
}
