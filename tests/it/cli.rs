//! The command line: dry-run formats and secrets, settings errors, and the
//! other subcommands.

use std::path::Path;
use std::process::Command as StdCommand;

use serde_json::{Value, json};

use crate::support::*;

const TS: &str = "2021-04-26T14:01:46.909Z";
const ORB_KEY: &str = "orb_live_SECRET_9f8e7d6c5b4a";
const AMBERFLO_KEY: &str = "amb_SECRET_0a1b2c3d4e5f";
const KABLE_KEY: &str = "sk_test_SECRET_a1b2c3d4e5";

fn track(id: &str, value: Value) -> Value {
    json!({"type": "track", "event": "ApiCalls", "userId": "user-1", "messageId": id,
           "timestamp": TS, "properties": {"value": value}})
}

fn events_file(dir: &Path) {
    // A single quote, a double quote, a dollar and a backslash, to exercise shell
    // quoting: in a property Orb maps and Kable keeps (a meter value is a number).
    let mut quoted = track("q1", json!(1));
    quoted["properties"]["currency"] = json!("it's \"quoted\" $HOME `x` \\ ok");
    write(
        dir,
        "events.ndjson",
        ndjson(&[quoted, track("q2", json!(2))]),
    );
}

/// A dry run with every key in the environment (so only --show-secrets may reveal them).
fn with_keys(dir: &Path, args: &[&str]) -> Run {
    run(segrelay()
        .current_dir(dir)
        .env("ORB_API_KEY", ORB_KEY)
        .env("AMBERFLO_API_KEY", AMBERFLO_KEY)
        .env("KABLE_API_KEY", KABLE_KEY)
        .args(["send", "--dry-run", "-c", "segrelay.toml"])
        .args(args))
}

fn secret_for(dest: &str) -> &'static str {
    match dest {
        "orb" => ORB_KEY,
        "amberflo" => AMBERFLO_KEY,
        _ => KABLE_KEY,
    }
}

// ---------------------------------------------------------------------------
// Dry-run formats
// ---------------------------------------------------------------------------

#[test]
fn ndjson_lines_have_exactly_the_contract_shape() {
    let settings = r#"
[destinations.billing]
type = "orb"
api_key = "${ORB_API_KEY}"
external_customer_id_field = "userId"
"#;
    let dir = workspace(settings);
    events_file(dir.path());
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "billing",
        &["--batch-size", "1"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    assert!(out.stdout.ends_with('\n'));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per request");
    let mut request_keys = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let request: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = request
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["body", "destination", "events", "headers", "method", "url"],
            "{line}"
        );
        assert_eq!(
            request["destination"],
            json!("billing"),
            "the settings table's name"
        );
        assert_eq!(request["method"], json!("POST"));
        assert_eq!(request["url"], json!("https://api.withorb.com/v1/ingest"));
        let mut headers = normalise_headers(&request)["headers"].clone();
        // Orb's idempotency key for the request, from what it sends.
        let key = headers
            .as_object_mut()
            .unwrap()
            .remove("idempotency-key")
            .unwrap_or_else(|| panic!("no idempotency-key: {line}"));
        assert!(
            key.as_str().unwrap().starts_with("segrelay-ingest-")
                && key.as_str().unwrap().len() == 48,
            "{key}"
        );
        request_keys.push(key);
        assert_json_eq(
            &headers,
            &json!({"authorization": "Bearer ***", "content-type": "application/json"}),
            Compare::default(),
            "Orb headers",
        );
        assert!(
            request["body"]["events"].is_array(),
            "body is the JSON sent: {line}"
        );
        assert_eq!(
            request["events"],
            json!([{"source": "events.ndjson", "line": i + 1}]),
            "{line}"
        );
    }
    assert_ne!(request_keys[0], request_keys[1], "two requests, two keys");
}

#[test]
fn dry_run_writes_keys_as_stars_when_the_variable_is_unset() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    for (dest, header, expected) in [
        ("orb", "authorization", "Bearer ***"),
        ("amberflo", "x-api-key", "***"),
        ("kable", "kable-client-secret", "***"),
    ] {
        let out = dry_run(dir.path(), "segrelay.toml", dest, &[], &["events.ndjson"]);
        out.expect_code(0);
        let request = normalise_headers(&out.requests()[0]);
        assert_eq!(request["headers"][header], json!(expected), "{dest}");
    }
}

#[test]
fn show_secrets_writes_the_key() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    for (dest, header, expected) in [
        ("orb", "authorization", format!("Bearer {ORB_KEY}")),
        ("amberflo", "x-api-key", AMBERFLO_KEY.to_owned()),
        ("kable", "kable-client-secret", KABLE_KEY.to_owned()),
    ] {
        let out = with_keys(dir.path(), &["-d", dest, "--show-secrets", "events.ndjson"]);
        out.expect_code(0);
        let request = normalise_headers(&out.requests()[0]);
        assert_eq!(request["headers"][header], json!(expected), "{dest}");
        for format in ["curl", "http"] {
            let out = with_keys(
                dir.path(),
                &[
                    "-d",
                    dest,
                    "--show-secrets",
                    "--format",
                    format,
                    "events.ndjson",
                ],
            );
            out.expect_code(0);
            assert!(
                out.stdout.contains(secret_for(dest)),
                "{dest} {format}: {}",
                out.stdout
            );
        }
    }
}

#[test]
fn keys_never_appear_without_show_secrets() {
    let literal = "literal_SECRET_5e4d3c2b1a";
    let literal_settings = format!(
        "[destinations.orb]\napi_key = \"{literal}\"\nexternal_customer_id_field = \"userId\"\n"
    );
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    write(dir.path(), "literal.toml", &literal_settings);
    for dest in ["orb", "amberflo", "kable"] {
        for format in ["ndjson", "curl", "http"] {
            let out = with_keys(
                dir.path(),
                &["-d", dest, "--format", format, "-v", "events.ndjson"],
            );
            out.expect_code(0);
            let secret = secret_for(dest);
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{dest} {format}: the key leaked:\n{}\n{}",
                out.stdout,
                out.stderr
            );
        }
        let out = run(segrelay()
            .current_dir(dir.path())
            .env("ORB_API_KEY", ORB_KEY)
            .env("AMBERFLO_API_KEY", AMBERFLO_KEY)
            .env("KABLE_API_KEY", KABLE_KEY)
            .args([
                "check",
                "-c",
                "segrelay.toml",
                "-d",
                dest,
                "-v",
                "events.ndjson",
            ]));
        out.expect_code(0);
        assert!(!out.stderr.contains(secret_for(dest)) && !out.stdout.contains(secret_for(dest)));
    }
    for format in ["ndjson", "curl", "http"] {
        let out = run(segrelay().current_dir(dir.path()).args([
            "send",
            "--dry-run",
            "-c",
            "literal.toml",
            "--format",
            format,
            "events.ndjson",
        ]));
        out.expect_code(0);
        assert!(
            !out.stdout.contains(literal) && !out.stderr.contains(literal),
            "{format}: a literal key leaked:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stdout.contains("***"), "{format}: {}", out.stdout);
    }
}

#[test]
fn output_goes_to_the_file_given_with_o() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    let to_stdout = dry_run(dir.path(), "segrelay.toml", "orb", &[], &["events.ndjson"]);
    to_stdout.expect_code(0);
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["-o", "requests.ndjson"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
    let written = std::fs::read_to_string(dir.path().join("requests.ndjson")).unwrap();
    assert_eq!(parse_ndjson(&written), to_stdout.requests());

    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--output", "requests.sh", "--format", "curl"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    assert!(out.stdout.is_empty());
    let script = std::fs::read_to_string(dir.path().join("requests.sh")).unwrap();
    assert!(script.contains("curl"), "{script}");
}

