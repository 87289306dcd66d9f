//! The run's chart as a hand-written SVG: throughput per second above,
//! the primary operation's p50 and p99 latency per second below, on one
//! time axis.

use std::fmt::Write;

use crate::outcome::{Outcome, SecondRecord};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 640.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 180.0;
const PANEL_HEIGHT: f64 = 220.0;
const THROUGHPUT_TOP: f64 = 60.0;
const LATENCY_TOP: f64 = 360.0;
const Y_TICKS: u32 = 5;

struct Line<'a> {
    label: &'a str,
    colour: &'a str,
    /// `None` leaves a gap (a second without the value).
    values: Vec<Option<f64>>,
}

/// The SVG document for an outcome.
pub fn render(outcome: &Outcome) -> String {
    let series = &outcome.series;
    let seconds = series.len().max(1) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="28" font-size="16" font-weight="bold">{}</text>"#,
        escape(&format!(
            "voucherd-load {} (run {}): verdict {}",
            outcome.scenario,
            outcome.run_id,
            if outcome.verdict.passed {
                "passed"
            } else {
                "FAILED"
            }
        ))
    );
    let count = |field: fn(&SecondRecord) -> u64| -> Vec<Option<f64>> {
        series
            .iter()
            .map(|second| Some(field(second) as f64))
            .collect()
    };
    let primary = outcome.throughput.primary.as_str();
    panel(
        &mut svg,
        THROUGHPUT_TOP,
        seconds,
        "answers per second",
        &[
            Line {
                label: "all requests",
                colour: "#999999",
                values: count(|second| second.requests),
            },
            Line {
                label: primary,
                colour: "#1f77b4",
                values: count(|second| second.primary),
            },
            Line {
                label: "successes",
                colour: "#2ca02c",
                values: count(|second| second.successes),
            },
            Line {
                label: "refused + errors",
                colour: "#d62728",
                values: count(|second| second.refused + second.errors),
            },
        ],
    );
    panel(
        &mut svg,
        LATENCY_TOP,
        seconds,
        &format!("{primary} latency, ms"),
        &[
            Line {
                label: "p50",
                colour: "#1f77b4",
                values: series.iter().map(|second| second.p50_ms).collect(),
            },
            Line {
                label: "p99",
                colour: "#ff7f0e",
                values: series.iter().map(|second| second.p99_ms).collect(),
            },
        ],
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since the start</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        LATENCY_TOP + PANEL_HEIGHT + 40.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, top: f64, seconds: f64, title: &str, lines: &[Line<'_>]) {
    let width = WIDTH - LEFT - RIGHT;
    let peak = lines
        .iter()
        .flat_map(|line| line.values.iter().flatten())
        .fold(0.0_f64, |peak, value| peak.max(*value));
    let top_value = nice_ceiling(peak);
    let x = |second: f64| LEFT + second / seconds * width;
    let y = |value: f64| top + PANEL_HEIGHT - value / top_value * PANEL_HEIGHT;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 10.0,
        escape(title)
    );
    for tick in 0..=Y_TICKS {
        let value = top_value * f64::from(tick) / f64::from(Y_TICKS);
        let at = y(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + width,
            LEFT - 6.0,
            at + 4.0,
            label(value)
        );
    }
    let step = nice_ceiling(seconds / 10.0).max(1.0);
    let mut second = 0.0;
    while second <= seconds {
        let at = x(second);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{}" x2="{at:.1}" y2="{:.1}" stroke="#444444"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + PANEL_HEIGHT,
            top + PANEL_HEIGHT + 5.0,
            top + PANEL_HEIGHT + 18.0,
            label(second)
        );
        second += step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{top}" width="{width}" height="{PANEL_HEIGHT}" fill="none" stroke="#444444"/>"##
    );
    for (index, line) in lines.iter().enumerate() {
        // Each second's value is drawn at the middle of its second.
        let mut path = String::new();
        let mut pen_down = false;
        for (second, value) in line.values.iter().enumerate() {
            match value {
                Some(value) => {
                    let command = if pen_down { 'L' } else { 'M' };
                    let _ = write!(
                        path,
                        "{command}{:.1},{:.1} ",
                        x(second as f64 + 0.5),
                        y(*value)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = writeln!(
            svg,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6"/>"#,
            path.trim_end(),
            line.colour
        );
        let legend_y = top + 14.0 + index as f64 * 18.0;
        let legend_x = LEFT + width + 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            legend_x + 18.0,
            line.colour,
            legend_x + 24.0,
            legend_y + 4.0,
            escape(line.label)
        );
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn label(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{}k", (value / 1_000.0).round())
    } else if value.fract() == 0.0 {
        format!("{value}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
