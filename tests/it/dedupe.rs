//! Repeated idempotency keys, against the loopback server: a usage record whose
//! key the run already sent or queued is skipped as a duplicate, whatever batch
//! or backfill window either falls in; it is sent once, the run ends cleanly,
//! and a warning names both places when the records differ.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, destination_table};
use crate::support::server::{Api, TestServer};

const KEY: &str = "sk_test_dedupe_key_0042";

/// A track event `minutes_ago` minutes before now, as a line.
fn event(key: &str, minutes_ago: i64, value: i64) -> String {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
    let event = json!({"type": "track", "event": "api_call", "userId": "cust_1", "messageId": key,
        "timestamp": at.to_string(), "properties": {"value": value}});
    format!("{event}\n")
}

fn send(job: &Job, args: &[&str]) -> Output {
    let output = job
        .send_command(KEY)
        .args(["--max-retry-wait", "10ms", "-v"])
        .args(args)
        .arg(&job.input)
        .output()
        .unwrap();
    support::assert_accounting(&job.summary());
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The summary's warnings about idempotency keys, with the input's folder left out.
fn key_warnings(job: &Job) -> Vec<String> {
    let folder = format!("{}/", job.dir.path().display());
    job.summary()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|w| w.contains("idempotency key"))
        .map(|w| w.replace(&folder, ""))
        .collect()
}

#[test]
fn a_repeated_key_is_sent_once_in_one_batch_or_in_two() {
    // "changed" comes back with another record, "same" with the very same line.
    let same = event("same", 20, 1);
    let input = [
        event("changed", 10, 1),
        same.clone(),
        event("filler-1", 15, 1),
        event("changed", 5, 2),
        same,
        event("filler-2", 15, 1),
    ]
    .concat();
    for api in Api::ALL {
        // 10: every repeat is in its first's batch; 2: in the next one.
        for (batch, requests) in [("10", 1), ("2", 2)] {
            let context = format!("{} --batch-size {batch}", api.name());
            let server = TestServer::start(api, KEY);
            let job = Job::new(&destination_table(api), &server.endpoint(), &input);
            let output = send(&job, &["--batch-size", batch]);
            let stderr = stderr(&output).replace(&format!("{}/", job.dir.path().display()), "");
            assert_eq!(output.status.code(), Some(0), "{context}\n{stderr}");
            let summary = job.summary();
            assert_eq!(summary["sent"], 4, "{context}: {summary}");
            assert_eq!(summary["skipped"], 2, "{context}: {summary}");
            assert_eq!(
                summary["skipped_by_reason"]["duplicate idempotency key"], 2,
                "{context}: {summary}"
            );
            assert_eq!(summary["requests"], requests, "{context}: {summary}");
            // Sent once each, the first record of each key.
            let deliveries = server.deliveries();
            assert_eq!(deliveries.len(), 4, "{context}: {deliveries:?}");
            assert!(
                deliveries.values().all(|n| *n == 1),
                "{context}: {deliveries:?}"
            );
            let events: usize = server.received().iter().map(|r| r.event_count()).sum();
            assert_eq!(events, 4, "{context}");
            assert!(job.rejects().is_empty(), "{context}");
            // One warning, for the key whose record changed, with both places.
            let warnings = key_warnings(&job);
            assert_eq!(warnings.len(), 1, "{context}: {summary}");
            assert!(
                warnings[0].starts_with("1 event repeated the idempotency key")
                    && warnings[0].ends_with("\"changed\" at events.ndjson:1 and events.ndjson:4"),
                "{context}: {}",
                warnings[0]
            );
            // Each skip names the first event's place.
            for (line, first, record) in [(4, 1, "a different record"), (5, 2, "the same record")] {
                let said = format!(
                    "events.ndjson:{line}: skipped: duplicate idempotency key: idempotency key"
                );
                let told = stderr
                    .lines()
                    .find(|l| l.contains(&said))
                    .unwrap_or_else(|| panic!("{context}: {said}\n{stderr}"));
                assert!(
                    told.contains(&format!(
                        "already queued at events.ndjson:{first}, with {record}"
                    )),
                    "{context}: {told}"
                );
            }
        }
    }
}

/// An Orb backfill makes a pass per window; the keys are the run's, so a key
/// sent by one pass is a duplicate in another.
#[test]
fn a_key_sent_in_one_backfill_pass_is_a_duplicate_in_another() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    let input = [
        // Within the grace period: the first pass sends it, through ordinary ingest.
        event("twice", 60, 1),
        // Days old, in a backfill window: the same key, another record.
        event("twice", 48 * 60, 1),
        event("old-only", 50 * 60, 1),
    ]
    .concat();
    let job = Job::new(&destination_table(Api::Orb), &server.endpoint(), &input);
    let output = send(
        &job,
        &[
            "--orb-backfill",
            "--orb-wait",
            "--orb-poll-interval",
            "10ms",
        ],
    );
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let summary = job.summary();
    assert_eq!(
        (&summary["sent"], &summary["skipped"]),
        (&json!(2), &json!(1)),
        "{summary}"
    );
    assert_eq!(server.deliveries().get("twice"), Some(&1));
    assert!(
        server.backfill_of("twice").is_none(),
        "sent once, by the first pass"
    );
    assert!(server.backfill_of("old-only").is_some());
    let warnings = key_warnings(&job);
    assert!(
        warnings.len() == 1
            && warnings[0].ends_with("\"twice\" at events.ndjson:1 and events.ndjson:2"),
        "{summary}"
    );
}
