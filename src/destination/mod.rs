//! Destinations: pure translation from a Segment event to a record (or a reason),
//! and from a batch of records to an HTTP request; each built once from its
//! settings table, which the type's table of settings describes.

pub mod amberflo;
pub mod file;
pub mod gate;
pub(crate) mod init;
pub mod kable;
mod kind;
pub mod listing;
pub(crate) mod members;
mod number;
pub mod orb;
mod passes;
mod verdict;
mod verifier;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::Event;
use crate::event::reason::Reason;
use crate::settings::{
    AnySetting, Secret, Setting, SettingKind, SettingsError, TableReader, kinds,
};

pub use gate::{Gate, GateOptions};
pub use kind::Kind;
pub use number::{
    Outgoing, beyond_double, double_keeps, out_of_range, out_of_range_reason, outgoing_text,
};
pub(crate) use passes::{OnePass, Planner};
pub use verdict::{Verdict, common_verdict};
pub use verifier::{Comparison, Verification, Verifier};
// What a destination makes and reads, where the rest of the program looks for it.
pub use crate::transport::wire::{Header, Request, Response, write_json_str};

/// The path of a base URL without its trailing slashes: `/v1` of
/// `https://api.withorb.com/v1/`, empty for a bare host.
pub(crate) fn base_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/')
}

/// Which endpoint a record goes to; records of one stream are batched together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Usage: what the destination bills by. Only usage records are deduped
    /// by their keys and sent in time windows.
    Usage,
    /// A destination's other records (its customers, say), named by it: one
    /// per request unless its `batch_limit` says otherwise, and not deduped,
    /// since two of them with one key are two updates.
    Other(&'static str),
}

/// One translated event: its JSON, ready to be put in a request body.
#[derive(Debug)]
pub struct Payload {
    pub stream: Stream,
    pub json: String,
    /// The idempotency key the destination dedupes on.
    pub key: String,
    /// The customer the record is for, when the destination's gate makes
    /// sure of it first.
    pub customer: Option<String>,
    /// The event's time, as translated (usage records; not Amberflo's customers):
    /// what backfill windows and day spans go by.
    pub time: Option<jiff::Timestamp>,
    /// What the run's warnings and advice say of this event. None, without
    /// allocating, for nearly every event.
    pub notes: Option<Box<Notes>>,
}

/// What a translation found in an event that the run tells the user of at its end.
#[derive(Debug, Default)]
pub struct Notes {
    /// The properties that carried numeric text where the destination takes
    /// it as text, which it does not sum, for the run's advice.
    pub numeric_text: Option<NumericText>,
    /// The first key or value the translation changed to what the destination
    /// takes, for the run's warning.
    pub rewritten: Option<Rewrite>,
}

/// Properties an event carried as numeric text that the destination keeps as
/// text (not listed as numeric in its settings).
#[derive(Debug)]
pub struct NumericText {
    /// The property as the destination names it, and the text, each.
    pub found: Vec<(String, String)>,
    /// The advice at the end of the run for one property, given how many
    /// events carried it as text and the first text; the destination words it.
    pub advice: fn(property: &str, events: u64, example: &str) -> String,
}

/// A key or value of an event the destination stores otherwise than the
/// archive has it (Amberflo: characters it does not take become `_`).
#[derive(Debug)]
pub struct Rewrite {
    /// The change, for the warning's example: `properties.path "/v1/search" was sent as "_v1_search"`.
    pub example: String,
    /// The warning at the end of the run, given how many events were changed
    /// and the first one's place and example; the destination words it.
    pub warning: fn(events: u64, example: &str) -> String,
}

/// What a destination makes of an event.
#[derive(Debug)]
pub enum Translation {
    Record(Payload),
    Skip(Reason),
    Reject(Reason),
}

/// A destination's own type, behind the trait: what its own flags and
/// commands (`--orb-backfill`, `segrelay orb backfills`) reach through
/// [`Concrete::as_any`], so that the trait names no vendor's API. Every
/// destination has it.
pub trait Concrete {
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: std::any::Any> Concrete for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

pub trait Destination: Concrete + Send + Sync {
    /// The name of the settings table.
    fn name(&self) -> &str;

    fn kind(&self) -> Kind;

    /// The API key every request carries, kept out of every message that quotes a server.
    fn secret(&self) -> &Secret;

    /// Where the customer id is read from: events without one are skipped.
    fn customer_id_field(&self) -> &CustomerIdField;

