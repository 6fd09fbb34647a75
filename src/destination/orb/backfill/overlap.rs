//! Before a backfill creates its windows: what Orb already has over them. A
//! second run of the same input without its checkpoint would otherwise add
//! every event again, in new backfills beside the first run's.
//!
//! segrelay's backfills cover every customer, so a backfill scoped to one
//! customer overlaps them too (its customer's events are in both). A
//! checkpointed resume's own backfills (their ids are in the checkpoint) are
//! not overlaps; neither is a pending backfill over exactly a window, every
//! customer and the same `replace_existing_events`: an earlier run of this
//! input left it open, and this run goes on filling it (an event sent twice to
//! one backfill counts once).

use std::collections::HashSet;

use jiff::Timestamp;
use serde_json::Value;

use super::{Plan, Window};
use super::{Step, abort, call};
use crate::console::plural;
use crate::delivery::{Call, Stop};
use crate::destination::orb::{Api, Backfill};
use crate::event::time::utc_millis_text;
use crate::run::pipeline::Pipeline;
use crate::settings::SettingsError;

/// At most this many pages of 100 backfills are read.
const MAX_PAGES: usize = 1000;

/// Every backfill of the account (newest first, as Orb lists them); None in a
/// dry run, which writes the first page's request instead of asking. A list
/// Orb refuses or that cannot be read is `Stop::Aborted` with why, the run not
/// yet aborted: the caller decides.
pub(super) fn list(api: &Api, run: &mut Pipeline) -> Step<Option<Vec<Backfill>>> {
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    for _ in 0..MAX_PAGES {
        let response = match call(run, &api.list(cursor.as_deref()))? {
            Call::Written => return Ok(Ok(None)),
            Call::Answered(response) => response,
            Call::Refused { message, .. } => {
                let message = format!("cannot list Orb's backfills: {message}");
                return Ok(Err(Stop::Aborted(message)));
            }
            Call::Stopped(stop) => return Ok(Err(stop)),
        };
        let page = serde_json::from_slice::<Value>(&response.body).unwrap_or(Value::Null);
        let Some(data) = page["data"].as_array() else {
            let message = format!(
                "Orb's list of backfills has no data: {}",
                response.body_excerpt()
            );
            return Ok(Err(Stop::Aborted(message)));
        };
        for item in data {
            // One unread could be the overlap: stop rather than pass it by.
            let Some(backfill) = Backfill::from_json(item) else {
                let message = format!("Orb listed a backfill without an id or a timeframe: {item}");
                return Ok(Err(Stop::Aborted(message)));
            };
            all.push(backfill);
        }
        match page["pagination_metadata"]["next_cursor"].as_str() {
            Some(next) if page["pagination_metadata"]["has_more"] == true => {
                cursor = Some(next.to_owned())
            }
            _ => return Ok(Ok(Some(all))),
        }
    }
    let message = format!("Orb lists more than {} backfills", MAX_PAGES * 100);
    Ok(Err(Stop::Aborted(message)))
}

/// An existing backfill over a window this run would create.
struct Overlap {
    window: usize,
    backfill: Backfill,
}