fn has_sh() -> bool {
    StdCommand::new("sh")
        .arg("-c")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a curl script with a `curl` shell function that prints each argument
/// followed by NUL, and each command followed by a line `--END--`.
fn curl_arguments(script: &Path, env: &[(&str, &str)]) -> Vec<Vec<String>> {
    let mut cmd = StdCommand::new("sh");
    cmd.arg("-c")
        .arg(r#"curl() { for a in "$@"; do printf '%s\0' "$a"; done; printf -- '--END--\0'; }; . "$1""#)
        .arg("sh")
        .arg(script);
    for var in ["ORB_API_KEY", "AMBERFLO_API_KEY", "KABLE_API_KEY"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "the curl script fails in sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut commands = vec![Vec::new()];
    for arg in text.split('\0').filter(|a| !a.is_empty()) {
        if arg == "--END--" {
            commands.push(Vec::new());
        } else {
            commands.last_mut().unwrap().push(arg.to_owned());
        }
    }
    commands.pop();
    commands
}

/// The value after `flag` in a curl command's arguments, every time it appears.
fn flag_values(args: &[String], flag: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

#[test]
fn curl_format_is_valid_shell_and_refers_to_the_key_variable() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    for (dest, var, header) in [
        ("orb", "ORB_API_KEY", "Authorization: Bearer "),
        ("amberflo", "AMBERFLO_API_KEY", "X-API-KEY: "),
        ("kable", "KABLE_API_KEY", "KABLE-CLIENT-SECRET: "),
    ] {
        let ndjson_out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--batch-size", "1"],
            &["events.ndjson"],
        );
        ndjson_out.expect_code(0);
        let out = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--format", "curl", "--batch-size", "1"],
            &["events.ndjson"],
        );
        out.expect_code(0);
        assert!(
            out.stdout.contains(&format!("${var}")) || out.stdout.contains(&format!("${{{var}}}")),
            "{dest}: the key is written as ${var}:\n{}",
            out.stdout
        );
        if !has_sh() {
            eprintln!("sh not found: the shell checks are skipped");
            continue;
        }
        let script = write(dir.path(), &format!("{dest}.sh"), &out.stdout);
        let status = StdCommand::new("sh")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{dest}: sh -n refuses the curl output:\n{}",
            out.stdout
        );

        // Run it with a stub curl: the key comes from the environment, the body is exact.
        let commands = curl_arguments(&script, &[(var, secret_for(dest))]);
        let expected = ndjson_out.requests();
        assert_eq!(
            commands.len(),
            expected.len(),
            "{dest}: one curl per request"
        );
        for (args, request) in commands.iter().zip(&expected) {
            let headers = flag_values(args, "--header")
                .into_iter()
                .chain(flag_values(args, "-H"))
                .collect::<Vec<_>>();
            let wanted = format!("{header}{}", secret_for(dest)).to_lowercase();
            assert!(
                headers.iter().any(|h| h.to_lowercase() == wanted),
                "{dest}: no header {wanted:?} in {headers:?}"
            );
            let url = flag_values(args, "--url");
            let url = if url.is_empty() {
                args.iter()
                    .filter(|a| a.starts_with("http"))
                    .cloned()
                    .collect()
            } else {
                url
            };
            assert_eq!(url, [request["url"].as_str().unwrap()], "{dest}");
            let method: Vec<String> = flag_values(args, "--request")
                .into_iter()
                .chain(flag_values(args, "-X"))
                .collect();
            assert_eq!(method, [request["method"].as_str().unwrap()], "{dest}");
            let data: Vec<String> = ["--data-binary", "--data", "--data-raw", "-d"]
                .iter()
                .flat_map(|f| flag_values(args, f))
                .collect();
            assert_eq!(data.len(), 1, "{dest}: one body in {args:?}");
            let body: Value = serde_json::from_str(&data[0]).unwrap_or_else(|e| {
                panic!(
                    "{dest}: the body is not JSON after the shell ({e}): {}",
                    data[0]
                )
            });
            assert_eq!(
                body, request["body"],
                "{dest}: the shell must pass the body unchanged"
            );
        }
    }
}

#[test]
fn curl_format_writes_a_literal_key_as_stars() {
    let dir = workspace(
        "[destinations.orb]\napi_key = \"literal_SECRET_77\"\nexternal_customer_id_field = \"userId\"\n",
    );
    events_file(dir.path());
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--format", "curl"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    assert!(!out.stdout.contains("literal_SECRET_77"));
    assert!(out.stdout.contains("Bearer ***"), "{}", out.stdout);
    assert!(!out.stdout.contains("$ORB_API_KEY"));
    if has_sh() {
        let script = write(dir.path(), "literal.sh", &out.stdout);
        let status = StdCommand::new("sh")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success(), "sh -n refuses:\n{}", out.stdout);
        let commands = curl_arguments(&script, &[]);
        let headers = flag_values(&commands[0], "--header");
        assert!(
            headers.iter().any(|h| h == "Authorization: Bearer ***"),
            "{headers:?}"
        );
    }
}

/// A raw HTTP/1.1 request: the request line, the headers (names lower-cased)
/// in order, and the body.
type HttpRequest = (String, Vec<(String, String)>, Vec<u8>);

