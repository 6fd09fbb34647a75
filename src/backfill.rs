//! Orb backfills. Orb's ordinary ingest refuses events older than its grace
//! period (12 h by default) and more than 5 minutes in the future; older ones
//! go through backfills, one time window of at most 31 days at a time. A first
//! pass over the inputs finds the days that hold events older than the grace
//! period; they are cut into windows. The events within the grace period go
//! first, through ordinary ingest, while they are still within it; later ones
//! are rejected. Then for each window segrelay creates a backfill (closing by
//! itself at --orb-close-after), sends that window's events with its id, closes
//! it, and (with --orb-wait) waits until Orb has reflected it before the next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::delivery::{Call, Courier, Delivered};
use crate::destination::orb::Api;
use crate::event::time::utc_millis_text;
use crate::interrupt;
use crate::pipeline::{self, DaySpan, Dispatch, Options, Pass, PassEnd};
use crate::report::Report;

/// What `send --orb-backfill` was asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub window_days: u32,
    pub replace_existing: bool,
    pub close: bool,
    /// Each backfill's `close_time` is its creation plus this: Orb closes it
    /// then by itself, whether segrelay closed it or not.
    pub close_after: Duration,
    pub wait: bool,
    pub poll_interval: Duration,
    pub wait_timeout: Duration,
    pub dry_run: bool,
}

/// One backfill window, as kept in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive.
    pub start: Timestamp,
    /// Exclusive.
    pub end: Timestamp,
    pub events: u64,
    pub id: Option<String>,
    pub closed: bool,
    pub reflected: bool,
    /// The events within the grace period: sent through ordinary ingest, not
    /// a backfill.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recent: bool,
}

/// Cuts the days that hold events into windows of at most `window_days` days,
/// each from its first event to just after its last: a window never starts on
/// an empty day, and a gap of empty days costs no backfill.
pub fn windows(days: &BTreeMap<i64, DaySpan>, window_days: u32) -> Vec<Window> {
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
                windows.push(Window::of(span, false));
            }
        }
    }
    windows
}

impl Window {
    fn of(span: &DaySpan, recent: bool) -> Window {
        Window {
            start: span.first,
            end: after(span.last),
            events: span.events,
            id: None,
            closed: false,
            reflected: false,
            recent,
        }
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
    let mut passes: Vec<Window> = recent.iter().map(|span| Window::of(span, true)).collect();
    passes.extend(windows(&days, window_days));
    Ok((passes, latest))
}

/// Runs every pass not yet done, resuming where the checkpoint says.
pub fn run(
    options: &Options,
    plan: &Plan,
    api: &Api,
    courier: &Arc<Courier>,
    dispatch: &mut Dispatch,
    report: &mut Report,
    mut checkpoint: Option<&mut Checkpoint>,
) -> anyhow::Result<PassEnd> {
    let console = courier.console.clone();
    let saved = checkpoint.as_ref().and_then(|c| {
        let state = c.state();
        state.orb_backfill.clone().map(|w| (w, state.orb_latest))
    });
    let (mut windows, latest) = match saved {
        Some(saved) => saved,
        None => {
            let (windows, latest) = plan_passes(options, courier, plan.window_days)?;
            if let Some(checkpoint) = checkpoint.as_deref_mut() {
                checkpoint.set_backfill_plan(&windows, latest)?;
            }
            (windows, Some(latest))
        }
    };
    let first = checkpoint.as_ref().map_or(0, |c| c.state().pass);
    console.say(&describe(&windows, plan));
    if windows.is_empty() {
        // Nothing for Orb, but the skipped and rejected events still need settling.
        let nothing = Some((Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH));
        let pass = Pass {
            window: nothing,
            settles_unsent: true,
            rejects_after: latest,
        };
        return pipeline::run(options, pass, courier, dispatch, report, checkpoint, None);
    }
    let mut end = PassEnd {
        aborted: None,
        complete: true,
    };
    let rest = Rest {
        options,
        spans: windows.iter().map(|w| (w.start, w.end)).collect(),
        latest,
    };
    for index in first..windows.len() {
        let window = windows[index].clone();
        let span = format!(
            "{} to {}",
            utc_millis_text(window.start),
            utc_millis_text(window.end)
        );
        let id = if window.recent {
            console.say(&format!(
                "segrelay: orb: {} events within the grace period ({span}) go through ordinary ingest",
                window.events
            ));
            None
        } else {
            let label = format!("window {} of {} ({span})", index + 1, windows.len());
            let id = match window.id.clone() {
                Some(id) => id,
                None => {
                    let Some(id) = create(api, courier, dispatch, report, plan, &window, index)?
                    else {
                        return rest.settle(index, index == 0, courier, dispatch, report);
                    };
                    windows[index].id = Some(id.clone());
                    save(&mut checkpoint, &windows)?;
                    id
                }
            };
            console.say(&format!(
                "segrelay: orb backfill {label}: backfill {id}, {} events",
                window.events
            ));
            Some(id)
        };
        *courier.usage_query.write().expect("query lock") =
            id.as_ref().map(|id| api.backfill_query(id));
        let pass = Pass {
            window: Some((window.start, window.end)),
            settles_unsent: index == 0,
            rejects_after: latest,
        };
        end = pipeline::run(
            options,
            pass,
            courier,
            dispatch,
            report,
            checkpoint.as_deref_mut(),
            None,
        )?;
        *courier.usage_query.write().expect("query lock") = None;
        if !end.complete || end.aborted.is_some() {
            if let Some(id) = &id {
                console.say(&format!(
                    "segrelay: orb backfill {id} stays open until its close time: run the same command again to go on filling it"
                ));
            }
            if end.aborted.is_some() {
                rest.settle(index + 1, false, courier, dispatch, report)?;
            }
            return Ok(end);
        }
        if let Some(id) = id {
            if plan.close && !window.closed {
                if !act(api, courier, dispatch, report, &id, "close")? {
                    return rest.settle(index + 1, false, courier, dispatch, report);
                }
                windows[index].closed = true;
                save(&mut checkpoint, &windows)?;
            }
            if plan.wait && plan.close && !plan.dry_run && !window.reflected {
                if !wait_reflected(api, courier, dispatch, report, plan, &id)? {
                    return rest.settle(index + 1, false, courier, dispatch, report);
                }
                windows[index].reflected = true;
                save(&mut checkpoint, &windows)?;
            }
        }
        if index + 1 < windows.len()
            && let Some(checkpoint) = checkpoint.as_deref_mut()
        {
            checkpoint.next_pass()?;
        }
    }
    Ok(end)
}

/// After an abort, the events of the passes not made still have to be
/// accounted for: one more pass fails them all (the courier refuses to send).
struct Rest<'a> {
    options: &'a Options<'a>,
    /// Each pass's [start, end).
    spans: Vec<(Timestamp, Timestamp)>,
    latest: Option<Timestamp>,
}

