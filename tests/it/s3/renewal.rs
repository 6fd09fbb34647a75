//! Temporary credentials (here a container's endpoint handing out keys the
//! S3 server accepts) renewed before they expire, and once when S3 says
//! they expired; a renewal that fails is an input error for the object.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{KEY, events, kable_settings, run};
use crate::support;
use crate::support::s3::{CredentialsEndpoint, Fault, S3Server, TEMPORARY_KEYS};
use crate::support::server::{Api, TestServer};

/// Bucket `logs` with `in/a.ndjson`, `in/b.ndjson`, `in/c.ndjson`, 3 events each.
fn three_objects() -> S3Server {
    let s3 = S3Server::start();
    s3.bucket("logs");
    for name in ["a", "b", "c"] {
        s3.put(
            "logs",
            &format!("in/{name}.ndjson"),
            events(name, 3).as_bytes(),
        );
    }
    s3
}

/// Sends `s3://logs/in/` to a Kable server with `-v`: the run, the keys
/// delivered (each with how many times), the summary.
fn send_logs(
    cmd: assert_cmd::Command,
    dir: &Path,
) -> (support::Run, BTreeMap<String, usize>, Value) {
    let server = TestServer::start(Api::Kable, KEY);
    let settings = kable_settings(dir, &server);
    let summary = dir.join("summary.json");
    let mut cmd = cmd;
    cmd.arg("send")
        .arg("-v")
        .arg("-c")
        .arg(&settings)
        .args(["-d", "kable", "--summary"])
        .arg(&summary)
        .arg("s3://logs/in/");
    let run = run(cmd);
    for (_, secret) in TEMPORARY_KEYS {
        assert!(
            !run.stderr.contains(secret),
            "a secret leaked: {}",
            run.stderr
        );
    }
    (run, server.deliveries(), support::summary(&summary))
}

fn all_keys_once(names: &[&str]) -> BTreeMap<String, usize> {
    names
        .iter()
        .flat_map(|name| (0..3).map(move |i| (format!("{name}-{i}"), 1)))
        .collect()
}

#[test]
fn temporary_credentials_are_renewed_before_they_expire() {
    let s3 = three_objects();
    // The first credentials expire in a minute: within the margin, so they
    // are renewed before the first request is signed.
    let endpoint = CredentialsEndpoint::start(vec![
        CredentialsEndpoint::document(0, 1),
        CredentialsEndpoint::document(1, 120),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (run, delivered, summary) = send_logs(endpoint.segrelay(&s3), dir.path());
    run.expect_code(0);
    assert_eq!(delivered, all_keys_once(&["a", "b", "c"]));
    assert_eq!(endpoint.asked(), 2, "found, then renewed once");
    let keys = s3.access_keys();
    assert!(!keys.is_empty());
    assert!(
        keys.iter().all(|k| k == TEMPORARY_KEYS[1].0),
        "every request signed with the renewed key: {keys:?}"
    );
    assert!(
        run.stderr.contains(
            "segrelay: renewed the credentials from the container credentials endpoint \
             (AWS_CONTAINER_CREDENTIALS_*): they expire at "
        ),
        "{}",
        run.stderr
    );
    assert_eq!(summary["s3"]["objects_read"], 3);
    assert_eq!(summary["s3"]["retries"], 0);
}

#[test]
fn credentials_s3_says_expired_are_renewed_and_the_request_made_again() {
    let s3 = three_objects();
    let endpoint = CredentialsEndpoint::start(vec![
        CredentialsEndpoint::document(0, 120),
        CredentialsEndpoint::document(1, 120),
    ]);
    s3.fault_next_get_of("in/b.ndjson", Fault::ExpiredToken);
    let dir = tempfile::tempdir().unwrap();
    let (run, delivered, summary) = send_logs(endpoint.segrelay(&s3), dir.path());
    run.expect_code(0);
    assert_eq!(delivered, all_keys_once(&["a", "b", "c"]));
    assert_eq!(endpoint.asked(), 2);
    let (_, gets) = s3.take_log();
    let b = gets.iter().filter(|(key, _)| key == "in/b.ndjson").count();
    assert_eq!(b, 2, "b.ndjson asked again once: {gets:?}");
    let keys = s3.access_keys();
    assert_eq!(keys.first().map(String::as_str), Some(TEMPORARY_KEYS[0].0));
    assert_eq!(keys.last().map(String::as_str), Some(TEMPORARY_KEYS[1].0));
    assert!(
        run.stderr
            .contains(": S3 answered ExpiredToken; the new ones are valid until "),
        "{}",
        run.stderr
    );
    // Not a fault retried: the credentials were renewed.
    assert_eq!(summary["s3"]["retries"], 0);
    assert_eq!(summary["s3"]["objects_read"], 3);
}

#[test]
fn a_renewal_that_fails_or_is_refused_again_is_an_input_error_for_the_object() {
    let s3 = three_objects();
    let endpoint = CredentialsEndpoint::start(vec![
        CredentialsEndpoint::document(0, 120),
        (500, String::new()),
    ]);
    s3.fault_next_get_of("in/b.ndjson", Fault::ExpiredToken);
    let dir = tempfile::tempdir().unwrap();
    let (run, delivered, summary) = send_logs(endpoint.segrelay(&s3), dir.path());
    run.expect_code(1);
    assert!(
        run.stderr.contains(
            "s3://logs/in/b.ndjson: cannot read input: GetObject: the credentials could not be \
             renewed (the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*): HTTP 500)"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(delivered, all_keys_once(&["a", "c"]));
    assert_eq!(summary["input_errors"], 1);
    assert_eq!(summary["s3"]["objects_read"], 2);

    // Renewed, and refused again: said so, and not renewed a second time.
    let s3 = three_objects();
    let endpoint = CredentialsEndpoint::start(vec![
        CredentialsEndpoint::document(0, 120),
        CredentialsEndpoint::document(1, 120),
    ]);
    s3.fault_next_get_of("in/b.ndjson", Fault::ExpiredToken);
    s3.fault_next_get_of("in/b.ndjson", Fault::ExpiredToken);
    let dir = tempfile::tempdir().unwrap();
    let (run, delivered, summary) = send_logs(endpoint.segrelay(&s3), dir.path());
    run.expect_code(1);
    assert!(
        run.stderr.contains(
            "s3://logs/in/b.ndjson: cannot read input: GetObject: S3 refused the credentials from \
             the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*) even just renewed \
             (HTTP 400 ExpiredToken"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(endpoint.asked(), 2);
    assert_eq!(delivered, all_keys_once(&["a", "c"]));
    assert_eq!(summary["input_errors"], 1);
}
