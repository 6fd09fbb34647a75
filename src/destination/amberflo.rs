//! Amberflo: track, page and screen become meter records (`POST /ingest` on
//! the ingestion host); identify creates or updates the customer (`/customers`
//! on the API host), merged into the record Amberflo holds or replacing it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::{
    Common, Destination, Header, Kind, Payload, Request, Stream, Translation, write_json_str,
};
use crate::event::time::event_time;
use crate::event::{Event, numeric_text, short_text};
use crate::reason::Reason;
use crate::table::{Secret, Setting, SettingKind, SettingsError, TableReader, url_host};
use crate::wire::encoded;

/// Ingestion: the highly available host Amberflo's SDKs send meter records to.
pub const DEFAULT_ENDPOINT: &str = "https://ingest.amberflo.io";
/// Everything else (customers, usage queries): that host does not serve them.
pub const DEFAULT_API_ENDPOINT: &str = "https://app.amberflo.io";
pub const DEFAULT_BATCH: usize = 100;
pub const MAX_BATCH: usize = 1000;
/// Amberflo's limit on a dimension or trait value.
const MAX_VALUE_CHARS: usize = 200;

pub const SETTINGS: &[Setting] = &[API_ENDPOINT, IDENTIFY, ENSURE_CUSTOMERS, GZIP_REQUESTS];

const API_ENDPOINT: Setting = Setting {
    key: "api_endpoint",
    kind: SettingKind::Url,
    default: Some(
        "https://app.amberflo.io; endpoint when that is set to a host not under amberflo.io",
    ),
    required: false,
    help: "base URL of customer and usage calls (endpoint is ingestion's: POST /ingest)",
};
const IDENTIFY: Setting = Setting {
    key: "identify",
    kind: SettingKind::Text,
    default: Some("merge"),
    required: false,
    help: "merge: identify changes only what it gives, keeping the rest of the customer; \
           replace: identify writes the whole customer from the event (PUT /customers)",
};
const ENSURE_CUSTOMERS: Setting = Setting {
    key: "ensure_customers",
    kind: SettingKind::Bool,
    default: Some("false"),
    required: false,
    help: "make sure each customer exists before its first meter record (as --ensure-customers)",
};
const GZIP_REQUESTS: Setting = Setting {
    key: "gzip_requests",
    kind: SettingKind::Bool,
    default: Some("false"),
    required: false,
    help: "send ingestion bodies (POST /ingest) gzipped (Content-Encoding: gzip), as Amberflo's SDK does",
};

pub struct Amberflo {
    name: String,
    /// Ingestion's base URL.
    endpoint: String,
    /// The API host, and the key every request carries.
    api: Arc<Api>,
    ensure_customers: bool,
    gzip_requests: bool,
    merge: bool,
}

impl Amberflo {
    pub fn new(common: Common, table: &mut TableReader) -> Result<Amberflo, SettingsError> {
        let merge = match table.string(&IDENTIFY)?.as_deref() {
            None | Some("merge") => true,
            Some("replace") => false,
            Some(other) => {
                return Err(table.error(format!(
                    "key \"identify\": \"{other}\" is not merge or replace"
                )));
            }
        };
        let api = Arc::new(Api {
            endpoint: api_endpoint(&common, table)?,
            api_key: common.api_key,
        });
        Ok(Amberflo {
            name: common.name,
            endpoint: common
                .endpoint
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            api,
            ensure_customers: table.bool(&ENSURE_CUSTOMERS)?.unwrap_or(false),
            gzip_requests: table.bool(&GZIP_REQUESTS)?.unwrap_or(false),
            merge,
        })
    }
}

/// `api_endpoint`, else Amberflo's API host; but a set `endpoint` that is not
/// Amberflo's own (a proxy, a test server) serves both, so it is the default then.
fn api_endpoint(common: &Common, table: &mut TableReader) -> Result<String, SettingsError> {
    if let Some(url) = table.url(&API_ENDPOINT, common.allow_insecure)? {
        return Ok(url);
    }
    Ok(match &common.endpoint {
        Some(endpoint) if !is_amberflo_host(endpoint) => endpoint.clone(),
        _ => DEFAULT_API_ENDPOINT.to_owned(),
    })
}

