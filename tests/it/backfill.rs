//! Orb backfills end to end against the loopback server, which applies Orb's
//! grace period to ordinary ingest and its rules to backfills.

use std::process::{Output, Stdio};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, KEY_VAR};
use crate::support::server;
use crate::support::server::{Api, TestServer};

pub(crate) const KEY: &str = "sk_test_backfill_key_77";

/// Events every 6 hours from `start` for `days` days: far older than the grace period.
pub(crate) fn events(start: &str, days: i64) -> (String, Vec<(String, Timestamp)>) {
    let start: Timestamp = start.parse().unwrap();
    let mut text = String::new();
    let mut keys = Vec::new();
    for i in 0..days * 4 {
        let time = start
            .checked_add(jiff::SignedDuration::from_hours(6 * i))
            .unwrap();
        let key = format!("bf-{i}");
        // As Segment's archive holds it: stamped on receipt.
        let event = json!({"type":"track","event":"api_call","userId":format!("c{}", i % 3),"messageId":key,
            "timestamp": time.to_string(), "receivedAt": time.to_string(), "properties":{"n": i}});
        text.push_str(&format!("{event}\n"));
        keys.push((key, time));
    }
    // A page (skipped) and a broken line (rejected) are settled once, not once per window.
    text.push_str(
        "{\"type\":\"page\",\"userId\":\"c1\",\"timestamp\":\"2026-01-05T00:00:00Z\"}\n{\"oops\"\n",
    );
    (text, keys)
}

/// How the backfill tests make and run a job.
pub(crate) trait BackfillJob {
    fn orb(server: &TestServer, text: &str) -> Self;
    fn command(&self, args: &[&str]) -> std::process::Command;
    /// `send --orb-backfill --orb-wait` with short waits, the summary and
    /// rejects beside the job, `extra` and the input.
    fn backfill_command(&self, extra: &[&str]) -> std::process::Command;
    fn send(&self, extra: &[&str]) -> Output;
}

