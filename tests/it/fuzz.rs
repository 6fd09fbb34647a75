//! Property tests in place of cargo-fuzz (which needs a nightly toolchain): the
//! line reader, the parser and every destination's translation at library level,
//! and the binary end to end, over arbitrary bytes, hostile Segment-like JSON and
//! gzip of it.
//!
//! The default case counts keep this module fast for CI. Long runs:
//!
//! ```sh
//! PROPTEST_CASES=20000 cargo test --release --test it fuzz::lib_
//! PROPTEST_CASES=3000  cargo test --release --test it fuzz::e2e_
//! ```
//!
//! `PROPTEST_CASES` sets the case count of every property here. A failing input
//! is kept below as a plain `#[test]` with the input inline (no regression files).

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use segrelay::destination::file::Settings;
use segrelay::destination::{Destination, Stream, Translation};
use segrelay::event::{Origin, parse_line};
use segrelay::input::{Item, Source, read_all};
use serde_json::Value;

use crate::support::{self, Run, json};

// ---------------------------------------------------------------------------------------------
// Settings and destinations

/// Every destination type, and Orb and Kable with their fields deep in the event.
const SETTINGS: &str = r#"
[destinations.amberflo]
api_key = "${FUZZ_AMBERFLO_KEY}"
identify = "replace"

[destinations.amberflo_merge]
type = "amberflo"
api_key = "${FUZZ_AMBERFLO_KEY}"

[destinations.orb]
api_key = "${FUZZ_ORB_KEY}"
external_customer_id_field = "userId"

[destinations.orb.properties_mapping]
amount = "amount"
currency = "currency"
value = "value"
"usage.tokens" = "tokens"
"nested.field" = "field"

[destinations.orb_deep]
type = "orb"
api_key = "${FUZZ_ORB_KEY}"
external_customer_id_field = "context.groupId"
event_name_field = "properties.name"
idempotency_key_field = "properties.txn.0"

[destinations.orb_deep.properties_mapping]
"usage.tokens" = "tokens"

[destinations.kable]
api_key = "${FUZZ_KABLE_KEY}"
kable_client_id = "kci_fuzz"
environment = "live"

[destinations.kable.properties_mapping]
segmentX = "kableX"
"nested.field" = "dimension"
"usage.tokens" = "tokens"

[destinations.kable_deep]
type = "kable"
api_key = "${FUZZ_KABLE_KEY}"
kable_client_id = "kci_fuzz"
client_id_field = "context.groupId"
"#;

/// The destinations the end-to-end properties run through.
const E2E_DESTINATIONS: [&str; 6] = [
    "amberflo",
    "amberflo_merge",
    "orb",
    "orb_deep",
    "kable",
    "kable_deep",
];

/// The reader's default limit (`--max-line-bytes 1M`).
const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Each destination of the fuzz settings, as a run builds it from its table.
fn destinations() -> Vec<(String, Arc<dyn Destination>)> {
    let settings = Settings::parse(SETTINGS, Path::new("fuzz.toml"), &|_| None)
        .expect("the fuzz settings parse");
    settings
        .destinations
        .into_iter()
        .map(|d| (d.name, d.destination))
        .collect()
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile JSON

/// JSON as text, so that it can hold what `serde_json::Value` cannot: numbers out of
/// range, lone surrogates, duplicate keys and nesting beyond any limit.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    /// A number literal as written (may be out of range: `1e400`).
    Num(String),
    /// A string, escaped by serde_json.
    Str(String),
    /// The text between the quotes, as written (`\ud800`, raw control bytes...).
    RawStr(String),
    Arr(Vec<J>),
    /// Keys may repeat.
    Obj(Vec<(String, J)>),
    /// `n` nested arrays, then as many closing brackets.
    Deep(usize),
}

impl J {
    fn render(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string serialises")),
            J::RawStr(s) => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).expect("a key serialises"));
                    out.push(':');
                    value.render(out);
                }
                out.push('}');
            }
            J::Deep(n) => {
                out.push_str(&"[".repeat(*n));
                out.push_str(&"]".repeat(*n));
            }
        }
    }

    /// Pretty-printed, as request logs and fixtures are: the top object over several
    /// lines (`{`, indented lines, `}`), which the reader gathers into one item.
    fn render_pretty(&self) -> String {
        match self {
            J::Obj(fields) if !fields.is_empty() => {
                let mut out = String::from("{\n");
                for (i, (key, value)) in fields.iter().enumerate() {
                    out.push_str("  ");
                    out.push_str(&serde_json::to_string(key).expect("a key serialises"));
                    out.push_str(": ");
                    value.render(&mut out);
                    if i + 1 < fields.len() {
                        out.push(',');
                    }
                    out.push('\n');
                }
                out.push('}');
                out
            }
            other => other.text(),
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }
}

