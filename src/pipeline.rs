//! The one path from input lines to delivered requests, shared by `send`,
//! `send --dry-run` and `check`: read, translate, batch, deliver, settle.
//!
//! Events are settled in input order through a ledger, whatever order batches
//! come back in: the report, the rejects file and the checkpoint always
//! describe a prefix of the input, which is what makes a resume exact.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, mpsc};

use jiff::Timestamp;

use crate::checkpoint::Checkpoint;
use crate::customers::{Customers, EventAt, Identified};
use crate::delivery::{Courier, Delivered, Record, RequestContext};
use crate::destination::{Destination, Payload, Stream};
use crate::event::{Origin, Wanted};
use crate::filter::Filter;
use crate::grace;
use crate::input::{Position, Source};
use crate::interrupt;
use crate::outcome::{Content, Outcome};
use crate::prepare::{self, Prepared, Preparer, Reading, Ready};
use crate::reason::Reason;
use crate::repeated_keys::RepeatedKeys;
use crate::report::Report;
use crate::transport::Transport;

pub(crate) struct Options {
    pub sources: Vec<Source>,
    pub max_line_bytes: usize,
    pub batch_size: usize,
    pub fail_fast: bool,
    /// `--limit`: the events read at most.
    pub limit: Option<u64>,
    pub filter: Filter,
    /// Counts input bytes as they are read, for the progress bar.
    pub bytes_read: Arc<AtomicU64>,
    /// The inputs that could not be opened.
    pub unreadable: Arc<crate::input::Unreadable>,
    /// Threads that parse and translate.
    pub threads: usize,
}

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
        }
    }

    /// The input to read, past the lines a checkpoint says are `settled`.
    fn reading<'r>(&'r self, settled: &'r [u64]) -> Reading<'r> {
        Reading {
            sources: &self.sources,
            settled,
            max_line_bytes: self.max_line_bytes,
            bytes_read: &self.bytes_read,
            unreadable: &self.unreadable,
            threads: self.threads,
        }
    }
}

/// One pass over the input. A plain run is one pass; an Orb backfill makes a
/// pass per time window, each sending only its window's events.
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
pub(crate) struct Run {
    pub options: Options,
    pub courier: Arc<Courier>,
    pub dispatch: Dispatch,
    pub report: Report,
    pub checkpoint: Option<Checkpoint>,
    pub customers: Option<Customers>,
    /// `check`: idempotency keys seen with two different records.
    pub repeated_keys: Option<RepeatedKeys>,
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

struct Pipeline<'a> {
    courier: Arc<Courier>,
    report: &'a mut Report,
    checkpoint: Option<&'a mut Checkpoint>,
    batch_size: usize,
    fail_fast: bool,
    pass: &'a Pass,
    /// Batches being filled, one per stream, in the order streams first appeared.
    batches: Vec<(Stream, Vec<Record>)>,
    ledger: VecDeque<Slot>,
    /// The sequence number of the ledger's first slot.
    first_seq: u64,
    /// The last fully settled line. The checkpoint stops moving before the
    /// first failed event (`frozen`), so a resume tries it again.
    settled_at: Option<Position>,
    frozen: bool,
    stopped_early: bool,
    workers: Option<Workers>,
    dispatch: &'a mut Dispatch,
    customers: Option<&'a mut Customers>,
    /// Where each key of a batch being filled sits in it, when the destination
    /// refuses a batch in which one key has two bodies.
    batch_keys: Option<HashMap<(Stream, String), usize>>,
    repeated_keys: Option<&'a mut RepeatedKeys>,
    /// A plain run to a destination whose ingest refuses some times: counts them.
    timing: Option<grace::Count>,
}

