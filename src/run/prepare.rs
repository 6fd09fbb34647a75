//! Parsing, filtering and translating: the costly part of a run, done on threads
//! beside the one that batches, sends and settles, and handed back in input order.
//!
//! Lines are copied into chunks; each chunk goes to whichever thread is free, and
//! the chunks come back in the order they were read, so everything after this
//! stage sees the same sequence a single thread would have produced.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::{Mutex, mpsc};

use jiff::Timestamp;

use crate::destination::{Destination, Payload, Stream, Translation};
use crate::event::reason::Reason;
use crate::event::time::utc_millis_text;
use crate::event::{
    BadLine, Event, Mention, Notes, Origin, Wanted, may_hold_several, parse_line_wanted,
};
use crate::input::filter::Filter;
use crate::input::{self, Item, Position, Source, Unread};
use crate::interrupt;
use crate::report::outcome::Content;
use crate::run::dedupe::{self, Prints};

/// One event, ready for the ledger.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub origin: Origin,
    pub at: Position,
    /// The last event of its line: only then may a checkpoint pass the line.
    pub ends_line: bool,
    pub ready: Ready,
    /// What reading the event's time found, counted where the event is settled.
    pub notes: Notes,
}

/// What became of an event before anything was sent.
#[derive(Debug)]
pub(crate) enum Ready {
    /// Translated, for a batch. `original` is the event's JSON, kept for the
    /// rejects file should the destination refuse it; `prints`, for a usage
    /// record, what tells a repeat of its key.
    Translated {
        payload: Payload,
        original: Box<[u8]>,
        prints: Option<Prints>,
    },
    /// Translated, but its time is outside this pass's window: another pass sends it.
    OtherWindow,
    Skipped(Reason),
    Rejected(Reason, Content),
}

/// What each thread needs to prepare lines: pure functions of the line.
pub(crate) struct Preparer<'a> {
    pub destination: &'a dyn Destination,
    pub filter: &'a Filter,
    /// Only events with a time in [start, end) go in this pass's batches.
    pub window: Option<(Timestamp, Timestamp)>,
    /// Events timed after this are rejected: too far in the future.
    pub rejects_after: Option<Timestamp>,
    pub wanted: Wanted,
    /// Usage records are fingerprinted for the run's window of idempotency
    /// keys: only a pass that settles them needs it, not a scan.
    pub fingerprints: bool,
}

/// Where the lines come from.
pub(crate) struct Reading<'a> {
    pub sources: &'a [Source],
    /// Lines of each input a checkpoint says are settled.
    pub settled: &'a [u64],
    pub max_line_bytes: usize,
    /// Where inputs that cannot be opened are recorded.
    pub unreadable: &'a input::Unreadable,
    /// Threads that prepare lines (at least 1).
    pub threads: usize,
}

/// A chunk is handed on once it holds this many lines or bytes.
const CHUNK_LINES: usize = 256;
const CHUNK_BYTES: usize = 192 * 1024;

/// How `each` stops the reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStop {
    /// The lines read ahead are dropped unseen, as if never read.
    Here,
    /// The line `each` was given and every one after it are counted, not
    /// prepared: what the run did not read.
    Count,
}

/// Reads every line, prepares it on `reading.threads` threads, and hands each
/// line's events to `each` in input order. `each` returning `Break` (or an
/// error) stops the reading: with `ReadStop::Here`, lines read past that point are
/// dropped unseen, as if never read; with `ReadStop::Count`, the rest of the input
/// is read through without being parsed, and counted.
pub(crate) fn read_all(
    reading: &Reading,
    preparer: &Preparer,
    each: impl FnMut(&mut dyn Iterator<Item = Prepared>) -> anyhow::Result<ControlFlow<ReadStop>>,
) -> anyhow::Result<Option<Unread>> {
    read_lines(reading, preparer, |_| true, each)
}

