//! The lazy parse against the full one: the same answers for the keys a
//! destination reads, and refusals where a full parse refuses.

use super::*;
use crate::event::testing::{event, origin};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A partly parsed event translates as the whole one does.
#[test]
fn wanted_keys_give_the_same_events() {
    let lazy = Wanted::with_paths(["context.groupId"]);
    let lines = [
        r#"{"type":"track","event":"e","userId":"u","messageId":"m","timestamp":"2021-01-01T00:00:00Z","context":{"groupId":"g","ip":"1.2.3.4"},"properties":{"a":1},"sentAt":null}"#,
        r#"{"type":"page","messageId":7,"name":"Home","context":{"x":[1,{"y":2}]},"userId":"u","userId":"v"}"#,
        r#"{"type":"track","userId":"u"}"#,
        r#"{"batch":[{"type":"track","messageId":"a"}],"context":{"c":1}}"#,
        r#"{"_segrelay":{"reason":"x"},"type":"track","messageId":"m"}"#,
        r#"{"type":"track","messageId":"m"} trailing"#,
        r#"{"type":"track","messageId":"m","context":{"bad":tru}}"#,
        r#"[1,2]"#,
        r#"{"type":"track","messageId":18500000000000000001}"#,
    ];
    // The first two are plain events, kept as their lines.
    for (wanted, (i, line)) in [lazy, lazy.reading_whole_objects(true)]
        .iter()
        .flat_map(|wanted| std::iter::repeat(wanted).zip(lines.into_iter().enumerate()))
    {
        let mut full = Vec::new();
        parse_line(line.as_bytes(), &origin(), |r| full.push(r));
        let mut part = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), wanted, |r| part.push(r));
        assert_eq!(full.len(), part.len(), "{line}");
        for (f, p) in full.iter().zip(&part) {
            match (f, p) {
                (Ok(f), Ok(p)) => {
                    let paths = Usual::NAMES.iter().chain(&["context", "context.groupId"]);
                    for path in paths {
                        assert_eq!(f.get(path), p.get(path), "{line}: {path}");
                    }
                    for key in Usual::NAMES.iter().chain(&["context"]) {
                        assert_eq!(f.fields().get(*key), p.fields().get(*key), "{line}: {key}");
                    }
                    assert_eq!(f.message_id(), p.message_id(), "{line}");
                    let kept = p.clone().into_line().ok();
                    assert_eq!(kept.as_deref(), (i < 2).then_some(line), "{line}");
                }
                (Err(f), Err(p)) => assert_eq!(f.reason, p.reason, "{line}"),
                _ => panic!("{line}: one parsed, the other not"),
            }
        }
    }
}

/// What a skip lets through and a parse refuses goes the full way, to be refused.
#[test]
fn wanted_values_that_would_not_parse_are_refused() {
    let wanted = Wanted::with_paths([]);
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let long = "9".repeat(400);
    let lines = [
        r#"{"type":"track","messageId":"m","event":"\ud800"}"#.to_owned(),
        format!(r#"{{"type":"track","messageId":"m","properties":{{"d":{deep}}}}}"#),
    ];
    for line in &lines {
        let mut out = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| out.push(r));
        assert_eq!(out.len(), 1, "{line}");
        let Err(bad) = &out[0] else {
            panic!("{line}: taken")
        };
        assert_eq!(bad.reason.kind, "invalid JSON", "{line}");
    }
    // A number with an exponent is kept, and so is one beyond a double's
    // range or digits: numbers keep their text, which is valid JSON.
    let line = format!(
        r#"{{"type":"track","messageId":"m","properties":{{"value":1.5e3,"s":"2e","big":1e400,"n":{long}}}}}"#
    );
    let mut out = Vec::new();
    parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| out.push(r));
    let event = out.pop().unwrap().unwrap();
    let text = |path: &str| event.get(path).map(|v| v.to_string());
    assert_eq!(text("properties.value").as_deref(), Some("1.5e+3"));
    assert_eq!(text("properties.big").as_deref(), Some("1e+400"));
    assert_eq!(text("properties.n"), Some(long));
}

