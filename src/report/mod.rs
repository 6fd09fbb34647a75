//! Accounting: every event ends sent, skipped, rejected or failed, with reasons;
//! the rejects file, the summary, and what is said on standard error.

pub(crate) mod outcome;
pub(crate) mod problems;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::console::{Console, Verbosity, plural};
use crate::event::reason::Reason;
use crate::event::rejects;
use crate::event::{Event, Origin};
use crate::input::Unread;
use crate::interrupt;
use crate::report::outcome::{Content, Outcome};
use crate::report::problems::Problems;
use crate::status::OutputFailed;

/// Events between two updates of the bar; drawing itself is rate-limited by indicatif.
const PROGRESS_EVERY: u64 = 256;

/// The counts a checkpoint carries from one run to the next.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Totals {
    pub read: u64,
    pub sent: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub failed: u64,
}

impl Totals {
    /// `N events already settled (S sent, K skipped, R rejected, F failed)`,
    /// `sent_word` being what the run calls events that went through.
    pub(crate) fn already_settled(&self, sent_word: &str) -> String {
        format!(
            "{} already settled ({} {sent_word}, {} skipped, {} rejected, {} failed)",
            plural(self.read, "event"),
            self.sent,
            self.skipped,
            self.rejected,
            self.failed
        )
    }
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    pub read: u64,
    pub sent: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Inputs that could not be opened (not events: they are not in `read`).
    pub input_errors: u64,
    pub requests: u64,
    pub retries: u64,
    /// Time spent waiting for the destination's answers.
    #[serde(serialize_with = "milliseconds")]
    pub server_seconds: f64,
    /// Time spent waiting before retries and for rate limits.
    #[serde(serialize_with = "milliseconds")]
    pub backoff_seconds: f64,
    /// Why the destination stopped the run, if it did.
    pub aborted: Option<String>,
    /// True when Ctrl-C or SIGTERM stopped the run.
    pub interrupted: bool,
    /// Where an abort or Ctrl-C stopped the run: the first event that failed
    /// (a resume with the checkpoint starts there), else the first line not read.
    pub stopped_at: Option<String>,
    /// After an abort: the non-blank input lines never read, from the line
    /// where the reading stopped to the end of the inputs. Not events: they
    /// were not parsed (a line may hold a batch of several).
    pub lines_not_read: Option<u64>,
    /// Ctrl-C cut the count of `lines_not_read` short: it is a lower bound.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lines_not_read_partial: bool,
    /// A run of a pass per time window (a destination's backfill) stopped:
    /// the windows whose pass was not made, whose events were therefore not read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows_not_made: Vec<WindowNotMade>,
    /// What earlier runs settled, when this one resumed from a checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already_done: Option<Totals>,
    /// The files and Segment's day folders read and skipped, when an input is a folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folders: Option<crate::input::Folders>,
    /// Objects and bytes listed and read, and the requests made, when an input is `s3://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<crate::input::s3::Counts>,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub failed_by_reason: BTreeMap<String, u64>,
    /// What the user should act on though nothing failed, one sentence each.
    pub warnings: Vec<String>,
}

/// A time window whose pass a stopped run did not make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WindowNotMade {
    pub start: String,
    pub end: String,
    /// Its events, as counted when the windows were planned.
    pub events: u64,
}

/// The rejects file: appended to, and cut back to a checkpoint's length on resume.
struct Rejects {
    path: PathBuf,
    writer: BufWriter<Box<dyn Write>>,
    /// The file behind `writer`, to make it durable; None on standard output.
    file: Option<File>,
    /// Events that could not be written because standard output was closed.
    unwritten: u64,
    /// The file's length once what was written is flushed.
    length: u64,
}

/// `-` as an output path: standard output.
pub(crate) fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Events that carried a property as numeric text: how many, the first text,
/// and the destination's wording of the advice.
type NumericTextCount = (u64, String, fn(&str, u64, &str) -> String);

