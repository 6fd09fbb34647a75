//! Self-test of the imitation destination server in `tests/support/server.rs`.

#[path = "support/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::{Api, Fault, OrbFailureShape, TestServer};

const KEY: &str = "sk_test_secret";
const ALL: [Api; 3] = [Api::Amberflo, Api::Orb, Api::Kable];

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn agent_with_timeout(d: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(d))
        .build()
        .into()
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, ureq::Error> {
    let mut response = match method {
        "GET" | "DELETE" => {
            let mut rb = if method == "GET" {
                agent.get(url)
            } else {
                agent.delete(url)
            };
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            rb.call()?
        }
        _ => {
            let mut rb = match method {
                "PUT" => agent.put(url),
                "PATCH" => agent.patch(url),
                _ => agent.post(url),
            };
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            rb.send(body)?
        }
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.body_mut().read_to_string()?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn ingest_url(server: &TestServer) -> String {
    match server.api() {
        Api::Amberflo => format!("{}/ingest", server.endpoint()),
        Api::Orb => format!("{}/ingest", server.endpoint()),
        Api::Kable => format!("{}/api/v1/events/create", server.endpoint()),
    }
}

fn auth_headers(api: Api, key: &str) -> Vec<(&'static str, String)> {
    match api {
        Api::Amberflo => vec![("X-API-KEY", key.to_string())],
        Api::Orb => vec![("Authorization", format!("Bearer {key}"))],
        Api::Kable => vec![
            ("KABLE-CLIENT-ID", "kci_test".to_string()),
            ("KABLE-CLIENT-SECRET", key.to_string()),
        ],
    }
}

fn send_with(
    agent: &ureq::Agent,
    server: &TestServer,
    key: &str,
    query: &str,
    body: &Value,
) -> Result<Answer, ureq::Error> {
    let headers = auth_headers(server.api(), key);
    let mut headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push(("Content-Type", "application/json"));
    call(
        agent,
        "POST",
        &format!("{}{query}", ingest_url(server)),
        &headers,
        &body.to_string(),
    )
}

/// POST a body to the server's ingest path with the right key.
fn send(server: &TestServer, body: &Value) -> Answer {
    send_with(&agent(), server, KEY, "", body).expect("a response")
}

fn event(api: Api, key: &str) -> Value {
    match api {
        Api::Amberflo => json!({
            "uniqueId": key, "customerId": "cust_1", "meterApiName": "ApiCalls", "meterValue": 2.5,
            "meterTimeInMillis": 1619445706909i64, "dimensions": {"region": "us-west-2"}
        }),
        Api::Orb => json!({
            "idempotency_key": key, "external_customer_id": "cust_1", "event_name": "ApiCalls",
            "timestamp": "2021-04-26T14:01:46.909Z", "properties": {"region": "us-west-2", "value": 2.5}
        }),
        Api::Kable => json!({
            "clientId": "cust_1", "timestamp": "2021-04-26T14:01:46.909Z", "transactionId": key,
            "data": {"value": 2.5, "nested": {"ok": true}}
        }),
    }
}

fn batch_of(api: Api, events: Vec<Value>) -> Value {
    match api {
        Api::Orb => json!({ "events": events }),
        Api::Amberflo | Api::Kable => Value::Array(events),
    }
}

fn batch(api: Api, keys: &[&str]) -> Value {
    batch_of(api, keys.iter().map(|k| event(api, k)).collect())
}

fn deliveries(server: &TestServer) -> Vec<(String, usize)> {
    server.deliveries().into_iter().collect()
}

fn counts(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn ingested_keys(server: &TestServer) -> Vec<String> {
    server
        .ingested()
        .iter()
        .map(|e| {
            ["uniqueId", "idempotency_key", "transactionId"]
                .iter()
                .find_map(|k| e.get(*k).and_then(Value::as_str))
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn assert_success_body(api: Api, answer: &Answer, n: usize) {
    assert_eq!(answer.status, 200, "{answer:?}");
    match api {
        Api::Amberflo => assert_eq!(answer.body, format!("{n} records were ingested")),
        Api::Orb => assert_eq!(answer.json(), json!({"validation_failed": []})),
        Api::Kable => assert_eq!(answer.body, ""),
    }
}

#[test]
fn each_api_accepts_a_valid_batch_and_records_it() {
    for api in ALL {
        let server = TestServer::start(api, KEY);
        let answer = send(&server, &batch(api, &["a", "b"]));
        assert_success_body(api, &answer, 2);
        match api {
            Api::Amberflo => assert!(answer.header("x-request-id").is_some()),
            Api::Kable => assert!(answer.header("X-REQUEST-ID").is_some()),
            Api::Orb => {}
        }
        let received = server.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].method, "POST");
        assert_eq!(received[0].status, 200);
        assert_eq!(received[0].json(), batch(api, &["a", "b"]));
        assert_eq!(received[0].event_count(), 2);
        assert_eq!(
            deliveries(&server),
            counts(&[("a", 1), ("b", 1)]),
            "{api:?}"
        );
        assert_eq!(ingested_keys(&server), ["a", "b"]);

        // A re-sent key counts as a delivery again but is not ingested twice.
        let answer = send(&server, &batch(api, &["b", "c"]));
        assert_success_body(api, &answer, 2);
        assert_eq!(
            deliveries(&server),
            counts(&[("a", 1), ("b", 2), ("c", 1)]),
            "{api:?}"
        );
        assert_eq!(ingested_keys(&server), ["a", "b", "c"]);
        assert_eq!(server.ingested()[0], event(api, "a"));
    }
}

#[test]
fn paths_match_the_endpoint_setting() {
    let orb = TestServer::start(Api::Orb, KEY);
    assert!(orb.endpoint().ends_with("/v1"));
    send(&orb, &batch(Api::Orb, &["x"]));
    assert_eq!(orb.received()[0].path, "/v1/ingest");

    let kable = TestServer::start(Api::Kable, KEY);
    assert!(kable.endpoint().starts_with("http://127.0.0.1:"));
    send(&kable, &batch(Api::Kable, &["x"]));
    assert_eq!(kable.received()[0].path, "/api/v1/events/create");

    let amberflo = TestServer::start(Api::Amberflo, KEY);
    send(&amberflo, &batch(Api::Amberflo, &["x"]));
    assert_eq!(amberflo.received()[0].path, "/ingest");
}

/// Bodies copied from `segrelay send --dry-run -c samples/segrelay.toml samples/events.ndjson`.
#[test]
fn segrelay_dry_run_bodies_are_accepted() {
    let amberflo = TestServer::start(Api::Amberflo, KEY);
    let body = json!([
        {"uniqueId":"msg-track-1","customerId":"some_user_id","meterApiName":"ApiCalls","meterValue":2.0,"meterTimeInMillis":1619445706909i64,"dimensions":{"region":"us-west-2"}},
        {"uniqueId":"msg-track-2","customerId":"cust_42","meterApiName":"tokens_used","meterValue":1250,"meterTimeInMillis":1619445900500i64,"dimensions":{"model":"gpt-4o","segmentX":"important data point","usage.cached":"false","usage.tokens":"1250"}},
        {"uniqueId":"msg-page-1","customerId":"some_user_id","meterApiName":"page","meterValue":1,"meterTimeInMillis":1619445706909i64,"dimensions":{"browser":"Chrome","keywords":"paper,comedy","name":"Home","path":"_home","referrer":"https:__google.com","search":"schrute farms","title":"Welcome _ Initech","url":"https:__segment.com"}},
        {"uniqueId":"msg-batch-1","customerId":"cust_7","meterApiName":"ApiCalls","meterValue":10,"meterTimeInMillis":1619514000000i64,"dimensions":{}}
    ]);
    assert_success_body(Api::Amberflo, &send(&amberflo, &body), 4);
    let customer = json!({"customerId":"some_user_id","customerName":"John Doe","customerEmail":"john.doe@email.com","traits":{"avatar":"https:__s3.amazonaws.com_uifaces_faces_twitter_scottkclark_128.jpg","logins":"5","phone":"650-769-3240","plan":"premium"}});
    let answer = call(
        &agent(),
        "PUT",
        &format!("{}/customers", amberflo.endpoint()),
        &[("x-api-key", KEY), ("content-type", "application/json")],
        &customer.to_string(),
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(amberflo.customers(), [customer]);

    let orb = TestServer::start(Api::Orb, KEY);
    let body = json!({"events":[
        {"idempotency_key":"msg-track-1","external_customer_id":"some_user_id","event_name":"ApiCalls","timestamp":"2021-04-26T14:01:46.909Z","properties":{"region":"us-west-2","value":2.0}},
        {"idempotency_key":"msg-track-2","external_customer_id":"cust_42","event_name":"tokens_used","timestamp":"2021-04-26T14:05:00.500Z","properties":{"model":"gpt-4o","tokens":1250,"value":"1250"}},
        {"idempotency_key":"msg-batch-1","external_customer_id":"cust_7","event_name":"ApiCalls","timestamp":"2021-04-27T09:00:00.000Z","properties":{"value":10}}
    ]});
    assert_success_body(Api::Orb, &send(&orb, &body), 3);

    let kable = TestServer::start(Api::Kable, KEY);
    let body = json!([
        {"clientId":"some_user_id","timestamp":"2021-04-26T14:01:46.909Z","transactionId":"msg-track-1","data":{"region":"us-west-2","value":2.0}},
        {"clientId":"cust_42","timestamp":"2021-04-26T14:05:00.500Z","transactionId":"msg-track-2","data":{"kableX":"important data point","model":"gpt-4o","tokens":1250,"usage":{"cached":false},"value":"1250"}}
    ]);
    assert_success_body(Api::Kable, &send(&kable, &body), 2);
    assert_eq!(kable.ingested().len(), 2);
}

#[test]
fn a_bad_key_gets_401_and_nothing_is_ingested() {
    for api in ALL {
        let server = TestServer::start(api, KEY);
        let wrong = send_with(&agent(), &server, "wrong", "", &batch(api, &["a"])).unwrap();
        assert_eq!(wrong.status, 401, "{api:?}");
        let none = call(&agent(), "POST", &ingest_url(&server), &[], "[]").unwrap();
        assert_eq!(none.status, 401, "{api:?}");
        match api {
            Api::Amberflo => {
                assert!(!wrong.body.is_empty());
                assert!(wrong.header("x-request-id").is_some());
            }
            Api::Orb => {
                let body = wrong.json();
                assert_eq!(body["status"], 401);
                assert_eq!(
                    body["type"],
                    "https://docs.withorb.com/reference/error-responses#401-authentication-error"
                );
                assert_eq!(body["title"], "Authentication error");
                assert!(body["detail"].is_string());
                let basic = call(
                    &agent(),
                    "POST",
                    &ingest_url(&server),
                    &[("Authorization", &format!("Basic {KEY}"))],
                    "{\"events\":[]}",
                )
                .unwrap();
                assert_eq!(basic.status, 401);
            }
            Api::Kable => {
                assert_eq!(wrong.json(), json!({"message": "Unauthorized"}));
                let wrong_client = call(
                    &agent(),
                    "POST",
                    &ingest_url(&server),
                    &[
                        ("KABLE-CLIENT-ID", "kci_other"),
                        ("KABLE-CLIENT-SECRET", KEY),
                    ],
                    "[]",
                )
                .unwrap();
                assert_eq!(wrong_client.status, 401);
            }
        }
        assert!(server.ingested().is_empty());
        assert!(server.deliveries().is_empty());
        assert!(server.received().iter().all(|r| r.status == 401));
    }
}

#[test]
fn status_retry_after_and_transient_faults() {
    let server = TestServer::start(Api::Orb, KEY);
    server.push_faults(vec![
        Fault::Status(500, "{\"oops\":true}".into()),
        Fault::Status(503, "down for maintenance".into()),
        Fault::RetryAfter(429, "2".into()),
        Fault::RetryAfter(503, "Wed, 21 Oct 2015 07:28:00 GMT".into()),
        Fault::Transient(502),
        Fault::Status(409, String::new()),
    ]);
    let b = batch(Api::Orb, &["k"]);
    let a1 = send(&server, &b);
    assert_eq!((a1.status, a1.json()), (500, json!({"oops": true})));
    assert!(a1.header("content-type").unwrap().contains("json"));
    let a2 = send(&server, &b);
    assert_eq!((a2.status, a2.body.as_str()), (503, "down for maintenance"));
    let a3 = send(&server, &b);
    assert_eq!(a3.status, 429);
    assert_eq!(a3.header("retry-after"), Some("2"));
    assert_eq!(a3.json()["status"], 429);
    let a4 = send(&server, &b);
    assert_eq!(a4.status, 503);
    assert_eq!(
        a4.header("Retry-After"),
        Some("Wed, 21 Oct 2015 07:28:00 GMT")
    );
    let a5 = send(&server, &b);
    assert_eq!(a5.status, 502);
    assert_eq!(a5.header("transient-error"), Some("true"));
    assert!(a3.header("transient-error").is_none());
    let a6 = send(&server, &b);
    assert_eq!(a6.status, 409);
    assert_eq!(
        a6.json()["status"],
        409,
        "an empty body gets Orb's RFC 7807 body"
    );
    assert!(
        server.ingested().is_empty(),
        "faulted requests ingest nothing"
    );
    // The queue is empty: normal handling resumes.
    assert_success_body(Api::Orb, &send(&server, &b), 1);
    let statuses: Vec<u16> = server.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 503, 429, 503, 502, 409, 200]);
    assert_eq!(deliveries(&server), counts(&[("k", 1)]));
}

#[test]
fn fault_on_request_targets_the_nth_request() {
    let server = TestServer::start(Api::Amberflo, KEY);
    server.fault_on_request(2, Fault::Status(503, String::new()));
    server.fault_on_request(4, Fault::Transient(500));
    let statuses: Vec<u16> = (0..5)
        .map(|i| send(&server, &batch(Api::Amberflo, &[&format!("k{i}")])).status)
        .collect();
    assert_eq!(statuses, [200, 503, 200, 500, 200]);
    assert_eq!(ingested_keys(&server), ["k0", "k2", "k4"]);

    // A request with its own fault leaves the queue for the next ones.
    server.push_faults(vec![Fault::Status(502, "queued".into())]);
    server.fault_on_request(6, Fault::Status(429, "sixth".into()));
    let a6 = send(&server, &batch(Api::Amberflo, &["x"]));
    let a7 = send(&server, &batch(Api::Amberflo, &["x"]));
    let a8 = send(&server, &batch(Api::Amberflo, &["x"]));
    assert_eq!((a6.status, a6.body.as_str()), (429, "sixth"));
    assert_eq!((a7.status, a7.body.as_str()), (502, "queued"));
    assert_eq!(a8.status, 200);
}

#[test]
fn faulted_errors_without_a_body_use_the_api_error_body() {
    let kable = TestServer::start(Api::Kable, KEY);
    kable.push_faults(vec![
        Fault::Status(500, String::new()),
        Fault::RetryAfter(500, "1".into()),
    ]);
    let a = send(&kable, &batch(Api::Kable, &["a"]));
    assert_eq!(a.status, 500);
    assert_eq!(a.json(), json!({"message": "Something went wrong"}));
    assert!(a.header("x-request-id").is_some());
    let a = send(&kable, &batch(Api::Kable, &["a"]));
    assert_eq!(a.json(), json!({"message": "Something went wrong"}));
    assert_eq!(a.header("retry-after"), Some("1"));

    let amberflo = TestServer::start(Api::Amberflo, KEY);
    amberflo.push_faults(vec![Fault::Status(500, String::new())]);
    let a = send(&amberflo, &batch(Api::Amberflo, &["a"]));
    assert_eq!(a.status, 500);
    assert!(!a.body.is_empty());
    assert!(a.header("X-Request-Id").is_some());
}

#[test]
fn delay_fault_and_latency() {
    let server = TestServer::start(Api::Kable, KEY);
    let delay = Duration::from_millis(300);
    server.push_faults(vec![Fault::Delay(delay)]);
    let start = Instant::now();
    let answer = send(&server, &batch(Api::Kable, &["slow"]));
    assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
    assert_success_body(Api::Kable, &answer, 1);
    assert_eq!(deliveries(&server), counts(&[("slow", 1)]));

    // A client that gives up early sees a transport error; the server handles the request anyway.
    server.push_faults(vec![Fault::Delay(delay)]);
    let quick = agent_with_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let result = send_with(&quick, &server, KEY, "", &batch(Api::Kable, &["late"]));
    assert!(result.is_err(), "{result:?}");
    assert!(start.elapsed() < delay);
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.received()[1].status == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.received()[1].status, 200);
    assert_eq!(ingested_keys(&server), ["slow", "late"]);

    let latency = Duration::from_millis(150);
    server.latency(latency);
    let start = Instant::now();
    assert_eq!(send(&server, &batch(Api::Kable, &["x"])).status, 200);
    assert!(start.elapsed() >= latency);
    let start = Instant::now();
    let bad = send_with(&agent(), &server, "wrong", "", &batch(Api::Kable, &["x"])).unwrap();
    assert_eq!(bad.status, 401);
    assert!(
        start.elapsed() >= latency,
        "latency applies to every answer"
    );
}

#[test]
fn close_fault_gives_a_transport_error() {
    for api in ALL {
        let server = TestServer::start(api, KEY);
        let agent = agent();
        // Warm a pooled keep-alive connection first, then close on the next request.
        assert_eq!(
            send_with(&agent, &server, KEY, "", &batch(api, &["a"]))
                .unwrap()
                .status,
            200
        );
        server.push_faults(vec![Fault::Close]);
        let result = send_with(&agent, &server, KEY, "", &batch(api, &["b"]));
        assert!(result.is_err(), "{api:?}: {result:?}");
        let received = server.received();
        assert_eq!(received.len(), 2, "{api:?}: the request was read once");
        assert_eq!(received[1].status, 0);
        assert_eq!(received[1].json(), batch(api, &["b"]));
        assert_eq!(ingested_keys(&server), ["a"]);
        // Normal handling resumes.
        assert_eq!(
            send_with(&agent, &server, KEY, "", &batch(api, &["b"]))
                .unwrap()
                .status,
            200
        );
        assert_eq!(ingested_keys(&server), ["a", "b"]);
    }
}

#[test]
fn poison_refuses_the_whole_batch() {
    for api in [Api::Amberflo, Api::Kable] {
        let server = TestServer::start(api, KEY);
        server.poison("bad");
        let answer = send(&server, &batch(api, &["good1", "bad", "good2"]));
        assert_eq!(answer.status, 400, "{api:?}");
        match api {
            Api::Amberflo => assert!(serde_json::from_str::<Value>(&answer.body).is_err()),
            _ => assert!(answer.json()["message"].is_string()),
        }
        assert!(server.ingested().is_empty());
        assert!(server.deliveries().is_empty());
        assert_success_body(api, &send(&server, &batch(api, &["good1", "good2"])), 2);
        assert_eq!(deliveries(&server), counts(&[("good1", 1), ("good2", 1)]));
        assert_eq!(send(&server, &batch(api, &["bad"])).status, 400);
    }
}

#[test]
fn orb_reject_keys_validation_failed_shape() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_reject_keys(&["k2", "k4"], OrbFailureShape::ValidationFailed, false);
    let answer = send(&server, &batch(Api::Orb, &["k1", "k2", "k3", "k4"]));
    assert_eq!(answer.status, 400);
    let body = answer.json();
    let failed = body["validation_failed"].as_array().unwrap();
    let keys: Vec<&str> = failed
        .iter()
        .map(|f| f["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k2", "k4"]);
    for f in failed {
        let errors = f["validation_errors"].as_array().unwrap();
        assert!(!errors.is_empty() && errors.iter().all(Value::is_string));
    }
    assert!(server.ingested().is_empty());
    assert!(server.deliveries().is_empty());
    // Without the rejected keys the batch goes through.
    assert_success_body(Api::Orb, &send(&server, &batch(Api::Orb, &["k1", "k3"])), 2);

    // ingest_valid: the valid events of the refused batch are ingested (not counted as deliveries,
    // since the answer was not 2xx); re-sending them is deduplicated.
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_reject_keys(&["k2"], OrbFailureShape::ValidationFailed, true);
    let answer = send(&server, &batch(Api::Orb, &["k1", "k2", "k3"]));
    assert_eq!(answer.status, 400);
    assert_eq!(ingested_keys(&server), ["k1", "k3"]);
    assert!(server.deliveries().is_empty());
    assert_success_body(Api::Orb, &send(&server, &batch(Api::Orb, &["k1", "k3"])), 2);
    assert_eq!(deliveries(&server), counts(&[("k1", 1), ("k3", 1)]));
    assert_eq!(ingested_keys(&server), ["k1", "k3"]);
}

#[test]
fn orb_reject_keys_rfc7807_shape() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_reject_keys(&["k2"], OrbFailureShape::Rfc7807, false);
    let answer = send(&server, &batch(Api::Orb, &["k1", "k2"]));
    assert_eq!(answer.status, 400);
    let body = answer.json();
    assert_eq!(body["status"], 400);
    assert_eq!(
        body["type"],
        "https://docs.withorb.com/reference/error-responses#400-request-validation-errors"
    );
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert!(body.get("validation_failed").is_none());
    let errors = body["validation_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["idempotency_key"], "k2");
    assert!(
        !errors[0]["validation_errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(server.ingested().is_empty());
}

#[test]
fn max_batch_gives_413() {
    for api in ALL {
        let server = TestServer::start(api, KEY);
        server.max_batch(2);
        let answer = send(&server, &batch(api, &["a", "b", "c"]));
        assert_eq!(answer.status, 413, "{api:?}");
        assert!(server.ingested().is_empty());
        assert_success_body(api, &send(&server, &batch(api, &["a", "b"])), 2);
    }
}

#[test]
fn orb_event_limit_and_validation() {
    let server = TestServer::start(Api::Orb, KEY);
    let keys: Vec<String> = (0..501).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let answer = send(&server, &batch(Api::Orb, &refs));
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["status"], 400);
    assert!(answer.json()["detail"].as_str().unwrap().contains("500"));
    assert_success_body(
        Api::Orb,
        &send(&server, &batch(Api::Orb, &refs[..500])),
        500,
    );

    let server = TestServer::start(Api::Orb, KEY);
    let good = event(Api::Orb, "good");
    let mut bad = Vec::new();
    let mut variant = |key: &str, f: &dyn Fn(&mut Value)| {
        let mut e = event(Api::Orb, key);
        f(&mut e);
        bad.push(e);
    };
    variant("micros", &|e| {
        e["timestamp"] = json!("2021-04-26T14:01:46.909123Z")
    });
    variant("offset", &|e| {
        e["timestamp"] = json!("2021-04-26T14:01:46+00:00")
    });
    variant("notadate", &|e| {
        e["timestamp"] = json!("2021-02-30T14:01:46Z")
    });
    variant("null", &|e| e["properties"]["x"] = Value::Null);
    variant("nested", &|e| e["properties"]["x"] = json!({"y": 1}));
    variant("array", &|e| e["properties"]["x"] = json!([1]));
    variant("both", &|e| e["customer_id"] = json!("orb_1"));
    variant("neither", &|e| {
        e.as_object_mut().unwrap().remove("external_customer_id");
    });
    variant("noname", &|e| {
        e.as_object_mut().unwrap().remove("event_name");
    });
    variant("noprops", &|e| {
        e.as_object_mut().unwrap().remove("properties");
    });
    let mut events = vec![good.clone()];
    events.extend(bad);
    let answer = send(&server, &batch_of(Api::Orb, events));
    assert_eq!(answer.status, 400);
    let keys: Vec<String> = answer.json()["validation_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "micros", "offset", "notadate", "null", "nested", "array", "both", "neither", "noname",
            "noprops"
        ]
    );
    assert!(server.ingested().is_empty());

    // Whole seconds, one or two fractional digits and customer_id alone are fine.
    let mut ok = Vec::new();
    for (key, ts) in [
        ("s", "2021-04-26T14:01:46Z"),
        ("d", "2021-04-26T14:01:46.5Z"),
    ] {
        let mut e = event(Api::Orb, key);
        e["timestamp"] = json!(ts);
        ok.push(e);
    }
    let mut e = event(Api::Orb, "cid");
    e.as_object_mut().unwrap().remove("external_customer_id");
    e["customer_id"] = json!("orb_1");
    ok.push(e);
    assert_success_body(Api::Orb, &send(&server, &batch_of(Api::Orb, ok)), 3);
}

#[test]
fn orb_grace_period() {
    let server = TestServer::start(Api::Orb, KEY);
    let at = |key: &str, ts: jiff::Timestamp| {
        let mut e = event(Api::Orb, key);
        e["timestamp"] = json!(ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        e
    };
    let now = jiff::Timestamp::now();
    let old = event(Api::Orb, "old"); // 2021
    let recent = at("recent", now - jiff::SignedDuration::from_secs(60));
    let future = at("future", now + jiff::SignedDuration::from_secs(600));
    let soon = at("soon", now + jiff::SignedDuration::from_secs(60));

    // Off by default.
    assert_eq!(
        send(&server, &batch_of(Api::Orb, vec![old.clone()])).status,
        200
    );

    server.orb_grace_period(Some(Duration::from_secs(3600)));
    let answer = send(
        &server,
        &batch_of(
            Api::Orb,
            vec![old.clone(), recent.clone(), future, soon.clone()],
        ),
    );
    assert_eq!(answer.status, 400);
    let keys: Vec<Value> = answer.json()["validation_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["idempotency_key"].clone())
        .collect();
    assert_eq!(keys, [json!("old"), json!("future")]);
    assert_success_body(
        Api::Orb,
        &send(&server, &batch_of(Api::Orb, vec![recent, soon])),
        2,
    );

    // A backfill takes old events; the query is recorded.
    let mut backfilled = old;
    backfilled["idempotency_key"] = json!("old2");
    let answer = send_with(
        &agent(),
        &server,
        KEY,
        "?backfill_id=bf_1",
        &batch_of(Api::Orb, vec![backfilled]),
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    let last = server.received().pop().unwrap();
    assert_eq!(last.query, "backfill_id=bf_1");
    assert_eq!(last.query_param("backfill_id").as_deref(), Some("bf_1"));

    server.orb_grace_period(None);
    assert_eq!(send(&server, &batch(Api::Orb, &["old3"])).status, 200);
}

#[test]
fn amberflo_validation() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = event(Api::Amberflo, "bad");
        f(&mut e);
        json!([event(Api::Amberflo, "good"), e])
    };
    let cases = [
        with(&|e| e["dimensions"]["url"] = json!("https://google.com")),
        with(&|e| e["dimensions"]["title"] = json!("Welcome | Initech")),
        with(&|e| e["dimensions"]["empty"] = json!("")),
        with(&|e| e["dimensions"]["long"] = json!("x".repeat(201))),
        with(&|e| e["dimensions"]["n"] = json!(5)),
        with(&|e| e["meterTimeInMillis"] = json!(1619445706909.5)),
        with(&|e| e["meterTimeInMillis"] = json!(0)),
        with(&|e| e["meterValue"] = json!("2")),
        with(&|e| e["customerId"] = json!("")),
        with(&|e| e["meterApiName"] = Value::Null),
        json!("not a batch"),
    ];
    for body in &cases {
        let answer = send(&server, body);
        assert_eq!(answer.status, 400, "{body}");
        assert!(answer.header("content-type").unwrap().starts_with("text/"));
    }
    assert!(server.ingested().is_empty());
    let not_json = call(
        &agent(),
        "POST",
        &ingest_url(&server),
        &[("X-API-KEY", KEY)],
        "{not json",
    )
    .unwrap();
    assert_eq!(not_json.status, 400);

    // 200 characters from the whole allowed set pass; a single object is accepted; unknown
    // top-level keys are dropped.
    let mut e = event(Api::Amberflo, "single");
    let allowed = "Az09-_ !.*'()&$@=;:+,?";
    e["dimensions"]["all"] = json!(allowed);
    e["dimensions"]["max"] = json!("y".repeat(200));
    e["extra"] = json!("dropped");
    assert_success_body(Api::Amberflo, &send(&server, &e), 1);
    let stored = &server.ingested()[0];
    assert!(stored.get("extra").is_none());
    assert_eq!(stored["dimensions"]["all"], allowed);
    // Records without uniqueId are fine (deduplicated by content, not counted as deliveries).
    let mut anonymous = event(Api::Amberflo, "x");
    anonymous.as_object_mut().unwrap().remove("uniqueId");
    let twice = json!([anonymous.clone(), anonymous]);
    assert_success_body(Api::Amberflo, &send(&server, &twice), 2);
    assert_eq!(server.ingested().len(), 2);
    assert_eq!(deliveries(&server), counts(&[("single", 1)]));
}

#[test]
fn amberflo_customers() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let url = format!("{}/customers", server.endpoint());
    let auth = [("X-API-KEY", KEY)];
    let get = |id: &str| {
        call(
            &agent(),
            "GET",
            &format!("{url}?customerId={id}"),
            &auth,
            "",
        )
        .unwrap()
    };
    let absent = get("nobody");
    assert_eq!((absent.status, absent.json()), (200, json!({})));
    assert!(absent.header("x-request-id").is_some());

    let v1 = json!({"customerId": "c 1", "customerName": "One", "traits": {"plan": "free", "logins": "5"}});
    let put = call(&agent(), "PUT", &url, &auth, &v1.to_string()).unwrap();
    assert_eq!((put.status, put.json()), (200, v1.clone()));
    assert_eq!(get("c%201").json(), v1);
    // PUT replaces the whole record.
    let v2 =
        json!({"customerId": "c 1", "customerName": "One", "customerEmail": "one@example.com"});
    assert_eq!(
        call(&agent(), "PUT", &url, &auth, &v2.to_string())
            .unwrap()
            .status,
        200
    );
    assert_eq!(get("c+1").json(), v2);
    assert_eq!(server.customers(), std::slice::from_ref(&v2));

    // POST creates, 409 when the customer exists.
    let post = call(&agent(), "POST", &url, &auth, &v1.to_string()).unwrap();
    assert_eq!(post.status, 409);
    let v3 = json!({"customerId": "c2", "customerName": "Two"});
    assert_eq!(
        call(&agent(), "POST", &url, &auth, &v3.to_string())
            .unwrap()
            .status,
        200
    );
    assert_eq!(server.customers(), [v2, v3]);

    for invalid in [
        json!({"customerId": "c3"}),
        json!({"customerName": "x"}),
        json!({"customerId": "c3", "customerName": "x", "traits": {"logins": 5}}),
    ] {
        let answer = call(&agent(), "PUT", &url, &auth, &invalid.to_string()).unwrap();
        assert_eq!(answer.status, 400, "{invalid}");
    }
    assert_eq!(
        call(&agent(), "GET", &format!("{url}?customerId=c2"), &[], "")
            .unwrap()
            .status,
        401
    );
}

#[test]
fn kable_validation() {
    let server = TestServer::start(Api::Kable, KEY);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = event(Api::Kable, "bad");
        f(&mut e);
        json!([event(Api::Kable, "good"), e])
    };
    for body in [
        with(&|e| {
            e.as_object_mut().unwrap().remove("clientId");
        }),
        with(&|e| e["timestamp"] = json!("yesterday")),
        with(&|e| e["timestamp"] = json!("2021-04-26 14:01:46")),
        with(&|e| e["transactionId"] = json!(5)),
        with(&|e| e["data"] = json!([1])),
        json!({"clientId": "x"}),
    ] {
        let answer = send(&server, &body);
        assert_eq!(answer.status, 400, "{body}");
        assert!(answer.json()["message"].is_string());
    }
    assert!(server.ingested().is_empty());
    let mut offset = event(Api::Kable, "offset");
    offset["timestamp"] = json!("2021-04-26T16:01:46.909123+02:00");
    let mut unkeyed = event(Api::Kable, "");
    unkeyed.as_object_mut().unwrap().remove("transactionId");
    assert_success_body(
        Api::Kable,
        &send(&server, &json!([offset, unkeyed.clone(), unkeyed])),
        3,
    );
    assert_eq!(server.ingested().len(), 3);
    assert_eq!(deliveries(&server), counts(&[("offset", 1)]));
}