/// Threads delivering batches, each with its own transport.
struct Workers {
    jobs: Option<mpsc::SyncSender<(Stream, Vec<Record>)>>,
    results: mpsc::Receiver<anyhow::Result<Delivered>>,
    in_flight: usize,
    size: usize,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Run {
    /// Makes one pass over the whole input.
    pub(crate) fn pass(&mut self, pass: &Pass) -> anyhow::Result<PassEnd> {
        let Run {
            options,
            courier,
            dispatch,
            report,
            checkpoint,
            customers,
            repeated_keys,
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
        let mut pipeline = Pipeline {
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
            frozen: false,
            stopped_early: false,
            workers,
            dispatch,
            customers: customers.as_mut(),
            batch_keys: courier
                .destination
                .refuses_conflicting_keys()
                .then(HashMap::new),
            repeated_keys: repeated_keys.as_mut(),
            // A backfill's passes send each event where its time belongs.
            timing: match pass.window {
                None => grace::Count::start(courier.destination.as_ref()),
                Some(_) => None,
            },
        };
        let preparer = options.preparer(courier.destination.as_ref(), pass);
        let read = prepare::read_all(&options.reading(&settled), &preparer, |line| {
            if interrupt::requested() {
                pipeline.stopped_early = true;
                return Ok(ControlFlow::Break(()));
            }
            let mut flow = ControlFlow::Continue(());
            for (index, prepared) in line.into_iter().enumerate() {
                if options
                    .limit
                    .is_some_and(|limit| pipeline.report.summary().read >= limit)
                {
                    flow = ControlFlow::Break(());
                    break;
                }
                if pipeline.settle_prepared(prepared, index)?.is_break() {
                    flow = ControlFlow::Break(());
                }
            }
            pipeline.after_line()?;
            if flow.is_break() {
                pipeline.stopped_early = true;
            }
            Ok(flow)
        });
        // Whatever stopped the reading, what was read is settled before returning.
        let finished = pipeline.finish();
        read?;
        let complete = finished?;
        Ok(PassEnd {
            aborted: pipeline.courier.aborted(),
            complete,
        })
    }
}

impl Run {
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
        // Its own count: the progress bar tells the pass's reading.
        let bytes_read = Arc::new(AtomicU64::new(0));
        let reading = Reading {
            bytes_read: &bytes_read,
            ..options.reading(&settled)
        };
        let preparer = options.preparer(self.courier.destination.as_ref(), &Pass::default());
        prepare::look_ahead(
            &reading,
            &preparer,
            word,
            options.limit,
            |prepared, index| match prepared.ready {
                Ready::Record { payload, .. } => each(prepared.at, index, payload),
                _ => Ok(()),
            },
        )?;
        Ok(true)
    }
}

/// The events of one UTC day (or of another stretch of time): what an Orb
/// backfill cuts its windows from.
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
        if interrupt::requested() {
            return Ok(ControlFlow::Break(()));
        }
        for prepared in line {
            if let Ready::Record { payload, .. } = prepared.ready {
                each(prepared.origin, payload);
            }
        }
        Ok(ControlFlow::Continue(()))
    })
}

