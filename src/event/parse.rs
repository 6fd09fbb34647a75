//! Lines to events, parsed whole: a single event, or the items of a batch envelope.

use serde_json::{Map, Value};

use super::id::inexact_id;
use super::rejects;
use super::{Event, Origin, json_kind};
use crate::event::reason::Reason;

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
        for (key, envelope) in [
            ("context", envelope_context),
            ("integrations", envelope_integrations),
        ] {
            if let Some(envelope) = envelope {
                merge_envelope(&mut item, key, envelope);
            }
        }
        each(Ok(Event::from_map(item, *origin)));
    }
}

/// Merges an envelope's `context` or `integrations` into an item's, as
/// Segment's HTTP API does: key by key, the item's own keys winning. The
/// official libraries give every item a `context` (with `library`), and
/// Python an empty `integrations`, so filling only an absent object would
/// never apply the envelope's. The merge is of top-level keys only: an item's
/// `context.page` replaces the envelope's whole `context.page`, never mixing
/// two pages' fields into one that neither sent. An item whose value is not
/// an object (a string, say) keeps it; a null or absent one takes the envelope's.
fn merge_envelope(item: &mut Map<String, Value>, key: &str, envelope: &Value) {
    match (item.get_mut(key), envelope) {
        (None | Some(Value::Null), _) => {
            item.insert(key.to_owned(), envelope.clone());
        }
        (Some(Value::Object(own)), Value::Object(envelope)) => {
            for (name, value) in envelope {
                if !own.contains_key(name) {
                    own.insert(name.clone(), value.clone());
                }
            }
        }
        (Some(_), _) => {}
    }
}

/// Tells whether a line may hold a word (lowercase ASCII letters) in a key or
/// a string: as it is, or with letters written as escapes (`\u0069dentify`),
/// the only way JSON escapes a letter. A line that cannot is read past
/// unparsed when only such lines matter.
pub struct Mention {
    word: memchr::memmem::Finder<'static>,
    /// Any ASCII case (`Identify`, `IDENTIFY`) is the word too: call types.
    any_case: bool,
}

impl Mention {
    /// The word as it is written.
    pub fn new(word: &str) -> Mention {
        debug_assert!(word.bytes().all(|b| b.is_ascii_lowercase()));
        Mention {
            word: memchr::memmem::Finder::new(word.as_bytes()).into_owned(),
            any_case: false,
        }
    }

    /// The word in any ASCII case, as call types are read.
    pub fn in_any_case(word: &str) -> Mention {
        Mention {
            any_case: true,
            ..Mention::new(word)
        }
    }

    pub fn in_line(&self, line: &[u8]) -> bool {
        if !self.any_case {
            return self.word.find(line).is_some() || escapes_a_letter(line, b'6'..=b'7');
        }
        // Each place of the word's rarest letter, in either case, is looked at:
        // fewer places than of its first letter (`i` is everywhere in JSON).
        let word = self.word.needle();
        let (at, rare) = rarest_letter(word);
        memchr::memchr2_iter(rare, rare.to_ascii_uppercase(), line).any(|i| {
            i.checked_sub(at)
                .and_then(|start| line.get(start..start + word.len()))
                .is_some_and(|found| found.eq_ignore_ascii_case(word))
        }) || escapes_a_letter(line, b'4'..=b'7')
    }
}

/// The place and the letter of a word that is likely rarest in JSON lines:
/// English letter frequencies, with the hex digits `a` to `f` (ids, hashes)
/// counted as common.
fn rarest_letter(word: &[u8]) -> (usize, u8) {
    const COMMONEST_LAST: &[u8] = b"qzjxkvwygbpmhulcrnsotfdiea";
    let rank = |b: &u8| COMMONEST_LAST.iter().position(|c| c == b).unwrap_or(0);
    word.iter()
        .enumerate()
        .min_by_key(|(_, b)| rank(b))
        .map(|(i, b)| (i, *b))
        .expect("a word has letters")
}

/// Whether a line escapes a letter: a lowercase one is `\u0061` to `\u007a`,
/// an uppercase one `\u0041` to `\u005a` (hex digits in any case), told by
/// the escape's third digit (`high`).
fn escapes_a_letter(line: &[u8], high: std::ops::RangeInclusive<u8>) -> bool {
    memchr::memchr_iter(b'\\', line).any(|i| {
        line[i + 1..].starts_with(b"u00") && line.get(i + 4).is_some_and(|b| high.contains(b))
    })
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
    fn envelopes_merge_into_each_items_context_and_integrations() {
        let out = parse(
            r#"{"batch":[{"type":"track"},{"type":"page","context":{"own":1,"env":2,"page":{"url":"b"}},"integrations":{}},{"type":"screen","context":null,"integrations":"x"},3],"context":{"env":1,"groupId":"g","page":{"url":"a","title":"A"}},"integrations":{"All":false,"Orb":true}}"#,
        );
        assert_eq!(out.len(), 4);
        let first = out[0].as_ref().unwrap();
        assert_eq!(
            first.fields()["context"],
            json!({"env": 1, "groupId": "g", "page": {"url": "a", "title": "A"}})
        );
        assert_eq!(
            first.fields()["integrations"],
            json!({"All": false, "Orb": true})
        );
        // The item's own keys win, key by key; nested objects are not mixed.
        let second = out[1].as_ref().unwrap();
        assert_eq!(
            second.fields()["context"],
            json!({"own": 1, "env": 2, "groupId": "g", "page": {"url": "b"}})
        );
        assert_eq!(
            second.fields()["integrations"],
            json!({"All": false, "Orb": true})
        );
        assert_eq!(second.get("context.groupId").as_deref(), Some(&json!("g")));
        assert!(second.enabled_for("Orb") && !second.enabled_for("Kable"));
        let third = out[2].as_ref().unwrap();
        assert_eq!(third.fields()["context"]["groupId"], json!("g"));
        assert_eq!(third.fields()["integrations"], json!("x"));
        assert_eq!(
            out[3].as_ref().unwrap_err().reason.kind,
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
        let any_case = Mention::in_any_case("identify");
        for line in [
            &identify[..],
            escaped,
            upper_hex,
            br#"{"type":"Identify"}"#,
            br#"{"type":"IDENTIFY"}"#,
            br#"{"type":"\u0049dentify"}"#,
        ] {
            assert!(any_case.in_line(line), "{}", String::from_utf8_lossy(line));
        }
        assert!(!mention.in_line(br#"{"type":"Identify"}"#));
        assert!(!any_case.in_line(track));
        assert!(!any_case.in_line(br#"{"type":"identif"}"#));
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
