//! A gate: what a destination does with each record between its translation
//! and its batch, on the run's own thread and in input order. Some
//! destinations must make sure of something before a record may be batched (a
//! customer must exist before the usage billed to it counts), or write some
//! records themselves rather than in a batch (a customer's record merged into
//! the one the destination holds). The pipeline hands each record to the
//! destination's gate and settles what it answers; what the gate keeps, and
//! why, is the destination's alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Payload;
use crate::delivery::Courier;
use crate::event::Origin;
use crate::event::reason::Reason;
use crate::input::Position;
use crate::report::Report;
use crate::transport::Transport;

/// What a destination's gate is asked to do by the run's options.
pub struct GateOptions {
    /// `--ensure-customers` (or the setting): make sure of each customer
    /// before its usage records.
    pub ensure_customers: bool,
    /// With a checkpoint: where the gate may keep its files.
    pub beside: Option<Beside>,
}

/// Where a gate keeps files beside a checkpoint, and what a resumed
/// checkpoint says of them.
pub struct Beside {
    checkpoint: PathBuf,
    /// On a resume, the lengths saved with the checkpoint, by file suffix;
    /// None when the job starts anew.
    resumed: Option<BTreeMap<String, u64>>,
}

impl Beside {
    pub(crate) fn new(checkpoint: &Path, resumed: Option<BTreeMap<String, u64>>) -> Beside {
        Beside {
            checkpoint: checkpoint.to_owned(),
            resumed,
        }
    }

    /// The checkpoint's path with `.suffix` added: `job.json.customers`.
    pub(crate) fn path(&self, suffix: &str) -> PathBuf {
        let mut path = self.checkpoint.clone().into_os_string();
        path.push(".");
        path.push(suffix);
        PathBuf::from(path)
    }

    /// Whether the job resumes (else its files start empty).
    pub(crate) fn resumed(&self) -> bool {
        self.resumed.is_some()
    }

    /// On a resume, how much of the file named by `suffix` the checkpoint
    /// covers, when [`Gate::sync`] gave its length.
    pub(crate) fn length(&self, suffix: &str) -> Option<u64> {
        self.resumed.as_ref()?.get(suffix).copied()
    }
}

/// Where an event is in the input: its input, the line it ends on, and its
/// place among the events of that line (a `batch` line holds several). A
/// gate's order of events, the same in the read ahead and in the passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventAt {
    pub input: usize,
    pub line: u64,
    pub event: usize,
}

impl EventAt {
    /// The `index`-th event of the line(s) ending at `at`.
    pub(crate) fn new(at: Position, index: usize) -> EventAt {
        EventAt {
            input: at.input,
            line: at.end_line,
            event: index,
        }
    }
}

/// What a gate makes of a record.
pub enum Gated {
    /// On to its batch.
    Through,
    /// Delivered by the gate itself: the destination holds it.
    Sent,
    /// Refused (the destination refused it, or what it needs first): settled
    /// as a rejection, kept in the rejects file.
    Rejected(Reason),
    /// Not delivered (the run aborted or was stopped): a resume tries it again.
    Failed(Reason),
}

/// What a gate works with while it settles a record: the courier for its
/// requests, the transport for the requests made between batches, and the
/// report for their counts and its warnings.
pub struct Gating<'a> {
    pub(crate) courier: &'a Courier,
    pub(crate) transport: &'a mut dyn Transport,
    pub(crate) report: &'a mut Report,
}

/// A destination's gate (see the module's comment). Every record of every
/// pass that is not skipped, rejected or a repeat goes through
/// [`Gate::admit`], in input order, before it is batched.
pub trait Gate {
    /// Before the passes: the word that the lines the gate wants read ahead
    /// mention (a call type), when it wants the input read ahead; from then
    /// on, each record translated from such a line is handed to
    /// [`Gate::ahead`], in input order, then [`Gate::ahead_done`] is called.
    fn begin_ahead(&mut self) -> Option<&'static str> {
        None
    }

    /// A record read ahead of the passes, at `at`.
    fn ahead(&mut self, payload: &Payload, at: EventAt) -> anyhow::Result<()> {
        let _ = (payload, at);
        Ok(())
    }

    /// The input was read ahead (`whole`), or could not be (standard input,
    /// which is read once): what the user should know of it, said as the
    /// run's warnings.
    fn ahead_done(&mut self, whole: bool) -> Vec<String> {
        let _ = whole;
        Vec::new()
    }

    /// A record before its batch: through to it, or settled by the gate. Err
    /// only when the run cannot go on (a file of the gate's cannot be written).
    fn admit(
        &mut self,
        payload: &Payload,
        origin: &Origin,
        at: EventAt,
        gating: Gating,
    ) -> anyhow::Result<Gated>;

    /// Before the checkpoint is written: makes the gate's files durable, and
    /// says the lengths (by file suffix) a resume cuts them back to.
    fn sync(&mut self) -> anyhow::Result<Vec<(&'static str, u64)>> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the files always had (`job.json.customers`), so that a job
    /// checkpointed before resumes with its files.
    #[test]
    fn files_sit_beside_the_checkpoint_under_their_suffix() {
        let saved = BTreeMap::from([("customers".to_owned(), 7)]);
        let resumed = Beside::new(Path::new("dir/job.json"), Some(saved));
        assert_eq!(
            resumed.path("customers"),
            PathBuf::from("dir/job.json.customers")
        );
        assert!(resumed.resumed());
        assert_eq!(resumed.length("customers"), Some(7));
        assert_eq!(resumed.length("identified"), None);
        let fresh = Beside::new(Path::new("job.json"), None);
        assert!(!fresh.resumed());
        assert_eq!(fresh.length("customers"), None);
    }
}
