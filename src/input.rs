//! Input: files and standard input, gzip by magic bytes, lines with numbers and
//! a length limit. Memory stays flat: one line is held at a time.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;

use crate::event::Origin;
use crate::report::Reason;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BOM: &[u8] = b"\xEF\xBB\xBF";
const READ_BUFFER: usize = 256 * 1024;
/// How much of an overlong line the rejects file keeps.
const KEPT_OF_LONG_LINE: usize = 1024;

/// One input, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    Path(PathBuf),
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
        }
    }
}

/// What the reader hands on: a line's bytes (without line ending), or a problem
/// at a place in the input that must be accounted for.
pub enum Item<'a> {
    Line {
        origin: &'a Origin,
        bytes: &'a [u8],
    },
    Broken {
        origin: Origin,
        reason: Reason,
        raw: String,
    },
}

/// Reads every source in order and hands each non-blank line on. A source that
/// cannot be opened or read is reported as a `Broken` item and the next one is read.
pub fn read_all(
    sources: &[Source],
    max_line: usize,
    bytes_read: &Arc<AtomicU64>,
    mut each: impl FnMut(Item) -> anyhow::Result<std::ops::ControlFlow<()>>,
) -> anyhow::Result<()> {
    for source in sources {
        let label: Arc<str> = source.label().into();
        let reader = match open(source, bytes_read.clone()) {
            Ok(reader) => reader,
            Err(e) => {
                let origin = Origin {
                    source: label,
                    line: 0,
                };
                let reason = Reason::new("unreadable input", e.to_string());
                if each(Item::Broken {
                    origin,
                    reason,
                    raw: String::new(),
                })?
                .is_break()
                {
                    return Ok(());
                }
                continue;
            }
        };
        if read_lines(reader, label, max_line, &mut each)?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// The sum of the inputs' sizes, when every input is a regular file.
pub fn total_size(sources: &[Source]) -> Option<u64> {
    sources
        .iter()
        .map(|source| match source {
            Source::Path(path) => std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            Source::Stdin => None,
        })
        .sum()
}

/// Counts the bytes that pass, compressed or not, for the progress bar.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open(source: &Source, count: Arc<AtomicU64>) -> io::Result<Box<dyn BufRead>> {
    let inner: Box<dyn Read> = match source {
        Source::Stdin => Box::new(io::stdin().lock()),
        Source::Path(path) => {
            if path.is_dir() {
                return Err(io::Error::other("is a directory"));
            }
            Box::new(File::open(path)?)
        }
    };
    let mut raw = Counting { inner, count };
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
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(compressed),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, whole)))
    }
}

enum Line {
    /// A complete line, possibly the last one without a newline.
    Complete,
    /// Longer than the limit: only the start was kept, the rest was read and dropped.
    TooLong(usize),
    End,
}

