//! Amberflo customers written once a run: a customer's identifies are folded
//! into one change before it is compared with the record Amberflo holds, so a
//! re-run of the same input writes no customer, no run writes an older state
//! after a newer one, and `--ensure-customers` creates each customer with its
//! identifies before its first meter record.

use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, KEY_VAR, Sent};
use crate::support::server::{Api, Fault, TestServer};

const KEY: &str = "sk_test_customers_key_07";

fn identify(id: &str, message_id: &str, traits: Value) -> Value {
    json!({"type": "identify", "userId": id, "messageId": message_id,
           "timestamp": "2026-11-23T10:00:00Z", "traits": traits})
}

fn track(id: &str, message_id: &str) -> Value {
    json!({"type": "track", "event": "api_call", "userId": id, "messageId": message_id,
           "timestamp": "2026-11-23T10:00:00Z"})
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// A job whose meter records go to `ingest` and customer calls to `api`.
fn job(ingest: &TestServer, api: &TestServer, events: &[Value]) -> Job {
    let table = format!(
        "[destinations.amberflo]\napi_endpoint = \"{}\"\n",
        api.endpoint()
    );
    Job::new(&table, &ingest.endpoint(), &lines(events))
}

fn send(job: &Job, extra: &[&str]) -> Sent {
    job.sent(KEY, &[&["--max-retry-wait", "20ms"], extra].concat())
}

/// The methods of the customer requests for `id` among `requests`.
fn methods(requests: &[(String, String)], id: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|(_, c)| c == id)
        .map(|(m, _)| m.clone())
        .collect()
}

/// The bodies of the customer writes (`POST`, `PUT`) the server received.
fn writes(api: &TestServer) -> Vec<Value> {
    api.received()
        .iter()
        .filter(|r| r.path == "/customers" && (r.method == "POST" || r.method == "PUT"))
        .map(|r| r.json())
        .collect()
}

fn record(api: &TestServer, id: &str) -> Value {
    api.customers()
        .into_iter()
        .find(|c| c["customerId"] == id)
        .unwrap_or_else(|| panic!("no customer {id}"))
}

/// A name, then a plan that replaces an older one: one write holding both,
/// and a second run of the same input writes nothing (it only looks up).
#[test]
fn a_customer_identified_twice_is_written_once_and_not_again() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let events = [
        identify("cust_1", "i1", json!({"name": "Ada", "plan": "basic"})),
        track("cust_1", "t1"),
        identify("cust_1", "i2", json!({"plan": "pro"})),
    ];
    let job = job(&server, &server, &events);
    let first = send(&job, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "POST"]
    );
    let held = json!({"customerId": "cust_1", "customerName": "Ada", "traits": {"plan": "pro"}});
    assert_eq!(
        writes(&server),
        std::slice::from_ref(&held),
        "one write holding both"
    );
    assert_eq!(first.summary["sent"], 3, "{}", first.summary);

    let before = server.customer_requests().len();
    let second = send(&job, &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let again = server.customer_requests().split_off(before);
    assert_eq!(methods(&again, "cust_1"), ["GET"], "no write: {again:?}");
    assert_eq!(second.summary["sent"], 3, "{}", second.summary);
    assert_eq!(record(&server, "cust_1"), held);
}

/// Aborted after a customer's identifies were written, before the checkpoint
/// passed them: the older plan was never written, not even for a moment, and
/// the resume writes the customer no more.
#[test]
fn an_aborted_run_and_its_resume_never_write_the_older_plan() {
    let ingest = TestServer::start(Api::Amberflo, KEY);
    let api = TestServer::start(Api::Amberflo, KEY);
    let events = [
        identify("cust_1", "i1", json!({"name": "Ada", "plan": "basic"})),
        identify("cust_1", "i2", json!({"plan": "pro"})),
        identify("cust_2", "i3", json!({"name": "Bee"})),
        track("cust_1", "t1"),
        track("cust_2", "t2"),
    ];
    let job = job(&ingest, &api, &events);
    // cust_1's lookup and write, then cust_2's lookup fails: the run stops.
    api.fault_on_request(3, Fault::Status(503, String::new()));
    let checkpoint = job.path("checkpoint.json");
    let args = [
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--max-retries",
        "0",
        "--batch-size",
        "1",
    ];
    let aborted = send(&job, &args);
    assert_eq!(aborted.code, 3, "{}", aborted.stderr);
    assert_eq!(
        api.customer_requests(),
        [
            ("GET".to_owned(), "cust_1".to_owned()),
            ("POST".to_owned(), "cust_1".to_owned()),
            ("GET".to_owned(), "cust_2".to_owned()),
        ]
    );
    let resumed = send(&job, &args);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stderr, resumed.summary);
    let requests = api.customer_requests();
    assert_eq!(
        methods(&requests, "cust_1"),
        ["GET", "POST"],
        "{requests:?}"
    );
    let plans: Vec<Value> = writes(&api)
        .into_iter()
        .filter(|w| w["customerId"] == "cust_1")
        .map(|w| w["traits"]["plan"].clone())
        .collect();
    assert_eq!(plans, [json!("pro")], "the older plan is never written");
    assert_eq!(
        record(&api, "cust_1"),
        json!({"customerId": "cust_1", "customerName": "Ada", "traits": {"plan": "pro"}})
    );
    assert_eq!(record(&api, "cust_2")["customerName"], "Bee");
    let summary = &resumed.summary;
    assert_eq!(
        (summary["read"].as_u64(), summary["sent"].as_u64()),
        (Some(3), Some(3)),
        "{summary}"
    );
    assert_eq!(ingest.ingested().len(), 2);
}

