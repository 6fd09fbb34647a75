//! Amberflo: track, page and screen become meter records (`POST /ingest` on
//! the ingestion host); identify creates or updates the customer (`/customers`
//! on the API host), merged into the record Amberflo holds or replacing it.

pub(crate) mod customers;

mod dimensions;
mod verify;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::Verifier;
use super::{
    Backoff, Common, CustomerIdField, Destination, Gate, GateOptions, Header, IngestWindow, Kind,
    Notes, OldEvents, Payload, Request, Rewrite, Stream, Translation, double_keeps, outgoing_text,
    write_json_str,
};
use crate::event::reason::Reason;
use crate::event::time::event_time;
use crate::event::{Event, numeric_text, short_text};
use crate::settings::{AnySetting, Secret, Setting, SettingsError, TableReader, kinds, url_host};
use crate::transport::wire::encoded;
use dimensions::{
    Flat, PlainProperties, flatten_into, scalar_text, write_dimensions, write_dimensions_from_text,
};

/// Ingestion: the highly available host Amberflo's SDKs send meter records to.
pub const DEFAULT_ENDPOINT: &str = "https://ingest.amberflo.io";
/// Everything else (customers, usage queries): that host does not serve them.
pub const DEFAULT_API_ENDPOINT: &str = "https://app.amberflo.io";
pub const DEFAULT_BATCH: usize = 100;
/// Amberflo's TypeScript SDK refuses meter records timed more than 5 minutes
/// after it sends them.
pub const FUTURE_LIMIT: SignedDuration = SignedDuration::from_mins(5);
/// Amberflo's default guardrail on backfills: historical meter records up to
/// 60 days old (docs.amberflo.io, "Metering Guardrails"); a default the
/// account can have raised, not a hard limit.
pub const BACKFILL_GUARDRAIL: SignedDuration = SignedDuration::from_hours(60 * 24);
pub const MAX_BATCH: usize = 1000;
/// Identifies' customer records: written one by one through the customers'
/// lookups, not batched.
pub(crate) const CUSTOMERS: Stream = Stream::Other("customers");

pub const SETTINGS: &[AnySetting] = &[
    API_ENDPOINT.any(),
    CUSTOMER_ID_FIELD.any(),
    IDENTIFY.any(),
    ENSURE_CUSTOMERS.any(),
    GZIP_REQUESTS.any(),
];

const API_ENDPOINT: Setting<kinds::Url> = Setting {
    key: "api_endpoint",
    kind: kinds::Url,
    default: Some(
        "https://app.amberflo.io; endpoint when that is set to a host not under amberflo.io",
    ),
    required: false,
    recorded: true,
    help: "base URL of customer and usage calls (endpoint is ingestion's: POST /ingest)",
};
const CUSTOMER_ID_FIELD: Setting<kinds::Fields> = Setting {
    key: "customer_id_field",
    kind: kinds::Fields,
    default: Some("userId"),
    required: false,
    recorded: true,
    help: "dot path to your customer id, sent as customerId (identify: the customer written); \
           or a list of them, tried in order (add \"anonymousId\" to bill anonymous visitors \
           and, with ensure_customers, create them); an event without one is skipped",
};
const IDENTIFY: Setting<kinds::Text> = Setting {
    key: "identify",
    kind: kinds::Text,
    default: Some("merge"),
    required: false,
    recorded: true,
    help: "merge: identify changes only what it gives, keeping the rest of the customer; \
           replace: identify writes the whole customer from the event (GET /customers, then \
           PUT, or POST when Amberflo lacks it)",
};
const ENSURE_CUSTOMERS: Setting<kinds::Bool> = Setting {
    key: "ensure_customers",
    kind: kinds::Bool,
    default: Some("false"),
    required: false,
    recorded: false,
    help: "make sure each customer exists before its first meter record (as --ensure-customers)",
};
const GZIP_REQUESTS: Setting<kinds::Bool> = Setting {
    key: "gzip_requests",
    kind: kinds::Bool,
    default: Some("false"),
    required: false,
    recorded: false,
    help: "send ingestion bodies (POST /ingest) gzipped (Content-Encoding: gzip), as Amberflo's SDK does",
};

