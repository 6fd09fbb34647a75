//! Delivering one batch until every event in it is sent, rejected or failed:
//! retrying what may succeed later, re-sending the rest of a batch whose refused
//! events the destination named, halving a batch refused without names until
//! the bad events stand alone. It touches no accounting, so batches can be
//! delivered on several threads and settled in input order.

pub(crate) mod retry;
pub(crate) mod throttle;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::console::plural;
use crate::console::{Console, Verbosity};
use crate::delivery::retry::RetryPolicy;
use crate::delivery::throttle::Throttle;
use crate::destination::{Destination, Payload, Request, Response, Stream, Verdict};
use crate::event::Origin;
use crate::event::reason::Reason;
use crate::interrupt;
use crate::settings::Secret;
use crate::transport::{Reply, Transport};

/// A translated event in a batch, with its place in the run and its JSON text
/// for the rejects file (the event itself is dropped once translated).
#[derive(Debug)]
pub(crate) struct Batched {
    pub payload: Payload,
    pub origin: Origin,
    pub original: Box<[u8]>,
    /// The event's number in this run, to settle it in input order.
    pub seq: u64,
}

/// What became of each event of a batch.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    pub sent: Vec<Batched>,
    pub rejected: Vec<(Batched, Reason)>,
    pub failed: Vec<(Batched, Reason)>,
    pub requests: u64,
    pub retries: u64,
    /// Time spent waiting for the destination's answers.
    pub server_wait: Duration,
    /// Time spent waiting before requests: rate limits and retry delays.
    pub backoff: Duration,
}

/// Why a run stops before its input is all sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Stop {
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The destination stopped the run (key refused, an answer not the API's,
    /// unreachable after retries), with why.
    #[error("{0}")]
    Aborted(String),
}

/// What a pass adds to the requests it makes: a destination's backfill's pass
/// sends its usage into the backfill (a query such as `?backfill_id=`).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestContext {
    /// Appended to every usage request's URL.
    pub usage_query: Option<String>,
}

/// What every delivery of a run shares, across threads.
pub(crate) struct Courier {
    pub(crate) destination: Arc<dyn Destination>,
    retry: RetryPolicy,
    throttle: Mutex<Throttle>,
    pub(crate) console: Console,
    /// The key, kept out of every message that quotes a server.
    secret: Secret,
    /// Why the destination stopped the run; every later batch fails with it.
    aborted: Mutex<Option<String>>,
}

/// What a single request without events came to.
#[derive(Debug)]
pub(crate) enum Call {
    /// A dry run wrote it.
    Written,
    /// A 2xx answer.
    Answered(Response),
    /// A 4xx answer that is not about the key.
    Refused { message: String, response: Response },
    /// No usable answer after the retries (the run is aborted), or the run was interrupted.
    Stopped(Stop),
}

/// How an exchange of one request ended.
enum Exchanged {
    /// The last verdict and, when there was one, the last answer.
    Judged(Verdict, Option<Response>),
    /// The run was interrupted while waiting to try again.
    Interrupted,
}

impl Courier {
    pub(crate) fn new(
        destination: Arc<dyn Destination>,
        secret: Secret,
        retry: RetryPolicy,
        throttle: Throttle,
        console: Console,
    ) -> Courier {
        Courier {
            destination,
            retry,
            throttle: Mutex::new(throttle),
            console,
            secret,
            aborted: Mutex::new(None),
        }
    }

    pub(crate) fn aborted(&self) -> Option<String> {
        self.aborted.lock().expect("abort lock").clone()
    }

    pub(crate) fn abort(&self, reason: &str) {
        let reason = self.redact(reason);
        let mut aborted = self.aborted.lock().expect("abort lock");
        if aborted.is_none() {
            self.console.say(&format!(
                "segrelay: {}: aborting: {reason}",
                self.destination.name()
            ));
            *aborted = Some(reason);
        }
    }

