//! Translation: golden requests for the seed examples, and the translation
//! rules in GUIDE.md across the three destinations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

// ---------------------------------------------------------------------------
// Golden tests of the seed examples (corrected where the pages are known to be wrong)
// ---------------------------------------------------------------------------

/// Runs one seed fixture and compares every request with the golden file.
fn check_golden(fixture: &str, destination: &str, golden: &str, options: Compare) {
    let dir = fixtures();
    let summary_dir = tempfile::tempdir().unwrap();
    let summary_path = summary_dir.path().join("summary.json");
    let out = dry_run(
        &dir,
        "seeds.toml",
        destination,
        &["--summary", summary_path.to_str().unwrap()],
        &[fixture],
    );
    out.expect_code(0);
    let actual: Vec<Value> = out.requests().iter().map(normalise_headers).collect();
    let expected = read_json(&golden_dir().join(golden));
    assert_json_eq(
        &Value::Array(actual),
        &expected,
        options,
        &format!("the dry run of {fixture} for {destination} (golden {golden})"),
    );
    let s = summary(&summary_path);
    assert_accounting(&s);
    // One event, sent in one request (identify: its lookup and its creation).
    let requests = expected.as_array().unwrap().len() as u64;
    assert_eq!(counts(&s), (1, 1, 0, 0, 0, requests), "summary: {s}");
}

#[test]
fn golden_amberflo_track_seed() {
    check_golden(
        "seed-amberflo-track.ndjson",
        "amberflo",
        "amberflo-track.json",
        Compare::default(),
    );
}

#[test]
fn golden_amberflo_page_seed() {
    check_golden(
        "seed-amberflo-page.ndjson",
        "amberflo",
        "amberflo-page.json",
        Compare::default(),
    );
}

#[test]
fn golden_amberflo_screen_seed() {
    check_golden(
        "seed-amberflo-screen.ndjson",
        "amberflo",
        "amberflo-screen.json",
        Compare::default(),
    );
}

#[test]
fn golden_amberflo_identify_seed() {
    check_golden(
        "seed-amberflo-identify.ndjson",
        "amberflo",
        "amberflo-identify.json",
        Compare::default(),
    );
}

#[test]
fn golden_orb_track_seed() {
    check_golden(
        "seed-orb-track.ndjson",
        "orb",
        "orb-track.json",
        Compare::default(),
    );
}

#[test]
fn golden_kable_track_seed() {
    check_golden(
        "seed-kable-track.ndjson",
        "kable",
        "kable-track.json",
        Compare { instants: true },
    );
}

#[test]
fn golden_kable_timestamp_is_utc_with_z() {
    let out = dry_run(
        &fixtures(),
        "seeds.toml",
        "kable",
        &[],
        &["seed-kable-track.ndjson"],
    );
    out.expect_code(0);
    let ts = records(&out.requests())[0]["timestamp"]
        .as_str()
        .expect("timestamp is a string")
        .to_owned();
    assert!(
        ts.starts_with("2022-01-09T09:32:01") && ts.ends_with('Z'),
        "Kable timestamp must be UTC with Z: {ts}"
    );
}

/// The four Amberflo seeds in one run: the customer's lookup and creation, and
/// one ingest request holding the three meter records in input order.
#[test]
fn golden_amberflo_all_seeds_in_one_run() {
    let files = [
        "seed-amberflo-track.ndjson",
        "seed-amberflo-page.ndjson",
        "seed-amberflo-screen.ndjson",
        "seed-amberflo-identify.ndjson",
    ];
    let out = dry_run(&fixtures(), "seeds.toml", "amberflo", &[], &files);
    out.expect_code(0);
    let requests: Vec<Value> = out.requests().iter().map(normalise_headers).collect();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let is_ingest = |r: &&Value| r["url"].as_str().unwrap().ends_with("/ingest");
    let ingest: Vec<&Value> = requests.iter().filter(is_ingest).collect();
    let customers: Vec<Value> = requests.iter().filter(|r| !is_ingest(r)).cloned().collect();
    assert_eq!((ingest.len(), customers.len()), (1, 2), "{requests:?}");

    let golden = |name: &str| read_json(&golden_dir().join(name))[0].clone();
    let mut expected_ingest = golden("amberflo-track.json");
    let mut body = Vec::new();
    let mut events = Vec::new();
    for name in [
        "amberflo-track.json",
        "amberflo-page.json",
        "amberflo-screen.json",
    ] {
        let g = golden(name);
        body.extend(g["body"].as_array().unwrap().clone());
        events.extend(g["events"].as_array().unwrap().clone());
    }
    expected_ingest["body"] = Value::Array(body);
    expected_ingest["events"] = Value::Array(events);
    assert_json_eq(
        ingest[0],
        &expected_ingest,
        Compare::default(),
        "the ingest request",
    );
    assert_json_eq(
        &Value::Array(customers),
        &read_json(&golden_dir().join("amberflo-identify.json")),
        Compare::default(),
        "the customer requests",
    );
}

// ---------------------------------------------------------------------------
// Translation rules
// ---------------------------------------------------------------------------

struct Outcome {
    run: Run,
    requests: Vec<Value>,
    records: Vec<Value>,
    summary: Value,
    rejects: Vec<Value>,
}

/// Writes the settings and the events, runs a dry run with --summary and
/// --rejects, and checks the accounting identity.
fn translate(settings: &str, destination: &str, events: &[Value]) -> Outcome {
    let dir = workspace(settings);
    write(dir.path(), "events.ndjson", ndjson(events));
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        destination,
        &["--summary", "summary.json", "--rejects", "rejects.ndjson"],
        &["events.ndjson"],
    );
    assert!(
        out.code == 0 || out.code == 1,
        "unexpected exit code {}: {}",
        out.code,
        out.stderr
    );
    let summary = summary(&dir.path().join("summary.json"));
    assert_accounting(&summary);
    let rejects = std::fs::read_to_string(dir.path().join("rejects.ndjson"))
        .map(|t| parse_ndjson(&t))
        .unwrap_or_default();
    let requests = out.requests();
    let records = records(&requests);
    Outcome {
        run: out,
        requests,
        records,
        summary,
        rejects,
    }
}

/// Records by their idempotency key.
fn by_key(records: &[Value]) -> BTreeMap<String, Value> {
    record_keys(records)
        .into_iter()
        .zip(records.iter().cloned())
        .collect()
}

fn track(id: &str, extra: Value) -> Value {
    let mut event = json!({
        "type": "track",
        "event": "ApiCalls",
        "userId": "user-1",
        "messageId": id,
        "timestamp": "2021-04-26T14:01:46.909Z",
    });
    for (k, v) in extra.as_object().unwrap() {
        event[k] = v.clone();
    }
    event
}

const DESTINATIONS: [(&str, &str); 3] =
    [("amberflo", "Amberflo"), ("orb", "Orb"), ("kable", "Kable")];

