//! Orb backfills run again: the idempotency keys that make a repeated create
//! or close safe, the check of Orb's existing backfills before a run creates
//! its own, and what a stopped run says about the backfills it leaves open.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backfill::{BackfillJob, KEY, events, requests, stderr};
use crate::support::job::Job;
use crate::support::server::{Api, Fault, Received, TestServer};

/// `events` without its broken line: a run of it that sends everything exits 0.
fn clean_events(start: &str, days: i64) -> (String, usize) {
    let (text, keys) = events(start, days);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    (lines.join("\n") + "\n", keys.len())
}

fn key_of(request: &Received) -> String {
    request
        .header("idempotency-key")
        .unwrap_or_else(|| panic!("{} {} has no Idempotency-Key", request.method, request.path))
        .to_owned()
}

fn closes(server: &TestServer) -> Vec<Received> {
    server
        .received()
        .into_iter()
        .filter(|r| r.path.ends_with("/close"))
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A POST to Orb by hand, as another tool would make it.
fn orb_post(server: &TestServer, path: &str, body: &Value) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&format!("{}{path}", server.endpoint()))
        .header("Authorization", &format!("Bearer {KEY}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

/// `job.send(args)` started, not waited for.
fn spawn(job: &Job, args: &[&str]) -> Child {
    job.backfill_command(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_close_whose_answer_is_lost_is_asked_again_with_its_key_and_the_run_goes_on() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, sent) = clean_events("2026-01-01T03:00:00Z", 70);
    let job = Job::orb(&server, &text);
    // Orb closes the first backfill, but its answer never arrives.
    server.fault_on_next("POST", "/close", Fault::HandleThenClose);
    let output = job.send(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let backfills = server.orb_backfills();
    assert_eq!(backfills.len(), 3, "{backfills:#?}");
    assert!(backfills.iter().all(|b| b["status"] == "reflected"));
    assert_eq!(server.ingested().len(), sent);
    let closes = closes(&server);
    assert_eq!(closes.len(), 4, "the first close twice, then one each");
    assert_eq!(closes[0].path, closes[1].path);
    assert_eq!(
        key_of(&closes[0]),
        key_of(&closes[1]),
        "a retry repeats the key"
    );
    assert!(
        closes[1].replayed,
        "Orb answered the retry with its first answer"
    );
    assert_ne!(key_of(&closes[1]), key_of(&closes[2]));
    assert_eq!(job.summary()["sent"], sent);
}

#[test]
fn a_resume_after_a_close_carried_out_but_not_saved_reads_the_backfill_and_goes_on() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, sent) = clean_events("2026-01-01T03:00:00Z", 70);
    let job = Job::orb(&server, &text);
    let checkpoint = job.path("checkpoint.json");
    let args = ["--checkpoint", checkpoint.to_str().unwrap()];
    // The first close is carried out, then the run is killed before it hears so.
    server.fault_on_next("POST", "/close", Fault::Stall(Duration::from_secs(30)));
    let mut child = spawn(&job, &args);
    wait_for("the first close", || {
        server
            .orb_backfills()
            .first()
            .is_some_and(|b| b["status"] == "reflected")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let saved = job.checkpoint().unwrap();
    let window = &saved["orb_backfill"][0];
    assert_eq!(window["closed"], false, "{saved:#}");
    let key = window["close_key"]
        .as_str()
        .expect("the key is saved first");
    assert_eq!(key_of(&closes(&server)[0]), key);
    assert!(window["create_key"].is_string(), "{saved:#}");

    // Long after (Orb keeps a key's answer 48 hours): the close is refused, a read says it is
    // closed, and the run goes on.
    server.orb_forget_idempotency_keys();
    let output = job.send(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("orb backfill bf_1 is closed already (reflected): going on"),
        "{}",
        stderr(&output)
    );
    let closes = closes(&server);
    assert_eq!(key_of(&closes[1]), key, "the resume repeats the saved key");
    assert_eq!(closes[1].status, 400);
    let backfills = server.orb_backfills();
    assert_eq!(backfills.len(), 3, "{backfills:#?}");
    assert!(backfills.iter().all(|b| b["status"] == "reflected"));
    assert_eq!(server.ingested().len(), sent);
}

#[test]
fn a_create_whose_answer_is_lost_gets_the_same_backfill() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, sent) = clean_events("2026-01-01T03:00:00Z", 10);
    let job = Job::orb(&server, &text);
    server.fault_on_next("POST", "/events/backfills", Fault::HandleThenClose);
    let output = job.send(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(server.orb_backfills().len(), 1);
    let creates: Vec<Received> = server
        .received()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/events/backfills")
        .collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(key_of(&creates[0]), key_of(&creates[1]));
    assert_eq!(creates[0].body, creates[1].body);
    assert!(creates[1].replayed);
    assert_eq!(server.ingested().len(), sent);
    // Every POST carries a key; an ingest batch's comes from its request.
    for request in server.received().iter().filter(|r| r.method == "POST") {
        assert!(key_of(request).len() <= 64);
    }
}

#[test]
fn a_second_run_without_the_checkpoint_is_refused_over_the_first_runs_backfills() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, sent) = clean_events("2026-01-01T03:00:00Z", 40);
    let job = Job::orb(&server, &text);
    let first = job.send(&[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(server.orb_backfills().len(), 2);
    let before = server.received().len();

    let again = job.send(&[]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let said = stderr(&again);
    for id in ["bf_1", "bf_2"] {
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("overlaps backfill {id}: reflected, 2026-"))),
            "{said}"
        );
    }
    assert!(said.contains("--orb-replace-existing") && said.contains("--orb-allow-overlap"));
    let asked: Vec<String> = requests(&server)[before..].to_vec();
    assert_eq!(
        asked,
        ["GET /v1/events/backfills?limit=100"],
        "nothing sent"
    );

    // Added anyway: new backfills beside the old, said in the warnings.
    let added = job.send(&["--orb-allow-overlap"]);
    assert_eq!(added.status.code(), Some(0), "{}", stderr(&added));
    let backfills = server.orb_backfills();
    assert_eq!(backfills.len(), 4);
    assert_eq!(backfills[3]["replace_existing_events"], false);
    let warnings = job.summary()["warnings"].to_string();
    assert!(
        warnings.contains("--orb-allow-overlap") && warnings.contains("bf_1"),
        "{warnings}"
    );

    // Replaced: Orb keeps only this run's copy of each event.
    let replaced = job.send(&["--orb-replace-existing"]);
    assert_eq!(replaced.status.code(), Some(0), "{}", stderr(&replaced));
    let backfills = server.orb_backfills();
    assert_eq!(backfills.len(), 6);
    assert_eq!(backfills[5]["replace_existing_events"], true);
    assert_eq!(server.ingested().len(), sent);
    for key in server
        .ingested()
        .iter()
        .map(|e| e["idempotency_key"].clone())
    {
        let id = server.backfill_of(key.as_str().unwrap()).unwrap();
        assert!(id == "bf_5" || id == "bf_6", "{key} in {id}");
    }
}