fn obj(fields: Vec<(&str, J)>) -> J {
    J::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn number() -> impl Strategy<Value = J> {
    prop_oneof![
        any::<i64>().prop_map(|n| J::Num(n.to_string())),
        any::<u64>().prop_map(|n| J::Num(n.to_string())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| J::Num(format!("{f:?}"))),
        (-1000i32..1000).prop_map(|n| J::Num(n.to_string())),
        prop::sample::select(vec![
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "1.5",
            "-1",
            "1e3",
            "1E+3",
            "12.5e-1",
            "1e400",
            "-1e400",
            "1e-400",
            "1e308",
            "1.7976931348623157e308",
            "5e-324",
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "31557599999",
            "31557600000",
            "31557599999.9999",
            "100000000000000000",
            "253402300799999",
            "253402300800000",
            "-62135596800000",
        ])
        .prop_map(|s| J::Num(s.to_owned())),
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        ".{0,8}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
        prop::sample::select(vec![
            "",
            " ",
            "\u{0}",
            "a\u{0}b",
            "\u{FEFF}",
            "\u{FEFF}track",
            "\u{202E}kcart",
            "😀",
            "👩‍👩‍👧‍👦",
            "é",
            "e\u{301}",
            "\u{10FFFF}",
            "\r\n",
            "\n",
            "\t",
            "\\",
            "\"",
            "https://google.com",
            "${ORB_API_KEY}",
            "$ORB_API_KEY",
            "%s%n",
            "***",
            "_segrelay",
            "value",
            "1e400",
            "NaN",
            "inf",
            "-Infinity",
            "  42  ",
            "0x1A",
            "١٢٣",
        ])
        .prop_map(str::to_owned),
        (1usize..400).prop_map(|n| "x".repeat(n)),
        (1usize..120).prop_map(|n| "é".repeat(n)),
    ]
}

/// Escapes written by hand: lone surrogates, pairs, raw control characters.
fn raw_string() -> impl Strategy<Value = J> {
    prop::sample::select(vec![
        "\\ud800",
        "\\udfff",
        "\\ud83d\\ude00",
        "\\ud83d",
        "a\\u0000b",
        "\\u0000",
        "\\uFFFF",
        "\\uD800\\u0041",
        "tab\there",
        "nl\nhere",
        "\\x41",
        "\\",
        "\\u12",
        "\u{7f}",
    ])
    .prop_map(|s| J::RawStr(s.to_owned()))
}

fn leaf() -> impl Strategy<Value = J> {
    prop_oneof![
        2 => Just(J::Null),
        1 => any::<bool>().prop_map(J::Bool),
        3 => number(),
        4 => hostile_string().prop_map(J::Str),
        1 => raw_string(),
        1 => prop::sample::select(vec![1usize, 2, 126, 127, 128, 129, 1000, 20_000]).prop_map(J::Deep),
    ]
}

fn any_json() -> impl Strategy<Value = J> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            prop::collection::vec((key(), inner), 0..6).prop_map(J::Obj),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "type", "event", "userId", "anonymousId", "messageId", "timestamp",
            "originalTimestamp", "receivedAt", "properties", "traits", "context",
            "integrations", "name", "value", "amount", "currency", "usage", "tokens",
            "segmentX", "nested", "field", "groupId", "customerId", "email", "batch",
            "_segrelay", "raw", "All", "Amberflo", "Orb", "Kable", "txn", "0", "",
            "a.b", " ", "model", "sentAt", "version",
        ])
        .prop_map(str::to_owned),
        1 => hostile_string(),
    ]
}

fn id_value() -> impl Strategy<Value = J> {
    prop_oneof![
        6 => "[a-z]{1,6}_[0-9]{1,3}".prop_map(J::Str),
        2 => number(),
        1 => Just(J::Str(String::new())),
        1 => hostile_string().prop_map(J::Str),
        1 => any_json(),
    ]
}