#[test]
fn integrations_object_selects_destinations() {
    for (dest, display) in DESTINATIONS {
        let other = if display == "Orb" { "Kable" } else { "Orb" };
        let lower = display.to_lowercase();
        let cases = [
            ("i01-none", None, true),
            ("i02-empty", Some(json!({})), true),
            ("i03-all-false", Some(json!({"All": false})), false),
            (
                "i04-all-false-own-true",
                Some(json!({"All": false, display: true})),
                true,
            ),
            (
                "i05-all-false-own-object",
                Some(json!({"All": false, display: {"someOption": "x"}})),
                true,
            ),
            ("i06-own-false", Some(json!({display: false})), false),
            (
                "i07-all-true-own-false",
                Some(json!({"All": true, display: false})),
                false,
            ),
            ("i08-own-null", Some(json!({display: null})), false),
            (
                "i09-all-false-own-null",
                Some(json!({"All": false, display: null})),
                false,
            ),
            ("i10-lowercase-key-false", Some(json!({lower: false})), true),
            (
                "i11-all-false-other-true",
                Some(json!({"All": false, other: true})),
                false,
            ),
            ("i12-other-false", Some(json!({other: false})), true),
            ("i13-all-true", Some(json!({"All": true})), true),
        ];
        let events: Vec<Value> = cases
            .iter()
            .map(|(id, integrations, _)| match integrations {
                Some(i) => track(id, json!({"integrations": i})),
                None => track(id, json!({})),
            })
            .collect();
        let o = translate(SETTINGS, dest, &events);
        o.run.expect_code(0);
        let sent: BTreeSet<String> = record_keys(&o.records).into_iter().collect();
        let expected: BTreeSet<String> = cases
            .iter()
            .filter(|(_, _, on)| *on)
            .map(|(id, _, _)| id.to_string())
            .collect();
        assert_eq!(sent, expected, "{dest}: events sent");
        let off = cases.iter().filter(|c| !c.2).count() as u64;
        assert_eq!(o.summary["skipped"], json!(off), "{dest}: {}", o.summary);
        assert_eq!(
            reason_count(&o.summary, "skipped_by_reason", "integrations"),
            off,
            "{dest}: skipped_by_reason should say 'disabled by integrations': {}",
            o.summary
        );
    }
}

/// (messageId, time fields, Orb timestamp, Amberflo milliseconds)
fn time_cases() -> Vec<(&'static str, Value, &'static str, i64)> {
    vec![
        (
            "t01-timestamp-wins",
            json!({"timestamp": "2021-04-26T14:01:46.909Z", "originalTimestamp": "2020-01-01T00:00:00Z", "receivedAt": "2019-01-01T00:00:00Z"}),
            "2021-04-26T14:01:46.909Z",
            1_619_445_706_909,
        ),
        (
            "t02-original-timestamp",
            json!({"originalTimestamp": "2021-04-26T14:01:47Z", "receivedAt": "2021-04-26T15:00:00Z"}),
            "2021-04-26T14:01:47.000Z",
            1_619_445_707_000,
        ),
        (
            "t03-received-at",
            json!({"receivedAt": "2021-04-26T14:01:48.5Z"}),
            "2021-04-26T14:01:48.500Z",
            1_619_445_708_500,
        ),
        (
            "t04-ten-fraction-digits",
            json!({"timestamp": "2022-05-11T21:33:13.1652304793Z"}),
            "2022-05-11T21:33:13.165Z",
            1_652_304_793_165,
        ),
        (
            "t05-offset-colon",
            json!({"timestamp": "2021-04-26T16:01:46.909+02:00"}),
            "2021-04-26T14:01:46.909Z",
            1_619_445_706_909,
        ),
        (
            "t06-offset-no-colon",
            json!({"timestamp": "2021-04-26T07:01:46.909-0700"}),
            "2021-04-26T14:01:46.909Z",
            1_619_445_706_909,
        ),
        (
            "t07-epoch-seconds",
            json!({"timestamp": 1_619_445_706}),
            "2021-04-26T14:01:46.000Z",
            1_619_445_706_000,
        ),
        (
            "t08-epoch-millis",
            json!({"timestamp": 1_619_445_706_909u64}),
            "2021-04-26T14:01:46.909Z",
            1_619_445_706_909,
        ),
        (
            "t09-unpadded-date",
            json!({"timestamp": "2015-2-02T00:30:12.984Z"}),
            "2015-02-02T00:30:12.984Z",
            1_422_837_012_984,
        ),
        (
            "t10-no-fraction",
            json!({"timestamp": "2021-04-26T14:01:46Z"}),
            "2021-04-26T14:01:46.000Z",
            1_619_445_706_000,
        ),
        (
            "t11-seconds-just-below-limit",
            json!({"timestamp": 31_557_599_999u64}),
            "2970-01-07T23:59:59.000Z",
            31_557_599_999_000,
        ),
        (
            "t12-millis-at-limit",
            json!({"timestamp": 31_557_600_000u64}),
            "1971-01-01T06:00:00.000Z",
            31_557_600_000,
        ),
        (
            "t13-one-fraction-digit",
            json!({"timestamp": "2021-04-26T14:01:46.9Z"}),
            "2021-04-26T14:01:46.900Z",
            1_619_445_706_900,
        ),
        (
            "t15-offset-hours-only",
            json!({"timestamp": "2021-04-26T16:01:46.909+02"}),
            "2021-04-26T14:01:46.909Z",
            1_619_445_706_909,
        ),
        (
            "t16-offset-quarter-hours",
            json!({"timestamp": "2021-04-26T08:16:46.909-05:45"}),
            "2021-04-26T14:01:46.909Z",
            1_619_445_706_909,
        ),
        (
            "t17-twelve-fraction-digits",
            json!({"timestamp": "2021-04-26T14:01:46.123456789012Z"}),
            "2021-04-26T14:01:46.123Z",
            1_619_445_706_123,
        ),
        (
            "t18-epoch-seconds-with-fraction",
            json!({"timestamp": 1_619_445_706.5}),
            "2021-04-26T14:01:46.500Z",
            1_619_445_706_500,
        ),
        (
            "t14-fallback-with-offset",
            json!({"originalTimestamp": "2021-04-26T16:01:47+02:00"}),
            "2021-04-26T14:01:47.000Z",
            1_619_445_707_000,
        ),
    ]
}

fn timed_events() -> Vec<Value> {
    time_cases()
        .into_iter()
        .map(|(id, times, _, _)| {
            let mut e =
                json!({"type": "track", "event": "ApiCalls", "userId": "u", "messageId": id});
            for (k, v) in times.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        })
        .collect()
}

#[test]
fn orb_times_fall_back_and_are_normalised_to_utc_millis() {
    let o = translate(SETTINGS, "orb", &timed_events());
    o.run.expect_code(0);
    let got = by_key(&o.records);
    for (id, fields, expected, _) in time_cases() {
        let record = got.get(id).unwrap_or_else(|| panic!("{id} not sent"));
        assert_eq!(
            record["timestamp"],
            json!(expected),
            "{id}: Orb timestamp for {fields}"
        );
    }
}

#[test]
fn amberflo_times_fall_back_and_become_epoch_millis() {
    let o = translate(SETTINGS, "amberflo", &timed_events());
    // A time in the year 2970 is more than 5 minutes ahead: Amberflo's SDK refuses it.
    o.run.expect_code(1);
    assert_eq!(
        o.summary["rejected_by_reason"],
        json!({"time in the future": 1})
    );
    let got = by_key(&o.records);
    for (id, fields, _, millis) in time_cases() {
        if id == "t11-seconds-just-below-limit" {
            assert!(!got.contains_key(id), "{id} sent");
            continue;
        }
        let record = got.get(id).unwrap_or_else(|| panic!("{id} not sent"));
        assert_eq!(
            record["meterTimeInMillis"].as_i64(),
            Some(millis),
            "{id}: meterTimeInMillis for {fields} (an integer)"
        );
    }
}

