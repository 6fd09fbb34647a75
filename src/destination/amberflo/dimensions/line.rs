//! The dimensions written straight from the JSON text of an event's
//! `properties`, as the event's line holds it: every property is read once,
//! borrowed where it has no escapes, in the order and with the choice of a
//! `serde_json::Map` (keys sorted, the last of a repeated key kept). Building
//! `Value`s for them (a string and a tree node for each member) cost more than
//! the rest of an event's translation; what is written is the same.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::{DimensionWriter, blank_value, plain_key, push_number};
pub(super) use crate::destination::members::kept;
use crate::destination::members::{NUMBER_TOKEN, RAW_VALUE_TOKEN, Text};

/// A JSON value borrowed from the line.
#[derive(Debug, PartialEq)]
pub(super) enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Text(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Sorted by key, the last of a repeated key kept.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// The object `text` holds; None when it is not one, or does not parse
    /// (the map-based path then says why).
    pub(super) fn object(text: &'a str) -> Option<Vec<(Cow<'a, str>, Node<'a>)>> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let node = NodeSeed.deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        match node {
            Node::Object(members) => Some(members),
            _ => None,
        }
    }

    pub(super) fn is_nested(&self) -> bool {
        matches!(self, Node::Object(_) | Node::Array(_))
    }
}

/// Whether some key, at any depth, is not a plain key (as `has_unusual_key`).
pub(super) fn has_unusual_key(members: &[(Cow<str>, Node)]) -> bool {
    fn nested(node: &Node) -> bool {
        match node {
            Node::Object(members) => has_unusual_key(members),
            Node::Array(items) => items.iter().any(nested),
            _ => false,
        }
    }
    members
        .iter()
        .any(|(key, node)| !plain_key(key) || nested(node))
}

/// The last member of a key.
pub(super) fn member<'n, 'a>(
    members: &'n [(Cow<'a, str>, Node<'a>)],
    key: &str,
) -> Option<&'n Node<'a>> {
    members.iter().find(|(k, _)| k == key).map(|(_, node)| node)
}

/// Whether a value turns into a dimension value (as `gives_text`).
pub(super) fn gives_text(node: &Node) -> bool {
    match node {
        Node::Null => false,
        Node::Text(s) => !blank_value(s),
        Node::Array(items) if items.iter().all(|n| !n.is_nested()) => {
            let mut joined = String::new();
            for (i, item) in items
                .iter()
                .filter(|n| !matches!(n, Node::Null))
                .enumerate()
            {
                if i > 0 {
                    joined.push(',');
                }
                push_scalar(&mut joined, item);
            }
            !blank_value(&joined)
        }
        Node::Array(_) | Node::Object(_) => false,
        Node::Number(_) | Node::Bool(_) => true,
    }
}

pub(super) fn push_scalar(text: &mut String, node: &Node) {
    match node {
        Node::Text(s) => text.push_str(s),
        Node::Number(n) => push_number(text, n),
        Node::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
        _ => {}
    }
}

