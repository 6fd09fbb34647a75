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
    /// Ctrl-C or SIGTERM.
    Interrupted = interrupt::EXIT_CODE as isize,
}