    /// The dot paths into the event its settings name (the usual fields aside).
    fn paths(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Whether translation reads whole objects (every property), which are then
    /// best built at once, rather than a few values, best read one by one.
    fn reads_whole_objects(&self) -> bool {
        true
    }

    /// What the user should know about these settings before a run (said on
    /// standard error and kept in the summary's warnings).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// `ensure_customers` in the settings: make sure each customer exists first.
    fn ensures_customers(&self) -> bool {
        false
    }

    /// Translates one event; never fails, never panics: an event it cannot use is a reason.
    fn translate(&self, event: &Event) -> Translation;

    /// The request for a batch of records of one stream, in order.
    fn request(&self, stream: Stream, records: &[&str]) -> Request;

    /// The last touch to a batch's request, once its URL is whole (Orb: an
    /// idempotency key from what it sends, where).
    fn finish_request(&self, request: &mut Request) {
        let _ = request;
    }

    /// What an answer means for the batch that was sent (`keys` in request order).
    fn verdict(&self, response: &Response, keys: &[&str]) -> Verdict {
        let _ = keys;
        common_verdict(self.kind(), response)
    }

    /// How to fix the endpoint when a request to `url` was answered by
    /// something that is not the API: where the API is, and what the setting
    /// probably lacks or has too much of.
    fn endpoint_hint(&self, url: &str) -> String {
        let _ = url;
        "check endpoint in the settings".to_owned()
    }

    /// What an answer means for a single request that carries no batch (a
    /// lookup, a backfill's creation or close).
    fn call_verdict(&self, response: &Response) -> Verdict {
        common_verdict(self.kind(), response)
    }

    /// Events one request of this stream may hold.
    fn batch_limit(&self, stream: Stream, batch_size: usize) -> usize {
        match stream {
            Stream::Usage => batch_size,
            Stream::Other(_) => 1,
        }
    }

    /// The event times ordinary ingest takes, when it refuses some (Orb).
    fn ingest_window(&self) -> Option<IngestWindow> {
        None
    }

    /// The records a request body carries, as written, for the dry run's
    /// line per record: by default a JSON array's items (a batch), or the
    /// body itself when it is one object. A destination whose batches wrap
    /// their records says where they are.
    fn records_in<'a>(&self, body: &'a [u8]) -> Vec<&'a RawValue> {
        records_in_default(body)
    }

    /// How `verify` compares the input with what the destination holds; None
    /// when the destination gives no way to read events back.
    fn verifier(&self) -> Option<Box<dyn Verifier + '_>> {
        None
    }
    /// What each record goes through before its batch, when the destination
    /// must make sure of something first or writes some records itself (see
    /// [`gate`]). Built once per run, and only for a run that sends in one
    /// pass; its files, when there is a checkpoint, beside it.
    fn gate(&self, options: GateOptions) -> anyhow::Result<Option<Box<dyn Gate>>> {
        let _ = options;
        Ok(None)
    }

    /// How long to wait between tries of a request, as the destination advises.
    fn backoff(&self) -> Backoff {
        Backoff::default()
    }
}

/// The ceilings of a destination's retry backoff: the first wait is at most
/// `base`, each retry doubles it, up to `cap` (each wait jittered below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: std::time::Duration,
    pub cap: std::time::Duration,
}

impl Default for Backoff {
    /// For an API that advises exponential backoff without numbers: a
    /// second, doubling up to a minute.
    fn default() -> Backoff {
        Backoff {
            base: std::time::Duration::from_secs(1),
            cap: std::time::Duration::from_secs(60),
        }
    }
}

/// The records of a body that is a JSON array of them, or one record.
pub fn records_in_default(body: &[u8]) -> Vec<&RawValue> {
    if body.is_empty() {
        return Vec::new();
    }
    if let Ok(records) = serde_json::from_slice::<Vec<&RawValue>>(body) {
        return records;
    }
    serde_json::from_slice::<&RawValue>(body).map_or_else(|_| Vec::new(), |record| vec![record])
}

/// The span around now in which a destination's ordinary ingest takes event
/// times; later events it refuses, older ones it refuses or may not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestWindow {
    /// Events older than now − this are refused (Orb's grace period) or may
    /// not be kept (Amberflo's backfill guardrail).
    pub grace: jiff::SignedDuration,
    /// What that span is called after the destination's name: `grace period`.
    pub grace_name: &'static str,
    /// What becomes of the older events, and what to do about them.
    pub old: OldEvents,
    /// Events later than now + this are refused.
    pub ahead: jiff::SignedDuration,
    /// Whether those are rejected before they are sent (Amberflo, whose SDKs
    /// refuse them), rather than sent and counted (Orb answers for each).
    pub rejects_ahead: bool,
}

