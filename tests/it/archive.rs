//! Segment's archive as Segment's own libraries make it (`tests/fixtures/segment-archive/`,
//! made by `generate.py` there): `check`, a dry run and a send to each destination over the
//! whole `segment-logs/` folder. Every count is first derived here from the fixture's lines
//! by the rules of the GUIDE (call types taken, the integrations selector, a repeated
//! `messageId`), then written out by hand with why, then compared with the run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support;
use crate::support::server::{Api, KABLE_CLIENT_ID, TestServer};

const KEY: &str = "sk_test_archive_key_31";

fn fixture() -> PathBuf {
    support::fixtures().join("segment-archive")
}

fn segment_logs() -> PathBuf {
    fixture().join("segment-logs")
}

/// The entries of `dir`, in path order (the order segrelay reads them).
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// The archive's events in reading order: `segment-logs/<source>/<day>/<file>.gz`, each file
/// read through all its gzip members. Checks the layout on the way: each day folder is 13
/// digits, the UTC midnight of the day Segment received each of its events.
fn archive_events() -> Vec<Value> {
    let mut events = Vec::new();
    for source in sorted_entries(&segment_logs()) {
        if !source.is_dir() {
            continue; // dummy-object.txt
        }
        for day in sorted_entries(&source) {
            let name = day.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(
                name.len() == 13 && name.bytes().all(|b| b.is_ascii_digit()),
                "{name}"
            );
            let start: i64 = name.parse().unwrap();
            for file in sorted_entries(&day) {
                let mut text = String::new();
                flate2::read::MultiGzDecoder::new(std::fs::File::open(&file).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    let event: Value = serde_json::from_str(line).unwrap();
                    let received: jiff::Timestamp =
                        event["receivedAt"].as_str().unwrap().parse().unwrap();
                    let ms = received.as_millisecond();
                    assert!(
                        start <= ms && ms < start + 86_400_000,
                        "{} received outside its day folder",
                        event["messageId"]
                    );
                    events.push(event);
                }
            }
        }
    }
    events
}

/// Whether `integrations` lets `dest` (its display name) have the event, as Segment decides:
/// the destination's own key wins when present, else `All`, which defaults to true.
fn enabled(integrations: &Value, dest: &str) -> bool {
    let off = |v: &Value| v.is_null() || *v == Value::Bool(false);
    match integrations.get(dest) {
        Some(value) => !off(value),
        None => integrations.get("All").is_none_or(|all| !off(all)),
    }
}

/// What a run of `dest` should do with the archive, derived from its lines.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    read: u64,
    /// The idempotency keys of the records sent, in reading order (meter records and events;
    /// Amberflo's identifies are customer writes and not listed here).
    keys: Vec<String>,
    /// Identify events sent (Amberflo: folded into one customer write per `userId`).
    identifies: u64,
    customers: BTreeSet<String>,
    /// Events sent, per call type.
    sent_by_type: BTreeMap<String, u64>,
    skipped: BTreeMap<String, u64>,
}

impl Expected {
    fn sent(&self) -> u64 {
        self.keys.len() as u64 + self.identifies
    }

    fn skipped(&self) -> u64 {
        self.skipped.values().sum()
    }
}

