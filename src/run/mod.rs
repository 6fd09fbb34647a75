//! `send` and `check`: a validated [`RunConfig`] builds the run (courier,
//! dispatch, report, checkpoint, the destination's gate), makes its passes,
//! and says how it ended.

pub(crate) mod dedupe;
pub(crate) mod ingest_window;
pub(crate) mod pipeline;
pub(crate) mod prepare;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::checkpoint::Checkpoint;
use crate::config::{Output, RunConfig};
use crate::console::plural;
use crate::console::{Console, Verbosity};
use crate::delivery::Courier;
use crate::delivery::throttle::Throttle;
use crate::destination::gate::{Beside, EventAt};
use crate::destination::{GateOptions, NO_CUSTOMER_ID, Planner};
use crate::input::{self, Source};
use crate::interrupt;
use crate::report::Report;
use crate::run::dedupe::Dedupe;
use crate::run::pipeline::{Dispatch, Pipeline};
use crate::status::Status;
use crate::transport::Discard;
use crate::transport::dry_run::DryRun;
use crate::transport::http::HttpSender;

/// A run, built and ready to make its passes.
pub(crate) struct Job {
    run: Pipeline,
    /// How the summary names the run.
    title: String,
    /// `--summary`: where the JSON summary goes.
    summary: Option<PathBuf>,
    /// The run's passes: one plain pass, or those the destination plans.
    planner: Box<dyn Planner>,
    /// A real send, not a dry run or a check.
    sends: bool,
}

impl Job {
    pub(crate) fn build(config: RunConfig) -> anyhow::Result<Job> {
        let RunConfig {
            target,
            options,
            verbosity,
            output,
            rejects,
            summary,
            retry,
            rate,
            ensure_customers,
            identity,
            planner,
            checkpoint,
            restart,
            warnings,
        } = config;
        let destination = target.destination.clone();
        if verbosity > Verbosity::Quiet
            && options.sources.contains(&Source::Stdin)
            && io::stdin().is_terminal()
        {
            crate::console::stderr_line(
                "segrelay: reading events from standard input (end with Ctrl-D)",
            );
        }
        let sends = matches!(output, Output::Send { .. });
        let (checkpoint, resumed) = match (&checkpoint, &identity) {
            (Some(path), Some(identity)) => {
                let (checkpoint, resumed) =
                    Checkpoint::open(path, identity, &options.sources, restart)?;
                let resumed = resumed.then(|| checkpoint.state().clone());
                (Some(checkpoint), resumed)
            }
            _ => (None, None),
        };
        // A planner that reads the input once per window: its size tells nothing of the run's end.
        let input_size = match planner.reads_input_once() {
            true => input::total_size(&options.sources),
            false => None,
        };
        let console = Console::new(verbosity, input_size);
        let rejects_length = resumed
            .as_ref()
            .map(|state| state.rejects_length.unwrap_or(0));
        let mut report = Report::new(console.clone(), rejects.as_deref(), rejects_length)?;
        if let Some(folders) = &options.folders {
            report.folders(folders);
        }
        for warning in &warnings {
            report.warn(warning.as_str());
        }
        if let Some(state) = &resumed {
            if verbosity > Verbosity::Quiet {
                console.say(&resuming_line(&state.totals, sends));
                if state.inputs.iter().all(|i| i.done) {
                    console.say("segrelay: the checkpoint says every input is already settled: nothing to do (--restart starts over)");
                }
            }
            report.resumed(state.totals.clone());
        }
        if checkpoint.is_some() {
            report.checkpointed();
        }
        if !sends {
            report.sends_nothing();
        }
        let (dispatch, title) = match output {
            Output::DryRun {
                format,
                output,
                show_secrets,
            } => {
                let secret = target.secret();
                if show_secrets && secret.value().is_none() {
                    report.warn(format!(
                        "--show-secrets: no key to show, {} is not set; the requests say ***",
                        secret.origin()
                    ));
                }
                let (out, target): (Box<dyn Write>, String) = match output {
                    Some(path) if !crate::report::is_stdout(&path) => {
                        let file = File::create(&path)
                            .with_context(|| format!("cannot create {}", path.display()))?;
                        (
                            Box::new(BufWriter::with_capacity(256 * 1024, file)),
                            path.display().to_string(),
                        )
                    }
                    _ => (
                        Box::new(BufWriter::with_capacity(256 * 1024, io::stdout())),
                        "standard output".to_owned(),
                    ),
                };
                let writer = DryRun::new(format, show_secrets, out, target, destination.clone());
                (
                    Dispatch::Inline(Box::new(writer)),
                    format!("{} (dry run)", destination.name()),
                )
            }
            Output::Check => (
                Dispatch::Inline(Box::new(Discard)),
                format!("{} (check)", destination.name()),
            ),
            Output::Send {
                timeout,
                concurrency,
            } => {
                // One more connection for lookups and backfills between batches.
                let sender = HttpSender::new(timeout, concurrency + 1);
                let make = sender.clone();
                // Even one request in flight goes through a sending thread, so that the
                // next batch is read and translated while the destination answers.
                let dispatch = Dispatch::Pool {
                    size: concurrency,
                    make: Box::new(move || Box::new(make.clone())),
                    control: Box::new(sender),
                };
                (dispatch, destination.name().to_owned())
            }
        };
        // Rate limits are the destination's: a dry run or a check has none.
        let throttle = match sends {
            true => Throttle::new(rate, target.max_events_per_minute),
            false => Throttle::new(None, None),
        };
        let courier = Courier::new(
            destination.clone(),
            target.secret(),
            retry,
            throttle,
            console,
        );
        // What the destination does with each record before its batch; a
        // backfill's passes send only usage records.
        let gate = match planner.reads_input_once() {
            false => None,
            true => destination.gate(GateOptions {
                ensure_customers,
                beside: checkpoint.as_ref().map(|c| {
                    let resumed = resumed.as_ref().map(|state| state.kept_lengths.clone());
                    Beside::new(c.path(), resumed)
                }),
            })?,
        };
        Ok(Job {
            run: Pipeline {
                options,
                courier: Arc::new(courier),
                dispatch,
                report,
                checkpoint,
                gate,
                dedupe: Dedupe::default(),
            },
            title,
            summary,
            planner,
            sends,
        })
    }

