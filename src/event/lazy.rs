//! The partial parse: a plain line is kept as its text, with where the values
//! translation reads lie in it, and a value is built only when asked for. Most
//! events need a handful of small values, and building every value was most of
//! the time a run took. A key the parse did not look for is still read from the
//! kept line when asked for: what is wanted decides the speed, never the answers.

use std::borrow::Cow;
use std::num::NonZeroU32;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use super::id::{id_text, inexact_id};
use super::parse::{BadLine, parse_line};
use super::path::{Key, member_named};
use super::rejects;
use super::{Body, Event, Origin, TopLevel};

/// Declares `Usual`, the top-level keys every destination and filter reads,
/// from one list, so that its names, its count and the lookup by name cannot
/// fall out of step.
macro_rules! usual_keys {
    ($($key:ident = $name:literal,)*) => {
        #[derive(Debug, Clone, Copy)]
        enum Usual {
            $($key,)*
        }

        impl Usual {
            /// The names, in the enum's order: `NAMES[key as usize]` is the key's name.
            const NAMES: [&'static str; [$($name),*].len()] = [$($name),*];

            /// A usual key by its name, by a match (a jump on length, then one
            /// comparison): this runs for every key of every line.
            fn of(name: &str) -> Option<Usual> {
                match name {
                    $($name => Some(Usual::$key),)*
                    _ => None,
                }
            }
        }
    };
}

usual_keys! {
    Type = "type",
    Event = "event",
    UserId = "userId",
    AnonymousId = "anonymousId",
    MessageId = "messageId",
    Timestamp = "timestamp",
    OriginalTimestamp = "originalTimestamp",
    ReceivedAt = "receivedAt",
    Properties = "properties",
    Traits = "traits",
    Integrations = "integrations",
    Name = "name",
}

/// The top-level keys translation reads. Parsing only these, and skipping the
/// rest (`context` above all) without building it, is most of segrelay's speed.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    path_keys: &'static PathKeys,
    /// The destination reads whole objects (every property): a line is kept
    /// as its text when the lazy parse takes it, `properties` or `traits`
    /// built alone when read; else its wanted keys are built at once, as
    /// before the lazy parse took such lines, so that the same lines are kept.
    at_once: bool,
}

impl Wanted {
    /// The usual keys, and the first key of each dot path the settings name.
    pub fn with_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Wanted {
        let mut keys: Vec<Box<str>> = Vec::new();
        for path in paths {
            let first = path.split('.').next().unwrap_or(path);
            if Usual::of(first).is_none() && !keys.iter().any(|key| **key == *first) {
                keys.push(first.into());
            }
        }
        Wanted {
            path_keys: PathKeys::interned(keys),
            at_once: false,
        }
    }

    /// The same keys, built at once when `whole` (translation reads whole objects).
    pub fn reading_whole_objects(self, whole: bool) -> Wanted {
        Wanted {
            at_once: whole,
            ..self
        }
    }

    /// What a top-level key of a plain line is to a partial parse.
    fn place(&self, key: &str) -> Place {
        if key == "batch" || key == rejects::NOTE_KEY {
            return Place::NeedsFullParse;
        }
        match Usual::of(key) {
            Some(usual) => Place::Usual(usual),
            None if self.path_keys.contains(key) => Place::Other,
            None => Place::Unread,
        }
    }
}

/// The first keys of the settings' dot paths that are not usual keys. Every
/// event kept as its line points at them, to tell a key the line lacks from
/// one the parse did not look for: one shared copy of each set, not counted
/// (a reference count would be touched by every event, on every thread).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PathKeys(Vec<Box<str>>);

