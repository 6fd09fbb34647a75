//! `segrelay verify`: what the destination should hold after a send of this
//! input, against what it says it holds. What is compared, and how it is
//! asked for, is the destination's [`Verifier`]'s; this reads, reports and
//! says how it ended. A destination without one is refused by `VerifyConfig`.

use std::io::Write;

use serde_json::json;

use crate::config::VerifyConfig;
use crate::console::{Console, Verbosity};
use crate::delivery::Courier;
use crate::delivery::throttle::Throttle;
use crate::destination::{Verification, Verifier};
use crate::status::Status;
use crate::transport::http::HttpSender;

pub(crate) fn run(config: VerifyConfig) -> anyhow::Result<Status> {
    let destination = config.target.destination.clone();
    let verifier: Box<dyn Verifier + '_> = destination
        .verifier()
        .expect("VerifyConfig refuses a destination without a verifier");
    let console = Console::new(config.verbosity, None);
    if let Some(folders) = &config.options.folders {
        folders.tell(&console);
    }
    if config.verbosity > Verbosity::Quiet {
        for warning in &config.warnings {
            console.say(&format!("segrelay: warning: {warning}"));
        }
    }
    let courier = Courier::new(
        destination.clone(),
        config.target.secret(),
        config.retry.clone(),
        Throttle::new(None, None),
        console.clone(),
    );
    let mut transport = HttpSender::new(config.timeout, 1);
    let comparison = verifier.compare(&mut Verification::new(
        &config.options,
        destination.as_ref(),
        &courier,
        &mut transport,
        config.verbosity,
    ))?;
    if let Some(reason) = courier.aborted() {
        console.say(&format!("segrelay: verify stopped: {reason}"));
        return Ok(Status::Aborted);
    }
    let mut out = std::io::stdout().lock();
    let count = comparison.rows.len();
    // An input that could not be read was not compared: as send and check
    // count it, so does verify, in its report and its exit status.
    let input_errors = config.options.unreadable.count();
    if config.json {
        let report = json!({
            "destination": destination.name(),
            "checked": comparison.checked,
            "differences": comparison.json,
            "input_errors": input_errors,
            "notes": comparison.notes,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", table(comparison.columns, &comparison.rows))?;
        for note in &comparison.notes {
            console.inform(&format!("segrelay: note: {note}"));
        }
        let unread = match input_errors {
            0 => String::new(),
            n => format!("; {} could not be read", crate::console::plural(n, "input")),
        };
        console.inform(&format!(
            "segrelay: verify {}: {} checked, {count} difference{}{unread}",
            destination.name(),
            comparison.checked,
            if count == 1 { "" } else { "s" }
        ));
    }
    Ok(if count == 0 && input_errors == 0 {
        Status::Clean
    } else {
        Status::Problems
    })
}

/// Rows as an aligned table with a header, for people.
fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |values: Vec<&str>| {
        let cells: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut out = line(columns.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
