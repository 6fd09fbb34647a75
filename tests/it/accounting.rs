//! Accounting (summary, exit codes, rejects file and its replay) and batching.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

const TS: &str = "2021-04-26T14:01:46.909Z";

fn track(id: &str) -> Value {
    json!({"type": "track", "event": "ApiCalls", "userId": "user-1", "messageId": id, "timestamp": TS,
           "properties": {"value": 1}})
}

/// A file with one problem of each kind, a blank line, a skipped page and an
/// event without messageId.
fn mixed_file() -> String {
    let mut no_id = track("x");
    no_id.as_object_mut().unwrap().remove("messageId");
    [
        track("m1").to_string(),
        r#"{"type":"track","event":"ApiCalls","userId":"u","#.to_owned(),
        r#"["not","an","event"]"#.to_owned(),
        json!({"type": "track", "event": "ApiCalls", "userId": "u", "messageId": "m4"}).to_string(),
        json!({"event": "ApiCalls", "userId": "u", "messageId": "m5", "timestamp": TS}).to_string(),
        String::new(),
        json!({"type": "page", "userId": "u", "name": "Home", "messageId": "m7", "timestamp": TS})
            .to_string(),
        no_id.to_string(),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn malformed_lines_are_accounted_for_and_named() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "mixed.ndjson", mixed_file());
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--summary", "summary.json", "--rejects", "rejects.ndjson"],
        &["mixed.ndjson"],
    );
    out.expect_code(1);
    let s = summary(&dir.path().join("summary.json"));
    assert_accounting(&s);
    // The blank line 6 is not an event.
    assert_eq!(counts(&s), (7, 2, 1, 4, 0, 1), "{s}");
    for key in ["skipped_by_reason", "rejected_by_reason"] {
        assert!(s[key].is_object(), "summary has {key}: {s}");
    }

    // stderr: file:line and the reason, for every rejected line.
    let message = |line: u64| {
        out.stderr
            .lines()
            .find(|l| l.contains(&format!("mixed.ndjson:{line}")))
            .unwrap_or_else(|| panic!("stderr does not name mixed.ndjson:{line}:\n{}", out.stderr))
            .to_lowercase()
    };
    assert!(message(2).contains("json"), "{}", message(2));
    assert!(
        message(3).contains("object") || message(3).contains("array"),
        "{}",
        message(3)
    );
    assert!(message(4).contains("time"), "{}", message(4));
    assert!(message(5).contains("type"), "{}", message(5));
    assert!(
        !out.stderr.contains("mixed.ndjson:6"),
        "a blank line is not an event: {}",
        out.stderr
    );

    // The rejects file: one JSON line per rejected event, with reason, source and line.
    let rejects =
        parse_ndjson(&std::fs::read_to_string(dir.path().join("rejects.ndjson")).unwrap());
    assert_eq!(rejects.len(), 4, "{rejects:?}");
    let mut lines = Vec::new();
    for r in &rejects {
        let note = &r["_segrelay"];
        assert!(
            note["reason"].as_str().is_some_and(|t| !t.is_empty()),
            "reason: {r}"
        );
        assert_eq!(note["source"], json!("mixed.ndjson"), "{r}");
        lines.push(note["line"].as_u64().expect("line is a number"));
    }
    assert_eq!(lines, [2, 3, 4, 5]);
    // Events that were JSON objects are kept as they were, beside the note.
    assert_eq!(rejects[2]["messageId"], json!("m4"));
    assert_eq!(rejects[3]["messageId"], json!("m5"));

    // Fed back, the rejects file yields the same events, rejected for the same reasons.
    let again = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--summary", "again.json"],
        &["rejects.ndjson"],
    );
    again.expect_code(1);
    let s2 = summary(&dir.path().join("again.json"));
    assert_accounting(&s2);
    assert_eq!(counts(&s2), (4, 0, 0, 4, 0, 0), "{s2}");
    assert_eq!(
        s2["rejected_by_reason"], s["rejected_by_reason"],
        "the replay sees the same problems"
    );
    for line in 1..=4 {
        assert!(
            again.stderr.contains(&format!("rejects.ndjson:{line}")),
            "the replay names its own file and line: {}",
            again.stderr
        );
    }
}

#[test]
fn a_clean_run_exits_zero() {
    let dir = workspace(SETTINGS);
    let page =
        json!({"type": "page", "userId": "u", "name": "Home", "messageId": "p", "timestamp": TS});
    write(
        dir.path(),
        "clean.ndjson",
        ndjson(&[track("c1"), page, track("c2")]),
    );
    for dest in ["amberflo", "orb", "kable"] {
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json", "--rejects", "r.ndjson"],
            &["clean.ndjson"],
        );
        out.expect_code(0);
        let s = summary(&dir.path().join("s.json"));
        assert_accounting(&s);
        assert_eq!(s["rejected"], json!(0), "{dest}: {s}");
        assert_eq!(s["read"], json!(3), "{dest}: {s}");
        let rejects = std::fs::read_to_string(dir.path().join("r.ndjson")).unwrap_or_default();
        assert!(rejects.trim().is_empty(), "{dest}: no rejects: {rejects}");
    }
}

