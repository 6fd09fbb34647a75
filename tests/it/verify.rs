//! Closing the loop: customers made sure of before their usage, and `verify`
//! comparing what the destination holds with the input.

use std::process::{Output, Stdio};

use serde_json::{Value, json};

use crate::support;
use crate::support::job::{Job, KEY_VAR};
use crate::support::server;
use crate::support::server::{Api, TestServer};

const KEY: &str = "sk_test_verify_key_31";

/// How the verify tests run a job.
trait VerifyJob {
    fn run(&self, args: &[&str]) -> Output;
}

impl VerifyJob for Job {
    fn run(&self, args: &[&str]) -> Output {
        let output = support::segrelay_process()
            .args(args)
            .arg("-c")
            .arg(&self.settings)
            .args(["--max-retry-wait", "10ms"])
            .arg(&self.input)
            .env(KEY_VAR, KEY)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        for text in [&output.stdout, &output.stderr] {
            assert!(
                !String::from_utf8_lossy(text).contains(KEY),
                "the key leaked"
            );
        }
        output
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const AMBERFLO: &str = "[destinations.amberflo]\n";
const ORB: &str = "[destinations.orb]\nexternal_customer_id_field = \"userId\"\n";

/// Usage over three days for three customers, and an identify that names one.
fn amberflo_input() -> String {
    let mut lines = vec![
        json!({"type":"identify","userId":"cust_b","messageId":"id-b","timestamp":"2026-11-20T00:00:00Z","traits":{"name":"Bee Ltd"}}),
    ];
    let mut n = 0;
    for day in ["2026-11-20", "2026-11-21", "2026-11-22"] {
        for customer in ["cust_a", "cust_b", "cust_c"] {
            for hour in ["01", "13"] {
                n += 1;
                lines.push(json!({"type":"track","event":"tokens","userId":customer,"messageId":format!("u-{n}"),
                    "timestamp":format!("{day}T{hour}:00:00Z"),"properties":{"value": n as f64 * 1.5}}));
            }
        }
    }
    lines.push(json!({"type":"page","name":"Home","userId":"cust_a","messageId":"p-1","timestamp":"2026-11-22T05:00:00Z"}));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn amberflo_full_cycle_ensure_send_verify_then_a_missing_day() {
    let server = TestServer::start(Api::Amberflo, KEY);
    // cust_c already exists: it is looked up, not created again.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .post(&format!("{}/customers", server.endpoint()))
        .header("X-API-KEY", KEY)
        .header("Content-Type", "application/json")
        .send(json!({"customerId":"cust_c","customerName":"Sea Corp"}).to_string())
        .unwrap();
    let job = Job::new(AMBERFLO, &server.endpoint(), &amberflo_input());

    let sent = job.run(&["send", "--ensure-customers", "--batch-size", "5"]);
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent));

    // Every customer was there before its first meter record arrived.
    let received = server.received();
    for customer in ["cust_a", "cust_b", "cust_c"] {
        let first_record = received
            .iter()
            .find(|r| {
                r.path == "/ingest" && r.text().contains(&format!("\"customerId\":\"{customer}\""))
            })
            .unwrap();
        let made = received
            .iter()
            .find(|r| {
                r.path.starts_with("/customers")
                    && (r.method == "POST" || r.method == "PUT")
                    && r.text().contains(customer)
            })
            .or_else(|| (customer == "cust_c").then(|| &received[0]))
            .unwrap();
        assert!(
            made.handled_before(first_record),
            "{customer} was not there before its first record"
        );
    }
    let requests = server.customer_requests();
    for customer in ["cust_a", "cust_b", "cust_c"] {
        let lookups = requests
            .iter()
            .filter(|(m, c)| m == "GET" && c == customer)
            .count();
        assert_eq!(lookups, 1, "{customer} looked up once: {requests:?}");
    }
    let posts = |customer: &str| {
        requests
            .iter()
            .filter(|(m, c)| m == "POST" && c == customer)
            .count()
    };
    assert_eq!(
        posts("cust_c"),
        1,
        "cust_c exists already: only this test created it"
    );
    assert_eq!(posts("cust_a"), 1, "cust_a is created once");
    // cust_b's identify (a PUT, sent by the sending thread) may or may not have
    // landed before the lookup: created by one or the other, never twice by segrelay.
    assert!(posts("cust_b") <= 1, "{requests:?}");
    let customers = server.customers();
    let name = |id: &str| {
        customers.iter().find(|c| c["customerId"] == id).unwrap()["customerName"].clone()
    };
    assert_eq!(name("cust_a"), "cust_a", "no name known: the id");
    assert_eq!(name("cust_b"), "Bee Ltd", "the identify's name");
    assert_eq!(name("cust_c"), "Sea Corp", "left as it was");

    let verified = job.run(&["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(
        text(&verified).contains("0 differences"),
        "{}",
        text(&verified)
    );

    // Amberflo loses a day of cust_b's tokens.
    let day = "2026-11-21T00:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    server.amberflo_forget_day("cust_b", "tokens", day);
    let verified = job.run(&["verify"]);
    assert_eq!(verified.status.code(), Some(1), "{}", text(&verified));
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        stdout.starts_with("customer"),
        "a table with a header: {stdout}"
    );
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    let cells: Vec<&str> = rows[0].split_whitespace().collect();
    // cust_b on 2026-11-21: events 9 and 10, values 13.5 and 15.
    assert_eq!(
        cells,
        ["cust_b", "tokens", "2026-11-21", "28.5", "0", "-28.5"]
    );

    let json_out = job.run(&["verify", "--json"]);
    assert_eq!(json_out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(report["differences"].as_array().unwrap().len(), 1);
    assert_eq!(report["differences"][0]["expected"], 28.5);
    assert_eq!(report["differences"][0]["found"], 0.0);
    // page meters are checked too: 3 customers x 3 days of tokens + 1 page total.
    assert_eq!(report["checked"], 10);
}

#[test]
fn orb_verify_finds_a_missing_key() {
    let server = TestServer::start(Api::Orb, KEY);
    let lines: String = (0..1203)
        .map(|i| {
            format!(
                "{}\n",
                json!({"type":"track","event":"call","userId":format!("c{}", i % 4),"messageId":format!("k-{i}"),"timestamp":"2026-11-23T08:00:00Z"})
            )
        })
        .collect();
    let job = Job::new(ORB, &server.endpoint(), &lines);
    let sent = job.run(&["send"]);
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent));
    let verified = job.run(&["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let searches: Vec<Value> = server
        .received()
        .iter()
        .filter(|r| r.path == "/v1/events/search")
        .map(|r| r.json())
        .collect();
    assert_eq!(searches.len(), 3, "500 keys a search");
    assert!(searches.iter().all(
        |s| s["event_ids"].as_array().unwrap().len() <= 500 && s["timeframe_start"].is_string()
    ));

    server.orb_forget("k-777");
    let verified = job.run(&["verify", "--json"]);
    assert_eq!(verified.status.code(), Some(1), "{}", text(&verified));
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["checked"], 1203);
    let missing = report["differences"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["idempotency_key"], "k-777");
    assert_eq!(missing[0]["line"], 778);
}

/// An input verify cannot read is not compared: counted in its report, and
/// the run ends as send's and check's do then (exit 1), with no difference.
#[test]
fn an_input_verify_cannot_read_is_counted() {
    let server = TestServer::start(Api::Orb, KEY);
    let lines: String = (0..3)
        .map(|i| {
            format!(
                "{}\n",
                json!({"type":"track","event":"call","userId":"c","messageId":format!("k-{i}"),"timestamp":"2026-11-23T08:00:00Z"})
            )
        })
        .collect();
    let job = Job::new(ORB, &server.endpoint(), &lines);
    let sent = job.run(&["send"]);
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent));
    let missing = job.path("missing.ndjson");
    let missing = missing.to_str().unwrap();
    let verified = job.run(&["verify", "--json", missing]);
    assert_eq!(verified.status.code(), Some(1), "{}", text(&verified));
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["checked"], 3, "{report}");
    assert_eq!(report["input_errors"], 1, "{report}");
    assert_eq!(report["differences"], json!([]), "{report}");
    let verified = job.run(&["verify", missing]);
    assert_eq!(verified.status.code(), Some(1), "{}", text(&verified));
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(said.contains("missing.ndjson: cannot read input"), "{said}");
    assert!(
        said.contains("3 checked, 0 differences; 1 input could not be read"),
        "{said}"
    );
}