pub struct Amberflo {
    name: String,
    /// Ingestion's base URL.
    endpoint: String,
    /// The API host, and the key every request carries.
    api: Arc<Api>,
    customer_id_field: CustomerIdField,
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
        let customer_id_field = CustomerIdField::read(&CUSTOMER_ID_FIELD, table)?;
        Ok(Amberflo {
            name: common.name,
            endpoint: common
                .endpoint
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            api,
            customer_id_field,
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

    fn verifier(&self) -> Option<Box<dyn Verifier + '_>> {
        Some(Box::new(verify::UsageSums {
            api: self.api.clone(),
        }))
    }

    fn customer_id_field(&self) -> &CustomerIdField {
        &self.customer_id_field
    }

    fn paths(&self) -> Vec<&str> {
        self.customer_id_field
            .paths()
            .iter()
            .map(String::as_str)
            .collect()
    }

    fn ensures_customers(&self) -> bool {
        self.ensure_customers
    }

    /// Every run that sends in one pass writes identifies through the
    /// customers' lookups, and with `--ensure-customers` makes sure of each
    /// customer before its meter records ([`customers`]).
    fn gate(&self, options: GateOptions) -> anyhow::Result<Option<Box<dyn Gate>>> {
        let customers = customers::Customers::new(
            self.api.clone(),
            options.ensure_customers,
            self.merge,
            options.beside.as_ref(),
        )?;
        Ok(Some(Box::new(customers)))
    }

    /// Amberflo's SDKs back off 2, 6, 12, 20, 40, 80 s (with jitter), and its
    /// docs want retries at least 20 s after the first failure.
    fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(80),
        }
    }

    /// Records later than 5 minutes from now are rejected, as Amberflo's SDK
    /// refuses them; older than the backfill guardrail, sent with a warning.
    fn ingest_window(&self) -> Option<IngestWindow> {
        Some(IngestWindow {
            grace: BACKFILL_GUARDRAIL,
            grace_name: "default backfill guardrail",
            old: OldEvents::MayNeedRaising {
                remedy: "ask Amberflo support to raise it if they do not show in its usage",
            },
            ahead: FUTURE_LIMIT,
            rejects_ahead: true,
        })
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
        let customer_id = match self.customer_id_field.find(event) {
            Ok(customer_id) => customer_id,
            Err(skip) => return skip,
        };
        if call == "identify" {
            return self.customer(event, customer_id);
        }
        let time = match event_time(event) {
            Ok(time) => time,
            Err(e) => return Translation::Reject(Reason::new("no usable time", e.to_string())),
        };
        // Kept as its line, the event's properties are written from their
        // text, never built (see `write_dimensions_from_text`).
        let properties_text = event.properties_text();
        // Most are plain JSON, read once here for the meter value and the
        // dimensions both.
        let plain = properties_text.and_then(PlainProperties::read);
        let (meter_api_name, meter_value, name) = match call {
            "track" => {
                let Some(name) = event.id_at("event") else {
                    return super::missing("event name", "event");
                };
                let value = match plain.as_ref().and_then(|plain| plain.scalar("value")) {
                    Some(value) => value.map(Cow::Owned),
                    None => match properties_text {
                        Some(_) => event.get("properties.value"),
                        None => event.properties().get("value").map(Cow::Borrowed),
                    },
                };
                match meter_value(value.as_deref()) {
                    Ok(value) => (name, value, None),
                    Err(reason) => return Translation::Reject(reason),
                }
            }
            _ => (call.to_owned(), Number::from(1), event.get("name")),
        };
        let skip = if call == "track" { Some("value") } else { None };
        let unique_id = event.message_id();
        // Room for the record as it usually comes out: no growing on the way.
        let mut json = Vec::with_capacity(192 + properties_text.map_or(128, str::len));
        json.extend_from_slice(b"{\"uniqueId\":");
        write_json_str(&mut json, &unique_id);
        json.extend_from_slice(b",\"customerId\":");
        write_json_str(&mut json, &customer_id);
        json.extend_from_slice(b",\"meterApiName\":");
        write_json_str(&mut json, &meter_api_name);
        json.extend_from_slice(b",\"meterValue\":");
        json.extend_from_slice(outgoing_text(&meter_value).as_bytes());
        json.extend_from_slice(b",\"meterTimeInMillis\":");
        json.extend_from_slice(time.as_millisecond().to_string().as_bytes());
        json.extend_from_slice(b",\"dimensions\":");
        let written = match &plain {
            Some(plain) => plain.write_dimensions(&mut json, name.as_deref(), skip),
            None => properties_text.and_then(|text| {
                write_dimensions_from_text(&mut json, name.as_deref(), text, skip)
            }),
        };
        let rewrite = match written {
            Some(rewrite) => rewrite,
            None => match write_dimensions(&mut json, name.as_deref(), event.properties(), skip) {
                Ok(rewrite) => rewrite,
                Err(reason) => return Translation::Reject(reason),
            },
        };
        json.push(b'}');
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: String::from_utf8(json).expect("JSON written from strings is UTF-8"),
            key: unique_id,
            customer: Some(customer_id),
            time: Some(time),
            notes: rewrite.map(rewritten),
        })
    }

    fn endpoint_hint(&self, url: &str) -> String {
        let ingest = format!("{}/ingest", self.endpoint);
        if url.starts_with(&ingest) {
            let fix = if super::base_path(&self.endpoint).is_empty() {
                "check endpoint in the settings (segrelay adds /ingest)"
            } else {
                "the endpoint setting should be the host alone (segrelay adds /ingest)"
            };
            format!("{fix}: Amberflo's ingestion API is at {DEFAULT_ENDPOINT}")
        } else {
            format!(
                "check api_endpoint in the settings (segrelay adds /customers and /usage): \
                 Amberflo's API is at {DEFAULT_API_ENDPOINT}"
            )
        }
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
            // Identifies are written through the customers' lookup, not
            // batched; this is the write alone, as replace mode makes it.
            Stream::Other(_) => {
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
    fn customer(&self, event: &Event, customer_id: String) -> Translation {
        if let Err(e) = event_time(event) {
            return Translation::Reject(Reason::new("no usable time", e.to_string()));
        }
        // Plain traits, as most are, are read from the line's text.
        let plain = event
            .traits_text()
            .and_then(PlainProperties::read)
            .and_then(|traits| traits.traits());
        let (name, email, traits, rewrite) = match plain {
            Some(plain) => (plain.name, plain.email, plain.values, plain.rewrite),
            None => match mapped_traits(event) {
                Ok(traits) => traits,
                Err(reason) => return Translation::Reject(reason),
            },
        };
        let customer = Customer {
            customer_id: &customer_id,
            customer_name: match (name.as_deref(), self.merge) {
                (Some(name), _) => Some(name),
                (None, true) => None,
                (None, false) => Some(&customer_id),
            },
            customer_email: email.as_deref(),
            traits,
        };
        Translation::Record(Payload {
            stream: CUSTOMERS,
            json: serde_json::to_string(&customer).expect("a customer always serialises"),
            key: customer_id.clone(),
            customer: Some(customer_id.clone()),
            time: None,
            notes: rewrite.map(rewritten),
        })
    }
}

/// An identify's name, email, other traits flattened and first key or value
/// changed, from the event's `traits` as a map.
type Traits = (
    Option<String>,
    Option<String>,
    BTreeMap<String, String>,
    Option<String>,
);

fn mapped_traits(event: &Event) -> Result<Traits, Reason> {
    traits_from_map(event.traits())
}

fn traits_from_map(traits: &Map<String, Value>) -> Result<Traits, Reason> {
    let name = traits
        .get("name")
        .and_then(scalar_text)
        .filter(|n| !dimensions::is_blank(n));
    let email = traits
        .get("email")
        .and_then(scalar_text)
        .filter(|e| !dimensions::is_blank(e));
    let mut kept = Flat::within("traits");
    for (key, value) in traits.iter().filter(|(k, _)| *k != "name" && *k != "email") {
        flatten_into(&mut kept, key, value)
            .map_err(|collision| collision.reason("traits", "trait"))?;
    }
    let rewrite = kept.rewrite.take();
    Ok((name, email, kept.into_values(), rewrite))
}

/// A key or value changed to what Amberflo takes, for the run's warning.
fn rewritten(example: String) -> Box<Notes> {
    Box::new(Notes {
        rewritten: Some(Rewrite {
            example,
            warning: dimensions::rewrite_warning,
        }),
        ..Notes::default()
    })
}

/// `properties.value`: a JSON number, or numeric text (`"12.5"`) read as one; 1
/// when it is absent or null. Anything else rejects the event: billing it as 1
/// would bill what nobody measured. So does a number a double cannot hold
/// exactly: Amberflo reads `meterValue` as one (its SDKs' type), and would
/// bill a rounded value.
fn meter_value(value: Option<&Value>) -> Result<Number, Reason> {
    let number = number_value(value)?;
    if double_keeps(&number) {
        return Ok(number);
    }
    let detail = match number.as_f64().filter(|f| f.is_finite() && *f != 0.0) {
        Some(double) => format!(
            "properties.value is {number}, more digits than Amberflo keeps: it reads meter \
             values as doubles, which would make it {double:e}; send at most 15 significant digits"
        ),
        None => format!(
            "properties.value is {number}, beyond what Amberflo keeps: it reads meter values \
             as doubles, which would make it {}",
            if number.as_f64().is_some_and(|f| f == 0.0) {
                "0"
            } else {
                "infinite"
            }
        ),
    };
    Err(Reason::new("meter value not exact", detail))
}

/// `properties.value` as a number, before its range is checked.
fn number_value(value: Option<&Value>) -> Result<Number, Reason> {
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

    #[test]
    fn meter_value_takes_numbers_and_numeric_text_only() {
        let value = |v: Value| meter_value(Some(&v)).map(|n| outgoing_text(&n).into_owned());
        assert_eq!(value(json!(2.0)), Ok("2.0".to_owned()));
        assert_eq!(value(json!("3")), Ok("3".to_owned()));
        assert_eq!(value(json!("1.5e1")), Ok("15.0".to_owned()));
        assert_eq!(value(json!("12.50")), Ok("12.5".to_owned()));
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
            let reason = number_value(Some(&not_a_number)).unwrap_err();
            assert_eq!(reason.kind, "meter value not a number");
            let detail = reason.detail.clone();
            assert!(
                detail.starts_with(&format!("properties.value is {not_a_number};")),
                "{detail}"
            );
            assert_eq!(meter_value(Some(&not_a_number)).unwrap_err(), reason);
        }
    }

    /// A meter value a double would round is refused, naming what it would become.
    #[test]
    fn meter_values_a_double_would_change_are_refused() {
        let number = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        for (value, detail) in [
            (
                number("123456789012345678901234567890"),
                "properties.value is 123456789012345678901234567890, more digits than Amberflo \
                 keeps: it reads meter values as doubles, which would make it \
                 1.2345678901234568e29; send at most 15 significant digits",
            ),
            (
                json!("9007199254740993"),
                "properties.value is 9007199254740993, more digits than Amberflo keeps: it \
                 reads meter values as doubles, which would make it 9.007199254740992e15; send \
                 at most 15 significant digits",
            ),
            (
                number("1e400"),
                "properties.value is 1e+400, beyond what Amberflo keeps: it reads meter values \
                 as doubles, which would make it infinite",
            ),
            (
                number("1e-400"),
                "properties.value is 1e-400, beyond what Amberflo keeps: it reads meter values \
                 as doubles, which would make it 0",
            ),
        ] {
            let reason = meter_value(Some(&value)).unwrap_err();
            assert_eq!(reason.kind, "meter value not exact");
            assert_eq!(reason.detail, detail, "{value}");
        }
        for (kept, out) in [
            ("0.1", "0.1"),
            ("12.50", "12.5"),
            ("9007199254740992", "9007199254740992"),
            ("1e20", "1e+20"),
            ("-3", "-3"),
        ] {
            assert_eq!(
                outgoing_text(&meter_value(Some(&number(kept))).unwrap()).into_owned(),
                out
            );
        }
    }
}
