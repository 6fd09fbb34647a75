//! The Segment event model: lines to events, ids, dot paths and the integrations selector.

pub mod time;

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::reason::Reason;
use crate::rejects;

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

/// One Segment message, with a batch envelope's context already filled in.
#[derive(Debug, Clone)]
pub struct Event {
    pub origin: Origin,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// Parsed: whole (envelope items, rejects-file lines, events without an id),
    /// or the wanted keys of a plain line, with the line.
    Map {
        fields: Map<String, Value>,
        line: Option<Box<str>>,
    },
    /// A plain line, kept as text with where each wanted top-level value lies in
    /// it. A value is parsed only when asked for: most events need a handful of
    /// small ones, and building every value was most of the time a run took.
    Line(Line),
}

#[derive(Debug, Clone)]
struct Line {
    text: Box<str>,
    /// Where the usual keys' values are (`ALWAYS_WANTED` order; (0, 0) when absent).
    usual: [(u32, u32); ALWAYS_WANTED.len()],
    /// The other wanted keys in line order (key, value); of a repeated key, the last counts.
    others: Vec<Member>,
    /// The members of `properties` in line order (key, value), noted as the line was
    /// read: translations read a few of them, and reading the object again cost more.
    properties: Vec<Member>,
    /// The wanted keys as a map, built the first time something needs it.
    fields: OnceLock<Map<String, Value>>,
}

/// Where an object member's key (without quotes) and value lie in a line.
type Member = ((u32, u32), (u32, u32));

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

/// The top-level keys translation may read. Parsing only these, and skipping
/// the rest (`context` above all) without building it, is most of segrelay's speed.
#[derive(Debug, Clone)]
pub struct Wanted {
    keys: Vec<String>,
    /// Build the wanted values at once, for a destination that reads whole
    /// objects (every property); else each is parsed when asked for.
    at_once: bool,
}

/// What every destination and filter reads.
const ALWAYS_WANTED: [&str; 12] = [
    "type",
    "event",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "receivedAt",
    "properties",
    "traits",
    "integrations",
    "name",
];

impl Wanted {
    /// The usual keys, and the first key of each dot path the settings name.
    pub fn with_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Wanted {
        let mut keys: Vec<String> = ALWAYS_WANTED.iter().map(|k| (*k).to_owned()).collect();
        for path in paths {
            let first = path.split('.').next().unwrap_or(path);
            if !keys.iter().any(|k| k == first) {
                keys.push(first.to_owned());
            }
        }
        Wanted {
            keys,
            at_once: false,
        }
    }

    /// What a destination reads: its paths, and whole objects or a few values.
    pub fn of(destination: &dyn crate::destination::Destination) -> Wanted {
        Wanted {
            at_once: destination.reads_whole_objects(),
            ..Wanted::with_paths(destination.paths())
        }
    }

    /// The same keys, built at once.
    #[cfg(test)]
    fn at_once(self) -> Wanted {
        Wanted {
            at_once: true,
            ..self
        }
    }

    /// What a top-level key of a plain line is to a partial parse.
    fn place(&self, key: &str) -> Place {
        if key == "batch" || key == rejects::NOTE_KEY {
            return Place::NeedsFullParse;
        }
        match usual_index(key) {
            Some(index) => Place::Usual(index),
            None if self.keys[ALWAYS_WANTED.len()..].iter().any(|k| k == key) => Place::Other,
            None => Place::Unread,
        }
    }
}

enum Place {
    /// An envelope or a rejects-file line: the full parser must see it.
    NeedsFullParse,
    /// One of `ALWAYS_WANTED`, at this index.
    Usual(usize),
    /// A key a settings path names.
    Other,
    /// Read past without building it.
    Unread,
}

/// `properties`' place in `ALWAYS_WANTED`.
const PROPERTIES: usize = 8;

