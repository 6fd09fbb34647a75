//! Input: files in order, standard input, gzip, line endings, blank lines,
//! batch envelopes, the line length limit and the real Segment fixtures.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

fn track(id: &str) -> Value {
    json!({
        "type": "track",
        "event": "ApiCalls",
        "userId": "user-1",
        "messageId": id,
        "timestamp": "2021-04-26T14:01:46.909Z",
        "properties": {"value": 1, "region": "us-west-2"},
    })
}

fn origins(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(s, l)| (s.to_string(), *l)).collect()
}

#[test]
fn several_files_are_read_in_order() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "a.ndjson", ndjson(&[track("a1"), track("a2")]));
    write(dir.path(), "b.ndjson", ndjson(&[track("b1")]));
    write(dir.path(), "c.ndjson", ndjson(&[track("c1")]));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--batch-size", "3"],
        &["c.ndjson", "a.ndjson", "b.ndjson"],
    );
    out.expect_code(0);
    let requests = out.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(record_keys(&records(&requests)), ["c1", "a1", "a2", "b1"]);
    assert_eq!(
        event_origins(&requests),
        origins(&[
            ("c.ndjson", 1),
            ("a.ndjson", 1),
            ("a.ndjson", 2),
            ("b.ndjson", 1)
        ])
    );
}

#[test]
fn standard_input_is_read_for_dash_and_for_no_file() {
    let dir = workspace(SETTINGS);
    let input = ndjson(&[track("s1"), track("s2")]);
    for files in [vec!["-"], vec![]] {
        let out = run(segrelay()
            .current_dir(dir.path())
            .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", "kable"])
            .args(&files)
            .write_stdin(input.clone()));
        out.expect_code(0);
        let requests = out.requests();
        assert_eq!(
            record_keys(&records(&requests)),
            ["s1", "s2"],
            "files {files:?}"
        );
        let lines: Vec<u64> = event_origins(&requests).iter().map(|o| o.1).collect();
        assert_eq!(lines, [1, 2], "files {files:?}");
    }

    // `-` among files is read at its place.
    write(dir.path(), "a.ndjson", ndjson(&[track("a1")]));
    write(dir.path(), "b.ndjson", ndjson(&[track("b1")]));
    let out = run(segrelay()
        .current_dir(dir.path())
        .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", "kable"])
        .args(["a.ndjson", "-", "b.ndjson"])
        .write_stdin(ndjson(&[track("s1")])));
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["a1", "s1", "b1"]);
}

#[test]
fn gzip_is_recognised_by_its_magic_bytes_with_concatenated_members() {
    let dir = workspace(SETTINGS);
    let members = |a: &str, b: &str, c: &str| {
        let mut bytes = gzip(ndjson(&[track(a), track(b)]).as_bytes());
        bytes.extend(gzip(ndjson(&[track(c)]).as_bytes()));
        bytes
    };
    write(dir.path(), "events.ndjson.gz", members("g1", "g2", "g3"));
    // Not named .gz: still gzip.
    write(dir.path(), "archive-part-0001", members("h1", "h2", "h3"));
    write(dir.path(), "plain.ndjson", ndjson(&[track("p1")]));

    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &[],
        &["events.ndjson.gz", "archive-part-0001", "plain.ndjson"],
    );
    out.expect_code(0);
    let requests = out.requests();
    assert_eq!(
        record_keys(&records(&requests)),
        ["g1", "g2", "g3", "h1", "h2", "h3", "p1"]
    );
    assert_eq!(
        event_origins(&requests),
        origins(&[
            ("events.ndjson.gz", 1),
            ("events.ndjson.gz", 2),
            ("events.ndjson.gz", 3),
            ("archive-part-0001", 1),
            ("archive-part-0001", 2),
            ("archive-part-0001", 3),
            ("plain.ndjson", 1),
        ]),
        "line numbers count decompressed lines, across members"
    );

    // Gzip on standard input too.
    let out = run(segrelay()
        .current_dir(dir.path())
        .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", "orb", "-"])
        .write_stdin(members("g1", "g2", "g3")));
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["g1", "g2", "g3"]);
}

#[test]
fn a_truncated_gzip_file_is_not_silently_accepted() {
    let dir = workspace(SETTINGS);
    let whole = gzip(ndjson(&[track("t1"), track("t2")]).as_bytes());
    write(dir.path(), "cut.gz", &whole[..whole.len() - 30]);
    let out = dry_run(dir.path(), "segrelay.toml", "orb", &[], &["cut.gz"]);
    assert_ne!(
        out.code, 0,
        "a truncated archive must not end cleanly: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("cut.gz"),
        "stderr names the file: {}",
        out.stderr
    );
}

