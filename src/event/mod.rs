//! The Segment event model: an event's values by key or dot path, its ids and
//! the integrations selector. Lines become events in `parse` (whole) and `lazy`
//! (only what translation reads, the rest read from the line when asked for).

pub(crate) mod reason;

mod id;
mod lazy;
mod notes;
mod parse;
mod path;
pub(crate) mod rejects;
pub mod time;

use std::borrow::Cow;
use std::cell::Cell;

use serde_json::{Map, Value};

pub use id::numeric_text;
pub use lazy::{Wanted, parse_line_wanted};
pub use notes::{Notes, Tally};
pub use parse::{BadLine, Mention, may_hold_several, parse_line};
pub use path::{lookup, remove_path};

use id::{content_id, id_text, is_blank};
use lazy::{Line, PathKeys};
use path::{descend, descend_text, string_of};

/// Where an event came from: the input as the user named it, and the 1-based line.
/// It is copied for every event on several threads, so the label is an interned
/// `&'static str`: a shared reference count would be touched by all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub source: &'static str,
    pub line: u64,
}

/// An input's label for the rest of the process: one copy per distinct label.
pub fn intern(label: &str) -> &'static str {
    static LABELS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut labels = LABELS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = labels.iter().find(|known| **known == label) {
        return known;
    }
    let label: &'static str = Box::leak(label.into());
    labels.push(label);
    label
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// One Segment message, with a batch envelope's context and integrations
/// already merged in.
#[derive(Debug, Clone)]
pub struct Event {
    pub origin: Origin,
    body: Body,
    /// What reading its time found (`time::event_time` notes it), for the
    /// warnings at the end of the run.
    notes: Cell<Notes>,
}

// `Line`, the large variant, is what nearly every event is: boxing it would
// cost an allocation per event to make the rare others smaller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Body {
    /// Parsed whole: envelope items, rejects-file lines, events without an id.
    Whole(Map<String, Value>),
    /// A plain line's wanted keys, built at once, and the line for the others.
    Built {
        fields: Map<String, Value>,
        line: Box<str>,
        path_keys: &'static PathKeys,
    },
    /// A plain line, kept as text with where its wanted values lie in it.
    Line(Line),
}

