//! Numbers as the events wrote them. serde_json keeps each number's own text
//! (its `arbitrary_precision` feature), so a number goes out with the digits
//! it came with; what is checked here is whether a destination that reads it
//! as a 64-bit float (a double) would still have the same value.

use std::borrow::Cow;

use serde::{Serialize, Serializer};
use serde_json::{Map, Number, Value};

use super::Kind;
use crate::event::reason::Reason;

/// The first property (at any depth) whose number a double cannot hold at
/// all, as the reason to reject its event: sent, it would become infinite or
/// zero where it is read as a double, or fail the whole request.
pub fn out_of_range(properties: &Map<String, Value>, kind: Kind) -> Option<Reason> {
    properties.iter().find_map(|(key, value)| {
        let (path, n) = first_beyond_double(value)?;
        Some(out_of_range_reason(&joined(key, &path), n, kind))
    })
}

/// Why a property's number is refused; `path` is below `properties`.
pub fn out_of_range_reason(path: &str, n: &Number, kind: Kind) -> Reason {
    Reason::new(
        "number out of range",
        format!(
            "properties.{path} is {n}, beyond what a double holds ({} would read it as {}); send it as a string",
            kind.display_name(),
            if n.as_f64().is_some_and(|f| f == 0.0) {
                "0"
            } else {
                "infinite"
            }
        ),
    )
}

/// A number as it goes out. One a double holds exactly is written as before
/// numbers kept their text (integers as they are, others as the shortest
/// text of their double: `100.00` as `100.0`, `1.5e3` as `1500.0`), so that
/// ordinary numbers, and the requests and keys made from them, stay what
/// they were; any other keeps its own digits.
fn outgoing(n: &Number) -> Cow<'_, Number> {
    let text = n.as_str();
    let integer = !text.contains(['.', 'e', 'E']);
    // `-0` was read as a double (`-0.0`).
    if integer && text != "-0" {
        return Cow::Borrowed(n);
    }
    // The usual decimal is already its double's shortest text.
    if plain_decimal(text).is_some_and(|shortest| shortest.len() == text.len()) {
        return Cow::Borrowed(n);
    }
    match n.as_f64() {
        Some(double) if double_keeps(n) => {
            Number::from_f64(double).map_or(Cow::Borrowed(n), Cow::Owned)
        }
        _ => Cow::Borrowed(n),
    }
}

/// A number's text as it goes out (see [`outgoing`]), without a round
/// through a double for the usual decimals.
pub fn outgoing_text(n: &Number) -> Cow<'_, str> {
    let text = n.as_str();
    match plain_decimal(text) {
        Some(shortest) => Cow::Borrowed(shortest),
        None => match outgoing(n) {
            Cow::Borrowed(n) => Cow::Borrowed(n.as_str()),
            Cow::Owned(n) => Cow::Owned(n.to_string()),
        },
    }
}

/// The text a double's shortest form gives for a decimal such as `35.804`
/// or `100.00` (without an exponent, at most 15 significant digits, at least
/// 1e-5): the decimal without the zeros that end its fraction, one kept
/// after the point (`100.0`). A double holds such a decimal exactly and no
/// shorter one reads back as the same double. None for any other text.
fn plain_decimal(text: &str) -> Option<&str> {
    let (whole, fraction) = text.split_once('.')?;
    let digits = whole.strip_prefix('-').unwrap_or(whole);
    if text.len() > 16
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return None;
    }
    // Below 1e-5 the shortest form has an exponent (`1.2e-6`).
    if digits == "0" && fraction.bytes().take_while(|&b| b == b'0').count() >= 5 {
        return None;
    }
    let significant = digits.trim_start_matches('0').len() + fraction.len();
    if significant > 15 {
        return None;
    }
    let kept = fraction.trim_end_matches('0').len().max(1);
    Some(&text[..whole.len() + 1 + kept])
}

