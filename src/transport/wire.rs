//! Requests as destinations build them and answers as transports read them:
//! what destination and transport share, with secrets kept apart so every
//! writer can hide them.

use std::borrow::Cow;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ureq::http::Uri;

use crate::settings::Secret;

/// Writes a JSON string (quoted and escaped) into a record being built. Most
/// strings need no escape; checking that over all bytes at once (a fold
/// without an early exit compiles to vector code) is several times faster than
/// serde_json's byte-by-byte writer, which writes the others.
pub fn write_json_str(out: &mut Vec<u8>, text: &str) {
    let needs_escape = text.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
    }
}

/// Everything but the unreserved characters (`A-Za-z0-9-._~`).
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id percent-encoded for a URL's path or query.
pub(crate) fn encoded(text: &str) -> String {
    utf8_percent_encode(text, RESERVED).to_string()
}

/// An HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<Header>,
    /// The body as meant: JSON, even when it travels gzipped (`wire_body`).
    pub body: Vec<u8>,
}

impl Request {
    /// Whether the body travels gzipped: the request says `Content-Encoding: gzip`.
    pub fn gzips_body(&self) -> bool {
        self.headers.iter().any(|header| {
            header.name.eq_ignore_ascii_case("Content-Encoding")
                && matches!(&header.value, HeaderValue::Plain(value) if value == "gzip")
        })
    }

    /// The body's bytes as they go on the wire.
    pub fn wire_body(&self) -> Cow<'_, [u8]> {
        if !self.gzips_body() {
            return Cow::Borrowed(&self.body);
        }
        use std::io::Write;
        // The fastest level: JSON records still shrink several times, for little CPU.
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(self.body.len() / 4),
            flate2::Compression::fast(),
        );
        encoder
            .write_all(&self.body)
            .expect("writing to a Vec cannot fail");
        Cow::Owned(encoder.finish().expect("writing to a Vec cannot fail"))
    }

    /// The URL's `host:port` and its `/path?query`, as an HTTP/1.1 request writes them.
    pub fn host_and_target(&self) -> (String, String) {
        match self.url.parse::<Uri>() {
            Ok(uri) => (
                uri.authority().map_or("", |a| a.as_str()).to_owned(),
                uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            ),
            Err(_) => (self.url.clone(), "/".to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Header {
    /// As sent on the wire (`X-API-KEY`); writers may lower-case it.
    pub name: &'static str,
    pub value: HeaderValue,
}

#[derive(Debug, Clone)]
pub enum HeaderValue {
    Plain(String),
    Secret {
        prefix: &'static str,
        secret: Secret,
    },
}

impl Header {
    pub fn plain(name: &'static str, value: impl Into<String>) -> Header {
        Header {
            name,
            value: HeaderValue::Plain(value.into()),
        }
    }

    pub fn secret(name: &'static str, prefix: &'static str, secret: &Secret) -> Header {
        Header {
            name,
            value: HeaderValue::Secret {
                prefix,
                secret: secret.clone(),
            },
        }
    }
}

/// A server's answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The start of the body on one line, for messages.
    pub fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match line.char_indices().nth(200) {
            Some((cut, _)) => format!("{}...", &line[..cut]),
            None => line,
        }
    }

    /// The server's id for the request, worth quoting to its support.
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the hand-written encoder did: every byte but the unreserved ones as `%XX`.
    #[test]
    fn encodes_all_but_unreserved_characters() {
        let text: String = (1..=0x7f_u8).map(char::from).chain(['é', '😀']).collect();
        let expected: String = text
            .bytes()
            .map(
                |b| match b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    true => char::from(b).to_string(),
                    false => format!("%{b:02X}"),
                },
            )
            .collect();
        assert_eq!(encoded(&text), expected);
    }

    #[test]
    fn splits_urls() {
        let target = |url: &str| {
            Request {
                method: "GET",
                url: url.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
            }
            .host_and_target()
        };
        assert_eq!(
            target("https://api.withorb.com/v1/ingest?limit=1"),
            (
                "api.withorb.com".to_owned(),
                "/v1/ingest?limit=1".to_owned()
            )
        );
        assert_eq!(
            target("http://127.0.0.1:8080"),
            ("127.0.0.1:8080".to_owned(), "/".to_owned())
        );
    }
}