/// Events whose keys or values were changed: how many, the first one's place
/// and change, and the destination's wording of the warning.
type Rewritten = (u64, String, fn(u64, &str) -> String);

pub(crate) struct Report {
    summary: Summary,
    console: Console,
    rejects: Option<Rejects>,
    problems: Problems,
    /// Where the first and the last line settled by this run end in the
    /// inputs (see `Position::offset`): what the events settled took.
    settled_offsets: Option<(u64, u64)>,
    /// Events settled, for the checkpoint.
    settled: Totals,
    /// Properties sent as numeric text that the destination keeps as text:
    /// how many events, the first text, and the destination's advice, for the end.
    numeric_text: BTreeMap<String, NumericTextCount>,
    /// Events whose keys or values the destination stores changed: how many,
    /// the first one's place and change, and how the destination words the warning.
    rewritten: Option<Rewritten>,
    /// Events whose time came from a device's clock or had no offset.
    time_notes: crate::event::Tally,
    /// What the human summary calls events that went through: a dry run or a
    /// check sends nothing, it only translates (the JSON keeps `sent`).
    sent_word: &'static str,
    /// `--checkpoint`: a stopped run resumes where it stopped.
    checkpointed: bool,
    /// What the human summary calls the windows not made.
    windows_called: &'static str,
}

impl Report {
    /// `rejects_length`: on a resume, the length of the rejects file that the
    /// checkpoint covers; what is past it is cut. None starts the file afresh.
    pub(crate) fn new(
        console: Console,
        rejects: Option<&Path>,
        rejects_length: Option<u64>,
    ) -> anyhow::Result<Report> {
        let rejects = match rejects {
            Some(path) if is_stdout(path) => Some(Rejects {
                path: path.to_owned(),
                writer: BufWriter::new(Box::new(std::io::stdout())),
                file: None,
                unwritten: 0,
                length: 0,
            }),
            Some(path) => {
                let context = || format!("cannot open rejects file {}", path.display());
                let mut file = match rejects_length {
                    Some(length) => {
                        let mut file = OpenOptions::new()
                            .create(true)
                            .write(true)
                            .truncate(false)
                            .open(path)
                            .with_context(context)?;
                        file.set_len(length).with_context(context)?;
                        file.seek(SeekFrom::End(0)).with_context(context)?;
                        file
                    }
                    None => File::create(path).with_context(context)?,
                };
                file.flush()?;
                Some(Rejects {
                    path: path.to_owned(),
                    file: Some(file.try_clone().with_context(context)?),
                    writer: BufWriter::new(Box::new(file)),
                    unwritten: 0,
                    length: rejects_length.unwrap_or(0),
                })
            }
            None => None,
        };
        Ok(Report {
            summary: Summary::default(),
            console,
            rejects,
            problems: Problems::default(),
            settled_offsets: None,
            settled: Totals::default(),
            numeric_text: BTreeMap::new(),
            rewritten: None,
            time_notes: crate::event::Tally::default(),
            sent_word: "sent",
            checkpointed: false,
            windows_called: "windows",
        })
    }

    /// A dry run or a check: the human summary says "translated", not "sent".
    pub(crate) fn sends_nothing(&mut self) {
        self.sent_word = "translated";
    }

    pub(crate) fn summary(&self) -> &Summary {
        &self.summary
    }

    pub(crate) fn console(&self) -> &Console {
        &self.console
    }

    pub(crate) fn resumed(&mut self, earlier: Totals) {
        self.summary.already_done = Some(earlier);
    }

    pub(crate) fn aborted(&mut self, reason: String) {
        self.summary.aborted = Some(reason);
    }

    /// What the folders among the inputs held: said now, kept for the summary.
    pub(crate) fn folders(&mut self, folders: &crate::input::Folders) {
        folders.tell(&self.console);
        self.summary.folders = Some(folders.clone());
    }