    /// Makes the passes, writes the summary, and says how the run ended.
    pub(crate) fn run(mut self) -> anyhow::Result<Status> {
        interrupt::install();
        let run = &mut self.run;
        read_ahead(run)?;
        let end = self.planner.make_passes(run)?;
        run.dispatch.finish()?;
        let report = &mut run.report;
        for warning in run.dedupe.warnings() {
            report.warn(warning);
        }
        let no_customer_id = report.summary().skipped_by_reason.get(NO_CUSTOMER_ID);
        if let Some(&events) = no_customer_id {
            let field = run.courier.destination.customer_id_field();
            report.warn(field.warning(events));
        }
        report.input_errors(run.options.unreadable.count());
        for warning in run.options.filter.unmatched_events() {
            report.warn(warning);
        }
        if let Some(checkpoint) = &run.checkpoint
            && report.console().verbosity() == Verbosity::Verbose
        {
            report.console().say(&format!(
                "segrelay: checkpoint {} written {} by this run",
                checkpoint.path().display(),
                plural(checkpoint.writes(), "time")
            ));
        }
        let mut aborted = end.aborted;
        if interrupt::output_closed() {
            let read = plural(report.summary().read, "event");
            match (end.complete, self.sends) {
                // Closed at the very end: every event was read and settled.
                (true, _) => report.warn(format!(
                    "standard output was closed by its reader before the end of the output ({read} read)"
                )),
                // Events were left unsent: that is no clean end for a send.
                (false, true) if aborted.is_none() => {
                    aborted = Some(format!(
                        "standard output was closed by its reader: the run stopped reading after {read}; the rest of the input was not sent (run again, with --checkpoint to go on from there)"
                    ))
                }
                (false, _) => report.warn(format!(
                    "standard output was closed by its reader: the run stopped reading after {read}"
                )),
            }
        }
        if let Some(reason) = aborted.clone() {
            report.aborted(reason);
        }
        // Ctrl-C that only cut the count of the lines an abort left unread
        // does not make the aborted run an interrupted one.
        let interrupted = interrupt::requested() && !report.summary().lines_not_read_partial;
        if interrupted {
            report.interrupted();
        }
        report.finish(&self.title, self.summary.as_deref())?;
        let s = report.summary();
        Ok(if interrupted {
            Status::Interrupted
        } else if aborted.is_some() {
            Status::Aborted
        } else if s.rejected + s.failed + s.input_errors > 0
            || s.already_done
                .as_ref()
                .is_some_and(|earlier| earlier.rejected + earlier.failed > 0)
        {
            // A resumed job answers for what earlier runs of it rejected too.
            Status::Problems
        } else {
            Status::Clean
        })
    }
}

/// Said first on a resume: what the checkpoint already holds, which the
/// progress and the counts of this run do not include.
fn resuming_line(earlier: &crate::report::Totals, sends: bool) -> String {
    let sent_word = if sends { "sent" } else { "translated" };
    format!(
        "segrelay: resuming from the checkpoint: {}",
        earlier.already_settled(sent_word)
    )
}

/// The input read ahead of the passes, when the destination's gate wants it
/// (to fold each customer's identifies into one write, say): it is handed
/// the records of the lines that mention its word, sending nothing.
fn read_ahead(run: &mut Pipeline) -> anyhow::Result<()> {
    let Some(mut gate) = run.gate.take() else {
        return Ok(());
    };
    let read = match gate.begin_ahead() {
        Some(word) => run
            .look_ahead(word, |at, index, payload| {
                gate.ahead(&payload, EventAt::new(at, index))
            })
            .map(|whole| {
                for warning in gate.ahead_done(whole) {
                    run.report.warn(warning);
                }
            }),
        None => Ok(()),
    };
    run.gate = Some(gate);
    read
}
