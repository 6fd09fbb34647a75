//! Helpers shared by the integration tests: running the real binary, reading
//! its dry-run output, comparing JSON by meaning, and writing inputs; the
//! loopback server (`server`), a test's work directory (`job`) and a JSON
//! grammar check without a depth limit (`json`).

pub mod job;
pub mod json;
pub mod s3;
pub mod server;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// Environment variables that must not leak in from the developer's shell.
const CLEARED_ENV: &[&str] = &[
    "AMBERFLO_API_KEY",
    "ORB_API_KEY",
    "KABLE_API_KEY",
    "SEGRELAY_CONFIG",
    "SEGRELAY_DESTINATION",
];

/// The real binary, with the keys and `$SEGRELAY_CONFIG` removed from its environment.
pub fn segrelay() -> Command {
    Command::from_std(segrelay_process())
}

/// [`segrelay`] as a `std` command, for a test that spawns the binary or pipes its streams.
pub fn segrelay_process() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_segrelay"));
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// What a run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails with both streams shown when the exit code is not `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The NDJSON dry-run output, one value per request.
    pub fn requests(&self) -> Vec<Value> {
        parse_ndjson(&self.stdout)
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let output = cmd.output().expect("segrelay runs");
    Run {
        code: output.status.code().expect("segrelay exits with a code"),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// `segrelay send --dry-run -c SETTINGS -d DEST [extra...] FILES...`, run in `dir`.
pub fn dry_run(dir: &Path, settings: &str, dest: &str, extra: &[&str], files: &[&str]) -> Run {
    let mut cmd = segrelay();
    cmd.current_dir(dir)
        .args(["send", "--dry-run", "-c", settings, "-d", dest])
        .args(extra)
        .args(files);
    run(&mut cmd)
}

pub fn parse_ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("output line {} is not JSON ({e}): {l}", i + 1))
        })
        .collect()
}

/// The directory of the checked-in fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Segment's analytics-go fixtures, vendored with their licence (see ORIGIN.md there).
pub fn corpus() -> PathBuf {
    fixtures().join("analytics-go")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
    path
}

/// Events as NDJSON text, one line each.
pub fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// Settings for all three destinations, keys from the environment; the Orb
/// mapping takes `amount`, `currency`, `value` and `usage.tokens` (as `tokens`).
pub const SETTINGS: &str = r#"
[destinations.amberflo]
api_key = "${AMBERFLO_API_KEY}"

[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "userId"

[destinations.orb.properties_mapping]
amount = "amount"
currency = "currency"
value = "value"
"usage.tokens" = "tokens"

[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci_test_client"
environment = "live"
"#;

/// A temporary directory holding `segrelay.toml` (the text given) and nothing else.
pub fn workspace(settings: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write(dir.path(), "segrelay.toml", settings);
    dir
}

/// The summary JSON a run wrote with `--summary`.
pub fn summary(path: &Path) -> Value {
    read_json(path)
}

/// Checks `read = sent + skipped + rejected + failed` and that each
/// `*_by_reason` table adds up to its count.
pub fn assert_accounting(summary: &Value) {
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("summary has no number {k}: {summary}"))
    };
    assert_eq!(
        n("read"),
        n("sent") + n("skipped") + n("rejected") + n("failed"),
        "read = sent + skipped + rejected + failed does not hold: {summary}"
    );
    for (count, table) in [
        ("skipped", "skipped_by_reason"),
        ("rejected", "rejected_by_reason"),
    ] {
        let by_reason = summary[table]
            .as_object()
            .unwrap_or_else(|| panic!("summary has no object {table}: {summary}"));
        let total: u64 = by_reason.values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(
            total,
            n(count),
            "{table} does not add up to {count}: {summary}"
        );
    }
}

/// The counts of a summary: (read, sent, skipped, rejected, failed, requests).
pub fn counts(summary: &Value) -> (u64, u64, u64, u64, u64, u64) {
    let n = |k: &str| summary[k].as_u64().unwrap_or(u64::MAX);
    (
        n("read"),
        n("sent"),
        n("skipped"),
        n("rejected"),
        n("failed"),
        n("requests"),
    )
}

/// The sum of the `*_by_reason` entries whose key contains `needle`.
pub fn reason_count(summary: &Value, table: &str, needle: &str) -> u64 {
    summary[table]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.to_lowercase().contains(&needle.to_lowercase()))
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Every record of every request, in order: the array body of Amberflo
/// ingest and Kable, `body.events` for Orb, and the body itself for an
/// Amberflo customer.
pub fn records(requests: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for request in requests {
        match &request["body"] {
            Value::Array(items) => out.extend(items.iter().cloned()),
            // A lookup (GET) carries no record.
            Value::Null => {}
            Value::Object(map) if map.contains_key("events") => out.extend(
                map["events"]
                    .as_array()
                    .expect("events is an array")
                    .clone(),
            ),
            other => out.push(other.clone()),
        }
    }
    out
}

