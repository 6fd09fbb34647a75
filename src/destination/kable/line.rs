//! An event's `data` written straight from the JSON text of its `properties`,
//! as the event's line holds it: every property read once (by `scan` when the
//! text has no escapes, else by serde), borrowed where it has none, numbers
//! kept as their text, in the order and with the choice of a
//! `serde_json::Map` (keys sorted, the last of a repeated key kept), and
//! written as `Data` writes the map. Building the map (a string and a tree
//! node for each member) and walking it again cost about a fifth of a Kable
//! translation; what is written is the same.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::super::members::{NUMBER_TOKEN, RAW_VALUE_TOKEN, Text, kept};
use super::super::{beyond_double, outgoing_text, write_json_str};

/// A JSON value borrowed from the line.
enum Node<'a> {
    Null,
    Bool(bool),
    /// A number's text, as written: it goes out as `Outgoing` writes it.
    Number(Cow<'a, str>),
    Text(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Sorted by key, the last of a repeated key kept.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

type Members<'a> = Vec<(Cow<'a, str>, Node<'a>)>;

/// Writes `data` from the text of the event's properties, with the mapped
/// keys renamed, as `Data` does from their map. None, with nothing written,
/// when the map-based path must: text that is not an object (or one that
/// serde_json reads its own way), or a number a double cannot hold (the map
/// path rejects the event, naming it).
pub(super) fn write_data(
    out: &mut Vec<u8>,
    properties: &str,
    mapping: &[(String, String)],
) -> Option<()> {
    let members = object(properties)?;
    if members.iter().any(|(_, node)| node.beyond_double()) {
        return None;
    }
    // As `translate`: renames read the original properties, a later rename to
    // the same key replaces an earlier one, and a nested source is taken out
    // of its parent (by `remove_path`, through objects only).
    let mut renamed: Vec<(&str, &Node)> = Vec::new();
    let mut removed: Vec<&str> = Vec::new();
    for (from, to) in mapping {
        let Some(node) = lookup(&members, from) else {
            continue;
        };
        renamed.retain(|(target, _)| *target != to.as_str());
        renamed.push((to, node));
        if from.contains('.') {
            removed.push(from);
        }
    }
    out.push(b'{');
    let mut first = true;
    for (key, node) in &members {
        let moved = mapping.iter().any(|(from, _)| from == key);
        let replaced = renamed.iter().any(|(to, _)| to == key);
        if moved || replaced {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(out, key);
        out.push(b':');
        write_node(out, node, &below(&removed, key));
    }
    for (to, node) in &renamed {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(out, to);
        out.push(b':');
        write_node(out, node, &[]);
    }
    out.push(b'}');
    Some(())
}

/// The object `text` holds; None when it is not one, or does not parse.
fn object(text: &str) -> Option<Members<'_>> {
    if let Some(members) = scan::object(text) {
        return Some(members);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let node = NodeSeed.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    match node {
        Node::Object(members) => Some(members),
        _ => None,
    }
}

/// The last member of a key.
fn member<'n, 'a>(members: &'n [(Cow<'a, str>, Node<'a>)], key: &str) -> Option<&'n Node<'a>> {
    members.iter().find(|(k, _)| k == key).map(|(_, node)| node)
}

/// As `crate::event::lookup`: a dot path, a numeric segment indexing an array.
fn lookup<'n, 'a>(members: &'n [(Cow<'a, str>, Node<'a>)], path: &str) -> Option<&'n Node<'a>> {
    let mut segments = path.split('.');
    let mut current = member(members, segments.next()?)?;
    for segment in segments {
        current = match current {
            Node::Object(members) => member(members, segment)?,
            Node::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Writes a value as `Outgoing` does, leaving out the members at the dot
/// paths `removed` names below it (as `remove_path` takes them out: through
/// objects only).
fn write_node(out: &mut Vec<u8>, node: &Node, removed: &[&str]) {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Node::Number(text) => write_number(out, text),
        Node::Text(text) => write_json_str(out, text),
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(out, item, &[]);
            }
            out.push(b']');
        }
        Node::Object(members) => {
            out.push(b'{');
            let mut first = true;
            for (key, node) in members {
                // A key with a dot is never a segment of a dot path.
                if !key.contains('.') && removed.contains(&key.as_ref()) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_str(out, key);
                out.push(b':');
                write_node(out, node, &below(removed, key));
            }
            out.push(b'}');
        }
    }
}

/// The paths of `removed` that go on below `key`, without it.
fn below<'p>(removed: &[&'p str], key: &str) -> Vec<&'p str> {
    let mut below = removed
        .iter()
        .filter_map(|path| path.strip_prefix(key)?.strip_prefix('.'))
        .peekable();
    // A key with a dot is never a segment of a dot path.
    if below.peek().is_none() || key.contains('.') {
        return Vec::new();
    }
    below.collect()
}

