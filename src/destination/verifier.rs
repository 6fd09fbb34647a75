//! `segrelay verify`'s comparison, the destination's part: what it should
//! hold after a send of the input, against what it says it holds. The
//! command (reading the input's folders, the report, the exit status) is
//! the core's; each destination that can read events back gives a
//! [`Verifier`] that scans the input and queries it through a [`Verification`].

use std::io::IsTerminal;

use serde_json::Value;

use crate::console::Verbosity;
use crate::delivery::{Call, Courier, Delivered};
use crate::destination::{Destination, Payload, Request};
use crate::event::Origin;
use crate::run::pipeline::{self, Options};
use crate::transport::Transport;

/// Compares the input with what a destination holds.
pub trait Verifier {
    /// Scans the input and queries the destination; after an abort (which the
    /// courier says), what it compared so far, or [`Comparison::stopped`].
    fn compare(&self, with: &mut Verification<'_>) -> anyhow::Result<Comparison>;
}

/// What a comparison found: the differences, as a table and as JSON.
pub struct Comparison {
    pub(crate) columns: &'static [&'static str],
    pub(crate) rows: Vec<Vec<String>>,
    pub(crate) json: Value,
    pub(crate) checked: usize,
    pub(crate) notes: Vec<String>,
}

impl Comparison {
    /// The comparison of a verify the destination stopped.
    pub fn stopped() -> Comparison {
        Comparison {
            columns: &[],
            rows: Vec::new(),
            json: Value::Array(Vec::new()),
            checked: 0,
            notes: Vec::new(),
        }
    }
}

/// What a verifier reads the input and asks the destination with.
pub struct Verification<'a> {
    options: &'a Options,
    destination: &'a dyn Destination,
    courier: &'a Courier,
    transport: &'a mut dyn Transport,
    verbosity: Verbosity,
}

impl<'a> Verification<'a> {
    pub(crate) fn new(
        options: &'a Options,
        destination: &'a dyn Destination,
        courier: &'a Courier,
        transport: &'a mut dyn Transport,
        verbosity: Verbosity,
    ) -> Verification<'a> {
        Verification {
            options,
            destination,
            courier,
            transport,
            verbosity,
        }
    }

    /// Every event the destination would receive from the input (after the
    /// filters), translated: see [`pipeline::scan`].
    pub(crate) fn scan(&self, each: impl FnMut(Origin, Payload)) -> anyhow::Result<()> {
        pipeline::scan(self.options, self.destination, each)
    }

    /// Sends a query with the courier's retries; the answer's JSON, or None
    /// after an abort.
    pub(crate) fn ask(&mut self, request: &Request) -> anyhow::Result<Option<Value>> {
        let courier = self.courier;
        let mut delivered = Delivered::default();
        match courier.call(self.transport, request, &mut delivered)? {
            Call::Answered(response) => match serde_json::from_slice(&response.body) {
                Ok(value) => Ok(Some(value)),
                Err(e) => {
                    courier.abort(&format!(
                        "{} answered with something that is not JSON ({e})",
                        request.url
                    ));
                    Ok(None)
                }
            },
            Call::Refused { message, .. } => {
                courier.abort(&format!("{} refused the query: {message}", request.url));
                Ok(None)
            }
            Call::Written | Call::Stopped(_) => Ok(None),
        }
    }

    /// A progress bar over `total` queries, on a terminal, unless quiet.
    pub(crate) fn progress(&self, total: u64, what: &str) -> Option<indicatif::ProgressBar> {
        let show =
            self.verbosity != Verbosity::Quiet && std::io::stderr().is_terminal() && total > 1;
        show.then(|| {
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {what} ({{elapsed}}, eta {{eta}})"
            ))
            .expect("the template is valid");
            indicatif::ProgressBar::new(total).with_style(style)
        })
    }
}
