//! A transport that answers from a script, for in-process tests of the core:
//! no network and no threads of its own. Every request is kept as it came
//! (its URL, body and events' origins), in the order the transports of one
//! script received them, so that a test can say what was sent and in which
//! order. Transports made from one script share it: a pool's threads take
//! the next answer in turn.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::event::Origin;
use crate::transport::wire::{Request, Response};
use crate::transport::{Reply, SendError, Transport};

/// One request as a transport received it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: &'static str,
    pub url: String,
    /// The body as meant (JSON), before any gzip.
    pub body: Vec<u8>,
    /// The events the request carries, in order.
    pub origins: Vec<Origin>,
}

impl Call {
    /// The input lines of the request's events, in order.
    pub(crate) fn lines(&self) -> Vec<u64> {
        self.origins.iter().map(|origin| origin.line).collect()
    }

    pub(crate) fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a JSON body")
    }
}

/// What the script answers to one request.
#[derive(Clone)]
pub(crate) enum Answer {
    /// The server answers with this status, these headers and this body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// No answer: the connection failed.
    Failed { message: String, retryable: bool },
    /// The answer is decided from the request (and may act before it
    /// answers: wait for another thread's request, ask for a stop).
    With(Arc<dyn Fn(&Call) -> Reply + Send + Sync>),
}

impl Answer {
    pub(crate) fn status(status: u16) -> Answer {
        Answer::Status {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub(crate) fn body(mut self, text: &str) -> Answer {
        if let Answer::Status { body, .. } = &mut self {
            *body = text.to_owned();
        }
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Answer {
        if let Answer::Status { headers, .. } = &mut self {
            headers.push((name.to_ascii_lowercase(), value.to_owned()));
        }
        self
    }

    pub(crate) fn failed(message: &str, retryable: bool) -> Answer {
        Answer::Failed {
            message: message.to_owned(),
            retryable,
        }
    }

    pub(crate) fn with(decide: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Answer {
        Answer::With(Arc::new(decide))
    }

    fn reply(&self, call: &Call) -> Reply {
        match self {
            Answer::Status {
                status,
                headers,
                body,
            } => response(*status, headers.clone(), body),
            Answer::Failed { message, retryable } => Reply::Failed(SendError {
                message: message.clone(),
                retryable: *retryable,
                retries_at_most: None,
            }),
            Answer::With(decide) => decide(call),
        }
    }
}

/// A server's answer, for the closures of [`Answer::with`].
pub(crate) fn response(status: u16, headers: Vec<(String, String)>, body: &str) -> Reply {
    Reply::Response(Response {
        status,
        headers,
        body: body.as_bytes().to_vec(),
        elapsed: Duration::ZERO,
    })
}

#[derive(Default)]
struct Shared {
    /// Answered in order, one per request.
    answers: Mutex<VecDeque<Answer>>,
    /// Answers every request once `answers` is used up; without it, a
    /// request past the script is an error.
    otherwise: Mutex<Option<Answer>>,
    calls: Mutex<Vec<Call>>,
}

/// The answers, and the requests received so far.
#[derive(Clone, Default)]
pub(crate) struct Script {
    shared: Arc<Shared>,
}

impl Script {
    pub(crate) fn new() -> Script {
        Script::default()
    }

    /// The next request gets this answer.
    pub(crate) fn then(self, answer: Answer) -> Script {
        self.shared
            .answers
            .lock()
            .expect("script lock")
            .push_back(answer);
        self
    }

    /// `times` requests in a row get this answer.
    pub(crate) fn then_times(self, times: usize, answer: Answer) -> Script {
        (0..times).fold(self, |script, _| script.then(answer.clone()))
    }

    /// Every request after the answers given in order gets this one.
    pub(crate) fn otherwise(self, answer: Answer) -> Script {
        *self.shared.otherwise.lock().expect("script lock") = Some(answer);
        self
    }

    /// A transport that answers from this script; all of them share it.
    pub(crate) fn transport(&self) -> Scripted {
        Scripted {
            shared: self.shared.clone(),
        }
    }

    /// The requests received, in the order they came.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().expect("script lock").clone()
    }

    /// How many requests were received.
    pub(crate) fn count(&self) -> usize {
        self.shared.calls.lock().expect("script lock").len()
    }
}

/// A transport of a [`Script`].
pub(crate) struct Scripted {
    shared: Arc<Shared>,
}

impl Transport for Scripted {
    fn deliver(
        &mut self,
        _destination: &str,
        request: &Request,
        events: &[&Origin],
    ) -> anyhow::Result<Reply> {
        let call = Call {
            method: request.method,
            url: request.url.clone(),
            body: request.body.clone(),
            origins: events.iter().map(|origin| **origin).collect(),
        };
        let number = {
            let mut calls = self.shared.calls.lock().expect("script lock");
            calls.push(call.clone());
            calls.len()
        };
        let next = self.shared.answers.lock().expect("script lock").pop_front();
        let answer = match next {
            Some(answer) => answer,
            None => match &*self.shared.otherwise.lock().expect("script lock") {
                Some(answer) => answer.clone(),
                None => anyhow::bail!(
                    "the script has no answer for request {number} ({} {}, lines {:?})",
                    call.method,
                    call.url,
                    call.lines()
                ),
            },
        };
        // Answered without a lock held: a closure may wait for another thread's request.
        Ok(answer.reply(&call))
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
