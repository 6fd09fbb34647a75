//! Backfills that survive: checkpoints, resume after a kill or Ctrl-C,
//! concurrency that keeps the checkpoint honest, and filters.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, KEY_VAR, destination_table};
use crate::support::server::{Api, Fault, TestServer};

const KEY: &str = "sk_test_resume_key_0042";

/// How the resume tests make and run a job.
trait ResumeJob {
    fn kable(server: &TestServer, lines: &str) -> Self;
    fn command(&self, extra: &[&str]) -> std::process::Command;
    fn run(&self, extra: &[&str]) -> (i32, String);
    fn spawn(&self, extra: &[&str]) -> Child;
}

impl ResumeJob for Job {
    fn kable(server: &TestServer, lines: &str) -> Job {
        Job::new(&destination_table(Api::Kable), &server.endpoint(), lines)
    }

    fn command(&self, extra: &[&str]) -> std::process::Command {
        let mut command = support::segrelay_process();
        command
            .arg("send")
            .arg("-c")
            .arg(&self.settings)
            .arg("--checkpoint")
            .arg(self.path("checkpoint.json"))
            .arg("--rejects")
            .arg(self.path("rejects.ndjson"))
            .arg("--summary")
            .arg(self.path("summary.json"))
            .args(["--max-retry-wait", "20ms", "-q"])
            .args(extra)
            .arg(&self.input)
            .env(KEY_VAR, KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, extra: &[&str]) -> (i32, String) {
        let output = self.command(extra).output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        self.command(extra).spawn().unwrap()
    }
}

fn event(i: usize) -> Value {
    json!({
        "type": "track", "event": "api_call", "userId": format!("c{}", i % 5),
        "messageId": format!("m-{i}"), "timestamp": "2026-11-23T10:00:00Z",
        "properties": {"n": i},
    })
}

/// `n` events, one a line, with a malformed line every `bad_every` lines (0: none).
fn input(n: usize, bad_every: usize) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut keys = Vec::new();
    for i in 0..n {
        if bad_every > 0 && i % bad_every == bad_every - 1 {
            text.push_str(&format!("{{\"broken\": {i}\n"));
        } else {
            text.push_str(&event(i).to_string());
            text.push('\n');
            keys.push(format!("m-{i}"));
        }
    }
    (text, keys)
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_each_key_once(server: &TestServer, keys: &[String]) {
    let deliveries = server.deliveries();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !deliveries.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    let ingested: Vec<String> = server
        .ingested()
        .iter()
        .map(|e| e["transactionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ingested.len(), keys.len(), "each event ingested once");
    assert_eq!(
        ingested.iter().collect::<BTreeSet<_>>(),
        keys.iter().collect::<BTreeSet<_>>()
    );
}

/// The keys on the lines a checkpoint calls settled all reached the server.
fn assert_checkpoint_not_ahead(job: &Job, server: &TestServer, text: &str) {
    let Some(checkpoint) = job.checkpoint() else {
        return;
    };
    let input = &checkpoint["inputs"][0];
    let settled = if input["done"] == json!(true) {
        usize::MAX
    } else {
        input["settled_lines"].as_u64().unwrap() as usize
    };
    let deliveries = server.deliveries();
    for line in text.lines().take(settled) {
        if let Ok(event) = serde_json::from_str::<Value>(line)
            && let Some(key) = event["messageId"].as_str()
        {
            assert!(
                deliveries.contains_key(key),
                "checkpoint passed {key} before it was delivered"
            );
        }
    }
}

fn interrupt(child: &Child) {
    signal(child, "-INT");
}

fn signal(child: &Child, which: &str) {
    let status = std::process::Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_stops_as_cleanly_as_ctrl_c() {
    let server = TestServer::start(Api::Kable, KEY);
    server.latency(Duration::from_millis(20));
    let (text, keys) = input(300, 0);
    let job = Job::kable(&server, &text);
    let child = job.spawn(&["--batch-size", "10"]);
    wait_for(|| server.received().len() >= 3);
    signal(&child, "-TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    assert_eq!(job.summary()["interrupted"], json!(true));
    assert_checkpoint_not_ahead(&job, &server, &text);
    let (code, stderr) = job.run(&["--batch-size", "10"]);
    assert_eq!(code, 0, "{stderr}");
    assert_each_key_once(&server, &keys);
}

#[test]
fn resume_after_a_kill_delivers_everything_once() {
    let server = TestServer::start(Api::Kable, KEY);
    server.latency(Duration::from_millis(15));
    let (text, keys) = input(600, 37);
    let job = Job::kable(&server, &text);
    let mut child = job.spawn(&["--batch-size", "10"]);
    // Past 0.2 s of batches: the checkpoint has been written after some of them.
    wait_for(|| server.received().len() >= 25);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        server.deliveries().len() < keys.len(),
        "the kill came too late to test anything"
    );
    assert_checkpoint_not_ahead(&job, &server, &text);

    let (code, stderr) = job.run(&["--batch-size", "10"]);
    assert_eq!(code, 1, "rejected lines make it 1: {stderr}");
    assert_each_key_once(&server, &keys);
    let summary = job.summary();
    let done = &summary["already_done"];
    assert!(done["sent"].as_u64().unwrap() > 0, "{summary}");
    // Across both runs every line is accounted for exactly once.
    assert_eq!(
        done["read"].as_u64().unwrap() + summary["read"].as_u64().unwrap(),
        600,
        "{summary}"
    );
    // Each malformed line is in the rejects file once, though two runs read the file.
    let rejected_lines: Vec<u64> = job
        .rejects()
        .iter()
        .map(|r| r["_segrelay"]["line"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=600u64).filter(|l| l % 37 == 0).collect();
    assert_eq!(rejected_lines, expected);
}

#[test]
fn ctrl_c_stops_cleanly_and_the_same_command_resumes() {
    let server = TestServer::start(Api::Kable, KEY);
    server.latency(Duration::from_millis(20));
    let (text, keys) = input(400, 0);
    let job = Job::kable(&server, &text);
    let child = job.spawn(&["--batch-size", "10"]);
    wait_for(|| server.received().len() >= 5);
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let summary = job.summary();
    assert_eq!(summary["interrupted"], json!(true));
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(
        n("read"),
        n("sent") + n("skipped") + n("rejected") + n("failed")
    );
    assert!(n("sent") < 400);
    assert_checkpoint_not_ahead(&job, &server, &text);

    let (code, stderr) = job.run(&["--batch-size", "10"]);
    assert_eq!(code, 0, "{stderr}");
    assert_each_key_once(&server, &keys);
    // The events that were read but not sent before the stop are gone from the
    // rejects file: the resume sent them.
    assert!(job.rejects().is_empty(), "{:?}", job.rejects());

    // A third run has nothing left to do.
    let before = server.received().len();
    let (code, _) = job.run(&["--batch-size", "10"]);
    assert_eq!(code, 0);
    assert_eq!(server.received().len(), before);
    assert_eq!(job.summary()["read"], 0);
}

#[test]
fn a_changed_input_is_refused_unless_restarting() {
    let server = TestServer::start(Api::Kable, KEY);
    let (text, keys) = input(30, 0);
    let job = Job::kable(&server, &text);
    assert_eq!(job.run(&[]).0, 0);
    std::fs::write(&job.input, format!("{text}{}\n", event(999))).unwrap();
    let (code, stderr) = job.run(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("changed since the checkpoint"), "{stderr}");
    assert!(stderr.contains("--restart"), "{stderr}");
    let (code, stderr) = job.run(&["--restart"]);
    assert_eq!(code, 0, "{stderr}");
    let mut all = keys.clone();
    all.push("m-999".into());
    assert_each_key_once(&server, &all);
}

#[test]
fn standard_input_cannot_be_checkpointed() {
    let server = TestServer::start(Api::Kable, KEY);
    let job = Job::kable(&server, "");
    let output = support::segrelay_process()
        .args(["send", "-c"])
        .arg(&job.settings)
        .arg("--checkpoint")
        .arg(job.path("c.json"))
        .arg("-")
        .env(KEY_VAR, KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("standard input cannot be resumed"));
}

#[test]
fn concurrency_delivers_everything_and_keeps_the_checkpoint_in_order() {
    let server = TestServer::start(Api::Kable, KEY);
    server.latency(Duration::from_millis(10));
    for n in [3, 4, 11, 12, 13, 20] {
        server.fault_on_request(n, Fault::Status(503, String::new()));
    }
    let (text, keys) = input(1000, 0);
    let job = Job::kable(&server, &text);
    let (code, stderr) = job.run(&["--batch-size", "20", "--concurrency", "4"]);
    assert_eq!(code, 0, "{stderr}");
    assert_each_key_once(&server, &keys);
    let summary = job.summary();
    assert_eq!(summary["sent"], 1000);
    assert_eq!(summary["retries"], 6);
    assert_eq!(job.checkpoint().unwrap()["inputs"][0]["done"], json!(true));

    // Killed mid-run with four requests in flight, the checkpoint is never ahead.
    let server = TestServer::start(Api::Kable, KEY);
    server.latency(Duration::from_millis(30));
    let job = Job::kable(&server, &text);
    let mut child = job.spawn(&["--batch-size", "10", "--concurrency", "4"]);
    wait_for(|| server.received().len() >= 12);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_checkpoint_not_ahead(&job, &server, &text);
    let (code, stderr) = job.run(&["--batch-size", "10", "--concurrency", "4"]);
    assert_eq!(code, 0, "{stderr}");
    assert_each_key_once(&server, &keys);
}

#[test]
fn filters_skip_with_their_own_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("s.toml");
    std::fs::write(&settings, "[destinations.amberflo]\napi_key = \"k\"\n").unwrap();
    let events = [
        json!({"type":"track","event":"A","userId":"u","timestamp":"2026-01-01T00:00:00Z"}),
        json!({"type":"track","event":"B","userId":"u","timestamp":"2026-01-02T00:00:00Z"}),
        json!({"type":"page","name":"Home","userId":"u","timestamp":"2026-01-02T00:00:00Z"}),
        json!({"type":"identify","userId":"u","timestamp":"2026-01-02T00:00:00Z"}),
        json!({"type":"track","event":"A","userId":"u","timestamp":"2025-12-31T23:59:59.999Z"}),
        json!({"type":"track","event":"A","userId":"u","timestamp":"2026-02-01T00:00:00Z"}),
    ];
    let input = dir.path().join("e.ndjson");
    std::fs::write(
        &input,
        events.iter().map(|e| format!("{e}\n")).collect::<String>(),
    )
    .unwrap();
    let summary_path = dir.path().join("summary.json");
    let output = support::segrelay_process()
        .args(["send", "--dry-run", "-c"])
        .arg(&settings)
        .args([
            "--since",
            "2026-01-01",
            "--until",
            "2026-02-01T00:00:00Z",
            "--types",
            "track,page",
            "--events",
            "A",
        ])
        .arg("--summary")
        .arg(&summary_path)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["sent"], 2, "{summary}");
    assert_eq!(
        summary["skipped_by_reason"],
        json!({"filtered by --events": 1, "filtered by --types": 1, "filtered by --since": 1, "filtered by --until": 1})
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let names: Vec<String> = stdout
        .lines()
        .flat_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["body"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|r| r["meterApiName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["A", "page"]);
}

/// Amberflo identify writes are journaled beside the checkpoint: killed after
/// a customer's identifies were written (folded into one write, at the first)
/// but before the checkpoint passed them, the resumed job writes none of them
/// again, and the older identify's plan is never written.
#[test]
fn a_resumed_job_never_writes_an_older_identify_over_a_newer_one() {
    // Meter records to one server, held there while the identifies are
    // written to the other, so that the checkpoint cannot pass them.
    let ingest = TestServer::start(Api::Amberflo, KEY);
    let api = TestServer::start(Api::Amberflo, KEY);
    ingest.latency(Duration::from_secs(10));
    let identify = |id: &str, message_id: &str, traits: Value| {
        json!({"type": "identify", "userId": id, "messageId": message_id,
               "timestamp": "2026-11-23T10:00:00Z", "traits": traits})
    };
    let lines = [
        json!({"type": "track", "event": "api_call", "userId": "cust_1", "messageId": "t-1",
               "timestamp": "2026-11-23T10:00:00Z"}),
        identify("cust_1", "old", json!({"plan": "basic", "region": "eu"})),
        identify("cust_1", "new", json!({"plan": "pro"})),
        identify("cust_2", "later", json!({"name": "Bee"})),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let table = format!(
        "[destinations.amberflo]\napi_endpoint = \"{}\"\n",
        api.endpoint()
    );
    let job = Job::new(&table, &ingest.endpoint(), &text);
    let args = ["--batch-size", "1"];
    let mut child = job.spawn(&args);
    // cust_2 is looked up after cust_1's newer identify was written and journaled.
    wait_for(|| api.customer_requests().iter().any(|(_, c)| c == "cust_2"));
    child.kill().unwrap();
    child.wait().unwrap();
    let checkpoint = job.checkpoint().expect("a checkpoint from the start");
    assert_eq!(checkpoint["inputs"][0]["settled_lines"], 0, "{checkpoint}");
    assert_eq!(api.customers()[0]["traits"]["plan"], "pro");

    ingest.latency(Duration::ZERO);
    let before = api.customer_requests().len();
    let (code, stderr) = job.run(&args);
    assert_eq!(code, 0, "{stderr}");
    let after = api.customer_requests().split_off(before);
    assert!(
        after.iter().all(|(_, c)| c != "cust_1"),
        "cust_1's identifies were applied again: {after:?}"
    );
    assert_eq!(
        api.customers()[0],
        json!({"customerId": "cust_1", "customerName": "cust_1",
               "traits": {"plan": "pro", "region": "eu"}})
    );
    let summary = job.summary();
    assert_eq!(
        (summary["sent"].as_u64(), summary["read"].as_u64()),
        (Some(4), Some(4)),
        "{summary}"
    );
    assert!(ingest.deliveries().contains_key("t-1"));
    let plans: Vec<Value> = api
        .received()
        .iter()
        .filter(|r| r.path == "/customers" && r.method != "GET")
        .map(|r| r.json())
        .filter(|w| w["customerId"] == "cust_1")
        .map(|w| w["traits"]["plan"].clone())
        .collect();
    assert_eq!(plans, [json!("pro")], "one write, the newer plan");

    // --restart starts afresh: the journal is set aside with the checkpoint.
    let (code, stderr) = job.run(&["--batch-size", "1", "--restart"]);
    assert_eq!(code, 0, "{stderr}");
    let restarted = api.customer_requests().split_off(before + after.len());
    assert_eq!(
        restarted
            .iter()
            .filter(|(_, c)| c == "cust_1")
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>(),
        ["GET"],
        "looked up again (the journal is set aside), its identifies folded are found held"
    );
}

#[test]
fn ctrl_c_ends_a_rate_limit_wait_at_once() {
    let server = TestServer::start(Api::Kable, KEY);
    let (text, _) = input(5, 0);
    let table = format!(
        "{}max_events_per_minute = 1\n",
        destination_table(Api::Kable)
    );
    let job = Job::new(&table, &server.endpoint(), &text);
    // The first event goes at once; the second waits a minute for its turn.
    let child = job.spawn(&["--batch-size", "1"]);
    wait_for(|| !server.received().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    signal(&child, "-INT");
    let output = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "took {:?} to stop",
        signalled.elapsed()
    );
    assert_eq!(output.status.code(), Some(130));
    let summary = job.summary();
    assert_eq!(summary["interrupted"], json!(true));
    support::assert_accounting(&summary);
    assert_eq!(summary["sent"], json!(1), "{summary}");
    assert!(
        summary["failed_by_reason"]["interrupted"].as_u64() >= Some(1),
        "{summary}"
    );
    assert!(
        summary["backoff_seconds"].as_f64().unwrap() < 5.0,
        "{summary}"
    );
    assert_eq!(server.received().len(), 1);
}

/// Ctrl-C fails the events in flight for one reason: said once with its count,
/// not once per event. The resume says first, on its own line, what the
/// checkpoint already holds.
#[test]
fn ctrl_c_says_the_events_not_sent_once_and_the_resume_what_is_settled() {
    let server = TestServer::start(Api::Kable, KEY);
    server.latency(Duration::from_millis(20));
    let (text, keys) = input(400, 0);
    let job = Job::kable(&server, &text);
    let command = |extra: &[&str]| {
        let mut command = support::segrelay_process();
        command
            .arg("send")
            .arg("-c")
            .arg(&job.settings)
            .arg("--checkpoint")
            .arg(job.path("checkpoint.json"))
            .arg("--summary")
            .arg(job.path("summary.json"))
            .args(["--batch-size", "10", "-j", "4"])
            .args(extra)
            .arg(&job.input)
            .env(KEY_VAR, KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let child = command(&[]).spawn().unwrap();
    wait_for(|| server.received().len() >= 5);
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{said}");
    let summary = job.summary();
    let failed = summary["failed"].as_u64().unwrap();
    // The events read but not yet sent (the batch being filled, at least).
    assert!(failed > 1, "{said}");
    let lines = said
        .lines()
        .filter(|l| l.contains(": failed: interrupted"))
        .count();
    assert_eq!(lines, 1, "{said}");
    let count = format!("segrelay: {failed} events failed: interrupted: ");
    assert!(
        said.lines()
            .any(|l| l.starts_with(&count) && l.ends_with("; -v lists each)")),
        "{said}"
    );

    let output = command(&[]).output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{said}");
    let earlier = &job.summary()["already_done"];
    let n = |k: &str| earlier[k].as_u64().unwrap();
    assert_eq!(
        said.lines().next(),
        Some(
            format!(
                "segrelay: resuming from the checkpoint: {} events already settled ({} sent, 0 skipped, 0 rejected, 0 failed)",
                n("read"),
                n("sent")
            )
            .as_str()
        ),
        "{said}"
    );
    assert_each_key_once(&server, &keys);

    // Quiet, a resume says nothing.
    let output = command(&["-q"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}
