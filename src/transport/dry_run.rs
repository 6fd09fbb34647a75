//! The dry-run writer: each request as an NDJSON line, a curl command or raw HTTP.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use super::{Reply, Transport, USER_AGENT};
use crate::console::escape_controls;
use crate::destination::Destination;
use crate::event::Origin;
use crate::status::OutputFailed;
use crate::transport::wire::{HeaderValue, Request, write_json_str};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Ndjson,
    Curl,
    Http,
    Records,
}

pub(crate) struct DryRun {
    format: Format,
    /// Where the records are in a request's body (`--format records`).
    destination: Arc<dyn Destination>,
    show_secrets: bool,
    out: Box<dyn Write>,
    /// Where the output goes, for messages.
    target: String,
    requests: u64,
    line: Vec<u8>,
    /// The reader closed the output (`| head`): nothing more is written.
    closed: bool,
}

impl DryRun {
    pub(crate) fn new(
        format: Format,
        show_secrets: bool,
        out: Box<dyn Write>,
        target: String,
        destination: Arc<dyn Destination>,
    ) -> DryRun {
        DryRun {
            format,
            destination,
            show_secrets,
            out,
            target,
            requests: 0,
            line: Vec::with_capacity(64 * 1024),
            closed: false,
        }
    }

    /// A write's error, unless it is the reader closing the pipe: that is no
    /// failure (`segrelay send --dry-run | head` wants the first requests), but
    /// the end of the run, which stops reading and still writes its summary.
    fn closed_or(&mut self, written: std::io::Result<()>) -> anyhow::Result<()> {
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                crate::interrupt::close_output();
                Ok(())
            }
            other => {
                other.with_context(|| OutputFailed(format!("cannot write to {}", self.target)))
            }
        }
    }

    fn ndjson(&mut self, destination: &str, request: &Request, events: &[&Origin]) {
        let line = &mut self.line;
        line.extend_from_slice(b"{\"destination\":");
        write_json_str(line, destination);
        line.extend_from_slice(b",\"method\":");
        write_json_str(line, request.method);
        line.extend_from_slice(b",\"url\":");
        write_json_str(line, &request.url);
        line.extend_from_slice(b",\"headers\":{");
        for (i, header) in request.headers.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            write_json_str(line, &header.name.to_ascii_lowercase());
            line.push(b':');
            write_json_str(line, &shown(&header.value, self.show_secrets));
        }
        line.extend_from_slice(b"},\"body\":");
        if request.body.is_empty() {
            line.extend_from_slice(b"null");
        } else {
            line.extend_from_slice(&request.body);
        }
        line.extend_from_slice(b",\"events\":[");
        for (i, origin) in events.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(b"{\"source\":");
            write_json_str(line, origin.source);
            line.extend_from_slice(b",\"line\":");
            push_decimal(line, origin.line);
            line.push(b'}');
        }
        line.extend_from_slice(b"]}\n");
    }

    /// A line per event the request carries: its record, and where it travels.
    /// Requests made for no event (ensure_customers' lookups and creations, a
    /// backfill's opening) and bodiless ones (an identify's lookup) write nothing.
    fn records(&mut self, destination: &str, request: &Request, events: &[&Origin]) {
        let records = self.destination.records_in(&request.body);
        for (place, (origin, record)) in events.iter().zip(&records).enumerate() {
            let line = &mut self.line;
            line.extend_from_slice(b"{\"destination\":");
            write_json_str(line, destination);
            line.extend_from_slice(b",\"source\":");
            write_json_str(line, origin.source);
            line.extend_from_slice(b",\"line\":");
            line.extend_from_slice(origin.line.to_string().as_bytes());
            line.extend_from_slice(b",\"record\":");
            line.extend_from_slice(record.get().as_bytes());
            line.extend_from_slice(b",\"request\":{\"index\":");
            line.extend_from_slice(self.requests.to_string().as_bytes());
            line.extend_from_slice(b",\"method\":");
            write_json_str(line, request.method);
            line.extend_from_slice(b",\"url\":");
            write_json_str(line, &request.url);
            line.extend_from_slice(
                format!(",\"place\":{},\"events\":{}}}}}\n", place + 1, events.len()).as_bytes(),
            );
        }
    }

    fn curl(&mut self, destination: &str, request: &Request, events: &[&Origin]) {
        let mut text = String::new();
        if self.requests > 1 {
            text.push('\n');
        }
        // A comment ends at a newline: file names and settings' names may hold one.
        let comment = format!(
            "request {} to {destination}: {}",
            self.requests,
            span(events)
        );
        text.push_str(&format!("# {}\n", escape_controls(&comment)));
        let gzipped = request.gzips_body();
        if gzipped {
            // curl sends what it is given: the JSON goes through gzip on its way in.
            let json = String::from_utf8_lossy(&request.body);
            text.push_str(&format!(
                "printf '%s' {} | gzip -c |\n  ",
                single_quoted(&json)
            ));
        }
        text.push_str(&format!(
            "curl --request {} \\\n  --url {}",
            request.method,
            single_quoted(&request.url)
        ));
        for header in &request.headers {
            let value = match &header.value {
                HeaderValue::Secret { prefix, secret } if !self.show_secrets => {
                    match secret.shell_reference() {
                        Some(reference) => format!("\"{}: {prefix}{reference}\"", header.name),
                        None => single_quoted(&format!("{}: {prefix}***", header.name)),
                    }
                }
                value => single_quoted(&format!(
                    "{}: {}",
                    header.name,
                    shown(value, self.show_secrets)
                )),
            };
            text.push_str(&format!(" \\\n  --header {value}"));
        }
        if gzipped {
            text.push_str(" \\\n  --data-binary @-");
        } else if !request.body.is_empty() {
            text.push_str(" \\\n  --data-binary ");
            text.push_str(&single_quoted(&String::from_utf8_lossy(&request.body)));
        }
        text.push('\n');
        self.line.extend_from_slice(text.as_bytes());
    }

    fn http(&mut self, request: &Request) {
        // CR or LF in a URL or a value from the settings would start a header of its own.
        let (host, path) = request.host_and_target();
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            request.method,
            escape_controls(&path),
            escape_controls(&host)
        );
        for header in &request.headers {
            text.push_str(&format!(
                "{}: {}\r\n",
                header.name,
                escape_controls(&shown(&header.value, self.show_secrets))
            ));
        }
        let body = request.wire_body();
        text.push_str(&format!(
            "User-Agent: {USER_AGENT}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        self.line.extend_from_slice(text.as_bytes());
        self.line.extend_from_slice(&body);
        self.line.extend_from_slice(b"\n\n");
    }
}

