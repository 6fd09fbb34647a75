//! Sending for real, against the loopback test server that behaves like each
//! API and injects faults. Each test asserts what the server received and
//! what segrelay reports.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, KEY_VAR, destination_table};
use crate::support::server::{Api, Fault, OrbFailureShape, TestServer};

const KEY: &str = "sk_test_s3cr3t_value_42";

/// A send: its exit code, both streams, the summary and the lines of the rejects file.
struct Sent {
    code: i32,
    stdout: String,
    stderr: String,
    summary: Value,
    rejects: Vec<Value>,
}

/// A job for `api` at `server`, `extra` added to the destination's table.
fn setup(api: &Api, server: &TestServer, extra: &str) -> Job {
    let table = destination_table(*api).replacen('\n', &format!("\n{extra}"), 1);
    Job::new(&table, &server.endpoint(), "")
}

fn track_events(n: usize, prefix: &str) -> String {
    let mut out = String::new();
    for i in 0..n {
        let event = json!({
            "type": "track",
            "event": "api_call",
            "userId": format!("cust_{}", i % 7),
            "messageId": format!("{prefix}-{i}"),
            "timestamp": "2026-11-23T10:00:00.000Z",
            "properties": {"value": i % 5 + 1, "region": "eu-west-1"},
        });
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out
}

fn keys(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn run(setup: &Job, input: &str, args: &[&str]) -> Sent {
    let input_path = setup.dir.path().join("events.ndjson");
    std::fs::write(&input_path, input).unwrap();
    run_file(setup, &input_path, args)
}

fn run_file(setup: &Job, input: &Path, args: &[&str]) -> Sent {
    let summary = setup.dir.path().join("summary.json");
    let rejects = setup.dir.path().join("rejects.ndjson");
    // Retries wait 20 ms unless a test asks for more.
    let quick_retries: &[&str] = if args.contains(&"--max-retry-wait") {
        &[]
    } else {
        &["--max-retry-wait", "20ms"]
    };
    let output = support::segrelay()
        .arg("send")
        .arg("-c")
        .arg(&setup.settings)
        .arg("--summary")
        .arg(&summary)
        .arg("--rejects")
        .arg(&rejects)
        .args(quick_retries)
        .args(args)
        .arg(input)
        .env(KEY_VAR, KEY)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for text in [&stdout, &stderr] {
        assert!(!text.contains(KEY), "the key leaked:\n{text}");
    }
    let summary_text = std::fs::read_to_string(&summary)
        .unwrap_or_else(|_| panic!("no summary; stderr:\n{stderr}"));
    let rejects_text = std::fs::read_to_string(&rejects).unwrap_or_default();
    assert!(
        !summary_text.contains(KEY) && !rejects_text.contains(KEY),
        "the key leaked into a file"
    );
    let summary: Value = serde_json::from_str(&summary_text).unwrap();
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(
        n("read"),
        n("sent") + n("skipped") + n("rejected") + n("failed"),
        "accounting: {summary}"
    );
    Sent {
        code: output.status.code().unwrap_or(-1),
        stdout,
        stderr,
        summary,
        rejects: rejects_text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

/// Every key reached the destination: accepted at least once, ingested once.
fn assert_all_delivered(server: &TestServer, expected: &[String]) {
    let deliveries = server.deliveries();
    for key in expected {
        assert!(
            deliveries.get(key).copied().unwrap_or(0) >= 1,
            "{key} never delivered"
        );
    }
    let ingested = server.ingested();
    assert_eq!(
        ingested.len(),
        expected.len(),
        "each event ingested exactly once"
    );
}

#[test]
fn delivers_every_event_once_to_each_destination() {
    for api in Api::ALL {
        let server = TestServer::start(api_copy(&api), KEY);
        let s = setup(&api, &server, "");
        let r = run(&s, &track_events(250, "ok"), &["--batch-size", "100"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_all_delivered(&server, &keys(250, "ok"));
        assert_eq!(
            server.deliveries().values().sum::<usize>(),
            250,
            "nothing sent twice"
        );
        assert_eq!(r.summary["sent"], 250);
        assert_eq!(r.summary["requests"], 3);
        assert!(r.stdout.is_empty());
        let agent = server.received()[0]
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
            .map(|(_, v)| v.clone())
            .unwrap();
        assert!(agent.starts_with("segrelay/"), "{agent}");
    }
}

fn api_copy(api: &Api) -> Api {
    match api {
        Api::Amberflo => Api::Amberflo,
        Api::Orb => Api::Orb,
        Api::Kable => Api::Kable,
    }
}

#[test]
fn retries_server_errors_and_429_with_retry_after() {
    for api in Api::ALL {
        let server = TestServer::start(api_copy(&api), KEY);
        server.push_faults(vec![
            Fault::Status(500, String::new()),
            Fault::Status(503, String::new()),
            Fault::RetryAfter(429, "0".into()),
            Fault::Status(502, String::new()),
        ]);
        let s = setup(&api, &server, "");
        let r = run(&s, &track_events(40, "retry"), &["--batch-size", "20"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_all_delivered(&server, &keys(40, "retry"));
        assert_eq!(r.summary["retries"], 4);
        assert_eq!(r.summary["requests"], 6);
    }
}

#[test]
fn honours_retry_after_up_to_the_cap() {
    let server = TestServer::start(Api::Orb, KEY);
    server.push_faults(vec![Fault::RetryAfter(429, "1".into())]);
    let s = setup(&Api::Orb, &server, "");
    let started = Instant::now();
    let r = run(&s, &track_events(3, "ra"), &["--max-retry-wait", "5s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not waited for"
    );
    assert_all_delivered(&server, &keys(3, "ra"));

    // An HTTP date far in the future is capped by --max-retry-wait.
    let server = TestServer::start(Api::Orb, KEY);
    server.push_faults(vec![Fault::RetryAfter(
        503,
        "Fri, 01 Jan 2100 00:00:00 GMT".into(),
    )]);
    let s = setup(&Api::Orb, &server, "");
    let r = run(&s, &track_events(3, "date"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_all_delivered(&server, &keys(3, "date"));
}

#[test]
fn orb_transient_and_conflict_answers_are_retried() {
    let server = TestServer::start(Api::Orb, KEY);
    server.push_faults(vec![
        Fault::Transient(400),
        Fault::Status(409, "{\"status\":409}".into()),
    ]);
    let s = setup(&Api::Orb, &server, "");
    let r = run(&s, &track_events(5, "tr"), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary["retries"], 2);
    assert_all_delivered(&server, &keys(5, "tr"));
}

#[test]
fn timeouts_and_dropped_connections_are_retried() {
    for api in Api::ALL {
        let server = TestServer::start(api_copy(&api), KEY);
        server.push_faults(vec![Fault::Delay(Duration::from_millis(800)), Fault::Close]);
        let s = setup(&api, &server, "");
        let r = run(&s, &track_events(10, "slow"), &["--timeout", "200ms"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.summary["retries"].as_u64().unwrap() >= 2, "{}", r.summary);
        // The slow request may have been taken after the client gave up: the
        // destination dedupes it by key, so each event is ingested once.
        assert_all_delivered(&server, &keys(10, "slow"));
    }
}

#[test]
fn orb_validation_failures_reject_exactly_the_named_events() {
    for (shape, ingest_valid) in [
        (OrbFailureShape::ValidationFailed, false),
        (OrbFailureShape::Rfc7807, true),
    ] {
        let server = TestServer::start(Api::Orb, KEY);
        server.orb_reject_keys(&["v-3", "v-17"], shape, ingest_valid);
        let s = setup(&Api::Orb, &server, "");
        let r = run(&s, &track_events(30, "v"), &["--batch-size", "10"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(r.summary["sent"], 28);
        assert_eq!(r.summary["rejected"], 2);
        let rejected: Vec<&str> = r
            .rejects
            .iter()
            .map(|e| e["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(rejected, ["v-3", "v-17"]);
        for reject in &r.rejects {
            assert_eq!(reject["_segrelay"]["reason"], "refused by orb");
            assert!(!reject["_segrelay"]["detail"].as_str().unwrap().is_empty());
        }
        let deliveries = server.deliveries();
        assert!(!deliveries.contains_key("v-3") && !deliveries.contains_key("v-17"));
        let mut expected = keys(30, "v");
        expected.retain(|k| k != "v-3" && k != "v-17");
        assert_all_delivered(&server, &expected);
    }
}

#[test]
fn a_poisoned_event_is_isolated_by_halving_the_batch() {
    for api in [Api::Amberflo, Api::Kable] {
        let server = TestServer::start(api_copy(&api), KEY);
        server.poison("p-13");
        let s = setup(&api, &server, "");
        let r = run(&s, &track_events(32, "p"), &["--batch-size", "16"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(r.summary["rejected"], 1);
        assert_eq!(r.rejects.len(), 1);
        assert_eq!(r.rejects[0]["messageId"], "p-13");
        assert_eq!(r.rejects[0]["_segrelay"]["line"], 14);
        let mut expected = keys(32, "p");
        expected.retain(|k| k != "p-13");
        assert_all_delivered(&server, &expected);
        // 16 -> 8 -> 4 -> 2 -> 1: a refused request per level, plus the good halves, plus the clean batch.
        assert_eq!(r.summary["requests"], 1 + 2 * 4 + 1, "{}", r.summary);
    }
}

#[test]
fn too_large_batches_are_split() {
    let server = TestServer::start(Api::Kable, KEY);
    server.max_batch(30);
    let s = setup(&Api::Kable, &server, "");
    let r = run(&s, &track_events(100, "big"), &["--batch-size", "100"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_all_delivered(&server, &keys(100, "big"));
}

#[test]
fn a_refused_key_aborts_with_exit_3_and_loses_nothing() {
    for api in Api::ALL {
        let server = TestServer::start(api_copy(&api), "another-key-entirely");
        let s = setup(&api, &server, "");
        let r = run(&s, &track_events(120, "auth"), &["--batch-size", "50"]);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert_eq!(server.received().len(), 1, "no request after the refusal");
        // The batch refused and at most the next, read meanwhile, failed; the rest was not read.
        let failed = r.summary["failed"].as_u64().unwrap();
        assert!((50..=100).contains(&failed), "{}", r.summary);
        assert_eq!(r.rejects.len() as u64, failed);
        assert_eq!(r.summary["lines_not_read"], 120 - failed, "{}", r.summary);
        assert!(
            r.summary["stopped_at"]
                .as_str()
                .unwrap()
                .ends_with("events.ndjson:1")
        );
        assert!(r.stderr.contains("refused the API key"), "{}", r.stderr);
        // Where the key comes from, so the user knows what to fix.
        assert!(
            r.stderr.contains(".api_key in ") && r.stderr.contains("(from $"),
            "{}",
            r.stderr
        );
        assert!(r.summary["aborted"].as_str().unwrap().contains("401"));
    }
}

#[test]
fn an_unreachable_destination_aborts_after_the_retries() {
    let server = TestServer::start(Api::Orb, KEY);
    let s = setup(&Api::Orb, &server, "");
    drop(server);
    let r = run(&s, &track_events(7, "down"), &["--max-retries", "2"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.summary["failed"], 7);
    assert_eq!(r.summary["retries"], 2);
    assert_eq!(r.rejects.len(), 7);
    assert!(r.stderr.contains("gave up after 2 retries"), "{}", r.stderr);
}

#[test]
fn a_host_that_does_not_resolve_is_named_and_tried_once_more() {
    // A label longer than 63 bytes cannot be put in a DNS query: the resolver refuses it before
    // sending anything, so the test needs no network and makes no request.
    let host = format!("{}.invalid", "a".repeat(64));
    let job = Job::new(&destination_table(Api::Orb), &format!("https://{host}"), "");
    let r = run(&job, &track_events(3, "dns"), &["--max-retries", "6"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot resolve the host name {host}")),
        "{}",
        r.stderr
    );
    assert_eq!(r.summary["retries"], 1, "{}", r.summary);
    assert_eq!(r.summary["failed"], 3, "{}", r.summary);
}

#[test]
fn counts_in_messages_agree_with_their_nouns() {
    let server = TestServer::start(Api::Orb, KEY);
    let s = setup(&Api::Orb, &server, "");
    let r = run(&s, &track_events(1, "one"), &["-v"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(" ms, 1 event"), "{}", r.stderr);
    assert!(!r.stderr.contains("1 events"), "{}", r.stderr);
    drop(server);
    let r = run(&s, &track_events(1, "one"), &["--max-retries", "1"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("gave up after 1 retry)"), "{}", r.stderr);
}

#[test]
fn verbose_logs_status_and_request_id() {
    let server = TestServer::start(Api::Kable, KEY);
    let s = setup(&Api::Kable, &server, "");
    let r = run(&s, &track_events(3, "log"), &["-v"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("-> 200"), "{}", r.stderr);
    assert!(r.stderr.contains("request id"), "{}", r.stderr);
}

#[test]
fn rate_limits_space_requests_out() {
    let server = TestServer::start(Api::Kable, KEY);
    let s = setup(&Api::Kable, &server, "");
    let started = Instant::now();
    let r = run(
        &s,
        &track_events(5, "rate"),
        &["--batch-size", "1", "--rate", "20"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Five requests at 20 per second: the fifth cannot start before 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(200));

    let server = TestServer::start(Api::Orb, KEY);
    let s = setup(&Api::Orb, &server, "max_events_per_minute = 600\n");
    let started = Instant::now();
    let r = run(&s, &track_events(4, "epm"), &["--batch-size", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // 600 events a minute is one per 100 ms: the second batch of two waits 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_all_delivered(&server, &keys(4, "epm"));
}

#[test]
fn a_gzip_archive_of_thousands_of_events_survives_random_faults() {
    for api in Api::ALL {
        let server = TestServer::start(api_copy(&api), KEY);
        for n in [2, 5, 6, 9] {
            server.fault_on_request(n, Fault::Status(500, String::new()));
        }
        server.fault_on_request(4, Fault::Close);
        server.fault_on_request(7, Fault::RetryAfter(429, "0".into()));
        let s = setup(&api, &server, "");
        let path = s.dir.path().join("archive.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(track_events(3000, "gz").as_bytes()).unwrap();
        gz.finish().unwrap();
        let r = run_file(&s, &path, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.summary["sent"], 3000);
        assert_all_delivered(&server, &keys(3000, "gz"));
    }
}

#[test]
fn amberflo_identify_goes_to_customers() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "");
    let input = r#"{"type":"identify","userId":"cust_1","messageId":"i1","timestamp":"2026-11-23T10:00:00Z","traits":{"name":"Ada","email":"ada@example.com","plan":"pro"}}"#;
    let r = run(&s, input, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let customers = server.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["customerId"], "cust_1");
    assert_eq!(customers[0]["customerName"], "Ada");
    assert_eq!(customers[0]["traits"]["plan"], "pro");
}

#[test]
fn a_dry_run_writes_what_a_send_sends() {
    let server = TestServer::start(Api::Orb, KEY);
    let s = setup(&Api::Orb, &server, "");
    let input = track_events(12, "same");
    let r = run(&s, &input, &["--batch-size", "5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dry = run(&s, &input, &["--batch-size", "5", "--dry-run"]);
    let written: Vec<Value> = dry
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["body"].clone())
        .collect();
    let sent: Vec<Value> = server
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(written, sent);
}

/// `gzip_requests`: ingestion bodies travel gzipped and the server reads the
/// same records; customer calls stay plain JSON (the SDK that gzips does so for
/// `/ingest` alone); the dry run shows the header and the JSON.
#[test]
fn amberflo_ingestion_bodies_can_travel_gzipped() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "gzip_requests = true\n");
    let mut input = track_events(250, "gz");
    input.push_str(r#"{"type":"identify","userId":"cust_1","messageId":"i1","timestamp":"2026-11-23T10:00:00Z","traits":{"name":"Ada"}}"#);
    let args = ["--batch-size", "100", "--concurrency", "1"];
    let r = run(&s, &input, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_all_delivered(&server, &keys(250, "gz"));
    assert_eq!(server.customers()[0]["customerName"], "Ada");
    let received = server.received();
    assert_eq!(
        received.len(),
        5,
        "3 batches of usage, the customer's lookup and creation"
    );
    for request in &received {
        let gzipped = request.header("content-encoding") == Some("gzip");
        assert_eq!(gzipped, request.path == "/ingest", "{}", request.path);
        assert_eq!(request.status, 200);
    }
    let created = received
        .iter()
        .find(|r| r.method == "POST" && r.path == "/customers");
    assert_eq!(
        created.unwrap().header("content-type"),
        Some("application/json")
    );

    let dry = run(&s, &input, &[&args[..], &["--dry-run"]].concat());
    let written: Vec<Value> = dry
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), received.len());
    let sent_to = |path: &str| -> Vec<Value> {
        received
            .iter()
            .filter(|r| r.path == path && !r.body.is_empty())
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    };
    let written_to = |path: &str| -> Vec<Value> {
        written
            .iter()
            .filter(|l| l["url"].as_str().unwrap().ends_with(path) && !l["body"].is_null())
            .map(|l| l["body"].clone())
            .collect()
    };
    for path in ["/ingest", "/customers"] {
        assert_eq!(written_to(path), sent_to(path), "{path}");
    }
    for line in &written {
        let ingest = line["url"].as_str().unwrap().ends_with("/ingest");
        let encoding = &line["headers"]["content-encoding"];
        assert_eq!(encoding == "gzip", ingest, "{line}");
    }
}

#[test]
fn rate_limits_are_for_sending_not_for_dry_runs() {
    let server = TestServer::start(Api::Orb, KEY);
    let s = setup(&Api::Orb, &server, "max_events_per_minute = 60\n");
    let r = run(
        &s,
        &track_events(30, "dry"),
        &["--dry-run", "--batch-size", "10"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.summary["requests"], 3);
    assert_eq!(
        r.summary["backoff_seconds"], 0.0,
        "a dry run waited for a rate limit"
    );
    assert!(server.received().is_empty());
}

// ---------------------------------------------------------------------------
// Amberflo customers: identify merged into the record Amberflo holds
// ---------------------------------------------------------------------------

fn identify(id: &str, message_id: &str, traits: Value) -> String {
    let event = json!({
        "type": "identify", "userId": id, "messageId": message_id,
        "timestamp": "2026-11-23T10:00:00Z", "traits": traits,
    });
    format!("{event}\n")
}

fn track(id: &str, message_id: &str) -> String {
    let event = json!({
        "type": "track", "event": "api_call", "userId": id, "messageId": message_id,
        "timestamp": "2026-11-23T10:00:00Z",
    });
    format!("{event}\n")
}

fn customer(server: &TestServer, id: &str) -> Value {
    server
        .customers()
        .into_iter()
        .find(|c| c["customerId"] == id)
        .unwrap_or_else(|| panic!("no customer {id}"))
}

fn methods(requests: &[(String, String)], id: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|(_, c)| c == id)
        .map(|(m, _)| m.clone())
        .collect()
}

fn seeded_customer() -> Value {
    json!({
        "customerId": "cust_1", "customerName": "Ada Corp", "customerEmail": "billing@ada.example",
        "lifecycleStage": "ACTIVE",
        "traits": {"stripeId": "cus_9Xy", "awsm.customerIdentifier": "aws-77", "plan": "basic"},
    })
}

#[test]
fn amberflo_identify_keeps_what_it_does_not_change() {
    let server = TestServer::start(Api::Amberflo, KEY);
    server.amberflo_seed_customer(seeded_customer());
    let s = setup(&Api::Amberflo, &server, "");
    let input = identify("cust_1", "i1", json!({"plan": "pro", "seats": 5}));
    let r = run(&s, &input, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        (r.summary["sent"].as_u64(), r.summary["requests"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "PUT"]
    );
    assert_eq!(
        customer(&server, "cust_1"),
        json!({
            "customerId": "cust_1", "customerName": "Ada Corp", "customerEmail": "billing@ada.example",
            "lifecycleStage": "ACTIVE",
            "traits": {"stripeId": "cus_9Xy", "awsm.customerIdentifier": "aws-77", "plan": "pro", "seats": "5"},
        })
    );
}

#[test]
fn amberflo_a_second_run_of_the_same_input_writes_no_customer() {
    let server = TestServer::start(Api::Amberflo, KEY);
    server.amberflo_seed_customer(seeded_customer());
    let s = setup(&Api::Amberflo, &server, "");
    let input = [
        identify("cust_1", "i1", json!({"plan": "pro"})),
        track("cust_1", "t1"),
        identify(
            "cust_2",
            "i2",
            json!({"name": "Bee Ltd", "email": "b@bee.example"}),
        ),
        identify("cust_3", "i3", json!({})),
    ]
    .concat();
    let first = run(&s, &input, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let written = server.customer_requests();
    let before = server.customers();
    let second = run(&s, &input, &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let again = server.customer_requests().split_off(written.len());
    let lookups: Vec<&str> = again
        .iter()
        .map(|(m, c)| {
            assert_eq!(m, "GET", "{again:?}");
            c.as_str()
        })
        .collect();
    assert_eq!(lookups, ["cust_1", "cust_2", "cust_3"]);
    assert_eq!(
        second.summary["sent"], 4,
        "no write needed is sent: {}",
        second.summary
    );
    assert_eq!(
        second.summary["requests"], 4,
        "three lookups and the meter record"
    );
    assert_eq!(server.customers(), before);
    assert_eq!(customer(&server, "cust_3")["customerName"], "cust_3");
}

/// A customer's identifies are folded into one change, written once: no
/// older state is ever written after a newer one.
#[test]
fn amberflo_identifies_of_one_customer_are_written_once() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "");
    let input = [
        identify("cust_1", "i1", json!({"plan": "basic", "region": "eu"})),
        track("cust_1", "t1"),
        identify("cust_1", "i2", json!({"name": "Ada", "plan": "pro"})),
        identify("cust_1", "i3", json!({"email": "ada@example.com"})),
        identify("cust_1", "i4", json!({"plan": "pro"})),
    ]
    .concat();
    let r = run(&s, &input, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "POST"],
        "one lookup, one write holding the four identifies"
    );
    assert_eq!(r.summary["sent"], 5);
    assert_eq!(
        customer(&server, "cust_1"),
        json!({
            "customerId": "cust_1", "customerName": "Ada", "customerEmail": "ada@example.com",
            "traits": {"plan": "pro", "region": "eu"},
        })
    );
}

/// `--ensure-customers` and identify know the same customers: whichever meets
/// a customer first looks it up and writes the identifies folded, the other
/// asks nothing.
#[test]
fn amberflo_ensure_customers_and_identify_share_what_they_know() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "");
    let input = [
        track("cust_1", "t1"),
        identify("cust_1", "i1", json!({"name": "Ada"})),
        identify("cust_2", "i2", json!({"plan": "pro"})),
        track("cust_2", "t2"),
    ]
    .concat();
    let r = run(&s, &input, &["--ensure-customers"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let requests = server.customer_requests();
    assert_eq!(
        methods(&requests, "cust_1"),
        ["GET", "POST"],
        "created with the identify ahead: {requests:?}"
    );
    assert_eq!(
        methods(&requests, "cust_2"),
        ["GET", "POST"],
        "{requests:?}"
    );
    // Created before its meter record, active, with the name the identify gives.
    assert_eq!(
        customer(&server, "cust_1"),
        json!({"customerId": "cust_1", "customerName": "Ada", "lifecycleStage": "ACTIVE",
               "traits": {}})
    );
}

#[test]
fn amberflo_identify_replace_puts_the_event_fields_only() {
    let server = TestServer::start(Api::Amberflo, KEY);
    server.amberflo_seed_customer(seeded_customer());
    let s = setup(&Api::Amberflo, &server, "identify = \"replace\"\n");
    let r = run(&s, &identify("cust_1", "i1", json!({"plan": "pro"})), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "PUT"],
        "looked up, then replaced: Amberflo holds it"
    );
    assert_eq!(
        customer(&server, "cust_1"),
        json!({"customerId": "cust_1", "customerName": "cust_1", "traits": {"plan": "pro"}})
    );
}

#[test]
fn amberflo_identify_mode_is_merge_or_replace() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "identify = \"upsert\"\n");
    let r = support::segrelay()
        .args(["send", "--dry-run", "-c"])
        .arg(&s.settings)
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("[destinations.amberflo]")
            && stderr.contains("key \"identify\": \"upsert\""),
        "{stderr}"
    );
}

/// Two hosts: meter records to `endpoint`, customers and usage to `api_endpoint`.
#[test]
fn amberflo_customer_and_usage_calls_go_to_the_api_host() {
    let ingest = TestServer::start(Api::Amberflo, KEY);
    let api = TestServer::start(Api::Amberflo, KEY);
    let s = setup(
        &Api::Amberflo,
        &ingest,
        &format!("api_endpoint = \"{}\"\n", api.endpoint()),
    );
    let input = [
        identify("cust_1", "i1", json!({"name": "Ada"})),
        track("cust_1", "t1"),
        track("cust_2", "t2"),
    ]
    .concat();
    let r = run(&s, &input, &["--ensure-customers"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let paths = |server: &TestServer| -> Vec<String> {
        server
            .received()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    };
    assert_eq!(paths(&ingest), ["POST /ingest"]);
    assert_eq!(
        paths(&api),
        [
            "GET /customers",
            "POST /customers",
            "GET /customers",
            "POST /customers"
        ]
    );
    assert_eq!(ingest.ingested().len(), 2);
    assert_eq!(api.customers().len(), 2);

    let input_path = s.dir.path().join("events.ndjson");
    let verify = support::segrelay()
        .args(["verify", "--max-retry-wait", "20ms", "-c"])
        .arg(&s.settings)
        .arg(&input_path)
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    let queried: Vec<String> = paths(&api).into_iter().skip(4).collect();
    assert!(
        !queried.is_empty() && queried.iter().all(|p| p == "POST /usage"),
        "{queried:?}: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(paths(&ingest).len(), 1, "verify asked the ingestion host");
}

/// The dry run cannot look up: it shows the lookup and the creation, with the
/// customer's identifies folded, and says once that a real send writes only
/// what Amberflo's record lacks.
#[test]
fn amberflo_dry_run_shows_the_lookup_and_the_creation() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "");
    let input = [
        identify("cust_1", "i1", json!({"name": "Ada"})),
        identify("cust_2", "i2", json!({})),
        identify("cust_1", "i3", json!({"plan": "pro"})),
        identify("cust_1", "i4", json!({"plan": "pro"})),
    ]
    .concat();
    let r = run(&s, &input, &["--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(server.received().is_empty());
    let written: Vec<(String, String, Value)> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|l| {
            let url = l["url"].as_str().unwrap().replace(&server.endpoint(), "");
            (
                l["method"].as_str().unwrap().to_owned(),
                url,
                l["body"].clone(),
            )
        })
        .collect();
    let expected = [
        ("GET", "/customers?customerId=cust_1", Value::Null),
        (
            "POST",
            "/customers",
            json!({"customerId": "cust_1", "customerName": "Ada", "traits": {"plan": "pro"}}),
        ),
        ("GET", "/customers?customerId=cust_2", Value::Null),
        (
            "POST",
            "/customers",
            json!({"customerId": "cust_2", "customerName": "cust_2", "traits": {}}),
        ),
    ]
    .map(|(m, u, b)| (m.to_owned(), u.to_owned(), b));
    assert_eq!(written, expected);
    assert_eq!(r.summary["sent"], 4);
    assert_eq!(
        r.stderr.matches("a real send writes only what").count(),
        1,
        "{}",
        r.stderr
    );
}

#[test]
fn amberflo_refused_customer_calls_reject_the_identify() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "");
    server.push_faults(vec![Fault::Status(
        400,
        r#"{"message":"bad customer"}"#.into(),
    )]);
    let input = [
        identify("cust_1", "i1", json!({"name": "Ada"})),
        identify("cust_2", "i2", json!({"name": "Bee"})),
    ]
    .concat();
    let r = run(&s, &input, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        (r.summary["sent"].as_u64(), r.summary["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        r.summary["rejected_by_reason"]["refused by amberflo"], 1,
        "{}",
        r.summary
    );
    assert_eq!(r.rejects.len(), 1);
    assert_eq!(customer(&server, "cust_2")["customerName"], "Bee");
}

#[test]
fn amberflo_identify_without_a_usable_time_is_rejected() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let s = setup(&Api::Amberflo, &server, "");
    let input = [
        json!({"type": "identify", "userId": "cust_1", "messageId": "i1", "traits": {"name": "Ada"}}),
        json!({"type": "identify", "userId": "cust_2", "messageId": "i2", "timestamp": "yesterday"}),
    ]
    .map(|e| format!("{e}\n"))
    .concat();
    let r = run(&s, &input, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        r.summary["rejected_by_reason"]["no usable time"], 2,
        "{}",
        r.summary
    );
    assert!(server.received().is_empty());
}

/// A creation refused because the customer appeared meanwhile (409) is
/// followed by a fresh lookup, and the identify lands on what is there.
#[test]
fn amberflo_a_refused_creation_is_looked_up_again() {
    let server = TestServer::start(Api::Amberflo, KEY);
    server.fault_on_request(
        2,
        Fault::Status(409, r#"{"message":"customer exists"}"#.into()),
    );
    let s = setup(&Api::Amberflo, &server, "");
    let r = run(&s, &identify("cust_1", "i1", json!({"name": "Ada"})), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "POST", "GET", "POST"]
    );
    assert_eq!(r.summary["requests"], 4);
    assert_eq!(customer(&server, "cust_1")["customerName"], "Ada");
}

/// Numeric text in a mapped Orb property: sent as it came, with advice to list it
/// in numeric_properties; listed, it reaches Orb as a number.
#[test]
fn orb_numeric_text_is_advised_or_sent_as_numbers() {
    // Within Orb's grace period, so that the advice is the only warning.
    let recent = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let input: String = (0..3)
        .map(|i| {
            let event = json!({"type": "track", "event": "api_call", "userId": "cust_1",
                "messageId": format!("text-{i}"), "timestamp": recent, "receivedAt": recent,
                "properties": {"value": format!("{}", 1250 + i)}});
            format!("{event}\n")
        })
        .collect();
    let advice = "3 events carried Orb property \"value\" as numeric text (such as \"1250\"), \
                  which Orb does not sum: list it in numeric_properties";

    let server = TestServer::start(Api::Orb, KEY);
    let s = setup(&Api::Orb, &server, "");
    let r = run(&s, &input, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let values: Vec<Value> = server
        .ingested()
        .iter()
        .map(|e| e["properties"]["value"].clone())
        .collect();
    assert_eq!(values, [json!("1250"), json!("1251"), json!("1252")]);
    assert_eq!(r.summary["warnings"], json!([advice]), "{}", r.summary);
    assert_eq!(r.stderr.matches(advice).count(), 1, "{}", r.stderr);

    let server = TestServer::start(Api::Orb, KEY);
    let s = setup(&Api::Orb, &server, "numeric_properties = [\"value\"]\n");
    let r = run(&s, &input, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let values: Vec<Value> = server
        .ingested()
        .iter()
        .map(|e| e["properties"]["value"].clone())
        .collect();
    assert_eq!(values, [json!(1250), json!(1251), json!(1252)]);
    assert_eq!(r.summary["warnings"], json!([]), "{}", r.summary);
}

/// An Orb track event with this key, `hours_ago` hours before now (negative: ahead).
fn orb_event_at(key: &str, hours_ago: f64, value: i64) -> String {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs_f64(hours_ago * 3600.0);
    let event = json!({"type": "track", "event": "api_call", "userId": "cust_1", "messageId": key,
        "timestamp": at.to_string(), "receivedAt": at.to_string(), "properties": {"value": value}});
    format!("{event}\n")
}

fn check(setup: &Job, input: &str) -> (Value, String) {
    let input_path = setup.dir.path().join("events.ndjson");
    std::fs::write(&input_path, input).unwrap();
    let summary = setup.dir.path().join("check-summary.json");
    let output = support::segrelay()
        .args(["check", "-c"])
        .arg(&setup.settings)
        .arg("--summary")
        .arg(&summary)
        .arg(&input_path)
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    let summary = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    (
        summary,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn orb_says_how_many_events_its_grace_period_and_future_limit_refuse() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    let s = setup(&Api::Orb, &server, "");
    let mut input = String::new();
    for (i, hours_ago) in [400.0, 30.0, 13.0].iter().enumerate() {
        input.push_str(&orb_event_at(&format!("old-{i}"), *hours_ago, 1));
    }
    input.push_str(&orb_event_at("recent-0", 1.0, 1));
    input.push_str(&orb_event_at("recent-1", 11.0, 1));
    input.push_str(&orb_event_at("ahead", -2.0, 1));
    // Neither counted: skipped, and filtered out.
    input.push_str(r#"{"type":"page","userId":"cust_1","timestamp":"2021-01-01T00:00:00Z"}"#);
    input.push('\n');
    let too_old = "3 events are older than Orb's grace period (12 hours): Orb's ingest refuses such events; send them with --orb-backfill";
    let ahead = "1 event is more than 5 minutes in the future: Orb's ingest refuses such events (check the clock that stamped them)";
    let expected = json!([too_old, ahead]);

    let sent = run(&s, &input, &[]);
    assert_eq!(sent.summary["warnings"], expected, "{}", sent.stderr);
    assert_eq!(sent.summary["rejected_by_reason"]["refused by orb"], 4);
    let dry = run(&s, &input, &["--dry-run"]);
    assert_eq!(dry.summary["warnings"], expected);
    let (checked, check_stderr) = check(&s, &input);
    assert_eq!(checked["warnings"], expected);
    for stderr in [&sent.stderr, &dry.stderr, &check_stderr] {
        assert_eq!(
            stderr.matches(&format!("warning: {too_old}")).count(),
            1,
            "{stderr}"
        );
        assert_eq!(stderr.matches(ahead).count(), 1, "{stderr}");
        // Said early too, at the first old event, before the summary.
        let early = stderr
            .find("events.ndjson:1: this event")
            .expect("an early warning");
        assert!(early < stderr.find(too_old).unwrap(), "{stderr}");
    }

    // Filters come first: an event filtered out is not counted.
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(20);
    let filtered = run(&s, &input, &["--dry-run", "--since", &since.to_string()]);
    assert_eq!(
        filtered.summary["warnings"][0],
        "1 event is older than Orb's grace period (12 hours): Orb's ingest refuses such events; send them with --orb-backfill"
    );
}

#[test]
fn grace_period_hours_sets_what_counts_as_old() {
    let server = TestServer::start(Api::Orb, KEY);
    let mut input = String::new();
    for (i, hours_ago) in [2.0, 5.0, 30.0].iter().enumerate() {
        input.push_str(&orb_event_at(&format!("e-{i}"), *hours_ago, 1));
    }
    for (setting, expected) in [
        (
            "",
            json!([
                "1 event is older than Orb's grace period (12 hours): Orb's ingest refuses such events; send them with --orb-backfill"
            ]),
        ),
        (
            "grace_period_hours = 3\n",
            json!([
                "2 events are older than Orb's grace period (3 hours): Orb's ingest refuses such events; send them with --orb-backfill"
            ]),
        ),
        ("grace_period_hours = 48\n", json!([])),
    ] {
        let s = setup(&Api::Orb, &server, setting);
        let dry = run(&s, &input, &["--dry-run"]);
        assert_eq!(dry.code, 0, "{}", dry.stderr);
        assert_eq!(dry.summary["warnings"], expected, "{setting}");
        if expected == json!([]) {
            assert!(!dry.stderr.contains("grace"), "{}", dry.stderr);
        }
    }
    for bad in ["grace_period_hours = 0\n", "grace_period_hours = \"12h\"\n"] {
        let s = setup(&Api::Orb, &server, bad);
        let output = support::segrelay()
            .args(["check", "-c"])
            .arg(&s.settings)
            .write_stdin(input.clone())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("grace_period_hours"), "{stderr}");
    }
}