    pub(crate) fn input_errors(&mut self, inputs: u64) {
        self.summary.input_errors = inputs;
    }

    pub(crate) fn interrupted(&mut self) {
        self.summary.interrupted = true;
    }

    /// The run keeps a checkpoint: what the summary advises after a stop.
    pub(crate) fn checkpointed(&mut self) {
        self.checkpointed = true;
    }

    /// Where an abort or Ctrl-C stopped the run (see `Summary::stopped_at`).
    pub(crate) fn stopped_at(&mut self, origin: Origin) {
        self.summary.stopped_at = Some(origin.to_string());
    }

    /// The input lines an aborted run did not read.
    pub(crate) fn not_read(&mut self, unread: Unread) {
        self.summary.lines_not_read = Some(unread.lines);
        self.summary.lines_not_read_partial = !unread.complete;
    }

    /// The windows whose pass a stopped run did not make, and what the
    /// human summary calls them (the planner's words: `backfill windows`).
    pub(crate) fn windows_not_made(&mut self, called: &'static str, windows: Vec<WindowNotMade>) {
        self.summary.windows_not_made = windows;
        self.windows_called = called;
    }

    /// Something the user should act on though nothing failed: said once on
    /// standard error (unless quiet) and kept in the summary's `warnings`.
    pub(crate) fn warn(&mut self, warning: impl Into<String>) {
        let warning = warning.into();
        if self.summary.warnings.contains(&warning) {
            return;
        }
        if self.console.verbosity() > Verbosity::Quiet {
            self.console.say(&format!("segrelay: warning: {warning}"));
        }
        self.summary.warnings.push(warning);
    }

    /// An event carried properties as numeric text that the destination keeps
    /// as text; `finish` gives the destination's advice for each.
    pub(crate) fn numeric_text(&mut self, found: &crate::destination::NumericText) {
        for (property, text) in &found.found {
            match self.numeric_text.get_mut(property) {
                Some((events, _, _)) => *events += 1,
                None => {
                    self.numeric_text
                        .insert(property.clone(), (1, text.clone(), found.advice));
                }
            }
        }
    }

    /// A settled event whose keys or values the destination stores changed;
    /// `finish` says how many, with the first.
    pub(crate) fn rewritten(&mut self, rewrite: &crate::destination::Rewrite, origin: &Origin) {
        match &mut self.rewritten {
            Some((events, _, _)) => *events += 1,
            None => {
                let example = format!("{origin}: {}", rewrite.example);
                self.rewritten = Some((1, example, rewrite.warning));
            }
        }
    }

    /// What reading a settled event's time found; `finish` says the counts.
    pub(crate) fn time_notes(&mut self, notes: crate::event::Notes, origin: &Origin) {
        self.time_notes.count(notes, origin);
    }

    /// An event was read; its outcome comes later, through `settle`.
    pub(crate) fn count_read(&mut self) {
        self.summary.read += 1;
    }

    /// The next event settled ends its line at `offset` in the inputs.
    pub(crate) fn settled_to(&mut self, offset: u64) {
        let first = self.settled_offsets.map_or(offset, |(first, _)| first);
        self.settled_offsets = Some((first, offset));
    }

    /// Shows on the bar how many events are settled: what the bar follows, not
    /// the reading, which runs ahead of the sending.
    fn show_progress(&self) {
        if !self.console.shows_progress() {
            return;
        }
        let (first, last) = self.settled_offsets.unwrap_or_default();
        let input = self
            .console
            .input_size()
            .map(|total| crate::console::Bytes {
                left: total.saturating_sub(last),
                spanned: last - first,
            });
        self.console.progress(crate::console::Progress {
            settled: self.settled.read,
            read: self.summary.read,
            input,
        });
    }

