//! Customer ids, sent for real to the loopback server: an event without the
//! configured customer id (a web archive's anonymous page views) is skipped,
//! counted and warned about, never billed to its `anonymousId` nor created as
//! an Amberflo customer unless the settings name that field; and Amberflo's
//! `identify = "replace"` looks a customer up before it writes it, creating
//! one Amberflo lacks with `POST`, as the SDKs' `add_or_update` does.

use serde_json::{Value, json};

use crate::support::job::{Job, Sent, destination_table};
use crate::support::server::{Api, TestServer};

const KEY: &str = "sk_test_customer_ids_key_11";

/// An hour ago: inside Orb's grace period.
fn recent() -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string()
}

/// A call with `ids` (`userId`, `anonymousId`, either absent).
fn call(kind: &str, message_id: &str, user: Option<&str>, anonymous: Option<&str>) -> Value {
    let mut event = json!({"type": kind, "messageId": message_id, "timestamp": recent()});
    match kind {
        "track" => event["event"] = json!("api_call"),
        "page" => event["name"] = json!("Pricing"),
        _ => event["traits"] = json!({"name": "Visitor"}),
    }
    if let Some(user) = user {
        event["userId"] = json!(user);
    }
    if let Some(anonymous) = anonymous {
        event["anonymousId"] = json!(anonymous);
    }
    event
}

/// Two signed-in calls and three anonymous ones; Orb and Kable take only
/// track, so every call is a track for them.
fn archive(api: Api) -> Vec<Value> {
    let (page, identify) = match api {
        Api::Amberflo => ("page", "identify"),
        _ => ("track", "track"),
    };
    vec![
        call("track", "t1", Some("cust_1"), Some("visitor-a")),
        call(page, "p1", None, Some("visitor-b")),
        call(page, "p2", Some(" "), Some("visitor-c")),
        call(identify, "i1", None, Some("visitor-b")),
        call("track", "t2", Some("cust_2"), None),
    ]
}

/// The destination's customer-id key and its table naming `anonymousId` after `userId`.
fn with_fallback(api: Api) -> (&'static str, String) {
    let list = r#"["userId", "anonymousId"]"#;
    let key = match api {
        Api::Amberflo => "customer_id_field",
        Api::Orb => "external_customer_id_field",
        Api::Kable => "client_id_field",
    };
    let table = destination_table(api).replacen("external_customer_id_field = \"userId\"\n", "", 1);
    let table = table.replacen('\n', &format!("\n{key} = {list}\n"), 1);
    (key, table)
}