fn time_value() -> impl Strategy<Value = J> {
    prop_oneof![
        6 => (2000i32..2040, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60, 0u32..1000)
            .prop_map(|(y, mo, d, h, mi, s, ms)| {
                J::Str(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"))
            }),
        3 => prop::sample::select(vec![
            "2015-2-02T00:30:12.984Z",
            "2021-01-01T00:00:00+02:00",
            "2021-01-01T00:00:00-0700",
            "2021-01-01T00:00:00.123456789123Z",
            "2021-01-01T00:00:00",
            "2021-01-01",
            "2021-01-01 10:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-13-45T99:99:99Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "10000-01-01T00:00:00Z",
            "+002024-01-01T00:00:00Z",
            "-000001-01-01T00:00:00Z",
            "yesterday",
            "",
            " ",
            "T",
            "2021-01-01T",
            "2021-01-01T00:00:00ZZ",
            "2021-1-1T1:1:1.Z",
            "2021-01-01T00:00:60Z",
            "2021-01-01T24:00:00Z",
            "2021-01-01T00:00:00+99:99",
            "2021--01T00:00:00Z",
        ])
        .prop_map(|s| J::Str(s.to_owned())),
        3 => number(),
        1 => any_json(),
    ]
}

fn call_type() -> impl Strategy<Value = J> {
    prop_oneof![
        8 => prop::sample::select(vec!["track", "page", "screen", "identify", "group", "alias"])
            .prop_map(|s| J::Str(s.to_owned())),
        1 => prop::sample::select(vec!["TRACK", "Track", " track", "", "track\u{0}"])
            .prop_map(|s| J::Str(s.to_owned())),
        1 => any_json(),
    ]
}

fn properties() -> impl Strategy<Value = J> {
    let field = prop_oneof![
        (
            Just("value"),
            prop_oneof![number(), hostile_string().prop_map(J::Str), any_json()]
        ),
        (Just("amount"), prop_oneof![number(), any_json()]),
        (
            Just("currency"),
            prop_oneof![hostile_string().prop_map(J::Str), any_json()]
        ),
        (
            Just("usage"),
            prop_oneof![
                number().prop_map(|n| obj(vec![("tokens", n)])),
                any_json().prop_map(|v| obj(vec![("tokens", v)])),
                any_json(),
            ]
        ),
        (
            Just("nested"),
            any_json().prop_map(|v| obj(vec![("field", v)]))
        ),
        (Just("segmentX"), any_json()),
        (Just("name"), id_value()),
        (
            Just("txn"),
            prop::collection::vec(id_value(), 0..3).prop_map(J::Arr)
        ),
        (Just("model"), any_json()),
    ];
    prop_oneof![
        8 => prop::collection::vec((field, any::<bool>()), 0..6).prop_map(|fields| {
            J::Obj(fields.into_iter().map(|((k, v), _)| (k.to_owned(), v)).collect())
        }),
        1 => prop::collection::vec((key(), any_json()), 0..5).prop_map(J::Obj),
        1 => any_json(),
    ]
}

fn integrations() -> impl Strategy<Value = J> {
    let setting = prop_oneof![
        Just(J::Bool(true)),
        Just(J::Bool(false)),
        Just(J::Null),
        Just(obj(vec![("opt", J::Num("1".into()))])),
        any_json(),
    ];
    prop_oneof![
        prop::collection::vec(
            (
                prop::sample::select(vec!["All", "Amberflo", "Orb", "Kable", "orb", "Segment.io"]),
                setting
            ),
            0..4
        )
        .prop_map(|f| J::Obj(f.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        any_json(),
    ]
}

/// One field of a Segment-like event: its usual value mostly, hostile sometimes.
fn field(name: &'static str, usual: BoxedStrategy<J>) -> BoxedStrategy<Option<(String, J)>> {
    prop_oneof![
        6 => usual.prop_map(move |v| Some((name.to_owned(), v))),
        1 => any_json().prop_map(move |v| Some((name.to_owned(), v))),
        1 => Just(Some((name.to_owned(), J::Null))),
        3 => Just(None),
    ]
    .boxed()
}

fn segment_event() -> impl Strategy<Value = J> {
    let fields = vec![
        field("type", call_type().boxed()),
        field("event", id_value().boxed()),
        field("userId", id_value().boxed()),
        field("anonymousId", id_value().boxed()),
        field("messageId", id_value().boxed()),
        field("timestamp", time_value().boxed()),
        field("originalTimestamp", time_value().boxed()),
        field("receivedAt", time_value().boxed()),
        field("properties", properties().boxed()),
        field(
            "traits",
            prop::collection::vec(
                (
                    prop_oneof![Just("name".to_owned()), Just("email".to_owned()), key()],
                    any_json(),
                ),
                0..4,
            )
            .prop_map(J::Obj)
            .boxed(),
        ),
        field(
            "context",
            id_value().prop_map(|g| obj(vec![("groupId", g)])).boxed(),
        ),
        field("integrations", integrations().boxed()),
        field("name", id_value().boxed()),
    ];
    (
        fields,
        prop::collection::vec((key(), any_json()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(fields, extra, extra_first)| {
            let mut all: Vec<(String, J)> = fields.into_iter().flatten().collect();
            if extra_first {
                let mut e = extra;
                e.extend(all);
                all = e;
            } else {
                all.extend(extra);
            }
            J::Obj(all)
        })
}

/// A whole line: an event, a batch envelope, a replayed reject, or something else.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => segment_event().prop_map(|e| e.text()),
        2 => segment_event().prop_map(|e| e.render_pretty()),
        2 => (
            prop::collection::vec(prop_oneof![4 => segment_event(), 1 => any_json()], 0..5),
            prop::option::of(id_value().prop_map(|g| obj(vec![("groupId", g)]))),
            prop::option::of(integrations()),
        )
            .prop_map(|(items, context, integrations)| {
                let mut envelope = vec![("batch".to_owned(), J::Arr(items))];
                if let Some(c) = context {
                    envelope.push(("context".to_owned(), c));
                }
                if let Some(i) = integrations {
                    envelope.push(("integrations".to_owned(), i));
                }
                J::Obj(envelope).text()
            }),
        1 => any_json().prop_map(|v| obj(vec![("batch", v)]).text()),
        1 => segment_event().prop_map(|e| {
            obj(vec![("_segrelay", obj(vec![("raw", J::Str(e.text()))]))]).text()
        }),
        1 => (segment_event(), any_json()).prop_map(|(e, note)| {
            let J::Obj(mut fields) = e else { unreachable!("events are objects") };
            fields.insert(0, ("_segrelay".to_owned(), note));
            J::Obj(fields).text()
        }),
        2 => any_json().prop_map(|v| v.text()),
        1 => prop::sample::select(vec![
            "", " ", "\t", "\r", "{", "}", "[", "]", "{}", "[]", "null", "\"x\"", "1",
            "{\"a\":1}}", "{\"a\":", "{\"type\":\"track\"", "\u{FEFF}{}", "\u{0}",
            "{\"batch\":[]}", "{\"batch\":[null,1,\"x\",[]]}",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Lines joined with LF or CRLF, perhaps after a BOM, perhaps without a last newline.
fn document() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((line(), any::<bool>()), 0..24),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, bom, last_newline)| {
            let mut out = Vec::new();
            if bom {
                out.extend_from_slice(b"\xEF\xBB\xBF");
            }
            let n = lines.len();
            for (i, (text, crlf)) in lines.into_iter().enumerate() {
                let text = if crlf {
                    text.replace('\n', "\r\n")
                } else {
                    text
                };
                out.extend_from_slice(text.as_bytes());
                if i + 1 < n || last_newline {
                    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
            }
            out
        })
}

/// A structured document with a few bytes overwritten, inserted or removed.
fn mutated_document() -> impl Strategy<Value = Vec<u8>> {
    (
        document(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            bytes
        })
}

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        // Mostly text, so that lines and JSON-ish tokens are common.
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(b"{}[]\":,\n\r \t0123456789.eE+-ntrufals\\".to_vec()),
                1 => any::<u8>(),
            ],
            0..2048
        ),
    ]
}

fn gzip(data: &[u8], members: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let members = members.max(1);
    let size = data.len().div_ceil(members).max(1);
    let mut chunks: Vec<&[u8]> = data.chunks(size).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for chunk in chunks {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(chunk).expect("gzip in memory");
        out.extend(encoder.finish().expect("gzip in memory"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Library-level oracles

/// What the reader handed on, in order: (first line, last line, outcomes).
#[derive(Debug)]
struct ReadItem {
    first: u64,
    last: u64,
    broken: Option<String>,
}

/// How many outcomes `parse_line` must give a line: one, or one per batch item.
fn expected_outcomes(line: &[u8]) -> usize {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(line) else {
        return 1;
    };
    match fields.remove("_segrelay") {
        Some(Value::Object(note))
            if fields.is_empty() && note.get("raw").is_some_and(Value::is_string) =>
        {
            return expected_outcomes(note["raw"].as_str().unwrap_or_default().as_bytes());
        }
        // A line from a rejects file is one event, whatever keys it has.
        Some(_) => return 1,
        None => {}
    }
    match fields.remove("batch") {
        None => 1,
        Some(Value::Array(items)) => items.len(),
        Some(_) => 1,
    }
}

/// Physical lines as the reader numbers them (the last newline ends the last line).
fn physical_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

/// A line the reader must hand on as (part of) an item: not blank, or too long.
fn must_be_read(number: usize, line: &[u8], max: usize) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        return true;
    }
    let line = if number == 1 {
        line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
    } else {
        line
    };
    !line.iter().all(u8::is_ascii_whitespace)
}

/// Everything a run makes of one input, through the library: the items the reader
/// handed on, and the outcomes (one per event, or per bad line) they became.
struct LibRun {
    items: Vec<ReadItem>,
    outcomes: usize,
}

fn lib_run(path: &Path, max_line: usize, dests: &[(String, Arc<dyn Destination>)]) -> LibRun {
    let mut items = Vec::new();
    let mut outcomes = 0usize;
    let mut problems: Vec<String> = Vec::new();
    read_all(
        &[Source::Path(path.to_owned())],
        &[],
        max_line,
        &Default::default(),
        |item| {
            match item {
                Item::Line { origin, at, bytes } => {
                    let mut results = Vec::new();
                    parse_line(bytes, origin, |r| results.push(r));
                    let expected = expected_outcomes(bytes);
                    if results.len() != expected {
                        problems.push(format!(
                            "line {}: {} outcomes instead of {expected}: {:?}",
                            origin.line,
                            results.len(),
                            String::from_utf8_lossy(bytes)
                        ));
                    }
                    outcomes += results.len();
                    for result in &results {
                        match result {
                            Ok(event) => {
                                if event.origin != *origin {
                                    problems.push(format!("an event lost its origin: {origin}"));
                                }
                                for (name, dest) in dests {
                                    if let Err(why) = check_translation(dest.as_ref(), event) {
                                        problems.push(format!(
                                            "{name}: {why}\nevent: {}",
                                            event.to_json()
                                        ));
                                    }
                                }
                            }
                            Err(bad) => {
                                if bad.reason.kind.is_empty() {
                                    problems.push(format!("a bad line without a reason: {origin}"));
                                }
                            }
                        }
                    }
                    items.push(ReadItem {
                        first: origin.line,
                        last: at.end_line,
                        broken: None,
                    });
                }
                Item::Broken {
                    origin, at, reason, ..
                } => {
                    outcomes += 1;
                    items.push(ReadItem {
                        first: origin.line,
                        last: at.end_line,
                        broken: Some(reason.to_string()),
                    });
                }
            }
            Ok(ControlFlow::Continue(()))
        },
    )
    .expect("read_all never fails on a readable file");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    LibRun { items, outcomes }
}

/// Each physical line that holds something is in exactly one item, items come in
/// order and never overlap.
fn check_coverage(text: &[u8], max_line: usize, items: &[ReadItem]) {
    let lines = physical_lines(text);
    let mut covered = vec![0u32; lines.len() + 2];
    let mut previous_last = 0u64;
    for item in items {
        assert!(
            item.first > previous_last,
            "items overlap or go back: {items:?}"
        );
        assert!(
            item.last >= item.first,
            "an item ends before it starts: {item:?}"
        );
        assert!(
            item.last as usize <= lines.len(),
            "an item ends after the input: {item:?} ({} lines)",
            lines.len()
        );
        for n in item.first..=item.last {
            covered[n as usize] += 1;
        }
        previous_last = item.last;
    }
    for (i, line) in lines.iter().enumerate() {
        let number = i + 1;
        if must_be_read(number, line, max_line) {
            assert_eq!(
                covered[number],
                1,
                "line {number} ({:?}) is in {} items: {items:?}",
                String::from_utf8_lossy(line),
                covered[number]
            );
        }
    }
}

fn is_utc_millis(text: &str) -> bool {
    let b = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    b.len() == shape.len()
        && shape.iter().zip(b).all(|(p, c)| match p {
            b'd' => c.is_ascii_digit(),
            _ => p == c,
        })
}

fn amberflo_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " -_!.*'()&$@=;:+,?".contains(c)
}

fn non_empty_string<'a>(record: &'a Value, key: &str) -> Result<&'a str, String> {
    match record.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        other => Err(format!(
            "{key} is {other:?}, not a non-empty string: {record}"
        )),
    }
}

