//! The one path from input lines to delivered requests, shared by `send`,
//! `send --dry-run` and `check`: read, translate, batch, deliver, settle.
//!
//! Events are settled in input order through a ledger, whatever order batches
//! come back in: the report, the rejects file and the checkpoint always
//! describe a prefix of the input, which is what makes a resume exact.

#[cfg(test)]
mod tests;
mod workers;

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use jiff::Timestamp;

use crate::checkpoint::Checkpoint;
use crate::console::Verbosity;
use crate::delivery::{Batched, Courier, Delivered, RequestContext};
use crate::destination::gate::{EventAt, Gated, Gating};
use crate::destination::{Destination, Gate, Payload, Stream};
use crate::event::reason::Reason;
use crate::event::{Origin, Wanted};
use crate::input::Unread;
use crate::input::{Position, Source};
use crate::interrupt;
use crate::report::outcome::{Content, Outcome};
use crate::report::{Report, Totals};
use crate::run::dedupe::Dedupe;
use crate::run::ingest_window::OutsideWindow;
use crate::run::prepare::{self, Prepared, Preparer, ReadStop, Reading, Ready};
use crate::transport::Transport;
use workers::Workers;

// What a pass reads and how: validated by `config`, read here.
pub(crate) use crate::config::Options;

impl Options {
    /// What the preparing threads need: the destination, the filters and a pass's window.
    fn preparer<'d>(&'d self, destination: &'d dyn Destination, pass: &Pass) -> Preparer<'d> {
        Preparer {
            destination,
            filter: &self.filter,
            window: pass.window,
            rejects_after: pass.rejects_after,
            wanted: Wanted::with_paths(destination.paths())
                .reading_whole_objects(destination.reads_whole_objects()),
            fingerprints: false,
        }
    }

    /// The input to read, past the lines a checkpoint says are `settled`.
    fn reading<'r>(&'r self, settled: &'r [u64]) -> Reading<'r> {
        Reading {
            sources: &self.sources,
            settled,
            max_line_bytes: self.max_line_bytes,
            unreadable: &self.unreadable,
            threads: self.threads,
        }
    }
}

/// One pass over the input. A plain run is one pass; a destination's backfill
/// makes a pass per time window, each sending only its window's events.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pass {
    /// Only events translated with a time in [start, end) are sent in this pass.
    pub window: Option<(Timestamp, Timestamp)>,
    /// This pass settles the events no window sends (skipped and rejected ones).
    pub settles_skipped_and_rejected: bool,
    /// Records timed after this are rejected: too far in the future for the
    /// destination, in a backfill or not.
    pub rejects_after: Option<Timestamp>,
    /// The pass reads past the lines the checkpoint calls settled, and moves it.
    pub follows_checkpoint: bool,
    /// What the pass's requests carry (the backfill it fills).
    pub context: RequestContext,
}

/// What every pass of a run shares, built once for the run.
pub(crate) struct Pipeline {
    pub options: Options,
    pub courier: Arc<Courier>,
    pub dispatch: Dispatch,
    pub report: Report,
    pub checkpoint: Option<Checkpoint>,
    /// What the destination does with each record before its batch, if anything.
    pub gate: Option<Box<dyn Gate>>,
    /// The usage records' keys sent or queued, across the passes: a repeat is skipped.
    pub dedupe: Dedupe,
}

/// How a pass ended.
#[derive(Debug)]
pub(crate) struct PassEnd {
    /// Why the destination stopped the run, if it did.
    pub aborted: Option<String>,
    /// Every event of the pass is settled and none failed: the pass need not run again.
    pub complete: bool,
}

/// Outcomes waiting behind an earlier event still in a batch are held at most
/// this long before the batches are sent to let them through.
const LEDGER_LIMIT: usize = 50_000;

/// Where batches go: delivered on this thread, or by a pool of threads.
pub(crate) enum Dispatch {
    Inline(Box<dyn Transport>),
    Pool {
        size: usize,
        make: Box<dyn Fn() -> Box<dyn Transport + Send>>,
        /// For requests outside the pool (backfills, lookups).
        control: Box<dyn Transport>,
    },
}

