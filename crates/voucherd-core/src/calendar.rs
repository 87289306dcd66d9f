//! Calendar days in a tenant's time zone, which is what "one coupon per user
//! per day" counts in.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// The calendar day that `now` falls on in `zone`.
pub fn day_in_zone(now: Timestamp, zone: &TimeZone) -> Date {
    zone.to_datetime(now).date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_follows_the_zone_not_utc() {
        let bangkok = TimeZone::fixed(jiff::tz::offset(7));
        let late_utc: Timestamp = "2026-12-01T18:30:00Z".parse().unwrap();
        assert_eq!(
            day_in_zone(late_utc, &TimeZone::UTC).to_string(),
            "2026-12-01"
        );
        assert_eq!(day_in_zone(late_utc, &bangkok).to_string(), "2026-12-02");
    }
}
