//! Events settle in input order, whatever order their outcomes are known in:
//! the rejects file, the counts and the checkpoint describe a prefix of the input.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::harness::{Setup, track, tracks, untimed};
use crate::transport::scripted::{Answer, Script, response};

/// Kable refuses a batch holding any of these events (by message id) with a 400.
fn refusing(bad: &'static [&'static str]) -> impl Fn(&crate::transport::scripted::Call) -> bool {
    move |call| {
        bad.iter().any(|id| {
            call.body_text()
                .contains(&format!("\"transactionId\":\"{id}\""))
        })
    }
}

/// Line 2 is rejected as it is read, while line 1 still waits in a batch:
/// it is settled after line 1, not before.
#[test]
fn an_event_rejected_when_read_waits_for_the_batch_before_it() {
    let bad = refusing(&["m1"]);
    let script = Script::new().otherwise(Answer::with(move |call| match bad(call) {
        true => response(400, Vec::new(), r#"{"message":"invalid event"}"#),
        false => response(200, Vec::new(), ""),
    }));
    let ran = Setup::new(vec![track(1), untimed(2), track(3)])
        .batch_size(2)
        .checkpoint()
        .run(&script);
    // The batch [1, 3] is refused and halved: 1 is refused alone, 3 goes through.
    assert_eq!(ran.sent_lines(), [vec![1, 3], vec![1], vec![3]]);
    assert_eq!(
        ran.rejected(),
        [
            (1, "rejected", "refused by kable"),
            (2, "rejected", "no usable time"),
        ]
    );
    let summary = ran.summary();
    assert_eq!((summary.read, summary.sent, summary.rejected), (3, 1, 2));
    let checkpoint = ran.checkpoint();
    assert!(checkpoint.done());
    assert_eq!(
        (
            checkpoint.state.totals.read,
            checkpoint.state.totals.rejected
        ),
        (3, 2)
    );
}

/// Two sending threads: the second batch is answered while the first one's
/// request waits (until the third batch is asked for), so its outcomes reach
/// the pipeline first. They are held until the first batch's are settled.
#[test]
fn a_later_batch_answered_first_is_settled_after_the_earlier_one() {
    let third_asked = Arc::new((Mutex::new(false), Condvar::new()));
    let answered: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let bad = refusing(&["m1", "m3"]);
    let answer = {
        let (third_asked, answered) = (third_asked.clone(), answered.clone());
        Answer::with(move |call| {
            let lines = call.lines();
            let (asked, signal) = &*third_asked;
            if lines.contains(&5) {
                *asked.lock().unwrap() = true;
                signal.notify_all();
            }
            if lines == [1, 2] {
                let guard = asked.lock().unwrap();
                // Bounded: a pipeline that never asks for the third batch fails below, not hangs.
                let _ = signal
                    .wait_timeout_while(guard, Duration::from_secs(10), |asked| !*asked)
                    .unwrap();
            }
            answered.lock().unwrap().push(lines);
            match bad(call) {
                true => response(400, Vec::new(), r#"{"message":"invalid event"}"#),
                false => response(200, Vec::new(), ""),
            }
        })
    };
    let script = Script::new().otherwise(answer);
    let ran = Setup::new(tracks(6))
        .batch_size(2)
        .pool(2)
        .checkpoint()
        .run(&script);
    let answered = answered.lock().unwrap().clone();
    let at = |lines: &[u64]| answered.iter().position(|a| a == lines).unwrap();
    assert!(
        at(&[4]) < at(&[1, 2]),
        "the second batch was delivered before the first was answered: {answered:?}"
    );
    assert_eq!(
        ran.rejected(),
        [
            (1, "rejected", "refused by kable"),
            (3, "rejected", "refused by kable"),
        ]
    );
    let summary = ran.summary();
    assert_eq!(
        (
            summary.read,
            summary.sent,
            summary.rejected,
            summary.requests
        ),
        (6, 4, 2, 7)
    );
    let checkpoint = ran.checkpoint();
    assert!(checkpoint.done());
    assert_eq!(checkpoint.state.totals.sent, 4);
}
