//! A pass that stops early: the destination refuses the key, Ctrl-C,
//! `--limit`, `--fail-fast`. What was read is settled; the checkpoint never
//! passes an event that was not delivered.

use std::collections::BTreeMap;

use super::harness::{KABLE_KEY, KABLE_URL, Setup, track, tracks, untimed};
use crate::interrupt::testing::{request_here, reset_here};
use crate::transport::scripted::{Answer, Script, response};

#[test]
fn a_refused_key_aborts_the_run_and_the_rest_is_counted_not_read() {
    let script = Script::new()
        .then(Answer::status(401).body(&format!(r#"{{"message":"invalid secret {KABLE_KEY}"}}"#)));
    let ran = Setup::new(tracks(10))
        .batch_size(2)
        .checkpoint()
        .run(&script);
    assert_eq!(
        ran.sent_lines(),
        [vec![1, 2]],
        "nothing sent after the abort"
    );
    let reason = ran.end.aborted.as_deref().expect("the run aborted");
    assert_eq!(
        reason,
        format!(
            "401: Kable refused the API key (from POST {KABLE_URL}); \
             check destinations.kable.api_key in segrelay.toml"
        )
    );
    assert!(!ran.end.complete);
    let summary = ran.summary();
    assert_eq!(
        (summary.read, summary.sent, summary.failed),
        (2, 0, 2),
        "the batch in flight fails"
    );
    assert_eq!(
        summary.failed_by_reason,
        BTreeMap::from([("run aborted".to_owned(), 2)])
    );
    assert_eq!(summary.lines_not_read, Some(8));
    assert!(!summary.lines_not_read_partial);
    let stopped_at = summary.stopped_at.as_deref().expect("where it stopped");
    assert!(stopped_at.ends_with("events.ndjson:1"), "{stopped_at}");
    for rejected in &ran.rejects {
        assert_eq!(rejected.detail, reason);
    }
    assert!(
        !ran.rejects.iter().any(|r| r.detail.contains(KABLE_KEY)),
        "the key is never written"
    );
    // A resume sends the failed events again: the checkpoint did not move.
    let checkpoint = ran.checkpoint();
    assert_eq!((checkpoint.settled_lines(), checkpoint.done()), (0, false));
    assert_eq!(checkpoint.state.totals.read, 0);
}

#[test]
fn ctrl_c_stops_the_reading_at_the_next_line_and_settles_what_was_read() {
    reset_here();
    let script = Script::new().then(Answer::with(|_| {
        request_here();
        response(200, Vec::new(), "")
    }));
    let ran = Setup::new(tracks(6))
        .batch_size(2)
        .checkpoint()
        .run(&script);
    reset_here();
    assert_eq!(ran.sent_lines(), [vec![1, 2]]);
    assert!(!ran.end.complete);
    assert!(ran.end.aborted.is_none());
    let summary = ran.summary();
    assert_eq!((summary.read, summary.sent, summary.failed), (2, 2, 0));
    // Ctrl-C does not count the rest: it would read the whole input.
    assert_eq!(summary.lines_not_read, None);
    let stopped_at = summary.stopped_at.as_deref().expect("where it stopped");
    assert!(stopped_at.ends_with("events.ndjson:3"), "{stopped_at}");
    let checkpoint = ran.checkpoint();
    assert_eq!((checkpoint.settled_lines(), checkpoint.done()), (2, false));
    assert_eq!(
        (checkpoint.state.totals.read, checkpoint.state.totals.sent),
        (2, 2)
    );
}

#[test]
fn ctrl_c_during_a_retry_wait_fails_the_batch_unsent() {
    reset_here();
    let script = Script::new()
        .then(Answer::status(200))
        .then(Answer::with(|_| {
            request_here();
            response(503, Vec::new(), "")
        }));
    let ran = Setup::new(tracks(4))
        .batch_size(2)
        .checkpoint()
        .run(&script);
    reset_here();
    assert_eq!(ran.sent_lines(), [vec![1, 2], vec![3, 4]], "no retry made");
    let summary = ran.summary();
    assert_eq!((summary.sent, summary.failed), (2, 2));
    assert_eq!(
        ran.rejected(),
        [(3, "failed", "interrupted"), (4, "failed", "interrupted")]
    );
    let stopped_at = summary.stopped_at.as_deref().expect("where it stopped");
    assert!(stopped_at.ends_with("events.ndjson:3"), "{stopped_at}");
    assert_eq!(ran.checkpoint().settled_lines(), 2);
}

#[test]
fn limit_stops_the_reading_after_that_many_events() {
    let script = Script::new().otherwise(Answer::status(200));
    let ran = Setup::new(tracks(10))
        .batch_size(2)
        .limit(5)
        .checkpoint()
        .run(&script);
    assert_eq!(ran.sent_lines(), [vec![1, 2], vec![3, 4], vec![5]]);
    assert_eq!((ran.summary().read, ran.summary().sent), (5, 5));
    assert!(!ran.end.complete);
    let checkpoint = ran.checkpoint();
    assert_eq!((checkpoint.settled_lines(), checkpoint.done()), (5, false));
}

#[test]
fn fail_fast_stops_at_the_first_rejected_event_and_sends_what_came_before() {
    let script = Script::new().otherwise(Answer::status(200));
    let ran = Setup::new(vec![track(1), untimed(2), track(3)])
        .fail_fast()
        .checkpoint()
        .run(&script);
    assert_eq!(ran.sent_lines(), [vec![1]], "line 3 is not read");
    assert_eq!(ran.rejected(), [(2, "rejected", "no usable time")]);
    let summary = ran.summary();
    assert_eq!((summary.read, summary.sent, summary.rejected), (2, 1, 1));
    assert!(!ran.end.complete);
    assert_eq!(ran.checkpoint().settled_lines(), 2);
}
