//! The plain JSON most events' `properties` are, read by hand: no escapes,
//! numbers as JSON writes them, a few levels deep. serde_json's reader hands
//! every key, string and number to a visitor through several layers; this
//! walks the bytes once and borrows every key and string from the line. Any
//! text it does not know for sure is refused (None), and `Node::object` reads
//! it as before, so what comes out is the same tree in every case.

use std::borrow::Cow;

use serde_json::Number;

use super::line::{self, Node};

/// Deeper objects and arrays are left to serde_json (whose limit is 128).
const MAX_DEPTH: usize = 32;

/// The members of the object `text` holds, sorted and with the last of a
/// repeated key kept, as `Node::object` gives them; None when `text` is not
/// plain JSON this reader takes (an escape, a control character, a number
/// JSON does not allow, serde_json's own tokens as keys, too deep) or not an
/// object. No key has an escape, so each is as the line writes it.
pub(super) fn object(text: &str) -> Option<Vec<(Cow<'_, str>, Node<'_>)>> {
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    scan.space();
    if scan.peek()? != b'{' {
        return None;
    }
    scan.at += 1;
    let members = scan.members(MAX_DEPTH)?;
    scan.space();
    (scan.at == text.len()).then_some(members)
}

struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Skips JSON's white space.
    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Node<'a>> {
        self.space();
        match self.peek()? {
            b'"' => self.string().map(|text| Node::Text(Cow::Borrowed(text))),
            b'{' if depth > 0 => {
                self.at += 1;
                self.members(depth - 1).map(Node::Object)
            }
            b'[' if depth > 0 => {
                self.at += 1;
                self.items(depth - 1).map(Node::Array)
            }
            b't' => self.literal(b"true", Node::Bool(true)),
            b'f' => self.literal(b"false", Node::Bool(false)),
            b'n' => self.literal(b"null", Node::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A string without escapes or control characters, at its opening quote.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let rest = self.bytes.get(start..)?;
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are at ASCII quotes: character boundaries.
        Some(&self.text[start..start + len])
    }

    fn literal(&mut self, word: &[u8], node: Node<'a>) -> Option<Node<'a>> {
        if !self.bytes[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        Some(node)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, read into a number
    /// as serde_json reads its text (keeping its digits).
    fn number(&mut self) -> Option<Node<'a>> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'-' | b'+') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        let text = &self.text[start..self.at];
        text.parse::<Number>().ok().map(Node::Number)
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// An object's members, after its `{`.
    fn members(&mut self, depth: usize) -> Option<Vec<(Cow<'a, str>, Node<'a>)>> {
        let mut members = Vec::with_capacity(8);
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(members);
        }
        loop {
            self.space();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            // serde_json reads these as its own: left to it.
            if key.starts_with("$serde_json::private::") {
                return None;
            }
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            let value = self.value(depth)?;
            members.push((Cow::Borrowed(key), value));
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(line::kept(members));
                }
                _ => return None,
            }
        }
    }

    /// An array's items, after its `[`.
    fn items(&mut self, depth: usize) -> Option<Vec<Node<'a>>> {
        let mut items = Vec::with_capacity(4);
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(items);
        }
        loop {
            items.push(self.value(depth)?);
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(items);
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::line::Node;
    use super::object;
    use proptest::prelude::*;

    #[test]
    fn plain_json_reads_as_serde_json_reads_it() {
        for text in [
            r#"{"value":3,"region":"eu-central-1","bucket":"b 1","storage_class":"STANDARD"}"#,
            " {\"b\" : 1 ,\n\"a\":{\"z\":[1,null,\"x\",true],\"y\":{\"k\":1.50}},\t\"c\":null}\r\n",
            r#"{"dup":"first","x":1,"dup":"last","dup":{"n":2}}"#,
            r#"{"n":[-0,0.5,1E5,1e+5,2e-07,-12.500,123456789012345678901234567890,1e400]}"#,
            r#"{"e":"café ✓","empty":{},"none":[],"f":false}"#,
            r#"{}"#,
        ] {
            let scanned = object(text);
            assert!(scanned.is_some(), "{text}");
            assert_eq!(scanned, Node::object(text), "{text}");
        }
    }

    #[test]
    fn what_it_does_not_know_is_left_to_serde_json() {
        for text in [
            r#"{"e":"a\"b"}"#,
            r#"{"k\u0065y":1}"#,
            "{\"tab\":\"a\tb\"}",
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"{"n":.5}"#,
            r#"{"n":1e}"#,
            r#"{"n":+1}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1}x"#,
            r#"{"a":tru}"#,
            r#"[1]"#,
            r#""text""#,
            r#"{"a":{"$serde_json::private::RawValue":"1"}}"#,
            r#"{"$serde_json::private::Number":"1"}"#,
            "",
        ] {
            assert_eq!(object(text), None, "{text}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(object(&deep), None);
        assert!(Node::object(&deep).is_some());
    }

    /// JSON text with odd spacing, numbers in every form JSON allows, and
    /// now and then an escape, a control character or a broken number.
    fn json_text() -> impl Strategy<Value = String> {
        let space = prop_oneof![
            4 => Just(""),
            1 => Just(" "),
            1 => Just("\n\t "),
            1 => Just("\r")
        ];
        let leaf = prop_oneof![
            1 => Just("null".to_owned()),
            1 => Just("true".to_owned()),
            1 => Just("false".to_owned()),
            4 => "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,3})?",
            1 => "-?0[0-9]|1\\.|\\.5|1e|tru",
            4 => "\"[ -!#-\\[\\]-~é✓]{0,8}\"",
            1 => "\"(a\\\\n|\\\\u0041|\t)\"",
        ];
        leaf.prop_recursive(4, 32, 5, move |inner| {
            let space = space.clone();
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..5), space.clone())
                    .prop_map(|(items, s)| format!("[{s}{}{s}]", items.join(&format!("{s},{s}")))),
                (
                    prop::collection::vec(("[a-c]{1,2}|\"\"|k\\\\u0061", inner), 0..5),
                    space
                )
                    .prop_map(|(members, s)| {
                        let members = members
                            .iter()
                            .map(|(k, v)| {
                                let key = if k == "\"\"" {
                                    String::new()
                                } else {
                                    k.clone()
                                };
                                format!("\"{key}\"{s}:{s}{v}")
                            })
                            .collect::<Vec<_>>();
                        format!("{{{s}{}{s}}}", members.join(&format!("{s},")))
                    }),
            ]
        })
    }

    proptest! {
        /// Whatever the text, the reader gives serde_json's tree, or leaves it to serde_json.
        #[test]
        fn any_text_reads_as_serde_json_reads_it(text in json_text()) {
            if let Some(scanned) = object(&text) {
                prop_assert_eq!(Some(scanned), Node::object(&text), "{}", text);
            }
        }
    }
}