/// A number as `Outgoing` writes it: an integer (but `-0`) as it is, any
/// other as `outgoing_text` says.
fn write_number(out: &mut Vec<u8>, text: &str) {
    if !text.contains(['.', 'e', 'E']) && text != "-0" {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    match text.parse::<Number>() {
        Ok(n) => out.extend_from_slice(outgoing_text(&n).as_bytes()),
        // Never: the text was read as a number.
        Err(_) => out.extend_from_slice(text.as_bytes()),
    }
}

impl Node<'_> {
    /// Whether some number in it is one a double cannot hold.
    fn beyond_double(&self) -> bool {
        match self {
            // Without an exponent, fewer than 300 characters are well within range.
            Node::Number(text) if text.len() < 300 && !text.contains(['e', 'E']) => false,
            Node::Number(text) => text.parse::<Number>().is_ok_and(|n| beyond_double(&n)),
            Node::Array(items) => items.iter().any(Node::beyond_double),
            Node::Object(members) => members.iter().any(|(_, node)| node.beyond_double()),
            _ => false,
        }
    }
}

/// A value, in one pass over its text.
struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Node::Number(Cow::Owned(n.to_string())))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Node::Number(Cow::Owned(n.to_string())))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Number::from_f64(n)
            .map(|n| Node::Number(Cow::Owned(n.to_string())))
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Node::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Node::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(Node::Text(Cow::Owned(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NodeSeed)? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Members<'de> = Vec::new();
        while let Some(key) = map.next_key_seed(Text)? {
            if members.is_empty() && key == NUMBER_TOKEN {
                // As `serde_json::Value` reads it: the same digits kept.
                let text = map.next_value_seed(Text)?;
                text.parse::<Number>().map_err(serde::de::Error::custom)?;
                return Ok(Node::Number(text));
            }
            if members.is_empty() && key == RAW_VALUE_TOKEN {
                return Err(serde::de::Error::custom("read as serde_json reads it"));
            }
            members.push((key, map.next_value_seed(NodeSeed)?));
        }
        Ok(Node::Object(kept(members)))
    }
}

/// The usual properties read without serde: strings and keys without
/// escapes, which are borrowed as they are, numbers kept as their text. None
/// for anything else (an escape, a key starting with `$`, which serde_json may
/// read its own way, deep nesting, text that is not JSON): serde reads those.
mod scan {
    use std::borrow::Cow;

    use super::{Members, Node, kept};

    /// Deeper than this is left to serde (which refuses beyond 128).
    const MAX_DEPTH: usize = 64;