/// Events refused by one mapping are fixed by the next; the replayed rejects
/// get the idempotency keys the original events get, fallback ids included.
#[test]
fn replayed_rejects_keep_their_idempotency_keys() {
    let strict = r#"
[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "userId"
[destinations.orb.properties_mapping]
meta = "meta"
value = "value"
"#;
    let fixed = r#"
[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "userId"
[destinations.orb.properties_mapping]
value = "value"
"#;
    let with_id = json!({"type": "track", "event": "e", "userId": "u", "messageId": "k1",
                         "timestamp": TS, "properties": {"value": 1, "meta": {"a": 1}}});
    let no_id = json!({"type": "track", "event": "e", "userId": "u",
                       "timestamp": TS, "properties": {"value": 2, "meta": {"b": 2}}});
    let fine = json!({"type": "track", "event": "e", "userId": "u",
                      "timestamp": TS, "properties": {"value": 3}});
    let envelope = json!({
        "batch": [{"type": "track", "event": "e", "userId": "u", "timestamp": TS,
                   "properties": {"value": 4, "meta": [1, 2]}}],
        "context": {"ip": "203.0.113.7"},
    });

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "strict.toml", strict);
    write(dir.path(), "fixed.toml", fixed);
    write(
        dir.path(),
        "events.ndjson",
        ndjson(&[with_id, no_id, fine, envelope]),
    );

    let original = dry_run(dir.path(), "fixed.toml", "orb", &[], &["events.ndjson"]);
    original.expect_code(0);
    let keys_by_value: BTreeMap<String, String> = records(&original.requests())
        .iter()
        .map(|r| {
            (
                r["properties"]["value"].to_string(),
                r["idempotency_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(keys_by_value.len(), 4);

    let first = dry_run(
        dir.path(),
        "strict.toml",
        "orb",
        &["--rejects", "rejects.ndjson"],
        &["events.ndjson"],
    );
    first.expect_code(1);
    assert_eq!(
        record_keys(&records(&first.requests())),
        [keys_by_value["3"].clone()]
    );

    let replay = dry_run(dir.path(), "fixed.toml", "orb", &[], &["rejects.ndjson"]);
    replay.expect_code(0);
    let replayed = records(&replay.requests());
    assert_eq!(replayed.len(), 3, "the three rejected events come back");
    for r in &replayed {
        let value = r["properties"]["value"].to_string();
        assert_eq!(
            r["idempotency_key"].as_str().unwrap(),
            keys_by_value[&value],
            "the event with value {value} must keep its idempotency key"
        );
        assert!(
            r["properties"].get("_segrelay").is_none(),
            "segrelay's note is not part of the event"
        );
    }
    assert_eq!(keys_by_value["1"], "k1");
}

/// A line refused only for its length comes back whole once the limit is
/// raised: the rejects file must keep the entire line, not its first kilobyte.
#[test]
fn an_overlong_line_can_be_replayed_from_the_rejects_file() {
    let dir = workspace(SETTINGS);
    let mut long = track("long");
    long["properties"]["padding"] = json!("p".repeat(3000));
    write(dir.path(), "events.ndjson", ndjson(&[track("short"), long]));
    let first = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--max-line-bytes", "1000", "--rejects", "rejects.ndjson"],
        &["events.ndjson"],
    );
    first.expect_code(1);
    let rejects =
        parse_ndjson(&std::fs::read_to_string(dir.path().join("rejects.ndjson")).unwrap());
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["_segrelay"]["line"], json!(2));

    // The cause (the limit) is fixed: the rejects file yields the event again.
    let replay = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--summary", "s.json"],
        &["rejects.ndjson"],
    );
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(
        record_keys(&records(&replay.requests())),
        ["long"],
        "the overlong event is lost from the rejects file: {s}\n{}",
        replay.stderr
    );
    replay.expect_code(0);
}

#[test]
fn rejects_or_output_naming_an_input_is_refused() {
    let dir = workspace(SETTINGS);
    let original = ndjson(&[track("a")]);
    write(dir.path(), "events.ndjson", &original);
    for flag in ["--rejects", "--summary", "-o"] {
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            "orb",
            &[flag, "events.ndjson"],
            &["events.ndjson"],
        );
        out.expect_code(2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("events.ndjson")).unwrap(),
            original,
            "{flag}: the input is left alone"
        );
    }
}