/// Translates an event (it must not panic) and checks that a record is what the
/// destination's API takes.
fn check_translation(dest: &dyn Destination, event: &segrelay::event::Event) -> Result<(), String> {
    let payload = match dest.translate(event) {
        Translation::Record(payload) => payload,
        Translation::Skip(reason) | Translation::Reject(reason) => {
            return if reason.kind.is_empty() {
                Err("a skip or reject without a reason".into())
            } else {
                Ok(())
            };
        }
    };
    let record: Value = serde_json::from_str(&payload.json)
        .map_err(|e| format!("the record is not JSON ({e}): {}", payload.json))?;
    if payload.key.is_empty() {
        return Err(format!("empty idempotency key: {record}"));
    }
    // The request for a batch (of two, where the stream takes more than one) is JSON too.
    let batch = vec![payload.json.as_str(); dest.batch_limit(payload.stream, 2).min(2)];
    let request = dest.request(payload.stream, &batch);
    serde_json::from_slice::<Value>(&request.body)
        .map_err(|e| format!("the request body is not JSON ({e})"))?;
    match (dest.kind(), payload.stream) {
        (segrelay::destination::Kind::Amberflo, Stream::Usage) => {
            if non_empty_string(&record, "uniqueId")? != payload.key {
                return Err(format!("uniqueId is not the key {}: {record}", payload.key));
            }
            non_empty_string(&record, "customerId")?;
            non_empty_string(&record, "meterApiName")?;
            if !record["meterValue"].is_number() {
                return Err(format!("meterValue is not a number: {record}"));
            }
            if record["meterTimeInMillis"].as_i64().is_none_or(|t| t < 0) {
                return Err(format!("meterTimeInMillis is not a time: {record}"));
            }
            let dims = record["dimensions"]
                .as_object()
                .ok_or_else(|| format!("dimensions is not an object: {record}"))?;
            for (k, v) in dims {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("dimension {k} is not a string: {record}"))?;
                let len = v.chars().count();
                if !(1..=200).contains(&len) || !v.chars().all(amberflo_char) {
                    return Err(format!("dimension {k} = {v:?} is not what Amberflo takes"));
                }
            }
        }
        (segrelay::destination::Kind::Amberflo, Stream::Other(_)) => {
            non_empty_string(&record, "customerId")?;
            // Merged into the record Amberflo holds, an identify without a name
            // leaves the name out (a creation then takes the id).
            if record.get("customerName").is_some() {
                non_empty_string(&record, "customerName")?;
            }
            if let Some(traits) = record.get("traits").and_then(Value::as_object)
                && let Some((k, _)) = traits.iter().find(|(_, v)| !v.is_string())
            {
                return Err(format!("trait {k} is not a string: {record}"));
            }
        }
        (segrelay::destination::Kind::Orb, _) => {
            if non_empty_string(&record, "idempotency_key")? != payload.key {
                return Err(format!("idempotency_key is not the key: {record}"));
            }
            non_empty_string(&record, "external_customer_id")?;
            non_empty_string(&record, "event_name")?;
            if !is_utc_millis(non_empty_string(&record, "timestamp")?) {
                return Err(format!(
                    "timestamp is not YYYY-MM-DDTHH:MM:SS.sssZ: {record}"
                ));
            }
            let properties = record["properties"]
                .as_object()
                .ok_or_else(|| format!("properties is not an object: {record}"))?;
            if let Some((k, _)) = properties
                .iter()
                .find(|(_, v)| v.is_object() || v.is_array() || v.is_null())
            {
                return Err(format!("property {k} is not flat: {record}"));
            }
        }
        (segrelay::destination::Kind::Kable, _) => {
            if non_empty_string(&record, "transactionId")? != payload.key {
                return Err(format!("transactionId is not the key: {record}"));
            }
            non_empty_string(&record, "clientId")?;
            if !is_utc_millis(non_empty_string(&record, "timestamp")?) {
                return Err(format!("timestamp is not RFC 3339 UTC: {record}"));
            }
            if !record["data"].is_object() {
                return Err(format!("data is not an object: {record}"));
            }
        }
    }
    Ok(())
}