impl Rest<'_> {
    fn settle(
        &self,
        from: usize,
        settles_unsent: bool,
        courier: &Arc<Courier>,
        dispatch: &mut Dispatch,
        report: &mut Report,
    ) -> anyhow::Result<PassEnd> {
        let aborted = courier.aborted();
        let left = match self.spans.get(from..) {
            Some(left) if aborted.is_some() && !left.is_empty() => left,
            _ => {
                return Ok(PassEnd {
                    aborted,
                    complete: false,
                });
            }
        };
        // What is left is one stretch of time: the windows are in time order,
        // and the recent events' pass (always the first) comes after them all.
        let start = left
            .iter()
            .map(|(start, _)| *start)
            .min()
            .expect("a pass left");
        let end = left.iter().map(|(_, end)| *end).max().expect("a pass left");
        let pass = Pass {
            window: Some((start, end)),
            settles_unsent,
            rejects_after: self.latest,
        };
        // Without the checkpoint: the lines it calls settled are another pass's, and
        // this pass fails everything, so it would not move anyway.
        let end = pipeline::run(self.options, pass, courier, dispatch, report, None, None)?;
        Ok(PassEnd {
            aborted: end.aborted,
            complete: false,
        })
    }
}

fn describe(windows: &[Window], plan: &Plan) -> String {
    let backfills: Vec<&Window> = windows.iter().filter(|w| !w.recent).collect();
    let events: u64 = backfills.iter().map(|w| w.events).sum();
    let mut text = format!(
        "segrelay: orb backfill: {events} events in {} window{} of at most {} days",
        backfills.len(),
        if backfills.len() == 1 { "" } else { "s" },
        plan.window_days
    );
    if plan.replace_existing {
        for window in backfills {
            text.push_str(&format!(
                "\nsegrelay: WARNING: --orb-replace-existing: Orb will DELETE every event of every customer from {} to {} and keep only the {} events this run sends",
                utc_millis_text(window.start),
                utc_millis_text(window.end),
                window.events
            ));
        }
    }
    text
}

fn save(checkpoint: &mut Option<&mut Checkpoint>, windows: &[Window]) -> anyhow::Result<()> {
    match checkpoint {
        Some(checkpoint) => checkpoint.set_windows(windows),
        None => Ok(()),
    }
}

