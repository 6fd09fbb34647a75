//! Self-test of the loopback server in `support/server.rs`: each test guards a fault or a
//! behaviour of the imitated APIs that the rest of the suite relies on.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::server::{Api, Fault, OrbFailureShape, TestServer};

const KEY: &str = "sk_test_secret";

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

/// Guards `deliveries()` and `ingested()`: a re-sent key counts as a delivery again but is held
/// once, which the send and fault tests count on to tell "retried" from "sent twice".
#[test]
fn each_api_accepts_a_valid_batch_and_records_it() {
    for api in Api::ALL {
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

/// Guards the 401 for a wrong key (and nothing ingested), on which the refused-key tests rely.
#[test]
fn a_bad_key_gets_401_and_nothing_is_ingested() {
    for api in Api::ALL {
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

/// Guards `Fault::Status`, `Fault::RetryAfter` and `Fault::Transient`, and that faults are
/// taken from the queue in order and ingest nothing.
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

/// Guards `fault_on_request`: the fault tests put a fault at the first, a middle and the last
/// batch by request number.
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

/// Guards `Fault::Status(_, "")`: the fault tests use it and expect the API's own error body.
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

/// Guards `Fault::Delay` (the timeout tests: the request is still handled after the client gives
/// up) and `latency` (the rate-limit tests).
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

/// Guards `Fault::Close`: the connection is dropped after the request is read, with no answer.
#[test]
fn close_fault_gives_a_transport_error() {
    for api in Api::ALL {
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

/// Guards `poison`: one event makes the whole batch fail, which the halving tests isolate.
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

/// Guards `orb_reject_keys` with Orb's `validation_failed` answer, including `ingest_valid`.
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

/// Guards `orb_reject_keys` with the RFC 7807 answer shape.
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

/// Guards `max_batch`: the split-on-413 tests need a server that refuses a batch too large.
#[test]
fn max_batch_gives_413() {
    for api in Api::ALL {
        let server = TestServer::start(api, KEY);
        server.max_batch(2);
        let answer = send(&server, &batch(api, &["a", "b", "c"]));
        assert_eq!(answer.status, 413, "{api:?}");
        assert!(server.ingested().is_empty());
        assert_success_body(api, &send(&server, &batch(api, &["a", "b"])), 2);
    }
}

/// Guards Orb's 500-event limit and its per-event validation, so that a send test fails when
/// segrelay writes what Orb would refuse.
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

/// Guards Orb's refusal of one key for two different events in a batch.
#[test]
fn orb_refuses_a_batch_with_one_key_for_two_events() {
    let server = TestServer::start(Api::Orb, KEY);
    let mut other = event(Api::Orb, "k1");
    other["properties"]["value"] = json!(3);
    let answer = send(
        &server,
        &batch_of(
            Api::Orb,
            vec![event(Api::Orb, "k1"), event(Api::Orb, "k2"), other],
        ),
    );
    assert_eq!(answer.status, 400);
    assert!(answer.json()["detail"].as_str().unwrap().contains("k1"));
    assert!(answer.json().get("validation_failed").is_none());
    assert!(server.ingested().is_empty(), "the whole batch is refused");

    // The same event twice is one event.
    let twice = batch_of(Api::Orb, vec![event(Api::Orb, "k1"), event(Api::Orb, "k1")]);
    assert_success_body(Api::Orb, &send(&server, &twice), 2);
    assert_eq!(ingested_keys(&server), ["k1"]);
}

/// Guards `orb_grace_period` (old and future events refused, backfills exempt), on which the
/// backfill tests rely.
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

    // The refusal says to use a backfill.
    let answer = send(&server, &batch_of(Api::Orb, vec![old.clone()]));
    let errors = answer.json()["validation_failed"][0]["validation_errors"].to_string();
    assert!(errors.contains("backfill"), "{errors}");

    // A backfill takes old events (no grace-period check); the query is recorded.
    let bf = create_backfill(&server, "2021-04-26T00:00:00Z", "2021-04-27T00:00:00Z");
    let mut backfilled = old;
    backfilled["idempotency_key"] = json!("old2");
    let answer = send_with(
        &agent(),
        &server,
        KEY,
        &format!("?backfill_id={bf}"),
        &batch_of(Api::Orb, vec![backfilled]),
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    let last = server.received().pop().unwrap();
    assert_eq!(last.query, format!("backfill_id={bf}"));
    assert_eq!(last.query_param("backfill_id"), Some(bf.clone()));
    assert_eq!(server.backfill_of("old2"), Some(bf));
    assert_eq!(server.backfill_of("recent"), None);

    server.orb_grace_period(None);
    assert_eq!(send(&server, &batch(Api::Orb, &["old3"])).status, 200);
}

/// Guards Amberflo's record validation, so that a send test fails when segrelay writes what
/// Amberflo would refuse.
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
        with(&|e| e["dimensions"]["a/b"] = json!("x")),
        with(&|e| e["dimensions"][""] = json!("x")),
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

/// Guards Kable's event validation, so that a send test fails when segrelay writes what Kable
/// would refuse.
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

/// Guards `Drop`: an idle keep-alive connection must not keep a test waiting for the server.
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

// ---------------------------------------------------------------------------------------------
// Orb backfills and event search

/// An Orb API call with the right key: (status, JSON body).
fn orb_call(server: &TestServer, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {KEY}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let url = format!("{}{path}", server.endpoint());
    let answer = call(&agent(), method, &url, &headers, &body.to_string()).unwrap();
    (answer.status, answer.json())
}

/// An Orb POST carrying `Idempotency-Key: key`; None when the connection closed unanswered.
fn orb_keyed(server: &TestServer, path: &str, body: &Value, key: &str) -> Option<Answer> {
    let auth = format!("Bearer {KEY}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", key),
    ];
    let url = format!("{}{path}", server.endpoint());
    call(&agent(), "POST", &url, &headers, &body.to_string()).ok()
}

fn backfill_body(start: &str, end: &str) -> Value {
    json!({"timeframe_start": start, "timeframe_end": end, "replace_existing_events": false})
}

/// Create a backfill (no customer, no replacement) and return its id.
fn create_backfill(server: &TestServer, start: &str, end: &str) -> String {
    let (status, body) = orb_call(
        server,
        "POST",
        "/events/backfills",
        &backfill_body(start, end),
    );
    assert_eq!(status, 200, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn get_backfill(server: &TestServer, id: &str) -> (u16, Value) {
    orb_call(
        server,
        "GET",
        &format!("/events/backfills/{id}"),
        &Value::Null,
    )
}

fn status_of(server: &TestServer, id: &str) -> String {
    let (code, body) = get_backfill(server, id);
    assert_eq!(code, 200, "{body}");
    body["status"].as_str().unwrap().to_string()
}

/// An Orb event for this customer at this time.
fn orb_event(key: &str, customer: &str, ts: &str) -> Value {
    let mut e = event(Api::Orb, key);
    e["external_customer_id"] = json!(customer);
    e["timestamp"] = json!(ts);
    e
}

fn send_to_backfill(server: &TestServer, backfill: &str, events: Vec<Value>) -> Answer {
    send_with(
        &agent(),
        server,
        KEY,
        &format!("?backfill_id={backfill}"),
        &batch_of(Api::Orb, events),
    )
    .unwrap()
}

fn failed_keys(answer: &Answer) -> Vec<String> {
    answer.json()["validation_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["idempotency_key"].as_str().unwrap().to_string())
        .collect()
}

fn assert_rfc7807(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.withorb.com/reference/error-responses#"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

fn assert_constraint_violation(status: u16, body: &Value) {
    assert_rfc7807(status, body, 400);
    assert_eq!(
        body["type"],
        "https://docs.withorb.com/reference/error-responses#400-constraint-violation"
    );
}

/// Guards Orb's `Idempotency-Key` (replay of the kept answer, 409 for a key reused elsewhere,
/// forgetting after 48 hours) and the faults `HandleThenClose`, `Stall` and `fault_on_next`.
#[test]
fn orb_idempotency_key_replays_the_first_answer() {
    let server = TestServer::start(Api::Orb, KEY);
    let create = backfill_body("2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z");
    // Created, but the answer is lost: the same key again gets the same backfill.
    server.fault_on_next("POST", "/events/backfills", Fault::HandleThenClose);
    assert!(orb_keyed(&server, "/events/backfills", &create, "k-create").is_none());
    assert_eq!(server.orb_backfills().len(), 1);
    let again = orb_keyed(&server, "/events/backfills", &create, "k-create").unwrap();
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("idempotency-key"), Some("k-create"));
    assert_eq!(again.json()["id"], "bf_1");
    assert_eq!(server.orb_backfills().len(), 1, "not created twice");
    let received = server.received();
    assert_eq!(
        (
            received[0].status,
            received[0].replayed,
            received[1].replayed
        ),
        (0, false, true)
    );

    let close_path = "/events/backfills/bf_1/close";
    let closed = orb_keyed(&server, close_path, &Value::Null, "k-close").unwrap();
    assert_eq!(
        (closed.status, closed.header("idempotent-replayed")),
        (200, None)
    );
    assert_eq!(closed.header("idempotency-key"), Some("k-close"));
    let replayed = orb_keyed(&server, close_path, &Value::Null, "k-close").unwrap();
    assert_eq!((replayed.status, replayed.body), (200, closed.body));
    // Without the key, or with another, a closed backfill cannot be closed again.
    let (status, body) = orb_call(&server, "POST", close_path, &json!({}));
    assert_constraint_violation(status, &body);
    let other = orb_keyed(&server, close_path, &Value::Null, "k-other").unwrap();
    assert_constraint_violation(other.status, &other.json());
    // A key reused for another request: 409.
    let reused = orb_keyed(
        &server,
        "/events/backfills/bf_1/revert",
        &Value::Null,
        "k-close",
    );
    assert_rfc7807(
        reused.as_ref().unwrap().status,
        &reused.unwrap().json(),
        409,
    );
    // After Orb's 48 hours, the key is handled anew.
    server.orb_forget_idempotency_keys();
    let late = orb_keyed(&server, close_path, &Value::Null, "k-close").unwrap();
    assert_constraint_violation(late.status, &late.json());
    let too_long = "k".repeat(65);
    assert_eq!(
        orb_keyed(&server, close_path, &Value::Null, &too_long)
            .unwrap()
            .status,
        400
    );

    // Stall: carried out at once, answered later.
    server.fault_on_next("POST", "/revert", Fault::Stall(Duration::from_millis(400)));
    std::thread::scope(|scope| {
        let revert = scope.spawn(|| {
            orb_keyed(
                &server,
                "/events/backfills/bf_1/revert",
                &Value::Null,
                "k-r",
            )
            .unwrap()
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.orb_backfills()[0]["status"] != "reverted" {
            assert!(Instant::now() < deadline, "never reverted");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!revert.is_finished(), "answered before the stall ended");
        assert_eq!(revert.join().unwrap().status, 200);
    });
}

/// Guards backfill creation: Orb's limits and its refusal of overlapping backfills, which the
/// take-over test relies on.
#[test]
fn orb_backfill_create_validation_and_overlap() {
    let server = TestServer::start(Api::Orb, KEY);
    let (status, bf) = orb_call(
        &server,
        "POST",
        "/events/backfills",
        &json!({
            "timeframe_start": "2021-04-01T00:00:00Z", "timeframe_end": "2021-05-02T00:00:00Z",
            "external_customer_id": "cust_1", "replace_existing_events": false,
            "close_time": "2030-01-01T00:00:00.500Z"
        }),
    );
    assert_eq!(status, 200, "{bf}");
    let created_at = bf["created_at"].as_str().unwrap();
    assert!(created_at.parse::<jiff::Timestamp>().is_ok(), "{bf}");
    assert_eq!(
        bf,
        json!({
            "id": bf["id"], "status": "pending", "created_at": created_at,
            "timeframe_start": "2021-04-01T00:00:00Z", "timeframe_end": "2021-05-02T00:00:00Z",
            "close_time": "2030-01-01T00:00:00.5Z", "reverted_at": null, "events_ingested": 0,
            "replace_existing_events": false, "customer_id": null, "external_customer_id": "cust_1"
        })
    );
    let id = bf["id"].as_str().unwrap();
    assert_eq!(get_backfill(&server, id), (200, bf.clone()));
    assert_eq!(server.orb_backfills(), std::slice::from_ref(&bf));

    // Default close_time: one day after creation.
    create_backfill(&server, "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z");
    let other = &server.orb_backfills()[1];
    let created: jiff::Timestamp = other["created_at"].as_str().unwrap().parse().unwrap();
    let close: jiff::Timestamp = other["close_time"].as_str().unwrap().parse().unwrap();
    assert_eq!((close - created).as_hours(), 24, "{other}");

    // 400s (RFC 7807), nothing created.
    let mut bodies = Vec::new();
    let mut without_replace = backfill_body("2019-01-01T00:00:00Z", "2019-01-02T00:00:00Z");
    without_replace
        .as_object_mut()
        .unwrap()
        .remove("replace_existing_events");
    bodies.push(without_replace);
    let mut replace_text = backfill_body("2019-01-01T00:00:00Z", "2019-01-02T00:00:00Z");
    replace_text["replace_existing_events"] = json!("false");
    bodies.push(replace_text);
    bodies.push(backfill_body(
        "2019-01-02T00:00:00Z",
        "2019-01-02T00:00:00Z",
    ));
    bodies.push(backfill_body(
        "2019-01-03T00:00:00Z",
        "2019-01-02T00:00:00Z",
    ));
    bodies.push(backfill_body(
        "2019-01-01T00:00:00Z",
        "2019-02-01T00:00:00.001Z",
    ));
    bodies.push(backfill_body(
        "2019-01-01T00:00:00+00:00",
        "2019-01-02T00:00:00Z",
    ));
    bodies
        .push(json!({"timeframe_start": "2019-01-01T00:00:00Z", "replace_existing_events": true}));
    let mut both = backfill_body("2019-01-01T00:00:00Z", "2019-01-02T00:00:00Z");
    both["customer_id"] = json!("orb_1");
    both["external_customer_id"] = json!("cust_1");
    bodies.push(both);
    bodies.push(json!([1]));
    for body in &bodies {
        let (status, answer) = orb_call(&server, "POST", "/events/backfills", body);
        assert_rfc7807(status, &answer, 400);
    }
    let (status, answer) = orb_call(
        &server,
        "POST",
        "/events/backfills",
        &backfill_body("2019-01-01T00:00:00Z", "2019-02-01T00:00:00.001Z"),
    );
    assert_rfc7807(status, &answer, 400);
    assert!(answer["detail"].as_str().unwrap().contains("31 days"));
    assert_eq!(server.orb_backfills().len(), 2);

    // Exactly 31 days is fine (2019-01-01 to 2019-02-01).
    create_backfill(&server, "2019-01-01T00:00:00Z", "2019-02-01T00:00:00Z");

    // Overlap with a pending backfill (whatever its customer): 400 constraint violation naming it.
    for (start, end) in [
        ("2021-04-30T00:00:00Z", "2021-05-05T00:00:00Z"),
        ("2021-03-25T00:00:00Z", "2021-04-01T00:00:00.001Z"),
        ("2021-04-10T00:00:00Z", "2021-04-11T00:00:00Z"),
    ] {
        let (status, answer) = orb_call(
            &server,
            "POST",
            "/events/backfills",
            &backfill_body(start, end),
        );
        assert_constraint_violation(status, &answer);
        assert!(answer["detail"].as_str().unwrap().contains(id), "{answer}");
    }
    // End is exclusive: touching timeframes do not overlap.
    let touching = create_backfill(&server, "2021-03-25T00:00:00Z", "2021-04-01T00:00:00Z");
    // Once closed, a backfill no longer blocks.
    let (status, _) = orb_call(
        &server,
        "POST",
        &format!("/events/backfills/{id}/close"),
        &json!({}),
    );
    assert_eq!(status, 200);
    create_backfill(&server, "2021-04-10T00:00:00Z", "2021-04-11T00:00:00Z");
    let ids: Vec<Value> = server
        .orb_backfills()
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[3], json!(touching));

    // Unknown id: 404; wrong key: 401.
    let (status, answer) = get_backfill(&server, "bf_nope");
    assert_rfc7807(status, &answer, 404);
    let unauthorized = call(
        &agent(),
        "GET",
        &format!("{}/events/backfills", server.endpoint()),
        &[("Authorization", "Bearer wrong")],
        "",
    )
    .unwrap();
    assert_eq!(unauthorized.status, 401);
}

/// Guards `?backfill_id=` ingest: only events inside the backfill's window are taken.
#[test]
fn orb_backfill_ingest_checks_the_window() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(3600)));
    let bf = create_backfill(&server, "2021-04-26T00:00:00Z", "2021-04-27T00:00:00Z");
    let inside = orb_event("in", "cust_1", "2021-04-26T00:00:00Z");
    let last = orb_event("last", "cust_2", "2021-04-26T23:59:59.999Z");
    let before = orb_event("before", "cust_1", "2021-04-25T23:59:59.999Z");
    let at_end = orb_event("at_end", "cust_1", "2021-04-27T00:00:00Z");

    let answer = send_to_backfill(
        &server,
        &bf,
        vec![inside.clone(), before, at_end, last.clone()],
    );
    assert_eq!(answer.status, 400);
    assert_eq!(failed_keys(&answer), ["before", "at_end"]);
    let why = answer.json()["validation_failed"][0]["validation_errors"].to_string();
    assert!(why.contains("timeframe"), "{why}");
    assert!(server.ingested().is_empty());

    // Inside the window: accepted despite the grace period; counted; recorded per key.
    assert_success_body(
        Api::Orb,
        &send_to_backfill(&server, &bf, vec![inside.clone(), last]),
        2,
    );
    assert_eq!(ingested_keys(&server), ["in", "last"]);
    assert_eq!(server.backfill_of("in"), Some(bf.clone()));
    assert_eq!(server.backfill_of("last"), Some(bf.clone()));
    assert_eq!(server.backfill_of("unknown"), None);
    // A re-sent event is deduplicated and not counted twice.
    assert_success_body(Api::Orb, &send_to_backfill(&server, &bf, vec![inside]), 1);
    assert_eq!(deliveries(&server), counts(&[("in", 2), ("last", 1)]));
    assert_eq!(get_backfill(&server, &bf).1["events_ingested"], 2);

    // Unknown backfill: 400 RFC 7807, nothing ingested.
    let answer = send_to_backfill(
        &server,
        "bf_nope",
        vec![orb_event("x", "cust_1", "2021-04-26T01:00:00Z")],
    );
    assert_rfc7807(answer.status, &answer.json(), 400);
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap()
            .contains("bf_nope")
    );

    // A backfill scoped to a customer takes only that customer's events.
    let scoped = server.orb_backfills().len();
    let (status, body) = orb_call(
        &server,
        "POST",
        "/events/backfills",
        &json!({"timeframe_start": "2021-05-01T00:00:00Z", "timeframe_end": "2021-05-02T00:00:00Z",
                "external_customer_id": "cust_1", "replace_existing_events": false}),
    );
    assert_eq!(status, 200);
    let scoped_id = body["id"].as_str().unwrap().to_string();
    assert_eq!(server.orb_backfills().len(), scoped + 1);
    let answer = send_to_backfill(
        &server,
        &scoped_id,
        vec![
            orb_event("mine", "cust_1", "2021-05-01T10:00:00Z"),
            orb_event("theirs", "cust_2", "2021-05-01T10:00:00Z"),
        ],
    );
    assert_eq!(failed_keys(&answer), ["theirs"]);

    // A closed backfill takes no more events: 400 RFC 7807.
    let (status, _) = orb_call(
        &server,
        "POST",
        &format!("/events/backfills/{bf}/close"),
        &json!({}),
    );
    assert_eq!(status, 200);
    let answer = send_to_backfill(
        &server,
        &bf,
        vec![orb_event("late", "cust_1", "2021-04-26T01:00:00Z")],
    );
    assert_rfc7807(answer.status, &answer.json(), 400);
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap()
            .contains("reflected")
    );
    assert_eq!(ingested_keys(&server), ["in", "last"]);

    // Ordinary ingest of the same old event still fails the grace period.
    let answer = send(
        &server,
        &batch_of(
            Api::Orb,
            vec![orb_event("live", "cust_1", "2021-04-26T01:00:00Z")],
        ),
    );
    assert_eq!(failed_keys(&answer), ["live"]);
}

/// Guards `orb_backfill_reflect_after_polls`: `--orb-wait` polls until a closed backfill is
/// reflected.
#[test]
fn orb_backfill_close_then_reflected_after_polls() {
    let server = TestServer::start(Api::Orb, KEY);
    // Default: reflected at once.
    let a = create_backfill(&server, "2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z");
    let close = |id: &str| {
        orb_call(
            &server,
            "POST",
            &format!("/events/backfills/{id}/close"),
            &json!({}),
        )
    };
    let (status, body) = close(&a);
    assert_eq!((status, body["status"].as_str()), (200, Some("reflected")));
    assert_eq!(status_of(&server, &a), "reflected");
    let (status, body) = close(&a);
    assert_constraint_violation(status, &body);

    // Two polls show "reflecting", the third "reflected"; orb_backfills() does not poll.
    server.orb_backfill_reflect_after_polls(2);
    let b = create_backfill(&server, "2021-02-01T00:00:00Z", "2021-02-02T00:00:00Z");
    let (status, body) = close(&b);
    assert_eq!((status, body["status"].as_str()), (200, Some("reflecting")));
    assert_eq!(server.orb_backfills()[1]["status"], "reflecting");
    assert_eq!(status_of(&server, &b), "reflecting");
    assert_eq!(server.orb_backfills()[1]["status"], "reflecting");
    // A list page holding it counts as a read too.
    let (_, page) = orb_call(&server, "GET", "/events/backfills", &Value::Null);
    assert_eq!(page["data"][1]["status"], "reflecting");
    assert_eq!(status_of(&server, &b), "reflected");
    assert_eq!(status_of(&server, &b), "reflected");
    // Closing a reflecting or reflected backfill: 400 constraint violation.
    let c = create_backfill(&server, "2021-03-01T00:00:00Z", "2021-03-02T00:00:00Z");
    close(&c);
    assert_eq!(close(&c).0, 400);
    assert_eq!(close(&b).0, 400);
    // Unknown: 404.
    assert_eq!(close("bf_nope").0, 404);

    // A close_time in the past closes the backfill by itself.
    server.orb_backfill_reflect_after_polls(0);
    let (status, body) = orb_call(
        &server,
        "POST",
        "/events/backfills",
        &json!({"timeframe_start": "2021-04-01T00:00:00Z", "timeframe_end": "2021-04-02T00:00:00Z",
                "replace_existing_events": false, "close_time": "2021-05-01T00:00:00Z"}),
    );
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")));
    assert_eq!(
        status_of(&server, body["id"].as_str().unwrap()),
        "reflected"
    );
}

/// Guards revert (`orb backfills revert`): the backfill's events are removed.
#[test]
fn orb_backfill_revert_removes_its_events() {
    let server = TestServer::start(Api::Orb, KEY);
    send(
        &server,
        &batch_of(
            Api::Orb,
            vec![orb_event("live", "cust_1", "2021-04-26T05:00:00Z")],
        ),
    );
    let bf = create_backfill(&server, "2021-04-26T00:00:00Z", "2021-04-27T00:00:00Z");
    let events = vec![
        orb_event("b1", "cust_1", "2021-04-26T01:00:00Z"),
        orb_event("b2", "cust_2", "2021-04-26T02:00:00Z"),
    ];
    assert_success_body(Api::Orb, &send_to_backfill(&server, &bf, events), 2);
    assert_eq!(ingested_keys(&server), ["live", "b1", "b2"]);
    let revert = |id: &str| {
        orb_call(
            &server,
            "POST",
            &format!("/events/backfills/{id}/revert"),
            &json!({}),
        )
    };
    orb_call(
        &server,
        "POST",
        &format!("/events/backfills/{bf}/close"),
        &json!({}),
    );

    server.orb_backfill_reflect_after_polls(1);
    let (status, body) = revert(&bf);
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("pending_revert"))
    );
    assert!(
        body["reverted_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert_eq!(ingested_keys(&server), ["live"]);
    assert_eq!(server.backfill_of("b1"), None);
    assert_eq!(status_of(&server, &bf), "pending_revert");
    assert_eq!(status_of(&server, &bf), "reverted");
    assert_eq!(revert(&bf).0, 400);
    // The history stays: events_ingested and deliveries are unchanged.
    assert_eq!(server.orb_backfills()[0]["events_ingested"], 2);
    assert_eq!(
        deliveries(&server),
        counts(&[("b1", 1), ("b2", 1), ("live", 1)])
    );

    // A pending backfill can be reverted too (same poll rule); then it takes no events.
    server.orb_backfill_reflect_after_polls(0);
    let other = create_backfill(&server, "2021-04-26T00:00:00Z", "2021-04-27T00:00:00Z");
    let (status, body) = revert(&other);
    assert_eq!((status, body["status"].as_str()), (200, Some("reverted")));
    let answer = send_to_backfill(
        &server,
        &other,
        vec![orb_event("b3", "cust_1", "2021-04-26T01:00:00Z")],
    );
    assert_eq!(answer.status, 400);
    // The reverted keys can be sent again.
    assert_success_body(
        Api::Orb,
        &send(
            &server,
            &batch_of(
                Api::Orb,
                vec![orb_event("b1", "cust_1", "2021-04-26T01:00:00Z")],
            ),
        ),
        1,
    );
    assert_eq!(ingested_keys(&server), ["live", "b1"]);
}

/// Guards `replace_existing_events` (`--orb-replace-existing`).
#[test]
fn orb_backfill_replace_existing_events() {
    let server = TestServer::start(Api::Orb, KEY);
    let live = vec![
        orb_event("a_in", "cust_a", "2021-04-26T01:00:00Z"),
        orb_event("a_resent", "cust_a", "2021-04-26T02:00:00Z"),
        orb_event("a_out", "cust_a", "2021-04-27T01:00:00Z"),
        orb_event("b_in", "cust_b", "2021-04-26T01:00:00Z"),
    ];
    send(&server, &batch_of(Api::Orb, live));
    let (status, body) = orb_call(
        &server,
        "POST",
        "/events/backfills",
        &json!({"timeframe_start": "2021-04-26T00:00:00Z", "timeframe_end": "2021-04-27T00:00:00Z",
                "external_customer_id": "cust_a", "replace_existing_events": true}),
    );
    assert_eq!(status, 200);
    let bf = body["id"].as_str().unwrap().to_string();
    // A key that exists live in the window and scope is taken over by the backfill.
    let mut resent = orb_event("a_resent", "cust_a", "2021-04-26T03:00:00Z");
    resent["properties"]["value"] = json!(7);
    assert_success_body(
        Api::Orb,
        &send_to_backfill(
            &server,
            &bf,
            vec![
                resent.clone(),
                orb_event("a_new", "cust_a", "2021-04-26T04:00:00Z"),
            ],
        ),
        2,
    );
    assert_eq!(server.backfill_of("a_resent"), Some(bf.clone()));
    assert_eq!(
        ingested_keys(&server),
        ["a_in", "a_out", "b_in", "a_resent", "a_new"]
    );
    // Closing replaces the other events of cust_a in the window; cust_b and other days stay.
    orb_call(
        &server,
        "POST",
        &format!("/events/backfills/{bf}/close"),
        &json!({}),
    );
    assert_eq!(
        ingested_keys(&server),
        ["a_out", "b_in", "a_resent", "a_new"]
    );
    assert_eq!(server.ingested()[2], resent);
    // Reverting removes the backfill's events and brings the replaced ones back.
    orb_call(
        &server,
        "POST",
        &format!("/events/backfills/{bf}/revert"),
        &json!({}),
    );
    assert_eq!(
        ingested_keys(&server),
        ["a_out", "b_in", "a_resent", "a_in"]
    );
    assert_eq!(server.ingested()[2]["timestamp"], "2021-04-26T02:00:00Z");
    assert_eq!(server.backfill_of("a_resent"), None);
}

/// Guards the backfill list's pages (`next_cursor`), which segrelay follows to find a pending
/// backfill.
#[test]
fn orb_backfill_list_pagination() {
    let server = TestServer::start(Api::Orb, KEY);
    let empty = orb_call(&server, "GET", "/events/backfills", &Value::Null);
    assert_eq!(
        empty,
        (
            200,
            json!({"data": [], "pagination_metadata": {"has_more": false, "next_cursor": null}})
        )
    );
    let ids: Vec<String> = (1..=25)
        .map(|d| {
            create_backfill(
                &server,
                &format!("2020-01-{d:02}T00:00:00Z"),
                &format!("2020-01-{:02}T00:00:00Z", d + 1),
            )
        })
        .collect();
    let page_ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Default limit 20.
    let (status, first) = orb_call(&server, "GET", "/events/backfills", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(page_ids(&first), ids[..20]);
    assert_eq!(first["pagination_metadata"]["has_more"], true);
    // Walk with limit=10.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let query = match &cursor {
            Some(c) => format!("?limit=10&cursor={c}"),
            None => "?limit=10".to_string(),
        };
        let (status, page) = orb_call(
            &server,
            "GET",
            &format!("/events/backfills{query}"),
            &Value::Null,
        );
        assert_eq!(status, 200, "{page}");
        seen.extend(page_ids(&page));
        let meta = &page["pagination_metadata"];
        if meta["has_more"] == false {
            assert!(meta["next_cursor"].is_null());
            break;
        }
        cursor = Some(meta["next_cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ids);
    // limit 100 is the maximum; 0, 101 and a bad cursor get 400.
    let (status, all) = orb_call(&server, "GET", "/events/backfills?limit=100", &Value::Null);
    assert_eq!((status, page_ids(&all).len()), (200, 25));
    for query in ["limit=0", "limit=101", "limit=x", "cursor=nonsense"] {
        let (status, body) = orb_call(
            &server,
            "GET",
            &format!("/events/backfills?{query}"),
            &Value::Null,
        );
        assert_rfc7807(status, &body, 400);
    }
    let listed: Vec<Value> = server
        .orb_backfills()
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    assert_eq!(listed, ids.iter().map(|i| json!(i)).collect::<Vec<_>>());
}

/// Guards event search, which `verify` uses for Orb.
#[test]
fn orb_event_search() {
    let server = TestServer::start(Api::Orb, KEY);
    let mut by_orb_id = orb_event("k3", "", "2021-04-28T00:00:00Z");
    by_orb_id
        .as_object_mut()
        .unwrap()
        .remove("external_customer_id");
    by_orb_id["customer_id"] = json!("orb_9");
    send(
        &server,
        &batch_of(
            Api::Orb,
            vec![
                orb_event("k1", "cust_1", "2021-04-26T00:00:00Z"),
                orb_event("k2", "cust_2", "2021-04-27T00:00:00Z"),
                by_orb_id,
            ],
        ),
    );
    let search = |body: Value| orb_call(&server, "POST", "/events/search", &body);
    let (status, found) = search(json!({"event_ids": ["k2", "missing", "k1", "k3"]}));
    assert_eq!(status, 200);
    assert_eq!(
        found,
        json!({"data": [
            {"id": "k1", "customer_id": null, "external_customer_id": "cust_1", "event_name": "ApiCalls",
             "properties": {"region": "us-west-2", "value": 2.5}, "timestamp": "2021-04-26T00:00:00Z", "deprecated": false},
            {"id": "k2", "customer_id": null, "external_customer_id": "cust_2", "event_name": "ApiCalls",
             "properties": {"region": "us-west-2", "value": 2.5}, "timestamp": "2021-04-27T00:00:00Z", "deprecated": false},
            {"id": "k3", "customer_id": "orb_9", "external_customer_id": null, "event_name": "ApiCalls",
             "properties": {"region": "us-west-2", "value": 2.5}, "timestamp": "2021-04-28T00:00:00Z", "deprecated": false}
        ], "pagination_metadata": {"has_more": false, "next_cursor": null}})
    );
    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Timeframe: start inclusive, end exclusive.
    let (_, window) = search(json!({"event_ids": ["k1", "k2", "k3"],
        "timeframe_start": "2021-04-27T00:00:00Z", "timeframe_end": "2021-04-28T00:00:00Z"}));
    assert_eq!(ids(&window), ["k2"]);
    let (_, open_end) =
        search(json!({"event_ids": ["k1", "k2", "k3"], "timeframe_start": "2021-04-27T00:00:00Z"}));
    assert_eq!(ids(&open_end), ["k2", "k3"]);
    // orb_forget plants a missing key.
    server.orb_forget("k2");
    let (_, after) = search(json!({"event_ids": ["k1", "k2"]}));
    assert_eq!(ids(&after), ["k1"]);
    assert_eq!(ingested_keys(&server), ["k1", "k3"]);
    // ...which can be sent again.
    assert_success_body(
        Api::Orb,
        &send(
            &server,
            &batch_of(
                Api::Orb,
                vec![orb_event("k2", "cust_2", "2021-04-27T00:00:00Z")],
            ),
        ),
        1,
    );
    assert_eq!(ingested_keys(&server), ["k1", "k3", "k2"]);
    // At most 500 ids.
    let many: Vec<String> = (0..500).map(|i| format!("id{i}")).collect();
    assert_eq!(search(json!({"event_ids": many})).0, 200);
    let too_many: Vec<String> = (0..501).map(|i| format!("id{i}")).collect();
    let (status, body) = search(json!({"event_ids": too_many}));
    assert_rfc7807(status, &body, 400);
    assert!(body["detail"].as_str().unwrap().contains("500"));
    for bad in [
        json!({}),
        json!({"event_ids": "k1"}),
        json!({"event_ids": [1]}),
        json!({"event_ids": ["k1"], "timeframe_start": "yesterday"}),
    ] {
        let (status, body) = search(bad);
        assert_rfc7807(status, &body, 400);
    }
}

// ---------------------------------------------------------------------------------------------
// Amberflo usage and customers

fn amberflo_call(server: &TestServer, method: &str, path: &str, body: &str) -> Answer {
    let url = format!("{}{path}", server.endpoint());
    call(
        &agent(),
        method,
        &url,
        &[("X-API-KEY", KEY), ("Content-Type", "application/json")],
        body,
    )
    .unwrap()
}

fn record(key: &str, customer: &str, meter: &str, value: f64, ms: i64) -> Value {
    json!({"uniqueId": key, "customerId": customer, "meterApiName": meter, "meterValue": value,
           "meterTimeInMillis": ms, "dimensions": {"region": if value > 5.0 { "eu" } else { "us" }}})
}

/// Guards the usage query, which `verify` uses for Amberflo.
#[test]
fn amberflo_usage_sums_per_customer_and_day() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let day = 86_400i64; // seconds
    let d0 = 1_619_395_200i64; // 2021-04-26T00:00:00Z
    let ms = |s: i64| s * 1000;
    let records = json!([
        record("r1", "cust_a", "ApiCalls", 1.0, ms(d0)),
        record("r2", "cust_a", "ApiCalls", 2.5, ms(d0 + day - 1)),
        record("r3", "cust_a", "ApiCalls", 10.0, ms(d0 + 2 * day + 5)),
        record("r4", "cust_b", "ApiCalls", 4.0, ms(d0 + day)),
        record("r5", "cust_b", "Other", 100.0, ms(d0 + day)),
        record("r6", "cust_c", "ApiCalls", 1.0, ms(d0 + 3 * day)),
    ]);
    assert_success_body(Api::Amberflo, &send(&server, &records), 6);
    let query = |start: i64, end: i64, filter: Option<Value>| {
        let mut q = json!({"meterApiName": "ApiCalls", "aggregation": "SUM", "timeGroupingInterval": "DAY",
                           "timeRange": {"startTimeInSeconds": start, "endTimeInSeconds": end},
                           "groupBy": ["customerId"]});
        if let Some(f) = filter {
            q["filter"] = f;
        }
        let answer = amberflo_call(&server, "POST", "/usage", &q.to_string());
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["clientMeters"].clone()
    };
    let meter = |customer: &str, total: f64, days: &[(i64, f64)]| {
        json!({"group": {"groupInfo": {"customerId": customer}}, "groupValue": total,
               "values": days.iter().map(|(d, v)| json!({"secondsSinceEpochUtc": d, "value": v})).collect::<Vec<_>>()})
    };
    // The end is exclusive: cust_c's record at d0 + 3 days is out; day d0 + day has no cust_a
    // record and is left out.
    assert_eq!(
        query(d0, d0 + 3 * day, None),
        json!([
            meter("cust_a", 13.5, &[(d0, 3.5), (d0 + 2 * day, 10.0)]),
            meter("cust_b", 4.0, &[(d0 + day, 4.0)]),
        ])
    );
    // The start is inclusive (on milliseconds).
    assert_eq!(
        query(d0 + day - 1, d0 + day + 1, None),
        json!([
            meter("cust_a", 2.5, &[(d0, 2.5)]),
            meter("cust_b", 4.0, &[(d0 + day, 4.0)])
        ])
    );
    // Filter on customers, and on a dimension.
    assert_eq!(
        query(
            d0,
            d0 + 10 * day,
            Some(json!({"customerId": ["cust_c", "cust_b", "nobody"]}))
        ),
        json!([
            meter("cust_b", 4.0, &[(d0 + day, 4.0)]),
            meter("cust_c", 1.0, &[(d0 + 3 * day, 1.0)])
        ])
    );
    assert_eq!(
        query(d0, d0 + 10 * day, Some(json!({"region": ["eu"]}))),
        json!([meter("cust_a", 10.0, &[(d0 + 2 * day, 10.0)])])
    );
    assert_eq!(query(0, d0, None), json!([]));

    // A planted missing day (any second of the day names it).
    server.amberflo_forget_day("cust_a", "ApiCalls", d0 + 3600);
    server.amberflo_forget_day("cust_b", "Other", d0 + day);
    assert_eq!(
        query(d0, d0 + 3 * day, None),
        json!([
            meter("cust_a", 10.0, &[(d0 + 2 * day, 10.0)]),
            meter("cust_b", 4.0, &[(d0 + day, 4.0)]),
        ])
    );
    assert_eq!(ingested_keys(&server), ["r3", "r4", "r6"]);
    // Forgotten records can be sent again.
    assert_success_body(
        Api::Amberflo,
        &send(&server, &json!([records[0].clone()])),
        1,
    );
    assert_eq!(ingested_keys(&server), ["r3", "r4", "r6", "r1"]);

    // Validation: 400 (Amberflo's text body).
    let good = json!({"meterApiName": "ApiCalls", "aggregation": "SUM", "timeGroupingInterval": "DAY",
                      "timeRange": {"startTimeInSeconds": 0, "endTimeInSeconds": 10}, "groupBy": ["customerId"]});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut q = good.clone();
        f(&mut q);
        q
    };
    for bad in [
        with(&|q| q["aggregation"] = json!("MAX")),
        with(&|q| q["timeGroupingInterval"] = json!("HOUR")),
        with(&|q| {
            q.as_object_mut().unwrap().remove("meterApiName");
        }),
        with(&|q| {
            q.as_object_mut().unwrap().remove("timeRange");
        }),
        with(&|q| {
            q["timeRange"]
                .as_object_mut()
                .unwrap()
                .remove("endTimeInSeconds");
        }),
        with(&|q| q["timeRange"]["startTimeInSeconds"] = json!("0")),
        with(&|q| q["timeRange"]["startTimeInSeconds"] = json!(10)),
        with(&|q| q["groupBy"] = json!(["region"])),
        with(&|q| {
            q.as_object_mut().unwrap().remove("groupBy");
        }),
        with(&|q| q["filter"] = json!({"customerId": "cust_a"})),
        with(&|q| q["filter"] = json!({"customerId": []})),
        json!([]),
    ] {
        let answer = amberflo_call(&server, "POST", "/usage", &bad.to_string());
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.header("content-type").unwrap().starts_with("text/"));
    }
    assert_eq!(
        amberflo_call(&server, "POST", "/usage", &good.to_string()).status,
        200
    );
    let unauthorized = call(
        &agent(),
        "POST",
        &format!("{}/usage", server.endpoint()),
        &[],
        &good.to_string(),
    )
    .unwrap();
    assert_eq!(unauthorized.status, 401);
}

/// Guards the customer lookup and writes that `--ensure-customers` and identify rely on.
#[test]
fn amberflo_customer_get_post_order() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let absent = amberflo_call(&server, "GET", "/customers?customerId=cust_1", "");
    assert_eq!((absent.status, absent.json()), (200, json!({})));
    let customer = json!({"customerId": "cust_1", "customerName": "Ada", "customerEmail": "ada@example.com",
                          "lifecycleStage": "active", "traits": {"plan": "pro"}});
    let created = amberflo_call(&server, "POST", "/customers", &customer.to_string());
    assert_eq!((created.status, created.json()), (200, customer.clone()));
    let present = amberflo_call(&server, "GET", "/customers?customerId=cust_1", "");
    assert_eq!((present.status, present.json()), (200, customer.clone()));
    assert_eq!(
        amberflo_call(&server, "POST", "/customers", &customer.to_string()).status,
        409
    );
    let minimal = json!({"customerId": "cust_2", "customerName": "Bo"});
    assert_eq!(
        amberflo_call(&server, "POST", "/customers", &minimal.to_string()).status,
        200
    );
    let bad_stage = json!({"customerId": "cust_3", "customerName": "C", "lifecycleStage": 3});
    assert_eq!(
        amberflo_call(&server, "POST", "/customers", &bad_stage.to_string()).status,
        400
    );
    assert_eq!(
        amberflo_call(&server, "PUT", "/customers", &minimal.to_string()).status,
        200
    );
    assert_eq!(server.customers(), [customer, minimal]);

    assert_success_body(
        Api::Amberflo,
        &send(
            &server,
            &json!([record("m1", "cust_1", "ApiCalls", 1.0, 1_619_395_200_000)]),
        ),
        1,
    );
    assert_eq!(
        server.customer_requests(),
        [
            ("GET", "cust_1"),
            ("POST", "cust_1"),
            ("GET", "cust_1"),
            ("POST", "cust_1"),
            ("POST", "cust_2"),
            ("POST", "cust_3"),
            ("PUT", "cust_2")
        ]
        .map(|(m, c)| (m.to_string(), c.to_string()))
    );
    // The customer was created (handled) before the first meter record naming it arrived.
    let received = server.received();
    let create = received
        .iter()
        .find(|r| r.method == "POST" && r.path == "/customers" && r.status == 200)
        .unwrap();
    let ingest = received.iter().find(|r| r.path == "/ingest").unwrap();
    assert!(create.handled_before(ingest));
    assert!(!ingest.handled_before(create));
    assert!(
        received
            .windows(2)
            .all(|w| w[0].arrived_seq < w[1].arrived_seq)
    );
    assert!(received.iter().all(|r| r.arrived_seq < r.handled_seq));
}