/// With `--ensure-customers`, a customer whose first meter record comes before
/// its identifies is created with them, before the record is sent, and is not
/// written again when the identifies come; a re-run writes nothing.
#[test]
fn ensure_customers_creates_the_customer_with_its_identifies_before_its_usage() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let events = [
        track("cust_1", "t1"),
        identify("cust_1", "i1", json!({"name": "Ada", "plan": "basic"})),
        track("cust_1", "t2"),
        identify("cust_1", "i2", json!({"plan": "pro"})),
    ];
    let job = job(&server, &server, &events);
    let first = send(&job, &["--ensure-customers", "--batch-size", "1"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "POST"]
    );
    let received = server.received();
    let created = received
        .iter()
        .find(|r| r.method == "POST" && r.path == "/customers")
        .unwrap();
    let first_record = received.iter().find(|r| r.path == "/ingest").unwrap();
    assert!(
        created.handled_before(first_record),
        "the customer existed before its first meter record"
    );
    let held = json!({"customerId": "cust_1", "customerName": "Ada", "lifecycleStage": "ACTIVE",
                      "traits": {"plan": "pro"}});
    assert_eq!(record(&server, "cust_1"), held);
    assert_eq!(first.summary["sent"], 4, "{}", first.summary);

    let before = server.customer_requests().len();
    let second = send(&job, &["--ensure-customers", "--batch-size", "1"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let again = server.customer_requests().split_off(before);
    assert_eq!(methods(&again, "cust_1"), ["GET"], "{again:?}");
    assert_eq!(record(&server, "cust_1"), held);
}

/// `--limit` stops the folding where the run stops: an identify past it is
/// not written ahead of its turn. Identifies in an envelope are folded too.
#[test]
fn identifies_past_the_limit_are_not_folded_in() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let envelope = json!({"batch": [
        identify("cust_1", "i2", json!({"plan": "pro"})),
        identify("cust_1", "i3", json!({"seats": "5"})),
    ]});
    let events = [
        identify("cust_1", "i1", json!({"name": "Ada"})),
        track("cust_1", "t1"),
        envelope,
    ];
    let job = job(&server, &server, &events);
    let limited = send(&job, &["--limit", "3"]);
    assert_eq!(limited.code, 0, "{}", limited.stderr);
    assert_eq!(limited.summary["read"], 3, "{}", limited.summary);
    assert_eq!(
        writes(&server),
        [json!({"customerId": "cust_1", "customerName": "Ada", "traits": {"plan": "pro"}})],
        "i3, the fourth event, is past the limit"
    );
    let whole = send(&job, &[]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "POST", "GET", "PUT"]
    );
    assert_eq!(
        record(&server, "cust_1"),
        json!({"customerId": "cust_1", "customerName": "Ada",
               "traits": {"plan": "pro", "seats": "5"}})
    );
}

/// Standard input is read once: its identifies are written as they come, and
/// the run says what that means for a re-run.
#[test]
fn from_standard_input_each_identify_is_written_and_the_run_says_so() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let events = [
        identify("cust_1", "i1", json!({"name": "Ada", "plan": "basic"})),
        identify("cust_1", "i2", json!({"plan": "pro"})),
    ];
    let job = job(&server, &server, &events);
    let output = support::segrelay()
        .arg("send")
        .arg("-c")
        .arg(&job.settings)
        .arg("-")
        .env(KEY_VAR, KEY)
        .write_stdin(lines(&events))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        methods(&server.customer_requests(), "cust_1"),
        ["GET", "POST", "PUT"]
    );
    assert_eq!(
        stderr.matches("standard input is read once").count(),
        1,
        "{stderr}"
    );
    assert_eq!(record(&server, "cust_1")["traits"]["plan"], "pro");
}