/// Looks at Orb's backfills over the windows not yet created: takes over the
/// pending ones a stopped run left (setting their ids in `windows`), and
/// refuses the run (a settings error: exit 2) over any other, unless the plan
/// says what to do with them.
pub(super) fn check(
    api: &Api,
    run: &mut Pipeline,
    plan: &Plan,
    windows: &mut [Window],
) -> Step<()> {
    let unmade: Vec<usize> = (0..windows.len())
        .filter(|&i| !windows[i].recent && windows[i].id.is_none())
        .collect();
    if unmade.is_empty() {
        return Ok(Ok(()));
    }
    let backfills = match list(api, run)? {
        Ok(Some(backfills)) => backfills,
        Ok(None) => {
            run.courier.console.inform(
                "segrelay: orb backfill: a dry run does not ask Orb for its backfills (the GET written is the first a send makes): a send refuses windows that existing backfills already cover",
            );
            return Ok(Ok(()));
        }
        Err(Stop::Aborted(message)) => return Ok(Err(abort(&run.courier, message))),
        Err(stop) => return Ok(Err(stop)),
    };
    let ours: HashSet<String> = windows.iter().filter_map(|w| w.id.clone()).collect();
    let now = Timestamp::now();
    let mut pending = Vec::new();
    let mut closed = Vec::new();
    let mut taken_over = Vec::new();
    for index in unmade {
        let window = &windows[index];
        let mut taken: Option<&Backfill> = None;
        for backfill in &backfills {
            if ours.contains(&backfill.id)
                || !backfill.is_active()
                || !backfill.overlaps(window.start, window.end)
            {
                continue;
            }
            let overlap = Overlap {
                window: index,
                backfill: backfill.clone(),
            };
            if !backfill.is_open(now) {
                // Closed and empty, it changed nothing: a run stopped before
                // its first batch leaves such a backfill.
                if backfill.changed_events() {
                    closed.push(overlap);
                }
            } else if taken.is_none() && takes_over(backfill, window, plan) {
                taken = Some(backfill);
            } else {
                pending.push(overlap);
            }
        }
        if let Some(backfill) = taken {
            taken_over.push((index, backfill.clone()));
        }
    }
    for overlap in pending.iter().chain(&closed) {
        run.courier.console.say(&describe(windows, overlap));
    }
    if !pending.is_empty() {
        return Err(SettingsError(format!(
            "Orb has {} over this run's windows (above), and refuses a backfill over a pending one: \
             close each (`segrelay orb backfills close ID`: Orb keeps its events) or revert it \
             (`segrelay orb backfills revert ID --yes`: Orb drops them), or wait for its close time",
            plural(distinct(&pending), "pending backfill")
        ))
        .into());
    }
    if !closed.is_empty() && !plan.replace_existing && !plan.allow_overlap {
        return Err(SettingsError(format!(
            "Orb already has {} over this run's windows (above): sent again, these events would go in beside theirs. \
             Choose --orb-replace-existing (Orb replaces every event of each window, of every customer, with this run's) \
             or --orb-allow-overlap (add them anyway: Orb dedupes idempotency keys only within its grace period, \
             so an event both backfills hold may be counted twice); `segrelay orb backfills list` shows them",
            plural(distinct(&closed), "backfill")
        ))
        .into());
    }
    for overlap in &closed {
        let backfill = &overlap.backfill;
        let earlier = format!(
            "backfill {} ({}, {} to {})",
            backfill.id,
            backfill.status,
            utc_millis_text(backfill.start),
            utc_millis_text(backfill.end)
        );
        let window = label(windows, overlap.window);
        run.report.warn(if plan.replace_existing {
            format!(
                "--orb-replace-existing: the new backfill for {window} replaces the events of every customer in its time, those of {earlier} included"
            )
        } else {
            format!(
                "--orb-allow-overlap: {window} goes into a new backfill beside {earlier}, whose events Orb keeps: an event both hold may be counted twice"
            )
        });
    }
    for (index, backfill) in taken_over {
        run.courier.console.inform(&format!(
            "segrelay: orb backfill {}: going on with pending backfill {} over exactly this window, which an earlier run left open",
            label(windows, index),
            backfill.id
        ));
        windows[index].id = Some(backfill.id);
        windows[index].close_time = backfill.close_time;
    }
    Ok(Ok(()))
}

/// How many backfills, one overlapping two windows counting once.
fn distinct(overlaps: &[Overlap]) -> u64 {
    let ids: HashSet<&str> = overlaps.iter().map(|o| o.backfill.id.as_str()).collect();
    ids.len() as u64
}

/// Whether this run goes on filling a pending backfill instead of creating its
/// own: it is what this run would create.
fn takes_over(backfill: &Backfill, window: &Window, plan: &Plan) -> bool {
    backfill.start == window.start
        && backfill.end == window.end
        && backfill.customer.is_none()
        && backfill.replace_existing_events == plan.replace_existing
        && backfill.deprecation_filter.is_none()
}

/// `window 2 of 3 (start to end)`, as the run names it: among the backfill
/// windows only (the pass of the events within the grace period is none).
pub(super) fn label(windows: &[Window], index: usize) -> String {
    let window = &windows[index];
    let backfills = |passes: &[Window]| passes.iter().filter(|w| !w.recent).count();
    format!(
        "window {} of {} ({} to {})",
        backfills(&windows[..=index]),
        backfills(windows),
        utc_millis_text(window.start),
        utc_millis_text(window.end)
    )
}

fn describe(windows: &[Window], overlap: &Overlap) -> String {
    let backfill = &overlap.backfill;
    let mut text = format!(
        "segrelay: orb backfill {} overlaps backfill {}: {}, {} to {}",
        label(windows, overlap.window),
        backfill.id,
        backfill.status,
        utc_millis_text(backfill.start),
        utc_millis_text(backfill.end)
    );
    if let Some(events) = backfill.events_ingested {
        text.push_str(&format!(", {}", plural(events, "event")));
    }
    if backfill.replace_existing_events {
        text.push_str(", replacing existing events");
    }
    if let Some(customer) = &backfill.customer {
        text.push_str(&format!(", customer {customer} only"));
    }
    if let Some(filter) = &backfill.deprecation_filter {
        text.push_str(&format!(", deprecation filter {filter}"));
    }
    text
}
