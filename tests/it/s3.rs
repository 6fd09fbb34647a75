//! `s3://bucket/prefix` inputs, against a real S3 server on loopback
//! (`support::s3`: s3s over s3s-fs, SigV4 checked): Segment's layout walked
//! and pruned as a folder is, objects streamed (gzip or plain), faults
//! (SlowDown, a connection dropped mid-object), checkpoints by ETag, and
//! S3's refusals in plain words.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support;
use crate::support::s3::{ACCESS_KEY, Fault, S3Server, SECRET_KEY};
use crate::support::server::{self, Api, KABLE_CLIENT_ID, TestServer};

const KEY: &str = "sk_test_s3_input_key_77";

fn segment_logs() -> PathBuf {
    support::fixtures().join("segment-archive/segment-logs")
}

/// The archive fixture uploaded to bucket `archive` under `segment-logs/`.
fn archive_server() -> S3Server {
    let s3 = S3Server::start();
    s3.bucket("archive");
    s3.upload("archive", "segment-logs/", &segment_logs());
    s3
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `count` track events keyed `{prefix}-{i}`, one per line.
fn events(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{{\"type\":\"track\",\"event\":\"api_call\",\"userId\":\"u{}\",\"messageId\":\"{prefix}-{i}\",\
                 \"timestamp\":\"2026-03-01T00:00:00Z\",\"properties\":{{\"value\":{i},\"padding\":\"{}\"}}}}\n",
                i % 7,
                "x".repeat(40)
            )
        })
        .collect()
}

fn kable_settings(dir: &Path, server: &TestServer) -> PathBuf {
    support::write(
        dir,
        "segrelay.toml",
        format!(
            "[destinations.kable]\napi_key = \"${{KABLE_API_KEY}}\"\nendpoint = \"{}\"\n\
             kable_client_id = \"{KABLE_CLIENT_ID}\"\nclient_id_field = \"userId\"\n",
            server.endpoint()
        ),
    )
}

fn run(mut cmd: assert_cmd::Command) -> support::Run {
    let output = cmd.env("KABLE_API_KEY", KEY).output().unwrap();
    let run = support::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for secret in [SECRET_KEY, KEY] {
        assert!(
            !run.stderr.contains(secret),
            "a secret leaked: {}",
            run.stderr
        );
        assert!(
            !run.stdout.contains(secret),
            "a secret leaked: {}",
            run.stdout
        );
    }
    assert!(!run.stderr.contains("X-Amz-Signature"), "{}", run.stderr);
    run
}

/// A dry run's records (one JSON value per line of each request) of the
/// archive fixture, from `input`.
fn check(
    cmd: assert_cmd::Command,
    dir: &Path,
    extra: &[&str],
    input: &str,
) -> (support::Run, Value) {
    let summary = dir.join("summary.json");
    let mut cmd = cmd;
    cmd.args(["send", "--dry-run", "-d", "kable", "-c"])
        .arg(support::fixtures().join("segment-archive/segrelay.toml"))
        .arg("--summary")
        .arg(&summary)
        .args(extra)
        .arg(input);
    let run = run(cmd);
    let summary = match std::fs::metadata(&summary).is_ok_and(|m| m.len() > 0) {
        true => support::summary(&summary),
        false => Value::Null,
    };
    (run, summary)
}

fn keys_of(gets: &[(String, Option<String>)]) -> Vec<String> {
    gets.iter().map(|(key, _)| key.clone()).collect()
}