fn is_amberflo_host(url: &str) -> bool {
    url_host(url).is_some_and(|host| host == "amberflo.io" || host.ends_with(".amberflo.io"))
}

/// An identify's customer. Merging, only what the event gives is written, so a
/// missing name is left out (and the record's own kept); replacing, the id stands in.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Customer<'a> {
    customer_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_email: Option<&'a str>,
    traits: BTreeMap<String, String>,
}

impl Destination for Amberflo {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Amberflo
    }

    fn secret(&self) -> &Secret {
        &self.api.api_key
    }

    fn amberflo_api(&self) -> Option<Arc<Api>> {
        Some(self.api.clone())
    }

    fn ensures_customers(&self) -> bool {
        self.ensure_customers
    }

    fn merges_customers(&self) -> bool {
        self.merge
    }

    fn translate(&self, event: &Event) -> Translation {
        if let Err(skip_or_reject) = super::screen(
            event,
            Kind::Amberflo,
            &["track", "page", "screen", "identify"],
        ) {
            return skip_or_reject;
        }
        let call = event.call_type().unwrap_or_default();
        let call = call.as_ref();
        if call == "identify" {
            return self.customer(event);
        }
        let Some(customer_id) = event.customer_id() else {
            return super::missing("customer id", "userId or anonymousId");
        };
        let time = match event_time(event) {
            Ok(time) => time,
            Err(e) => return Translation::Reject(Reason::new("no usable time", e.to_string())),
        };
        let properties = event.properties();
        let (meter_api_name, meter_value, name) = match call {
            "track" => {
                let Some(name) = event.id_at("event") else {
                    return super::missing("event name", "event");
                };
                match meter_value(properties.get("value")) {
                    Ok(value) => (name, value, None),
                    Err(reason) => return Translation::Reject(reason),
                }
            }
            _ => (call.to_owned(), Number::from(1), event.fields().get("name")),
        };
        let skip = if call == "track" { Some("value") } else { None };
        let unique_id = event.message_id();
        let mut json = Vec::with_capacity(256);
        json.extend_from_slice(b"{\"uniqueId\":");
        write_json_str(&mut json, &unique_id);
        json.extend_from_slice(b",\"customerId\":");
        write_json_str(&mut json, &customer_id);
        json.extend_from_slice(b",\"meterApiName\":");
        write_json_str(&mut json, &meter_api_name);
        json.extend_from_slice(b",\"meterValue\":");
        json.extend_from_slice(meter_value.to_string().as_bytes());
        json.extend_from_slice(b",\"meterTimeInMillis\":");
        json.extend_from_slice(time.as_millisecond().to_string().as_bytes());
        json.extend_from_slice(b",\"dimensions\":");
        if let Err(reason) = write_dimensions(&mut json, name, properties, skip) {
            return Translation::Reject(reason);
        }
        json.push(b'}');
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: String::from_utf8(json).expect("JSON written from strings is UTF-8"),
            key: unique_id,
            customer: Some(customer_id),
            time: Some(time),
            numeric_text: Box::default(),
        })
    }

    fn request(&self, stream: Stream, records: &[&str]) -> Request {
        match stream {
            Stream::Usage => {
                let body = super::json_array(records, 0);
                let mut request =
                    request(&self.endpoint, &self.api.api_key, "POST", "/ingest", body);
                // Only ingestion takes gzip, as in the SDK that sends it.
                if self.gzip_requests {
                    request
                        .headers
                        .push(Header::plain("Content-Encoding", "gzip"));
                }
                request
            }
            Stream::Customer => {
                let body = records.concat().into_bytes();
                self.api.request("PUT", "/customers", body)
            }
        }
    }
}

/// Every Amberflo request: the key in `X-API-KEY`, JSON both ways.
fn request(
    endpoint: &str,
    api_key: &Secret,
    method: &'static str,
    path: &str,
    body: Vec<u8>,
) -> Request {
    let mut headers = vec![Header::secret("X-API-KEY", "", api_key)];
    if !body.is_empty() {
        headers.push(Header::plain("Content-Type", "application/json"));
    }
    headers.push(Header::plain("Accept", "application/json"));
    Request {
        method,
        url: format!("{endpoint}{path}"),
        headers,
        body,
    }
}

