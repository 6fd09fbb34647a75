//! How an event ended, and what is kept of one that was not delivered.

use crate::event::Event;
use crate::event::reason::Reason;

/// What a rejected or failed event was: an event, an event's JSON text, or
/// text that never became one. The event is boxed: it is seldom kept, and
/// large, and every outcome would otherwise be as large.
#[derive(Debug)]
pub(crate) enum Content {
    Event(Box<Event>),
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
