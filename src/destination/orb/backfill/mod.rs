//! Orb backfills. Orb's ordinary ingest refuses events older than its grace
//! period (12 h by default) and more than 5 minutes in the future; older ones
//! go through backfills, one time window of at most 31 days at a time. A first
//! pass over the inputs finds the days that hold events older than the grace
//! period; they are cut into windows. The events within the grace period go
//! first, through ordinary ingest, while they are still within it; later ones
//! are rejected. Then for each window segrelay creates a backfill (closing by
//! itself at --orb-close-after), sends that window's events with its id, closes
//! it, and (with --orb-wait) waits until Orb has reflected it before the next.

mod manage;
mod overlap;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::console::Verbosity;
use crate::console::plural;
use crate::delivery::{Call, Courier, Delivered, RequestContext, Stop};
use crate::destination::orb::{Api, Backfill, Orb, derived_key, fresh_key};
use crate::destination::{Destination, Planner, Request};
use crate::event::time::utc_millis_text;
use crate::interrupt;
use crate::report::WindowNotMade;
use crate::run::pipeline::{self, DaySpan, Options, Pass, PassEnd, Pipeline};

pub(crate) use manage::manage;

/// What `send --orb-backfill` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub window_days: u32,
    pub replace_existing: bool,
    /// Create backfills over windows that earlier backfills already cover.
    pub allow_overlap: bool,
    pub close: bool,
    /// Each backfill's `close_time` is its creation plus this: Orb closes it
    /// then by itself, whether segrelay closed it or not.
    pub close_after: Duration,
    pub wait: bool,
    pub poll_interval: Duration,
    pub wait_timeout: Duration,
    pub dry_run: bool,
}

/// The checkpoint's keys (as they were when the checkpoint held them itself):
/// the windows as planned and how far each got, and the latest event time
/// Orb's ingest took when they were planned, so that a resume rejects later
/// events as the first run did.
const WINDOWS: &str = "orb_backfill";
const LATEST: &str = "orb_latest";

/// One backfill window, and how far its backfill got: what the checkpoint
/// keeps under [`WINDOWS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Window {
    /// Inclusive.
    pub start: Timestamp,
    /// Exclusive.
    pub end: Timestamp,
    pub events: u64,
    pub id: Option<String>,
    pub closed: bool,
    pub reflected: bool,
    /// The idempotency key of the backfill's creation, saved before it is
    /// first asked for: asked again with it, Orb answers with the backfill it
    /// created rather than creating another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_key: Option<String>,
    /// The close time that creation sends, so that asking again repeats it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_time: Option<Timestamp>,
    /// The idempotency key of the backfill's close, saved likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_key: Option<String>,
    /// The events within the grace period: sent through ordinary ingest, not
    /// a backfill.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recent: bool,
}

/// `--orb-backfill`: the run's passes, first the events within the grace
/// period, then a backfill per window.
pub(crate) struct Backfills {
    plan: Plan,
    api: Api,
}

impl Backfills {
    /// The planner of an Orb destination's backfill (`--orb-backfill` is
    /// refused for any other).
    pub(crate) fn new(plan: Plan, destination: &dyn Destination) -> Backfills {
        let orb = Orb::of(destination).expect("--orb-backfill is for Orb");
        Backfills {
            plan,
            api: orb.api.clone(),
        }
    }
}

impl Planner for Backfills {
    /// The input is read once to plan, then once per window.
    fn reads_input_once(&self) -> bool {
        false
    }

    fn make_passes(&mut self, run: &mut Pipeline) -> anyhow::Result<PassEnd> {
        self::run(run, &self.plan, &self.api)
    }
}

/// A step that talks to Orb: what it found, or why the run stops.
type Step<T> = anyhow::Result<Result<T, Stop>>;

/// Cuts the days that hold events into windows of at most `window_days` days,
/// each from its first event to just after its last: a window never starts on
/// an empty day, and a gap of empty days costs no backfill.
pub(crate) fn windows(days: &BTreeMap<i64, DaySpan>, window_days: u32) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    let mut window_first_day = i64::MIN;
    for (&day, span) in days {
        match windows.last_mut() {
            Some(window) if day < window_first_day + i64::from(window_days) => {
                window.end = window.end.max(after(span.last));
                window.events += span.events;
            }
            _ => {
                window_first_day = day;
                windows.push(window_of(span, false));
            }
        }
    }
    windows
}