#[test]
fn crlf_line_endings_and_a_utf8_bom_are_accepted() {
    let dir = workspace(SETTINGS);
    let windows = |a: &str, b: &str| {
        let text = ndjson(&[track(a), track(b)]).replace('\n', "\r\n");
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes
    };
    write(dir.path(), "windows.ndjson", windows("r1", "r2"));
    write(dir.path(), "second.ndjson", windows("s1", "s2"));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "kable",
        &["--summary", "s.json"],
        &["windows.ndjson", "second.ndjson"],
    );
    out.expect_code(0);
    let requests = out.requests();
    let recs = records(&requests);
    assert_eq!(record_keys(&recs), ["r1", "r2", "s1", "s2"]);
    for r in &recs {
        assert_eq!(r["data"]["region"], json!("us-west-2"), "no stray \\r: {r}");
    }
    assert_eq!(
        event_origins(&requests),
        origins(&[
            ("windows.ndjson", 1),
            ("windows.ndjson", 2),
            ("second.ndjson", 1),
            ("second.ndjson", 2)
        ])
    );
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(counts(&s), (4, 4, 0, 0, 0, 1), "{s}");
}

#[test]
fn blank_lines_are_ignored_and_not_counted() {
    let dir = workspace(SETTINGS);
    let text = format!(
        "\n\n{}   \n\t\n\r\n{}\n\n",
        ndjson(&[track("b1")]),
        track("b2")
    );
    write(dir.path(), "gaps.ndjson", text);
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--summary", "s.json"],
        &["gaps.ndjson"],
    );
    out.expect_code(0);
    let requests = out.requests();
    assert_eq!(record_keys(&records(&requests)), ["b1", "b2"]);
    assert_eq!(
        event_origins(&requests),
        origins(&[("gaps.ndjson", 3), ("gaps.ndjson", 7)]),
        "line numbers are the file's own"
    );
    let s = summary(&dir.path().join("s.json"));
    assert_accounting(&s);
    assert_eq!(counts(&s), (2, 2, 0, 0, 0, 1), "{s}");
}

#[test]
fn batch_envelopes_yield_their_events_with_context_and_integrations_merged_in() {
    let settings = r#"
[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci_x"
environment = "live"
client_id_field = "context.groupId"

[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "context.groupId"
"#;
    let envelope = json!({
        "batch": [
            {"type": "track", "event": "e", "messageId": "b1", "timestamp": "2021-04-26T14:01:46.909Z"},
            {"type": "track", "event": "e", "messageId": "b2", "timestamp": "2021-04-26T14:01:46.909Z",
             "context": {"groupId": "grp-own"}},
            {"type": "track", "event": "e", "messageId": "b3", "timestamp": "2021-04-26T14:01:46.909Z",
             "integrations": {"Kable": false}},
        ],
        "context": {"groupId": "grp-env"},
        "integrations": {"All": false, "Kable": true},
        "sentAt": "2021-04-26T14:01:47Z",
        "messageId": "envelope-id",
    });
    let dir = workspace(settings);
    write(
        dir.path(),
        "batch.ndjson",
        format!(
            "{envelope}\n{}",
            ndjson(&[track("after")]).replace("user-1", "u")
        ),
    );

    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "kable",
        &["--summary", "s.json"],
        &["batch.ndjson"],
    );
    let s = summary(&dir.path().join("s.json"));
    assert_accounting(&s);
    let requests = out.requests();
    let got: BTreeMap<String, Value> = {
        let recs = records(&requests);
        record_keys(&recs).into_iter().zip(recs).collect()
    };
    assert_eq!(
        got["b1"]["clientId"],
        json!("grp-env"),
        "envelope context filled in"
    );
    assert_eq!(got["b2"]["clientId"], json!("grp-own"), "own context kept");
    assert!(!got.contains_key("b3"), "own integrations turn Kable off");
    assert!(
        !got.contains_key("envelope-id"),
        "the envelope is not an event"
    );
    // The line after the envelope has no groupId: skipped, no customer id.
    assert_eq!(counts(&s), (4, 2, 2, 0, 0, 1), "{s}");
    assert_eq!(s["skipped_by_reason"]["no customer id"], 1, "{s}");
    out.expect_code(0);
    let lines: Vec<u64> = event_origins(&requests).iter().map(|o| o.1).collect();
    assert_eq!(lines, [1, 1], "envelope items carry the envelope's line");

    // For Orb the envelope's integrations (All false, no Orb) turn all three
    // off: b3's own integrations object is merged with the envelope's, key by
    // key, and names neither Orb nor All.
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--summary", "s.json"],
        &["batch.ndjson"],
    );
    let s = summary(&dir.path().join("s.json"));
    assert!(records(&out.requests()).is_empty());
    assert_eq!(
        reason_count(&s, "skipped_by_reason", "integrations"),
        3,
        "{s}"
    );
}

