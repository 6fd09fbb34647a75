//! What a checkpoint records of its run (filters, destination, settings, the
//! sending plan) and refuses to resume under other ones; `--limit` trials
//! that the full run continues; and how often it is written.

use std::process::Output;

use serde_json::{Value, json};

use crate::support::job::{Job, KEY_VAR, destination_table};
use crate::support::server::{Api, TestServer};

const KEY: &str = "sk_test_checkpoint_key_7781";

fn kable_job(server: &TestServer, text: &str) -> Job {
    Job::new(&destination_table(Api::Kable), &server.endpoint(), text)
}

/// `segrelay send -c segrelay.toml --checkpoint checkpoint.json --rejects
/// rejects.ndjson --summary summary.json EXTRA... events.ndjson`.
fn send(job: &Job, extra: &[&str]) -> Output {
    job.send_command(KEY)
        .arg("--checkpoint")
        .arg(job.path("checkpoint.json"))
        .args(extra)
        .arg(&job.input)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// A track event `m-{i}`, named `seat_added` when `i` is even, else `api_call`.
fn event(i: usize) -> String {
    let name = if i.is_multiple_of(2) {
        "seat_added"
    } else {
        "api_call"
    };
    format!(
        "{}\n",
        json!({"type": "track", "event": name, "userId": "c1", "messageId": format!("m-{i}"),
               "timestamp": "2026-11-23T10:00:00Z", "properties": {"n": i}})
    )
}

fn events(range: std::ops::Range<usize>) -> String {
    range.map(event).collect()
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m-{i}")).collect()
}

/// The keys the server accepted, with how often.
fn delivered(server: &TestServer) -> Vec<(String, usize)> {
    let mut all: Vec<(String, usize)> = server.deliveries().into_iter().collect();
    all.sort_by_key(|(k, _)| k[2..].parse::<usize>().unwrap_or(usize::MAX));
    all
}

#[test]
fn a_resume_under_other_filters_is_refused_naming_them() {
    let server = TestServer::start(Api::Kable, KEY);
    let job = kable_job(&server, &events(0..20));
    let first = send(&job, &["--events", "seat_added"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(server.deliveries().len(), 10);

    // Without --events, the odd events were never sent: no "nothing to do".
    let resumed = send(&job, &[]);
    let text = stderr(&resumed);
    assert_eq!(code(&resumed), 2, "{text}");
    assert!(
        text.contains(
            "--events: the checkpoint's run sent only seat_added; this run sends every event"
        ),
        "{text}"
    );
    assert!(text.contains("--restart"), "{text}");
    assert!(text.contains("new checkpoint file"), "{text}");
    assert!(text.contains("idempotency keys"), "{text}");
    // Exactly what differs: nothing else is named.
    assert_eq!(
        text.matches("the checkpoint's run sent").count(),
        1,
        "{text}"
    );
    assert_eq!(
        server.deliveries().len(),
        10,
        "nothing sent by a refused run"
    );

    let other = send(&job, &["--types", "page,track", "--events", "seat_added"]);
    let text = stderr(&other);
    assert_eq!(code(&other), 2, "{text}");
    assert!(
        text.contains(
            "--types: the checkpoint's run sent every call type; this run sends only page, track calls"
        ),
        "{text}"
    );

    // The same filters, in another order, resume: nothing is left.
    let same = send(&job, &["--events", " seat_added,seat_added"]);
    assert_eq!(code(&same), 0, "{}", stderr(&same));
    assert!(stderr(&same).contains("nothing to do"), "{}", stderr(&same));

    // --restart sends everything; the events sent before are deduped by key.
    let restarted = send(&job, &["--restart"]);
    assert_eq!(code(&restarted), 0, "{}", stderr(&restarted));
    let deliveries = server.deliveries();
    for key in keys(0..20) {
        assert!(deliveries.contains_key(&key), "{key}");
    }
    assert_eq!(server.ingested().len(), 20);
}

#[test]
fn a_changed_setting_is_refused_and_pacing_is_not() {
    let server = TestServer::start(Api::Kable, KEY);
    let job = kable_job(&server, &events(0..30));
    let settings = std::fs::read_to_string(&job.settings).unwrap();
    let first = send(&job, &["--batch-size", "5", "--limit", "10"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));

    // The mapping changes what is sent: refused, with both values.
    std::fs::write(
        &job.settings,
        format!(
            "{settings}[destinations.kable.properties_mapping]\n\"properties.n\" = \"count\"\n"
        ),
    )
    .unwrap();
    let mapped = send(&job, &[]);
    let text = stderr(&mapped);
    assert_eq!(code(&mapped), 2, "{text}");
    assert!(
        text.contains(
            "setting properties_mapping: the checkpoint's run sent with properties_mapping unset \
             (default: {}); this run sends with properties_mapping = { \"properties.n\" = \"count\" }"
        ),
        "{text}"
    );
    assert!(!text.contains(KEY), "{text}");

    // Another destination table, with the same settings: refused.
    std::fs::write(
        &job.settings,
        settings.replace(
            "[destinations.kable]",
            "[destinations.billing]\ntype = \"kable\"",
        ),
    )
    .unwrap();
    let renamed = send(&job, &[]);
    let text = stderr(&renamed);
    assert_eq!(code(&renamed), 2, "{text}");
    assert!(
        text.contains(
            "destination: the checkpoint's run sent to destination \"kable\" (Kable); \
             this run sends to destination \"billing\" (Kable)"
        ),
        "{text}"
    );

    // A rate limit, a batch size, a concurrency, retries: the same events, resumed.
    std::fs::write(
        &job.settings,
        format!("{settings}max_events_per_minute = 100000\n"),
    )
    .unwrap();
    let paced = send(
        &job,
        &[
            "--batch-size",
            "7",
            "--concurrency",
            "2",
            "--max-retries",
            "1",
        ],
    );
    assert_eq!(code(&paced), 0, "{}", stderr(&paced));
    assert_eq!(
        delivered(&server),
        keys(0..30).into_iter().map(|k| (k, 1)).collect::<Vec<_>>()
    );
    // The checkpoint holds no key, and names what it recorded.
    let checkpoint = std::fs::read_to_string(job.path("checkpoint.json")).unwrap();
    assert!(!checkpoint.contains(KEY));
    assert!(!checkpoint.contains(KEY_VAR));
    let recorded: Value = serde_json::from_str(&checkpoint).unwrap();
    let names: Vec<&str> = recorded["identity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["--since", "--until", "--types", "--events", "destination"] {
        assert!(names.contains(&name), "{name}: {names:?}");
    }
    assert!(names.contains(&"setting kable_client_id"), "{names:?}");
    for unrecorded in ["api_key", "max_events_per_minute", "allow_insecure", "type"] {
        assert!(
            !names.contains(&format!("setting {unrecorded}").as_str()),
            "{unrecorded}: {names:?}"
        );
    }
}

#[test]
fn an_earlier_format_is_refused_with_a_clear_message() {
    let server = TestServer::start(Api::Kable, KEY);
    let job = kable_job(&server, &events(0..3));
    // What segrelay wrote before checkpoints recorded their run.
    let earlier = json!({
        "version": 1, "destination": "kable",
        "inputs": [{"source": job.input.display().to_string(), "size": 1, "modified": null,
                    "head_sha256": "00", "settled_lines": 2, "done": false}],
        "totals": {"read": 2, "sent": 2, "skipped": 0, "rejected": 0, "failed": 0},
        "rejects_length": 0, "pass": 0
    });
    std::fs::write(job.path("checkpoint.json"), earlier.to_string()).unwrap();
    let output = send(&job, &[]);
    let text = stderr(&output);
    assert_eq!(code(&output), 2, "{text}");
    assert!(
        text.contains("written by an earlier segrelay (format 1)"),
        "{text}"
    );
    assert!(text.contains("--restart"), "{text}");
    assert!(server.received().is_empty());

    let later = json!({"version": 99});
    std::fs::write(job.path("checkpoint.json"), later.to_string()).unwrap();
    let output = send(&job, &[]);
    let text = stderr(&output);
    assert_eq!(code(&output), 2, "{text}");
    assert!(
        text.contains("written by a later segrelay (format 99"),
        "{text}"
    );
}

#[test]
fn a_limit_trial_then_the_full_run_sends_the_rest_once() {
    let server = TestServer::start(Api::Kable, KEY);
    let job = kable_job(&server, &events(0..250));
    let trial = send(&job, &["--limit", "100", "--batch-size", "30"]);
    assert_eq!(code(&trial), 0, "{}", stderr(&trial));
    assert_eq!(
        delivered(&server),
        keys(0..100).into_iter().map(|k| (k, 1)).collect::<Vec<_>>()
    );
    let before = server.received().len();

    // The full run: --limit is where the trial stopped, not what it was.
    let full = send(&job, &["--batch-size", "30"]);
    assert_eq!(code(&full), 0, "{}", stderr(&full));
    let second: Vec<String> = server.received()[before..]
        .iter()
        .flat_map(|r| r.json().as_array().unwrap().clone())
        .map(|e| e["transactionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(second, keys(100..250), "events 101 to 250, in order");
    assert_eq!(
        delivered(&server),
        keys(0..250).into_iter().map(|k| (k, 1)).collect::<Vec<_>>()
    );
    let summary = job.summary();
    assert_eq!(summary["read"], 150, "{summary}");
    assert_eq!(summary["already_done"]["read"], 100, "{summary}");
}

/// The count `-v` shows at the end: "checkpoint PATH written N times by this run".
fn writes(output: &Output) -> u64 {
    let text = stderr(output);
    let line = text
        .lines()
        .find(|l| l.contains("checkpoint") && l.contains("by this run"))
        .unwrap_or_else(|| panic!("no count of writes: {text}"));
    line.split(" written ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn lines_settled_without_requests_write_the_checkpoint_a_handful_of_times() {
    let server = TestServer::start(Api::Kable, KEY);
    // 5,000 lines the filter leaves out, one malformed line in ten, then 3 events.
    let mut text = String::new();
    for i in 0..5_000 {
        match i % 10 {
            9 => text.push_str("{\"broken\":\n"),
            _ => text.push_str(&event(2 * i + 1)),
        }
    }
    text.push_str(&events(10_000..10_006).replace("api_call", "other"));
    let job = kable_job(&server, &text);
    let output = send(&job, &["-v", "--events", "seat_added"]);
    assert_eq!(code(&output), 1, "the malformed lines: {}", stderr(&output));
    let n = writes(&output);
    // At the start, about once a second, after the one request, at the end.
    assert!((2..=8).contains(&n), "written {n} times");
    assert_eq!(server.received().len(), 1);
    let checkpoint: Value =
        serde_json::from_str(&std::fs::read_to_string(job.path("checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(checkpoint["inputs"][0]["done"], true, "{checkpoint}");
    assert_eq!(checkpoint["totals"]["read"], 5_006, "{checkpoint}");
    assert_eq!(checkpoint["totals"]["rejected"], 500, "{checkpoint}");
}

/// A crash after lines settled without requests but before the checkpoint was
/// written again: the resume reads them again, and each is counted, and in the
/// rejects file, once.
#[test]
fn a_resume_settles_lines_the_checkpoint_had_not_recorded_once() {
    let server = TestServer::start(Api::Kable, KEY);
    let mut text = events(0..40).replace("api_call", "seat_added");
    for i in 40..1_000 {
        match i % 3 {
            0 => text.push_str(&format!("{{\"broken\": {i}\n")),
            _ => text.push_str(&event(2 * i + 1)),
        }
    }
    let job = kable_job(&server, &text);
    let args = ["--events", "seat_added", "--batch-size", "10"];
    // Stopped after the events that make requests, with its checkpoint there.
    let trial = send(&job, &[&args[..], &["--limit", "40"]].concat());
    assert_eq!(code(&trial), 0, "{}", stderr(&trial));
    let stopped = std::fs::read(job.path("checkpoint.json")).unwrap();
    // The whole run, then the checkpoint as a crash would have left it.
    let whole = send(&job, &args);
    assert_eq!(code(&whole), 1, "{}", stderr(&whole));
    let rejected = job.rejects().len();
    assert_eq!(rejected, 320);
    std::fs::write(job.path("checkpoint.json"), stopped).unwrap();
    let requests = server.received().len();

    let resumed = send(&job, &args);
    assert_eq!(code(&resumed), 1, "{}", stderr(&resumed));
    assert_eq!(server.received().len(), requests, "nothing sent again");
    let summary = job.summary();
    assert_eq!(summary["already_done"]["read"], 40, "{summary}");
    assert_eq!(summary["read"], 960, "{summary}");
    assert_eq!(summary["rejected"], 320, "{summary}");
    assert_eq!(summary["skipped"], 640, "{summary}");
    let lines: Vec<u64> = job
        .rejects()
        .iter()
        .map(|r| r["_segrelay"]["line"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (41..=1_000u64)
        .filter(|l| (l - 1).is_multiple_of(3))
        .collect();
    assert_eq!(lines, expected, "each rejected line once");
    assert_eq!(
        delivered(&server),
        keys(0..40).into_iter().map(|k| (k, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn an_orb_backfill_plan_is_part_of_the_run() {
    let server = TestServer::start(Api::Orb, KEY);
    let text: String = (0..6)
        .map(|i| {
            format!(
                "{}\n",
                json!({"type": "track", "event": "api_call", "userId": "c1",
                       "messageId": format!("b-{i}"), "properties": {"value": i},
                       "timestamp": format!("2026-01-0{}T10:00:00Z", i + 1)})
            )
        })
        .collect();
    let job = Job::new(&destination_table(Api::Orb), &server.endpoint(), &text);
    let first = send(&job, &["--orb-backfill", "--orb-backfill-window", "7"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(server.ingested().len(), 6);

    let wider = send(&job, &["--orb-backfill"]);
    let text = stderr(&wider);
    assert_eq!(code(&wider), 2, "{text}");
    assert!(
        text.contains(
            "--orb-backfill: the checkpoint's run sent the events older than the grace period \
             through backfills, in windows of at most 7 days; this run sends the events older \
             than the grace period through backfills, in windows of at most 31 days"
        ),
        "{text}"
    );
    let plain = send(&job, &[]);
    let text = stderr(&plain);
    assert_eq!(code(&plain), 2, "{text}");
    assert!(
        text.contains("this run sends through ordinary ingest (no --orb-backfill)"),
        "{text}"
    );
    // Closing and waiting only pace a backfill.
    let same = send(
        &job,
        &[
            "--orb-backfill",
            "--orb-backfill-window",
            "7",
            "--orb-no-close",
        ],
    );
    assert_eq!(code(&same), 0, "{}", stderr(&same));
}
