//! Orb: track becomes a usage event, `POST /v1/ingest` with `{"events":[...]}`.

pub(crate) mod backfill;
mod verify;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::{
    Common, CustomerIdField, Destination, Header, IngestWindow, Kind, NumericText, OldEvents,
    Payload, Request, Response, Stream, Translation, Verdict, Verifier, beyond_double,
    common_verdict, out_of_range_reason, records_in_default, write_json_str, write_json_value,
};
use crate::event::reason::Reason;
use crate::event::time::{event_time, utc_millis_text};
use crate::event::{Event, json_kind, numeric_text, short_text};
use crate::settings::{AnySetting, Secret, Setting, SettingsError, TableReader, kinds};
use crate::transport::wire::encoded;

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

pub const SETTINGS: &[AnySetting] = &[
    EXTERNAL_CUSTOMER_ID_FIELD.any(),
    EVENT_NAME_FIELD.any(),
    IDEMPOTENCY_KEY_FIELD.any(),
    PROPERTIES_MAPPING.any(),
    NUMERIC_PROPERTIES.any(),
    GRACE_PERIOD_HOURS.any(),
];

const EXTERNAL_CUSTOMER_ID_FIELD: Setting<kinds::Fields> = Setting {
    key: "external_customer_id_field",
    kind: kinds::Fields,
    default: None,
    required: true,
    recorded: true,
    help: "dot path to your customer id, sent as external_customer_id; or a list of them, \
           tried in order (add \"anonymousId\" to send anonymous visitors' events); \
           an event without one is skipped",
};
const EVENT_NAME_FIELD: Setting<kinds::Field> = Setting {
    key: "event_name_field",
    kind: kinds::Field,
    default: Some("event"),
    required: false,
    recorded: true,
    help: "dot path to the event name",
};
const IDEMPOTENCY_KEY_FIELD: Setting<kinds::Field> = Setting {
    key: "idempotency_key_field",
    kind: kinds::Field,
    default: Some("messageId"),
    required: false,
    recorded: true,
    help: "dot path to the idempotency key",
};
const PROPERTIES_MAPPING: Setting<kinds::Mapping> = Setting {
    key: "properties_mapping",
    kind: kinds::Mapping,
    default: Some("{}"),
    required: false,
    recorded: true,
    help: "table: Segment property (dot path) = Orb property; unmapped properties are dropped",
};
const NUMERIC_PROPERTIES: Setting<kinds::List> = Setting {
    key: "numeric_properties",
    kind: kinds::List,
    default: Some("[]"),
    required: false,
    recorded: true,
    help: "Orb properties (mapping targets) sent as numbers: numeric text converted, other values rejected",
};
const GRACE_PERIOD_HOURS: Setting<kinds::Positive> = Setting {
    key: "grace_period_hours",
    kind: kinds::Positive,
    default: Some("12"),
    required: false,
    recorded: true,
    help: "the account's grace period: older events need --orb-backfill (whole hours)",
};

