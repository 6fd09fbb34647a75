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
    retries: Arc<AtomicU64>,
}

impl Console {
    /// `total` is the input's size in bytes, when known.
    pub(crate) fn new(verbosity: Verbosity, total: Option<u64>) -> Console {
        let bar =
            (verbosity != Verbosity::Quiet && std::io::stderr().is_terminal()).then(
                || match total {
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
                },
            );
        Console {
            verbosity,
            bar,
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

    /// Counts a retry for the bar.
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Shows how far the reading is: events read, and bytes of the input.
    pub(crate) fn progress(&self, read: u64, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            let seconds = bar.elapsed().as_secs_f64().max(0.001);
            let mut message = format!(
                "{}, {:.0}/s",
                crate::report::plural(read, "event"),
                read as f64 / seconds
            );
            let retries = self.retries.load(Ordering::Relaxed);
            if retries > 0 {
                message.push_str(&format!(", {retries} retries"));
            }
            bar.set_message(message);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nb\r\t\u{1b}[31m\u{9b}\u{7f}"),
            "a\\nb\\r\\t\\x1b[31m\\u{9b}\\x7f"
        );
    }
}
