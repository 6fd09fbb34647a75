//! Orb: track becomes a usage event, `POST /v1/ingest` with `{"events":[...]}`.

use serde_json::{Map, Value};

use jiff::SignedDuration;

use super::{
    Common, Destination, Header, IngestWindow, Kind, Payload, Request, Response, Stream,
    Translation, Verdict, common_verdict, write_json_str, write_json_value,
};
use crate::event::time::{event_time, utc_millis_text};
use crate::event::{Event, json_kind, numeric_text, short_text};
use crate::reason::Reason;
use crate::table::{Secret, Setting, SettingKind, SettingsError, TableReader};
use crate::wire::encoded;

pub const DEFAULT_ENDPOINT: &str = "https://api.withorb.com/v1";
pub const DEFAULT_BATCH: usize = 500;
/// Orb takes at most 500 events per ingest request.
pub const MAX_BATCH: usize = 500;
/// Orb's ingest refuses events older than the account's grace period (12 hours
/// unless Orb changed it for the account)...
pub const DEFAULT_GRACE_HOURS: u64 = 12;
/// ...and events more than 5 minutes in the future.
pub const FUTURE_LIMIT: SignedDuration = SignedDuration::from_mins(5);
/// A grace period longer than ten years is a typo (and would overflow times).
const MAX_GRACE_HOURS: u64 = 87_600;

pub const SETTINGS: &[Setting] = &[
    EXTERNAL_CUSTOMER_ID_FIELD,
    EVENT_NAME_FIELD,
    IDEMPOTENCY_KEY_FIELD,
    PROPERTIES_MAPPING,
    NUMERIC_PROPERTIES,
    GRACE_PERIOD_HOURS,
];

const EXTERNAL_CUSTOMER_ID_FIELD: Setting = Setting {
    key: "external_customer_id_field",
    kind: SettingKind::Field,
    default: None,
    required: true,
    help: "dot path to your customer id, sent as external_customer_id",
};
const EVENT_NAME_FIELD: Setting = Setting {
    key: "event_name_field",
    kind: SettingKind::Field,
    default: Some("event"),
    required: false,
    help: "dot path to the event name",
};
const IDEMPOTENCY_KEY_FIELD: Setting = Setting {
    key: "idempotency_key_field",
    kind: SettingKind::Field,
    default: Some("messageId"),
    required: false,
    help: "dot path to the idempotency key",
};
const PROPERTIES_MAPPING: Setting = Setting {
    key: "properties_mapping",
    kind: SettingKind::Mapping,
    default: Some("{}"),
    required: false,
    help: "table: Segment property (dot path) = Orb property; unmapped properties are dropped",
};
const NUMERIC_PROPERTIES: Setting = Setting {
    key: "numeric_properties",
    kind: SettingKind::List,
    default: Some("[]"),
    required: false,
    help: "Orb properties (mapping targets) sent as numbers: numeric text converted, other values rejected",
};
const GRACE_PERIOD_HOURS: Setting = Setting {
    key: "grace_period_hours",
    kind: SettingKind::Positive,
    default: Some("12"),
    required: false,
    help: "the account's grace period: older events need --orb-backfill (whole hours)",
};

pub struct Orb {
    name: String,
    /// The endpoint and the key every request carries.
    api: Api,
    customer_field: String,
    event_name_field: String,
    idempotency_key_field: String,
    mapping: Vec<Mapped>,
    grace_hours: u64,
}

/// A `properties_mapping` entry.
struct Mapped {
    /// The Segment property (dot path).
    from: String,
    /// The Orb property.
    to: String,
    /// Listed in `numeric_properties`: sent as a number, or the event is rejected.
    numeric: bool,
}