pub struct Orb {
    name: String,
    /// The endpoint and the key every request carries.
    api: Api,
    customer_field: CustomerIdField,
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
        let customer_field = CustomerIdField::read(&EXTERNAL_CUSTOMER_ID_FIELD, table)?;
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

impl Orb {
    /// The Orb behind a destination, for Orb's own flags and commands.
    pub(crate) fn of(destination: &dyn Destination) -> Option<&Orb> {
        destination.as_any().downcast_ref()
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

    /// A batch is `{"events":[...]}`.
    fn records_in<'a>(&self, body: &'a [u8]) -> Vec<&'a RawValue> {
        #[derive(serde::Deserialize)]
        struct Batch<'a> {
            #[serde(borrow)]
            events: Vec<&'a RawValue>,
        }
        match serde_json::from_slice::<Batch>(body) {
            Ok(batch) => batch.events,
            Err(_) => records_in_default(body),
        }
    }

    fn verifier(&self) -> Option<Box<dyn Verifier + '_>> {
        Some(Box::new(verify::KeySearch { api: &self.api }))
    }

    fn customer_id_field(&self) -> &CustomerIdField {
        &self.customer_field
    }

    fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self
            .customer_field
            .paths()
            .iter()
            .map(String::as_str)
            .collect();
        paths.extend([
            self.event_name_field.as_str(),
            self.idempotency_key_field.as_str(),
        ]);
        paths
    }

    /// Orb reads only the mapped properties.
    fn reads_whole_objects(&self) -> bool {
        false
    }

    fn ingest_window(&self) -> Option<IngestWindow> {
        Some(IngestWindow {
            grace: SignedDuration::from_hours(self.grace_hours as i64),
            grace_name: "grace period",
            old: OldEvents::Refused {
                remedy: "send them with --orb-backfill",
            },
            ahead: FUTURE_LIMIT,
            rejects_ahead: false,
        })
    }

    fn translate(&self, event: &Event) -> Translation {
        if let Err(skip_or_reject) = super::screen(event, Kind::Orb, &["track"]) {
            return skip_or_reject;
        }
        let customer = match self.customer_field.find(event) {
            Ok(customer) => customer,
            Err(skip) => return skip,
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
                Value::Number(ref n) if beyond_double(n) => {
                    return Translation::Reject(out_of_range_reason(from, n, Kind::Orb));
                }
                Value::Number(_) => {
                    properties.insert(to.clone(), value);
                }
                Value::String(ref text) if *numeric => match numeric_text(text) {
                    Some(number) if beyond_double(&number) => {
                        return Translation::Reject(out_of_range_reason(from, &number, Kind::Orb));
                    }
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
            notes: (!found_numeric_text.is_empty()).then(|| {
                Box::new(super::Notes {
                    numeric_text: Some(NumericText {
                        found: found_numeric_text,
                        advice: numeric_text_advice,
                    }),
                    rewritten: None,
                })
            }),
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
            _ if (200..300).contains(&status) => Verdict::Foreign(format!(
                "{status} without Orb's validation_failed list: {}",
                response.body_excerpt()
            )),
            _ => Verdict::Split(format!("{status}: {}", response.body_excerpt())),
        }
    }

    fn warnings(&self) -> Vec<String> {
        if !self.mapping.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "[destinations.{}] properties_mapping is empty, so every event is sent \
             without properties (Orb takes only the properties it maps): map the ones \
             your billable metrics read, such as properties_mapping = {{ \"value\" = \"value\" }}",
            self.name
        )]
    }

    fn endpoint_hint(&self, _url: &str) -> String {
        let fix = if super::base_path(&self.api.endpoint).ends_with("/v1") {
            "check endpoint in the settings"
        } else {
            "the endpoint setting probably lacks /v1"
        };
        format!("{fix}: Orb's API is at {DEFAULT_ENDPOINT}")
    }

    fn call_verdict(&self, response: &Response) -> Verdict {
        if response.status == 409 {
            // The same idempotency key in flight or reused: Orb says to retry.
            return Verdict::Retry {
                after: None,
                message: format!("409: {}", response.body_excerpt()),
            };
        }
        common_verdict(Kind::Orb, response)
    }

    fn request(&self, _stream: Stream, records: &[&str]) -> Request {
        let array = super::json_array(records, 11);
        let mut body = Vec::with_capacity(array.len() + 11);
        body.extend_from_slice(b"{\"events\":");
        body.extend_from_slice(&array);
        body.push(b'}');
        self.api.request("POST", "/ingest", body)
    }

    /// An ingest request's idempotency key comes from what it sends, where:
    /// every retry, and a later run sending the same batch to the same place
    /// (ordinary ingest or one backfill), carries the same key, and Orb answers
    /// it as it answered the first.
    fn finish_request(&self, request: &mut Request) {
        let (_, target) = request.host_and_target();
        let key = derived_key(
            "ingest",
            &[request.method.as_bytes(), target.as_bytes(), &request.body],
        );
        request.headers.push(Header::plain(IDEMPOTENCY_HEADER, key));
    }

    /// Orb's API docs advise retrying with exponential backoff, giving no
    /// numbers: the default.
    fn backoff(&self) -> super::Backoff {
        super::Backoff::default()
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
fn numeric_text_advice(property: &str, events: u64, example: &str) -> String {
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

/// Orb replays its first answer to a POST that repeats this header's value
/// (for 48 hours), instead of doing it again.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// `segrelay-KIND-` and the first 32 hex digits of the SHA-256 of `parts`,
/// each but the last followed by a newline: the same parts make the same key
/// (Orb takes at most 64 characters). Only the last part may hold a newline.
pub fn derived_key(kind: &str, parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash.update(b"\n");
        }
        hash.update(part);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("segrelay-{kind}-{hex}")
}

/// A key made once for one call (kept by the caller to repeat the call).
pub fn fresh_key(kind: &str) -> String {
    format!("segrelay-{kind}-{:032x}", fastrand::u128(..))
}

/// A backfill as Orb shows it (`GET /events/backfills[/ID]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub id: String,
    pub status: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// In the future: when Orb closes it by itself; in the past: when it closed.
    pub close_time: Option<Timestamp>,
    pub replace_existing_events: bool,
    /// None when Orb's answer does not say.
    pub events_ingested: Option<u64>,
    /// The one customer it is scoped to (`customer_id` or
    /// `external_customer_id`), or None for every customer.
    pub customer: Option<String>,
    /// Orb's filter of the events it deprecates, when it has one.
    pub deprecation_filter: Option<String>,
}