/// The library-level property: reading, parsing and translating never panic, every
/// line is in exactly one item and every item yields exactly its outcomes.
fn lib_property(bytes: &[u8], max_line: usize) {
    let dests = destinations();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("in.ndjson");
    std::fs::write(&path, bytes).expect("write the input");
    let run = lib_run(&path, max_line, &dests);
    check_coverage(bytes, max_line, &run.items);
    assert!(
        run.items.iter().all(|i| i
            .broken
            .as_deref()
            .is_none_or(|r| r.starts_with("line too long"))),
        "a plain file read as broken: {:?}",
        run.items
    );
}

/// Gzip of a document: read the same as the document; a truncated copy ends with
/// one `unreadable input` item after the lines before the cut.
fn lib_gzip_property(bytes: &[u8], members: usize, cut: prop::sample::Index) {
    let dests = destinations();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let compressed = gzip(bytes, members);
    let path = dir.path().join("in.gz");
    std::fs::write(&path, &compressed).expect("write the input");
    let whole = lib_run(&path, DEFAULT_MAX_LINE, &dests);
    check_coverage(bytes, DEFAULT_MAX_LINE, &whole.items);

    let plain = dir.path().join("in.ndjson");
    std::fs::write(&plain, bytes).expect("write the input");
    let same = lib_run(&plain, DEFAULT_MAX_LINE, &dests);
    assert_eq!(whole.outcomes, same.outcomes, "gzip changes what is read");

    let cut_at = cut.index(compressed.len());
    let truncated = dir.path().join("cut.gz");
    std::fs::write(&truncated, &compressed[..cut_at]).expect("write the input");
    let run = lib_run(&truncated, DEFAULT_MAX_LINE, &dests);
    let broken: Vec<usize> = run
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.broken.is_some())
        .map(|(n, _)| n)
        .collect();
    assert!(
        broken.len() <= 1 && broken.iter().all(|&n| n + 1 == run.items.len()),
        "a truncated gzip file is reported once, at its end: {:?}",
        run.items
    );
    let mut previous = 0;
    for item in &run.items {
        assert!(
            item.first > previous || item.broken.is_some(),
            "{:?}",
            run.items
        );
        previous = item.last;
    }
}