/// A top-level value: built, or its JSON text in the line.
enum TopLevel<'a> {
    Built(&'a Value),
    Text(&'a str),
}

impl Event {
    pub fn from_map(fields: Map<String, Value>, origin: Origin) -> Event {
        Event {
            origin,
            body: Body::Whole(fields),
            notes: Cell::default(),
        }
    }

    /// The event's keys as a map: all of them when it was parsed whole, else
    /// the wanted ones (`get` reads any key).
    pub fn fields(&self) -> &Map<String, Value> {
        match &self.body {
            Body::Whole(fields) | Body::Built { fields, .. } => fields,
            Body::Line(line) => line.fields(),
        }
    }

    /// A top-level value, as built or as text, whichever the event holds.
    fn top_level(&self, key: &str) -> Option<TopLevel<'_>> {
        match &self.body {
            Body::Whole(fields) => fields.get(key).map(TopLevel::Built),
            Body::Built {
                fields,
                line,
                path_keys,
            } => match fields.get(key) {
                Some(value) => Some(TopLevel::Built(value)),
                None => path_keys.unwanted(line, key).map(TopLevel::Text),
            },
            Body::Line(line) => line.top_level(key),
        }
    }

    /// The call type: `track`, `page`, `screen`, `identify`, ... Segment's
    /// spec writes them in lower case; one written in another case (`Track`)
    /// is the same call, read as its lower-case form, so that translation,
    /// `--types` and the skip reasons all see one spelling.
    pub fn call_type(&self) -> Option<Cow<'_, str>> {
        let call = self.str_at("type")?;
        if !call.bytes().any(|b| b.is_ascii_uppercase()) {
            return Some(call);
        }
        Some(Cow::Owned(call.to_ascii_lowercase()))
    }

    /// A top-level string, borrowed from the line when it has no escapes.
    pub fn str_at(&self, key: &str) -> Option<Cow<'_, str>> {
        match self.top_level(key)? {
            TopLevel::Built(value) => value.as_str().map(Cow::Borrowed),
            TopLevel::Text(raw) => string_of(raw),
        }
    }

    /// A value by dot path into the whole event (`properties.customerId`).
    pub fn get(&self, path: &str) -> Option<Cow<'_, Value>> {
        match path.split_once('.') {
            Some((key, rest)) => self.get_in(key, Some(rest)),
            None => self.get_in(path, None),
        }
    }

    /// A top-level value, or a value by dot path inside it.
    pub fn get_in(&self, key: &str, path: Option<&str>) -> Option<Cow<'_, Value>> {
        let segments = path.into_iter().flat_map(|path| path.split('.'));
        let mut raw = match self.top_level(key)? {
            TopLevel::Built(value) => return descend(value, segments).map(Cow::Borrowed),
            TopLevel::Text(raw) => raw,
        };
        let mut segments = segments.peekable();
        // `properties`' members were noted as the line was read: no need to read it again.
        if let (Body::Line(line), "properties", Some(first)) = (&self.body, key, segments.peek()) {
            raw = line.property(first)?;
            segments.next();
        }
        descend_text(raw, segments).map(Cow::Owned)
    }

    /// Whether a top-level value is a JSON object.
    pub fn is_object(&self, key: &str) -> bool {
        match self.top_level(key) {
            Some(TopLevel::Built(value)) => value.is_object(),
            Some(TopLevel::Text(raw)) => raw.starts_with('{'),
            None => false,
        }
    }

    /// Whether a top-level value is a JSON string, known without building it.
    fn is_string(&self, key: &str) -> bool {
        match self.top_level(key) {
            Some(TopLevel::Built(value)) => value.is_string(),
            Some(TopLevel::Text(raw)) => raw.starts_with('"'),
            None => false,
        }
    }

    /// An id by dot path, as text: strings as they are, numbers as decimal text;
    /// blank strings (empty or white space only) and other types count as absent.
    pub fn id_at(&self, path: &str) -> Option<String> {
        // A top-level string needs no Value (`str_at` borrows it from the line).
        if !path.contains('.')
            && let Some(text) = self.str_at(path)
        {
            return (!is_blank(&text)).then(|| text.into_owned());
        }
        self.get(path).and_then(|value| id_text(&value))
    }

    /// `messageId`, else an id derived from the event's content, stable across runs.
    pub fn message_id(&self) -> String {
        self.id_at("messageId")
            .unwrap_or_else(|| content_id(self.fields()))
    }

    /// Segment's integrations selector: a destination's own key wins; otherwise
    /// `All` decides, and it defaults to true.
    pub fn enabled_for(&self, display_name: &str) -> bool {
        let integrations = self.get("integrations");
        let Some(Value::Object(integrations)) = integrations.as_deref() else {
            return true;
        };
        match integrations.get(display_name) {
            Some(value) => !matches!(value, Value::Bool(false) | Value::Null),
            None => integrations.get("All") != Some(&Value::Bool(false)),
        }
    }

    /// What reading the event's time found.
    pub fn notes(&self) -> Notes {
        self.notes.get()
    }

    fn note(&self, notes: Notes) {
        self.notes.set(self.notes.get().with(notes));
    }

    /// The event's `properties` object (empty when absent or not an object).
    pub fn properties(&self) -> &Map<String, Value> {
        match &self.body {
            Body::Line(line) => line.properties(),
            _ => object_or_empty(self.fields().get("properties")),
        }
    }

    /// The JSON text of the event's `properties` when the event is kept as
    /// its line (an object then); None otherwise: `properties` gives them.
    pub fn properties_text(&self) -> Option<&str> {
        match &self.body {
            Body::Line(line) => line.properties_text(),
            _ => None,
        }
    }

    /// The JSON text of the event's `traits` when the event is kept as its
    /// line (any JSON value: `traits` reads an object alone); None otherwise.
    pub fn traits_text(&self) -> Option<&str> {
        match &self.body {
            Body::Line(line) => line.traits_text(),
            _ => None,
        }
    }

    /// The event's `traits` object (empty when absent or not an object).
    pub fn traits(&self) -> &Map<String, Value> {
        match &self.body {
            Body::Line(line) => line.traits(),
            _ => object_or_empty(self.fields().get("traits")),
        }
    }

    /// The event as a JSON line, for the rejects file.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self.fields()).expect("a JSON map always serialises")
    }

    /// The line the event was read from, when it is the whole event as it is.
    /// (Boxed otherwise: events without a line are few, and an event is large.)
    pub fn into_line(self) -> Result<Box<str>, Box<Event>> {
        match self.body {
            Body::Line(line) => Ok(line.into_text()),
            Body::Built { line, .. } => Ok(line),
            Body::Whole(_) => Err(Box::new(self)),
        }
    }
}

fn object_or_empty(value: Option<&Value>) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match value {
        Some(Value::Object(map)) => map,
        _ => EMPTY.get_or_init(Map::new),
    }
}

/// "a string", "an array", ... for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value for a message, cut so that a huge value cannot flood the terminal.
pub fn short_text(value: &Value) -> String {
    shortened(value.to_string())
}

/// `short_text` of a string, without making it a `Value` first.
pub fn short_str(text: &str) -> String {
    shortened(serde_json::to_string(text).expect("a string always serialises"))
}

fn shortened(mut text: String) -> String {
    if text.len() > 80 {
        let cut = (0..=77)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// What the tests of this module and its parts build events with.
#[cfg(test)]
mod testing {
    use super::{BadLine, Event, Origin, parse_line};
    use serde_json::Value;

    pub(super) fn origin() -> Origin {
        Origin {
            source: "t.ndjson",
            line: 7,
        }
    }

    /// An event parsed whole from a JSON object.
    pub(super) fn event(value: Value) -> Event {
        let Value::Object(fields) = value else {
            panic!("not an object")
        };
        Event::from_map(fields, origin())
    }

    /// A line's events, parsed whole.
    pub(super) fn parse(line: &str) -> Vec<Result<Event, BadLine>> {
        let mut out = Vec::new();
        parse_line(line.as_bytes(), &origin(), |r| out.push(r));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::event;
    use serde_json::json;

    #[test]
    fn integrations_selector_follows_segment_rules() {
        let cases = [
            (json!({}), true),
            (json!({"integrations": {}}), true),
            (json!({"integrations": {"All": false}}), false),
            (json!({"integrations": {"All": false, "Orb": true}}), true),
            (
                json!({"integrations": {"All": false, "Orb": {"opt": 1}}}),
                true,
            ),
            (json!({"integrations": {"All": true, "Orb": false}}), false),
            (json!({"integrations": {"Orb": null}}), false),
            (json!({"integrations": {"orb": false}}), true),
            (json!({"integrations": {"All": null}}), true),
        ];
        for (value, expected) in cases {
            assert_eq!(event(value.clone()).enabled_for("Orb"), expected, "{value}");
        }
    }
}