/// Parses raw HTTP/1.1 requests.
fn parse_http(text: &[u8]) -> Vec<HttpRequest> {
    let mut requests = Vec::new();
    let mut rest = text;
    loop {
        while let Some((first, tail)) = rest.split_first() {
            if first.is_ascii_whitespace() {
                rest = tail;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            break;
        }
        let mut lines = Vec::new();
        loop {
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or_else(|| {
                panic!(
                    "unterminated header block: {}",
                    String::from_utf8_lossy(rest)
                )
            });
            let line = String::from_utf8(rest[..end].to_vec()).unwrap();
            rest = &rest[end + 1..];
            let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
            if line.is_empty() {
                break;
            }
            lines.push(line);
        }
        let request_line = lines.remove(0);
        let headers: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                let (k, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a header: {l}"));
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("a Content-Length header");
        assert!(
            rest.len() >= length,
            "the body is shorter than Content-Length"
        );
        let body = rest[..length].to_vec();
        rest = &rest[length..];
        requests.push((request_line, headers, body));
    }
    requests
}

#[test]
fn http_format_writes_raw_requests_with_a_matching_content_length() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    for (dest, line, host, secret_header, secret_value) in [
        (
            "orb",
            "POST /v1/ingest HTTP/1.1",
            "api.withorb.com",
            "authorization",
            "Bearer ***",
        ),
        (
            "amberflo",
            "POST /ingest HTTP/1.1",
            "ingest.amberflo.io",
            "x-api-key",
            "***",
        ),
        (
            "kable",
            "POST /api/v1/events/create HTTP/1.1",
            "live.kable.io",
            "kable-client-secret",
            "***",
        ),
    ] {
        let expected = dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--batch-size", "1"],
            &["events.ndjson"],
        );
        expected.expect_code(0);
        let expected = expected.requests();
        let out = run(segrelay().current_dir(dir.path()).args([
            "send",
            "--dry-run",
            "-c",
            "segrelay.toml",
            "-d",
            dest,
            "--format",
            "http",
            "--batch-size",
            "1",
            "events.ndjson",
        ]));
        out.expect_code(0);
        let requests = parse_http(out.stdout.as_bytes());
        assert_eq!(requests.len(), 2, "{dest}: two requests:\n{}", out.stdout);
        for ((request_line, headers, body), want) in requests.iter().zip(&expected) {
            assert_eq!(request_line, line, "{dest}");
            assert_eq!(
                headers[0],
                ("host".to_owned(), host.to_owned()),
                "{dest}: Host comes first"
            );
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_else(|| panic!("{dest}: no {name} header in {headers:?}"))
            };
            assert_eq!(get(secret_header), secret_value, "{dest}");
            assert_eq!(get("content-type"), "application/json", "{dest}");
            assert_eq!(get("content-length"), body.len().to_string());
            let body: Value = serde_json::from_slice(body)
                .expect("the body is JSON of exactly Content-Length bytes");
            assert_eq!(
                body, want["body"],
                "{dest}: the same body as the ndjson format"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Settings errors
// ---------------------------------------------------------------------------

/// Runs a dry run with `settings` as `bad.toml`; expects exit 2, nothing on
/// stdout, and a message holding every one of `needles`.
fn settings_error(settings: &str, dest: Option<&str>, needles: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.toml", settings);
    write(dir.path(), "e.ndjson", ndjson(&[track("x", json!(1))]));
    let mut cmd = segrelay();
    cmd.current_dir(dir.path())
        .env_remove("SEGRELAY_TEST_UNSET_KCI")
        .args(["send", "--dry-run", "-c", "bad.toml"]);
    if let Some(dest) = dest {
        cmd.args(["-d", dest]);
    }
    let out = run(cmd.arg("e.ndjson"));
    out.expect_code(2);
    assert!(out.stdout.is_empty(), "nothing is written: {}", out.stdout);
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "the message should name {needle:?}: {}",
            out.stderr
        );
    }
    out.stderr
}

#[test]
fn an_unknown_key_is_an_error_naming_file_table_and_key() {
    settings_error(
        "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_field = \"userId\"\ncolour = \"red\"\n",
        Some("orb"),
        &["bad.toml", "destinations.orb", "colour"],
    );
    settings_error(
        "[destinations.kable]\napi_key = \"k\"\nkable_client_id = \"kci\"\nexternal_customer_id_field = \"userId\"\n",
        Some("kable"),
        &[
            "bad.toml",
            "destinations.kable",
            "external_customer_id_field",
        ],
    );
    settings_error(
        "defaults = 1\n[destinations.amberflo]\napi_key = \"k\"\n",
        None,
        &["bad.toml", "defaults"],
    );
}

#[test]
fn a_missing_required_key_is_an_error_naming_it() {
    settings_error(
        "[destinations.orb]\napi_key = \"k\"\n",
        Some("orb"),
        &["bad.toml", "destinations.orb", "external_customer_id_field"],
    );
    settings_error(
        "[destinations.kable]\napi_key = \"k\"\n",
        Some("kable"),
        &["bad.toml", "destinations.kable", "kable_client_id"],
    );
    settings_error(
        "[destinations.amberflo]\nendpoint = \"http://127.0.0.1:9\"\n",
        Some("amberflo"),
        &["bad.toml", "destinations.amberflo", "api_key"],
    );
}

#[test]
fn a_wrong_type_is_an_error_naming_the_key() {
    settings_error(
        "[destinations.orb]\napi_key = 3\nexternal_customer_id_field = \"userId\"\n",
        Some("orb"),
        &["bad.toml", "destinations.orb", "api_key"],
    );
    settings_error(
        "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_field = \"userId\"\n[destinations.orb.properties_mapping]\namount = 1\n",
        Some("orb"),
        &[
            "bad.toml",
            "destinations.orb",
            "properties_mapping",
            "amount",
        ],
    );
    settings_error(
        "[destinations.kable]\napi_key = \"k\"\nkable_client_id = [\"a\"]\n",
        Some("kable"),
        &["bad.toml", "destinations.kable", "kable_client_id"],
    );
}

#[test]
fn an_unknown_destination_type_is_an_error() {
    settings_error(
        "[destinations.billing]\ntype = \"stripe\"\napi_key = \"k\"\n",
        Some("billing"),
        &["bad.toml", "destinations.billing", "type", "stripe"],
    );
    // A table not named after a type needs `type`.
    settings_error(
        "[destinations.billing]\napi_key = \"k\"\n",
        Some("billing"),
        &["bad.toml", "destinations.billing", "type"],
    );
}

#[test]
fn a_missing_variable_in_a_non_secret_key_is_an_error() {
    settings_error(
        "[destinations.kable]\napi_key = \"${KABLE_API_KEY}\"\nkable_client_id = \"${SEGRELAY_TEST_UNSET_KCI}\"\n",
        Some("kable"),
        &[
            "bad.toml",
            "destinations.kable",
            "kable_client_id",
            "SEGRELAY_TEST_UNSET_KCI",
        ],
    );
}

#[test]
fn a_bad_value_is_an_error_naming_the_key() {
    settings_error(
        "[destinations.kable]\napi_key = \"k\"\nkable_client_id = \"kci\"\nenvironment = \"staging\"\n",
        Some("kable"),
        &["bad.toml", "destinations.kable", "environment"],
    );
    settings_error(
        "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_field = \"\"\n",
        Some("orb"),
        &["bad.toml", "destinations.orb", "external_customer_id_field"],
    );
    // A settings error does not print a literal key written in the file.
    let message = settings_error(
        "[destinations.orb]\napi_key = \"literal_SECRET_31\"\nexternal_customer_id_field = \"userId\"\ncolour = 1\n",
        Some("orb"),
        &["colour"],
    );
    assert!(!message.contains("literal_SECRET_31"), "{message}");
}

/// Amberflo's two hosts: ingestion on `endpoint`, customers on `api_endpoint`,
/// which follows a set `endpoint` only when that is not Amberflo's own host.
#[test]
fn amberflo_api_endpoint_defaults() {
    let identify = json!({"type": "identify", "userId": "u", "messageId": "i", "timestamp": TS});
    let hosts = |table: &str| -> Result<Vec<String>, String> {
        let dir = workspace(&format!(
            "[destinations.amberflo]\napi_key = \"${{AMBERFLO_API_KEY}}\"\n{table}"
        ));
        write(
            dir.path(),
            "e.ndjson",
            ndjson(&[track("t", json!(1)), identify.clone()]),
        );
        let out = dry_run(dir.path(), "segrelay.toml", "amberflo", &[], &["e.ndjson"]);
        if out.code != 0 {
            return Err(out.stderr);
        }
        let mut urls: Vec<String> = out
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["url"].as_str().unwrap()
                )
            })
            .collect();
        urls.sort();
        urls.dedup();
        Ok(urls)
    };
    let amberflo = [
        "GET https://app.amberflo.io/customers?customerId=u",
        "POST https://app.amberflo.io/customers",
        "POST https://ingest.amberflo.io/ingest",
    ];
    assert_eq!(hosts("").unwrap(), amberflo);
    assert_eq!(
        hosts("endpoint = \"https://ingest.amberflo.io/\"\n").unwrap(),
        amberflo
    );
    assert_eq!(
        hosts("endpoint = \"https://proxy.example.com/af\"\n").unwrap(),
        [
            "GET https://proxy.example.com/af/customers?customerId=u",
            "POST https://proxy.example.com/af/customers",
            "POST https://proxy.example.com/af/ingest",
        ]
    );
    assert_eq!(
        hosts("endpoint = \"https://proxy.example.com\"\napi_endpoint = \"https://api.example.com/\"\n")
            .unwrap(),
        [
            "GET https://api.example.com/customers?customerId=u",
            "POST https://api.example.com/customers",
            "POST https://proxy.example.com/ingest",
        ]
    );
    let insecure = hosts("api_endpoint = \"http://api.example.com\"\n").unwrap_err();
    assert!(
        insecure.contains("[destinations.amberflo]")
            && insecure.contains("key \"api_endpoint\"")
            && insecure.contains("plain http"),
        "{insecure}"
    );
    assert!(
        hosts("api_endpoint = \"ftp://x\"\n")
            .unwrap_err()
            .contains("not an http")
    );
    assert!(hosts("api_endpoint = \"http://api.example.com\"\nallow_insecure = true\n").is_ok());
}