    pub(crate) fn deliver(
        &self,
        transport: &mut dyn Transport,
        context: &RequestContext,
        stream: Stream,
        records: Vec<Batched>,
    ) -> anyhow::Result<Delivered> {
        let mut delivered = Delivered::default();
        let mut queue: VecDeque<Vec<Batched>> = VecDeque::from([records]);
        let kind = self.destination.kind().name();
        while let Some(batch) = queue.pop_front() {
            if let Some(reason) = self.aborted() {
                fail_all(&mut delivered, batch, &Reason::new("run aborted", reason));
                continue;
            }
            if interrupt::requested() {
                fail_all(&mut delivered, batch, &interrupted());
                continue;
            }
            let verdict =
                self.send_with_retries(transport, context, stream, &batch, &mut delivered)?;
            match verdict {
                Exchanged::Interrupted => fail_all(&mut delivered, batch, &interrupted()),
                Exchanged::Judged(Verdict::Accepted, _) => delivered.sent.extend(batch),
                Exchanged::Judged(Verdict::Refused(named), _) => {
                    let (refused, rest): (Vec<Batched>, Vec<Batched>) = batch
                        .into_iter()
                        .partition(|r| named.iter().any(|(key, _)| *key == r.payload.key));
                    for record in refused {
                        let message = named
                            .iter()
                            .find(|(key, _)| *key == record.payload.key)
                            .map(|(_, m)| m.as_str())
                            .unwrap_or_default();
                        let reason =
                            Reason::new(format!("refused by {kind}"), self.redact(message));
                        delivered.rejected.push((record, reason));
                    }
                    if !rest.is_empty() {
                        // Same keys: the destination dedupes whatever it may already have taken.
                        queue.push_front(rest);
                    }
                }
                Exchanged::Judged(Verdict::Split(message), _) => {
                    if batch.len() == 1 {
                        let reason =
                            Reason::new(format!("refused by {kind}"), self.redact(&message));
                        delivered
                            .rejected
                            .extend(batch.into_iter().map(|r| (r, reason.clone())));
                    } else {
                        let mut first = batch;
                        let second = first.split_off(first.len() / 2);
                        queue.push_front(second);
                        queue.push_front(first);
                    }
                }
                Exchanged::Judged(
                    Verdict::Retry { message, .. }
                    | Verdict::Abort(message)
                    | Verdict::Foreign(message),
                    _,
                ) => {
                    let message = self.redact(&message);
                    self.abort(&message);
                    fail_all(&mut delivered, batch, &Reason::new("run aborted", message));
                }
            }
        }
        Ok(delivered)
    }

    /// Sends one batch's request, trying again while the answer says so and
    /// retries remain. A `Retry` verdict coming back means they ran out.
    fn send_with_retries(
        &self,
        transport: &mut dyn Transport,
        context: &RequestContext,
        stream: Stream,
        batch: &[Batched],
        delivered: &mut Delivered,
    ) -> anyhow::Result<Exchanged> {
        let bodies: Vec<&str> = batch.iter().map(|r| r.payload.json.as_str()).collect();
        let keys: Vec<&str> = batch.iter().map(|r| r.payload.key.as_str()).collect();
        let origins: Vec<&Origin> = batch.iter().map(|r| &r.origin).collect();
        let mut request = self.destination.request(stream, &bodies);
        if stream == Stream::Usage
            && let Some(query) = &context.usage_query
        {
            request.url.push_str(query);
        }
        self.destination.finish_request(&mut request);
        let judge = |response: &Response| self.destination.verdict(response, &keys);
        self.exchange(transport, &request, &origins, &judge, delivered)
    }

    /// One request that carries no events (a backfill to create, a customer to
    /// look up), with the same retries, rate limit and abort rules as batches.
    pub(crate) fn call(
        &self,
        transport: &mut dyn Transport,
        request: &Request,
        delivered: &mut Delivered,
    ) -> anyhow::Result<Call> {
        self.call_for(transport, request, &[], delivered)
    }

    /// A single request made for these events (an identify's lookup and
    /// write), which a dry run names beside it.
    pub(crate) fn call_for(
        &self,
        transport: &mut dyn Transport,
        request: &Request,
        origins: &[&Origin],
        delivered: &mut Delivered,
    ) -> anyhow::Result<Call> {
        let judge = |response: &Response| self.destination.call_verdict(response);
        let (verdict, response) =
            match self.exchange(transport, request, origins, &judge, delivered)? {
                Exchanged::Judged(verdict, response) => (verdict, response),
                Exchanged::Interrupted => return Ok(Call::Stopped(Stop::Interrupted)),
            };
        Ok(match (verdict, response) {
            (Verdict::Accepted, Some(response)) => Call::Answered(response),
            (Verdict::Accepted, None) => Call::Written,
            (Verdict::Split(message), Some(response)) => Call::Refused {
                message: self.redact(&message),
                response,
            },
            (
                Verdict::Retry { message, .. }
                | Verdict::Abort(message)
                | Verdict::Foreign(message),
                _,
            ) => {
                let message = self.redact(&message);
                self.abort(&message);
                Call::Stopped(Stop::Aborted(message))
            }
            (Verdict::Refused(_) | Verdict::Split(_), _) => {
                Call::Stopped(Stop::Aborted("refused".to_owned()))
            }
        })
    }

