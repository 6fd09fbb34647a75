//! The one path from input lines to delivered requests, shared by `send`,
//! `send --dry-run` and `check`: read, translate, batch, deliver, account.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::destination::{Destination, Payload, Stream, Translation, Verdict};
use crate::event::{BadLine, Event, Origin, parse_line};
use crate::filter::Filter;
use crate::input::{self, Item, Source};
use crate::report::{Content, Reason, Report, Verbosity};
use crate::retry::RetryPolicy;
use crate::settings::Secret;
use crate::throttle::Throttle;
use crate::transport::{Reply, Transport};

pub struct Options<'a> {
    pub sources: &'a [Source],
    pub max_line_bytes: usize,
    pub batch_size: usize,
    pub fail_fast: bool,
    pub filter: Filter,
    pub retry: RetryPolicy,
    pub throttle: Throttle,
    /// The key, to keep it out of every message that quotes a server.
    pub secret: Option<Secret>,
    /// Counts input bytes as they are read, for the progress bar.
    pub bytes_read: Arc<AtomicU64>,
}

/// A translated event waiting in a batch, with the event kept for the rejects file.
struct Record {
    payload: Payload,
    event: Event,
}

struct Pipeline<'a> {
    destination: &'a dyn Destination,
    transport: &'a mut dyn Transport,
    report: &'a mut Report,
    batch_size: usize,
    fail_fast: bool,
    filter: Filter,
    retry: RetryPolicy,
    throttle: Throttle,
    secret: Option<Secret>,
    /// Batches being filled, one per stream, in the order streams first appeared.
    batches: Vec<(Stream, Vec<Record>)>,
    /// Why the destination stopped the run; every later event fails with it.
    aborted: Option<String>,
}

