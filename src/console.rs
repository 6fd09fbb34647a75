//! Standard error: how much to say, and the progress bar that messages must not tear.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// How much to say on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Standard error, shared by every thread of a run: messages, and the progress
/// bar (only on a terminal) that they must not tear.
#[derive(Clone)]
pub(crate) struct Console {
    verbosity: Verbosity,
    bar: Option<ProgressBar>,
    input_size: Option<u64>,
    retries: Arc<AtomicU64>,
}

/// Where a run is, for the bar.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    /// Events settled: sent, skipped, rejected or failed.
    pub settled: u64,
    /// Events read: the reading runs ahead of the sending.
    pub read: u64,
    /// The input's bytes, when its size is known.
    pub input: Option<Bytes>,
}

/// Of the input's bytes: those after the last line settled, and those the
/// events settled so far took (for how many events a byte holds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes {
    pub left: u64,
    pub spanned: u64,
}

impl Progress {
    /// The events of this run in all, estimated from the events the bytes
    /// settled so far held; None until there is something to estimate from.
    pub(crate) fn estimated_events(&self) -> Option<u64> {
        let input = self.input?;
        if input.left == 0 {
            return Some(self.settled);
        }
        if input.spanned == 0 || self.settled == 0 {
            return None;
        }
        let left = u128::from(self.settled) * u128::from(input.left) / u128::from(input.spanned);
        Some(
            self.settled
                .saturating_add(u64::try_from(left).unwrap_or(u64::MAX)),
        )
    }

    /// The bar's text after `seconds`: events settled, their rate, and when
    /// the input's size allows an estimate, the events in all and the time
    /// left, both marked `~` (the number of events is known only at the end).
    pub(crate) fn text(&self, seconds: f64, retries: u64) -> String {
        let seconds = seconds.max(0.001);
        let rate = self.settled as f64 / seconds;
        let mut text = match self.estimated_events() {
            Some(events) => {
                let events = events.max(self.settled);
                let mut text = format!("{} of ~{events} events settled, {rate:.0}/s", self.settled);
                if rate > 0.0 {
                    let left = (events - self.settled) as f64 / rate;
                    text.push_str(&format!(", eta ~{}", duration_text(left)));
                }
                text
            }
            None => format!(
                "{} settled, {rate:.0}/s ({} read)",
                plural(self.settled, "event"),
                self.read
            ),
        };
        if retries > 0 {
            text.push_str(&format!(", {retries} retries"));
        }
        text
    }
}

/// `42s`, `3m 05s`, `2h 10m`.
fn duration_text(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

impl Console {
    /// `input_size`: the input's size in bytes, when it is known (files, not
    /// gzip) and read once (a backfill that reads it once per window has none).
    pub(crate) fn new(verbosity: Verbosity, input_size: Option<u64>) -> Console {
        let bar = (verbosity != Verbosity::Quiet && std::io::stderr().is_terminal()).then(|| {
            let template = match input_size {
                Some(_) => "{bar:30} {msg} ({elapsed})",
                None => "{spinner} {msg} ({elapsed})",
            };
            ProgressBar::new(0)
                .with_style(ProgressStyle::with_template(template).expect("the template is valid"))
        });
        Console {
            verbosity,
            bar,
            input_size,
            retries: Arc::default(),
        }
    }

    pub(crate) fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    /// Prints a line on standard error without tearing the progress bar. Control
    /// characters (from file names, events, servers' answers) are shown escaped,
    /// so none can move the cursor, recolour the terminal or fake another line.
    pub(crate) fn say(&self, line: &str) {
        let line = escape_controls(line);
        match &self.bar {
            Some(bar) => bar.suspend(|| stderr_line(&line)),
            None => stderr_line(&line),
        }
    }

    /// [`Console::say`] unless quiet: for what tells how a run goes, not why it stopped.
    pub(crate) fn inform(&self, line: &str) {
        if self.verbosity > Verbosity::Quiet {
            self.say(line);
        }
    }

    /// Counts a retry for the bar.
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether there is a bar to show progress on.
    pub(crate) fn shows_progress(&self) -> bool {
        self.bar.is_some()
    }

    /// The input's size in bytes, when it is known (files, not gzip) and read once.
    pub(crate) fn input_size(&self) -> Option<u64> {
        self.input_size
    }

    /// Shows how far the run is: events settled, not events read.
    pub(crate) fn progress(&self, progress: Progress) {
        if let Some(bar) = &self.bar {
            if let Some(events) = progress.estimated_events() {
                bar.set_length(events.max(progress.settled));
            }
            bar.set_position(progress.settled);
            let retries = self.retries.load(Ordering::Relaxed);
            bar.set_message(progress.text(bar.elapsed().as_secs_f64(), retries));
        }
    }

    /// Takes the bar away, before the summary is printed.
    pub(crate) fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Writes `text` and a newline to standard error, whatever becomes of it.
/// `eprintln!` panics when standard error is closed (`segrelay ... 2>&1 | head`),
/// which would kill a run between two requests: a message nobody can read is
/// not worth stopping a backfill for, so a failed write is dropped.
pub(crate) fn stderr_line(text: &str) {
    stderr_text(&format!("{text}\n"));
}

/// [`stderr_line`] without the newline (a prompt, a text that holds its own).
pub(crate) fn stderr_text(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// `text` with its control characters written out: `\n`, `\r`, `\t`, else `\x1b` or `\u{9b}`.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub(crate) fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(settled: u64, read: u64, input: Option<(u64, u64)>) -> Progress {
        Progress {
            settled,
            read,
            input: input.map(|(left, spanned)| Bytes { left, spanned }),
        }
    }

    #[test]
    fn the_bar_follows_events_settled_not_read() {
        // Every event read, a third of the input settled: a third done.
        let a_third = progress(768, 2304, Some((172_304, 86_152)));
        assert_eq!(a_third.estimated_events(), Some(2304));
        assert_eq!(
            a_third.text(13.0, 0),
            "768 of ~2304 events settled, 59/s, eta ~26s"
        );
        let half = progress(500, 520, Some((5_000, 5_000)));
        assert_eq!(
            half.text(10.0, 3),
            "500 of ~1000 events settled, 50/s, eta ~10s, 3 retries"
        );
        // Every line settled: the count is exact.
        assert_eq!(progress(9, 9, Some((0, 900))).estimated_events(), Some(9));
        // Standard input or gzip: no size, so no total and no eta.
        let stdin = progress(1, 2304, None);
        assert_eq!(stdin.text(2.0, 0), "1 event settled, 0/s (2304 read)");
        // Nothing settled yet to estimate from.
        assert_eq!(progress(0, 10, Some((10, 0))).estimated_events(), None);
        assert_eq!(duration_text(90.0), "1m 30s");
        assert_eq!(duration_text(7300.0), "2h 01m");
    }

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nb\r\t\u{1b}[31m\u{9b}\u{7f}"),
            "a\\nb\\r\\t\\x1b[31m\\u{9b}\\x7f"
        );
    }
}