/// A usual key's place in `ALWAYS_WANTED`, by a match (a jump on length, then
/// one comparison): this runs for every key of every line.
fn usual_index(key: &str) -> Option<usize> {
    Some(match key {
        "type" => 0,
        "event" => 1,
        "userId" => 2,
        "anonymousId" => 3,
        "messageId" => 4,
        "timestamp" => 5,
        "originalTimestamp" => 6,
        "receivedAt" => 7,
        "properties" => PROPERTIES,
        "traits" => 9,
        "integrations" => 10,
        "name" => 11,
        _ => return None,
    })
}

/// Like `parse_line`, but keeps a plain event as its line's text, with only the
/// wanted keys' places noted. Whatever needs the whole event goes the full way:
/// envelopes, rejects-file lines, an event without a usable `messageId` (its
/// fallback id hashes all of it), a wanted key written with escapes, and any
/// line that is not a valid JSON object (for the full parser's message).
pub fn parse_line_wanted(
    line: &[u8],
    origin: &Origin,
    wanted: &Wanted,
    mut each: impl FnMut(Result<Event, BadLine>),
) {
    if let Some(event) = partial(line, origin, wanted)
        && event
            .get("messageId")
            .is_some_and(|id| id_text(&id).is_some())
        && inexact_id(&event).is_none()
    {
        each(Ok(event));
        return;
    }
    parse_line(line, origin, each);
}

fn partial(line: &[u8], origin: &Origin, wanted: &Wanted) -> Option<Event> {
    let text = std::str::from_utf8(line).ok()?;
    if wanted.at_once {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let fields =
            serde::de::DeserializeSeed::deserialize(PartialMap { wanted }, &mut deserializer)
                .ok()??;
        deserializer.end().ok()?;
        return Some(Event {
            origin: *origin,
            body: Body::Map {
                fields,
                line: Some(text.into()),
            },
        });
    }
    // Offsets are kept in 32 bits; a line this long is refused by the reader anyway.
    u32::try_from(text.len()).ok()?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let (usual, others, properties) =
        serde::de::DeserializeSeed::deserialize(Partial { wanted, text }, &mut deserializer)
            .ok()??;
    deserializer.end().ok()?;
    Some(Event {
        origin: *origin,
        body: Body::Line(Line {
            text: text.into(),
            usual,
            others,
            properties,
            fields: OnceLock::new(),
        }),
    })
}

/// A top-level object's wanted members; None when it is one the full parser
/// must see (a `batch` or `_segrelay` key, a wanted key with escapes, a
/// `properties` that is not an object or has a key with escapes).
struct Partial<'w> {
    wanted: &'w Wanted,
    /// The line being parsed, to turn borrowed slices into offsets.
    text: &'w str,
}

/// Where a borrowed slice of `text` lies in it.
fn span(text: &str, part: &str) -> (u32, u32) {
    let start = part.as_ptr() as usize - text.as_ptr() as usize;
    // Lines are shorter than 4 GiB (checked before parsing).
    (start as u32, (start + part.len()) as u32)
}

/// The first byte at or after `at` that is not JSON white space.
fn skip_white_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// Where an object value lies, from its key (borrowed from `text`) and where its
/// last member's value ends: the grammar allows only white space, `:` and `{`
/// between the two, and white space and `}` after the last member. None if the
/// bytes are not what that says (they always are for a line that parsed).
fn object_span(text: &str, key: &str, last_value_end: Option<usize>) -> Option<(u32, u32)> {
    let bytes = text.as_bytes();
    let (_, key_end) = span(text, key);
    let colon = skip_white_space(bytes, key_end as usize + 1);
    (bytes.get(colon) == Some(&b':')).then_some(())?;
    let start = skip_white_space(bytes, colon + 1);
    (bytes.get(start) == Some(&b'{')).then_some(())?;
    let close = skip_white_space(bytes, last_value_end.unwrap_or(start + 1));
    (bytes.get(close) == Some(&b'}')).then_some(())?;
    Some((start as u32, close as u32 + 1))
}

