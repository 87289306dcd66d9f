//! The rate curve and the schedule of arrivals it implies.

use std::time::Duration;

use voucherd_load::curve::{RateCurve, Schedule, parse_duration};

fn curve(text: &str) -> RateCurve {
    text.parse().unwrap()
}

#[test]
fn a_ramp_then_a_plateau_integrates_to_its_area() {
    let ramp = curve("0:0,5:20000,60:20000");
    assert_eq!(ramp.arrivals_until(5.0), 50_000.0);
    assert_eq!(ramp.arrivals_until(60.0), 1_150_000.0);
    assert_eq!(ramp.rate_at(2.5), 10_000.0);
    assert_eq!(ramp.rate_at(100.0), 20_000.0);
}

#[test]
fn arrival_times_invert_the_area() {
    for text in [
        "0:0,5:20000,60:20000",
        "0:100",
        "0:1000,10:0",
        "0:10,2:50,4:50",
    ] {
        let curve = curve(text);
        for count in [1.0, 7.0, 100.0, 149.0] {
            let at = curve.time_of(count).unwrap();
            let area = curve.arrivals_until(at);
            assert!((area - count).abs() < 1e-6, "{text}: {count} at {at}");
        }
    }
}

#[test]
fn a_curve_that_falls_to_zero_ends_its_arrivals() {
    let falling = curve("0:1000,10:0");
    assert_eq!(falling.arrivals_until(100.0), 5_000.0);
    assert!(falling.time_of(5_001.0).is_none());
}

#[test]
fn a_schedule_is_capped_by_users_and_spaced_by_the_rate() {
    let schedule = Schedule::new(RateCurve::constant(100.0), Duration::from_secs(3), None);
    assert_eq!(schedule.arrivals, 300);
    assert_eq!(schedule.due(0), Duration::from_millis(10));
    assert_eq!(schedule.due(299), Duration::from_secs(3));
    let capped = Schedule::new(RateCurve::constant(100.0), Duration::from_secs(3), Some(50));
    assert_eq!(capped.arrivals, 50);
}

#[test]
fn bad_curves_and_durations_are_refused() {
    for text in ["", "1:5", "0:5,0:6", "0:-1", "0:x", "a:1"] {
        assert!(text.parse::<RateCurve>().is_err(), "{text:?}");
    }
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn a_curve_prints_as_it_is_read() {
    assert_eq!(curve("0:0,5:20000").to_string(), "0:0,5:20000");
}
