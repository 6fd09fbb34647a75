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
use super::{Body, Event, Origin, TopLevel};
use crate::rejects;

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
    /// Build the wanted values at once, for a destination that reads whole
    /// objects (every property); else each is parsed when asked for.
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
#[derive(Debug, Clone, Copy)]
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
#[derive(Debug, Clone, Copy)]
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
    if wanted.at_once {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let fields =
            serde::de::DeserializeSeed::deserialize(PartialMap { wanted }, &mut deserializer)
                .ok()??;
        deserializer.end().ok()?;
        return Some(Event {
            origin: *origin,
            body: Body::Built {
                fields,
                line: text.into(),
                path_keys: wanted.path_keys,
            },
            notes: Default::default(),
        });
    }
    // Offsets are kept in 32 bits; a line this long is refused by the reader anyway.
    u32::try_from(text.len()).ok()?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // Taken apart at once: moved whole, the places were copied twice more.
    let Places {
        usual,
        others,
        properties,
    } = serde::de::DeserializeSeed::deserialize(Partial { wanted, text }, &mut deserializer)
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
            path_keys: wanted.path_keys,
        }),
        notes: Default::default(),
    })
}

/// What `Partial` finds in a line.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing::{event, origin};

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
        for (wanted, (i, line)) in [lazy, lazy.reading_whole_objects(true)]
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
                        let paths = Usual::NAMES.iter().chain(&["context", "context.groupId"]);
                        for path in paths {
                            assert_eq!(f.get(path), p.get(path), "{line}: {path}");
                        }
                        for key in Usual::NAMES.iter().chain(&["context"]) {
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
        // A number with an exponent is kept, and so is one beyond a double's
        // range or digits: numbers keep their text, which is valid JSON.
        let line = format!(
            r#"{{"type":"track","messageId":"m","properties":{{"value":1.5e3,"s":"2e","big":1e400,"n":{long}}}}}"#
        );
        let mut out = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| out.push(r));
        let event = out.pop().unwrap().unwrap();
        let text = |path: &str| event.get(path).map(|v| v.to_string());
        assert_eq!(text("properties.value").as_deref(), Some("1.5e+3"));
        assert_eq!(text("properties.big").as_deref(), Some("1e+400"));
        assert_eq!(text("properties.n"), Some(long));
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

    /// A key the settings did not name is read from the kept line when asked
    /// for: a mapping reading a path the destination forgot to list answers as
    /// the full parse does, never "missing". Repeated and escaped keys included.
    #[test]
    fn unwanted_keys_answer_like_a_full_parse() {
        let wanted = Wanted::with_paths(["properties.plan", "account"]);
        let line = r#"{"type":"track","messageId":"m","context":{"groupId":"g1"},"properties":{"plan":"pro"},"context":{"groupId":"g2","n":12,"a":[{"b":"x"}],"s":"a\"b"},"cont\u0065xt2":{"k":"v"},"count":3,"account":null}"#;
        assert!(!wanted.path_keys.wanted("context") && !wanted.path_keys.wanted("context2"));
        let parsed = event(serde_json::from_str(line).unwrap());
        let paths = [
            "context",
            "context.groupId",
            "context.n",
            "context.a.0.b",
            "context.a.1",
            "context.s",
            "context.missing",
            "context2.k",
            "count",
            "account",
            "missing",
            "missing.x",
        ];
        let kept_ways = [wanted, wanted.reading_whole_objects(true)];
        for (way, wanted) in kept_ways.iter().enumerate() {
            let mut out = Vec::new();
            parse_line_wanted(line.as_bytes(), &origin(), wanted, |r| out.push(r));
            let kept = out.pop().unwrap().unwrap();
            // Once as the line's spans, once after the wanted keys were built.
            for built in [false, true] {
                if built {
                    kept.fields();
                }
                for path in paths {
                    let at = format!("{way}, built {built}: {path}");
                    assert_eq!(kept.get(path), parsed.get(path), "{at}");
                    assert_eq!(kept.id_at(path), parsed.id_at(path), "{at}");
                    let (key, rest) = path.split_once('.').unwrap_or((path, ""));
                    let rest = (!rest.is_empty()).then_some(rest);
                    assert_eq!(kept.get_in(key, rest), parsed.get_in(key, rest), "{at}");
                    assert_eq!(kept.str_at(key), parsed.str_at(key), "{at}");
                    assert_eq!(kept.is_object(key), parsed.is_object(key), "{at}");
                }
            }
            assert!(kept.into_line().is_ok(), "{way}: kept as its line");
        }
    }
}