impl Transport for DryRun {
    fn deliver(
        &mut self,
        destination: &str,
        request: &Request,
        events: &[&Origin],
    ) -> anyhow::Result<Reply> {
        // The reader has what it wanted; the run is stopping (see `finish`).
        if self.closed {
            return Ok(Reply::Written);
        }
        self.requests += 1;
        self.line.clear();
        match self.format {
            Format::Ndjson => self.ndjson(destination, request, events),
            Format::Curl => self.curl(destination, request, events),
            Format::Http => self.http(request),
            Format::Records => self.records(destination, request, events),
        }
        let written = self.out.write_all(&self.line);
        self.closed_or(written)?;
        Ok(Reply::Written)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.closed_or(flushed)
    }
}

/// Appends a number's decimal digits: one per event, without a `String` each.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A header's value as it may be shown: the secret only with --show-secrets.
fn shown(value: &HeaderValue, show_secrets: bool) -> String {
    match value {
        HeaderValue::Plain(text) => text.clone(),
        HeaderValue::Secret { prefix, secret } => match secret.value() {
            Some(key) if show_secrets => format!("{prefix}{key}"),
            _ => format!("{prefix}***"),
        },
    }
}

/// `'text'` for a POSIX shell, with single quotes spelled `'\''`.
fn single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `events.ndjson:1` or `events.ndjson:1 to events.ndjson:40`, with a count.
fn span(events: &[&Origin]) -> String {
    match events {
        [] => "no events".to_owned(),
        [one] => format!("1 event, {one}"),
        [first, .., last] => format!("{} events, {first} to {last}", events.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_are_written_as_their_text() {
        for n in [0, 7, 10, 99, 100, 1_234_567, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(single_quoted("it's"), "'it'\\''s'");
    }
}
