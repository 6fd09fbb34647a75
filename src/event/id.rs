//! Ids as text: what counts as an id, numbers as their exact decimal text, and
//! the id an event without a `messageId` gets from its content.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Event;
use crate::event::reason::Reason;

/// An id as text: a string that is not blank, as it is, or a number's decimal text.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !is_blank(s) => Some(s.clone()),
        Value::Number(n) => decimal_text(n),
        _ => None,
    }
}

/// Empty or white space only: no id, though a string. An id of spaces would
/// bill a customer nobody can name.
pub(super) fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

/// A number written as text exactly as JSON writes one (`"12.5"`, `"-3"`,
/// `"2e3"`), and finite; None for anything else: white space around it, `+1`,
/// `01`, `1.`, `.5`, `NaN`, `inf`, `1,250`, `1e400`. What Amberflo's meter value
/// and Orb's `numeric_properties` take as a number.
pub fn numeric_text(text: &str) -> Option<serde_json::Number> {
    let bytes = text.as_bytes();
    // serde_json checks the grammar and the range, but takes white space around the number.
    let starts = bytes
        .first()
        .is_some_and(|b| *b == b'-' || b.is_ascii_digit());
    let ends = bytes.last().is_some_and(u8::is_ascii_digit);
    if !(starts && ends) {
        return None;
    }
    // Numbers keep their text (serde_json's `arbitrary_precision`), so the range is checked here.
    serde_json::from_str::<serde_json::Number>(text)
        .ok()
        .filter(|n| n.as_f64().is_some_and(f64::is_finite))
}

/// `12345`, `12.5`, and `1e3` as `1000`: never an exponent. None for a
/// whole number too large to have been read exactly (beyond 64 bits, or a
/// float past 2^53): its last digits may be gone, and two ids could become one.
fn decimal_text(n: &serde_json::Number) -> Option<String> {
    if n.is_i64() || n.is_u64() {
        return Some(n.to_string());
    }
    let f = n.as_f64()?;
    if f.fract() != 0.0 {
        return Some(f.to_string());
    }
    (f.abs() < MAX_EXACT_FLOAT).then(|| format!("{f:.0}"))
}

/// 2^53: whole numbers from here on are not all representable as f64.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// The ids every destination may use, when one is a number segrelay cannot
/// keep exactly: the event is refused rather than sent under a rounded id.
pub(super) fn inexact_id(event: &Event) -> Option<Reason> {
    for key in ["userId", "anonymousId", "messageId"] {
        // Only a number can be inexact; a line's string needs no parsing to tell.
        if event.is_string(key) {
            continue;
        }
        if let Some(value) = event.get(key)
            && let Value::Number(n) = &*value
            && decimal_text(n).is_none()
        {
            return Some(Reason::new(
                "id not exact",
                format!("{key} {n} is a number too large to keep exactly; send ids as strings"),
            ));
        }
    }
    None
}

/// A hash of an event's keys. serde_json's map is ordered by key (the
/// `preserve_order` feature is off), so the same event always serialises the
/// same way, whatever the key order of the input line. Numbers are hashed as
/// 64-bit integers or doubles, as they were read before numbers kept their
/// text, so that an event's id stays the one earlier runs gave it.
pub(super) fn content_id(fields: &Map<String, Value>) -> String {
    let fields = Value::Object(fields.clone());
    let bytes =
        serde_json::to_vec(&numbers_as_before(fields)).expect("a JSON value always serialises");
    let digest = Sha256::digest(&bytes);
    let mut id = String::with_capacity(9 + 32);
    id.push_str("segrelay-");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

fn numbers_as_before(value: Value) -> Value {
    match value {
        Value::Number(n) => Value::Number(number_as_before(&n)),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_before).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, numbers_as_before(value)))
                .collect(),
        ),
        other => other,
    }
}