#[test]
fn max_line_bytes_rejects_a_long_line_and_the_run_goes_on() {
    let dir = workspace(SETTINGS);
    let mut long = track("long");
    long["properties"]["padding"] = json!("p".repeat(400));
    write(
        dir.path(),
        "events.ndjson",
        ndjson(&[track("short-1"), long, track("short-2")]),
    );
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &[
            "--max-line-bytes",
            "300",
            "--summary",
            "s.json",
            "--rejects",
            "rejects.ndjson",
        ],
        &["events.ndjson"],
    );
    out.expect_code(1);
    assert_eq!(
        record_keys(&records(&out.requests())),
        ["short-1", "short-2"]
    );
    let s = summary(&dir.path().join("s.json"));
    assert_accounting(&s);
    assert_eq!(counts(&s), (3, 2, 0, 1, 0, 1), "{s}");
    let message = out
        .stderr
        .lines()
        .find(|l| l.contains("events.ndjson:2"))
        .unwrap_or_else(|| panic!("stderr names events.ndjson:2: {}", out.stderr));
    assert!(
        message.contains("long"),
        "the reason says the line is too long: {message}"
    );
    let rejects =
        parse_ndjson(&std::fs::read_to_string(dir.path().join("rejects.ndjson")).unwrap());
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["_segrelay"]["line"], json!(2));

    // The default limit takes the same line.
    let out = dry_run(dir.path(), "segrelay.toml", "orb", &[], &["events.ndjson"]);
    out.expect_code(0);
    assert_eq!(records(&out.requests()).len(), 3);
}

// ---------------------------------------------------------------------------
// The real Segment fixtures (pretty-printed batch envelopes)
// ---------------------------------------------------------------------------

/// The twelve analytics-go fixtures, by name (a file added later does not
/// change these counts).
const CORPUS_FILES: [&str; 12] = [
    "test-context-track.json",
    "test-enqueue-alias.json",
    "test-enqueue-group.json",
    "test-enqueue-identify.json",
    "test-enqueue-page.json",
    "test-enqueue-screen.json",
    "test-enqueue-track.json",
    "test-integrations-track.json",
    "test-interval-track.json",
    "test-many-track.json",
    "test-messageid-track.json",
    "test-timestamp-track.json",
];

fn corpus_files() -> Vec<String> {
    let dir = corpus();
    CORPUS_FILES
        .iter()
        .map(|name| {
            let path = dir.join(name);
            assert!(path.is_file(), "corpus file missing: {}", path.display());
            path.to_str().unwrap().to_owned()
        })
        .collect()
}

/// All the fixtures in one dry run. They all reuse the key "I'm unique", so
/// most of their events are skipped as duplicates of the first one.
fn run_corpus(dest: &str, settings: &str) -> (Run, Value) {
    let dir = workspace(settings);
    let files = corpus_files();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        dest,
        &["--summary", "s.json"],
        &files,
    );
    let s = summary(&dir.path().join("s.json"));
    assert_accounting(&s);
    (out, s)
}

/// test-many-track.json with the key its three items share ("I'm unique")
/// made three ("I'm unique #0" ...), written to `dir`: each item's
/// translation shows, none is a duplicate of another.
fn many_track_with_own_keys(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(corpus().join("test-many-track.json")).unwrap();
    let shared = "\"messageId\": \"I'm unique\"";
    let mut parts = text.split(shared);
    let mut out = parts.next().unwrap().to_owned();
    for (n, part) in parts.enumerate() {
        // The items come first; the envelope's own messageId (the last) is left alone.
        match n {
            0..3 => out.push_str(&format!("\"messageId\": \"I'm unique #{n}\"")),
            _ => out.push_str(shared),
        }
        out.push_str(part);
    }
    let path = write(dir, "test-many-track.json", out);
    path.to_str().unwrap().to_owned()
}

/// Each of `files` in a dry run of its own (test-many-track.json with its own
/// keys), their requests one after the other: every event's translation.
fn translate_apart(dest: &str, settings: &str, files: &[String]) -> Vec<Value> {
    let dir = workspace(settings);
    let mut requests = Vec::new();
    for file in files {
        let file = match file.ends_with("test-many-track.json") {
            true => &many_track_with_own_keys(dir.path()),
            false => file,
        };
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json"],
            &[file],
        );
        assert!(out.code <= 1, "{file}: {}", out.stderr);
        let s = summary(&dir.path().join("s.json"));
        assert_accounting(&s);
        assert_eq!(
            reason_count(&s, "skipped_by_reason", "duplicate"),
            0,
            "{file}: {s}"
        );
        requests.extend(out.requests());
    }
    requests
}