impl Backfill {
    /// None for an object without an id or a timeframe.
    pub fn from_json(value: &Value) -> Option<Backfill> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let time = |key: &str| text(key).and_then(|t| t.parse::<Timestamp>().ok());
        Some(Backfill {
            id: text("id")?,
            status: text("status").unwrap_or_default(),
            start: time("timeframe_start")?,
            end: time("timeframe_end")?,
            close_time: time("close_time"),
            replace_existing_events: value["replace_existing_events"] == true,
            events_ingested: value["events_ingested"].as_u64(),
            customer: text("external_customer_id").or_else(|| text("customer_id")),
            deprecation_filter: text("deprecation_filter"),
        })
    }

    /// Whether its events count (or will once reflected): not reverted nor
    /// being reverted. An unknown status counts.
    pub fn is_active(&self) -> bool {
        !matches!(self.status.as_str(), "reverted" | "pending_revert")
    }

    /// Whether it takes events still: pending, and its close time not past.
    /// Orb's reference lists no status between a close and `reflected`, and
    /// says a close time in the past is when it closed.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.status == "pending" && self.close_time.is_none_or(|t| t > now)
    }

    /// Whether, closed, it changed the events of its timeframe: it held some,
    /// or replaced them (with none, maybe). Unknown counts.
    pub fn changed_events(&self) -> bool {
        self.replace_existing_events || self.events_ingested != Some(0)
    }

    /// Whether its timeframe shares time with [start, end) (ends are exclusive).
    pub fn overlaps(&self, start: Timestamp, end: Timestamp) -> bool {
        self.start < end && start < self.end
    }
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
    /// (without it, one day after its creation). The same key and body again
    /// get the answer to the first (the backfill it created).
    pub fn create(
        &self,
        start: &str,
        end: &str,
        replace_existing_events: bool,
        close_time: &str,
        key: &str,
    ) -> Request {
        let body = serde_json::json!({
            "timeframe_start": start,
            "timeframe_end": end,
            "replace_existing_events": replace_existing_events,
            "close_time": close_time,
        });
        let request = self.request("POST", "/events/backfills", body.to_string().into_bytes());
        with_key(request, key)
    }

    /// `POST /events/search` with a query (at most 500 `event_ids`). A fresh
    /// key each time: a replayed answer would show the events as they were.
    pub fn search(&self, query: &Value) -> Request {
        let request = self.request("POST", "/events/search", query.to_string().into_bytes());
        with_key(request, &fresh_key("search"))
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

    /// `close` or `revert`, under a key the caller keeps to repeat it.
    pub fn act(&self, id: &str, action: &str, key: &str) -> Request {
        let path = format!("/events/backfills/{}/{action}", encoded(id));
        with_key(self.request("POST", &path, Vec::new()), key)
    }
}