/// A JSON value whose numbers are written as they go out (see [`outgoing`]).
pub struct Outgoing<'a>(pub &'a Value);

impl Serialize for Outgoing<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Number(n) => outgoing(n).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Outgoing(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    out.serialize_entry(key, &Outgoing(value))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// Whether a double holds this number's value exactly as written: `0.1`,
/// `12.50` and `1e3` yes (read back, a double gives the same decimal value),
/// `123456789012345678901234567890`, `9007199254740993` and
/// `0.10000000000000000001` no (a double rounds them), `1e400` and `1e-400`
/// no (a double makes them infinite or zero).
pub fn double_keeps(n: &Number) -> bool {
    let text = n.as_str();
    // Up to 15 significant digits and no exponent: always held (DBL_DIG).
    if text.len() <= 16 && !text.contains(['e', 'E']) {
        let digits = text.bytes().filter(u8::is_ascii_digit);
        if digits.skip_while(|&b| b == b'0').count() <= 15 {
            return true;
        }
    }
    let Some(double) = n.as_f64().filter(|f| f.is_finite()) else {
        return false;
    };
    // The shortest decimal that reads back as this double, compared by value.
    decimal(text) == decimal(&format!("{double:e}"))
}

/// Whether a double cannot hold this number at all: beyond its range (it
/// would be infinite) or so small it would be zero.
pub fn beyond_double(n: &Number) -> bool {
    let text = n.as_str();
    // Without an exponent, fewer than 300 characters are well within range.
    if text.len() < 300 && !text.contains(['e', 'E']) {
        return false;
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => f == 0.0 && decimal(text).is_some_and(|d| !d.digits.is_empty()),
        _ => true,
    }
}

/// The first number in a value (at any depth) that a double cannot hold at
/// all, with its dot path below the value.
fn first_beyond_double(value: &Value) -> Option<(String, &Number)> {
    match value {
        Value::Number(n) => beyond_double(n).then(|| (String::new(), n)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            first_beyond_double(item).map(|(path, n)| (joined(&i.to_string(), &path), n))
        }),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            first_beyond_double(item).map(|(path, n)| (joined(key, &path), n))
        }),
        _ => None,
    }
}

fn joined(key: &str, rest: &str) -> String {
    if rest.is_empty() {
        key.to_owned()
    } else {
        format!("{key}.{rest}")
    }
}

/// A decimal's value as its significant digits and a power of ten: `12.50`
/// and `1.25e1` are both `125` × 10^-1. Zero has no digits, whatever its sign.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