impl Amberflo {
    fn customer(&self, event: &Event) -> Translation {
        let Some(customer_id) = event.id_at("userId") else {
            return Translation::Skip(Reason::plain("identify without userId"));
        };
        if let Err(e) = event_time(event) {
            return Translation::Reject(Reason::new("no usable time", e.to_string()));
        }
        let traits = event.traits();
        let name = traits
            .get("name")
            .and_then(scalar_text)
            .filter(|n| !n.is_empty());
        let email = traits
            .get("email")
            .and_then(scalar_text)
            .filter(|e| !e.is_empty());
        let mut kept = Flat::default();
        for (key, value) in traits.iter().filter(|(k, _)| *k != "name" && *k != "email") {
            if let Err(collision) = flatten_into(&mut kept, key, value) {
                return Translation::Reject(collision.reason("traits", "trait"));
            }
        }
        let customer = Customer {
            customer_id: &customer_id,
            customer_name: match (name.as_deref(), self.merge) {
                (Some(name), _) => Some(name),
                (None, true) => None,
                (None, false) => Some(&customer_id),
            },
            customer_email: email.as_deref(),
            traits: kept.into_values(),
        };
        Translation::Record(Payload {
            stream: Stream::Customer,
            json: serde_json::to_string(&customer).expect("a customer always serialises"),
            key: customer_id.clone(),
            customer: Some(customer_id.clone()),
            time: None,
            numeric_text: Box::default(),
        })
    }
}

/// `properties.value`: a JSON number, or numeric text (`"12.5"`) read as one; 1
/// when it is absent or null. Anything else rejects the event: billing it as 1
/// would bill what nobody measured.
fn meter_value(value: Option<&Value>) -> Result<Number, Reason> {
    let not_a_number = |value: &Value| {
        Reason::new(
            "meter value not a number",
            format!(
                "properties.value is {}; Amberflo meters a number (or numeric text such as \"12.5\")",
                short_text(value)
            ),
        )
    };
    match value {
        None | Some(Value::Null) => Ok(Number::from(1)),
        Some(Value::Number(n)) => Ok(n.clone()),
        Some(text @ Value::String(s)) => numeric_text(s).ok_or_else(|| not_a_number(text)),
        Some(other) => Err(not_a_number(other)),
    }
}

/// Writes the dimensions object: `name` (page, screen) and the properties but
/// `skip` (track's `value`), made into what Amberflo takes. Written straight into
/// the record, value by value, since this runs for every event; the map-based
/// path below gives the same object, and is taken when some key is not already
/// what Amberflo takes (empty, with a dot or a character to clean): two keys
/// could then become one, which rejects the event.
fn write_dimensions(
    out: &mut Vec<u8>,
    name: Option<&Value>,
    properties: &Map<String, Value>,
    skip: Option<&str>,
) -> Result<(), Reason> {
    let nested_name = name.is_some_and(|n| n.is_object() || n.is_array());
    if nested_name || has_unusual_key(properties) {
        let dimensions = dimension_map(name, properties, skip)?;
        write_flat(out, &dimensions);
        return Ok(());
    }
    let mut writer = DimensionWriter {
        out,
        first: true,
        path: String::new(),
        text: String::new(),
    };
    writer.out.push(b'{');
    // A property called `name` that gives a value wins over the call's own name.
    let overridden = properties
        .get("name")
        .is_some_and(|v| !matches!(v, Value::Object(_)) && gives_text(v));
    if let Some(name) = name.filter(|_| !overridden) {
        writer.value("name", name);
    }
    for (key, value) in properties.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
        writer.value(key, value);
    }
    writer.out.push(b'}');
    Ok(())
}

/// The dimensions as a map: the properties but `skip`, then what of the call's
/// `name` no property gave (a property called `name` wins over it).
fn dimension_map(
    name: Option<&Value>,
    properties: &Map<String, Value>,
    skip: Option<&str>,
) -> Result<Flat, Reason> {
    let mut dimensions = Flat::default();
    for (key, value) in properties.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
        flatten_into(&mut dimensions, key, value)
            .map_err(|collision| collision.reason("properties", "dimension"))?;
    }
    if let Some(name) = name {
        let mut own = Flat::default();
        flatten_into(&mut own, "name", name)
            .map_err(|collision| collision.reason("", "dimension"))?;
        for (key, entry) in own.0 {
            dimensions.0.entry(key).or_insert(entry);
        }
    }
    Ok(dimensions)
}