#[test]
fn the_archive_read_from_s3_is_the_archive_read_from_disk() {
    let s3 = archive_server();
    let dir = tempfile::tempdir().unwrap();
    let local = segment_logs();
    let (from_disk, disk) = check(
        support::s3::aws_free(support::segrelay()),
        dir.path(),
        &[],
        local.to_str().unwrap(),
    );
    from_disk.expect_code(0);
    let (from_s3, remote) = check(s3.segrelay(), dir.path(), &[], "s3://archive/segment-logs/");
    from_s3.expect_code(0);
    // The same requests in the same order; only the events' sources are named otherwise.
    let local_label = local.to_str().unwrap();
    assert_eq!(
        from_s3.stdout,
        from_disk
            .stdout
            .replace(local_label, "s3://archive/segment-logs"),
    );
    for field in [
        "read",
        "sent",
        "skipped",
        "rejected",
        "failed",
        "skipped_by_reason",
        "folders",
    ] {
        assert_eq!(remote[field], disk[field], "{field}");
    }
    assert_eq!(remote["folders"]["day_folders_read"], 7);
    assert_eq!(remote["folders"]["files_ignored"], 1, "dummy-object.txt");
    let (lists, gets) = s3.take_log();
    let mut fetched = keys_of(&gets);
    let mut listed_objects: Vec<String> = walk(&local)
        .into_iter()
        .filter(|key| !key.ends_with("dummy-object.txt"))
        .map(|key| format!("segment-logs/{key}"))
        .collect();
    listed_objects.sort();
    // Fetched ahead on threads, so in any order; read in key order (the
    // requests above are the local run's, in its order).
    fetched.sort();
    assert_eq!(fetched, listed_objects, "each object fetched once");
    fetched.dedup();
    assert_eq!(fetched.len(), 11);
    // One listing per prefix: segment-logs/, two sources, seven day prefixes.
    assert_eq!(lists.len(), 1 + 2 + 7, "{lists:?}");
    assert_eq!(remote["s3"]["objects_listed"], 11);
    assert_eq!(remote["s3"]["objects_read"], 11);
    assert_eq!(remote["s3"]["get_requests"], 11);
    assert_eq!(remote["s3"]["list_requests"], 10);
    let stored: u64 = walk(&local)
        .iter()
        .filter(|key| !key.ends_with("dummy-object.txt"))
        .map(|key| std::fs::metadata(local.join(key)).unwrap().len())
        .sum();
    assert_eq!(remote["s3"]["bytes_read"], stored);
    assert!(
        from_s3.stderr.contains("folders: 11 files read, 1 ignored"),
        "{}",
        from_s3.stderr
    );
}

/// The files under `dir`, relative, `/`-separated.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            out.extend(
                walk(&path)
                    .into_iter()
                    .map(|inner| format!("{name}/{inner}")),
            );
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn day_prefixes_pruned_by_the_bounds_are_never_listed_or_fetched() {
    let s3 = archive_server();
    let dir = tempfile::tempdir().unwrap();
    // 2026-03-05 on: the day prefixes of March 2nd and 3rd are received more
    // than a day before; --received-until 2026-03-08 leaves out March 9th.
    let (run, summary) = check(
        s3.segrelay(),
        dir.path(),
        &["--since", "2026-03-05", "--received-until", "2026-03-08"],
        "s3://archive/segment-logs",
    );
    run.expect_code(0);
    let (lists, gets) = s3.take_log();
    let read_days = ["1772668800000"];
    for (key, _) in &gets {
        assert!(
            read_days.iter().any(|day| key.contains(day)),
            "{key} fetched"
        );
    }
    assert_eq!(gets.len(), 3, "{gets:?}");
    // The prefix named without its `/`: one look at it, with the delimiter,
    // then the walk.
    assert_eq!(lists[..2], ["segment-logs", "segment-logs/"], "{lists:?}");
    for pruned in ["1772409600000", "1772496000000", "1773014400000"] {
        assert!(
            !lists.iter().any(|p| p.contains(pruned)),
            "{pruned} listed: {lists:?}"
        );
    }
    assert_eq!(summary["folders"]["day_folders_read"], 2);
    assert_eq!(summary["folders"]["day_folders_skipped"], 5);
    assert_eq!(summary["folders"]["day_folders_skipped_by"]["--since"], 4);
    assert_eq!(
        summary["folders"]["day_folders_skipped_by"]["--received-until"],
        1
    );
}