#[test]
fn unknown_paths_and_methods_get_404() {
    for api in ALL {
        let server = TestServer::start(api, KEY);
        let base = server.base_url();
        let a = call(&agent(), "GET", &format!("{base}/nope"), &[], "").unwrap();
        assert_eq!(a.status, 404, "{api:?}");
        let a = call(&agent(), "GET", &ingest_url(&server), &[], "").unwrap();
        assert_eq!(a.status, 404, "{api:?}");
        let a = call(&agent(), "POST", &format!("{base}/customers/x"), &[], "{}").unwrap();
        assert_eq!(a.status, 404, "{api:?}");
        if api == Api::Amberflo {
            let a = call(&agent(), "DELETE", &format!("{base}/customers"), &[], "").unwrap();
            assert_eq!(a.status, 404);
        }
        assert_eq!(
            server.received().len(),
            if api == Api::Amberflo { 4 } else { 3 }
        );
    }
}

/// Read one HTTP response from a raw socket: (status, headers, body).
fn read_raw_response(r: &mut impl BufRead) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (status, headers, body)
}

#[test]
fn raw_http_keep_alive_chunked_and_gzip() {
    let server = TestServer::start(Api::Kable, KEY);
    let addr = server.base_url().trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let auth = format!("kable-client-id: kci_test\r\nKaBlE-ClIeNt-SeCrEt: {KEY}\r\n");

    // 1. chunked
    let body = batch(Api::Kable, &["chunked"]).to_string();
    let (first, second) = body.split_at(10);
    let request = format!(
        "POST /api/v1/events/create HTTP/1.1\r\nHost: {addr}\r\n{auth}Transfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\nX-Trailer: t\r\n\r\n",
        first.len(),
        second.len()
    );
    writer.write_all(request.as_bytes()).unwrap();
    let (status, headers, _) = read_raw_response(&mut reader);
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, _)| k == "x-request-id"));

    // 2. gzip with Content-Length, same connection
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch(Api::Kable, &["gzipped"]).to_string().as_bytes())
        .unwrap();
    let compressed = gz.finish().unwrap();
    let mut request = format!(
        "POST /api/v1/events/create HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Encoding: gzip\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        compressed.len()
    )
    .into_bytes();
    writer.write_all(&request).unwrap();
    let (status, _, _) = read_raw_response(&mut reader);
    assert_eq!(status, 100);
    request.clear();
    writer.write_all(&compressed).unwrap();
    let (status, _, _) = read_raw_response(&mut reader);
    assert_eq!(status, 200);

    // 3. broken gzip: 400, and the connection stays usable
    let request = format!(
        "POST /api/v1/events/create HTTP/1.1\r\n{auth}Content-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"
    );
    writer.write_all(request.as_bytes()).unwrap();
    let (status, _, body) = read_raw_response(&mut reader);
    assert_eq!(status, 400);
    assert!(String::from_utf8(body).unwrap().contains("gzip"));

    // 4. Connection: close is honoured
    let body = batch(Api::Kable, &["last"]).to_string();
    let request = format!(
        "POST /api/v1/events/create HTTP/1.1\r\n{auth}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(request.as_bytes()).unwrap();
    let (status, headers, _) = read_raw_response(&mut reader);
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "connection" && v == "close")
    );
    let mut rest = Vec::new();
    assert_eq!(
        reader.read_to_end(&mut rest).unwrap(),
        0,
        "closed after the answer"
    );

    assert_eq!(ingested_keys(&server), ["chunked", "gzipped", "last"]);
    let received = server.received();
    assert_eq!(received.len(), 4);
    assert_eq!(received[1].json(), batch(Api::Kable, &["gzipped"]));
    assert_eq!(received[1].header("content-encoding"), Some("gzip"));
    assert_eq!(received[0].header("KABLE-CLIENT-SECRET"), Some(KEY));
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 400, 200]
    );
}

#[test]
fn dropping_the_server_stops_it() {
    let server = TestServer::start(Api::Orb, KEY);
    let addr = server.base_url().trim_start_matches("http://").to_string();
    let agent = agent();
    assert_eq!(
        send_with(&agent, &server, KEY, "", &batch(Api::Orb, &["a"]))
            .unwrap()
            .status,
        200
    );
    // An idle keep-alive connection must not keep the server alive.
    let idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    drop(server);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let mut buf = [0u8; 16];
    let n = (&idle).read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the idle connection is closed");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        TcpStream::connect(&addr).is_err(),
        "nothing listens any more"
    );
}