/// The usual keys' value spans, the other wanted members, and `properties`' members.
type Members = ([(u32, u32); ALWAYS_WANTED.len()], Vec<Member>, Vec<Member>);

impl<'de> serde::de::DeserializeSeed<'de> for Partial<'_> {
    type Value = Option<Members>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Partial<'_> {
    type Value = Option<Members>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let text = self.text;
        let mut usual = [(0, 0); ALWAYS_WANTED.len()];
        let mut others = Vec::new();
        let mut properties = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let place = self.wanted.place(&key);
            match place {
                Place::NeedsFullParse => return Ok(None),
                Place::Unread => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                Place::Usual(_) | Place::Other => {}
            }
            let value = if let Place::Usual(PROPERTIES) = place {
                let (members, last_end) = map.next_value_seed(MemberPlaces { text })?;
                let Cow::Borrowed(key) = key else {
                    return Ok(None);
                };
                let Some(value) = object_span(text, key, last_end) else {
                    return Ok(None);
                };
                properties = members;
                &text[value.0 as usize..value.1 as usize]
            } else {
                map.next_value::<&serde_json::value::RawValue>()?.get()
            };
            // Skipping a value checks less than parsing it would: a wanted value must parse.
            if may_not_parse(value) && serde_json::from_str::<Valid>(value).is_err() {
                return Ok(None);
            }
            let value = span(text, value);
            match (place, key) {
                (Place::Usual(index), _) => usual[index] = value,
                (_, Cow::Borrowed(key)) => others.push((span(text, key), value)),
                // An escaped key has no span of its own in the line.
                (_, Cow::Owned(_)) => return Ok(None),
            }
        }
        Ok(Some((usual, others, properties)))
    }
}

/// An object's members (key, value) and where its last value ends. Anything but
/// an object, or a key with escapes (it has no span of its own in the line), is
/// an error: the full parser reads the line.
struct MemberPlaces<'t> {
    text: &'t str,
}

impl<'de> serde::de::DeserializeSeed<'de> for MemberPlaces<'_> {
    type Value = (Vec<Member>, Option<usize>);

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MemberPlaces<'_> {
    type Value = (Vec<Member>, Option<usize>);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Room for 16 members (serde_json gives no size hint): most properties fit at once.
        let mut members = Vec::with_capacity(16);
        let mut last_end = None;
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let value: &serde_json::value::RawValue = map.next_value()?;
            let Cow::Borrowed(key) = key else {
                return Err(serde::de::Error::custom("a key with escapes"));
            };
            let value = span(self.text, value.get());
            last_end = Some(value.1 as usize);
            members.push((span(self.text, key), value));
        }
        Ok((members, last_end))
    }
}

/// A top-level object with only the wanted keys built; None as for `Partial`.
struct PartialMap<'w> {
    wanted: &'w Wanted,
}

impl<'de> serde::de::DeserializeSeed<'de> for PartialMap<'_> {
    type Value = Option<Map<String, Value>>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PartialMap<'_> {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            match self.wanted.place(&key) {
                Place::NeedsFullParse => return Ok(None),
                Place::Unread => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Place::Usual(_) | Place::Other => {
                    let value: Value = map.next_value()?;
                    fields.insert(key.into_owned(), value);
                }
            }
        }
        Ok(Some(fields))
    }
}

/// Whether a value that was skipped might still be refused by a parse: only
/// an escape (a lone surrogate), an exponent or a long value (a number out of
/// range, nesting too deep) can make the difference; the line is known UTF-8.
/// A string can differ only by an escape (ids such as `3e0f...` look like exponents).
fn may_not_parse(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let has_escape = memchr::memchr(b'\\', bytes).is_some();
    if bytes.first() == Some(&b'"') {
        return has_escape;
    }
    has_escape
        || bytes.len() >= 256
        || memchr::memchr2_iter(b'e', b'E', bytes).any(|i| i > 0 && bytes[i - 1].is_ascii_digit())
}

