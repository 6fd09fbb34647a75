//! The one path from input lines to delivered requests, shared by `send`,
//! `send --dry-run` and `check`: read, translate, batch, deliver, account.

use std::ops::ControlFlow;

use crate::destination::{Destination, Payload, Stream, Translation};
use crate::event::{BadLine, Event, Origin, parse_line};
use crate::input::{self, Item, Source};
use crate::report::{Content, Report};
use crate::transport::{Reply, Transport};

pub struct Options<'a> {
    pub sources: &'a [Source],
    pub max_line_bytes: usize,
    pub batch_size: usize,
    pub fail_fast: bool,
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
    /// Batches being filled, one per stream, in the order streams first appeared.
    batches: Vec<(Stream, Vec<Record>)>,
}

/// Runs the whole input through the destination and the transport.
pub fn run(
    options: &Options,
    destination: &dyn Destination,
    transport: &mut dyn Transport,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut pipeline = Pipeline {
        destination,
        transport,
        report,
        batch_size: options.batch_size,
        fail_fast: options.fail_fast,
        batches: Vec::new(),
    };
    let mut parsed: Vec<Result<Event, BadLine>> = Vec::new();
    input::read_all(options.sources, options.max_line_bytes, |item| match item {
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
    })?;
    pipeline.flush_all()?;
    pipeline.transport.finish()
}

impl Pipeline<'_> {
    fn event(&mut self, event: Event) -> anyhow::Result<ControlFlow<()>> {
        self.report.read();
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
        reason: &crate::report::Reason,
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
        let bodies: Vec<&str> = records.iter().map(|r| r.payload.json.as_str()).collect();
        let request = self.destination.request(stream, &bodies);
        let origins: Vec<&Origin> = records.iter().map(|r| &r.event.origin).collect();
        match self
            .transport
            .deliver(self.destination.name(), &request, &origins)?
        {
            Reply::Written => {
                self.report.request();
                self.report.sent(records.len() as u64);
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> anyhow::Result<()> {
        let streams: Vec<Stream> = self.batches.iter().map(|(s, _)| *s).collect();
        for stream in streams {
            self.flush(stream)?;
        }
        Ok(())
    }
}