fn expected(api: Api, events: &[Value]) -> Expected {
    let (display, taken): (&str, &[&str]) = match api {
        Api::Amberflo => ("Amberflo", &["track", "page", "screen", "identify"]),
        Api::Orb => ("Orb", &["track"]),
        Api::Kable => ("Kable", &["track"]),
    };
    let mut out = Expected::default();
    let mut seen = BTreeSet::new();
    for event in events {
        out.read += 1;
        let kind = event["type"].as_str().unwrap();
        let reason = if !taken.contains(&kind) {
            Some(format!("type not taken: {kind}"))
        } else if !enabled(&event["integrations"], display) {
            Some("disabled by integrations".to_owned())
        } else if event["userId"]
            .as_str()
            .is_none_or(|id| id.trim().is_empty())
        {
            // The fixture's settings name no fallback to the anonymousId.
            Some("no customer id".to_owned())
        } else if !seen.insert(event["messageId"].as_str().unwrap().to_owned()) {
            Some("duplicate idempotency key".to_owned())
        } else {
            None
        };
        if reason.is_none() {
            *out.sent_by_type.entry(kind.to_owned()).or_default() += 1;
        }
        match reason {
            Some(reason) => *out.skipped.entry(reason).or_default() += 1,
            None if kind == "identify" => {
                out.identifies += 1;
                out.customers
                    .insert(event["userId"].as_str().unwrap().to_owned());
            }
            None => out
                .keys
                .push(event["messageId"].as_str().unwrap().to_owned()),
        }
    }
    out
}

fn by_type(events: &[Value]) -> BTreeMap<&str, u64> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts.entry(event["type"].as_str().unwrap()).or_default() += 1;
    }
    counts
}

/// The fixture's settings with `endpoint` (and Amberflo's `api_endpoint`) pointing at
/// `server`, and Kable's client id the one the test server takes.
fn settings_for(server: &TestServer) -> String {
    let text = std::fs::read_to_string(fixture().join("segrelay.toml")).unwrap();
    let header = format!("[destinations.{}]\n", server.api().name());
    let mut lines = format!("{header}endpoint = \"{}\"\n", server.endpoint());
    if server.api() == Api::Amberflo {
        lines.push_str(&format!("api_endpoint = \"{}\"\n", server.endpoint()));
    }
    assert!(text.contains(&header), "segrelay.toml has no {header}");
    text.replacen(&header, &lines, 1).replace(
        "kable_client_id = \"kci_fixture_client\"",
        &format!("kable_client_id = \"{KABLE_CLIENT_ID}\""),
    )
}