fn window_of(span: &DaySpan, recent: bool) -> Window {
    Window {
        start: span.first,
        end: after(span.last),
        events: span.events,
        id: None,
        closed: false,
        reflected: false,
        create_key: None,
        close_time: None,
        close_key: None,
        recent,
    }
}

/// The end of a window holding `last`: the next millisecond (ends are exclusive).
fn after(last: Timestamp) -> Timestamp {
    let millis = last.as_millisecond();
    Timestamp::from_millisecond(millis + 1).expect("a time before 9999 has a successor")
}

/// The passes to make: first the events within the grace period (through
/// ordinary ingest, while they still are within it), then the backfill
/// windows, which all end before the grace period begins. Events after
/// `latest` go in neither: the first pass rejects them.
fn plan_passes(
    options: &Options,
    courier: &Courier,
    window_days: u32,
) -> anyhow::Result<(Vec<Window>, Timestamp)> {
    let ingest = courier
        .destination
        .ingest_window()
        .expect("an Orb destination says what its ingest takes");
    let (oldest, latest) = ingest.bounds(Timestamp::now());
    let mut days: BTreeMap<i64, DaySpan> = BTreeMap::new();
    let mut recent: Option<DaySpan> = None;
    pipeline::scan(options, courier.destination.as_ref(), |_, payload| {
        let time = payload.time.expect("a usage record has a time");
        let empty = DaySpan {
            first: time,
            last: time,
            events: 0,
        };
        let span = if time > latest {
            return;
        } else if time >= oldest {
            recent.get_or_insert(empty)
        } else {
            days.entry(time.as_second().div_euclid(86_400))
                .or_insert(empty)
        };
        span.first = span.first.min(time);
        span.last = span.last.max(time);
        span.events += 1;
    })?;
    let mut passes: Vec<Window> = recent.iter().map(|span| window_of(span, true)).collect();
    passes.extend(windows(&days, window_days));
    Ok((passes, latest))
}

/// Runs every pass not yet done, resuming where the checkpoint says. Stopped
/// before the end, it says which backfills it leaves open.
fn run(run: &mut Pipeline, plan: &Plan, api: &Api) -> anyhow::Result<PassEnd> {
    let mut windows = Vec::new();
    let result = make_passes(run, plan, api, &mut windows);
    let stopped = match &result {
        Ok(end) => end.aborted.is_some() || !end.complete,
        Err(_) => true,
    };
    if stopped && !plan.dry_run {
        tell_open(run, &windows);
    }
    result
}