#[test]
fn a_missing_input_file_is_reported() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "events.ndjson", ndjson(&[track("a")]));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &[],
        &["no-such-file.ndjson", "events.ndjson"],
    );
    assert_ne!(out.code, 0, "a missing input is not a clean run");
    assert!(
        out.stderr.contains("no-such-file.ndjson"),
        "the message names the file: {}",
        out.stderr
    );
}

/// Filters skip events with a reason ("filtered"), and the accounting holds.
#[test]
fn filtered_events_are_skipped_with_a_reason() {
    let at = |id: &str, event: &str, ts: &str| json!({"type": "track", "event": event, "userId": "u", "messageId": id, "timestamp": ts});
    let events = [
        at("in-range", "ApiCalls", "2021-04-26T14:00:00Z"),
        at("after", "Other", "2021-04-27T10:00:00Z"),
        at("before", "ApiCalls", "2021-04-25T23:59:59Z"),
        json!({"type": "page", "userId": "u", "name": "Home", "messageId": "page",
               "timestamp": "2021-04-26T15:00:00Z"}),
    ];
    let dir = workspace(SETTINGS);
    write(dir.path(), "e.ndjson", ndjson(&events));
    for (filter, sent) in [
        (
            &["--since", "2021-04-26", "--until", "2021-04-27"][..],
            &["in-range", "page"][..],
        ),
        (
            &["--events", "ApiCalls"][..],
            &["in-range", "before", "page"][..],
        ),
        (
            &["--types", "track"][..],
            &["in-range", "after", "before"][..],
        ),
    ] {
        let mut args = filter.to_vec();
        args.extend(["--summary", "s.json"]);
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            "amberflo",
            &args,
            &["e.ndjson"],
        );
        out.expect_code(0);
        assert_eq!(record_keys(&records(&out.requests())), sent, "{filter:?}");
        let s = summary(&dir.path().join("s.json"));
        assert_accounting(&s);
        let skipped = (events.len() - sent.len()) as u64;
        assert_eq!(s["skipped"], json!(skipped), "{filter:?}: {s}");
        assert_eq!(
            reason_count(&s, "skipped_by_reason", "filter"),
            skipped,
            "{filter:?}: the reason says 'filtered': {s}"
        );
    }
}

// ---------------------------------------------------------------------------
// Batching
// ---------------------------------------------------------------------------

fn batch_sizes(requests: &[Value]) -> Vec<usize> {
    requests
        .iter()
        .map(|r| match &r["body"] {
            Value::Array(items) => items.len(),
            Value::Object(map) if map.contains_key("events") => {
                map["events"].as_array().unwrap().len()
            }
            _ => 1,
        })
        .collect()
}

fn many(n: usize) -> Vec<Value> {
    (0..n).map(|i| track(&format!("e{i:05}"))).collect()
}

#[test]
fn amberflo_sends_100_records_per_ingest_and_one_customer_per_request() {
    let dir = workspace(SETTINGS);
    let mut events = many(250);
    for i in 0..3 {
        events.push(
            json!({"type": "identify", "userId": format!("c{i}"), "messageId": format!("i{i}"),
                            "timestamp": TS, "traits": {"name": format!("Customer {i}")}}),
        );
    }
    write(dir.path(), "e.ndjson", ndjson(&events));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &["--summary", "s.json"],
        &["e.ndjson"],
    );
    out.expect_code(0);
    let requests = out.requests();
    let to = |path: &str, method: &str| -> Vec<Value> {
        requests
            .iter()
            .filter(|r| r["method"] == method && r["url"].as_str().unwrap().ends_with(path))
            .cloned()
            .collect()
    };
    let ingest = to("/ingest", "POST");
    // A dry run shows each identify's lookup and creation.
    let customers = to("/customers", "POST");
    assert_eq!(batch_sizes(&ingest), [100, 100, 50]);
    assert_eq!(customers.len(), 3);
    assert_eq!(requests.len(), 3 + 3 * 2);
    for (i, c) in customers.iter().enumerate() {
        assert!(
            c["body"].is_object(),
            "one customer object per request: {c}"
        );
        assert_eq!(c["body"]["customerId"], json!(format!("c{i}")));
        assert_eq!(c["events"].as_array().unwrap().len(), 1);
        assert!(c["url"].as_str().unwrap().ends_with("/customers"));
    }
    let keys = record_keys(&records(&ingest));
    let expected: Vec<String> = (0..250).map(|i| format!("e{i:05}")).collect();
    assert_eq!(keys, expected, "records keep input order across requests");
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(counts(&s), (253, 253, 0, 0, 0, 9), "{s}");

    // --batch-size applies to ingest; customers stay one per request.
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &["--batch-size", "120"],
        &["e.ndjson"],
    );
    out.expect_code(0);
    let requests = out.requests();
    let ingest: Vec<Value> = requests
        .iter()
        .filter(|r| r["url"].as_str().unwrap().ends_with("/ingest"))
        .cloned()
        .collect();
    assert_eq!(batch_sizes(&ingest), [120, 120, 10]);
    let created =
        |r: &&Value| r["method"] == "POST" && r["url"].as_str().unwrap().ends_with("/customers");
    assert_eq!(requests.iter().filter(created).count(), 3);
}

