//! Amberflo: track, page and screen become meter records (`POST /ingest` on
//! the ingestion host); identify creates or updates the customer (`/customers`
//! on the API host), merged into the record Amberflo holds or replacing it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::{
    Destination, Header, Kind, Payload, Request, SettingDoc, Stream, Translation, write_json_str,
};
use crate::event::Event;
use crate::event::time::event_time;
use crate::report::Reason;
use crate::settings::{DestinationSettings, Secret, SettingsError, TableReader};

/// Ingestion: the highly available host Amberflo's SDKs send meter records to.
pub const DEFAULT_ENDPOINT: &str = "https://ingest.amberflo.io";
/// Everything else (customers, usage queries): that host does not serve them.
pub const DEFAULT_API_ENDPOINT: &str = "https://app.amberflo.io";
pub const DEFAULT_BATCH: usize = 100;
pub const MAX_BATCH: usize = 1000;
/// Amberflo's limit on a dimension or trait value.
const MAX_VALUE_CHARS: usize = 200;

pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        key: "api_endpoint",
        default: Some(
            "https://app.amberflo.io; endpoint when that is set to a host not under amberflo.io",
        ),
        required: false,
        help: "base URL of customer and usage calls (endpoint is ingestion's: POST /ingest)",
    },
    SettingDoc {
        key: "identify",
        default: Some("merge"),
        required: false,
        help: "merge: identify changes only what it gives, keeping the rest of the customer; \
               replace: identify writes the whole customer from the event (PUT /customers)",
    },
    SettingDoc {
        key: "ensure_customers",
        default: Some("false"),
        required: false,
        help: "make sure each customer exists before its first meter record (as --ensure-customers)",
    },
    SettingDoc {
        key: "gzip_requests",
        default: Some("false"),
        required: false,
        help: "send ingestion bodies (POST /ingest) gzipped (Content-Encoding: gzip), as Amberflo's SDK does",
    },
];

pub struct Amberflo {
    name: String,
    api_key: Secret,
    endpoint: String,
    api_endpoint: String,
    ensure_customers: bool,
    gzip_requests: bool,
    merge: bool,
}

impl Amberflo {
    pub fn new(
        settings: &DestinationSettings,
        table: &mut TableReader,
    ) -> Result<Amberflo, SettingsError> {
        let merge = match table.optional_string("identify")?.as_deref() {
            None | Some("merge") => true,
            Some("replace") => false,
            Some(other) => {
                return Err(table.error(format!(
                    "key \"identify\": \"{other}\" is not merge or replace"
                )));
            }
        };
        Ok(Amberflo {
            name: settings.name.clone(),
            api_key: settings.api_key.clone(),
            endpoint: settings.endpoint_or(DEFAULT_ENDPOINT),
            api_endpoint: api_endpoint(settings, table)?,
            ensure_customers: table.optional_bool("ensure_customers")?.unwrap_or(false),
            gzip_requests: table.optional_bool("gzip_requests")?.unwrap_or(false),
            merge,
        })
    }
}

/// `api_endpoint`, else Amberflo's API host; but a set `endpoint` that is not
/// Amberflo's own (a proxy, a test server) serves both, so it is the default then.
fn api_endpoint(
    settings: &DestinationSettings,
    table: &mut TableReader,
) -> Result<String, SettingsError> {
    if let Some(url) = table.optional_url("api_endpoint", settings.allow_insecure)? {
        return Ok(url);
    }
    Ok(match &settings.endpoint {
        Some(endpoint) if !is_amberflo_host(endpoint) => endpoint.clone(),
        _ => DEFAULT_API_ENDPOINT.to_owned(),
    })
}

fn is_amberflo_host(url: &str) -> bool {
    let host = crate::settings::url_host(url).to_ascii_lowercase();
    host == "amberflo.io" || host.ends_with(".amberflo.io")
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
                (name, meter_value(properties.get("value")), None)
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
        write_dimensions(&mut json, name, properties, skip);
        json.push(b'}');
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: String::from_utf8(json).expect("JSON written from strings is UTF-8"),
            key: unique_id,
            customer: Some(customer_id),
            time: Some(time),
        })
    }

    fn request(&self, stream: Stream, records: &[&str]) -> Request {
        match stream {
            Stream::Usage => {
                let body = super::json_array(records, 0);
                let mut request = request(&self.endpoint, &self.api_key, "POST", "/ingest", body);
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
                request(&self.api_endpoint, &self.api_key, "PUT", "/customers", body)
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
        let mut kept = BTreeMap::new();
        for (key, value) in traits.iter().filter(|(k, _)| *k != "name" && *k != "email") {
            flatten_into(&mut kept, key, value);
        }
        let customer = Customer {
            customer_id: &customer_id,
            customer_name: match (name.as_deref(), self.merge) {
                (Some(name), _) => Some(name),
                (None, true) => None,
                (None, false) => Some(&customer_id),
            },
            customer_email: email.as_deref(),
            traits: kept,
        };
        Translation::Record(Payload {
            stream: Stream::Customer,
            json: serde_json::to_string(&customer).expect("a customer always serialises"),
            key: customer_id.clone(),
            customer: Some(customer_id.clone()),
            time: None,
        })
    }
}

/// `properties.value` when it is a finite number or a numeric string, else 1.
fn meter_value(value: Option<&Value>) -> Number {
    let parsed = match value {
        Some(Value::Number(n)) => Some(n.clone()),
        Some(Value::String(s)) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(i) => Some(Number::from(i)),
                Err(_) => s.parse::<f64>().ok().and_then(Number::from_f64),
            }
        }
        _ => None,
    };
    parsed.unwrap_or_else(|| Number::from(1))
}

