//! Properties and traits read from plain JSON text (see `scan`), as most
//! events have them, and written as the map-based paths write them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::{DimensionWriter, blank_value, is_blank, line, sanitise, scan, value_rewrite};

/// `properties` read from plain JSON text (see `scan`): every key is as the
/// line writes it, without escapes.
pub(in crate::destination::amberflo) struct PlainProperties<'a>(
    Vec<(Cow<'a, str>, line::Node<'a>)>,
);

impl<'a> PlainProperties<'a> {
    /// None when the text is not such plain JSON.
    pub(in crate::destination::amberflo) fn read(text: &'a str) -> Option<PlainProperties<'a>> {
        scan::object(text).map(PlainProperties)
    }

    /// A property that is a scalar, as a `Value` (None inside when there is
    /// none); None when it is an object or an array.
    pub(in crate::destination::amberflo) fn scalar(&self, key: &str) -> Option<Option<Value>> {
        Some(match line::member(&self.0, key) {
            None => None,
            Some(line::Node::Null) => Some(Value::Null),
            Some(line::Node::Bool(b)) => Some(Value::Bool(*b)),
            Some(line::Node::Number(n)) => Some(Value::Number(n.clone())),
            Some(line::Node::Text(text)) => Some(Value::String(text.clone().into_owned())),
            Some(line::Node::Array(_) | line::Node::Object(_)) => return None,
        })
    }

    /// A customer's traits from these (read from `traits`): its name and
    /// email, the other traits flattened as `flatten_into` makes them, and
    /// the first key or value changed. None, for the map-based path, when
    /// some key is not plain; with plain keys none is cleaned and no two
    /// can meet.
    pub(in crate::destination::amberflo) fn traits(&self) -> Option<PlainTraits> {
        if line::has_unusual_key(&self.0) {
            return None;
        }
        let given = |key: &str| {
            let mut text = String::new();
            match line::member(&self.0, key)? {
                line::Node::Text(s) => text.push_str(s),
                node @ (line::Node::Number(_) | line::Node::Bool(_)) => {
                    line::push_scalar(&mut text, node)
                }
                _ => return None,
            }
            Some(text).filter(|text| !is_blank(text))
        };
        let mut traits = PlainTraits {
            name: given("name"),
            email: given("email"),
            values: BTreeMap::new(),
            rewrite: None,
        };
        let mut path = String::new();
        for (key, node) in self.0.iter().filter(|(k, _)| k != "name" && k != "email") {
            path.clear();
            path.push_str(key);
            traits.flatten(&mut path, node);
        }
        Some(traits)
    }

    /// As `write_dimensions_from_text` with these properties' text.
    pub(in crate::destination::amberflo) fn write_dimensions(
        &self,
        out: &mut Vec<u8>,
        name: Option<&Value>,
        skip: Option<&str>,
    ) -> Option<Option<String>> {
        if name.is_some_and(|n| n.is_object() || n.is_array()) {
            return None;
        }
        write_members(out, name, &self.0, skip)
    }
}

/// A customer's name, email and other traits, read from plain `traits`.
pub(in crate::destination::amberflo) struct PlainTraits {
    pub(in crate::destination::amberflo) name: Option<String>,
    pub(in crate::destination::amberflo) email: Option<String>,
    pub(in crate::destination::amberflo) values: BTreeMap<String, String>,
    /// The first value changed, as `Flat::rewrite` words it.
    pub(in crate::destination::amberflo) rewrite: Option<String>,
}

impl PlainTraits {
    /// As `flatten`, for a value at the dotted key `path` (plain keys).
    fn flatten(&mut self, path: &mut String, node: &line::Node) {
        match node {
            line::Node::Null => {}
            line::Node::Object(members) => {
                for (key, node) in members {
                    let depth = path.len();
                    path.push('.');
                    path.push_str(key);
                    self.flatten(path, node);
                    path.truncate(depth);
                }
            }
            line::Node::Array(items) if items.iter().all(|n| !n.is_nested()) => {
                let mut joined = String::new();
                for (i, item) in items
                    .iter()
                    .filter(|n| !matches!(n, line::Node::Null))
                    .enumerate()
                {
                    if i > 0 {
                        joined.push(',');
                    }
                    line::push_scalar(&mut joined, item);
                }
                self.insert(path, &joined);
            }
            line::Node::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let depth = path.len();
                    path.push('.');
                    path.push_str(&i.to_string());
                    self.flatten(path, item);
                    path.truncate(depth);
                }
            }
            line::Node::Text(text) => self.insert(path, text),
            scalar => {
                let mut text = String::new();
                line::push_scalar(&mut text, scalar);
                self.insert(path, &text);
            }
        }
    }

    /// As `Flat::insert` for a key that was not cleaned.
    fn insert(&mut self, path: &str, text: &str) {
        if blank_value(text) {
            return;
        }
        let value = sanitise(text);
        if self.rewrite.is_none() && value != text {
            self.rewrite = Some(value_rewrite(&format!("traits.{path}"), text, &value));
        }
        self.values.insert(path.to_owned(), value);
    }
}