impl Dispatch {
    /// The transport for single requests made between batches.
    pub(crate) fn control(&mut self) -> &mut dyn Transport {
        match self {
            Dispatch::Inline(transport) => transport.as_mut(),
            Dispatch::Pool { control, .. } => control.as_mut(),
        }
    }

    pub(crate) fn finish(&mut self) -> anyhow::Result<()> {
        self.control().finish()
    }
}

/// An event's place in the ledger.
struct Slot {
    origin: Origin,
    at: Position,
    /// The last event of its line: only then may a checkpoint pass the line.
    ends_line: bool,
    /// None while the event waits in a batch.
    outcome: Option<Outcome>,
}

/// One pass in progress: its batches, its ledger of events waiting to settle in
/// input order, and where settled events go.
struct Flow<'a> {
    courier: Arc<Courier>,
    report: &'a mut Report,
    checkpoint: Option<&'a mut Checkpoint>,
    batch_size: usize,
    fail_fast: bool,
    pass: &'a Pass,
    /// Batches being filled, one per stream, in the order streams first appeared.
    batches: Vec<(Stream, Vec<Batched>)>,
    ledger: VecDeque<Slot>,
    /// The sequence number of the ledger's first slot.
    first_seq: u64,
    /// The last fully settled line. The checkpoint stops moving before the
    /// first failed event (`frozen`), so a resume tries it again.
    settled_at: Option<Position>,
    /// `settled_at` moved since the checkpoint was last written.
    unsaved: bool,
    /// The counts and the rejects file's length when `settled_at` last moved.
    settled_counts: (Totals, Option<u64>),
    frozen: bool,
    stopped_early: bool,
    /// The first event of the pass that failed: where a resume starts again.
    first_failed: Option<Origin>,
    /// Where the reading stopped, when an abort or Ctrl-C stopped it: the
    /// first line not read, and how.
    stop: Option<(Option<Origin>, ReadStop)>,
    /// Set once the pass is settled (`finish`): whether it is complete.
    finished: Option<bool>,
    workers: Option<Workers>,
    dispatch: &'a mut Dispatch,
    gate: Option<&'a mut dyn Gate>,
    dedupe: &'a mut Dedupe,
    /// A plain run to a destination whose ingest refuses some times: counts them.
    timing: Option<OutsideWindow>,
}

/// When the checkpoint is written, once the settled point moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Save {
    /// When requests settled since the last write, else at most about once a
    /// second (see `checkpoint::saving`): a crash in between only means the
    /// lines settled without requests since then are read and settled again
    /// by the resume, and the rejects file is cut back to match.
    IfDue,
    /// Now: the pass stopped early.
    Now,
    /// Now, every input settled: the pass is complete.
    Complete,
}

