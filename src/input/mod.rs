//! Input: files and standard input, gzip by magic bytes, lines with numbers and
//! a length limit. Memory stays flat: one line is held at a time. Folders are
//! replaced by their files first (`folders`).

pub mod filter;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;

use crate::event::Origin;
use crate::event::reason::Reason;

mod folders;
pub mod s3;

pub use folders::{DayBounds, Expanded, Folders, expand, warnings};

/// The lines of the input a stopped run did not read: non-blank lines (a
/// pretty-printed document is one), each a line that would have been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unread {
    pub lines: u64,
    /// False when the count was cut short (Ctrl-C, or with `--fail-fast` an
    /// input that could not be opened): `lines` is then a lower bound.
    pub complete: bool,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BOM: &[u8] = b"\xEF\xBB\xBF";
const READ_BUFFER: usize = 256 * 1024;
/// How much of an overlong line is kept for the rejects file, so that it can be
/// replayed once the limit is raised; beyond this, memory wins and it is cut.
const KEPT_OF_LONG_LINE: usize = 16 << 20;

/// One input, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    Path(PathBuf),
    /// An object listed under an `s3://` input.
    S3(std::sync::Arc<s3::Object>),
}

impl Source {
    pub fn from_arg(arg: PathBuf) -> Source {
        if arg.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::Path(arg)
        }
    }

    pub fn label(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_owned(),
            Source::Path(path) => path.display().to_string(),
            Source::S3(object) => object.label(),
        }
    }
}

/// Where an item ends: its input (by position on the command line) and the
/// last physical line it used. A checkpoint resumes after such a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub input: usize,
    pub end_line: u64,
    /// The inputs' bytes up to the end of this line (earlier inputs counted
    /// whole by their size on disk; gzip inputs by their inflated bytes): how
    /// far the input is settled once this line is, for the progress bar.
    pub offset: u64,
}

/// What the reader hands on: a line's bytes (without line ending), or a problem
/// at a place in the input that must be accounted for.
pub enum Item<'a> {
    Line {
        origin: &'a Origin,
        at: Position,
        bytes: &'a [u8],
    },
    Broken {
        origin: Origin,
        at: Position,
        reason: Reason,
        raw: Vec<u8>,
    },
}

/// Lines of an input a checkpoint says are settled: skip it whole.
pub const WHOLE_INPUT: u64 = u64::MAX;

type Flow = std::ops::ControlFlow<()>;

