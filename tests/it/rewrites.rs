//! Keys and values a destination stores otherwise than the input has them
//! (Amberflo's characters) are counted and named once at the end of the run.

use serde_json::{Value, json};

use crate::support::*;

/// A dry run of `events` to Amberflo: the summary's warnings and standard error.
fn amberflo_warnings(events: &[Value]) -> (Vec<String>, String) {
    let dir = workspace(SETTINGS);
    write(dir.path(), "events.ndjson", ndjson(events));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &["--summary", "summary.json"],
        &["events.ndjson"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary = summary(&dir.path().join("summary.json"));
    assert_accounting(&summary);
    let warnings = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    (warnings, out.stderr)
}

fn event(id: &str, call: &str, fields: Value) -> Value {
    let mut event = json!({
        "type": call,
        "userId": "user-1",
        "messageId": id,
        "timestamp": "2021-04-26T14:01:46.909Z",
    });
    if call == "track" {
        event["event"] = json!("ApiCalls");
    }
    for (k, v) in fields.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

fn rewrite_warnings(warnings: &[String]) -> Vec<&String> {
    warnings
        .iter()
        .filter(|w| w.contains("Amberflo does not take as they are"))
        .collect()
}

#[test]
fn amberflo_rewritten_keys_and_values_are_counted_with_the_first() {
    let events = [
        event("m1", "track", json!({"properties": {"ok": "fine", "n": 2}})),
        event("m2", "track", json!({"properties": {"path": "/v1/search"}})),
        event("m3", "track", json!({"properties": {"a/b": "x", "c": "é"}})),
        event(
            "m4",
            "page",
            json!({"name": "Home", "properties": {"long": "x".repeat(201)}}),
        ),
        event("m5", "identify", json!({"traits": {"plan": "pro|max"}})),
        // Blank values are dropped, not rewritten.
        event(
            "m6",
            "track",
            json!({"properties": {"blank": "  ", "ok": "fine"}}),
        ),
    ];
    let (warnings, stderr) = amberflo_warnings(&events);
    let found = rewrite_warnings(&warnings);
    assert_eq!(found.len(), 1, "{warnings:?}");
    let warning = found[0];
    assert!(
        warning.starts_with("4 events had dimension or trait keys or values"),
        "{warning}"
    );
    assert!(
        warning.ends_with(
            r#"(the first: events.ndjson:2: properties.path "/v1/search" was sent as "_v1_search")"#
        ),
        "{warning}"
    );
    assert!(stderr.contains(warning.as_str()), "{stderr}");
}

#[test]
fn amberflo_keys_traits_and_cut_values_are_named() {
    for (fields, call, example) in [
        (
            json!({"properties": {"a/b": "x"}}),
            "track",
            r#"key properties["a/b"] was sent as "a_b""#,
        ),
        (
            json!({"traits": {"plan": "pro|max"}}),
            "identify",
            r#"traits.plan "pro|max" was sent as "pro_max""#,
        ),
        (
            json!({"name": "Home/Start", "properties": {}}),
            "page",
            r#"name "Home/Start" was sent as "Home_Start""#,
        ),
    ] {
        let (warnings, _) = amberflo_warnings(&[event("m1", call, fields)]);
        let found = rewrite_warnings(&warnings);
        assert_eq!(found.len(), 1, "{warnings:?}");
        assert!(found[0].starts_with("1 event had "), "{}", found[0]);
        assert!(
            found[0].ends_with(&format!("events.ndjson:1: {example})")),
            "{}",
            found[0]
        );
    }
}

#[test]
fn amberflo_values_it_takes_as_they_are_give_no_warning() {
    let events = [
        event(
            "m1",
            "track",
            json!({"properties": {"ok": "Fine, (really) & truly?", "n": 2.5, "m": {"k": "v"}}}),
        ),
        event(
            "m2",
            "page",
            json!({"name": "Home", "properties": {"blank": " ", "x": "x".repeat(200)}}),
        ),
        event(
            "m3",
            "identify",
            json!({"traits": {"name": "Ann/B", "email": "a@b.c", "plan": "pro"}}),
        ),
    ];
    let (warnings, stderr) = amberflo_warnings(&events);
    assert!(rewrite_warnings(&warnings).is_empty(), "{warnings:?}");
    assert!(!stderr.contains("does not take as they are"), "{stderr}");
}