impl Orb {
    pub fn new(common: Common, table: &mut TableReader) -> Result<Orb, SettingsError> {
        let customer_field = table.field(&EXTERNAL_CUSTOMER_ID_FIELD)?;
        let event_name_field = table.field(&EVENT_NAME_FIELD)?;
        let idempotency_key_field = table.field(&IDEMPOTENCY_KEY_FIELD)?;
        let mapping = table.mapping(&PROPERTIES_MAPPING)?;
        let grace_hours = table
            .positive(&GRACE_PERIOD_HOURS)?
            .unwrap_or(DEFAULT_GRACE_HOURS);
        if grace_hours > MAX_GRACE_HOURS {
            return Err(table.error(format!(
                "key \"grace_period_hours\" is {grace_hours}: at most {MAX_GRACE_HOURS} (ten years)"
            )));
        }
        let numeric = table.list(&NUMERIC_PROPERTIES)?;
        if let Some(unmapped) = numeric
            .iter()
            .find(|name| !mapping.iter().any(|(_, to)| to == *name))
        {
            let targets: Vec<String> = mapping.iter().map(|(_, to)| format!("\"{to}\"")).collect();
            let targets = match targets.is_empty() {
                true => "it maps none".to_owned(),
                false => format!("it maps to {}", targets.join(", ")),
            };
            return Err(table.error(format!(
                "key \"numeric_properties\": \"{unmapped}\" is not an Orb property that \
                 properties_mapping maps to ({targets})"
            )));
        }
        let mapping = mapping
            .into_iter()
            .map(|(from, to)| Mapped {
                numeric: numeric.contains(&to),
                from,
                to,
            })
            .collect();
        Ok(Orb {
            name: common.name,
            api: Api {
                endpoint: common
                    .endpoint
                    .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
                api_key: common.api_key,
            },
            customer_field,
            event_name_field,
            idempotency_key_field,
            mapping,
            grace_hours,
        })
    }
}

