//! The command line's strings, parsed or refused with a message that says
//! what was expected.

use std::fmt::Debug;

use voucherd_gateway_sim::SimulatorConfig;
use voucherd_gateway_sim::config::{
    ConfigError, parse_latency_ms, parse_probability, parse_rate_per_second,
};

fn check<T: PartialEq + Debug>(parsed: Result<T, ConfigError>, expected: Result<T, &str>) {
    match (parsed, expected) {
        (Ok(parsed), Ok(expected)) => assert_eq!(parsed, expected),
        (Err(error), Err(fragment)) => {
            let message = error.to_string();
            assert!(
                message.contains(fragment),
                "{message:?} should mention {fragment:?}"
            );
        }
        (parsed, expected) => panic!("parsed {parsed:?}, expected {expected:?}"),
    }
}

#[test]
fn latency_ranges_parse() {
    check(parse_latency_ms("20..200"), Ok(20..=200));
    check(parse_latency_ms("20..=200"), Ok(20..=200));
    check(parse_latency_ms(" 5 .. 5 "), Ok(5..=5));
    check(parse_latency_ms("50"), Ok(50..=50));
    check(parse_latency_ms("0..0"), Ok(0..=0));
    check(parse_latency_ms("200..20"), Err("MIN <= MAX"));
    check(parse_latency_ms("20..x"), Err("\"20..x\""));
    check(parse_latency_ms("-1..5"), Err("MIN..MAX"));
    check(parse_latency_ms("..5"), Err("MIN..MAX"));
    check(parse_latency_ms("0..600001"), Err("600000"));
}

#[test]
fn probabilities_and_rates_parse() {
    check(parse_probability("0.02"), Ok(0.02));
    check(parse_probability("0"), Ok(0.0));
    check(parse_probability("1"), Ok(1.0));
    check(parse_probability("1.01"), Err("between 0 and 1"));
    check(parse_probability("-0.1"), Err("between 0 and 1"));
    check(parse_probability("NaN"), Err("between 0 and 1"));
    check(parse_probability("two percent"), Err("\"two percent\""));
    check(parse_rate_per_second("100"), Ok(100));
    check(parse_rate_per_second("0"), Err("at least 1"));
    check(parse_rate_per_second("1.5"), Err("whole number"));
}

#[test]
fn a_configuration_is_validated_whole() {
    assert_eq!(SimulatorConfig::default().validate(), Ok(()));
    let refused = |config: SimulatorConfig| config.validate().expect_err("refused").to_string();
    let default = SimulatorConfig::default;
    assert!(
        refused(SimulatorConfig {
            rate_per_second: 0,
            ..default()
        })
        .contains("rate")
    );
    assert!(
        refused(SimulatorConfig {
            timeout_rate: f64::NAN,
            ..default()
        })
        .contains("timeout_rate")
    );
    assert!(
        refused(SimulatorConfig {
            decline_rate: -1.0,
            ..default()
        })
        .contains("decline_rate")
    );
    #[allow(
        clippy::reversed_empty_ranges,
        reason = "the empty range is the case under test"
    )]
    let backwards = 9..=1;
    assert!(
        refused(SimulatorConfig {
            latency_ms: backwards,
            ..default()
        })
        .contains("latency")
    );
    assert!(
        refused(SimulatorConfig {
            in_flight_max: 0,
            ..default()
        })
        .contains("in_flight_max")
    );
}
