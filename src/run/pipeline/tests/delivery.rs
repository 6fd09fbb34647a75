//! What the courier makes of the destination's answers, seen through a whole
//! pass: a refused batch split until the bad event stands alone, retries, and
//! `Retry-After` within the cap.

use std::collections::BTreeMap;
use std::time::Duration;

use super::harness::{KABLE_KEY, KABLE_URL, ORB, Setup, quick_retries, tracks};
use crate::delivery::retry::RetryPolicy;
use crate::transport::scripted::{Answer, Call, Script, response};

#[test]
fn a_batch_refused_for_one_event_is_halved_until_it_stands_alone() {
    let script = Script::new().otherwise(Answer::with(|call| {
        match call.body_text().contains(r#""transactionId":"m6""#) {
            true => response(400, Vec::new(), r#"{"message":"data.n must be a string"}"#),
            false => response(200, Vec::new(), ""),
        }
    }));
    let ran = Setup::new(tracks(8)).batch_size(8).run(&script);
    assert_eq!(
        ran.sent_lines(),
        [
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            vec![1, 2, 3, 4],
            vec![5, 6, 7, 8],
            vec![5, 6],
            vec![5],
            vec![6],
            vec![7, 8],
        ]
    );
    assert!(ran.calls.iter().all(|call| call.url == KABLE_URL));
    // Every other event went out once in a request that was taken.
    let mut taken: Vec<u64> = ran
        .calls
        .iter()
        .filter(|call| !call.lines().contains(&6))
        .flat_map(|call| call.lines())
        .collect();
    taken.sort_unstable();
    assert_eq!(taken, [1, 2, 3, 4, 5, 7, 8]);
    let [rejected] = &ran.rejects[..] else {
        panic!("one rejected event: {:?}", ran.rejects)
    };
    assert_eq!(
        (rejected.line, rejected.message_id.as_str()),
        (6, "m6"),
        "the event itself is kept"
    );
    assert_eq!(
        (rejected.outcome.as_str(), rejected.reason.as_str()),
        ("rejected", "refused by kable")
    );
    assert_eq!(
        rejected.detail,
        r#"400: {"message":"data.n must be a string"}"#
    );
    let summary = ran.summary();
    assert_eq!(
        (summary.read, summary.sent, summary.rejected, summary.failed),
        (8, 7, 1, 0)
    );
    assert_eq!(
        summary.rejected_by_reason,
        BTreeMap::from([("refused by kable".to_owned(), 1)])
    );
    assert_eq!(summary.requests, 7);
    assert!(ran.end.complete);
}

/// Orb names the events it refuses: they are rejected with its words, and
/// the rest of the batch is sent again, under the same idempotency keys.
#[test]
fn the_events_a_destination_names_are_rejected_and_the_rest_sent_again() {
    let script = Script::new()
        .then(Answer::status(200).body(
            r#"{"validation_failed":[{"idempotency_key":"m2","validation_errors":["n must be a number"]}]}"#,
        ))
        .then(Answer::status(200).body(r#"{"validation_failed":[]}"#));
    let ran = Setup::new(tracks(3)).settings(ORB).run(&script);
    assert_eq!(ran.sent_lines(), [vec![1, 2, 3], vec![1, 3]]);
    let keys = |call: &Call| -> Vec<String> {
        let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["idempotency_key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(keys(&ran.calls[0]), ["m1", "m2", "m3"]);
    assert_eq!(keys(&ran.calls[1]), ["m1", "m3"], "the same keys again");
    assert_eq!(ran.rejected(), [(2, "rejected", "refused by orb")]);
    assert_eq!(ran.rejects[0].detail, "n must be a number");
    let summary = ran.summary();
    assert_eq!(
        (summary.sent, summary.rejected, summary.requests),
        (2, 1, 2)
    );
}

#[test]
fn a_batch_answered_503_then_200_is_delivered_once() {
    let script = Script::new()
        .then(Answer::status(503).body("try again"))
        .then(Answer::status(200));
    let ran = Setup::new(tracks(3)).run(&script);
    assert_eq!(ran.sent_lines(), [vec![1, 2, 3], vec![1, 2, 3]]);
    assert_eq!(
        ran.calls[0].body, ran.calls[1].body,
        "the same records, under the same keys"
    );
    let summary = ran.summary();
    assert_eq!(
        (
            summary.sent,
            summary.failed,
            summary.requests,
            summary.retries
        ),
        (3, 0, 2, 1)
    );
    assert!(ran.rejects.is_empty());
    assert!(ran.end.complete && ran.end.aborted.is_none());
}

#[test]
fn retryable_failures_past_the_limit_fail_the_batch_with_the_reason() {
    let script = Script::new().then_times(4, Answer::failed("connection reset by peer", true));
    let ran = Setup::new(tracks(3)).retry(quick_retries(3)).run(&script);
    assert_eq!(ran.calls.len(), 4, "the request and 3 retries");
    let summary = ran.summary();
    assert_eq!(
        (summary.read, summary.sent, summary.failed, summary.retries),
        (3, 0, 3, 3)
    );
    assert_eq!(
        summary.failed_by_reason,
        BTreeMap::from([("run aborted".to_owned(), 3)])
    );
    let reason = "connection reset by peer (gave up after 3 retries)";
    assert!(
        ran.rejects.iter().all(|r| r.detail == reason),
        "{:?}",
        ran.rejects
    );
    assert_eq!(
        ran.rejected(),
        [
            (1, "failed", "run aborted"),
            (2, "failed", "run aborted"),
            (3, "failed", "run aborted"),
        ]
    );
    // Unreachable after every retry: nothing later could be sent either.
    assert_eq!(ran.end.aborted.as_deref(), Some(reason));
    assert!(!ran.end.complete);
}

#[test]
fn a_key_the_server_quotes_is_never_said() {
    let body = format!("no upstream for {KABLE_KEY}");
    let script = Script::new().then_times(2, Answer::status(502).body(&body));
    let ran = Setup::new(tracks(1)).retry(quick_retries(1)).run(&script);
    let reason = "502: no upstream for *** (gave up after 1 retry)";
    assert_eq!(ran.end.aborted.as_deref(), Some(reason));
    assert_eq!(ran.rejected(), [(1, "failed", "run aborted")]);
    assert_eq!(ran.rejects[0].detail, reason);
}

#[test]
fn a_failure_that_cannot_pass_is_not_retried() {
    let script = Script::new().then(Answer::failed("certificate not trusted", false));
    let ran = Setup::new(tracks(2)).run(&script);
    assert_eq!(ran.calls.len(), 1);
    assert_eq!(ran.summary().retries, 0);
    assert_eq!(ran.summary().failed, 2);
    assert_eq!(ran.end.aborted.as_deref(), Some("certificate not trusted"));
}

/// Retries that wait for the server's `Retry-After` (no backoff of their own).
fn honouring(max_wait: Duration) -> RetryPolicy {
    RetryPolicy {
        max_wait,
        ..quick_retries(3)
    }
}

#[test]
fn retry_after_is_waited_for() {
    let script = Script::new()
        .then(Answer::status(429).header("Retry-After", "0.02"))
        .then(Answer::status(200));
    let ran = Setup::new(tracks(2))
        .retry(honouring(Duration::from_secs(1)))
        .run(&script);
    let summary = ran.summary();
    assert_eq!((summary.sent, summary.retries), (2, 1));
    assert!(
        summary.backoff_seconds >= 0.02,
        "waited {} s",
        summary.backoff_seconds
    );
}

#[test]
fn retry_after_is_cut_to_the_longest_wait() {
    let script = Script::new()
        .then(Answer::status(503).header("Retry-After", "3600"))
        .then(Answer::status(200));
    let ran = Setup::new(tracks(2))
        .retry(honouring(Duration::from_millis(5)))
        .run(&script);
    let summary = ran.summary();
    assert_eq!((summary.sent, summary.retries), (2, 1));
    assert!(
        (0.005..1.0).contains(&summary.backoff_seconds),
        "waited {} s",
        summary.backoff_seconds
    );
    assert!(ran.elapsed < Duration::from_secs(2));
}