impl Destination for Orb {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Orb
    }

    fn secret(&self) -> &Secret {
        &self.api.api_key
    }

    fn orb_api(&self) -> Option<&Api> {
        Some(&self.api)
    }

    fn paths(&self) -> Vec<&str> {
        vec![
            &self.customer_field,
            &self.event_name_field,
            &self.idempotency_key_field,
        ]
    }

    /// Orb reads only the mapped properties.
    fn reads_whole_objects(&self) -> bool {
        false
    }

    fn ingest_window(&self) -> Option<IngestWindow> {
        Some(IngestWindow {
            grace: SignedDuration::from_hours(self.grace_hours as i64),
            ahead: FUTURE_LIMIT,
            remedy: "send them with --orb-backfill",
        })
    }

    fn translate(&self, event: &Event) -> Translation {
        if let Err(skip_or_reject) = super::screen(event, Kind::Orb, &["track"]) {
            return skip_or_reject;
        }
        let Some(customer) = event.id_at(&self.customer_field) else {
            return super::missing("external customer id", &self.customer_field);
        };
        let Some(event_name) = event.id_at(&self.event_name_field) else {
            return super::missing("event name", &self.event_name_field);
        };
        let key = if self.idempotency_key_field == "messageId" {
            event.message_id()
        } else {
            match event.id_at(&self.idempotency_key_field) {
                Some(key) => key,
                None => return super::missing("idempotency key", &self.idempotency_key_field),
            }
        };
        let time = match event_time(event) {
            Ok(time) => time,
            Err(e) => return Translation::Reject(Reason::new("no usable time", e.to_string())),
        };
        let mut properties = Map::new();
        let mut found_numeric_text = Vec::new();
        // Only the mapped properties are read (most are not mapped), and only from an object.
        let is_object = event.is_object("properties");
        for Mapped { from, to, numeric } in &self.mapping {
            let value = if is_object {
                event.get_in("properties", Some(from))
            } else {
                None
            };
            let value = match value {
                None => continue,
                Some(value) => value.into_owned(),
            };
            match value {
                Value::Null => {}
                Value::Object(_) | Value::Array(_) => {
                    return Translation::Reject(Reason::new(
                        "property not flat",
                        format!(
                            "properties.{from} is {}; Orb takes only strings, numbers and booleans",
                            json_kind(&value)
                        ),
                    ));
                }
                Value::Number(_) => {
                    properties.insert(to.clone(), value);
                }
                Value::String(ref text) if *numeric => match numeric_text(text) {
                    Some(number) => {
                        properties.insert(to.clone(), Value::Number(number));
                    }
                    None => return not_a_number(from, to, &value),
                },
                _ if *numeric => return not_a_number(from, to, &value),
                Value::String(text) => {
                    // Orb sums only numbers: the run says which properties to list.
                    if numeric_text(&text).is_some() {
                        found_numeric_text.push((to.clone(), text.clone()));
                    }
                    properties.insert(to.clone(), Value::String(text));
                }
                Value::Bool(_) => {
                    properties.insert(to.clone(), value);
                }
            }
        }
        // Written field by field: a serialiser escapes strings byte by byte.
        let mut json = Vec::with_capacity(256);
        json.extend_from_slice(b"{\"idempotency_key\":");
        write_json_str(&mut json, &key);
        json.extend_from_slice(b",\"external_customer_id\":");
        write_json_str(&mut json, &customer);
        json.extend_from_slice(b",\"event_name\":");
        write_json_str(&mut json, &event_name);
        json.extend_from_slice(b",\"timestamp\":");
        write_json_str(&mut json, &utc_millis_text(time));
        json.extend_from_slice(b",\"properties\":{");
        for (i, (name, value)) in properties.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_json_str(&mut json, name);
            json.push(b':');
            write_json_value(&mut json, value);
        }
        json.extend_from_slice(b"}}");
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: String::from_utf8(json).expect("JSON written from strings is UTF-8"),
            key,
            customer: None,
            time: Some(time),
            numeric_text: found_numeric_text.into_boxed_slice(),
        })
    }

    fn verdict(&self, response: &Response, keys: &[&str]) -> Verdict {
        if response
            .header("content-type")
            .is_some_and(|t| t.contains("text/html"))
        {
            // A page from a proxy, not Orb: the common rules say so.
            return common_verdict(Kind::Orb, response);
        }
        let status = response.status;
        let is_4xx_refusal = matches!(status, 400..=499)
            && !matches!(status, 401 | 403 | 404 | 405 | 408 | 409 | 429);
        if status == 409 {
            // An idempotency-header conflict: Orb says to retry.
            return Verdict::Retry {
                after: None,
                message: format!("409: {}", response.body_excerpt()),
            };
        }
        let transient = response
            .header("transient-error")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if !(200..300).contains(&status) && !is_4xx_refusal || transient {
            return common_verdict(Kind::Orb, response);
        }
        let failures = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|body| named_failures(&body));
        match failures {
            Some(failed) if failed.is_empty() && (200..300).contains(&status) => Verdict::Accepted,
            Some(failed) if failed.iter().any(|(key, _)| keys.contains(&key.as_str())) => {
                Verdict::Refused(failed)
            }
            _ if (200..300).contains(&status) => Verdict::Retry {
                after: None,
                message: format!(
                    "{status} without Orb's validation_failed list: {}",
                    response.body_excerpt()
                ),
            },
            _ => Verdict::Split(format!("{status}: {}", response.body_excerpt())),
        }
    }

    fn request(&self, _stream: Stream, records: &[&str]) -> Request {
        let array = super::json_array(records, 11);
        let mut body = Vec::with_capacity(array.len() + 11);
        body.extend_from_slice(b"{\"events\":");
        body.extend_from_slice(&array);
        body.push(b'}');
        self.api.request("POST", "/ingest", body)
    }
}

/// A property `numeric_properties` lists that holds no number.
fn not_a_number(from: &str, to: &str, value: &Value) -> Translation {
    Translation::Reject(Reason::new(
        "property not a number",
        format!(
            "properties.{from} (Orb \"{to}\") is {}; numeric_properties asks for a number",
            short_text(value)
        ),
    ))
}

/// The advice for a mapped property that carried numeric text in `events`
/// events while not listed in `numeric_properties`.
pub fn numeric_text_advice(property: &str, events: u64, example: &str) -> String {
    format!(
        "{events} event{} carried Orb property \"{property}\" as numeric text (such as {}), \
         which Orb does not sum: list it in numeric_properties",
        if events == 1 { "" } else { "s" },
        short_text(&Value::String(example.to_owned()))
    )
}

