//! Segment data as Segment's libraries and servers write it: batch envelopes
//! merged into their items, times from a device's clock, call types in any
//! case, and times without an offset.

use serde_json::{Value, json};

use crate::support::*;

/// Every destination, its settings reading the customer from the envelope's
/// `context.groupId` where the destination has such a setting.
const GROUP_SETTINGS: &str = r#"
[destinations.amberflo]
api_key = "${AMBERFLO_API_KEY}"

[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "context.groupId"

[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci_x"
environment = "live"
client_id_field = "context.groupId"
"#;

const DESTINATIONS: [(&str, &str); 3] =
    [("amberflo", "Amberflo"), ("orb", "Orb"), ("kable", "Kable")];

/// An item as analytics-python writes it: its own `context` (the library) and
/// an empty `integrations`, so that filling only what is absent never applies
/// the envelope's.
fn item(id: &str) -> Value {
    json!({
        "type": "track",
        "event": "ApiCalls",
        "userId": "user-1",
        "messageId": id,
        "timestamp": "2026-01-05T10:00:00.000Z",
        "receivedAt": "2026-01-05T10:00:01.000Z",
        "properties": {"value": 1},
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
        "integrations": {},
    })
}

fn warnings(summary: &Value) -> Vec<String> {
    summary["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("warnings is a list: {summary}"))
        .iter()
        .map(|w| w.as_str().expect("a warning is text").to_owned())
        .collect()
}

/// The one warning that contains `needle`.
fn warning(summary: &Value, needle: &str) -> String {
    let found: Vec<String> = warnings(summary)
        .into_iter()
        .filter(|w| w.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "one warning with {needle:?}: {summary}");
    found[0].clone()
}

#[test]
fn an_envelopes_context_is_merged_into_items_that_have_their_own() {
    let mut own = item("b2");
    own["context"]["groupId"] = json!("grp-own");
    let envelope = json!({
        "batch": [item("b1"), own],
        "context": {"groupId": "grp-env", "library": {"name": "envelope"}},
        "sentAt": "2026-01-05T10:00:00.500Z",
    });
    for (dest, field) in [("orb", "external_customer_id"), ("kable", "clientId")] {
        let dir = workspace(GROUP_SETTINGS);
        write(dir.path(), "batch.ndjson", format!("{envelope}\n"));
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json"],
            &["batch.ndjson"],
        );
        out.expect_code(0);
        let s = summary(&dir.path().join("s.json"));
        assert_accounting(&s);
        let recs = records(&out.requests());
        assert_eq!(record_keys(&recs), ["b1", "b2"], "{dest}");
        assert_eq!(
            recs[0][field],
            json!("grp-env"),
            "{dest}: the envelope's groupId"
        );
        assert_eq!(
            recs[1][field],
            json!("grp-own"),
            "{dest}: the item's own wins"
        );
    }
}

#[test]
fn an_envelopes_integrations_turn_off_items_with_integrations_of_their_own() {
    for (dest, name) in DESTINATIONS {
        let mut segment_only = item("segment-only");
        segment_only["integrations"] = json!({"Segment": true});
        let mut named = item("named");
        named["integrations"] = json!({ (name): true });
        let mut all_again = item("all-again");
        all_again["integrations"] = json!({"All": true});
        let envelope = json!({
            "batch": [item("empty"), segment_only, named, all_again],
            "context": {"groupId": "g"},
            "integrations": {"All": false},
        });
        let dir = workspace(GROUP_SETTINGS);
        write(dir.path(), "batch.ndjson", format!("{envelope}\n"));
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json"],
            &["batch.ndjson"],
        );
        out.expect_code(0);
        let s = summary(&dir.path().join("s.json"));
        assert_accounting(&s);
        assert_eq!(
            record_keys(&records(&out.requests())),
            ["named", "all-again"],
            "{dest}: All false from the envelope, the item's own keys winning"
        );
        assert_eq!(
            reason_count(&s, "skipped_by_reason", "disabled by integrations"),
            2,
            "{dest}: {s}"
        );
    }
}

#[test]
fn times_from_a_devices_clock_are_counted_and_said_once() {
    // Request bodies as a library sent them: no receivedAt on any item.
    let mut raw = Vec::new();
    for id in ["r1", "r2", "r3"] {
        let mut event = item(id);
        event.as_object_mut().unwrap().remove("receivedAt");
        raw.push(event);
    }
    let envelope = json!({"batch": raw, "sentAt": "2026-01-05T10:00:00.500Z"});
    // Sent an hour after the call: without the time of receipt, Segment's
    // correction cannot be made (sentAt is the device's clock too), so the
    // time goes as the device wrote it.
    let mut lone = item("lone");
    lone.as_object_mut().unwrap().remove("receivedAt");
    lone["originalTimestamp"] = json!("2026-01-05T10:00:00.000Z");
    lone["sentAt"] = json!("2026-01-05T11:00:00.000Z");
    for (dest, _) in DESTINATIONS {
        let dir = workspace(SETTINGS);
        write(
            dir.path(),
            "events.ndjson",
            format!(
                "{}{envelope}\n{}",
                ndjson(&[item("archived")]),
                ndjson(&[lone.clone()])
            ),
        );
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json"],
            &["events.ndjson"],
        );
        out.expect_code(0);
        let s = summary(&dir.path().join("s.json"));
        assert_accounting(&s);
        let recs = records(&out.requests());
        assert_eq!(recs.len(), 5, "{dest}: all sent as they are");
        let sent_time = match dest {
            "amberflo" => recs[4]["meterTimeInMillis"].clone(),
            _ => recs[4]["timestamp"].clone(),
        };
        let expected = match dest {
            "amberflo" => json!(1_767_607_200_000u64),
            _ => json!("2026-01-05T10:00:00.000Z"),
        };
        assert_eq!(sent_time, expected, "{dest}: not corrected by sentAt");
        let said = warning(&s, "no receivedAt");
        assert!(
            said.starts_with("4 events have no receivedAt (the first at events.ndjson:2)"),
            "{dest}: {said}"
        );
        assert!(
            said.contains("timestamp = receivedAt - (sentAt - originalTimestamp)"),
            "{said}"
        );
        assert_eq!(
            out.stderr.matches("no receivedAt").count(),
            1,
            "{dest}: said once: {}",
            out.stderr
        );
    }
    // An archive's lines carry receivedAt: nothing to say.
    let dir = workspace(SETTINGS);
    write(dir.path(), "events.ndjson", ndjson(&[item("a"), item("b")]));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &["--summary", "s.json"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    let s = summary(&dir.path().join("s.json"));
    assert!(
        !warnings(&s).iter().any(|w| w.contains("receivedAt")),
        "{s}"
    );
}

#[test]
fn call_types_are_read_in_any_case() {
    let typed = |id: &str, call: &str| {
        let mut event = item(id);
        event["type"] = json!(call);
        event
    };
    let events = [
        typed("lower", "track"),
        typed("title", "Track"),
        typed("upper", "TRACK"),
        typed("alias", "Alias"),
    ];
    for (dest, _) in DESTINATIONS {
        let dir = workspace(SETTINGS);
        write(dir.path(), "events.ndjson", ndjson(&events));
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json"],
            &["events.ndjson"],
        );
        out.expect_code(0);
        let s = summary(&dir.path().join("s.json"));
        assert_accounting(&s);
        assert_eq!(
            record_keys(&records(&out.requests())),
            ["lower", "title", "upper"],
            "{dest}"
        );
        assert_eq!(
            reason_count(&s, "skipped_by_reason", "type not taken: alias"),
            1,
            "{dest}: one spelling in the reasons: {s}"
        );
        // --types, in any case, takes the same events.
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--types", "Track", "--summary", "s.json"],
            &["events.ndjson"],
        );
        out.expect_code(0);
        let s = summary(&dir.path().join("s.json"));
        assert_eq!(records(&out.requests()).len(), 3, "{dest}");
        assert_eq!(
            reason_count(&s, "skipped_by_reason", "--types"),
            1,
            "{dest}: {s}"
        );
    }
    // Amberflo reads an Identify as a customer, a Page as a page meter.
    let dir = workspace(SETTINGS);
    let mut identify = typed("who", "Identify");
    identify["traits"] = json!({"name": "Ada"});
    write(
        dir.path(),
        "events.ndjson",
        ndjson(&[identify, typed("home", "Page")]),
    );
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &[],
        &["events.ndjson"],
    );
    out.expect_code(0);
    let requests = out.requests().to_vec();
    let text = serde_json::to_string(&requests).unwrap();
    assert!(
        text.contains("/customers"),
        "the identify made a customer: {text}"
    );
    let recs = records(&requests);
    assert!(
        recs.iter().any(|r| r["meterApiName"] == json!("page")),
        "{recs:?}"
    );
}