    /// The requests, retries and waits a delivery took.
    pub(crate) fn delivery(
        &mut self,
        requests: u64,
        retries: u64,
        server_wait: std::time::Duration,
        backoff: std::time::Duration,
    ) {
        self.summary.requests += requests;
        self.summary.retries += retries;
        self.summary.server_seconds += server_wait.as_secs_f64();
        self.summary.backoff_seconds += backoff.as_secs_f64();
    }

    /// Records how an event ended: counted, and written to the rejects file
    /// when it was not delivered.
    pub(crate) fn settle(&mut self, origin: &Origin, outcome: Outcome) -> anyhow::Result<()> {
        self.settled.read += 1;
        if self.settled.read.is_multiple_of(PROGRESS_EVERY) {
            self.show_progress();
        }
        match outcome {
            Outcome::Sent => {
                self.summary.sent += 1;
                self.settled.sent += 1;
            }
            Outcome::Skipped(reason) => {
                self.summary.skipped += 1;
                self.settled.skipped += 1;
                count(&mut self.summary.skipped_by_reason, &reason.kind);
                if self.console.verbosity() == Verbosity::Verbose {
                    self.console
                        .say(&format!("segrelay: {origin}: skipped: {reason}"));
                }
            }
            Outcome::Rejected(reason, content) => {
                self.summary.rejected += 1;
                self.settled.rejected += 1;
                count(&mut self.summary.rejected_by_reason, &reason.kind);
                self.problem("rejected", origin, &reason, content)?;
            }
            Outcome::Failed(reason, content) => {
                self.summary.failed += 1;
                self.settled.failed += 1;
                count(&mut self.summary.failed_by_reason, &reason.kind);
                self.problem("failed", origin, &reason, content)?;
            }
        }
        Ok(())
    }

    /// What has been settled so far, for a checkpoint.
    pub(crate) fn totals(&self) -> Totals {
        let mut totals = self.settled.clone();
        if let Some(earlier) = &self.summary.already_done {
            totals.read += earlier.read;
            totals.sent += earlier.sent;
            totals.skipped += earlier.skipped;
            totals.rejected += earlier.rejected;
            totals.failed += earlier.failed;
        }
        totals
    }

    /// Makes the rejects file durable, and says how long it is.
    pub(crate) fn sync_rejects(&mut self) -> anyhow::Result<Option<u64>> {
        let Some(rejects) = &mut self.rejects else {
            return Ok(None);
        };
        let context = || {
            OutputFailed(format!(
                "cannot write rejects file {}",
                rejects.path.display()
            ))
        };
        rejects.writer.flush().with_context(context)?;
        // A checkpoint refuses `--rejects -`: there is always a file here.
        let Some(file) = &mut rejects.file else {
            return Ok(None);
        };
        file.sync_data().with_context(context)?;
        Ok(Some(file.stream_position().with_context(context)?))
    }

    fn problem(
        &mut self,
        outcome: &'static str,
        origin: &Origin,
        reason: &Reason,
        content: Content,
    ) -> anyhow::Result<()> {
        let verbosity = self.console.verbosity();
        if verbosity > Verbosity::Quiet {
            let place = if origin.line == 0 {
                origin.source.to_string()
            } else {
                origin.to_string()
            };
            if let Some(line) = self.problems.line(verbosity, outcome, &place, reason) {
                self.console.say(&line);
            }
        }
        let Some(rejects) = &mut self.rejects else {
            return Ok(());
        };
        if interrupt::output_closed() && rejects.file.is_none() {
            rejects.unwritten += 1;
            return Ok(());
        }
        let note = rejects::note(outcome, reason, origin.source, origin.line);
        let line = match content {
            // Read back only now, for the few events that come to this.
            Content::Json(text) => match serde_json::from_slice::<Map<String, Value>>(&text) {
                Ok(mut fields) => {
                    fields.remove(rejects::NOTE_KEY);
                    rejects::event_line(note, &Event::from_map(fields, *origin).to_json())
                }
                Err(_) => rejects::raw_line(note, &text),
            },
            Content::Event(event) => rejects::event_line(note, &event.to_json()),
            Content::Raw(raw) => rejects::raw_line(note, &raw),
        };
        // On standard output each line goes at once: a reader that closes the
        // pipe then costs exactly the lines it did not take, and they are counted.
        let written = writeln!(rejects.writer, "{line}").and_then(|()| match rejects.file {
            None => rejects.writer.flush(),
            Some(_) => Ok(()),
        });
        if written.is_ok() {
            rejects.length += line.len() as u64 + 1;
        }
        rejects.closed_or(written)
    }