impl BackfillJob for Job {
    fn orb(server: &TestServer, text: &str) -> Job {
        let table = "[destinations.orb]\nexternal_customer_id_field = \"userId\"\n";
        Job::new(table, &server.endpoint(), text)
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = support::segrelay_process();
        command
            .args(args)
            .arg("-c")
            .arg(&self.settings)
            .env(KEY_VAR, KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn backfill_command(&self, extra: &[&str]) -> std::process::Command {
        let mut command = self.command(&[
            "send",
            "--orb-backfill",
            "--orb-wait",
            "--orb-poll-interval",
            "10ms",
            "--max-retry-wait",
            "10ms",
        ]);
        command
            .arg("--summary")
            .arg(self.path("summary.json"))
            .arg("--rejects")
            .arg(self.path("rejects.ndjson"))
            .args(extra)
            .arg(&self.input);
        command
    }

    fn send(&self, extra: &[&str]) -> Output {
        let output = self.backfill_command(extra).output().unwrap();
        for text in [&output.stdout, &output.stderr] {
            assert!(
                !String::from_utf8_lossy(text).contains(KEY),
                "the key leaked"
            );
        }
        output
    }
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub(crate) fn time(value: &Value) -> Timestamp {
    value.as_str().unwrap().parse().unwrap()
}

#[test]
fn a_backfill_over_three_windows_puts_every_event_in_its_window() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    server.orb_backfill_reflect_after_polls(2);
    let (text, keys) = events("2026-01-01T03:00:00Z", 70);
    let job = Job::orb(&server, &text);

    let output = job.send(&["--batch-size", "50"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "one broken line: {}",
        stderr(&output)
    );

    let backfills = server.orb_backfills();
    assert_eq!(backfills.len(), 3, "{backfills:#?}");
    for pair in backfills.windows(2) {
        assert!(
            time(&pair[0]["timeframe_end"]) <= time(&pair[1]["timeframe_start"]),
            "windows overlap"
        );
    }
    for backfill in &backfills {
        assert_eq!(backfill["status"], "reflected");
        assert_eq!(backfill["replace_existing_events"], false);
        let span =
            time(&backfill["timeframe_end"]).duration_since(time(&backfill["timeframe_start"]));
        assert!(span <= jiff::SignedDuration::from_hours(31 * 24));
    }
    assert_eq!(
        server.ingested().len(),
        keys.len(),
        "each event ingested once"
    );
    for (key, at) in &keys {
        let id = server
            .backfill_of(key)
            .unwrap_or_else(|| panic!("{key} did not go through a backfill"));
        let backfill = backfills.iter().find(|b| b["id"] == id.as_str()).unwrap();
        assert!(
            time(&backfill["timeframe_start"]) <= *at && *at < time(&backfill["timeframe_end"]),
            "{key} outside its window"
        );
    }
    // One backfill at a time: each was reflected before the next was created.
    let paths: Vec<String> = server
        .received()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let creates: Vec<usize> = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| *p == "POST /v1/events/backfills")
        .map(|(i, _)| i)
        .collect();
    let closes: Vec<usize> = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| p.ends_with("/close"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(creates.len(), 3);
    assert!(
        closes[0] < creates[1] && closes[1] < creates[2],
        "{paths:#?}"
    );

    let summary = job.summary();
    assert_eq!(summary["sent"], keys.len());
    assert_eq!(summary["skipped"], 1);
    assert_eq!(summary["rejected"], 1);
    assert_eq!(summary["read"], keys.len() + 2);
}

#[test]
fn without_a_backfill_orb_refuses_old_events() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    let (text, keys) = events("2026-01-01T03:00:00Z", 2);
    let job = Job::orb(&server, &text);
    let output = job
        .command(&["send"])
        .args(["--max-retry-wait", "10ms", "--summary"])
        .arg(job.path("summary.json"))
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        job.summary()["rejected_by_reason"]["refused by orb"],
        keys.len()
    );
    assert!(stderr(&output).contains("backfill"), "{}", stderr(&output));
}

#[test]
fn a_dry_run_writes_the_backfill_requests_too() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, keys) = events("2026-01-01T03:00:00Z", 40);
    let job = Job::orb(&server, &text);
    let output = job
        .command(&[
            "send",
            "--dry-run",
            "--orb-backfill",
            "--orb-replace-existing",
        ])
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(server.received().is_empty(), "a dry run sends nothing");
    assert!(
        stderr(&output)
            .lines()
            .any(|l| l.starts_with("segrelay: WARNING: --orb-replace-existing")),
        "{}",
        stderr(&output)
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let creates: Vec<&Value> = lines
        .iter()
        .filter(|l| l["url"].as_str().unwrap().ends_with("/events/backfills"))
        .collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0]["body"]["replace_existing_events"], true);
    assert!(
        creates[0]["body"]["close_time"].is_string(),
        "{}",
        creates[0]
    );
    let ingested: usize = lines
        .iter()
        .filter(|l| l["url"].as_str().unwrap().contains("/ingest?backfill_id="))
        .map(|l| l["body"]["events"].as_array().unwrap().len())
        .sum();
    assert_eq!(ingested, keys.len());
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["url"].as_str().unwrap().ends_with("/close"))
            .count(),
        2
    );
}

#[test]
fn a_resumed_backfill_goes_on_with_the_same_backfills() {
    let server = TestServer::start(Api::Orb, KEY);
    server.latency(Duration::from_millis(15));
    let (text, keys) = events("2026-01-01T03:00:00Z", 70);
    let job = Job::orb(&server, &text);
    let args = ["--batch-size", "10", "--checkpoint"];
    let checkpoint = job.path("checkpoint.json");
    let mut child = job
        .command(&[
            "send",
            "--orb-backfill",
            "--orb-poll-interval",
            "10ms",
            "-q",
        ])
        .args(args)
        .arg(&checkpoint)
        .arg(&job.input)
        .spawn()
        .unwrap();
    // Kill it in the middle of the second window.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.orb_backfills().len() < 2 || server.ingested().len() < 140 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not get to the second window"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(server.ingested().len() < keys.len());

    let output = job
        .command(&["send", "--orb-backfill", "--orb-poll-interval", "10ms"])
        .args(args)
        .arg(&checkpoint)
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let backfills = server.orb_backfills();
    assert_eq!(
        backfills.len(),
        3,
        "the resume made no new backfill for a window it had: {backfills:#?}"
    );
    assert_eq!(server.ingested().len(), keys.len());
    for (key, _) in &keys {
        assert!(server.backfill_of(key).is_some(), "{key}");
    }
}

