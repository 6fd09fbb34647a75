//! Kable: track becomes an event, `POST /api/v1/events/create` with a JSON array.

mod line;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    Common, CustomerIdField, Destination, Header, Kind, Outgoing, Payload, Request, Stream,
    Translation, write_json_str,
};
use crate::event::reason::Reason;
use crate::event::time::{event_time, utc_millis_text};
use crate::event::{Event, lookup, remove_path};
use crate::settings::{AnySetting, Secret, Setting, SettingsError, TableReader, kinds};

pub const LIVE_ENDPOINT: &str = "https://live.kable.io";
pub const TEST_ENDPOINT: &str = "https://test.kable.io";
pub const DEFAULT_BATCH: usize = 500;
/// Kable's Go SDK sends up to 1000 events per request.
pub const MAX_BATCH: usize = 1000;

pub const SETTINGS: &[AnySetting] = &[
    KABLE_CLIENT_ID.any(),
    CLIENT_ID_FIELD.any(),
    ENVIRONMENT.any(),
    PROPERTIES_MAPPING.any(),
];

const KABLE_CLIENT_ID: Setting<kinds::Text> = Setting {
    key: "kable_client_id",
    kind: kinds::Text,
    default: None,
    required: true,
    recorded: true,
    help: "your Kable client id (kci_...), sent as KABLE-CLIENT-ID",
};
const CLIENT_ID_FIELD: Setting<kinds::Fields> = Setting {
    key: "client_id_field",
    kind: kinds::Fields,
    default: Some("userId"),
    required: false,
    recorded: true,
    help: "dot path to your customer's Kable clientId; or a list of them, tried in order \
           (add \"anonymousId\" to send anonymous visitors' events); an event without one is skipped",
};
const ENVIRONMENT: Setting<kinds::Text> = Setting {
    key: "environment",
    kind: kinds::Text,
    default: Some("live when api_key starts with sk_live, else test"),
    required: false,
    recorded: true,
    help: "\"live\" or \"test\": which Kable host receives the events",
};
const PROPERTIES_MAPPING: Setting<kinds::Mapping> = Setting {
    key: "properties_mapping",
    kind: kinds::Mapping,
    default: Some("{}"),
    required: false,
    recorded: true,
    help: "table: Segment property (dot path) = Kable data key; unmapped properties are kept",
};

pub struct Kable {
    name: String,
    api_key: Secret,
    endpoint: String,
    kable_client_id: String,
    client_id_field: CustomerIdField,
    mapping: Vec<(String, String)>,
    /// What the settings leave uncertain about where events go.
    warnings: Vec<String>,
}

impl Kable {
    pub fn new(common: Common, table: &mut TableReader) -> Result<Kable, SettingsError> {
        let kable_client_id = table.required_string(&KABLE_CLIENT_ID)?;
        let client_id_field = CustomerIdField::read(&CLIENT_ID_FIELD, table)?;
        let key = common.api_key.value();
        let live_key = key.is_some_and(|k| k.starts_with("sk_live"));
        let mut warnings = Vec::new();
        let live = match table.string(&ENVIRONMENT)?.as_deref() {
            Some(chosen @ ("live" | "test")) => {
                let live = chosen == "live";
                if key.is_some() && live != live_key {
                    warnings.push(format!(
                        "environment = \"{chosen}\" sends to {}, but the api_key is {} key: Kable will refuse it there",
                        if live { LIVE_ENDPOINT } else { TEST_ENDPOINT },
                        if live_key { "a live (sk_live)" } else { "not a live (sk_live)" }
                    ));
                }
                live
            }
            Some(other) => {
                return Err(table.error(format!(
                    "key \"environment\" must be \"live\" or \"test\", not \"{other}\""
                )));
            }
            // Kable's SDK rule: the key decides. Without it (a dry run), the host is unknown.
            None => {
                if key.is_none() && common.endpoint.is_none() {
                    warnings.push(format!(
                        "the api_key is not set, so the Kable host is unknown: a live key (sk_live...) sends to {LIVE_ENDPOINT}, \
                         any other to {TEST_ENDPOINT} (shown here); set environment = \"live\" or \"test\" to decide"
                    ));
                }
                live_key
            }
        };
        let default_endpoint = if live { LIVE_ENDPOINT } else { TEST_ENDPOINT };
        Ok(Kable {
            name: common.name,
            api_key: common.api_key,
            endpoint: common
                .endpoint
                .unwrap_or_else(|| default_endpoint.to_owned()),
            kable_client_id,
            client_id_field,
            mapping: table.mapping(&PROPERTIES_MAPPING)?,
            warnings,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KableEvent<'a> {
    client_id: &'a str,
    timestamp: &'a str,
    transaction_id: &'a str,
    data: Data<'a>,
}

/// The properties with the mapped keys renamed, written without copying them.
struct Data<'a> {
    properties: &'a Map<String, Value>,
    mapping: &'a [(String, String)],
    /// Parents of nested sources, with those sources taken out.
    trimmed: &'a [(&'a str, Value)],
    renamed: &'a [(&'a str, &'a Value)],
}

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.properties {
            let moved = self.mapping.iter().any(|(from, _)| from == key);
            let replaced = self.renamed.iter().any(|(to, _)| to == key);
            if moved || replaced {
                continue;
            }
            match self.trimmed.iter().find(|(parent, _)| parent == key) {
                Some((_, trimmed)) => map.serialize_entry(key, &Outgoing(trimmed))?,
                None => map.serialize_entry(key, &Outgoing(value))?,
            }
        }
        for (to, value) in self.renamed {
            map.serialize_entry(to, &Outgoing(value))?;
        }
        map.end()
    }
}