fn make_passes(
    run: &mut Pipeline,
    plan: &Plan,
    api: &Api,
    windows: &mut Vec<Window>,
) -> anyhow::Result<PassEnd> {
    let console = run.courier.console.clone();
    let saved = match run.checkpoint.as_ref() {
        Some(checkpoint) => saved(checkpoint)?,
        None => None,
    };
    let latest = match saved {
        Some((saved, latest)) => {
            *windows = saved;
            latest
        }
        None => {
            let (planned, latest) = plan_passes(&run.options, &run.courier, plan.window_days)?;
            *windows = planned;
            if let Some(checkpoint) = run.checkpoint.as_mut() {
                checkpoint.keep_planned([
                    (LATEST, serde_json::to_value(latest)?),
                    (WINDOWS, serde_json::to_value(&*windows)?),
                ])?;
            }
            Some(latest)
        }
    };
    let first = run.checkpoint.as_ref().map_or(0, |c| c.state().pass);
    // One line at a time: the console shows a newline inside a line escaped.
    // Quiet, only the warnings of what Orb will delete are said.
    for line in describe(windows, plan).lines() {
        if console.verbosity() > Verbosity::Quiet || line.contains("WARNING") {
            console.say(line);
        }
    }
    let unmade = UnmadePasses {
        windows: windows.iter().map(|w| (w.start, w.end, w.events)).collect(),
    };
    // Before anything is sent: what Orb already has over these windows.
    if overlap::check(api, run, plan, windows)?.is_err() {
        return Ok(unmade.note(run, first));
    }
    save(run.checkpoint.as_mut(), windows)?;
    if windows.is_empty() {
        // Nothing for Orb, but the skipped and rejected events still need settling.
        let nothing = Some((Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH));
        let pass = Pass {
            window: nothing,
            settles_skipped_and_rejected: true,
            rejects_after: latest,
            follows_checkpoint: true,
            context: RequestContext::default(),
        };
        return run.pass(&pass);
    }
    let mut end = PassEnd {
        aborted: None,
        complete: true,
    };
    for index in first..windows.len() {
        let window = windows[index].clone();
        let id = if window.recent {
            if console.verbosity() > Verbosity::Quiet {
                console.say(&format!(
                    "segrelay: orb: {} within the grace period ({} to {}) {} through ordinary ingest",
                    plural(window.events, "event"),
                    utc_millis_text(window.start),
                    utc_millis_text(window.end),
                    if window.events == 1 { "goes" } else { "go" }
                ));
            }
            None
        } else {
            let id = match window.id.clone() {
                Some(id) => id,
                None => {
                    let Ok(id) = create(api, run, plan, windows, index)? else {
                        return Ok(unmade.note(run, index));
                    };
                    windows[index].id = Some(id.clone());
                    save(run.checkpoint.as_mut(), windows)?;
                    id
                }
            };
            if console.verbosity() > Verbosity::Quiet {
                console.say(&format!(
                    "segrelay: orb backfill {}: backfill {id}, {}",
                    overlap::label(windows, index),
                    plural(window.events, "event")
                ));
            }
            Some(id)
        };
        let pass = Pass {
            window: Some((window.start, window.end)),
            settles_skipped_and_rejected: index == 0,
            rejects_after: latest,
            follows_checkpoint: true,
            context: RequestContext {
                usage_query: id.as_ref().map(|id| api.backfill_query(id)),
            },
        };
        end = run.pass(&pass)?;
        if !end.complete || end.aborted.is_some() {
            unmade.note(run, index + 1);
            return Ok(end);
        }
        if let Some(id) = id {
            if plan.close && !window.closed {
                if close(api, run, plan, windows, index, &id)?.is_err() {
                    return Ok(unmade.note(run, index + 1));
                }
                windows[index].closed = true;
                save(run.checkpoint.as_mut(), windows)?;
            }
            if plan.wait && plan.close && !plan.dry_run && !window.reflected {
                if wait_reflected(api, run, plan, &id)?.is_err() {
                    return Ok(unmade.note(run, index + 1));
                }
                windows[index].reflected = true;
                save(run.checkpoint.as_mut(), windows)?;
            }
        }
        if index + 1 < windows.len()
            && let Some(checkpoint) = run.checkpoint.as_mut()
        {
            checkpoint.next_pass()?;
        }
    }
    Ok(end)
}

/// When a run stops (an abort, Ctrl-C, `--fail-fast`, `--limit`) before a
/// window's pass, nothing of that window is read: the summary names the
/// windows not made, with their events as planned, and a resume makes them.
struct UnmadePasses {
    /// Each pass's [start, end) and its events.
    windows: Vec<(Timestamp, Timestamp, u64)>,
}

impl UnmadePasses {
    fn note(&self, run: &mut Pipeline, from: usize) -> PassEnd {
        let left = self.windows.get(from..).unwrap_or_default();
        run.report.windows_not_made(
            "orb backfill windows",
            left.iter()
                .map(|&(start, end, events)| WindowNotMade {
                    start: utc_millis_text(start),
                    end: utc_millis_text(end),
                    events,
                })
                .collect(),
        );
        PassEnd {
            aborted: run.courier.aborted(),
            complete: false,
        }
    }
}

fn describe(windows: &[Window], plan: &Plan) -> String {
    let backfills: Vec<&Window> = windows.iter().filter(|w| !w.recent).collect();
    let events: u64 = backfills.iter().map(|w| w.events).sum();
    let mut text = format!(
        "segrelay: orb backfill: {} in {} of at most {} days",
        plural(events, "event"),
        plural(backfills.len() as u64, "window"),
        plan.window_days
    );
    if plan.replace_existing {
        for window in backfills {
            text.push_str(&format!(
                "\nsegrelay: WARNING: --orb-replace-existing: Orb will DELETE every event of every customer from {} to {} and keep only the {} this run sends",
                utc_millis_text(window.start),
                utc_millis_text(window.end),
                plural(window.events, "event")
            ));
        }
    }
    text
}

fn save(checkpoint: Option<&mut Checkpoint>, windows: &[Window]) -> anyhow::Result<()> {
    match checkpoint {
        Some(checkpoint) => checkpoint.keep_planned([(WINDOWS, serde_json::to_value(windows)?)]),
        None => Ok(()),
    }
}