/// An event kept as its line answers paths as a parsed one does.
#[test]
fn lines_answer_paths_like_maps() {
    let wanted = Wanted::with_paths(["context.groupId"]);
    let line = r#"{"messageId":"m","type":"tr\u0061ck","properties":{"a":{"b":[10,{"c":3}]},"a":{"b":[1]},"s":"x\"y","n":null},"context":{"groupId":7},"traits":[1,2],"\u0065vent":"e"}"#;
    let mut kept = Vec::new();
    parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| kept.push(r));
    let kept = kept.pop().unwrap().unwrap();
    let parsed = event(serde_json::from_str(line).unwrap());
    assert!(kept.clone().into_line().is_ok(), "kept as a line");
    for path in [
        "type",
        "event",
        "properties.a.b.0",
        "properties.a.b.1.c",
        "properties.s",
        "properties.n",
        "properties.missing",
        "context.groupId",
        "traits.1",
        "traits.x",
        "messageId.0",
    ] {
        assert_eq!(kept.get(path), parsed.get(path), "{path}");
    }
    assert_eq!(kept.call_type().as_deref(), Some("track"));
    assert_eq!(kept.str_at("event").as_deref(), Some("e"));
    for path in ["a.b.0", "s", "missing", "a"] {
        let in_properties = |e: &Event| e.get_in("properties", Some(path)).map(Cow::into_owned);
        assert_eq!(in_properties(&kept), in_properties(&parsed), "{path}");
    }
    assert_eq!(kept.properties(), parsed.properties());
    assert!(kept.is_object("properties") && !kept.is_object("traits"));
}

