//! Values as real data holds them: numbers keep their digits in every
//! destination and every dry-run format, blank Amberflo keys and values are
//! dropped, and Amberflo's time limits. Dry runs, and sends to the loopback
//! server that behaves like each API.

use std::process::Output;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::job::{Job, destination_table};
use crate::support::server::{Api, TestServer};
use crate::support::{SETTINGS, dry_run, ndjson, records, summary, workspace, write};

const KEY: &str = "sk_test_values_0123";
const HUGE: &str = "123456789012345678901234567890";
const BELOW_I64: &str = "-9223372036854775809";
const LONG_DECIMAL: &str = "0.12345678901234567890123";

/// A track event holding numbers a double cannot keep: Orb maps `amount`
/// (and `value`), Kable takes every property, Amberflo makes them dimensions.
fn big_numbers_line(id: &str, time: &str) -> String {
    format!(
        r#"{{"type":"track","event":"api_call","userId":"u1","messageId":"{id}","timestamp":"{time}","properties":{{"value":3,"amount":{HUGE},"n":{{"below":{BELOW_I64},"fine":12.50}},"d":{LONG_DECIMAL}}}}}"#
    )
}

/// What each destination's request body must hold, written as it came.
fn big_number_fragments(dest: &str) -> Vec<String> {
    match dest {
        "amberflo" => vec![
            format!(r#""amount":"{HUGE}""#),
            format!(r#""n.below":"{BELOW_I64}""#),
            format!(r#""d":"{LONG_DECIMAL}""#),
            r#""n.fine":"12.5""#.to_owned(),
            r#""meterValue":3,"#.to_owned(),
        ],
        "orb" => vec![format!(r#""amount":{HUGE}"#), r#""value":3"#.to_owned()],
        "kable" => vec![
            format!(r#""amount":{HUGE}"#),
            format!(r#""below":{BELOW_I64}"#),
            format!(r#""d":{LONG_DECIMAL}"#),
            r#""fine":12.5"#.to_owned(),
        ],
        other => panic!("{other}"),
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An hour ago: within every destination's ingest window.
fn recent() -> String {
    (Timestamp::now() - SignedDuration::from_hours(1)).to_string()
}

#[test]
fn big_numbers_keep_their_digits_in_every_dry_run_format() {
    let dir = workspace(SETTINGS);
    write(
        dir.path(),
        "events.ndjson",
        format!("{}\n", big_numbers_line("big", "2024-05-01T10:00:00Z")),
    );
    for dest in ["amberflo", "orb", "kable"] {
        for format in ["ndjson", "records", "curl", "http"] {
            let run = dry_run(
                dir.path(),
                "segrelay.toml",
                dest,
                &["--format", format],
                &["events.ndjson"],
            );
            assert_eq!(run.code, 0, "{dest} {format}: {}", run.stderr);
            for fragment in big_number_fragments(dest) {
                assert!(
                    run.stdout.contains(&fragment),
                    "{dest} {format}: {fragment} not in\n{}",
                    run.stdout
                );
            }
            assert!(!run.stdout.contains("e+29"), "{dest} {format}: rounded");
        }
    }
}

#[test]
fn big_numbers_reach_each_api_with_their_digits() {
    for api in [Api::Amberflo, Api::Orb, Api::Kable] {
        let server = TestServer::start(api, KEY);
        let table = destination_table(api)
            + if api == Api::Orb {
                "amount = \"amount\"\n"
            } else {
                ""
            };
        let job = Job::new(
            &table,
            &server.endpoint(),
            &format!("{}\n", big_numbers_line("big", &recent())),
        );
        let output = job.send_command(KEY).arg(&job.input).output().unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{api:?}: {stderr}");
        let dest = format!("{api:?}").to_lowercase();
        let bodies: String = server
            .received()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        for fragment in big_number_fragments(&dest) {
            assert!(
                bodies.contains(&fragment),
                "{api:?}: {fragment} not in {bodies}"
            );
        }
        assert_eq!(server.ingested().len(), 1, "{api:?}");
    }
}

/// Amberflo reads a meter value as a double: one it would round is refused,
/// sent nowhere, with the value and what it would become.
#[test]
fn amberflo_refuses_a_meter_value_a_double_would_round() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let line = |id: &str, value: &str| {
        format!(
            r#"{{"type":"track","event":"api_call","userId":"u1","messageId":"{id}","timestamp":"{}","properties":{{"value":{value}}}}}"#,
            recent()
        )
    };
    let events = [
        line("huge", HUGE),
        line("past-2-53", "9007199254740993"),
        line("string", &format!("\"{HUGE}\"")),
        line("fine", "12.50"),
    ]
    .join("\n");
    let job = Job::new(
        &destination_table(Api::Amberflo),
        &server.endpoint(),
        &events,
    );
    let output = job.send_command(KEY).arg(&job.input).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "events.ndjson:1: rejected: meter value not exact: properties.value is {HUGE}, more digits than Amberflo keeps: it reads meter values as doubles, which would make it 1.2345678901234568e29; send at most 15 significant digits"
        )),
        "{stderr}"
    );
    assert_eq!(
        job.summary()["rejected_by_reason"],
        json!({"meter value not exact": 3})
    );
    let ingested = server.ingested();
    assert_eq!(ingested.len(), 1);
    assert_eq!(ingested[0]["uniqueId"], "fine");
    assert_eq!(ingested[0]["meterValue"].to_string(), "12.5");
}

/// Beyond a double's range the line is still JSON: Orb and Kable refuse the
/// event with the property's path, rather than send infinity.
#[test]
fn orb_and_kable_refuse_a_number_beyond_a_double() {
    let dir = workspace(SETTINGS);
    let line = r#"{"type":"track","event":"e","userId":"u1","messageId":"far","timestamp":"2024-05-01T10:00:00Z","properties":{"amount":{"x":1},"value":1e400,"deep":{"a":[1,-2E999]}}}"#;
    write(dir.path(), "events.ndjson", format!("{line}\n"));
    for (dest, detail) in [
        (
            "orb",
            "properties.value is 1e+400, beyond what a double holds (Orb would read it as infinite); send it as a string",
        ),
        (
            "kable",
            "properties.deep.a.1 is -2e+999, beyond what a double holds (Kable would read it as infinite); send it as a string",
        ),
    ] {
        let mut settings = SETTINGS.to_owned();
        if dest == "orb" {
            settings = settings.replace("amount = \"amount\"\n", "");
        }
        write(dir.path(), "segrelay.toml", &settings);
        let run = dry_run(dir.path(), "segrelay.toml", dest, &[], &["events.ndjson"]);
        assert_eq!(run.code, 1, "{dest}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "events.ndjson:1: rejected: number out of range: {detail}"
            )),
            "{dest}: {}",
            run.stderr
        );
    }
}

const BLANK_SETTINGS: &str = r#"
[destinations.amberflo]
api_key = "${AMBERFLO_API_KEY}"
identify = "replace"
"#;

/// Amberflo's SDKs refuse keys and values of white space only: they are
/// dropped as empty ones, and a blank name falls back to the customer id.
fn blank_events(time: &str) -> String {
    ndjson(&[
        json!({
            "type": "track", "event": "api_call", "userId": "u1", "messageId": "t1", "timestamp": time,
            "properties": {
                " ": "a", "\t": "b", "s": "  ", "t": "\t\n", "nbsp": "\u{a0}",
                "m": {" ": 1, "x": " ", "y": "kept"}, "list": [" "], "ok": "y"
            }
        }),
        json!({
            "type": "page", "name": "   ", "userId": "u1", "messageId": "p1", "timestamp": time,
            "properties": {"title": " "}
        }),
        json!({
            "type": "identify", "userId": "u1", "messageId": "i1", "timestamp": time,
            "traits": {"name": "  ", "email": " \t", "plan": " ", " ": "x", "tier": "gold"}
        }),
    ])
}

fn assert_blanks_dropped(records: &[Value], customers: &[Value], what: &str) {
    let track = records.iter().find(|r| r["uniqueId"] == "t1").unwrap();
    assert_eq!(
        track["dimensions"],
        json!({"m.y": "kept", "ok": "y"}),
        "{what}"
    );
    let page = records.iter().find(|r| r["uniqueId"] == "p1").unwrap();
    assert_eq!(page["dimensions"], json!({}), "{what}");
    assert_eq!(
        customers,
        [json!({"customerId": "u1", "customerName": "u1", "traits": {"tier": "gold"}})],
        "{what}"
    );
}

#[test]
fn blank_amberflo_keys_and_values_are_dropped() {
    let dir = workspace(BLANK_SETTINGS);
    write(
        dir.path(),
        "events.ndjson",
        blank_events("2024-05-01T10:00:00Z"),
    );
    let run = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &[],
        &["events.ndjson"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = run.requests();
    let customers: Vec<Value> = requests
        .iter()
        .filter(|r| r["url"].as_str().unwrap().ends_with("/customers"))
        .map(|r| r["body"].clone())
        .collect();
    assert_blanks_dropped(&records(&requests), &customers, "dry run");

    let server = TestServer::start(Api::Amberflo, KEY);
    let job = Job::new(
        "[destinations.amberflo]\nidentify = \"replace\"\n",
        &server.endpoint(),
        &blank_events(&recent()),
    );
    let output = job.send_command(KEY).arg(&job.input).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output).1);
    assert_blanks_dropped(&server.ingested(), &server.customers(), "send");
}

/// A track event `offset` from now, as an archive line holds it (with the
/// `receivedAt` Segment adds, so no warning of a sender's clock).
fn timed(id: &str, offset: SignedDuration) -> Value {
    let at = (Timestamp::now() + offset).to_string();
    json!({
        "type": "track", "event": "api_call", "userId": "u1", "messageId": id,
        "timestamp": at, "receivedAt": at,
    })
}

const GUARDRAIL_WARNING: &str = "2 events are older than Amberflo's default backfill guardrail (60 days): they are not held back, but the account may need the guardrail raised for Amberflo to take them; ask Amberflo support to raise it if they do not show in its usage";

fn timed_events() -> String {
    let day = SignedDuration::from_hours(24);
    ndjson(&[
        timed("recent", -SignedDuration::from_hours(1)),
        timed("ahead-4m", SignedDuration::from_mins(4)),
        timed("ahead-10m", SignedDuration::from_mins(10)),
        timed("old-61d", -(day * 61)),
        timed("old-400d", -(day * 400)),
        timed("old-59d", -(day * 59)),
    ])
}

/// Amberflo's SDK refuses a record more than 5 minutes ahead: rejected, naming
/// the time and the limit. Older than the 60-day guardrail: sent, one warning.
fn assert_amberflo_times(stderr: &str, summary: &Value, keys: &[&str]) {
    let said = stderr
        .lines()
        .find(|l| l.contains("events.ndjson:3: rejected: time in the future"))
        .unwrap_or_else(|| panic!("no rejection said:\n{stderr}"));
    assert!(
        said.contains("is later than")
            && said.contains("Amberflo refuses events more than 5 minutes after"),
        "{said}"
    );
    assert_eq!(
        summary["rejected_by_reason"],
        json!({"time in the future": 1})
    );
    assert_eq!(summary["warnings"], json!([GUARDRAIL_WARNING]), "{stderr}");
    assert_eq!(
        stderr.matches("default backfill guardrail").count(),
        1,
        "one warning, at the end:\n{stderr}"
    );
    assert_eq!(
        keys,
        ["recent", "ahead-4m", "old-61d", "old-400d", "old-59d"]
    );
}

#[test]
fn amberflo_rejects_records_ahead_and_warns_about_old_ones() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "events.ndjson", timed_events());
    let run = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &["--summary", "summary.json"],
        &["events.ndjson"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let requests = run.requests();
    let keys: Vec<String> = records(&requests)
        .iter()
        .map(|r| r["uniqueId"].as_str().unwrap().to_owned())
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let summary = summary(&dir.path().join("summary.json"));
    assert_amberflo_times(&run.stderr, &summary, &keys);

    let server = TestServer::start(Api::Amberflo, KEY);
    let job = Job::new(
        &destination_table(Api::Amberflo),
        &server.endpoint(),
        &timed_events(),
    );
    let output = job.send_command(KEY).arg(&job.input).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let ingested: Vec<String> = server
        .ingested()
        .iter()
        .map(|r| r["uniqueId"].as_str().unwrap().to_owned())
        .collect();
    let ingested: Vec<&str> = ingested.iter().map(String::as_str).collect();
    assert_amberflo_times(&stderr, &job.summary(), &ingested);
}