impl PathKeys {
    /// One copy of each distinct set for the rest of the process: a run builds a few.
    fn interned(keys: Vec<Box<str>>) -> &'static PathKeys {
        static SETS: Mutex<Vec<&'static PathKeys>> = Mutex::new(Vec::new());
        let keys = PathKeys(keys);
        let mut sets = SETS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(known) = sets.iter().find(|known| ***known == keys) {
            return known;
        }
        let keys: &'static PathKeys = Box::leak(Box::new(keys));
        sets.push(keys);
        keys
    }

    fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|path_key| **path_key == *key)
    }

    /// Whether the parse looked for a top-level key.
    fn wanted(&self, key: &str) -> bool {
        Usual::of(key).is_some() || self.contains(key)
    }

    /// The JSON text of a top-level value of `line` the parse did not look for;
    /// None for a key it looked for, which the line does not have.
    pub(super) fn unwanted<'l>(&self, line: &'l str, key: &str) -> Option<&'l str> {
        if self.wanted(key) {
            return None;
        }
        member_named(line, key)
    }
}

enum Place {
    /// An envelope or a rejects-file line: the full parser must see it.
    NeedsFullParse,
    Usual(Usual),
    /// A key a settings path names.
    Other,
    /// Read past without building it.
    Unread,
}

/// Where a value, or a key without its quotes, lies in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// Never 0: all a span marks lies past the line's opening `{`. So an
    /// absent value, `Option<Span>`, takes no room of its own.
    start: NonZeroU32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        // Lines are shorter than 4 GiB (checked before parsing).
        let start = NonZeroU32::new(start as u32).expect("a span lies past the line's `{`");
        Span {
            start,
            end: end as u32,
        }
    }

    /// Where a borrowed slice of `text` lies in it.
    fn of(text: &str, part: &str) -> Span {
        let start = part.as_ptr() as usize - text.as_ptr() as usize;
        Span::new(start, start + part.len())
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start.get() as usize..self.end as usize
    }
}

/// An object member's key and value in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    key: Span,
    value: Span,
}

/// A plain line, kept as text with where each wanted top-level value lies in it.
#[derive(Debug, Clone)]
pub(super) struct Line {
    text: Box<str>,
    /// Where the usual keys' values are, by `Usual` (None when absent).
    usual: [Option<Span>; Usual::NAMES.len()],
    /// The other wanted keys in line order; of a repeated key, the last counts.
    others: Vec<Member>,
    /// The members of `properties` in line order, noted as the line was read:
    /// translations read a few of them, and reading the object again cost more.
    properties: Vec<Member>,
    /// The wanted keys as a map, built the first time something needs it.
    fields: OnceLock<Map<String, Value>>,
    /// `properties` and `traits` as maps, each built alone the first time it
    /// is asked for: a translation that reads every property (or trait) needs
    /// nothing else built (the ids, times and names are read from the line).
    objects: [OnceLock<Map<String, Value>>; 2],
    /// What the parse looked for beyond the usual keys: any other key is read
    /// from `text` when asked for.
    path_keys: &'static PathKeys,
}

impl Line {
    fn slice(&self, span: Span) -> &str {
        &self.text[span.range()]
    }

    pub(super) fn into_text(self) -> Box<str> {
        self.text
    }

