//! A JSON grammar check without a depth limit.
//!
//! serde_json refuses documents nested more than 128 levels ("recursion limit
//! exceeded"), but segrelay takes events nested up to that limit and wraps them in
//! a request, so its output may be deeper while still valid JSON. This checks the
//! grammar (RFC 8259) iteratively, so that any depth can be checked.

/// Checks that `text` is exactly one JSON value, with optional surrounding whitespace.
pub fn validate(text: &str) -> Result<(), String> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    // The open containers: b'[' or b'{'.
    let mut stack: Vec<u8> = Vec::new();
    loop {
        // A value is expected here.
        p.ws();
        match p.peek() {
            Some(b'{') => {
                p.i += 1;
                p.ws();
                if p.peek() == Some(b'}') {
                    p.i += 1;
                } else {
                    stack.push(b'{');
                    p.key()?;
                    continue;
                }
            }
            Some(b'[') => {
                p.i += 1;
                p.ws();
                if p.peek() == Some(b']') {
                    p.i += 1;
                } else {
                    stack.push(b'[');
                    continue;
                }
            }
            Some(b'"') => p.string()?,
            Some(b't') => p.literal("true")?,
            Some(b'f') => p.literal("false")?,
            Some(b'n') => p.literal("null")?,
            Some(b'-' | b'0'..=b'9') => p.number()?,
            _ => return Err(p.error("a value")),
        }
        // After a value: close what ends here, then the next value or the end.
        loop {
            p.ws();
            match stack.last() {
                None => {
                    return if p.i == p.b.len() {
                        Ok(())
                    } else {
                        Err(p.error("the end of the text"))
                    };
                }
                Some(b'[') => match p.bump() {
                    Some(b',') => break,
                    Some(b']') => {
                        stack.pop();
                    }
                    _ => return Err(p.error("`,` or `]`")),
                },
                Some(_) => match p.bump() {
                    Some(b',') => {
                        p.ws();
                        p.key()?;
                        break;
                    }
                    Some(b'}') => {
                        stack.pop();
                    }
                    _ => return Err(p.error("`,` or `}`")),
                },
            }
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    fn error(&self, expected: &str) -> String {
        format!("expected {expected} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error(word))
        }
    }

    /// A key and its colon.
    fn key(&mut self) -> Result<(), String> {
        if self.peek() != Some(b'"') {
            return Err(self.error("a key"));
        }
        self.string()?;
        self.ws();
        match self.bump() {
            Some(b':') => Ok(()),
            _ => Err(self.error("`:`")),
        }
    }

    fn string(&mut self) -> Result<(), String> {
        self.i += 1;
        loop {
            match self.bump() {
                None => return Err(self.error("the end of a string")),
                Some(b'"') => return Ok(()),
                Some(b'\\') => match self.bump() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        for _ in 0..4 {
                            if !self.bump().is_some_and(|c| c.is_ascii_hexdigit()) {
                                return Err(self.error("four hex digits"));
                            }
                        }
                    }
                    _ => return Err(self.error("an escape")),
                },
                Some(c) if c < 0x20 => return Err(self.error("no control character")),
                Some(_) => {}
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.error("a fraction digit"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("an exponent digit"));
            }
        }
        Ok(())
    }
}

/// Parses a line as JSON: with serde_json, or, when it is only deeper than serde_json
/// goes, by checking its grammar (then `Ok(None)`).
pub fn parse_deep(text: &str) -> Result<Option<serde_json::Value>, String> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.to_string().contains("recursion limit exceeded") => {
            validate(text).map(|()| None)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn the_grammar_check_agrees_with_serde_json() {
        for good in [
            "1",
            " -0.5e+3 ",
            "\"a\\u00e9\\n\"",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}],null,true,false]",
            "{\"a\":{\"b\":\"c\"},\"d\":[]}",
        ] {
            assert!(validate(good).is_ok(), "{good}");
            assert!(serde_json::from_str::<serde_json::Value>(good).is_ok());
        }
        for bad in [
            "",
            "[",
            "]",
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "01",
            "1.",
            "1e",
            "-",
            "\"\\x\"",
            "\"a",
            "[1 2]",
            "{1:2}",
            "tru",
            "1 2",
            "\"\u{1}\"",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(validate(&deep).is_ok());
        assert!(validate(&deep[1..]).is_err());
    }
}
