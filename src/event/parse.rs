//! Lines to events, parsed whole: a single event, or the items of a batch envelope.

use serde_json::Value;

use super::id::inexact_id;
use super::{Event, Origin, json_kind};
use crate::reason::Reason;
use crate::rejects;

/// What a line could not become, with the text to keep in the rejects file.
#[derive(Debug)]
pub struct BadLine {
    pub origin: Origin,
    pub reason: Reason,
    /// The line's bytes as read (they may not be UTF-8).
    pub raw: Vec<u8>,
}

/// Turns one input line into events: a single event, or the items of a
/// `{"batch":[...]}` envelope. Every item yields exactly one `Ok` or `Err`.
pub fn parse_line(line: &[u8], origin: &Origin, mut each: impl FnMut(Result<Event, BadLine>)) {
    let bad = |reason: Reason| BadLine {
        origin: *origin,
        reason,
        raw: line.to_vec(),
    };
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => {
            each(Err(bad(Reason::new("invalid JSON", e.to_string()))));
            return;
        }
    };
    let Value::Object(mut fields) = value else {
        let kind = json_kind(&value);
        each(Err(bad(Reason::new(
            "not a JSON object",
            format!("the line is {kind}"),
        ))));
        return;
    };
    let noted = match fields.remove(rejects::NOTE_KEY) {
        // A line from a rejects file that held no JSON object: replay its raw bytes.
        Some(Value::Object(note)) if fields.is_empty() && rejects::raw_of(&note).is_some() => {
            let raw = rejects::raw_of(&note).unwrap_or_default();
            parse_line(&raw, origin, each);
            return;
        }
        Some(_) => true,
        None => false,
    };
    // A rejects file line is one event, even one with a `batch` key of its own.
    let batch = if noted { None } else { fields.remove("batch") };
    let Some(batch) = batch else {
        let event = Event::from_map(fields, *origin);
        if let Some(reason) = inexact_id(&event) {
            each(Err(bad(reason)));
            return;
        }
        each(Ok(event));
        return;
    };
    let Value::Array(items) = batch else {
        let kind = json_kind(&batch);
        each(Err(bad(Reason::new(
            "invalid batch",
            format!("\"batch\" is {kind}, not an array"),
        ))));
        return;
    };
    let envelope_context = fields.get("context");
    let envelope_integrations = fields.get("integrations");
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            let kind = json_kind(&item);
            each(Err(BadLine {
                origin: *origin,
                reason: Reason::new("not a JSON object", format!("batch item {index} is {kind}")),
                raw: item.to_string().into_bytes(),
            }));
            continue;
        };
        item.remove(rejects::NOTE_KEY);
        if let Some(reason) = inexact_id(&Event::from_map(item.clone(), *origin)) {
            each(Err(BadLine {
                origin: *origin,
                reason,
                raw: Value::Object(item).to_string().into_bytes(),
            }));
            continue;
        }
        for (key, value) in [
            ("context", envelope_context),
            ("integrations", envelope_integrations),
        ] {
            if let Some(value) = value
                && matches!(item.get(key), None | Some(Value::Null))
            {
                item.insert(key.to_owned(), value.clone());
            }
        }
        each(Ok(Event::from_map(item, *origin)));
    }
}

/// Tells whether a line may hold a word (lowercase ASCII letters) in a key or
/// a string: as it is, or with letters written as escapes (`\u0069dentify`),
/// the only way JSON escapes a letter. A line that cannot is read past
/// unparsed when only such lines matter.
pub struct Mention {
    word: memchr::memmem::Finder<'static>,
}

impl Mention {
    pub fn new(word: &str) -> Mention {
        debug_assert!(word.bytes().all(|b| b.is_ascii_lowercase()));
        Mention {
            word: memchr::memmem::Finder::new(word.as_bytes()).into_owned(),
        }
    }

    pub fn in_line(&self, line: &[u8]) -> bool {
        self.word.find(line).is_some() || escapes_a_lowercase_letter(line)
    }
}

/// A lowercase letter's escape is `\u0061` to `\u007a` (hex digits in any case).
fn escapes_a_lowercase_letter(line: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', line)
        .any(|i| line[i + 1..].starts_with(b"u00") && matches!(line.get(i + 4), Some(b'6' | b'7')))
}

