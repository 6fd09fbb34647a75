//! Kable: track becomes an event, `POST /api/v1/events/create` with a JSON array.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Destination, Header, Kind, Payload, Request, SettingDoc, Stream, Translation};
use crate::event::time::{event_time, utc_millis_text};
use crate::event::{Event, lookup, remove_path};
use crate::report::Reason;
use crate::settings::{DestinationSettings, Secret, SettingsError, TableReader};

pub const LIVE_ENDPOINT: &str = "https://live.kable.io";
pub const TEST_ENDPOINT: &str = "https://test.kable.io";
pub const DEFAULT_BATCH: usize = 500;
/// Kable's Go SDK sends up to 1000 events per request.
pub const MAX_BATCH: usize = 1000;

pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        key: "kable_client_id",
        default: None,
        required: true,
        help: "your Kable client id (kci_...), sent as KABLE-CLIENT-ID",
    },
    SettingDoc {
        key: "client_id_field",
        default: Some("userId"),
        required: false,
        help: "dot path to your customer's Kable clientId",
    },
    SettingDoc {
        key: "environment",
        default: Some("live when api_key starts with sk_live, else test"),
        required: false,
        help: "\"live\" or \"test\": which Kable host receives the events",
    },
    SettingDoc {
        key: "properties_mapping",
        default: Some("{}"),
        required: false,
        help: "table: Segment property (dot path) = Kable data key; unmapped properties are kept",
    },
];

pub struct Kable {
    name: String,
    api_key: Secret,
    endpoint: String,
    kable_client_id: String,
    client_id_field: String,
    mapping: Vec<(String, String)>,
}

impl Kable {
    pub fn new(
        settings: &DestinationSettings,
        table: &mut TableReader,
    ) -> Result<Kable, SettingsError> {
        let kable_client_id = table.required_string("kable_client_id")?;
        let client_id_field = table.field("client_id_field", "userId")?;
        let live = match table.optional_string("environment")?.as_deref() {
            Some("live") => true,
            Some("test") => false,
            Some(other) => {
                return Err(table.error(format!(
                    "key \"environment\" must be \"live\" or \"test\", not \"{other}\""
                )));
            }
            // Kable's SDK rule; a key not yet set in a dry run counts as test.
            None => settings
                .api_key
                .value()
                .is_some_and(|k| k.starts_with("sk_live")),
        };
        let default_endpoint = if live { LIVE_ENDPOINT } else { TEST_ENDPOINT };
        Ok(Kable {
            name: settings.name.clone(),
            api_key: settings.api_key.clone(),
            endpoint: settings
                .endpoint
                .clone()
                .unwrap_or_else(|| default_endpoint.to_owned()),
            kable_client_id,
            client_id_field,
            mapping: table.mapping("properties_mapping")?,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KableEvent<'a> {
    client_id: &'a str,
    timestamp: &'a str,
    transaction_id: &'a str,
    data: Map<String, Value>,
}

impl Destination for Kable {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Kable
    }

    fn translate(&self, event: &Event) -> Translation {
        if let Err(skip_or_reject) = super::screen(event, Kind::Kable, &["track"]) {
            return skip_or_reject;
        }
        let Some(client_id) = event.id_at(&self.client_id_field) else {
            return super::missing("client id", &self.client_id_field);
        };
        let time = match event_time(&event.fields) {
            Ok(time) => time,
            Err(e) => return Translation::Reject(Reason::new("no usable time", e.to_string())),
        };
        let properties = event.properties();
        let mut data = properties.clone();
        // Remove every mapped source before inserting, so that chained renames
        // (a to b, b to c) read the original properties.
        let mut renamed = Vec::new();
        for (from, to) in &self.mapping {
            if let Some(value) = lookup(properties, from) {
                remove_path(&mut data, from);
                renamed.push((to, value));
            }
        }
        for (to, value) in renamed {
            data.insert(to.clone(), value.clone());
        }
        let transaction_id = event.message_id();
        let timestamp = utc_millis_text(time);
        let record = KableEvent {
            client_id: &client_id,
            timestamp: &timestamp,
            transaction_id: &transaction_id,
            data,
        };
        Translation::Record(Payload {
            stream: Stream::Usage,
            json: serde_json::to_string(&record).expect("a Kable event always serialises"),
            key: transaction_id,
            customer: None,
        })
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
}