#[test]
fn a_pending_backfill_for_the_same_window_is_taken_over() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, keys) = events("2026-03-01T00:00:00Z", 3);
    let job = Job::orb(&server, &text);
    // As if a run had created it and died before recording its id.
    let first = keys.first().unwrap().1;
    let last = keys.last().unwrap().1;
    let end = Timestamp::from_millisecond(last.as_millisecond() + 1).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .post(&format!("{}/events/backfills", server.endpoint()))
        .header("Authorization", &format!("Bearer {KEY}"))
        .header("Content-Type", "application/json")
        .send(json!({"timeframe_start": first.to_string(), "timeframe_end": end.to_string(), "replace_existing_events": false}).to_string())
        .unwrap();
    assert_eq!(response.status(), 200);
    let output = job.send(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let backfills = server.orb_backfills();
    assert_eq!(backfills.len(), 1, "{backfills:#?}");
    assert_eq!(backfills[0]["status"], "reflected");
    assert_eq!(server.ingested().len(), keys.len());
}

#[test]
fn backfills_can_be_managed_by_hand() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, _) = events("2026-01-01T03:00:00Z", 40);
    let job = Job::orb(&server, &text);
    let output = job
        .command(&["send", "--orb-backfill", "--orb-no-close"])
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let backfills = server.orb_backfills();
    assert!(
        backfills.iter().all(|b| b["status"] == "pending"),
        "--orb-no-close leaves them open"
    );
    let id = backfills[0]["id"].as_str().unwrap().to_owned();

    let run = |args: &[&str]| {
        job.command(&["orb", "backfills"])
            .args(args)
            .output()
            .unwrap()
    };
    let list = run(&["list"]);
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 2);
    let json_list = run(&["list", "--json"]);
    let rows: Vec<Value> = String::from_utf8_lossy(&json_list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["id"], id.as_str());

    let closed = run(&["close", &id]);
    assert_eq!(closed.status.code(), Some(0), "{}", stderr(&closed));
    let shown: Value = serde_json::from_slice(&run(&["show", &id]).stdout).unwrap();
    assert_eq!(shown["status"], "reflected");
    // Without a terminal, a revert needs --yes.
    let refused = run(&["revert", &id]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_eq!(server.orb_backfills()[0]["status"], "reflected");
    let reverted = run(&["revert", &id, "--yes"]);
    assert_eq!(reverted.status.code(), Some(0));
    assert!(
        server.orb_backfills()[0]["status"]
            .as_str()
            .unwrap()
            .contains("revert")
    );
    let unknown = run(&["show", "bf_nope"]);
    assert_ne!(unknown.status.code(), Some(0));
}

/// A track event `hours_ago` hours before now (negative: ahead).
fn event_at(key: &str, hours_ago: i64) -> (String, Timestamp) {
    let at = Timestamp::now() - jiff::SignedDuration::from_hours(hours_ago);
    let event = json!({"type":"track","event":"api_call","userId":"c1","messageId":key,
        "timestamp": at.to_string(), "receivedAt": at.to_string(), "properties":{}});
    (format!("{event}\n"), at)
}

pub(crate) fn requests(server: &TestServer) -> Vec<String> {
    server
        .received()
        .iter()
        .map(|r| {
            let query = if r.query.is_empty() {
                String::new()
            } else {
                format!("?{}", r.query)
            };
            format!("{} {}{query}", r.method, r.path)
        })
        .collect()
}