/// The events an Orb answer names as failed, from either documented shape:
/// `{"validation_failed":[{"idempotency_key","validation_errors"}]}` or an RFC 7807
/// body whose `validation_errors` holds such objects. None when it is neither.
fn named_failures(body: &Value) -> Option<Vec<(String, String)>> {
    let list = body
        .get("validation_failed")
        .or_else(|| body.get("validation_errors"))?
        .as_array()?;
    let detail = body.get("detail").and_then(Value::as_str);
    let mut failed = Vec::new();
    for item in list {
        let Some(key) = item.get("idempotency_key").and_then(Value::as_str) else {
            continue;
        };
        let message = match item.get("validation_errors") {
            Some(Value::Array(errors)) => errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("; "),
            Some(other) => other.to_string(),
            None => detail.unwrap_or("refused").to_owned(),
        };
        failed.push((key.to_owned(), message));
    }
    // A list of plain messages names no event: the batch must be halved instead.
    if failed.is_empty() && !list.is_empty() {
        return None;
    }
    Some(failed)
}

/// Orb's endpoint and the destination's key, and the requests besides
/// ingest: backfills (which let events older than the grace period in, one
/// time window at a time) and the event search `verify` uses.
#[derive(Clone)]
pub struct Api {
    endpoint: String,
    api_key: Secret,
}

impl Api {
    fn request(&self, method: &'static str, path: &str, body: Vec<u8>) -> Request {
        let mut headers = vec![Header::secret("Authorization", "Bearer ", &self.api_key)];
        if !body.is_empty() {
            headers.push(Header::plain("Content-Type", "application/json"));
        }
        Request {
            method,
            url: format!("{}{path}", self.endpoint),
            headers,
            body,
        }
    }

    /// `replace_existing_events` is always sent: true replaces every event of
    /// the window. So is `close_time`, when Orb closes the backfill by itself
    /// (without it, one day after its creation).
    pub fn create(
        &self,
        start: &str,
        end: &str,
        replace_existing_events: bool,
        close_time: &str,
    ) -> Request {
        let body = serde_json::json!({
            "timeframe_start": start,
            "timeframe_end": end,
            "replace_existing_events": replace_existing_events,
            "close_time": close_time,
        });
        self.request("POST", "/events/backfills", body.to_string().into_bytes())
    }

    /// `POST /events/search` with a query (at most 500 `event_ids`).
    pub fn search(&self, query: &Value) -> Request {
        self.request("POST", "/events/search", query.to_string().into_bytes())
    }

    pub fn show(&self, id: &str) -> Request {
        self.request(
            "GET",
            &format!("/events/backfills/{}", encoded(id)),
            Vec::new(),
        )
    }

    pub fn list(&self, cursor: Option<&str>) -> Request {
        let mut path = "/events/backfills?limit=100".to_owned();
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&encoded(cursor));
        }
        self.request("GET", &path, Vec::new())
    }

    /// What a usage request's URL gets to send its events into a backfill.
    pub fn backfill_query(&self, id: &str) -> String {
        format!("?backfill_id={}", encoded(id))
    }

    /// `close` or `revert`.
    pub fn act(&self, id: &str, action: &str) -> Request {
        self.request(
            "POST",
            &format!("/events/backfills/{}/{action}", encoded(id)),
            Vec::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_failure_shapes() {
        let plain = json!({"validation_failed": [{"idempotency_key": "k1", "validation_errors": ["bad timestamp", "no name"]}]});
        assert_eq!(
            named_failures(&plain),
            Some(vec![("k1".into(), "bad timestamp; no name".into())])
        );
        let rfc = json!({"status": 400, "type": "https://docs.withorb.com/reference/error-responses#400-request-validation-errors",
            "title": "Request validation failed", "detail": "x", "validation_errors": [{"idempotency_key": "k2", "validation_errors": ["too old"]}]});
        assert_eq!(
            named_failures(&rfc),
            Some(vec![("k2".into(), "too old".into())])
        );
        assert_eq!(
            named_failures(&json!({"validation_failed": []})),
            Some(vec![])
        );
        assert_eq!(
            named_failures(&json!({"status": 400, "validation_errors": ["events: too many"]})),
            None
        );
        assert_eq!(named_failures(&json!({"ok": true})), None);
    }
}
