//! `segrelay orb backfills ...`: the backfill endpoints by hand.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use crate::cli::BackfillAction;
use crate::console::{Console, Verbosity, escape_controls};
use crate::delivery::retry::RetryPolicy;
use crate::delivery::throttle::Throttle;
use crate::delivery::{Call, Courier, Delivered};
use crate::destination::orb::{Backfill, Orb, fresh_key};
use crate::destination::{Destination, Request};
use crate::settings::SettingsError;
use crate::status::Status;
use crate::transport::http::HttpSender;

/// A revert removes billed events: asked on a terminal, refused without one unless `--yes`.
fn confirm_revert(id: &str) -> Result<(), SettingsError> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(SettingsError(format!(
            "reverting {id} removes its events from Orb: pass --yes to confirm (standard input is not a terminal)"
        )));
    }
    crate::console::stderr_text(&format!(
        "Revert backfill {id}? Orb removes its events. [y/N] "
    ));
    let mut reply = String::new();
    std::io::stdin()
        .read_line(&mut reply)
        .map_err(|e| SettingsError(format!("cannot read the answer: {e}")))?;
    match reply.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(SettingsError(format!("{id} not reverted"))),
    }
}

/// What a refused close or revert may mean: it was done already.
#[derive(Clone, Copy)]
enum Act {
    Close,
    Revert,
}

impl Act {
    fn name(self) -> &'static str {
        match self {
            Act::Close => "close",
            Act::Revert => "revert",
        }
    }

    /// Whether the backfill, as read now, shows this done already.
    fn done(self, backfill: &Backfill) -> bool {
        match self {
            Act::Close => !backfill.is_open(Timestamp::now()) && backfill.is_active(),
            Act::Revert => !backfill.is_active(),
        }
    }
}

/// `segrelay orb backfills ...`: the backfill endpoints by hand, on the Orb
/// destination `BackfillsConfig` chose.
pub(crate) fn manage(
    destination: Arc<dyn Destination>,
    timeout: Duration,
    action: BackfillAction,
) -> anyhow::Result<Status> {
    if let BackfillAction::Revert { id, yes: false } = &action {
        confirm_revert(id)?;
    }
    let api = &Orb::of(destination.as_ref())
        .expect("backfills are Orb's")
        .api;
    let courier = Courier::new(
        destination.clone(),
        destination.secret().clone(),
        RetryPolicy::new(destination.backoff(), 3, Duration::from_secs(30)),
        Throttle::new(None, None),
        Console::new(Verbosity::Normal, None),
    );
    let mut transport = HttpSender::new(timeout, 1);
    let mut delivered = Delivered::default();
    let mut out = std::io::stdout().lock();
    // None: refused (said) or stopped.
    let mut answer = |request: Request| -> anyhow::Result<Option<Value>> {
        match courier.call(&mut transport, &request, &mut delivered)? {
            Call::Answered(response) => Ok(Some(
                serde_json::from_slice(&response.body).unwrap_or(Value::Null),
            )),
            Call::Refused { message, .. } => {
                crate::console::stderr_line(&format!(
                    "segrelay: Orb refused: {}",
                    escape_controls(&message)
                ));
                Ok(None)
            }
            Call::Written | Call::Stopped(_) => Ok(None),
        }
    };
    let (id, act) = match &action {
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
        BackfillAction::Show { id } => {
            let shown = answer(api.show(id))?;
            return print(&mut out, shown, &courier);
        }
        BackfillAction::Close { id } => (id, Act::Close),
        BackfillAction::Revert { id, .. } => (id, Act::Revert),
    };
    // One key for this command, the same on each of its retries: a retry after
    // a lost answer gets Orb's answer to the first instead of a refusal.
    let key = fresh_key(act.name());
    if let Some(value) = answer(api.act(id, act.name(), &key))? {
        return print(&mut out, Some(value), &courier);
    }
    if courier.aborted().is_some() {
        return Ok(Status::Aborted);
    }
    // Refused: done already (by an earlier command whose answer was lost, or
    // by Orb at the close time) is done; a read says which.
    let shown = answer(api.show(id))?;
    match shown.as_ref().and_then(Backfill::from_json) {
        Some(backfill) if act.done(&backfill) => {
            crate::console::stderr_line(&format!(
                "segrelay: backfill {} is {} already: nothing to {}",
                escape_controls(id),
                escape_controls(&backfill.status),
                act.name()
            ));
            print(&mut out, shown, &courier)
        }
        _ => Ok(if courier.aborted().is_some() {
            Status::Aborted
        } else {
            Status::Problems
        }),
    }
}

/// Prints one backfill as Orb answered it.
fn print(out: &mut impl Write, value: Option<Value>, courier: &Courier) -> anyhow::Result<Status> {
    match value {
        Some(value) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            Ok(status_after(courier))
        }
        None => Ok(if courier.aborted().is_some() {
            Status::Aborted
        } else {
            Status::Problems
        }),
    }
}

fn status_after(courier: &Courier) -> Status {
    if courier.aborted().is_some() {
        Status::Aborted
    } else {
        Status::Clean
    }
}