    /// Sends a request until the verdict is not `Retry` or the retries run out.
    fn exchange(
        &self,
        transport: &mut dyn Transport,
        request: &Request,
        origins: &[&Origin],
        judge: &dyn Fn(&Response) -> Verdict,
        delivered: &mut Delivered,
    ) -> anyhow::Result<Exchanged> {
        let mut retries = 0;
        let mut max_retries = self.retry.max_retries;
        loop {
            let turn = self
                .throttle
                .lock()
                .expect("throttle lock")
                .reserve(origins.len());
            if !turn.is_zero() {
                let waiting = Instant::now();
                let finished = interrupt::sleep(turn);
                // What was waited, not what was booked: a stop cuts the wait short.
                delivered.backoff += waiting.elapsed();
                if !finished {
                    return Ok(Exchanged::Interrupted);
                }
            }
            let reply = transport.deliver(self.destination.name(), request, origins)?;
            delivered.requests += 1;
            let (verdict, response) = match reply {
                Reply::Written => (Verdict::Accepted, None),
                Reply::Response(response) => {
                    delivered.server_wait += response.elapsed;
                    if self.console.verbosity() == Verbosity::Verbose {
                        self.console.say(&format!(
                            "segrelay: {} {} -> {} in {} ms, {}{}",
                            request.method,
                            request.url,
                            response.status,
                            response.elapsed.as_millis(),
                            plural(origins.len() as u64, "event"),
                            response
                                .request_id()
                                .map(|id| format!(", request id {id}"))
                                .unwrap_or_default()
                        ));
                    }
                    let verdict = match response.request_id() {
                        Some(id) => with_request_id(judge(&response), id),
                        None => judge(&response),
                    };
                    let verdict = self.said_where(verdict, request, response.status);
                    (verdict, Some(response))
                }
                Reply::Failed(error) if error.retryable => {
                    if let Some(at_most) = error.retries_at_most {
                        max_retries = max_retries.min(at_most);
                    }
                    (
                        Verdict::Retry {
                            after: None,
                            message: error.message,
                        },
                        None,
                    )
                }
                Reply::Failed(error) => (Verdict::Abort(error.message), None),
            };
            let Verdict::Retry { after, message } = verdict else {
                return Ok(Exchanged::Judged(verdict, response));
            };
            if retries >= max_retries {
                let message = if retries == 0 {
                    message
                } else {
                    let tries = if retries == 1 { "retry" } else { "retries" };
                    format!("{message} (gave up after {retries} {tries})")
                };
                return Ok(Exchanged::Judged(
                    Verdict::Retry { after, message },
                    response,
                ));
            }
            retries += 1;
            let wait = self.retry.delay(retries, after);
            if self.console.verbosity() >= Verbosity::Normal {
                self.console.say(&format!(
                    "segrelay: {}: {}; retry {retries} of {max_retries} in {:.1} s",
                    self.destination.name(),
                    self.redact(&message),
                    wait.as_secs_f64()
                ));
            }
            delivered.retries += 1;
            self.console.retried();
            let waiting = Instant::now();
            let finished = interrupt::sleep(wait);
            delivered.backoff += waiting.elapsed();
            if !finished {
                return Ok(Exchanged::Interrupted);
            }
        }
    }

    /// A stop names the URL that caused it, so that a wrong path is not taken
    /// for a wrong key, and says what to fix: the key's origin for a refused
    /// key, the endpoint for an answer that is not the API's.
    fn said_where(&self, verdict: Verdict, request: &Request, status: u16) -> Verdict {
        let called = format!("{} {}", request.method, request.url);
        match verdict {
            Verdict::Abort(message) if matches!(status, 401 | 403) => Verdict::Abort(format!(
                "{message} (from {called}); check {}",
                self.secret.origin()
            )),
            Verdict::Abort(message) => Verdict::Abort(format!("{message} (from {called})")),
            Verdict::Foreign(message) => Verdict::Foreign(format!(
                "{message} (from {called}): not an answer from {}'s API; {}",
                self.destination.kind().display_name(),
                self.destination.endpoint_hint(&request.url)
            )),
            other => other,
        }
    }

    fn redact(&self, text: &str) -> String {
        match self.secret.value() {
            Some(key) if key.len() >= 4 => text.replace(key, "***"),
            _ => text.to_owned(),
        }
    }
}

fn interrupted() -> Reason {
    Reason::new("interrupted", "not sent: the run was stopped")
}

fn fail_all(delivered: &mut Delivered, batch: Vec<Batched>, reason: &Reason) {
    delivered
        .failed
        .extend(batch.into_iter().map(|r| (r, reason.clone())));
}

fn with_request_id(verdict: Verdict, id: &str) -> Verdict {
    let tag = |m: String| format!("{m} (request id {id})");
    match verdict {
        Verdict::Retry { after, message } => Verdict::Retry {
            after,
            message: tag(message),
        },
        Verdict::Abort(message) => Verdict::Abort(tag(message)),
        Verdict::Foreign(message) => Verdict::Foreign(tag(message)),
        Verdict::Split(message) => Verdict::Split(tag(message)),
        other => other,
    }
}