#[test]
fn orb_and_kable_send_500_events_per_request() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "e.ndjson", ndjson(&many(1001)));
    for dest in ["orb", "kable"] {
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json"],
            &["e.ndjson"],
        );
        out.expect_code(0);
        let requests = out.requests();
        assert_eq!(batch_sizes(&requests), [500, 500, 1], "{dest}");
        for r in &requests {
            assert_eq!(
                r["events"].as_array().unwrap().len(),
                batch_sizes(std::slice::from_ref(r))[0],
                "{dest}: events lists one origin per record"
            );
        }
        let s = summary(&dir.path().join("s.json"));
        assert_eq!(counts(&s), (1001, 1001, 0, 0, 0, 3), "{dest}: {s}");
    }
}

#[test]
fn batch_size_is_honoured() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "e.ndjson", ndjson(&many(20)));
    for dest in ["amberflo", "orb", "kable"] {
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--batch-size", "7"],
            &["e.ndjson"],
        );
        out.expect_code(0);
        let requests = out.requests();
        assert_eq!(batch_sizes(&requests), [7, 7, 6], "{dest}");
        let expected: Vec<String> = (0..20).map(|i| format!("e{i:05}")).collect();
        assert_eq!(record_keys(&records(&requests)), expected, "{dest}");
    }
}

#[test]
fn batch_size_above_the_maximum_is_refused() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "e.ndjson", ndjson(&many(3)));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--batch-size", "501"],
        &["e.ndjson"],
    );
    out.expect_code(2);
    assert!(out.stdout.is_empty(), "nothing written: {}", out.stdout);
    assert!(
        out.stderr.contains("501") && out.stderr.contains("500"),
        "the message says what the limit is: {}",
        out.stderr
    );
    // The maximum itself is fine.
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--batch-size", "500"],
        &["e.ndjson"],
    );
    out.expect_code(0);
    // Zero is not a batch size.
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "kable",
        &["--batch-size", "0"],
        &["e.ndjson"],
    );
    out.expect_code(2);
    assert!(out.stdout.is_empty());
}

/// Lines prepared on several threads come back in input order: the requests,
/// the rejects file and the summary are those of one thread, for every destination.
#[test]
fn threads_change_nothing_but_the_speed() {
    let dir = workspace(SETTINGS);
    let mut lines = Vec::new();
    for i in 0..1500 {
        let line = match i % 10 {
            0 => mixed_file(),
            1 => json!({"batch": [track(&format!("b{i}")), {"type": "identify", "userId": format!("u{i}"),
                        "traits": {"name": "N"}, "messageId": format!("i{i}"), "timestamp": TS}]})
            .to_string(),
            2 => json!({"type": "screen", "userId": "u", "name": "S", "messageId": format!("s{i}"),
                        "timestamp": TS, "properties": {"usage": {"tokens": i}}})
            .to_string(),
            _ => track(&format!("m{i}")).to_string(),
        };
        lines.push(line.trim_end().to_owned());
    }
    write(dir.path(), "a.ndjson", lines[..700].join("\n") + "\n");
    write(dir.path(), "b.ndjson", lines[700..].join("\n") + "\n");
    for dest in ["amberflo", "orb", "kable"] {
        let outputs: Vec<(String, String, Value)> = ["1", "3"]
            .iter()
            .map(|threads| {
                let rejects = format!("rejects-{dest}-{threads}.ndjson");
                let summary = format!("summary-{dest}-{threads}.json");
                let extra = ["-j", threads, "--rejects", &rejects, "--summary", &summary];
                let run = dry_run(
                    dir.path(),
                    "segrelay.toml",
                    dest,
                    &extra,
                    &["a.ndjson", "b.ndjson"],
                );
                run.expect_code(1);
                let mut summary = read_json(&dir.path().join(&summary));
                summary
                    .as_object_mut()
                    .unwrap()
                    .retain(|key, _| !key.contains("seconds"));
                let rejects = std::fs::read_to_string(dir.path().join(&rejects)).unwrap();
                (run.stdout, rejects, summary)
            })
            .collect();
        assert!(
            outputs[0].0.lines().count() >= 2,
            "{dest}: requests written"
        );
        assert!(
            outputs[0].1.lines().count() > 100,
            "{dest}: events rejected"
        );
        assert_eq!(outputs[0].0, outputs[1].0, "{dest}: requests");
        assert_eq!(outputs[0].1, outputs[1].1, "{dest}: rejects file");
        assert_eq!(outputs[0].2, outputs[1].2, "{dest}: summary");
    }
}