#[test]
fn endpoint_overrides_the_base_url() {
    let settings = r#"
[destinations.amberflo]
api_key = "${AMBERFLO_API_KEY}"
endpoint = "http://127.0.0.1:8080"

[destinations.orb]
api_key = "${ORB_API_KEY}"
external_customer_id_field = "userId"
endpoint = "http://127.0.0.1:8080/v1/"

[destinations.kable]
api_key = "${KABLE_API_KEY}"
kable_client_id = "kci"
endpoint = "https://proxy.example.com/kable"
"#;
    let dir = workspace(settings);
    let identify = json!({"type": "identify", "userId": "u", "messageId": "i", "timestamp": TS});
    write(
        dir.path(),
        "e.ndjson",
        ndjson(&[track("t", json!(1)), identify]),
    );
    let urls = |dest: &str| -> Vec<String> {
        let out = dry_run(dir.path(), "segrelay.toml", dest, &[], &["e.ndjson"]);
        out.expect_code(0);
        let mut urls: Vec<String> = out
            .requests()
            .iter()
            .map(|r| r["url"].as_str().unwrap().to_owned())
            .collect();
        urls.sort();
        urls
    };
    // A host that is not Amberflo's own serves the customer calls too.
    assert_eq!(
        urls("amberflo"),
        [
            "http://127.0.0.1:8080/customers",
            "http://127.0.0.1:8080/customers?customerId=u",
            "http://127.0.0.1:8080/ingest"
        ]
    );
    assert_eq!(urls("orb"), ["http://127.0.0.1:8080/v1/ingest"]);
    assert_eq!(
        urls("kable"),
        ["https://proxy.example.com/kable/api/v1/events/create"]
    );

    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--format", "http"],
        &["e.ndjson"],
    );
    out.expect_code(0);
    let requests = parse_http(out.stdout.as_bytes());
    assert_eq!(requests[0].0, "POST /v1/ingest HTTP/1.1");
    assert_eq!(
        requests[0].1[0],
        ("host".to_owned(), "127.0.0.1:8080".to_owned())
    );
}

#[test]
fn several_destinations_need_d_or_default_destination() {
    let two = "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_field = \"userId\"\n\
               [destinations.kable]\napi_key = \"k\"\nkable_client_id = \"kci\"\nenvironment = \"live\"\n";
    settings_error(two, None, &["bad.toml", "-d"]);
    settings_error(two, Some("stripe"), &["bad.toml", "stripe"]);

    // default_destination chooses; -d still wins over it.
    let dir = workspace(&format!("default_destination = \"kable\"\n{two}"));
    write(dir.path(), "e.ndjson", ndjson(&[track("x", json!(1))]));
    let out = run(segrelay().current_dir(dir.path()).args([
        "send",
        "--dry-run",
        "-c",
        "segrelay.toml",
        "e.ndjson",
    ]));
    out.expect_code(0);
    assert_eq!(out.requests()[0]["destination"], json!("kable"));
    let out = run(segrelay().current_dir(dir.path()).args([
        "send",
        "--dry-run",
        "-c",
        "segrelay.toml",
        "-d",
        "orb",
        "e.ndjson",
    ]));
    out.expect_code(0);
    assert_eq!(out.requests()[0]["destination"], json!("orb"));

    // A single destination needs neither.
    let dir = workspace("[destinations.amberflo]\napi_key = \"${AMBERFLO_API_KEY}\"\n");
    write(dir.path(), "e.ndjson", ndjson(&[track("x", json!(1))]));
    let out = run(segrelay().current_dir(dir.path()).args([
        "send",
        "--dry-run",
        "-c",
        "segrelay.toml",
        "e.ndjson",
    ]));
    out.expect_code(0);
    assert_eq!(out.requests()[0]["destination"], json!("amberflo"));
}

#[test]
fn invalid_toml_and_a_missing_file_are_settings_errors() {
    settings_error(
        "[destinations.orb\napi_key = \"k\"\n",
        Some("orb"),
        &["bad.toml"],
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "e.ndjson", ndjson(&[track("x", json!(1))]));
    let out = run(segrelay().current_dir(dir.path()).args([
        "send",
        "--dry-run",
        "-c",
        "nowhere.toml",
        "e.ndjson",
    ]));
    out.expect_code(2);
    assert!(out.stderr.contains("nowhere.toml"), "{}", out.stderr);
}

#[test]
fn the_settings_file_comes_from_c_then_segrelay_config_then_the_current_directory() {
    let orb = "[destinations.orb]\napi_key = \"${ORB_API_KEY}\"\nexternal_customer_id_field = \"userId\"\n";
    let kable = "[destinations.kable]\napi_key = \"${KABLE_API_KEY}\"\nkable_client_id = \"kci\"\nenvironment = \"live\"\n";
    let amberflo = "[destinations.amberflo]\napi_key = \"${AMBERFLO_API_KEY}\"\n";
    let elsewhere = tempfile::tempdir().unwrap();
    let orb_path = write(elsewhere.path(), "orb.toml", orb);
    let kable_path = write(elsewhere.path(), "kable.toml", kable);

    // The working directory holds segrelay.toml (Amberflo).
    let dir = workspace(amberflo);
    write(dir.path(), "e.ndjson", ndjson(&[track("x", json!(1))]));
    let destination = |cmd: &mut assert_cmd::Command, extra: &[&Path]| {
        let out = run(cmd
            .current_dir(dir.path())
            .args(["send", "--dry-run"])
            .args(extra.iter().flat_map(|p| [Path::new("-c"), p]))
            .arg("e.ndjson"));
        out.expect_code(0);
        out.requests()[0]["destination"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        destination(&mut segrelay(), &[]),
        "amberflo",
        "./segrelay.toml"
    );
    assert_eq!(
        destination(segrelay().env("SEGRELAY_CONFIG", &orb_path), &[]),
        "orb",
        "$SEGRELAY_CONFIG when -c is absent"
    );
    assert_eq!(
        destination(segrelay().env("SEGRELAY_CONFIG", &orb_path), &[&kable_path]),
        "kable",
        "-c wins over $SEGRELAY_CONFIG"
    );

    // $SEGRELAY_CONFIG naming a missing file is an error naming it.
    let missing = elsewhere.path().join("missing.toml");
    let out = run(segrelay()
        .current_dir(dir.path())
        .env("SEGRELAY_CONFIG", &missing)
        .args(["send", "--dry-run", "e.ndjson"]));
    out.expect_code(2);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);

    // No -c, no $SEGRELAY_CONFIG and no ./segrelay.toml.
    let empty = tempfile::tempdir().unwrap();
    write(empty.path(), "e.ndjson", ndjson(&[track("x", json!(1))]));
    let out = run(segrelay()
        .current_dir(empty.path())
        .args(["send", "--dry-run", "e.ndjson"]));
    out.expect_code(2);
    assert!(out.stderr.contains("segrelay.toml"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// Other subcommands
// ---------------------------------------------------------------------------

#[test]
fn check_counts_on_stderr_and_writes_nothing_on_stdout() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    write(
        dir.path(),
        "bad.ndjson",
        format!("{}not json\n", ndjson(&[track("ok", json!(1))])),
    );
    let out = run(segrelay().current_dir(dir.path()).args([
        "check",
        "-c",
        "segrelay.toml",
        "-d",
        "orb",
        "--summary",
        "s.json",
        "events.ndjson",
    ]));
    out.expect_code(0);
    assert!(
        out.stdout.is_empty(),
        "check writes nothing on stdout: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains('2'),
        "the counts are on stderr: {}",
        out.stderr
    );
    let s = summary(&dir.path().join("s.json"));
    assert_eq!(
        (s["read"].as_u64(), s["sent"].as_u64()),
        (Some(2), Some(2)),
        "{s}"
    );

    let out = run(segrelay().current_dir(dir.path()).args([
        "check",
        "-c",
        "segrelay.toml",
        "-d",
        "orb",
        "--summary",
        "s.json",
        "bad.ndjson",
    ]));
    out.expect_code(1);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("bad.ndjson:2"), "{}", out.stderr);
    assert!(out.stderr.contains("rejected"), "{}", out.stderr);
    let s = summary(&dir.path().join("s.json"));
    assert_accounting(&s);
    let (read, sent, _, rejected, _, _) = counts(&s);
    assert_eq!((read, sent, rejected), (2, 1, 1), "{s}");

    // Settings errors are exit 2 for check too.
    let out = run(segrelay().current_dir(dir.path()).args([
        "check",
        "-c",
        "segrelay.toml",
        "events.ndjson",
    ]));
    out.expect_code(2);
}

/// Finds, in any JSON shape, the smallest object that names `kind` (as a
/// value or a key) and returns it serialised.
fn entry_for(value: &Value, kind: &str) -> Option<String> {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == kind {
                    return Some(v.to_string());
                }
                if let Some(found) = entry_for(v, kind) {
                    return Some(found);
                }
            }
            if map.values().any(|v| v == kind) {
                return Some(value.to_string());
            }
            None
        }
        Value::Array(items) => items.iter().find_map(|i| entry_for(i, kind)),
        _ => None,
    }
}

