//! Amberflo's dimensions and traits: properties flattened to dotted keys,
//! keys and values made into what Amberflo takes, and keys that would become
//! one refused.

mod line;
mod plain;
mod scan;

pub(super) use plain::PlainProperties;

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::destination::{outgoing_text, write_json_str};
use crate::event::reason::Reason;
use crate::event::short_str;

/// Amberflo's limit on a dimension or trait value.
const MAX_VALUE_CHARS: usize = 200;

/// Writes the dimensions object: `name` (page, screen) and the properties but
/// `skip` (track's `value`), made into what Amberflo takes. Written straight into
/// the record, value by value, since this runs for every event; the map-based
/// path below gives the same object, and is taken when some key is not already
/// what Amberflo takes (empty, with a dot or a character to clean): two keys
/// could then become one, which rejects the event. Gives the first key or
/// value changed on the way (see `Flat::rewrite`).
pub(super) fn write_dimensions(
    out: &mut Vec<u8>,
    name: Option<&Value>,
    properties: &Map<String, Value>,
    skip: Option<&str>,
) -> Result<Option<String>, Reason> {
    let nested_name = name.is_some_and(|n| n.is_object() || n.is_array());
    if nested_name || has_unusual_key(properties) {
        let dimensions = dimension_map(name, properties, skip)?;
        write_flat(out, &dimensions);
        return Ok(dimensions.rewrite);
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
    // A property called `name` that gives a value wins over the call's own name.
    let overridden = properties
        .get("name")
        .is_some_and(|v| !matches!(v, Value::Object(_)) && gives_text(v));
    if let Some(name) = name.filter(|_| !overridden) {
        writer.value("name", name);
    }
    writer.within = "properties.";
    for (key, value) in properties.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
        writer.value(key, value);
    }
    writer.out.push(b'}');
    Ok(writer.rewrite)
}

/// `write_dimensions` for an event kept as its line, from the JSON text of
/// its `properties`, without building them (see `line`). None, with nothing
/// written, when the map-based path must write them: a key that is not
/// plain, a nested name, text that is not an object.
pub(super) fn write_dimensions_from_text(
    out: &mut Vec<u8>,
    name: Option<&Value>,
    properties: &str,
    skip: Option<&str>,
) -> Option<Option<String>> {
    if name.is_some_and(|n| n.is_object() || n.is_array()) {
        return None;
    }
    let members = scan::object(properties).or_else(|| line::Node::object(properties))?;
    plain::write_members(out, name, &members, skip)
}

/// The dimensions as a map: the properties but `skip`, then what of the call's
/// `name` no property gave (a property called `name` wins over it).
fn dimension_map(
    name: Option<&Value>,
    properties: &Map<String, Value>,
    skip: Option<&str>,
) -> Result<Flat, Reason> {
    let mut dimensions = Flat::within("properties");
    for (key, value) in properties.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
        flatten_into(&mut dimensions, key, value)
            .map_err(|collision| collision.reason("properties", "dimension"))?;
    }
    if let Some(name) = name {
        let mut own = Flat::default();
        flatten_into(&mut own, "name", name)
            .map_err(|collision| collision.reason("", "dimension"))?;
        for (key, entry) in own.values {
            if let std::collections::btree_map::Entry::Vacant(free) = dimensions.values.entry(key) {
                free.insert(entry);
                dimensions.rewrite = dimensions.rewrite.or(own.rewrite.take());
            }
        }
    }
    Ok(dimensions)
}

/// `{"key":"value",...}`; keys and values are already clean.
fn write_flat(out: &mut Vec<u8>, flat: &Flat) {
    out.push(b'{');
    for (i, (key, (value, _))) in flat.values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write_json_str(out, value);
    }
    out.push(b'}');
}

/// Whether a scalar or an array of scalars turns into a dimension value (not blank).
fn gives_text(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !blank_value(s),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let joined = items.iter().filter_map(scalar_text).collect::<Vec<_>>();
            !blank_value(&joined.join(","))
        }
        Value::Array(_) | Value::Object(_) => false,
        Value::Number(_) | Value::Bool(_) => true,
    }
}

