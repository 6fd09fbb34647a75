//! Dot paths (`properties.a.b.0`): into parsed values, and into JSON text, where
//! only the members on the way are read and the value at the end is built.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Looks a dot path up in an object; a numeric segment indexes an array.
pub fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    descend(object.get(segments.next()?)?, segments)
}

/// The value the rest of a dot path leads to from `current`.
pub(super) fn descend<'a, 's>(
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

/// The value the rest of a dot path leads to from a value's JSON text.
pub(super) fn descend_text<'s>(
    mut raw: &str,
    segments: impl Iterator<Item = &'s str>,
) -> Option<Value> {
    for segment in segments {
        raw = member_of(raw, segment)?;
    }
    value_of(raw)
}

/// A JSON string's text when it has no escapes, which is what it means as it is.
pub(super) fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// A string from its JSON text, borrowed when it has no escapes.
pub(super) fn string_of(raw: &str) -> Option<Cow<'_, str>> {
    match plain_string(raw) {
        Some(text) => Some(Cow::Borrowed(text)),
        None => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
    }
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
    match raw.as_bytes().first()? {
        b'{' => member_named(raw, segment),
        b'[' => {
            let mut deserializer = serde_json::Deserializer::from_str(raw);
            serde::de::DeserializeSeed::deserialize(
                ItemAt(segment.parse().ok()?),
                &mut deserializer,
            )
            .ok()?
        }
        _ => None,
    }
}

/// The JSON text of an object's member (the last of a repeated key); the
/// object's text may have white space around it, as a whole line may.
pub(super) fn member_named<'a>(object: &'a str, key: &str) -> Option<&'a str> {
    let mut deserializer = serde_json::Deserializer::from_str(object);
    serde::de::DeserializeSeed::deserialize(MemberNamed(key), &mut deserializer).ok()?
}

/// An object's member by its key (the last of a repeated key), for `member_named`.
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

/// An object key, borrowed from the line when it has no escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing::event;
    use serde_json::json;

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let e = event(json!({"properties": {"a": {"b": [10, {"c": 3}]}}}));
        assert_eq!(e.get("properties.a.b.1.c").as_deref(), Some(&json!(3)));
        assert_eq!(e.get("properties.a.x"), None);
        let mut props = e.properties().clone();
        assert_eq!(remove_path(&mut props, "a.b"), Some(json!([10, {"c": 3}])));
        assert_eq!(Value::Object(props), json!({"a": {}}));
    }

    /// JSON text answers a path as its parsed value does.
    #[test]
    fn text_answers_paths_like_values() {
        let raw = r#"{"a":{"b":[10,{"c":"x\"y"}]},"a":{"b":[1,{"c":"z"}]},"s":"t"}"#;
        let parsed: Value = serde_json::from_str(raw).unwrap();
        for path in ["a.b.0", "a.b.1.c", "a.b.2", "a.x", "s", "s.0", "missing"] {
            let Value::Object(object) = &parsed else {
                unreachable!()
            };
            assert_eq!(
                descend_text(raw, path.split('.')).as_ref(),
                lookup(object, path),
                "{path}"
            );
        }
        assert_eq!(member_named(" \t{\"k\":1}\n", "k"), Some("1"));
    }
}