#[test]
fn gzip_and_plain_objects_are_told_by_their_bytes_and_local_files_mix_in() {
    let s3 = S3Server::start();
    s3.bucket("logs");
    // A `.gz` served decompressed, and gzip without the suffix.
    s3.put("logs", "plain/a.gz", events("a", 3).as_bytes());
    s3.put("logs", "plain/b.ndjson", &gzip(events("b", 2).as_bytes()));
    let dir = tempfile::tempdir().unwrap();
    let local = support::write(dir.path(), "c.ndjson", events("c", 1));
    let server = TestServer::start(Api::Kable, KEY);
    let settings = kable_settings(dir.path(), &server);
    let mut cmd = s3.segrelay();
    cmd.arg("send")
        .arg("-c")
        .arg(&settings)
        .args(["-d", "kable", "s3://logs/plain/"])
        .arg(&local)
        .arg("s3://logs/plain/a.gz");
    let run = run(cmd);
    run.expect_code(0);
    let delivered = server.deliveries();
    let want: BTreeMap<String, usize> = ["a-0", "a-1", "a-2", "b-0", "b-1", "c-0"]
        .iter()
        .map(|k| (k.to_string(), 1))
        .collect();
    // a.gz named twice: its events are sent once, the second copy is a duplicate key.
    assert_eq!(delivered, want);
    assert!(run.stderr.contains("read 9 events"), "{}", run.stderr);
}

#[test]
fn a_connection_dropped_mid_object_resumes_from_the_byte_reached() {
    let s3 = S3Server::start();
    s3.bucket("logs");
    let plain = events("p", 400);
    let zipped = gzip(events("z", 400).as_bytes());
    s3.put("logs", "in/1-plain.ndjson", plain.as_bytes());
    s3.put("logs", "in/2-zipped.gz", &zipped);
    s3.fault_next_get_of("in/1-plain.ndjson", Fault::DropAfter(plain.len() / 3));
    s3.fault_next_get_of("in/2-zipped.gz", Fault::DropAfter(zipped.len() / 2));
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Api::Kable, KEY);
    let settings = kable_settings(dir.path(), &server);
    let summary = dir.path().join("summary.json");
    let mut cmd = s3.segrelay();
    cmd.arg("send")
        .arg("-c")
        .arg(&settings)
        .args(["-d", "kable", "--summary"])
        .arg(&summary)
        .arg("s3://logs/in/");
    run(cmd).expect_code(0);
    let delivered = server.deliveries();
    assert_eq!(delivered.len(), 800);
    assert!(delivered.values().all(|n| *n == 1), "a key sent twice");
    let (_, gets) = s3.take_log();
    let ranges = |key: &str| -> Vec<Option<String>> {
        gets.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let from = |n: usize| Some(format!("bytes={n}-"));
    assert_eq!(ranges("in/1-plain.ndjson"), [None, from(plain.len() / 3)]);
    assert_eq!(ranges("in/2-zipped.gz"), [None, from(zipped.len() / 2)]);
    let summary = support::summary(&summary);
    assert_eq!(summary["s3"]["resumes"], 2);
    assert_eq!(
        summary["s3"]["bytes_read"],
        (plain.len() + zipped.len()) as u64
    );
}

#[test]
fn slow_down_answers_are_retried() {
    let s3 = archive_server();
    s3.fault_next_list(Fault::SlowDown);
    s3.fault_next_list(Fault::SlowDown);
    s3.fault_next_get(Fault::SlowDown);
    let dir = tempfile::tempdir().unwrap();
    let (run, summary) = check(s3.segrelay(), dir.path(), &[], "s3://archive/segment-logs/");
    run.expect_code(0);
    assert_eq!(summary["s3"]["retries"], 3);
    assert_eq!(summary["s3"]["objects_read"], 11);
    assert_eq!(summary["failed"], 0);
}

