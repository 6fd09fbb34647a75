//! Closed pipes: a reader that goes away (`| head`) on standard output or
//! standard error never kills a run. It goes on, or stops cleanly with its
//! summary and checkpoint written, and exits with the status it would have had.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::job::{Job, KEY_VAR};
use crate::support::server::{Api, TestServer};
use crate::support::*;

const KEY: &str = "sk_test_pipes_key_31";

/// Reads `lines` lines of `stream`, then closes it, as `head -n LINES` does.
fn take_lines_then_close(stream: impl Read, lines: usize) -> Vec<String> {
    let mut reader = BufReader::new(stream);
    let mut taken = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        taken.push(line);
    }
    taken
}

/// The exit code of `child`, which must end within a minute.
fn exit_code(mut child: Child) -> i32 {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("ended by a signal");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("segrelay did not end after its reader went away");
}

fn summary(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// read = sent + skipped + rejected + failed.
fn assert_accounted(summary: &Value) {
    let count = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(
        count("read"),
        count("sent") + count("skipped") + count("rejected") + count("failed"),
        "{summary:#}"
    );
}

#[test]
fn a_closed_standard_error_lets_a_check_finish_with_its_summary() {
    let dir = workspace(SETTINGS);
    // Each page is skipped for Orb, and -v says so on its own line: far more
    // than a pipe holds, so most lines are written after the reader has gone.
    let pages: Vec<Value> = (0..5000)
        .map(|i| json!({"type":"page","userId":"u","messageId":format!("p{i}"),"timestamp":"2026-01-05T00:00:00Z"}))
        .collect();
    write(dir.path(), "pages.ndjson", ndjson(&pages));
    let mut child = segrelay_process()
        .current_dir(dir.path())
        .args(["check", "-v", "-c", "segrelay.toml", "-d", "orb"])
        .args(["--summary", "summary.json", "pages.ndjson"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = take_lines_then_close(child.stderr.take().unwrap(), 1);
    assert_eq!(first.len(), 1);
    // Before: a panic (exit 101) at the first message after the reader left.
    assert_eq!(exit_code(child), 0);
    let summary = summary(&dir.path().join("summary.json"));
    assert_eq!(summary["read"], 5000);
    assert_eq!(summary["skipped"], 5000);
}

#[test]
fn a_dry_run_into_head_stops_reading_and_says_so_in_its_summary() {
    let dir = workspace(SETTINGS);
    let events: Vec<Value> = (0..20_000)
        .map(|i| {
            json!({"type":"track","event":"api_call","userId":format!("u{}", i % 7),
            "messageId":format!("m{i}"),"timestamp":"2026-01-05T00:00:00Z","properties":{"n":i}})
        })
        .collect();
    write(dir.path(), "events.ndjson", ndjson(&events));
    let mut child = segrelay_process()
        .current_dir(dir.path())
        .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", "kable"])
        .args(["--summary", "summary.json", "events.ndjson"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stderr).read_to_string(&mut text).unwrap();
        text
    });
    let first = take_lines_then_close(child.stdout.take().unwrap(), 1);
    let request: Value = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(request["method"], "POST");
    assert_eq!(exit_code(child), 0);
    let stderr = stderr.join().unwrap();
    let summary = summary(&dir.path().join("summary.json"));
    assert_accounted(&summary);
    let read = summary["read"].as_u64().unwrap();
    assert!(read > 0 && read < 20_000, "read {read}: {stderr}");
    let warnings = summary["warnings"].to_string();
    assert!(
        warnings.contains("standard output was closed"),
        "{warnings}"
    );
    assert!(stderr.contains("standard output was closed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn rejects_on_a_closed_standard_output_are_counted_and_the_send_stops() {
    let server = TestServer::start(Api::Kable, KEY);
    // Every other line is broken: rejected, and written to standard output.
    let mut text = String::new();
    for i in 0..20_000 {
        let event = json!({"type":"track","event":"api_call","userId":"u1",
            "messageId":format!("r{i}"),"timestamp":"2026-01-05T00:00:00Z"});
        text.push_str(&format!("{event}\n{{\"broken {i}\"\n"));
    }
    let job = Job::new(
        &crate::support::job::destination_table(Api::Kable),
        &server.endpoint(),
        &text,
    );
    let mut child = segrelay_process()
        .args(["send", "--rejects", "-", "--summary"])
        .arg(job.path("summary.json"))
        .arg("-c")
        .arg(&job.settings)
        .arg(&job.input)
        .env(KEY_VAR, KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = take_lines_then_close(child.stdout.take().unwrap(), 3);
    assert_eq!(first.len(), 3);
    // Stopped before the end of its input: a send that did not finish.
    assert_eq!(exit_code(child), 3);
    let summary = job.summary();
    assert_accounted(&summary);
    let read = summary["read"].as_u64().unwrap();
    assert!(read < 40_000, "{summary:#}");
    assert!(
        summary["aborted"]
            .as_str()
            .unwrap()
            .contains("standard output was closed")
    );
    let warnings = summary["warnings"].to_string();
    assert!(
        warnings.contains("could not be written there"),
        "{warnings}"
    );
    // What was sent is what the summary says: nothing more, nothing twice.
    assert_eq!(
        server.ingested().len() as u64,
        summary["sent"].as_u64().unwrap()
    );
}

#[test]
fn a_closed_standard_error_in_the_middle_of_an_orb_backfill_with_replace_lets_it_finish() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    let mut text = String::new();
    let start: jiff::Timestamp = "2026-01-01T03:00:00Z".parse().unwrap();
    let events = 70 * 4;
    for i in 0..events {
        let time = start
            .checked_add(jiff::SignedDuration::from_hours(6 * i))
            .unwrap();
        let event = json!({"type":"track","event":"api_call","userId":format!("c{}", i % 3),
            "messageId":format!("bf-{i}"),"timestamp":time.to_string(),"properties":{"n":i}});
        text.push_str(&format!("{event}\n"));
    }
    let job = Job::new(
        "[destinations.orb]\nexternal_customer_id_field = \"userId\"\n",
        &server.endpoint(),
        &text,
    );
    let mut child = segrelay_process()
        .args(["send", "-v", "--orb-backfill", "--orb-replace-existing"])
        .args(["--batch-size", "20", "--summary"])
        .arg(job.path("summary.json"))
        .arg("-c")
        .arg(&job.settings)
        .arg(&job.input)
        .env(KEY_VAR, KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The plan and the first backfill's creation, then the reader goes away.
    take_lines_then_close(child.stderr.take().unwrap(), 3);
    // Before: a panic here, after the first backfill (with replace) was
    // created and before its events were sent: Orb would have deleted that
    // window's usage at close time.
    assert_eq!(exit_code(child), 0);
    let backfills = server.orb_backfills();
    assert!(backfills.len() >= 3, "{backfills:#?}");
    for backfill in &backfills {
        assert_eq!(backfill["replace_existing_events"], true);
        assert_ne!(backfill["status"], "pending", "{backfill:#}");
    }
    assert_eq!(server.ingested().len() as i64, events);
    assert_eq!(job.summary()["sent"], events);
}