/// Whether some key, at any depth, is not a plain key (see `plain_key`).
fn has_unusual_key(map: &Map<String, Value>) -> bool {
    fn nested(value: &Value) -> bool {
        match value {
            Value::Object(map) => has_unusual_key(map),
            Value::Array(items) => items.iter().any(nested),
            _ => false,
        }
    }
    map.iter()
        .any(|(key, value)| !plain_key(key) || nested(value))
}

/// A key that is a dimension key as it is: not blank, no dot (a nested key's
/// path could then meet it), and only characters Amberflo takes.
fn plain_key(key: &str) -> bool {
    key.bytes().any(|b| b != b' ')
        && key
            .bytes()
            .all(|b| b != b'.' && b.is_ascii() && ALLOWED[b as usize])
}

/// Empty or white space only. Amberflo's SDKs refuse such keys and values,
/// so they are dropped as empty ones are.
pub(super) fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

/// Whether a value is blank as written or once cut to Amberflo's limit
/// (sanitised, only a space is still white space).
fn blank_value(text: &str) -> bool {
    // Most values start with a character that is not white space in any
    // sense: not blank, and no longer so once cut.
    if text
        .as_bytes()
        .first()
        .is_some_and(|&b| b > b' ' && b < 0x80)
    {
        return false;
    }
    is_blank(text)
        || (text.len() > MAX_VALUE_CHARS
            && text.starts_with(' ')
            && text.chars().take(MAX_VALUE_CHARS).all(|c| c == ' '))
}

struct DimensionWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Where the values being written are in the event: `properties.`, or
    /// nothing for the call's own name.
    within: &'static str,
    /// The dotted key of the value being written.
    path: String,
    /// A joined array's text before it is sanitised.
    text: String,
    /// The first value changed, as `Flat::rewrite` words it.
    rewrite: Option<String>,
}

impl DimensionWriter<'_> {
    fn value(&mut self, key: &str, value: &Value) {
        let depth = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        match value {
            Value::Null => {}
            Value::Object(map) => {
                for (key, value) in map {
                    self.value(key, value);
                }
            }
            Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
                let mut text = std::mem::take(&mut self.text);
                text.clear();
                for (i, item) in items.iter().filter(|v| !v.is_null()).enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    push_scalar(&mut text, item);
                }
                self.scalar(&text);
                self.text = text;
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(&i.to_string(), item);
                }
            }
            Value::String(s) => self.scalar(s),
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

    /// `"path":"value"`, sanitised and cut; nothing for a blank value.
    fn scalar(&mut self, text: &str) {
        if blank_value(text) {
            return;
        }
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        // Every key written here is plain (see `plain_key`), and so is the
        // path: nothing in it JSON escapes.
        debug_assert!(
            self.path
                .bytes()
                .all(|b| b.is_ascii() && ALLOWED[b as usize])
        );
        self.out.push(b'"');
        self.out.extend_from_slice(self.path.as_bytes());
        self.out.extend_from_slice(b"\":\"");
        // Sanitised text is plain ASCII with nothing JSON must escape.
        let start = self.out.len();
        let mut changed = text.len() > MAX_VALUE_CHARS;
        let bytes = &text.as_bytes()[..text.len().min(MAX_VALUE_CHARS)];
        if bytes.iter().all(|&b| b.is_ascii() && ALLOWED[b as usize]) {
            // Most values are taken as they are: copied at once.
            self.out.extend_from_slice(bytes);
        } else if text.is_ascii() {
            self.out.extend(bytes.iter().map(|&b| {
                if ALLOWED[b as usize] {
                    b
                } else {
                    changed = true;
                    b'_'
                }
            }));
        } else {
            // A character outside ASCII is never taken.
            changed = true;
            for c in text.chars().take(MAX_VALUE_CHARS) {
                self.out.push(if allowed(c) { c as u8 } else { b'_' });
            }
        }
        if changed && self.rewrite.is_none() {
            let sent = String::from_utf8_lossy(&self.out[start..]);
            let place = format!("{}{}", self.within, self.path);
            self.rewrite = Some(value_rewrite(&place, text, &sent));
        }
        self.out.push(b'"');
    }
}

fn push_scalar(text: &mut String, value: &Value) {
    match value {
        Value::String(s) => text.push_str(s),
        Value::Number(n) => push_number(text, n),
        Value::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
        _ => {}
    }
}