    /// A top-level value: built, once the wanted keys have been, else as text.
    pub(super) fn top_level(&self, key: &str) -> Option<TopLevel<'_>> {
        let Some(fields) = self.fields.get() else {
            return self.raw(key).map(TopLevel::Text);
        };
        match fields.get(key) {
            Some(value) => Some(TopLevel::Built(value)),
            None => self.path_keys.unwanted(&self.text, key).map(TopLevel::Text),
        }
    }

    /// The JSON text of `properties` (an object, in a kept line).
    pub(super) fn properties_text(&self) -> Option<&str> {
        self.usual[Usual::Properties as usize].map(|span| self.slice(span))
    }

    /// The JSON text of a top-level value.
    fn raw(&self, key: &str) -> Option<&str> {
        if let Some(usual) = Usual::of(key) {
            return self.usual[usual as usize].map(|span| self.slice(span));
        }
        match self.others.iter().rev().find(|m| self.slice(m.key) == key) {
            Some(member) => Some(self.slice(member.value)),
            None => self.path_keys.unwanted(&self.text, key),
        }
    }

    /// The JSON text of a member of `properties` (the last of a repeated key).
    pub(super) fn property(&self, name: &str) -> Option<&str> {
        let member = self
            .properties
            .iter()
            .rev()
            .find(|m| self.slice(m.key) == name)?;
        Some(self.slice(member.value))
    }

    /// The JSON text of `traits`, whatever it holds (in a kept line).
    pub(super) fn traits_text(&self) -> Option<&str> {
        self.usual[Usual::Traits as usize].map(|span| self.slice(span))
    }

    /// `properties` as a map (empty when absent or not an object).
    pub(super) fn properties(&self) -> &Map<String, Value> {
        self.object(Usual::Properties, &self.objects[0])
    }

    /// `traits` as a map (empty when absent or not an object).
    pub(super) fn traits(&self) -> &Map<String, Value> {
        self.object(Usual::Traits, &self.objects[1])
    }

    /// A usual key's object: from the wanted keys when they are built, else
    /// built alone, once.
    fn object<'a>(
        &'a self,
        key: Usual,
        built: &'a OnceLock<Map<String, Value>>,
    ) -> &'a Map<String, Value> {
        if let Some(fields) = self.fields.get() {
            return super::object_or_empty(fields.get(Usual::NAMES[key as usize]));
        }
        built.get_or_init(|| {
            let Some(span) = self.usual[key as usize] else {
                return Map::new();
            };
            match serde_json::from_str(self.slice(span)).expect("a value the line's parse took") {
                Value::Object(map) => map,
                _ => Map::new(),
            }
        })
    }

    /// The wanted keys as a map.
    pub(super) fn fields(&self) -> &Map<String, Value> {
        self.fields.get_or_init(|| {
            let parse = |span| {
                serde_json::from_str(self.slice(span)).expect("a value the line's parse took")
            };
            let mut fields = Map::new();
            for (name, span) in Usual::NAMES.iter().zip(self.usual) {
                if let Some(span) = span {
                    fields.insert((*name).to_owned(), parse(span));
                }
            }
            for member in &self.others {
                fields.insert(self.slice(member.key).to_owned(), parse(member.value));
            }
            fields
        })
    }
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
    if !wanted.at_once {
        return kept_line(text, origin, wanted);
    }
    if !builds_otherwise(line)
        && let Some(event) = kept_line(text, origin, wanted)
    {
        return Some(event);
    }
    built_at_once(text, origin, wanted)
}

/// Whether building a value from the line could differ from reading it as
/// JSON: `serde_json::Value` reads an object whose first key is one of its
/// own tokens (`$serde_json::private::Number`, `...RawValue`) as something
/// else, and such a key can be written with `\u` escapes. Such lines have
/// their wanted keys built at once.
fn builds_otherwise(line: &[u8]) -> bool {
    // Both are rare in a line: one scan for either first byte.
    memchr::memchr2_iter(b'$', b'\\', line).any(|at| {
        let rest = &line[at..];
        rest.starts_with(b"$serde_json") || rest.starts_with(b"\\u")
    })
}

/// The wanted keys built at once; None as for `Partial`, or when a wanted
/// value does not build.
fn built_at_once(text: &str, origin: &Origin, wanted: &Wanted) -> Option<Event> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let fields = serde::de::DeserializeSeed::deserialize(PartialMap { wanted }, &mut deserializer)
        .ok()??;
    deserializer.end().ok()?;
    Some(Event {
        origin: *origin,
        body: Body::Built {
            fields,
            line: text.into(),
            path_keys: wanted.path_keys,
        },
        notes: Default::default(),
    })
}

