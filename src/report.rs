//! Accounting: every event ends sent, skipped, rejected or failed, with reasons;
//! the rejects file, the summary and the messages on standard error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::event::{Event, Origin, REJECT_NOTE_KEY};

/// Why an event was skipped, rejected or failed. `kind` groups events in the
/// summary; `detail` says what exactly was wrong with this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub kind: Cow<'static, str>,
    pub detail: String,
}

impl Reason {
    pub fn new(kind: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Reason {
        Reason {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    pub fn plain(kind: impl Into<Cow<'static, str>>) -> Reason {
        Reason::new(kind, String::new())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}

/// How much to say on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Problems printed one by one before the rest are only counted.
const SHOWN_PROBLEMS: u64 = 20;

/// What a rejected or failed event was: an event, or text that never became one.
pub enum Content<'a> {
    Event(&'a Event),
    Raw(&'a str),
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub read: u64,
    pub sent: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub failed: u64,
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
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub failed_by_reason: BTreeMap<String, u64>,
}

pub struct Report {
    summary: Summary,
    verbosity: Verbosity,
    rejects: Option<(PathBuf, BufWriter<File>)>,
    problems: u64,
    progress: Option<Progress>,
}

/// The bar on standard error: input bytes read of the total, events, rate, retries.
struct Progress {
    bar: ProgressBar,
    bytes: Arc<AtomicU64>,
}

/// Events between two updates of the bar; drawing itself is rate-limited by indicatif.
const PROGRESS_EVERY: u64 = 256;

impl Report {
    /// `bytes` counts input bytes as they are read; `total` is their sum when known.
    /// The bar is only drawn when standard error is a terminal.
    pub fn new(
        verbosity: Verbosity,
        rejects: Option<&Path>,
        bytes: Arc<AtomicU64>,
        total: Option<u64>,
    ) -> anyhow::Result<Report> {
        let progress =
            (verbosity != Verbosity::Quiet && std::io::stderr().is_terminal()).then(|| {
                let bar = match total {
                    Some(total) => ProgressBar::new(total).with_style(
                        ProgressStyle::with_template(
                            "{bar:30} {bytes}/{total_bytes} {msg} ({elapsed}, eta {eta})",
                        )
                        .expect("the template is valid"),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{spinner} {bytes} {msg} ({elapsed})")
                            .expect("the template is valid"),
                    ),
                };
                Progress { bar, bytes }
            });
        let rejects = match rejects {
            Some(path) => {
                let file = File::create(path)
                    .with_context(|| format!("cannot create rejects file {}", path.display()))?;
                Some((path.to_owned(), BufWriter::new(file)))
            }
            None => None,
        };
        Ok(Report {
            summary: Summary::default(),
            verbosity,
            rejects,
            problems: 0,
            progress,
        })
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    pub fn read(&mut self) {
        self.summary.read += 1;
        if self.summary.read.is_multiple_of(PROGRESS_EVERY) {
            self.update_progress();
        }
    }

    fn update_progress(&self) {
        if let Some(progress) = &self.progress {
            progress
                .bar
                .set_position(progress.bytes.load(Ordering::Relaxed));
            let seconds = progress.bar.elapsed().as_secs_f64().max(0.001);
            let mut message = format!(
                "{} events, {:.0}/s",
                self.summary.read,
                self.summary.read as f64 / seconds
            );
            if self.summary.retries > 0 {
                message.push_str(&format!(", {} retries", self.summary.retries));
            }
            progress.bar.set_message(message);
        }
    }

    /// Prints a line on standard error without tearing the progress bar.
    pub fn say(&self, line: &str) {
        match &self.progress {
            Some(progress) => progress.bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    pub fn sent(&mut self, events: u64) {
        self.summary.sent += events;
    }

    pub fn request(&mut self) {
        self.summary.requests += 1;
    }

    pub fn retry(&mut self, wait: std::time::Duration) {
        self.summary.retries += 1;
        self.waited(wait);
        self.update_progress();
    }

    pub fn waited(&mut self, wait: std::time::Duration) {
        self.summary.backoff_seconds += wait.as_secs_f64();
    }

    pub fn on_server(&mut self, elapsed: std::time::Duration) {
        self.summary.server_seconds += elapsed.as_secs_f64();
    }

    pub fn aborted(&mut self, reason: String) {
        self.summary.aborted = Some(reason);
    }

    pub fn skipped(&mut self, origin: &Origin, reason: &Reason) {
        self.summary.skipped += 1;
        *self
            .summary
            .skipped_by_reason
            .entry(reason.kind.to_string())
            .or_default() += 1;
        if self.verbosity == Verbosity::Verbose {
            self.say(&format!("segrelay: {origin}: skipped: {reason}"));
        }
    }

    pub fn rejected(
        &mut self,
        origin: &Origin,
        reason: &Reason,
        content: Content,
    ) -> anyhow::Result<()> {
        self.summary.rejected += 1;
        *self
            .summary
            .rejected_by_reason
            .entry(reason.kind.to_string())
            .or_default() += 1;
        self.problem("rejected", origin, reason, content)
    }

    pub fn failed(
        &mut self,
        origin: &Origin,
        reason: &Reason,
        content: Content,
    ) -> anyhow::Result<()> {
        self.summary.failed += 1;
        *self
            .summary
            .failed_by_reason
            .entry(reason.kind.to_string())
            .or_default() += 1;
        self.problem("failed", origin, reason, content)
    }

    fn problem(
        &mut self,
        outcome: &str,
        origin: &Origin,
        reason: &Reason,
        content: Content,
    ) -> anyhow::Result<()> {
        self.problems += 1;
        if self.verbosity == Verbosity::Verbose
            || (self.verbosity == Verbosity::Normal && self.problems <= SHOWN_PROBLEMS)
        {
            let place = if origin.line == 0 {
                origin.source.to_string()
            } else {
                origin.to_string()
            };
            self.say(&format!("segrelay: {place}: {outcome}: {reason}"));
        }
        let Some((path, writer)) = &mut self.rejects else {
            return Ok(());
        };
        let note = json!({
            "outcome": outcome,
            "reason": reason.kind,
            "detail": reason.detail,
            "source": &*origin.source,
            "line": origin.line,
        });
        let line = match content {
            Content::Event(event) => {
                // The original event, with segrelay's note beside its own keys.
                let mut fields: Map<String, Value> = Map::with_capacity(event.fields.len() + 1);
                fields.insert(REJECT_NOTE_KEY.to_owned(), note);
                let mut line = serde_json::to_string(&fields)?;
                let original = event.to_json();
                if original.len() > 2 {
                    line.pop();
                    line.push(',');
                    line.push_str(&original[1..]);
                }
                line
            }
            Content::Raw(raw) => {
                let mut note = note;
                note["raw"] = Value::String(raw.to_owned());
                json!({ REJECT_NOTE_KEY: note }).to_string()
            }
        };
        writeln!(writer, "{line}")
            .with_context(|| format!("cannot write rejects file {}", path.display()))
    }

    /// Flushes the rejects file and writes the summary, as JSON and for people.
    pub fn finish(&mut self, title: &str, summary_path: Option<&Path>) -> anyhow::Result<()> {
        if let Some(progress) = self.progress.take() {
            progress.bar.finish_and_clear();
        }
        if let Some((path, writer)) = &mut self.rejects {
            writer
                .flush()
                .with_context(|| format!("cannot write rejects file {}", path.display()))?;
        }
        if let Some(path) = summary_path {
            let mut text = serde_json::to_string_pretty(&self.summary)?;
            text.push('\n');
            std::fs::write(path, text)
                .with_context(|| format!("cannot write summary {}", path.display()))?;
        }
        if self.verbosity > Verbosity::Quiet {
            eprint!("{}", self.human(title));
        }
        Ok(())
    }

    fn human(&self, title: &str) -> String {
        let s = &self.summary;
        let mut out = format!(
            "segrelay: {title}: read {}: {} sent, {} skipped, {} rejected, {} failed; {} request{}\n",
            plural(s.read, "event"),
            s.sent,
            s.skipped,
            s.rejected,
            s.failed,
            s.requests,
            if s.requests == 1 { "" } else { "s" }
        );
        if s.retries > 0 || s.server_seconds > 0.0 {
            out.push_str(&format!(
                "  {} retr{}, {:.1} s waiting on the server, {:.1} s backing off\n",
                s.retries,
                if s.retries == 1 { "y" } else { "ies" },
                s.server_seconds,
                s.backoff_seconds
            ));
        }
        if let Some(reason) = &s.aborted {
            out.push_str(&format!("  aborted: {reason}\n"));
        }
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
        let hidden = self.problems.saturating_sub(SHOWN_PROBLEMS);
        if self.verbosity == Verbosity::Normal && hidden > 0 {
            out.push_str(&format!(
                "  {hidden} more problems not shown (-v shows all)\n"
            ));
        }
        if s.rejected + s.failed > 0 {
            match &self.rejects {
                Some((path, _)) => out.push_str(&format!(
                    "  rejected and failed events are in {}\n",
                    path.display()
                )),
                None => out.push_str("  keep them with --rejects PATH\n"),
            }
        }
        out
    }
}

/// Seconds to the millisecond: no float noise in the summary.
fn milliseconds<S: serde::Serializer>(seconds: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((seconds * 1000.0).round() / 1000.0)
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
