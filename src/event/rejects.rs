//! The rejects file's line format, written when an event is not delivered and
//! read back when the file is sent again: the original event with a note under
//! `_segrelay`, or, for text that never was an event, the note with its bytes.

use serde_json::{Map, Value, json};

use crate::event::reason::Reason;

/// The key of segrelay's note in a rejects-file line.
pub(crate) const NOTE_KEY: &str = "_segrelay";

/// What the note says of an event: how it ended, why, and where it came from.
pub(crate) fn note(outcome: &str, reason: &Reason, source: &str, line: u64) -> Value {
    let mut note = json!({
        "outcome": outcome,
        "reason": reason.kind,
        "source": source,
        "line": line,
    });
    if !reason.detail.is_empty() {
        note["detail"] = Value::String(reason.detail.clone());
    }
    note
}

/// The line for an event: `original` (a JSON object's text) with the note
/// beside its own keys, first.
pub(crate) fn event_line(note: Value, original: &str) -> String {
    let mut fields: Map<String, Value> = Map::with_capacity(1);
    fields.insert(NOTE_KEY.to_owned(), note);
    let mut line = serde_json::to_string(&fields).expect("a JSON map always serialises");
    if original.len() > 2 {
        line.pop();
        line.push(',');
        line.push_str(&original[1..]);
    }
    line
}

/// The line for text that is no event: the note holds its bytes, exactly: as
/// text when they are UTF-8, else as numbers (a JSON string cannot hold them).
pub(crate) fn raw_line(mut note: Value, raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => note["raw"] = Value::String(text.to_owned()),
        Err(_) => note["raw_bytes"] = Value::Array(raw.iter().map(|&b| Value::from(b)).collect()),
    }
    json!({ NOTE_KEY: note }).to_string()
}

/// The bytes a note keeps of a line that was no event, to read it again as it was.
pub(crate) fn raw_of(note: &Map<String, Value>) -> Option<Vec<u8>> {
    if let Some(Value::String(text)) = note.get("raw") {
        return Some(text.clone().into_bytes());
    }
    let Some(Value::Array(bytes)) = note.get("raw_bytes") else {
        return None;
    };
    bytes
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect()
}
