//! After the destination aborts a run (a refused key, an unreachable host), the
//! reading stops: the events in flight fail, the rest of the input is counted
//! but not read, the summary says where the run stopped and how to go on, and
//! a resume with the checkpoint sends the rest exactly once.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, destination_table};
use crate::support::server::{Api, Fault, TestServer};

const KEY: &str = "sk_test_stops_key_0042";

fn event(key: &str) -> Value {
    json!({"type": "track", "event": "api_call", "userId": "cust_1", "messageId": key,
           "timestamp": "2026-11-23T10:00:00.000Z", "properties": {"value": 1}})
}

/// `n` events keyed `prefix-0` ..., one a line.
fn events(prefix: &str, n: usize) -> String {
    support::ndjson(
        &(0..n)
            .map(|i| event(&format!("{prefix}-{i}")))
            .collect::<Vec<_>>(),
    )
}

fn command(job: &Job, args: &[&str]) -> Command {
    let mut command = job.send_command(KEY);
    command
        .args(["--max-retry-wait", "10ms", "--batch-size", "4"])
        .args(args);
    command
}

fn send(job: &Job, args: &[&str]) -> Output {
    let output = command(job, args).output().unwrap();
    support::assert_accounting(&job.summary());
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The keys of the rejects file, each with its reason.
fn rejected(job: &Job) -> Vec<(String, String)> {
    job.rejects()
        .iter()
        .map(|r| {
            (
                r["messageId"].as_str().unwrap().to_owned(),
                r["_segrelay"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_401_part_way_fails_what_was_in_flight_and_a_resume_sends_the_rest_once() {
    for api in Api::ALL {
        let context = api.name();
        let server = TestServer::start(api, KEY);
        // The third batch is refused: events 0-7 are sent, 8-11 in flight.
        server.fault_on_request(3, Fault::Status(401, String::new()));
        let job = Job::new(
            &destination_table(api),
            &server.endpoint(),
            &events("k", 40),
        );
        let checkpoint = job.path("checkpoint.json");
        let args = ["--checkpoint", checkpoint.to_str().unwrap()];
        let mut first = command(&job, &args);
        let output = first.arg(&job.input).output().unwrap();
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(3), "{context}\n{said}");
        let summary = job.summary();
        support::assert_accounting(&summary);
        assert_eq!(summary["sent"], 8, "{context}: {summary}");
        // In flight: the batch refused, and at most the next, read while it was answered.
        let failed = summary["failed"].as_u64().unwrap();
        assert!((4..=8).contains(&failed), "{context}: {summary}");
        let in_flight: Vec<(String, String)> = (8..8 + failed)
            .map(|i| (format!("k-{i}"), "run aborted".to_owned()))
            .collect();
        assert_eq!(
            rejected(&job),
            in_flight,
            "{context}: the rest is not copied"
        );
        assert_eq!(
            summary["lines_not_read"],
            40 - 8 - failed,
            "{context}: {summary}"
        );
        let stopped_at = summary["stopped_at"].as_str().unwrap();
        assert!(
            stopped_at.ends_with("events.ndjson:9"),
            "{context}: {summary}"
        );
        assert!(summary.get("lines_not_read_partial").is_none(), "{summary}");
        assert!(
            said.contains(&format!(
                "stopped at {stopped_at}; {} not read",
                if 32 - failed == 1 {
                    "1 input line".to_owned()
                } else {
                    format!("{} input lines", 32 - failed)
                }
            )) && said.contains("run the same command again: it resumes from the checkpoint"),
            "{context}\n{said}"
        );
        assert_eq!(
            server.received().len(),
            3,
            "{context}: nothing after the 401"
        );

        // The same command again: the failed events and the rest, each once.
        let output = command(&job, &args).arg(&job.input).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{context}\n{}",
            stderr(&output)
        );
        let deliveries = server.deliveries();
        assert_eq!(deliveries.len(), 40, "{context}: {deliveries:?}");
        assert!(
            deliveries.values().all(|n| *n == 1),
            "{context}: {deliveries:?}"
        );
        assert_eq!(
            support::record_keys(&server.ingested()).len(),
            40,
            "{context}"
        );
        let summary = job.summary();
        assert_eq!(summary["sent"], 32, "{context}: {summary}");
        assert_eq!(summary["stopped_at"], Value::Null, "{context}");
        // What the checkpoint carried over is what it passed: every line once.
        let earlier = &summary["already_done"];
        assert_eq!(earlier["failed"], 0, "{context}: {summary}");
        assert_eq!(
            earlier["read"].as_u64().unwrap() + summary["read"].as_u64().unwrap(),
            40,
            "{context}: {summary}"
        );
        assert!(job.rejects().is_empty(), "{context}");
    }
}

#[test]
fn an_unreachable_destination_stops_the_reading_and_counts_the_rest() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let job = Job::new(
        &destination_table(Api::Kable),
        &format!("http://127.0.0.1:{port}"),
        &events("u", 30),
    );
    // More input after the first file: a gzipped file, blank lines (not lines
    // of events) and an envelope of two events (one line).
    let mut more = events("g", 9).replace('\n', "\n\n");
    more.push_str("{\"batch\":[{\"type\":\"track\"},{\"type\":\"track\"}]}\n");
    let gz = support::write(
        job.dir.path(),
        "more.ndjson.gz",
        support::gzip(more.as_bytes()),
    );
    let output = send(
        &job,
        &[
            "--max-retries",
            "0",
            job.input.to_str().unwrap(),
            gz.to_str().unwrap(),
        ],
    );
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{said}");
    let summary = job.summary();
    assert_eq!(summary["sent"], 0, "{summary}");
    let failed = summary["failed"].as_u64().unwrap();
    assert!((4..=8).contains(&failed), "{summary}");
    assert_eq!(job.rejects().len() as u64, failed);
    assert_eq!(summary["lines_not_read"], 30 - failed + 10, "{summary}");
    assert!(
        summary["stopped_at"]
            .as_str()
            .unwrap()
            .ends_with("events.ndjson:1")
    );
    assert!(
        said.contains("or better with --checkpoint PATH, which resumes where a run stopped"),
        "{said}"
    );
}

/// Ctrl-C while the rest is counted cuts the count short: "at least", and the
/// run is still an aborted one (exit 3).
#[test]
fn ctrl_c_cuts_the_count_of_the_lines_not_read_short() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let job = Job::new(
        &destination_table(Api::Kable),
        &format!("http://127.0.0.1:{port}"),
        &events("c", 2000),
    );
    // Standard input comes after the file: the count waits on it. The file is
    // long enough for its first lines to be handed on while it is read.
    let mut child = command(&job, &["--max-retries", "0", "-j", "1"])
        .arg(&job.input)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(events("s", 3).as_bytes()).unwrap();
    // The count has begun once the first file is behind: wait for its message.
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = seen
            .recv_timeout(deadline - Instant::now())
            .expect("the count begins");
        if line.contains("counting the lines not read") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The count looks at Ctrl-C before each line: lines are given until it stops.
    let mut given = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the count never stopped");
        if stdin.write_all(events("t", 1).as_bytes()).is_ok() {
            given += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert_eq!(status.code(), Some(3));
    let summary = job.summary();
    support::assert_accounting(&summary);
    assert_eq!(summary["lines_not_read_partial"], true, "{summary}");
    assert_eq!(summary["interrupted"], false, "{summary}");
    let failed = summary["failed"].as_u64().unwrap();
    let not_read = summary["lines_not_read"].as_u64().unwrap();
    // Cut short: the count stopped before the lines given after Ctrl-C (and
    // maybe before the end of the file, if Ctrl-C came first).
    assert!(
        given > 0 && not_read < 2000 - failed + 3 + given,
        "{given} lines given after Ctrl-C: {summary}"
    );
    let said: Vec<String> = seen.iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("at least {not_read} input lines not read"))),
        "{said:?}"
    );
}

