//! Where requests go: written out by a dry run, or sent over HTTP. Both sit
//! behind one trait, so a dry run goes through the very path a send takes.

pub(crate) mod wire;

pub(crate) mod dry_run;
pub(crate) mod http;
#[cfg(test)]
pub(crate) mod scripted;

use crate::event::Origin;
use crate::transport::wire::{Request, Response};

/// The `User-Agent` segrelay sends.
pub(crate) const USER_AGENT: &str = concat!("segrelay/", env!("CARGO_PKG_VERSION"));

/// What became of a request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A dry run wrote it out.
    Written,
    /// The server answered.
    Response(Response),
    /// No answer: the connection failed, timed out or was closed.
    Failed(SendError),
}

#[derive(Debug)]
pub(crate) struct SendError {
    pub message: String,
    pub retryable: bool,
    /// Fewer retries than the run allows: a name that does not resolve is
    /// tried once more (a resolver's passing fault), not six times.
    pub retries_at_most: Option<u32>,
}

pub(crate) trait Transport {
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
pub(crate) struct Discard;

impl Transport for Discard {
    fn deliver(&mut self, _: &str, _: &Request, _: &[&Origin]) -> anyhow::Result<Reply> {
        Ok(Reply::Written)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