/// Writes the dimensions object: `name` (page, screen) and the properties but
/// `skip` (track's `value`), made into what Amberflo takes. Written straight into
/// the record, value by value, since this runs for every event; the map-based
/// path below gives the same object, and is taken when keys contain dots (a
/// flattened key could then collide with a literal one, and the later must win).
fn write_dimensions(
    out: &mut Vec<u8>,
    name: Option<&Value>,
    properties: &Map<String, Value>,
    skip: Option<&str>,
) {
    if has_dotted_key(properties) {
        let mut dimensions = BTreeMap::new();
        if let Some(name) = name {
            flatten_into(&mut dimensions, "name", name);
        }
        for (key, value) in properties.iter().filter(|(k, _)| Some(k.as_str()) != skip) {
            flatten_into(&mut dimensions, key, value);
        }
        serde_json::to_writer(&mut *out, &dimensions).expect("writing to a Vec cannot fail");
        return;
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

fn has_dotted_key(map: &Map<String, Value>) -> bool {
    fn nested(value: &Value) -> bool {
        match value {
            Value::Object(map) => has_dotted_key(map),
            Value::Array(items) => items.iter().any(nested),
            _ => false,
        }
    }
    map.iter()
        .any(|(key, value)| key.contains('.') || nested(value))
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

/// Adds a property as Amberflo dimensions: objects flattened to dotted keys,
/// arrays of scalars joined with `,` (other arrays flattened by index), values
/// sanitised and cut; nulls and empty values dropped.
fn flatten_into(out: &mut BTreeMap<String, String>, key: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::Object(map) => flatten_object(out, key, map),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let joined = items
                .iter()
                .filter_map(scalar_text)
                .collect::<Vec<_>>()
                .join(",");
            insert_sanitised(out, key, &joined);
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten_into(out, &format!("{key}.{i}"), item);
            }
        }
        scalar => {
            if let Some(text) = scalar_text(scalar) {
                insert_sanitised(out, key, &text);
            }
        }
    }
}

fn flatten_object(out: &mut BTreeMap<String, String>, prefix: &str, map: &Map<String, Value>) {
    for (key, value) in map {
        flatten_into(out, &format!("{prefix}.{key}"), value);
    }
}

fn insert_sanitised(out: &mut BTreeMap<String, String>, key: &str, text: &str) {
    let value = sanitise(text);
    if !value.is_empty() {
        out.insert(key.to_owned(), value);
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

/// Amberflo's endpoints besides ingest, on the API host, as requests:
/// customers (make sure one exists before its meter records arrive, or they
/// are not billed; merge an identify into it) and usage (what `verify`
/// compares with the input).
pub struct Api {
    endpoint: String,
    api_key: Secret,
}

impl Api {
    pub fn new(settings: &DestinationSettings) -> Result<Api, SettingsError> {
        Ok(Api {
            endpoint: api_endpoint(settings, &mut settings.table.clone())?,
            api_key: settings.api_key.clone(),
        })
    }

    /// `GET /customers?customerId=ID`: `{}` when there is no such customer.
    pub fn lookup(&self, customer_id: &str) -> Request {
        let path = format!(
            "/customers?customerId={}",
            crate::destination::orb::path_segment(customer_id)
        );
        request(&self.endpoint, &self.api_key, "GET", &path, Vec::new())
    }

    /// `POST /usage` with a usage query.
    pub fn usage(&self, query: &Value) -> Request {
        request(
            &self.endpoint,
            &self.api_key,
            "POST",
            "/usage",
            query.to_string().into_bytes(),
        )
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
        request(&self.endpoint, &self.api_key, method, "/customers", body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dims(properties: Value) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in properties.as_object().unwrap() {
            flatten_into(&mut out, k, v);
        }
        out
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
            (None, json!({})),
        ];
        for (name, properties) in cases {
            let map = properties.as_object().unwrap();
            let mut expected = BTreeMap::new();
            if let Some(name) = &name {
                flatten_into(&mut expected, "name", name);
            }
            for (k, v) in map.iter().filter(|(k, _)| *k != "value") {
                flatten_into(&mut expected, k, v);
            }
            let mut out = Vec::new();
            write_dimensions(&mut out, name.as_ref(), map, Some("value"));
            let written: BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
            assert_eq!(written, expected, "{name:?} {properties}");
        }
    }

    #[test]
    fn meter_value_takes_numbers_and_numeric_strings() {
        assert_eq!(meter_value(Some(&json!(2.0))).to_string(), "2.0");
        assert_eq!(meter_value(Some(&json!(" 3 "))).to_string(), "3");
        assert_eq!(meter_value(Some(&json!("1.5e1"))).to_string(), "15.0");
        for not_a_number in [
            json!("NaN"),
            json!("inf"),
            json!("abc"),
            json!(true),
            json!(null),
        ] {
            assert_eq!(
                meter_value(Some(&not_a_number)).to_string(),
                "1",
                "{not_a_number}"
            );
        }
        assert_eq!(meter_value(None).to_string(), "1");
    }
}
