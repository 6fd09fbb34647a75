//! The partial parse's fast way: one byte scan of a line that finds the wanted
//! keys' places and checks the rest is JSON as serde_json's skip checks it,
//! without serde's per-key and per-value calls. It takes only the lines it
//! knows to be plain (keys without escapes, no `batch`, values it reads to
//! their end); for anything else it answers None and the serde parse reads the
//! line, to the same places or to the same refusal. So it can only be faster,
//! never different: `scanned_lines_find_what_serde_finds` holds it to that.

use super::{Member, Place, Places, Span, Usual, Valid, Wanted, may_not_parse};

/// How deep a skipped value may nest before the scan leaves it to serde.
const MAX_DEPTH: usize = 64;

/// The wanted keys' places in `text`; None when the serde parse must decide.
pub(super) fn scanned_places(text: &str, wanted: &Wanted) -> Option<Places> {
    let mut scan = Scan {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut places = Places {
        usual: [None; Usual::NAMES.len()],
        others: Vec::new(),
        properties: Vec::new(),
    };
    scan.white_space();
    scan.eat(b'{')?;
    scan.white_space();
    if scan.peek() == Some(b'}') {
        scan.at += 1;
    } else {
        loop {
            let key = scan.plain_key()?;
            scan.colon()?;
            let start = scan.at;
            match wanted.place(&text[key.range()]) {
                Place::NeedsFullParse => return None,
                Place::Unread => scan.value()?,
                Place::Usual(Usual::Properties) => {
                    let members = scan.plain_object()?;
                    let value = Span::new(start, scan.at);
                    valid(&text[value.range()])?;
                    places.properties = members;
                    places.usual[Usual::Properties as usize] = Some(value);
                }
                place => {
                    scan.value()?;
                    let value = Span::new(start, scan.at);
                    valid(&text[value.range()])?;
                    match place {
                        Place::Usual(usual) => places.usual[usual as usize] = Some(value),
                        _ => places.others.push(Member { key, value }),
                    }
                }
            }
            if !scan.comma_or_end(b'}')? {
                break;
            }
        }
    }
    scan.white_space();
    (scan.at == text.len()).then_some(places)
}

/// Some when a wanted value would parse, as the serde parse checks it.
fn valid(value: &str) -> Option<()> {
    (!may_not_parse(value) || serde_json::from_str::<Valid>(value).is_ok()).then_some(())
}

struct Scan<'t> {
    bytes: &'t [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn white_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// `:` between white space, before a value.
    fn colon(&mut self) -> Option<()> {
        self.white_space();
        self.eat(b':')?;
        self.white_space();
        Some(())
    }

    /// After a member or an item: true past a `,` (and the white space after
    /// it), false past the closing byte.
    fn comma_or_end(&mut self, close: u8) -> Option<bool> {
        self.white_space();
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.white_space();
                Some(true)
            }
            byte if byte == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A key with neither escapes nor control characters: where its text lies.
    fn plain_key(&mut self) -> Option<Span> {
        self.eat(b'"')?;
        let start = self.at;
        self.skip_plain();
        self.eat(b'"')?;
        Some(Span::new(start, self.at - 1))
    }

    /// The rest of a string past its opening quote, as serde_json skips one:
    /// no control characters, only JSON's escapes (a `\u` escape's four hex
    /// digits are not decoded, so a lone surrogate passes, as there).
    fn string(&mut self) -> Option<()> {
        loop {
            self.skip_plain();
            let stop = self.peek()?;
            self.at += 1;
            match stop {
                b'"' => return Some(()),
                b'\\' => match self.peek()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                    b'u' => {
                        let digits = self.bytes.get(self.at + 1..self.at + 5)?;
                        digits.iter().all(u8::is_ascii_hexdigit).then_some(())?;
                        self.at += 5;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// To the next `"`, `\\` or control character (or the end), eight bytes
    /// at a time: strings are most of a line.
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::MAX / 255;
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let chars = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            // A byte's high bit is set where it is below 0x20, or equal to
            // `"` or `\\` (the lowest such byte is exact: borrows run upwards).
            let control = chars.wrapping_sub(ONES * 0x20) & !chars;
            let quote = chars ^ (ONES * u64::from(b'"'));
            let quote = quote.wrapping_sub(ONES) & !quote;
            let backslash = chars ^ (ONES * u64::from(b'\\'));
            let backslash = backslash.wrapping_sub(ONES) & !backslash;
            let found = (control | quote | backslash) & (ONES << 7);
            if found != 0 {
                self.at += found.trailing_zeros() as usize / 8;
                return;
            }
            self.at += 8;
        }
        while self
            .peek()
            .is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20)
        {
            self.at += 1;
        }
    }

    /// A number as serde_json's skip reads it: `-`, no leading zeros, a
    /// fraction and an exponent each with at least one digit.
    fn number(&mut self) -> Option<()> {
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
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
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

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..].starts_with(word).then_some(())?;
        self.at += word.len();
        Some(())
    }

    /// Any JSON value, at its first byte, read to its end; nested objects and
    /// arrays by a stack of their closing bytes, not by recursion.
    fn value(&mut self) -> Option<()> {
        let mut open = [0u8; MAX_DEPTH];
        let mut depth = 0;
        loop {
            // At a value's first byte.
            let opened = match self.peek()? {
                b'"' => {
                    self.at += 1;
                    self.string()?;
                    None
                }
                b'{' => Some(b'}'),
                b'[' => Some(b']'),
                b't' => self.literal(b"true").map(|_| None)?,
                b'f' => self.literal(b"false").map(|_| None)?,
                b'n' => self.literal(b"null").map(|_| None)?,
                _ => self.number().map(|_| None)?,
            };
            if let Some(close) = opened {
                *open.get_mut(depth)? = close;
                depth += 1;
                self.at += 1;
                self.white_space();
                if self.peek() != Some(close) {
                    if close == b'}' {
                        self.member_key()?;
                    }
                    continue;
                }
                self.at += 1;
                depth -= 1;
            }
            // Past a value: close what it ends, until a `,` says more follows.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let close = open[depth - 1];
                if self.comma_or_end(close)? {
                    if close == b'}' {
                        self.member_key()?;
                    }
                    break;
                }
                depth -= 1;
            }
        }
    }

    /// A skipped object's key (escapes allowed, as in any string) and its `:`.
    fn member_key(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.string()?;
        self.colon()
    }

    /// An object whose keys have no escapes: its members' places, the scan
    /// left past its `}`.
    fn plain_object(&mut self) -> Option<Vec<Member>> {
        self.eat(b'{')?;
        // Room for 16 members: most properties fit at once.
        let mut members = Vec::with_capacity(16);
        self.white_space();
        if self.eat(b'}').is_some() {
            return Some(members);
        }
        loop {
            let key = self.plain_key()?;
            self.colon()?;
            let start = self.at;
            self.value()?;
            members.push(Member {
                key,
                value: Span::new(start, self.at),
            });
            if !self.comma_or_end(b'}')? {
                return Some(members);
            }
        }
    }
}