/// The inputs that could not be opened: input errors, not events.
#[derive(Debug, Default)]
pub struct Unreadable {
    /// `--fail-fast`: the first one stops the run.
    pub fail_fast: bool,
    /// By label: a backfill reads its inputs more than once, each is told once.
    inputs: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Unreadable {
    pub fn new(fail_fast: bool) -> Unreadable {
        Unreadable {
            fail_fast,
            inputs: Default::default(),
        }
    }

    /// Says it on standard error (the first time), and whether to go on.
    fn record(&self, label: &str, error: &io::Error) -> Flow {
        let mut inputs = self.inputs.lock().expect("unreadable inputs");
        if inputs.insert(label.to_owned()) {
            crate::console::stderr_line(&format!("segrelay: {label}: cannot read input: {error}"));
        }
        match self.fail_fast {
            true => Flow::Break(()),
            false => Flow::Continue(()),
        }
    }

    pub fn count(&self) -> u64 {
        self.inputs.lock().expect("unreadable inputs").len() as u64
    }
}

/// Reads every source in order and hands each non-blank line on. A source that
/// cannot be opened is recorded in `unreadable` and the next one is read (unless
/// `--fail-fast`). `settled[i]` lines of input `i` are read past without being handed on.
pub fn read_all(
    sources: &[Source],
    settled: &[u64],
    max_line: usize,
    unreadable: &Unreadable,
    mut each: impl FnMut(Item) -> anyhow::Result<Flow>,
) -> anyhow::Result<()> {
    let mut before = 0;
    let mut ahead = ReadAhead::default();
    for (input, source) in sources.iter().enumerate() {
        let skip = settled.get(input).copied().unwrap_or(0);
        let size = source_size(source).unwrap_or(0);
        before += size;
        if skip == WHOLE_INPUT {
            s3::skipped(source);
            continue;
        }
        let label = crate::event::intern(&source.label());
        let flow = match ahead.open(sources, settled, input) {
            Ok(reader) => {
                let reader = Consumed {
                    inner: reader,
                    consumed: before - size,
                };
                Lines::new(reader, label, input, skip, max_line).run(&mut each)?
            }
            Err(e) => unreadable.record(label, &e),
        };
        if flow.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// The sum of the inputs' sizes, when every input is a regular file that is
/// not gzip: then a line's [`Position::offset`] says how much is left.
pub fn total_size(sources: &[Source]) -> Option<u64> {
    sources
        .iter()
        .map(|source| {
            let Source::Path(path) = source else {
                return None;
            };
            let mut head = [0u8; 2];
            let gzip = File::open(path)
                .and_then(|mut file| file.read_exact(&mut head))
                .is_ok()
                && head == GZIP_MAGIC;
            source_size(source).filter(|_| !gzip)
        })
        .sum()
}

fn source_size(source: &Source) -> Option<u64> {
    match source {
        Source::S3(object) => Some(object.size),
        Source::Path(path) => std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len()),
        Source::Stdin => None,
    }
}

/// A reader that counts the bytes its lines took: where the last line read ends.
struct Consumed {
    inner: Box<dyn BufRead>,
    consumed: u64,
}

impl Read for Consumed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl BufRead for Consumed {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.consumed += amount as u64;
        self.inner.consume(amount);
    }
}

/// S3 objects fetched ahead of the one being read, each on a thread of its
/// own through a short queue (`Prefetch`): the next objects' first bytes are
/// there when the current one ends. Memory stays bounded by
/// `OBJECTS` x `Prefetch::QUEUE` blocks.
#[derive(Default)]
struct ReadAhead {
    started: std::collections::VecDeque<(usize, Prefetch)>,
}

impl ReadAhead {
    const OBJECTS: usize = 3;

    /// Input `input`, opened; the S3 objects after it that are to be read
    /// are started.
    fn open(
        &mut self,
        sources: &[Source],
        settled: &[u64],
        input: usize,
    ) -> io::Result<Box<dyn BufRead>> {
        let Source::S3(_) = &sources[input] else {
            return open(&sources[input]);
        };
        let to_read = |i: &usize| settled.get(*i).copied().unwrap_or(0) != WHOLE_INPUT;
        let next = (input..sources.len()).filter(to_read).take(Self::OBJECTS);
        for i in next {
            let Source::S3(object) = &sources[i] else {
                break;
            };
            if self.started.iter().all(|(started, _)| *started != i) {
                self.started
                    .push_back((i, Prefetch::start(s3::open(object))));
            }
        }
        while let Some((i, body)) = self.started.pop_front() {
            if i == input {
                return decode(Box::new(body));
            }
        }
        unreachable!("input {input} was started above")
    }
}

fn open(source: &Source) -> io::Result<Box<dyn BufRead>> {
    let inner: Box<dyn Read + Send> = match source {
        Source::Stdin => Box::new(io::stdin()),
        Source::S3(object) => s3::open(object),
        Source::Path(path) => {
            if path.is_dir() {
                return Err(io::Error::other("is a directory"));
            }
            Box::new(File::open(path)?)
        }
    };
    decode(inner)
}

/// The input's bytes, inflated when they are gzip.
fn decode(inner: Box<dyn Read + Send>) -> io::Result<Box<dyn BufRead>> {
    let mut raw = inner;
    // Gzip is known by its first two bytes, whatever the name; they are read
    // first (a pipe may deliver them one at a time) and put back in front.
    let mut head = [0u8; 2];
    let mut filled = 0;
    while filled < head.len() {
        match raw.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let is_gzip = filled == 2 && head == GZIP_MAGIC;
    let whole = io::Cursor::new(head[..filled].to_vec()).chain(raw);
    if is_gzip {
        let compressed = BufReader::with_capacity(READ_BUFFER, whole);
        let inflated = Prefetch::start(MultiGzDecoder::new(compressed));
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, inflated)))
    } else {
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, whole)))
    }
}