#[test]
fn destinations_lists_the_three_types_and_their_settings() {
    let out = run(segrelay().arg("destinations"));
    out.expect_code(0);
    for word in [
        "amberflo",
        "orb",
        "kable",
        "api_key",
        "endpoint",
        "external_customer_id_field",
        "event_name_field",
        "idempotency_key_field",
        "properties_mapping",
        "kable_client_id",
        "client_id_field",
        "environment",
    ] {
        assert!(
            out.stdout.contains(word),
            "destinations should mention {word}:\n{}",
            out.stdout
        );
    }

    let out = run(segrelay().args(["destinations", "--json"]));
    out.expect_code(0);
    let value: Value = serde_json::from_str(&out.stdout).expect("destinations --json is JSON");
    for (kind, own, foreign) in [
        ("amberflo", &["api_key"][..], "kable_client_id"),
        (
            "orb",
            &[
                "api_key",
                "external_customer_id_field",
                "properties_mapping",
            ][..],
            "kable_client_id",
        ),
        (
            "kable",
            &["api_key", "kable_client_id", "client_id_field"][..],
            "external_customer_id_field",
        ),
    ] {
        let entry =
            entry_for(&value, kind).unwrap_or_else(|| panic!("no entry for {kind}: {value}"));
        for key in own {
            assert!(entry.contains(key), "{kind} lists {key}: {entry}");
        }
        assert!(
            !entry.contains(foreign),
            "{kind} does not take {foreign}: {entry}"
        );
    }
}

#[test]
fn completions_are_printed_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run(segrelay().args(["completions", shell]));
        out.expect_code(0);
        assert!(
            out.stdout.trim().len() > 100 && out.stdout.contains("segrelay"),
            "{shell}: {}",
            out.stdout
        );
    }
    let out = run(segrelay().args(["completions", "tcsh"]));
    out.expect_code(2);
}

#[test]
fn help_documents_the_exit_codes() {
    for args in [vec!["--help"], vec!["send", "--help"]] {
        let out = run(segrelay().args(&args));
        out.expect_code(0);
        let text = out.stdout.to_lowercase();
        assert!(text.contains("exit code"), "{args:?}: {}", out.stdout);
        for code in ["0", "1", "2", "3", "4", "130"] {
            assert!(
                text.lines().any(|l| l.trim_start().starts_with(code)),
                "{args:?}: exit code {code} is documented:\n{}",
                out.stdout
            );
        }
    }
}

/// An output that cannot be written (a full disk) is its own exit status, not
/// the "look at the rejects" of 1; the README's table says so too.
#[cfg(target_os = "linux")]
#[test]
fn an_output_that_cannot_be_written_exits_4() {
    let dir = workspace(SETTINGS);
    write(
        dir.path(),
        "events.ndjson",
        ndjson(&[track("ok", json!(1))]),
    );
    for args in [
        vec!["send", "--dry-run", "-d", "kable", "-o", "/dev/full"],
        vec!["check", "-d", "kable", "--summary", "/dev/full"],
        vec!["send", "--dry-run", "-d", "kable", "--summary", "/dev/full"],
    ] {
        let out = run(segrelay().current_dir(dir.path()).args(&args).args([
            "-c",
            "segrelay.toml",
            "events.ndjson",
        ]));
        out.expect_code(4);
        assert!(
            out.stderr.contains("cannot write") && out.stderr.contains("/dev/full"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("| 4 | an output could not be written"));
}

#[test]
fn check_keeps_its_rejects_with_rejects_path() {
    let dir = workspace(SETTINGS);
    write(
        dir.path(),
        "events.ndjson",
        format!("{}{{\"oops\"\n", ndjson(&[track("ok", json!(1))])),
    );
    let out = run(segrelay()
        .current_dir(dir.path())
        .env("KABLE_API_KEY", KABLE_KEY)
        .args([
            "check",
            "-d",
            "kable",
            "--rejects",
            "rejects.ndjson",
            "events.ndjson",
        ]));
    out.expect_code(1);
    let rejects =
        parse_ndjson(&std::fs::read_to_string(dir.path().join("rejects.ndjson")).unwrap());
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["_segrelay"]["line"], 2);
    assert!(
        !out.stderr.contains("keep them with --rejects"),
        "{}",
        out.stderr
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "check writes the rejects and nothing else: {names:?}"
    );
}

/// Each command's help speaks of that command: its exit codes, what its -v shows.
#[test]
fn each_command_help_describes_that_command() {
    let help = |command: &str| run(segrelay().args([command, "--help"])).stdout;
    let check = help("check");
    assert!(check.contains("--rejects <PATH>"), "{check}");
    assert!(
        !check.lines().any(|l| l.trim_start().starts_with("3 ")),
        "check never aborts on the destination:\n{check}"
    );
    let check_verbose = check.lines().find(|l| l.contains("--verbose")).unwrap();
    assert!(!check_verbose.contains("request"), "{check_verbose}");
    let send = help("send");
    assert!(send.contains("each request"), "{send}");
    let verify = help("verify");
    assert!(!verify.contains("--verbose"), "{verify}");
    assert!(verify.contains("differences"), "{verify}");
}

/// `-c`, then `$SEGRELAY_CONFIG`, then `./segrelay.toml`, then the user's
/// `segrelay/config.toml` (under `$XDG_CONFIG_HOME`, else `~/.config`).
#[test]
fn settings_are_found_where_the_help_says() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let work = root.join("work");
    std::fs::create_dir(&work).unwrap();
    events_file(&work);
    let settings_for = |name: &str| {
        SETTINGS.replace(
            "[destinations.kable]",
            &format!("[destinations.{name}]\ntype = \"kable\""),
        )
    };
    std::fs::create_dir_all(root.join("xdg/segrelay")).unwrap();
    std::fs::create_dir_all(root.join("home/.config/segrelay")).unwrap();
    write(
        &root.join("xdg/segrelay"),
        "config.toml",
        settings_for("from_xdg"),
    );
    write(
        &root.join("home/.config/segrelay"),
        "config.toml",
        settings_for("from_home"),
    );
    let dry_run = |env: &[(&str, &str)]| {
        let mut cmd = segrelay();
        cmd.current_dir(&work)
            .env("HOME", root.join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env("KABLE_API_KEY", KABLE_KEY)
            .args(["send", "--dry-run", "events.ndjson"]);
        for (name, value) in env {
            cmd.env(name, value);
        }
        run(&mut cmd)
    };
    let destination_of = |out: &Run| out.expect_code(0).requests()[0]["destination"].clone();
    let from_home = dry_run(&[("SEGRELAY_DESTINATION", "from_home")]);
    assert_eq!(destination_of(&from_home), "from_home");
    let xdg = root.join("xdg");
    let from_xdg = dry_run(&[
        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ("SEGRELAY_DESTINATION", "from_xdg"),
    ]);
    assert_eq!(destination_of(&from_xdg), "from_xdg");
    write(&work, "segrelay.toml", settings_for("from_cwd"));
    let from_cwd = dry_run(&[
        ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ("SEGRELAY_DESTINATION", "from_cwd"),
    ]);
    assert_eq!(destination_of(&from_cwd), "from_cwd");
    write(root, "elsewhere.toml", settings_for("from_env"));
    let from_env = root.join("elsewhere.toml");
    let from_env = dry_run(&[
        ("SEGRELAY_CONFIG", from_env.to_str().unwrap()),
        ("SEGRELAY_DESTINATION", "from_env"),
    ]);
    assert_eq!(destination_of(&from_env), "from_env");
    let unchosen = dry_run(&[]);
    unchosen.expect_code(2);
    assert!(
        unchosen
            .stderr
            .contains("-d NAME (or $SEGRELAY_DESTINATION)"),
        "{}",
        unchosen.stderr
    );
    // -d beats $SEGRELAY_DESTINATION.
    let flag = run(segrelay()
        .current_dir(&work)
        .env("SEGRELAY_DESTINATION", "nowhere")
        .env("KABLE_API_KEY", KABLE_KEY)
        .args(["send", "--dry-run", "-d", "from_cwd", "events.ndjson"]));
    assert_eq!(destination_of(&flag), "from_cwd");
}

#[test]
fn missing_settings_say_where_segrelay_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(segrelay()
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
        .args(["check", "-d", "orb"]));
    out.expect_code(2);
    for needle in [
        "./segrelay.toml",
        "xdg/segrelay/config.toml",
        "-c PATH",
        "$SEGRELAY_CONFIG",
        "segrelay init",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("samples/"), "{}", out.stderr);
}