/// What a destination does with events older than its ingest window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldEvents {
    /// Ingest refuses them; the remedy is said in the warnings.
    Refused { remedy: &'static str },
    /// They are sent, but the account may need a limit raised; said once, at the end.
    MayNeedRaising { remedy: &'static str },
}

impl IngestWindow {
    /// The latest time ingest takes, as seen at `now`, when later events are
    /// rejected before they are sent.
    pub fn rejects_after(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.rejects_ahead.then(|| self.bounds(now).1)
    }

    /// The oldest and the latest time ingest takes, as seen at `now`.
    pub fn bounds(&self, now: jiff::Timestamp) -> (jiff::Timestamp, jiff::Timestamp) {
        let at = |offset: jiff::SignedDuration| {
            now.checked_add(offset).unwrap_or(if offset.is_negative() {
                jiff::Timestamp::MIN
            } else {
                jiff::Timestamp::MAX
            })
        };
        (at(-self.grace), at(self.ahead))
    }
}

/// The keys every destination type takes.
const COMMON_SETTINGS: &[AnySetting] = &[
    TYPE.any(),
    API_KEY.any(),
    ENDPOINT.any(),
    ALLOW_INSECURE.any(),
    MAX_EVENTS_PER_MINUTE.any(),
];

const TYPE: Setting<kinds::Text> = Setting {
    key: "type",
    kind: kinds::Text,
    default: Some("the table's name"),
    required: false,
    recorded: false,
    help: "amberflo, orb or kable",
};
const API_KEY: Setting<kinds::Secret> = Setting {
    key: "api_key",
    kind: kinds::Secret,
    default: None,
    required: true,
    recorded: false,
    help: "the API key; use \"${VAR}\" to read it from the environment",
};
const ENDPOINT: Setting<kinds::Url> = Setting {
    key: "endpoint",
    kind: kinds::Url,
    default: Some("the service's own URL"),
    required: false,
    recorded: true,
    help: "base URL, for proxies, tests and failover hosts",
};
const ALLOW_INSECURE: Setting<kinds::Bool> = Setting {
    key: "allow_insecure",
    kind: kinds::Bool,
    default: Some("false"),
    required: false,
    recorded: false,
    help: "allow a plain http:// endpoint that is not on this machine",
};
const MAX_EVENTS_PER_MINUTE: Setting<kinds::Positive> = Setting {
    key: "max_events_per_minute",
    kind: kinds::Positive,
    default: Some("no limit"),
    required: false,
    recorded: false,
    help: "keep under the destination's rate limit",
};

/// Every key a type's table takes: the common ones, then its own.
pub fn settings(kind: Kind) -> impl Iterator<Item = &'static AnySetting> {
    let own = match kind {
        Kind::Amberflo => amberflo::SETTINGS,
        Kind::Orb => orb::SETTINGS,
        Kind::Kable => kable::SETTINGS,
    };
    COMMON_SETTINGS.iter().chain(own)
}

/// The common keys as read, for the type's constructor.
pub struct Common {
    /// The name of the settings table.
    pub name: String,
    pub api_key: Secret,
    /// `endpoint`, when set: the service's own URL otherwise.
    pub endpoint: Option<String>,
    /// `allow_insecure`: plain http to a host that is not this machine.
    pub allow_insecure: bool,
}

/// One `[destinations.NAME]` table, and the destination it describes, built
/// once when the settings are read.
pub struct DestinationSettings {
    pub name: String,
    pub kind: Kind,
    /// The destination's own rate limit, which segrelay keeps under.
    pub max_events_per_minute: Option<u64>,
    pub destination: Arc<dyn Destination>,
    /// The table as written: what the checkpoint records, and the warnings.
    table: TableReader,
}

impl std::fmt::Debug for DestinationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl DestinationSettings {
    /// Reads a table and builds its destination, checking every key.
    pub fn read(name: String, table: TableReader) -> Result<DestinationSettings, SettingsError> {
        let built = Built::from_table(&name, table.clone())?;
        Ok(DestinationSettings {
            name,
            kind: built.kind,
            max_events_per_minute: built.max_events_per_minute,
            destination: Arc::from(built.destination),
            table,
        })
    }
}

impl DestinationSettings {
    /// What the table's text says that its reading does not: a `$NAME`
    /// without braces, taken as written.
    pub fn warnings(&self) -> Vec<String> {
        settings(self.kind)
            .flat_map(|s| {
                self.table
                    .unbraced_variables(s.key, s.kind == SettingKind::Secret)
            })
            .collect()
    }