/// `properties` is read in the line's one pass, member by member: odd
/// spacing, empty or repeated objects, and what the full parser must see
/// (escaped keys, a `properties` that is not an object) answer alike.
#[test]
fn properties_read_in_one_pass_answer_like_maps() {
    let wanted = Wanted::with_paths([]);
    let lines = [
        (
            r#"{"messageId":"m","properties" : { "a" : 1 , "b":{"c":[2]} } ,"type":"track"}"#,
            true,
        ),
        (r#"{"messageId":"m","properties":{},"type":"track"}"#, true),
        (r#"{"messageId":"m","properties":{ },"type":"track"}"#, true),
        (
            "{\"messageId\":\"m\",\"properties\":\t{\"a\":\"x\"}\n}",
            true,
        ),
        (
            r#"{"messageId":"m","properties":{"a":1},"properties":{"a":2,"a":3}}"#,
            true,
        ),
        (
            r#"{"messageId":"m","properties":{"\u0061":1,"b":2}}"#,
            false,
        ),
        (r#"{"messageId":"m","propertie\u0073":{"a":1}}"#, false),
        (r#"{"messageId":"m","properties":null}"#, false),
        (r#"{"messageId":"m","properties":"a"}"#, false),
        (r#"{"messageId":"m","properties":[{"a":1}]}"#, false),
    ];
    for (line, kept_as_line) in lines {
        let mut kept = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), &wanted, |r| kept.push(r));
        let kept = kept.pop().unwrap().unwrap();
        let parsed = event(serde_json::from_str(line).unwrap());
        assert_eq!(kept.clone().into_line().is_ok(), kept_as_line, "{line}");
        for path in ["a", "b", "b.c.0", "0", "0.a", "missing"] {
            let in_properties = |e: &Event| e.get_in("properties", Some(path)).map(Cow::into_owned);
            assert_eq!(
                in_properties(&kept),
                in_properties(&parsed),
                "{line}: {path}"
            );
        }
        assert_eq!(kept.get("properties"), parsed.get("properties"), "{line}");
        assert_eq!(
            kept.is_object("properties"),
            parsed.is_object("properties"),
            "{line}"
        );
        assert_eq!(kept.fields(), parsed.fields(), "{line}");
    }
}

/// A key the settings did not name is read from the kept line when asked
/// for: a mapping reading a path the destination forgot to list answers as
/// the full parse does, never "missing". Repeated and escaped keys included.
#[test]
fn unwanted_keys_answer_like_a_full_parse() {
    let wanted = Wanted::with_paths(["properties.plan", "account"]);
    let line = r#"{"type":"track","messageId":"m","context":{"groupId":"g1"},"properties":{"plan":"pro"},"context":{"groupId":"g2","n":12,"a":[{"b":"x"}],"s":"a\"b"},"cont\u0065xt2":{"k":"v"},"count":3,"account":null}"#;
    assert!(!wanted.path_keys.wanted("context") && !wanted.path_keys.wanted("context2"));
    let parsed = event(serde_json::from_str(line).unwrap());
    let paths = [
        "context",
        "context.groupId",
        "context.n",
        "context.a.0.b",
        "context.a.1",
        "context.s",
        "context.missing",
        "context2.k",
        "count",
        "account",
        "missing",
        "missing.x",
    ];
    let kept_ways = [wanted, wanted.reading_whole_objects(true)];
    for (way, wanted) in kept_ways.iter().enumerate() {
        let mut out = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), wanted, |r| out.push(r));
        let kept = out.pop().unwrap().unwrap();
        // Once as the line's spans, once after the wanted keys were built.
        for built in [false, true] {
            if built {
                kept.fields();
            }
            for path in paths {
                let at = format!("{way}, built {built}: {path}");
                assert_eq!(kept.get(path), parsed.get(path), "{at}");
                assert_eq!(kept.id_at(path), parsed.id_at(path), "{at}");
                let (key, rest) = path.split_once('.').unwrap_or((path, ""));
                let rest = (!rest.is_empty()).then_some(rest);
                assert_eq!(kept.get_in(key, rest), parsed.get_in(key, rest), "{at}");
                assert_eq!(kept.str_at(key), parsed.str_at(key), "{at}");
                assert_eq!(kept.is_object(key), parsed.is_object(key), "{at}");
            }
        }
        assert!(kept.into_line().is_ok(), "{way}: kept as its line");
    }
}

/// `properties` and `traits` built alone from a kept line, before or after the
/// wanted keys, are the objects a full parse gives; so is `properties`' text.
#[test]
fn whole_objects_are_built_alone_as_a_full_parse_builds_them() {
    let lines = [
        r#"{"type":"track","messageId":"m","properties":{"b":[1,{"c":null}],"a":1.50,"a":"again","n":18446744073709551616},"traits":{"plan":"pro"}}"#,
        r#"{"type":"identify","messageId":"m","traits":"not an object","properties":{}}"#,
        r#"{"type":"identify","messageId":"m","traits":{"name":"Ada","company":{"name":"X"}}}"#,
    ];
    for line in lines {
        let mut full = Vec::new();
        parse_line(line.as_bytes(), &origin(), |r| full.push(r));
        let parsed = full.pop().unwrap().unwrap();
        for built in [false, true] {
            let mut out = Vec::new();
            parse_line_wanted(line.as_bytes(), &origin(), &Wanted::with_paths([]), |r| {
                out.push(r)
            });
            let kept = out.pop().unwrap().unwrap();
            if built {
                kept.fields();
            }
            assert_eq!(
                kept.properties(),
                parsed.properties(),
                "{line}, built {built}"
            );
            assert_eq!(kept.traits(), parsed.traits(), "{line}, built {built}");
            assert!(kept.clone().into_line().is_ok(), "{line}: kept as its line");
            let text = kept.properties_text();
            let from_text = text.map(|text| serde_json::from_str(text).unwrap());
            assert_eq!(
                from_text.as_ref(),
                parsed.fields().get("properties"),
                "{line}"
            );
        }
    }
    let whole = Event::from_map(serde_json::Map::new(), origin());
    assert_eq!(whole.properties_text(), None, "not kept as a line");
}

/// For a destination that reads whole objects, the lines the lazy parse
/// refuses still have their wanted keys built at once (kept as their lines),
/// and a line whose values `serde_json::Value` reads otherwise than as JSON
/// (its own tokens as keys, plain or escaped) is refused as a full parse
/// refuses it: never kept as a line that could not build its properties.
#[test]
fn whole_object_readers_keep_the_lines_they_kept() {
    let whole = Wanted::with_paths([]).reading_whole_objects(true);
    let kept = [
        r#"{"type":"track","messageId":"m","properties":"not an object"}"#,
        r#"{"type":"track","us\u0065rId":"u","messageId":"m","properties":{"a":1}}"#,
        r#"{"type":"track","messageId":"m","properties":{"\u00e9":1}}"#,
    ];
    for line in kept {
        let mut out = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), &whole, |r| out.push(r));
        let event = out.pop().unwrap().unwrap();
        assert!(event.into_line().is_ok(), "{line}: kept as its line");
    }
    let refused = [
        r#"{"type":"track","messageId":"m","properties":{"$serde_json::private::Number":"x"}}"#,
        r#"{"type":"track","messageId":"m","properties":{"a":{"\u0024serde_json::private::Number":"x"}}}"#,
        r#"{"type":"identify","messageId":"m","traits":{"$serde_json::private::Number":"x"}}"#,
    ];
    for line in refused {
        let mut out = Vec::new();
        parse_line_wanted(line.as_bytes(), &origin(), &whole, |r| out.push(r));
        assert!(matches!(out.as_slice(), [Err(_)]), "{line}: refused");
    }
}

/// The scan's places, where it gives any, against serde_json's.
fn scan_agrees(line: &str, wanted: &Wanted) -> Result<(), String> {
    match scan::scanned_places(line, wanted) {
        None => Ok(()),
        Some(scanned) => match serde_places(line, wanted) {
            Some(parsed) if parsed == scanned => Ok(()),
            parsed => Err(format!("{line}: scan {scanned:?}, serde {parsed:?}")),
        },
    }
}