impl Pipeline<'_> {
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
        } = prepared;
        let (payload, original) = match ready {
            Ready::Record { payload, original } => (payload, original),
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
        for (property, text) in &payload.numeric_text {
            self.report.numeric_text(property, text);
        }
        if let Some(customers) = self.customers.as_deref_mut()
            && let Some(customer) = &payload.customer
        {
            match stream {
                // In input order, one at a time, each settled with its own outcome.
                Stream::Customer if customers.merges() => {
                    let control = self.dispatch.control();
                    let outcome = customers.identify(
                        &payload.json,
                        &origin,
                        EventAt::new(at, index),
                        &self.courier,
                        control,
                        self.report,
                    )?;
                    let content = || Content::Json(original);
                    return Ok(match outcome {
                        Identified::Sent => {
                            self.push(origin, at, ends_line, Some(Outcome::Sent));
                            ControlFlow::Continue(())
                        }
                        Identified::Refused(reason) => {
                            self.reject(origin, at, ends_line, reason, content())
                        }
                        Identified::Failed(reason) => {
                            let outcome = Outcome::Failed(reason, content());
                            self.push(origin, at, ends_line, Some(outcome));
                            ControlFlow::Continue(())
                        }
                    });
                }
                Stream::Customer => customers.named(&payload.json),
                Stream::Usage if !customers.ensures() => {}
                Stream::Usage => {
                    let control = self.dispatch.control();
                    if let Err(reason) =
                        customers.ensure(customer, &self.courier, control, self.report)?
                    {
                        let content = Content::Json(original);
                        return Ok(self.reject(origin, at, ends_line, reason, content));
                    }
                }
            }
        }
        if let Some(reason) = self.conflicting_key(stream, &payload, &origin) {
            let content = Content::Json(original);
            return Ok(self.reject(origin, at, ends_line, reason, content));
        }
        // Usage only: two identifies of one customer are two updates, not a repeat.
        if stream == Stream::Usage
            && let Some(keys) = self.repeated_keys.as_deref_mut()
        {
            keys.see(&payload.key, &payload.json, origin);
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
        batch.push(Record {
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

    /// A reason to hold the record back when its batch already has its key with
    /// another body: the destination would refuse the whole batch. The same
    /// key with the same body is harmless (the destination keeps one).
    fn conflicting_key(
        &mut self,
        stream: Stream,
        payload: &Payload,
        origin: &Origin,
    ) -> Option<Reason> {
        let keys = self.batch_keys.as_mut()?;
        let index = self
            .batches
            .iter()
            .find(|(s, _)| *s == stream)
            .map_or(0, |(_, batch)| batch.len());
        let earlier = *keys.entry((stream, payload.key.clone())).or_insert(index);
        if earlier == index {
            return None;
        }
        let (_, batch) = self.batches.iter().find(|(s, _)| *s == stream)?;
        let batch = &batch[earlier];
        if batch.payload.json == payload.json {
            return None;
        }
        Some(Reason::new(
            "conflicting idempotency key",
            format!(
                "idempotency key {:?} is also the key of the event at {} in the same batch, with a different body; {} would refuse the whole batch ({origin} is held back)",
                payload.key,
                batch.origin,
                self.courier.destination.kind().display_name()
            ),
        ))
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

    fn batch(&mut self, stream: Stream) -> &mut Vec<Record> {
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
        if let Some(keys) = &mut self.batch_keys {
            keys.retain(|(s, _), _| *s != stream);
        }
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
            }
            self.report.settle(&slot.origin, outcome)?;
            if slot.ends_line && !self.frozen {
                self.settled_at = Some(slot.at);
                moved = true;
            }
        }
        if moved {
            self.save_checkpoint(false)?;
        }
        Ok(())
    }

    fn save_checkpoint(&mut self, complete: bool) -> anyhow::Result<()> {
        let Some(checkpoint) = &mut self.checkpoint else {
            return Ok(());
        };
        let position = if complete { None } else { self.settled_at };
        if position.is_none() && !complete {
            return Ok(());
        }
        // The files must hold what the checkpoint says they hold before it says so.
        let rejects_length = self.report.sync_rejects()?;
        let customers_length = match self.customers.as_deref_mut() {
            Some(customers) => customers.sync()?,
            None => None,
        };
        checkpoint.advance(
            position,
            self.report.totals(),
            rejects_length,
            customers_length,
        )
    }

    /// Sends what is left in the batches (or fails it, after an abort or a
    /// stop), settles everything, and says whether the pass is complete.
    fn finish(&mut self) -> anyhow::Result<bool> {
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
            self.save_checkpoint(true)?;
        }
        Ok(complete)
    }
}

impl Workers {
    fn start(
        courier: &Arc<Courier>,
        context: &RequestContext,
        transports: Vec<Box<dyn Transport + Send>>,
    ) -> Workers {
        let size = transports.len();
        let (jobs, queue) = mpsc::sync_channel::<(Stream, Vec<Record>)>(size);
        let queue = Arc::new(Mutex::new(queue));
        let (finished, results) = mpsc::channel();
        let handles = transports
            .into_iter()
            .map(|mut transport| {
                let queue = queue.clone();
                let finished = finished.clone();
                let courier = courier.clone();
                let context = context.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = queue.lock().expect("job queue").recv();
                        let Ok((stream, records)) = job else { break };
                        let delivered =
                            courier.deliver(transport.as_mut(), &context, stream, records);
                        if finished.send(delivered).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Workers {
            jobs: Some(jobs),
            results,
            in_flight: 0,
            size,
            handles,
        }
    }

    fn submit(&mut self, stream: Stream, records: Vec<Record>) -> anyhow::Result<()> {
        let jobs = self.jobs.as_ref().expect("the pool is running");
        jobs.send((stream, records))
            .map_err(|_| anyhow::anyhow!("the delivery threads stopped"))?;
        self.in_flight += 1;
        Ok(())
    }

    fn next_result(&mut self) -> anyhow::Result<Delivered> {
        let result = self
            .results
            .recv()
            .map_err(|_| anyhow::anyhow!("the delivery threads stopped"))?;
        self.in_flight -= 1;
        result
    }

    fn try_result(&mut self) -> anyhow::Result<Option<Delivered>> {
        match self.results.try_recv() {
            Ok(result) => {
                self.in_flight -= 1;
                result.map(Some)
            }
            Err(_) => Ok(None),
        }
    }

    fn stop(&mut self) {
        self.jobs = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}