/// Creates the window's backfill, or adopts the pending one Orb already has for
/// exactly this window (a run stopped between creating it and saving its id).
fn create(
    api: &Api,
    courier: &Courier,
    dispatch: &mut Dispatch,
    report: &mut Report,
    plan: &Plan,
    window: &Window,
    index: usize,
) -> anyhow::Result<Option<String>> {
    let start = utc_millis_text(window.start);
    let end = utc_millis_text(window.end);
    let close_time = close_time(Timestamp::now(), plan.close_after);
    let request = api.create(&start, &end, plan.replace_existing, &close_time);
    match call(courier, dispatch, report, &request)? {
        Call::Written => Ok(Some(format!("dry-run-backfill-{}", index + 1))),
        Call::Answered(response) => match json_field(&response.body, "id") {
            Some(id) => Ok(Some(id)),
            None => fail(
                courier,
                format!(
                    "Orb created a backfill but its answer has no id: {}",
                    response.body_excerpt()
                ),
            ),
        },
        Call::Refused { message, .. } => {
            if let Some(id) = find_pending(api, courier, dispatch, report, window)? {
                courier.console.say(&format!("segrelay: orb backfill: going on with the pending backfill {id} for this window"));
                return Ok(Some(id));
            }
            fail(
                courier,
                format!("Orb refused the backfill for {start} to {end}: {message}"),
            )
        }
        Call::Failed(_) => Ok(None),
    }
}

/// When Orb is to close a backfill created at `created` by itself, sent
/// always, so that a dry run shows it.
fn close_time(created: Timestamp, close_after: Duration) -> String {
    let after = SignedDuration::try_from(close_after).unwrap_or(SignedDuration::MAX);
    utc_millis_text(created.checked_add(after).unwrap_or(Timestamp::MAX))
}

