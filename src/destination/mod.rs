//! Destinations: pure translation from a Segment event to a record (or a reason),
//! and from a batch of records to an HTTP request.

pub mod amberflo;
pub mod kable;
pub mod orb;

use std::borrow::Cow;

use serde_json::Value;

use crate::event::Event;
use crate::reason::Reason;
use crate::retry::parse_retry_after;
use crate::settings::{DestinationSettings, Secret, SettingsError};
use crate::transport::Response;

/// What an answer means for the batch it answers.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every event in the batch was taken.
    Accepted,
    /// The destination named events it refused (key, its message); the rest
    /// should go again with the same keys.
    Refused(Vec<(String, String)>),
    /// The batch was refused without naming an event: halve it to find the bad ones.
    Split(String),
    /// Worth another try, after the server's wait if it gave one.
    Retry {
        after: Option<std::time::Duration>,
        message: String,
    },
    /// Every later request would fail too: stop the run.
    Abort(String),
}

/// The statuses every destination treats alike.
pub fn common_verdict(kind: Kind, response: &Response) -> Verdict {
    let status = response.status;
    let described = || {
        let excerpt = response.body_excerpt();
        if excerpt.is_empty() {
            format!("{status}")
        } else {
            format!("{status}: {excerpt}")
        }
    };
    let html = response
        .header("content-type")
        .is_some_and(|t| t.contains("text/html"));
    match status {
        200..=299 if html => Verdict::Retry {
            after: None,
            message: format!(
                "{status} with an HTML page, not an answer from {} (a proxy?): {}",
                kind.display_name(),
                response.body_excerpt()
            ),
        },
        200..=299 => Verdict::Accepted,
        300..=399 => Verdict::Abort(format!(
            "{status}: redirected to {}; segrelay does not follow redirects (set endpoint to the final address)",
            response.header("location").unwrap_or("(no location)")
        )),
        401 | 403 => Verdict::Abort(format!(
            "{status}: {} refused the API key (check api_key in the settings)",
            kind.display_name()
        )),
        404 | 405 => Verdict::Abort(format!(
            "{}: wrong endpoint? (check endpoint in the settings)",
            described()
        )),
        408 | 429 | 500 | 502..=599 => Verdict::Retry {
            after: response
                .header("retry-after")
                .and_then(|v| parse_retry_after(v, jiff::Timestamp::now())),
            message: described(),
        },
        _ if response
            .header("transient-error")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) =>
        {
            Verdict::Retry {
                after: None,
                message: described(),
            }
        }
        400..=499 => Verdict::Split(described()),
        _ => Verdict::Abort(described()),
    }
}

/// The destination types segrelay knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Amberflo,
    Orb,
    Kable,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Amberflo, Kind::Orb, Kind::Kable];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Amberflo => "amberflo",
            Kind::Orb => "orb",
            Kind::Kable => "kable",
        }
    }

    /// The key in a Segment `integrations` object.
    pub fn display_name(self) -> &'static str {
        match self {
            Kind::Amberflo => "Amberflo",
            Kind::Orb => "Orb",
            Kind::Kable => "Kable",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Events per request: the default, and the most segrelay will put in one.
    pub fn batch_sizes(self) -> (usize, usize) {
        match self {
            Kind::Amberflo => (amberflo::DEFAULT_BATCH, amberflo::MAX_BATCH),
            Kind::Orb => (orb::DEFAULT_BATCH, orb::MAX_BATCH),
            Kind::Kable => (kable::DEFAULT_BATCH, kable::MAX_BATCH),
        }
    }
}

/// Which endpoint a record goes to; records of one stream are batched together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Usage: Amberflo meter records, Orb and Kable events.
    Usage,
    /// Amberflo customers, one per request.
    Customer,
}

/// One translated event: its JSON, ready to be put in a request body.
#[derive(Debug)]
pub struct Payload {
    pub stream: Stream,
    pub json: String,
    /// The idempotency key the destination dedupes on.
    pub key: String,
    /// Amberflo: the customer the record is for, to make sure it exists first.
    pub customer: Option<String>,
    /// The event's time, as translated (usage records; not Amberflo's customers):
    /// what backfill windows and day spans go by.
    pub time: Option<jiff::Timestamp>,
    /// Orb: the mapped properties that carried numeric text though not listed in
    /// `numeric_properties` (Orb's name, the text), for the run's advice. Empty,
    /// without allocating, for nearly every event.
    pub numeric_text: Box<[(String, String)]>,
}

/// What a destination makes of an event.
#[derive(Debug)]
pub enum Translation {
    Record(Payload),
    Skip(Reason),
    Reject(Reason),
}

/// An HTTP request, with secrets kept apart so every writer can hide them.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<Header>,
    /// The body as meant: JSON, even when it travels gzipped (`wire_body`).
    pub body: Vec<u8>,
}

impl Request {
    /// Whether the body travels gzipped: the request says `Content-Encoding: gzip`.
    pub fn gzips_body(&self) -> bool {
        self.headers.iter().any(|header| {
            header.name.eq_ignore_ascii_case("Content-Encoding")
                && matches!(&header.value, HeaderValue::Plain(value) if value == "gzip")
        })
    }

    /// The body's bytes as they go on the wire.
    pub fn wire_body(&self) -> Cow<'_, [u8]> {
        if !self.gzips_body() {
            return Cow::Borrowed(&self.body);
        }
        use std::io::Write;
        // The fastest level: JSON records still shrink several times, for little CPU.
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(self.body.len() / 4),
            flate2::Compression::fast(),
        );
        encoder
            .write_all(&self.body)
            .expect("writing to a Vec cannot fail");
        Cow::Owned(encoder.finish().expect("writing to a Vec cannot fail"))
    }
}