impl Pipeline {
    /// Makes one pass over the whole input.
    pub(crate) fn pass(&mut self, pass: &Pass) -> anyhow::Result<PassEnd> {
        let Pipeline {
            options,
            courier,
            dispatch,
            report,
            checkpoint,
            gate,
            dedupe,
        } = self;
        let checkpoint = checkpoint.as_mut().filter(|_| pass.follows_checkpoint);
        let settled = checkpoint
            .as_ref()
            .map(|c| c.settled_lines())
            .unwrap_or_default();
        let workers = match dispatch {
            Dispatch::Inline(_) => None,
            Dispatch::Pool { size, make, .. } => Some(Workers::start(
                courier,
                &pass.context,
                (0..*size).map(|_| make()).collect(),
            )),
        };
        let settled_counts = (report.totals(), report.rejects_length());
        let mut flow = Flow {
            courier: courier.clone(),
            report,
            checkpoint,
            batch_size: options.batch_size,
            fail_fast: options.fail_fast,
            pass,
            batches: Vec::new(),
            ledger: VecDeque::new(),
            first_seq: 0,
            settled_at: None,
            unsaved: false,
            settled_counts,
            frozen: false,
            stopped_early: false,
            first_failed: None,
            stop: None,
            finished: None,
            workers,
            dispatch,
            gate: gate.as_mut().map(|gate| gate.as_mut() as &mut dyn Gate),
            dedupe,
            // A backfill's passes send each event where its time belongs.
            timing: match pass.window {
                None => OutsideWindow::start(courier.destination.as_ref()),
                Some(_) => None,
            },
        };
        let preparer = Preparer {
            fingerprints: true,
            ..options.preparer(courier.destination.as_ref(), pass)
        };
        let read = prepare::read_all(&options.reading(&settled), &preparer, |line| {
            if interrupt::stop_reading() {
                return Ok(flow.stop_before(line, ReadStop::Here));
            }
            // After an abort nothing more could be sent: the rest is counted, not read.
            if flow.courier.aborted().is_some() {
                let stop = flow.stop_before(line, ReadStop::Count);
                // Settled first: a count of a long input may be cut short.
                flow.finish()?;
                flow.say_counting();
                return Ok(stop);
            }
            let mut control = ControlFlow::Continue(());
            for (index, prepared) in line.into_iter().enumerate() {
                if options
                    .limit
                    .is_some_and(|limit| flow.report.summary().read >= limit)
                {
                    control = ControlFlow::Break(ReadStop::Here);
                    break;
                }
                if flow.settle_prepared(prepared, index)?.is_break() {
                    control = ControlFlow::Break(ReadStop::Here);
                }
            }
            flow.after_line()?;
            if control.is_break() {
                flow.stopped_early = true;
            }
            Ok(control)
        });
        // Whatever stopped the reading, what was read is settled before returning.
        let finished = flow.finish();
        let unread = read?;
        let complete = finished?;
        flow.tell_stop(unread);
        Ok(PassEnd {
            aborted: flow.courier.aborted(),
            complete,
        })
    }
}

impl Pipeline {
    /// Reads the input ahead of the pass, sending nothing: past the lines the
    /// checkpoint says are settled, up to `--limit`, as the pass will read
    /// it. The records translated from the lines that may mention `word` (a
    /// lowercase word such as a call type) are handed on, each with where it
    /// is and its place among its line's events. False, reading nothing, when
    /// an input is standard input, which cannot be read twice.
    pub(crate) fn look_ahead(
        &self,
        word: &str,
        mut each: impl FnMut(Position, usize, Payload) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        let options = &self.options;
        if options.sources.contains(&Source::Stdin) {
            return Ok(false);
        }
        let settled = self
            .checkpoint
            .as_ref()
            .map(|c| c.settled_lines())
            .unwrap_or_default();
        let reading = options.reading(&settled);
        let preparer = options.preparer(self.courier.destination.as_ref(), &Pass::default());
        prepare::look_ahead(
            &reading,
            &preparer,
            word,
            options.limit,
            |prepared, index| match prepared.ready {
                Ready::Translated { payload, .. } => each(prepared.at, index, payload),
                _ => Ok(()),
            },
        )?;
        Ok(true)
    }
}

/// The events of one UTC day (or of another stretch of time): what a
/// destination's backfill cuts its windows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DaySpan {
    pub first: Timestamp,
    pub last: Timestamp,
    pub events: u64,
}