/// `segrelay ARGS -c <fixture settings> -d DEST --summary <dir>/summary.json <segment-logs>`,
/// with every key set to [`KEY`]; the summary is returned with the output.
fn run(settings: &Path, dest: &str, args: &[&str]) -> (Output, Value) {
    let dir = settings.parent().unwrap();
    let summary = dir.join("summary.json");
    let output = support::segrelay_process()
        .args(args)
        .arg("-c")
        .arg(settings)
        .args(["-d", dest, "--summary"])
        .arg(&summary)
        .arg(segment_logs())
        .env("AMBERFLO_API_KEY", KEY)
        .env("ORB_API_KEY", KEY)
        .env("KABLE_API_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(KEY), "the key leaked: {stderr}");
    (output, support::summary(&summary))
}

/// The summary agrees with what the fixture says: read, sent, skipped by reason, nothing
/// rejected or failed, the accounting identity, and the folders read.
fn assert_summary(summary: &Value, want: &Expected) {
    support::assert_accounting(summary);
    assert_eq!(summary["read"], want.read, "{summary}");
    assert_eq!(summary["sent"], want.sent(), "{summary}");
    assert_eq!(summary["skipped"], want.skipped(), "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    let by_reason: BTreeMap<String, u64> =
        serde_json::from_value(summary["skipped_by_reason"].clone()).unwrap();
    assert_eq!(by_reason, want.skipped, "{summary}");
    // dummy-object.txt is Segment's access test, not an event: ignored, and counted as such.
    assert_eq!(summary["folders"]["files_ignored"], 1, "{summary}");
    assert_eq!(summary["folders"]["day_folders_skipped"], 0, "{summary}");
}

/// What the fixture holds, written out: the counts below explain every other test here.
#[test]
fn the_fixture_holds_what_its_readme_says() {
    let events = archive_events();
    // 34 lines in 11 files of 7 day folders: 21 tracks (billing usage, 3 selectors, a call
    // received after midnight, 3 historical imports, 3 from a clock 3 hours ahead, 3 from a
    // mobile outbox, and one message archived twice), 6 identifies (names, then plan
    // changes), 4 pages and 1 screen (3 pages and the screen anonymous), a group and an alias.
    let counts = by_type(&events);
    let want: BTreeMap<&str, u64> = [
        ("alias", 1),
        ("group", 1),
        ("identify", 6),
        ("page", 4),
        ("screen", 1),
        ("track", 21),
    ]
    .into();
    assert_eq!(counts, want);
    let anonymous = events
        .iter()
        .filter(|e| e.get("userId").is_none_or(Value::is_null) && e["anonymousId"].is_string())
        .count();
    assert_eq!(anonymous, 4, "3 pages and a screen before sign-in");

    // Segment's skew correction holds on every line, and no corrected time is after its receipt.
    let at = |e: &Value, k: &str| -> jiff::Timestamp { e[k].as_str().unwrap().parse().unwrap() };
    for e in &events {
        let corrected = at(e, "receivedAt")
            .checked_sub(at(e, "sentAt").duration_since(at(e, "originalTimestamp")))
            .unwrap();
        assert_eq!(corrected, at(e, "timestamp"), "{e}");
        assert!(at(e, "timestamp") <= at(e, "receivedAt"), "{e}");
    }
    // The skewed device: its originalTimestamp is 3 hours ahead of the corrected time.
    let skewed = events
        .iter()
        .find(|e| e["messageId"] == "fx-tr-0011")
        .unwrap();
    let ahead = at(skewed, "originalTimestamp").duration_since(at(skewed, "timestamp"));
    assert!(ahead > jiff::SignedDuration::from_mins(179), "{skewed}");

    // One messageId archived twice, three days apart, its times 6 ms apart.
    let resent: Vec<&Value> = events
        .iter()
        .filter(|e| e["messageId"] == "fx-tr-resent")
        .collect();
    assert_eq!(resent.len(), 2);
    assert_ne!(resent[0]["timestamp"], resent[1]["timestamp"]);
    let gap = at(resent[1], "timestamp").duration_since(at(resent[0], "timestamp"));
    assert_eq!(gap, jiff::SignedDuration::from_millis(6));

    // One file holds two gzip members.
    let two_members = sorted_entries(&segment_logs().join("q7XbN2kT4w/1772409600000"))
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap();
            bytes
                .windows(3)
                .filter(|w| *w == [0x1f, 0x8b, 0x08])
                .count()
                == 2
        })
        .count();
    assert_eq!(two_members, 1);

    let size: u64 = walk(&fixture())
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(size < 1_000_000, "the fixture is {size} bytes");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in sorted_entries(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name == "node_modules" || name == ".venv" {
            continue; // left by a regeneration, not committed
        }
        if entry.is_dir() {
            files.extend(walk(&entry));
        } else {
            files.push(entry);
        }
    }
    files
}