/// Reads one line into `buf` (without its newline), keeping at most `max` bytes.
fn next_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
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
        if total <= max {
            let room = (max + 1).saturating_sub(buf.len()).min(chunk.len());
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
        return Ok(Line::End);
    }
    if buf.last() == Some(&b'\r') && total <= max + 1 {
        buf.pop();
        total -= 1;
    }
    if total > max {
        buf.truncate(KEPT_OF_LONG_LINE);
        return Ok(Line::TooLong(total));
    }
    Ok(Line::Complete)
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn read_lines(
    mut reader: Box<dyn BufRead>,
    source: Arc<str>,
    max_line: usize,
    each: &mut impl FnMut(Item) -> anyhow::Result<std::ops::ControlFlow<()>>,
) -> anyhow::Result<std::ops::ControlFlow<()>> {
    use std::ops::ControlFlow::{Break, Continue};
    let mut buf = Vec::with_capacity(4096);
    // A pretty-printed JSON document (a line holding only `{` up to one holding only `}`).
    let mut document: Option<(u64, Vec<u8>)> = None;
    let mut number = 0u64;
    loop {
        let line = match next_line(&mut *reader, &mut buf, max_line) {
            Ok(line) => line,
            Err(e) => {
                let origin = Origin {
                    source: source.clone(),
                    line: number + 1,
                };
                let reason = Reason::new("unreadable input", read_error_text(&e));
                if let Some((start, doc)) = document.take()
                    && emit_line(each, &source, start, &doc)?.is_break()
                {
                    return Ok(Break(()));
                }
                return each(Item::Broken {
                    origin,
                    reason,
                    raw: String::new(),
                });
            }
        };
        number += 1;
        let bytes: &[u8] = match line {
            Line::End => break,
            Line::TooLong(length) => {
                let origin = Origin {
                    source: source.clone(),
                    line: number,
                };
                let reason = Reason::new(
                    "line too long",
                    format!("{length} bytes, more than the limit of {max_line} (--max-line-bytes)"),
                );
                let raw = String::from_utf8_lossy(&buf).into_owned();
                if each(Item::Broken {
                    origin,
                    reason,
                    raw,
                })?
                .is_break()
                {
                    return Ok(Break(()));
                }
                continue;
            }
            Line::Complete if number == 1 && buf.starts_with(BOM) => &buf[BOM.len()..],
            Line::Complete => &buf,
        };
        if let Some((start, doc)) = &mut document {
            if bytes == b"}" {
                doc.extend_from_slice(b"\n}");
                let (start, doc) = document.take().expect("a document is open");
                if emit_line(each, &source, start, &doc)?.is_break() {
                    return Ok(Break(()));
                }
                continue;
            }
            let indented = bytes.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if indented || bytes.is_empty() {
                if doc.len() + bytes.len() > max_line {
                    let origin = Origin {
                        source: source.clone(),
                        line: *start,
                    };
                    let reason = Reason::new(
                        "line too long",
                        format!("a JSON document of more than {max_line} bytes (--max-line-bytes)"),
                    );
                    let raw = String::from_utf8_lossy(&doc[..doc.len().min(KEPT_OF_LONG_LINE)])
                        .into_owned();
                    document = None;
                    if each(Item::Broken {
                        origin,
                        reason,
                        raw,
                    })?
                    .is_break()
                    {
                        return Ok(Break(()));
                    }
                } else {
                    doc.push(b'\n');
                    doc.extend_from_slice(bytes);
                }
                continue;
            }
            // An unindented line inside a document: the document was cut short.
            let (start, doc) = document.take().expect("a document is open");
            if emit_line(each, &source, start, &doc)?.is_break() {
                return Ok(Break(()));
            }
        }
        if bytes == b"{" {
            document = Some((number, b"{".to_vec()));
            continue;
        }
        if is_blank(bytes) {
            continue;
        }
        let origin = Origin {
            source: source.clone(),
            line: number,
        };
        if each(Item::Line {
            origin: &origin,
            bytes,
        })?
        .is_break()
        {
            return Ok(Break(()));
        }
    }
    if let Some((start, doc)) = document {
        return emit_line(each, &source, start, &doc);
    }
    Ok(Continue(()))
}

fn emit_line(
    each: &mut impl FnMut(Item) -> anyhow::Result<std::ops::ControlFlow<()>>,
    source: &Arc<str>,
    line: u64,
    bytes: &[u8],
) -> anyhow::Result<std::ops::ControlFlow<()>> {
    let origin = Origin {
        source: source.clone(),
        line,
    };
    each(Item::Line {
        origin: &origin,
        bytes,
    })
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, bytes).unwrap();
        let mut out = Vec::new();
        read_all(&[Source::Path(path)], max, &Arc::default(), |item| {
            match item {
                Item::Line { origin, bytes } => {
                    out.push((origin.line, String::from_utf8_lossy(bytes).into_owned()))
                }
                Item::Broken { origin, reason, .. } => {
                    out.push((origin.line, format!("!{}", reason.kind)))
                }
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        out
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
    fn missing_files_and_directories_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let sources = [
            Source::Path(dir.path().join("nope")),
            Source::Path(dir.path().to_owned()),
        ];
        read_all(&sources, 100, &Arc::default(), |item| {
            if let Item::Broken { reason, .. } = item {
                out.push(reason.to_string());
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[1].contains("is a directory"), "{out:?}");
    }
}
