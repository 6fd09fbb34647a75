//! The API key never shows: every scenario runs with a distinctive key (from the
//! environment, or written in the settings file), and every output is searched for
//! it: standard output and error, the rejects file, the summary, the checkpoint and
//! the dry-run output file. Only `--show-secrets` in a dry run writes it. Also: a
//! settings file holding a key must not be readable by others, and a plain-http
//! endpoint off this machine needs `allow_insecure`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::job::Job;
use crate::support::server;
use crate::support::server::{Api, Fault, TestServer};
use crate::support::{self, Run};

/// The key: distinctive, so that any copy of it is found.
const SECRET: &str = "sk_live_SEGRELAY_S3CR3T_5a7c9e1b3d";
/// The environment variable the settings read it from.
const VAR: &str = "SEGRELAY_SECRETS_KEY";

/// How the settings hold the key.
#[derive(Clone, Copy, Debug, PartialEq)]
enum KeyIn {
    /// `api_key = "${SEGRELAY_SECRETS_KEY}"`, the variable set.
    Env,
    /// `api_key = "sk_live_..."` in a file of mode 0600.
    File,
}

fn table(api: Api, key: KeyIn, endpoint: Option<&str>) -> String {
    let api_key = match key {
        KeyIn::Env => format!("${{{VAR}}}"),
        KeyIn::File => SECRET.to_owned(),
    };
    let endpoint = endpoint
        .map(|e| format!("endpoint = \"{e}\"\n"))
        .unwrap_or_default();
    match api {
        Api::Amberflo => format!("[destinations.amberflo]\napi_key = \"{api_key}\"\n{endpoint}"),
        Api::Orb => format!(
            "[destinations.orb]\napi_key = \"{api_key}\"\n{endpoint}external_customer_id_field = \"userId\"\n"
        ),
        Api::Kable => format!(
            "[destinations.kable]\napi_key = \"{api_key}\"\n{endpoint}kable_client_id = \"{}\"\n",
            server::KABLE_CLIENT_ID
        ),
    }
}

