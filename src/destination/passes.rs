//! How a run goes over its input: one plain pass, or the passes a
//! destination plans (a backfill's pass per time window). The run builds
//! the pipeline and hands it to its planner; what the passes are, and what
//! the planner keeps in the checkpoint to resume them, is the planner's.

use crate::delivery::RequestContext;
use crate::run::pipeline::{Pass, PassEnd, Pipeline};

/// Makes a run's passes over its input.
pub(crate) trait Planner {
    /// Whether the run reads its input once, so that the input's size tells
    /// how far the run is (a planner that reads it once per window says no).
    fn reads_input_once(&self) -> bool {
        true
    }

    /// Makes every pass not yet made (resuming where the checkpoint says),
    /// and says how the run's passes ended.
    fn make_passes(&mut self, run: &mut Pipeline) -> anyhow::Result<PassEnd>;
}

/// A plain run: one pass over the whole input, sending every event through
/// the destination's ordinary ingest.
pub(crate) struct OnePass;

impl Planner for OnePass {
    fn make_passes(&mut self, run: &mut Pipeline) -> anyhow::Result<PassEnd> {
        let rejects_after = run
            .courier
            .destination
            .ingest_window()
            .and_then(|window| window.rejects_after(jiff::Timestamp::now()));
        run.pass(&Pass {
            window: None,
            settles_skipped_and_rejected: true,
            rejects_after,
            follows_checkpoint: true,
            context: RequestContext::default(),
        })
    }
}
