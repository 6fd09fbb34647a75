//! Event times: which field, which formats, and the UTC forms destinations want.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde_json::Value;

use crate::event::Notes;

/// Segment's own rule: a number below this is epoch seconds, anything larger epoch milliseconds.
const EPOCH_SECONDS_LIMIT: f64 = 31_557_600_000.0;

/// Why an event has no usable time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeError {
    Missing,
    Invalid {
        field: &'static str,
        text: String,
    },
    /// Amberflo needs `meterTimeInMillis` of at least 1; the epoch itself is what
    /// a zeroed or missing clock writes, not a time anything happened.
    NotAfterEpoch {
        field: &'static str,
        text: String,
    },
    /// Later than segrelay can hold (`Timestamp::MAX`, late on 9999-12-30),
    /// whether it is well formed or not: out of range, not malformed.
    TooLate {
        field: &'static str,
        text: String,
    },
}

impl std::fmt::Display for TimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeError::Missing => f.write_str("no timestamp, originalTimestamp or receivedAt"),
            TimeError::Invalid { field, text } => write!(f, "{field} {text} is not a valid time"),
            TimeError::NotAfterEpoch { field, text } => {
                write!(f, "{field} {text} is at or before 1970-01-01T00:00:00Z")
            }
            TimeError::TooLate { field, text } => write!(
                f,
                "{field} {text} is out of range: the latest time taken is {}",
                utc_millis_text(Timestamp::MAX)
            ),
        }
    }
}

/// The fields that may carry an event's time, in the order they are tried.
pub const TIME_FIELDS: [&str; 3] = ["timestamp", "originalTimestamp", "receivedAt"];

/// The first time field that is present (null and "" count as absent), parsed.
/// A present but unparsable field rejects the event rather than falling back silently.
pub fn event_time(event: &crate::event::Event) -> Result<Timestamp, TimeError> {
    for field in TIME_FIELDS {
        // Strings first: read from the line as they are, without a Value.
        let (time, offset) = match event.str_at(field) {
            Some(text) if text.is_empty() => continue,
            Some(text) => {
                let parsed = parse_iso_offset(&text);
                let beyond = beyond_range(&text);
                let time = checked(field, parsed.map(|(time, _)| time), beyond, || {
                    quoted(&text)
                })?;
                (time, parsed.map_or(Offset::Given, |(_, offset)| offset))
            }
            None => match event.get(field).as_deref() {
                None | Some(Value::Null) => continue,
                Some(value) => parse_time(field, value)?,
            },
        };
        note(event, field, offset);
        return Ok(time);
    }
    Err(TimeError::Missing)
}

/// Notes on the event what the end of the run says about its time: a time
/// without an offset, and one from the device's clock (no `receivedAt`: the
/// line was not written by Segment, which corrects the client's clock on
/// receipt). The correction itself, `receivedAt - (sentAt - originalTimestamp)`,
/// needs the time of receipt; `sentAt` alone is the same client clock as
/// `originalTimestamp`, so without `receivedAt` nothing can be corrected.
fn note(event: &crate::event::Event, field: &str, offset: Offset) {
    let mut notes = Notes::default();
    if offset == Offset::AssumedUtc {
        notes = notes.with(Notes::NO_OFFSET);
    }
    if field != "receivedAt" && !has_received_at(event) {
        notes = notes.with(Notes::CLIENT_CLOCK);
    }
    if notes != Notes::default() {
        event.note(notes);
    }
}

/// Whether Segment stamped the event on receipt (null and "" count as absent).
fn has_received_at(event: &crate::event::Event) -> bool {
    use crate::event::TopLevel;
    match event.top_level("receivedAt") {
        None => false,
        Some(TopLevel::Built(value)) => !matches!(value, Value::Null) && value != "",
        // JSON text: `""` is the only way to write an empty string without escapes.
        Some(TopLevel::Text(raw)) => raw != "null" && raw != "\"\"",
    }
}

/// A time from a value that is not a plain string: a number (epoch time,
/// UTC by definition), or a string with escapes.
fn parse_time(field: &'static str, value: &Value) -> Result<(Timestamp, Offset), TimeError> {
    let parsed = match value {
        Value::String(s) => parse_iso_offset(s),
        Value::Number(n) => n
            .as_f64()
            .and_then(from_epoch_number)
            .map(|time| (time, Offset::Given)),
        _ => None,
    };
    let beyond = match value {
        Value::String(s) => beyond_range(s),
        Value::Number(n) => n.as_f64().is_some_and(|n| {
            let millis = if n.abs() < EPOCH_SECONDS_LIMIT {
                n * 1000.0
            } else {
                n
            };
            millis > Timestamp::MAX.as_millisecond() as f64
        }),
        _ => false,
    };
    let time = checked(field, parsed.map(|(time, _)| time), beyond, || {
        crate::event::short_text(value)
    })?;
    Ok((time, parsed.map_or(Offset::Given, |(_, offset)| offset)))
}