/// Reads ahead on a thread of its own, so that decompression runs beside
/// parsing instead of before it. Blocks go through a short queue.
struct Prefetch {
    blocks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Prefetch {
    /// Blocks read ahead at most; with `READ_BUFFER`, a few MiB.
    const QUEUE: usize = 4;

    fn start(mut source: impl Read + Send + 'static) -> Prefetch {
        let (send, blocks) = std::sync::mpsc::sync_channel(Self::QUEUE);
        std::thread::spawn(move || {
            loop {
                let mut block = vec![0u8; READ_BUFFER];
                let result = match source.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) => {
                        block.truncate(n);
                        Ok(block)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = result.is_err();
                // The reader is gone (the run stopped): nothing is left to do.
                if send.send(result).is_err() || failed {
                    break;
                }
            }
        });
        Prefetch {
            blocks,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Prefetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            match self.blocks.recv() {
                Ok(block) => {
                    self.current = block?;
                    self.at = 0;
                }
                // The thread finished: the end of the input.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

enum Line {
    /// A complete line, possibly the last one without a newline.
    Complete,
    /// Longer than the limit: only the start was kept, the rest was read and dropped.
    TooLong(usize),
}

/// Reads one line into `buf` (without its newline), keeping at most `max` bytes;
/// None at the end of the input.
fn next_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<Line>> {
    buf.clear();
    let mut total = 0usize;
    let mut read_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let keep = (max + 1).max(KEPT_OF_LONG_LINE);
        if buf.len() < keep {
            let room = (keep - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk[..room]);
        }
        total += chunk.len();
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') && buf.len() == total {
        buf.pop();
        total -= 1;
    }
    if total > max {
        return Ok(Some(Line::TooLong(total)));
    }
    Ok(Some(Line::Complete))
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// One input's lines, with the state a pretty-printed document needs.
struct Lines {
    reader: Consumed,
    source: &'static str,
    input: usize,
    skip: u64,
    max_line: usize,
    /// The line number of the last line read.
    number: u64,
    /// A pretty-printed JSON document being gathered: its first line and its text
    /// (from a line holding only `{` up to one holding only `}`).
    document: Option<(u64, Vec<u8>)>,
}

impl Lines {
    fn new(
        reader: Consumed,
        source: &'static str,
        input: usize,
        skip: u64,
        max_line: usize,
    ) -> Lines {
        Lines {
            reader,
            source,
            input,
            skip,
            max_line,
            number: 0,
            document: None,
        }
    }

    fn origin(&self, line: u64) -> Origin {
        Origin {
            source: self.source,
            line,
        }
    }

    fn at(&self, end_line: u64) -> Position {
        Position {
            input: self.input,
            end_line,
            offset: self.reader.consumed,
        }
    }

    fn broken(
        &self,
        each: &mut impl FnMut(Item) -> anyhow::Result<Flow>,
        line: u64,
        end_line: u64,
        reason: Reason,
        raw: Vec<u8>,
    ) -> anyhow::Result<Flow> {
        each(Item::Broken {
            origin: self.origin(line),
            at: self.at(end_line),
            reason,
            raw,
        })
    }

    fn line(
        &self,
        each: &mut impl FnMut(Item) -> anyhow::Result<Flow>,
        line: u64,
        end_line: u64,
        bytes: &[u8],
    ) -> anyhow::Result<Flow> {
        let origin = self.origin(line);
        each(Item::Line {
            origin: &origin,
            at: self.at(end_line),
            bytes,
        })
    }

    /// Hands on a document that is still open, ending at the last line read before this one.
    fn close_document(
        &mut self,
        each: &mut impl FnMut(Item) -> anyhow::Result<Flow>,
        end_line: u64,
    ) -> anyhow::Result<Flow> {
        match self.document.take() {
            Some((start, doc)) => self.line(each, start, end_line, &doc),
            None => Ok(Flow::Continue(())),
        }
    }

    fn run(mut self, each: &mut impl FnMut(Item) -> anyhow::Result<Flow>) -> anyhow::Result<Flow> {
        use std::ops::ControlFlow::Break;
        let mut buf = Vec::with_capacity(4096);
        loop {
            let line = match next_line(&mut self.reader, &mut buf, self.max_line) {
                Ok(Some(line)) => line,
                Ok(None) => return self.close_document(each, self.number),
                Err(e) => {
                    if self.close_document(each, self.number)?.is_break() {
                        return Ok(Break(()));
                    }
                    let reason = Reason::new("unreadable input", read_error_text(&e));
                    return self.broken(each, self.number + 1, self.number, reason, Vec::new());
                }
            };
            self.number += 1;
            let number = self.number;
            if number <= self.skip {
                continue;
            }
            let bytes: &[u8] = match line {
                Line::Complete if number == 1 && buf.starts_with(BOM) => &buf[BOM.len()..],
                Line::Complete => &buf,
                Line::TooLong(length) => {
                    if self.close_document(each, number - 1)?.is_break() {
                        return Ok(Break(()));
                    }
                    let mut detail = format!(
                        "{length} bytes, more than the limit of {} (--max-line-bytes)",
                        self.max_line
                    );
                    if buf.len() < length {
                        detail.push_str(&format!("; only its first {} bytes are kept", buf.len()));
                    }
                    let reason = Reason::new("line too long", detail);
                    let raw = buf.clone();
                    if self.broken(each, number, number, reason, raw)?.is_break() {
                        return Ok(Break(()));
                    }
                    continue;
                }
            };
            if let Some((start, doc)) = &mut self.document {
                if bytes == b"}" {
                    doc.extend_from_slice(b"\n}");
                    if self.close_document(each, number)?.is_break() {
                        return Ok(Break(()));
                    }
                    continue;
                }
                let indented = bytes.first().is_some_and(|b| *b == b' ' || *b == b'\t');
                if indented || bytes.is_empty() {
                    if doc.len() + bytes.len() > self.max_line {
                        let start = *start;
                        let reason = Reason::new(
                            "line too long",
                            format!(
                                "a JSON document of more than {} bytes (--max-line-bytes)",
                                self.max_line
                            ),
                        );
                        let raw = doc[..doc.len().min(KEPT_OF_LONG_LINE)].to_vec();
                        self.document = None;
                        if self.broken(each, start, number, reason, raw)?.is_break() {
                            return Ok(Break(()));
                        }
                    } else {
                        doc.push(b'\n');
                        doc.extend_from_slice(bytes);
                    }
                    continue;
                }
                // An unindented line inside a document: the document was cut short.
                let (start, doc) = self.document.take().expect("a document is open");
                if self.line(each, start, number - 1, &doc)?.is_break() {
                    return Ok(Break(()));
                }
            }
            if bytes == b"{" {
                self.document = Some((number, b"{".to_vec()));
                continue;
            }
            if is_blank(bytes) {
                continue;
            }
            if self.line(each, number, number, bytes)?.is_break() {
                return Ok(Break(()));
            }
        }
    }
}

fn read_error_text(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "the input ends in the middle of a gzip member (truncated file?)".to_owned()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(bytes: &[u8], max: usize) -> Vec<(u64, String)> {
        items_of(bytes, max, 0)
            .into_iter()
            .map(|(line, _, text)| (line, text))
            .collect()
    }

    /// (first line, last line, text) of each item, after `skip` settled lines.
    fn items_of(bytes: &[u8], max: usize, skip: u64) -> Vec<(u64, u64, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, bytes).unwrap();
        let mut out = Vec::new();
        read_all(
            &[Source::Path(path)],
            &[skip],
            max,
            &Unreadable::default(),
            |item| {
                match item {
                    Item::Line { origin, at, bytes } => out.push((
                        origin.line,
                        at.end_line,
                        String::from_utf8_lossy(bytes).into_owned(),
                    )),
                    Item::Broken {
                        origin, at, reason, ..
                    } => out.push((origin.line, at.end_line, format!("!{}", reason.kind))),
                }
                Ok(std::ops::ControlFlow::Continue(()))
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn items_say_where_they_end_and_settled_lines_are_passed_over() {
        let text = b"{\"a\":1}\n{\n  \"b\": 2\n}\n\n{\"c\":3}\n";
        let all = items_of(text, 100, 0);
        let ends: Vec<(u64, u64)> = all.iter().map(|(s, e, _)| (*s, *e)).collect();
        assert_eq!(ends, vec![(1, 1), (2, 4), (6, 6)]);
        let resumed = items_of(text, 100, 4);
        assert_eq!(resumed, vec![(6, 6, "{\"c\":3}".to_owned())]);
        assert!(items_of(text, 100, WHOLE_INPUT).is_empty());
    }

    #[test]
    fn positions_say_how_far_into_the_inputs_a_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&first, b"{\"a\":1}\r\n{\"b\":2}\n").unwrap();
        std::fs::write(&second, b"\n{\"c\":3}").unwrap();
        let sources = [Source::Path(first), Source::Path(second)];
        assert_eq!(total_size(&sources), Some(25));
        let mut offsets = Vec::new();
        read_all(&sources, &[1], 100, &Unreadable::default(), |item| {
            if let Item::Line { at, .. } = item {
                offsets.push(at.offset);
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        // The first input's first line is settled: its bytes still count.
        assert_eq!(offsets, [17, 25]);
        // A gzip input's size on disk says nothing of its lines.
        let zipped = dir.path().join("c.gz");
        std::fs::write(&zipped, gzip(b"{}\n")).unwrap();
        assert_eq!(total_size(&[Source::Path(zipped)]), None);
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn numbers_lines_and_tolerates_bom_crlf_and_blanks() {
        let got = lines_of(b"\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \n{\"b\":2}", 100);
        assert_eq!(got, vec![(1, "{\"a\":1}".into()), (4, "{\"b\":2}".into())]);
    }

    #[test]
    fn reads_concatenated_gzip_members() {
        let mut bytes = gzip(b"{\"a\":1}\n");
        bytes.extend(gzip(b"{\"b\":2}\n"));
        assert_eq!(
            lines_of(&bytes, 100),
            vec![(1, "{\"a\":1}".into()), (2, "{\"b\":2}".into())]
        );
    }

    #[test]
    fn a_truncated_gzip_member_is_reported_after_the_lines_before_it() {
        let whole = gzip(&b"{\"a\":1}\n".repeat(1000));
        let got = lines_of(&whole[..whole.len() - 10], 100);
        assert_eq!(got.last().unwrap().1, "!unreadable input");
        assert!(got.len() > 1);
    }

    #[test]
    fn overlong_lines_are_refused_and_reading_goes_on() {
        let mut bytes = vec![b'x'; 50];
        bytes.extend_from_slice(b"\nok\n");
        assert_eq!(
            lines_of(&bytes, 10),
            vec![(1, "!line too long".into()), (2, "ok".into())]
        );
        assert_eq!(
            lines_of(b"0123456789\n", 10),
            vec![(1, "0123456789".into())]
        );
        assert_eq!(
            lines_of(b"0123456789\r\n", 10),
            vec![(1, "0123456789".into())]
        );
    }

    #[test]
    fn pretty_printed_documents_are_one_item() {
        let got = lines_of(b"{\n  \"a\": {\n    \"b\": 1\n  }\n}\n{\"c\":1}\n", 100);
        assert_eq!(
            got,
            vec![
                (1, "{\n  \"a\": {\n    \"b\": 1\n  }\n}".into()),
                (6, "{\"c\":1}".into())
            ]
        );
        // A lone `{` followed by ordinary lines does not swallow them.
        let got = lines_of(b"{\n{\"c\":1}\n", 100);
        assert_eq!(got, vec![(1, "{".into()), (2, "{\"c\":1}".into())]);
    }

    #[test]
    fn missing_files_and_directories_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sources = [
            Source::Path(dir.path().join("nope")),
            Source::Path(dir.path().to_owned()),
        ];
        let unreadable = Unreadable::default();
        let mut items = 0;
        read_all(&sources, &[], 100, &unreadable, |_| {
            items += 1;
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!((items, unreadable.count()), (0, 2));
    }
}