// ---------------------------------------------------------------------------------------------
// End to end

/// Runs the binary in `dir`. Standard error is read leniently: it may quote the input.
fn segrelay(dir: &Path, args: &[&str]) -> Run {
    let output = support::segrelay()
        .current_dir(dir)
        .args(args)
        .env_remove("FUZZ_AMBERFLO_KEY")
        .env_remove("FUZZ_ORB_KEY")
        .env_remove("FUZZ_KABLE_KEY")
        .timeout(Duration::from_secs(120))
        .output()
        .expect("segrelay runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not UTF-8: {e}")),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn summary_counts(summary: &Value) -> [u64; 5] {
    ["read", "sent", "skipped", "rejected", "failed"].map(|k| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("summary has no {k}: {summary}"))
    })
}

fn check_summary(summary: &Value, context: &str) -> [u64; 5] {
    let [read, sent, skipped, rejected, failed] = summary_counts(summary);
    assert_eq!(
        read,
        sent + skipped + rejected + failed,
        "{context}: read = sent + skipped + rejected + failed does not hold: {summary}"
    );
    for (count, table) in [
        (skipped, "skipped_by_reason"),
        (rejected, "rejected_by_reason"),
    ] {
        let total: u64 = summary[table]
            .as_object()
            .unwrap_or_else(|| panic!("{context}: no {table}: {summary}"))
            .values()
            .map(|v| v.as_u64().expect("a count"))
            .sum();
        assert_eq!(
            total, count,
            "{context}: {table} does not add up: {summary}"
        );
    }
    [read, sent, skipped, rejected, failed]
}

fn expected_code(counts: [u64; 5]) -> i32 {
    if counts[3] + counts[4] > 0 { 1 } else { 0 }
}