fn find_pending(
    api: &Api,
    courier: &Courier,
    dispatch: &mut Dispatch,
    report: &mut Report,
    window: &Window,
) -> anyhow::Result<Option<String>> {
    let mut cursor: Option<String> = None;
    // Bounded: a hundred pages of a hundred backfills.
    for _ in 0..100 {
        let Call::Answered(response) =
            call(courier, dispatch, report, &api.list(cursor.as_deref()))?
        else {
            return Ok(None);
        };
        let Ok(page) = serde_json::from_slice::<Value>(&response.body) else {
            return Ok(None);
        };
        for backfill in page["data"].as_array().into_iter().flatten() {
            let time = |key: &str| {
                backfill[key]
                    .as_str()
                    .and_then(|t| t.parse::<Timestamp>().ok())
            };
            if backfill["status"] == "pending"
                && time("timeframe_start") == Some(window.start)
                && time("timeframe_end") == Some(window.end)
            {
                return Ok(backfill["id"].as_str().map(str::to_owned));
            }
        }
        match page["pagination_metadata"]["next_cursor"].as_str() {
            Some(next) if page["pagination_metadata"]["has_more"] == true => {
                cursor = Some(next.to_owned())
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Closes or reverts a backfill; false when it could not be done.
fn act(
    api: &Api,
    courier: &Courier,
    dispatch: &mut Dispatch,
    report: &mut Report,
    id: &str,
    action: &str,
) -> anyhow::Result<bool> {
    match call(courier, dispatch, report, &api.act(id, action))? {
        Call::Written | Call::Answered(_) => Ok(true),
        Call::Refused { message, .. } => fail(
            courier,
            format!("Orb refused to {action} backfill {id}: {message}"),
        )
        .map(|_: Option<()>| false),
        Call::Failed(_) => Ok(false),
    }
}

fn wait_reflected(
    api: &Api,
    courier: &Courier,
    dispatch: &mut Dispatch,
    report: &mut Report,
    plan: &Plan,
    id: &str,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    courier.console.say(&format!(
        "segrelay: orb backfill {id}: waiting until Orb has reflected it"
    ));
    loop {
        match call(courier, dispatch, report, &api.show(id))? {
            Call::Answered(response) => {
                let status = json_field(&response.body, "status").unwrap_or_default();
                if status == "reflected" {
                    return Ok(true);
                }
                if !matches!(status.as_str(), "pending" | "reflecting" | "pending_revert") {
                    return fail(
                        courier,
                        format!("backfill {id} is {status:?}, not reflected"),
                    )
                    .map(|_: Option<()>| false);
                }
            }
            Call::Refused { message, .. } => {
                return fail(courier, format!("cannot read backfill {id}: {message}"))
                    .map(|_: Option<()>| false);
            }
            Call::Written | Call::Failed(_) => return Ok(false),
        }
        if started.elapsed() >= plan.wait_timeout {
            return fail(
                courier,
                format!(
                    "backfill {id} was not reflected after {} s (--orb-wait-timeout)",
                    plan.wait_timeout.as_secs()
                ),
            )
            .map(|_: Option<()>| false);
        }
        if !interrupt::sleep(plan.poll_interval) {
            return Ok(false);
        }
    }
}

fn call(
    courier: &Courier,
    dispatch: &mut Dispatch,
    report: &mut Report,
    request: &crate::destination::Request,
) -> anyhow::Result<Call> {
    let mut done = Delivered::default();
    let result = courier.call(dispatch.control(), request, &mut done);
    report.delivery(done.requests, done.retries, done.server, done.backoff);
    result
}

/// Stops the run with a message.
fn fail<T>(courier: &Courier, message: String) -> anyhow::Result<Option<T>> {
    courier.abort(&message);
    Ok(None)
}

fn json_field(body: &[u8], key: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get(key)?.as_str().map(str::to_owned)
}

/// `segrelay orb backfills ...`: the backfill endpoints by hand.
pub fn manage(
    settings: &crate::settings::DestinationSettings,
    timeout: Duration,
    action: &crate::cli::BackfillAction,
) -> anyhow::Result<crate::Status> {
    use crate::cli::BackfillAction;
    use std::io::Write;

    let api = settings.destination.orb_api().expect("backfills are Orb's");
    settings.destination.secret().require()?;
    let courier = Courier {
        destination: settings.destination.clone(),
        retry: crate::retry::RetryPolicy::for_kind(settings.kind, 3, Duration::from_secs(30)),
        throttle: std::sync::Mutex::new(crate::throttle::Throttle::new(None, None)),
        console: crate::console::Console::new(crate::console::Verbosity::Normal, None),
        secret: Some(settings.destination.secret().clone()),
        aborted: std::sync::Mutex::new(None),
        usage_query: std::sync::RwLock::new(None),
    };
    let mut transport = crate::transport::http::HttpSender::new(timeout, 1);
    let mut done = Delivered::default();
    let mut out = std::io::stdout().lock();
    let mut answer = |request: crate::destination::Request| -> anyhow::Result<Option<Value>> {
        match courier.call(&mut transport, &request, &mut done)? {
            Call::Answered(response) => Ok(Some(
                serde_json::from_slice(&response.body).unwrap_or(Value::Null),
            )),
            Call::Refused { message, .. } => {
                eprintln!("segrelay: Orb refused: {message}");
                Ok(None)
            }
            Call::Written | Call::Failed(_) => Ok(None),
        }
    };
    let single = match action {
        BackfillAction::List { json } => {
            let mut cursor: Option<String> = None;
            let mut rows = Vec::new();
            for _ in 0..1000 {
                let Some(page) = answer(api.list(cursor.as_deref()))? else {
                    return Ok(status_after(&courier));
                };
                rows.extend(page["data"].as_array().cloned().unwrap_or_default());
                match page["pagination_metadata"]["next_cursor"].as_str() {
                    Some(next) if page["pagination_metadata"]["has_more"] == true => {
                        cursor = Some(next.to_owned())
                    }
                    _ => break,
                }
            }
            for row in &rows {
                if *json {
                    writeln!(out, "{row}")?;
                } else {
                    let text = |k: &str| row[k].as_str().unwrap_or("-").to_owned();
                    writeln!(
                        out,
                        "{:<24} {:<14} {} to {}  events: {}  replace: {}",
                        text("id"),
                        text("status"),
                        text("timeframe_start"),
                        text("timeframe_end"),
                        row["events_ingested"],
                        row["replace_existing_events"]
                    )?;
                }
            }
            return Ok(status_after(&courier));
        }
        BackfillAction::Show { id } => answer(api.show(id))?,
        BackfillAction::Close { id } => answer(api.act(id, "close"))?,
        BackfillAction::Revert { id } => answer(api.act(id, "revert"))?,
    };
    match single {
        Some(value) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            Ok(status_after(&courier))
        }
        None => Ok(if courier.aborted().is_some() {
            crate::Status::Aborted
        } else {
            crate::Status::Problems
        }),
    }
}

fn status_after(courier: &Courier) -> crate::Status {
    if courier.aborted().is_some() {
        crate::Status::Aborted
    } else {
        crate::Status::Clean
    }
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
}
