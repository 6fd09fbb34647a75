//! Hostile input, through the binary, for every destination: each bad line or file
//! gets a reason that names the file and the line on standard error, the run goes on
//! (the good lines after it are still translated), and
//! `read = sent + skipped + rejected + failed` holds.

use std::path::Path;

use serde_json::{Value, json};

use crate::support;
use crate::support::json;
use crate::support::{SETTINGS, assert_accounting, gzip, record_keys, records, workspace, write};

const DESTINATIONS: [&str; 3] = ["amberflo", "orb", "kable"];

/// A track event every destination takes, keyed `id`.
fn good(id: &str) -> String {
    json!({
        "type": "track",
        "event": "api_call",
        "userId": "cust_1",
        "messageId": id,
        "timestamp": "2024-05-01T10:00:00.000Z",
        "properties": {"value": 2, "amount": 3},
    })
    .to_string()
}

/// What a dry run made of its input.
struct Outcome {
    code: i32,
    stderr: String,
    summary: Value,
    rejects: Vec<Value>,
    /// Every record of every request.
    records: Vec<Value>,
}

impl Outcome {
    fn keys(&self) -> Vec<String> {
        record_keys(&self.records)
    }

    fn count(&self, key: &str) -> u64 {
        self.summary[key].as_u64().expect("a count")
    }

    /// The rejects line for `source:line`.
    fn reject_at(&self, source: &str, line: u64) -> &Value {
        self.rejects
            .iter()
            .find(|r| r["_segrelay"]["source"] == source && r["_segrelay"]["line"] == line)
            .unwrap_or_else(|| {
                panic!(
                    "no reject for {source}:{line}: {:?}\n{}",
                    self.rejects, self.stderr
                )
            })
    }

    /// Standard error names `place` (`file:line`, or the file) with this outcome and reason.
    fn assert_said(&self, place: &str, reason: &str) {
        let wanted = format!("segrelay: {place}: rejected: {reason}");
        assert!(
            self.stderr.contains(&wanted),
            "standard error does not say {wanted:?}:\n{}",
            self.stderr
        );
    }
}