/// Events every destination takes, an identify for Amberflo, and a bad line for the rejects file.
fn input_lines() -> String {
    let mut lines: Vec<String> = (0..6)
        .map(|i| {
            json!({
                "type": "track", "event": "api_call", "userId": format!("cust_{i}"),
                "messageId": format!("s-{i}"), "timestamp": "2026-11-23T10:00:00.000Z",
                "properties": {"value": i},
            })
            .to_string()
        })
        .collect();
    lines.push(
        json!({"type": "identify", "userId": "cust_1", "messageId": "s-id",
               "timestamp": "2026-11-23T10:00:00Z", "traits": {"name": "Ada"}})
        .to_string(),
    );
    lines.push("{not json".to_owned());
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn job_with(settings_text: &str) -> Job {
    let job = Job::with_settings(settings_text, &input_lines());
    std::fs::set_permissions(&job.settings, std::fs::Permissions::from_mode(0o600)).unwrap();
    job
}

fn job(api: Api, key: KeyIn, endpoint: Option<&str>) -> Job {
    job_with(&table(api, key, endpoint))
}

/// Runs segrelay in the job's directory with the key in the environment.
fn run(job: &Job, args: &[&str]) -> Run {
    let ran = support::run(
        support::segrelay()
            .current_dir(job.dir.path())
            .args(args)
            .env(VAR, SECRET)
            .timeout(Duration::from_secs(90)),
    );
    assert!(
        !ran.stderr.contains("panicked"),
        "segrelay panicked:\n{}",
        ran.stderr
    );
    ran
}

/// Every file the run left in the job's directory (the settings and input aside).
fn written_files(job: &Job) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(job.dir.path(), &mut paths);
    paths
        .into_iter()
        .filter(|p| *p != job.settings && *p != job.input)
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The key is nowhere: not on stdout, not on stderr, not in any file written.
fn assert_hidden(job: &Job, ran: &Run, context: &str) {
    assert!(
        !ran.stdout.contains(SECRET),
        "{context}: the key is on standard output:\n{}",
        ran.stdout
    );
    assert!(
        !ran.stderr.contains(SECRET),
        "{context}: the key is on standard error:\n{}",
        ran.stderr
    );
    for (path, bytes) in written_files(job) {
        assert!(
            !contains(&bytes, SECRET),
            "{context}: the key is in {}:\n{}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// Removes what a run wrote, so that the next run's files are its own.
fn clean(job: &Job) {
    for (path, _) in written_files(job) {
        std::fs::remove_file(path).unwrap();
    }
}

const ALL_OUTPUTS: [&str; 4] = ["--summary", "summary.json", "--rejects", "rejects.ndjson"];

// ---------------------------------------------------------------------------------------------
// Dry runs and check

#[test]
fn dry_runs_in_every_format_hide_the_key() {
    for api in Api::ALL {
        for key in [KeyIn::Env, KeyIn::File] {
            let job = job(api, key, None);
            for format in ["ndjson", "curl", "http"] {
                for to_file in [false, true] {
                    for verbose in [false, true] {
                        let context = format!(
                            "{} dry run, {format}, key in {key:?}, to a file: {to_file}, -v: {verbose}",
                            api.name()
                        );
                        let mut args = vec!["send", "--dry-run", "--format", format];
                        args.extend(ALL_OUTPUTS);
                        if to_file {
                            args.extend(["-o", "requests.out"]);
                        }
                        if verbose {
                            args.push("-v");
                        }
                        args.push("events.ndjson");
                        let ran = run(&job, &args);
                        assert_eq!(ran.code, 1, "{context}: the bad line\n{}", ran.stderr);
                        let output = if to_file {
                            std::fs::read_to_string(job.dir.path().join("requests.out")).unwrap()
                        } else {
                            ran.stdout.clone()
                        };
                        assert!(!output.is_empty(), "{context}: nothing written");
                        match (format, key) {
                            ("curl", KeyIn::Env) => assert!(
                                output.contains(&format!("${VAR}")),
                                "{context}: the curl command reads the variable\n{output}"
                            ),
                            _ => assert!(output.contains("***"), "{context}\n{output}"),
                        }
                        assert_hidden(&job, &ran, &context);
                        clean(&job);
                    }
                }
            }
            let ran = run(
                &job,
                &["check", "--summary", "summary.json", "-v", "events.ndjson"],
            );
            assert_eq!(ran.code, 1, "{}", ran.stderr);
            assert_hidden(&job, &ran, &format!("{} check, key in {key:?}", api.name()));
            clean(&job);
        }
    }
}

#[test]
fn show_secrets_writes_the_key_in_the_dry_run_output_only() {
    for api in Api::ALL {
        for key in [KeyIn::Env, KeyIn::File] {
            let job = job(api, key, None);
            for format in ["ndjson", "curl", "http"] {
                let context = format!("{} --show-secrets, {format}, key in {key:?}", api.name());
                let mut args = vec!["send", "--dry-run", "--show-secrets", "--format", format];
                args.extend(ALL_OUTPUTS);
                args.extend(["-v", "events.ndjson"]);
                let ran = run(&job, &args);
                assert!(
                    ran.stdout.contains(SECRET),
                    "{context}: the key is shown\n{}",
                    ran.stdout
                );
                assert!(!ran.stderr.contains(SECRET), "{context}: on standard error");
                for (path, bytes) in written_files(&job) {
                    assert!(
                        !contains(&bytes, SECRET),
                        "{context}: in {}",
                        path.display()
                    );
                }
                clean(&job);
                // To a file: the file holds it, nothing else does.
                let mut args = vec!["send", "--dry-run", "--show-secrets", "--format", format];
                args.extend(ALL_OUTPUTS);
                args.extend(["-o", "requests.out", "events.ndjson"]);
                let ran = run(&job, &args);
                let written = std::fs::read_to_string(job.dir.path().join("requests.out")).unwrap();
                assert!(written.contains(SECRET), "{context}: -o holds the key");
                assert!(!ran.stdout.contains(SECRET) && !ran.stderr.contains(SECRET));
                for (path, bytes) in written_files(&job) {
                    if !path.ends_with("requests.out") {
                        assert!(
                            !contains(&bytes, SECRET),
                            "{context}: in {}",
                            path.display()
                        );
                    }
                }
                clean(&job);
            }
            // --show-secrets means nothing to a real send's messages.
            let ran = run(
                &job,
                &["check", "-v", "--summary", "summary.json", "events.ndjson"],
            );
            assert_hidden(&job, &ran, "check");
            clean(&job);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sends, with every fault, and with servers that quote the key back

/// Faults for the first request; the server answers normally afterwards.
fn faults(api: Api) -> Vec<(&'static str, Vec<Fault>)> {
    let echo = format!("request from key {SECRET} refused; Authorization: Bearer {SECRET}");
    let mut list = vec![
        ("no fault", vec![]),
        (
            "500 quoting the key",
            vec![Fault::Status(500, echo.clone())],
        ),
        (
            "503 with Retry-After",
            vec![Fault::RetryAfter(503, "0".into())],
        ),
        (
            "429 with Retry-After",
            vec![Fault::RetryAfter(429, "0".into())],
        ),
        ("a closed connection", vec![Fault::Close]),
        (
            "a slow answer",
            vec![Fault::Delay(Duration::from_millis(600))],
        ),
        (
            "401 quoting the key",
            vec![Fault::Status(401, echo.clone())],
        ),
        (
            "403 quoting the key",
            vec![Fault::Status(403, json!({"message": echo}).to_string())],
        ),
        (
            "400 quoting the key, every time",
            vec![Fault::Status(400, json!({"error": echo}).to_string()); 40],
        ),
        (
            "a redirect whose location holds the key",
            vec![Fault::Redirect(
                302,
                format!("http://127.0.0.1:9/collect?api_key={SECRET}"),
            )],
        ),
        (
            "an HTML page quoting the key",
            vec![Fault::Html(200, format!("<html><body>{echo}</body></html>")); 3],
        ),
        (
            "404 quoting the key",
            vec![Fault::Status(404, format!("no route for key {SECRET}"))],
        ),
    ];
    if api == Api::Orb {
        list.push((
            "Orb naming failed events with the key in their messages",
            vec![Fault::Status(
                400,
                json!({"validation_failed": [
                    {"idempotency_key": "s-2", "validation_errors": [echo.clone()]}
                ]})
                .to_string(),
            )],
        ));
        list.push((
            "Orb 200 without validation_failed quoting the key",
            vec![Fault::Status(200, json!({"debug": echo}).to_string()); 3],
        ));
    }
    list
}

#[test]
fn sends_with_every_fault_hide_the_key() {
    for api in Api::ALL {
        for (what, faults) in faults(api) {
            for key in [KeyIn::Env, KeyIn::File] {
                let context = format!("{} send with {what}, key in {key:?}", api.name());
                let server = TestServer::start(api, SECRET);
                server.push_faults(faults.clone());
                let job = job(api, key, Some(&server.endpoint()));
                let mut args = vec![
                    "send",
                    "-v",
                    "--batch-size",
                    "2",
                    "--timeout",
                    "200ms",
                    "--max-retries",
                    "2",
                    "--max-retry-wait",
                    "10ms",
                    "--checkpoint",
                    "run.checkpoint",
                ];
                args.extend(ALL_OUTPUTS);
                args.push("events.ndjson");
                let ran = run(&job, &args);
                assert!(
                    matches!(ran.code, 1 | 3),
                    "{context}: {}\n{}",
                    ran.code,
                    ran.stderr
                );
                // The checkpoint (written once a batch settles) is searched with the rest.
                assert_hidden(&job, &ran, &context);
                // The key reached the server: the search above would have found a leak.
                if what == "no fault" {
                    assert!(
                        server
                            .received()
                            .iter()
                            .all(|r| { r.headers.iter().any(|(_, v)| v.contains(SECRET)) })
                    );
                }
            }
        }
    }
}

#[test]
fn a_refused_key_is_named_as_a_setting_not_shown() {
    for api in Api::ALL {
        let server = TestServer::start(api, "the-server-wants-another-key");
        let job = job(api, KeyIn::File, Some(&server.endpoint()));
        let ran = run(
            &job,
            &[
                "send",
                "-v",
                "--summary",
                "summary.json",
                "--rejects",
                "rejects.ndjson",
                "events.ndjson",
            ],
        );
        assert_eq!(ran.code, 3, "{}", ran.stderr);
        assert!(ran.stderr.contains("api_key"), "{}", ran.stderr);
        assert_hidden(&job, &ran, &format!("{} with a refused key", api.name()));
    }
}

#[test]
fn a_refused_customer_lookup_does_not_show_the_key() {
    let server = TestServer::start(Api::Amberflo, SECRET);
    let echo = json!({"error": format!("bad request from key {SECRET}")}).to_string();
    server.push_faults(vec![Fault::Status(400, echo); 20]);
    let job = job(Api::Amberflo, KeyIn::Env, Some(&server.endpoint()));
    let mut args = vec!["send", "--ensure-customers", "-v"];
    args.extend(ALL_OUTPUTS);
    args.push("events.ndjson");
    let ran = run(&job, &args);
    assert!(
        server.received().iter().any(|r| r.path == "/customers"),
        "the customers were looked up"
    );
    assert_hidden(&job, &ran, "amberflo --ensure-customers refused");
}

#[test]
fn a_refused_backfill_request_does_not_show_the_key() {
    let server = TestServer::start(Api::Orb, SECRET);
    let echo =
        json!({"status": 400, "detail": format!("bad request from key {SECRET}")}).to_string();
    server.push_faults(vec![Fault::Status(400, echo); 5]);
    let job = job(Api::Orb, KeyIn::Env, Some(&server.endpoint()));
    for action in [&["list"][..], &["show", "bf_1"], &["close", "bf_1"]] {
        let mut args = vec!["orb", "backfills"];
        args.extend(action);
        let ran = run(&job, &args);
        assert_hidden(&job, &ran, &format!("orb backfills {action:?}"));
    }
}

#[test]
fn a_refused_orb_backfill_creation_does_not_show_the_key() {
    let server = TestServer::start(Api::Orb, SECRET);
    let echo =
        json!({"status": 400, "detail": format!("bad request from key {SECRET}")}).to_string();
    server.push_faults(vec![Fault::Status(400, echo); 5]);
    let job = job(Api::Orb, KeyIn::Env, Some(&server.endpoint()));
    let mut args = vec!["send", "--orb-backfill", "-v"];
    args.extend(ALL_OUTPUTS);
    args.push("events.ndjson");
    let ran = run(&job, &args);
    assert!(
        server
            .received()
            .iter()
            .any(|r| r.path == "/v1/events/backfills"),
        "a backfill was asked for"
    );
    assert_hidden(&job, &ran, "send --orb-backfill refused");
}

#[test]
fn orb_backfill_management_hides_the_key() {
    let server = TestServer::start(Api::Orb, SECRET);
    let echo = format!("failure for key {SECRET}");
    let job = job(Api::Orb, KeyIn::Env, Some(&server.endpoint()));
    for fault in [
        None,
        Some(Fault::Status(401, echo.clone())),
        Some(Fault::Status(500, echo.clone())),
        Some(Fault::Redirect(
            301,
            format!("https://example.com/?k={SECRET}"),
        )),
    ] {
        for action in [&["list"][..], &["list", "--json"], &["show", "bf_1"]] {
            if let Some(fault) = &fault {
                server.push_faults(vec![fault.clone()]);
            }
            let mut args = vec!["orb", "backfills", "--timeout", "2s"];
            args.extend(action);
            let ran = run(&job, &args);
            assert_hidden(
                &job,
                &ran,
                &format!("orb backfills {action:?} with {fault:?}"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn settings_errors_do_not_show_the_key() {
    let key_line = format!("api_key = \"{SECRET}\"");
    let broken = [
        format!("[destinations.orb]\n{key_line}\n"),
        format!("[destinations.orb]\n{key_line}\nexternal_customer_id_field = \"userId\"\ncolour = 1\n"),
        format!("[destinations.orb]\n{key_line}\nexternal_customer_id_field = 5\n"),
        format!("[destinations.orb]\napi_key = \"{SECRET}\nexternal_customer_id_field = \"userId\"\n"),
        format!("[destinations.orb]\napi_key = {SECRET}\nexternal_customer_id_field = \"userId\"\n"),
        format!("[destinations.orb]\napi_key = \"{SECRET}\" \"{SECRET}\"\n"),
        format!("[destinations.orb]\napi_key = [\"{SECRET}\"]\nexternal_customer_id_field = \"userId\"\n"),
        format!("[destinations.orb]\n{key_line}\n{key_line}\nexternal_customer_id_field = \"userId\"\n"),
        format!("[destinations.kable]\n{key_line}\nendpoint = \"ftp://example.com\"\nkable_client_id = \"c\"\n"),
        format!("[destinations.kable]\n{key_line}\nendpoint = \"http://example.com\"\nkable_client_id = \"c\"\n"),
        format!("[destinations.kable]\n{key_line}\nkable_client_id = \"${{NOT_SET_ANYWHERE}}\"\n"),
        format!("[destinations.x]\n{key_line}\n"),
        format!("default_destination = \"nope\"\n[destinations.amberflo]\n{key_line}\n"),
        format!("[destinations.amberflo]\n{key_line}\nmax_events_per_minute = -3\n"),
        format!("[destinations.amberflo]\napi_key = \"{SECRET}\"\n[destinations.amberflo.extra]\nkey = \"{SECRET}\"\n"),
        "[destinations.orb]\napi_key = \"${SEGRELAY_SECRETS_KEY}\"\nexternal_customer_id_field = \"\"\n".to_owned(),
    ];
    for text in broken {
        let job = job_with(&text);
        for args in [
            &["send", "--dry-run", "events.ndjson"][..],
            &["check", "events.ndjson"],
            &["send", "events.ndjson"],
        ] {
            let ran = run(&job, args);
            assert_eq!(ran.code, 2, "{args:?} with\n{text}\n{}", ran.stderr);
            assert!(!ran.stderr.is_empty());
            assert_hidden(&job, &ran, &format!("{args:?} with\n{text}"));
        }
    }
    // A key the environment does not set: the variable is named, a dry run works.
    let job = job(Api::Orb, KeyIn::Env, None);
    let mut cmd = support::segrelay();
    cmd.current_dir(job.dir.path())
        .args(["send", "events.ndjson"]);
    let ran = support::run(&mut cmd);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains(VAR), "{}", ran.stderr);
}

#[test]
fn a_settings_file_holding_a_key_must_not_be_readable_by_others() {
    let warned = |ran: &Run| {
        ran.stderr
            .lines()
            .find(|l| l.contains("warning") && l.contains("segrelay.toml"))
            .map(str::to_owned)
    };
    for api in Api::ALL {
        for (key, mode, warning) in [
            (KeyIn::File, 0o644, true),
            (KeyIn::File, 0o604, true),
            (KeyIn::File, 0o640, true),
            (KeyIn::File, 0o600, false),
            (KeyIn::File, 0o400, false),
            (KeyIn::Env, 0o644, false),
        ] {
            let context = format!("{} key in {key:?}, mode {mode:o}", api.name());
            let job = job(api, key, None);
            std::fs::set_permissions(&job.settings, std::fs::Permissions::from_mode(mode)).unwrap();
            for args in [
                &["send", "--dry-run", "events.ndjson"][..],
                &["check", "events.ndjson"],
            ] {
                let ran = run(&job, args);
                assert_eq!(ran.code, 1, "{context}: {}", ran.stderr);
                match (warning, warned(&ran)) {
                    (true, Some(line)) => {
                        assert!(
                            line.contains(&job.settings.display().to_string())
                                || line.contains("segrelay.toml"),
                            "{line}"
                        );
                        assert!(
                            line.contains("600") || line.contains("${"),
                            "{context}: says how to fix it: {line}"
                        );
                    }
                    (false, None) => {}
                    (true, None) => panic!("{context}: no warning\n{}", ran.stderr),
                    (false, Some(line)) => panic!("{context}: an unexpected warning: {line}"),
                }
                assert_hidden(&job, &ran, &context);
            }
            // -q silences warnings; the run is otherwise the same.
            let ran = run(&job, &["send", "--dry-run", "-q", "events.ndjson"]);
            assert_eq!(ran.code, 1);
        }
    }
}

#[test]
fn plain_http_off_this_machine_needs_allow_insecure() {
    for api in Api::ALL {
        for endpoint in [
            "http://example.com",
            "http://10.1.2.3:8080/v1",
            "http://127.0.0.1.example.com",
        ] {
            let context = format!("{} at {endpoint}", api.name());
            let job = job(api, KeyIn::Env, Some(endpoint));
            for args in [
                &["send", "--dry-run", "events.ndjson"][..],
                &["check", "events.ndjson"],
            ] {
                let ran = run(&job, args);
                assert_eq!(ran.code, 2, "{context}: {}", ran.stderr);
                assert!(
                    ran.stderr.contains("allow_insecure"),
                    "{context}: {}",
                    ran.stderr
                );
                assert!(
                    ran.stderr.contains(endpoint),
                    "{context}: names it: {}",
                    ran.stderr
                );
                assert!(ran.stdout.is_empty());
            }
            // allow_insecure = true: taken (a dry run only: example.com is never contacted).
            let text = table(api, KeyIn::Env, Some(endpoint)).replacen(
                '\n',
                "\nallow_insecure = true\n",
                1,
            );
            let job = job_with(&text);
            let ran = run(
                &job,
                &[
                    "send",
                    "--dry-run",
                    "--summary",
                    "summary.json",
                    "events.ndjson",
                ],
            );
            assert_eq!(ran.code, 1, "{context}: only the bad line\n{}", ran.stderr);
            let requests = support::parse_ndjson(&ran.stdout);
            assert!(!requests.is_empty());
            for request in &requests {
                let url = request["url"].as_str().unwrap();
                assert!(url.starts_with(endpoint), "{context}: {url}");
            }
            assert_hidden(&job, &ran, &context);
        }
        // Loopback and https need nothing.
        for endpoint in [
            "http://127.0.0.1:9",
            "http://localhost:9",
            "http://[::1]:9",
            "https://example.com",
        ] {
            let job = job(api, KeyIn::Env, Some(endpoint));
            let ran = run(&job, &["send", "--dry-run", "events.ndjson"]);
            assert_eq!(ran.code, 1, "{endpoint}: {}", ran.stderr);
        }
    }
}