/// `read_all`, preparing only the lines `admits`: the others are read past,
/// and handed on as lines without events.
fn read_lines(
    reading: &Reading,
    preparer: &Preparer,
    admits: impl Fn(&[u8]) -> bool,
    mut each: impl FnMut(&mut dyn Iterator<Item = Prepared>) -> anyhow::Result<ControlFlow<ReadStop>>,
) -> anyhow::Result<Option<Unread>> {
    let threads = reading.threads.max(1);
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let queue = &queue;
            scope.spawn(move || work(queue, preparer));
        }
        let mut feeder = Feeder {
            jobs,
            pending: VecDeque::new(),
            spare: Vec::new(),
            current: Chunk::default(),
            in_flight: 2 * threads + 1,
        };
        let mut stopped = false;
        let mut counting: Option<Counting> = None;
        input::read_all(
            reading.sources,
            reading.settled,
            reading.max_line_bytes,
            reading.unreadable,
            |item| {
                if let Some(counting) = &mut counting {
                    return Ok(counting.line());
                }
                feeder.current.push(item, &admits);
                if feeder.current.is_full() {
                    feeder.submit();
                    while feeder.pending.len() > feeder.in_flight {
                        match feeder.hand_on(&mut each)? {
                            ControlFlow::Continue(()) => {}
                            ControlFlow::Break((ReadStop::Here, _)) => {
                                stopped = true;
                                return Ok(ControlFlow::Break(()));
                            }
                            ControlFlow::Break((ReadStop::Count, left)) => {
                                counting = Some(Counting::start(left + feeder.abandon(), reading));
                                break;
                            }
                        }
                    }
                }
                Ok(ControlFlow::Continue(()))
            },
        )?;
        if !stopped && counting.is_none() {
            feeder.submit();
            while !feeder.pending.is_empty() {
                match feeder.hand_on(&mut each)? {
                    ControlFlow::Continue(()) => {}
                    ControlFlow::Break((ReadStop::Here, _)) => break,
                    ControlFlow::Break((ReadStop::Count, left)) => {
                        counting = Some(Counting::start(left + feeder.abandon(), reading));
                        break;
                    }
                }
            }
        }
        // Dropping the feeder closes the queue: the threads end, and the scope joins them.
        Ok(counting.map(|counting| counting.end(reading)))
    })
}

/// The count of the lines a stopped run did not read, going on as the rest
/// of the input is read through: lines found, never parsed.
struct Counting {
    unread: Unread,
    /// Inputs that could not be opened when the count began.
    unreadable: u64,
}

impl Counting {
    fn start(lines: u64, reading: &Reading) -> Counting {
        Counting {
            unread: Unread {
                lines,
                complete: true,
            },
            unreadable: reading.unreadable.count(),
        }
    }

    fn line(&mut self) -> ControlFlow<()> {
        if interrupt::requested() {
            self.unread.complete = false;
            return ControlFlow::Break(());
        }
        self.unread.lines += 1;
        ControlFlow::Continue(())
    }

    fn end(mut self, reading: &Reading) -> Unread {
        // With --fail-fast, an input that cannot be opened ends the reading.
        if reading.unreadable.fail_fast && reading.unreadable.count() > self.unreadable {
            self.unread.complete = false;
        }
        self.unread
    }
}

