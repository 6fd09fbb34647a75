//! Where requests go: written out by a dry run, or sent over HTTP. Both sit
//! behind one trait, so a dry run goes through the very path a send takes.

pub mod dry_run;
pub mod http;

use std::time::Duration;

use crate::destination::Request;
use crate::event::Origin;

/// The `User-Agent` segrelay sends.
pub const USER_AGENT: &str = concat!("segrelay/", env!("CARGO_PKG_VERSION"));

/// What became of a request.
#[derive(Debug)]
pub enum Reply {
    /// A dry run wrote it out.
    Written,
    /// The server answered.
    Response(Response),
    /// No answer: the connection failed, timed out or was closed.
    Failed(SendError),
}

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

#[derive(Debug)]
pub struct SendError {
    pub message: String,
    pub retryable: bool,
}

pub trait Transport {
    /// Delivers one request holding the events from `events`, in order.
    fn deliver(
        &mut self,
        destination: &str,
        request: &Request,
        events: &[&Origin],
    ) -> anyhow::Result<Reply>;

    /// Flushes whatever is buffered; called once at the end of a run.
    fn finish(&mut self) -> anyhow::Result<()>;
}

/// `segrelay check`: everything up to the wire, and nothing written.
pub struct Discard;

impl Transport for Discard {
    fn deliver(&mut self, _: &str, _: &Request, _: &[&Origin]) -> anyhow::Result<Reply> {
        Ok(Reply::Written)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
