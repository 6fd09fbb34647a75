//! What the destinations' readers of an object's text share (Amberflo's
//! dimensions and traits, Kable's `data`): keys and strings borrowed from the
//! line, serde_json's own tokens, and members ordered as a `serde_json::Map`
//! holds them, so that writing from the text gives the bytes writing from the
//! map gives.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, Visitor};

/// What serde_json hands a visitor for a number when numbers keep their
/// digits (`arbitrary_precision`): a map of this one key to the number's text.
pub(crate) const NUMBER_TOKEN: &str = "$serde_json::private::Number";
/// An object whose first key is this one is read by `serde_json::Value` as
/// the JSON its string holds (`raw_value`): left to the map-based path.
pub(crate) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// A string or a key, borrowed when it has no escapes.
pub(crate) struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text))
    }
}

/// An object's members in input order made into a map's: sorted by key, the
/// last of a repeated key kept.
pub(crate) fn kept<'a, T>(mut members: Vec<(Cow<'a, str>, T)>) -> Vec<(Cow<'a, str>, T)> {
    // Most objects come with their keys in order and once each.
    if members.windows(2).all(|pair| pair[0].0 < pair[1].0) {
        return members;
    }
    // A stable sort keeps a repeated key's members in input order: the last is
    // kept, moved into the place of the first.
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, kept| {
        let repeated = later.0 == kept.0;
        if repeated {
            std::mem::swap(later, kept);
        }
        repeated
    });
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_sorted_and_the_last_of_a_repeated_key_kept() {
        let members = |pairs: &[(&'static str, u8)]| -> Vec<(Cow<'static, str>, u8)> {
            pairs.iter().map(|&(k, v)| (Cow::Borrowed(k), v)).collect()
        };
        assert_eq!(
            kept(members(&[("a", 1), ("b", 2)])),
            members(&[("a", 1), ("b", 2)])
        );
        assert_eq!(
            kept(members(&[("b", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5)])),
            members(&[("a", 4), ("b", 3), ("c", 5)])
        );
        assert_eq!(kept(members(&[("a", 1), ("a", 2)])), members(&[("a", 2)]));
    }
}
