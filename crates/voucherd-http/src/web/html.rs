//! Writing HTML safely: every text from a tenant, a customer or the store
//! passes [`escape`] before it is written into a page; money and times are
//! shown in the campaign's currency and the tenant's time zone.

use std::fmt::Write as _;

use voucherd_core::money::Money;
use voucherd_core::{TimeZone, Timestamp};

/// Escapes text for an element's content and for a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Money in minor units with two decimals, its symbol before it: `฿150.00`,
/// `Rp 150,000`; the decimals are left out when they are zero for the
/// currencies whose prices are whole (IDR).
pub fn money(money: Money) -> String {
    let code = money.currency.to_string();
    let whole = money.amount / 100;
    let cents = money.amount % 100;
    let grouped = count(whole.unsigned_abs());
    let (symbol, whole_only) = match code.as_str() {
        "THB" => ("฿".to_owned(), false),
        "IDR" => ("Rp ".to_owned(), true),
        "USD" => ("$".to_owned(), false),
        "EUR" => ("€".to_owned(), false),
        other => (format!("{other} "), false),
    };
    if whole_only && cents == 0 {
        format!("{symbol}{grouped}")
    } else {
        format!("{symbol}{grouped}.{cents:02}")
    }
}

/// A moment as the tenant's calendar shows it, with the zone named.
pub fn time(at: Timestamp, zone: &TimeZone) -> String {
    let local = zone.to_datetime(at);
    let name = zone.iana_name().unwrap_or("UTC");
    let mut text = String::new();
    let _ = write!(
        text,
        "{:04}-{:02}-{:02} {:02}:{:02} ({name})",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute()
    );
    text
}

/// A count with thousands separators.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use voucherd_core::money::Currency;

    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn money_is_shown_in_its_currency() {
        let of = |amount, code| Money::new(amount, Currency::parse(code).unwrap()).unwrap();
        assert_eq!(money(of(15_000, "THB")), "฿150.00");
        assert_eq!(money(of(123_456_789, "THB")), "฿1,234,567.89");
        assert_eq!(money(of(15_000_000, "IDR")), "Rp 150,000");
        assert_eq!(money(of(5, "CHF")), "CHF 0.05");
    }

    #[test]
    fn times_are_shown_in_the_tenant_zone() {
        let at: Timestamp = "2026-12-01T05:00:00Z".parse().unwrap();
        let bangkok = TimeZone::get("Asia/Bangkok").unwrap();
        assert_eq!(time(at, &bangkok), "2026-12-01 12:00 (Asia/Bangkok)");
    }

    #[test]
    fn counts_are_grouped() {
        assert_eq!(count(0), "0");
        assert_eq!(count(612), "612");
        assert_eq!(count(20_000), "20,000");
        assert_eq!(count(1_000_000), "1,000,000");
    }
}