#[test]
fn init_writes_settings_that_load_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "events.ndjson",
        ndjson(&[track("i1", json!(1))]),
    );
    let init = |args: &[&str]| run(segrelay().current_dir(dir.path()).arg("init").args(args));
    init(&[]).expect_code(0);
    let written = std::fs::read_to_string(dir.path().join("segrelay.toml")).unwrap();
    for expected in [
        "api_key = \"${AMBERFLO_API_KEY}\"",
        "api_key = \"${ORB_API_KEY}\"",
        "# idempotency_key_field = \"messageId\"",
        "# allow_insecure = false",
    ] {
        assert!(written.contains(expected), "{expected}:\n{written}");
    }
    // Kable's client id is a placeholder until replaced: refused, as every table is read.
    let placeholder =
        run(segrelay()
            .current_dir(dir.path())
            .args(["check", "-d", "orb", "events.ndjson"]));
    placeholder.expect_code(2);
    for needle in ["segrelay.toml", "kable_client_id", "REPLACE_ME"] {
        assert!(
            placeholder.stderr.contains(needle),
            "{needle}: {}",
            placeholder.stderr
        );
    }
    let written = written.replace("\"REPLACE_ME\"", "\"kci_1\"");
    std::fs::write(dir.path().join("segrelay.toml"), &written).unwrap();
    for destination in ["amberflo", "orb", "kable"] {
        run(segrelay()
            .current_dir(dir.path())
            .args(["check", "-d", destination, "events.ndjson"]))
        .expect_code(0);
    }
    let again = init(&["-d", "orb"]);
    again.expect_code(2);
    assert!(again.stderr.contains("segrelay.toml"), "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("segrelay.toml")).unwrap(),
        written
    );
    let orb_only = init(&["-d", "orb", "--out", "-"]);
    orb_only.expect_code(0);
    assert!(orb_only.stdout.contains("[destinations.orb]"));
    assert!(!orb_only.stdout.contains("[destinations.kable]"));
    write(dir.path(), "orb.toml", &orb_only.stdout);
    let checked =
        run(segrelay()
            .current_dir(dir.path())
            .args(["check", "-c", "orb.toml", "events.ndjson"]));
    checked.expect_code(0);
    // Orb's starter maps no property: every one would be dropped, and check says so.
    assert!(
        checked.stderr.contains("properties_mapping is empty")
            && checked.stderr.contains("without properties"),
        "{}",
        checked.stderr
    );
}

#[test]
fn a_misspelt_key_is_named_with_the_key_it_is_near() {
    // A required key misspelt: the error names the unknown key as its likely misspelling.
    settings_error(
        "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_feild = \"userId\"\n",
        Some("orb"),
        &[
            "bad.toml",
            "destinations.orb",
            "\"external_customer_id_field\" is required",
            "unknown key \"external_customer_id_feild\"",
        ],
    );
    // An optional key misspelt: the unknown key, and the known key nearest it.
    settings_error(
        "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_field = \"userId\"\nidempotency_key_feild = \"messageId\"\n",
        Some("orb"),
        &[
            "unknown key \"idempotency_key_feild\"",
            "did you mean \"idempotency_key_field\"?",
        ],
    );
    // A word that is near no key gets no guess.
    let said = settings_error(
        "[destinations.orb]\napi_key = \"k\"\nexternal_customer_id_field = \"userId\"\ncolour = \"red\"\n",
        Some("orb"),
        &["unknown key \"colour\""],
    );
    assert!(!said.contains("did you mean"), "{said}");
}

#[test]
fn a_placeholder_left_from_init_is_a_settings_error() {
    settings_error(
        "[destinations.kable]\napi_key = \"k\"\nkable_client_id = \"REPLACE_ME\"\n",
        Some("kable"),
        &[
            "bad.toml",
            "destinations.kable",
            "kable_client_id",
            "REPLACE_ME",
        ],
    );
}