/// The counts per destination, written out; each is also derived from the lines above.
#[test]
fn the_expected_counts_follow_from_the_fixture() {
    let events = archive_events();
    let table = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };

    // Amberflo takes tracks, pages, screens and identifies. Of the 21 tracks, one is turned
    // off for it ({"All": false, "Orb": {...}}) and the second archiving of fx-tr-resent is a
    // duplicate: 19 meter records; of the 4 pages and the screen, only the page with a userId
    // is one more (3 pages and the screen are anonymous: no customer id, and the settings name
    // no fallback to the anonymousId); the 6 identifies are sent as writes of the 4 customers
    // they name (cus_1001 and cus_1002 twice: a name, then a plan). Skipped: the group, the
    // alias, that turned-off track, that duplicate and the 4 anonymous calls.
    let amberflo = expected(Api::Amberflo, &events);
    assert_eq!(
        (amberflo.read, amberflo.keys.len(), amberflo.identifies),
        (34, 20, 6)
    );
    assert_eq!(amberflo.customers.len(), 4);
    assert_eq!(
        amberflo.sent_by_type,
        table(&[("identify", 6), ("page", 1), ("track", 19)])
    );
    assert_eq!(
        amberflo.skipped,
        table(&[
            ("disabled by integrations", 1),
            ("duplicate idempotency key", 1),
            ("no customer id", 4),
            ("type not taken: alias", 1),
            ("type not taken: group", 1),
        ])
    );

    // Orb and Kable take tracks only: 21 less 2 turned off ({"All": false, "Amberflo": true}
    // and {"Orb": false} for Orb; {"All": false, ...} twice for Kable) less the duplicate is
    // 18; the 13 other calls are of types they do not take.
    for api in [Api::Orb, Api::Kable] {
        let want = expected(api, &events);
        assert_eq!((want.read, want.keys.len(), want.identifies), (34, 18, 0));
        assert_eq!(want.sent_by_type, table(&[("track", 18)]));
        assert_eq!(
            want.skipped,
            table(&[
                ("disabled by integrations", 2),
                ("duplicate idempotency key", 1),
                ("type not taken: alias", 1),
                ("type not taken: group", 1),
                ("type not taken: identify", 6),
                ("type not taken: page", 4),
                ("type not taken: screen", 1),
            ])
        );
    }
}

#[test]
fn check_over_the_archive_accounts_for_every_line() {
    let events = archive_events();
    for api in [Api::Amberflo, Api::Orb, Api::Kable] {
        let want = expected(api, &events);
        let dir = tempfile::tempdir().unwrap();
        let settings = support::write(
            dir.path(),
            "segrelay.toml",
            std::fs::read_to_string(fixture().join("segrelay.toml")).unwrap(),
        );
        let (output, summary) = run(&settings, api.name(), &["check"]);
        assert_summary(&summary, &want);
        // The resent message is named with both places it was archived.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("\"fx-tr-resent\""), "{stderr}");
    }
}

/// The records of a dry run's requests: (idempotency key, record) of the meter records or
/// events, and the customers written.
fn dry_run_records(api: Api, requests: &[Value]) -> (Vec<String>, BTreeSet<String>) {
    let mut keys = Vec::new();
    let mut customers = BTreeSet::new();
    for request in requests {
        let url = request["url"].as_str().unwrap();
        let body = &request["body"];
        match api {
            Api::Amberflo if url.ends_with("/ingest") => keys.extend(
                body.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["uniqueId"].as_str().unwrap().to_owned()),
            ),
            Api::Amberflo if request["method"] == "POST" && url.ends_with("/customers") => {
                customers.insert(body["customerId"].as_str().unwrap().to_owned());
            }
            Api::Amberflo => {} // the customer look-ups
            Api::Orb => keys.extend(
                body["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["idempotency_key"].as_str().unwrap().to_owned()),
            ),
            Api::Kable => keys.extend(
                body.as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["transactionId"].as_str().unwrap().to_owned()),
            ),
        }
    }
    (keys, customers)
}

#[test]
fn a_dry_run_of_the_archive_writes_each_record_once() {
    let events = archive_events();
    for api in [Api::Amberflo, Api::Orb, Api::Kable] {
        let want = expected(api, &events);
        let dir = tempfile::tempdir().unwrap();
        let settings = support::write(
            dir.path(),
            "segrelay.toml",
            std::fs::read_to_string(fixture().join("segrelay.toml")).unwrap(),
        );
        let (output, summary) = run(&settings, api.name(), &["send", "--dry-run"]);
        assert_summary(&summary, &want);
        let requests = support::parse_ndjson(&String::from_utf8(output.stdout).unwrap());
        let (keys, customers) = dry_run_records(api, &requests);
        let (mut got, mut wanted) = (keys.clone(), want.keys.clone());
        got.sort();
        wanted.sort();
        assert_eq!(got, wanted, "{}", api.name());
        assert_eq!(customers, want.customers, "{}", api.name());
    }
}