#[test]
fn backfills_of_one_customer_count_and_pending_ones_must_be_closed_first() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, _) = clean_events("2026-03-01T00:00:00Z", 3);
    let job = Job::orb(&server, &text);
    // One customer's events replaced, a day inside the window.
    let scoped = orb_post(
        &server,
        "/events/backfills",
        &json!({"timeframe_start": "2026-03-02T00:00:00Z", "timeframe_end": "2026-03-03T00:00:00Z",
                "replace_existing_events": true, "external_customer_id": "c1"}),
    );
    let id = scoped["id"].as_str().unwrap();
    orb_post(
        &server,
        &format!("/events/backfills/{id}/close"),
        &json!({}),
    );
    let refused = job.send(&[]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("backfill {id}: reflected")),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("customer c1 only"));
    orb_post(
        &server,
        &format!("/events/backfills/{id}/revert"),
        &json!({}),
    );

    // Pending, over part of the window: Orb would refuse a backfill over it, whatever the flags.
    let pending = orb_post(
        &server,
        "/events/backfills",
        &json!({"timeframe_start": "2026-03-02T00:00:00Z", "timeframe_end": "2026-03-05T00:00:00Z",
                "replace_existing_events": false}),
    );
    let pending = pending["id"].as_str().unwrap();
    let refused = job.send(&["--orb-allow-overlap"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("backfill {pending}: pending"))
            && stderr(&refused).contains("segrelay orb backfills close ID"),
        "{}",
        stderr(&refused)
    );
    // Closed with nothing in it, it changed nothing, and the run goes on.
    orb_post(
        &server,
        &format!("/events/backfills/{pending}/close"),
        &json!({}),
    );
    let output = job.send(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_dry_run_shows_the_list_it_would_read_and_the_keys_it_would_send() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, _) = clean_events("2026-01-01T03:00:00Z", 40);
    let job = Job::orb(&server, &text);
    let dry = || {
        let output = job
            .command(&["send", "--dry-run", "--orb-backfill"])
            .arg(&job.input)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        // The close time is the only thing that changes (it is the time of the run).
        let mut lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for line in &mut lines {
            if let Some(body) = line["body"].as_object_mut() {
                body.remove("close_time");
            }
        }
        (lines, stderr(&output))
    };
    let (lines, said) = dry();
    assert!(server.received().is_empty());
    assert!(
        said.contains("a dry run does not ask Orb for its backfills"),
        "{said}"
    );
    assert_eq!(lines[0]["method"], "GET");
    assert!(
        lines[0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/events/backfills?limit=100")
    );
    for line in lines.iter().filter(|l| l["method"] == "POST") {
        let key = line["headers"]["idempotency-key"]
            .as_str()
            .unwrap_or_default();
        assert!(key.starts_with("segrelay-"), "{line}");
    }
    // The same input, the same requests: the keys come from what is sent.
    assert_eq!(dry().0, lines);
}

