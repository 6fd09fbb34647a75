//! Ctrl-C and SIGTERM: the first asks the run to stop cleanly (finish the
//! request in flight, write the checkpoint, the rejects and the summary); the
//! second ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::status::Status;

static REQUESTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn install() {
    // Failing to install (a handler already set) only loses the clean stop.
    let _ = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(Status::Interrupted.code()));
        }
        crate::console::stderr_line(
            "\nsegrelay: stopping after the request in flight (press Ctrl-C again to quit at once)",
        );
    });
}

pub(crate) fn requested() -> bool {
    #[cfg(test)]
    if testing::requested_here() {
        return true;
    }
    REQUESTED.load(Ordering::Relaxed)
}

/// Standard output was closed by its reader (`segrelay send --dry-run | head`).
static OUTPUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whoever reads standard output has gone: the run stops reading, as after
/// Ctrl-C, and what it read is still settled and summarised.
pub(crate) fn close_output() {
    OUTPUT_CLOSED.store(true, Ordering::SeqCst);
}

pub(crate) fn output_closed() -> bool {
    OUTPUT_CLOSED.load(Ordering::Relaxed)
}

/// True when the run should read no further input: a stop was asked for, or
/// nobody reads what it writes any more.
pub(crate) fn stop_reading() -> bool {
    requested() || output_closed()
}

/// Sleeps, waking early when a stop is asked for. False when it was.
pub(crate) fn sleep(duration: Duration) -> bool {
    let end = Instant::now() + duration;
    loop {
        if requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// A stop asked for on one thread only: the tests run in parallel in one
/// process, and a stop asked for the whole process would stop the others.
/// The pipeline thread reads `requested` and `stop_reading` as it would after
/// Ctrl-C; a pool's sending threads do not see it.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::Cell;

    thread_local! {
        static REQUESTED_HERE: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn requested_here() -> bool {
        REQUESTED_HERE.with(Cell::get)
    }

    /// Ctrl-C, as this thread sees it.
    pub(crate) fn request_here() {
        REQUESTED_HERE.with(|here| here.set(true));
    }

    /// Takes back a stop asked for on this thread.
    pub(crate) fn reset_here() {
        REQUESTED_HERE.with(|here| here.set(false));
    }
}