impl DimensionWriter<'_> {
    /// As `value`, for a value borrowed from the line.
    pub(super) fn node(&mut self, key: &str, node: &Node) {
        let depth = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        match node {
            Node::Null => {}
            Node::Object(members) => {
                for (key, node) in members {
                    self.node(key, node);
                }
            }
            Node::Array(items) if items.iter().all(|n| !n.is_nested()) => {
                let mut text = std::mem::take(&mut self.text);
                text.clear();
                for (i, item) in items
                    .iter()
                    .filter(|n| !matches!(n, Node::Null))
                    .enumerate()
                {
                    if i > 0 {
                        text.push(',');
                    }
                    push_scalar(&mut text, item);
                }
                self.scalar(&text);
                self.text = text;
            }
            Node::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.node(&i.to_string(), item);
                }
            }
            Node::Text(s) => self.scalar(s),
            scalar => {
                let mut text = std::mem::take(&mut self.text);
                text.clear();
                push_scalar(&mut text, scalar);
                self.scalar(&text);
                self.text = text;
            }
        }
        self.path.truncate(depth);
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
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Number::from_f64(n)
            .map(Node::Number)
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
        let mut members: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(Text)? {
            if members.is_empty() && key == NUMBER_TOKEN {
                // As `serde_json::Value` reads it: the same digits kept.
                let text = map.next_value_seed(Text)?;
                let number = text.parse::<Number>().map_err(serde::de::Error::custom)?;
                return Ok(Node::Number(number));
            }
            if members.is_empty() && key == RAW_VALUE_TOKEN {
                return Err(serde::de::Error::custom("read as serde_json reads it"));
            }
            members.push((key, map.next_value_seed(NodeSeed)?));
        }
        Ok(Node::Object(kept(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{write_dimensions, write_dimensions_from_text};
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    /// A dimensions object and the first value rewritten.
    type Written = (String, Option<String>);

    /// The dimensions written from the text, and by the map-based path from
    /// the parsed map: None for the first when it leaves them to the map.
    fn both(
        name: Option<&Value>,
        properties: &str,
        skip: Option<&str>,
    ) -> (Option<Written>, Written) {
        let mut from_text = Vec::new();
        let text = write_dimensions_from_text(&mut from_text, name, properties, skip)
            .map(|rewrite| (String::from_utf8(from_text).unwrap(), rewrite));
        let map: Map<String, Value> = serde_json::from_str(properties).unwrap();
        let mut from_map = Vec::new();
        let rewrite = write_dimensions(&mut from_map, name, &map, skip)
            .unwrap_or_else(|reason| Some(format!("rejected: {reason}")));
        (text, (String::from_utf8(from_map).unwrap(), rewrite))
    }

    #[test]
    fn the_text_writes_what_the_map_writes() {
        let name = json!("Home");
        let cases = [
            r#"{"value":3,"region":"eu-central-1","bucket":"b 1","storage_class":"STANDARD"}"#,
            r#"{"b":1,"a":{"z":[1,null,"x",true],"y":{"k":1.50}},"a-b":"/v1/search","c":null}"#,
            r#"{"dup":"first","x":1,"dup":"last","dup":{"n":2}}"#,
            r#"{"products":[{"sku":"S-1","price":95.620},{"sku":"S-2","price":1e3}],"big":123456789012345678901234567890}"#,
            r#"{"name":"  ","tags":[],"empty":{},"e":"caf\u00e9 \"q\"","n":-0.0,"long":"LONG"}"#,
            r#"{"name":"Pricing page","path":"/pricing"}"#,
            r#"{"name":{"first":"x"},"v":false}"#,
            r#"{"name":[null," "],"v":[[1],[2,3]]}"#,
            r#"{"nested":{"k\u0065y":"escaped key","b":2}}"#,
            r#"{}"#,
        ];
        let long = format!("{}é", "a".repeat(250));
        let cases = cases.map(|case| case.replace("LONG", &long));
        for properties in &cases {
            for (name, skip) in [(None, Some("value")), (Some(&name), None)] {
                let (text, map) = both(name, properties, skip);
                assert_eq!(text.as_ref(), Some(&map), "{properties}");
            }
        }
    }

    #[test]
    fn keys_that_are_not_plain_are_left_to_the_map() {
        for properties in [
            r#"{"a.b":1}"#,
            r#"{"a":{"":1}}"#,
            r#"{"a":[{"é":1}]}"#,
            r#"{"a/b":1,"a_b":2}"#,
            r#"{"a":{"$serde_json::private::RawValue":"{\"x\":1}"}}"#,
        ] {
            let (text, _) = both(None, properties, None);
            assert_eq!(text, None, "{properties}");
        }
        let nested_name = json!({"first": "x"});
        assert_eq!(both(Some(&nested_name), r#"{"a":1}"#, None).0, None);
    }

    /// Short keys, which repeat; now and then one that is not plain.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![9 => "[a-d_-]{1,3}", 1 => "[a-d_ .-]{0,3}"]
    }

    /// Any JSON value, nested a few levels, with keys that collide once sorted.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,2})?"
                .prop_map(|text| serde_json::from_str(&text).unwrap()),
            "[ -~é]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the properties, the text path writes what the map path
        /// writes, or leaves them to it.
        #[test]
        fn any_properties_are_written_as_the_map_writes_them(
            members in prop::collection::vec((key(), json_value()), 0..8),
            name in prop::option::of(json_value()),
        ) {
            // Written as members, repeated keys included.
            let text = format!(
                "{{{}}}",
                members
                    .iter()
                    .map(|(key, value)| format!("{}:{value}", Value::String(key.clone())))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let (from_text, from_map) = both(name.as_ref(), &text, Some("value"));
            if let Some(from_text) = from_text {
                prop_assert_eq!(from_text, from_map);
            }
        }
    }
}