/// Reads the input ahead of a pass that will read it the same way, sending
/// nothing: the lines that may mention `word` (in any case, as call types
/// are read) are prepared as the pass
/// prepares them (on as many threads), and their events handed to `each`
/// with their place among the line's events; the others are read past,
/// unparsed. Stops after `limit` events as the pass does, counting a line
/// that cannot be an envelope as one event without parsing it.
pub(crate) fn look_ahead(
    reading: &Reading,
    preparer: &Preparer,
    word: &str,
    limit: Option<u64>,
    mut each: impl FnMut(Prepared, usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mention = Mention::in_any_case(word);
    let parses = |line: &[u8]| mention.in_line(line) || (limit.is_some() && may_hold_several(line));
    let reached = |read: u64| limit.is_some_and(|limit| read >= limit);
    let mut read = 0;
    read_lines(reading, preparer, parses, |line| {
        if interrupt::stop_reading() {
            return Ok(ControlFlow::Break(ReadStop::Here));
        }
        let mut events = 0;
        for (index, event) in line.enumerate() {
            if reached(read) {
                return Ok(ControlFlow::Break(ReadStop::Here));
            }
            read += 1;
            events += 1;
            each(event, index)?;
        }
        // Read past: one event, and not one that matters here.
        if events == 0 {
            if reached(read) {
                return Ok(ControlFlow::Break(ReadStop::Here));
            }
            read += 1;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(())
}

/// Copied lines, and what reading them found.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

enum Entry {
    Line {
        origin: Origin,
        at: Position,
        start: usize,
        end: usize,
    },
    Broken {
        origin: Origin,
        at: Position,
        reason: Reason,
        raw: Vec<u8>,
    },
    /// A line read past unparsed: no events.
    Passed,
}

impl Chunk {
    fn push(&mut self, item: Item, admits: impl Fn(&[u8]) -> bool) {
        match item {
            Item::Line { bytes, .. } if !admits(bytes) => self.entries.push(Entry::Passed),
            Item::Line { origin, at, bytes } => {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(bytes);
                self.entries.push(Entry::Line {
                    origin: *origin,
                    at,
                    start,
                    end: self.bytes.len(),
                });
            }
            Item::Broken {
                origin,
                at,
                reason,
                raw,
            } => self.entries.push(Entry::Broken {
                origin,
                at,
                reason,
                raw,
            }),
        }
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= CHUNK_LINES || self.bytes.len() >= CHUNK_BYTES
    }
}

struct Job {
    chunk: Chunk,
    reply: mpsc::SyncSender<Done>,
}

/// A prepared chunk: its events, where each line's events end, and the
/// chunk's buffers back for reuse.
struct Done {
    prepared: Vec<Prepared>,
    line_ends: Vec<usize>,
    chunk: Chunk,
}

struct Feeder {
    jobs: mpsc::Sender<Job>,
    /// Replies, in the order the chunks were read, with the lines of each chunk.
    pending: VecDeque<(mpsc::Receiver<Done>, u64)>,
    spare: Vec<Chunk>,
    current: Chunk,
    /// Chunks out at once at most, which bounds the memory a run holds.
    in_flight: usize,
}

impl Feeder {
    fn submit(&mut self) {
        if self.current.entries.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.current, self.spare.pop().unwrap_or_default());
        let lines = chunk.entries.len() as u64;
        let (reply, done) = mpsc::sync_channel(1);
        self.jobs
            .send(Job { chunk, reply })
            .expect("the preparing threads outlive the feeder");
        self.pending.push_back((done, lines));
    }

    /// Drops the chunks not handed on, and says how many lines they held.
    /// A thread preparing one finds nobody waiting for it, and ends.
    fn abandon(&mut self) -> u64 {
        let lines = self.pending.drain(..).map(|(_, lines)| lines).sum::<u64>();
        let current = self.current.entries.len() as u64;
        self.current.entries.clear();
        self.current.bytes.clear();
        lines + current
    }

    /// Hands the oldest chunk's lines on, one line at a time. When `each`
    /// stops, says how and how many lines of the chunk were not handed on
    /// (the one it stopped at included).
    fn hand_on(
        &mut self,
        each: &mut impl FnMut(
            &mut dyn Iterator<Item = Prepared>,
        ) -> anyhow::Result<ControlFlow<ReadStop>>,
    ) -> anyhow::Result<ControlFlow<(ReadStop, u64)>> {
        let (done, _) = self.pending.pop_front().expect("a chunk in flight");
        let Done {
            prepared,
            line_ends,
            mut chunk,
        } = done.recv().expect("a preparing thread answers every chunk");
        chunk.bytes.clear();
        chunk.entries.clear();
        self.spare.push(chunk);
        let lines = line_ends.len();
        let mut events = prepared.into_iter();
        let mut start = 0;
        for (index, end) in line_ends.into_iter().enumerate() {
            let mut line = events.by_ref().take(end - start);
            start = end;
            if let ControlFlow::Break(stop) = each(&mut line)? {
                return Ok(ControlFlow::Break((stop, (lines - index) as u64)));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>, preparer: &Preparer) {
    let mut parsed = Vec::new();
    loop {
        let job = queue.lock().expect("the job queue").recv();
        let Ok(Job { chunk, reply }) = job else {
            return;
        };
        let Chunk { bytes, mut entries } = chunk;
        let mut prepared = Vec::with_capacity(entries.len());
        let mut line_ends = Vec::with_capacity(entries.len());
        for entry in entries.drain(..) {
            match entry {
                Entry::Line {
                    origin,
                    at,
                    start,
                    end,
                } => preparer.line(&bytes[start..end], &origin, at, &mut parsed, &mut prepared),
                Entry::Broken {
                    origin,
                    at,
                    reason,
                    raw,
                } => prepared.push(Prepared {
                    origin,
                    at,
                    ends_line: true,
                    ready: Ready::Rejected(reason, Content::Raw(raw)),
                    notes: Notes::default(),
                }),
                Entry::Passed => {}
            }
            line_ends.push(prepared.len());
        }
        let chunk = Chunk { bytes, entries };
        // The reader is gone (the run stopped): nothing is left to do.
        if reply
            .send(Done {
                prepared,
                line_ends,
                chunk,
            })
            .is_err()
        {
            return;
        }
    }
}

impl Preparer<'_> {
    /// Prepares one line's events (one, or an envelope's items).
    fn line(
        &self,
        bytes: &[u8],
        origin: &Origin,
        at: Position,
        parsed: &mut Vec<Result<Event, BadLine>>,
        out: &mut Vec<Prepared>,
    ) {
        parse_line_wanted(bytes, origin, &self.wanted, |result| parsed.push(result));
        let last = parsed.len().saturating_sub(1);
        for (i, result) in parsed.drain(..).enumerate() {
            let (origin, ready, notes) = match result {
                Ok(event) => {
                    let origin = event.origin;
                    let (ready, notes) = self.event(event);
                    (origin, ready, notes)
                }
                Err(bad) => (
                    bad.origin,
                    Ready::Rejected(bad.reason, Content::Raw(bad.raw)),
                    Notes::default(),
                ),
            };
            out.push(Prepared {
                origin,
                at,
                ends_line: i == last,
                ready,
                notes,
            });
        }
    }

    /// What becomes of an event, and what reading its time found (by the
    /// filters or by translation; nothing when neither read it).
    fn event(&self, event: Event) -> (Ready, Notes) {
        if let Some(reason) = self.filter.skip_reason(&event) {
            return (Ready::Skipped(reason), event.notes());
        }
        let translation = self.destination.translate(&event);
        let notes = event.notes();
        (self.ready(event, translation), notes)
    }

    fn ready(&self, event: Event, translation: Translation) -> Ready {
        match translation {
            Translation::Record(payload) => {
                if let (Some(limit), Some(time)) = (self.rejects_after, payload.time)
                    && time > limit
                {
                    return Ready::Rejected(self.in_the_future(time, limit), whole_event(event));
                }
                if let Some((start, end)) = self.window {
                    let time = payload.time.expect("a usage record has a time");
                    if time < start || time >= end {
                        return Ready::OtherWindow;
                    }
                }
                let original = match event.into_line() {
                    Ok(line) => line.into_boxed_bytes(),
                    Err(event) => event.to_json().into_bytes().into_boxed_slice(),
                };
                // Here, on the preparing threads, rather than where records are batched.
                let prints = (self.fingerprints && payload.stream == Stream::Usage)
                    .then(|| dedupe::prints(&payload.key, &payload.json));
                Ready::Translated {
                    payload,
                    original,
                    prints,
                }
            }
            Translation::Skip(reason) => Ready::Skipped(reason),
            Translation::Reject(reason) => Ready::Rejected(reason, whole_event(event)),
        }
    }
}

impl Preparer<'_> {
    fn in_the_future(&self, time: Timestamp, limit: Timestamp) -> Reason {
        let ahead = self
            .destination
            .ingest_window()
            .map_or(jiff::SignedDuration::ZERO, |window| window.ahead);
        Reason::new(
            "time in the future",
            format!(
                "timestamp {} is later than {}: {} refuses events more than {} after the time it receives them",
                utc_millis_text(time),
                utc_millis_text(limit),
                self.destination.kind().display_name(),
                crate::run::ingest_window::span_text(ahead)
            ),
        )
    }
}

/// What the rejects file keeps of an event: the line's text when the event is
/// the whole line (its parsed keys may be only those translation reads).
fn whole_event(event: Event) -> Content {
    match event.into_line() {
        Ok(line) => Content::Json(line.into_boxed_bytes()),
        Err(event) => Content::Event(event),
    }
}
