//! How a run ended, as the process exit code, and what each code means: the
//! help, the man pages and the README's table say it from here.

/// How a run ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every event sent (or translated, in a dry run) or skipped.
    Clean = 0,
    /// Some events rejected or failed.
    Problems = 1,
    /// Usage or settings error.
    Usage = 2,
    /// The destination stopped the run: key refused, an answer that is not the
    /// API's (a wrong endpoint), or unreachable after retries.
    Aborted = 3,
    /// An output (the dry run's requests, the rejects file, the summary, the
    /// checkpoint) could not be written: a full disk, a closed file.
    Output = 4,
    /// segrelay itself failed (a delivery thread died): a bug to report.
    Internal = 70,
    /// Ctrl-C or SIGTERM (128 + SIGINT).
    Interrupted = 130,
}

/// Whose exit codes a text lists: the codes mean different things to `send`,
/// `check` and `verify`, and the top-level help says what they mean across them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exits {
    /// `segrelay --help`: every command.
    Any,
    Send,
    Check,
    Verify,
}

impl Status {
    /// Every status, in the order of their codes.
    pub const ALL: [Status; 7] = [
        Status::Clean,
        Status::Problems,
        Status::Usage,
        Status::Aborted,
        Status::Output,
        Status::Internal,
        Status::Interrupted,
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the code means to `command`, in one line; None when the command
    /// never exits with it.
    pub(crate) fn meaning(self, command: Exits) -> Option<&'static str> {
        use Exits::{Any, Check, Send, Verify};
        use Status::*;
        Some(match (self, command) {
            (Clean, Any) => {
                "success: no event rejected or failed (send, check), no difference (verify)"
            }
            (Clean, Send) => "every event was sent (or translated, in a dry run) or skipped",
            (Clean, Check) => "every event would be sent or skipped",
            (Clean, Verify) => "the destination holds what the input says it should",
            (Problems, Any) => {
                "some events were rejected or failed (send), would be (check), or differ (verify)"
            }
            (Problems, Send) => "some events were rejected or failed (see --rejects)",
            (Problems, Check) => "some events would be rejected (see --rejects)",
            (Problems, Verify) => "there are differences, or an input could not be read",
            (Usage, Any | Check) => "usage or settings error",
            (Usage, Send) => "usage or settings error: nothing was sent",
            (Usage, Verify) => {
                "usage or settings error, or a destination segrelay cannot read back (Kable)"
            }
            (Aborted, Any | Verify) => {
                "the destination refused the key, did not answer as the API, or stayed unreachable"
            }
            (Aborted, Send) => {
                "the destination aborted the run: key refused, an answer that is not the API's \
                 (wrong endpoint), or unreachable after retries; the message names the URL called, \
                 and the rest of the input was not read"
            }
            (Output, Any) => {
                "an output could not be written (the requests, the rejects, the summary, the checkpoint)"
            }
            (Output, Send) => {
                "an output could not be written (-o, --rejects, --summary, --checkpoint: a full disk, \
                 a closed file)"
            }
            (Output, Check) => "an output could not be written (--rejects, --summary: a full disk)",
            (Internal, Any) => "internal error: please report it",
            (Internal, Send) => "internal error (a delivery thread died): please report it",
            (Interrupted, Any | Check) => "interrupted (Ctrl-C or SIGTERM)",
            (Interrupted, Send) => {
                "interrupted (Ctrl-C or SIGTERM): run the same command again to go on"
            }
            (Aborted | Internal, Check) | (Output | Internal | Interrupted, Verify) => return None,
        })
    }
}

/// Why a write of an output failed, as the context of its I/O error: the run
/// exits with [`Status::Output`], not with the status of rejected events.
#[derive(Debug)]
pub(crate) struct OutputFailed(pub String);

impl std::fmt::Display for OutputFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// segrelay's own failure, not the input's or the destination's: [`Status::Internal`].
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}; please report it")]
pub(crate) struct InternalError(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the Markdown table under `heading`: each row's cells, trimmed,
    /// without the code quotes (backticks) Markdown adds.
    fn table_rows(markdown: &str, heading: &str) -> Vec<Vec<String>> {
        let start = markdown
            .find(heading)
            .unwrap_or_else(|| panic!("no {heading:?}"));
        markdown[start + heading.len()..]
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2) // the header and its rule
            .map(|row| {
                row.trim_matches('|')
                    .split(" | ")
                    .map(|cell| cell.trim().replace('`', ""))
                    .collect()
            })
            .collect()
    }

    /// The README's table says, code by code, what `send --help` says.
    #[test]
    fn the_readme_table_is_the_send_exit_codes() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md is read");
        let table: Vec<(String, String)> = table_rows(&readme, "\n## Exit codes\n")
            .into_iter()
            .map(|cells| (cells[0].clone(), cells[1].clone()))
            .collect();
        let statuses: Vec<(String, String)> = Status::ALL
            .iter()
            .filter_map(|s| Some((s.code().to_string(), s.meaning(Exits::Send)?.to_owned())))
            .collect();
        assert_eq!(table, statuses);
    }

    /// `ALL` holds each status once, in the order of their codes, as the
    /// help lists them.
    #[test]
    fn every_status_is_listed_once_in_order() {
        assert!(Status::ALL.windows(2).all(|w| w[0].code() < w[1].code()));
    }
}