fn push_number(text: &mut String, n: &Number) {
    text.push_str(&outgoing_text(n));
}

/// A scalar as text: strings as they are, numbers and booleans as text.
pub(super) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(outgoing_text(n).into_owned()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Dimensions or traits as Amberflo takes them: each clean key with its value,
/// and where in the event it came from (to name both keys when two meet).
#[derive(Default)]
pub(super) struct Flat {
    values: BTreeMap<String, (String, String)>,
    /// The object the keys are in (`properties`, `traits`), or nothing.
    within: &'static str,
    /// The first key or value changed to what Amberflo takes:
    /// `properties.path "/v1/search" was sent as "_v1_search"`.
    pub(super) rewrite: Option<String>,
}

impl Flat {
    pub(super) fn within(within: &'static str) -> Flat {
        Flat {
            within,
            ..Flat::default()
        }
    }

    pub(super) fn into_values(self) -> BTreeMap<String, String> {
        self.values
            .into_iter()
            .map(|(key, (value, _))| (key, value))
            .collect()
    }

    /// Adds a value, sanitised and cut; nothing for a blank one. `renamed`:
    /// the key was cleaned.
    fn insert(
        &mut self,
        key: String,
        shown: String,
        renamed: bool,
        text: &str,
    ) -> Result<(), Collision> {
        if blank_value(text) {
            return Ok(());
        }
        let value = sanitise(text);
        if self.rewrite.is_none() {
            let place = place(self.within, &shown);
            if renamed {
                self.rewrite = Some(format!("key {place} was sent as \"{key}\""));
            } else if value != text {
                self.rewrite = Some(value_rewrite(&place, text, &value));
            }
        }
        match self.values.entry(key) {
            std::collections::btree_map::Entry::Occupied(taken) => Err(Collision {
                first: taken.get().1.clone(),
                second: shown,
                key: taken.key().clone(),
            }),
            std::collections::btree_map::Entry::Vacant(free) => {
                free.insert((value, shown));
                Ok(())
            }
        }
    }
}

/// Two keys of an event that would become the same Amberflo key: one value
/// would be lost, so the event is rejected instead.
pub(super) struct Collision {
    /// Where each came from, as `shown_key` writes it.
    first: String,
    second: String,
    /// The key both become.
    key: String,
}

impl Collision {
    /// `within`: the object the keys are in (`properties`, `traits`); `what`:
    /// the kind of key they become (`dimension`, `trait`).
    pub(super) fn reason(&self, within: &str, what: &str) -> Reason {
        Reason::new(
            format!("{what} keys collide"),
            format!(
                "{} and {} both become {what} \"{}\"; rename one",
                place(within, &self.first),
                place(within, &self.second),
                self.key
            ),
        )
    }
}

/// A key as `shown_key` writes it, in the object `within` (or at the top).
fn place(within: &str, shown: &str) -> String {
    if within.is_empty() {
        shown.trim_start_matches('.').to_owned()
    } else {
        format!("{within}{shown}")
    }
}

/// `properties.path "/v1/search" was sent as "_v1_search"`.
fn value_rewrite(place: &str, text: &str, sent: &str) -> String {
    format!(
        "{place} {} was sent as {}",
        short_str(text),
        short_str(sent)
    )
}

/// The run's warning: `events` events had keys or values changed, `example` the first.
pub(super) fn rewrite_warning(events: u64, example: &str) -> String {
    format!(
        "{events} event{} had dimension or trait keys or values Amberflo does not take as \
         they are, so it stores them otherwise than the input has them: each character \
         outside its set was sent as `_`, and a value over {MAX_VALUE_CHARS} characters cut \
         (the first: {example})",
        if events == 1 { "" } else { "s" }
    )
}

/// A key as it is written in the event, unmistakably: `.key` when it is plain,
/// `["a/b"]` (JSON) when it has a dot or a character Amberflo does not take.
fn shown_key(key: &str) -> String {
    if plain_key(key) {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

/// A key made into what Amberflo takes: every other character becomes `_`.
fn clean_key(key: &str) -> String {
    key.chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect()
}

/// Adds a property as Amberflo dimensions: objects flattened to dotted keys,
/// arrays of scalars joined with `,` (other arrays flattened by index), keys and
/// values sanitised, values cut; nulls, blank values and blank keys (empty or
/// white space only) dropped. Two keys that become one are a collision.
pub(super) fn flatten_into(out: &mut Flat, key: &str, value: &Value) -> Result<(), Collision> {
    if is_blank(key) {
        return Ok(());
    }
    let clean = clean_key(key);
    let renamed = clean != key;
    flatten(out, clean, shown_key(key), renamed, value)
}

fn flatten(
    out: &mut Flat,
    key: String,
    shown: String,
    renamed: bool,
    value: &Value,
) -> Result<(), Collision> {
    match value {
        Value::Null => Ok(()),
        Value::Object(map) => {
            for (member, value) in map.iter().filter(|(member, _)| !is_blank(member)) {
                let clean = clean_key(member);
                let nested_renamed = renamed || clean != *member;
                let nested_key = format!("{key}.{clean}");
                let nested_shown = format!("{shown}{}", shown_key(member));
                flatten(out, nested_key, nested_shown, nested_renamed, value)?;
            }
            Ok(())
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let joined = items
                .iter()
                .filter_map(scalar_text)
                .collect::<Vec<_>>()
                .join(",");
            out.insert(key, shown, renamed, &joined)
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let (key, shown) = (format!("{key}.{i}"), format!("{shown}.{i}"));
                flatten(out, key, shown, renamed, item)?;
            }
            Ok(())
        }
        scalar => match scalar_text(scalar) {
            Some(text) => out.insert(key, shown, renamed, &text),
            None => Ok(()),
        },
    }
}

/// Replaces every character outside Amberflo's allowed set with `_` and cuts to 200 characters.
fn sanitise(text: &str) -> String {
    text.chars()
        .take(MAX_VALUE_CHARS)
        .map(|c| if allowed(c) { c } else { '_' })
        .collect()
}

fn allowed(c: char) -> bool {
    c.is_ascii() && ALLOWED[c as usize]
}

/// Amberflo's dimension characters, by ASCII code.
const ALLOWED: [bool; 128] = {
    let mut table = [false; 128];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b" -_!.*'()&$@=;:+,?";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dims(properties: Value) -> BTreeMap<String, String> {
        dimension_map(None, properties.as_object().unwrap(), None)
            .unwrap_or_else(|reason| panic!("{reason:?}"))
            .into_values()
    }

    #[test]
    fn dimension_values_follow_amberflo_rules() {
        let d = dims(json!({
            "url": "https://google.com",
            "title": "Welcome | Initech",
            "n": 2.5, "i": 7, "b": false,
            "model": {"name": "gpt", "size": {"gb": 3}},
            "tags": ["a", 1, true, null],
            "items": [{"sku": "x"}],
            "none": null, "empty": "", "blank": [],
            "long": "é".repeat(300),
        }));
        let expected: BTreeMap<String, String> = [
            ("url", "https:__google.com"),
            ("title", "Welcome _ Initech"),
            ("n", "2.5"),
            ("i", "7"),
            ("b", "false"),
            ("model.name", "gpt"),
            ("model.size.gb", "3"),
            ("tags", "a,1,true"),
            ("items.0.sku", "x"),
            ("long", &"_".repeat(200)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(d, expected);
    }

    #[test]
    fn dimension_keys_are_cleaned_and_colliding_keys_named() {
        let d = dims(json!({"a/b": 1, "": 2, "m": {"": 3, "x|y": {"z": 4}}, "model.name": "gpt"}));
        let expected: BTreeMap<String, String> =
            [("a_b", "1"), ("m.x_y.z", "4"), ("model.name", "gpt")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(d, expected);
        for (properties, detail) in [
            (
                json!({"a/b": 1, "a|b": 2}),
                r#"properties["a/b"] and properties["a|b"] both become dimension "a_b"; rename one"#,
            ),
            (
                json!({"a_b": 1, "a|b": 2}),
                r#"properties.a_b and properties["a|b"] both become dimension "a_b"; rename one"#,
            ),
            (
                json!({"a": {"b": 1}, "a.b": 2}),
                r#"properties.a.b and properties["a.b"] both become dimension "a.b"; rename one"#,
            ),
        ] {
            let reason = dimension_map(None, properties.as_object().unwrap(), None)
                .err()
                .unwrap_or_else(|| panic!("{properties} taken"));
            assert_eq!(reason.kind, "dimension keys collide");
            assert_eq!(reason.detail, detail, "{properties}");
        }
        // An empty value does not take its key.
        assert_eq!(dims(json!({"a/b": "", "a|b": "x"}))["a_b"], "x");
    }

    /// Amberflo's SDKs refuse keys and values of white space only: they go as empty ones do.
    #[test]
    fn blank_keys_and_values_are_dropped() {
        let d = dims(json!({
            " ": "key of a space", "\t\n": "key of white space",
            "s": "   ", "t": "\t", "u": "\u{a0}\u{2003}", "a": [" ", null],
            "m": {" ": 1, "x": " ", "y": " y "},
            "cut": " ".repeat(250) + "x",
            "kept": "_", "joined": [" ", " "],
        }));
        let expected: BTreeMap<String, String> = [("m.y", " y "), ("kept", "_"), ("joined", " , ")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(d, expected);
    }

    /// The direct writer and the map give the same object.
    #[test]
    fn written_dimensions_match_the_map() {
        let cases = [
            (
                None,
                json!({"url": "https://google.com", "n": 2.5, "b": true, "m": {"x": {"y": [1, null, "a|b"]}}, "e": "", "z": null}),
            ),
            (
                Some(json!("Home")),
                json!({"title": "Welcome | Initech", "name": "Other"}),
            ),
            (
                Some(json!("Home")),
                json!({"name": null, "k": [[1], {"a": 2}]}),
            ),
            (Some(json!("Home")), json!({"name": {"first": "x"}})),
            (Some(json!("Home")), json!({"name": ["", ""]})),
            (Some(json!("Home")), json!({"name": [""]})),
            (
                Some(json!(12)),
                json!({"items": [{"sku": "é"}], "long": "x".repeat(300)}),
            ),
            (None, json!({"a": {"b": 1}, "a.b": 2, "value": 3})),
            (None, json!({"a": {"b": 1}, "a_c": 2, "value": "x/y"})),
            (Some(json!("Home")), json!({"": 1, "x|y": 2, "x_y": 3})),
            (Some(json!("Home")), json!({"n": {"": 1, "é": 2}})),
            (Some(json!({"a/b": 1, "a|b": 2})), json!({})),
            (Some(json!(["x", 1])), json!({"name": {"first": "f"}})),
            (
                Some(json!("Home")),
                json!({"name": "  ", "s": " \t", "k": "x"}),
            ),
            (Some(json!(" ")), json!({"name": [" "], "t": ["", " "]})),
            (
                Some(json!("Home")),
                json!({" ": 1, "m": {"\t": 2, "x": " "}, "y": "a"}),
            ),
            (
                None,
                json!({"long": " ".repeat(250) + "x", "ok": "x".repeat(250)}),
            ),
            (None, json!({})),
        ];
        for (name, properties) in cases {
            let map = properties.as_object().unwrap();
            // The writer, forced on the map path (as it chooses it itself) or not.
            let mapped = dimension_map(name.as_ref(), map, Some("value")).map(|flat| {
                let mut out = Vec::new();
                write_flat(&mut out, &flat);
                (out, flat.rewrite)
            });
            let mut out = Vec::new();
            let written = write_dimensions(&mut out, name.as_ref(), map, Some("value"))
                .map(|rewrite| (out, rewrite));
            match (written, mapped) {
                (Ok((written, written_rewrite)), Ok((mapped, mapped_rewrite))) => {
                    let written: BTreeMap<String, String> =
                        serde_json::from_slice(&written).unwrap();
                    let mapped: BTreeMap<String, String> = serde_json::from_slice(&mapped).unwrap();
                    assert_eq!(written, mapped, "{name:?} {properties}");
                    // The same first change is named, whichever path wrote it.
                    assert_eq!(written_rewrite, mapped_rewrite, "{name:?} {properties}");
                }
                (Err(written), Err(mapped)) => assert_eq!(written, mapped, "{name:?} {properties}"),
                (written, mapped) => panic!("{name:?} {properties}: {written:?} but {mapped:?}"),
            }
        }
    }
}