#[test]
fn a_variable_without_braces_is_warned_of_without_printing_the_key() {
    let dir = workspace(
        "[destinations.orb]\napi_key = \"$ORB_API_KEY\"\nexternal_customer_id_field = \"$CUSTOMER_FIELD\"\n\
         [destinations.orb.properties_mapping]\nvalue = \"value\"\n",
    );
    std::fs::set_permissions(
        dir.path().join("segrelay.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    write(dir.path(), "e.ndjson", ndjson(&[track("v", json!(1))]));
    let out = run(segrelay()
        .current_dir(dir.path())
        .env("ORB_API_KEY", ORB_KEY)
        .args(["check", "-c", "segrelay.toml", "e.ndjson"]));
    out.expect_code(0);
    for needle in [
        "key \"api_key\" starts with $ without braces",
        "write \"${ORB_API_KEY}\"",
        "key \"external_customer_id_field\" \"$CUSTOMER_FIELD\" starts with $",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert!(!out.stderr.contains(ORB_KEY), "{}", out.stderr);
    assert!(
        !out.stderr.contains("properties_mapping is empty"),
        "{}",
        out.stderr
    );
}

/// Every commented setting line of the starter file is TOML once uncommented:
/// all of them at once still make a table that parses, each key in its table.
#[test]
fn inits_commented_settings_are_toml_once_uncommented() {
    let out = run(segrelay().args(["init", "--out", "-"]));
    out.expect_code(0);
    let mut uncommented = 0;
    let text: String = out
        .stdout
        .lines()
        .map(|line| {
            let setting = line.strip_prefix("# ").filter(|rest| {
                rest.split_once(' ')
                    .is_some_and(|(_, r)| r.starts_with("= "))
            });
            match setting {
                Some(rest)
                    if rest.split(' ').next().is_some_and(|key| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    uncommented += 1;
                    rest.to_owned() + "\n"
                }
                _ => {
                    assert!(
                        !line.starts_with("# ") || !line.contains(": ") || line.contains(" = "),
                        "a commented setting that is not TOML: {line}"
                    );
                    line.to_owned() + "\n"
                }
            }
        })
        .collect();
    let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        uncommented >= 20,
        "{uncommented} lines uncommented:\n{text}"
    );
    let orb = &table["destinations"]["orb"];
    assert_eq!(orb["type"].as_str(), Some("orb"));
    assert!(orb["endpoint"].as_str().unwrap().starts_with("https://"));
    assert_eq!(orb["max_events_per_minute"].as_integer(), Some(1000));
    assert_eq!(
        table["destinations"]["amberflo"]["api_endpoint"].as_str(),
        Some("https://app.amberflo.io")
    );
    assert_eq!(
        table["destinations"]["kable"]["environment"].as_str(),
        Some("live")
    );
}

#[test]
fn destinations_lists_the_configured_ones_without_their_keys() {
    let dir = workspace(&format!(
        "[destinations.billing]\ntype = \"orb\"\napi_key = \"{ORB_KEY}\"\nendpoint = \"http://127.0.0.1:9/orb\"\nexternal_customer_id_field = \"userId\"\n"
    ));
    let out = run(segrelay().current_dir(dir.path()).arg("destinations"));
    out.expect_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("billing"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains("orb") && line.contains("http://127.0.0.1:9/orb"),
        "{line}"
    );
    assert!(!out.stdout.contains(ORB_KEY) && !out.stderr.contains(ORB_KEY));
    let elsewhere = tempfile::tempdir().unwrap();
    let none = run(segrelay()
        .current_dir(elsewhere.path())
        .env("XDG_CONFIG_HOME", elsewhere.path())
        .arg("destinations"));
    none.expect_code(0);
    assert!(!none.stdout.contains("configured"), "{}", none.stdout);
}

/// The top-level help's exit codes are every command's, not send's; and what
/// --checkpoint's help says of a dry run is what the command line does.
#[test]
fn help_says_what_the_commands_do() {
    let top = run(segrelay().arg("--help")).stdout;
    assert!(
        top.contains("Exit codes (each command's --help says what they mean for it)"),
        "{top}"
    );
    assert!(top.contains("differ (verify)"), "{top}");
    assert!(
        !top.contains("run the same command again to go on"),
        "{top}"
    );
    let send = run(segrelay().args(["send", "--help"])).stdout;
    assert!(
        send.contains("run the same command again to go on"),
        "{send}"
    );
    assert!(send.contains("Not with --dry-run"), "{send}");
    let dir = workspace(SETTINGS);
    let refused = run(segrelay().current_dir(dir.path()).args([
        "send",
        "--dry-run",
        "-d",
        "orb",
        "--checkpoint",
        "c.json",
        "-",
    ]));
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("--checkpoint"),
        "{}",
        refused.stderr
    );
}

/// `send --help` groups its options; every argument of every command says what it is.
#[test]
fn help_groups_options_and_describes_every_argument() {
    let send = run(segrelay().args(["send", "--help"])).stdout;
    for heading in [
        "Input:",
        "Filters:",
        "Output:",
        "Sending:",
        "Checkpoints:",
        "Orb backfills:",
        "Amberflo:",
        "Logging:",
    ] {
        assert!(send.lines().any(|l| l == heading), "{heading}\n{send}");
    }
    assert!(send.contains("no more than 8"), "{send}");
    for action in ["show", "close", "revert"] {
        let help = run(segrelay().args(["orb", "backfills", action, "--help"])).stdout;
        let id = help
            .lines()
            .find(|l| l.trim_start().starts_with("<ID>"))
            .unwrap();
        assert!(id.len() > "  <ID>  ".len() + 5, "{action}: {help}");
    }
    let revert = run(segrelay().args(["orb", "backfills", "revert", "--help"])).stdout;
    assert!(revert.contains("--yes"), "{revert}");
}

/// Amberflo's `gzip_requests`: the curl script pipes the JSON through gzip, the
/// http format holds the gzipped bytes; both carry the ndjson format's body.
#[test]
fn gzipped_bodies_in_curl_and_http_formats() {
    use std::io::Read;
    let dir = workspace(
        "[destinations.amberflo]\napi_key = \"${AMBERFLO_API_KEY}\"\ngzip_requests = true\n",
    );
    events_file(dir.path());
    let expected = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &["--batch-size", "1"],
        &["events.ndjson"],
    );
    expected.expect_code(0);
    let expected = expected.requests();
    assert_eq!(expected.len(), 2);
    let gunzip = |bytes: &[u8]| {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .expect("a gzip body");
        serde_json::from_slice::<Value>(&json).expect("JSON inside")
    };

    let output = segrelay()
        .current_dir(dir.path())
        .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", "amberflo"])
        .args(["--format", "http", "--batch-size", "1", "events.ndjson"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let requests = parse_http(&output.stdout);
    assert_eq!(requests.len(), 2);
    for ((_, headers, body), want) in requests.iter().zip(&expected) {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("content-encoding"), Some("gzip"));
        assert_eq!(get("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(gunzip(body), want["body"]);
    }

    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "amberflo",
        &["--format", "curl", "--batch-size", "1"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    let has_gzip = StdCommand::new("gzip").arg("--version").output().is_ok();
    if !has_sh() || !has_gzip {
        eprintln!("sh or gzip not found: the shell checks are skipped");
        return;
    }
    // A stub curl that writes its arguments, then what it reads from stdin (@-).
    let script = write(dir.path(), "gz.sh", &out.stdout);
    let output = StdCommand::new("sh")
        .arg("-c")
        .arg(r#"curl() { printf '%s\n' "$@" | grep -c -x -e '--data-binary' -e '@-' >&2; gzip -dc; echo; }; . "$1""#)
        .arg("sh")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "2\n2\n",
        "--data-binary @- each time"
    );
    let bodies: Vec<Value> = parse_ndjson(&String::from_utf8(output.stdout).unwrap());
    let want: Vec<Value> = expected.iter().map(|r| r["body"].clone()).collect();
    assert_eq!(
        bodies, want,
        "the shell passes the JSON unchanged through gzip"
    );
}

/// Kable's host follows the key (`sk_live` → live) unless `environment` says:
/// a dry run without the key says plainly that the host is unknown, and a
/// key that disagrees with `environment` is pointed out.
#[test]
fn kable_dry_run_says_which_host_the_key_decides() {
    let settings =
        "[destinations.kable]\napi_key = \"${KABLE_API_KEY}\"\nkable_client_id = \"kci_x\"\n";
    let dir = workspace(settings);
    // Stamped by Segment on receipt, as in its archive: the host is the only warning.
    let mut event = track("k1", json!(1));
    event["receivedAt"] = json!(TS);
    write(dir.path(), "events.ndjson", ndjson(&[event]));
    let summary_path = dir.path().join("summary.json");
    let summary_arg = summary_path.to_str().unwrap();
    let host = |out: &Run| out.requests()[0]["url"].as_str().unwrap().to_owned();

    // No key: the host a test key would use, and a plain word that a live key goes elsewhere.
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "kable",
        &["--summary", summary_arg],
        &["events.ndjson"],
    );
    out.expect_code(0);
    assert!(
        host(&out).starts_with("https://test.kable.io/"),
        "{}",
        host(&out)
    );
    assert!(
        out.stderr.contains("the Kable host is unknown"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("https://live.kable.io"),
        "{}",
        out.stderr
    );
    let warnings = summary(&summary_path)["warnings"].clone();
    assert_eq!(warnings.as_array().unwrap().len(), 1, "{warnings}");
    assert!(warnings[0].as_str().unwrap().contains("host is unknown"));

    // A live key in the environment: the live host, and nothing to warn about.
    let mut cmd = segrelay();
    cmd.current_dir(dir.path())
        .env("KABLE_API_KEY", "sk_live_abc123")
        .args([
            "send",
            "--dry-run",
            "-d",
            "kable",
            "--summary",
            summary_arg,
            "events.ndjson",
        ]);
    let out = run(&mut cmd);
    out.expect_code(0);
    assert!(
        host(&out).starts_with("https://live.kable.io/"),
        "{}",
        host(&out)
    );
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert_eq!(summary(&summary_path)["warnings"], json!([]));

    // `environment` decides, the same way with or without the key; a live key sent to the
    // test host is pointed out.
    let dir = workspace(&format!("{settings}environment = \"test\"\n"));
    write(
        dir.path(),
        "events.ndjson",
        ndjson(&[track("k1", json!(1))]),
    );
    for key in [None, Some("sk_live_abc123")] {
        let mut cmd = segrelay();
        cmd.current_dir(dir.path())
            .args(["send", "--dry-run", "-d", "kable", "events.ndjson"]);
        if let Some(key) = key {
            cmd.env("KABLE_API_KEY", key);
        }
        let out = run(&mut cmd);
        out.expect_code(0);
        assert!(
            host(&out).starts_with("https://test.kable.io/"),
            "{}",
            host(&out)
        );
        assert_eq!(
            out.stderr.contains("Kable will refuse it there"),
            key.is_some(),
            "{key:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("host is unknown"), "{}", out.stderr);
    }
}

/// `check` and a dry run skip a usage record whose idempotency key an earlier
/// one had (whatever batch each falls in), and warn with both places when the
/// records differ; the same record twice is a plain duplicate, not warned of.
/// Two identifies of one customer are updates, not repeats.
#[test]
fn check_and_a_dry_run_skip_a_repeated_key_and_warn_of_another_record() {
    let event = |key: &str, value: u64| {
        json!({"type": "track", "event": "ApiCalls", "userId": "user-1", "messageId": key,
               "timestamp": TS, "properties": {"value": value}})
    };
    let events = [
        event("changed", 1),
        event("replayed", 1),
        event("changed", 2),
        event("replayed", 1),
        json!({"type": "identify", "userId": "user-1", "messageId": "i1", "timestamp": TS,
               "traits": {"plan": "a"}}),
        json!({"type": "identify", "userId": "user-1", "messageId": "i1", "timestamp": TS,
               "traits": {"plan": "b"}}),
    ];
    for dest in ["amberflo", "orb", "kable"] {
        let dir = workspace(SETTINGS);
        write(dir.path(), "events.ndjson", ndjson(&events));
        // Batches of two: each repeat falls in another batch than its first.
        let common = ["-c", "segrelay.toml", "-d", dest, "--batch-size", "2"];
        for command in [&["check"][..], &["send", "--dry-run"]] {
            let context = format!("{dest} {command:?}");
            let out = run(segrelay()
                .current_dir(dir.path())
                .args(command)
                .args(common)
                .args(["--summary", "s.json", "events.ndjson"]));
            out.expect_code(0);
            let s = summary(&dir.path().join("s.json"));
            assert_accounting(&s);
            assert_eq!(
                s["skipped_by_reason"]["duplicate idempotency key"], 2,
                "{context}: {s}"
            );
            let repeated: Vec<&str> = s["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .filter(|w| w.contains("idempotency key"))
                .collect();
            assert_eq!(repeated.len(), 1, "{context}: {s}");
            let warning = repeated[0];
            assert!(
                warning.starts_with("1 event repeated the idempotency key"),
                "{context}: {warning}"
            );
            assert!(
                warning.contains("\"changed\" at events.ndjson:1 and events.ndjson:3"),
                "{context}: {warning}"
            );
            assert!(!warning.contains("replayed"), "{context}: {warning}");
            assert!(
                !warning.contains("i1"),
                "{context}: identifies are updates: {warning}"
            );
            assert!(out.stderr.contains(warning), "{context}: {}", out.stderr);
            if command[0] == "send" {
                let usage: Vec<String> = record_keys(
                    &records(&out.requests())
                        .into_iter()
                        .filter(|r| {
                            r.get("customerId").is_none() || r.get("meterApiName").is_some()
                        })
                        .collect::<Vec<_>>(),
                );
                assert_eq!(usage, ["changed", "replayed"], "{context}");
            }
        }
    }
}

#[test]
fn a_flag_for_another_type_names_the_types_once() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--ensure-customers"],
        &["events.ndjson"],
    );
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("--ensure-customers is for Amberflo destinations, not Orb"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("orb is orb"), "{}", out.stderr);
}

#[test]
fn show_secrets_without_the_key_says_so() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "orb",
        &["--show-secrets"],
        &["events.ndjson"],
    );
    out.expect_code(0);
    assert!(
        out.stderr.contains("--show-secrets: no key to show")
            && out.stderr.contains("$ORB_API_KEY"),
        "{}",
        out.stderr
    );
}

#[test]
fn destinations_gives_each_type_its_own_rate_limit() {
    let out = run(segrelay().arg("destinations"));
    out.expect_code(0);
    let limits: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("max_events_per_minute"))
        .collect();
    assert_eq!(limits.len(), 3, "{}", out.stdout);
    assert!(
        limits[0].contains("Amberflo") && !limits[0].contains("Orb"),
        "{limits:?}"
    );
    assert!(limits[1].contains("Orb live: 10000"), "{limits:?}");
    assert!(
        limits[2].contains("Kable") && !limits[2].contains("Orb"),
        "{limits:?}"
    );
}

#[test]
fn fail_fast_says_where_it_stopped_the_run() {
    let dir = workspace(SETTINGS);
    let good = track("ff1", json!(1)).to_string();
    write(
        dir.path(),
        "e.ndjson",
        format!("{good}\n{{\"broken\n{good}\n"),
    );
    let out = dry_run(
        dir.path(),
        "segrelay.toml",
        "kable",
        &["--fail-fast", "-q"],
        &["e.ndjson"],
    );
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("--fail-fast: stopped the run at e.ndjson:2"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dry_run_and_a_check_say_translated_not_sent() {
    let dir = workspace(SETTINGS);
    events_file(dir.path());
    let dry = dry_run(
        dir.path(),
        "segrelay.toml",
        "kable",
        &[],
        &["events.ndjson"],
    );
    dry.expect_code(0);
    let check = run(segrelay().current_dir(dir.path()).args([
        "check",
        "-c",
        "segrelay.toml",
        "-d",
        "kable",
        "--summary",
        "summary.json",
        "events.ndjson",
    ]));
    check.expect_code(0);
    for stderr in [&dry.stderr, &check.stderr] {
        assert!(stderr.contains(" translated, "), "{stderr}");
        assert!(!stderr.contains(" sent, "), "{stderr}");
    }
    assert!(summary(&dir.path().join("summary.json"))["sent"].as_u64() > Some(0));
}