/// An Orb backfill aborted in its first window: the windows after it are not
/// made (none of their events is read), the summary names them, and the same
/// command with the checkpoint goes on and makes them.
#[test]
fn an_abort_in_a_backfill_window_leaves_the_windows_after_it_unread() {
    // An event every 6 hours for 70 days: windows of 31, 31 and 8 days.
    let start: jiff::Timestamp = "2026-01-01T03:00:00Z".parse().unwrap();
    let text: String = (0..280)
        .map(|i| {
            let mut e = event(&format!("b-{i}"));
            e["timestamp"] = json!(start + jiff::SignedDuration::from_hours(6 * i));
            format!("{e}\n")
        })
        .collect();
    let server = TestServer::start(Api::Orb, KEY);
    // Request 1 lists Orb's backfills, 2 creates the first one, 3 and 4 send
    // its first batches: 4 is refused.
    server.fault_on_request(4, Fault::Status(401, String::new()));
    let job = Job::new(&destination_table(Api::Orb), &server.endpoint(), &text);
    let checkpoint = job.path("checkpoint.json");
    let args = [
        "--orb-backfill",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        job.input.to_str().unwrap(),
    ];
    let output = send(&job, &args);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{said}");
    let summary = job.summary();
    assert_eq!(summary["sent"], 4, "{summary}");
    let failed = summary["failed"].as_u64().unwrap();
    assert!((4..=8).contains(&failed), "{summary}");
    assert_eq!(
        job.rejects().len() as u64,
        failed,
        "only the events in flight"
    );
    assert!(
        summary["stopped_at"]
            .as_str()
            .unwrap()
            .ends_with("events.ndjson:5")
    );
    assert_eq!(summary["lines_not_read"], 280 - 4 - failed, "{summary}");
    let windows = summary["windows_not_made"].as_array().unwrap();
    let events: Vec<u64> = windows
        .iter()
        .map(|w| w["events"].as_u64().unwrap())
        .collect();
    assert_eq!(events, [124, 32], "{summary}");
    assert!(
        said.contains("orb backfill windows not made, their events not read: "),
        "{said}"
    );

    let output = send(&job, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let deliveries = server.deliveries();
    assert_eq!(deliveries.len(), 280);
    assert!(deliveries.values().all(|n| *n == 1), "{deliveries:?}");
    assert_eq!(server.orb_backfills().len(), 3);
}

/// A 401 part way fails every event in flight for one reason: said once with
/// the place of the first and then with the count, not once per event; `-v`
/// lists each; `-q` says only why and where the run stopped.
#[test]
fn a_401_part_way_is_said_once_with_its_count() {
    let run = |args: &[&str]| {
        let server = TestServer::start(Api::Kable, KEY);
        // The second batch is refused: events 4-7 fail, and what was read behind them.
        server.fault_on_request(2, Fault::Status(401, String::new()));
        let job = Job::new(
            &destination_table(Api::Kable),
            &server.endpoint(),
            &events("k", 40),
        );
        let output = command(&job, args).arg(&job.input).output().unwrap();
        assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
        let failed = job.summary()["failed"].as_u64().unwrap();
        (stderr(&output), failed)
    };

    let (said, failed) = run(&[]);
    assert!(failed >= 4, "{said}");
    let per_event: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(": failed: run aborted"))
        .collect();
    assert_eq!(per_event.len(), 1, "{said}");
    assert!(per_event[0].contains("events.ndjson:5: failed"), "{said}");
    let count = format!("segrelay: {failed} events failed: run aborted: ");
    assert!(
        said.lines()
            .any(|l| l.starts_with(&count) && l.ends_with("events.ndjson:5; -v lists each)")),
        "{said}"
    );
    assert!(!said.contains("more problems not shown"), "{said}");

    let (said, failed) = run(&["-v"]);
    let per_event = said
        .lines()
        .filter(|l| l.contains(": failed: run aborted"))
        .count();
    assert_eq!(per_event as u64, failed, "{said}");
    assert!(!said.contains("-v lists each"), "{said}");

    // Quiet: the abort, and where the run stopped; no problem lines, no counts.
    let (said, _) = run(&["-q"]);
    assert!(!said.contains("failed: run aborted"), "{said}");
    assert!(said.contains("kable: aborting: "), "{said}");
    assert!(said.contains("stopped at "), "{said}");
    assert!(!said.contains("read 40 events"), "{said}");
}
