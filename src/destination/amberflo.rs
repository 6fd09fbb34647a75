//! Amberflo: track, page and screen become meter records (`POST /ingest`);
//! identify creates or updates the customer (`PUT /customers`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::{Destination, Header, Kind, Payload, Request, SettingDoc, Stream, Translation};
use crate::event::Event;
use crate::event::time::event_time;
use crate::report::Reason;
use crate::settings::{DestinationSettings, Secret, SettingsError, TableReader};

pub const DEFAULT_ENDPOINT: &str = "https://app.amberflo.io";
pub const DEFAULT_BATCH: usize = 100;
pub const MAX_BATCH: usize = 1000;
/// Amberflo's limit on a dimension or trait value.
const MAX_VALUE_CHARS: usize = 200;

pub const SETTINGS: &[SettingDoc] = &[SettingDoc {
    key: "ensure_customers",
    default: Some("false"),
    required: false,
    help: "make sure each customer exists before its first meter record (as --ensure-customers)",
}];

pub struct Amberflo {
    name: String,
    api_key: Secret,
    endpoint: String,
    ensure_customers: bool,
}

impl Amberflo {
    pub fn new(
        settings: &DestinationSettings,
        table: &mut TableReader,
    ) -> Result<Amberflo, SettingsError> {
        Ok(Amberflo {
            name: settings.name.clone(),
            api_key: settings.api_key.clone(),
            endpoint: settings
                .endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            ensure_customers: table.optional_bool("ensure_customers")?.unwrap_or(false),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MeterRecord<'a> {
    unique_id: &'a str,
    customer_id: &'a str,
    meter_api_name: &'a str,
    meter_value: Number,
    meter_time_in_millis: i64,
    dimensions: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Customer<'a> {
    customer_id: &'a str,
    customer_name: &'a str,
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

    fn translate(&self, event: &Event) -> Translation {
        if let Err(skip_or_reject) = super::screen(
            event,
            Kind::Amberflo,
            &["track", "page", "screen", "identify"],
        ) {
            return skip_or_reject;
        }
        let call = event.call_type().unwrap_or_default();
        if call == "identify" {
            return self.customer(event);
        }
        let Some(customer_id) = event.customer_id() else {
            return super::missing("customer id", "userId or anonymousId");
        };
        let time = match event_time(&event.fields) {
            Ok(time) => time,
            Err(e) => return Translation::Reject(Reason::new("no usable time", e.to_string())),
        };
        let properties = event.properties();
        let mut dimensions = BTreeMap::new();
        let (meter_api_name, meter_value) = match call {
            "track" => {
                let Some(name) = event.id_at("event") else {
                    return super::missing("event name", "event");
                };
                for (key, value) in properties.iter().filter(|(k, _)| *k != "value") {
                    flatten_into(&mut dimensions, key, value);
                }
                (name, meter_value(properties.get("value")))
            }
            _ => {
                if let Some(name) = event.fields.get("name") {
                    flatten_into(&mut dimensions, "name", name);
                }
                for (key, value) in properties {
                    flatten_into(&mut dimensions, key, value);
                }
                (call.to_owned(), Number::from(1))
            }
        };
        let unique_id = event.message_id();
        let record = MeterRecord {
            unique_id: &unique_id,
            customer_id: &customer_id,
            meter_api_name: &meter_api_name,
            meter_value,
            meter_time_in_millis: time.as_millisecond(),
            dimensions,
        };
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: serde_json::to_string(&record).expect("a meter record always serialises"),
            key: unique_id,
            customer: Some(customer_id),
        })
    }

    fn request(&self, stream: Stream, records: &[&str]) -> Request {
        let (method, path, body) = match stream {
            Stream::Usage => ("POST", "/ingest", super::json_array(records, 0)),
            Stream::Customer => ("PUT", "/customers", records.concat().into_bytes()),
        };
        Request {
            method,
            url: format!("{}{path}", self.endpoint),
            headers: vec![
                Header::secret("X-API-KEY", "", &self.api_key),
                Header::plain("Content-Type", "application/json"),
                Header::plain("Accept", "application/json"),
            ],
            body,
        }
    }
}

impl Amberflo {
    fn customer(&self, event: &Event) -> Translation {
        let Some(customer_id) = event.id_at("userId") else {
            return Translation::Skip(Reason::plain("identify without userId"));
        };
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
            customer_name: name.as_deref().unwrap_or(&customer_id),
            customer_email: email.as_deref(),
            traits: kept,
        };
        Translation::Record(Payload {
            stream: Stream::Customer,
            json: serde_json::to_string(&customer).expect("a customer always serialises"),
            key: customer_id.clone(),
            customer: Some(customer_id.clone()),
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
    c.is_ascii_alphanumeric() || " -_!.*'()&$@=;:+,?".contains(c)
}

/// Amberflo's customer endpoints, as requests: make sure a customer exists
/// before its meter records arrive (records for unknown customers are not billed).
pub struct CustomersApi {
    endpoint: String,
    api_key: Secret,
}

impl CustomersApi {
    pub fn new(settings: &DestinationSettings) -> CustomersApi {
        CustomersApi {
            endpoint: settings
                .endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            api_key: settings.api_key.clone(),
        }
    }

    /// `GET /customers?customerId=ID`: `{}` when there is no such customer.
    pub fn lookup(&self, customer_id: &str) -> Request {
        Request {
            method: "GET",
            url: format!(
                "{}/customers?customerId={}",
                self.endpoint,
                crate::destination::orb::path_segment(customer_id)
            ),
            headers: vec![
                Header::secret("X-API-KEY", "", &self.api_key),
                Header::plain("Accept", "application/json"),
            ],
            body: Vec::new(),
        }
    }

    /// `POST /customers`, active from now on.
    pub fn create(&self, customer_id: &str, name: &str) -> Request {
        let body = serde_json::json!({
            "customerId": customer_id,
            "customerName": name,
            "lifecycleStage": "ACTIVE",
        });
        Request {
            method: "POST",
            url: format!("{}/customers", self.endpoint),
            headers: vec![
                Header::secret("X-API-KEY", "", &self.api_key),
                Header::plain("Content-Type", "application/json"),
                Header::plain("Accept", "application/json"),
            ],
            body: body.to_string().into_bytes(),
        }
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