    /// The rejects file's length as written so far (flushed or not); None
    /// without a rejects file of its own.
    pub(crate) fn rejects_length(&self) -> Option<u64> {
        self.rejects
            .as_ref()
            .filter(|rejects| rejects.file.is_some())
            .map(|rejects| rejects.length)
    }

    /// Flushes the rejects file and writes the summary, as JSON and for people.
    pub(crate) fn finish(
        &mut self,
        title: &str,
        summary_path: Option<&Path>,
    ) -> anyhow::Result<()> {
        self.console.clear();
        for line in self.problems.repeated() {
            self.console.say(&line);
        }
        for warning in std::mem::take(&mut self.time_notes).warnings() {
            self.warn(warning);
        }
        for (property, (events, example, advice)) in std::mem::take(&mut self.numeric_text) {
            self.warn(advice(&property, events, &example));
        }
        if let Some((events, example, warning)) = self.rewritten.take() {
            self.warn(warning(events, &example));
        }
        if let Some(rejects) = &mut self.rejects {
            if !interrupt::output_closed() || rejects.file.is_some() {
                let flushed = rejects.writer.flush();
                rejects.closed_or(flushed)?;
            }
            if rejects.unwritten > 0 {
                let lost = format!(
                    "standard output was closed: {} could not be written there (run again with --rejects FILE)",
                    plural(rejects.unwritten, "rejected or failed event")
                );
                self.warn(lost);
            }
        }
        self.summary.s3 = crate::input::s3::counts();
        if let Some(path) = summary_path {
            let mut text = serde_json::to_string_pretty(&self.summary)?;
            text.push('\n');
            let written = match is_stdout(path) {
                // Closed by its reader: nobody is left to read the summary there.
                true => match std::io::stdout().lock().write_all(text.as_bytes()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                    other => other,
                },
                false => std::fs::write(path, text),
            };
            written.with_context(|| {
                OutputFailed(format!("cannot write summary {}", path.display()))
            })?;
        }
        if self.console.verbosity() > Verbosity::Quiet {
            crate::console::stderr_text(&self.human(title));
        } else {
            // Quiet, a run that stopped early still says where and why.
            let stop = self.stop_lines();
            if !stop.is_empty() {
                crate::console::stderr_text(&format!("segrelay: {title}: stopped\n{stop}"));
            }
        }
        Ok(())
    }