#[test]
fn times_without_an_offset_are_read_as_utc_and_said() {
    let mut local = item("local");
    local["timestamp"] = json!("2026-01-05T22:30:00");
    let mut local_too = item("local-too");
    local_too["timestamp"] = json!("2026-01-05T22:31:00.250");
    for (dest, _) in DESTINATIONS {
        let dir = workspace(SETTINGS);
        write(
            dir.path(),
            "events.ndjson",
            ndjson(&[item("zoned"), local.clone(), local_too.clone()]),
        );
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--summary", "s.json"],
            &["events.ndjson"],
        );
        out.expect_code(0);
        let s = summary(&dir.path().join("s.json"));
        assert_eq!(records(&out.requests()).len(), 3, "{dest}");
        let said = warning(&s, "without an offset");
        assert!(
            said.starts_with(
                "2 events have a time without an offset (the first at events.ndjson:2), read as UTC"
            ),
            "{dest}: {said}"
        );
    }
    // Read as UTC: --until at that instant leaves it out.
    let dir = workspace(SETTINGS);
    write(dir.path(), "events.ndjson", ndjson(&[local.clone()]));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--until", "2026-01-05T22:30:00Z", "--summary", "s.json"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(reason_count(&s, "skipped_by_reason", "--until"), 1, "{s}");
    warning(&s, "without an offset");
}