/// Whether a line may be more than one event: only a `batch` envelope is
/// (a rejects-file line is one event, and one that held no object keeps its
/// text as it was, with the same words in it).
pub fn may_hold_several(line: &[u8]) -> bool {
    static BATCH: std::sync::LazyLock<Mention> = std::sync::LazyLock::new(|| Mention::new("batch"));
    BATCH.in_line(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing::parse;
    use serde_json::json;

    #[test]
    fn envelopes_fill_in_context_and_integrations_where_missing() {
        let out = parse(
            r#"{"batch":[{"type":"track"},{"type":"page","context":{"own":1}},3],"context":{"env":1},"integrations":{"All":false}}"#,
        );
        assert_eq!(out.len(), 3);
        let first = out[0].as_ref().unwrap();
        assert_eq!(first.fields()["context"], json!({"env": 1}));
        assert_eq!(first.fields()["integrations"], json!({"All": false}));
        assert_eq!(
            out[1].as_ref().unwrap().fields()["context"],
            json!({"own": 1})
        );
        assert_eq!(
            out[2].as_ref().unwrap_err().reason.kind,
            "not a JSON object"
        );
    }

    #[test]
    fn bad_lines_say_why() {
        assert_eq!(
            parse("{").pop().unwrap().unwrap_err().reason.kind,
            "invalid JSON"
        );
        assert_eq!(
            parse("[1]").pop().unwrap().unwrap_err().reason.kind,
            "not a JSON object"
        );
        assert_eq!(
            parse(r#"{"batch":{}}"#)
                .pop()
                .unwrap()
                .unwrap_err()
                .reason
                .kind,
            "invalid batch"
        );
    }

    #[test]
    fn replayed_rejects_lose_their_note() {
        let out = parse(r#"{"type":"track","_segrelay":{"reason":"x"}}"#);
        assert!(
            !out[0]
                .as_ref()
                .unwrap()
                .fields()
                .contains_key(rejects::NOTE_KEY)
        );
        let out = parse(r#"{"_segrelay":{"reason":"invalid JSON","raw":"{\"type\":\"page\"}"}}"#);
        assert_eq!(
            out[0].as_ref().unwrap().call_type().as_deref(),
            Some("page")
        );
    }

    #[test]
    fn notes_never_double_and_noted_lines_are_single_events() {
        let out = parse(r#"{"batch":[{"type":"track","_segrelay":null}]}"#);
        assert!(
            !out[0]
                .as_ref()
                .unwrap()
                .fields()
                .contains_key(rejects::NOTE_KEY)
        );
        let out = parse(r#"{"_segrelay":{"reason":"x"},"type":"track","batch":[1,2]}"#);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap().fields()["batch"], json!([1, 2]));
    }

    #[test]
    fn a_line_that_cannot_mention_a_word_is_told_apart() {
        let identify = br#"{"type":"identify","userId":"u"}"#;
        let escaped = br#"{"type":"\u0069dentify","userId":"u"}"#;
        let upper_hex = br#"{"type":"id\u0065ntif\u0079","userId":"u"}"#;
        let track = br#"{"type":"track","event":"Identity checked","name":"\u00e9"}"#;
        let mention = Mention::new("identify");
        assert!(mention.in_line(identify));
        assert!(mention.in_line(escaped));
        assert!(mention.in_line(upper_hex));
        assert!(!mention.in_line(track));
        assert!(!mention.in_line(br#"{"a":"\\","b":"\u00e9\u0041\"}"#));
        for line in [&identify[..], escaped, upper_hex] {
            let out = parse(std::str::from_utf8(line).unwrap());
            assert_eq!(out[0].as_ref().unwrap().call_type().unwrap(), "identify");
        }
    }

    /// `--limit` counts the lines that cannot be envelopes as one event each.
    #[test]
    fn only_a_line_that_may_mention_batch_is_several_events() {
        for (line, events) in [
            (r#"{"batch":[{"type":"track"},{"type":"page"}]}"#, 2),
            (r#"{"b\u0061tch":[{"type":"track"},{"type":"page"}]}"#, 2),
            (r#"{"_segrelay":{"raw":"{\"batch\":[1,2]}"}}"#, 2),
        ] {
            assert!(may_hold_several(line.as_bytes()), "{line}");
            assert_eq!(parse(line).len(), events, "{line}");
        }
        for line in [
            r#"{"type":"track","messageId":"m"}"#,
            r#"not json"#,
            r#"[1,2,3]"#,
            r#"{"_segrelay":{"raw":"[1,2]"}}"#,
        ] {
            assert!(!may_hold_several(line.as_bytes()), "{line}");
            assert_eq!(parse(line).len(), 1, "{line}");
        }
    }
}