/// Ordinary lines take the scan, and it finds what serde_json finds.
#[test]
fn plain_lines_are_scanned_to_serde_places() {
    let wanted = Wanted::with_paths(["context.groupId", "a.b"]);
    let lines = [
        r#"{"type":"track","event":"e","userId":"u","messageId":"m","timestamp":"2021-01-01T00:00:00Z","context":{"groupId":"g","ip":"1.2.3.4","k":[1,-2.5e+3,true,false,null,{},[]]},"properties":{"a":1,"b":"x\"y\u00e9\\","c":{"d":[0]}},"sentAt":null}"#,
        " \t{ \"type\" : \"page\" ,\r\n\"a\":[1,{\"b\":\"\\u00e9\"}], \"a\" : 2, \"skipped\":{\"\\ud800\":\"\\ud800\"}, \"type\":\"track\", \"properties\" : { } , \"weird\":\"\u{e9}\" } \n",
        r#"{}"#,
        r#"{"userId":"caf\u00e9 ü","traits":{"x":[[[[]]]]},"integrations":{"All":true},"properties":{"p":1},"properties":{"q":-0}}"#,
    ];
    for line in lines {
        assert!(scan::scanned_places(line, &wanted).is_some(), "{line}");
        scan_agrees(line, &wanted).unwrap();
    }
}

/// What the scan does not know it leaves to serde_json, which refuses it or reads it.
#[test]
fn odd_lines_are_left_to_serde() {
    let wanted = Wanted::with_paths([]);
    let deep = format!(r#"{{"context":{}1{}}}"#, "[".repeat(100), "]".repeat(100));
    let lines = [
        r#"{"typ\u0065":"track"}"#,
        r#"{"batch":[]}"#,
        r#"{"_segrelay":{}}"#,
        r#"{"properties":[1]}"#,
        r#"{"properties":{"\u0061":1}}"#,
        r#"{"context":01}"#,
        r#"{"context":1.}"#,
        r#"{"context":1e}"#,
        r#"{"context":-}"#,
        r#"{"context":"\x"}"#,
        r#"{"context":"\u12G4"}"#,
        "{\"context\":\"a\u{1}b\"}",
        r#"{"context":[1,]}"#,
        r#"{"context":{"a":1,}}"#,
        r#"{"context":[1}"#,
        r#"{"context":tru}"#,
        r#"{"type":"t",}"#,
        r#"{"type":"t"} x"#,
        r#"{"type":"t""#,
        r#"[1]"#,
        &deep,
    ];
    for line in lines {
        assert!(scan::scanned_places(line, &wanted).is_none(), "{line}");
    }
}

/// A JSON-like value's text: mostly valid, with the odd bits a scan must not let by.
fn value_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        2 => prop::sample::select(vec!["null", "true", "false"]).prop_map(str::to_owned),
        6 => "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,2})?([eE][+-]?[0-9]{1,2})?",
        6 => "\"([a-z é/]|\\\\[\"\\\\/bfnrt]|\\\\u00[0-9a-fA-F]{2}){0,6}\"",
        2 => prop::sample::select(vec![
            "fals", "01", "1.", "1e", "-", "1.e2", "\"\\x\"", "\"\\u12G4\"", "\"\\ud800\"",
            "\"a\u{1}\"", "\"\\\"", "[1,]", "{,}",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((key_text(), inner), 0..4).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect();
                format!("{{{}}}", members.join(", "))
            }),
        ]
    })
}

fn key_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "\"type\"", "\"event\"", "\"userId\"", "\"messageId\"", "\"properties\"",
            "\"traits\"", "\"context\"", "\"a\"", "\"x y\"", " \"name\" ", "\"\"",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["\"batch\"", "\"_segrelay\"", "\"typ\\u0065\"", "\"a\\\"b\""])
            .prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the line, the scan finds what serde_json finds, or leaves it.
    #[test]
    fn scanned_lines_find_what_serde_finds(
        members in prop::collection::vec((key_text(), value_text()), 0..6),
        cut in any::<prop::sample::Index>(),
        byte in prop::sample::select(vec![b'"', b'\\', b',', b'}', b']', b'0', b'e', b' ', b':']),
        damage in 0u8..3,
    ) {
        let wanted = Wanted::with_paths(["context.groupId", "a.b"]);
        let members: Vec<String> = members.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let line = format!("{{{}}}", members.join(","));
        scan_agrees(&line, &wanted).map_err(TestCaseError::fail)?;
        // The same line with a byte put in or taken out, where it is ASCII.
        let mut bytes = line.into_bytes();
        let at = cut.index(bytes.len());
        match damage {
            0 => bytes.insert(at, byte),
            1 if bytes[at].is_ascii() => { bytes.remove(at); }
            _ => {}
        }
        if let Ok(line) = String::from_utf8(bytes) {
            scan_agrees(&line, &wanted).map_err(TestCaseError::fail)?;
        }
    }
}