/// The windows a checkpoint kept, once planned, and the latest time then.
fn saved(checkpoint: &Checkpoint) -> anyhow::Result<Option<(Vec<Window>, Option<Timestamp>)>> {
    let not_ours = |key: &str, e: serde_json::Error| {
        anyhow::anyhow!(
            "checkpoint {}: its {key} is not what segrelay wrote ({e})",
            checkpoint.path().display()
        )
    };
    let Some(windows) = checkpoint.planned(WINDOWS) else {
        return Ok(None);
    };
    let windows = Vec::<Window>::deserialize(windows).map_err(|e| not_ours(WINDOWS, e))?;
    let latest = match checkpoint.planned(LATEST) {
        Some(latest) => {
            Option::<Timestamp>::deserialize(latest).map_err(|e| not_ours(LATEST, e))?
        }
        None => None,
    };
    Ok(Some((windows, latest)))
}

/// Creates the window's backfill, or adopts the pending one Orb already has for
/// exactly this window (a run stopped between creating it and saving its id).
/// Its key and close time are saved before the first ask, so that asking
/// again (a retry, a resume) gets the backfill the first ask created.
fn create(
    api: &Api,
    run: &mut Pipeline,
    plan: &Plan,
    windows: &mut [Window],
    index: usize,
) -> Step<String> {
    let now = Timestamp::now();
    let window = &mut windows[index];
    let start = utc_millis_text(window.start);
    let end = utc_millis_text(window.end);
    let (key, close_at) = match (&window.create_key, window.close_time) {
        // Past its close time, what that ask created has closed by itself.
        (Some(key), Some(close_at)) if close_at > now => (key.clone(), close_at),
        _ => {
            let key = match plan.dry_run {
                // A dry run's output is the same each time: the key comes from the plan.
                true => derived_key(
                    "create",
                    &[
                        start.as_bytes(),
                        end.as_bytes(),
                        plan.replace_existing.to_string().as_bytes(),
                        plan.close_after.as_millis().to_string().as_bytes(),
                    ],
                ),
                false => fresh_key("create"),
            };
            let close_at = close_time(now, plan.close_after);
            window.create_key = Some(key.clone());
            window.close_time = Some(close_at);
            save(run.checkpoint.as_mut(), windows)?;
            (key, close_at)
        }
    };
    let request = api.create(
        &start,
        &end,
        plan.replace_existing,
        &utc_millis_text(close_at),
        &key,
    );
    Ok(match call(run, &request)? {
        Call::Written => Ok(format!("dry-run-backfill-{}", index + 1)),
        Call::Answered(response) => match json_field(&response.body, "id") {
            Some(id) => Ok(id),
            None => Err(abort(
                &run.courier,
                format!(
                    "Orb created a backfill but its answer has no id: {}",
                    response.body_excerpt()
                ),
            )),
        },
        Call::Refused { message, .. } => {
            if let Some(id) = find_pending(api, run, &windows[index])? {
                run.courier.console.inform(&format!("segrelay: orb backfill: going on with the pending backfill {id} for this window"));
                return Ok(Ok(id));
            }
            Err(abort(
                &run.courier,
                format!("Orb refused the backfill for {start} to {end}: {message}"),
            ))
        }
        Call::Stopped(stop) => Err(stop),
    })
}

/// When Orb is to close a backfill created at `created` by itself, sent
/// always, so that a dry run shows it.
fn close_time(created: Timestamp, close_after: Duration) -> Timestamp {
    let after = SignedDuration::try_from(close_after).unwrap_or(SignedDuration::MAX);
    created.checked_add(after).unwrap_or(Timestamp::MAX)
}

fn find_pending(api: &Api, run: &mut Pipeline, window: &Window) -> anyhow::Result<Option<String>> {
    let Ok(Some(backfills)) = overlap::list(api, run)? else {
        return Ok(None);
    };
    Ok(backfills
        .into_iter()
        .find(|b| b.status == "pending" && b.start == window.start && b.end == window.end)
        .map(|b| b.id))
}