#[test]
fn an_interrupted_backfill_says_which_backfills_it_leaves_open() {
    let server = TestServer::start(Api::Orb, KEY);
    server.latency(Duration::from_millis(20));
    let (text, sent) = clean_events("2026-01-01T03:00:00Z", 20);
    let job = Job::orb(&server, &text);
    let checkpoint = job.path("checkpoint.json");
    let args = [
        "--batch-size",
        "5",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ];
    let child = spawn(&job, &args);
    wait_for("a batch into the backfill", || {
        requests(&server)
            .iter()
            .any(|r| r.contains("backfill_id=bf_1"))
    });
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let said = stderr(&output);
    let open = said
        .lines()
        .find(|l| l.contains("orb backfill bf_1 for window 1 of 1 (2026-01-01T03:00:00.000Z to "))
        .unwrap_or_else(|| panic!("{said}"));
    for part in [
        "was left open: run the same command again",
        "`segrelay orb backfills close bf_1`",
        "`segrelay orb backfills revert bf_1 --yes`",
        "Orb closes it by itself at",
    ] {
        assert!(open.contains(part), "{open}");
    }
    let warnings = job.summary()["warnings"].to_string();
    assert!(
        warnings.contains("orb backfill bf_1 for window 1 of 1"),
        "{warnings}"
    );

    // The same command again goes on with it.
    let resumed = job.send(&args);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert_eq!(server.orb_backfills().len(), 1);
    assert_eq!(server.orb_backfills()[0]["status"], "reflected");
    assert_eq!(server.ingested().len(), sent);
}

#[test]
fn an_aborted_backfill_without_a_checkpoint_says_how_to_finish_by_hand() {
    let server = TestServer::start(Api::Orb, KEY);
    let (text, _) = clean_events("2026-01-01T03:00:00Z", 20);
    let job = Job::orb(&server, &text);
    // The list, the create, the first batch; the second is refused for good.
    server.fault_on_request(4, Fault::Status(503, String::new()));
    let output = job.send(&["--batch-size", "5", "--max-retries", "0"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(
        said.lines()
            .any(|l| l.contains("orb backfill bf_1 for window 1 of 1")
                && l.contains("finish it by hand (without --checkpoint")),
        "{said}"
    );
    assert_eq!(server.orb_backfills()[0]["status"], "pending");
}

#[test]
fn closing_or_reverting_by_hand_is_safe_to_repeat() {
    let server = TestServer::start(Api::Orb, KEY);
    let job = Job::orb(&server, "");
    orb_post(
        &server,
        "/events/backfills",
        &json!({"timeframe_start": "2026-03-02T00:00:00Z", "timeframe_end": "2026-03-03T00:00:00Z",
                "replace_existing_events": false}),
    );
    let by_hand = |args: &[&str]| {
        job.command(&["orb", "backfills"])
            .args(args)
            .output()
            .unwrap()
    };
    // Closed, its answer lost: the retry gets Orb's first answer.
    server.fault_on_next("POST", "/close", Fault::HandleThenClose);
    let closed = by_hand(&["close", "bf_1"]);
    assert_eq!(closed.status.code(), Some(0), "{}", stderr(&closed));
    let shown: Value = serde_json::from_slice(&closed.stdout).unwrap();
    assert_eq!(shown["status"], "reflected");
    let sent = closes(&server);
    assert_eq!(key_of(&sent[0]), key_of(&sent[1]));
    assert!(sent[1].replayed);
    // Again: Orb refuses, a read shows it closed, and that is what was asked.
    let again = by_hand(&["close", "bf_1"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("backfill bf_1 is reflected already: nothing to close"),
        "{}",
        stderr(&again)
    );
    assert_ne!(
        key_of(&closes(&server)[2]),
        key_of(&sent[0]),
        "a key per command"
    );
    for _ in 0..2 {
        let reverted = by_hand(&["revert", "bf_1", "--yes"]);
        assert_eq!(reverted.status.code(), Some(0), "{}", stderr(&reverted));
    }
    assert_eq!(server.orb_backfills()[0]["status"], "reverted");
    // An unknown backfill is not taken for a closed one.
    let unknown = by_hand(&["close", "bf_nope"]);
    assert_ne!(unknown.status.code(), Some(0));
}