/// The dimensions from `properties`' members read from the line; None, with
/// nothing written, when some key is not plain.
pub(super) fn write_members(
    out: &mut Vec<u8>,
    name: Option<&Value>,
    members: &[(Cow<'_, str>, line::Node<'_>)],
    skip: Option<&str>,
) -> Option<Option<String>> {
    if line::has_unusual_key(members) {
        return None;
    }
    let mut writer = DimensionWriter {
        out,
        first: true,
        within: "",
        path: String::new(),
        text: String::new(),
        rewrite: None,
    };
    writer.out.push(b'{');
    // As `write_dimensions`: a property called `name` that gives a value wins.
    let overridden = line::member(members, "name")
        .is_some_and(|v| !matches!(v, line::Node::Object(_)) && line::gives_text(v));
    if let Some(name) = name.filter(|_| !overridden) {
        writer.value("name", name);
    }
    writer.within = "properties.";
    for (key, node) in members.iter().filter(|(k, _)| Some(k.as_ref()) != skip) {
        writer.node(key, node);
    }
    writer.out.push(b'}');
    Some(writer.rewrite)
}

#[cfg(test)]
mod tests {
    use super::PlainProperties;
    use crate::destination::amberflo::traits_from_map;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// The customer's traits read from the text, and by the map-based path
    /// (its reason for a refusal as text): None for the first when it leaves
    /// them to the map.
    fn both(traits: &str) -> (Option<String>, String) {
        let from_text = PlainProperties::read(traits)
            .and_then(|plain| plain.traits())
            .map(|t| format!("{:?}", (t.name, t.email, t.values, t.rewrite)));
        let map: Map<String, Value> = serde_json::from_str(traits).unwrap();
        let from_map = match traits_from_map(&map) {
            Ok(traits) => format!("{traits:?}"),
            Err(reason) => format!("rejected: {reason:?}"),
        };
        (from_text, from_map)
    }

    #[test]
    fn plain_traits_are_read_as_the_map_reads_them() {
        let long = format!("\"{}é\"", "a".repeat(250));
        for traits in [
            r#"{"name":"Ada Lovelace","email":"ada@example.com","plan":"pro","seats":12}"#,
            r#"{"name":"  ","email":null,"company":{"name":"Acme","size":[1,null,"x",true]}}"#,
            r#"{"name":42,"email":true,"path":"/v1/search","empty":{},"tags":[]}"#,
            r#"{"name":{"first":"A"},"email":["a"],"deep":[[1],[2,{"k":"v"}]],"n":1.50}"#,
            r#"{"dup":"first","dup":"last","long":LONG,"blank":" ","ws":"a   b"}"#,
            r#"{"big":123456789012345678901234567890,"e":1e3,"z":-0}"#,
            r#"{}"#,
        ] {
            let traits = traits.replace("LONG", &long);
            let (from_text, from_map) = both(&traits);
            assert_eq!(from_text.as_ref(), Some(&from_map), "{traits}");
        }
    }

    #[test]
    fn traits_with_keys_that_are_not_plain_are_left_to_the_map() {
        for traits in [
            r#"{"a.b":1,"a":{"b":2}}"#,
            r#"{"a/b":1,"a_b":2}"#,
            r#"{"company":{"":1}}"#,
            r#"{"é":1}"#,
            r#"{"k\u0065y":1}"#,
        ] {
            assert_eq!(both(traits).0, None, "{traits}");
        }
        assert!(PlainProperties::read("\"text\"").is_none());
    }

    /// Short keys, which repeat; now and then one that is not plain.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just("name".to_owned()),
            3 => Just("email".to_owned()),
            20 => "[a-d_-]{1,3}",
            2 => "[a-d_ ./]{0,3}"
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,2})?"
                .prop_map(|text| serde_json::from_str(&text).unwrap()),
            "[ -~é/]{0,12}".prop_map(Value::String),
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
        /// Whatever the traits, the text path reads what the map path reads,
        /// or leaves them to it.
        #[test]
        fn any_traits_are_read_as_the_map_reads_them(
            members in prop::collection::vec((key(), json_value()), 0..8),
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
            let (from_text, from_map) = both(&text);
            if let Some(from_text) = from_text {
                prop_assert_eq!(from_text, from_map);
            }
        }
    }
}
