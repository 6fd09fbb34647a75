//! The fault matrix, against the loopback server: for every destination, every
//! failure mode at the first, a middle and the last batch. Each event ends up
//! delivered exactly once (by its key) or in the rejects file with the right reason,
//! the exit code says what happened, and `read = sent + skipped + rejected + failed`.
//! Then the answers a destination should not give (a 200 that is not the API's, an
//! HTML page from a proxy, a redirect) and a TLS endpoint with a bad certificate.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, KEY_VAR, destination_table};
use crate::support::server::{Api, Fault, OrbFailureShape, TestServer};

const KEY: &str = "sk_test_faults_0123456789";
/// 18 events in batches of 4: five requests (4, 4, 4, 4, 2).
const EVENTS: usize = 18;
const BATCH: usize = 4;
const BATCHES: usize = EVENTS.div_ceil(BATCH);
/// The first, a middle and the last batch, as request numbers of a run without retries.
const POSITIONS: [usize; 3] = [1, 3, BATCHES];

fn key(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

fn keys(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| key(prefix, i)).collect()
}

/// The keys of batch `n` (1-based).
fn batch_keys(prefix: &str, n: usize) -> Vec<String> {
    keys(prefix, (n - 1) * BATCH..(n * BATCH).min(EVENTS))
}

