//! The lengths of the files kept beside a checkpoint, by their suffix, saved
//! among the checkpoint's own keys as `<suffix>_length` (`customers_length`),
//! as they always were: checkpoints written before keep resuming.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

const KEY_END: &str = "_length";

pub(super) fn serialize<S: Serializer>(
    lengths: &BTreeMap<String, u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    lengths
        .iter()
        .map(|(suffix, length)| (format!("{suffix}{KEY_END}"), *length))
        .collect::<BTreeMap<String, u64>>()
        .serialize(serializer)
}

/// The keys the checkpoint's own fields left: those that end in `_length`
/// and hold a length; any other key a later version may add is ignored.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, u64>, D::Error> {
    let rest = BTreeMap::<String, Value>::deserialize(deserializer)?;
    Ok(rest
        .into_iter()
        .filter_map(|(key, value)| {
            let suffix = key.strip_suffix(KEY_END)?;
            Some((suffix.to_owned(), value.as_u64()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Saved {
        rejects_length: Option<u64>,
        #[serde(flatten, with = "super")]
        kept: BTreeMap<String, u64>,
        pass: usize,
    }

    #[test]
    fn lengths_keep_their_keys_and_place() {
        let saved = Saved {
            rejects_length: Some(3),
            kept: BTreeMap::from([("customers".to_owned(), 42)]),
            pass: 0,
        };
        let json = serde_json::to_string(&saved).unwrap();
        assert_eq!(
            json,
            r#"{"rejects_length":3,"customers_length":42,"pass":0}"#
        );
        assert_eq!(serde_json::from_str::<Saved>(&json).unwrap(), saved);
        let other: Saved = serde_json::from_str(
            r#"{"rejects_length":null,"pass":1,"later":[1],"odd_length":"x"}"#,
        )
        .unwrap();
        assert!(other.kept.is_empty());
    }
}