    /// The settings a checkpoint records ([`Setting::recorded`]), each with
    /// its value as written, or None when the table leaves it to its default.
    pub fn recorded(&self) -> Vec<(&'static AnySetting, Option<String>)> {
        settings(self.kind)
            .filter(|s| s.recorded && s.kind != SettingKind::Secret)
            .map(|s| (s, self.table.shown(s.key)))
            .collect()
    }
}

struct Built {
    kind: Kind,
    max_events_per_minute: Option<u64>,
    destination: Box<dyn Destination>,
}

impl Built {
    fn from_table(name: &str, mut table: TableReader) -> Result<Built, SettingsError> {
        let known_types = || Kind::ALL.map(Kind::name).join(", ");
        let kind = match table.string(&TYPE)? {
            Some(kind) => Kind::from_name(&kind).ok_or_else(|| {
                table.error(format!(
                    "unknown destination type \"{kind}\" (known types: {})",
                    known_types()
                ))
            })?,
            None => Kind::from_name(name).ok_or_else(|| {
                table.error(format!(
                    "key \"type\" is required, since \"{name}\" is not a destination type ({})",
                    known_types()
                ))
            })?,
        };
        let api_key = table.secret(&API_KEY)?;
        let allow_insecure = table.bool(&ALLOW_INSECURE)?.unwrap_or(false);
        let endpoint = table.url(&ENDPOINT, allow_insecure)?;
        let max_events_per_minute = table.positive(&MAX_EVENTS_PER_MINUTE)?;
        let common = Common {
            name: name.to_owned(),
            api_key,
            endpoint,
            allow_insecure,
        };
        let destination: Box<dyn Destination> = match kind {
            Kind::Amberflo => Box::new(amberflo::Amberflo::new(common, &mut table)?),
            Kind::Orb => Box::new(orb::Orb::new(common, &mut table)?),
            Kind::Kable => Box::new(kable::Kable::new(common, &mut table)?),
        };
        table.finish(settings(kind).map(|s| s.key))?;
        Ok(Built {
            kind,
            max_events_per_minute,
            destination,
        })
    }
}

/// Call types a destination does not take are skipped, not errors; neither are
/// events the integrations object turns off. Everything else must have a type.
pub fn screen(event: &Event, kind: Kind, takes: &[&str]) -> Result<(), Translation> {
    let Some(call) = event.call_type() else {
        let reason = match event.get("type").as_deref() {
            None => Reason::plain("missing type"),
            Some(other) => Reason::new(
                "missing type",
                format!("\"type\" is {}", crate::event::json_kind(other)),
            ),
        };
        return Err(Translation::Reject(reason));
    };
    if !takes.contains(&call.as_ref()) {
        return Err(Translation::Skip(Reason::plain(format!(
            "type not taken: {call}"
        ))));
    }
    if !event.enabled_for(kind.display_name()) {
        return Err(Translation::Skip(Reason::plain("disabled by integrations")));
    }
    Ok(())
}

/// The skip reason of an event without a customer id.
pub const NO_CUSTOMER_ID: &str = "no customer id";

/// A destination's customer-id setting: dot paths tried in order, the first
/// holding an id wins. One rule for every type: an event none of them holds
/// an id for is skipped, not rejected (a web archive is mostly anonymous page
/// views), and an `anonymousId` is used only when the setting names it, so
/// nobody is billed, or created as a customer, under a visitor's id unasked.
#[derive(Debug, Clone)]
pub struct CustomerIdField {
    /// The setting's key, for the advice.
    key: &'static str,
    paths: Vec<String>,
}

impl CustomerIdField {
    pub fn read(
        setting: &'static Setting<kinds::Fields>,
        table: &mut TableReader,
    ) -> Result<Self, SettingsError> {
        Ok(CustomerIdField {
            key: setting.key,
            paths: table.fields(setting)?,
        })
    }