    fn human(&self, title: &str) -> String {
        let s = &self.summary;
        let mut out = format!(
            "segrelay: {title}: read {}: {} {}, {} skipped, {} rejected, {} failed; {} request{}\n",
            plural(s.read, "event"),
            s.sent,
            self.sent_word,
            s.skipped,
            s.rejected,
            s.failed,
            s.requests,
            if s.requests == 1 { "" } else { "s" }
        );
        if let Some(earlier) = &s.already_done {
            out.push_str(&format!(
                "  resumed from the checkpoint: {}\n",
                earlier.already_settled(self.sent_word)
            ));
        }
        if s.retries > 0 || s.server_seconds > 0.0 {
            out.push_str(&format!(
                "  {} retr{}, {:.1} s waiting on the server, {:.1} s backing off\n",
                s.retries,
                if s.retries == 1 { "y" } else { "ies" },
                s.server_seconds,
                s.backoff_seconds
            ));
        }
        if let Some(s3) = &s.s3 {
            out.push_str(&s3.line());
        }
        if s.input_errors > 0 {
            out.push_str(&format!(
                "  {} could not be read\n",
                plural(s.input_errors, "input")
            ));
        }
        out.push_str(&self.stop_lines());
        for (label, reasons) in [
            ("skipped", &s.skipped_by_reason),
            ("rejected", &s.rejected_by_reason),
            ("failed", &s.failed_by_reason),
        ] {
            if !reasons.is_empty() {
                let list: Vec<String> = reasons
                    .iter()
                    .map(|(reason, n)| format!("{reason} ({n})"))
                    .collect();
                out.push_str(&format!("  {label}: {}\n", list.join(", ")));
            }
        }
        let hidden = self.problems.hidden();
        if self.console.verbosity() == Verbosity::Normal && hidden > 0 {
            out.push_str(&format!(
                "  {hidden} more problems not shown (-v shows all)\n"
            ));
        }
        if s.rejected + s.failed > 0 {
            match &self.rejects {
                Some(rejects) if is_stdout(&rejects.path) => {
                    out.push_str("  rejected and failed events went to standard output\n")
                }
                Some(rejects) => out.push_str(&format!(
                    "  rejected and failed events are in {}\n",
                    rejects.path.display()
                )),
                None => out.push_str("  keep them with --rejects PATH\n"),
            }
        }
        out
    }
}

impl Report {
    /// What the summary says of a run that stopped early: why, where, what
    /// was not read, and how to go on. Empty for a run that ran to its end.
    fn stop_lines(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        if let Some(reason) = &s.aborted {
            out.push_str(&format!("  aborted: {reason}\n"));
        }
        if let Some(at) = &s.stopped_at {
            out.push_str(&format!("  stopped at {at}"));
            if let Some(lines) = s.lines_not_read {
                let at_least = if s.lines_not_read_partial {
                    "at least "
                } else {
                    ""
                };
                out.push_str(&format!(
                    "; {at_least}{} not read",
                    plural(lines, "input line")
                ));
            }
            out.push('\n');
        }
        if !s.windows_not_made.is_empty() {
            let windows: Vec<String> = s
                .windows_not_made
                .iter()
                .map(|w| format!("{} to {} ({})", w.start, w.end, plural(w.events, "event")))
                .collect();
            out.push_str(&format!(
                "  {} not made, their events not read: {}\n",
                self.windows_called,
                windows.join(", ")
            ));
        }
        if s.interrupted {
            out.push_str("  interrupted: run the same command again to go on (with --checkpoint, from where it stopped)\n");
        } else if s.aborted.is_some() {
            out.push_str(if self.checkpointed {
                "  to go on: fix the cause and run the same command again: it resumes from the checkpoint\n"
            } else {
                "  to go on: fix the cause and run the same command again (events already sent are deduped by their keys), or better with --checkpoint PATH, which resumes where a run stopped\n"
            });
        }
        out
    }
}

impl Rejects {
    /// A write's error, unless it is standard output closed by its reader: then
    /// the run stops reading, and the events not written there are counted.
    fn closed_or(&mut self, written: std::io::Result<()>) -> anyhow::Result<()> {
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && self.file.is_none() => {
                interrupt::close_output();
                self.unwritten += 1;
                Ok(())
            }
            other => other.with_context(|| {
                OutputFailed(format!("cannot write rejects file {}", self.path.display()))
            }),
        }
    }
}

/// Counts a reason without allocating its name again and again.
fn count(reasons: &mut BTreeMap<String, u64>, kind: &str) {
    match reasons.get_mut(kind) {
        Some(n) => *n += 1,
        None => {
            reasons.insert(kind.to_owned(), 1);
        }
    }
}

/// Seconds to the millisecond: no float noise in the summary.
fn milliseconds<S: serde::Serializer>(seconds: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((seconds * 1000.0).round() / 1000.0)
}