fn quoted(text: &str) -> String {
    crate::event::short_text(&Value::String(text.to_owned()))
}

/// Whether a text that did not parse is a well-formed time past what a time
/// can hold (`9999-12-31`, `10000-01-01`): out of range rather than malformed.
/// Well formed: the same text in the year 2000 (a leap year) is read.
fn beyond_range(text: &str) -> bool {
    let text = text.trim().trim_start_matches('+');
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    digits >= 4
        && text[..digits].parse::<u64>().is_ok_and(|year| year >= 9999)
        && parse_iso_offset(&format!("2000{}", &text[digits..])).is_some()
}

/// A parsed time within the range segrelay takes, or why not; `beyond`: the
/// text, unparsed, is later than a time can hold.
fn checked(
    field: &'static str,
    parsed: Option<Timestamp>,
    beyond: bool,
    shown: impl FnOnce() -> String,
) -> Result<Timestamp, TimeError> {
    let Some(time) = parsed else {
        return Err(match beyond {
            true => TimeError::TooLate {
                field,
                text: shown(),
            },
            false => TimeError::Invalid {
                field,
                text: shown(),
            },
        });
    };
    if time <= Timestamp::UNIX_EPOCH {
        return Err(TimeError::NotAfterEpoch {
            field,
            text: shown(),
        });
    }
    if time.as_second() >= 253_402_300_800 {
        return Err(TimeError::TooLate {
            field,
            text: shown(),
        });
    }
    Ok(time)
}

fn from_epoch_number(n: f64) -> Option<Timestamp> {
    if !n.is_finite() {
        return None;
    }
    // Like JavaScript's Date, keep whole milliseconds and truncate the rest.
    let millis = if n.abs() < EPOCH_SECONDS_LIMIT {
        (n * 1000.0).trunc()
    } else {
        n.trunc()
    };
    if millis.abs() > 1e17 {
        return None;
    }
    Timestamp::from_millisecond(millis as i64).ok()
}

/// ISO 8601 as seen in real Segment data. jiff does the parsing; this only
/// first tolerates what strict RFC 3339 refuses: unpadded date and time
/// fields, more than nine fractional digits, and a missing offset (UTC).
pub fn parse_iso(text: &str) -> Option<Timestamp> {
    parse_iso_offset(text).map(|(time, _)| time)
}

/// Whether a time said its offset, or was read as UTC for want of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Given,
    AssumedUtc,
}

/// `parse_iso`, saying whether the text had an offset.
pub fn parse_iso_offset(text: &str) -> Option<(Timestamp, Offset)> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some((t, Offset::Given));
    }
    let normalised = normalise(text)?;
    if let Ok(t) = normalised.parse::<Timestamp>() {
        return Some((t, Offset::Given));
    }
    // No offset at all: Segment's servers and archives are in UTC, and a
    // time without one is read as UTC (the run counts such times and says so).
    let civil: DateTime = normalised.parse().ok()?;
    let time = TimeZone::UTC.to_timestamp(civil).ok()?;
    Some((time, Offset::AssumedUtc))
}

/// Pads `2015-2-2T0:30:12` to `2015-02-02T00:30:12` and cuts fractions to nine digits.
fn normalise(text: &str) -> Option<String> {
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut out = String::with_capacity(text.len() + 4);
    let mut parts = date.split('-');
    let year = parts.next()?;
    out.push_str(year);
    for part in parts.by_ref().take(2) {
        push_padded(&mut out, '-', part)?;
    }
    if parts.next().is_some() {
        return None;
    }
    let Some(rest) = rest else {
        return Some(out);
    };
    out.push('T');
    // The clock part ends where the fraction or the offset starts.
    let clock_end = rest
        .find(['.', ',', 'Z', 'z', '+', '-'])
        .unwrap_or(rest.len());
    let (clock, mut tail) = rest.split_at(clock_end);
    for (i, part) in clock.split(':').enumerate() {
        push_padded(&mut out, if i == 0 { '\0' } else { ':' }, part)?;
    }
    if let Some(fraction) = tail.strip_prefix(['.', ',']) {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        out.push('.');
        out.push_str(&fraction[..digits.min(9)]);
        tail = &fraction[digits..];
    }
    out.push_str(tail);
    Some(out)
}