fn events(prefix: &str) -> String {
    (0..EVENTS)
        .map(|i| {
            json!({
                "type": "track",
                "event": "api_call",
                "userId": format!("cust_{}", i % 3),
                "messageId": key(prefix, i),
                "timestamp": "2026-11-23T10:00:00.000Z",
                "properties": {"value": i + 1},
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// How a send under faults settled its events: exit code, standard error, the summary, the
/// rejects by key, and how long it took.
struct Settled {
    code: i32,
    stderr: String,
    summary: Value,
    /// Rejects by messageId: (outcome, reason, detail).
    rejects: BTreeMap<String, (String, String, String)>,
    elapsed: Duration,
}

impl Settled {
    fn n(&self, key: &str) -> u64 {
        self.summary[key].as_u64().expect("a count")
    }
}

/// `segrelay send` with the summary and the rejects file, retries waiting 20 ms
/// unless `args` say otherwise.
fn send(job: &Job, input: &str, args: &[&str]) -> Settled {
    let input_path = job.input.clone();
    std::fs::write(&input_path, input).unwrap();
    let summary = job.path("summary.json");
    let rejects = job.path("rejects.ndjson");
    let _ = std::fs::remove_file(&summary);
    let _ = std::fs::remove_file(&rejects);
    let mut cmd = support::segrelay();
    cmd.arg("send")
        .arg("-c")
        .arg(&job.settings)
        .arg("--summary")
        .arg(&summary)
        .arg("--rejects")
        .arg(&rejects)
        .args(["--batch-size", &BATCH.to_string()]);
    if !args.contains(&"--max-retry-wait") {
        cmd.args(["--max-retry-wait", "20ms"]);
    }
    cmd.args(args)
        .arg(&input_path)
        .env(KEY_VAR, KEY)
        .timeout(Duration::from_secs(90));
    let started = Instant::now();
    let output = cmd.output().expect("segrelay runs");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "segrelay panicked:\n{stderr}");
    assert!(!stderr.contains(KEY), "the key leaked:\n{stderr}");
    let summary_text = std::fs::read_to_string(&summary)
        .unwrap_or_else(|_| panic!("no summary; stderr:\n{stderr}"));
    let summary: Value = serde_json::from_str(&summary_text).unwrap();
    support::assert_accounting(&summary);
    let mut by_key = BTreeMap::new();
    for line in std::fs::read_to_string(&rejects)
        .unwrap_or_default()
        .lines()
    {
        let reject: Value = serde_json::from_str(line).expect("a rejects line is JSON");
        let note = &reject["_segrelay"];
        let text = |k: &str| note[k].as_str().unwrap_or_default().to_owned();
        let id = reject["messageId"]
            .as_str()
            .expect("the event is kept")
            .to_owned();
        let previous = by_key.insert(
            id.clone(),
            (text("outcome"), text("reason"), text("detail")),
        );
        assert!(previous.is_none(), "{id} is in the rejects file twice");
    }
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(
        by_key.len() as u64,
        n("rejected") + n("failed"),
        "every rejected or failed event is in the rejects file: {summary}"
    );
    Settled {
        code: output.status.code().unwrap_or(-1),
        stderr,
        summary,
        rejects: by_key,
        elapsed,
    }
}

/// Each key was accepted (at least once, or exactly once when `exact`) and the
/// destination holds it exactly once; it holds nothing else.
fn assert_delivered(server: &TestServer, expected: &[String], exact: bool, context: &str) {
    let deliveries = server.deliveries();
    for k in expected {
        let n = deliveries.get(k).copied().unwrap_or(0);
        if exact {
            assert_eq!(n, 1, "{context}: {k} accepted {n} times");
        } else {
            assert!(n >= 1, "{context}: {k} never accepted");
        }
    }
    let held = support::tally(&support::record_keys(&server.ingested()));
    let wanted = support::tally(expected);
    assert_eq!(
        held, wanted,
        "{context}: the destination holds each event once"
    );
}

/// After an abort at request `position` (a batch, with no retry between), the
/// batches before it were sent; the one in flight failed with "run aborted",
/// and so did at most the next one, read while it was answered; nothing after
/// them was read. The rejects file holds the failed events alone, and the
/// summary says where the run stopped and how many lines it did not read.
fn assert_stopped_at_batch(run: &Settled, prefix: &str, position: usize, context: &str) {
    let sent = (position - 1) * BATCH;
    assert_eq!(run.n("sent"), sent as u64, "{context}: {}", run.summary);
    let failed = run.n("failed") as usize;
    let in_flight = batch_keys(prefix, position).len();
    assert!(
        (in_flight..=in_flight + BATCH).contains(&failed),
        "{context}: {failed} failed: {}",
        run.summary
    );
    let failed_keys = keys(prefix, sent..sent + failed);
    assert_eq!(run.rejects.len(), failed, "{context}: only those in flight");
    for k in &failed_keys {
        let (outcome, reason, _) = &run.rejects[k];
        assert_eq!(
            (outcome.as_str(), reason.as_str()),
            ("failed", "run aborted"),
            "{context}: {k}"
        );
    }
    assert_eq!(
        run.n("lines_not_read"),
        (EVENTS - sent - failed) as u64,
        "{context}: {}",
        run.summary
    );
    let stopped_at = run.summary["stopped_at"].as_str().unwrap();
    assert!(
        stopped_at.ends_with(&format!("events.ndjson:{}", sent + 1)),
        "{context}: {stopped_at}"
    );
    assert!(
        run.stderr.contains(&format!("stopped at {stopped_at}; ")),
        "{context}: {}",
        run.stderr
    );
}

/// The keys of every event not in `but`.
fn all_but(prefix: &str, but: &[String]) -> Vec<String> {
    keys(prefix, 0..EVENTS)
        .into_iter()
        .filter(|k| !but.contains(k))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Retried faults: everything is delivered once, exit 0.

fn retried_fault(fault: impl Fn(usize) -> Fault, args: &[&str], exact: bool, what: &str) {
    for api in Api::ALL {
        for position in POSITIONS {
            let context = format!("{what} at batch {position} for {}", api.name());
            let server = TestServer::start(api, KEY);
            server.fault_on_request(position, fault(position));
            let job = Job::new(&destination_table(api), &server.endpoint(), "");
            let prefix = format!("{}{position}", api.name());
            let run = send(&job, &events(&prefix), args);
            assert_eq!(run.code, 0, "{context}\n{}", run.stderr);
            assert_eq!(run.n("sent"), EVENTS as u64, "{context}");
            assert_eq!(run.n("retries"), 1, "{context}: {}", run.summary);
            assert_eq!(
                run.n("requests"),
                BATCHES as u64 + 1,
                "{context}: {}",
                run.summary
            );
            assert!(run.rejects.is_empty(), "{context}");
            assert_delivered(&server, &keys(&prefix, 0..EVENTS), exact, &context);
        }
    }
}

#[test]
fn a_500_is_retried_at_any_batch() {
    retried_fault(|_| Fault::Status(500, String::new()), &[], true, "500");
}

#[test]
fn a_503_is_retried_at_any_batch() {
    retried_fault(
        |_| Fault::Status(503, "<html>down for maintenance</html>".into()),
        &[],
        true,
        "503",
    );
}

#[test]
fn a_429_waits_for_retry_after_at_any_batch() {
    // Retry-After: 1 at the middle batch is waited for in full (capped by
    // --max-retry-wait 5s); Retry-After: 0 at the others means no wait at all.
    for api in Api::ALL {
        for position in POSITIONS {
            let context = format!("429 at batch {position} for {}", api.name());
            let after = if position == POSITIONS[1] { "1" } else { "0" };
            let server = TestServer::start(api, KEY);
            server.fault_on_request(position, Fault::RetryAfter(429, after.into()));
            let job = Job::new(&destination_table(api), &server.endpoint(), "");
            let prefix = format!("{}{position}", api.name());
            let run = send(&job, &events(&prefix), &["--max-retry-wait", "5s"]);
            assert_eq!(run.code, 0, "{context}\n{}", run.stderr);
            assert_eq!(run.n("retries"), 1, "{context}");
            let backoff = run.summary["backoff_seconds"].as_f64().unwrap();
            if after == "1" {
                assert!(
                    (1.0..1.1).contains(&backoff) && run.elapsed >= Duration::from_secs(1),
                    "{context}: waited {backoff} s for Retry-After: 1"
                );
            } else {
                assert!(
                    backoff < 0.05,
                    "{context}: waited {backoff} s for Retry-After: 0"
                );
            }
            assert_delivered(&server, &keys(&prefix, 0..EVENTS), true, &context);
        }
    }
}

#[test]
fn a_slow_answer_past_the_timeout_is_retried_at_any_batch() {
    // The slow request is still handled after the client gave up: the destination
    // dedupes it by key, so each event is held once, though accepted twice.
    retried_fault(
        |_| Fault::Delay(Duration::from_millis(700)),
        &["--timeout", "200ms"],
        false,
        "a slow answer",
    );
}

#[test]
fn a_closed_connection_is_retried_at_any_batch() {
    retried_fault(|_| Fault::Close, &[], true, "a closed connection");
}

// ---------------------------------------------------------------------------------------------
// A refused key: exit 3, nothing after it is sent, the batches in flight failed, the
// rest not read.

#[test]
fn a_401_aborts_at_any_batch_and_loses_nothing() {
    for api in Api::ALL {
        for position in POSITIONS {
            let context = format!("401 at batch {position} for {}", api.name());
            let server = TestServer::start(api, KEY);
            server.fault_on_request(position, Fault::Status(401, String::new()));
            let job = Job::new(&destination_table(api), &server.endpoint(), "");
            let prefix = format!("{}{position}", api.name());
            let run = send(&job, &events(&prefix), &[]);
            assert_eq!(run.code, 3, "{context}\n{}", run.stderr);
            assert_eq!(
                server.received().len(),
                position,
                "{context}: no request after the 401"
            );
            let sent: Vec<String> = (1..position).flat_map(|b| batch_keys(&prefix, b)).collect();
            assert_delivered(&server, &sent, true, &context);
            assert_stopped_at_batch(&run, &prefix, position, &context);
            for (_, _, detail) in run.rejects.values() {
                assert!(detail.contains("401"), "{context}: {detail}");
            }
            assert!(
                run.stderr.contains("api_key"),
                "{context}: names the setting\n{}",
                run.stderr
            );
            assert!(run.summary["aborted"].as_str().unwrap().contains("401"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A refused event: rejected with the destination's message, the rest delivered once.

#[test]
fn a_refused_event_is_rejected_alone_at_any_batch() {
    for api in Api::ALL {
        for (i, position) in POSITIONS.into_iter().enumerate() {
            let context = format!("a refused event in batch {position} for {}", api.name());
            let server = TestServer::start(api, KEY);
            let prefix = format!("{}{position}", api.name());
            let batch = batch_keys(&prefix, position);
            // The middle event of the batch (the last one of a batch of two).
            let poisoned = batch[batch.len() / 2].clone();
            match api {
                Api::Orb => {
                    let shape =
                        [OrbFailureShape::ValidationFailed, OrbFailureShape::Rfc7807][i % 2];
                    server.orb_reject_keys(&[poisoned.as_str()], shape, i == 1);
                }
                // Amberflo and Kable refuse the whole batch without naming the event.
                _ => server.poison(&poisoned),
            }
            let job = Job::new(&destination_table(api), &server.endpoint(), "");
            let run = send(&job, &events(&prefix), &[]);
            assert_eq!(run.code, 1, "{context}\n{}", run.stderr);
            assert_eq!(run.n("rejected"), 1, "{context}: {}", run.summary);
            assert_eq!(run.n("sent"), EVENTS as u64 - 1, "{context}");
            let (outcome, reason, detail) = &run.rejects[&poisoned];
            assert_eq!(outcome, "rejected", "{context}");
            assert_eq!(reason, &format!("refused by {}", api.name()), "{context}");
            assert!(
                !detail.is_empty(),
                "{context}: the destination's message is kept"
            );
            assert!(
                run.stderr
                    .contains(&format!("events.ndjson:{}", key_line(&poisoned))),
                "{context}: the refused event is named\n{}",
                run.stderr
            );
            assert_delivered(&server, &all_but(&prefix, &[poisoned]), true, &context);
        }
    }
}

/// The input line of a key (`prefix-i` is on line i + 1).
fn key_line(key: &str) -> usize {
    key.rsplit('-').next().unwrap().parse::<usize>().unwrap() + 1
}

// ---------------------------------------------------------------------------------------------
// Answers a destination should not give.

/// Faults pushed for the first request and every retry of it (`--max-retries 2`).
fn persistent(fault: Fault) -> Vec<Fault> {
    vec![fault; 3]
}

/// A 2xx that is not the destination's answer: never counted as sent, and not
/// retried (every later request would get it too): the run aborts at once (exit 3)
/// naming the URL called; the events in flight failed, the rest not read.
fn assert_not_taken_as_sent(api: Api, fault: Fault, said: &[&str]) {
    let context = format!("{fault:?} for {}", api.name());
    let server = TestServer::start(api, KEY);
    server.push_faults(persistent(fault.clone()));
    let job = Job::new(&destination_table(api), &server.endpoint(), "");
    let prefix = format!("{}-bad", api.name());
    let run = send(&job, &events(&prefix), &["--max-retries", "2"]);
    assert_eq!(run.code, 3, "{context}\n{}", run.stderr);
    assert_eq!(run.n("retries"), 0, "{context}");
    assert_eq!(
        server.received().len(),
        1,
        "{context}: no request after the abort"
    );
    assert!(server.deliveries().is_empty());
    assert_stopped_at_batch(&run, &prefix, 1, &context);
    for words in said.iter().chain(&[server.endpoint().as_str(), "endpoint"]) {
        assert!(
            run.stderr.contains(words),
            "{context}: standard error does not say {words:?}\n{}",
            run.stderr
        );
    }
}

#[test]
fn orb_200_without_validation_failed_is_not_sent() {
    for body in [
        "{}",
        "{\"debug\":{}}",
        "",
        "ok",
        "[]",
        "{\"validation_failed\":null}",
    ] {
        assert_not_taken_as_sent(
            Api::Orb,
            Fault::Status(200, body.into()),
            &["validation_failed"],
        );
    }
}

#[test]
fn orb_200_naming_failed_events_rejects_them() {
    // Orb may answer 200 and still list events that failed validation.
    let server = TestServer::start(Api::Orb, KEY);
    let prefix = "orb200";
    let named = key(prefix, 5);
    let body = json!({"validation_failed": [
        {"idempotency_key": named, "validation_errors": ["property value must be a number"]}
    ]});
    server.fault_on_request(2, Fault::Status(200, body.to_string()));
    let job = Job::new(&destination_table(Api::Orb), &server.endpoint(), "");
    let run = send(&job, &events(prefix), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.n("rejected"), 1);
    let (_, reason, detail) = &run.rejects[&named];
    assert_eq!(reason, "refused by orb");
    assert!(detail.contains("must be a number"), "{detail}");
    assert_delivered(
        &server,
        &all_but(prefix, &[named]),
        true,
        "orb 200 naming events",
    );
}

#[test]
fn an_html_page_from_a_proxy_is_not_sent() {
    let page = "<!DOCTYPE html><html><head><title>Sign in</title></head>\
                <body><h1>Corporate proxy</h1><p>Please log in to continue.</p></body></html>";
    for api in Api::ALL {
        // What matters: not counted as sent, and the run aborts at once.
        let said: &[&str] = match api {
            Api::Orb => &["200", "Corporate proxy", "HTML"],
            _ => &["HTML", "proxy"],
        };
        assert_not_taken_as_sent(api, Fault::Html(200, page.into()), said);
    }
}

#[test]
fn orb_names_an_html_page_as_a_proxy() {
    let server = TestServer::start(Api::Orb, KEY);
    server.push_faults(persistent(Fault::Html(
        200,
        "<html><body>Sign in</body></html>".into(),
    )));
    let job = Job::new(&destination_table(Api::Orb), &server.endpoint(), "");
    let run = send(&job, &events("orb-html"), &["--max-retries", "2"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    for words in ["HTML", "proxy"] {
        assert!(
            run.stderr.contains(words),
            "does not say {words:?}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn a_redirect_is_not_followed() {
    for api in Api::ALL {
        for status in [301, 302, 303, 307, 308] {
            let context = format!("{status} for {}", api.name());
            let server = TestServer::start(api, KEY);
            let elsewhere = TestServer::start(api, KEY);
            let location = match api {
                Api::Amberflo => format!("{}/ingest", elsewhere.endpoint()),
                Api::Orb => format!("{}/ingest", elsewhere.endpoint()),
                Api::Kable => format!("{}/api/v1/events/create", elsewhere.endpoint()),
            };
            server.fault_on_request(2, Fault::Redirect(status, location.clone()));
            let job = Job::new(&destination_table(api), &server.endpoint(), "");
            let prefix = format!("{}{status}", api.name());
            let run = send(&job, &events(&prefix), &[]);
            assert_eq!(run.code, 3, "{context}\n{}", run.stderr);
            assert!(
                elsewhere.received().is_empty(),
                "{context}: the other host got a request (and the key)"
            );
            assert_eq!(
                server.received().len(),
                2,
                "{context}: nothing after the redirect"
            );
            assert!(run.stderr.contains("redirect"), "{context}\n{}", run.stderr);
            assert!(
                run.stderr.contains(&location),
                "{context}: names where it points"
            );
            let sent = batch_keys(&prefix, 1);
            assert_delivered(&server, &sent, true, &context);
            assert_stopped_at_batch(&run, &prefix, 2, &context);
        }
    }
    // A redirect to a path on the same host is not followed either.
    let server = TestServer::start(Api::Kable, KEY);
    server.push_faults(vec![Fault::Redirect(307, "/api/v2/events/create".into())]);
    let job = Job::new(&destination_table(Api::Kable), &server.endpoint(), "");
    let run = send(&job, &events("same"), &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn an_endpoint_without_the_apis_base_path_stops_at_once_and_says_the_fix() {
    // Orb's host answers 200 `{}` outside /v1; the others answer 404.
    for api in Api::ALL {
        let server = TestServer::start(api, KEY);
        let (endpoint, fix, home) = match api {
            Api::Orb => (
                server.base_url(),
                "the endpoint setting probably lacks /v1",
                "https://api.withorb.com/v1",
            ),
            Api::Kable => (
                format!("{}/api/v1", server.endpoint()),
                "should end before /api/v1",
                "https://live.kable.io",
            ),
            Api::Amberflo => (
                format!("{}/v1", server.endpoint()),
                "should be the host alone",
                "https://ingest.amberflo.io",
            ),
        };
        let context = format!("{} at {endpoint}", api.name());
        let job = Job::new(&destination_table(api), &endpoint, "");
        let prefix = format!("{}-path", api.name());
        // The default retries: a retried wrong answer would make seven requests.
        let run = send(&job, &events(&prefix), &[]);
        assert_eq!(run.code, 3, "{context}\n{}", run.stderr);
        assert_eq!(server.received().len(), 1, "{context}: tried once");
        assert_eq!(run.n("retries"), 0, "{context}");
        assert_eq!(run.n("sent"), 0, "{context}");
        let called = &server.received()[0].path;
        for words in [format!("{}{called}", server.base_url()).as_str(), fix, home] {
            assert!(
                run.stderr.contains(words),
                "{context}: standard error does not say {words:?}\n{}",
                run.stderr
            );
        }
        let aborted = run.summary["aborted"].as_str().unwrap();
        assert!(aborted.contains(fix), "{context}: {aborted}");
    }
}

#[test]
fn a_refused_key_names_the_url_it_came_from() {
    for api in Api::ALL {
        let server = TestServer::start(api, "sk_test_another_key_987654321");
        let job = Job::new(&destination_table(api), &server.endpoint(), "");
        let run = send(&job, &events(&format!("{}-key", api.name())), &[]);
        let context = api.name();
        assert_eq!(run.code, 3, "{context}\n{}", run.stderr);
        assert_eq!(server.received().len(), 1, "{context}");
        let called = format!("{}{}", server.base_url(), server.received()[0].path);
        for words in ["401", called.as_str(), KEY_VAR] {
            assert!(
                run.stderr.contains(words),
                "{context}: standard error does not say {words:?}\n{}",
                run.stderr
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS with a certificate nobody vouches for.

/// What a TLS test server saw.
#[derive(Debug, Default)]
struct TlsSeen {
    connections: usize,
    /// Bytes of connections that did not start with a TLS handshake record.
    plaintext: Vec<u8>,
    handshakes_completed: usize,
    /// Decrypted application data (a request sent despite the bad certificate).
    application_data: Vec<u8>,
    errors: Vec<String>,
}

/// A TLS server on 127.0.0.1 with a self-signed certificate, made by `openssl`.
struct TlsServer {
    port: u16,
    seen: Arc<Mutex<TlsSeen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    /// None (with a message) when the openssl binary is missing.
    fn start(dir: &Path) -> Option<TlsServer> {
        let openssl = ["/usr/bin/openssl", "openssl"].into_iter().find(|o| {
            std::process::Command::new(o)
                .arg("version")
                .output()
                .is_ok_and(|out| out.status.success())
        })?;
        let run = |args: &[&str]| {
            let out = std::process::Command::new(openssl)
                .current_dir(dir)
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ]);
        run(&[
            "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
        ]);
        run(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
        ]);
        let cert =
            rustls::pki_types::CertificateDer::from(std::fs::read(dir.join("cert.der")).unwrap());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            std::fs::read(dir.join("key.der")).unwrap().into(),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("a usable certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(TlsSeen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => serve_tls(stream, config.clone(), &seen),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Some(TlsServer {
            port,
            seen,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_tls(mut stream: TcpStream, config: Arc<rustls::ServerConfig>, seen: &Mutex<TlsSeen>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    seen.lock().unwrap().connections += 1;
    let mut first = [0u8; 1];
    match stream.peek(&mut first) {
        Ok(1) if first[0] == 0x16 => {}
        Ok(1) => {
            // Not a TLS handshake: a request in clear.
            let mut buf = vec![0u8; 64 * 1024];
            let n = stream.read(&mut buf).unwrap_or(0);
            seen.lock().unwrap().plaintext.extend_from_slice(&buf[..n]);
            return;
        }
        _ => return,
    }
    let mut conn = match rustls::ServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => {
            seen.lock().unwrap().errors.push(e.to_string());
            return;
        }
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut stream) {
            seen.lock().unwrap().errors.push(e.to_string());
            return;
        }
    }
    seen.lock().unwrap().handshakes_completed += 1;
    let mut tls = rustls::Stream::new(&mut conn, &mut stream);
    let mut buf = vec![0u8; 64 * 1024];
    if let Ok(n) = tls.read(&mut buf) {
        seen.lock()
            .unwrap()
            .application_data
            .extend_from_slice(&buf[..n]);
        let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
}

/// Sends to the TLS server for every destination and host name, checks that the
/// run aborts and that nothing was sent, in clear or otherwise, then runs `check`.
fn send_to_bad_tls(check: impl Fn(&str, &Settled, usize)) {
    let dir = tempfile::tempdir().unwrap();
    let Some(tls) = TlsServer::start(dir.path()) else {
        eprintln!("skipped: the openssl binary is missing, so no certificate can be made");
        return;
    };
    for api in Api::ALL {
        for host in ["127.0.0.1", "localhost"] {
            let context = format!("TLS at {host} for {}", api.name());
            let endpoint = match api {
                Api::Orb => format!("https://{host}:{}/v1", tls.port),
                _ => format!("https://{host}:{}", tls.port),
            };
            let job = Job::new(&destination_table(api), &endpoint, "");
            let before = tls.seen.lock().unwrap().connections;
            let run = send(&job, &events("tls"), &["--max-retries", "2"]);
            assert_eq!(run.code, 3, "{context}\n{}", run.stderr);
            assert_stopped_at_batch(&run, "tls", 1, &context);
            assert!(run.summary["aborted"].is_string(), "{context}");
            let seen = tls.seen.lock().unwrap();
            let connections = seen.connections - before;
            assert!(connections > 0, "{context}: segrelay never connected");
            assert!(
                seen.plaintext.is_empty(),
                "{context}: a request in clear: {:?}",
                String::from_utf8_lossy(&seen.plaintext)
            );
            assert_eq!(
                seen.handshakes_completed, 0,
                "{context}: the handshake completed"
            );
            assert!(
                seen.application_data.is_empty(),
                "{context}: a request was sent"
            );
            drop(seen);
            check(&context, &run, connections);
        }
    }
}

#[test]
fn a_self_signed_certificate_is_refused_and_nothing_is_sent() {
    send_to_bad_tls(|context, run, _| {
        assert!(
            run.stderr.contains("certificate"),
            "{context}: the message names the certificate\n{}",
            run.stderr
        );
    });
}

#[test]
fn a_self_signed_certificate_aborts_at_once_saying_tls() {
    send_to_bad_tls(|context, run, connections| {
        assert!(
            run.stderr.contains("TLS"),
            "{context}: the message says TLS\n{}",
            run.stderr
        );
        assert_eq!(
            run.n("retries"),
            0,
            "{context}: a bad certificate is not worth a retry ({connections} connections)"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Orb backfills: an abort before the first window reads nothing more, and names the window.

#[test]
fn an_abort_while_creating_an_orb_backfill_names_the_window_not_made() {
    for fault in [
        Fault::Status(401, String::new()),
        Fault::Status(500, String::new()),
    ] {
        let context = format!("{fault:?} on the backfill creation");
        let server = TestServer::start(Api::Orb, KEY);
        server.push_faults(persistent(fault));
        let job = Job::new(&destination_table(Api::Orb), &server.endpoint(), "");
        let run = send(
            &job,
            &events("bf"),
            &["--orb-backfill", "--max-retries", "2"],
        );
        assert_eq!(run.code, 3, "{context}\n{}", run.stderr);
        assert!(server.deliveries().is_empty());
        assert_eq!(run.n("read"), 0, "{context}: {}", run.summary);
        assert!(run.rejects.is_empty(), "{context}");
        let windows = run.summary["windows_not_made"].as_array().unwrap();
        assert_eq!(windows.len(), 1, "{context}: {}", run.summary);
        assert_eq!(windows[0]["events"], EVENTS, "{context}");
        assert_eq!(windows[0]["start"], "2026-11-23T10:00:00.000Z", "{context}");
        assert!(
            run.stderr.contains("orb backfill windows not made, their events not read: 2026-11-23T10:00:00.000Z to 2026-11-23T10:00:00.001Z (18 events)"),
            "{context}\n{}",
            run.stderr
        );
    }
}