/// Closes the window's backfill under the key saved for it before the first
/// ask. Refused, it may be closed already (the answer to an earlier close was
/// lost, or Orb closed it at its close time): a read says, and the run goes on.
fn close(
    api: &Api,
    run: &mut Pipeline,
    plan: &Plan,
    windows: &mut [Window],
    index: usize,
    id: &str,
) -> Step<()> {
    let key = match windows[index].close_key.clone() {
        Some(key) => key,
        None => {
            let key = match plan.dry_run {
                true => derived_key("close", &[id.as_bytes()]),
                false => fresh_key("close"),
            };
            windows[index].close_key = Some(key.clone());
            save(run.checkpoint.as_mut(), windows)?;
            key
        }
    };
    let message = match call(run, &api.act(id, "close", &key))? {
        Call::Written | Call::Answered(_) => return Ok(Ok(())),
        Call::Stopped(stop) => return Ok(Err(stop)),
        Call::Refused { message, .. } => message,
    };
    let backfill = match show(api, run, id)? {
        Ok(backfill) => backfill,
        Err(stop) => return Ok(Err(stop)),
    };
    if !backfill.is_open(Timestamp::now()) && backfill.is_active() {
        run.courier.console.inform(&format!(
            "segrelay: orb backfill {id} is closed already ({}): going on",
            backfill.status
        ));
        return Ok(Ok(()));
    }
    let message = format!(
        "Orb refused to close backfill {id}: {message} (it is {})",
        backfill.status
    );
    Ok(Err(abort(&run.courier, message)))
}

/// The backfill as Orb shows it now.
fn show(api: &Api, run: &mut Pipeline, id: &str) -> Step<Backfill> {
    Ok(match call(run, &api.show(id))? {
        Call::Answered(response) => {
            let value = serde_json::from_slice::<Value>(&response.body).unwrap_or(Value::Null);
            match Backfill::from_json(&value) {
                Some(backfill) => Ok(backfill),
                None => Err(abort(
                    &run.courier,
                    format!(
                        "Orb's answer for backfill {id} is not a backfill: {}",
                        response.body_excerpt()
                    ),
                )),
            }
        }
        Call::Refused { message, .. } => Err(abort(
            &run.courier,
            format!("cannot read backfill {id}: {message}"),
        )),
        Call::Written => Err(Stop::Aborted("a dry run reads nothing".to_owned())),
        Call::Stopped(stop) => Err(stop),
    })
}

/// Stopped before the end: the backfills left open, and how to finish them
/// (on standard error and in the summary's warnings).
fn tell_open(run: &mut Pipeline, windows: &[Window]) {
    let how = match run.checkpoint.is_some() {
        true => {
            "run the same command again to go on filling it from the checkpoint, or finish it by hand"
        }
        false => "finish it by hand (without --checkpoint, the same command again starts over)",
    };
    for (index, window) in windows.iter().enumerate() {
        let Some(id) = window
            .id
            .as_deref()
            .filter(|_| !window.recent && !window.closed)
        else {
            continue;
        };
        let closes = window.close_time.map_or_else(String::new, |t| {
            format!("; Orb closes it by itself at {}", utc_millis_text(t))
        });
        run.report.warn(format!(
            "orb backfill {id} for {} was left open: {how}: `segrelay orb backfills close {id}` keeps the events it holds, `segrelay orb backfills revert {id} --yes` drops them{closes}",
            overlap::label(windows, index)
        ));
    }
}

fn wait_reflected(api: &Api, run: &mut Pipeline, plan: &Plan, id: &str) -> Step<()> {
    let started = Instant::now();
    run.courier.console.inform(&format!(
        "segrelay: orb backfill {id}: waiting until Orb has reflected it"
    ));
    loop {
        match call(run, &api.show(id))? {
            Call::Answered(response) => {
                let status = json_field(&response.body, "status").unwrap_or_default();
                if status == "reflected" {
                    return Ok(Ok(()));
                }
                if !matches!(status.as_str(), "pending" | "reflecting" | "pending_revert") {
                    let message = format!("backfill {id} is {status:?}, not reflected");
                    return Ok(Err(abort(&run.courier, message)));
                }
            }
            Call::Refused { message, .. } => {
                let message = format!("cannot read backfill {id}: {message}");
                return Ok(Err(abort(&run.courier, message)));
            }
            // Only a dry run writes instead of asking, and it does not wait.
            Call::Written => return Ok(Ok(())),
            Call::Stopped(stop) => return Ok(Err(stop)),
        }
        if started.elapsed() >= plan.wait_timeout {
            let message = format!(
                "backfill {id} was not reflected after {} s (--orb-wait-timeout)",
                plan.wait_timeout.as_secs()
            );
            return Ok(Err(abort(&run.courier, message)));
        }
        if !interrupt::sleep(plan.poll_interval) {
            return Ok(Err(Stop::Interrupted));
        }
    }
}