fn push_padded(out: &mut String, separator: char, part: &str) -> Option<()> {
    if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if separator != '\0' {
        out.push(separator);
    }
    if part.len() == 1 {
        out.push('0');
    }
    out.push_str(part);
    Some(())
}

/// Orb's and Kable's form: UTC, millisecond precision, `Z`. Written by hand, as
/// it runs for every event; event times are within years 1970 to 9999.
pub fn utc_millis_text(time: Timestamp) -> String {
    let at = TimeZone::UTC.to_datetime(time);
    let millis = at.subsec_nanosecond() / 1_000_000;
    let mut out = String::with_capacity(24);
    let mut push = |value: i32, width: usize, after: char| {
        let value = value.unsigned_abs();
        for place in (0..width).rev() {
            let digit = (value / 10u32.pow(place as u32)) % 10;
            out.push(char::from(b'0' + digit as u8));
        }
        out.push(after);
    };
    push(i32::from(at.year()), 4, '-');
    push(i32::from(at.month()), 2, '-');
    push(i32::from(at.day()), 2, 'T');
    push(i32::from(at.hour()), 2, ':');
    push(i32::from(at.minute()), 2, ':');
    push(i32::from(at.second()), 2, '.');
    push(millis, 3, 'Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> crate::event::Event {
        let Value::Object(map) = value else {
            unreachable!()
        };
        let origin = crate::event::Origin {
            source: "t",
            line: 1,
        };
        crate::event::Event::from_map(map, origin)
    }

    fn millis(v: Value) -> Result<i64, TimeError> {
        event_time(&event(json!({ "timestamp": v }))).map(|t| t.as_millisecond())
    }

    #[test]
    fn accepts_the_formats_seen_in_segment_data() {
        let cases = [
            ("2021-04-26T14:01:46.909Z", 1_619_445_706_909),
            ("2021-04-26T14:01:46Z", 1_619_445_706_000),
            ("2021-04-26T16:01:46.909+02:00", 1_619_445_706_909),
            ("2021-04-26T07:01:46.909-0700", 1_619_445_706_909),
            ("2021-04-26T14:01:46.9095551234Z", 1_619_445_706_909),
            ("2021-04-26 14:01:46.909Z", 1_619_445_706_909),
            ("2021-4-26T14:01:46.909Z", 1_619_445_706_909),
            ("2021-04-26T14:01:46.909", 1_619_445_706_909),
            ("2015-2-02T00:30:12.984Z", 1_422_837_012_984),
        ];
        for (text, expected) in cases {
            assert_eq!(millis(json!(text)), Ok(expected), "{text}");
        }
    }

    #[test]
    fn numbers_are_seconds_below_the_limit_and_millis_above() {
        assert_eq!(millis(json!(1_619_445_706)), Ok(1_619_445_706_000));
        assert_eq!(millis(json!(1_619_445_706.5)), Ok(1_619_445_706_500));
        assert_eq!(millis(json!(1_619_445_706_909u64)), Ok(1_619_445_706_909));
        assert_eq!(millis(json!(31_557_599_999u64)), Ok(31_557_599_999_000));
        assert_eq!(millis(json!(31_557_600_000u64)), Ok(31_557_600_000));
    }

    #[test]
    fn falls_back_only_when_a_field_is_absent() {
        let e = event(
            json!({"timestamp": null, "originalTimestamp": "", "receivedAt": "2021-04-26T14:01:46.909Z"}),
        );
        assert_eq!(event_time(&e).unwrap().as_millisecond(), 1_619_445_706_909);
        let e = event(json!({"timestamp": "yesterday", "receivedAt": "2021-04-26T14:01:46.909Z"}));
        assert!(matches!(
            event_time(&e),
            Err(TimeError::Invalid {
                field: "timestamp",
                ..
            })
        ));
        assert_eq!(event_time(&event(json!({}))), Err(TimeError::Missing));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            json!("2021-13-01T00:00:00Z"),
            json!("not a date"),
            json!(true),
            json!({}),
            json!("1619445706909"),
            json!(-5),
        ] {
            assert!(millis(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_epoch_and_before_are_no_time() {
        for bad in [
            json!(0),
            json!(-0.0),
            json!("1970-01-01T00:00:00Z"),
            json!("1969-12-31T23:59:59.999Z"),
        ] {
            let error = millis(bad.clone()).unwrap_err();
            assert!(
                matches!(error, TimeError::NotAfterEpoch { .. }),
                "{bad}: {error:?}"
            );
            assert!(
                error
                    .to_string()
                    .contains("at or before 1970-01-01T00:00:00Z"),
                "{error}"
            );
        }
        assert_eq!(millis(json!("1970-01-01T00:00:00.001Z")), Ok(1));
        assert_eq!(millis(json!(0.001)), Ok(1));
        for late in [
            json!("10000-01-01T00:00:00Z"),
            json!("9999-12-31T23:59:59Z"),
            json!("+010000-01-01T00:00:00Z"),
            json!(253_402_300_800_000u64),
        ] {
            let error = millis(late.clone()).map_err(|e| e.to_string()).unwrap_err();
            assert!(
                error.ends_with(
                    "is out of range: the latest time taken is 9999-12-30T22:00:00.999Z"
                ),
                "{late}: {error}"
            );
        }
        assert_eq!(
            millis(json!("9999-12-30T22:00:00Z")),
            Ok(253_402_207_200_000)
        );
        assert!(matches!(
            event_time(&event(json!({ "timestamp": "9999-13-01T00:00:00Z" }))),
            Err(TimeError::Invalid { .. })
        ));
    }

    /// Reading a time notes what the end of the run says about it.
    #[test]
    fn reading_a_time_notes_the_senders_clock_and_a_missing_offset() {
        use crate::event::Notes;
        let none = Notes::default();
        let clock = Notes::CLIENT_CLOCK;
        let utc = Notes::NO_OFFSET;
        let cases = [
            (
                json!({"timestamp": "2026-01-05T10:00:00Z", "receivedAt": "2026-01-05T10:00:01Z"}),
                none,
            ),
            (json!({"timestamp": "2026-01-05T10:00:00Z"}), clock),
            (
                json!({"timestamp": "2026-01-05T10:00:00Z", "receivedAt": ""}),
                clock,
            ),
            (
                json!({"timestamp": "2026-01-05T10:00:00Z", "receivedAt": null}),
                clock,
            ),
            (
                json!({"originalTimestamp": "2026-01-05T10:00:00", "receivedAt": 1}),
                utc,
            ),
            (json!({"timestamp": "2026-01-05T10:00:00"}), clock.with(utc)),
            (
                json!({"timestamp": "2026-01-05 10:00:00.5+02:00", "receivedAt": "x"}),
                none,
            ),
            (json!({"timestamp": 1_767_607_200, "receivedAt": "x"}), none),
            (json!({"receivedAt": "2026-01-05T10:00:00"}), utc),
            (json!({"timestamp": "never"}), none),
        ];
        for (value, notes) in cases {
            let e = event(value.clone());
            let _ = event_time(&e);
            assert_eq!(e.notes(), notes, "{value}");
        }
        // Kept as its line, a time with escapes included.
        let origin = crate::event::Origin {
            source: "t",
            line: 1,
        };
        let wanted = crate::event::Wanted::with_paths([]);
        for (line, notes) in [
            (
                r#"{"messageId":"m","timestamp":"2026-01-05T1\u0030:00:00"}"#,
                clock.with(utc),
            ),
            (
                r#"{"messageId":"m","timestamp":"2026-01-05T10:00:00Z","receivedAt":"x"}"#,
                none,
            ),
            (
                r#"{"messageId":"m","timestamp":"2026-01-05T10:00:00Z","receivedAt":""}"#,
                clock,
            ),
        ] {
            let mut out = Vec::new();
            crate::event::parse_line_wanted(line.as_bytes(), &origin, &wanted, |r| out.push(r));
            let e = out.pop().unwrap().unwrap();
            event_time(&e).unwrap();
            assert_eq!(e.notes(), notes, "{line}");
        }
    }

    #[test]
    fn writes_utc_with_milliseconds() {
        let t = parse_iso("2022-05-11T23:33:13.1652304793+02:00").unwrap();
        assert_eq!(utc_millis_text(t), "2022-05-11T21:33:13.165Z");
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2026-12-31T23:59:59.999Z",
            "9999-01-02T03:04:05.006Z",
        ] {
            let t: Timestamp = text.parse().unwrap();
            assert_eq!(utc_millis_text(t), text);
            assert_eq!(
                utc_millis_text(t),
                t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            );
        }
    }
}