/// Options for [`json_diff`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Compare {
    /// Strings that are both UTC timestamps (`...Z`) are equal when they name
    /// the same instant (`09:32:01Z` = `09:32:01.000Z`).
    pub instants: bool,
}

/// Compares two JSON values by meaning: numbers by value (`2` = `2.0`),
/// objects by key set. Returns every difference with its path.
pub fn json_diff(actual: &Value, expected: &Value, options: Compare) -> Vec<String> {
    let mut out = Vec::new();
    diff_into(actual, expected, "$", options, &mut out);
    out
}

fn diff_into(
    actual: &Value,
    expected: &Value,
    path: &str,
    options: Compare,
    out: &mut Vec<String>,
) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            if a.as_f64() != e.as_f64() {
                out.push(format!("{path}: {a} instead of {e}"));
            }
        }
        (Value::String(a), Value::String(e)) => {
            let same = a == e
                || (options.instants
                    && utc_instant(a).is_some()
                    && utc_instant(a) == utc_instant(e));
            if !same {
                out.push(format!("{path}: {a:?} instead of {e:?}"));
            }
        }
        (Value::Object(a), Value::Object(e)) => {
            for key in e.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{key}: missing"));
            }
            for key in a.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}.{key}: unexpected ({})", a[key]));
            }
            for (key, e_value) in e {
                if let Some(a_value) = a.get(key) {
                    diff_into(a_value, e_value, &format!("{path}.{key}"), options, out);
                }
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                out.push(format!("{path}: {} items instead of {}", a.len(), e.len()));
            }
            for (i, (a_item, e_item)) in a.iter().zip(e).enumerate() {
                diff_into(a_item, e_item, &format!("{path}[{i}]"), options, out);
            }
        }
        (a, e) if a == e => {}
        (a, e) => out.push(format!("{path}: {a} instead of {e}")),
    }
}

/// `2022-01-09T09:32:01.500Z` as (`2022-01-09T09:32:01`, `5`): the second and
/// the fraction without trailing zeros. None unless it is that UTC form.
fn utc_instant(text: &str) -> Option<(String, String)> {
    let body = text.strip_suffix('Z')?;
    let (second, fraction) = match body.split_once('.') {
        Some((second, fraction)) => (second, fraction),
        None => (body, ""),
    };
    let shape_ok = second.len() == 19
        && second.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        })
        && fraction.chars().all(|c| c.is_ascii_digit());
    shape_ok.then(|| (second.to_owned(), fraction.trim_end_matches('0').to_owned()))
}

/// Fails with every difference listed.
pub fn assert_json_eq(actual: &Value, expected: &Value, options: Compare, what: &str) {
    let differences = json_diff(actual, expected, options);
    assert!(
        differences.is_empty(),
        "{what} differs from what the rules say:\n  {}\nactual:   {actual}\nexpected: {expected}",
        differences.join("\n  ")
    );
}

/// A request with its header names lower-cased (HTTP header names are case-insensitive).
pub fn normalise_headers(request: &Value) -> Value {
    let mut request = request.clone();
    if let Some(Value::Object(headers)) = request.get("headers").cloned() {
        let lowered: serde_json::Map<String, Value> = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        request["headers"] = Value::Object(lowered);
    }
    request
}

/// One gzip member holding `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The `messageId`/key of each record, whatever the destination calls it.
pub fn record_keys(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            ["uniqueId", "idempotency_key", "transactionId"]
                .iter()
                .find_map(|k| r.get(*k).and_then(Value::as_str))
                .unwrap_or_else(|| panic!("record without a key: {r}"))
                .to_owned()
        })
        .collect()
}

/// `(source, line)` of every event of every request.
pub fn event_origins(requests: &[Value]) -> Vec<(String, u64)> {
    requests
        .iter()
        .flat_map(|r| r["events"].as_array().expect("events is an array").clone())
        .map(|e| {
            (
                e["source"].as_str().expect("source is a string").to_owned(),
                e["line"].as_u64().expect("line is a number"),
            )
        })
        .collect()
}

/// Counts of values, for comparing multisets.
pub fn tally<T: Ord + Clone>(items: &[T]) -> BTreeMap<T, usize> {
    let mut out = BTreeMap::new();
    for item in items {
        *out.entry(item.clone()).or_default() += 1;
    }
    out
}