/// None for text that is not a decimal number (or an exponent beyond i64).
fn decimal(text: &str) -> Option<Decimal> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => {
            let exponent = rest[at + 1..].strip_prefix('+').unwrap_or(&rest[at + 1..]);
            (&rest[..at], exponent.parse::<i64>().ok()?)
        }
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let all: String = whole.chars().chain(fraction.chars()).collect();
    let exponent = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
    let significant = all.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    let exponent = exponent.checked_add(i64::try_from(significant.len() - trimmed.len()).ok()?)?;
    if trimmed.is_empty() {
        return Some(Decimal {
            negative: false,
            digits: String::new(),
            exponent: 0,
        });
    }
    Some(Decimal {
        negative,
        digits: trimmed.to_owned(),
        exponent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_keep_the_text_they_came_with() {
        for text in [
            "123456789012345678901234567890",
            "-9223372036854775809",
            "18446744073709551616",
            "0.1000000000000000055511151231257827",
            "12.50",
            "-0",
            "2.0",
        ] {
            assert_eq!(number(text).to_string(), text);
            let value: Value = serde_json::from_str(&format!("{{\"v\":{text}}}")).unwrap();
            assert_eq!(value.to_string(), format!("{{\"v\":{text}}}"));
        }
    }

    /// Ordinary numbers go out as before; the others with their own digits.
    #[test]
    fn numbers_go_out_as_before_unless_a_double_would_change_them() {
        for (text, out) in [
            ("7", "7"),
            ("-7", "-7"),
            ("2.0", "2.0"),
            ("100.00", "100.0"),
            ("1.5e3", "1500.0"),
            ("2E3", "2000.0"),
            ("1e20", "1e+20"),
            ("0.1", "0.1"),
            ("-0", "-0.0"),
            ("18446744073709551615", "18446744073709551615"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("-9223372036854775809", "-9223372036854775809"),
            ("0.10000000000000000001", "0.10000000000000000001"),
            ("1e400", "1e+400"),
        ] {
            assert_eq!(outgoing_text(&number(text)), out, "{text}");
        }
        let value: Value =
            serde_json::from_str(r#"{"a":[1.50,{"b":123456789012345678901234567890}],"c":"x"}"#)
                .unwrap();
        assert_eq!(
            serde_json::to_string(&Outgoing(&value)).unwrap(),
            r#"{"a":[1.5,{"b":123456789012345678901234567890}],"c":"x"}"#
        );
    }

    proptest::proptest! {
        /// The usual decimals' text is what the double's shortest form gives.
        #[test]
        fn plain_decimals_are_written_as_their_doubles_are(
            negative: bool,
            whole in 0u64..10_000_000,
            fraction in "[0-9]{1,8}",
        ) {
            let text = format!("{}{whole}.{fraction}", if negative { "-" } else { "" });
            let n = number(&text);
            let slow = match outgoing(&n) {
                Cow::Borrowed(n) => n.to_string(),
                Cow::Owned(n) => n.to_string(),
            };
            proptest::prop_assert_eq!(outgoing_text(&n).into_owned(), slow);
        }
    }

    #[test]
    fn a_double_keeps_what_it_can_hold_exactly() {
        for kept in [
            "0",
            "-0",
            "1",
            "2.0",
            "12.50",
            "0.1",
            "1e3",
            "1.5E+3",
            "-7.25e-3",
            "0.000001",
            "123456789012345",
            "9007199254740992",
            "1e300",
            "1.7976931348623157e308",
            "5e-324",
            "100000000000000000000",
        ] {
            assert!(double_keeps(&number(kept)), "{kept}");
        }
        for changed in [
            "123456789012345678901234567890",
            "9007199254740993",
            "-9223372036854775809",
            "0.10000000000000000001",
            "1e400",
            "-1e400",
            "1e-400",
            "3.14159265358979323846",
        ] {
            assert!(!double_keeps(&number(changed)), "{changed}");
        }
    }

    #[test]
    fn numbers_beyond_a_double_are_found_at_any_depth() {
        for beyond in ["1e400", "-1e400", "1e-400", "1E309"] {
            assert!(beyond_double(&number(beyond)), "{beyond}");
        }
        let long = "9".repeat(400);
        assert!(beyond_double(&number(&long)));
        for within in [
            "0e500",
            "0",
            "1e308",
            "123456789012345678901234567890",
            "5e-324",
        ] {
            assert!(!beyond_double(&number(within)), "{within}");
        }
        let value: Value =
            serde_json::from_str(r#"{"a":1,"b":{"c":[2,{"d":1e400}]},"e":1e-999}"#).unwrap();
        let (path, n) = first_beyond_double(&value).unwrap();
        assert_eq!(
            (path.as_str(), n.to_string().as_str()),
            ("b.c.1.d", "1e+400")
        );
        assert_eq!(first_beyond_double(&json!({"a": [1, 2.5, "x"]})), None);
    }

    #[test]
    fn decimals_compare_by_value() {
        assert_eq!(decimal("12.50"), decimal("1.25e1"));
        assert_eq!(decimal("-0"), decimal("0.000"));
        assert_eq!(decimal("1000"), decimal("1e3"));
        assert_ne!(decimal("1000"), decimal("-1e3"));
        assert_eq!(decimal("1e99999999999999999999"), None);
    }
}