/// The warning about repeated keys with another record, from a summary.
fn repeated_key_warning(s: &Value) -> String {
    let warnings: Vec<&str> = s["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|w| w.contains("idempotency key"))
        .collect();
    assert_eq!(warnings.len(), 1, "{s}");
    warnings[0].to_owned()
}

#[test]
fn corpus_fixtures_for_amberflo() {
    let (out, s) = run_corpus("amberflo", SETTINGS);
    out.expect_code(0);
    // 14 events: 12 files, test-many-track.json holds three. The 11 usage
    // records carry two keys: the first of each is sent, 9 are duplicates.
    // Requests: the identify's lookup and creation, and one ingest.
    assert_eq!(counts(&s), (14, 3, 11, 0, 0, 3), "{s}");
    assert_eq!(
        reason_count(&s, "skipped_by_reason", "not taken"),
        2,
        "group and alias are not taken: {s}"
    );
    assert_eq!(
        reason_count(&s, "skipped_by_reason", "duplicate idempotency key"),
        9,
        "{s}"
    );
    // Six of them differ from the first record (another meter, another time).
    let warning = repeated_key_warning(&s);
    assert!(
        warning.starts_with("6 events repeated")
            && warning.contains("test-context-track.json:1 and "),
        "{warning}"
    );
    let ingest: Vec<Value> = out
        .requests()
        .into_iter()
        .filter(|r| r["url"].as_str().unwrap().ends_with("/ingest"))
        .collect();
    assert_eq!(record_keys(&records(&ingest)), ["I'm unique", "abc"]);

    // Each fixture's own translation.
    let requests = translate_apart("amberflo", SETTINGS, &corpus_files());
    let is_ingest = |r: &&Value| r["url"].as_str().unwrap().ends_with("/ingest");
    let customers: Vec<&Value> = requests
        .iter()
        .filter(|r| !is_ingest(r) && r["method"] == "POST")
        .collect();
    assert_eq!(customers.len(), 1);
    assert_json_eq(
        &customers[0]["body"],
        &json!({"customerId": "B", "customerName": "B", "traits": {}}),
        Compare::default(),
        "the identify fixture",
    );
    let ingest: Vec<Value> = requests.iter().filter(is_ingest).cloned().collect();
    let recs = records(&ingest);
    assert_eq!(recs.len(), 11);
    for r in &recs {
        let millis = r["meterTimeInMillis"].as_i64().unwrap();
        assert!(
            millis == 1_257_894_000_000 || millis == 1_436_569_200_000,
            "2009-11-10T23:00:00Z or 2015-07-10T23:00:00Z: {r}"
        );
    }
    let page = recs.iter().find(|r| r["meterApiName"] == "page").unwrap();
    assert_json_eq(
        page,
        &json!({"uniqueId": "I'm unique", "customerId": "B", "meterApiName": "page",
                "meterValue": 1, "meterTimeInMillis": 1_257_894_000_000u64,
                "dimensions": {"name": "A"}}),
        Compare::default(),
        "the page fixture",
    );
    let versions: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["dimensions"]["application"] == "Segment Desktop"
                && r["dimensions"].get("platform").is_none()
        })
        .map(|r| &r["dimensions"]["version"])
        .collect();
    assert_eq!(
        versions,
        [&json!("0"), &json!("1"), &json!("2")],
        "test-many-track.json"
    );
    // Every event of a pretty-printed document comes from the document's first line.
    for (_, line) in event_origins(&requests) {
        assert_eq!(line, 1);
    }
}

#[test]
fn corpus_fixtures_for_orb() {
    let (out, s) = run_corpus("orb", SETTINGS);
    out.expect_code(0);
    // Nine tracks with two keys: the first of each is sent, seven are duplicates.
    assert_eq!(counts(&s), (14, 2, 12, 0, 0, 1), "{s}");
    assert_eq!(
        reason_count(&s, "skipped_by_reason", "duplicate idempotency key"),
        7,
        "{s}"
    );
    // test-timestamp-track.json reuses the key "I'm unique" with another time:
    // only it differs from the first record (Orb would have refused a batch holding both).
    let warning = repeated_key_warning(&s);
    assert!(
        warning.starts_with("1 event repeated")
            && warning.contains("test-context-track.json:1 and ")
            && warning.ends_with("test-timestamp-track.json:1"),
        "{warning}"
    );
    assert!(!out.stderr.contains("rejected:"), "{}", out.stderr);
    assert_eq!(
        record_keys(&records(&out.requests())),
        ["I'm unique", "abc"]
    );

    // Each fixture's own translation.
    let recs = records(&translate_apart("orb", SETTINGS, &corpus_files()));
    let keys = record_keys(&recs);
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("I'm unique")).count(),
        8,
        "{keys:?}"
    );
    assert_eq!(keys.iter().filter(|k| *k == "abc").count(), 1, "{keys:?}");
    let many: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["idempotency_key"]
                .as_str()
                .unwrap()
                .starts_with("I'm unique")
        })
        .collect();
    for r in &many {
        assert_eq!(r["external_customer_id"], json!("123456"));
        assert_eq!(r["event_name"], json!("Download"));
    }
    let stamps: Vec<&str> = recs
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert_eq!(
        stamps
            .iter()
            .filter(|t| **t == "2015-07-10T23:00:00.000Z")
            .count(),
        1,
        "test-timestamp-track.json: {stamps:?}"
    );
    assert_eq!(
        stamps
            .iter()
            .filter(|t| **t == "2009-11-10T23:00:00.000Z")
            .count(),
        8,
        "{stamps:?}"
    );
}

#[test]
fn corpus_envelope_context_reaches_each_item() {
    let settings = r#"
[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci_x"
environment = "live"
client_id_field = "context.library.name"
"#;
    let dir = workspace(settings);
    let corpus = corpus();
    let files = [
        corpus
            .join("test-enqueue-track.json")
            .to_str()
            .unwrap()
            .to_owned(),
        corpus
            .join("test-context-track.json")
            .to_str()
            .unwrap()
            .to_owned(),
        many_track_with_own_keys(dir.path()),
    ];
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "kable",
        &["--summary", "s.json"],
        &files,
    );
    let s = summary(&dir.path().join("s.json"));
    assert_accounting(&s);
    // test-context-track.json's item has a context of its own (no library):
    // the envelope's is merged into it, key by key, so its library is there
    // too. Its messageId is test-enqueue-track.json's: a repeat, skipped.
    assert_eq!(counts(&s), (5, 4, 1, 0, 0, 1), "{s}");
    out.expect_code(0);
    for r in records(&out.requests()) {
        assert_eq!(r["clientId"], json!("analytics-go"), "{r}");
    }
    assert_eq!(
        reason_count(&s, "skipped_by_reason", "duplicate idempotency key"),
        1,
        "{s}"
    );
}