/// Runs `send --dry-run` and `check` over one input for every destination, and
/// feeds the rejects file back in.
fn e2e_property(input: &[u8], file_name: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = dir.path().join("fuzz.toml");
    std::fs::write(&settings, SETTINGS).expect("write the settings");
    let path = dir.path().join(file_name);
    std::fs::write(&path, input).expect("write the input");
    let oracle = lib_run(&path, DEFAULT_MAX_LINE, &[]);
    let expected_read = oracle.outcomes as u64;
    for dest in E2E_DESTINATIONS {
        let context = format!("{dest} over {file_name}");
        let run = segrelay(
            dir.path(),
            &[
                "send",
                "--dry-run",
                "-c",
                "fuzz.toml",
                "-d",
                dest,
                "--summary",
                "dry.json",
                "--rejects",
                "rejects.ndjson",
                file_name,
            ],
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{context}: panic\n{}",
            run.stderr
        );
        assert!(
            matches!(run.code, 0 | 1),
            "{context}: exit code {}\n{}",
            run.code,
            run.stderr
        );
        let summary: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("dry.json")).expect("a summary is written"),
        )
        .expect("the summary is JSON");
        let counts = check_summary(&summary, &context);
        assert_eq!(run.code, expected_code(counts), "{context}: {summary}");
        assert_eq!(
            counts[0], expected_read,
            "{context}: the binary read another number of events than the library yields"
        );
        let stdout = run.stdout.as_str();
        let mut events_in_requests = 0u64;
        // An Amberflo identify's lookup names it beside its write (in either
        // mode); merging, one that changes nothing in the record the dry run
        // would have created writes nothing.
        let merging = dest == "amberflo_merge";
        let looks_up = dest.starts_with("amberflo");
        for (i, line) in stdout.lines().enumerate() {
            let request = json::parse_deep(line).unwrap_or_else(|e| {
                panic!("{context}: stdout line {} is not JSON ({e}): {line}", i + 1)
            });
            // Deeper than serde_json goes (an event nested up to its limit, in a
            // request): the `events` list ends the line.
            let request = request.unwrap_or_else(|| {
                let at = line
                    .rfind(",\"events\":[")
                    .expect("a request names its events");
                serde_json::from_str(&format!("{{{}", &line[at + 1..])).expect("events are JSON")
            });
            let events = request["events"]
                .as_array()
                .unwrap_or_else(|| panic!("{context}: a request without events: {line}"));
            assert!(!events.is_empty(), "{context}: an empty request: {line}");
            if !(looks_up && request["method"] == "GET") {
                events_in_requests += events.len() as u64;
            }
        }
        if merging {
            assert!(
                events_in_requests <= counts[1],
                "{context}: the requests hold more events than sent"
            );
        } else {
            assert_eq!(
                events_in_requests, counts[1],
                "{context}: the requests hold another number of events than sent"
            );
        }
        let rejects = std::fs::read(dir.path().join("rejects.ndjson")).unwrap_or_default();
        let rejects_text = std::str::from_utf8(&rejects)
            .unwrap_or_else(|e| panic!("{context}: the rejects file is not UTF-8: {e}"));
        let reject_lines: Vec<Value> = rejects_text
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{context}: a rejects line is not JSON ({e}): {l}"))
            })
            .collect();
        assert_eq!(
            reject_lines.len() as u64,
            counts[3] + counts[4],
            "{context}: the rejects file does not hold every rejected event"
        );
        for reject in reject_lines.iter() {
            assert!(
                reject["_segrelay"]["reason"].is_string() && reject["_segrelay"]["line"].is_u64(),
                "{context}: a reject without its note: {reject}"
            );
        }

        let check = segrelay(
            dir.path(),
            &[
                "check",
                "-c",
                "fuzz.toml",
                "-d",
                dest,
                "--summary",
                "check.json",
                file_name,
            ],
        );
        assert!(
            matches!(check.code, 0 | 1) && !check.stderr.contains("panicked"),
            "{context}: check exit code {}\n{}",
            check.code,
            check.stderr
        );
        assert!(check.stdout.is_empty(), "{context}: check wrote to stdout");
        let check_summary_value: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("check.json")).expect("check writes its summary"),
        )
        .expect("the summary is JSON");
        let check_counts = check_summary(&check_summary_value, &context);
        assert_eq!(
            check_counts, counts,
            "{context}: check and a dry run count differently"
        );
        assert_eq!(
            check.code, run.code,
            "{context}: check and a dry run exit differently"
        );

        // The rejects file is valid input: each of its lines is read back as one event.
        if !reject_lines.is_empty() {
            let replay = segrelay(
                dir.path(),
                &[
                    "send",
                    "--dry-run",
                    "-c",
                    "fuzz.toml",
                    "-d",
                    dest,
                    "--summary",
                    "replay.json",
                    "--max-line-bytes",
                    "64M",
                    "rejects.ndjson",
                ],
            );
            assert!(
                matches!(replay.code, 0 | 1) && !replay.stderr.contains("panicked"),
                "{context}: replay exit code {}\n{}",
                replay.code,
                replay.stderr
            );
            let replay_summary: Value = serde_json::from_slice(
                &std::fs::read(dir.path().join("replay.json")).expect("a summary"),
            )
            .expect("the summary is JSON");
            let replay_counts = check_summary(&replay_summary, &context);
            assert_eq!(
                replay_counts[0],
                reject_lines.len() as u64,
                "{context}: replaying the rejects file reads another number of events\n{rejects_text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn lib_parse_line_gives_one_outcome_per_item(bytes in arbitrary_bytes()) {
        let origin = Origin { source: "fuzz", line: 1 };
        let mut n = 0;
        parse_line(&bytes, &origin, |_| n += 1);
        prop_assert_eq!(n, expected_outcomes(&bytes));
    }

    #[test]
    fn lib_parse_and_translate_hostile_lines(text in line()) {
        let dests = destinations();
        let origin = Origin { source: "fuzz", line: 1 };
        let mut results = Vec::new();
        parse_line(text.as_bytes(), &origin, |r| results.push(r));
        prop_assert_eq!(results.len(), expected_outcomes(text.as_bytes()));
        for event in results.iter().flatten() {
            for (name, dest) in &dests {
                if let Err(why) = check_translation(dest.as_ref(), event) {
                    return Err(TestCaseError::fail(format!("{name}: {why}\nline: {text}")));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn lib_reader_over_arbitrary_bytes(bytes in arbitrary_bytes(), max_line in 1usize..300) {
        lib_property(&bytes, max_line);
    }
}

proptest! {
    #![proptest_config(config(40))]

    #[test]
    fn lib_reader_over_hostile_documents(
        bytes in prop_oneof![document(), mutated_document()],
        max_line in prop_oneof![Just(DEFAULT_MAX_LINE), 8usize..400],
    ) {
        lib_property(&bytes, max_line);
    }

    #[test]
    fn lib_reader_over_gzip(
        bytes in document(),
        members in 1usize..4,
        cut in any::<prop::sample::Index>(),
    ) {
        lib_gzip_property(&bytes, members, cut);
    }
}

proptest! {
    #![proptest_config(config(3))]

    #[test]
    fn e2e_arbitrary_bytes(bytes in arbitrary_bytes()) {
        e2e_property(&bytes, "bytes.ndjson");
    }

    #[test]
    fn e2e_hostile_documents(bytes in prop_oneof![document(), mutated_document()]) {
        e2e_property(&bytes, "events.ndjson");
    }

    #[test]
    fn e2e_gzip(bytes in document(), members in 1usize..4, named_gz in any::<bool>()) {
        let name = if named_gz { "events.ndjson.gz" } else { "events.bin" };
        e2e_property(&gzip(&bytes, members), name);
    }
}

/// The customer id and the key a destination made of an event whose `userId` and
/// `messageId` are the JSON number `digits`.
fn ids_of_numeric_event(digits: &str) -> Vec<(String, String, String)> {
    let line = format!(
        r#"{{"type":"track","event":"e","userId":{digits},"messageId":{digits},"timestamp":"2024-05-01T10:00:00Z"}}"#
    );
    let origin = Origin {
        source: "fuzz",
        line: 1,
    };
    let mut events = Vec::new();
    parse_line(line.as_bytes(), &origin, |r| events.push(r));
    let Some(Ok(event)) = events.pop() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, dest) in destinations() {
        if name.ends_with("_deep") {
            continue;
        }
        if let Translation::Record(payload) = dest.translate(&event) {
            let record: Value = serde_json::from_str(&payload.json).expect("a record is JSON");
            let customer = ["customerId", "external_customer_id", "clientId"]
                .iter()
                .find_map(|k| record[*k].as_str())
                .expect("a customer id")
                .to_owned();
            out.push((name, customer, payload.key));
        }
    }
    out
}

proptest! {
    #![proptest_config(config(256))]

    /// Integers that fit 64 bits are sent as their digits.
    #[test]
    fn lib_integer_ids_keep_their_digits(digits in "-?[1-9][0-9]{0,17}") {
        for (name, customer, key) in ids_of_numeric_event(&digits) {
            prop_assert_eq!(&customer, &digits, "{}", name);
            prop_assert_eq!(&key, &digits, "{}", name);
        }
    }

    /// Any integer, however long: its digits, or no record at all (a reason instead).
    #[test]
    fn lib_long_integer_ids_keep_their_digits(digits in "-?[1-9][0-9]{18,40}") {
        for (name, customer, key) in ids_of_numeric_event(&digits) {
            prop_assert_eq!(&customer, &digits, "{}", name);
            prop_assert_eq!(&key, &digits, "{}", name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs the properties found, kept as plain tests.

/// Found by `lib_long_integer_ids_keep_their_digits` (shrunk): one more than
/// u64::MAX is sent as `18500000000000000000`. Two events whose messageIds differ
/// only in the last digits share one idempotency key, so the destination keeps one.
#[test]
fn regression_an_integer_id_beyond_u64_keeps_its_digits() {
    for digits in ["18500000000000000001", "-9223372036854775809"] {
        for (name, customer, key) in ids_of_numeric_event(digits) {
            assert_eq!(customer, digits, "{name}");
            assert_eq!(key, digits, "{name}");
        }
    }
    let a = ids_of_numeric_event("18500000000000000001");
    let b = ids_of_numeric_event("18500000000000000002");
    for ((name, _, key_a), (_, _, key_b)) in a.iter().zip(&b) {
        assert_ne!(key_a, key_b, "{name}: two events share one key");
    }
}

/// A dry run of `input` for `dest`; the rejects file's text, and the summary of
/// reading that file back.
fn dry_run_and_replay(dest: &str, input: &str) -> (String, Value) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("fuzz.toml"), SETTINGS).expect("write the settings");
    std::fs::write(dir.path().join("in.ndjson"), input).expect("write the input");
    let base = ["send", "--dry-run", "-c", "fuzz.toml", "-d", dest];
    let first = segrelay(
        dir.path(),
        &[&base[..], &["--rejects", "first.ndjson", "in.ndjson"]].concat(),
    );
    assert_eq!(first.code, 1, "{}", first.stderr);
    let rejects = std::fs::read_to_string(dir.path().join("first.ndjson")).expect("rejects");
    segrelay(
        dir.path(),
        &[&base[..], &["--summary", "replay.json", "first.ndjson"]].concat(),
    );
    let summary =
        serde_json::from_slice(&std::fs::read(dir.path().join("replay.json")).expect("a summary"))
            .expect("the summary is JSON");
    (rejects, summary)
}

/// Found by `e2e_hostile_documents` (shrunk): a batch item with a `_segrelay` key of
/// its own keeps it, and its rejects line holds two `_segrelay` keys; JSON readers
/// keep the last, so segrelay's note is lost.
#[test]
fn regression_a_batch_item_with_its_own_note_is_rejected_with_one_note() {
    let (rejects, _) = dry_run_and_replay("amberflo", "{\"batch\":[{\"_segrelay\":null}]}\n");
    let line = rejects.lines().next().expect("one reject");
    assert_eq!(line.matches("\"_segrelay\"").count(), 1, "{line}");
    let reject: Value = serde_json::from_str(line).unwrap();
    assert_eq!(reject["_segrelay"]["reason"], "missing type", "{line}");
}

/// Found by `e2e_gzip` (shrunk): an event with a `batch` key of its own (a batch
/// item), once rejected, reads back from the rejects file as an envelope: two
/// non-objects instead of the event.
#[test]
fn regression_a_rejected_event_with_a_batch_key_reads_back_as_one_event() {
    let input = r#"{"batch":[{"type":"track","event":"a_0","userId":"a_0","anonymousId":"a_0","messageId":null,"timestamp":null,"originalTimestamp":"2000-01-01T00:00:00.000Z","receivedAt":"2000-01-01T00:00:00.000Z","properties":{},"traits":{},"context":{"groupId":"a_0"},"integrations":{},"name":"a_0","batch":[null,null]}]}"#;
    let (rejects, replay) = dry_run_and_replay("orb_deep", &format!("{input}\n"));
    assert_eq!(rejects.lines().count(), 1);
    assert_eq!(replay["read"], 1, "{replay}");
    assert_eq!(
        replay["rejected_by_reason"]["missing event name"], 1,
        "{replay}"
    );
}