impl Kable {
    /// The record `KableEvent` makes, written with `data` from the text of
    /// the properties (see `line`); None when the map must write it.
    fn record_from_text(
        &self,
        client_id: &str,
        timestamp: &str,
        transaction_id: &str,
        properties: &str,
    ) -> Option<String> {
        let mut json = Vec::with_capacity(128 + properties.len());
        json.extend_from_slice(b"{\"clientId\":");
        write_json_str(&mut json, client_id);
        json.extend_from_slice(b",\"timestamp\":");
        write_json_str(&mut json, timestamp);
        json.extend_from_slice(b",\"transactionId\":");
        write_json_str(&mut json, transaction_id);
        json.extend_from_slice(b",\"data\":");
        line::write_data(&mut json, properties, &self.mapping)?;
        json.push(b'}');
        Some(String::from_utf8(json).expect("JSON written from strings is UTF-8"))
    }
}

impl Destination for Kable {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Kable
    }

    fn secret(&self) -> &Secret {
        &self.api_key
    }

    fn customer_id_field(&self) -> &CustomerIdField {
        &self.client_id_field
    }

    fn paths(&self) -> Vec<&str> {
        self.client_id_field
            .paths()
            .iter()
            .map(String::as_str)
            .collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn translate(&self, event: &Event) -> Translation {
        if let Err(skip_or_reject) = super::screen(event, Kind::Kable, &["track"]) {
            return skip_or_reject;
        }
        let client_id = match self.client_id_field.find(event) {
            Ok(client_id) => client_id,
            Err(skip) => return skip,
        };
        let time = match event_time(event) {
            Ok(time) => time,
            Err(e) => return Translation::Reject(Reason::new("no usable time", e.to_string())),
        };
        let transaction_id = event.message_id();
        let timestamp = utc_millis_text(time);
        // Kept as its line, the event's properties are written from their
        // text, never built (see `line`), unless something there needs the map.
        let from_text = event.properties_text().and_then(|properties| {
            self.record_from_text(&client_id, &timestamp, &transaction_id, properties)
        });
        if let Some(json) = from_text {
            return Translation::Record(Payload {
                stream: Stream::Usage,
                json,
                key: transaction_id,
                customer: None,
                time: Some(time),
                notes: None,
            });
        }
        let properties = event.properties();
        if let Some(reason) = super::out_of_range(properties, Kind::Kable) {
            return Translation::Reject(reason);
        }
        // Renames read the original properties, so chained ones (a to b, b to c)
        // work; a renamed key replaces a property of the same name.
        let mut renamed: Vec<(&str, &Value)> = Vec::new();
        let mut trimmed: Vec<(&str, Value)> = Vec::new();
        for (from, to) in &self.mapping {
            let Some(value) = lookup(properties, from) else {
                continue;
            };
            renamed.retain(|(target, _)| *target != to.as_str());
            renamed.push((to, value));
            if let Some((top, _)) = from.split_once('.') {
                // A nested source leaves its parent behind, without it.
                let at = match trimmed.iter().position(|(key, _)| *key == top) {
                    Some(at) => at,
                    None => {
                        let Some((key, parent)) = properties.get_key_value(top) else {
                            continue;
                        };
                        trimmed.push((key, parent.clone()));
                        trimmed.len() - 1
                    }
                };
                if let Value::Object(parent) = &mut trimmed[at].1 {
                    remove_path(parent, &from[top.len() + 1..]);
                }
            }
        }
        let data = Data {
            properties,
            mapping: &self.mapping,
            trimmed: &trimmed,
            renamed: &renamed,
        };
        let record = KableEvent {
            client_id: &client_id,
            timestamp: &timestamp,
            transaction_id: &transaction_id,
            data,
        };
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: super::record_json(&record),
            key: transaction_id,
            customer: None,
            time: Some(time),
            notes: None,
        })
    }

    fn endpoint_hint(&self, _url: &str) -> String {
        let fix = if super::base_path(&self.endpoint).contains("/api/v1") {
            "the endpoint setting should end before /api/v1 (segrelay adds /api/v1/events/create)"
        } else {
            "check endpoint in the settings (segrelay adds /api/v1/events/create)"
        };
        format!("{fix}: Kable's API is at {LIVE_ENDPOINT} (or {TEST_ENDPOINT})")
    }

    fn request(&self, _stream: Stream, records: &[&str]) -> Request {
        Request {
            method: "POST",
            url: format!("{}/api/v1/events/create", self.endpoint),
            headers: vec![
                Header::plain("KABLE-CLIENT-ID", self.kable_client_id.clone()),
                Header::secret("KABLE-CLIENT-SECRET", "", &self.api_key),
                Header::plain("Content-Type", "application/json"),
                Header::plain("Accept", "application/json"),
            ],
            body: super::json_array(records, 0),
        }
    }

    /// Kable's SDKs retry 429, 5xx and network errors, and document no
    /// backoff: the default.
    fn backoff(&self) -> super::Backoff {
        super::Backoff::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The rename rules, done the plain way: copy, take every source out, put the targets in.
    fn reference(
        properties: &Map<String, Value>,
        mapping: &[(String, String)],
    ) -> Map<String, Value> {
        let mut data = properties.clone();
        let mut renamed = Vec::new();
        for (from, to) in mapping {
            if let Some(value) = lookup(properties, from) {
                remove_path(&mut data, from);
                renamed.push((to.clone(), value.clone()));
            }
        }
        for (to, value) in renamed {
            data.insert(to, value);
        }
        data
    }

    #[test]
    fn renames_match_the_plain_rules() {
        let properties = json!({"a": 1, "b": 2, "c": 3, "nested": {"field": "x", "keep": true, "deep": {"er": 5}}, "kableX": "old"});
        let properties = properties.as_object().unwrap();
        let mappings: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("a", "b"), ("b", "c")],
            vec![("segmentX", "kableX")],
            vec![("a", "kableX")],
            vec![("nested.field", "dimension"), ("nested.deep.er", "er")],
            vec![("a", "z"), ("b", "z")],
            vec![("nested", "n"), ("nested.field", "f")],
            vec![("missing.path", "m")],
        ];
        for mapping in mappings {
            let mapping: Vec<(String, String)> = mapping
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect();
            let kable = Kable {
                name: "k".into(),
                api_key: Secret::literal("k"),
                endpoint: "http://x".into(),
                kable_client_id: "kci".into(),
                client_id_field: CustomerIdField::new("client_id_field", &["userId"]),
                mapping: mapping.clone(),
                warnings: Vec::new(),
            };
            let event = Event::from_map(
                json!({"type": "track", "userId": "u", "messageId": "m", "timestamp": "2026-01-01T00:00:00Z", "properties": properties})
                    .as_object()
                    .unwrap()
                    .clone(),
                crate::event::Origin { source: "t", line: 1 },
            );
            let Translation::Record(payload) = kable.translate(&event) else {
                panic!("not translated")
            };
            let written: Value = serde_json::from_str(&payload.json).unwrap();
            assert_eq!(
                written["data"],
                Value::Object(reference(properties, &mapping)),
                "{mapping:?}"
            );
        }
    }
}