#[derive(Debug, Clone)]
pub struct Header {
    /// As sent on the wire (`X-API-KEY`); writers may lower-case it.
    pub name: &'static str,
    pub value: HeaderValue,
}

#[derive(Debug, Clone)]
pub enum HeaderValue {
    Plain(String),
    Secret {
        prefix: &'static str,
        secret: Secret,
    },
}

impl Header {
    pub fn plain(name: &'static str, value: impl Into<String>) -> Header {
        Header {
            name,
            value: HeaderValue::Plain(value.into()),
        }
    }

    pub fn secret(name: &'static str, prefix: &'static str, secret: &Secret) -> Header {
        Header {
            name,
            value: HeaderValue::Secret {
                prefix,
                secret: secret.clone(),
            },
        }
    }
}

pub trait Destination: Send + Sync {
    /// The name of the settings table.
    fn name(&self) -> &str;

    fn kind(&self) -> Kind;

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

    /// Whether a customer record (identify) is merged into the one the
    /// destination holds, on the run's own thread, rather than batched.
    fn merges_customers(&self) -> bool {
        false
    }

    /// Translates one event; never fails, never panics: an event it cannot use is a reason.
    fn translate(&self, event: &Event) -> Translation;

    /// The request for a batch of records of one stream, in order.
    fn request(&self, stream: Stream, records: &[&str]) -> Request;

    /// What an answer means for the batch that was sent (`keys` in request order).
    fn verdict(&self, response: &Response, keys: &[&str]) -> Verdict {
        let _ = keys;
        common_verdict(self.kind(), response)
    }

    /// Events one request of this stream may hold.
    fn batch_limit(&self, stream: Stream, batch_size: usize) -> usize {
        match stream {
            Stream::Usage => batch_size,
            Stream::Customer => 1,
        }
    }

    /// The event times ordinary ingest takes, when it refuses some (Orb).
    fn ingest_window(&self) -> Option<IngestWindow> {
        None
    }

    /// Whether a request holding two records with the same key and different
    /// bodies is refused whole (Orb): the later one is then rejected before
    /// it joins a batch.
    fn refuses_conflicting_keys(&self) -> bool {
        false
    }
}

/// The span around now in which a destination's ordinary ingest takes event
/// times; older or later events it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestWindow {
    /// Events older than now − this are refused: the grace period.
    pub grace: jiff::SignedDuration,
    /// Events later than now + this are refused.
    pub ahead: jiff::SignedDuration,
    /// What to do with the too old ones, said in the warning.
    pub remedy: &'static str,
}

impl IngestWindow {
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

/// Builds the destination a settings table describes, checking its own keys.
pub fn build(settings: &DestinationSettings) -> Result<Box<dyn Destination>, SettingsError> {
    let mut table = settings.table.clone();
    let destination: Box<dyn Destination> = match settings.kind {
        Kind::Amberflo => Box::new(amberflo::Amberflo::new(settings, &mut table)?),
        Kind::Orb => Box::new(orb::Orb::new(settings, &mut table)?),
        Kind::Kable => Box::new(kable::Kable::new(settings, &mut table)?),
    };
    let mut known = vec![
        "type",
        "api_key",
        "endpoint",
        "allow_insecure",
        "max_events_per_minute",
    ];
    known.extend(settings_keys(settings.kind).iter().map(|s| s.key));
    table.finish(&known)?;
    Ok(destination)
}

/// A setting a destination type takes, for `segrelay destinations`.
pub struct SettingDoc {
    pub key: &'static str,
    pub default: Option<&'static str>,
    pub required: bool,
    pub help: &'static str,
}

pub fn settings_keys(kind: Kind) -> &'static [SettingDoc] {
    match kind {
        Kind::Amberflo => amberflo::SETTINGS,
        Kind::Orb => orb::SETTINGS,
        Kind::Kable => kable::SETTINGS,
    }
}

/// The Segment calls each type takes and where they go.
pub fn calls(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Amberflo => &[
            ("track", "POST /ingest (meter record, meterApiName = event)"),
            ("page", "POST /ingest (meter record, meterApiName = page)"),
            (
                "screen",
                "POST /ingest (meter record, meterApiName = screen)",
            ),
            (
                "identify",
                "API host: GET /customers, then POST (create) or PUT (the record with the event's changes); \
                 identify = \"replace\": PUT /customers",
            ),
        ],
        Kind::Orb => &[("track", "POST /ingest (usage event)")],
        Kind::Kable => &[("track", "POST /api/v1/events/create (event)")],
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

/// A reason for a missing field, naming where it was looked for.
pub fn missing(what: &'static str, field: &str) -> Translation {
    Translation::Reject(Reason::new(
        Cow::Owned(format!("missing {what}")),
        format!("no usable value at {field}"),
    ))
}

/// Writes a JSON string (quoted and escaped) into a record being built. Most
/// strings need no escape; checking that over all bytes at once (a fold
/// without an early exit compiles to vector code) is several times faster than
/// serde_json's byte-by-byte writer, which writes the others.
pub fn write_json_str(out: &mut Vec<u8>, text: &str) {
    let needs_escape = text.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
    }
}

/// Writes a JSON value, its strings as `write_json_str` does.
pub fn write_json_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) => write_json_str(out, text),
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec cannot fail"),
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

    proptest! {
        /// The fast path writes exactly what serde_json writes, escapes or not.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(text in any::<String>()) {
            let (ours, theirs) = written(&text);
            prop_assert_eq!(ours, theirs);
        }
    }
}