/// `{"key":"value",...}`; keys and values are already clean.
fn write_flat(out: &mut Vec<u8>, flat: &Flat) {
    out.push(b'{');
    for (i, (key, (value, _))) in flat.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write_json_str(out, value);
    }
    out.push(b'}');
}

/// Whether a scalar or an array of scalars turns into a non-empty dimension value.
fn gives_text(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            items.iter().filter_map(scalar_text).any(|t| !t.is_empty())
                || items.iter().filter(|v| !v.is_null()).count() > 1
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

/// A key that is a dimension key as it is: not empty, no dot (a nested key's
/// path could then meet it), and only characters Amberflo takes.
fn plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b != b'.' && b.is_ascii() && ALLOWED[b as usize])
}

struct DimensionWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// The dotted key of the value being written.
    path: String,
    /// A joined array's text before it is sanitised.
    text: String,
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

    /// `"path":"value"`, sanitised and cut; nothing for an empty value.
    fn scalar(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_json_str(self.out, &self.path);
        self.out.extend_from_slice(b":\"");
        // Sanitised text is plain ASCII with nothing JSON must escape.
        if text.is_ascii() {
            let bytes = &text.as_bytes()[..text.len().min(MAX_VALUE_CHARS)];
            self.out.extend(
                bytes
                    .iter()
                    .map(|&b| if ALLOWED[b as usize] { b } else { b'_' }),
            );
        } else {
            for c in text.chars().take(MAX_VALUE_CHARS) {
                self.out.push(if allowed(c) { c as u8 } else { b'_' });
            }
        }
        self.out.push(b'"');
    }
}

fn push_scalar(text: &mut String, value: &Value) {
    use std::fmt::Write;
    match value {
        Value::String(s) => text.push_str(s),
        Value::Number(n) => {
            let _ = write!(text, "{n}");
        }
        Value::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
        _ => {}
    }
}

/// A scalar as text: strings as they are, numbers and booleans as text.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Dimensions or traits as Amberflo takes them: each clean key with its value,
/// and where in the event it came from (to name both keys when two meet).
#[derive(Default)]
struct Flat(BTreeMap<String, (String, String)>);

impl Flat {
    fn into_values(self) -> BTreeMap<String, String> {
        self.0
            .into_iter()
            .map(|(key, (value, _))| (key, value))
            .collect()
    }