    #[cfg(test)]
    pub(crate) fn new(key: &'static str, paths: &[&str]) -> Self {
        CustomerIdField {
            key,
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The id at the first path that holds one, or the skip.
    pub fn find(&self, event: &Event) -> Result<String, Translation> {
        self.paths
            .iter()
            .find_map(|path| event.id_at(path))
            .ok_or_else(|| {
                Translation::Skip(Reason::new(
                    NO_CUSTOMER_ID,
                    format!("no usable value at {}", self.paths.join(" or ")),
                ))
            })
    }

    /// The warning at the end of a run that skipped `events` for want of an id.
    pub fn warning(&self, events: u64) -> String {
        let skipped = format!(
            "{} had no customer id at {} and {} skipped, not sent",
            crate::console::plural(events, "event"),
            self.paths.join(" or "),
            if events == 1 { "was" } else { "were" },
        );
        if self.paths.iter().any(|path| path == "anonymousId") {
            return skipped;
        }
        let mut fallback = self.paths.clone();
        fallback.push("anonymousId".to_owned());
        let list: Vec<String> = fallback.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "{skipped}; to send anonymous visitors' events under their anonymousId, set {} = [{}]",
            self.key,
            list.join(", ")
        )
    }
}

/// A reason for a missing field, naming where it was looked for.
pub fn missing(what: &'static str, field: &str) -> Translation {
    Translation::Reject(Reason::new(
        Cow::Owned(format!("missing {what}")),
        format!("no usable value at {field}"),
    ))
}

/// Writes a JSON value, its strings as `write_json_str` does and its numbers
/// as they go out ([`Outgoing`]).
pub fn write_json_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) => write_json_str(out, text),
        other => serde_json::to_writer(&mut *out, &Outgoing(other))
            .expect("writing to a Vec cannot fail"),
    }
}

/// A record's JSON, written into a buffer sized for a usual record at once
/// rather than grown (and copied) from empty.
pub fn record_json(record: &impl serde::Serialize) -> String {
    let mut json = Vec::with_capacity(512);
    serde_json::to_writer(&mut json, record).expect("a record always serialises");
    String::from_utf8(json).expect("serde_json writes UTF-8")
}

/// Joins pre-serialised records into a JSON array.
pub fn json_array(records: &[&str], extra: usize) -> Vec<u8> {
    let len = records.iter().map(|r| r.len() + 1).sum::<usize>() + 2 + extra;
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record.as_bytes());
    }
    body.push(b']');
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_path_is_the_path_without_trailing_slashes() {
        assert_eq!(super::base_path("https://api.withorb.com/v1/"), "/v1");
        assert_eq!(super::base_path("https://api.withorb.com"), "");
        assert_eq!(super::base_path("https://live.kable.io/"), "");
        assert_eq!(super::base_path("http://127.0.0.1:9/a/api/v1"), "/a/api/v1");
    }

    use super::*;
    use proptest::prelude::*;

    fn written(text: &str) -> (String, String) {
        let mut out = Vec::new();
        write_json_str(&mut out, text);
        let mut value_out = Vec::new();
        write_json_value(&mut value_out, &Value::String(text.to_owned()));
        assert_eq!(out, value_out);
        (
            String::from_utf8(out).unwrap(),
            serde_json::to_string(text).unwrap(),
        )
    }

    /// Every ASCII character, and some beyond, alone and amid plain text.
    #[test]
    fn each_character_is_written_as_serde_json_writes_it() {
        for c in (0..=0x7f_u8)
            .map(char::from)
            .chain(['é', '€', '\u{2028}', '😀'])
        {
            for text in [c.to_string(), format!("plain {c} text")] {
                let (ours, theirs) = written(&text);
                assert_eq!(ours, theirs, "{:?}", c);
            }
        }
    }

    #[test]
    fn a_customer_id_is_the_first_of_its_paths_and_anonymous_only_when_named() {
        let event = |value: serde_json::Value| {
            Event::from_map(
                value.as_object().unwrap().clone(),
                crate::event::Origin {
                    source: "t",
                    line: 1,
                },
            )
        };
        let visitor = event(serde_json::json!({"userId": " ", "anonymousId": "anon-1"}));
        let user_only = CustomerIdField::new("client_id_field", &["userId"]);
        let Err(Translation::Skip(reason)) = user_only.find(&visitor) else {
            panic!("an anonymous event is skipped")
        };
        assert_eq!(
            reason.to_string(),
            "no customer id: no usable value at userId"
        );
        assert_eq!(
            user_only.warning(2),
            "2 events had no customer id at userId and were skipped, not sent; to send anonymous \
             visitors' events under their anonymousId, set client_id_field = [\"userId\", \"anonymousId\"]"
        );
        let fallback = CustomerIdField::new("client_id_field", &["userId", "anonymousId"]);
        assert_eq!(fallback.find(&visitor).ok().as_deref(), Some("anon-1"));
        let both = event(serde_json::json!({"userId": "u", "anonymousId": "anon-1"}));
        assert_eq!(fallback.find(&both).ok().as_deref(), Some("u"));
        assert_eq!(
            fallback.warning(1),
            "1 event had no customer id at userId or anonymousId and was skipped, not sent"
        );
    }

    proptest! {
        /// The fast path writes exactly what serde_json writes, escapes or not.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(text in any::<String>()) {
            let (ours, theirs) = written(&text);
            prop_assert_eq!(ours, theirs);
        }
    }
}
