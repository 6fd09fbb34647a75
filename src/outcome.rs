//! How an event ended, and what is kept of one that was not delivered.

use crate::event::Event;
use crate::reason::Reason;

/// What a rejected or failed event was: an event, an event's JSON text, or
/// text that never became one.
#[derive(Debug)]
pub(crate) enum Content {
    Event(Event),
    Json(Box<[u8]>),
    Raw(Vec<u8>),
}

/// How an event ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Sent,
    Skipped(Reason),
    Rejected(Reason, Content),
    Failed(Reason, Content),
}