/// Any JSON value a `serde_json::Value` can hold, checked the way parsing one
/// checks it, without building it.
struct Valid;

impl<'de> serde::Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Valid)
    }
}

impl<'de> serde::de::Visitor<'de> for Valid {
    type Value = Valid;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_str<E>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_unit<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_entry::<Key, Valid>()?.is_some() {}
        Ok(Valid)
    }
}

/// An object key, borrowed from the line when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl Event {
    pub fn from_map(fields: Map<String, Value>, origin: Origin) -> Event {
        Event {
            origin,
            body: Body::Map { fields, line: None },
        }
    }

    /// The event's keys as a map: all of them when it was parsed whole, else the wanted ones.
    pub fn fields(&self) -> &Map<String, Value> {
        match &self.body {
            Body::Map { fields, .. } => fields,
            Body::Line(line) => line.fields.get_or_init(|| {
                let parse = |span| {
                    serde_json::from_str(line.slice(span)).expect("a value the line's parse took")
                };
                let mut fields = Map::new();
                for (key, span) in ALWAYS_WANTED.iter().zip(line.usual) {
                    if span != (0, 0) {
                        fields.insert((*key).to_owned(), parse(span));
                    }
                }
                for (key, span) in &line.others {
                    fields.insert(line.slice(*key).to_owned(), parse(*span));
                }
                fields
            }),
        }
    }

    /// The JSON text of a top-level value, for an event kept as its line.
    fn raw(&self, key: &str) -> Option<&str> {
        let Body::Line(line) = &self.body else {
            return None;
        };
        let span = match usual_index(key) {
            Some(index) => line.usual[index],
            None => {
                line.others
                    .iter()
                    .rev()
                    .find(|(k, _)| line.slice(*k) == key)?
                    .1
            }
        };
        (span != (0, 0)).then(|| line.slice(span))
    }

    /// The call type: `track`, `page`, `screen`, `identify`, ...
    pub fn call_type(&self) -> Option<Cow<'_, str>> {
        self.str_at("type")
    }

    /// A top-level string, borrowed from the line when it has no escapes.
    pub fn str_at(&self, key: &str) -> Option<Cow<'_, str>> {
        match &self.body {
            Body::Map { fields, .. } => fields.get(key)?.as_str().map(Cow::Borrowed),
            Body::Line(_) => {
                let raw = self.raw(key)?;
                match plain_string(raw) {
                    Some(text) => Some(Cow::Borrowed(text)),
                    None => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
                }
            }
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
        let parsed = match &self.body {
            Body::Map { fields, .. } => Some(fields),
            Body::Line(line) => line.fields.get(),
        };
        if let Some(fields) = parsed {
            return descend(fields.get(key)?, segments).map(Cow::Borrowed);
        }
        let mut raw = self.raw(key)?;
        let mut segments = segments.peekable();
        if let (Body::Line(line), "properties", Some(first)) = (&self.body, key, segments.peek()) {
            raw = line.property(first)?;
            segments.next();
        }
        for segment in segments {
            raw = member_of(raw, segment)?;
        }
        value_of(raw).map(Cow::Owned)
    }

    /// Whether a top-level value is a JSON object.
    pub fn is_object(&self, key: &str) -> bool {
        match &self.body {
            Body::Map { fields, .. } => matches!(fields.get(key), Some(Value::Object(_))),
            Body::Line(_) => self.raw(key).is_some_and(|raw| raw.starts_with('{')),
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

    /// `userId`, else `anonymousId`.
    pub fn customer_id(&self) -> Option<String> {
        self.id_at("userId").or_else(|| self.id_at("anonymousId"))
    }

    /// `messageId`, else an id derived from the event's content, stable across runs.
    pub fn message_id(&self) -> String {
        self.id_at("messageId").unwrap_or_else(|| self.content_id())
    }

    /// A hash of the whole event. serde_json's map is ordered by key (the
    /// `preserve_order` feature is off), so the same event always serialises the
    /// same way, whatever the key order of the input line.
    pub fn content_id(&self) -> String {
        let bytes = serde_json::to_vec(self.fields()).expect("a JSON map always serialises");
        let digest = Sha256::digest(&bytes);
        let mut id = String::with_capacity(9 + 32);
        id.push_str("segrelay-");
        for byte in &digest[..16] {
            id.push_str(&format!("{byte:02x}"));
        }
        id
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

    /// The event's `properties` object (empty when absent or not an object).
    pub fn properties(&self) -> &Map<String, Value> {
        object_or_empty(self.fields().get("properties"))
    }

    /// The event's `traits` object (empty when absent or not an object).
    pub fn traits(&self) -> &Map<String, Value> {
        object_or_empty(self.fields().get("traits"))
    }

    /// The event as a JSON line, for the rejects file.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self.fields()).expect("a JSON map always serialises")
    }

    /// The line the event was read from, when it is the whole event as it is.
    /// (Boxed otherwise: events without a line are few, and an event is large.)
    pub fn into_line(self) -> Result<Box<str>, Box<Event>> {
        match self.body {
            Body::Line(line) => Ok(line.text),
            Body::Map {
                line: Some(text), ..
            } => Ok(text),
            Body::Map { line: None, .. } => Err(Box::new(self)),
        }
    }
}

impl Line {
    fn slice(&self, (start, end): (u32, u32)) -> &str {
        &self.text[start as usize..end as usize]
    }

    /// The JSON text of a member of `properties` (the last of a repeated key).
    fn property(&self, name: &str) -> Option<&str> {
        let (_, value) = self
            .properties
            .iter()
            .rev()
            .find(|(key, _)| self.slice(*key) == name)?;
        Some(self.slice(*value))
    }
}

/// A JSON string's text when it has no escapes, which is what it means as it is.
fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A value from its JSON text; a string without escapes needs no parser.
fn value_of(raw: &str) -> Option<Value> {
    match plain_string(raw) {
        Some(text) => Some(Value::String(text.to_owned())),
        None => serde_json::from_str(raw).ok(),
    }
}

/// The JSON text of an object's member, or of an array's item by its index.
fn member_of<'a>(raw: &'a str, segment: &str) -> Option<&'a str> {
    let mut deserializer = serde_json::Deserializer::from_str(raw);
    match raw.as_bytes().first()? {
        b'{' => {
            serde::de::DeserializeSeed::deserialize(MemberNamed(segment), &mut deserializer).ok()?
        }
        b'[' => serde::de::DeserializeSeed::deserialize(
            ItemAt(segment.parse().ok()?),
            &mut deserializer,
        )
        .ok()?,
        _ => None,
    }
}