/// Amberflo folds a customer's identifies, found by reading the input ahead of
/// the run: an `Identify` or an `IDENTIFY` is found there too, and folded in.
#[test]
fn identifies_in_any_case_are_folded_into_one_customer_write() {
    use crate::support::job::Job;
    use crate::support::server::{Api, TestServer};
    const KEY: &str = "sk_test_segment_input_08";
    let server = TestServer::start(Api::Amberflo, KEY);
    let identify = |call: &str, id: &str, traits: Value| {
        json!({"type": call, "userId": "cust_1", "messageId": id,
               "timestamp": "2026-11-23T10:00:00Z", "receivedAt": "2026-11-23T10:00:01Z",
               "traits": traits})
    };
    let events = [
        identify("Identify", "i1", json!({"name": "Ada", "plan": "basic"})),
        identify("IDENTIFY", "i2", json!({"plan": "pro"})),
    ];
    let table = format!(
        "[destinations.amberflo]\napi_endpoint = \"{}\"\n",
        server.endpoint()
    );
    let job = Job::new(&table, &server.endpoint(), &ndjson(&events));
    let output = job.send_command(KEY).arg(&job.input).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let writes: Vec<Value> = server
        .received()
        .iter()
        .filter(|r| r.path == "/customers" && (r.method == "POST" || r.method == "PUT"))
        .map(|r| r.json())
        .collect();
    assert_eq!(
        writes,
        [json!({"customerId": "cust_1", "customerName": "Ada", "traits": {"plan": "pro"}})],
        "one write holding both: {stderr}"
    );
    assert_eq!(job.summary()["sent"], 2, "{}", job.summary());
}