#[test]
fn kable_times_fall_back_and_are_utc() {
    let o = translate(SETTINGS, "kable", &timed_events());
    o.run.expect_code(0);
    let got = by_key(&o.records);
    for (id, fields, expected, _) in time_cases() {
        let record = got.get(id).unwrap_or_else(|| panic!("{id} not sent"));
        assert_json_eq(
            &record["timestamp"],
            &json!(expected),
            Compare { instants: true },
            &format!("{id}: Kable timestamp for {fields}"),
        );
    }
}

#[test]
fn events_without_a_usable_time_are_rejected_not_sent_at_now() {
    for (dest, _) in DESTINATIONS {
        let events = [
            json!({"type": "track", "event": "ApiCalls", "userId": "u", "messageId": "no-time"}),
            json!({"type": "track", "event": "ApiCalls", "userId": "u", "messageId": "bad-time", "timestamp": "not a time"}),
            track("good", json!({})),
        ];
        let o = translate(SETTINGS, dest, &events);
        o.run.expect_code(1);
        assert_eq!(record_keys(&o.records), ["good"], "{dest}");
        assert_eq!(o.summary["rejected"], json!(2), "{dest}: {}", o.summary);
        assert_eq!(
            reason_count(&o.summary, "rejected_by_reason", "time"),
            2,
            "{dest}: the reason should mention the time: {}",
            o.summary
        );
        let rejected: BTreeSet<&str> = o
            .rejects
            .iter()
            .map(|r| r["messageId"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(rejected, BTreeSet::from(["no-time", "bad-time"]), "{dest}");
    }
}

#[test]
fn numeric_ids_become_decimal_text() {
    let events = [json!({
        "type": "track", "event": "ApiCalls", "userId": 12345, "messageId": 987_654,
        "timestamp": "2021-04-26T14:01:46.909Z",
    })];
    let o = translate(SETTINGS, "amberflo", &events);
    o.run.expect_code(0);
    assert_eq!(o.records[0]["customerId"], json!("12345"));
    assert_eq!(o.records[0]["uniqueId"], json!("987654"));

    let o = translate(SETTINGS, "orb", &events);
    o.run.expect_code(0);
    assert_eq!(o.records[0]["external_customer_id"], json!("12345"));
    assert_eq!(o.records[0]["idempotency_key"], json!("987654"));

    let o = translate(SETTINGS, "kable", &events);
    o.run.expect_code(0);
    assert_eq!(o.records[0]["clientId"], json!("12345"));
    assert_eq!(o.records[0]["transactionId"], json!("987654"));

    // A numeric identify userId is also text.
    let identify = [
        json!({"type": "identify", "userId": 42, "messageId": "m", "timestamp": "2021-04-26T14:01:46.909Z"}),
    ];
    let o = translate(SETTINGS, "amberflo", &identify);
    o.run.expect_code(0);
    assert_eq!(o.records[0]["customerId"], json!("42"));
}

/// The shared settings with every destination's customer-id field naming
/// `anonymousId` after `userId`.
fn with_anonymous_fallback(settings: &str) -> String {
    let list = r#"["userId", "anonymousId"]"#;
    settings
        .replacen(
            "[destinations.amberflo]\n",
            &format!("[destinations.amberflo]\ncustomer_id_field = {list}\n"),
            1,
        )
        .replacen(
            "external_customer_id_field = \"userId\"",
            &format!("external_customer_id_field = {list}"),
            1,
        )
        .replacen(
            "[destinations.kable]\n",
            &format!("[destinations.kable]\nclient_id_field = {list}\n"),
            1,
        )
}

/// An event without a `userId` is skipped ("no customer id"), never billed to
/// its `anonymousId`, unless the settings name that field after it.
#[test]
fn amberflo_customer_id_falls_back_to_anonymous_id_only_when_the_settings_name_it() {
    let events = [
        track("empty-user", json!({"userId": "", "anonymousId": "anon-1"})),
        track("no-user", json!({"userId": null, "anonymousId": "anon-2"})),
        {
            let mut e = track("absent-user", json!({"anonymousId": 777}));
            e.as_object_mut().unwrap().remove("userId");
            e
        },
        track("both", json!({"userId": "user-9", "anonymousId": "anon-9"})),
    ];
    let o = translate(SETTINGS, "amberflo", &events);
    o.run.expect_code(0);
    assert_eq!(record_keys(&o.records), ["both"]);
    assert_eq!(
        o.summary["skipped_by_reason"]["no customer id"],
        json!(3),
        "{}",
        o.summary
    );
    let o = translate(&with_anonymous_fallback(SETTINGS), "amberflo", &events);
    o.run.expect_code(0);
    let got = by_key(&o.records);
    assert_eq!(got["empty-user"]["customerId"], json!("anon-1"));
    assert_eq!(got["no-user"]["customerId"], json!("anon-2"));
    assert_eq!(got["absent-user"]["customerId"], json!("777"));
    assert_eq!(got["both"]["customerId"], json!("user-9"));
}

#[test]
fn empty_user_id_counts_as_absent_for_orb_and_kable() {
    for dest in ["orb", "kable"] {
        let events = [
            track("empty-user", json!({"userId": "", "anonymousId": "anon-1"})),
            track("good", json!({})),
        ];
        let o = translate(SETTINGS, dest, &events);
        o.run.expect_code(0);
        assert_eq!(record_keys(&o.records), ["good"], "{dest}");
        assert_eq!(o.summary["rejected"], json!(0), "{dest}: {}", o.summary);
        assert_eq!(
            o.summary["skipped_by_reason"]["no customer id"],
            json!(1),
            "{dest}: {}",
            o.summary
        );
        assert!(o.rejects.is_empty(), "{dest}");
        // Named after userId, anonymousId is the id.
        let o = translate(&with_anonymous_fallback(SETTINGS), dest, &events);
        o.run.expect_code(0);
        let customers: Vec<&Value> = o
            .records
            .iter()
            .map(|r| {
                &r[if dest == "orb" {
                    "external_customer_id"
                } else {
                    "clientId"
                }]
            })
            .collect();
        assert_eq!(customers, [&json!("anon-1"), &json!("user-1")], "{dest}");
    }
}

#[test]
fn missing_message_ids_get_stable_content_derived_fallbacks() {
    let mut a = track("x", json!({"properties": {"value": 1}}));
    a.as_object_mut().unwrap().remove("messageId");
    let mut b = track("x", json!({"properties": {"value": 2}}));
    b.as_object_mut().unwrap().remove("messageId");
    let mut c = track("x", json!({"userId": "user-2", "properties": {"value": 1}}));
    c.as_object_mut().unwrap().remove("messageId");
    let empty = track("", json!({"properties": {"value": 3}}));
    let with_id = track("given-id", json!({}));

    for (dest, _) in DESTINATIONS {
        let dir = workspace(SETTINGS);
        write(
            dir.path(),
            "one.ndjson",
            ndjson(&[
                a.clone(),
                b.clone(),
                c.clone(),
                empty.clone(),
                with_id.clone(),
            ]),
        );
        // The same events in another file, in another order and on other lines.
        write(
            dir.path(),
            "two.ndjson",
            format!(
                "\n{}",
                ndjson(&[with_id.clone(), c.clone(), b.clone(), a.clone()])
            ),
        );
        let keys = |file: &str| {
            let out = dry_run(dir.path(), "segrelay.toml", dest, &[], &[file]);
            out.expect_code(0);
            record_keys(&records(&out.requests()))
        };
        let first = keys("one.ndjson");
        let second = keys("one.ndjson");
        assert_eq!(
            first, second,
            "{dest}: fallback ids must be stable across runs"
        );
        assert_eq!(first.len(), 5, "{dest}");
        for key in &first {
            assert!(!key.trim().is_empty(), "{dest}: empty key in {first:?}");
        }
        assert_eq!(first[4], "given-id", "{dest}");
        let distinct: BTreeSet<&String> = first.iter().collect();
        assert_eq!(
            distinct.len(),
            5,
            "{dest}: different events need different fallback ids: {first:?}"
        );
        let other = keys("two.ndjson");
        assert_eq!(
            other,
            [
                "given-id".to_owned(),
                first[2].clone(),
                first[1].clone(),
                first[0].clone()
            ],
            "{dest}: a fallback id depends on the event's content only, not on its file or line"
        );
    }
}

#[test]
fn amberflo_dimensions_are_strings_sanitised_and_flattened() {
    let long = "x".repeat(250);
    let event = track(
        "dims",
        json!({"properties": {
            "value": 3,
            "url": "https://example.com/a|b",
            "allowed": "Az09 -_!.*'()&$@=;:+,?",
            "others": "a\\b#c%d<e>f\"g",
            "accent": "café",
            "int": 7,
            "float": 2.5,
            "yes": true,
            "no": false,
            "model": {"name": "gpt-4o", "size": {"gb": 3}},
            "tags": ["a", "b", 3, true],
            "none": null,
            "empty": "",
            "emptyList": [],
            "emptyObject": {},
            "long": long,
        }}),
    );
    let o = translate(SETTINGS, "amberflo", &[event]);
    o.run.expect_code(0);
    let record = &o.records[0];
    assert_eq!(record["meterValue"].as_f64(), Some(3.0));
    let expected = json!({
        "url": "https:__example.com_a_b",
        "allowed": "Az09 -_!.*'()&$@=;:+,?",
        "others": "a_b_c_d_e_f_g",
        "accent": "caf_",
        "int": "7",
        "float": "2.5",
        "yes": "true",
        "no": "false",
        "model.name": "gpt-4o",
        "model.size.gb": "3",
        "tags": "a,b,3,true",
        "long": "x".repeat(200),
    });
    assert_json_eq(
        &record["dimensions"],
        &expected,
        Compare::default(),
        "Amberflo dimensions",
    );
}

#[test]
fn amberflo_identify_traits_follow_the_dimension_rules() {
    let event = json!({
        "type": "identify", "userId": "u-1", "messageId": "id-1",
        "timestamp": "2021-04-26T14:01:46.909Z",
        "traits": {
            "email": "a@b.co",
            "company": {"name": "Initech", "size": 50},
            "roles": ["admin", "billing"],
            "active": true,
            "nothing": null,
            "blank": "",
            "site": "https://initech.com/x"
        }
    });
    let o = translate(SETTINGS, "amberflo", &[event]);
    o.run.expect_code(0);
    let methods: Vec<&Value> = o.requests.iter().map(|r| &r["method"]).collect();
    assert_eq!(
        methods,
        ["GET", "POST"],
        "the dry run shows a lookup and a creation"
    );
    let expected = json!({
        "customerId": "u-1",
        "customerName": "u-1",
        "customerEmail": "a@b.co",
        "traits": {
            "company.name": "Initech",
            "company.size": "50",
            "roles": "admin,billing",
            "active": "true",
            "site": "https:__initech.com_x"
        }
    });
    assert_json_eq(
        &o.requests[1]["body"],
        &expected,
        Compare::default(),
        "customer without traits.name (customerName = the customer id)",
    );
}

#[test]
fn amberflo_identify_needs_a_customer_id() {
    let events = [
        json!({"type": "identify", "anonymousId": "anon", "messageId": "m1", "timestamp": "2021-04-26T14:01:46.909Z", "traits": {"name": "X"}}),
        json!({"type": "identify", "userId": "", "anonymousId": "anon", "messageId": "m2", "timestamp": "2021-04-26T14:01:46.909Z"}),
    ];
    let o = translate(SETTINGS, "amberflo", &events);
    o.run.expect_code(0);
    assert!(o.requests.is_empty(), "{:?}", o.requests);
    assert_eq!(o.summary["skipped"], json!(2), "{}", o.summary);
    assert_eq!(
        o.summary["skipped_by_reason"]["no customer id"],
        json!(2),
        "{}",
        o.summary
    );
    // Named in the settings, anonymousId is the customer an identify writes.
    let o = translate(&with_anonymous_fallback(SETTINGS), "amberflo", &events);
    o.run.expect_code(0);
    assert_eq!(o.summary["sent"], json!(2), "{}", o.summary);
    assert!(o.records.iter().all(|r| r["customerId"] == json!("anon")));
}

/// Checks that each event of `rejected` (messageId, what the detail must hold)
/// is rejected with `kind`, in the summary, the rejects file and on stderr.
fn assert_rejected(o: &Outcome, kind: &str, rejected: &[(&str, &str)]) {
    assert_eq!(
        o.summary["rejected_by_reason"][kind].as_u64(),
        Some(rejected.len() as u64),
        "{}",
        o.summary
    );
    for (id, detail) in rejected {
        let reject = o
            .rejects
            .iter()
            .find(|r| r["messageId"] == json!(id))
            .unwrap_or_else(|| panic!("{id} is not in the rejects file: {:?}", o.rejects));
        assert_eq!(reject["_segrelay"]["reason"], json!(kind), "{id}: {reject}");
        let note = reject["_segrelay"]["detail"].as_str().unwrap_or_default();
        assert!(
            note.contains(detail),
            "{id}: the detail must hold {detail}: {note}"
        );
        let line = reject["_segrelay"]["line"].as_u64().unwrap();
        let message = o
            .run
            .stderr
            .lines()
            .find(|l| l.contains(&format!("events.ndjson:{line}:")))
            .unwrap_or_else(|| panic!("no message for line {line}: {}", o.run.stderr));
        assert!(
            message.contains(detail),
            "{id}: stderr must hold {detail}: {message}"
        );
    }
}

#[test]
fn amberflo_meter_value_rules() {
    let events = [
        track("number", json!({"properties": {"value": 2}})),
        track("fraction", json!({"properties": {"value": 0.5}})),
        track("numeric-text", json!({"properties": {"value": "2"}})),
        track("negative-text", json!({"properties": {"value": "-3.5"}})),
        track("exponent-text", json!({"properties": {"value": "2e3"}})),
        track("null", json!({"properties": {"value": null, "k": "v"}})),
        track("absent", json!({"properties": {"k": "v"}})),
        track("no-properties", json!({})),
        track("comma", json!({"properties": {"value": "1,250"}})),
        track("text", json!({"properties": {"value": "abc", "k": "v"}})),
        track("empty", json!({"properties": {"value": ""}})),
        track("spaces", json!({"properties": {"value": " 3 "}})),
        track("boolean", json!({"properties": {"value": true}})),
        track("object", json!({"properties": {"value": {}}})),
        track("array", json!({"properties": {"value": []}})),
        track("nan", json!({"properties": {"value": "NaN"}})),
        track("infinite", json!({"properties": {"value": "1e400"}})),
    ];
    let o = translate(SETTINGS, "amberflo", &events);
    o.run.expect_code(1);
    let got = by_key(&o.records);
    for (id, value) in [
        ("number", 2.0),
        ("fraction", 0.5),
        ("numeric-text", 2.0),
        ("negative-text", -3.5),
        ("exponent-text", 2000.0),
        ("null", 1.0),
        ("absent", 1.0),
        ("no-properties", 1.0),
    ] {
        assert_eq!(
            got[id]["meterValue"].as_f64(),
            Some(value),
            "{id}: {}",
            got[id]
        );
        assert!(
            got[id]["dimensions"].get("value").is_none(),
            "{id}: value is the meter value, never a dimension: {}",
            got[id]
        );
        assert_eq!(got[id]["meterApiName"], json!("ApiCalls"));
    }
    assert_eq!(got["absent"]["dimensions"], json!({"k": "v"}));
    assert_eq!(got["null"]["dimensions"], json!({"k": "v"}));
    assert_eq!(got["no-properties"]["dimensions"], json!({}));
    assert_eq!(got.len(), 8, "{got:?}");
    assert_rejected(
        &o,
        "meter value not a number",
        &[
            ("comma", r#"properties.value is "1,250""#),
            ("text", r#"properties.value is "abc""#),
            ("empty", r#"properties.value is """#),
            ("spaces", r#"properties.value is " 3 ""#),
            ("boolean", "properties.value is true"),
            ("object", "properties.value is {}"),
            ("array", "properties.value is []"),
            ("nan", r#"properties.value is "NaN""#),
            ("infinite", r#"properties.value is "1e400""#),
        ],
    );
}

#[test]
fn amberflo_dimension_keys_are_cleaned_and_may_not_collide() {
    let events = [
        track(
            "clean",
            json!({"properties": {"a/b": "x", "": "dropped", "m": {"": 1, "k|l": 2}, "model.name": "gpt", "ok": 1}}),
        ),
        track("collide", json!({"properties": {"a/b": 1, "a|b": 2}})),
        track(
            "collide-nested",
            json!({"properties": {"a": {"b": 1}, "a.b": 2}}),
        ),
        json!({"type": "page", "userId": "u", "name": "Home", "messageId": "page", "timestamp": "2021-04-26T14:01:46.909Z",
               "properties": {"p/q": "1", "p_q": "2"}}),
    ];
    let o = translate(SETTINGS, "amberflo", &events);
    o.run.expect_code(1);
    assert_eq!(record_keys(&o.records), ["clean"]);
    assert_eq!(
        o.records[0]["dimensions"],
        json!({"a_b": "x", "m.k_l": "2", "model.name": "gpt", "ok": "1"})
    );
    assert_rejected(
        &o,
        "dimension keys collide",
        &[
            (
                "collide",
                r#"properties["a/b"] and properties["a|b"] both become dimension "a_b""#,
            ),
            (
                "collide-nested",
                r#"properties.a.b and properties["a.b"] both become dimension "a.b""#,
            ),
            (
                "page",
                r#"properties["p/q"] and properties.p_q both become dimension "p_q""#,
            ),
        ],
    );
}

#[test]
fn amberflo_trait_keys_are_cleaned_and_may_not_collide() {
    let identify = |id: &str, traits: Value| json!({"type": "identify", "userId": id, "messageId": id, "timestamp": "2021-04-26T14:01:46.909Z", "traits": traits});
    let events = [
        identify(
            "clean",
            json!({"name": "N", "a/b": "x", "": "dropped", "model": {"name": "m", "": 1}}),
        ),
        identify("collide", json!({"a/b": 1, "a|b": 2})),
    ];
    let o = translate(SETTINGS, "amberflo", &events);
    o.run.expect_code(1);
    assert_eq!(o.records.len(), 1, "{:?}", o.records);
    assert_eq!(o.records[0]["customerId"], json!("clean"));
    assert_eq!(
        o.records[0]["traits"],
        json!({"a_b": "x", "model.name": "m"})
    );
    assert_rejected(
        &o,
        "trait keys collide",
        &[(
            "collide",
            r#"traits["a/b"] and traits["a|b"] both become trait "a_b""#,
        )],
    );
}

#[test]
fn blank_ids_count_as_absent() {
    let events = [
        track(
            "blank-user",
            json!({"userId": "  ", "anonymousId": "anon-1"}),
        ),
        track("blank-both", json!({"userId": "  ", "anonymousId": "\t"})),
        track("kept", json!({"userId": " u 1 "})),
        track("  ", json!({})),
    ];
    let o = translate(&with_anonymous_fallback(SETTINGS), "amberflo", &events);
    o.run.expect_code(0);
    let got = by_key(&o.records);
    assert_eq!(got["blank-user"]["customerId"], json!("anon-1"));
    assert_eq!(
        got["kept"]["customerId"],
        json!(" u 1 "),
        "non-blank ids are kept as they are"
    );
    let content_ids: Vec<&String> = got.keys().filter(|k| k.starts_with("segrelay-")).collect();
    assert_eq!(
        content_ids.len(),
        1,
        "a blank messageId gets the content id: {got:?}"
    );
    // Skipped, not rejected.
    assert_eq!(
        o.summary["skipped_by_reason"]["no customer id"],
        json!(1),
        "{}",
        o.summary
    );
    assert!(
        o.run
            .stderr
            .contains("1 event had no customer id at userId or anonymousId and was skipped"),
        "{}",
        o.run.stderr
    );

    // Identify needs a customer id that is not blank.
    let identify = json!({"type": "identify", "userId": " ", "messageId": "i", "timestamp": "2021-04-26T14:01:46.909Z"});
    let o = translate(SETTINGS, "amberflo", &[identify]);
    o.run.expect_code(0);
    assert_eq!(
        o.summary["skipped_by_reason"]["no customer id"],
        json!(1),
        "{}",
        o.summary
    );

    for dest in ["orb", "kable"] {
        let events = [
            track(
                "blank-user",
                json!({"userId": " ", "anonymousId": "anon-1"}),
            ),
            track(" ", json!({})),
        ];
        let o = translate(SETTINGS, dest, &events);
        o.run.expect_code(0);
        assert_eq!(
            o.summary["skipped_by_reason"]["no customer id"],
            json!(1),
            "{dest}: {}",
            o.summary
        );
        let keys = record_keys(&o.records);
        assert_eq!(keys.len(), 1, "{dest}: {keys:?}");
        assert!(
            keys[0].starts_with("segrelay-"),
            "{dest}: a blank messageId gets the content id: {keys:?}"
        );
    }
    // Orb's configured fields too.
    let settings = r#"
[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "properties.account"
idempotency_key_field = "properties.requestId"
"#;
    let events = [
        track(
            "blank-event",
            json!({"event": " ", "properties": {"account": "a", "requestId": "r1"}}),
        ),
        track(
            "blank-key",
            json!({"properties": {"account": "a", "requestId": " "}}),
        ),
        track(
            "blank-account",
            json!({"properties": {"account": "\n", "requestId": "r3"}}),
        ),
        track(
            "ok",
            json!({"properties": {"account": "a", "requestId": "r4"}}),
        ),
    ];
    let o = translate(settings, "orb", &events);
    o.run.expect_code(1);
    assert_eq!(record_keys(&o.records), ["r4"]);
    assert_rejected(&o, "missing event name", &[("blank-event", "event")]);
    assert_rejected(
        &o,
        "missing idempotency key",
        &[("blank-key", "properties.requestId")],
    );
    assert_eq!(
        o.summary["skipped_by_reason"]["no customer id"],
        json!(1),
        "{}",
        o.summary
    );
    assert!(
        o.run.stderr.contains(
            "1 event had no customer id at properties.account and was skipped, not sent; \
             to send anonymous visitors' events under their anonymousId, set \
             external_customer_id_field = [\"properties.account\", \"anonymousId\"]"
        ),
        "{}",
        o.run.stderr
    );
}

#[test]
fn times_at_or_before_the_epoch_are_rejected() {
    for (dest, _) in DESTINATIONS {
        let events = [
            track("zero", json!({"timestamp": 0})),
            track("epoch-text", json!({"timestamp": "1970-01-01T00:00:00Z"})),
            track("before", json!({"timestamp": "1969-12-31T23:59:59Z"})),
            track(
                "one-ms-after",
                json!({"timestamp": "1970-01-01T00:00:00.001Z"}),
            ),
        ];
        let o = translate(SETTINGS, dest, &events);
        o.run.expect_code(1);
        assert_eq!(record_keys(&o.records), ["one-ms-after"], "{dest}");
        assert_rejected(
            &o,
            "no usable time",
            &[
                ("zero", "timestamp 0 is at or before 1970-01-01T00:00:00Z"),
                (
                    "epoch-text",
                    r#"timestamp "1970-01-01T00:00:00Z" is at or before 1970-01-01T00:00:00Z"#,
                ),
                ("before", "is at or before 1970-01-01T00:00:00Z"),
            ],
        );
        if dest == "amberflo" {
            assert_eq!(o.records[0]["meterTimeInMillis"], json!(1));
        }
    }
}

const ORB_MAPPING: &str = r#"
[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "userId"

[destinations.orb.properties_mapping]
amount = "amount"
currency = "currency_code"
"usage.tokens" = "tokens"
nullable = "nullable"
flag = "flag"
never = "never"
"#;

#[test]
fn orb_properties_hold_only_the_mapped_keys() {
    let event = track(
        "p1",
        json!({"properties": {
            "amount": 10, "currency": "EUR", "usage": {"tokens": 1250, "cached": false},
            "nullable": null, "flag": true, "secret": "drop me", "unmapped": {"a": 1}
        }}),
    );
    let o = translate(ORB_MAPPING, "orb", &[event]);
    o.run.expect_code(0);
    assert_json_eq(
        &o.records[0]["properties"],
        &json!({"amount": 10, "currency_code": "EUR", "tokens": 1250, "flag": true}),
        Compare::default(),
        "Orb properties (mapped null and absent keys left out, unmapped keys dropped)",
    );
}

#[test]
fn orb_rejects_a_mapped_nested_value_naming_the_key() {
    let events = [
        track("object", json!({"properties": {"amount": {"value": 1}}})),
        track("array", json!({"properties": {"amount": [1, 2]}})),
        track(
            "deep",
            json!({"properties": {"usage": {"tokens": {"in": 1}}}}),
        ),
        track("ok", json!({"properties": {"amount": 5}})),
    ];
    let o = translate(ORB_MAPPING, "orb", &events);
    o.run.expect_code(1);
    assert_eq!(record_keys(&o.records), ["ok"]);
    assert_eq!(o.summary["rejected"], json!(3), "{}", o.summary);
    assert_eq!(o.rejects.len(), 3);
    for reject in &o.rejects {
        let id = reject["messageId"].as_str().unwrap();
        let key = if id == "deep" {
            "usage.tokens"
        } else {
            "amount"
        };
        let note = reject["_segrelay"].to_string();
        assert!(
            note.contains(key),
            "{id}: the reason must name the key {key}: {note}"
        );
        let line = reject["_segrelay"]["line"].as_u64().unwrap();
        let message = o
            .run
            .stderr
            .lines()
            .find(|l| l.contains(&format!("events.ndjson:{line}")))
            .unwrap_or_else(|| panic!("no message for line {line}: {}", o.run.stderr));
        assert!(
            message.contains(key),
            "{id}: stderr must name {key}: {message}"
        );
    }
}

#[test]
fn orb_fields_are_dot_paths_into_the_event() {
    let settings = r#"
[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "properties.account.id"
event_name_field = "properties.meter"
idempotency_key_field = "properties.requestId"
"#;
    let event = track(
        "m-1",
        json!({"properties": {"account": {"id": "acct_9"}, "meter": "tokens", "requestId": "req-77"}}),
    );
    let o = translate(settings, "orb", &[event]);
    o.run.expect_code(0);
    let r = &o.records[0];
    assert_eq!(r["external_customer_id"], json!("acct_9"));
    assert_eq!(r["event_name"], json!("tokens"));
    assert_eq!(r["idempotency_key"], json!("req-77"));
    assert_eq!(r["properties"], json!({}), "nothing is mapped");
}

#[test]
fn kable_client_id_field_takes_dot_paths() {
    let group = r#"
[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci_x"
environment = "test"
client_id_field = "context.groupId"
"#;
    let events = [
        track("g1", json!({"context": {"groupId": "grp-1"}})),
        track("g2", json!({"context": {"groupId": 42}})),
        track("g3", json!({"context": {"ip": "1.2.3.4"}})),
    ];
    let o = translate(group, "kable", &events);
    o.run.expect_code(0);
    let got = by_key(&o.records);
    assert_eq!(got["g1"]["clientId"], json!("grp-1"));
    assert_eq!(got["g2"]["clientId"], json!("42"));
    assert!(!got.contains_key("g3"));
    assert_eq!(
        o.summary["skipped_by_reason"]["no customer id"],
        json!(1),
        "{}",
        o.summary
    );
    assert_eq!(
        o.requests[0]["url"],
        json!("https://test.kable.io/api/v1/events/create")
    );

    let property = group.replace("context.groupId", "properties.customerId");
    let events = [track(
        "p1",
        json!({"properties": {"customerId": "cust-5", "n": 1}}),
    )];
    let o = translate(&property, "kable", &events);
    o.run.expect_code(0);
    assert_eq!(o.records[0]["clientId"], json!("cust-5"));
    assert_eq!(
        o.records[0]["data"],
        json!({"customerId": "cust-5", "n": 1}),
        "unmapped properties are kept in data"
    );
}

#[test]
fn kable_environment_follows_the_key_unless_set() {
    let settings = r#"
[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci_x"
"#;
    let dir = workspace(settings);
    write(dir.path(), "e.ndjson", ndjson(&[track("k", json!({}))]));
    for (key, host) in [
        ("sk_live_abc123", "https://live.kable.io"),
        ("sk_test_abc123", "https://test.kable.io"),
    ] {
        let out = run(segrelay()
            .current_dir(dir.path())
            .env("KABLE_API_KEY", key)
            .args(["send", "--dry-run", "-c", "segrelay.toml", "e.ndjson"]));
        out.expect_code(0);
        assert_eq!(
            out.requests()[0]["url"],
            json!(format!("{host}/api/v1/events/create")),
            "key {key}"
        );
        assert!(!out.stdout.contains(key) && !out.stderr.contains(key));
    }
    let pinned = format!("{settings}environment = \"test\"\n");
    let dir = workspace(&pinned);
    write(dir.path(), "e.ndjson", ndjson(&[track("k", json!({}))]));
    let out = run(segrelay()
        .current_dir(dir.path())
        .env("KABLE_API_KEY", "sk_live_abc123")
        .args(["send", "--dry-run", "-c", "segrelay.toml", "e.ndjson"]));
    out.expect_code(0);
    assert_eq!(
        out.requests()[0]["url"],
        json!("https://test.kable.io/api/v1/events/create")
    );
}

#[test]
fn kable_renames_mapped_keys_and_keeps_the_rest() {
    let settings = r#"
[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci_x"
environment = "live"

[destinations.kable.properties_mapping]
segmentX = "kableX"
"usage.tokens" = "tokens"
absent = "never"
"#;
    let event = track(
        "k1",
        json!({"properties": {"segmentX": 1, "usage": {"tokens": 9, "model": "m"}, "other": [1, 2]}}),
    );
    let o = translate(settings, "kable", &[event]);
    o.run.expect_code(0);
    assert_json_eq(
        &o.records[0]["data"],
        &json!({"kableX": 1, "tokens": 9, "usage": {"model": "m"}, "other": [1, 2]}),
        Compare::default(),
        "Kable data",
    );
}

#[test]
fn call_types_a_destination_does_not_take_are_skipped() {
    let ts = "2021-04-26T14:01:46.909Z";
    let events = [
        track("c-track", json!({})),
        json!({"type": "page", "userId": "u", "name": "Home", "messageId": "c-page", "timestamp": ts}),
        json!({"type": "screen", "userId": "u", "name": "Home", "messageId": "c-screen", "timestamp": ts}),
        json!({"type": "identify", "userId": "u", "messageId": "c-identify", "timestamp": ts}),
        json!({"type": "group", "userId": "u", "groupId": "g", "messageId": "c-group", "timestamp": ts}),
        json!({"type": "alias", "userId": "u", "previousId": "p", "messageId": "c-alias", "timestamp": ts}),
    ];
    for (dest, sent, skipped) in [("amberflo", 4, 2), ("orb", 1, 5), ("kable", 1, 5)] {
        let o = translate(SETTINGS, dest, &events);
        o.run.expect_code(0);
        assert_eq!(
            (o.summary["sent"].as_u64(), o.summary["skipped"].as_u64()),
            (Some(sent), Some(skipped)),
            "{dest}: {}",
            o.summary
        );
        assert_eq!(
            reason_count(&o.summary, "skipped_by_reason", "not taken"),
            skipped,
            "{dest}: skipped_by_reason should say 'type not taken': {}",
            o.summary
        );
        assert_eq!(o.summary["rejected"], json!(0), "{dest}");
        assert!(
            o.rejects.is_empty(),
            "{dest}: skipped events are not rejects"
        );
    }
}

#[test]
fn the_seed_settings_file_is_a_valid_check() {
    // The golden settings themselves pass `segrelay check` for every destination.
    for (dest, file) in [
        ("amberflo", "seed-amberflo-track.ndjson"),
        ("orb", "seed-orb-track.ndjson"),
        ("kable", "seed-kable-track.ndjson"),
    ] {
        let out = run(segrelay().current_dir(fixtures()).args([
            "check",
            "-c",
            "seeds.toml",
            "-d",
            dest,
            file,
        ]));
        out.expect_code(0);
        assert!(
            out.stdout.is_empty(),
            "{dest}: check writes nothing on stdout"
        );
    }
    assert!(Path::new(&fixtures().join("seeds.toml")).is_file());
}

const ORB_NUMERIC: &str = r#"
[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "userId"
numeric_properties = ["amount", "units"]

[destinations.orb.properties_mapping]
amount = "amount"
"usage.count" = "units"
currency = "currency_code"
"#;

#[test]
fn orb_numeric_properties_are_sent_as_numbers() {
    let events = [
        track(
            "number",
            json!({"properties": {"amount": 10, "usage": {"count": 2.5}}}),
        ),
        track(
            "text",
            json!({"properties": {"amount": "1250", "usage": {"count": "-3"}}}),
        ),
        track(
            "exponent",
            json!({"properties": {"amount": "2e3", "usage": {"count": "12.5"}}}),
        ),
        track(
            "null",
            json!({"properties": {"amount": null, "currency": "EUR"}}),
        ),
        track("absent", json!({"properties": {}})),
        track("comma", json!({"properties": {"amount": "1,250"}})),
        track("spaces", json!({"properties": {"amount": " 3 "}})),
        track("boolean", json!({"properties": {"usage": {"count": true}}})),
        track("empty", json!({"properties": {"amount": ""}})),
    ];
    let o = translate(ORB_NUMERIC, "orb", &events);
    o.run.expect_code(1);
    let got = by_key(&o.records);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(
        got["number"]["properties"],
        json!({"amount": 10, "units": 2.5})
    );
    assert_eq!(
        got["text"]["properties"],
        json!({"amount": 1250, "units": -3})
    );
    assert!(
        got["text"]["properties"]["amount"].is_u64(),
        "a number, not text"
    );
    assert_eq!(
        got["exponent"]["properties"],
        json!({"amount": 2000.0, "units": 12.5})
    );
    assert_eq!(got["null"]["properties"], json!({"currency_code": "EUR"}));
    assert_eq!(got["absent"]["properties"], json!({}));
    assert_rejected(
        &o,
        "property not a number",
        &[
            (
                "comma",
                r#"properties.amount (Orb "amount") is "1,250"; numeric_properties asks for a number"#,
            ),
            ("spaces", r#"properties.amount (Orb "amount") is " 3 ""#),
            ("boolean", r#"properties.usage.count (Orb "units") is true"#),
            ("empty", r#"properties.amount (Orb "amount") is """#),
        ],
    );
    // Every property is listed or holds no numeric text: no advice.
    assert_eq!(advice(&o.summary), json!([]), "{}", o.summary);
    assert!(!o.run.stderr.contains("numeric text"), "{}", o.run.stderr);
}

#[test]
fn numeric_properties_must_be_mapping_targets() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.ndjson", ndjson(&[track("x", json!({}))]));
    let base = "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_field = \"userId\"\n";
    let mapping = "[destinations.orb.properties_mapping]\namount = \"orb_amount\"\n";
    for (numeric, needles) in [
        // The Segment name is not the Orb name.
        (
            r#"numeric_properties = ["amount"]"#,
            &["numeric_properties", "\"amount\"", "\"orb_amount\""][..],
        ),
        (
            r#"numeric_properties = "orb_amount""#,
            &["numeric_properties", "a list of strings"][..],
        ),
        (
            r#"numeric_properties = [1]"#,
            &["numeric_properties", "only strings"][..],
        ),
    ] {
        write(
            dir.path(),
            "bad.toml",
            format!("{base}{numeric}\n{mapping}"),
        );
        let out = run(segrelay()
            .current_dir(dir.path())
            .args(["check", "-c", "bad.toml", "e.ndjson"]));
        out.expect_code(2);
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "{numeric}: should name {needle}: {}",
                out.stderr
            );
        }
        assert!(
            out.stderr.contains("bad.toml") && out.stderr.contains("destinations.orb"),
            "{}",
            out.stderr
        );
    }
    write(
        dir.path(),
        "good.toml",
        format!("{base}numeric_properties = [\"orb_amount\"]\n{mapping}"),
    );
    let out =
        run(segrelay()
            .current_dir(dir.path())
            .args(["check", "-c", "good.toml", "e.ndjson"]));
    out.expect_code(0);
}

/// The summary's warnings about numeric text (the events' old times bring Orb's
/// grace-period warning too).
fn advice(summary: &Value) -> Value {
    let warnings = summary["warnings"].as_array().expect("a warnings array");
    warnings
        .iter()
        .filter(|w| w.as_str().is_some_and(|w| w.contains("numeric text")))
        .cloned()
        .collect()
}

/// Events with Orb properties mapped but not listed in numeric_properties.
fn numeric_text_events() -> Vec<Value> {
    vec![
        track(
            "a",
            json!({"properties": {"amount": "1250", "currency": "EUR"}}),
        ),
        track(
            "b",
            json!({"properties": {"amount": "7", "currency": "100"}}),
        ),
        track("c", json!({"properties": {"amount": 3}})),
        track("d", json!({"properties": {"amount": "12.5"}})),
        track("e", json!({"properties": {"amount": "1,250"}})),
    ]
}

const AMOUNT_ADVICE: &str = r#"3 events carried Orb property "amount" as numeric text (such as "1250"), which Orb does not sum: list it in numeric_properties"#;
const CURRENCY_ADVICE: &str = r#"1 event carried Orb property "currency" as numeric text (such as "100"), which Orb does not sum: list it in numeric_properties"#;

#[test]
fn numeric_text_in_an_unlisted_orb_property_is_advised() {
    // A dry run (the common settings map amount and currency, and list nothing).
    let o = translate(SETTINGS, "orb", &numeric_text_events());
    o.run.expect_code(0);
    assert_eq!(
        by_key(&o.records)["a"]["properties"],
        json!({"amount": "1250", "currency": "EUR"}),
        "an unlisted property is sent as it came"
    );
    assert_eq!(
        advice(&o.summary),
        json!([AMOUNT_ADVICE, CURRENCY_ADVICE]),
        "{}",
        o.summary
    );
    for advice in [AMOUNT_ADVICE, CURRENCY_ADVICE] {
        assert_eq!(
            o.run.stderr.matches(advice).count(),
            1,
            "once on stderr: {}",
            o.run.stderr
        );
    }

    // A check says the same.
    let dir = workspace(SETTINGS);
    write(dir.path(), "events.ndjson", ndjson(&numeric_text_events()));
    let out = run(segrelay()
        .current_dir(dir.path())
        .env("ORB_API_KEY", "k")
        .args([
            "check",
            "-c",
            "segrelay.toml",
            "-d",
            "orb",
            "--summary",
            "summary.json",
            "events.ndjson",
        ]));
    out.expect_code(0);
    let s = summary(&dir.path().join("summary.json"));
    assert_eq!(advice(&s), json!([AMOUNT_ADVICE, CURRENCY_ADVICE]), "{s}");
    assert_eq!(
        out.stderr.matches(AMOUNT_ADVICE).count(),
        1,
        "{}",
        out.stderr
    );

    // Listed, the text is sent as a number, and there is nothing to advise.
    let listed = SETTINGS.replace(
        "external_customer_id_field = \"userId\"\n",
        "external_customer_id_field = \"userId\"\nnumeric_properties = [\"amount\", \"currency\"]\n",
    );
    let events = &numeric_text_events()[1..4];
    let o = translate(&listed, "orb", events);
    o.run.expect_code(0);
    assert_eq!(
        by_key(&o.records)["b"]["properties"],
        json!({"amount": 7, "currency": 100})
    );
    assert_eq!(advice(&o.summary), json!([]), "{}", o.summary);
    assert!(!o.run.stderr.contains("numeric text"), "{}", o.run.stderr);
}

/// `--format records` writes a line per event: its record exactly as the
/// ndjson format's request body carries it, and that request's number, method,
/// URL and the event's place in it; never a key.
#[test]
fn records_format_is_a_line_per_event_of_the_same_requests() {
    const KEY: &str = "sk_live_records_format_secret";
    let events = [
        track("r1", json!({})),
        track("r2", json!({"properties": {"value": 3, "amount": 2}})),
        track("r3", json!({"userId": "user-2"})),
        json!({"type": "identify", "userId": "user-9", "messageId": "r4",
               "timestamp": "2021-04-26T14:01:46.909Z", "traits": {"name": "Ada"}}),
    ];
    for (dest, _) in DESTINATIONS {
        let dir = workspace(SETTINGS);
        write(dir.path(), "events.ndjson", ndjson(&events));
        let with_format = |format: &str| {
            let mut cmd = segrelay();
            cmd.current_dir(dir.path())
                .env("AMBERFLO_API_KEY", KEY)
                .env("ORB_API_KEY", KEY)
                .env("KABLE_API_KEY", KEY)
                .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", dest])
                .args(["--batch-size", "2", "--format", format, "events.ndjson"]);
            let out = run(&mut cmd);
            out.expect_code(0);
            out
        };
        let requests = with_format("ndjson").requests();
        let out = with_format("records");
        assert!(!out.stdout.contains(KEY), "{dest}: the key is written");
        let lines = parse_ndjson(&out.stdout);
        let mut expected = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            let carried = records(std::slice::from_ref(request));
            let origins = request["events"].as_array().unwrap();
            for (place, (record, origin)) in carried.iter().zip(origins).enumerate() {
                expected.push(json!({
                    "destination": dest,
                    "source": origin["source"],
                    "line": origin["line"],
                    "record": record,
                    "request": {
                        "index": index + 1,
                        "method": request["method"],
                        "url": request["url"],
                        "place": place + 1,
                        "events": origins.len(),
                    },
                }));
            }
        }
        assert_eq!(lines, expected, "{dest}");
        // Identify is Amberflo's only: the other two skip it.
        let translated = if dest == "amberflo" { 4 } else { 3 };
        assert_eq!(lines.len(), translated, "{dest}: {}", out.stdout);
        // In request order: an identify goes out at once, tracks wait for their batch.
        let mut lines_read: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
        lines_read.sort();
        assert_eq!(lines_read, [1, 2, 3, 4][..translated], "{dest}");
        let at_line = |n: u64| lines.iter().find(|l| l["line"] == n).unwrap();
        let request_of = |n: u64| at_line(n)["request"]["index"].as_u64().unwrap();
        assert_eq!(request_of(1), request_of(2), "{dest}: batches of two");
        assert!(request_of(3) > request_of(2), "{dest}: batches of two");
        if dest == "amberflo" {
            let identify = at_line(4);
            assert_eq!(identify["record"]["customerId"], "user-9");
            assert_eq!(identify["request"]["events"], 1);
            assert!(
                identify["request"]["url"]
                    .as_str()
                    .unwrap()
                    .ends_with("/customers"),
                "{identify}"
            );
        }
    }
}
