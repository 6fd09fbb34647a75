//! Orb: track becomes a usage event, `POST /v1/ingest` with `{"events":[...]}`.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Destination, Header, Kind, Payload, Request, SettingDoc, Stream, Translation};
use crate::event::time::{event_time, utc_millis_text};
use crate::event::{Event, json_kind, lookup};
use crate::report::Reason;
use crate::settings::{DestinationSettings, Secret, SettingsError, TableReader};

pub const DEFAULT_ENDPOINT: &str = "https://api.withorb.com/v1";
pub const DEFAULT_BATCH: usize = 500;
/// Orb takes at most 500 events per ingest request.
pub const MAX_BATCH: usize = 500;

pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        key: "external_customer_id_field",
        default: None,
        required: true,
        help: "dot path to your customer id, sent as external_customer_id",
    },
    SettingDoc {
        key: "event_name_field",
        default: Some("event"),
        required: false,
        help: "dot path to the event name",
    },
    SettingDoc {
        key: "idempotency_key_field",
        default: Some("messageId"),
        required: false,
        help: "dot path to the idempotency key",
    },
    SettingDoc {
        key: "properties_mapping",
        default: Some("{}"),
        required: false,
        help: "table: Segment property (dot path) = Orb property; unmapped properties are dropped",
    },
];

pub struct Orb {
    name: String,
    api_key: Secret,
    endpoint: String,
    customer_field: String,
    event_name_field: String,
    idempotency_key_field: String,
    mapping: Vec<(String, String)>,
}

impl Orb {
    pub fn new(
        settings: &DestinationSettings,
        table: &mut TableReader,
    ) -> Result<Orb, SettingsError> {
        Ok(Orb {
            name: settings.name.clone(),
            api_key: settings.api_key.clone(),
            endpoint: settings
                .endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            customer_field: table.required_field("external_customer_id_field")?,
            event_name_field: table.field("event_name_field", "event")?,
            idempotency_key_field: table.field("idempotency_key_field", "messageId")?,
            mapping: table.mapping("properties_mapping")?,
        })
    }
}

#[derive(Serialize)]
struct UsageEvent<'a> {
    idempotency_key: &'a str,
    external_customer_id: &'a str,
    event_name: &'a str,
    timestamp: &'a str,
    properties: Map<String, Value>,
}

impl Destination for Orb {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Orb
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
        let time = match event_time(&event.fields) {
            Ok(time) => time,
            Err(e) => return Translation::Reject(Reason::new("no usable time", e.to_string())),
        };
        let source = event.properties();
        let mut properties = Map::new();
        for (from, to) in &self.mapping {
            match lookup(source, from) {
                None | Some(Value::Null) => {}
                Some(nested @ (Value::Object(_) | Value::Array(_))) => {
                    return Translation::Reject(Reason::new(
                        "property not flat",
                        format!(
                            "properties.{from} is {}; Orb takes only strings, numbers and booleans",
                            json_kind(nested)
                        ),
                    ));
                }
                Some(value) => {
                    properties.insert(to.clone(), value.clone());
                }
            }
        }
        let timestamp = utc_millis_text(time);
        let record = UsageEvent {
            idempotency_key: &key,
            external_customer_id: &customer,
            event_name: &event_name,
            timestamp: &timestamp,
            properties,
        };
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: serde_json::to_string(&record).expect("an Orb event always serialises"),
            key,
        })
    }

    fn request(&self, _stream: Stream, records: &[&str]) -> Request {
        let array = super::json_array(records, 11);
        let mut body = Vec::with_capacity(array.len() + 11);
        body.extend_from_slice(b"{\"events\":");
        body.extend_from_slice(&array);
        body.push(b'}');
        Request {
            method: "POST",
            url: format!("{}/ingest", self.endpoint),
            headers: vec![
                Header::secret("Authorization", "Bearer ", &self.api_key),
                Header::plain("Content-Type", "application/json"),
            ],
            body,
        }
    }
}