#[test]
fn corpus_fixture_gzipped_is_read_the_same() {
    let dir = workspace(SETTINGS);
    let text = std::fs::read(many_track_with_own_keys(dir.path())).unwrap();
    write(dir.path(), "many.json.gz", gzip(&text));
    let out = dry_run(dir.path(), "segrelay.toml", "kable", &[], &["many.json.gz"]);
    out.expect_code(0);
    let recs = records(&out.requests());
    assert_eq!(recs.len(), 3);
    let versions: Vec<&Value> = recs.iter().map(|r| &r["data"]["version"]).collect();
    assert_eq!(versions, [&json!(0), &json!(1), &json!(2)]);
}

/// A send to the loopback Amberflo server, events.ndjson holding two events.
fn loopback_job() -> (crate::support::server::TestServer, crate::support::job::Job) {
    use crate::support::job::{Job, destination_table};
    use crate::support::server::{Api, TestServer};
    let server = TestServer::start(Api::Amberflo, "sk_out");
    let job = Job::new(
        &destination_table(Api::Amberflo),
        &server.endpoint(),
        &ndjson(&[track("o1"), track("o2")]),
    );
    (server, job)
}

fn loopback_send(job: &crate::support::job::Job, args: &[&str]) -> Run {
    run(segrelay()
        .current_dir(job.dir.path())
        .args(["send", "-c", "segrelay.toml", "--batch-size", "1"])
        .args(args)
        .arg("events.ndjson")
        .env(crate::support::job::KEY_VAR, "sk_out"))
}

#[test]
fn an_unwritable_output_path_is_refused_before_anything_is_sent() {
    let (server, job) = loopback_job();
    for (flag, dry_run) in [
        ("--summary", false),
        ("--checkpoint", false),
        ("--rejects", false),
        ("-o", true),
    ] {
        let mut args = vec![flag, "nodir/out"];
        if dry_run {
            args.push("--dry-run");
        }
        let out = loopback_send(&job, &args);
        out.expect_code(2);
        assert!(
            out.stderr.contains(flag) && out.stderr.contains("nodir/out"),
            "{flag}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{flag}: {}", out.stdout);
    }
    let out = loopback_send(&job, &["--summary", "."]);
    out.expect_code(2);
    assert!(out.stderr.contains("is a folder"), "{}", out.stderr);
    assert!(server.received().is_empty(), "nothing may be sent");
}

#[test]
fn limit_reads_that_many_events_then_stops() {
    let dir = workspace(SETTINGS);
    let events: Vec<Value> = (0..5).map(|i| track(&format!("l{i}"))).collect();
    write(dir.path(), "events.ndjson", ndjson(&events));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--limit", "2", "--summary", "s.json"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["l0", "l1"]);
    assert_eq!(summary(&dir.path().join("s.json"))["read"], 2);
    let check = run(segrelay().current_dir(dir.path()).args([
        "check",
        "-c",
        "segrelay.toml",
        "-d",
        "orb",
        "--limit",
        "3",
        "--summary",
        "c.json",
        "events.ndjson",
    ]));
    check.expect_code(0);
    assert_eq!(summary(&dir.path().join("c.json"))["read"], 3);
}