    /// Adds a value, sanitised and cut; nothing for an empty one.
    fn insert(&mut self, key: String, shown: String, text: &str) -> Result<(), Collision> {
        let value = sanitise(text);
        if value.is_empty() {
            return Ok(());
        }
        match self.0.entry(key) {
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
struct Collision {
    /// Where each came from, as `shown_key` writes it.
    first: String,
    second: String,
    /// The key both become.
    key: String,
}

impl Collision {
    /// `within`: the object the keys are in (`properties`, `traits`); `what`:
    /// the kind of key they become (`dimension`, `trait`).
    fn reason(&self, within: &str, what: &str) -> Reason {
        let place = |shown: &str| {
            if within.is_empty() {
                shown.trim_start_matches('.').to_owned()
            } else {
                format!("{within}{shown}")
            }
        };
        Reason::new(
            format!("{what} keys collide"),
            format!(
                "{} and {} both become {what} \"{}\"; rename one",
                place(&self.first),
                place(&self.second),
                self.key
            ),
        )
    }
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
/// values sanitised, values cut; nulls, empty values and empty keys dropped.
/// Two keys that become one are a collision.
fn flatten_into(out: &mut Flat, key: &str, value: &Value) -> Result<(), Collision> {
    if key.is_empty() {
        return Ok(());
    }
    flatten(out, clean_key(key), shown_key(key), value)
}

fn flatten(out: &mut Flat, key: String, shown: String, value: &Value) -> Result<(), Collision> {
    match value {
        Value::Null => Ok(()),
        Value::Object(map) => {
            for (member, value) in map.iter().filter(|(member, _)| !member.is_empty()) {
                let nested_key = format!("{key}.{}", clean_key(member));
                let nested_shown = format!("{shown}{}", shown_key(member));
                flatten(out, nested_key, nested_shown, value)?;
            }
            Ok(())
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let joined = items
                .iter()
                .filter_map(scalar_text)
                .collect::<Vec<_>>()
                .join(",");
            out.insert(key, shown, &joined)
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(out, format!("{key}.{i}"), format!("{shown}.{i}"), item)?;
            }
            Ok(())
        }
        scalar => match scalar_text(scalar) {
            Some(text) => out.insert(key, shown, &text),
            None => Ok(()),
        },
    }
}

/// Replaces every character outside Amberflo's allowed set with `_` and cuts to 200 characters.
pub fn sanitise(text: &str) -> String {
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

/// Amberflo's API host and the destination's key: the customer requests
/// (make sure one exists before its meter records arrive, or they are not
/// billed; merge an identify into it) and usage (what `verify` compares with
/// the input).
pub struct Api {
    endpoint: String,
    api_key: Secret,
}

impl Api {
    fn request(&self, method: &'static str, path: &str, body: Vec<u8>) -> Request {
        request(&self.endpoint, &self.api_key, method, path, body)
    }

    /// `GET /customers?customerId=ID`: `{}` when there is no such customer.
    pub fn lookup(&self, customer_id: &str) -> Request {
        let path = format!("/customers?customerId={}", encoded(customer_id));
        self.request("GET", &path, Vec::new())
    }

    /// `POST /usage` with a usage query.
    pub fn usage(&self, query: &Value) -> Request {
        self.request("POST", "/usage", query.to_string().into_bytes())
    }

    /// `POST /customers`, active from now on.
    pub fn create(&self, customer_id: &str, name: &str) -> (Request, Map<String, Value>) {
        let serde_json::Value::Object(record) = serde_json::json!({
            "customerId": customer_id,
            "customerName": name,
            "lifecycleStage": "ACTIVE",
        }) else {
            unreachable!("an object literal")
        };
        (self.write("POST", &record), record)
    }

    /// `POST /customers` (create; 409 when it exists) or `PUT /customers`
    /// (replace the whole record) with this record.
    pub fn write(&self, method: &'static str, record: &Map<String, Value>) -> Request {
        let body = serde_json::to_vec(record).expect("a JSON map always serialises");
        self.request(method, "/customers", body)
    }
}

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
            (None, json!({})),
        ];
        for (name, properties) in cases {
            let map = properties.as_object().unwrap();
            // The writer, forced on the map path (as it chooses it itself) or not.
            let mapped = dimension_map(name.as_ref(), map, Some("value")).map(|flat| {
                let mut out = Vec::new();
                write_flat(&mut out, &flat);
                out
            });
            let mut out = Vec::new();
            let written =
                write_dimensions(&mut out, name.as_ref(), map, Some("value")).map(|()| out);
            match (written, mapped) {
                (Ok(written), Ok(mapped)) => {
                    let written: BTreeMap<String, String> =
                        serde_json::from_slice(&written).unwrap();
                    let mapped: BTreeMap<String, String> = serde_json::from_slice(&mapped).unwrap();
                    assert_eq!(written, mapped, "{name:?} {properties}");
                }
                (Err(written), Err(mapped)) => assert_eq!(written, mapped, "{name:?} {properties}"),
                (written, mapped) => panic!("{name:?} {properties}: {written:?} but {mapped:?}"),
            }
        }
    }

    #[test]
    fn meter_value_takes_numbers_and_numeric_text_only() {
        let value = |v: Value| meter_value(Some(&v)).map(|n| n.to_string());
        assert_eq!(value(json!(2.0)), Ok("2.0".to_owned()));
        assert_eq!(value(json!("3")), Ok("3".to_owned()));
        assert_eq!(value(json!("1.5e1")), Ok("15.0".to_owned()));
        assert_eq!(value(json!(null)), Ok("1".to_owned()));
        assert_eq!(meter_value(None).map(|n| n.to_string()), Ok("1".to_owned()));
        for not_a_number in [
            json!(" 3 "),
            json!("NaN"),
            json!("inf"),
            json!("abc"),
            json!("1,250"),
            json!(""),
            json!(true),
            json!({}),
            json!([]),
        ] {
            let reason = meter_value(Some(&not_a_number)).unwrap_err();
            assert_eq!(reason.kind, "meter value not a number");
            let detail = reason.detail;
            assert!(
                detail.starts_with(&format!("properties.value is {not_a_number};")),
                "{detail}"
            );
        }
    }
}