#[test]
fn a_send_of_the_archive_to_amberflo_delivers_each_record_once() {
    let events = archive_events();
    let want = expected(Api::Amberflo, &events);
    let server = TestServer::start(Api::Amberflo, KEY);
    let dir = tempfile::tempdir().unwrap();
    let settings = support::write(dir.path(), "segrelay.toml", settings_for(&server));
    let (_, summary) = run(&settings, "amberflo", &["send"]);
    assert_summary(&summary, &want);

    let mut got: Vec<String> = server
        .ingested()
        .iter()
        .map(|r| r["uniqueId"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut wanted = want.keys.clone();
    wanted.sort();
    assert_eq!(got, wanted);
    // Per call type: a page's meter is `page`, a screen's `screen`, a track's its event name.
    let mut records_by_type: BTreeMap<String, u64> = BTreeMap::new();
    for record in server.ingested() {
        let kind = match record["meterApiName"].as_str().unwrap() {
            "page" | "screen" => record["meterApiName"].as_str().unwrap(),
            _ => "track",
        };
        *records_by_type.entry(kind.to_owned()).or_default() += 1;
    }
    let mut want_records = want.sent_by_type.clone();
    want_records.remove("identify");
    assert_eq!(records_by_type, want_records);
    let customers: BTreeSet<String> = server
        .customers()
        .iter()
        .map(|c| c["customerId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(customers, want.customers);
    // cus_1001's identifies folded: its name from the first, its plan from the later one.
    let zoe = server
        .customers()
        .into_iter()
        .find(|c| c["customerId"] == "cus_1001")
        .unwrap();
    assert_eq!(zoe["customerName"], "Zoë Ångström", "{zoe}");
    assert_eq!(zoe["traits"]["plan"], "pro", "{zoe}");
}

#[test]
fn a_backfill_of_the_archive_to_orb_delivers_each_event_once() {
    let events = archive_events();
    let want = expected(Api::Orb, &events);
    let server = TestServer::start(Api::Orb, KEY);
    // Every event of the archive is months old: past Orb's grace period, so a backfill.
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    let dir = tempfile::tempdir().unwrap();
    let settings = support::write(dir.path(), "segrelay.toml", settings_for(&server));
    let args = [
        "send",
        "--orb-backfill",
        "--orb-wait",
        "--orb-poll-interval",
        "10ms",
        "--max-retry-wait",
        "10ms",
    ];
    let (_, summary) = run(&settings, "orb", &args);
    assert_summary(&summary, &want);

    let ingested = server.ingested();
    let mut got: Vec<String> = ingested
        .iter()
        .map(|e| e["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut wanted = want.keys.clone();
    wanted.sort();
    assert_eq!(got, wanted);
    for key in &want.keys {
        assert!(server.backfill_of(key).is_some(), "{key} not backfilled");
    }
    // The event's time is Segment's corrected timestamp, not the skewed device's clock.
    let skewed = ingested
        .iter()
        .find(|e| e["idempotency_key"] == "fx-tr-0011")
        .unwrap();
    assert_eq!(skewed["timestamp"], "2026-03-03T08:00:00.040Z", "{skewed}");
}

#[test]
fn a_send_of_the_archive_to_kable_delivers_each_event_once() {
    let events = archive_events();
    let want = expected(Api::Kable, &events);
    let server = TestServer::start(Api::Kable, KEY);
    let dir = tempfile::tempdir().unwrap();
    let settings = support::write(dir.path(), "segrelay.toml", settings_for(&server));
    let (_, summary) = run(&settings, "kable", &["send", "--max-retry-wait", "10ms"]);
    assert_summary(&summary, &want);

    let mut got: Vec<String> = server
        .ingested()
        .iter()
        .map(|e| e["transactionId"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut wanted = want.keys.clone();
    wanted.sort();
    assert_eq!(got, wanted);
}