    pub(super) fn object(text: &str) -> Option<Members<'_>> {
        let mut scan = Scan { text, at: 0 };
        scan.white_space();
        let Node::Object(members) = scan.value(0)? else {
            return None;
        };
        scan.white_space();
        (scan.at == text.len()).then_some(members)
    }

    struct Scan<'a> {
        text: &'a str,
        at: usize,
    }

    impl<'a> Scan<'a> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.at).copied()
        }

        fn white_space(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.at += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            self.white_space();
            (self.peek()? == byte).then(|| self.at += 1)
        }

        fn value(&mut self, depth: usize) -> Option<Node<'a>> {
            self.white_space();
            match self.peek()? {
                b'"' => self.string().map(|text| Node::Text(Cow::Borrowed(text))),
                b'{' if depth < MAX_DEPTH => self.object(depth + 1),
                b'[' if depth < MAX_DEPTH => self.array(depth + 1),
                b't' => self.literal("true", Node::Bool(true)),
                b'f' => self.literal("false", Node::Bool(false)),
                b'n' => self.literal("null", Node::Null),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }

        fn object(&mut self, depth: usize) -> Option<Node<'a>> {
            self.at += 1;
            let mut members = Vec::new();
            self.white_space();
            if self.peek()? == b'}' {
                self.at += 1;
                return Some(Node::Object(members));
            }
            loop {
                self.white_space();
                let key = self.string()?;
                if key.starts_with('$') {
                    return None;
                }
                self.eat(b':')?;
                let value = self.value(depth)?;
                members.push((Cow::Borrowed(key), value));
                self.white_space();
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        return Some(Node::Object(kept(members)));
                    }
                    _ => return None,
                }
            }
        }

        fn array(&mut self, depth: usize) -> Option<Node<'a>> {
            self.at += 1;
            let mut items = Vec::new();
            self.white_space();
            if self.peek()? == b']' {
                self.at += 1;
                return Some(Node::Array(items));
            }
            loop {
                items.push(self.value(depth)?);
                self.white_space();
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        return Some(Node::Array(items));
                    }
                    _ => return None,
                }
            }
        }

        /// A string without escapes or control characters, without its quotes.
        fn string(&mut self) -> Option<&'a str> {
            let bytes = self.text.as_bytes();
            (self.peek()? == b'"').then_some(())?;
            let start = self.at + 1;
            let length = bytes[start..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            let end = start + length;
            (bytes[end] == b'"').then_some(())?;
            self.at = end + 1;
            Some(&self.text[start..end])
        }

        fn literal(&mut self, word: &str, node: Node<'a>) -> Option<Node<'a>> {
            self.text[self.at..].starts_with(word).then_some(())?;
            self.at += word.len();
            Some(node)
        }

        /// JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`.
        fn number(&mut self) -> Option<Node<'a>> {
            let start = self.at;
            if self.peek() == Some(b'-') {
                self.at += 1;
            }
            match self.peek()? {
                b'0' => self.at += 1,
                b'1'..=b'9' => self.digits(),
                _ => return None,
            }
            if self.peek() == Some(b'.') {
                self.at += 1;
                self.digit()?;
                self.digits();
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.at += 1;
                if matches!(self.peek(), Some(b'-' | b'+')) {
                    self.at += 1;
                }
                self.digit()?;
                self.digits();
            }
            Some(Node::Number(Cow::Borrowed(&self.text[start..self.at])))
        }

        fn digit(&self) -> Option<()> {
            self.peek()?.is_ascii_digit().then_some(())
        }

        fn digits(&mut self) {
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CustomerIdField, Destination, Kable, Translation};
    use crate::event::time::{event_time, utc_millis_text};
    use crate::event::{Event, Origin};
    use crate::settings::Secret;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    fn kable(mapping: &[(&str, &str)]) -> Kable {
        Kable {
            name: "k".into(),
            api_key: Secret::literal("k"),
            endpoint: "http://x".into(),
            kable_client_id: "kci".into(),
            client_id_field: CustomerIdField::new("client_id_field", &["userId"]),
            mapping: mapping
                .iter()
                .map(|(from, to)| (from.to_string(), to.to_string()))
                .collect(),
            warnings: Vec::new(),
        }
    }

    /// The record written from the text, and the translation of the map-based
    /// path (a record's JSON, or the reason it is rejected): None for the
    /// first when it leaves the properties to the map.
    fn both(kable: &Kable, properties: &str) -> (Option<String>, String) {
        let parsed: Map<String, Value> = serde_json::from_str(properties).unwrap();
        let event = Event::from_map(
            json!({"type": "track", "userId": "u\"1", "messageId": "m-1", "timestamp": "2026-01-01T00:00:00.5+02:00", "properties": parsed})
                .as_object()
                .unwrap()
                .clone(),
            Origin { source: "t", line: 1 },
        );
        let from_map = match kable.translate(&event) {
            Translation::Record(payload) => payload.json,
            Translation::Reject(reason) => format!("rejected: {reason:?}"),
            _ => panic!("neither a record nor a reject"),
        };
        let timestamp = utc_millis_text(event_time(&event).unwrap());
        let from_text = kable.record_from_text("u\"1", &timestamp, "m-1", properties);
        (from_text, from_map)
    }

    const MAPPINGS: &[&[(&str, &str)]] = &[
        &[],
        &[("segmentX", "kableX"), ("usage.tokens", "tokens")],
        &[("a", "b"), ("b", "c")],
        &[("a", "z"), ("b", "z")],
        &[("nested.field", "dimension"), ("nested.deep.er", "er")],
        &[("nested", "n"), ("nested.field", "f")],
        &[("nested.deep", "d"), ("nested.deep.er", "e")],
        &[("list.0", "first"), ("list.1.x", "x")],
        &[("a.b", "ab"), ("a.b.c", "abc"), ("missing.path", "m")],
        &[("nested.", "empty"), (".x", "dot")],
    ];

    #[test]
    fn the_text_writes_what_the_map_writes() {
        let cases = [
            r#"{"segmentX":"old","kableX":"new","usage":{"tokens":12,"model":"m"},"value":3}"#,
            r#"{"b":1,"a":2,"c":3,"nested":{"field":"x","keep":true,"deep":{"er":5,"more":[1,2]}}}"#,
            r#"{"dup":"first","x":1,"dup":"last","dup":{"n":2},"nested":{"field":1,"field":2}}"#,
            r#"{"list":[{"x":1,"y":2},3],"big":123456789012345678901234567890,"n":-0,"f":1.50,"e":1e3}"#,
            r#"{"a.b":{"c":1},"a":{"b":{"c":2,"d":3},"b.c":4},"nested":{"":1,"x":2}}"#,
            r#"{"e":"caf\u00e9 \"q\" \\ \n \u0001 /","k\u0065y":"escaped key","":{"x":0.000001}}"#,
            r#"{"tiny":1.2e-7,"long":0.10000000000000000001,"exact":9007199254740993,"t":true,"nul":null}"#,
            r#"{}"#,
            r#" { "sp" : [ 1 , 2.50, [ ] ,{ } ] ,
                "usage" : { "tokens" : 3 , "x" : -0 } , "$d" : 1, "n": 1E2 } "#,
            r#"{"a":{"$serde_json::private::Number":"1.50"},"$serde_json::private::Number":"2"}"#,
        ];
        for mapping in MAPPINGS {
            let kable = kable(mapping);
            for properties in cases {
                let (text, map) = both(&kable, properties);
                assert_eq!(text.as_ref(), Some(&map), "{properties} {mapping:?}");
            }
        }
    }

    #[test]
    fn what_the_map_must_write_is_left_to_it() {
        let kable = kable(&[("a", "b")]);
        for properties in [
            // Rejected by the map path, naming the number.
            r#"{"a":1,"deep":{"x":[1e400]}}"#,
            r#"{"a":-1e-400}"#,
            r#"{"usage":{"tokens":[1e-400]}}"#,
            // serde_json's own token, read its way.
            r#"{"a":{"$serde_json::private::RawValue":"{\"x\":1}"}}"#,
        ] {
            let (text, map) = both(&kable, properties);
            assert_eq!(text, None, "{properties}: the map writes {map}");
        }
        assert_eq!(kable.record_from_text("u", "t", "m", "[1]"), None);
        assert_eq!(kable.record_from_text("u", "t", "m", "{\"a\":"), None);
    }

    /// Short keys, which repeat, and now and then one with a dot or empty.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![9 => "[a-c]{1,2}", 1 => "[a-c.]{0,3}"]
    }

    /// Any JSON value, nested a few levels, with keys that collide once sorted.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,3})?"
                .prop_map(|text| serde_json::from_str(&text).unwrap()),
            "[ -~é\u{1}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..5)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// A dot path over the same keys, now and then through an array.
    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop_oneof![6 => key(), 1 => "[0-2]"], 1..4)
            .prop_map(|segments| segments.join("."))
    }

    proptest! {
        /// Whatever the properties and the mapping, the text path writes what
        /// the map path writes, or leaves them to it.
        #[test]
        fn any_properties_are_written_as_the_map_writes_them(
            members in prop::collection::vec((key(), json_value()), 0..8),
            mapping in prop::collection::vec((path(), key()), 0..4),
            pretty in any::<bool>(),
        ) {
            // Written as members, repeated keys included; compact, or with white space.
            let value = |value: &Value| match pretty {
                true => serde_json::to_string_pretty(value).unwrap(),
                false => value.to_string(),
            };
            let text = format!(
                "{{{}}}",
                members
                    .iter()
                    .map(|(key, v)| format!("{}:{}", Value::String(key.clone()), value(v)))
                    .collect::<Vec<_>>()
                    .join(if pretty { " ,\n " } else { "," })
            );
            let mapping: Vec<(&str, &str)> =
                mapping.iter().map(|(from, to)| (from.as_str(), to.as_str())).collect();
            let (from_text, from_map) = both(&kable(&mapping), &text);
            if let Some(from_text) = from_text {
                prop_assert_eq!(from_text, from_map);
            } else {
                prop_assert!(from_map.starts_with("rejected"), "{} left to the map", text);
            }
        }
    }
}
