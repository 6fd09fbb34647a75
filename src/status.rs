//! How a run ended, as the process exit code.

use crate::interrupt;

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
    /// Ctrl-C or SIGTERM.
    Interrupted = interrupt::EXIT_CODE as isize,
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