/// Reads the whole input, prepared as a run prepares it (on `options.threads`
/// threads), and hands on each event the destination would receive (after the
/// filters): where it came from, and its translation. Sends nothing.
pub(crate) fn scan(
    options: &Options,
    destination: &dyn Destination,
    mut each: impl FnMut(Origin, Payload),
) -> anyhow::Result<()> {
    let preparer = options.preparer(destination, &Pass::default());
    prepare::read_all(&options.reading(&[]), &preparer, |line| {
        if interrupt::stop_reading() {
            return Ok(ControlFlow::Break(ReadStop::Here));
        }
        for prepared in line {
            if let Ready::Translated { payload, .. } = prepared.ready {
                each(prepared.origin, payload);
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(())
}

impl Flow<'_> {
    fn push(
        &mut self,
        origin: Origin,
        at: Position,
        ends_line: bool,
        outcome: Option<Outcome>,
    ) -> u64 {
        self.report.count_read();
        let seq = self.first_seq + self.ledger.len() as u64;
        self.ledger.push_back(Slot {
            origin,
            at,
            ends_line,
            outcome,
        });
        seq
    }

    /// `index`: the event's place among the events of its line.
    fn settle_prepared(
        &mut self,
        prepared: Prepared,
        index: usize,
    ) -> anyhow::Result<ControlFlow<()>> {
        let Prepared {
            origin,
            at,
            ends_line,
            ready,
            notes,
        } = prepared;
        // Counted where the event is settled: once, whichever pass settles it.
        let settles_here = match &ready {
            Ready::Translated { .. } => true,
            Ready::OtherWindow => false,
            Ready::Skipped(_) | Ready::Rejected(..) => self.pass.settles_skipped_and_rejected,
        };
        if settles_here {
            self.report.time_notes(notes, &origin);
        }
        let (payload, original, prints) = match ready {
            Ready::Translated {
                payload,
                original,
                prints,
            } => (payload, original, prints),
            Ready::OtherWindow => return Ok(ControlFlow::Continue(())),
            // Settled by the pass that settles what no window sends.
            Ready::Skipped(_) | Ready::Rejected(..) if !self.pass.settles_skipped_and_rejected => {
                return Ok(ControlFlow::Continue(()));
            }
            Ready::Skipped(reason) => {
                self.push(origin, at, ends_line, Some(Outcome::Skipped(reason)));
                return Ok(ControlFlow::Continue(()));
            }
            Ready::Rejected(reason, content) => {
                return Ok(self.reject(origin, at, ends_line, reason, content));
            }
        };
        let stream = payload.stream;
        // A usage record whose key went before: skipped, whichever batch that one is in.
        if let Some(prints) = prints
            && let Some(reason) = self.dedupe.duplicate(&payload.key, prints, origin)
        {
            self.push(origin, at, ends_line, Some(Outcome::Skipped(reason)));
            return Ok(ControlFlow::Continue(()));
        }
        if let Some(notes) = &payload.notes {
            if let Some(numeric_text) = &notes.numeric_text {
                self.report.numeric_text(numeric_text);
            }
            if let Some(rewrite) = &notes.rewritten {
                self.report.rewritten(rewrite, &origin);
            }
        }
        if let Some(gate) = self.gate.as_deref_mut() {
            let gating = Gating {
                courier: &self.courier,
                transport: self.dispatch.control(),
                report: self.report,
            };
            match gate.admit(&payload, &origin, EventAt::new(at, index), gating)? {
                Gated::Through => {}
                Gated::Sent => {
                    self.push(origin, at, ends_line, Some(Outcome::Sent));
                    return Ok(ControlFlow::Continue(()));
                }
                Gated::Rejected(reason) => {
                    let content = Content::Json(original);
                    return Ok(self.reject(origin, at, ends_line, reason, content));
                }
                Gated::Failed(reason) => {
                    let outcome = Outcome::Failed(reason, Content::Json(original));
                    self.push(origin, at, ends_line, Some(outcome));
                    return Ok(ControlFlow::Continue(()));
                }
            }
        }
        // Usage only: two records of another stream with one key are two updates, not a repeat.
        if let Some(prints) = prints {
            self.dedupe.remember(prints, origin);
        }
        if let (Some(timing), Some(time)) = (&mut self.timing, payload.time) {
            timing.count(time, &origin, self.report.console());
        }
        let seq = self.push(origin, at, ends_line, None);
        let limit = self
            .courier
            .destination
            .batch_limit(stream, self.batch_size);
        let batch = self.batch(stream);
        batch.push(Batched {
            payload,
            origin,
            original,
            seq,
        });
        if batch.len() >= limit {
            self.flush(stream)?;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Settles a rejected event, kept whole for the rejects file.
    fn reject(
        &mut self,
        origin: Origin,
        at: Position,
        ends_line: bool,
        reason: Reason,
        content: Content,
    ) -> ControlFlow<()> {
        // Said even with -q: a run that ends early must say why and where.
        let stop = self.fail_fast.then(|| {
            format!("segrelay: --fail-fast: stopped the run at {origin}, its first rejected event")
        });
        self.push(
            origin,
            at,
            ends_line,
            Some(Outcome::Rejected(reason, content)),
        );
        match stop {
            Some(message) => {
                self.courier.console.say(&message);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    }

    /// Settles what can be settled, and keeps the ledger bounded.
    fn after_line(&mut self) -> anyhow::Result<()> {
        self.collect(false)?;
        self.drain()?;
        if self.ledger.len() > LEDGER_LIMIT {
            self.flush_all()?;
            self.collect(true)?;
            self.drain()?;
        }
        Ok(())
    }

    fn batch(&mut self, stream: Stream) -> &mut Vec<Batched> {
        let index = match self.batches.iter().position(|(s, _)| *s == stream) {
            Some(index) => index,
            None => {
                self.batches
                    .push((stream, Vec::with_capacity(self.batch_size)));
                self.batches.len() - 1
            }
        };
        &mut self.batches[index].1
    }

    fn flush(&mut self, stream: Stream) -> anyhow::Result<()> {
        let records = std::mem::take(self.batch(stream));
        if records.is_empty() {
            return Ok(());
        }
        if self.workers.is_none() {
            let delivered = self.courier.deliver(
                self.dispatch.control(),
                &self.pass.context,
                stream,
                records,
            )?;
            return self.record(delivered);
        }
        let workers = self.workers.as_mut().expect("a pool when not inline");
        if workers.in_flight >= workers.size {
            let delivered = workers.next_result()?;
            self.record(delivered)?;
        }
        self.workers
            .as_mut()
            .expect("a pool")
            .submit(stream, records)
    }

    fn flush_all(&mut self) -> anyhow::Result<()> {
        let streams: Vec<Stream> = self.batches.iter().map(|(s, _)| *s).collect();
        for stream in streams {
            self.flush(stream)?;
        }
        Ok(())
    }

    /// Takes in the batches the pool has finished; with `all`, waits for every one.
    fn collect(&mut self, all: bool) -> anyhow::Result<()> {
        while let Some(workers) = &mut self.workers {
            let delivered = if all {
                if workers.in_flight == 0 {
                    break;
                }
                workers.next_result()?
            } else {
                match workers.try_result()? {
                    Some(delivered) => delivered,
                    None => break,
                }
            };
            self.record(delivered)?;
        }
        Ok(())
    }

    /// Puts a delivered batch's outcomes in the ledger.
    fn record(&mut self, delivered: Delivered) -> anyhow::Result<()> {
        self.report.delivery(
            delivered.requests,
            delivered.retries,
            delivered.server_wait,
            delivered.backoff,
        );
        let outcomes =
            delivered
                .sent
                .into_iter()
                .map(|r| (r.seq, Outcome::Sent))
                .chain(delivered.rejected.into_iter().map(|(r, reason)| {
                    (r.seq, Outcome::Rejected(reason, Content::Json(r.original)))
                }))
                .chain(delivered.failed.into_iter().map(|(r, reason)| {
                    (r.seq, Outcome::Failed(reason, Content::Json(r.original)))
                }));
        for (seq, outcome) in outcomes {
            let slot = &mut self.ledger[(seq - self.first_seq) as usize];
            debug_assert!(slot.outcome.is_none(), "an event settled twice");
            slot.outcome = Some(outcome);
        }
        self.drain()
    }

    /// Settles the ledger's settled prefix in input order, and moves the checkpoint.
    fn drain(&mut self) -> anyhow::Result<()> {
        let mut moved = false;
        while self.ledger.front().is_some_and(|s| s.outcome.is_some()) {
            let slot = self.ledger.pop_front().expect("a front slot");
            self.first_seq += 1;
            let outcome = slot.outcome.expect("a settled slot");
            if matches!(outcome, Outcome::Failed(..)) {
                self.frozen = true;
                self.first_failed.get_or_insert(slot.origin);
            }
            self.report.settled_to(slot.at.offset);
            self.report.settle(&slot.origin, outcome)?;
            if slot.ends_line && !self.frozen {
                self.settled_at = Some(slot.at);
                moved = true;
                self.settled_counts = (self.report.totals(), self.report.rejects_length());
            }
        }
        if moved {
            self.unsaved = true;
            self.save_checkpoint(Save::IfDue)?;
        }
        Ok(())
    }

    fn save_checkpoint(&mut self, save: Save) -> anyhow::Result<()> {
        let Some(checkpoint) = &mut self.checkpoint else {
            return Ok(());
        };
        let requests = self.report.summary().requests;
        let position = match save {
            Save::Complete => None,
            Save::IfDue if !checkpoint.due(requests) => return Ok(()),
            Save::IfDue | Save::Now => match self.settled_at {
                Some(position) => Some(position),
                None => return Ok(()),
            },
        };
        // The files must hold what the checkpoint says they hold before it says so.
        let synced = self.report.sync_rejects()?;
        // The counts and the rejects up to the position only: events settled
        // past it (after a failure froze it) are read and settled again by the
        // resume, and must not count twice, nor stand twice in the rejects file.
        let (totals, rejects_length) = match position {
            None => (self.report.totals(), synced),
            Some(_) => self.settled_counts.clone(),
        };
        let kept_lengths = match self.gate.as_deref_mut() {
            Some(gate) => gate.sync()?,
            None => Vec::new(),
        };
        checkpoint.advance(position, totals, rejects_length, &kept_lengths, requests)?;
        self.unsaved = false;
        Ok(())
    }

    /// Stops the reading before `line` (an abort or Ctrl-C), noting where.
    fn stop_before(
        &mut self,
        line: &mut dyn Iterator<Item = Prepared>,
        stop: ReadStop,
    ) -> ControlFlow<ReadStop> {
        self.stopped_early = true;
        self.stop = Some((line.next().map(|prepared| prepared.origin), stop));
        ControlFlow::Break(stop)
    }

    fn say_counting(&self) {
        let console = self.report.console();
        if console.verbosity() > Verbosity::Quiet
            && let Some((Some(origin), _)) = self.stop
        {
            console.say(&format!(
                "segrelay: stopped reading at {origin}: counting the lines not read (Ctrl-C cuts the count short)"
            ));
        }
    }

    /// Tells the report where an abort or Ctrl-C stopped the pass: the first
    /// event that failed (where a resume starts), else the first line not
    /// read; and after an abort, how many lines were not read.
    fn tell_stop(&mut self, unread: Option<Unread>) {
        let aborted = self.courier.aborted().is_some();
        if !aborted && !interrupt::requested() {
            return;
        }
        let first_unread = self.stop.and_then(|(origin, _)| origin);
        if let Some(at) = self.first_failed.or(first_unread) {
            self.report.stopped_at(at);
        }
        let unread = match (self.stop, unread) {
            (_, Some(unread)) => unread,
            // The reading had ended when the abort came.
            (None, None) if aborted => Unread {
                lines: 0,
                complete: true,
            },
            // Ctrl-C: the rest is not counted.
            _ => return,
        };
        self.report.not_read(unread);
    }

    /// Sends what is left in the batches (or fails it, after an abort or a
    /// stop), settles everything, and says whether the pass is complete.
    /// Once: later calls say the same.
    fn finish(&mut self) -> anyhow::Result<bool> {
        if let Some(complete) = self.finished {
            return Ok(complete);
        }
        self.flush_all()?;
        self.collect(true)?;
        if let Some(workers) = &mut self.workers {
            workers.stop();
        }
        self.drain()?;
        debug_assert!(self.ledger.is_empty(), "every event read is settled");
        if let Some(timing) = &self.timing {
            for warning in timing.warnings() {
                self.report.warn(warning);
            }
        }
        let complete = !self.stopped_early && !self.frozen;
        if complete {
            self.save_checkpoint(Save::Complete)?;
        } else if self.unsaved {
            // Stopped (Ctrl-C, --limit, --fail-fast, an abort): what settled
            // since the last write is kept, not read again by the resume.
            self.save_checkpoint(Save::Now)?;
        }
        self.finished = Some(complete);
        Ok(complete)
    }
}