/// The request, carrying an idempotency key.
fn with_key(mut request: Request, key: &str) -> Request {
    request.headers.push(Header::plain(IDEMPOTENCY_HEADER, key));
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_derived_key_is_the_sha256_of_its_parts_by_lines() {
        // printf 'POST\n/v1/ingest\n{"events":[]}' | sha256sum
        assert_eq!(
            derived_key("ingest", &[b"POST", b"/v1/ingest", b"{\"events\":[]}"]),
            "segrelay-ingest-e3c1ab081c1fdd47e37da968e90c168b"
        );
        assert!(fresh_key("close").len() <= 64);
        assert_ne!(fresh_key("close"), fresh_key("close"));
    }

    #[test]
    fn a_backfill_is_read_as_orb_shows_it() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let shown = json!({"id": "bf_1", "status": "pending", "timeframe_start": "2026-01-01T00:00:00Z",
            "timeframe_end": "2026-01-02T00:00:00Z", "close_time": "2026-05-01T00:00:00Z",
            "events_ingested": 0, "replace_existing_events": false, "customer_id": null,
            "deprecation_filter": null});
        let backfill = Backfill::from_json(&shown).unwrap();
        assert_eq!(
            (backfill.customer.as_deref(), backfill.events_ingested),
            (None, Some(0))
        );
        // Pending past its close time: closed, being reflected (Orb lists no status for that).
        assert!(!backfill.is_open(now));
        assert!(backfill.is_open(at("2026-04-01T00:00:00Z")));
        assert!(backfill.is_active() && !backfill.changed_events());
        assert!(backfill.overlaps(at("2026-01-01T23:00:00Z"), at("2026-01-03T00:00:00Z")));
        assert!(!backfill.overlaps(at("2026-01-02T00:00:00Z"), at("2026-01-03T00:00:00Z")));

        let mut scoped = shown.clone();
        scoped["external_customer_id"] = json!("c1");
        scoped["status"] = json!("pending_revert");
        scoped["replace_existing_events"] = json!(true);
        let scoped = Backfill::from_json(&scoped).unwrap();
        assert_eq!(scoped.customer.as_deref(), Some("c1"));
        assert!(!scoped.is_active() && scoped.changed_events());
        let mut unknown = shown.clone();
        unknown["status"] = json!("something_new");
        unknown.as_object_mut().unwrap().remove("events_ingested");
        let unknown = Backfill::from_json(&unknown).unwrap();
        assert!(
            unknown.is_active() && unknown.changed_events(),
            "unknown counts"
        );
        assert_eq!(Backfill::from_json(&json!({"id": "bf_2"})), None);
    }

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

    /// The dry run's records are a batch's events, and a backfill's creation
    /// (one object, made for no event) is one record.
    #[test]
    fn the_records_of_a_body_are_its_events() {
        let orb = orb_for_records();
        let batch = br#"{"events":[{"idempotency_key":"a"},{"idempotency_key":"b"}]}"#;
        let records: Vec<&str> = orb.records_in(batch).iter().map(|r| r.get()).collect();
        assert_eq!(
            records,
            [r#"{"idempotency_key":"a"}"#, r#"{"idempotency_key":"b"}"#]
        );
        let creation = br#"{"timeframe_start":"2025-01-01T00:00:00.000Z"}"#;
        assert_eq!(orb.records_in(creation).len(), 1);
        assert!(orb.records_in(b"").is_empty());
    }

    fn orb_for_records() -> Orb {
        let table: toml::Table = toml::from_str("external_customer_id_field = \"userId\"").unwrap();
        let mut reader =
            TableReader::new(table, "segrelay.toml", "destinations.orb".into(), &|_| None);
        let common = Common {
            name: "orb".into(),
            api_key: Secret::literal("k"),
            endpoint: None,
            allow_insecure: false,
        };
        Orb::new(common, &mut reader).unwrap()
    }
}