/// `segrelay send --dry-run -d DEST --summary --rejects [extra] FILES`, in `dir`.
fn dry_run(dir: &Path, dest: &str, extra: &[&str], files: &[&str]) -> Outcome {
    let mut cmd = support::segrelay();
    cmd.current_dir(dir)
        .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", dest])
        .args(["--summary", "summary.json", "--rejects", "rejects.ndjson"])
        .args(extra)
        .args(files)
        .timeout(std::time::Duration::from_secs(120));
    let output = cmd.output().expect("segrelay runs");
    let code = output.status.code().unwrap_or_else(|| {
        panic!(
            "segrelay was killed by a signal (a stack overflow?): {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "segrelay panicked:\n{stderr}");
    let stdout = String::from_utf8(output.stdout).expect("the dry run writes UTF-8");
    let mut requests = Vec::new();
    for line in stdout.lines() {
        match json::parse_deep(line) {
            Ok(Some(value)) => requests.push(value),
            Ok(None) => panic!("a request deeper than this test reads: {line:.200}"),
            Err(e) => panic!("a dry-run line is not JSON ({e}): {line:.500}"),
        }
    }
    let summary = support::summary(&dir.join("summary.json"));
    assert_accounting(&summary);
    let rejects_text = std::fs::read(dir.join("rejects.ndjson")).unwrap_or_default();
    let rejects_text = String::from_utf8(rejects_text).expect("the rejects file is UTF-8");
    let rejects: Vec<Value> = rejects_text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a rejects line is JSON"))
        .collect();
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(
        rejects.len() as u64,
        n("rejected") + n("failed"),
        "the rejects file holds every rejected event: {summary}"
    );
    let expected_code = if n("rejected") + n("failed") + n("input_errors") > 0 {
        1
    } else {
        0
    };
    assert_eq!(code, expected_code, "exit code for {summary}\n{stderr}");
    Outcome {
        code,
        stderr,
        summary,
        rejects,
        records: records(&requests),
    }
}

/// A file of a good line, the hostile `line`, and a good line, for every destination:
/// the hostile line is rejected for `reason` (named with file and line), both good
/// lines are translated.
fn assert_line_rejected(name: &str, line: &[u8], reason: &str) -> Vec<Outcome> {
    assert_line_rejected_for_each(name, line, [reason; 3])
}

/// As `assert_line_rejected`, with each destination's own reason (in `DESTINATIONS` order).
fn assert_line_rejected_for_each(name: &str, line: &[u8], reasons: [&str; 3]) -> Vec<Outcome> {
    let dir = workspace(SETTINGS);
    let mut content = Vec::new();
    content.extend_from_slice(good("before").as_bytes());
    content.push(b'\n');
    content.extend_from_slice(line);
    content.push(b'\n');
    content.extend_from_slice(good("after").as_bytes());
    content.push(b'\n');
    write(dir.path(), name, &content);
    DESTINATIONS
        .iter()
        .zip(reasons)
        .map(|(dest, reason)| {
            let out = dry_run(dir.path(), dest, &[], &[name]);
            assert_eq!(out.code, 1, "{dest}: {}", out.stderr);
            assert_eq!(out.count("read"), 3, "{dest}: {}", out.summary);
            assert_eq!(out.count("rejected"), 1, "{dest}: {}", out.summary);
            assert_eq!(out.keys(), ["before", "after"], "{dest}: the run goes on");
            out.assert_said(&format!("{name}:2"), reason);
            assert_eq!(out.reject_at(name, 2)["_segrelay"]["reason"], reason);
            out
        })
        .collect()
}

/// A file holding these lines, for every destination: every line is translated.
fn assert_lines_translated(name: &str, lines: &[String]) -> Vec<Outcome> {
    let dir = workspace(SETTINGS);
    let content: String = lines.iter().map(|l| format!("{l}\n")).collect();
    write(dir.path(), name, content);
    DESTINATIONS
        .iter()
        .map(|dest| {
            let out = dry_run(dir.path(), dest, &[], &[name]);
            assert_eq!(out.code, 0, "{dest}: {}", out.stderr);
            assert_eq!(out.count("sent"), lines.len() as u64, "{dest}");
            out
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Bytes that are not what a line should be

#[test]
fn invalid_utf8_is_rejected_with_its_line() {
    let cases: [(&str, &[u8]); 6] = [
        ("in-a-value", b"{\"type\":\"track\",\"event\":\"caf\xe9\",\"userId\":\"u\",\"messageId\":\"x\",\"timestamp\":\"2024-05-01T10:00:00Z\"}"),
        ("in-a-key", b"{\"type\":\"track\",\"\xff\xfe\":1,\"userId\":\"u\",\"messageId\":\"x\",\"timestamp\":\"2024-05-01T10:00:00Z\"}"),
        ("outside-strings", b"\xff\xfe\xfd"),
        ("overlong-encoding", b"{\"type\":\"track\",\"event\":\"\xc0\x80\"}"),
        ("encoded-surrogate", b"{\"type\":\"track\",\"event\":\"\xed\xa0\x80\"}"),
        ("cut-multibyte", b"{\"type\":\"track\",\"event\":\"\xe2\x82\"}"),
    ];
    for (name, line) in cases {
        let file = format!("{name}.ndjson");
        for out in assert_line_rejected(&file, line, "invalid JSON") {
            // The rejects file is UTF-8 JSON: a line that is not keeps its exact
            // bytes as numbers, so that reading it back gives the same line.
            let kept: Vec<u8> = out.reject_at(&file, 2)["_segrelay"]["raw_bytes"]
                .as_array()
                .expect("the line is kept byte for byte")
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect();
            assert_eq!(kept, line, "{name}");
        }
    }
}

#[test]
fn nul_bytes_are_rejected_or_kept_escaped() {
    let cases: [(&str, &[u8]); 4] = [
        ("nul-in-a-string", b"{\"type\":\"track\",\"event\":\"a\x00b\",\"userId\":\"u\",\"messageId\":\"x\",\"timestamp\":\"2024-05-01T10:00:00Z\"}"),
        ("nul-between-tokens", b"{\"type\":\"track\",\x00\"event\":\"e\"}"),
        ("only-nuls", b"\x00\x00\x00\x00"),
        ("nul-after-the-object", b"{\"type\":\"track\"}\x00"),
    ];
    for (name, line) in cases {
        assert_line_rejected(&format!("{name}.ndjson"), line, "invalid JSON");
    }
    // An escaped NUL is valid JSON: the event goes through, and the output escapes it again.
    let escaped = r#"{"type":"track","event":"a\u0000b","userId":"u\u0000v","messageId":"nul","timestamp":"2024-05-01T10:00:00Z","properties":{"k\u0000":"v\u0000w"}}"#;
    for out in assert_lines_translated("escaped-nul.ndjson", &[escaped.to_owned()]) {
        let record = &out.records[0];
        let text = record.to_string();
        assert!(text.contains("\\u0000"), "the NUL is escaped again: {text}");
    }
}

#[test]
fn a_10_mb_line_is_refused_without_stopping_the_run() {
    let mut line = String::from(
        r#"{"type":"track","event":"api_call","userId":"u","messageId":"huge","timestamp":"2024-05-01T10:00:00Z","properties":{"blob":""#,
    );
    line.push_str(&"x".repeat(10 << 20));
    line.push_str("\"}}");
    let outs = assert_line_rejected("huge.ndjson", line.as_bytes(), "line too long");
    for out in &outs {
        let detail = out.reject_at("huge.ndjson", 2)["_segrelay"]["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(detail.contains("--max-line-bytes"), "{detail}");
        assert!(out.stderr.contains("--max-line-bytes"), "{}", out.stderr);
    }
    // With the limit raised, the same line is an ordinary event.
    let dir = workspace(SETTINGS);
    write(dir.path(), "huge.ndjson", format!("{line}\n"));
    let out = dry_run(
        dir.path(),
        "amberflo",
        &["--max-line-bytes", "11M"],
        &["huge.ndjson"],
    );
    assert_eq!(out.keys(), ["huge"]);
    let blob = out.records[0]["dimensions"]["blob"].as_str().unwrap();
    assert_eq!(blob.len(), 200, "dimensions are cut to 200 characters");
}

// ---------------------------------------------------------------------------------------------
// JSON that is valid, or nearly, but hostile

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let n = 100_000;
    let open_arrays = "[".repeat(n);
    let balanced = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = "{\"a\":".repeat(n);
    let in_properties = format!(
        r#"{{"type":"track","event":"e","userId":"u","messageId":"deep","timestamp":"2024-05-01T10:00:00Z","properties":{{"a":{balanced}}}}}"#
    );
    let in_a_batch = format!(r#"{{"batch":[{balanced}]}}"#);
    for (name, line) in [
        ("open-arrays", open_arrays),
        ("balanced-arrays", balanced.clone()),
        ("open-objects", objects),
        ("in-properties", in_properties),
        ("in-a-batch", in_a_batch),
    ] {
        let file = format!("{name}.ndjson");
        for out in assert_line_rejected(&file, line.as_bytes(), "invalid JSON") {
            let detail = out.reject_at(&file, 2)["_segrelay"]["detail"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(detail.contains("recursion limit"), "{name}: {detail}");
        }
    }
    // A pretty-printed document nested as deep: one item, refused the same way.
    let dir = workspace(SETTINGS);
    let document = format!(
        "{}\n{{\n  \"a\": {balanced}\n}}\n{}\n",
        good("before"),
        good("after")
    );
    write(dir.path(), "pretty.ndjson", document);
    for dest in DESTINATIONS {
        let out = dry_run(dir.path(), dest, &[], &["pretty.ndjson"]);
        out.assert_said("pretty.ndjson:2", "invalid JSON");
        assert_eq!(out.keys(), ["before", "after"]);
    }
}

#[test]
fn nesting_just_under_the_parser_limit_is_translated() {
    // 125 levels inside `properties`: with the event and `properties`, as deep as
    // serde_json goes.
    let depth = 125;
    let mut nested = String::from("1");
    for _ in 0..depth {
        nested = format!("{{\"k\":{nested}}}");
    }
    let line = format!(
        r#"{{"type":"track","event":"e","userId":"u","messageId":"deep","timestamp":"2024-05-01T10:00:00Z","properties":{{"value":1,"amount":2,"nest":{nested}}}}}"#
    );
    assert!(serde_json::from_str::<Value>(&line).is_ok());
    let one_more = line
        .replacen("\"nest\":", "\"nest\":{\"k\":", 1)
        .replacen("}}}", "}}}}", 1);
    assert!(
        serde_json::from_str::<Value>(&one_more).is_err(),
        "the limit moved"
    );
    let dir = workspace(SETTINGS);
    write(
        dir.path(),
        "deep.ndjson",
        format!("{line}\n{}\n", good("after")),
    );
    for dest in DESTINATIONS {
        let mut cmd = support::segrelay();
        cmd.current_dir(dir.path())
            .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", dest])
            .args(["--summary", "summary.json", "deep.ndjson"]);
        let run = support::run(&mut cmd);
        run.expect_code(0);
        assert_accounting(&support::summary(&dir.path().join("summary.json")));
        // Kable keeps the nested data as it is, so a request may be deeper than
        // serde_json reads; it is still one valid JSON line per request.
        for line in run.stdout.lines() {
            json::parse_deep(line).unwrap_or_else(|e| panic!("{dest}: {e}"));
        }
        if dest == "amberflo" {
            let requests = run.requests();
            let dims = &support::records(&requests)[0]["dimensions"];
            let key = format!("nest{}", ".k".repeat(depth));
            assert_eq!(dims[&key], "1", "flattened to a dotted key: {dims}");
        }
    }
}

#[test]
fn huge_numbers_are_refused_or_kept_without_crashing() {
    let head = r#""type":"track","event":"e","messageId":"n""#;
    // Beyond f64 the line is still JSON: each use of the number refuses it, with its reason.
    let line = format!(
        r#"{{{head},"userId":"u","timestamp":"2024-05-01T10:00:00Z","properties":{{"value":1e400}}}}"#
    );
    let outs = assert_line_rejected_for_each(
        "value-1e400.ndjson",
        line.as_bytes(),
        [
            "meter value not exact",
            "number out of range",
            "number out of range",
        ],
    );
    for out in outs {
        let detail = out.reject_at("value-1e400.ndjson", 2)["_segrelay"]["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            detail.starts_with("properties.value is 1e+400, beyond "),
            "{detail}"
        );
    }
    let line = format!(r#"{{{head},"userId":1e400,"timestamp":"2024-05-01T10:00:00Z"}}"#);
    assert_line_rejected("userid-1e400.ndjson", line.as_bytes(), "id not exact");
    let line = format!(r#"{{{head},"userId":"u","timestamp":1e400}}"#);
    assert_line_rejected("timestamp-1e400.ndjson", line.as_bytes(), "no usable time");
    // A time far out of range is no usable time, whatever its form.
    for (name, value) in [
        ("timestamp-huge-integer", "123456789012345678901234567890"),
        (
            "timestamp-huge-string",
            "\"123456789012345678901234567890\"",
        ),
        ("timestamp-negative", "-123456789012345678901234567890"),
        ("timestamp-1e300", "1e300"),
    ] {
        let line = format!(r#"{{{head},"userId":"u","timestamp":{value}}}"#);
        assert_line_rejected(&format!("{name}.ndjson"), line.as_bytes(), "no usable time");
    }
    // A huge integer keeps its digits where it goes (Orb, Kable, a dimension)...
    let line = format!(
        r#"{{{head},"userId":"u","timestamp":"2024-05-01T10:00:00Z","properties":{{"amount":123456789012345678901234567890}}}}"#
    );
    let outs = assert_lines_translated("amount-huge.ndjson", &[line]);
    let huge = "123456789012345678901234567890";
    let [amberflo, orb, kable] = [0, 1, 2].map(|i| &outs[i].records[0]);
    assert_eq!(amberflo["dimensions"]["amount"], huge);
    assert_eq!(orb["properties"]["amount"].to_string(), huge);
    assert_eq!(kable["data"]["amount"].to_string(), huge);
    // ...but not as Amberflo's meter value, which Amberflo would round.
    let dir = workspace(SETTINGS);
    let line = format!(
        r#"{{{head},"userId":"u","timestamp":"2024-05-01T10:00:00Z","properties":{{"value":{huge}}}}}"#
    );
    write(dir.path(), "value-huge.ndjson", format!("{line}\n"));
    let out = dry_run(dir.path(), "amberflo", &[], &["value-huge.ndjson"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    out.assert_said("value-huge.ndjson:1", "meter value not exact");
    for dest in ["orb", "kable"] {
        let out = dry_run(dir.path(), dest, &[], &["value-huge.ndjson"]);
        assert_eq!(out.code, 0, "{dest}: {}", out.stderr);
        let record = &out.records[0];
        let value = if dest == "orb" {
            &record["properties"]["value"]
        } else {
            &record["data"]["value"]
        };
        assert_eq!(value.to_string(), huge, "{dest}");
    }
}

/// What became of the customer id `123456789012345678901234567890` (a JSON number)
/// and of two events whose `messageId`s are huge numbers one apart.
fn huge_integer_ids(dest: &str) -> Outcome {
    let dir = workspace(SETTINGS);
    let lines = [
        r#"{"type":"track","event":"e","userId":123456789012345678901234567890,"messageId":123456789012345678901234567890,"timestamp":"2024-05-01T10:00:00Z"}"#,
        r#"{"type":"track","event":"e","userId":123456789012345678901234567891,"messageId":123456789012345678901234567891,"timestamp":"2024-05-01T10:00:00Z"}"#,
    ];
    write(
        dir.path(),
        "ids.ndjson",
        format!("{}\n{}\n", lines[0], lines[1]),
    );
    dry_run(dir.path(), dest, &[], &["ids.ndjson"])
}

#[test]
fn huge_integer_ids_are_kept_exactly_or_rejected() {
    for dest in DESTINATIONS {
        let out = huge_integer_ids(dest);
        // Either the ids are the decimal text of the numbers as written, or the
        // events are rejected: never another customer, never one key for two events.
        let keys = out.keys();
        for key in &keys {
            assert!(
                key.starts_with("12345678901234567890123456789"),
                "{dest}: the key {key} is not the messageId as written"
            );
        }
        let mut unique = keys.clone();
        unique.dedup();
        assert_eq!(
            unique.len(),
            keys.len(),
            "{dest}: two events share a key: {keys:?}"
        );
        for record in &out.records {
            let customer = ["customerId", "external_customer_id", "clientId"]
                .iter()
                .find_map(|k| record[*k].as_str())
                .unwrap();
            assert!(
                customer.starts_with("12345678901234567890123456789"),
                "{dest}: the customer id became {customer}"
            );
        }
        assert_eq!(
            out.count("sent") + out.count("rejected"),
            2,
            "{dest}: {}",
            out.summary
        );
    }
}

#[test]
fn duplicate_keys_take_the_last_value_as_json_parse_does() {
    // JSON.parse (and so Segment's libraries) keep the last of duplicate keys.
    let line = r#"{"type":"page","type":"track","event":"first","event":"last","userId":"u1","userId":"u2","messageId":"m1","messageId":"dup","timestamp":"bad","timestamp":"2024-05-01T10:00:00Z","properties":{"value":1,"value":7,"amount":1,"amount":9}}"#;
    let outs = assert_lines_translated("dup.ndjson", &[line.to_owned(), good("after")]);
    let (amberflo, orb, kable) = (
        &outs[0].records[0],
        &outs[1].records[0],
        &outs[2].records[0],
    );
    assert_eq!(amberflo["uniqueId"], "dup");
    assert_eq!(amberflo["customerId"], "u2");
    assert_eq!(amberflo["meterApiName"], "last");
    assert_eq!(amberflo["meterValue"], 7);
    assert_eq!(orb["event_name"], "last");
    assert_eq!(orb["properties"]["amount"], 9);
    assert_eq!(kable["clientId"], "u2");
    assert_eq!(kable["transactionId"], "dup");
}

#[test]
fn numbers_as_ids_are_sent_as_their_decimal_text() {
    let line = |user: &str, message: &str| {
        format!(
            r#"{{"type":"track","event":"e","userId":{user},"messageId":{message},"timestamp":"2024-05-01T10:00:00Z"}}"#
        )
    };
    let cases = [
        ("12345", "42", "12345", "42"),
        ("-7", "0", "-7", "0"),
        ("1e3", "2.5e1", "1000", "25"),
        (
            "12.5",
            "18446744073709551615",
            "12.5",
            "18446744073709551615",
        ),
        (
            "9007199254740993",
            "-9223372036854775808",
            "9007199254740993",
            "-9223372036854775808",
        ),
    ];
    let lines: Vec<String> = cases.iter().map(|(u, m, _, _)| line(u, m)).collect();
    let outs = assert_lines_translated("numeric-ids.ndjson", &lines);
    for (out, dest) in outs.iter().zip(DESTINATIONS) {
        for (record, (_, _, user, _)) in out.records.iter().zip(&cases) {
            let customer = ["customerId", "external_customer_id", "clientId"]
                .iter()
                .find_map(|k| record[*k].as_str())
                .unwrap();
            assert_eq!(customer, *user, "{dest}: {record}");
        }
        let keys: Vec<&str> = cases.iter().map(|c| c.3).collect();
        assert_eq!(out.keys(), keys, "{dest}");
    }
    // anonymousId as a number, when there is no userId and the settings name it.
    let anonymous = r#"{"type":"track","event":"e","anonymousId":77,"messageId":"a","timestamp":"2024-05-01T10:00:00Z"}"#;
    let dir = workspace(&SETTINGS.replacen(
        "[destinations.amberflo]\n",
        "[destinations.amberflo]\ncustomer_id_field = [\"userId\", \"anonymousId\"]\n",
        1,
    ));
    write(dir.path(), "anonymous.ndjson", format!("{anonymous}\n"));
    let out = dry_run(dir.path(), "amberflo", &[], &["anonymous.ndjson"]);
    assert_eq!(out.records[0]["customerId"], "77");
}

#[test]
fn null_everywhere_is_a_reason_not_a_crash() {
    let fields = [
        "type",
        "event",
        "userId",
        "anonymousId",
        "messageId",
        "timestamp",
        "originalTimestamp",
        "receivedAt",
        "properties",
        "traits",
        "context",
        "integrations",
        "name",
    ];
    let dir = workspace(SETTINGS);
    let all_null: serde_json::Map<String, Value> = fields
        .iter()
        .map(|f| (f.to_string(), Value::Null))
        .collect();
    let mut lines = vec![Value::Object(all_null).to_string()];
    // A good event with one field null at a time.
    for field in fields {
        let mut event: Value = serde_json::from_str(&good(&format!("null-{field}"))).unwrap();
        event["anonymousId"] = json!("anon");
        event[field] = Value::Null;
        lines.push(event.to_string());
    }
    lines.push(r#"{"type":"track","event":"e","userId":"u","messageId":"null-props","timestamp":"2024-05-01T10:00:00Z","properties":{"value":null,"amount":null,"currency":null,"usage":{"tokens":null}}}"#.to_owned());
    lines.push("null".to_owned());
    lines.push(r#"{"batch":null}"#.to_owned());
    lines.push(r#"{"batch":[null],"context":null,"integrations":null}"#.to_owned());
    lines.push(r#"{"_segrelay":null}"#.to_owned());
    lines.push(r#"{"_segrelay":{"raw":null}}"#.to_owned());
    lines.push(good("after"));
    let content: String = lines.iter().map(|l| format!("{l}\n")).collect();
    write(dir.path(), "nulls.ndjson", content);
    for dest in DESTINATIONS {
        let out = dry_run(dir.path(), dest, &["-v"], &["nulls.ndjson"]);
        assert_eq!(
            out.count("read"),
            lines.len() as u64,
            "{dest}: {}",
            out.summary
        );
        assert!(
            out.keys().contains(&"after".to_owned()),
            "{dest}: the run goes on"
        );
        // Every rejected line is named, with its reason, on standard error.
        for reject in &out.rejects {
            let note = &reject["_segrelay"];
            let place = format!("nulls.ndjson:{}", note["line"]);
            let reason = note["reason"].as_str().unwrap();
            out.assert_said(&place, reason);
        }
        out.assert_said("nulls.ndjson:1", "missing type");
        let null_type_line = 2 + fields.iter().position(|f| *f == "type").unwrap();
        out.assert_said(&format!("nulls.ndjson:{null_type_line}"), "missing type");
        out.assert_said(
            &format!("nulls.ndjson:{}", lines.len() - 5),
            "not a JSON object",
        );
        out.assert_said(
            &format!("nulls.ndjson:{}", lines.len() - 4),
            "invalid batch",
        );
        // Null properties are left out by Amberflo (dimensions) and Orb (mapped
        // properties), not sent as null; Kable's data keeps the properties as they are.
        let props = out
            .records
            .iter()
            .find(|r| support::record_keys(std::slice::from_ref(r))[0] == "null-props")
            .unwrap_or_else(|| panic!("{dest}: null properties reject the event"));
        if dest != "kable" {
            assert!(!has_null(props), "{dest}: {props}");
        }
        // A null time field is absent, and the event has no other.
        assert!(!out.keys().contains(&"null-timestamp".to_owned()), "{dest}");
        out.assert_said(
            &format!(
                "nulls.ndjson:{}",
                2 + fields.iter().position(|f| *f == "timestamp").unwrap()
            ),
            "no usable time",
        );
        // A null messageId is absent: the event gets a key derived from its content.
        assert!(
            out.keys().iter().any(|k| k.starts_with("segrelay-")),
            "{dest}: {:?}",
            out.keys()
        );
    }
}

fn has_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.iter().any(has_null),
        Value::Object(map) => map.values().any(has_null),
        _ => false,
    }
}

#[test]
fn a_json_array_line_is_not_an_event() {
    let line = format!("[{}]", good("in-an-array"));
    assert_line_rejected("array.ndjson", line.as_bytes(), "not a JSON object");
    assert_line_rejected("scalar.ndjson", b"\"a string\"", "not a JSON object");
    assert_line_rejected("number.ndjson", b"42", "not a JSON object");
}

// ---------------------------------------------------------------------------------------------
// Files that are not what they seem

/// Runs `files` then `good.ndjson` for every destination; `good.ndjson` is read.
fn assert_file_reported(dir: &Path, files: &[&str], place: &str, reason: &str, detail: &str) {
    write(dir, "good.ndjson", format!("{}\n", good("after")));
    let mut all = files.to_vec();
    all.push("good.ndjson");
    for dest in DESTINATIONS {
        let out = dry_run(dir, dest, &[], &all);
        out.assert_said(place, reason);
        let said = out
            .stderr
            .lines()
            .find(|l| l.contains(&format!("{place}: rejected: {reason}")))
            .unwrap();
        assert!(said.contains(detail), "{dest}: {said}");
        assert!(
            out.keys().contains(&"after".to_owned()),
            "{dest}: the run goes on"
        );
        assert_eq!(out.code, 1);
    }
}

/// An input that cannot be opened is an input error, not an event: named on
/// standard error with the OS's reason, counted apart, and the run goes on.
fn assert_input_error(dir: &Path, file: &str, detail: &str) {
    write(dir, "good.ndjson", format!("{}\n", good("after")));
    for dest in DESTINATIONS {
        let out = dry_run(dir, dest, &[], &[file, "good.ndjson"]);
        let said = out
            .stderr
            .lines()
            .find(|l| l.contains(&format!("{file}: cannot read input")))
            .unwrap_or_else(|| panic!("{dest}: {}", out.stderr));
        assert!(said.contains(detail), "{dest}: {said}");
        assert_eq!(out.count("input_errors"), 1, "{dest}");
        assert_eq!(out.count("read"), 1, "{dest}: not an event");
        assert!(out.rejects.is_empty(), "{dest}");
        assert_eq!(out.keys(), ["after"], "{dest}: the run goes on");
        assert_eq!(out.code, 1);
    }
    let out = dry_run(dir, "orb", &["--fail-fast"], &[file, "good.ndjson"]);
    assert_eq!(out.code, 1);
    assert!(out.records.is_empty(), "--fail-fast stops at once");
}

#[test]
fn a_truncated_gzip_member_is_reported_after_the_lines_before_it() {
    let dir = workspace(SETTINGS);
    let text: String = (0..2000)
        .map(|i| format!("{}\n", good(&format!("g{i}"))))
        .collect();
    let whole = gzip(text.as_bytes());
    write(dir.path(), "cut.gz", &whole[..whole.len() * 2 / 3]);
    write(dir.path(), "good.ndjson", format!("{}\n", good("after")));
    for dest in DESTINATIONS {
        let out = dry_run(dir.path(), dest, &[], &["cut.gz", "good.ndjson"]);
        let reject = out
            .rejects
            .iter()
            .find(|r| r["_segrelay"]["source"] == "cut.gz")
            .expect("the cut is reported");
        assert_eq!(reject["_segrelay"]["reason"], "unreadable input");
        let line = reject["_segrelay"]["line"].as_u64().unwrap();
        assert!(line > 1, "the lines before the cut are read");
        out.assert_said(&format!("cut.gz:{line}"), "unreadable input");
        assert!(out.stderr.contains("truncated"), "{}", out.stderr);
        let sent = out.count("sent");
        assert_eq!(
            sent, line,
            "{dest}: every line before the cut is read, then good.ndjson"
        );
        assert_eq!(out.keys().last().map(String::as_str), Some("after"));
    }
    // A second member cut short, after a whole first one.
    let mut two = gzip(format!("{}\n", good("first")).as_bytes());
    let second = gzip(format!("{}\n{}\n", good("second"), good("third")).as_bytes());
    two.extend_from_slice(&second[..second.len() - 6]);
    write(dir.path(), "two.gz", two);
    for dest in DESTINATIONS {
        let out = dry_run(dir.path(), dest, &[], &["two.gz", "good.ndjson"]);
        assert!(
            out.keys().contains(&"first".to_owned()),
            "{dest}: {:?}",
            out.keys()
        );
        assert!(out.keys().contains(&"after".to_owned()));
        assert!(
            out.rejects
                .iter()
                .any(|r| r["_segrelay"]["source"] == "two.gz"
                    && r["_segrelay"]["reason"] == "unreadable input"),
            "{dest}: the cut second member is reported: {:?}",
            out.rejects
        );
    }
}

#[test]
fn a_gz_name_does_not_make_a_file_gzip() {
    let dir = workspace(SETTINGS);
    // Plain NDJSON named .gz: read as text (gzip is known by its magic bytes).
    write(dir.path(), "plain.gz", format!("{}\n", good("plain")));
    for dest in DESTINATIONS {
        let out = dry_run(dir.path(), dest, &[], &["plain.gz"]);
        assert_eq!(out.keys(), ["plain"], "{dest}");
        assert_eq!(out.code, 0);
    }
    // Binary junk named .gz: bad lines, each named.
    write(dir.path(), "junk.gz", b"\x00\x01\x02junk\xff\n");
    assert_file_reported(dir.path(), &["junk.gz"], "junk.gz:1", "invalid JSON", "");
    // The gzip magic bytes and then no gzip: unreadable, named, and the run goes on.
    write(dir.path(), "fake.gz", b"\x1f\x8bthis is not deflate\n");
    assert_file_reported(
        dir.path(),
        &["fake.gz"],
        "fake.gz:1",
        "unreadable input",
        "gzip",
    );
}

#[test]
fn empty_inputs_hold_no_events() {
    let dir = workspace(SETTINGS);
    write(dir.path(), "empty.ndjson", b"");
    write(dir.path(), "blank.ndjson", b"\n\r\n  \n\t\n");
    write(dir.path(), "bom.ndjson", b"\xEF\xBB\xBF");
    write(dir.path(), "empty.gz", gzip(b""));
    write(dir.path(), "good.ndjson", format!("{}\n", good("after")));
    for dest in DESTINATIONS {
        let out = dry_run(dir.path(), dest, &[], &["empty.ndjson"]);
        assert_eq!(out.code, 0);
        assert_eq!(out.count("read"), 0);
        assert!(out.records.is_empty());
        let out = dry_run(
            dir.path(),
            dest,
            &[],
            &[
                "empty.ndjson",
                "blank.ndjson",
                "bom.ndjson",
                "empty.gz",
                "good.ndjson",
            ],
        );
        assert_eq!(out.code, 0, "{dest}: {}", out.stderr);
        assert_eq!(out.count("read"), 1);
        assert_eq!(out.keys(), ["after"]);
    }
}

#[test]
fn a_missing_file_is_reported() {
    let dir = workspace(SETTINGS);
    assert_input_error(dir.path(), "missing.ndjson", "No such file");
}

#[test]
fn an_unreadable_file_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = workspace(SETTINGS);
    let path = write(dir.path(), "locked.ndjson", format!("{}\n", good("locked")));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&path).is_ok() {
        eprintln!(
            "skipped: chmod 000 does not stop this user from reading (running as root?), \
             so an unreadable file cannot be made here"
        );
        return;
    }
    assert_input_error(dir.path(), "locked.ndjson", "Permission denied");
}

/// An envelope whose only fault is a byte that is not UTF-8 must come back from
/// the rejects file as the same single bad line, not as its events with the byte
/// replaced (found by tests/fuzz.rs).
#[test]
fn a_line_that_is_not_utf8_reads_back_from_the_rejects_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        "[destinations.amberflo]\napi_key = \"${SEGRELAY_TEST_KEY}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("e.ndjson"),
        b"{\"batch\":[{\"type\":\"track\",\"event\":\"a\",\"userId\":\"u\",\"timestamp\":\"2024-05-01T10:00:00Z\"},{\"type\":\"page\",\"userId\":\"u\",\"timestamp\":\"2024-05-01T10:00:00Z\"}],\"x\":\"\xff\"}\n",
    )
    .unwrap();
    let run = |input: &str, summary: &str| {
        let status = support::segrelay_process()
            .current_dir(dir.path())
            .args([
                "send",
                "--dry-run",
                "-q",
                "-c",
                "s.toml",
                "--rejects",
                &format!("{summary}.rejects"),
                "--summary",
                summary,
                input,
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(1));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(summary)).unwrap()).unwrap();
        (
            summary["read"].as_u64().unwrap(),
            summary["rejected"].as_u64().unwrap(),
        )
    };
    assert_eq!(run("e.ndjson", "first.json"), (1, 1));
    assert_eq!(run("first.json.rejects", "again.json"), (1, 1));
    let kept = |file: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        serde_json::from_str::<serde_json::Value>(text.trim()).unwrap()["_segrelay"]["raw_bytes"]
            .clone()
    };
    assert!(kept("first.json.rejects").is_array());
    assert_eq!(
        kept("first.json.rejects"),
        kept("again.json.rejects"),
        "the same bytes both times"
    );
}

/// File names and event fields that would run commands if a script took them as code.
const HOSTILE_NAMES: [&str; 4] = [
    "x\ntouch pwned_newline\n.ndjson",
    "$(touch pwned_subst).ndjson",
    "`touch pwned_tick`.ndjson",
    "q'uote\"; touch pwned_quote; '.ndjson",
];

fn hostile_event(i: usize) -> String {
    json!({
        "type": "track",
        "event": "api'$(touch pwned_event)'",
        "userId": format!("cust'`touch pwned_user`'\n;touch pwned_nl{i}"),
        "messageId": format!("m{i}'; touch pwned_id; '"),
        "timestamp": "2024-05-01T10:00:00.000Z",
        "properties": {"value": 2, "amount": 3, "note": "\r\nX-Evil: 1 $(touch pwned_value)"},
    })
    .to_string()
}

#[test]
fn a_curl_script_runs_nothing_from_its_input() {
    let dir = workspace(support::SETTINGS);
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A curl that only records that it ran.
    write(&bin, "curl", "#!/bin/sh\necho ran >> \"$CURL_LOG\"\n");
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(bin.join("curl"))
        .status()
        .unwrap();
    assert!(status.success());
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        write(dir.path(), name, format!("{}\n", hostile_event(i)));
    }
    for dest in DESTINATIONS {
        let out = support::dry_run(
            dir.path(),
            "segrelay.toml",
            dest,
            &["--format", "curl", "--batch-size", "1"],
            &HOSTILE_NAMES,
        );
        out.expect_code(0);
        let requests = out.stdout.matches("\ncurl --request").count()
            + usize::from(out.stdout.starts_with("curl --request"));
        assert!(requests >= HOSTILE_NAMES.len(), "{dest}: {}", out.stdout);
        let script = write(dir.path(), &format!("{dest}.sh"), &out.stdout);
        let log = dir.path().join(format!("{dest}.log"));
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let output = std::process::Command::new("sh")
            .arg(&script)
            .current_dir(dir.path())
            .env("PATH", path)
            .env("CURL_LOG", &log)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{dest}: the script fails: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let ran = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            ran.lines().count(),
            requests,
            "{dest}: curl runs once a request"
        );
        let pwned: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pwned"))
            .collect();
        assert!(
            pwned.is_empty(),
            "{dest}: the script ran {pwned:?}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn raw_http_output_takes_no_header_from_a_value() {
    let dir = workspace(support::SETTINGS);
    write(
        dir.path(),
        "events.ndjson",
        format!("{}\n", hostile_event(0)),
    );
    for dest in DESTINATIONS {
        let var = format!("{}_API_KEY", dest.to_ascii_uppercase());
        let mut cmd = support::segrelay();
        cmd.current_dir(dir.path())
            .args(["send", "--dry-run", "-c", "segrelay.toml", "-d", dest])
            .args(["--format", "http", "--show-secrets", "events.ndjson"])
            .env(&var, "key_0123\r\nX-Injected: 1");
        let out = support::run(&mut cmd);
        out.expect_code(0);
        assert!(
            !out.stdout.lines().any(|l| l.starts_with("X-Injected")),
            "{dest}: a header came from the key:\n{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("key_0123\\r\\nX-Injected: 1"),
            "{dest}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn control_characters_reach_the_terminal_escaped() {
    let dir = workspace(support::SETTINGS);
    let name = "bad\u{1b}[2J\rname.ndjson";
    write(dir.path(), name, "{\"broken\n");
    let out = support::dry_run(dir.path(), "segrelay.toml", "kable", &["-v"], &[name]);
    out.expect_code(1);
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
    assert!(!out.stderr.contains('\r'), "{}", out.stderr);
    assert!(
        out.stderr.contains("bad\\x1b[2J\\rname.ndjson"),
        "{}",
        out.stderr
    );
}