/// A request between batches, counted in the summary.
fn call(run: &mut Pipeline, request: &Request) -> anyhow::Result<Call> {
    let mut delivered = Delivered::default();
    let result = run
        .courier
        .call(run.dispatch.control(), request, &mut delivered);
    run.report.delivery(
        delivered.requests,
        delivered.retries,
        delivered.server_wait,
        delivered.backoff,
    );
    result
}

/// Stops the run with a message.
fn abort(courier: &Courier, message: String) -> Stop {
    courier.abort(&message);
    Stop::Aborted(message)
}

fn json_field(body: &[u8], key: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get(key)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(day: i64, first_hour: i64, last_hour: i64, events: u64) -> (i64, DaySpan) {
        let at = |h: i64| Timestamp::from_second(day * 86_400 + h * 3600).unwrap();
        (
            day,
            DaySpan {
                first: at(first_hour),
                last: at(last_hour),
                events,
            },
        )
    }

    #[test]
    fn windows_cover_every_event_day_within_the_limit() {
        // Days 0..=40 hold events, then a gap, then day 100.
        let mut days: BTreeMap<i64, DaySpan> =
            (0..=40).map(|d| span(20_000 + d, 1, 23, 2)).collect();
        days.extend([span(20_100, 5, 6, 1)]);
        let w = windows(&days, 31);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].start, days[&20_000].first);
        assert_eq!(w[0].end, after(days[&20_030].last));
        assert_eq!(w[0].events, 62);
        assert_eq!(w[1].start, days[&20_031].first);
        assert_eq!(w[1].end, after(days[&20_040].last));
        assert_eq!(w[2].start, days[&20_100].first);
        assert_eq!(w[2].events, 1);
        for pair in w.windows(2) {
            assert!(pair[0].end <= pair[1].start, "windows overlap");
        }
        for window in &w {
            assert!(
                window.end.duration_since(window.start)
                    <= jiff::SignedDuration::from_hours(31 * 24)
            );
        }
    }

    /// A checkpoint written when the checkpoint held the backfill's windows
    /// itself (`orb_backfill`, `orb_latest` beside the other keys) resumes:
    /// its windows and latest time are read, and kept again under the same
    /// keys with the same values.
    #[test]
    fn a_checkpoint_with_the_windows_at_its_top_level_resumes_and_keeps_them_there() {
        let folder = tempfile::tempdir().unwrap();
        let input = folder.path().join("events.ndjson");
        std::fs::write(&input, "{}\n").unwrap();
        let path = folder.path().join("checkpoint.json");
        let sources = [crate::input::Source::Path(input)];
        let identity = crate::checkpoint::Identity::default();
        Checkpoint::open(&path, &identity, &sources, false).unwrap();
        let mut file: serde_json::Map<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let windows = serde_json::json!([{
            "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00.001Z", "events": 12,
            "id": "bf_1", "closed": true, "reflected": false,
            "create_key": "segrelay-create-1", "close_time": "2025-06-01T00:00:00Z",
        }, {
            "start": "2025-03-01T00:00:00Z", "end": "2025-03-01T00:00:00.001Z", "events": 1,
            "id": null, "closed": false, "reflected": false,
        }]);
        let latest = serde_json::json!("2025-06-01T12:00:00Z");
        file.insert("pass".into(), 1.into());
        file.insert(WINDOWS.into(), windows.clone());
        file.insert(LATEST.into(), latest.clone());
        std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();

        let (mut checkpoint, resumed) =
            Checkpoint::open(&path, &identity, &sources, false).unwrap();
        assert!(resumed);
        assert_eq!(checkpoint.state().pass, 1);
        let (read, read_latest) = saved(&checkpoint).unwrap().expect("the windows are read");
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].id.as_deref(), Some("bf_1"));
        assert_eq!(read[0].events, 12);
        assert!(read[0].closed && !read[1].closed);
        assert_eq!(read[0].create_key.as_deref(), Some("segrelay-create-1"));
        assert_eq!(read_latest, Some("2025-06-01T12:00:00Z".parse().unwrap()));

        save(Some(&mut checkpoint), &read).unwrap();
        let written: serde_json::Map<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let windows_as_written: Vec<Window> = serde_json::from_value(windows).unwrap();
        let windows_again: Vec<Window> = serde_json::from_value(written[WINDOWS].clone()).unwrap();
        assert_eq!(windows_again, windows_as_written);
        assert_eq!(written[LATEST], latest);
        assert_eq!(written["pass"], 1);
        assert_eq!(
            written.keys().collect::<Vec<_>>(),
            file.keys().collect::<Vec<_>>(),
            "the same keys, no others"
        );
    }
}