/// The line kept as its text, with where the wanted keys' values lie.
fn kept_line(text: &str, origin: &Origin, wanted: &Wanted) -> Option<Event> {
    // Offsets are kept in 32 bits; a line this long is refused by the reader anyway.
    u32::try_from(text.len()).ok()?;
    // Taken apart at once: moved whole, the places were copied twice more.
    let Places {
        usual,
        others,
        properties,
    } = match scan::scanned_places(text, wanted) {
        Some(places) => places,
        None => serde_places(text, wanted)?,
    };
    Some(Event {
        origin: *origin,
        body: Body::Line(Line {
            text: text.into(),
            usual,
            others,
            properties,
            fields: OnceLock::new(),
            objects: Default::default(),
            path_keys: wanted.path_keys,
        }),
        notes: Default::default(),
    })
}

/// The wanted keys' places found by serde_json, for any line the scan leaves
/// to it; None as for `Partial`.
fn serde_places(text: &str, wanted: &Wanted) -> Option<Places> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let places =
        serde::de::DeserializeSeed::deserialize(Partial { wanted, text }, &mut deserializer)
            .ok()??;
    deserializer.end().ok()?;
    Some(places)
}

/// What `Partial` (or the scan) finds in a line.
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Places {
    usual: [Option<Span>; Usual::NAMES.len()],
    others: Vec<Member>,
    properties: Vec<Member>,
}

/// A top-level object's wanted members; None when it is one the full parser
/// must see (a `batch` or `_segrelay` key, a wanted key with escapes, a
/// `properties` that is not an object or has a key with escapes).
struct Partial<'w> {
    wanted: &'w Wanted,
    /// The line being parsed, to turn borrowed slices into spans.
    text: &'w str,
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
fn object_span(text: &str, key: &str, last_value_end: Option<usize>) -> Option<Span> {
    let bytes = text.as_bytes();
    let key_end = Span::of(text, key).end;
    let colon = skip_white_space(bytes, key_end as usize + 1);
    (bytes.get(colon) == Some(&b':')).then_some(())?;
    let start = skip_white_space(bytes, colon + 1);
    (bytes.get(start) == Some(&b'{')).then_some(())?;
    let close = skip_white_space(bytes, last_value_end.unwrap_or(start + 1));
    (bytes.get(close) == Some(&b'}')).then_some(())?;
    Some(Span::new(start, close + 1))
}

impl<'de> serde::de::DeserializeSeed<'de> for Partial<'_> {
    type Value = Option<Places>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Partial<'_> {
    type Value = Option<Places>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let text = self.text;
        let mut places = Places {
            usual: [None; Usual::NAMES.len()],
            others: Vec::new(),
            properties: Vec::new(),
        };
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
            let value = if let Place::Usual(Usual::Properties) = place {
                let (members, last_end) = map.next_value_seed(MemberPlaces { text })?;
                let Cow::Borrowed(key) = key else {
                    return Ok(None);
                };
                let Some(value) = object_span(text, key, last_end) else {
                    return Ok(None);
                };
                places.properties = members;
                &text[value.range()]
            } else {
                map.next_value::<&serde_json::value::RawValue>()?.get()
            };
            // Skipping a value checks less than parsing it would: a wanted value must parse.
            if may_not_parse(value) && serde_json::from_str::<Valid>(value).is_err() {
                return Ok(None);
            }
            let value = Span::of(text, value);
            match (place, key) {
                (Place::Usual(usual), _) => places.usual[usual as usize] = Some(value),
                (_, Cow::Borrowed(key)) => places.others.push(Member {
                    key: Span::of(text, key),
                    value,
                }),
                // An escaped key has no span of its own in the line.
                (_, Cow::Owned(_)) => return Ok(None),
            }
        }
        Ok(Some(places))
    }
}

/// An object's members and where its last value ends. Anything but an object,
/// or a key with escapes (it has no span of its own in the line), is an error:
/// the full parser reads the line.
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
            let value = Span::of(self.text, value.get());
            last_end = Some(value.end as usize);
            members.push(Member {
                key: Span::of(self.text, key),
                value,
            });
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

mod scan;
#[cfg(test)]
mod tests;