#[test]
fn recent_events_go_through_plain_ingest_and_future_ones_are_rejected() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    let (mut text, old) = events("2026-01-01T03:00:00Z", 2);
    let mut recent = Vec::new();
    for (key, hours_ago) in [("just-old", 13), ("recent-11h", 11), ("recent-1h", 1)] {
        let (line, _) = event_at(key, hours_ago);
        text.push_str(&line);
        if hours_ago < 12 {
            recent.push(key);
        }
    }
    let (line, ahead) = event_at("ahead", -2);
    text.push_str(&line);
    let job = Job::orb(&server, &text);
    let output = job.send(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let started_grace = Timestamp::now() - jiff::SignedDuration::from_hours(12);

    for key in &recent {
        assert!(
            server.backfill_of(key).is_none(),
            "{key} went to a backfill"
        );
        assert_eq!(server.deliveries().get(*key), Some(&1), "{key}");
    }
    for (key, _) in old.iter().map(|(k, t)| (k.as_str(), t)) {
        assert!(server.backfill_of(key).is_some(), "{key}");
    }
    assert!(server.backfill_of("just-old").is_some());
    let backfills = server.orb_backfills();
    assert_eq!(backfills.len(), 2, "{backfills:#?}");
    for backfill in &backfills {
        assert!(
            time(&backfill["timeframe_end"]) <= started_grace,
            "a window reaches into the grace period: {backfill}"
        );
    }
    // The recent events go first, while they are still within the grace period: only the
    // list of Orb's backfills (the overlap check) comes before them.
    let paths = requests(&server);
    assert_eq!(paths[0], "GET /v1/events/backfills?limit=100", "{paths:#?}");
    assert_eq!(paths[1], "POST /v1/ingest", "{paths:#?}");
    assert!(
        paths[2..].iter().all(|p| p != "POST /v1/ingest"),
        "{paths:#?}"
    );

    let summary = job.summary();
    assert_eq!(summary["sent"], old.len() + 3);
    assert_eq!(summary["rejected_by_reason"]["time in the future"], 1);
    // This table maps no property, which is warned of; no grace-period warning.
    let warnings = summary["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .all(|w| w.as_str().unwrap().contains("properties_mapping is empty")),
        "no grace-period warning: {warnings:?}"
    );
    let rejects = std::fs::read_to_string(job.path("rejects.ndjson")).unwrap();
    let future: Value = rejects
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["messageId"] == "ahead")
        .expect("the future event is in the rejects file");
    let detail = future["_segrelay"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&ahead.to_string()[..16]) && detail.contains("5 minutes"),
        "{detail}"
    );
    assert!(!server.deliveries().contains_key("ahead"));
}

#[test]
fn each_backfill_gets_a_close_time_and_orb_closes_an_unclosed_one_by_itself() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, _) = events("2026-01-01T03:00:00Z", 2);
    let job = Job::orb(&server, &text);
    let before = Timestamp::now();
    let output = job.send(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let create = server
        .received()
        .into_iter()
        .find(|r| r.path == "/v1/events/backfills" && r.method == "POST")
        .unwrap();
    let body: Value = serde_json::from_slice(&create.body).unwrap();
    let close = time(&body["close_time"]);
    let day = jiff::SignedDuration::from_hours(24);
    assert!(
        before + day <= close && close <= Timestamp::now() + day,
        "by default one day after creation, as Orb would: {body}"
    );

    // --orb-no-close: segrelay leaves it to Orb, which closes it at its close time.
    let server = TestServer::start(Api::Orb, KEY);
    let job = Job::orb(&server, &text);
    let output = job
        .command(&[
            "send",
            "--orb-backfill",
            "--orb-no-close",
            "--orb-close-after",
            "3s",
        ])
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        requests(&server).iter().all(|p| !p.ends_with("/close")),
        "segrelay closed it"
    );
    let backfill = &server.orb_backfills()[0];
    assert_eq!(backfill["status"], "pending", "{backfill}");
    let created = time(&backfill["created_at"]);
    let close = time(&backfill["close_time"]);
    let off = close.duration_since(created) - jiff::SignedDuration::from_secs(3);
    assert!(off.abs() < jiff::SignedDuration::from_secs(2), "{backfill}");
    while Timestamp::now() <= close {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.orb_backfills()[0]["status"], "reflected");
    assert_eq!(server.ingested().len(), 8);

    let zero = job
        .command(&["send", "--orb-backfill", "--orb-close-after", "0s"])
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2));
    assert!(
        stderr(&zero).contains("--orb-close-after"),
        "{}",
        stderr(&zero)
    );
}