/// An object's member by its key (the last of a repeated key), for `member_of`.
struct MemberNamed<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for MemberNamed<'_> {
    type Value = Option<&'de str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MemberNamed<'_> {
    type Value = Option<&'de str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if key == self.0 {
                found = Some(map.next_value::<&'de serde_json::value::RawValue>()?.get());
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// An array's item by its index, for `member_of`.
struct ItemAt(usize);

impl<'de> serde::de::DeserializeSeed<'de> for ItemAt {
    type Value = Option<&'de str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ItemAt {
    type Value = Option<&'de str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut index = 0;
        while let Some(item) = seq.next_element::<&'de serde_json::value::RawValue>()? {
            if index == self.0 {
                found = Some(item.get());
            }
            index += 1;
        }
        Ok(found)
    }
}

fn object_or_empty(value: Option<&Value>) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match value {
        Some(Value::Object(map)) => map,
        _ => EMPTY.get_or_init(Map::new),
    }
}

/// Looks a dot path up in an object; a numeric segment indexes an array.
pub fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    descend(object.get(segments.next()?)?, segments)
}

fn descend<'a, 's>(
    mut current: &'a Value,
    segments: impl Iterator<Item = &'s str>,
) -> Option<&'a Value> {
    for segment in segments {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Removes the value at a dot path, leaving its parents in place.
pub fn remove_path(object: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.rsplit_once('.') {
        None => object.remove(path),
        Some((parent, leaf)) => {
            let mut segments = parent.split('.');
            let mut current = object.get_mut(segments.next()?)?;
            for segment in segments {
                current = current.as_object_mut()?.get_mut(segment)?;
            }
            current.as_object_mut()?.remove(leaf)
        }
    }
}

/// An id as text: a string that is not blank, as it is, or a number's decimal text.
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !is_blank(s) => Some(s.clone()),
        Value::Number(n) => decimal_text(n),
        _ => None,
    }
}