/// A number as serde_json read it without `arbitrary_precision`: an integer
/// when it is one in the 64-bit range (`-0` aside, a double), else a double.
fn number_as_before(n: &serde_json::Number) -> serde_json::Number {
    let text = n.as_str();
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(u) = text.parse::<u64>() {
            return u.into();
        }
        if let Ok(i) = text.parse::<i64>()
            && i != 0
        {
            return i.into();
        }
    }
    n.as_f64()
        .and_then(serde_json::Number::from_f64)
        .unwrap_or_else(|| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BadLine;
    use crate::event::testing::{event, parse};
    use serde_json::json;

    #[test]
    fn ids_are_text_and_empty_strings_are_absent() {
        let e = event(json!({"userId": "", "anonymousId": 12345, "context": {"groupId": "g1"}}));
        assert_eq!(e.id_at("userId"), None);
        assert_eq!(e.id_at("anonymousId").as_deref(), Some("12345"));
        assert_eq!(e.id_at("context.groupId").as_deref(), Some("g1"));
        assert_eq!(e.id_at("context.missing"), None);
    }

    #[test]
    fn fallback_message_id_is_stable_and_ignores_key_order() {
        let a = parse(
            r#"{"type":"track","event":"x","userId":"u","timestamp":"2021-01-01T00:00:00Z"}"#,
        );
        let b = parse(
            r#"{"userId":"u","timestamp":"2021-01-01T00:00:00Z","event":"x","type":"track"}"#,
        );
        let c = parse(
            r#"{"userId":"u","timestamp":"2021-01-01T00:00:01Z","event":"x","type":"track"}"#,
        );
        let id = |r: &[Result<Event, BadLine>]| r[0].as_ref().unwrap().message_id();
        assert_eq!(id(&a), id(&b));
        assert_ne!(id(&a), id(&c));
        assert!(id(&a).starts_with("segrelay-") && id(&a).len() == 41);
    }

    #[test]
    fn ids_too_large_to_keep_exactly_are_refused() {
        let out = parse(r#"{"type":"track","userId":18500000000000000001}"#);
        assert_eq!(out[0].as_ref().unwrap_err().reason.kind, "id not exact");
        let out = parse(
            r#"{"batch":[{"messageId":123456789012345678901234567890},{"userId":18446744073709551615}]}"#,
        );
        assert_eq!(out[0].as_ref().unwrap_err().reason.kind, "id not exact");
        assert_eq!(
            out[1].as_ref().unwrap().id_at("userId").as_deref(),
            Some("18446744073709551615")
        );
        // In a configured field it is simply not a usable id.
        assert_eq!(id_text(&json!(1e300)), None);
    }

    /// Numbers are hashed as they were read before they kept their text: the
    /// id of an event without a messageId is the one earlier versions gave it.
    #[test]
    fn fallback_message_id_hashes_numbers_as_before() {
        for (kept, before) in [
            ("1.50", "1.5"),
            ("1E3", "1000.0"),
            ("-0", "-0.0"),
            ("7", "7"),
            ("-7", "-7"),
            ("18446744073709551615", "18446744073709551615"),
            ("123456789012345678901234567890", "1.2345678901234568e29"),
        ] {
            let id = |n: &str| {
                let line = format!(r#"{{"type":"track","userId":"u","properties":{{"n":{n}}}}}"#);
                parse(&line)[0].as_ref().unwrap().message_id()
            };
            assert_eq!(id(kept), id(before), "{kept}");
        }
        // The id of one such event, as the version before computed it.
        let line = r#"{"type":"track","event":"e","userId":"u","timestamp":"2024-05-01T10:00:00Z","properties":{"n":1.50,"m":1E3,"z":-0,"h":123456789012345678901234567890}}"#;
        assert_eq!(
            parse(line)[0].as_ref().unwrap().message_id(),
            "segrelay-93cde84cd13a8e0c68795b9f9ee49369"
        );
    }

    #[test]
    fn blank_ids_are_absent_and_others_kept_as_they_are() {
        let e = event(json!({"userId": "  ", "anonymousId": " a 1 ", "messageId": "\t\n"}));
        assert_eq!(e.id_at("userId"), None);
        assert_eq!(e.id_at("anonymousId").as_deref(), Some(" a 1 "));
        assert!(e.message_id().starts_with("segrelay-"));
        assert_eq!(id_text(&json!(" ")), None);
        assert_eq!(id_text(&json!(" x")).as_deref(), Some(" x"));
    }

    #[test]
    fn numeric_text_is_a_json_number_written_as_text() {
        for (text, number) in [
            ("12.5", 12.5),
            ("-3", -3.0),
            ("2e3", 2000.0),
            ("-0", 0.0),
            ("1.5E+3", 1500.0),
            ("0", 0.0),
            ("0.25", 0.25),
            ("1e-400", 0.0),
            ("123456789012345678901234567890", 1.2345678901234568e29),
        ] {
            let parsed = numeric_text(text).unwrap_or_else(|| panic!("{text:?} refused"));
            assert_eq!(parsed.as_f64(), Some(number), "{text:?}");
        }
        assert_eq!(numeric_text("-3").unwrap().to_string(), "-3");
        for text in [
            "", " 3 ", "3 ", " 3", "+1", "01", "-01", "1.", ".5", "-", "1e", "1e+", "NaN", "inf",
            "-inf", "Infinity", "1,250", "1_000", "abc", "0x10", "1e400", "-1e400", "١", "3\n",
        ] {
            assert_eq!(numeric_text(text), None, "{text:?}");
        }
    }

    #[test]
    fn numeric_ids_are_decimal_text() {
        for (value, text) in [
            (json!(12345), "12345"),
            (json!(-7), "-7"),
            (json!(1e3), "1000"),
            (json!(12.5), "12.5"),
            (json!(1e-7), "0.0000001"),
        ] {
            assert_eq!(id_text(&value).as_deref(), Some(text), "{value}");
        }
    }
}