#[test]
fn a_resumed_backfill_sends_recent_events_once_and_rejects_future_ones_once() {
    let server = TestServer::start(Api::Orb, KEY);
    server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
    let (mut text, old) = events("2026-01-01T03:00:00Z", 40);
    for (key, hours_ago) in [("recent-a", 2), ("recent-b", 3), ("ahead", -3)] {
        text.push_str(&event_at(key, hours_ago).0);
    }
    let job = Job::orb(&server, &text);
    // The list of backfills, the plain ingest of the recent events, the first backfill's
    // creation, then its events: refused.
    server.fault_on_request(4, server::Fault::Status(500, String::new()));
    let checkpoint = job.path("checkpoint.json");
    let checkpoint = checkpoint.to_str().unwrap();
    let args = ["--max-retries", "0", "--checkpoint", checkpoint];
    let stopped = job.send(&args);
    assert_eq!(stopped.status.code(), Some(3), "{}", stderr(&stopped));
    assert_eq!(server.orb_backfills().len(), 1);

    let resumed = job.send(&args);
    assert_eq!(resumed.status.code(), Some(1), "{}", stderr(&resumed));
    assert_eq!(server.orb_backfills().len(), 2);
    for key in ["recent-a", "recent-b"] {
        assert_eq!(server.deliveries().get(key), Some(&1), "{key}");
        assert!(server.backfill_of(key).is_none(), "{key}");
    }
    for (key, _) in &old {
        assert!(server.backfill_of(key).is_some(), "{key}");
    }
    assert_eq!(server.ingested().len(), old.len() + 2);
    let summary = job.summary();
    let done = &summary["already_done"];
    let total = |k: &str| summary[k].as_u64().unwrap() + done[k].as_u64().unwrap_or(0);
    assert_eq!(total("sent"), old.len() as u64 + 2, "{summary}");
    assert_eq!(
        total("rejected"),
        2,
        "the broken line and the future event: {summary}"
    );
    assert_eq!(total("read"), old.len() as u64 + 5, "{summary}");
}

#[test]
fn settings_options_go_anywhere_on_the_orb_backfills_line() {
    let server = TestServer::start(Api::Orb, KEY);
    let job = Job::orb(&server, "");
    for args in [
        ["orb", "backfills", "list", "-d", "orb"],
        ["orb", "backfills", "-d", "orb", "list"],
        ["orb", "-d", "orb", "backfills", "list"],
    ] {
        let output = job.command(&args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// The windows are counted alike in the plan and in each window's line (the
/// pass of the events within the grace period is no window), and `-q` says
/// nothing of a backfill that went well.
#[test]
fn a_backfill_counts_its_windows_alike_and_is_silent_with_q() {
    let (old, keys) = events("2026-01-01T03:00:00Z", 70);
    // Only events: no page, no broken line.
    let mut text: String = old
        .lines()
        .take(keys.len())
        .map(|l| format!("{l}\n"))
        .collect();
    let recent = Timestamp::now() - jiff::SignedDuration::from_hours(1);
    text.push_str(&format!(
        "{}\n",
        json!({"type":"track","event":"api_call","userId":"c1","messageId":"recent-1",
               "timestamp": recent.to_string(), "receivedAt": recent.to_string()})
    ));
    for quiet in [false, true] {
        let server = TestServer::start(Api::Orb, KEY);
        server.orb_grace_period(Some(Duration::from_secs(12 * 3600)));
        let job = Job::orb(&server, &text);
        let output = job.send(if quiet { &["-q"] } else { &[] });
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{said}");
        assert_eq!(server.ingested().len(), keys.len() + 1);
        if quiet {
            assert_eq!(said, "", "-q prints nothing on success");
            continue;
        }
        assert!(
            said.contains("segrelay: orb backfill: 280 events in 3 windows of at most 31 days"),
            "{said}"
        );
        let numbered: Vec<&str> = said
            .lines()
            .filter_map(|l| l.strip_prefix("segrelay: orb backfill window "))
            .map(|l| &l[..6])
            .collect();
        assert_eq!(numbered, ["1 of 3", "2 of 3", "3 of 3"], "{said}");
        assert!(
            said.lines().any(
                |l| l.starts_with("segrelay: orb: 1 event within the grace period (")
                    && l.ends_with(") goes through ordinary ingest")
            ),
            "{said}"
        );
    }
}