fn send(job: &Job, extra: &[&str]) -> Sent {
    job.sent(KEY, extra)
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// The customer of each record the server took.
fn customers_billed(server: &TestServer) -> Vec<String> {
    server
        .ingested()
        .iter()
        .map(|record| {
            ["customerId", "external_customer_id", "clientId"]
                .iter()
                .find_map(|k| record[*k].as_str())
                .unwrap_or_else(|| panic!("a record without a customer: {record}"))
                .to_owned()
        })
        .collect()
}

/// Today Orb and Kable rejected each anonymous event (exit 1) and Amberflo
/// billed them to the visitor: every destination now skips them, counts them
/// under "no customer id", and says how to send them.
#[test]
fn anonymous_events_are_skipped_counted_and_warned_about_by_every_destination() {
    for api in [Api::Amberflo, Api::Orb, Api::Kable] {
        let server = TestServer::start(api, KEY);
        let job = Job::new(
            &destination_table(api),
            &server.endpoint(),
            &lines(&archive(api)),
        );
        let sent = send(&job, &[]);
        let s = &sent.summary;
        assert_eq!(sent.code, 0, "{api:?}: {}", sent.stderr);
        assert_eq!(customers_billed(&server), ["cust_1", "cust_2"], "{api:?}");
        assert_eq!((&s["sent"], &s["skipped"]), (&json!(2), &json!(3)), "{s}");
        assert_eq!(s["skipped_by_reason"]["no customer id"], 3, "{s}");
        assert_eq!(s["rejected"], 0, "{s}");
        let (key, _) = with_fallback(api);
        let warning = format!(
            "3 events had no customer id at userId and were skipped, not sent; to send anonymous \
             visitors' events under their anonymousId, set {key} = [\"userId\", \"anonymousId\"]"
        );
        assert!(
            sent.stderr.contains(&format!("warning: {warning}")),
            "{api:?}: {}",
            sent.stderr
        );
        assert!(
            s["warnings"].as_array().unwrap().contains(&json!(warning)),
            "{s}"
        );
        if api == Api::Amberflo {
            assert!(server.customers().is_empty(), "the identify is skipped");
        }
    }
}

/// Named after `userId` in the settings, `anonymousId` is the customer id:
/// every event is sent, the anonymous ones under the visitor's id.
#[test]
fn the_fallback_setting_sends_anonymous_events_under_their_anonymous_id() {
    for api in [Api::Amberflo, Api::Orb, Api::Kable] {
        let server = TestServer::start(api, KEY);
        let (_, table) = with_fallback(api);
        let job = Job::new(&table, &server.endpoint(), &lines(&archive(api)));
        let sent = send(&job, &[]);
        assert_eq!(sent.code, 0, "{api:?}: {}", sent.stderr);
        assert_eq!(sent.summary["skipped"], 0, "{}", sent.summary);
        assert!(
            !sent.stderr.contains("no customer id"),
            "{api:?}: {}",
            sent.stderr
        );
        let billed = customers_billed(&server);
        let expected: &[&str] = match api {
            // The identify writes a customer; it is no meter record.
            Api::Amberflo => &["cust_1", "visitor-b", "visitor-c", "cust_2"],
            _ => &["cust_1", "visitor-b", "visitor-c", "visitor-b", "cust_2"],
        };
        assert_eq!(billed, expected, "{api:?}");
    }
}

/// `--ensure-customers` creates a customer for each signed-in id only: a web
/// archive's visitors are no customers. With the fallback named, they are.
#[test]
fn ensure_customers_creates_no_customer_from_an_anonymous_id_unless_the_settings_say_so() {
    let ids = |server: &TestServer| -> Vec<String> {
        let mut ids: Vec<String> = server
            .customer_requests()
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        ids.dedup();
        ids
    };
    let server = TestServer::start(Api::Amberflo, KEY);
    let events = lines(&archive(Api::Amberflo));
    let job = Job::new(
        &destination_table(Api::Amberflo),
        &server.endpoint(),
        &events,
    );
    let sent = send(&job, &["--ensure-customers"]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert_eq!(
        ids(&server),
        ["cust_1", "cust_2"],
        "no visitor is looked up"
    );
    let created: Vec<Value> = server
        .customers()
        .iter()
        .map(|c| c["customerId"].clone())
        .collect();
    assert_eq!(created, [json!("cust_1"), json!("cust_2")]);

    let server = TestServer::start(Api::Amberflo, KEY);
    let (_, table) = with_fallback(Api::Amberflo);
    let job = Job::new(&table, &server.endpoint(), &events);
    let sent = send(&job, &["--ensure-customers"]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert_eq!(
        ids(&server),
        ["cust_1", "visitor-b", "visitor-c", "cust_2"],
        "named in the settings, visitors are customers"
    );
    assert_eq!(server.customers().len(), 4);
}

/// `identify = "replace"`: a customer Amberflo lacks is looked up, then
/// created (`POST`); one it holds is looked up, then replaced (`PUT`); a
/// customer met again in the run is not looked up again.
#[test]
fn identify_replace_looks_up_then_creates_or_replaces() {
    let server = TestServer::start(Api::Amberflo, KEY);
    server.amberflo_seed_customer(json!({
        "customerId": "known", "customerName": "Known Co", "lifecycleStage": "ACTIVE",
        "traits": {"plan": "basic"},
    }));
    let identify = |id: &str, message_id: &str, traits: Value| {
        let mut event = call("identify", message_id, Some(id), None);
        event["traits"] = traits;
        event
    };
    let events = [
        identify("new", "i1", json!({"name": "New Co", "plan": "pro"})),
        identify("known", "i2", json!({"seats": "3"})),
        identify("new", "i3", json!({"name": "New Co", "plan": "team"})),
    ];
    let table = "[destinations.amberflo]\nidentify = \"replace\"\n";
    let job = Job::new(table, &server.endpoint(), &lines(&events));
    let sent = send(&job, &[]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let requests: Vec<String> = server
        .customer_requests()
        .into_iter()
        .map(|(method, id)| format!("{method} {id}"))
        .collect();
    assert_eq!(
        requests,
        ["GET new", "POST new", "GET known", "PUT known", "PUT new"]
    );
    assert_eq!(sent.summary["sent"], 3, "{}", sent.summary);
    let record = |id: &str| {
        server
            .customers()
            .into_iter()
            .find(|c| c["customerId"] == id)
            .unwrap()
    };
    assert_eq!(
        record("new"),
        json!({"customerId": "new", "customerName": "New Co", "traits": {"plan": "team"}})
    );
    // Replaced whole: the event's fields only, as Segment's Amberflo destination writes.
    assert_eq!(
        record("known"),
        json!({"customerId": "known", "customerName": "known", "traits": {"seats": "3"}})
    );

    // The dry run shows what a send does, and says it cannot look up.
    let output = job
        .send_command(KEY)
        .arg("--dry-run")
        .arg(&job.input)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let shown: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let request: Value = serde_json::from_str(line).unwrap();
            let url = request["url"].as_str().unwrap();
            format!(
                "{} {}",
                request["method"].as_str().unwrap(),
                url.rsplit_once('/').unwrap().1
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "GET customers?customerId=new",
            "POST customers",
            "GET customers?customerId=known",
            "POST customers",
            "PUT customers"
        ]
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("customers are not looked up without a real send")
            && stderr.contains(
                "a real send PUTs the event's record instead when Amberflo holds the customer"
            ),
        "{stderr}"
    );
}

/// The customer-id field decides who is billed: a checkpoint records it, and
/// a resume under another is refused, naming both.
#[test]
fn a_checkpoint_records_the_customer_id_field() {
    let server = TestServer::start(Api::Amberflo, KEY);
    let events = lines(&archive(Api::Amberflo));
    let job = Job::new(
        &destination_table(Api::Amberflo),
        &server.endpoint(),
        &events,
    );
    let checkpoint = job.path("checkpoint.json");
    let checkpoint = checkpoint.to_str().unwrap();
    let first = send(&job, &["--checkpoint", checkpoint, "--limit", "2"]);
    assert_eq!(first.code, 0, "{}", first.stderr);

    let (_, table) = with_fallback(Api::Amberflo);
    let changed = Job::new(&table, &server.endpoint(), "");
    std::fs::copy(&changed.settings, &job.settings).unwrap();
    let resumed = send(&job, &["--checkpoint", checkpoint]);
    assert_eq!(resumed.code, 2, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains(
            "setting customer_id_field: the checkpoint's run sent with customer_id_field unset \
             (default: userId); this run sends with customer_id_field = [\"userId\", \"anonymousId\"]"
        ),
        "{}",
        resumed.stderr
    );
}
