//! How often a pass writes its checkpoint: as `checkpoint::saving` decides,
//! at most once per `AFTER_REQUESTS` while requests settle and once per
//! `INTERVAL` otherwise, never once per line or per request; and always at
//! the end.

use std::time::Duration;

use super::harness::{Setup, page, tracks};
use crate::checkpoint::{AFTER_REQUESTS, INTERVAL};
use crate::transport::scripted::{Answer, Script};

/// The most writes a pass of `elapsed` may make: the one that creates the
/// checkpoint, one per `every` that passed, and the last.
fn most_writes(elapsed: Duration, every: Duration) -> u64 {
    2 + (elapsed.as_nanos() / every.as_nanos()) as u64
}

#[test]
fn a_pass_of_many_requests_writes_the_checkpoint_per_interval_not_per_request() {
    let script = Script::new().otherwise(Answer::status(200));
    let ran = Setup::new(tracks(1_000))
        .batch_size(5)
        .checkpoint()
        .run(&script);
    assert_eq!(script.count(), 200);
    let checkpoint = ran.checkpoint();
    assert!(
        (2..=most_writes(ran.elapsed, AFTER_REQUESTS)).contains(&checkpoint.writes),
        "{} writes in {:?}",
        checkpoint.writes,
        ran.elapsed
    );
    // Written at the end: every input settled, with the counts.
    assert!(checkpoint.done());
    assert_eq!(
        (checkpoint.state.totals.read, checkpoint.state.totals.sent),
        (1_000, 1_000)
    );
    assert_eq!(checkpoint.state.totals.read, ran.summary().read);
}

#[test]
fn lines_settled_without_requests_write_the_checkpoint_at_most_once_an_interval() {
    let script = Script::new();
    let ran = Setup::new((1..=1_500).map(page).collect())
        .checkpoint()
        .run(&script);
    assert_eq!(script.count(), 0);
    let checkpoint = ran.checkpoint();
    assert!(
        (2..=most_writes(ran.elapsed, INTERVAL)).contains(&checkpoint.writes),
        "{} writes in {:?}",
        checkpoint.writes,
        ran.elapsed
    );
    assert!(checkpoint.done());
    assert_eq!(
        (
            checkpoint.state.totals.read,
            checkpoint.state.totals.skipped
        ),
        (1_500, 1_500)
    );
}