#[test]
fn a_resume_goes_on_from_the_checkpoint_and_a_changed_object_is_refused() {
    let s3 = S3Server::start();
    s3.bucket("logs");
    for (name, prefix) in [("a", "a"), ("b", "b"), ("c", "c")] {
        s3.put(
            "logs",
            &format!("in/{name}.ndjson"),
            events(prefix, 10).as_bytes(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Api::Kable, KEY);
    let settings = kable_settings(dir.path(), &server);
    let checkpoint = dir.path().join("checkpoint.json");
    let summary = dir.path().join("summary.json");
    let send = || {
        let mut cmd = s3.segrelay();
        cmd.arg("send")
            .arg("-c")
            .arg(&settings)
            .args([
                "-d",
                "kable",
                "--batch-size",
                "5",
                "-j",
                "1",
                "--checkpoint",
            ])
            .arg(&checkpoint)
            .arg("--summary")
            .arg(&summary)
            .arg("s3://logs/in/");
        cmd
    };
    // The key refused at the fifth request: the run stops in c.ndjson.
    server.fault_on_request(5, server::Fault::Status(401, String::new()));
    let first = run(send());
    first.expect_code(3);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    let input = &saved["inputs"][0];
    assert_eq!(input["source"], "s3://logs/in/a.ndjson");
    assert_eq!(input["done"], true, "{saved}");
    assert!(
        input["etag"].as_str().is_some_and(|e| !e.is_empty()),
        "{saved}"
    );
    s3.take_log();

    run(send()).expect_code(0);
    let delivered = server.deliveries();
    assert_eq!(delivered.len(), 30);
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    let (_, gets) = s3.take_log();
    assert!(
        !keys_of(&gets).contains(&"in/a.ndjson".to_owned()),
        "a settled object is not fetched again: {gets:?}"
    );
    assert_eq!(support::summary(&summary)["s3"]["objects_skipped"], 1);

    // b.ndjson replaced: same key, another ETag.
    s3.put("logs", "in/b.ndjson", events("B", 10).as_bytes());
    let refused = run(send());
    refused.expect_code(2);
    assert!(
        refused
            .stderr
            .contains("s3://logs/in/b.ndjson changed since the checkpoint was written"),
        "{}",
        refused.stderr
    );
}

#[test]
fn refusals_are_said_plainly_before_anything_is_sent() {
    let s3 = archive_server();
    let dir = tempfile::tempdir().unwrap();
    let expect = |cmd: assert_cmd::Command, input: &str, words: &str| {
        let (run, _) = check(cmd, dir.path(), &[], input);
        run.expect_code(2);
        assert!(run.stderr.contains(words), "want {words:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "nothing written: {}", run.stdout);
        run
    };
    s3.fault_next_list(Fault::Denied);
    let denied = expect(s3.segrelay(), "s3://archive/segment-logs/", "access denied");
    assert!(
        denied
            .stderr
            .contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{}",
        denied.stderr
    );
    expect(
        s3.segrelay(),
        "s3://missing-bucket/x/",
        "no such bucket missing-bucket",
    );
    let mut wrong = s3.segrelay();
    wrong.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    expect(
        wrong,
        "s3://archive/segment-logs/",
        "S3 refused the credentials",
    );
    let mut none = support::s3::aws_free(support::segrelay());
    none.env("AWS_ENDPOINT_URL", &s3.endpoint);
    let nothing = expect(
        none,
        "s3://archive/segment-logs/",
        "no AWS credentials found",
    );
    for looked in [
        "AWS_ACCESS_KEY_ID",
        "profile default in",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "--no-sign-request",
    ] {
        assert!(
            nothing.stderr.contains(looked),
            "{looked}: {}",
            nothing.stderr
        );
    }
    // A signed server refuses anonymous requests.
    let mut anonymous = support::s3::aws_free(support::segrelay());
    anonymous.env("AWS_ENDPOINT_URL", &s3.endpoint);
    let (run, _) = check(
        anonymous,
        dir.path(),
        &["--no-sign-request"],
        "s3://archive/segment-logs/",
    );
    run.expect_code(2);
    assert!(run.stderr.contains("access denied"), "{}", run.stderr);
    assert!(run.stderr.contains("--no-sign-request"), "{}", run.stderr);
}

#[test]
fn a_public_bucket_is_read_without_credentials() {
    let s3 = S3Server::public();
    s3.bucket("public");
    s3.upload("public", "segment-logs/", &segment_logs());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = support::s3::aws_free(support::segrelay());
    cmd.env("AWS_ENDPOINT_URL_S3", &s3.endpoint)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let (run, summary) = check(
        cmd,
        dir.path(),
        &["--no-sign-request"],
        "s3://public/segment-logs/",
    );
    run.expect_code(0);
    assert_eq!(summary["s3"]["objects_read"], 11);
}

#[test]
fn credentials_come_from_the_profile_files() {
    let s3 = archive_server();
    let dir = tempfile::tempdir().unwrap();
    let credentials = support::write(
        dir.path(),
        "credentials",
        format!(
            "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n\
             [archive]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    );
    let config = support::write(
        dir.path(),
        "config",
        format!(
            "[profile archive]\nregion = eu-west-3\nendpoint_url = {}\n",
            s3.endpoint
        ),
    );
    let mut cmd = support::s3::aws_free(support::segrelay());
    cmd.env("AWS_PROFILE", "archive")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", &config);
    let (run, summary) = check(cmd, dir.path(), &["-v"], "s3://archive/segment-logs/");
    run.expect_code(0);
    assert_eq!(summary["s3"]["objects_read"], 11);
}

#[test]
fn a_bucket_in_another_region_is_followed_or_named() {
    let s3 = archive_server();
    let dir = tempfile::tempdir().unwrap();
    s3.fault_next_list(Fault::WrongRegion(Some("eu-west-3")));
    let (run, summary) = check(s3.segrelay(), dir.path(), &[], "s3://archive/segment-logs/");
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("s3://archive is in region eu-west-3, not us-east-1: asking there"),
        "{}",
        run.stderr
    );
    assert_eq!(summary["s3"]["objects_read"], 11);
    // Without the header, the region cannot be followed: said plainly.
    s3.fault_next_list(Fault::WrongRegion(None));
    let mut cmd = s3.segrelay();
    cmd.env("AWS_REGION", "ap-east-1");
    let (run, _) = check(cmd, dir.path(), &[], "s3://archive/segment-logs/");
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("wrong region: the bucket is not in ap-east-1"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_object_changed_or_refused_while_read_is_an_input_error() {
    let s3 = S3Server::start();
    s3.bucket("logs");
    for name in ["a", "b", "c"] {
        s3.put(
            "logs",
            &format!("in/{name}.ndjson"),
            events(name, 3).as_bytes(),
        );
    }
    // a.ndjson replaced after the listing: its ETag is not the one listed.
    s3.fault_next_get_of("in/a.ndjson", Fault::Replace(events("A", 5).into_bytes()));
    s3.fault_next_get_of("in/b.ndjson", Fault::Denied);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Api::Kable, KEY);
    let settings = kable_settings(dir.path(), &server);
    let summary = dir.path().join("summary.json");
    let mut cmd = s3.segrelay();
    cmd.arg("send")
        .arg("-c")
        .arg(&settings)
        .args(["-d", "kable", "--summary"])
        .arg(&summary)
        .arg("s3://logs/in/");
    let run = run(cmd);
    run.expect_code(1);
    assert!(
        run.stderr.contains(
            "s3://logs/in/a.ndjson: cannot read input: GetObject: the object changed while it was being read"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("s3://logs/in/b.ndjson: cannot read input: GetObject: access denied"),
        "{}",
        run.stderr
    );
    let keys: Vec<String> = server.deliveries().into_keys().collect();
    assert_eq!(keys, ["c-0", "c-1", "c-2"], "nothing of the new a.ndjson");
    let summary = support::summary(&summary);
    assert_eq!(summary["input_errors"], 2);
    assert_eq!(summary["s3"]["objects_read"], 1);
}

#[test]
fn ctrl_c_stops_a_read_from_s3_and_the_same_command_resumes() {
    let s3 = S3Server::start();
    s3.bucket("logs");
    for name in ["a", "b", "c", "d"] {
        s3.put(
            "logs",
            &format!("in/{name}.ndjson"),
            events(name, 100).as_bytes(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Api::Kable, KEY);
    server.latency(std::time::Duration::from_millis(20));
    let settings = kable_settings(dir.path(), &server);
    let checkpoint = dir.path().join("checkpoint.json");
    let summary = dir.path().join("summary.json");
    let send = || {
        let mut cmd = s3.segrelay_process();
        cmd.arg("send")
            .arg("-c")
            .arg(&settings)
            .args(["-d", "kable", "--batch-size", "10", "--checkpoint"])
            .arg(&checkpoint)
            .arg("--summary")
            .arg(&summary)
            .arg("s3://logs/in/")
            .env("KABLE_API_KEY", KEY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let child = send().spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.received().len() < 5 {
        assert!(std::time::Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stopped = support::summary(&summary);
    assert_eq!(stopped["interrupted"], true);
    assert!(stopped["sent"].as_u64().unwrap() < 400, "{stopped}");

    let output = send().output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let delivered = server.deliveries();
    assert_eq!(delivered.len(), 400);
    assert!(delivered.values().all(|n| *n == 1), "a key sent twice");
}

mod renewal;