/// Runs the whole input through the destination and the transport. Returns
/// the reason when the destination aborted the run.
pub fn run(
    options: Options,
    destination: &dyn Destination,
    transport: &mut dyn Transport,
    report: &mut Report,
) -> anyhow::Result<Option<String>> {
    let mut pipeline = Pipeline {
        destination,
        transport,
        report,
        batch_size: options.batch_size,
        fail_fast: options.fail_fast,
        filter: options.filter,
        retry: options.retry,
        throttle: options.throttle,
        secret: options.secret,
        batches: Vec::new(),
        aborted: None,
    };
    let mut parsed: Vec<Result<Event, BadLine>> = Vec::new();
    input::read_all(
        options.sources,
        options.max_line_bytes,
        &options.bytes_read,
        |item| match item {
            Item::Line { origin, bytes } => {
                parse_line(bytes, origin, |result| parsed.push(result));
                for result in parsed.drain(..) {
                    let flow = match result {
                        Ok(event) => pipeline.event(event)?,
                        Err(bad) => pipeline.bad_line(&bad.origin, &bad.reason, &bad.raw)?,
                    };
                    if flow.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(ControlFlow::Continue(()))
            }
            Item::Broken {
                origin,
                reason,
                raw,
            } => pipeline.bad_line(&origin, &reason, &raw),
        },
    )?;
    pipeline.flush_all()?;
    pipeline.transport.finish()?;
    Ok(pipeline.aborted)
}

impl Pipeline<'_> {
    fn event(&mut self, event: Event) -> anyhow::Result<ControlFlow<()>> {
        self.report.read();
        if let Some(reason) = self.filter.skip_reason(&event) {
            self.report.skipped(&event.origin, &reason);
            return Ok(ControlFlow::Continue(()));
        }
        match self.destination.translate(&event) {
            Translation::Record(payload) => {
                let stream = payload.stream;
                let limit = self.destination.batch_limit(stream, self.batch_size);
                let batch = self.batch(stream);
                batch.push(Record { payload, event });
                if batch.len() >= limit {
                    self.flush(stream)?;
                }
                Ok(ControlFlow::Continue(()))
            }
            Translation::Skip(reason) => {
                self.report.skipped(&event.origin, &reason);
                Ok(ControlFlow::Continue(()))
            }
            Translation::Reject(reason) => {
                self.report
                    .rejected(&event.origin, &reason, Content::Event(&event))?;
                Ok(self.stop_if_fail_fast())
            }
        }
    }

    fn bad_line(
        &mut self,
        origin: &Origin,
        reason: &Reason,
        raw: &str,
    ) -> anyhow::Result<ControlFlow<()>> {
        self.report.read();
        self.report.rejected(origin, reason, Content::Raw(raw))?;
        Ok(self.stop_if_fail_fast())
    }

    fn stop_if_fail_fast(&self) -> ControlFlow<()> {
        if self.fail_fast {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
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
        let records = std::mem::take(self.batch(stream));
        if records.is_empty() {
            return Ok(());
        }
        self.deliver(stream, records)
    }

    fn flush_all(&mut self) -> anyhow::Result<()> {
        let streams: Vec<Stream> = self.batches.iter().map(|(s, _)| *s).collect();
        for stream in streams {
            self.flush(stream)?;
        }
        Ok(())
    }

    /// Delivers a batch until every event in it is sent, rejected or failed:
    /// retrying what may succeed later, re-sending the rest of a batch whose
    /// refused events the destination named, and halving a batch refused
    /// without names until the bad events stand alone.
    fn deliver(&mut self, stream: Stream, records: Vec<Record>) -> anyhow::Result<()> {
        let mut queue: VecDeque<Vec<Record>> = VecDeque::from([records]);
        while let Some(batch) = queue.pop_front() {
            if let Some(reason) = &self.aborted {
                let reason = Reason::new("run aborted", reason.clone());
                self.fail_all(&batch, &reason)?;
                continue;
            }
            let verdict = self.send_with_retries(stream, &batch)?;
            match verdict {
                Verdict::Accepted => self.report.sent(batch.len() as u64),
                Verdict::Refused(named) => {
                    let (refused, rest): (Vec<Record>, Vec<Record>) = batch
                        .into_iter()
                        .partition(|r| named.iter().any(|(key, _)| *key == r.payload.key));
                    for record in &refused {
                        let message = named
                            .iter()
                            .find(|(key, _)| *key == record.payload.key)
                            .map(|(_, m)| m.as_str())
                            .unwrap_or_default();
                        let reason = Reason::new(
                            format!("refused by {}", self.destination.kind().name()),
                            self.redact(message),
                        );
                        self.report.rejected(
                            &record.event.origin,
                            &reason,
                            Content::Event(&record.event),
                        )?;
                    }
                    if !rest.is_empty() {
                        // Same keys: the destination dedupes whatever it may already have taken.
                        queue.push_front(rest);
                    }
                }
                Verdict::Split(message) => {
                    if batch.len() == 1 {
                        let reason = Reason::new(
                            format!("refused by {}", self.destination.kind().name()),
                            self.redact(&message),
                        );
                        self.report.rejected(
                            &batch[0].event.origin,
                            &reason,
                            Content::Event(&batch[0].event),
                        )?;
                    } else {
                        let mut first = batch;
                        let second = first.split_off(first.len() / 2);
                        queue.push_front(second);
                        queue.push_front(first);
                    }
                }
                Verdict::Retry { message, .. } | Verdict::Abort(message) => {
                    let message = self.redact(&message);
                    self.report.say(&format!(
                        "segrelay: {}: aborting: {message}",
                        self.destination.name()
                    ));
                    self.aborted = Some(message.clone());
                    self.fail_all(&batch, &Reason::new("run aborted", message))?;
                }
            }
        }
        Ok(())
    }

    /// Sends one request, trying again while the answer says so and retries
    /// remain. A `Retry` verdict coming back means they ran out.
    fn send_with_retries(&mut self, stream: Stream, batch: &[Record]) -> anyhow::Result<Verdict> {
        let bodies: Vec<&str> = batch.iter().map(|r| r.payload.json.as_str()).collect();
        let keys: Vec<&str> = batch.iter().map(|r| r.payload.key.as_str()).collect();
        let origins: Vec<&Origin> = batch.iter().map(|r| &r.event.origin).collect();
        let request = self.destination.request(stream, &bodies);
        let mut retries = 0;
        loop {
            let throttled = self.throttle.wait(batch.len());
            self.report.waited(throttled);
            let reply = self
                .transport
                .deliver(self.destination.name(), &request, &origins)?;
            self.report.request();
            let verdict = match reply {
                Reply::Written => Verdict::Accepted,
                Reply::Response(response) => {
                    self.report.on_server(response.elapsed);
                    if self.report.verbosity() == Verbosity::Verbose {
                        self.report.say(&format!(
                            "segrelay: {} {} -> {} in {} ms, {} events{}",
                            request.method,
                            request.url,
                            response.status,
                            response.elapsed.as_millis(),
                            batch.len(),
                            response
                                .request_id()
                                .map(|id| format!(", request id {id}"))
                                .unwrap_or_default()
                        ));
                    }
                    let verdict = self.destination.verdict(&response, &keys);
                    match verdict {
                        Verdict::Retry { .. } | Verdict::Abort(_) | Verdict::Split(_) => {
                            if let Some(id) = response.request_id() {
                                with_request_id(verdict, id)
                            } else {
                                verdict
                            }
                        }
                        other => other,
                    }
                }
                Reply::Failed(error) if error.retryable => Verdict::Retry {
                    after: None,
                    message: error.message,
                },
                Reply::Failed(error) => Verdict::Abort(error.message),
            };
            let Verdict::Retry { after, message } = verdict else {
                return Ok(verdict);
            };
            if retries >= self.retry.max_retries {
                let message = if retries == 0 {
                    message
                } else {
                    format!("{message} (gave up after {retries} retries)")
                };
                return Ok(Verdict::Retry { after, message });
            }
            retries += 1;
            let wait = self.retry.delay(retries, after);
            if self.report.verbosity() >= Verbosity::Normal {
                self.report.say(&format!(
                    "segrelay: {}: {}; retry {retries} of {} in {:.1} s",
                    self.destination.name(),
                    self.redact(&message),
                    self.retry.max_retries,
                    wait.as_secs_f64()
                ));
            }
            self.report.retry(wait);
            std::thread::sleep(wait);
        }
    }

    fn fail_all(&mut self, batch: &[Record], reason: &Reason) -> anyhow::Result<()> {
        for record in batch {
            self.report
                .failed(&record.event.origin, reason, Content::Event(&record.event))?;
        }
        Ok(())
    }

    fn redact(&self, text: &str) -> String {
        match self.secret.as_ref().and_then(Secret::value) {
            Some(key) if key.len() >= 4 => text.replace(key, "***"),
            _ => text.to_owned(),
        }
    }
}

fn with_request_id(verdict: Verdict, id: &str) -> Verdict {
    let tag = |m: String| format!("{m} (request id {id})");
    match verdict {
        Verdict::Retry { after, message } => Verdict::Retry {
            after,
            message: tag(message),
        },
        Verdict::Abort(message) => Verdict::Abort(tag(message)),
        Verdict::Split(message) => Verdict::Split(tag(message)),
        other => other,
    }
}