#[test]
fn dash_writes_the_summary_or_the_rejects_to_standard_output() {
    let dir = workspace(SETTINGS);
    let input = format!("{}not json\n", ndjson(&[track("d1")]));
    write(dir.path(), "events.ndjson", input);
    let send = |extra: &[&str]| {
        dry_run(
            dir.path(),
            "segrelay.toml",
            "orb",
            extra,
            &["events.ndjson"],
        )
    };
    let out = send(&["-o", "requests.ndjson", "--summary", "-"]);
    out.expect_code(1);
    let summary: Value = serde_json::from_str(&out.stdout).expect("the summary on stdout");
    assert_eq!(summary["read"], 2);
    let out = send(&["-o", "requests.ndjson", "--rejects", "-"]);
    out.expect_code(1);
    let rejects = parse_ndjson(&out.stdout);
    assert_eq!(rejects.len(), 1, "{}", out.stdout);
    let out = send(&["-o", "-", "--summary", "s.json"]);
    assert_eq!(records(&out.requests()).len(), 1);
    assert!(!dir.path().join("-").exists(), "`-` is not a file name");

    for extra in [
        &["--summary", "-"][..],
        &["-o", "-", "--rejects", "-"],
        &["-o", "r.ndjson", "--rejects", "-", "--summary", "-"],
    ] {
        let out = send(extra);
        out.expect_code(2);
        assert!(
            out.stderr.contains("both write to standard output"),
            "{extra:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn filters_refuse_what_cannot_match_and_name_what_did_not() {
    let dir = workspace(SETTINGS);
    let mut other = track("f2");
    other["event"] = json!("ApiCall");
    write(dir.path(), "events.ndjson", ndjson(&[track("f1"), other]));
    let send = |extra: &[&str]| {
        dry_run(
            dir.path(),
            "segrelay.toml",
            "orb",
            extra,
            &["events.ndjson"],
        )
    };
    let out = send(&["--types", "track,pgae"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("\"pgae\"") && out.stderr.contains("group, alias"),
        "{}",
        out.stderr
    );
    send(&["--types", "Track"]).expect_code(0);
    for (since, until) in [("2026-02-01", "2026-01-01"), ("2026-01-01", "2026-01-01")] {
        let out = send(&["--since", since, "--until", until]);
        out.expect_code(2);
        assert!(
            out.stderr.contains("is not before --until"),
            "{}",
            out.stderr
        );
    }
    let out = send(&["--events", "ApiCalls,ApiCals", "--summary", "s.json"]);
    out.expect_code(0);
    let warning = "--events \"ApiCals\" matched no event; the input has \"ApiCall\"";
    assert!(out.stderr.contains(warning), "{}", out.stderr);
    let warnings = summary(&dir.path().join("s.json"))["warnings"].clone();
    assert!(
        warnings.as_array().unwrap().contains(&json!(warning)),
        "{warnings}"
    );
    assert!(
        !out.stderr.contains("\"ApiCalls\" matched"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_folder_is_read_recursively_in_path_order() {
    let dir = workspace(SETTINGS);
    let logs = dir.path().join("logs");
    for sub in ["a", ".hidden"] {
        std::fs::create_dir_all(logs.join(sub)).unwrap();
    }
    write(&logs, "b.ndjson", ndjson(&[track("b")]));
    write(&logs, "a/x", gzip(ndjson(&[track("ax")]).as_bytes()));
    write(&logs, "c.gz", gzip(ndjson(&[track("c")]).as_bytes()));
    write(&logs, ".h.ndjson", "not json\n");
    write(&logs, ".hidden/h.ndjson", "not json\n");
    let out = dry_run(dir.path(), "segrelay.toml", "orb", &[], &["logs"]);
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["ax", "b", "c"]);
}

/// A folder named on the command line that gives nothing to read is said, by
/// its path, in the warnings and the summary; a file beside it is read as ever.
#[test]
fn a_folder_with_no_event_file_is_said_by_name() {
    let dir = workspace(SETTINGS);
    for sub in ["empty/.hidden", "segment-logs", "full"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    write(
        dir.path(),
        "empty/.hidden/h.ndjson",
        ndjson(&[track("hidden")]),
    );
    // Segment's layout with only its test of access: no day folder, no event.
    write(dir.path(), "segment-logs/dummy-object.txt", "access test\n");
    write(dir.path(), "full/a.ndjson", ndjson(&[track("a")]));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--summary", "s.json"],
        &["empty", "segment-logs", "full"],
    );
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["a"]);
    let warnings = summary(&dir.path().join("s.json"))["warnings"].clone();
    let said: Vec<&str> = warnings
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|w| w.contains("no event file in this folder"))
        .collect();
    assert_eq!(said.len(), 2, "{warnings}");
    assert!(said[0].starts_with("empty: "), "{said:?}");
    assert!(said[1].starts_with("segment-logs: "), "{said:?}");
    assert!(
        out.stderr
            .contains("segrelay: warning: empty: no event file in this folder"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("full: no event"), "{}", out.stderr);
}

/// A link named on the command line is followed, to a folder as to a file;
/// links to folders inside a folder are not (no loops), and a folder holding
/// only such a link is said to give nothing.
#[cfg(unix)]
#[test]
fn a_link_named_on_the_command_line_is_followed_and_links_inside_are_not() {
    use std::os::unix::fs::symlink;
    let dir = workspace(SETTINGS);
    let root = dir.path();
    for sub in [
        format!("archive/src1/{MAR_31}"),
        "other".into(),
        "logs".into(),
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    write(
        root,
        &format!("archive/src1/{MAR_31}/part-0000.gz"),
        gzip(ndjson(&[track("linked")]).as_bytes()),
    );
    symlink(root.join("archive"), root.join("segment-logs")).unwrap();
    write(root, "other/o.ndjson", ndjson(&[track("inside")]));
    symlink(root.join("other"), root.join("logs/other")).unwrap();
    // A loop: followed, it would never end.
    symlink(root.join("logs"), root.join("other/loop")).unwrap();
    symlink(root.join("other/o.ndjson"), root.join("file-link")).unwrap();
    let out = dry_run(
        root,
        "segrelay.toml",
        "orb",
        &[],
        &["segment-logs", "logs", "file-link"],
    );
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["linked", "inside"]);
    assert!(
        out.stderr
            .contains("segrelay: folders: 1 file read; day folders: 1 read"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("logs: no event file in this folder"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("segment-logs: no event"),
        "{}",
        out.stderr
    );
}

/// A track event timed `timestamp` that Segment received at `received`.
fn received(id: &str, timestamp: &str, received: &str) -> Value {
    let mut event = track(id);
    event["timestamp"] = json!(timestamp);
    event["receivedAt"] = json!(received);
    event
}

/// UTC midnights as Segment names its day folders: epoch milliseconds.
const MAR_29: &str = "1743206400000";
const MAR_30: &str = "1743292800000";
const MAR_31: &str = "1743379200000";
const APR_01: &str = "1743465600000";
const APR_04: &str = "1743724800000";
const JUL_15: &str = "1752537600000";

/// Segment's S3 layout for March 31st, 2025, as Segment files it: by the day
/// it received each event. Returns the day files, in path order.
fn late_archive(root: &std::path::Path) -> Vec<String> {
    let folders: [(&str, &str, Vec<Value>); 6] = [
        (
            "src1",
            MAR_29,
            vec![received(
                "mar29",
                "2025-03-29T12:00:00Z",
                "2025-03-29T12:00:01Z",
            )],
        ),
        (
            "src1",
            MAR_30,
            vec![
                received("mar30", "2025-03-30T12:00:00Z", "2025-03-30T12:00:01Z"),
                // A device clock hours fast, received the day before its time.
                received("fast-clock", "2025-03-31T01:00:00Z", "2025-03-30T22:00:00Z"),
            ],
        ),
        (
            "src1",
            MAR_31,
            vec![received(
                "on-time",
                "2025-03-31T10:00:00Z",
                "2025-03-31T10:00:01Z",
            )],
        ),
        (
            "src1",
            APR_01,
            vec![
                // A call just before midnight, received just after it.
                received(
                    "midnight",
                    "2025-03-31T23:59:59.500Z",
                    "2025-04-01T00:00:02Z",
                ),
                received("apr01", "2025-04-01T09:00:00Z", "2025-04-01T09:00:01Z"),
            ],
        ),
        (
            "src2",
            APR_04,
            // A mobile outbox sent four days late.
            vec![received(
                "outbox",
                "2025-03-31T18:00:00Z",
                "2025-04-04T08:00:00Z",
            )],
        ),
        (
            "src2",
            JUL_15,
            vec![
                // A historical import, timed by its caller, received months later.
                received("import", "2025-03-31T08:00:00Z", "2025-07-15T15:00:00Z"),
                received("jul15", "2025-07-15T15:00:00Z", "2025-07-15T15:00:01Z"),
            ],
        ),
    ];
    let logs = root.join("segment-logs");
    let mut files = Vec::new();
    for (source, day, events) in folders {
        let folder = logs.join(source).join(day);
        std::fs::create_dir_all(&folder).unwrap();
        let name = format!("segment-logs/{source}/{day}/part-0000.gz");
        // S3 may have served one decompressed: a .gz name holding plain text.
        let content = match day {
            MAR_31 => ndjson(&events).into_bytes(),
            _ => gzip(ndjson(&events).as_bytes()),
        };
        write(root, &name, content);
        files.push(name);
    }
    // Segment's test of access: not an event.
    write(
        &logs,
        "dummy-object.txt",
        "Segment wrote this to test access\n",
    );
    files
}

#[test]
fn since_and_until_read_the_late_events_of_later_day_folders() {
    let dir = workspace(SETTINGS);
    let files = late_archive(dir.path());
    let window = ["--since", "2025-03-31", "--until", "2025-04-01"];
    let send = |inputs: &[&str]| {
        let mut extra = window.to_vec();
        extra.extend(["--summary", "s.json"]);
        let out = dry_run(dir.path(), "segrelay.toml", "orb", &extra, inputs);
        out.expect_code(0);
        (out, summary(&dir.path().join("s.json")))
    };
    let in_window = ["fast-clock", "on-time", "midnight", "outbox", "import"];

    let (out, folder) = send(&["segment-logs"]);
    assert_eq!(record_keys(&records(&out.requests())), in_window);
    assert_accounting(&folder);
    // Only the folder received more than a day before --since is passed over.
    assert_eq!(
        folder["folders"],
        json!({
            "files_read": 5,
            "files_ignored": 1,
            "day_folders_read": 5,
            "day_folders_skipped": 1,
            "day_folders_skipped_by": {"--since": 1},
        })
    );
    assert!(
        out.stderr.contains(
            "segrelay: folders: 5 files read, 1 ignored (outside day folders; -v lists them); \
             day folders: 5 read, 1 skipped (1 by --since)\n"
        ),
        "{}",
        out.stderr
    );

    // The same files named one by one: the same events pass.
    let named: Vec<&str> = files.iter().map(String::as_str).collect();
    let (out, listed) = send(&named);
    assert_eq!(record_keys(&records(&out.requests())), in_window);
    assert_eq!(
        counts(&listed).1,
        counts(&folder).1,
        "{listed}\n---\n{folder}"
    );
    assert!(listed.get("folders").is_none(), "{listed}");
}

#[test]
fn received_until_skips_later_day_folders_and_says_what_it_costs() {
    let dir = workspace(SETTINGS);
    late_archive(dir.path());
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &[
            "--since",
            "2025-03-31",
            "--until",
            "2025-04-01",
            "--received-until",
            "2025-04-02",
            "--summary",
            "s.json",
        ],
        &["segment-logs"],
    );
    out.expect_code(0);
    // The outbox and the import reached Segment after the bound: lost, as asked.
    assert_eq!(
        record_keys(&records(&out.requests())),
        ["fast-clock", "on-time", "midnight"]
    );
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(
        s["folders"]["day_folders_skipped_by"],
        json!({"--since": 1, "--received-until": 2})
    );
    let warning = "--received-until 2025-04-02T00:00:00Z skipped 2 day folders: events that \
                   reached Segment from then on are not read, even those timed earlier";
    assert!(out.stderr.contains(warning), "{}", out.stderr);
    assert!(
        s["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().starts_with(warning)),
        "{s}"
    );

    // By received day alone: March 31st's folder, whatever the events' times.
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &[
            "--received-since",
            "2025-03-31",
            "--received-until",
            "2025-04-01",
        ],
        &["segment-logs"],
    );
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["on-time"]);
    assert!(
        out.stderr
            .contains("--received-since 2025-03-31T00:00:00Z skipped 2 day folders"),
        "{}",
        out.stderr
    );

    let send = |extra: &[&str], inputs: &[&str]| {
        dry_run(dir.path(), "segrelay.toml", "orb", extra, inputs)
    };
    let out = send(
        &[
            "--received-since",
            "2025-04-01",
            "--received-until",
            "2025-04-01",
        ],
        &["segment-logs"],
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("is not before --received-until"),
        "{}",
        out.stderr
    );
    // Files named one by one are read whatever the bound, and it is said.
    let out = send(
        &["--received-until", "2025-04-01"],
        &["segment-logs/src2/1752537600000/part-0000.gz"],
    );
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), ["import", "jul15"]);
    assert!(
        out.stderr.contains("they skipped nothing"),
        "{}",
        out.stderr
    );
}

#[test]
fn in_segments_layout_only_day_folders_are_read() {
    let dir = workspace(SETTINGS);
    late_archive(dir.path());
    let all = [
        "mar29",
        "mar30",
        "fast-clock",
        "on-time",
        "midnight",
        "apr01",
        "outbox",
        "import",
        "jul15",
    ];
    let check = |extra: &[&str], input: &str| {
        run(segrelay()
            .current_dir(dir.path())
            .args(["check", "-c", "segrelay.toml", "-d", "orb"])
            .args(extra)
            .arg(input))
    };
    // dummy-object.txt is not an event: no rejection, even with --fail-fast.
    for extra in [&[][..], &["--fail-fast"]] {
        let out = check(extra, "segment-logs");
        out.expect_code(0);
        assert!(out.stderr.contains("read 9 events"), "{}", out.stderr);
    }
    let out = check(&["-v"], "segment-logs");
    out.expect_code(0);
    let ignored = format!(
        "segrelay: ignored {}: not in a day folder of Segment's layout",
        std::path::Path::new("segment-logs")
            .join("dummy-object.txt")
            .display()
    );
    assert!(out.stderr.contains(&ignored), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("segrelay: folders: 6 files read, 1 ignored (outside day folders); "),
        "{}",
        out.stderr
    );
    let out = check(&["-q"], "segment-logs");
    out.expect_code(0);
    assert!(!out.stderr.contains("folders:"), "{}", out.stderr);

    // A source folder, and a copy of segment-logs under another name, are in the layout too.
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &[],
        &["segment-logs/src1"],
    );
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())).len(), 6);
    std::fs::rename(dir.path().join("segment-logs"), dir.path().join("copy")).unwrap();
    let out = dry_run(dir.path(), "segrelay.toml", "orb", &[], &["copy"]);
    out.expect_code(0);
    assert_eq!(record_keys(&records(&out.requests())), all);
    assert!(out.stderr.contains("1 ignored"), "{}", out.stderr);
}

#[test]
fn a_checkpoint_over_a_folder_refuses_a_new_file() {
    let (server, job) = loopback_job();
    let logs = job.dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    write(&logs, "a.ndjson", ndjson(&[track("k1")]));
    let send = |extra: &[&str]| {
        run(segrelay()
            .current_dir(job.dir.path())
            .args(["send", "-c", "segrelay.toml", "--checkpoint", "cp"])
            .args(extra)
            .arg("logs")
            .env(crate::support::job::KEY_VAR, "sk_out"))
    };
    send(&[]).expect_code(0);
    write(&logs, "b.ndjson", ndjson(&[track("k2")]));
    let out = send(&[]);
    out.expect_code(2);
    assert!(out.stderr.contains("--restart"), "{}", out.stderr);
    // The new file is named, not the whole list twice.
    assert!(
        out.stderr.contains(
            "made for other inputs: this run reads 1 input it did not: \"logs/b.ndjson\""
        ),
        "{}",
        out.stderr
    );
    send(&["--restart"]).expect_code(0);
    // k1, then k1 again (restarted) with k2: deduped by its key.
    assert_eq!(server.received().len(), 2);
    assert_eq!(server.ingested().len(), 2);
}