/// Empty or white space only: no id, though a string. An id of spaces would
/// bill a customer nobody can name.
fn is_blank(text: &str) -> bool {
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
    serde_json::from_str(text).ok()
}

/// `12345`, `12.5`, and `1e3` as `1000`: never an exponent. None for a
/// whole number too large to have been read exactly (beyond 64 bits, or a
/// float past 2^53): its last digits may be gone, and two ids could become one.
pub fn decimal_text(n: &serde_json::Number) -> Option<String> {
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
fn inexact_id(event: &Event) -> Option<Reason> {
    for key in ["userId", "anonymousId", "messageId"] {
        // Only a number can be inexact; a line's string needs no parsing to tell.
        if event.raw(key).is_some_and(|raw| raw.starts_with('"')) {
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
    let mut text = value.to_string();
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin {
        Origin {
            source: "t.ndjson",
            line: 7,
        }
    }

    fn event(value: Value) -> Event {
        let Value::Object(fields) = value else {
            panic!("not an object")
        };
        Event::from_map(fields, origin())
    }

    fn parse(line: &str) -> Vec<Result<Event, BadLine>> {
        let mut out = Vec::new();
        parse_line(line.as_bytes(), &origin(), |r| out.push(r));
        out
    }

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

    #[test]
    fn ids_are_text_and_empty_strings_are_absent() {
        let e = event(json!({"userId": "", "anonymousId": 12345, "context": {"groupId": "g1"}}));
        assert_eq!(e.customer_id().as_deref(), Some("12345"));
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
    fn ids_too_large_to_keep_exactly_are_refused() {
        let out = parse(r#"{"type":"track","userId":18500000000000000001}"#);
        assert_eq!(out[0].as_ref().unwrap_err().reason.kind, "id not exact");
        let out = parse(
            r#"{"batch":[{"messageId":123456789012345678901234567890},{"userId":18446744073709551615}]}"#,
        );
        assert_eq!(out[0].as_ref().unwrap_err().reason.kind, "id not exact");
        assert_eq!(
            out[1].as_ref().unwrap().customer_id().as_deref(),
            Some("18446744073709551615")
        );
        // In a configured field it is simply not a usable id.
        assert_eq!(id_text(&json!(1e300)), None);
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

    /// A partly parsed event translates as the whole one does.
    #[test]
    fn wanted_keys_give_the_same_events() {
        let lazy = Wanted::with_paths(["context.groupId"]);
        let lines = [
            r#"{"type":"track","event":"e","userId":"u","messageId":"m","timestamp":"2021-01-01T00:00:00Z","context":{"groupId":"g","ip":"1.2.3.4"},"properties":{"a":1},"sentAt":null}"#,
            r#"{"type":"page","messageId":7,"name":"Home","context":{"x":[1,{"y":2}]},"userId":"u","userId":"v"}"#,
            r#"{"type":"track","userId":"u"}"#,
            r#"{"batch":[{"type":"track","messageId":"a"}],"context":{"c":1}}"#,
            r#"{"_segrelay":{"reason":"x"},"type":"track","messageId":"m"}"#,
            r#"{"type":"track","messageId":"m"} trailing"#,
            r#"{"type":"track","messageId":"m","context":{"bad":tru}}"#,
            r#"[1,2]"#,
            r#"{"type":"track","messageId":18500000000000000001}"#,
        ];
        // The first two are plain events, kept as their lines.
        for (wanted, (i, line)) in [lazy.clone(), lazy.at_once()]
            .iter()
            .flat_map(|wanted| std::iter::repeat(wanted).zip(lines.into_iter().enumerate()))
        {
            let mut full = Vec::new();
            parse_line(line.as_bytes(), &origin(), |r| full.push(r));
            let mut part = Vec::new();
            parse_line_wanted(line.as_bytes(), &origin(), wanted, |r| part.push(r));
            assert_eq!(full.len(), part.len(), "{line}");
            for (f, p) in full.iter().zip(&part) {
                match (f, p) {
                    (Ok(f), Ok(p)) => {
                        let paths = ALWAYS_WANTED.iter().chain(&["context", "context.groupId"]);
                        for path in paths {
                            assert_eq!(f.get(path), p.get(path), "{line}: {path}");
                        }
                        for key in ALWAYS_WANTED.iter().chain(&["context"]) {
                            assert_eq!(f.fields().get(*key), p.fields().get(*key), "{line}: {key}");
                        }
                        assert_eq!(f.message_id(), p.message_id(), "{line}");
                        let kept = p.clone().into_line().ok();
                        assert_eq!(kept.as_deref(), (i < 2).then_some(line), "{line}");
                    }
                    (Err(f), Err(p)) => assert_eq!(f.reason, p.reason, "{line}"),
                    _ => panic!("{line}: one parsed, the other not"),
                }
            }
        }
    }

    /// What a skip lets through and a parse refuses goes the full way, to be refused.
    #[test]
    fn wanted_values_that_would_not_parse_are_refused() {
        let wanted = Wanted::with_paths([]);
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let long = "9".repeat(400);
        let lines = [
            r#"{"type":"track","messageId":"m","event":"\ud800"}"#.to_owned(),
            r#"{"type":"track","messageId":"m","properties":{"value":1e400}}"#.to_owned(),
            format!(r#"{{"type":"track","messageId":"m","properties":{{"n":{long}}}}}"#),
            format!(r#"{{"type":"track","messageId":"m","properties":{{"d":{deep}}}}}"#),
        ];
        for line in &lines {
            let mut out = Vec::new();
            parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| out.push(r));
            assert_eq!(out.len(), 1, "{line}");
            let Err(bad) = &out[0] else {
                panic!("{line}: taken")
            };
            assert_eq!(bad.reason.kind, "invalid JSON", "{line}");
        }
        // A number with an exponent that does parse is kept.
        let line = r#"{"type":"track","messageId":"m","properties":{"value":1.5e3,"s":"2e"}}"#;
        let mut out = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| out.push(r));
        let event = out.pop().unwrap().unwrap();
        assert_eq!(
            event.get("properties.value").as_deref(),
            Some(&json!(1500.0))
        );
    }

    /// An event kept as its line answers paths as a parsed one does.
    #[test]
    fn lines_answer_paths_like_maps() {
        let wanted = Wanted::with_paths(["context.groupId"]);
        let line = r#"{"messageId":"m","type":"tr\u0061ck","properties":{"a":{"b":[10,{"c":3}]},"a":{"b":[1]},"s":"x\"y","n":null},"context":{"groupId":7},"traits":[1,2],"\u0065vent":"e"}"#;
        let mut kept = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| kept.push(r));
        let kept = kept.pop().unwrap().unwrap();
        let parsed = event(serde_json::from_str(line).unwrap());
        assert!(kept.clone().into_line().is_ok(), "kept as a line");
        for path in [
            "type",
            "event",
            "properties.a.b.0",
            "properties.a.b.1.c",
            "properties.s",
            "properties.n",
            "properties.missing",
            "context.groupId",
            "traits.1",
            "traits.x",
            "messageId.0",
        ] {
            assert_eq!(kept.get(path), parsed.get(path), "{path}");
        }
        assert_eq!(kept.call_type().as_deref(), Some("track"));
        assert_eq!(kept.str_at("event").as_deref(), Some("e"));
        for path in ["a.b.0", "s", "missing", "a"] {
            let in_properties = |e: &Event| e.get_in("properties", Some(path)).map(Cow::into_owned);
            assert_eq!(in_properties(&kept), in_properties(&parsed), "{path}");
        }
        assert_eq!(kept.properties(), parsed.properties());
        assert!(kept.is_object("properties") && !kept.is_object("traits"));
    }

    /// `properties` is read in the line's one pass, member by member: odd
    /// spacing, empty or repeated objects, and what the full parser must see
    /// (escaped keys, a `properties` that is not an object) answer alike.
    #[test]
    fn properties_read_in_one_pass_answer_like_maps() {
        let wanted = Wanted::with_paths([]);
        let lines = [
            (
                r#"{"messageId":"m","properties" : { "a" : 1 , "b":{"c":[2]} } ,"type":"track"}"#,
                true,
            ),
            (r#"{"messageId":"m","properties":{},"type":"track"}"#, true),
            (r#"{"messageId":"m","properties":{ },"type":"track"}"#, true),
            (
                "{\"messageId\":\"m\",\"properties\":\t{\"a\":\"x\"}\n}",
                true,
            ),
            (
                r#"{"messageId":"m","properties":{"a":1},"properties":{"a":2,"a":3}}"#,
                true,
            ),
            (
                r#"{"messageId":"m","properties":{"\u0061":1,"b":2}}"#,
                false,
            ),
            (r#"{"messageId":"m","propertie\u0073":{"a":1}}"#, false),
            (r#"{"messageId":"m","properties":null}"#, false),
            (r#"{"messageId":"m","properties":"a"}"#, false),
            (r#"{"messageId":"m","properties":[{"a":1}]}"#, false),
        ];
        for (line, kept_as_line) in lines {
            let mut kept = Vec::new();
            parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| kept.push(r));
            let kept = kept.pop().unwrap().unwrap();
            let parsed = event(serde_json::from_str(line).unwrap());
            assert_eq!(kept.clone().into_line().is_ok(), kept_as_line, "{line}");
            for path in ["a", "b", "b.c.0", "0", "0.a", "missing"] {
                let in_properties =
                    |e: &Event| e.get_in("properties", Some(path)).map(Cow::into_owned);
                assert_eq!(
                    in_properties(&kept),
                    in_properties(&parsed),
                    "{line}: {path}"
                );
            }
            assert_eq!(kept.get("properties"), parsed.get("properties"), "{line}");
            assert_eq!(
                kept.is_object("properties"),
                parsed.is_object("properties"),
                "{line}"
            );
            assert_eq!(kept.fields(), parsed.fields(), "{line}");
        }
    }

    #[test]
    fn blank_ids_are_absent_and_others_kept_as_they_are() {
        let e = event(json!({"userId": "  ", "anonymousId": " a 1 ", "messageId": "\t\n"}));
        assert_eq!(e.id_at("userId"), None);
        assert_eq!(e.customer_id().as_deref(), Some(" a 1 "));
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

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let e = event(json!({"properties": {"a": {"b": [10, {"c": 3}]}}}));
        assert_eq!(e.get("properties.a.b.1.c").as_deref(), Some(&json!(3)));
        assert_eq!(e.get("properties.a.x"), None);
        let mut props = e.properties().clone();
        assert_eq!(remove_path(&mut props, "a.b"), Some(json!([10, {"c": 3}])));
        assert_eq!(Value::Object(props), json!({"a": {}}));
    }
}