#[test]
fn kable_cannot_be_verified_and_says_so() {
    let server = TestServer::start(Api::Kable, KEY);
    let job = Job::new(
        "[destinations.kable]\nkable_client_id = \"kci_test\"\n",
        &server.endpoint(),
        "",
    );
    let output = job.run(&["verify"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("Kable documents no API to read events back"),
        "{}",
        text(&output)
    );
    assert!(server.received().is_empty());
}

#[test]
fn kable_without_a_key_says_it_cannot_be_verified_rather_than_asking_for_the_key() {
    let job = Job::new(
        "[destinations.kable]\nkable_client_id = \"kci_test\"\n",
        "https://kable.example.test",
        "",
    );
    let output = support::segrelay_process()
        .args(["verify", "-c"])
        .arg(&job.settings)
        .arg(&job.input)
        .env_remove(KEY_VAR)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output);
    assert!(
        stderr.contains("Kable documents no API to read events back"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(KEY_VAR),
        "asks for the key first: {stderr}"
    );
}

#[test]
fn a_dry_run_shows_the_customer_lookups_and_a_resume_does_not_ask_again() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let job = Job::new(
        &format!("{AMBERFLO}ensure_customers = true\n"),
        &server.endpoint(),
        &amberflo_input(),
    );
    let dry = job.run(&["send", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let lines: Vec<Value> = String::from_utf8_lossy(&dry.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_ingest = lines
        .iter()
        .position(|l| l["url"].as_str().unwrap().ends_with("/ingest"))
        .unwrap();
    let lookups: Vec<&Value> = lines[..first_ingest]
        .iter()
        .filter(|l| l["method"] == "GET")
        .collect();
    assert!(lookups.iter().any(|l| {
        l["url"]
            .as_str()
            .unwrap()
            .contains("/customers?customerId=cust_a")
    }));
    assert!(
        lines
            .iter()
            .any(|l| l["method"] == "POST" && l["body"]["lifecycleStage"] == "ACTIVE")
    );
    assert!(server.received().is_empty());

    // Killed after its first batches, then run again: the resume asks for no customer twice.
    server.latency(std::time::Duration::from_millis(40));
    let checkpoint = job.path("checkpoint.json");
    let mut child = support::segrelay_process()
        .args(["send", "--batch-size", "5", "-q", "--checkpoint"])
        .arg(&checkpoint)
        .arg("-c")
        .arg(&job.settings)
        .arg(&job.input)
        .env(KEY_VAR, KEY)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server
        .received()
        .iter()
        .filter(|r| r.path == "/ingest" && r.status == 200)
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = job.run(&[
        "send",
        "--batch-size",
        "5",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let requests = server.customer_requests();
    for customer in ["cust_a", "cust_b", "cust_c"] {
        let lookups = requests
            .iter()
            .filter(|(m, c)| m == "GET" && c == customer)
            .count();
        assert_eq!(lookups, 1, "{customer}: {requests:?}");
    }
    assert_eq!(
        server.ingested().len(),
        19,
        "18 tokens and a page, each once"
    );
}

#[test]
fn a_customer_amberflo_refuses_has_its_records_rejected_whole() {
    let server = TestServer::start(Api::Amberflo, KEY);
    server.push_faults(vec![server::Fault::Status(400, "bad customer id".into())]);
    let line = json!({"type":"track","event":"tokens","userId":"bad id","messageId":"r-1","timestamp":"2026-11-22T01:00:00Z",
        "properties":{"value":2},"context":{"ip":"203.0.113.9","library":{"name":"analytics.js"}}});
    let job = Job::new(AMBERFLO, &server.endpoint(), &format!("{line}\n"));
    let rejects = job.path("rejects.ndjson");
    let output = job.run(&[
        "send",
        "--ensure-customers",
        "--rejects",
        rejects.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let rejected: Value =
        serde_json::from_str(std::fs::read_to_string(&rejects).unwrap().trim()).unwrap();
    assert_eq!(rejected["_segrelay"]["reason"], "customer not created");
    // The whole event, not only the keys the translation read.
    assert_eq!(rejected["context"], line["context"]);
    assert!(
        !server.received().iter().any(|r| r.path == "/ingest"),
        "its record was not sent"
    );
}
